//! Every chart is rendered and its axes are held against the data it
//! draws: each axis holds every value, and is zoomed so that the values use
//! a fair share of it (no Jain's index of 0.996–0.999 on 0–1, no histogram
//! in a quarter of its width).

use kfsim::metrics::Measured;
use kfsim::report::charts::{self, Axes, Chart};
use kfsim::scenario::Scenario;

/// The quickstart as `kfsim run` reports it: simulated, its gates checked
/// (the charts draw them as target lines).
fn quickstart() -> Measured {
    let text = std::fs::read_to_string("scenarios/quickstart.toml").unwrap();
    let sc = Scenario::parse(&text, "quickstart.toml").unwrap();
    let mut run = kfsim::sim::simulate_measured(&sc, &mut |_| true);
    let gates = kfsim::gate::bind(&sc).unwrap();
    run.summary.gates = kfsim::gate::evaluate(&gates, &serde_json::to_value(&run.summary).unwrap());
    run
}

/// tests/data/reception.toml simulated: a bot in front of presale, which
/// transfers a share of its sessions to after-sales.
fn reception() -> Measured {
    let text = std::fs::read_to_string("tests/data/reception.toml").unwrap();
    let sc = Scenario::parse(&text, "reception.toml").unwrap();
    kfsim::sim::simulate_measured(&sc, &mut |_| true)
}

fn axes<'a>(c: &'a Chart, panel: &str) -> &'a Axes {
    c.axes
        .iter()
        .find(|a| a.panel.contains(panel))
        .unwrap_or_else(|| panic!("{}: no panel {panel:?} in {:?}", c.name, c.axes))
}

/// The y axis holds `lo..=hi` (display units) and the data span at least
/// `share` of the axis.
fn holds(a: &Axes, lo: f64, hi: f64, share: f64) {
    assert!(a.y.0 <= lo + 1e-9 && a.y.1 >= hi - 1e-9, "{}: y {:?} must hold {lo}..{hi}", a.panel, a.y);
    let (span, data) = if a.y_log {
        (a.y.1.log10() - a.y.0.log10(), hi.max(1.0).log10() - lo.max(a.y.0).log10())
    } else {
        (a.y.1 - a.y.0, hi - lo)
    };
    assert!(data >= share * span, "{}: the data ({lo}..{hi}) uses less than {share} of y {:?}", a.panel, a.y);
}

/// Every text of an SVG document, trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("SVG is XML");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_owned())
        .collect()
}

fn chart<'a>(all: &'a [Chart], name: &str) -> &'a Chart {
    all.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no chart {name}"))
}

#[test]
fn run_charts_axes_fit_their_data() {
    let run = quickstart();
    let all = charts::render_all(&run).unwrap();
    let (s, d) = (&run.summary, &run.series);
    for c in &all {
        assert!(!c.axes.is_empty(), "{} records its axes", c.name);
        assert!(c.svg.contains("<title>"), "{} has hover values", c.name);
        for a in &c.axes {
            assert!(a.x.0 < a.x.1 && a.y.0 < a.y.1, "{}: empty axis {a:?}", c.name);
        }
    }

    // over time: the drawn intervals, merged as the chart merges them
    let ot = chart(&all, "over-time");
    let k = charts::bin_factor(d);
    let end_h = d.offered.len() as f64 * d.interval_s / 3600.0;
    for a in &ot.axes {
        assert!(a.x.0 == 0.0 && (a.x.1 - end_h).abs() < 1e-9, "the whole run on x, in hours: {a:?}");
    }
    let per_min = 60.0 / (d.interval_s * k as f64);
    let arrivals_max = d
        .arrivals
        .values()
        .flat_map(|v| v.chunks(k).map(|c| c.iter().sum::<u64>() as f64 * per_min))
        .fold(0.0, f64::max);
    holds(axes(ot, "Arrivals"), 0.0, arrivals_max, 0.8);
    let sl = axes(ot, "Service level and abandonment");
    holds(sl, 0.0, 100.0, 0.9);
    let slots_max = d.slots_online.values().flatten().copied().fold(0.0, f64::max);
    assert!(slots_max >= 48.0 - 1e-9, "16 presale agents × 3 slots were online: {slots_max}");
    let in_use_max = d.slots_busy.values().flatten().copied().fold(0.0, f64::max);
    assert!(in_use_max <= slots_max + 1e-9, "no more slots in use than online");
    for (online, busy) in d.slots_online["presale"].iter().zip(&d.slots_busy["presale"]) {
        assert!(busy <= &(online + 1e-9), "in use {busy} > online {online} in an interval");
    }
    holds(axes(ot, "Slots"), 0.0, slots_max, 0.8);
    let p95_max = d.queue_wait_p95_ms.iter().flatten().copied().fold(0.0, f64::max) / 1e3;
    holds(axes(ot, "p95 queue wait"), 0.0, p95_max.max(s.scenario.service_level_s), 0.8);

    // latency by percentile: queue wait on its own axis, with T on it
    let sp = chart(&all, "latency-spectrum");
    let qw = &run.histograms["queue_wait"];
    let qa = axes(sp, "Queue wait by percentile");
    let top_s = qw.value_at_quantile(0.999) as f64 / 1e6;
    holds(qa, 0.0, top_s * qa.y_scale * 1e3, 0.85);
    assert!(qa.y.1 >= s.scenario.service_level_s * 1e3 * qa.y_scale, "T is on the queue-wait axis");
    let ra = axes(sp, "Response times by percentile");
    let fr = &run.histograms["first_response"];
    let decades = (fr.len() as f64).log10().floor().clamp(1.0, 5.0);
    let fr_top = fr.value_at_quantile(1.0 - 10f64.powf(-decades)) as f64 / 1e3;
    assert!(ra.y.1 >= fr_top * ra.y_scale, "{ra:?} vs first response {fr_top} ms");

    // queue-wait histogram: log counts, the zero bar and the tail both visible
    let hq = chart(&all, "histogram-queue_wait");
    let ha = axes(hq, "Distribution of queue wait");
    assert!(ha.y_log, "the queue-wait histogram counts on a log axis");
    let zero_bar = qw.count_between(0, (qw.value_at_quantile(0.999) / 60).max(1));
    holds(ha, 1.0, zero_bar as f64, 0.7);
    assert!(hq.svg.contains("T = 20.0s"), "T is marked on the queue-wait histogram");

    // fairness: every agent on x, sessions fill the height but leave the legend room
    let n = s.agents.iter().filter(|a| a.online_s > 0.0).count() as f64;
    let fb = chart(&all, "fairness-agents");
    let most = s.agents.iter().map(|a| a.sessions).max().unwrap() as f64;
    let fa = &fb.axes[0];
    assert_eq!(fa.x, (0.0, n));
    holds(fa, 0.0, most, 0.7);
    let texts = svg_texts(&fb.svg);
    for a in &s.agents {
        let number = a.id.rsplit('-').next().unwrap();
        assert!(texts.iter().any(|t| t == number), "agent {} is named on the axis: {texts:?}", a.id);
    }
    // how many agents got how many sessions: x zoomed to the sessions agents got
    let fh = &chart(&all, "fairness-histogram").axes[0];
    let got: Vec<u64> = s.agents.iter().map(|a| a.sessions).collect();
    let (lo, hi) = (*got.iter().min().unwrap() as f64, *got.iter().max().unwrap() as f64);
    assert!(fh.x.0 <= lo && fh.x.1 >= hi, "{fh:?} must hold {lo}..{hi}");
    assert!(
        hi - lo >= 0.6 * (fh.x.1 - fh.x.0),
        "the histogram uses most of its width: {fh:?} for {lo}..{hi}"
    );
    // occupancy per agent, on the whole percent scale (100 % is the
    // figure to read against), with little room above it for the legend
    let occ = &chart(&all, "occupancy-agents").axes[0];
    let top = s.agents.iter().filter_map(|a| a.occupancy).fold(0.0, f64::max) * 100.0;
    assert!(top > 0.0 && top <= 100.0 + 1e-9, "{top}");
    holds(occ, 0.0, 100.0, 0.8);
    assert_eq!(chart(&all, "fairness-lorenz").axes[0].y, (0.0, 100.0));

    // by entry: service levels on an axis zoomed below the lowest
    let be = chart(&all, "by-entry");
    let sls: Vec<f64> = s.by_entry.values().map(|e| e.service_level.unwrap() * 100.0).collect();
    let low = sls.iter().copied().fold(100.0, f64::min).min(75.0);
    holds(axes(be, "Service level by entry"), low, 100.0, 0.5);
    let qa = axes(be, "Queue wait percentiles by entry");
    let p99 = s.by_entry.values().filter_map(|e| e.queue_wait.p99).fold(0.0, f64::max);
    holds(qa, 0.0, p99 * qa.y_scale, 0.7);
}

#[test]
fn histograms_count_whole_sessions_and_name_what_they_count() {
    let run = quickstart();
    let all = charts::render_all(&run).unwrap();
    for (name, counted) in [
        ("histogram-queue_wait", "answered sessions"),
        ("histogram-reply", "replies"),
        ("histogram-abandon_wait", "abandoned sessions"),
    ] {
        let c = chart(&all, name);
        let texts = svg_texts(&c.svg);
        assert!(
            texts.iter().any(|t| t.starts_with(counted)),
            "{name}: y axis names what it counts: {texts:?}"
        );
        assert!(texts.iter().any(|t| t == "10"), "{name}: a log axis labelled in whole counts: {texts:?}");
        assert!(!texts.iter().any(|t| t.ends_with(".0") && t.parse::<f64>().is_ok()), "{name}: {texts:?}");
    }
}

/// A sweep of erlang-c.toml's agents over `range`, 3 replications of 6 h.
fn erlang_c_sweep(range: &str) -> kfsim::sweep::SweepResult {
    let text = std::fs::read_to_string("scenarios/erlang-c.toml").unwrap();
    let vary = [kfsim::sweep::Vary::parse(&format!("agents.kf.count={range}")).unwrap()];
    let grid = kfsim::sweep::grid(&vary).unwrap();
    let sets = vec!["duration=6h".to_string()];
    let scenarios: Vec<Scenario> =
        grid.iter().map(|p| kfsim::sweep::variant(&text, "e.toml", &sets, p).unwrap()).collect();
    let runs = kfsim::sweep::run(&scenarios, 3, true);
    let points: Vec<kfsim::sweep::Point> = grid
        .into_iter()
        .zip(&scenarios)
        .zip(&runs)
        .map(|((params, sc), r)| kfsim::sweep::Point {
            params,
            metrics: kfsim::sweep::estimate(r),
            theory: kfsim::theory::predict(sc),
            unstable: kfsim::theory::unstable(sc).is_some(),
        })
        .collect();
    kfsim::sweep::SweepResult {
        scenario: "erlang-c".into(),
        seed: 1,
        replications: 3,
        vary: vec!["agents.kf.count".into()],
        points,
        interrupted: None,
    }
}

#[test]
fn sweep_charts_zoom_fairness_and_show_minutes() {
    let r = erlang_c_sweep("44..50:2");
    let all = kfsim::report::sweep::charts(&r).unwrap();
    // every chart holds every interval and theory value it draws
    for c in &all {
        let metric = c.name.strip_prefix("sweep-").unwrap().replace('-', ".");
        let a = &c.axes[0];
        for p in &r.points {
            let e = p.metrics[&metric].unwrap();
            let th = p.theory.as_ref().and_then(|t| t.metric(&metric));
            for v in [e.lo, e.mean, e.hi].into_iter().chain(th) {
                let y = v * a.y_scale;
                assert!(a.y.0 <= y + 1e-9 && y <= a.y.1 + 1e-9, "{}: {y} outside {:?}", c.name, a.y);
            }
        }
        let xs: Vec<f64> = r.points.iter().map(|p| p.params[0].1.parse().unwrap()).collect();
        assert!(a.x.0 < xs[0] && a.x.1 > *xs.last().unwrap(), "{}: x {:?}", c.name, a.x);
    }
    let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    assert!(!names.contains(&"sweep-abandon_rate"), "nothing can abandon: no abandonment chart ({names:?})");
    let vals = |m: &str| -> Vec<f64> {
        r.points.iter().filter_map(|p| p.metrics[m]).flat_map(|e| [e.lo, e.hi]).collect()
    };
    let jain = &chart(&all, "sweep-fairness-kf-jain").axes[0];
    let j = vals("fairness.kf.jain");
    let (lo, hi) = (j.iter().copied().fold(1.0, f64::min), j.iter().copied().fold(0.0, f64::max));
    holds(jain, lo, hi, 0.3);
    assert!(jain.y.0 > 0.5, "Jain's index near 1 is not drawn on 0–1: {jain:?}");
    let sl = &chart(&all, "sweep-service_level").axes[0];
    let top = vals("service_level").into_iter().fold(0.0, f64::max) * 100.0;
    assert!(top <= 100.0, "no interval past 100 %");
    holds(sl, 0.0, top, 0.6);
    // its legend sits under the rising curves: no room above 100 % for it
    assert!(sl.y.1 <= 100.0, "a service level drawn up to {} %", sl.y.1);
    let fr = &chart(&all, "sweep-latency_ms-first_response-p95").axes[0];
    assert_eq!(fr.y_scale, 1.0 / 60_000.0, "first response in minutes");
    let fr_top = vals("latency_ms.first_response.p95").into_iter().fold(0.0, f64::max) / 60_000.0;
    holds(fr, 0.0, fr_top, 0.6);
}

/// 40 agents for 40 Erlangs is no queue that settles: its ASA of hours
/// beside the seconds of 48 agents lay those flat on zero on a linear axis.
#[test]
fn a_sweep_time_over_decades_is_drawn_on_a_log_axis() {
    let r = erlang_c_sweep("40..48:4");
    let all = kfsim::report::sweep::charts(&r).unwrap();
    let asa = &chart(&all, "sweep-asa_ms").axes[0];
    let secs: Vec<f64> = r
        .points
        .iter()
        .filter_map(|p| p.metrics["asa_ms"])
        .flat_map(|e| [e.lo, e.mean, e.hi])
        .map(|v| v * asa.y_scale)
        .collect();
    let (lo, hi) =
        secs.iter().filter(|v| **v > 0.0).fold((f64::INFINITY, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(hi > 100.0 * lo, "the sweep spans {lo}..{hi} s: not the case under test");
    assert!(asa.y_log, "{asa:?}");
    holds(asa, lo, hi, 0.5);
    assert!(svg_texts(&chart(&all, "sweep-asa_ms").svg).iter().any(|t| t == "ASA [s] (log scale)"));
    // a share stays on its linear 0–100 % axis whatever its span
    assert!(!chart(&all, "sweep-service_level").axes[0].y_log);
}

#[test]
fn plan_chart_holds_the_curve_and_the_target() {
    use kfsim::plan::{Outcome, PlanReport, Problem, Target, TargetInfo};
    let text = std::fs::read_to_string("scenarios/erlang-c.toml").unwrap();
    let base = Scenario::parse(&text, "erlang-c.toml").unwrap();
    let target = Target::parse("service_level>=0.8", &base).unwrap();
    let problem = Problem {
        text: &text,
        file: "erlang-c.toml",
        sets: vec!["duration=12h".into()],
        path: "agents.kf.count".into(),
        targets: vec![target.clone()],
        replications: 3,
        max_replications: 6,
        parallel: true,
    };
    let outcome = problem.solve(1).unwrap();
    let Outcome::Recommended(rec) = &outcome else { panic!("reachable") };
    let means: Vec<f64> =
        rec.curve.iter().filter_map(|e| e.metrics["service_level"]).map(|m| m.mean * 100.0).collect();
    let report = PlanReport {
        scenario: "erlang-c".into(),
        seed: 1,
        path: "agents.kf.count".into(),
        targets: vec![TargetInfo::from(&target)],
        replications: (3, 6),
        decided_at: kfsim::plan::decided_at(2),
        looks: vec![3, 6],
        knee: kfsim::plan::knee(&rec.curve, &target),
        outcome: Some(outcome.clone()),
        per_interval: Vec::new(),
    };
    let all = kfsim::report::plan::charts(&report).unwrap();
    let c = chart(&all, "plan-service_level");
    let a = &c.axes[0];
    let (lo, hi) = (means.iter().copied().fold(100.0, f64::min), means.iter().copied().fold(0.0, f64::max));
    holds(a, lo, hi.max(80.0), 0.8);
    let values: Vec<f64> = rec.curve.iter().map(|e| f64::from(e.value)).collect();
    assert!(a.x.0 <= values[0] && a.x.1 >= *values.last().unwrap(), "{a:?} vs {values:?}");
    let texts = svg_texts(&c.svg);
    assert!(texts.iter().any(|t| t == &format!("recommended: {}", rec.at.value)), "{texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("target service_level>=0.8")), "{texts:?}");
}

#[test]
fn compare_chart_holds_both_runs() {
    let text = std::fs::read_to_string("scenarios/quickstart.toml").unwrap();
    let run = |seed: &str| {
        let sc = Scenario::parse_with(&text, "q.toml", &[format!("seed={seed}")]).unwrap();
        kfsim::sim::simulate_measured(&sc, &mut |_| true)
    };
    let (a, b) = (run("7"), run("8"));
    let all = kfsim::report::compare::charts(
        Some(&a.histograms),
        Some(&b.histograms),
        "seed 7",
        "seed 8",
        Some(20_000.0),
    )
    .unwrap();
    let c = chart(&all, "compare-queue_wait");
    let ax = &c.axes[0];
    let top = |m: &Measured| {
        let h = &m.histograms["queue_wait"];
        let decades = (h.len() as f64).log10().floor().clamp(1.0, 5.0);
        h.value_at_quantile(1.0 - 10f64.powf(-decades)) as f64 / 1e3 * ax.y_scale
    };
    holds(ax, 0.0, top(&a).max(top(&b)), 0.85);
    let texts = svg_texts(&c.svg);
    assert!(
        texts.iter().any(|t| t == "queue wait — seed 7") && texts.iter().any(|t| t == "queue wait — seed 8")
    );
}

#[test]
fn the_flow_chart_of_a_run_with_a_bot_and_transfers() {
    let run = reception();
    let s = &run.summary;
    let all = charts::render_all(&run).unwrap();
    for c in &all {
        assert!(!c.axes.is_empty() && c.svg.contains("<title>"), "{}: axes and hover values", c.name);
    }
    let flow = chart(&all, "flow");
    // the entry points carry every counted session, and no column more
    // here (the pools count 1514 handles of 1862 sessions)
    assert_eq!(flow.axes[0].y, (0.0, s.sessions.offered as f64));
    assert_eq!(flow.axes[0].x, (0.0, 4.0), "five columns: entry, bot, pool, group, outcome");
    // each node is as big as the figure the tables show for it
    let doc = roxmltree::Document::parse(&flow.svg).unwrap();
    let node = |id: &str| -> u64 {
        doc.descendants()
            .find(|n| n.attribute("data-node") == Some(id))
            .unwrap_or_else(|| panic!("no node {id}"))
            .attribute("data-sessions")
            .unwrap()
            .parse()
            .unwrap()
    };
    for (name, e) in &s.by_entry {
        assert_eq!(node(&format!("entry:{name}")), e.sessions.offered, "entry {name}");
    }
    for (name, a) in &s.by_account {
        assert_eq!(node(&format!("account:{name}")), a.handles.offered, "pool of {name}");
    }
    for (name, g) in &s.by_group {
        assert_eq!(node(&format!("group:{name}")), g.handles, "group {name}");
    }
    let bot = s.bot.as_ref().unwrap();
    assert_eq!(node("bot:presale"), bot.sessions);
    assert_eq!(node("resolved"), bot.resolved);
    let ended: u64 = s.by_group.values().map(|g| g.ended).sum();
    assert_eq!(node("ended"), ended);
    // every label is text the viewer draws (no font needed to make the SVG)
    let texts = svg_texts(&flow.svg);
    for heading in ["entry point", "bot", "account's pool", "agent group", "outcome"] {
        assert!(texts.iter().any(|t| t == heading), "{heading:?}: {texts:?}");
    }
    assert!(texts.contains(&format!("resolved by the bot  {}", bot.resolved)), "{texts:?}");
    let png = png::Decoder::new(std::io::Cursor::new(&flow.png)).read_info().unwrap();
    assert_eq!(png.info().width, 900);
    // the numbers under the agents' bars count within their groups: the
    // axis names both groups (it named only the first agent's)
    let texts = svg_texts(&chart(&all, "fairness-agents").svg);
    let axis = "agent number (after-N…, pre-N…), most sessions first";
    assert!(texts.iter().any(|t| t == axis), "{texts:?}");
}

/// A million agents drew a bar, a dot and a hover point each (a 280 MB
/// SVG) and a table row each in report.html (770 MB). Past
/// `charts::MAX_MARKS` agents, runs of agents are drawn as one, and the
/// page lists the first `MAX_AGENT_ROWS`: the shape stays, the size is
/// bounded.
#[test]
fn per_agent_charts_and_the_page_stay_small_for_many_agents() {
    let mut run = quickstart();
    let seed = run.summary.agents.clone();
    let n = 30_000;
    run.summary.agents = (0..n)
        .map(|i| {
            let mut a = seed[i % seed.len()].clone();
            a.id = format!("{}-{i:05}", a.group);
            a.sessions = (i % 97) as u64;
            a
        })
        .collect();
    let all = charts::render_all(&run).unwrap();
    for name in ["fairness-agents", "occupancy-agents", "fairness-lorenz"] {
        let c = chart(&all, name);
        let hovers = c.svg.matches("<title>").count();
        assert!(
            hovers <= charts::MAX_MARKS + 2 * run.summary.fairness.len(),
            "{name}: {hovers} hover points"
        );
        assert!(c.svg.len() < 2_000_000, "{name}: {} bytes", c.svg.len());
    }
    // the axis is still sized by the busiest agent, not by a run's mean
    let bars = chart(&all, "fairness-agents");
    let y = axes(bars, "Sessions per agent");
    assert!(y.y.1 >= 96.0, "the busiest agents' run is on the axis: {y:?}");
    let page = kfsim::report::html::render(&run, &all, None);
    let rows = page.matches("<tr><td>").count();
    assert!(rows < kfsim::report::html::MAX_AGENT_ROWS + 100, "{rows} rows");
    assert!(page.contains(&format!("The first 1000 of {n} agents")), "the page says what it left out");
}
