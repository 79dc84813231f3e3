//! Reports and gates end to end: exit codes, gates in summary.json,
//! baselines, JUnit, charts, HDR exports, re-rendering, and the terminal
//! summary of a seeded run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kfsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kfsim")).args(args).output().expect("kfsim runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kfsim-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A one-hour scenario with the given `[gates]` lines.
fn scenario_with_gates(dir: &Path, gates: &str) -> PathBuf {
    let text = format!(
        r#"name = "gated"
seed = 3
duration = "2h"
[[account]]
name = "presale"
[[agents]]
count = 10
reply_delay = {{ dist = "exponential", mean = "2m" }}
[[entry]]
scene = "search"
rate = "4/min"
patience = {{ dist = "exponential", mean = "5m" }}
[gates]
{gates}
"#
    );
    let path = dir.join("gated.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn gates_decide_the_exit_code_and_are_written_to_the_summary() {
    let dir = scratch("gates");
    let passing = scenario_with_gates(&dir, "\"service_level\" = \">= 10%\"\n\"queue_wait.p99\" = \"< 1h\"");
    let out = dir.join("pass");
    let o = kfsim(&["run", passing.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let s = json(&out.join("summary.json"));
    assert_eq!(s["gates"].as_array().unwrap().len(), 2);
    assert_eq!(s["gates"][0]["verdict"], "pass");
    assert_eq!(s["gates"][1]["path"], "latency_ms.queue_wait.p99");
    assert_eq!(s["gates"][1]["threshold"], 3_600_000.0);

    let failing = scenario_with_gates(&dir, "\"service_level\" = \">= 99.99%\"\n\"abandon_rate\" = \"<= 1\"");
    let out = dir.join("fail");
    let o = kfsim(&["run", failing.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    let last: Vec<&str> = stdout.lines().rev().take(2).collect();
    assert!(last[0].starts_with("FAILED     1 of 2 gates failed"), "{stdout}");
    assert!(last[1].contains("FAIL service_level >= 99.99%"), "failed gates come last: {stdout}");
    assert_eq!(json(&out.join("summary.json"))["gates"][0]["verdict"], "fail");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("FAILED — 1 of 2 gate(s) failed.</div>"), "no baseline, none named in the banner");
    assert!(!html.contains("baseline"), "a page without a baseline does not mention one");

    let o = kfsim(&["run", failing.to_str().unwrap(), "--no-gates", "-q", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(json(&out.join("summary.json"))["gates"], serde_json::json!([]));
}

#[test]
fn an_unknown_gate_metric_is_an_invalid_scenario() {
    let dir = scratch("unknown-gate");
    let path = scenario_with_gates(&dir, "\"fairness.presale.jian\" = \">= 0.9\"");
    let o = kfsim(&["validate", path.to_str().unwrap()]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr.contains("gated.toml:14:1: unknown metric `fairness.presale.jian`"), "{stderr}");
    assert!(stderr.contains("the closest is `fairness.presale.jain`"), "{stderr}");
    let path = scenario_with_gates(&dir, "\"service_level\" = \">= 20s\"");
    let (_, stderr) = text(&kfsim(&["validate", path.to_str().unwrap()]));
    assert!(stderr.contains("gated.toml:14:19: invalid condition"), "{stderr}");
    // a name far from every metric gets no hint (a long mistyped agent id
    // against a million agents took minutes to find the "closest")
    let far = format!("\"agents.{}.occupancy\" = \"< 1\"", "x".repeat(40));
    let path = scenario_with_gates(&dir, &far);
    let o = kfsim(&["validate", path.to_str().unwrap()]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr.contains("no metric has a name near it"), "{stderr}");
}

/// Files of a run folder edited by hand are refused or named, never
/// looped over (found by probing: an interval of 0 in series.json made
/// `kfsim report` run for ever, and `compare` dropped a series.json whose
/// rows disagreed without saying so).
#[test]
fn an_edited_series_file_is_refused_by_report_and_named_by_compare() {
    let dir = scratch("edited-series");
    let sc = scenario_with_gates(&dir, "");
    let run = |name: &str, seed: &str| {
        let out = dir.join(name);
        let o = kfsim(&["run", sc.to_str().unwrap(), "-q", "--seed", seed, "--out", out.to_str().unwrap()]);
        assert!(matches!(o.status.code(), Some(0 | 1)), "{o:?}");
        out
    };
    let (a, b) = (run("a", "1"), run("b", "2"));
    let series = b.join("series.json");
    let mut v = json(&series);
    v["interval_s"] = 0.0.into();
    std::fs::write(&series, v.to_string()).unwrap();
    let o = kfsim(&["report", b.to_str().unwrap()]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("series.json is not a kfsim series file: interval_s 0"), "{stderr}");
    let o = kfsim(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    let (_, stderr) = text(&o);
    assert!(stderr.contains("series.json does not read: interval_s 0"), "{stderr}");
    v["interval_s"] = 60.0.into();
    v["offered"] = serde_json::json!([1, 2, 3]);
    std::fs::write(&series, v.to_string()).unwrap();
    let (_, stderr) = text(&kfsim(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]));
    assert!(stderr.contains("within_t has"), "{stderr}");
    // a row of another series cut short: refused, the row named
    v["offered"] = v["within_t"].clone();
    v["queue_len"]["presale"].as_array_mut().unwrap().pop();
    std::fs::write(&series, v.to_string()).unwrap();
    let o = kfsim(&["report", b.to_str().unwrap()]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("series.json is not a kfsim series file: queue_len.presale has"), "{stderr}");
    let (_, stderr) = text(&kfsim(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]));
    assert!(stderr.contains("series.json does not read: queue_len.presale has"), "{stderr}");
}

/// `kfsim report` takes a run's summary.json for its folder, as `compare`
/// does (it read "a/summary.json/summary.json: Not a directory"), and says
/// that another file is not a run folder.
#[test]
fn report_takes_a_runs_summary_for_its_folder() {
    let dir = scratch("report-summary");
    let sc = scenario_with_gates(&dir, "");
    let run = dir.join("run");
    let o = kfsim(&["run", sc.to_str().unwrap(), "-q", "--out", run.to_str().unwrap()]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{o:?}");
    std::fs::remove_file(run.join("report.html")).unwrap();
    let o = kfsim(&["report", run.join("summary.json").to_str().unwrap()]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains(&run.join("report.html").display().to_string()), "{stdout}");
    assert!(run.join("report.html").exists(), "the folder's report written again");
    let other = dir.join("other.json");
    std::fs::copy(run.join("summary.json"), &other).unwrap();
    let o = kfsim(&["report", other.to_str().unwrap()]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("other.json is a file: kfsim report takes a run folder"), "{stderr}");
}

#[test]
fn baselines_exact_for_the_same_sim_and_tolerant_otherwise() {
    let dir = scratch("baseline");
    let sc = scenario_with_gates(&dir, "");
    let run = |name: &str, extra: &[&str]| {
        let out = dir.join(name);
        let mut args = vec!["run", sc.to_str().unwrap(), "-q", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = kfsim(&args);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        out
    };
    let a = run("a", &[]);
    let b = run("b", &[]);
    let o = kfsim(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("exact (same sim scenario and seed)"), "{stdout}");
    // a corrupt summary is refused (exit 2, where), not read as metrics gone (exit 1)
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("summary.json")).unwrap()).unwrap();
    for (field, value, expected) in [
        (
            "sessions",
            serde_json::json!("many"),
            "at `sessions`: invalid type: a string, expected a JSON object",
        ),
        (
            "seed",
            serde_json::json!(-1),
            "at `seed`: invalid value: the number -1, expected an integer from 0 to 18446744073709551615",
        ),
        ("run", serde_json::Value::Null, "at `run`: invalid type: null, expected a JSON object"),
    ] {
        let mut bad = good.clone();
        bad[field] = value;
        let file = dir.join(format!("corrupt-{field}.json"));
        std::fs::write(&file, bad.to_string()).unwrap();
        for args in [
            vec!["compare", file.to_str().unwrap(), b.to_str().unwrap()],
            vec!["compare", b.to_str().unwrap(), file.to_str().unwrap()],
        ] {
            let o = kfsim(&args);
            let (_, stderr) = text(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(
                stderr.contains(&format!("{} is not a kfsim summary: {expected}", file.display())),
                "{stderr}"
            );
        }
    }

    // a figure given twice (by hand): refused, not the last one taken
    let once = std::fs::read_to_string(a.join("summary.json")).unwrap();
    let twice = once.replacen("\"service_level\":", "\"service_level\": 0.01, \"service_level\":", 1);
    assert_ne!(twice, once);
    let file = dir.join("twice.json");
    std::fs::write(&file, twice).unwrap();
    let o = kfsim(&["compare", b.to_str().unwrap(), file.to_str().unwrap()]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    let said =
        format!("{} is not a kfsim summary: the key `service_level` appears twice at line", file.display());
    assert!(stderr.contains(&said), "{stderr}");

    // other seeds of the same scenario: judged against seed noise, with a note
    let quick = |name: &str, seed: &str| {
        let out = dir.join(name);
        let o = kfsim(&[
            "run",
            "scenarios/quickstart.toml",
            "-q",
            "--seed",
            seed,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        out
    };
    let (s7, s8) = (quick("s7", "7"), quick("s8", "8"));
    let page = dir.join("page");
    let o = kfsim(&["compare", s7.to_str().unwrap(), s8.to_str().unwrap(), "--out", page.to_str().unwrap()]);
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(0), "seed noise is not a regression: {stdout}");
    assert!(stdout.contains("warning    different seeds (7 and 8) of the same scenario"), "{stdout}");
    assert!(stdout.contains("beyond seed noise"), "{stdout}");
    let html = std::fs::read_to_string(page.join("compare.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("<th>change</th>"), "the compare page");
    // summaries without their folders: only the flat tolerance is left, which
    // seed noise alone fails (what the rule above replaces), and it says so
    std::fs::copy(s8.join("summary.json"), dir.join("alone.json")).unwrap();
    let o = kfsim(&[
        "compare",
        s7.join("summary.json").to_str().unwrap(),
        dir.join("alone.json").to_str().unwrap(),
    ]);
    assert!(text(&o).0.contains("seed noise cannot be estimated"), "{:?}", text(&o));
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));

    // fewer agents: a different scenario, so key metrics with tolerance
    let worse = run("worse", &["--set", "agents.presale.count=8"]);
    let o = kfsim(&["compare", a.to_str().unwrap(), worse.to_str().unwrap()]);
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("regressed service_level"), "{stdout}");
    assert!(stdout.contains("warning    the scenario gated changed between the runs"), "{stdout}");
    assert!(stdout.contains("%; tolerance 10%)"), "a % change and the rule: {stdout}");
    // relative tolerances cannot excuse a move away from 0: that takes an absolute one
    let o = kfsim(&[
        "compare",
        a.to_str().unwrap(),
        worse.to_str().unwrap(),
        "--tolerance",
        "*=100000%",
        "--tolerance",
        "queue_wait.p50=1h",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o =
        kfsim(&["compare", a.to_str().unwrap(), worse.to_str().unwrap(), "--tolerance", "servce_level=5%"]);
    assert_eq!(o.status.code(), Some(2), "a misspelt metric is an argument error");

    // the same in one step, with JUnit
    let junit = dir.join("junit.xml");
    let out = dir.join("one-step");
    let o = kfsim(&[
        "run",
        sc.to_str().unwrap(),
        "-q",
        "--set",
        "agents.presale.count=8",
        "--baseline",
        a.join("summary.json").to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit output is XML");
    let suites: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testsuite")).collect();
    assert_eq!(suites.len(), 1, "no gates in the scenario: the baseline alone, no empty gates suite");
    let baseline = suites[0];
    assert_eq!(baseline.attribute("name"), Some("gated baseline"));
    let failures: usize = baseline.attribute("failures").unwrap().parse().unwrap();
    let failed_cases =
        baseline.children().filter(|c| c.children().any(|f| f.has_tag_name("failure"))).count();
    assert!(failures > 0 && failures == failed_cases, "{xml}");
    let tests: usize = baseline.attribute("tests").unwrap().parse().unwrap();
    assert_eq!(tests, baseline.children().filter(|c| c.has_tag_name("testcase")).count());
    assert!(out.join("comparison.json").exists());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let (baseline, key) =
        (html.find("<h2>Against the baseline").unwrap(), html.find("<h2>Key numbers").unwrap());
    assert!(baseline < key, "the baseline section sits near the top, before the key numbers");
    assert!(html.contains("<th>change</th>") && html.contains(" %</td>"), "with a % change column");
    assert!(
        html.contains("FAILED — 0 of 0 gate(s) failed")
            || html.contains("regression(s) against the baseline")
    );
}

#[test]
fn junit_has_one_case_per_gate() {
    let dir = scratch("junit");
    let sc = scenario_with_gates(
        &dir,
        "\"service_level\" = \">= 0.1\"\n\"asa\" = \"< 1ms\"\n\"messages.lost\" = \"== 0\"",
    );
    // in a folder not made yet, as `--out` makes its own (it failed after
    // the run, exit 3 hiding the gates' verdict)
    let junit = dir.join("ci").join("reports").join("gates.xml");
    let o = kfsim(&[
        "run",
        sc.to_str().unwrap(),
        "-q",
        "--junit",
        junit.to_str().unwrap(),
        "--out",
        dir.join("r").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    let names: Vec<&str> = cases.iter().map(|c| c.attribute("name").unwrap()).collect();
    // the metric alone: a test's history survives a changed threshold
    assert_eq!(names, ["service_level", "asa", "messages.lost"]);
    fn child<'a, 'i>(c: &roxmltree::Node<'a, 'i>) -> Option<roxmltree::Node<'a, 'i>> {
        c.children().find(|n| n.is_element())
    }
    assert!(child(&cases[0]).is_none());
    let failure = child(&cases[1]).unwrap();
    assert_eq!(failure.tag_name().name(), "failure");
    let message = failure.attribute("message").unwrap();
    assert!(message.starts_with("asa < 1ms failed: actual ") && message.ends_with('s'), "{message}");
    assert!(failure.text().unwrap().contains("condition: < 1ms"), "a failure has a body: {xml}");
    let skipped = child(&cases[2]).unwrap();
    assert_eq!(skipped.tag_name().name(), "skipped");
    assert_eq!(skipped.attribute("message"), Some("messages.lost is not measured by the sim engine"));
    let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).unwrap();
    assert!(suite.attribute("time").unwrap().parse::<f64>().unwrap() > 0.0);
    let stamp = suite.attribute("timestamp").unwrap();
    assert!(stamp.len() == 19 && stamp.as_bytes()[10] == b'T', "ISO 8601: {stamp}");
    let prop = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
            .and_then(|n| n.attribute("value"))
            .map(str::to_owned)
    };
    assert_eq!(prop("seed").as_deref(), Some("3"));
    assert_eq!(prop("engine").as_deref(), Some("sim"));
    assert_eq!(prop("scenario.fingerprint").map(|f| f.len()), Some(16));

    // a run that cannot be made still leaves a result: an error, not silence
    let bad = scenario_with_gates(&dir, "\"servce_level\" = \">= 0.1\"");
    let o = kfsim(&["run", bad.to_str().unwrap(), "-q", "--junit", junit.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let error = doc.descendants().find(|n| n.has_tag_name("error")).expect("an error case");
    assert!(error.attribute("message").unwrap().contains("unknown metric `servce_level`"), "{xml}");

    // and so does an argument the command line cannot read (it wrote none)
    let args = ["run", sc.to_str().unwrap(), "--seed", "abc", "--junit", junit.to_str().unwrap()];
    let o = kfsim(&args);
    assert_eq!(o.status.code(), Some(2));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let error = doc.descendants().find(|n| n.has_tag_name("error")).expect("an error case");
    assert!(error.attribute("message").unwrap().contains("invalid value 'abc' for '--seed"), "{xml}");

    // --no-gates does not refuse the run for a gate it is told to skip
    let o =
        kfsim(&["run", bad.to_str().unwrap(), "-q", "--no-gates", "--out", dir.join("ng").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).1.contains("warning: ") && text(&o).1.contains("servce_level"), "{:?}", text(&o));
}

#[test]
fn charts_html_and_exports_of_a_run_folder() {
    let dir = scratch("charts");
    let out = dir.join("run");
    let o = kfsim(&[
        "run",
        "scenarios/quickstart.toml",
        "-q",
        "--export",
        "hgrm",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let summary = json(&out.join("summary.json"));

    // every chart is an SVG document with the series it should show
    let expect: &[(&str, &[&str])] = &[
        ("latency-spectrum", &["queue wait", "first response", "reply", "99.9%"]),
        ("histogram-queue_wait", &["queue wait"]),
        ("fairness-agents", &["presale: Jain", "mean of the account"]),
        ("fairness-histogram", &["presale: Jain", "sessions per agent"]),
        (
            "over-time",
            &[
                "channels",
                "search",
                "payment",
                "presale: slots online",
                "presale: slots in use",
                "warm-up",
                "drain (after the last arrival)",
                "service level (within 20s)",
                "gate service_level >= 0.75",
                "p95 queue wait",
            ],
        ),
        ("by-entry", &["channels", "payment", "search", "gate service_level >= 0.75", "p95"]),
        ("fairness-lorenz", &["perfectly even", "presale: Gini"]),
        ("occupancy-agents", &["occupancy [%]", "all agents"]),
    ];
    for (name, labels) in expect {
        let svg = std::fs::read_to_string(out.join("charts").join(format!("{name}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{name}.svg is not XML: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let texts: String = doc.descendants().filter_map(|n| n.text()).collect::<Vec<_>>().join("|");
        for label in *labels {
            assert!(texts.contains(label), "{name}.svg lacks {label:?}: {texts}");
        }
    }

    // and the same chart as a PNG, drawn with the bundled font
    for (name, _) in expect {
        let png = std::fs::read(out.join("charts").join(format!("{name}.png"))).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().unwrap_or_else(|e| panic!("{name}.png is not a PNG: {e}"));
        assert_eq!(reader.info().width, 900, "{name}.png");
    }

    // the page inlines every chart and needs nothing from outside
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let svgs = std::fs::read_dir(out.join("charts"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "svg"));
    assert_eq!(html.matches("<svg").count(), svgs.count());
    for outside in ["http://", "https://", "<script", "src=\"", "<link"] {
        let allowed = if outside == "http://" { html.matches("http://www.w3.org").count() } else { 0 };
        assert_eq!(html.matches(outside).count(), allowed, "report.html must not contain {outside}");
    }
    assert!(html.contains("PASSED"));
    assert!(
        html.contains("<h2>Returning customers</h2>") && html.contains("kept their agent"),
        "sticky figures"
    );
    assert!(html.contains("customer messages by type") && html.contains("<td>image</td>"), "the message mix");
    let window = "8h of arrivals, the first 30m warm-up (not counted)";
    assert!(html.contains(window), "the page says the arrival window as the terminal does");
    assert!(html.contains("abandon wait") && !html.contains("abandoned after"), "one name per metric");

    // hgrm text and histograms.json agree with the summary
    let hgrm = std::fs::read_to_string(out.join("hgrm").join("queue_wait.hgrm")).unwrap();
    let count = summary["latency_ms"]["queue_wait"]["count"].as_u64().unwrap();
    assert!(hgrm.contains(&format!("Total count    = {count:>12}")), "{hgrm}");
    let encoded = json(&out.join("histograms.json"));
    let h = kfsim::report::hgrm::from_base64(encoded["first_response"].as_str().unwrap()).unwrap();
    assert_eq!(h.len(), summary["latency_ms"]["first_response"]["count"].as_u64().unwrap());
    let p95_ms = h.value_at_quantile(0.95).min(h.max()) as f64 / 1e3;
    assert_eq!(p95_ms, summary["latency_ms"]["first_response"]["p95"].as_f64().unwrap());

    // `kfsim report` renders the same files again from the folder alone
    let before_html = std::fs::read(out.join("report.html")).unwrap();
    let before_chart = std::fs::read(out.join("charts/over-time.svg")).unwrap();
    std::fs::remove_file(out.join("report.html")).unwrap();
    std::fs::remove_dir_all(out.join("charts")).unwrap();
    let o = kfsim(&["report", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(std::fs::read(out.join("report.html")).unwrap(), before_html);
    assert_eq!(std::fs::read(out.join("charts/over-time.svg")).unwrap(), before_chart);
    let o = kfsim(&["report", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "a folder without a run is an argument error");
}

/// The terminal summary of a seeded run is pinned: the sim is deterministic,
/// so any change in it is a change in behaviour to look at. Set
/// `UPDATE_SNAPSHOTS=1` to accept a deliberate change.
#[test]
fn terminal_summary_snapshot() {
    let dir = scratch("snapshot");
    let o = kfsim(&["run", "scenarios/quickstart.toml", "--out", dir.join("r").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let (stdout, _) = text(&o);
    let got: String =
        stdout.lines().filter(|l| !l.starts_with("report ")).map(|l| format!("{l}\n")).collect();
    let path = Path::new("tests/snapshots/quickstart-terminal.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &got).unwrap();
    }
    // the tables' headers end where their right-aligned columns end
    assert_aligned(&got, "latency ", "  queue wait ", &["count", "mean", "p50", "p90", "p95", "p99", "max"]);
    assert_aligned(
        &got,
        "by entry ",
        "  channels ",
        &["offered", "SL", "queue wait p95", "first response p95"],
    );
    let want = std::fs::read_to_string(path).expect("snapshot exists (run with UPDATE_SNAPSHOTS=1 once)");
    assert_eq!(got, want, "terminal summary changed; if on purpose, rerun with UPDATE_SNAPSHOTS=1");
}

/// In the terminal summary `text`, the table whose header starts with
/// `header` has its column titles end where the values of its row starting
/// with `row` end (right-aligned columns).
fn assert_aligned(text: &str, header: &str, row: &str, titles: &[&str]) {
    let h = text.lines().find(|l| l.starts_with(header)).unwrap_or_else(|| panic!("no {header:?}: {text}"));
    let r = text.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("no {row:?}: {text}"));
    let mut from = 0;
    let title_ends: Vec<usize> = titles
        .iter()
        .map(|t| {
            let at = from + h[from..].find(t).unwrap() + t.len();
            from = at;
            h[..at].chars().count()
        })
        .collect();
    let mut value_ends = Vec::new();
    let cs: Vec<char> = r.chars().collect();
    for i in 1..=cs.len() {
        if cs[i - 1] != ' ' && (i == cs.len() || cs[i] == ' ') {
            value_ends.push(i);
        }
    }
    let value_ends = value_ends[value_ends.len() - titles.len()..].to_vec();
    assert_eq!(title_ends, value_ends, "misaligned:\n{h}\n{r}");
}

/// A bot in front of presale, which transfers a share of its sessions to
/// after-sales; after-sales has an entry point of its own.
const RECEPTION: &str = "tests/data/reception.toml";

fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.2}%", v * 100.0))
}

/// The rows of the terminal table whose header starts with `header`, as
/// words.
fn terminal_table(text: &str, header: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip_while(|l| !l.starts_with(header))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// The edges of a flow chart as drawn: (from, to, sessions, band width).
fn drawn_edges(svg: &str) -> Vec<(String, String, u64, f64)> {
    let doc = roxmltree::Document::parse(svg).expect("flow.svg is XML");
    let mut edges: Vec<_> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("flow-edge"))
        .map(|n| {
            (
                n.attribute("data-from").unwrap().to_owned(),
                n.attribute("data-to").unwrap().to_owned(),
                n.attribute("data-sessions").unwrap().parse().unwrap(),
                n.attribute("stroke-width").unwrap().parse().unwrap(),
            )
        })
        .collect();
    edges.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    edges
}

#[test]
fn the_bot_accounts_groups_and_transfers_in_the_terminal_and_the_page() {
    let dir = scratch("reception");
    let out = dir.join("run");
    let o = kfsim(&["run", RECEPTION, "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let (stdout, _) = text(&o);
    let s: kfsim::summary::Summary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let b = s.bot.as_ref().expect("the scenario has a bot");
    let people = s.sessions.to_people.expect("with a bot, the sessions that reached people");
    let moved = s.transfers["pre->aftersales"];
    // every figure below would pass on zeros: the run must have some of each
    assert!(b.resolved > 100 && b.handed_over > 100 && moved > 50, "{b:?} {moved}");
    assert!(people < s.sessions.offered);

    // the terminal: the bot, the people's figures said to be over fewer sessions
    let line = |prefix: &str| {
        stdout.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?}: {stdout}"))
    };
    let c = &s.sessions;
    assert_eq!(
        line("sessions "),
        format!(
            "sessions   offered {} · resolved by the bot {} · to people {people} · answered {} · abandoned {} · \
             rejected {} · unfinished {}",
            c.offered, b.resolved, c.answered, c.abandoned, c.rejected, c.unfinished
        )
    );
    assert_eq!(
        line("bot "),
        format!(
            "bot        {} sessions · resolved {} · handed over {} · deflection {}",
            b.sessions,
            b.resolved,
            b.handed_over,
            pct(b.deflection)
        )
    );
    let ms = |v| kfsim::scenario::units::human_ms(v);
    assert_eq!(
        line("           first response"),
        format!(
            "           first response p50 {} p95 {} · time in bot p50 {} p95 {}",
            ms(b.first_response.p50),
            ms(b.first_response.p95),
            ms(b.time_in_bot.p50),
            ms(b.time_in_bot.p95)
        )
    );
    assert!(
        line("service ").starts_with(&format!(
            "service    over the {people} to people: SL(20s) {} ",
            pct(s.service_level)
        )),
        "{stdout}"
    );
    let accounts = terminal_table(&stdout, "by account ");
    assert_eq!(accounts.len(), 2, "{stdout}");
    for row in &accounts {
        let a = &s.by_account[&row[0]];
        let want = [
            a.handles.offered.to_string(),
            a.transferred_in.to_string(),
            pct(a.wait_probability),
            pct(a.service_level),
            pct(a.abandon_rate),
            ms(a.asa_ms),
        ];
        assert_eq!(row[1..], want, "{stdout}");
    }
    assert_eq!(s.by_account["aftersales"].transferred_in, moved);
    let groups = terminal_table(&stdout, "by group ");
    assert_eq!(groups.len(), 2, "{stdout}");
    for row in &groups {
        let g = &s.by_group[&row[0]];
        let want = [
            g.agents.to_string(),
            g.handles.to_string(),
            g.transferred.to_string(),
            g.ended.to_string(),
            pct(g.occupancy),
        ];
        assert_eq!(row[1..], want, "{stdout}");
    }
    let share = pct(Some(moved as f64 / s.by_group["pre"].handles as f64));
    assert_eq!(line("transfer "), format!("transfer   pre → aftersales: {moved} handles ({share} of pre's)"));
    assert_aligned(
        &stdout,
        "by account ",
        "  aftersales ",
        &["handles", "transferred in", "waited", "SL", "abandoned", "ASA"],
    );
    assert_aligned(
        &stdout,
        "by group ",
        "  after ",
        &["agents", "handles", "transferred", "ended", "occupancy"],
    );

    // the page: a flow section between the key numbers and the charts
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("report.html lacks {needle:?}"));
    assert!(at("<h2>Key numbers") < at("<h2 id=\"flow-of-sessions\">Flow of sessions</h2>"));
    assert!(at("<h2 id=\"flow-of-sessions\">") < at("<figure id=\"flow\">"));
    assert!(at("<figure id=\"flow\">") < at("<h2>Charts</h2>"));
    at(&format!("are over the {people} that reached people"));
    at(&format!("<div class=\"v\">{}</div><div class=\"k\">bot deflection</div>", pct(b.deflection)));
    let held = b.sessions - b.resolved - b.handed_over - b.rejected;
    at(&format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{held}</td><td>{}</td><td>{}</td></tr>",
        b.sessions,
        b.resolved,
        b.handed_over,
        b.rejected,
        pct(b.deflection),
        b.replies
    ));
    at(&format!("<tr><td>bot first response</td><td>{}</td>", b.first_response.count));
    for (name, a) in &s.by_account {
        at(&format!(
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            a.handles.offered,
            a.transferred_in,
            a.handles.answered,
            pct(a.wait_probability),
            pct(a.service_level),
            pct(a.abandon_rate),
            ms(a.asa_ms),
            ms(a.queue_wait.p95)
        ));
    }
    for (name, account) in [("pre", "presale"), ("after", "aftersales")] {
        let g = &s.by_group[name];
        at(&format!(
            "<tr><td>{name}</td><td>{account}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            g.agents,
            g.handles,
            g.transferred,
            g.ended,
            pct(g.occupancy)
        ));
    }
    at(&format!("<tr><td>pre</td><td>aftersales</td><td>{moved}</td><td>{share}</td></tr>"));

    // the flow chart draws every edge of the summary's flow with its count
    let svg = std::fs::read_to_string(out.join("charts/flow.svg")).unwrap();
    let drawn = drawn_edges(&svg);
    let mut want: Vec<(String, String, u64)> = s
        .flow
        .iter()
        .filter(|e| e.sessions > 0)
        .map(|e| (e.from.clone(), e.to.clone(), e.sessions))
        .collect();
    want.sort();
    let got: Vec<(String, String, u64)> =
        drawn.iter().map(|(f, t, n, _)| (f.clone(), t.clone(), *n)).collect();
    assert_eq!(got, want);
    assert!(
        want.contains(&("group:pre".into(), "account:aftersales".into(), moved)),
        "the transfer is drawn"
    );
    assert!(want.iter().any(|e| e.0 == "bot:presale" && e.1 == "resolved" && e.2 == b.resolved));
    // bands as wide as their counts: one scale for all (bands under 1 px are drawn at 1)
    let widest = drawn.iter().max_by_key(|e| e.2).unwrap();
    let k = widest.3 / widest.2 as f64;
    for (f, t, n, w) in &drawn {
        assert!(
            (w - (*n as f64 * k).max(1.0)).abs() < 0.01,
            "{f} → {t}: {n} sessions drawn {w} px wide, k = {k}"
        );
    }
    let texts: Vec<String> = roxmltree::Document::parse(&svg)
        .unwrap()
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_owned())
        .collect();
    for (f, t, n, _) in &drawn {
        let label = if t == "account:aftersales" && f.starts_with("group:") {
            format!("{n} transferred")
        } else {
            n.to_string()
        };
        assert!(texts.contains(&label), "{f} → {t} is not labelled {label:?}: {texts:?}");
    }
    // columns left to right; the transfer runs back from the group to the pool
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let x = |id: &str| -> f64 {
        doc.descendants()
            .find(|n| n.attribute("data-node") == Some(id))
            .unwrap_or_else(|| panic!("no node {id}"))
            .attribute("x")
            .unwrap()
            .parse()
            .unwrap()
    };
    let columns = ["entry:channels", "bot:presale", "account:presale", "group:pre", "ended"];
    for pair in columns.windows(2) {
        assert!(x(pair[0]) < x(pair[1]), "{} is left of {}", pair[0], pair[1]);
    }
    assert_eq!(x("account:aftersales"), x("account:presale"));
    assert!(x("group:pre") > x("account:aftersales"));
    // every band runs clear of the nodes it does not join: one that skips a
    // column (the bot's resolved sessions, on their way to the outcomes)
    // passes above or below that column's nodes, not behind them
    let boxes: Vec<(&str, [f64; 4])> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("flow-node"))
        .map(|n| {
            let f = |k: &str| n.attribute(k).unwrap().parse::<f64>().unwrap();
            (n.attribute("data-node").unwrap(), [f("x"), f("y"), f("width"), f("height")])
        })
        .collect();
    for band in doc.descendants().filter(|n| n.attribute("class") == Some("flow-edge")) {
        let (from, to) = (band.attribute("data-from").unwrap(), band.attribute("data-to").unwrap());
        let half = band.attribute("stroke-width").unwrap().parse::<f64>().unwrap() / 2.0;
        for point in band.attribute("points").unwrap().split_whitespace() {
            let (x, y) = point.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            for (id, [x0, y0, w, h]) in boxes.iter().filter(|(id, _)| *id != from && *id != to) {
                assert!(
                    !(x > *x0 && x < x0 + w && y + half > *y0 && y - half < y0 + h),
                    "{from} → {to} runs through {id} at ({x}, {y})"
                );
            }
        }
    }
    // the page inlines the same chart, and the PNG is drawn too
    assert_eq!(html.matches("class=\"flow-edge\"").count(), drawn.len());
    let png = std::fs::read(out.join("charts/flow.png")).unwrap();
    let reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
    assert_eq!(reader.info().width, 900);
}

#[test]
fn a_run_without_a_bot_accounts_or_transfers_has_no_such_sections() {
    let dir = scratch("no-paths");
    let sc = scenario_with_gates(&dir, "");
    let out = dir.join("run");
    let o = kfsim(&["run", sc.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let (stdout, _) = text(&o);
    let s = json(&out.join("summary.json"));
    assert!(
        s["flow"].as_array().is_some_and(|f| !f.is_empty()),
        "the summary has a flow, the report leaves it out"
    );
    for prefix in ["bot ", "by account", "by group", "transfer "] {
        assert!(!stdout.lines().any(|l| l.starts_with(prefix)), "{prefix:?} in {stdout}");
    }
    assert!(stdout.contains("\nservice    SL(") && !stdout.contains("to people"), "{stdout}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for absent in [
        "Flow of sessions",
        "id=\"flow",
        "id=\"bot\"",
        "By account",
        "By agent group",
        "Transfers",
        "to people",
    ] {
        assert!(!html.contains(absent), "report.html has {absent:?}");
    }
    assert!(!out.join("charts/flow.svg").exists());
}

#[test]
fn a_summary_from_before_the_bot_and_transfers_renders_again() {
    let dir = scratch("old-summary");
    let out = dir.join("run");
    let o = kfsim(&["run", RECEPTION, "-q", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let mut s = json(&out.join("summary.json"));
    let o = s.as_object_mut().unwrap();
    for key in ["bot", "by_account", "by_group", "transfers", "flow"] {
        assert!(o.remove(key).is_some(), "{key} is in a new summary");
    }
    o["sessions"].as_object_mut().unwrap().remove("to_people");
    for e in o["by_entry"].as_object_mut().unwrap().values_mut() {
        e["sessions"].as_object_mut().unwrap().remove("to_people");
    }
    std::fs::write(out.join("summary.json"), serde_json::to_vec_pretty(&s).unwrap()).unwrap();
    std::fs::remove_file(out.join("report.html")).unwrap();
    std::fs::remove_dir_all(out.join("charts")).unwrap();
    let o = kfsim(&["report", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<h2>Key numbers") && html.contains("<h2>Charts</h2>"));
    assert!(
        !html.contains("Flow of sessions") && !html.contains("to people"),
        "nothing to draw the flow from"
    );
    assert!(!out.join("charts/flow.svg").exists());
}

#[test]
fn names_from_the_scenario_are_escaped_in_the_flow() {
    let dir = scratch("escape");
    let sc = dir.join("hostile.toml");
    std::fs::write(
        &sc,
        r#"name = "hostile"
duration = "2h"
[[account]]
name = '<script>alert("kf")</script>'
[account.bot]
reply_delay = "10s"
resolve = 0.3
[[account]]
name = "b&b"
[[agents]]
account = '<script>alert("kf")</script>'
group = 'x"><img src=x onerror=alert(1)>'
count = 6
reply_delay = { dist = "exponential", mean = "2m" }
transfer = { to = "b&b", share = 0.3 }
[[agents]]
account = "b&b"
group = "after"
count = 4
reply_delay = { dist = "exponential", mean = "2m" }
[[entry]]
name = "<b>entry</b>"
scene = "web"
account = '<script>alert("kf")</script>'
rate = "3/min"
"#,
    )
    .unwrap();
    let out = dir.join("run");
    let o = kfsim(&["run", sc.to_str().unwrap(), "-q", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Flow of sessions"));
    for raw in ["<script", "<img", "<b>entry"] {
        assert!(!html.contains(raw), "report.html lets {raw:?} through");
    }
    assert!(
        html.contains("<td>&lt;script&gt;alert(&quot;kf&quot;)&lt;/script&gt;</td>"),
        "the account's row"
    );
    assert!(html.contains("<td>x&quot;&gt;&lt;img src=x onerror=alert(1)&gt;</td>"), "the group's row");
    assert!(html.contains("<td>b&amp;b</td>"));
    // the chart is well-formed XML that gives the names back as written
    let svg = std::fs::read_to_string(out.join("charts/flow.svg")).unwrap();
    let edges = drawn_edges(&svg);
    let has = |from: &str, to: &str| edges.iter().any(|e| e.0 == from && e.1 == to && e.2 > 0);
    assert!(has("entry:<b>entry</b>", "bot:<script>alert(\"kf\")</script>"), "{edges:?}");
    assert!(has("group:x\"><img src=x onerror=alert(1)>", "account:b&b"), "{edges:?}");
}

/// `series.json` and `histograms.json` beside a compared summary tell a
/// change from seed noise. One there that did not read (cut short, hand
/// edited, a histogram that does not decode) was dropped without a word,
/// and the comparison changed its mode silently. It now says which file
/// and why, and compares without it.
#[test]
fn compare_names_files_beside_a_summary_that_do_not_read() {
    let dir = scratch("unread");
    let sc = scenario_with_gates(&dir, "");
    let run = |name: &str, seed: &str| {
        let out = dir.join(name);
        let o = kfsim(&["run", sc.to_str().unwrap(), "-q", "--seed", seed, "--out", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        out
    };
    let (a, b) = (run("a", "7"), run("b", "8"));
    let compare = || {
        let o = kfsim(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
        assert!(matches!(o.status.code(), Some(0 | 1)), "compared, not refused: {:?}", text(&o));
        text(&o).1
    };
    assert!(!compare().contains("warning"), "both folders whole: {}", compare());
    // one histogram that is not one
    let hists = b.join("histograms.json");
    let mut h: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&hists).unwrap()).unwrap();
    let name = h.keys().next().unwrap().clone();
    h.insert(name.clone(), serde_json::json!("AAAA"));
    std::fs::write(&hists, serde_json::to_string(&h).unwrap()).unwrap();
    let stderr = compare();
    assert!(
        stderr.contains("histograms.json does not read") && stderr.contains(&format!("\"{name}\"")),
        "{stderr}"
    );
    assert!(stderr.contains("compared without it"), "{stderr}");
    // a series cut short
    let series = a.join("series.json");
    let whole = std::fs::read_to_string(&series).unwrap();
    std::fs::write(&series, &whole[..whole.len() / 2]).unwrap();
    let stderr = compare();
    assert!(stderr.contains("series.json does not read"), "{stderr}");
    // a folder compared with itself, or with its own summary, has one
    // broken histograms.json, named once (it was named twice)
    for other in [b.clone(), b.join("summary.json")] {
        let o = kfsim(&["compare", b.to_str().unwrap(), other.to_str().unwrap()]);
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{stderr}");
        assert_eq!(stderr.matches("histograms.json does not read").count(), 1, "{stderr}");
    }
}

/// A live run's summary whose counts break what the live engine
/// guarantees whatever its target does is refused by `compare` and
/// `report`, naming the file and the figures: sessions ending more ways
/// than were offered, more errors than calls of an endpoint whose errors
/// are failed calls, more messages delivered than sent. One that stays
/// within them is compared.
#[test]
fn a_live_summary_whose_counts_contradict_each_other_is_refused() {
    let dir = scratch("live-counts");
    let sc = scenario_with_gates(&dir, "");
    let run = dir.join("run");
    let o = kfsim(&["run", sc.to_str().unwrap(), "-q", "--out", run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let mut live = json(&run.join("summary.json"));
    live["engine"] = "live".into();
    let latency = serde_json::json!({"count": 4, "mean": 2.0, "p50": 2.0, "p90": 2.0, "p95": 2.0, "p99": 2.0, "p999": 2.0, "max": 2.0});
    let endpoint = |errors: u64| {
        let mut e = latency.clone();
        e["errors"] = errors.into();
        e["error_rate"] = (errors as f64 / 4.0).into();
        e["errors_by_kind"] = serde_json::json!({"timeout": errors});
        e
    };
    // a batch's errors count its refused actions: more than its calls
    live["http"] = serde_json::json!({"gettoken": endpoint(1), "customer_batch": endpoint(9)});
    live["messages"]["sent"] = 40.into();
    live["messages"]["delivered"] = 40.into();
    // as many sessions left the bot as went to it
    live["bot"] = serde_json::json!({"sessions": 10, "resolved": 3, "handed_over": 5, "rejected": 2,
        "deflection": 0.375, "replies": 4, "first_response": latency, "time_in_bot": latency});
    let good = dir.join("good.json");
    std::fs::write(&good, live.to_string()).unwrap();
    let g = good.to_str().unwrap();
    let o = kfsim(&["compare", g, g]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let s = &live["sessions"];
    let n = |k: &str| s[k].as_u64().unwrap();
    let (offered, ended) = (n("offered"), n("answered") + n("abandoned") + n("unfinished"));
    let sessions = format!(
        "at `sessions`: answered {} + abandoned {} + rejected {} + unfinished {} is {}, more than offered \
         {offered}",
        n("answered"),
        n("abandoned"),
        offered + 1 - ended,
        n("unfinished"),
        offered + 1
    );
    for (path, value, want) in [
        ("/sessions/rejected", serde_json::json!(offered + 1 - ended), sessions.as_str()),
        ("/http/gettoken", endpoint(5), "at `http.gettoken`: errors 5 is more than calls (count) 4"),
        ("/messages/delivered", serde_json::json!(41), "at `messages`: delivered 41 is more than sent 40"),
        // a live target's later word of how a session left the bot is its
        // error: a session leaves the bot once (an older kfsim's summary
        // that broke this is refused)
        (
            "/bot/rejected",
            serde_json::json!(3),
            "at `bot`: resolved 3 + handed_over 5 + rejected 3 is more than sessions 10",
        ),
    ] {
        let mut v = live.clone();
        *v.pointer_mut(path).unwrap() = value;
        let bad = dir.join("bad.json");
        std::fs::write(&bad, v.to_string()).unwrap();
        let b = bad.to_str().unwrap();
        for args in [vec!["compare", b, g], vec!["compare", g, b]] {
            let o = kfsim(&args);
            let (_, stderr) = text(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(&format!("{b} is not a kfsim summary: {want}")), "{args:?}: {stderr}");
        }
        std::fs::write(run.join("summary.json"), v.to_string()).unwrap();
        let o = kfsim(&["report", run.to_str().unwrap()]);
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(want), "want {want:?} in {stderr}");
    }
}

/// A summary read back with a figure no run writes is refused, naming the
/// file and the figure, exit 2: a negative service level and ASA were
/// compared as they stood, and a p95 of 1e308 was shown as
/// `307445734561825860h15m` (found by probing); so is one whose queue
/// waits outnumber the sessions answered.
#[test]
fn a_summary_with_figures_no_run_writes_is_refused() {
    let dir = scratch("figures");
    let sc = scenario_with_gates(&dir, "");
    let good = dir.join("good");
    let o = kfsim(&["run", sc.to_str().unwrap(), "-q", "--out", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let whole = json(&good.join("summary.json"));
    let bad = dir.join("bad.json");
    let answered = whole["sessions"]["answered"].as_u64().unwrap();
    let waits = format!(
        "at `latency_ms.queue_wait`: count {} is more than `sessions.answered` {answered}",
        answered + 1
    );
    for (path, value, want) in [
        // each in its range, but more waits than sessions answered
        ("/latency_ms/queue_wait/count", serde_json::json!(answered + 1), waits.as_str()),
        ("/service_level", serde_json::json!(-0.5), "at `service_level`: -0.5 is below 0"),
        ("/asa_ms", serde_json::json!(-100000.0), "at `asa_ms`: -100000.0 is below 0"),
        ("/by_entry/search/service_level", serde_json::json!(80.0), "is not a share"),
        ("/latency_ms/queue_wait/p95", serde_json::json!(1e308), "at `latency_ms.queue_wait.p95`: 1e+308 ms"),
    ] {
        let mut v = whole.clone();
        *v.pointer_mut(path).unwrap() = value;
        std::fs::write(&bad, v.to_string()).unwrap();
        let (b, g) = (bad.to_str().unwrap(), good.to_str().unwrap());
        for args in [
            vec!["compare", b, g],
            vec!["compare", g, b],
            vec![
                "run",
                sc.to_str().unwrap(),
                "-q",
                "--out",
                dir.join("r").to_str().unwrap(),
                "--baseline",
                b,
            ],
        ] {
            let o = kfsim(&args);
            let (stdout, stderr) = text(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(&format!("{b} is not a kfsim summary: ")), "{args:?}: {stderr}");
            assert!(stderr.contains(want), "{args:?}: want {want:?} in {stderr}");
            assert!(!stdout.contains("h15m"), "{stdout}");
        }
    }
    assert!(!dir.join("r").exists(), "a bad baseline is refused before the run");
    // a run folder's own, re-rendered
    std::fs::copy(&bad, good.join("summary.json")).unwrap();
    let o = kfsim(&["report", good.to_str().unwrap()]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("at `latency_ms.queue_wait.p95`: 1e+308 ms"), "{stderr}");
}
