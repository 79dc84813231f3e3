//! Charts of a run, drawn with plotters as SVG strings. Text is SVG text
//! (rendered by the viewer), so drawing needs no font on the machine.
//!
//! Every data point of an SVG chart carries its value as an SVG `<title>`
//! (a transparent circle over the point), which a browser shows on hover:
//! no script, and the page stays one file. Each chart also records the
//! ranges of its axes ([`Axes`]), so tests can hold them against the data.
//!
//! Colours are fixed per metric and per position of an entry point or
//! account in name order, so the same thing has the same colour in every
//! chart of a report.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::metrics::Measured;
use crate::series::SeriesData;
use crate::summary::Summary;

/// One chart: a file stem, a title, and the picture as SVG and PNG.
#[derive(Debug, Clone)]
pub struct Chart {
    /// File name without the extension.
    pub name: String,
    /// What it shows.
    pub title: String,
    /// The SVG document.
    pub svg: String,
    /// The same chart as a PNG image (text drawn with the bundled DejaVu Sans).
    pub png: Vec<u8>,
    /// The axes of each panel, as drawn.
    pub axes: Vec<Axes>,
}

/// The ranges of one panel's axes.
#[derive(Debug, Clone, PartialEq)]
pub struct Axes {
    /// The panel (its caption, or the chart's name for one-panel charts).
    pub panel: String,
    /// x from, to (in the axis's display unit).
    pub x: (f64, f64),
    /// y from, to (in the axis's display unit).
    pub y: (f64, f64),
    /// The y axis is logarithmic.
    pub y_log: bool,
    /// Multiply a data value by this to get the axis's display unit (1e-3
    /// for ms shown in s); 1 when the axis shows the data's own unit.
    pub y_scale: f64,
}

/// What the SVG pass of a drawing records: axes and hover labels.
#[derive(Default)]
struct Record {
    axes: Vec<Axes>,
    hovers: Vec<(i32, i32, String)>,
}

thread_local! {
    static RECORD: std::cell::RefCell<Option<Record>> = const { std::cell::RefCell::new(None) };
}

/// Note the axes of a panel being drawn (recorded during the SVG pass).
pub fn note_axes(panel: &str, x: (f64, f64), y: (f64, f64), y_log: bool, y_scale: f64) {
    RECORD.with(|r| {
        if let Some(r) = r.borrow_mut().as_mut() {
            r.axes.push(Axes { panel: panel.to_owned(), x, y, y_log, y_scale });
        }
    });
}

/// Give the point at `at` (chart coordinates) a hover label.
pub fn hover<DB: DrawingBackend, CT: plotters::coord::CoordTranslate>(
    chart: &ChartContext<'_, DB, CT>,
    at: CT::From,
    text: String,
) {
    RECORD.with(|r| {
        if let Some(r) = r.borrow_mut().as_mut() {
            let (x, y) = chart.as_coord_spec().translate(&at);
            r.hovers.push((x, y, text));
        }
    });
}

/// The hover layer: a transparent circle with a `<title>` per point, last
/// in the document so it lies over everything drawn.
fn hover_layer(hovers: &[(i32, i32, String)]) -> String {
    let mut g = String::from(r#"<g class="hover" fill="transparent" pointer-events="all">"#);
    for (x, y, text) in hovers {
        let t = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        g.push_str(&format!(r#"<circle cx="{x}" cy="{y}" r="6"><title>{t}</title></circle>"#));
    }
    g.push_str("</g>\n");
    g
}

/// Default chart width [px].
pub const W: u32 = 900;
/// Default chart height [px].
pub const H: u32 = 420;
/// The font family of every chart.
pub const FONT: &str = "sans-serif";

/// The colour of a latency metric.
pub fn metric_colour(name: &str) -> RGBColor {
    match name.rsplit('.').next().unwrap_or(name) {
        "queue_wait" => RGBColor(31, 119, 180),
        "first_response" => RGBColor(255, 127, 14),
        "reply" => RGBColor(44, 160, 44),
        "session" => RGBColor(148, 103, 189),
        "abandon_wait" => RGBColor(214, 39, 40),
        _ => RGBColor(127, 127, 127),
    }
}

/// The colour of the i-th entry point or account (in name order).
pub fn palette(i: usize) -> RGBColor {
    const P: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    P[i % P.len()]
}

/// A chart, or why it could not be drawn.
pub type DrawResult<T> = Result<T, String>;

/// A plotters error as a message.
pub fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing a chart failed: {e:?}")
}

/// A time unit that keeps axis numbers readable: (ms per unit, label).
fn time_unit(max_ms: f64) -> (f64, &'static str) {
    if max_ms < 2_000.0 {
        (1.0, "ms")
    } else if max_ms < 180_000.0 {
        (1_000.0, "s")
    } else {
        (60_000.0, "min")
    }
}

/// A picture that can be drawn on any plotters backend, so one
/// description gives both the SVG and the PNG.
pub trait Drawable {
    /// Size in pixels.
    fn size(&self) -> (u32, u32) {
        (W, H)
    }
    /// Draw on `root` (already white).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<()>;
}

/// Draw `d` as SVG and as PNG.
pub fn render<D: Drawable>(d: &D, name: String, title: String) -> DrawResult<Chart> {
    register_fonts()?;
    let size = d.size();
    let mut svg = String::new();
    RECORD.with(|r| *r.borrow_mut() = Some(Record::default()));
    let drawn = (|| {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        d.draw(&root)?;
        root.present().map_err(err)
    })();
    let record = RECORD.with(|r| r.borrow_mut().take()).unwrap_or_default();
    drawn?;
    if let Some(end) = svg.rfind("</svg>") {
        svg.insert_str(end, &hover_layer(&record.hovers));
    }
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        d.draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(Chart { name, title, svg, png: encode_png(&rgb, size)?, axes: record.axes })
}

/// What a chart draws; one `draw` serves every backend.
enum Kind<'a> {
    Spectrum(Vec<&'a str>),
    Histogram(&'a str),
    FairnessBars,
    AssignmentHistogram,
    Lorenz,
    Occupancy,
    ByEntry,
    OverTime,
}

struct RunChart<'a> {
    kind: Kind<'a>,
    run: &'a Measured,
}

impl Drawable for RunChart<'_> {
    fn size(&self) -> (u32, u32) {
        match self.kind {
            Kind::OverTime => (W, 5 * 240),
            Kind::Spectrum(_) | Kind::ByEntry => (W, 2 * 300),
            _ => (W, H),
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<()> {
        let run = self.run;
        let name = &run.summary.scenario.name;
        match &self.kind {
            Kind::Spectrum(keys) => spectrum(root, run, keys, name),
            Kind::Histogram(key) => histogram(root, run, key, name),
            Kind::FairnessBars => fairness_bars(root, &run.summary),
            Kind::AssignmentHistogram => assignment_histogram(root, &run.summary),
            Kind::Lorenz => lorenz(root, &run.summary),
            Kind::Occupancy => occupancy(root, &run.summary),
            Kind::ByEntry => by_entry(root, run),
            Kind::OverTime => over_time(root, run),
        }
    }
}

impl<'a> Kind<'a> {
    fn render(self, run: &'a Measured, name: String, title: String) -> DrawResult<Chart> {
        render(&RunChart { kind: self, run }, name, title)
    }
}

/// Text in bitmaps needs a font; bundling one keeps PNG output the same on
/// a machine with no fonts installed.
fn register_fonts() -> DrawResult<()> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        for (style, bytes) in [
            (FontStyle::Normal, dejavu::sans::regular()),
            (FontStyle::Bold, dejavu::sans::bold()),
            (FontStyle::Italic, dejavu::sans::oblique()),
            (FontStyle::Oblique, dejavu::sans::oblique()),
        ] {
            plotters::style::register_font(FONT, style, bytes)
                .map_err(|_| "the bundled font is invalid".to_owned())?;
        }
        Ok(())
    })
    .clone()
}

fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> DrawResult<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

/// Draw the legend of `chart` at `pos`, the same way on every chart.
pub fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
) -> DrawResult<()> {
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)
}

/// Right margin of a chart with its legend outside [px].
const LEGEND_W: u32 = 250;

/// Every chart of a run.
pub fn render_all(run: &Measured) -> DrawResult<Vec<Chart>> {
    let name = &run.summary.scenario.name;
    let mut charts = Vec::new();
    let has = |k: &str| run.histograms.get(k).is_some_and(|h| !h.is_empty());
    if !run.series.answered.is_empty() {
        charts.push(Kind::OverTime.render(run, "over-time".into(), format!("Over time — {name}"))?);
    }
    let latencies: Vec<&str> =
        ["queue_wait", "first_response", "reply"].into_iter().filter(|k| has(k)).collect();
    if !latencies.is_empty() {
        let title = format!("Latency by percentile — {name}");
        charts.push(Kind::Spectrum(latencies).render(run, "latency-spectrum".into(), title)?);
    }
    let http: Vec<&str> = run
        .histograms
        .iter()
        // long-polls wait by design, and one-off setup calls say nothing
        // about load: the chart shows the endpoints that carry the traffic
        .filter(|(k, h)| k.starts_with("http.") && !k.ends_with("_pull") && h.len() >= 100)
        .map(|(k, _)| k.as_str())
        .collect();
    if !http.is_empty() {
        let title = format!("HTTP latency by percentile — {name}");
        charts.push(Kind::Spectrum(http).render(run, "http-spectrum".into(), title)?);
    }
    for key in ["queue_wait", "first_response", "reply", "session", "abandon_wait"] {
        if has(key) {
            let title = format!("Distribution of {} — {name}", latency_name(key));
            charts.push(Kind::Histogram(key).render(run, format!("histogram-{key}"), title)?);
        }
    }
    if run.summary.by_entry.len() > 1 {
        let title = format!("Service level and queue wait by entry point — {name}");
        charts.push(Kind::ByEntry.render(run, "by-entry".into(), title)?);
    }
    if let Some(flow) = super::flow::chart(&run.summary)? {
        charts.push(flow);
    }
    if run.summary.agents.iter().any(|a| a.online_s > 0.0) {
        let title = format!("Sessions per agent — {name}");
        charts.push(Kind::FairnessBars.render(run, "fairness-agents".into(), title)?);
        let title = format!("How many agents got how many sessions — {name}");
        charts.push(Kind::AssignmentHistogram.render(run, "fairness-histogram".into(), title)?);
        let title = format!("Lorenz curve of sessions per online hour — {name}");
        charts.push(Kind::Lorenz.render(run, "fairness-lorenz".into(), title)?);
        let title = format!("Occupancy per agent — {name}");
        charts.push(Kind::Occupancy.render(run, "occupancy-agents".into(), title)?);
    }
    Ok(charts)
}

/// The name of a latency in every output: its key in `summary.json` with
/// spaces (`abandon_wait` → "abandon wait"), so the terminal, the page, the
/// charts and the JSON name it alike.
pub fn latency_name(key: &str) -> String {
    key.replace('_', " ")
}

/// What a latency histogram counts.
fn counted(key: &str) -> &'static str {
    match key {
        "reply" => "replies",
        "abandon_wait" => "abandoned sessions",
        "queue_wait" => "answered sessions",
        k if k.starts_with("http.") => "calls",
        _ => "sessions",
    }
}

/// x = log10(1 / (1 − q)): 1 is 90 %, 2 is 99 %, …
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// One percentile curve.
pub struct Curve<'a> {
    /// Legend label.
    pub label: String,
    /// The histogram [µs].
    pub h: &'a hdrhistogram::Histogram<u64>,
    /// Colour.
    pub colour: RGBColor,
    /// Dashed (a baseline).
    pub dashed: bool,
}

/// Percentile curves on one axis, with an optional marker at a time (T).
pub struct Percentiles<'a> {
    /// Caption.
    pub caption: String,
    /// The curves.
    pub curves: Vec<Curve<'a>>,
    /// A horizontal line at this many ms (the service level's T).
    pub marker_ms: Option<f64>,
}

impl Drawable for Percentiles<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<()> {
        percentile_panel(root, &self.caption, &self.curves, self.marker_ms)
    }
}

fn percentile_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    caption: &str,
    curves: &[Curve<'_>],
    marker_ms: Option<f64>,
) -> DrawResult<()> {
    let count = curves.iter().map(|c| c.h.len()).max().unwrap_or(1) as f64;
    // whole decades, so that the axis labels fall on 90 %, 99 %, 99.9 %, …
    let x_max = count.log10().floor().clamp(1.0, 5.0);
    let top = |c: &Curve| c.h.value_at_quantile(1.0 - 10f64.powf(-x_max)) as f64 / 1e3;
    let max_ms = curves.iter().map(top).chain(marker_ms).fold(0.0, f64::max);
    let (div, unit) = time_unit(max_ms);
    let y_max = (max_ms / div * 1.08).max(1e-9);
    let mut chart = ChartBuilder::on(root)
        .caption(caption, (FONT, 17))
        .margin(10)
        .margin_right(36)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(err)?;
    note_axes(caption, (0.0, x_max), (0.0, y_max), false, 1.0 / div);
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc(format!("latency [{unit}]"))
        .y_label_formatter(&|y| trim_zero(*y))
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(err)?;
    if let Some(t) = marker_ms {
        let red = RGBColor(214, 39, 40);
        chart
            .draw_series(DashedLineSeries::new([(0.0, t / div), (x_max, t / div)], 6, 4, red.stroke_width(1)))
            .map_err(err)?
            .label(format!("T = {}", crate::scenario::units::human_ms(Some(t))))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], red.stroke_width(1)));
    }
    for c in curves {
        if c.h.is_empty() {
            continue;
        }
        let colour = c.colour;
        let points: Vec<(f64, f64)> = (0..=((x_max / 0.02) as usize))
            .map(|i| {
                let x = i as f64 * 0.02;
                let q = 1.0 - 10f64.powf(-x);
                (x, c.h.value_at_quantile(q) as f64 / 1e3 / div)
            })
            .collect();
        let style = colour.stroke_width(2);
        let drawn = if c.dashed {
            chart.draw_series(DashedLineSeries::new(points.clone(), 7, 5, style)).map_err(err)?
        } else {
            chart.draw_series(LineSeries::new(points.clone(), style)).map_err(err)?
        };
        let dashed = c.dashed;
        drawn.label(c.label.as_str()).legend(move |(x, y)| {
            // a dashed curve has a dashed key: two strokes with a gap
            let end = if dashed { x + 7 } else { x + 18 };
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (end - x, 0)], style)
                + PathElement::new(if dashed { vec![(11, 0), (18, 0)] } else { vec![] }, style)
        });
        for x in (0..=(x_max as usize * 2)).map(|i| i as f64 / 2.0) {
            let q = 1.0 - 10f64.powf(-x);
            let v = c.h.value_at_quantile(q) as f64 / 1e3;
            hover(
                &chart,
                (x, v / div),
                format!(
                    "{}: p{} = {}",
                    c.label,
                    percentile_label(x).trim_end_matches('%'),
                    crate::scenario::units::human_ms(Some(v))
                ),
            );
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn spectrum<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    run: &Measured,
    keys: &[&str],
    name: &str,
) -> DrawResult<()> {
    let curve = |k: &&str, i: usize| Curve {
        label: if k.starts_with("http.") { k.to_string() } else { latency_name(k) },
        h: &run.histograms[*k],
        colour: if k.starts_with("http.") { palette(i) } else { metric_colour(k) },
        dashed: false,
    };
    if keys.iter().any(|k| k.starts_with("http.")) {
        let curves: Vec<Curve> = keys.iter().enumerate().map(|(i, k)| curve(k, i)).collect();
        let areas = root.split_evenly((2, 1));
        return percentile_panel(&areas[0], &format!("HTTP latency by percentile — {name}"), &curves, None);
    }
    // queue wait is the service-level metric, seconds where replies take
    // minutes: it gets its own axis, with T marked
    let areas = root.split_evenly((2, 1));
    let t_ms = run.summary.scenario.service_level_s * 1e3;
    let qw: Vec<Curve> = keys.iter().filter(|k| **k == "queue_wait").map(|k| curve(k, 0)).collect();
    let rest: Vec<Curve> =
        keys.iter().filter(|k| **k != "queue_wait").enumerate().map(|(i, k)| curve(k, i)).collect();
    if !qw.is_empty() {
        percentile_panel(&areas[0], &format!("Queue wait by percentile — {name}"), &qw, Some(t_ms))?;
    }
    if !rest.is_empty() {
        percentile_panel(&areas[1], &format!("Response times by percentile — {name}"), &rest, None)?;
    }
    Ok(())
}

/// Integer labels for counts (`4000`, not `4000.0`).
fn count_label(v: &f64) -> String {
    if v.fract().abs() < 1e-9 { format!("{v:.0}") } else { String::new() }
}

fn histogram<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    run: &Measured,
    key: &str,
    name: &str,
) -> DrawResult<()> {
    let h = &run.histograms[key];
    // 60 bins up to the 99.9th percentile; the rest is one overflow bin
    let t_ms = run.summary.scenario.service_level_s * 1e3;
    let marker = (key == "queue_wait").then_some(t_ms);
    let top_ms = (h.value_at_quantile(0.999) as f64 / 1e3).max(marker.unwrap_or(0.0) * 1.02).max(1e-3);
    let (div, unit) = time_unit(top_ms);
    let bins = 60usize;
    let width = top_ms / bins as f64;
    let mut counts = vec![0u64; bins + 1];
    for v in h.iter_recorded() {
        let ms = v.value_iterated_to() as f64 / 1e3;
        let i = ((ms / width) as usize).min(bins);
        counts[i] += v.count_at_value();
    }
    let y_max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let colour = metric_colour(key);
    let x_max = (top_ms / div) * (1.0 + 1.0 / bins as f64);
    let caption = format!("Distribution of {} — {name}", latency_name(key));
    // a log axis: the bar of sessions answered at once would flatten the tail
    let y_top = y_max * 2.0;
    let mut chart = ChartBuilder::on(root)
        .caption(&caption, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, (0.7..y_top).log_scale())
        .map_err(err)?;
    note_axes(&caption, (0.0, x_max), (0.7, y_top), true, 1.0);
    chart
        .configure_mesh()
        .x_desc(format!("{} [{unit}] (last bar: beyond p99.9)", latency_name(key)))
        .y_desc(format!("{} (log scale)", counted(key)))
        .y_label_formatter(&count_label)
        .x_label_formatter(&|x| trim_zero(*x))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, &c)| {
            let x0 = i as f64 * width / div;
            let style = if i == bins { colour.mix(0.4).filled() } else { colour.filled() };
            Rectangle::new([(x0, 0.7), (x0 + width / div * 0.9, c as f64)], style)
        }))
        .map_err(err)?;
    for (i, &c) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
        let (a, b) = (i as f64 * width, (i + 1) as f64 * width);
        let range = if i == bins {
            format!("beyond {}", crate::scenario::units::human_ms(Some(a)))
        } else {
            format!(
                "{}–{}",
                crate::scenario::units::human_ms(Some(a)),
                crate::scenario::units::human_ms(Some(b))
            )
        };
        hover(&chart, ((a + b) / 2.0 / div, c as f64), format!("{range}: {c} {}", counted(key)));
    }
    if let Some(t) = marker {
        let red = RGBColor(214, 39, 40);
        chart
            .draw_series(DashedLineSeries::new([(t / div, 0.7), (t / div, y_top)], 6, 4, red.stroke_width(2)))
            .map_err(err)?
            .label(format!("T = {} (service level)", crate::scenario::units::human_ms(Some(t))))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], red.stroke_width(2)));
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    }
    Ok(())
}

/// Agents of each account with their sessions, sorted, most first.
fn agent_bars(s: &Summary) -> Vec<(usize, &crate::summary::AgentSummary, f64)> {
    let mut bars = Vec::new();
    for (ai, account) in s.fairness.keys().enumerate() {
        let agents: Vec<_> = s.agents.iter().filter(|a| &a.account == account && a.online_s > 0.0).collect();
        // The cap-limited ideal: sessions in proportion to slot-time online
        // (online time × 接待上限), what a perfectly even router would give.
        let total: f64 = agents.iter().map(|a| a.sessions as f64).sum();
        let slot_time = |a: &crate::summary::AgentSummary| a.online_s * f64::from(a.max_concurrent);
        let all_slots: f64 = agents.iter().map(|a| slot_time(a)).sum();
        let mut group: Vec<_> = agents
            .into_iter()
            .map(|a| (ai, a, if all_slots > 0.0 { total * slot_time(a) / all_slots } else { 0.0 }))
            .collect();
        group.sort_by(|a, b| b.1.sessions.cmp(&a.1.sessions).then(a.1.id.cmp(&b.1.id)));
        bars.extend(group);
    }
    bars
}

/// Most bars (and points) a per-agent chart draws: past it, runs of
/// consecutive agents of one account are drawn as one. A million agents
/// made a 280 MB SVG nobody could open.
pub const MAX_MARKS: usize = 1000;

/// The runs of `bars` drawn as one bar each: single agents while they fit
/// in [`MAX_MARKS`], else runs of up to k agents of one account. The bars
/// are sorted within an account, so a run's mean keeps the chart's shape.
fn runs<T>(bars: &[(usize, T, f64)]) -> Vec<std::ops::Range<usize>> {
    let k = bars.len().div_ceil(MAX_MARKS).max(1);
    let mut out = Vec::with_capacity(bars.len().min(2 * MAX_MARKS));
    let mut i = 0;
    while i < bars.len() {
        let mut j = i + 1;
        while j < bars.len() && j - i < k && bars[j].0 == bars[i].0 {
            j += 1;
        }
        out.push(i..j);
        i = j;
    }
    out
}

/// The mean of `f` over a run, and its least and greatest.
fn run_stats(r: &std::ops::Range<usize>, f: impl Fn(usize) -> f64) -> (f64, f64, f64) {
    let (mut sum, mut lo, mut hi) = (0.0, f64::INFINITY, f64::NEG_INFINITY);
    for i in r.clone() {
        let v = f(i);
        sum += v;
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (sum / r.len() as f64, lo, hi)
}

/// The middle of a run on the x axis.
fn mid(r: &std::ops::Range<usize>) -> f64 {
    (r.start + r.end) as f64 / 2.0
}

/// The agents of a run, for its hover text.
fn run_name(ids: &[String], r: &std::ops::Range<usize>) -> String {
    if r.len() == 1 {
        ids[r.start].clone()
    } else {
        format!("{}…{} ({} agents)", ids[r.start], ids[r.end - 1], r.len())
    }
}

/// Agent ids under bars: all of them when they fit, else every k-th.
fn id_label<'a>(ids: &'a [String], x: f64) -> String {
    let n = ids.len();
    let every = n.div_ceil(40).max(1);
    let i = x.floor();
    if i < 0.0 || (x - i - 0.5).abs() > 0.01 || i as usize >= n || (i as usize) % every != 0 {
        return String::new();
    }
    let id: &'a str = &ids[i as usize];
    // the number is what tells agents of a group apart
    id.rsplit('-').next().filter(|_| n > 12).unwrap_or(id).to_owned()
}

fn fairness_bars<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &Summary) -> DrawResult<()> {
    let bars = agent_bars(s);
    let n = bars.len().max(1);
    let ids: Vec<String> = bars.iter().map(|b| b.1.id.clone()).collect();
    let runs = runs(&bars);
    let sessions = |r: &std::ops::Range<usize>| run_stats(r, |i| bars[i].1.sessions as f64);
    let data_max = bars.iter().map(|b| (b.1.sessions as f64).max(b.2)).fold(1.0, f64::max);
    // headroom above the bars for the legend, so that it covers no data
    let y_max = data_max * 1.35;
    let caption = format!("Sessions per agent (sorted, by account) — {}", s.scenario.name);
    let mut chart = ChartBuilder::on(root)
        .caption(&caption, (FONT, 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n as f64, 0.0..y_max)
        .map_err(err)?;
    note_axes(&caption, (0.0, n as f64), (0.0, y_max), false, 1.0);
    // the numbers under the bars are within each agent's group: name the
    // groups (a run of several groups named only the first one's)
    let mut groups: Vec<&str> = s.agents.iter().map(|a| a.group.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    let named = match groups.len() {
        0 => String::new(),
        1..=3 => format!(" ({})", groups.iter().map(|g| format!("{g}-N…")).collect::<Vec<_>>().join(", ")),
        _ => " in its group".into(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(if n > 12 {
            format!("agent number{named}, most sessions first")
        } else {
            "agent, most sessions first".into()
        })
        .y_desc("sessions")
        .x_labels(n.min(40) * 2 + 1)
        .x_label_formatter(&|x| id_label(&ids, *x))
        .y_label_formatter(&count_label)
        .draw()
        .map_err(err)?;
    for (ai, account) in s.fairness.keys().enumerate() {
        let colour = palette(ai);
        let f = &s.fairness[account];
        let label = format!(
            "{account}: Jain {} · Gini {}",
            f.jain.map_or("—".into(), |v| format!("{v:.3}")),
            f.gini.map_or("—".into(), |v| format!("{v:.3}"))
        );
        chart
            .draw_series(runs.iter().filter(|r| bars[r.start].0 == ai).map(|r| {
                Rectangle::new(
                    [(r.start as f64 + 0.1, 0.0), (r.end as f64 - 0.1, sessions(r).0)],
                    colour.filled(),
                )
            }))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        let idx: Vec<usize> = (0..bars.len()).filter(|&i| bars[i].0 == ai).collect();
        if let (Some(&first), Some(&last)) = (idx.first(), idx.last()) {
            let mean = idx.iter().map(|&i| bars[i].1.sessions as f64).sum::<f64>() / idx.len() as f64;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(first as f64, mean), (last as f64 + 1.0, mean)],
                    BLACK.stroke_width(2),
                )))
                .map_err(err)?;
        }
    }
    for r in &runs {
        let (mean, lo, hi) = sessions(r);
        let many = if r.len() == 1 { format!("{mean}") } else { format!("{lo}–{hi}, mean {mean:.1}") };
        let ideal = run_stats(r, |i| bars[i].2).0;
        let text = format!("{}: {many} sessions (cap-limited ideal {ideal:.0})", run_name(&ids, r));
        hover(&chart, (mid(r), mean), text);
    }
    chart
        .draw_series(
            runs.iter().map(|r| Circle::new((mid(r), run_stats(r, |i| bars[i].2).0), 3, BLACK.filled())),
        )
        .map_err(err)?
        .label("cap-limited ideal (share of slot-time online)")
        .legend(|(x, y)| Circle::new((x + 6, y), 3, BLACK.filled()));
    chart
        .draw_series(std::iter::once(PathElement::new(vec![(0.0, -1.0), (0.0, -1.0)], BLACK.stroke_width(2))))
        .map_err(err)?
        .label("mean of the account")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2)));
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn assignment_histogram<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &Summary) -> DrawResult<()> {
    let all = || s.fairness.values().flat_map(|f| f.histogram.iter().map(|b| b.sessions));
    let (min_s, max_s) = (all().min().unwrap_or(0), all().max().unwrap_or(0));
    // zoomed to the sessions agents actually got, in integer bins
    let width = ((max_s - min_s) / 30 + 1).max(1);
    let lo = min_s / width * width;
    let nbins = ((max_s - lo) / width + 1) as usize;
    let mut counts: Vec<Vec<u64>> = Vec::new();
    for f in s.fairness.values() {
        let mut c = vec![0u64; nbins];
        for b in &f.histogram {
            c[((b.sessions - lo) / width) as usize] += b.agents;
        }
        counts.push(c);
    }
    let y_data = counts.iter().flat_map(|c| c.iter()).copied().max().unwrap_or(1).max(1) as f64;
    let y_max = (y_data * 1.35).ceil();
    let groups = counts.len().max(1) as f64;
    let (x0, x1) = (lo as f64 - width as f64 * 0.5, (lo + nbins as u64 * width) as f64 + width as f64 * 0.5);
    let caption = format!("How many agents got how many sessions — {}", s.scenario.name);
    let mut chart = ChartBuilder::on(root)
        .caption(&caption, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, 0.0..y_max)
        .map_err(err)?;
    note_axes(&caption, (x0, x1), (0.0, y_max), false, 1.0);
    chart
        .configure_mesh()
        .x_desc(if width == 1 {
            "sessions per agent".to_owned()
        } else {
            format!("sessions per agent (bins of {width})")
        })
        .y_desc("agents")
        .x_label_formatter(&count_label)
        .y_label_formatter(&count_label)
        .draw()
        .map_err(err)?;
    for (ai, (account, f)) in s.fairness.iter().enumerate() {
        let colour = palette(ai);
        let label = format!(
            "{account}: Jain {} · Gini {}",
            f.jain.map_or("—".into(), |v| format!("{v:.3}")),
            f.gini.map_or("—".into(), |v| format!("{v:.3}"))
        );
        let w = width as f64 / groups;
        chart
            .draw_series(counts[ai].iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, &c)| {
                let x0 = (lo + i as u64 * width) as f64 - width as f64 / 2.0 + ai as f64 * w;
                Rectangle::new([(x0 + w * 0.05, 0.0), (x0 + w * 0.95, c as f64)], colour.filled())
            }))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        for (i, &c) in counts[ai].iter().enumerate().filter(|(_, c)| **c > 0) {
            let a = lo + i as u64 * width;
            let range = if width == 1 { a.to_string() } else { format!("{a}–{}", a + width - 1) };
            hover(&chart, (a as f64, c as f64), format!("{account}: {c} agent(s) got {range} sessions"));
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn lorenz<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &Summary) -> DrawResult<()> {
    let caption = format!("Lorenz curve of sessions per online hour — {}", s.scenario.name);
    let mut chart = ChartBuilder::on(root)
        .caption(&caption, (FONT, 20))
        .margin(12)
        .margin_right(30)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..100.0, 0.0..100.0)
        .map_err(err)?;
    note_axes(&caption, (0.0, 100.0), (0.0, 100.0), false, 100.0);
    chart
        .configure_mesh()
        .x_desc("agents, fewest sessions per online hour first [% of agents]")
        .y_desc("share of sessions [%]")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (100.0, 100.0)],
            6,
            4,
            BLACK.mix(0.5).stroke_width(1),
        ))
        .map_err(err)?
        .label("perfectly even")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.5).stroke_width(1)));
    for (ai, (account, f)) in s.fairness.iter().enumerate() {
        let mut rates: Vec<f64> = s
            .agents
            .iter()
            .filter(|a| &a.account == account && a.online_s > 0.0)
            .map(|a| a.sessions as f64 / a.online_s)
            .collect();
        rates.sort_by(f64::total_cmp);
        let total: f64 = rates.iter().sum();
        if rates.is_empty() || total <= 0.0 {
            continue;
        }
        let n = rates.len() as f64;
        // the bound is on the chart: all accounts' curves together
        let every = s.agents.len().div_ceil(MAX_MARKS).max(1);
        let mut pts = vec![(0.0, 0.0)];
        let mut acc = 0.0;
        for (i, r) in rates.iter().enumerate() {
            acc += r;
            // every k-th point of a convex curve, and its end
            if (i + 1) % every == 0 || i + 1 == rates.len() {
                pts.push(((i + 1) as f64 / n * 100.0, acc / total * 100.0));
            }
        }
        let colour = palette(ai);
        chart
            .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)).point_size(2))
            .map_err(err)?
            .label(format!("{account}: Gini {}", f.gini.map_or("—".into(), |v| format!("{v:.3}"))))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        for p in pts.iter().skip(1) {
            hover(
                &chart,
                *p,
                format!("{account}: the {:.0}% of agents with the fewest hold {:.1}% of sessions", p.0, p.1),
            );
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn occupancy<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &Summary) -> DrawResult<()> {
    let bars = agent_bars(s);
    let n = bars.len().max(1);
    let ids: Vec<String> = bars.iter().map(|b| b.1.id.clone()).collect();
    let occ: Vec<f64> = bars.iter().map(|b| b.1.occupancy.unwrap_or(0.0) * 100.0).collect();
    let runs = runs(&bars);
    let caption = format!("Occupancy per agent (slot-time used / slot-time online) — {}", s.scenario.name);
    let mut chart = ChartBuilder::on(root)
        .caption(&caption, (FONT, 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n as f64, 0.0..118.0)
        .map_err(err)?;
    note_axes(&caption, (0.0, n as f64), (0.0, 118.0), false, 100.0);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("agent, in the order of the sessions chart")
        .y_desc("occupancy [%]")
        .x_labels(n.min(40) * 2 + 1)
        .x_label_formatter(&|x| id_label(&ids, *x))
        .y_label_formatter(&|v| if *v <= 100.0 { format!("{v:.0}") } else { String::new() })
        .draw()
        .map_err(err)?;
    for (ai, account) in s.fairness.keys().enumerate() {
        let colour = palette(ai);
        chart
            .draw_series(runs.iter().filter(|r| bars[r.start].0 == ai).map(|r| {
                Rectangle::new(
                    [(r.start as f64 + 0.1, 0.0), (r.end as f64 - 0.1, run_stats(r, |i| occ[i]).0)],
                    colour.filled(),
                )
            }))
            .map_err(err)?
            .label(account.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    for r in &runs {
        let (mean, lo, hi) = run_stats(r, |i| occ[i]);
        let many =
            if r.len() == 1 { format!("{mean:.1}%") } else { format!("{lo:.1}–{hi:.1}%, mean {mean:.1}%") };
        hover(&chart, (mid(r), mean), format!("{}: occupancy {many}", run_name(&ids, r)));
    }
    if let Some(all) = s.occupancy {
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, all * 100.0), (n as f64, all * 100.0)],
                6,
                4,
                BLACK.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("all agents {:.1}%", all * 100.0))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// The threshold of a gate on `path`, if the scenario has one.
fn gate_target(s: &Summary, path: &str) -> Option<(f64, String)> {
    s.gates
        .iter()
        .find(|g| g.path == path)
        .map(|g| (g.threshold, format!("gate {} {}", g.metric, g.condition)))
}

/// One statistic of a latency distribution.
type Stat = fn(&crate::summary::LatencyStats) -> Option<f64>;

fn by_entry<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, run: &Measured) -> DrawResult<()> {
    let s = &run.summary;
    let areas = root.split_evenly((2, 1));
    let names: Vec<&String> = s.by_entry.keys().collect();
    let n = names.len() as f64;
    let label = |x: &f64| {
        let i = x.floor();
        if (x - i - 0.5).abs() < 0.01 && i >= 0.0 {
            names.get(i as usize).map_or(String::new(), |s| s.to_string())
        } else {
            String::new()
        }
    };
    let sl: Vec<f64> = s.by_entry.values().map(|e| e.service_level.unwrap_or(0.0) * 100.0).collect();
    let target = gate_target(s, "service_level");
    let lo_data = sl.iter().copied().chain(target.as_ref().map(|t| t.0 * 100.0)).fold(100.0, f64::min);
    // zoomed below the lowest bar, so that entries can be told apart
    let y0 = ((lo_data - 10.0) / 10.0).floor().max(0.0) * 10.0;
    let caption = format!(
        "Service level by entry point (T = {})",
        crate::scenario::units::human_ms(Some(s.scenario.service_level_s * 1e3))
    );
    let mut chart = ChartBuilder::on(&areas[0])
        .caption(&caption, (FONT, 17))
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n, y0..100.0)
        .map_err(err)?;
    note_axes(&caption, (0.0, n), (y0, 100.0), false, 100.0);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len() * 2 + 1)
        .x_label_formatter(&label)
        .y_desc("service level [%]")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            sl.iter().enumerate().map(|(i, v)| {
                Rectangle::new([(i as f64 + 0.2, y0), (i as f64 + 0.8, *v)], palette(i).filled())
            }),
        )
        .map_err(err)?;
    for (i, (name, e)) in s.by_entry.iter().enumerate() {
        hover(
            &chart,
            (i as f64 + 0.5, sl[i]),
            format!("{name}: service level {:.2}% of {} offered", sl[i], e.sessions.offered),
        );
    }
    if let Some((t, text)) = target {
        let red = RGBColor(214, 39, 40);
        chart
            .draw_series(DashedLineSeries::new([(0.0, t * 100.0), (n, t * 100.0)], 6, 4, red.stroke_width(2)))
            .map_err(err)?
            .label(text)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], red.stroke_width(2)));
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    }
    // queue-wait percentiles per entry: p50, p90, p95, p99 side by side
    let stats: [(&str, Stat); 4] =
        [("p50", |l| l.p50), ("p90", |l| l.p90), ("p95", |l| l.p95), ("p99", |l| l.p99)];
    let max_ms =
        s.by_entry.values().filter_map(|e| e.queue_wait.p99).fold(s.scenario.service_level_s * 1e3, f64::max);
    let (div, unit) = time_unit(max_ms);
    let y_max = max_ms / div * 1.3;
    let caption = "Queue wait percentiles by entry point";
    let mut chart = ChartBuilder::on(&areas[1])
        .caption(caption, (FONT, 17))
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n, 0.0..y_max)
        .map_err(err)?;
    note_axes(caption, (0.0, n), (0.0, y_max), false, 1.0 / div);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len() * 2 + 1)
        .x_label_formatter(&label)
        .y_desc(format!("queue wait [{unit}]"))
        .draw()
        .map_err(err)?;
    let shade = [0.35, 0.55, 0.75, 1.0];
    for (k, (stat, get)) in stats.iter().enumerate() {
        let colour = metric_colour("queue_wait").mix(shade[k]).to_rgba().rgb_colour();
        chart
            .draw_series(s.by_entry.values().enumerate().filter_map(|(i, e)| {
                let v = get(&e.queue_wait)? / div;
                let x = i as f64 + 0.1 + k as f64 * 0.2;
                Some(Rectangle::new([(x, 0.0), (x + 0.18, v)], colour.filled()))
            }))
            .map_err(err)?
            .label(*stat)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        for (i, (name, e)) in s.by_entry.iter().enumerate() {
            if let Some(v) = get(&e.queue_wait) {
                hover(
                    &chart,
                    (i as f64 + 0.19 + k as f64 * 0.2, v / div),
                    format!("{name}: queue wait {stat} {}", crate::scenario::units::human_ms(Some(v))),
                );
            }
        }
    }
    let t = s.scenario.service_level_s * 1e3 / div;
    let red = RGBColor(214, 39, 40);
    chart
        .draw_series(DashedLineSeries::new([(0.0, t), (n, t)], 6, 4, red.stroke_width(1)))
        .map_err(err)?
        .label("T")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], red.stroke_width(1)));
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// How an over-time panel draws its x axis.
struct TimeAxis {
    div: f64,
    unit: &'static str,
    x_max: f64,
    warmup: f64,
    /// Where arrivals stop (the drain follows).
    arrivals_end: f64,
    interval_s: f64,
}

impl TimeAxis {
    fn new(d: &SeriesData, s: &Summary) -> TimeAxis {
        let n = d.answered.len().max(d.offered.len()).max(1);
        let span = n as f64 * d.interval_s;
        let (div, unit) = if span > 2.0 * 86_400.0 {
            (86_400.0, "d")
        } else if span > 3.0 * 3600.0 {
            (3600.0, "h")
        } else {
            (60.0, "min")
        };
        TimeAxis {
            div,
            unit,
            x_max: (span / div).max(1e-9),
            warmup: d.warmup_s / div,
            arrivals_end: (s.scenario.duration_s / div).min(span / div),
            interval_s: d.interval_s,
        }
    }

    fn x(&self, i: usize) -> f64 {
        (i as f64 + 0.5) * self.interval_s / self.div
    }

    fn clock(&self, x: f64) -> String {
        let s = x * self.div;
        format!("{}:{:02}", (s / 3600.0).floor() as u64, ((s % 3600.0) / 60.0).floor() as u64)
    }
}

/// One line of an over-time panel: label, values (gaps as `None`), colour, dashed.
type Line = (String, Vec<Option<f64>>, RGBColor, bool);

/// Line plot of series against interval times, with the warm-up and the
/// drain after the last arrival shaded, and optional horizontal targets.
// Each argument is a different part of the panel; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    t: &TimeAxis,
    title: &str,
    y_desc: &str,
    lines: &[Line],
    y_range: Option<(f64, f64)>,
    targets: &[(f64, String)],
    fmt: &dyn Fn(f64) -> String,
    shading_legend: bool,
) -> DrawResult<()> {
    let data_max = lines
        .iter()
        .flat_map(|s| s.1.iter().flatten())
        .chain(targets.iter().map(|t| &t.0))
        .copied()
        .fold(0.0, f64::max);
    let (y0, y1) = y_range.unwrap_or((0.0, (data_max * 1.08).max(1e-9)));
    let mut keys: Vec<(String, RGBColor, Key)> = Vec::new();
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 16))
        .margin(8)
        .margin_right(LEGEND_W)
        .x_label_area_size(32)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t.x_max, y0..y1)
        .map_err(err)?;
    note_axes(title, (0.0, t.x_max), (y0, y1), false, 1.0);
    chart
        .configure_mesh()
        .x_desc(format!("scenario time [{}]", t.unit))
        .y_desc(y_desc)
        .x_label_formatter(&|x| trim_zero(*x))
        .y_label_formatter(&|y| trim_zero(*y))
        .draw()
        .map_err(err)?;
    if t.warmup > 0.0 {
        let w = t.warmup.min(t.x_max);
        let drawn = chart
            .draw_series(std::iter::once(Rectangle::new([(0.0, y0), (w, y1)], BLACK.mix(0.07).filled())))
            .map_err(err)?;
        let _ = drawn;
        if shading_legend {
            keys.push(("warm-up (not counted)".into(), RGBColor(215, 215, 215), Key::Box));
        }
    }
    if t.arrivals_end < t.x_max - 1e-9 {
        let blue = RGBColor(31, 119, 180);
        let drawn = chart
            .draw_series(std::iter::once(Rectangle::new(
                [(t.arrivals_end, y0), (t.x_max, y1)],
                blue.mix(0.08).filled(),
            )))
            .map_err(err)?;
        let _ = drawn;
        if shading_legend {
            keys.push(("drain (after the last arrival)".into(), RGBColor(200, 220, 236), Key::Box));
        }
    }
    for (i, (value, text)) in targets.iter().enumerate() {
        let colour = if i == 0 { RGBColor(214, 39, 40) } else { RGBColor(120, 20, 20) };
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, *value), (t.x_max, *value)],
                6,
                4,
                colour.stroke_width(2),
            ))
            .map_err(err)?;
        keys.push((text.clone(), colour, Key::Dashed));
    }
    for (label, values, colour, dashed) in lines {
        let colour = *colour;
        let style = colour.stroke_width(2);
        // a gap (no sessions in an interval) breaks the line
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => runs.last_mut().expect("one run").push((t.x(i), *v)),
                None if !runs.last().expect("one run").is_empty() => runs.push(Vec::new()),
                None => {}
            }
        }
        let mut first = true;
        for r in runs.into_iter().filter(|r| !r.is_empty()) {
            let drawn = if *dashed {
                chart.draw_series(DashedLineSeries::new(r, 5, 4, style)).map_err(err)?
            } else {
                chart.draw_series(LineSeries::new(r, style)).map_err(err)?
            };
            let _ = drawn;
            if first {
                keys.push((label.clone(), colour, if *dashed { Key::Dashed } else { Key::Line }));
                first = false;
            }
        }
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                hover(
                    &chart,
                    (t.x(i), *v),
                    format!(
                        "{} ({}): {label} {}",
                        t.clock(t.x(i) - t.interval_s / t.div / 2.0),
                        crate::report::setting(t.interval_s),
                        fmt(*v)
                    ),
                );
            }
        }
    }
    side_legend(area, &keys)
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Key {
    Line,
    Dashed,
    Box,
}

/// A legend in the right margin of `area` (kept free by `LEGEND_W`), where
/// it covers no data.
fn side_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    keys: &[(String, RGBColor, Key)],
) -> DrawResult<()> {
    let (w, _) = area.dim_in_pixel();
    let x = w as i32 - LEGEND_W as i32 + 14;
    for (i, (label, colour, key)) in keys.iter().enumerate() {
        let y = 40 + i as i32 * 20;
        match key {
            Key::Line => area.draw(&PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))),
            Key::Dashed => {
                area.draw(&PathElement::new(vec![(x, y), (x + 7, y)], colour.stroke_width(2)))
                    .map_err(err)?;
                area.draw(&PathElement::new(vec![(x + 12, y), (x + 20, y)], colour.stroke_width(2)))
            }
            Key::Box => area.draw(&Rectangle::new([(x + 4, y - 6), (x + 16, y + 6)], colour.filled())),
        }
        .map_err(err)?;
        area.draw(&Text::new(label.clone(), (x + 26, y - 7), (FONT, 13))).map_err(err)?;
    }
    Ok(())
}

/// `1.0` → `1`, `2.5` → `2.5`.
fn trim_zero(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The series as drawn: intervals merged `k` at a time so that a day shows
/// about 64 points (a minute's service level is noise), rates from the
/// merged counts, levels as means, the p95 as the highest of the merged.
struct Binned {
    interval_s: f64,
    arrivals: Vec<(String, Vec<f64>)>,
    service_level: Vec<Option<f64>>,
    abandon_rate: Vec<Option<f64>>,
    queue_len: Vec<(String, Vec<f64>)>,
    slots_online: Vec<(String, Vec<f64>)>,
    slots_busy: Vec<(String, Vec<f64>)>,
    held_offline: Vec<(String, Vec<f64>)>,
    agents_online: Vec<(String, Vec<f64>)>,
    p95_ms: Vec<Option<f64>>,
}

/// How many recorded intervals make one drawn point: the smallest number
/// giving a planner's interval (1, 5, 10, 15, 30 min, 1, 2, 4, 12 h, 1 d)
/// and at most 72 points.
pub fn bin_factor(d: &SeriesData) -> usize {
    let n = d.answered.len().max(d.offered.len()).max(1);
    let iv = d.interval_s.max(1e-9);
    for nice in [60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0, 43_200.0, 86_400.0] {
        let k = (nice / iv).round().max(1.0) as usize;
        if n.div_ceil(k) <= 72 {
            return k;
        }
    }
    n.div_ceil(72).max(1)
}

fn bin(d: &SeriesData) -> Binned {
    let k = bin_factor(d);
    let sum = |v: &[u64]| v.chunks(k).map(|c| c.iter().sum::<u64>() as f64).collect::<Vec<_>>();
    let mean = |v: &[f64]| v.chunks(k).map(|c| c.iter().sum::<f64>() / c.len() as f64).collect::<Vec<_>>();
    let ratio = |a: &[u64], b: &[u64]| {
        sum(a).iter().zip(sum(b)).map(|(x, y)| (y > 0.0).then(|| x / y)).collect::<Vec<_>>()
    };
    let per_min = 60.0 / (d.interval_s * k as f64);
    let levels = |m: &std::collections::BTreeMap<String, Vec<f64>>| {
        m.iter().map(|(k2, v)| (k2.clone(), mean(v))).collect::<Vec<_>>()
    };
    Binned {
        interval_s: d.interval_s * k as f64,
        arrivals: d
            .arrivals
            .iter()
            .map(|(n, v)| (n.clone(), sum(v).iter().map(|c| c * per_min).collect()))
            .collect(),
        service_level: if d.offered.is_empty() {
            d.service_level.clone()
        } else {
            ratio(&d.within_t, &d.offered)
        },
        abandon_rate: if d.offered.is_empty() {
            d.abandon_rate.clone()
        } else {
            ratio(&d.abandoned_by_arrival, &d.offered)
        },
        queue_len: levels(&d.queue_len),
        slots_online: levels(&d.slots_online),
        slots_busy: levels(&d.slots_busy),
        held_offline: levels(&d.held_offline),
        agents_online: levels(&d.agents_online),
        p95_ms: d.queue_wait_p95_ms.chunks(k).map(|c| c.iter().flatten().copied().reduce(f64::max)).collect(),
    }
}

fn over_time<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, run: &Measured) -> DrawResult<()> {
    let (d, s) = (&run.series, &run.summary);
    let name = &s.scenario.name;
    let b = bin(d);
    let mut t = TimeAxis::new(d, s);
    t.interval_s = b.interval_s;
    let every = crate::report::setting(b.interval_s);
    let areas = root.split_evenly((5, 1));
    let some = |v: &[f64]| v.iter().map(|x| Some(*x)).collect::<Vec<_>>();
    let arrivals: Vec<Line> =
        b.arrivals.iter().enumerate().map(|(i, (k, v))| (k.clone(), some(v), palette(i), false)).collect();
    panel(
        &areas[0],
        &t,
        &format!("Arrivals per entry point (per {every}) — {name}"),
        "arrivals / min",
        &arrivals,
        None,
        &[],
        &|v| format!("{v:.1}/min"),
        true,
    )?;
    // service level and abandonment of the sessions that arrived in each interval
    let pct = |v: &[Option<f64>]| v.iter().map(|x| x.map(|x| x * 100.0)).collect::<Vec<_>>();
    let mut targets = Vec::new();
    if let Some((v, text)) = gate_target(s, "service_level") {
        targets.push((v * 100.0, text));
    }
    let abandons = s.sessions.abandoned > 0 || b.abandon_rate.iter().flatten().any(|v| *v > 0.0);
    if let Some((v, text)) = gate_target(s, "abandon_rate").filter(|_| abandons) {
        targets.push((v * 100.0, text));
    }
    let mut lines: Vec<Line> = vec![(
        format!("service level (within {})", crate::report::setting(s.scenario.service_level_s)),
        pct(&b.service_level),
        metric_colour("queue_wait"),
        false,
    )];
    if abandons {
        lines.push(("abandoned".into(), pct(&b.abandon_rate), metric_colour("abandon_wait"), false));
    }
    panel(
        &areas[1],
        &t,
        &format!("Service level and abandonment of the sessions arriving in each {every}"),
        "share of arrivals [%]",
        &lines,
        Some((0.0, 105.0)),
        &targets,
        &|v| format!("{v:.1}%"),
        false,
    )?;
    let queue: Vec<Line> =
        b.queue_len.iter().enumerate().map(|(i, (k, v))| (k.clone(), some(v), palette(i), false)).collect();
    panel(
        &areas[2],
        &t,
        &format!("Waiting pool (mean length per {every})"),
        "sessions waiting",
        &queue,
        None,
        &[],
        &|v| format!("{v:.1} waiting"),
        false,
    )?;
    let mut slots: Vec<Line> = Vec::new();
    for (i, (k, v)) in b.slots_online.iter().enumerate() {
        slots.push((format!("{k}: slots online"), some(v), palette(i), false));
        if let Some((_, busy)) = b.slots_busy.iter().find(|(n, _)| n == k) {
            slots.push((format!("{k}: slots in use"), some(busy), palette(i + 1), false));
        }
        if let Some((_, h)) = b.held_offline.iter().find(|(n, h)| n == k && h.iter().any(|x| *x > 0.0)) {
            slots.push((format!("{k}: held after going off line"), some(h), palette(i + 1), true));
        }
    }
    if slots.is_empty() {
        // a series.json written before slots were recorded
        for (i, (k, v)) in b.agents_online.iter().enumerate() {
            slots.push((format!("{k} online"), some(v), palette(i), false));
        }
    }
    panel(
        &areas[3],
        &t,
        &format!("Slots (agents × max_concurrent) online and in use (mean per {every})"),
        "slots",
        &slots,
        None,
        &[],
        &|v| format!("{v:.1}"),
        false,
    )?;
    let (div, unit) =
        time_unit(b.p95_ms.iter().flatten().copied().fold(s.scenario.service_level_s * 1e3, f64::max));
    let p95: Vec<Option<f64>> = b.p95_ms.iter().map(|v| v.map(|v| v / div)).collect();
    let tline = [(
        s.scenario.service_level_s * 1e3 / div,
        format!("T = {}", crate::report::setting(s.scenario.service_level_s)),
    )];
    let p95_title = if bin_factor(d) > 1 {
        format!(
            "p95 queue wait: highest of the {} intervals in each {every}",
            crate::report::setting(d.interval_s)
        )
    } else {
        "p95 queue wait of sessions assigned in each interval".to_owned()
    };
    panel(
        &areas[4],
        &t,
        &p95_title,
        &format!("p95 queue wait [{unit}]"),
        &[("queue wait p95".into(), p95, metric_colour("queue_wait"), false)],
        None,
        &tline,
        &|v| format!("{v:.1} {unit}"),
        false,
    )
}

trait RgbOf {
    fn rgb_colour(&self) -> RGBColor;
}

impl RgbOf for RGBAColor {
    /// The colour blended over white (SVG strokes here are opaque).
    fn rgb_colour(&self) -> RGBColor {
        let (r, g, b) = self.rgb();
        let a = self.alpha();
        let blend = |c: u8| (c as f64 * a + 255.0 * (1.0 - a)).round() as u8;
        RGBColor(blend(r), blend(g), blend(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(2f64.log10()), "50%");
        assert_eq!(percentile_label(0.0), "0%");
    }
}
