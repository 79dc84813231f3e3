//! The `kfsim` binary end to end: outputs, overrides, exit codes, Ctrl-C.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kfsim::summary::{SCHEMA, Summary};

fn kfsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kfsim")).args(args).output().expect("kfsim runs")
}

/// A fresh, empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kfsim-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_summary(dir: &std::path::Path) -> Summary {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json written");
    serde_json::from_str(&text).expect("summary.json has the documented schema")
}

#[test]
fn run_writes_a_summary_and_prints_one() {
    let out = scratch("run");
    let o = kfsim(&["run", "scenarios/quickstart.toml", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("quickstart · engine sim · seed 5"), "{stdout}");
    assert!(stdout.contains("report.html"));
    let s = read_summary(&out);
    assert_eq!((s.schema.as_str(), s.engine.as_str(), s.seed), (SCHEMA, "sim", 5));
    // 16 presale agents and 4 of after-sales
    assert_eq!(s.agents.len(), 20);
    assert_eq!(s.by_entry.len(), 3);
    assert!(s.sessions.offered > 1000);
}

#[test]
fn seed_and_set_override_the_file() {
    let out = scratch("set");
    let o = kfsim(&[
        "run",
        "scenarios/quickstart.toml",
        "--quiet",
        "--no-gates",
        "--seed",
        "11",
        "--set",
        "duration=2h",
        "--set",
        "agents.day-shift.count=5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty(), "--quiet prints nothing");
    let s = read_summary(&out);
    assert_eq!(s.seed, 11);
    assert_eq!(s.scenario.duration_s, 7200.0);
    // the day shift set to 5, after-sales' 4 as they were
    assert_eq!(s.agents.len(), 9);
    assert_eq!(s.agents.iter().filter(|a| a.id.starts_with("day-shift")).count(), 5);
}

#[test]
fn invalid_input_exits_2_with_a_message() {
    let cases: [(&[&str], &str); 8] = [
        (
            &["run", "scenarios/quickstart.toml", "--set", "agents.night.count=3"],
            "no [[agents]] named \"night\"",
        ),
        (&["run", "scenarios/quickstart.toml", "--set", "entry.search.rate=-3/min"], "must be positive"),
        (&["run", "scenarios/quickstart.toml", "--set", "seed"], "expected KEY=VALUE"),
        (&["run", "does/not/exist.toml"], "does/not/exist.toml"),
        (&["run"], "SCENARIO"),
        // live-only flags are not ignored by the simulator
        (
            &["run", "scenarios/quickstart.toml", "--time-scale", "0"],
            "--time-scale is for the live engine; the simulator runs in virtual time",
        ),
        (
            &["run", "scenarios/quickstart.toml", "--target", "http://127.0.0.1:1"],
            "--target is for the live engine",
        ),
        (&["run", "scenarios/quickstart.toml", "--start-at", "0"], "--start-at is for the live engine"),
    ];
    for (args, want) in cases {
        let o = kfsim(args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr:?} should mention {want:?}");
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn validate_accepts_every_shipped_scenario() {
    for entry in std::fs::read_dir("scenarios").unwrap() {
        let path = entry.unwrap().path();
        let o = kfsim(&["validate", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", path.display(), String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains(": ok"));
    }
}

#[test]
fn an_unwritable_report_folder_exits_3() {
    let out = scratch("unwritable");
    let blocker = out.join("file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let o = kfsim(&["run", "scenarios/quickstart.toml", "-q", "--out", blocker.join("x").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn ctrl_c_stops_the_run_and_still_writes_the_report() {
    let out = scratch("interrupt");
    // ten years of arrivals: far longer than the test waits
    let child = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .args(["run", "scenarios/bench-mmc.toml", "--set", "duration=3650d", "--quiet", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", String::from_utf8_lossy(&o.stderr));
    let s = read_summary(&out);
    assert!(s.run.interrupted);
    assert!(s.sessions.offered > 0 && s.run.end_s < 3650.0 * 86400.0, "{:?}", s.run);
}
