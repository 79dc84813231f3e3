//! The run folder: writing every artefact of a run, and reading one back so
//! that `kfsim report DIR` can render again without running again; and the
//! folder of a sweep.
//!
//! Layout: `summary.json`, `series.json`, `histograms.json` (HDR V2-deflate,
//! base64, per latency), `charts/*.svg` and `*.png`, `report.html`, and with
//! `--export hgrm` the folder `hgrm/` with one `.hgrm` file per histogram.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::compare::Comparison;
use crate::files::{remove_stale, write_whole};
use crate::metrics::Measured;
use crate::sweep::SweepResult;

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_whole(path, |w| w.write_all(bytes))
}

/// Write `value` as pretty JSON and a newline, straight to the file: a
/// summary of a million agents is hundreds of megabytes of text, which a
/// buffer would hold beside the summary itself.
fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    write_whole(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value)?;
        w.write_all(b"\n")
    })
}

/// Make `dir` ready for a run's files: created, and without the
/// `summary.json` of an earlier run. The summary is written last
/// ([`write_summary`]), so a folder that has one is whole: a run killed
/// while writing leaves none, rather than an earlier run's summary beside
/// this run's series, which a comparison would read as one run.
///
/// What an earlier run wrote and this one may not write again goes too:
/// its baseline comparison (`kfsim report` read a stale one back and showed
/// its FAILED verdict beside the new figures), its shard file, its charts
/// (of entries or groups this run may not have) and exported histograms,
/// and the temporaries of a writer that was killed. Other files stay.
pub fn begin(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    remove_stale(&dir.join("summary.json"))?;
    remove_stale(&dir.join("comparison.json"))?;
    remove_stale(&dir.join(crate::merge::FILE))?;
    remove_ours(dir, &[])?;
    remove_ours(&dir.join("charts"), &[".svg", ".png"])?;
    remove_ours(&dir.join("hgrm"), &[".hgrm"])
}

/// Remove the files of `dir` (if it is there) named with one of `exts`,
/// and the temporaries of [`write_whole`] (`.NAME.PID.tmp`).
fn remove_ours(dir: &Path, exts: &[&str]) -> anyhow::Result<()> {
    let ours = |name: &str| {
        (name.starts_with('.') && name.ends_with(".tmp")) || exts.iter().any(|e| name.ends_with(e))
    };
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        r => r.with_context(|| format!("reading {}", dir.display()))?,
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && entry.file_name().to_str().is_some_and(&ours) {
            remove_stale(&entry.path())?;
        }
    }
    Ok(())
}

/// Write the series and histograms of a run into `dir` (after [`begin`]).
pub fn write_data(dir: &Path, run: &Measured) -> anyhow::Result<()> {
    write_json(&dir.join("series.json"), &run.series)?;
    let encoded: BTreeMap<&String, String> =
        run.histograms.iter().map(|(k, h)| (k, super::hgrm::to_base64(h))).collect();
    write_json(&dir.join("histograms.json"), &encoded)
}

/// Write `summary.json`, last of a run's files (see [`begin`]).
pub fn write_summary(dir: &Path, summary: &crate::summary::Summary) -> anyhow::Result<()> {
    write_json(&dir.join("summary.json"), summary)
}

/// Write the charts (`charts/*.svg`) and `report.html`, and keep the
/// baseline comparison (`comparison.json`) so the page can be rendered
/// again from the folder.
pub fn write_report(dir: &Path, run: &Measured, comparison: Option<&Comparison>) -> anyhow::Result<()> {
    let charts = super::charts::render_all(run).map_err(anyhow::Error::msg)?;
    let chart_dir = dir.join("charts");
    fs::create_dir_all(&chart_dir).with_context(|| format!("creating {}", chart_dir.display()))?;
    for c in &charts {
        write_file(&chart_dir.join(format!("{}.svg", c.name)), c.svg.as_bytes())?;
        write_file(&chart_dir.join(format!("{}.png", c.name)), &c.png)?;
    }
    if let Some(c) = comparison {
        write_json(&dir.join("comparison.json"), c)?;
    }
    write_file(&dir.join("report.html"), super::html::render(run, &charts, comparison).as_bytes())
}

/// The baseline comparison kept in a run folder, if the run had one.
pub fn read_comparison(dir: &Path) -> anyhow::Result<Option<Comparison>> {
    let path = dir.join("comparison.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = crate::files::read_json_text(&path)?;
    Ok(Some(
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a kfsim comparison", path.display()))?,
    ))
}

/// Write every histogram as `hgrm/NAME.hgrm`; returns the folder.
pub fn write_hgrm(dir: &Path, run: &Measured) -> anyhow::Result<PathBuf> {
    let out = dir.join("hgrm");
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for (name, h) in &run.histograms {
        let mut text = Vec::new();
        super::hgrm::percentile_distribution(h, &mut text)?;
        write_file(&out.join(format!("{name}.hgrm")), &text)?;
    }
    Ok(out)
}

/// The `summary.json` of a run folder, or `path` itself if it is not a
/// folder; a folder without one is named as such: its summary is written
/// last (see [`begin`]), so it may be a run that did not finish writing.
fn summary_file(path: &Path) -> anyhow::Result<std::path::PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let file = path.join("summary.json");
    anyhow::ensure!(
        file.exists(),
        "{} has no summary.json: not a run folder, or its run stopped before the report was whole",
        path.display()
    );
    Ok(file)
}

/// Read a run folder written by [`write_data`] and [`write_summary`].
pub fn read(dir: &Path) -> anyhow::Result<Measured> {
    summary_file(dir)?;
    let read_json = |name: &str| -> anyhow::Result<serde_json::Value> {
        let path = dir.join(name);
        let text = crate::files::read_json_text(&path)?;
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
    };
    let value = {
        let path = dir.join("summary.json");
        summary_json(&path, &crate::files::read_json_text(&path)?)?
    };
    if let Some((at, message)) = figure_error(&value) {
        anyhow::bail!("{} is not a kfsim summary: at `{at}`: {message}", dir.join("summary.json").display());
    }
    let summary = serde_json::from_value(value)
        .with_context(|| format!("{} is not a kfsim summary", dir.join("summary.json").display()))?;
    let series_path = dir.join("series.json");
    let text = crate::files::read_json_text(&series_path)?;
    let series = crate::series::SeriesData::from_json(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a kfsim series file: {e}", series_path.display()))?;
    let encoded: BTreeMap<String, String> = serde_json::from_value(read_json("histograms.json")?)
        .with_context(|| {
            format!("{} is not a kfsim histogram file", dir.join("histograms.json").display())
        })?;
    let histograms = crate::tally::decode_hists(encoded)
        .map_err(|e| anyhow::anyhow!("{}, {e}", dir.join("histograms.json").display()))?;
    Ok(Measured { summary, series, histograms })
}

/// The JSON of summary file `file`, its objects' keys each once.
fn summary_json(file: &Path, text: &str) -> anyhow::Result<serde_json::Value> {
    crate::files::parse_unique_keys(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            anyhow::anyhow!("{} is not a kfsim summary: {e}", file.display())
        }
        _ => anyhow::Error::new(e).context(format!("{} is not valid JSON", file.display())),
    })
}

/// The summary JSON of a run folder or of a summary file.
pub fn read_summary_value(path: &Path) -> anyhow::Result<serde_json::Value> {
    let file = summary_file(path)?;
    let mut value = summary_json(&file, &crate::files::read_json_text(&file)?)?;
    anyhow::ensure!(
        value.get("schema").and_then(|s| s.as_str()) == Some(crate::summary::SCHEMA),
        "{} is not a kfsim summary (schema {})",
        file.display(),
        crate::summary::SCHEMA
    );
    // A field of the wrong type would otherwise read as absent, and a
    // comparison would report it as gone (a regression, exit 1) instead of
    // refusing the file.
    if let Some((at, message)) = summary_error(&mut value) {
        let at = if at == "." { String::new() } else { format!("at `{at}`: ") };
        anyhow::bail!(
            "{} is not a kfsim summary: {at}{}",
            file.display(),
            crate::json_words::in_json_terms(&message)
        );
    }
    if let Some((at, message)) = figure_error(&value) {
        anyhow::bail!("{} is not a kfsim summary: at `{at}`: {message}", file.display());
    }
    Ok(value)
}

/// The longest time a summary holds [ms]: the simulator's horizon (a live
/// run's times are wall time, far shorter). Past it, shown as a duration, a
/// time saturated: a p95 of 1e308 read `307445734561825860h15m`.
const MAX_TIME_MS: f64 = crate::sim::HORIZON_US as f64 / 1e3;

/// How far a figure may stray past its range by rounding alone: Jain's
/// index of equal values comes out a few ulps above 1.
const ROUNDING: f64 = 1e-9;

/// Where a figure of a summary is one no run writes, and why: a share
/// outside 0 to 1, a figure below 0 (each is a time, a count, a rate or a
/// share), a time past [`MAX_TIME_MS`]. A negative service level and a
/// p95 of 1e308 were read as they stood and compared (found by probing).
/// The path is written as `summary_error` writes it (`agents[3].busy_s`).
fn figure_error(value: &serde_json::Value) -> Option<(String, String)> {
    figure_walk(value, &mut Vec::new()).or_else(|| {
        // serde reads an engine from `{"sim": null}` too, which was taken
        // for a live run's and spared the simulator's checks
        let engine = value.get("engine");
        if let Some(e) = engine.filter(|e| !e.is_string()) {
            return Some((
                "engine".into(),
                format!("{e} is not an engine's name: expected \"sim\" or \"live\""),
            ));
        }
        let sim = engine.and_then(serde_json::Value::as_str) == Some("sim");
        contradiction_walk(value, &mut Vec::new(), sim)
    })
}

/// Where two figures of one object contradict each other, though each is
/// in its range: a p50 above the p99, a latency of samples without its
/// p95, more sessions answered than offered, more queue waits than
/// sessions answered. Such a baseline was compared as it stood and failed
/// (or passed) a CI gate on figures no run wrote (found by probing). Only
/// what an engine guarantees whatever its target does is checked: a live
/// run counts what a target says ([`sessions_contradiction`]).
fn contradiction_walk<'a>(
    v: &'a serde_json::Value,
    at: &mut Vec<Seg<'a>>,
    sim: bool,
) -> Option<(String, String)> {
    use serde_json::Value;
    if let Value::Object(map) = v {
        let handles = matches!(at.last(), Some(Seg::Key("handles")));
        let here = latency_contradiction(map)
            .or_else(|| sessions_contradiction(map, sim, handles))
            .or_else(|| http_contradiction(map, at))
            .or_else(|| messages_contradiction(map, at));
        if let Some(message) = here {
            return Some((seg_path(at, false), message));
        }
        if let Some(found) = waits_contradiction(map, at) {
            return Some(found);
        }
        if let Some(message) = bot_contradiction(map) {
            return Some((seg_path(at, false), message));
        }
    }
    let mut under = |seg, child| {
        at.push(seg);
        let found = contradiction_walk(child, at, sim);
        at.pop();
        found
    };
    match v {
        Value::Object(map) => map.iter().find_map(|(k, c)| under(Seg::Key(k), c)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, c)| under(Seg::Index(i), c)),
        _ => None,
    }
}

/// The figures of a latency (`summary::LatencyStats`) after its `count`,
/// in the order a run's figures rise: each percentile is read off one
/// histogram and held to the exact max, and the mean is at most the max.
const LATENCY_FIGURES: [&str; 7] = ["mean", "p50", "p90", "p95", "p99", "p999", "max"];

/// What contradicts itself in `map` if it is a latency: a figure missing
/// beside samples or given without any, a percentile above a higher one
/// or the max, a mean above the max.
fn latency_contradiction(map: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let count = map.get("count")?.as_f64()?;
    if !LATENCY_FIGURES.iter().any(|k| map.contains_key(*k)) {
        return None;
    }
    let figure = |k: &str| map.get(k).and_then(serde_json::Value::as_f64);
    if count > 0.0 {
        if let Some(k) = LATENCY_FIGURES.iter().find(|k| figure(k).is_none()) {
            return Some(format!(
                "`{k}` is missing beside a count of {count}: a latency with samples has each of {}",
                LATENCY_FIGURES.join(", ")
            ));
        }
    } else {
        if let Some(k) = LATENCY_FIGURES.iter().find(|k| figure(k).is_some()) {
            return Some(format!("`{k}` is given beside a count of 0: a latency without samples has none"));
        }
        return None;
    }
    let shown = |k: &str| map.get(k).map(ToString::to_string).unwrap_or_default();
    // a few ulps of the mean's division, as in `ROUNDING`
    let above = |a: &str, b: &str| {
        let (x, y) = (figure(a).unwrap_or(0.0), figure(b).unwrap_or(0.0));
        x - y > ROUNDING * y.abs().max(1.0)
    };
    let ranked = &LATENCY_FIGURES[1..];
    if let Some(w) = ranked.windows(2).find(|w| above(w[0], w[1])) {
        return Some(format!(
            "{} {} is above {} {}: a latency's percentiles rise with their rank, up to its max",
            w[0],
            shown(w[0]),
            w[1],
            shown(w[1])
        ));
    }
    if above("mean", "max") {
        return Some(format!("mean {} is above max {}", shown("mean"), shown("max")));
    }
    None
}

/// What contradicts itself in `map` if it is session counts
/// (`summary::SessionCounts`, an account's `handles` if `handles`): each
/// session (or handle) offered ends one way at most, and those that
/// reached people are some of those offered. In a live run
/// (`metrics::Metrics::fold` counting what `live::customers` observes)
/// each session is still one of `offered`, ends once (a target's later,
/// contradicting word is its error) and reaches people once; but what
/// reached people is only what the driver saw reach them, and a handle may
/// end without having been offered to its account's people. A target may
/// assign a session its bot resolves; and against a middleware, which
/// plays the bot (`run --middleware`), the driver sees no hand-over, so an
/// account with a bot is offered nothing while its sessions end every way.
/// Of a live run's outcomes, only their sum beside the run's and each
/// entry's `offered` is checked.
fn sessions_contradiction(
    map: &serde_json::Map<String, serde_json::Value>,
    sim: bool,
    handles: bool,
) -> Option<String> {
    const ENDS: [&str; 4] = ["answered", "abandoned", "rejected", "unfinished"];
    let offered = map.get("offered")?.as_u64()?;
    let ends: Vec<u64> = ENDS.iter().map(|k| map.get(*k)?.as_u64()).collect::<Option<_>>()?;
    let sum = |which: &[usize]| {
        let total = which.iter().fold(0u128, |sum, &i| sum + u128::from(ends[i]));
        let terms: Vec<String> = which.iter().map(|&i| format!("{} {}", ENDS[i], ends[i])).collect();
        (total, terms.join(" + "))
    };
    let (ended, terms) = sum(&[0, 1, 2, 3]);
    if (sim || !handles) && ended > u128::from(offered) {
        return Some(format!(
            "{terms} is {ended}, more than offered {offered}: each session offered ends one way at most"
        ));
    }
    let people = map.get("to_people").and_then(serde_json::Value::as_u64)?;
    if people > offered {
        return Some(format!(
            "to_people {people} is more than offered {offered}: they are some of those offered"
        ));
    }
    // A rejection may come before people (the bot's session shed at
    // arrival); the other ends come only from people's queue.
    let (with_people, terms) = sum(&[0, 1, 3]);
    if sim && with_people > u128::from(people) {
        return Some(format!(
            "{terms} is {with_people}, more than to_people {people}: a session is answered, abandoned or \
             left waiting only once it reached people"
        ));
    }
    None
}

/// What contradicts itself in `map` if it is an endpoint of a live
/// run's `http` (`summary::HttpEndpoint`, at `at`): errors that are not
/// the sum of their kinds, or more errors than calls of an endpoint whose
/// every error is a failed call (`live::http::HttpStats::record`; others
/// count a batch's refused actions and a pull's notes that break the
/// protocol, [`crate::live::http::ERRORS_BEYOND_CALLS`]).
fn http_contradiction(map: &serde_json::Map<String, serde_json::Value>, at: &[Seg<'_>]) -> Option<String> {
    let [Seg::Key("http"), Seg::Key(endpoint)] = at else { return None };
    let errors = map.get("errors")?.as_u64()?;
    if let Some(kinds) = map.get("errors_by_kind").and_then(serde_json::Value::as_object) {
        let by_kind =
            kinds.values().filter_map(serde_json::Value::as_u64).fold(0u128, |s, n| s + u128::from(n));
        if by_kind != u128::from(errors) {
            return Some(format!("errors {errors} is not the sum of errors_by_kind, {by_kind}"));
        }
    }
    let calls = map.get("count")?.as_u64()?;
    if errors > calls && !crate::live::http::ERRORS_BEYOND_CALLS.contains(endpoint) {
        return Some(format!(
            "errors {errors} is more than calls (count) {calls}: each error of {endpoint} is a call that \
             failed"
        ));
    }
    None
}

/// What contradicts itself in `map` if it is a live run's `messages`
/// (`summary::MessageCounts`): more delivered than sent. A message is
/// counted delivered when an agent first sees it, and sent when it is
/// first known taken, at the latest in that same step (`live::agents`).
fn messages_contradiction(
    map: &serde_json::Map<String, serde_json::Value>,
    at: &[Seg<'_>],
) -> Option<String> {
    if !matches!(at, [Seg::Key("messages")]) {
        return None;
    }
    let count = |k: &str| map.get(k).and_then(serde_json::Value::as_u64);
    let (sent, delivered) = (count("sent")?, count("delivered")?);
    (delivered > sent).then(|| {
        format!(
            "delivered {delivered} is more than sent {sent}: a message an agent saw was one the target took"
        )
    })
}

/// Where the waits beside session counts in `map` (a summary's
/// `latency_ms` and `sessions`, an entry's `queue_wait` and `sessions`, an
/// account's `queue_wait` and `handles`) are more than the sessions they
/// are waits of, and why. A wait is recorded in the step that counts its
/// session (`metrics::Metrics::fold`), in a live run as in the simulator,
/// so this holds for both engines, whatever a target says.
fn waits_contradiction<'a>(
    map: &'a serde_json::Map<String, serde_json::Value>,
    at: &mut Vec<Seg<'a>>,
) -> Option<(String, String)> {
    use serde_json::Value;
    let (counts_key, counts) =
        ["sessions", "handles"].into_iter().find_map(|k| Some((k, map.get(k)?.as_object()?)))?;
    let (holder, latencies) = match map.get("latency_ms").and_then(Value::as_object) {
        Some(l) => (Some("latency_ms"), l),
        None => (None, map),
    };
    for (wait, end) in [("queue_wait", "answered"), ("abandon_wait", "abandoned")] {
        let count = latencies.get(wait).and_then(|w| w.get("count")).and_then(Value::as_u64);
        let ended = counts.get(end).and_then(Value::as_u64);
        let (Some(count), Some(ended)) = (count, ended) else { continue };
        if count > ended {
            let depth = at.len();
            at.extend(holder.map(Seg::Key));
            at.push(Seg::Key(wait));
            let path = seg_path(at, false);
            at.truncate(depth);
            return Some((
                path,
                format!(
                    "count {count} is more than `{counts_key}.{end}` {ended} beside it: a run measures \
                     one {wait} for each session {end}, and no other"
                ),
            ));
        }
    }
    None
}

/// What contradicts itself in `map` if it is a bot's figures
/// (`summary::BotSummary`): more times in the bot than sessions it
/// resolved or handed over (each is recorded in the step that counts its
/// session, in either engine), or more sessions that left it than went to
/// it. A live run counts the target's first word of how a session left the
/// bot and a later one as the target's error (`live::customers`), so this
/// holds for both engines whatever a target says; a summary of an older
/// kfsim that broke it is refused.
fn bot_contradiction(map: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let count = |k: &str| map.get(k).and_then(serde_json::Value::as_u64);
    let (resolved, handed_over) = (count("resolved")?, count("handed_over")?);
    let left = u128::from(resolved) + u128::from(handed_over);
    let timed = map.get("time_in_bot").and_then(|t| t.get("count")).and_then(serde_json::Value::as_u64);
    if let Some(timed) = timed
        && u128::from(timed) > left
    {
        return Some(format!(
            "time_in_bot.count {timed} is more than resolved {resolved} + handed_over {handed_over}: a run \
             measures one time in the bot for each session that left it"
        ));
    }
    let (sessions, rejected) = (count("sessions")?, count("rejected").unwrap_or(0));
    if left + u128::from(rejected) > u128::from(sessions) {
        return Some(format!(
            "resolved {resolved} + handed_over {handed_over} + rejected {rejected} is more than sessions \
             {sessions}: each session of the bot's leaves it one way at most"
        ));
    }
    None
}

/// A segment of a path into a summary's JSON.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// `at` as `summary_error` writes a path (`agents[3].busy_s`), or
/// `dotted` as a gate names a metric (`agents.3.busy_s`).
fn seg_path(at: &[Seg<'_>], dotted: bool) -> String {
    let mut s = String::new();
    for seg in at {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => s.extend([".", k]),
            Seg::Index(i) if dotted && !s.is_empty() => s.push_str(&format!(".{i}")),
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// [`figure_error`] under `at`.
fn figure_walk<'a>(v: &'a serde_json::Value, at: &mut Vec<Seg<'a>>) -> Option<(String, String)> {
    use serde_json::Value;
    let mut under = |seg, child| {
        at.push(seg);
        let found = figure_walk(child, at);
        at.pop();
        found
    };
    match v {
        Value::Number(n) => {
            let x = n.as_f64()?;
            figure_judged(at, x, n).map(|message| (seg_path(at, false), message))
        }
        Value::Object(map) => map.iter().find_map(|(k, c)| under(Seg::Key(k), c)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, c)| under(Seg::Index(i), c)),
        _ => None,
    }
}

/// What is wrong with the figure `x` at `at`, `number` as read, if
/// anything.
fn figure_judged(at: &[Seg<'_>], x: f64, number: &serde_json::Number) -> Option<String> {
    use crate::gate::{MetricUnit, is_share, unit_of};
    // as JSON writes it (`1e+308`), not as f64 prints it (309 digits)
    let shown = || serde_json::Value::Number(number.clone()).to_string();
    if !x.is_finite() {
        return Some(format!("{} is not a finite number", shown()));
    }
    if x < -ROUNDING {
        return Some(format!("{} is below 0, which no figure of a summary is", shown()));
    }
    if x <= 1.0 + ROUNDING {
        return None;
    }
    // a path is made only for a figure it may be wrong for: most are not
    let last = match at.last() {
        Some(Seg::Key(k)) => *k,
        _ => "",
    };
    if (is_share(last) || last == "rate") && is_share(&seg_path(at, true)) {
        return Some(format!("{} is not a share, which is from 0 to 1", shown()));
    }
    if x <= MAX_TIME_MS / 1e3 {
        return None;
    }
    let (unit, max) = match unit_of(&seg_path(at, true)) {
        MetricUnit::Ms if x > MAX_TIME_MS => ("ms", MAX_TIME_MS),
        MetricUnit::S => ("s", MAX_TIME_MS / 1e3),
        _ => return None,
    };
    Some(format!(
        "{} {unit} is longer than any run: a time is at most {max:e} {unit} (the simulator's horizon, \
         some 146 000 years)",
        shown()
    ))
}

/// Where and why `value` does not read as a summary: the first error
/// reading it as a `Summary` meets. Its agents are checked one at a time
/// beside the rest, not read all at once: a million typed agents beside
/// the JSON that holds them doubled what a comparison holds.
fn summary_error(value: &mut serde_json::Value) -> Option<(String, String)> {
    use crate::summary::{AgentSummary, Summary};
    let whole = |v: &serde_json::Value| {
        serde_path_to_error::deserialize::<_, Summary>(v)
            .err()
            .map(|e| (e.path().to_string(), e.inner().to_string()))
    };
    let agents = match value.get_mut("agents") {
        Some(serde_json::Value::Array(agents)) => std::mem::take(agents),
        _ => return whole(value),
    };
    let rest = whole(value);
    value["agents"] = serde_json::Value::Array(agents);
    // a summary reads its keys in their order, sorted as a JSON map's are:
    // a mistake under a key before `agents` is met first, one elsewhere or
    // a missing field (at `.`, found at the end) after the agents'
    let first_key = |at: &str| at.split(['.', '[']).next().unwrap_or("").to_owned();
    if let Some((at, message)) = &rest
        && at != "."
        && first_key(at).as_str() < "agents"
    {
        return Some((at.clone(), message.clone()));
    }
    let agents = value["agents"].as_array().map(Vec::as_slice).unwrap_or_default();
    let in_agents = agents.iter().enumerate().find_map(|(i, a)| {
        serde_path_to_error::deserialize::<_, AgentSummary>(a).err().map(|e| {
            let inner = e.path().to_string();
            let at = match inner.as_str() {
                "." => format!("agents[{i}]"),
                _ if inner.starts_with('[') => format!("agents[{i}]{inner}"),
                _ => format!("agents[{i}].{inner}"),
            };
            (at, e.inner().to_string())
        })
    });
    in_agents.or(rest)
}

/// What a baseline or compared run brings: its summary JSON and, when
/// they lie beside it (a run folder, or a summary.json in one), its series
/// and histograms, which `compare` uses to tell change from seed noise.
pub struct RunFiles {
    /// The summary.
    pub summary: serde_json::Value,
    /// `series.json`, if readable.
    pub series: Option<crate::series::SeriesData>,
    /// `histograms.json`, decoded, if readable.
    pub histograms: Option<BTreeMap<String, hdrhistogram::Histogram<u64>>>,
    /// Files beside the summary that are there and do not read, each with
    /// why: the comparison goes on without them, and says so.
    pub unread: Vec<(PathBuf, String)>,
}

impl RunFiles {
    /// The side of a comparison these files make.
    pub fn side(&self) -> crate::compare::Side<'_> {
        crate::compare::Side {
            summary: &self.summary,
            series: self.series.as_ref(),
            histograms: self.histograms.as_ref(),
        }
    }
}

/// Read a run folder or a summary file, with what lies beside it.
pub fn read_run_files(path: &Path) -> anyhow::Result<RunFiles> {
    let summary = read_summary_value(path)?;
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let mut unread = Vec::new();
    let series = companion(&dir.join("series.json"), &mut unread, crate::series::SeriesData::from_json);
    let histograms = companion(&dir.join("histograms.json"), &mut unread, |t| {
        let texts: BTreeMap<String, String> = serde_json::from_str(t).map_err(|e| e.to_string())?;
        crate::tally::decode_hists(texts)
    });
    Ok(RunFiles { summary, series, histograms, unread })
}

/// Why the files of `sides` that do not read do not, each file once: a
/// folder compared with itself, or with its own summary.json, has one set
/// of files, and a broken one was named twice (found by probing).
pub fn unread_once<'a>(sides: &[&'a RunFiles]) -> Vec<&'a str> {
    let mut seen = std::collections::BTreeSet::new();
    sides
        .iter()
        .flat_map(|side| &side.unread)
        .filter(|(path, _)| seen.insert(fs::canonicalize(path).unwrap_or_else(|_| path.clone())))
        .map(|(_, why)| why.as_str())
        .collect()
}

/// A file beside a summary, read by `parse`: `None` if it is not there, or
/// if it does not read (why, in `unread`).
fn companion<T>(
    path: &Path,
    unread: &mut Vec<(PathBuf, String)>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let text = match crate::files::read_json_text(path) {
        Ok(t) => t,
        Err(e)
            if e.root_cause()
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
        {
            return None;
        }
        Err(e) => {
            unread.push((path.to_path_buf(), format!("{e:#}")));
            return None;
        }
    };
    let why = |e| (path.to_path_buf(), format!("{} does not read: {e}", path.display()));
    parse(&text).map_err(|e| unread.push(why(e))).ok()
}

/// Write a sweep's folder: `sweep.json`, `sweep.csv`, its charts and
/// `sweep.html`.
pub fn write_sweep(out: &Path, r: &SweepResult) -> anyhow::Result<()> {
    let charts = super::sweep::charts(r).map_err(anyhow::Error::msg)?;
    let chart_dir = out.join("charts");
    std::fs::create_dir_all(&chart_dir).with_context(|| format!("creating {}", chart_dir.display()))?;
    let json = out.join("sweep.json");
    remove_stale(&json)?;
    write_file(&out.join("sweep.csv"), super::sweep::csv(r).as_bytes())?;
    for c in &charts {
        write_file(&chart_dir.join(format!("{}.svg", c.name)), c.svg.as_bytes())?;
        write_file(&chart_dir.join(format!("{}.png", c.name)), &c.png)?;
    }
    write_file(&out.join("sweep.html"), super::sweep::html(r, &charts).as_bytes())?;
    // last, as a run's summary.json (see [`begin`])
    write_json(&json, r)
}

/// Write a plan's folder: `plan.json`, its charts and `plan.html`.
pub fn write_plan(out: &Path, plan: &crate::plan::PlanReport) -> anyhow::Result<()> {
    let charts = super::plan::charts(plan).map_err(anyhow::Error::msg)?;
    write_pages(out, "plan", plan, &charts, super::plan::html(plan, &charts).as_bytes())
}

/// `NAME.json`, `charts/*.svg` and `.png`, and `NAME.html` in `out`.
fn write_pages<T: serde::Serialize>(
    out: &Path,
    name: &str,
    json: &T,
    charts: &[super::charts::Chart],
    html: &[u8],
) -> anyhow::Result<()> {
    let chart_dir = out.join("charts");
    fs::create_dir_all(&chart_dir).with_context(|| format!("creating {}", chart_dir.display()))?;
    let json_path = out.join(format!("{name}.json"));
    remove_stale(&json_path)?;
    for c in charts {
        write_file(&chart_dir.join(format!("{}.svg", c.name)), c.svg.as_bytes())?;
        write_file(&chart_dir.join(format!("{}.png", c.name)), &c.png)?;
    }
    write_file(&out.join(format!("{name}.html")), html)?;
    write_json(&json_path, json)
}

/// Write `compare.html` and its charts into `out`.
pub fn write_comparison_page(
    out: &Path,
    base: &RunFiles,
    cur: &RunFiles,
    c: &Comparison,
) -> anyhow::Result<()> {
    let label = |r: &RunFiles| {
        let f =
            |p: &str| r.summary.pointer(p).map_or("?".into(), |v| v.to_string().trim_matches('"').to_owned());
        format!("{} · {} · seed {}", f("/scenario/name"), f("/engine"), f("/seed"))
    };
    let (bl, cl) = (label(base), label(cur));
    let t_ms =
        cur.summary.pointer("/scenario/service_level_s").and_then(serde_json::Value::as_f64).map(|s| s * 1e3);
    let charts = super::compare::charts(base.histograms.as_ref(), cur.histograms.as_ref(), &bl, &cl, t_ms)
        .map_err(anyhow::Error::msg)?;
    write_pages(out, "compare", c, &charts, super::compare::html(c, &bl, &cl, &charts).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files are streamed to disk; their bytes are still those of the
    /// JSON built in memory (pretty, with a final newline), which readers
    /// and diffs of earlier folders rely on.
    #[test]
    fn streamed_files_are_the_pretty_json_they_were() {
        let text = r#"
name = "t"
seed = 2
duration = "1h"
[[account]]
name = "a"
[[agents]]
count = 3
reply_delay = { dist = "exponential", mean = "20s" }
[[entry]]
scene = "web"
rate = "1/min"
"#;
        let sc = crate::scenario::Scenario::parse(text, "t.toml").unwrap();
        let run = crate::sim::simulate_measured(&sc, &mut |_| true);
        let dir = std::env::temp_dir().join(format!("kfsim-folder-{}", std::process::id()));
        begin(&dir).unwrap();
        write_data(&dir, &run).unwrap();
        write_summary(&dir, &run.summary).unwrap();
        let encoded: BTreeMap<&String, String> =
            run.histograms.iter().map(|(k, h)| (k, super::super::hgrm::to_base64(h))).collect();
        for (file, want) in [
            ("summary.json", pretty(&run.summary)),
            ("series.json", pretty(&run.series)),
            ("histograms.json", pretty(&encoded)),
        ] {
            assert_eq!(fs::read_to_string(dir.join(file)).unwrap(), want, "{file}");
        }
        let _ = fs::remove_dir_all(&dir);
    }

    /// A figure no run writes is refused, named by its path: a share out
    /// of 0 to 1, anything below 0, a time past the simulator's horizon.
    /// Rounding's few ulps, a share that may pass 1 and a large count are
    /// not.
    #[test]
    fn figures_no_run_writes_are_refused() {
        use serde_json::json;
        let error = |v: serde_json::Value| figure_error(&v).map(|(at, m)| format!("{at}: {m}"));
        for (bad, want) in [
            (json!({"service_level": -0.5}), "service_level: -0.5 is below 0"),
            (json!({"asa_ms": -100.0}), "asa_ms: -100.0 is below 0"),
            (json!({"sessions": {"offered": -1}}), "sessions.offered: -1 is below 0"),
            (
                json!({"by_entry": {"web": {"service_level": 1.5}}}),
                "by_entry.web.service_level: 1.5 is not a share",
            ),
            (json!({"sticky": {"rate": 2}}), "sticky.rate: 2 is not a share"),
            (json!({"fairness": {"kf": {"gini": 1.01}}}), "fairness.kf.gini: 1.01 is not a share"),
            (
                json!({"latency_ms": {"queue_wait": {"p95": 1e308}}}),
                "latency_ms.queue_wait.p95: 1e+308 ms is longer",
            ),
            (json!({"agents": [{"busy_s": 1.0}, {"busy_s": 1e300}]}), "agents[1].busy_s: 1e+300 s is longer"),
            (json!({"http": {"open_channel": {"p99": 1e20}}}), "http.open_channel.p99: 1e+20 ms is longer"),
        ] {
            let e = error(bad.clone()).unwrap_or_else(|| panic!("{bad} was accepted"));
            assert!(e.starts_with(want), "{bad}: {e}");
        }
        for fine in [
            json!({"fairness": {"kf": {"jain": 1.0000000000000024, "gini": -1e-17, "cv": 3.5}}}),
            json!({"occupancy": 1.5, "http": {"x": {"error_rate": 2.0, "count": 1e18}}}),
            json!({"sessions": {"offered": 4_000_000_000_000_000u64}, "seed": u64::MAX}),
            json!({"latency_ms": {"session": {"max": 4.6e15}}, "run": {"end_s": 4.6e12}}),
            json!({"service_level": null, "scenario": {"name": "x"}, "rate": 7}),
        ] {
            assert_eq!(error(fine.clone()), None, "{fine}");
        }
    }

    /// Figures that contradict each other are refused, named by the
    /// object that holds them; those of real runs are not, nor counts
    /// that a live run (counting what its target says) may have.
    #[test]
    fn figures_that_contradict_each_other_are_refused() {
        use serde_json::json;
        let error = |v: serde_json::Value| figure_error(&v).map(|(at, m)| format!("{at}: {m}"));
        let latency = |p50: f64, p99: f64| json!({"count": 10, "mean": 5.0, "p50": p50, "p90": 7.0, "p95": 8.0, "p99": p99, "p999": 9.5, "max": 10.0});
        let sessions = |answered: u64| json!({"offered": 100, "answered": answered, "abandoned": 10, "rejected": 0, "unfinished": 1});
        for (bad, want) in [
            (
                json!({"latency_ms": {"queue_wait": latency(1e6, 9.0)}}),
                "latency_ms.queue_wait: p50 1000000.0 is above p90 7.0",
            ),
            (
                json!({"by_entry": {"web": {"queue_wait": latency(1.0, 11.0)}}}),
                "by_entry.web.queue_wait: p99 11.0 is above p999",
            ),
            (
                json!({"latency_ms": {"reply": {"count": 3, "mean": 20.0, "p50": 1.0, "p90": 1.0, "p95": 1.0, "p99": 1.0, "p999": 1.0, "max": 2.0}}}),
                "latency_ms.reply: mean 20.0 is above max 2.0",
            ),
            (
                json!({"latency_ms": {"reply": {"count": 3, "mean": 1.0}}}),
                "latency_ms.reply: `p50` is missing beside a count of 3",
            ),
            (
                json!({"latency_ms": {"reply": {"count": 0, "p95": 1.0}}}),
                "latency_ms.reply: `p95` is given beside a count of 0",
            ),
            (
                json!({"engine": "sim", "sessions": sessions(95)}),
                "sessions: answered 95 + abandoned 10 + rejected 0 + unfinished 1 is 106, more than offered 100",
            ),
            (
                json!({"engine": "sim", "by_account": {"kf": {"handles": {"offered": 5, "to_people": 6, "answered": 1, "abandoned": 0, "rejected": 0, "unfinished": 0}}}}),
                "by_account.kf.handles: to_people 6 is more than offered 5",
            ),
            (
                json!({"engine": "sim", "by_entry": {"web": {"sessions": {"offered": 100, "to_people": 60, "answered": 50, "abandoned": 8, "rejected": 30, "unfinished": 3}}}}),
                "by_entry.web.sessions: answered 50 + abandoned 8 + unfinished 3 is 61, more than to_people 60",
            ),
            (
                json!({"engine": "live", "sessions": sessions(9), "latency_ms": {"queue_wait": latency(1.0, 9.0)}}),
                "latency_ms.queue_wait: count 10 is more than `sessions.answered` 9 beside it",
            ),
            (
                json!({"engine": "sim", "sessions": sessions(89), "latency_ms": {"abandon_wait": {"count": 11, "mean": 1.0, "p50": 1.0, "p90": 1.0, "p95": 1.0, "p99": 1.0, "p999": 1.0, "max": 1.0}}}),
                "latency_ms.abandon_wait: count 11 is more than `sessions.abandoned` 10",
            ),
            (
                json!({"by_entry": {"web": {"sessions": sessions(3), "queue_wait": latency(1.0, 9.0)}}}),
                "by_entry.web.queue_wait: count 10 is more than `sessions.answered` 3 beside it",
            ),
            (
                json!({"engine": "live", "bot": {"sessions": 9, "resolved": 3, "handed_over": 5, "rejected": 0, "time_in_bot": latency(1.0, 9.0)}}),
                "bot: time_in_bot.count 10 is more than resolved 3 + handed_over 5",
            ),
            (
                json!({"engine": {"sim": null}, "sessions": sessions(95)}),
                "engine: {\"sim\":null} is not an engine's name: expected \"sim\" or \"live\"",
            ),
            (
                json!({"engine": "sim", "bot": {"sessions": 9, "resolved": 3, "handed_over": 5, "rejected": 2}}),
                "bot: resolved 3 + handed_over 5 + rejected 2 is more than sessions 9",
            ),
            // a live target's later word of how a session left the bot is
            // its error, not a second outcome
            (
                json!({"engine": "live", "bot": {"sessions": 9, "resolved": 3, "handed_over": 7, "rejected": 2, "time_in_bot": latency(1.0, 9.0)}}),
                "bot: resolved 3 + handed_over 7 + rejected 2 is more than sessions 9",
            ),
            (
                json!({"by_account": {"kf": {"handles": sessions(7), "queue_wait": latency(1.0, 9.0)}}}),
                "by_account.kf.queue_wait: count 10 is more than `handles.answered` 7 beside it",
            ),
            (
                json!({"engine": "live", "sessions": sessions(95)}),
                "sessions: answered 95 + abandoned 10 + rejected 0 + unfinished 1 is 106, more than offered 100",
            ),
            (
                json!({"engine": "live", "by_entry": {"web": {"sessions": {"offered": 100, "to_people": 60, "answered": 50, "abandoned": 8, "rejected": 40, "unfinished": 3}}}}),
                "by_entry.web.sessions: answered 50 + abandoned 8 + rejected 40 + unfinished 3 is 101, more than offered 100",
            ),
            (
                json!({"engine": "live", "by_account": {"kf": {"handles": {"offered": 5, "to_people": 6, "answered": 0, "abandoned": 0, "rejected": 0, "unfinished": 0}}}}),
                "by_account.kf.handles: to_people 6 is more than offered 5",
            ),
            (
                json!({"engine": "live", "http": {"gettoken": {"count": 2, "errors": 3, "errors_by_kind": {"timeout": 3}}}}),
                "http.gettoken: errors 3 is more than calls (count) 2",
            ),
            (
                json!({"engine": "live", "http": {"customer_batch": {"count": 2, "errors": 3, "errors_by_kind": {"connect": 1}}}}),
                "http.customer_batch: errors 3 is not the sum of errors_by_kind, 1",
            ),
            (
                json!({"engine": "live", "messages": {"customer": 9, "sent": 5, "delivered": 6}}),
                "messages: delivered 6 is more than sent 5",
            ),
        ] {
            let e = error(bad.clone()).unwrap_or_else(|| panic!("{bad} was accepted"));
            assert!(e.starts_with(want), "{bad}: {e}");
        }
        let none = json!({"count": 0, "mean": null, "p50": null, "p90": null, "p95": null, "p99": null, "p999": null, "max": null});
        for fine in [
            json!({"latency_ms": {"queue_wait": latency(1.0, 9.0), "abandon_wait": none}}),
            // the mean's division a few ulps over a max every sample equals
            json!({"x": {"count": 3, "mean": 10.000000000000002, "p50": 10.0, "p90": 10.0, "p95": 10.0, "p99": 10.0, "p999": 10.0, "max": 10.0}}),
            json!({"engine": "sim", "sessions": sessions(89)}),
            // a live run's answers may include a bot's sessions its target
            // assigned anyway, which never reached people
            json!({"engine": "live", "sessions": {"offered": 100, "to_people": 60, "answered": 70, "abandoned": 7, "rejected": 10, "unfinished": 3}}),
            json!({"engine": "live", "by_account": {"kf": {"handles": {"offered": 5, "to_people": 5, "answered": 6, "abandoned": 0, "rejected": 0, "unfinished": 0}}}}),
            // against a middleware playing the bot, the driver sees no
            // hand-over: the sessions of an account with a bot end without
            // reaching people, or being offered to the account's
            json!({"engine": "live", "sessions": {"offered": 100, "to_people": 10, "answered": 50, "abandoned": 8, "rejected": 30, "unfinished": 3}}),
            json!({"engine": "live", "by_account": {"kf": {"handles": {"offered": 0, "to_people": 0, "answered": 4, "abandoned": 3, "rejected": 2, "unfinished": 1}}}}),
            // a batch's errors count its refused actions, a pull's the notes
            // that broke the protocol
            json!({"engine": "live", "http": {"customer_batch": {"count": 2, "errors": 30, "errors_by_kind": {"errcode_95018": 30}}}}),
            json!({"engine": "live", "http": {"customer_pull": {"count": 1, "errors": 2, "errors_by_kind": {"rejected_after_assigned": 2}}}}),
            json!({"engine": "live", "messages": {"sent": 5, "delivered": 5, "lost": 9}}),
            json!({"engine": "live", "bot": {"sessions": 12, "resolved": 3, "handed_over": 7, "rejected": 2, "time_in_bot": latency(1.0, 9.0)}}),
            // as many waits as sessions answered, a live run's as well
            json!({"engine": "live", "sessions": sessions(10), "latency_ms": {"queue_wait": latency(1.0, 9.0)}}),
            json!({"by_entry": {"web": {"sessions": sessions(10), "queue_wait": latency(1.0, 9.0)}}}),
            // rejected before people: a bot's session shed at arrival
            json!({"engine": "sim", "sessions": {"offered": 100, "to_people": 60, "answered": 50, "abandoned": 7, "rejected": 40, "unfinished": 3}}),
            json!({"http": {"x": {"count": 4, "errors": 1, "latency_ms": latency(1.0, 9.0)}}}),
        ] {
            assert_eq!(error(fine.clone()), None, "{fine}");
        }
    }

    /// A file that does not read is named once, however it was reached:
    /// a folder compared with itself named its broken histograms twice.
    #[test]
    fn a_file_that_does_not_read_is_named_once() {
        let dir = std::env::temp_dir().join(format!("kfsim-unread-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (hists, series) = (dir.join("histograms.json"), dir.join("series.json"));
        fs::write(&hists, "garbage").unwrap();
        let side = |unread: Vec<(PathBuf, String)>| RunFiles {
            summary: serde_json::Value::Null,
            series: None,
            histograms: None,
            unread,
        };
        let a = side(vec![(hists.clone(), "h".into())]);
        let b = side(vec![(dir.join(".").join("histograms.json"), "h again".into()), (series, "s".into())]);
        assert_eq!(unread_once(&[&a, &b]), ["h", "s"]);
        assert_eq!(unread_once(&[&b]), ["h again", "s"]);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A run into the folder of an earlier one leaves nothing of the
    /// earlier run that it does not write again, and nothing that is not
    /// kfsim's goes.
    #[test]
    fn a_new_run_clears_what_an_earlier_one_left_and_only_that() {
        let dir = std::env::temp_dir().join(format!("kfsim-begin-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let stale = [
            "summary.json",
            "comparison.json",
            "shard.json",
            ".summary.json.123.tmp",
            "charts/by-entry-gone.svg",
            "charts/by-entry-gone.png",
            "charts/.over-time.svg.77.tmp",
            "hgrm/queue_wait.hgrm",
        ];
        let kept =
            ["notes.txt", "charts/README", "hgrm/mine.txt", "sub/summary.json", "baseline/comparison.json"];
        for f in stale.iter().chain(&kept) {
            let p = dir.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, "x").unwrap();
        }
        begin(&dir).unwrap();
        for f in stale {
            assert!(!dir.join(f).exists(), "{f} left behind");
        }
        for f in kept {
            assert!(dir.join(f).exists(), "{f} removed");
        }
        begin(&dir.join("new")).unwrap();
        assert!(dir.join("new").is_dir(), "a new folder is made");
        let _ = fs::remove_dir_all(&dir);
    }

    /// Agents checked apart from the rest of a summary give the error (its
    /// place and words) that reading the whole as a `Summary` gives.
    #[test]
    fn a_summary_is_refused_where_reading_it_whole_fails() {
        let text = "name = \"t\"\nduration = \"1h\"\n[[account]]\nname = \"a\"\n[[agents]]\ncount = 4\n\
                    reply_delay = { dist = \"exponential\", mean = \"20s\" }\n[[entry]]\nscene = \"web\"\nrate = \"1/min\"\n";
        let sc = crate::scenario::Scenario::parse(text, "t.toml").unwrap();
        let good = serde_json::to_value(crate::sim::simulate(&sc)).unwrap();
        let whole = |v: &serde_json::Value| {
            serde_path_to_error::deserialize::<_, crate::summary::Summary>(v)
                .err()
                .map(|e| (e.path().to_string(), e.inner().to_string()))
        };
        let edits: [&dyn Fn(&mut serde_json::Value); 9] = [
            &|_| {},
            &|v| v["agents"][2]["busy_s"] = "x".into(),
            &|v| {
                v["agents"][1]["sessions"] = (-1).into();
                v["abandon_rate"] = "x".into();
            },
            &|v| {
                v["agents"][3]["occupancy"] = "x".into();
                v["fairness"] = 1.into();
            },
            &|v| {
                v.as_object_mut().unwrap().remove("seed");
                v["agents"][0].as_object_mut().unwrap().remove("messages");
            },
            &|v| {
                v.as_object_mut().unwrap().remove("seed");
            },
            &|v| v["agents"] = 3.into(),
            &|v| v["agents"][1] = serde_json::json!([1, 2]),
            &|v| v["sticky"]["rate"] = "x".into(),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut v = good.clone();
            edit(&mut v);
            let want = whole(&v);
            assert_eq!((i, summary_error(&mut v.clone())), (i, want.clone()));
            assert_eq!(i == 0, want.is_none());
            let mut after = v.clone();
            summary_error(&mut after);
            assert_eq!(after, v, "the summary is given back whole");
        }
    }

    fn pretty<T: serde::Serialize>(value: &T) -> String {
        serde_json::to_string_pretty(value).unwrap() + "\n"
    }
}
