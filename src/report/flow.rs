//! The flow of sessions (issue 14): where the counted sessions went, as a
//! Sankey-like chart in columns — entry point → bot → the account's pool →
//! agent group → outcome — with each band as wide as its count and
//! labelled with it. Transfers (转接) run back from a group to another
//! account's pool in lanes under the columns. A band that skips a column
//! (the bot's resolved sessions on their way to the outcomes, a pool's
//! abandoned ones) passes it above or below its nodes, in room of its own:
//! drawn straight across, it ran behind the nodes it skipped and read as
//! going through them (the quickstart's 1 818 resolved sessions seemed to
//! cross the presale pool and the day shift).
//!
//! It is drawn with plotters like every other chart, so the same picture
//! comes out as SVG and as PNG, its text measured with the bundled font.
//! The SVG gets a layer of its own on top: one transparent band per edge of
//! `summary.flow` carrying `data-from`, `data-to` and `data-sessions` and
//! a hover title, so the drawing can be held against the summary and read
//! edge by edge in a browser.

use std::collections::HashMap;
use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::charts::{Chart, DrawResult, Drawable, FONT, W, err, note_axes, palette, render};
use super::html::esc;
use crate::summary::Summary;

/// Whether sessions had more than one way to go: a bot, several accounts or
/// groups, or transfers. Without any, the flow says no more than the
/// by-entry table, and the report leaves it out.
pub fn has_paths(s: &Summary) -> bool {
    s.bot.is_some() || s.by_account.len() > 1 || s.by_group.len() > 1 || !s.transfers.is_empty()
}

/// The flow chart of a run, when it has paths to show and a flow to show
/// them with (summaries written before issue 14 have none).
pub fn chart(s: &Summary) -> DrawResult<Option<Chart>> {
    if !has_paths(s) || s.flow.iter().all(|e| e.sessions == 0) {
        return Ok(None);
    }
    let flow = Flow::new(s);
    let mut chart = render(&flow, "flow".into(), format!("Flow of sessions — {}", s.scenario.name))?;
    if let Some(end) = chart.svg.rfind("</svg>") {
        chart.svg.insert_str(end, &flow.edge_layer());
    }
    Ok(Some(chart))
}

/// The columns, left to right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Stage {
    Entry,
    Bot,
    Account,
    Group,
    Outcome,
}

impl Stage {
    fn heading(self) -> &'static str {
        match self {
            Stage::Entry => "entry point",
            Stage::Bot => "bot",
            Stage::Account => "account's pool",
            Stage::Group => "agent group",
            Stage::Outcome => "outcome",
        }
    }
}

/// The stage and display name of a flow node (`entry:NAME`, …, or an
/// outcome). A name may itself hold a colon: only the first one splits.
fn parse(id: &str) -> (Stage, &str) {
    match id.split_once(':') {
        Some(("entry", n)) => (Stage::Entry, n),
        Some(("bot", n)) => (Stage::Bot, n),
        Some(("account", n)) => (Stage::Account, n),
        Some(("group", n)) => (Stage::Group, n),
        _ => (Stage::Outcome, id),
    }
}

/// Outcomes top to bottom: the bot's first, as its band starts highest.
const OUTCOMES: [(&str, &str); 6] = [
    ("resolved", "resolved by the bot"),
    ("ended", "ended by an agent"),
    ("abandoned", "abandoned"),
    ("rejected", "rejected (pool full)"),
    ("unfinished", "unfinished"),
    ("open", "still open at the end"),
];

/// Names longer than this are cut (the hover title keeps them whole).
const NAME_CHARS: usize = 24;
/// Node width [px].
const NODE_W: f64 = 14.0;
/// Vertical room between nodes of a column, which holds the next label [px].
const GAP: f64 = 26.0;
/// Height the largest column's sessions are scaled to [px].
const STACK: f64 = 300.0;
/// Top of the node area: caption, column headings, the first labels [px].
const TOP: f64 = 78.0;
const LEFT: f64 = 16.0;
/// The outcomes' labels stand right of their nodes, where no band runs.
const RIGHT: f64 = 170.0;
/// Room under each transfer lane for its label [px].
const LANE_GAP: f64 = 24.0;

#[derive(Debug)]
struct Node {
    id: String,
    stage: Stage,
    label: String,
    col: usize,
    value: u64,
    colour: RGBColor,
    x: f64,
    y: f64,
    h: f64,
}

#[derive(Debug)]
struct Edge {
    from: usize,
    to: usize,
    sessions: u64,
    /// Band width [px]: sessions × scale, at least 1 so that no edge vanishes.
    width: f64,
    /// Centre of the band where it leaves `from` and enters `to`.
    y0: f64,
    y1: f64,
    /// A transfer back to an earlier column: the y of its lane.
    lane: Option<f64>,
    /// Centre of the band in each column it skips, left to right.
    via: Vec<f64>,
}

/// The laid-out flow.
struct Flow {
    name: String,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    stages: Vec<Stage>,
    largest_column: u64,
    height: u32,
}

fn colour_of(s: &Summary, stage: Stage, name: &str) -> RGBColor {
    let account_index = |a: &str| s.by_account.keys().position(|k| k == a);
    match stage {
        Stage::Entry => palette(s.by_entry.keys().position(|k| k == name).unwrap_or(0)),
        Stage::Bot => RGBColor(120, 90, 160),
        Stage::Account => palette(account_index(name).unwrap_or(0)),
        // a group takes its account's colour (the account of its agents)
        Stage::Group => s
            .agents
            .iter()
            .find(|a| a.group == name)
            .and_then(|a| account_index(&a.account))
            .map_or(RGBColor(100, 100, 100), palette),
        Stage::Outcome => match name {
            "resolved" => RGBColor(44, 160, 44),
            "ended" => RGBColor(90, 90, 90),
            "abandoned" => RGBColor(214, 39, 40),
            "rejected" => RGBColor(140, 30, 30),
            _ => RGBColor(170, 170, 170),
        },
    }
}

fn cut(name: &str) -> String {
    if name.chars().count() > NAME_CHARS {
        let mut s: String = name.chars().take(NAME_CHARS - 1).collect();
        s.push('…');
        s
    } else {
        name.to_owned()
    }
}

/// A point of the cubic Bézier `p0 c1 c2 p3` at `t`.
fn bezier(p: [(f64, f64); 4], t: f64) -> (f64, f64) {
    let u = 1.0 - t;
    let (a, b, c, d) = (u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t);
    (a * p[0].0 + b * p[1].0 + c * p[2].0 + d * p[3].0, a * p[0].1 + b * p[1].1 + c * p[2].1 + d * p[3].1)
}

const STEPS: usize = 24;

fn sample(p: [(f64, f64); 4]) -> impl Iterator<Item = (f64, f64)> {
    (0..=STEPS).map(move |i| bezier(p, i as f64 / STEPS as f64))
}

impl Flow {
    fn new(s: &Summary) -> Flow {
        // nodes in order of first appearance in the flow, which follows the
        // scenario (entries, then accounts as sessions reach them)
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut nodes: Vec<Node> = Vec::new();
        let mut edges = Vec::new();
        for e in s.flow.iter().filter(|e| e.sessions > 0) {
            let mut ends = [0usize; 2];
            for (end, id) in ends.iter_mut().zip([e.from.as_str(), e.to.as_str()]) {
                *end = *index.entry(id).or_insert_with(|| {
                    let (stage, name) = parse(id);
                    let label = match OUTCOMES.iter().find(|(k, _)| *k == id) {
                        Some((_, l)) if stage == Stage::Outcome => (*l).to_owned(),
                        _ => cut(name),
                    };
                    let colour = colour_of(s, stage, name);
                    nodes.push(Node {
                        id: id.to_owned(),
                        stage,
                        label,
                        col: 0,
                        value: 0,
                        colour,
                        x: 0.0,
                        y: 0.0,
                        h: 0.0,
                    });
                    nodes.len() - 1
                });
            }
            let [from, to] = ends;
            edges.push(Edge {
                from,
                to,
                sessions: e.sessions,
                width: 0.0,
                y0: 0.0,
                y1: 0.0,
                lane: None,
                via: Vec::new(),
            });
        }
        let mut stages: Vec<Stage> = nodes.iter().map(|n| n.stage).collect();
        stages.sort();
        stages.dedup();
        for n in &mut nodes {
            n.col = stages.iter().position(|&st| st == n.stage).unwrap_or(0);
        }
        let mut flow =
            Flow { name: s.scenario.name.clone(), nodes, edges, stages, largest_column: 1, height: 0 };
        flow.place();
        flow
    }

    fn back(&self, e: &Edge) -> bool {
        self.nodes[e.to].col <= self.nodes[e.from].col
    }

    /// Columns, node sizes and positions, band slots and transfer lanes.
    fn place(&mut self) {
        let n = self.nodes.len();
        let (mut inflow, mut outflow) = (vec![0u64; n], vec![0u64; n]);
        for e in &self.edges {
            outflow[e.from] += e.sessions;
            inflow[e.to] += e.sessions;
        }
        for (i, node) in self.nodes.iter_mut().enumerate() {
            node.value = inflow[i].max(outflow[i]);
        }
        let mut columns: Vec<Vec<usize>> = vec![Vec::new(); self.stages.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            columns[node.col].push(i);
        }
        let rank = |id: &str| OUTCOMES.iter().position(|(k, _)| *k == id).unwrap_or(OUTCOMES.len());
        for col in &mut columns {
            col.sort_by_key(
                |&i| if self.nodes[i].stage == Stage::Outcome { rank(&self.nodes[i].id) } else { 0 },
            );
        }
        // each column in the order of where its sessions come from (the
        // mean height of their sources, transfers left out), and the entry
        // points in the order of where theirs go: bands cross as little as
        // this simple rule can make them
        let mut at = vec![0.0f64; n];
        let place = |col: &Vec<usize>, at: &mut Vec<f64>| {
            for (p, &i) in col.iter().enumerate() {
                at[i] = (p as f64 + 0.5) / col.len() as f64;
            }
        };
        place(&columns[0], &mut at);
        for (c, col) in columns.iter_mut().enumerate().skip(1) {
            if self.stages[c] != Stage::Outcome {
                let mean_source = |i: usize| {
                    let (sum, n) = self
                        .edges
                        .iter()
                        .filter(|e| e.to == i && self.nodes[e.from].col < c)
                        .fold((0.0, 0.0), |(s, n), e| {
                            (s + at[e.from] * e.sessions as f64, n + e.sessions as f64)
                        });
                    if n > 0.0 { sum / n } else { 1.0 }
                };
                col.sort_by(|&a, &b| mean_source(a).total_cmp(&mean_source(b)));
            }
            place(col, &mut at);
        }
        if self.stages.first() == Some(&Stage::Entry) {
            let main_target = |i: usize| {
                self.edges.iter().filter(|e| e.from == i).max_by_key(|e| e.sessions).map_or(0.0, |e| at[e.to])
            };
            columns[0].sort_by(|&a, &b| main_target(a).total_cmp(&main_target(b)));
            place(&columns[0], &mut at);
        }
        // Bands skipping a column pass it above its nodes when they run in
        // the upper half (by the mean of their ends' places), else below;
        // within either, the band bound highest runs highest.
        let mut above: Vec<Vec<usize>> = vec![Vec::new(); columns.len()];
        let mut below: Vec<Vec<usize>> = vec![Vec::new(); columns.len()];
        for (k, e) in self.edges.iter().enumerate() {
            let (a, b) = (self.nodes[e.from].col, self.nodes[e.to].col);
            for c in a.saturating_add(1)..b {
                if at[e.from] + at[e.to] < 1.0 { above[c].push(k) } else { below[c].push(k) }
            }
        }
        let ends = |k: usize| (at[self.edges[k].to], at[self.edges[k].from]);
        for passes in above.iter_mut().chain(below.iter_mut()) {
            passes.sort_by(|&a, &b| {
                let (a, b) = (ends(a), ends(b));
                a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1))
            });
        }

        self.largest_column = columns
            .iter()
            .map(|c| c.iter().map(|&i| self.nodes[i].value).sum::<u64>())
            .max()
            .unwrap_or(1)
            .max(1);
        let scale = STACK / self.largest_column as f64;
        for e in &mut self.edges {
            e.width = (e.sessions as f64 * scale).max(1.0);
        }
        // a node is as tall as its count, or as the bands on either side
        // when bands of 1 px stand for fewer sessions than that
        for i in 0..n {
            let side = |f: fn(&Edge) -> usize| -> f64 {
                self.edges.iter().filter(|e| f(e) == i).map(|e| e.width).sum()
            };
            let h = (self.nodes[i].value as f64 * scale).max(side(|e| e.from)).max(side(|e| e.to)).max(2.0);
            self.nodes[i].h = h;
        }
        // a block of passing bands is as wide as its bands, a gap from the nodes
        let block = |passes: &Vec<usize>| -> f64 {
            let w: f64 = passes.iter().map(|&k| self.edges[k].width).sum();
            if passes.is_empty() { 0.0 } else { w + GAP }
        };
        let stack = |c: usize| -> f64 {
            let col = &columns[c];
            col.iter().map(|&i| self.nodes[i].h).sum::<f64>()
                + GAP * col.len().saturating_sub(1) as f64
                + block(&above[c])
                + block(&below[c])
        };
        let stacks: Vec<f64> = (0..columns.len()).map(stack).collect();
        let tallest = stacks.iter().copied().fold(0.0, f64::max);
        for (c, col) in columns.iter().enumerate() {
            let x = self.column_x(c);
            let mut y = TOP + (tallest - stacks[c]) / 2.0;
            let mut pass = |k: usize, y: &mut f64| {
                let e = &mut self.edges[k];
                e.via.push(*y + e.width / 2.0);
                *y += e.width;
            };
            for &k in &above[c] {
                pass(k, &mut y);
            }
            if !above[c].is_empty() {
                y += GAP;
            }
            for &i in col {
                self.nodes[i].x = x;
                self.nodes[i].y = y;
                y += self.nodes[i].h + GAP;
            }
            for &k in &below[c] {
                pass(k, &mut y);
            }
        }
        // transfers run back in lanes under every column, the widest lowest
        let mut lane = TOP + tallest + 16.0;
        let mut back: Vec<usize> = (0..self.edges.len()).filter(|&k| self.back(&self.edges[k])).collect();
        back.sort_by(|&a, &b| self.edges[a].width.total_cmp(&self.edges[b].width));
        for k in back {
            let w = self.edges[k].width;
            self.edges[k].lane = Some(lane + w / 2.0);
            lane += w + LANE_GAP;
        }
        self.height = (lane + 8.0).max(TOP + tallest + 24.0).ceil() as u32;

        // slots: bands leave a node top-down in the order of where they go,
        // transfers last (their lanes are below); likewise where they enter
        for i in 0..n {
            let mut out: Vec<usize> = (0..self.edges.len()).filter(|&k| self.edges[k].from == i).collect();
            out.sort_by(|&a, &b| self.slot_key(a, true).total_cmp(&self.slot_key(b, true)));
            let mut y = self.nodes[i].y;
            for k in out {
                self.edges[k].y0 = y + self.edges[k].width / 2.0;
                y += self.edges[k].width;
            }
            let mut inc: Vec<usize> = (0..self.edges.len()).filter(|&k| self.edges[k].to == i).collect();
            inc.sort_by(|&a, &b| self.slot_key(a, false).total_cmp(&self.slot_key(b, false)));
            let mut y = self.nodes[i].y;
            for k in inc {
                self.edges[k].y1 = y + self.edges[k].width / 2.0;
                y += self.edges[k].width;
            }
        }
    }

    /// Where edge `k` sits among its node's bands: by the height of where
    /// it goes next (the other end, or the column it passes), transfers
    /// after every forward band, the lowest lane last.
    fn slot_key(&self, k: usize, leaving: bool) -> f64 {
        let e = &self.edges[k];
        let other = &self.nodes[if leaving { e.to } else { e.from }];
        let next = if leaving { e.via.first() } else { e.via.last() };
        match (e.lane, next) {
            (Some(lane), _) => 1e9 + lane,
            (None, Some(&y)) => y,
            (None, None) => other.y + other.h / 2.0,
        }
    }

    /// The x of column `c`'s nodes.
    fn column_x(&self, c: usize) -> f64 {
        let last = self.stages.len().saturating_sub(1).max(1) as f64;
        LEFT + (f64::from(W) - LEFT - RIGHT - NODE_W) * c as f64 / last
    }

    /// A forward band's centre line as cubic pieces: a curve between
    /// columns, straight across each column it passes.
    fn pieces(&self, e: &Edge) -> Vec<[(f64, f64); 4]> {
        let (a, b) = (&self.nodes[e.from], &self.nodes[e.to]);
        let mut at = (a.x + NODE_W, e.y0);
        let mut out = Vec::with_capacity(2 * e.via.len() + 1);
        let mut curve = |at: &mut (f64, f64), to: (f64, f64)| {
            let xm = (at.0 + to.0) / 2.0;
            out.push([*at, (xm, at.1), (xm, to.1), to]);
            *at = to;
        };
        for (c, &y) in (a.col + 1..).zip(&e.via) {
            let x = self.column_x(c);
            curve(&mut at, (x, y));
            curve(&mut at, (x + NODE_W, y));
        }
        curve(&mut at, (b.x, e.y1));
        out
    }

    /// The centre line of edge `e`, left to right for a forward band, and
    /// out of the group, down, back and up into the pool for a transfer.
    fn centre_line(&self, e: &Edge) -> Vec<(f64, f64)> {
        let (a, b) = (&self.nodes[e.from], &self.nodes[e.to]);
        let (x0, x1) = (a.x + NODE_W, b.x);
        match e.lane {
            None => self.pieces(e).into_iter().flat_map(sample).collect(),
            Some(lane) => {
                let d = 16.0 + e.width / 2.0;
                let mut pts: Vec<(f64, f64)> =
                    sample([(x0, e.y0), (x0 + 2.0 * d, e.y0), (x0 + 2.0 * d, lane), (x0, lane)]).collect();
                pts.extend(sample([(x1, lane), (x1 - 2.0 * d, lane), (x1 - 2.0 * d, e.y1), (x1, e.y1)]));
                pts
            }
        }
    }

    /// The band of a forward edge as a polygon: its width is vertical, so
    /// every band is exactly as wide as its count wherever it is cut.
    fn ribbon(&self, e: &Edge) -> Vec<(i32, i32)> {
        let h = e.width / 2.0;
        let line: Vec<(f64, f64)> = self.pieces(e).into_iter().flat_map(sample).collect();
        let top = line.iter().map(|&(x, y)| (x, y - h));
        let bottom: Vec<_> = line.iter().map(|&(x, y)| (x, y + h)).collect();
        top.chain(bottom.into_iter().rev()).map(px).collect()
    }

    /// Where an edge's count goes, in order of preference: along its band
    /// (the middle first; for a band that skips columns, where it crosses
    /// them, clear of any node), or under a transfer's lane.
    fn label_spots(&self, e: &Edge) -> Vec<(f64, f64)> {
        match e.lane {
            None => {
                let pieces = self.pieces(e);
                let mut spots: Vec<(f64, f64)> = Vec::new();
                // the straight pieces are every other one, from the second
                let mut across: Vec<&[(f64, f64); 4]> = pieces.iter().skip(1).step_by(2).collect();
                let mid = across.len() / 2;
                across.rotate_left(mid);
                spots.extend(across.iter().map(|p| bezier(**p, 0.5)));
                for p in &pieces {
                    spots
                        .extend([0.5, 0.36, 0.64, 0.24, 0.76, 0.14, 0.86].into_iter().map(|t| bezier(*p, t)));
                }
                spots
            }
            Some(lane) => {
                let (a, b) = (&self.nodes[e.from], &self.nodes[e.to]);
                let xm = (a.x + b.x + NODE_W) / 2.0;
                let y = lane + e.width / 2.0 + 9.0;
                [0.0, -60.0, 60.0].into_iter().map(|dx| (xm + dx, y)).collect()
            }
        }
    }

    fn describe(&self, i: usize) -> String {
        let node = &self.nodes[i];
        let (_, name) = parse(&node.id);
        match node.stage {
            Stage::Entry => format!("entry point {name}"),
            Stage::Bot => format!("the bot of {name}"),
            Stage::Account => format!("the pool of {name}"),
            Stage::Group => format!("group {name}"),
            Stage::Outcome => node.label.clone(),
        }
    }

    /// The SVG layer over the drawing: one transparent band per edge, with
    /// its ends and count as data and a hover title, and one box per node.
    fn edge_layer(&self) -> String {
        let mut g = String::from(
            "<g class=\"flow-edges\" fill=\"none\" stroke=\"transparent\" pointer-events=\"stroke\">\n",
        );
        for e in &self.edges {
            let points = self.centre_line(e).iter().fold(String::new(), |mut s, (x, y)| {
                let _ = write!(s, "{x:.1},{y:.1} ");
                s
            });
            let kind = if e.lane.is_some() { "transferred" } else { "sessions" };
            let _ = writeln!(
                g,
                "<polyline class=\"flow-edge\" data-from=\"{}\" data-to=\"{}\" data-sessions=\"{}\" \
                 stroke-width=\"{:.3}\" points=\"{}\"><title>{} → {}: {} {kind}</title></polyline>",
                esc(&self.nodes[e.from].id),
                esc(&self.nodes[e.to].id),
                e.sessions,
                e.width,
                points.trim_end(),
                esc(&self.describe(e.from)),
                esc(&self.describe(e.to)),
                e.sessions
            );
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let _ = writeln!(
                g,
                "<rect class=\"flow-node\" data-node=\"{}\" data-sessions=\"{}\" x=\"{:.1}\" y=\"{:.1}\" \
                 width=\"{NODE_W}\" height=\"{:.1}\" fill=\"transparent\" pointer-events=\"all\">\
                 <title>{}: {} sessions</title></rect>",
                esc(&node.id),
                node.value,
                node.x,
                node.y,
                node.h,
                esc(&self.describe(i)),
                node.value
            );
        }
        g.push_str("</g>\n");
        g
    }
}

fn px((x, y): (f64, f64)) -> (i32, i32) {
    (x.round() as i32, y.round() as i32)
}

/// Two boxes `(x0, y0, x1, y1)` overlap.
fn overlap(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

impl Drawable for Flow {
    fn size(&self) -> (u32, u32) {
        (W, self.height)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<()> {
        let last = self.stages.len().saturating_sub(1);
        note_axes("flow", (0.0, last.max(1) as f64), (0.0, self.largest_column as f64), false, 1.0);
        let caption = TextStyle::from((FONT, 17).into_font());
        root.draw(&Text::new(format!("Flow of sessions — {}", self.name), (LEFT as i32, 8), caption))
            .map_err(err)?;
        let grey = RGBColor(90, 90, 90);
        for (c, stage) in self.stages.iter().enumerate() {
            let x = self.column_x(c);
            let (h, x) = match c {
                0 => (HPos::Left, x),
                c if c == last => (HPos::Left, x),
                _ => (HPos::Center, x + NODE_W / 2.0),
            };
            let style = TextStyle::from((FONT, 14).into_font()).color(&grey).pos(Pos::new(h, VPos::Top));
            root.draw(&Text::new(stage.heading(), (x.round() as i32, 36), style)).map_err(err)?;
        }

        for e in &self.edges {
            let colour = self.nodes[e.from].colour;
            match e.lane {
                None => root.draw(&Polygon::new(self.ribbon(e), colour.mix(0.35).filled())),
                Some(_) => {
                    let line: Vec<(i32, i32)> = self.centre_line(e).into_iter().map(px).collect();
                    let w = e.width.round().max(1.0) as u32;
                    root.draw(&PathElement::new(line, colour.mix(0.45).stroke_width(w)))
                }
            }
            .map_err(err)?;
        }
        // what labels must not cover: nodes and the labels already placed
        let mut taken: Vec<(f64, f64, f64, f64)> = Vec::new();
        for node in &self.nodes {
            let (x0, y0) = px((node.x, node.y));
            let (x1, y1) = px((node.x + NODE_W, node.y + node.h));
            root.draw(&Rectangle::new([(x0, y0), (x1, y1)], node.colour.filled())).map_err(err)?;
            taken.push((node.x, node.y, node.x + NODE_W, node.y + node.h));
        }
        let backing = WHITE.mix(0.8).filled();
        let mut label =
            |text: String, (x, y): (f64, f64), pos: Pos, size: u32, colour: RGBColor, fixed: bool| {
                let style = TextStyle::from((FONT, size).into_font()).color(&colour).pos(pos);
                let (w, h) = root.estimate_text_size(&text, &style).map_err(err)?;
                let (w, h) = (f64::from(w) + 4.0, f64::from(h) + 2.0);
                let x0 = match pos.h_pos {
                    HPos::Left => x - 2.0,
                    HPos::Right => x - w + 2.0,
                    HPos::Center => x - w / 2.0,
                };
                let y0 = match pos.v_pos {
                    VPos::Top => y - 1.0,
                    VPos::Bottom => y - h + 1.0,
                    VPos::Center => y - h / 2.0,
                };
                let b = (x0, y0, x0 + w, y0 + h);
                if !fixed && taken.iter().any(|t| overlap(*t, b)) {
                    return Ok(false);
                }
                root.draw(&Rectangle::new([px((b.0, b.1)), px((b.2, b.3))], backing)).map_err(err)?;
                root.draw(&Text::new(text, px((x, y)), style)).map_err(err)?;
                taken.push(b);
                DrawResult::Ok(true)
            };
        for node in &self.nodes {
            let text = format!("{}  {}", node.label, node.value);
            let (at, pos) = if node.col == last && last > 0 {
                ((node.x + NODE_W + 5.0, node.y + node.h / 2.0), Pos::new(HPos::Left, VPos::Center))
            } else {
                ((node.x, node.y - 3.0), Pos::new(HPos::Left, VPos::Bottom))
            };
            label(text, at, pos, 13, RGBColor(20, 20, 20), true)?;
        }
        let ink = RGBColor(50, 50, 50);
        for e in &self.edges {
            let text =
                if e.lane.is_some() { format!("{} transferred", e.sessions) } else { e.sessions.to_string() };
            let spots = self.label_spots(e);
            let mut placed = false;
            for &spot in &spots {
                if label(text.clone(), spot, Pos::new(HPos::Center, VPos::Center), 12, ink, false)? {
                    placed = true;
                    break;
                }
            }
            if !placed {
                // crowded: the count still goes on, over what it must
                label(text, spots[0], Pos::new(HPos::Center, VPos::Center), 12, ink, true)?;
            }
        }
        Ok(())
    }
}
