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
fn a_gate_and_a_name_with_an_equals_sign_are_set_by_their_paths() {
    // a gate's metric path has dots: written bare or quoted, it is the gate
    // the file has (it was read as nested tables and refused)
    for gate in ["gates.queue_wait.p95=< 1ms", "gates.\"queue_wait.p95\"=< 1ms"] {
        let o =
            kfsim(&["run", "scenarios/quickstart.toml", "--quiet", "--set", "duration=1h", "--set", gate]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{gate}: the tightened gate fails the run: {stderr}");
    }
    // a name with `=` in it, quoted as a TOML key
    let dir = scratch("equals-name");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("s.toml");
    std::fs::write(
        &file,
        "name = \"eq\"\nduration = \"1h\"\n[[account]]\nname = \"a=b\"\n[[agents]]\naccount = \"a=b\"\ncount = 2\nreply_delay = \"30s\"\n\
         [[entry]]\nscene = \"web\"\naccount = \"a=b\"\nrate = \"1/min\"\n",
    )
    .unwrap();
    let out = dir.join("out");
    let o = kfsim(&[
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--set",
        "agents.\"a=b\".count=3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_summary(&out).agents.len(), 3);
    // an unclosed quote is said, not taken for a missing `=`
    let o = kfsim(&["validate", "scenarios/quickstart.toml", "--set", "gates.\"queue_wait.p95=< 1m"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("a quote in KEY is not closed"));
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

/// A report folder that cannot be made once the run is over exits 3 (a
/// file in the way is the argument's mistake, refused first with 2: see
/// `an_out_that_cannot_be_a_folder_is_refused_first`).
#[test]
fn an_unwritable_report_folder_exits_3() {
    // no folder can be made in /proc, not even by root
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let o = kfsim(&["run", "scenarios/quickstart.toml", "-q", "--out", "/proc/kfsim-test-no-such/x"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A run into the folder of an earlier one that fails before its report
/// is whole must not leave the earlier run's summary.json beside its own
/// series.json: a comparison would read the two as one run. The summary
/// is removed first and written last, so the folder has none.
#[test]
fn a_run_that_fails_while_writing_leaves_no_summary_to_misread() {
    let out = scratch("half-written");
    let dir = out.to_str().unwrap();
    let o = kfsim(&["run", "scenarios/quickstart.toml", "-q", "--out", dir]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let earlier = std::fs::read(out.join("series.json")).unwrap();
    // report.html a folder: the second run fails after its series
    std::fs::remove_file(out.join("report.html")).unwrap();
    std::fs::create_dir(out.join("report.html")).unwrap();
    let o = kfsim(&["run", "scenarios/quickstart.toml", "-q", "--seed", "9", "--out", dir]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("report.html"));
    assert_ne!(std::fs::read(out.join("series.json")).unwrap(), earlier, "the second run's series");
    assert!(!out.join("summary.json").exists(), "no summary: the folder is not a whole run");
    let o = kfsim(&["compare", dir, dir]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no summary.json"));
    // nothing half-written is left under a temporary name either
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

/// A folder that cannot take the report (a full disk, found by probing
/// with a 64 KiB tmpfs) lost every figure the run measured: nothing but
/// the write's error was printed. The figures are printed, even with
/// `--quiet` (they are in no file), and the run still exits 3.
#[test]
fn a_run_whose_report_cannot_be_written_still_prints_its_figures() {
    let out = scratch("unwritable-report");
    // report.html a folder: the run fails after its series
    std::fs::create_dir(out.join("report.html")).unwrap();
    let o = kfsim(&["run", "scenarios/quickstart.toml", "-q", "--out", out.to_str().unwrap()]);
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("report.html") && stderr.contains("printed above"), "{stderr}");
    assert!(stdout.contains("sessions   offered"), "{stdout}");
    assert!(stdout.contains("gate       ok   service_level"), "{stdout}");
    // no line points at a report that is not there
    assert!(!stdout.contains("report     "), "{stdout}");
}

/// The same for a sweep: its points were printed only once its folder
/// was written.
#[test]
fn a_sweep_whose_folder_cannot_be_written_still_prints_its_points() {
    let out = scratch("unwritable-sweep");
    std::fs::create_dir(out.join("sweep.csv")).unwrap();
    let o = kfsim(&[
        "sweep",
        "scenarios/erlang-c.toml",
        "--set",
        "duration=3h",
        "--vary",
        "agents.kf.count=44,46",
        "--replications",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("sweep.csv") && stderr.contains("printed above"), "{stderr}");
    assert!(stdout.contains("agents.kf.count=44") && stdout.contains("agents.kf.count=46"), "{stdout}");
    assert!(!stdout.contains("sweep.html"), "{stdout}");
    assert!(!out.join("sweep.json").exists());
}

/// Editors on Windows begin a UTF-8 file with a byte-order mark: a summary
/// saved by one was "not valid JSON" to `compare` and `report` (found by
/// probing). It is skipped.
#[test]
fn a_summary_with_a_byte_order_mark_is_read() {
    let out = scratch("bom");
    let dir = out.join("run");
    let o = kfsim(&["run", "scenarios/quickstart.toml", "-q", "--out", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = std::fs::read(dir.join("summary.json")).unwrap();
    let marked = out.join("marked.json");
    std::fs::write(&marked, [&b"\xef\xbb\xbf"[..], &summary].concat()).unwrap();
    let o = kfsim(&["compare", dir.join("summary.json").to_str().unwrap(), marked.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    // the run folder's own, read back by `report`
    std::fs::write(dir.join("summary.json"), [&b"\xef\xbb\xbf"[..], &summary].concat()).unwrap();
    let o = kfsim(&["report", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `kfsim ARGS`, sent SIGINT after `wait`: its exit code and stdout.
fn interrupted(args: &[&str], wait: Duration) -> (Option<i32>, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(wait);
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// A live run still retrying to reach its target (for ten seconds) did not
/// act on Ctrl-C: it now stops at once, exit 130, and writes nothing, as
/// nothing ran.
#[test]
fn ctrl_c_while_a_live_run_reaches_its_target_stops_it() {
    let out = scratch("live-unreached");
    // a port nothing listens on: every try is refused at once
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let target = format!("http://127.0.0.1:{port}");
    let args = ["run", "scenarios/quickstart.toml", "--engine", "live", "--target", &target, "-q", "--out"];
    let started = std::time::Instant::now();
    let (code, _, stderr) =
        interrupted(&[&args[..], &[out.to_str().unwrap()]].concat(), Duration::from_millis(1500));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted while reaching the target"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    assert!(!out.join("summary.json").exists());
}

/// A live run stopped gives its calls in flight their answers before it
/// writes, which against a target that stopped answering took 38 s with
/// nothing said (found by probing); a second Ctrl-C in that silence threw
/// the report away. It says what it waits for and how long at most when it
/// stops, and still writes the report.
#[test]
fn ctrl_c_in_a_live_run_says_it_is_finishing_and_writes_the_report() {
    let out = scratch("live-interrupt");
    let args = ["run", "scenarios/quickstart.toml", "--engine", "live", "-q", "--out", out.to_str().unwrap()];
    let (code, _, stderr) = interrupted(&args, Duration::from_millis(3000));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("waiting at most 8 s for the sessions still open to end and the calls in flight"),
        "{stderr}"
    );
    assert!(stderr.contains("a second Ctrl-C ends at once, without it"), "{stderr}");
    let s = read_summary(&out);
    assert!(s.run.interrupted, "{:?}", s.run);
}

// Two points, one serial replication each: 87 600 sessions (done at once),
// then 52 million (far longer than the test waits).
const QUICK_THEN_LONG: [&str; 8] = [
    "sweep",
    "scenarios/bench-mmc.toml",
    "--set",
    "duration=3650d",
    "--vary",
    "entry.web.rate=1/h,10/min",
    "--serial",
    "--out",
];

#[test]
fn ctrl_c_stops_a_sweep_and_writes_the_points_that_finished() {
    let out = scratch("sweep-interrupt");
    let mut args = QUICK_THEN_LONG.to_vec();
    args.extend([out.to_str().unwrap(), "--replications", "1"]);
    let (code, stdout, stderr) = interrupted(&args, Duration::from_millis(2000));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stdout.contains("INTERRUPTED: 1 of 2 runs finished"), "{stdout}");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(s["interrupted"], serde_json::json!({"runs": 1, "of": 2}));
    // the finished point has its figures; the one cut short has none (a
    // part of a day is not a replication of the scenario)
    assert_eq!(s["points"][0]["metrics"]["service_level"]["n"], 1);
    // one replication has no interval: not "[x, x]"
    let line = stdout.lines().find(|l| l.starts_with("entry.web.rate=1/h:")).unwrap_or_default();
    assert!(line.contains("(n = 1)") && !line.contains(" ["), "{stdout}");
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    let (header, row) = (csv.lines().next().unwrap(), csv.lines().nth(1).unwrap());
    let cell = |name: &str| {
        let i = header.split(',').position(|h| h == name).unwrap_or_else(|| panic!("{name} in {header}"));
        row.split(',').nth(i).unwrap().to_owned()
    };
    assert!(!cell("service_level.mean").is_empty(), "{row}");
    assert_eq!(
        (cell("service_level.lo95"), cell("service_level.hi95")),
        (String::new(), String::new()),
        "{row}"
    );
    // and the CSV says how many replications each figure rests on: the
    // point cut short has none
    assert_eq!(cell("service_level.n"), "1", "{row}");
    let cut = csv.lines().nth(2).unwrap();
    let i = header.split(',').position(|h| h == "service_level.n").unwrap();
    assert_eq!(cut.split(',').nth(i), Some("0"), "{cut}");
    assert_eq!(s["points"][1]["metrics"], serde_json::json!({}));
    assert!(std::fs::read_to_string(out.join("sweep.html")).unwrap().contains("interrupted: 1 of 2 runs"));
}

#[test]
fn ctrl_c_stops_a_sweep_shard_and_writes_the_runs_that_finished() {
    let out = scratch("sweep-shard-interrupt");
    let mut args = QUICK_THEN_LONG.to_vec();
    args.push(out.to_str().unwrap());
    // shard 0 of 2 owns replication 0 of each point
    args.extend(["--replications", "2", "--shard", "0/2"]);
    let (code, _, stderr) = interrupted(&args, Duration::from_millis(2000));
    assert_eq!(code, Some(130), "{stderr}");
    let f: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("shard.json")).unwrap()).unwrap();
    let results = f["sweep"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!((results[0]["point"].as_u64(), results[0]["replication"].as_u64()), (Some(0), Some(0)));
}

#[test]
fn ctrl_c_stops_a_plan_with_exit_130_and_says_nothing_was_decided() {
    let out = scratch("plan-interrupt");
    let args = [
        "plan",
        "scenarios/bench-mmc.toml",
        "--set",
        "duration=3650d",
        "--target",
        "service_level>=0.8",
        "--vary",
        "agents.kf.count",
        "--out",
        out.to_str().unwrap(),
    ];
    let (code, _, stderr) = interrupted(&args, Duration::from_millis(1500));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted: the search had not finished"), "{stderr}");
    assert!(!out.join("plan.json").exists());
}

#[test]
fn ctrl_c_stops_the_run_and_still_writes_the_report() {
    let out = scratch("interrupt");
    // ten years of arrivals: far longer than the test waits
    let child = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .args(["run", "scenarios/bench-mmc.toml", "--set", "duration=3650d", "--quiet", "--out"])
        .arg(&out)
        .arg("--junit")
        .arg(out.join("junit.xml"))
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
    // CI shows the run in error, not green (its only sign was a property)
    let xml = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let error = doc.descendants().find(|n| n.has_tag_name("error")).expect("an error case");
    assert!(error.attribute("message").unwrap().contains("interrupted"), "{xml}");
}

/// A run in a terminal that hangs up (its ssh session closed) gets SIGHUP
/// and then EIO for every line it prints: it still writes its report and
/// exits 130 (it panicked on its "interrupted" line, exit 101, nothing
/// written). Python's `pty` plays the terminal: closing its master side is
/// the hang-up.
#[test]
fn a_run_whose_terminal_hangs_up_writes_its_report() {
    let out = scratch("hangup");
    let script = r#"
import os, pty, signal, sys, time
pid, fd = pty.fork()
if pid == 0:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    os.execv(sys.argv[1], sys.argv[1:])
end = time.time() + 2
while time.time() < end:
    try:
        os.read(fd, 65536)
    except OSError:
        break
os.close(fd)
_, status = os.waitpid(pid, 0)
print("exit", os.WEXITSTATUS(status) if os.WIFEXITED(status) else "signal %d" % os.WTERMSIG(status))
"#;
    let o = Command::new("python3")
        .args(["-c", script, env!("CARGO_BIN_EXE_kfsim"), "run", "scenarios/erlang-c.toml"])
        .args(["--set", "duration=3650d", "--out"])
        .arg(&out)
        .output()
        .expect("python3 runs");
    let said = String::from_utf8_lossy(&o.stdout);
    assert_eq!(said.trim(), "exit 130", "{said}{}", String::from_utf8_lossy(&o.stderr));
    let s = read_summary(&out);
    assert!(s.run.interrupted && s.sessions.offered > 0, "{:?}", s.run);
    assert!(out.join("report.html").exists());
}

/// A gate added or broken by `--set` is reported as that `--set`: it was
/// reported at line 22 of a 21-line file (the rewritten text's).
#[test]
fn a_gate_broken_by_an_override_is_named_as_that_override() {
    let cases = [
        ("gates.servce_level=\">= 0.8\"", "unknown metric `servce_level`: the closest is `service_level`"),
        ("gates.service_level=\"bogus\"", "invalid condition \"bogus\""),
    ];
    for command in ["validate", "run", "sweep", "plan"] {
        for (set, want) in cases {
            let mut args = vec![command, "scenarios/erlang-c.toml", "--set", "seed=2", "--set", set];
            match command {
                "plan" => args.extend(["--target", "service_level>=0.8", "--vary", "agents.kf.count"]),
                "sweep" => args.extend(["--vary", "agents.kf.count=44,45"]),
                _ => {}
            }
            let o = kfsim(&args);
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{command} {set}: {stderr}");
            assert!(stderr.contains(&format!("--set {set}: {want}")), "{command} {set}: {stderr}");
            assert!(!stderr.contains("erlang-c.toml:"), "{command} {set}: {stderr}");
        }
    }
    // an override that needs a later one to be valid is not the one to
    // blame (the file's warm-up is an hour: duration=30m alone breaks it)
    for (set, want) in [cases[0], ("seed=-1", "invalid value: integer `-1`")] {
        let o = kfsim(&[
            "validate",
            "scenarios/erlang-c.toml",
            "--set",
            "duration=30m",
            "--set",
            "warmup=10m",
            "--set",
            set,
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{set}: {stderr}");
        assert!(stderr.contains(&format!("--set {set}: {want}")), "{set}: {stderr}");
    }
}

/// A bad value of a sweep's `--vary` is reported as that `--vary` value,
/// not as the `--set` the sweep turns it into.
#[test]
fn a_bad_vary_value_is_named_as_given() {
    let cases: [(&[&str], &str); 4] = [
        (&["--vary", "agents.kf.count=44,0"], "--vary agents.kf.count=0: "),
        // was a sweep of 44 and 46, the slip unseen
        (&["--vary", "agents.kf.count=44,,46"], "--vary agents.kf.count=44,,46: an empty value"),
        (
            &["--vary", "agents.nobody.count=1..2"],
            "--vary agents.nobody.count=1: no [[agents]] named \"nobody\"",
        ),
        (
            &["--set", "seed=4", "--vary", "agents.kf.count=44", "--vary", "entry.web.rate=-1/min"],
            "--vary entry.web.rate=-1/min: ",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["sweep", "scenarios/erlang-c.toml", "--replications", "1"];
        all.extend(args);
        let o = kfsim(&all);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr:?} should name {want:?}");
        assert!(!stderr.contains("--set") && !stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // a --set that breaks the scenario is still a --set
    let o = kfsim(&["sweep", "scenarios/erlang-c.toml", "--set", "agents.kf.count=0", "--vary", "seed=1,2"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--set agents.kf.count=0: "));
}

/// A range of `--vary` whose count of values is no integer (a tiny step, an
/// infinite or NaN bound) overflowed counting them: a panic in a debug build
/// and "no values" in a release one, or a point `NaN`.
#[test]
fn a_vary_range_beyond_counting_is_refused() {
    let cases = [
        ("agents.kf.count=0..1:1e-300", "about 1e300 values are too many for one sweep (at most 10000)"),
        ("agents.kf.count=-1e308..1e308:1", "infinitely many values are too many"),
        ("agents.kf.count=1..1e20", "about 1e20 values are too many"),
        ("agents.kf.count=1..10001", "10001 values are too many"),
        ("agents.kf.count=1..inf:1", "\"inf\" is not a finite number"),
        ("agents.kf.count=NaN..3:1", "\"NaN\" is not a finite number"),
        ("agents.kf.count=1..3:nan", "\"nan\" is not a finite number"),
    ];
    for (vary, want) in cases {
        let o = kfsim(&["sweep", "scenarios/erlang-c.toml", "--replications", "1", "--vary", vary]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{vary}: {stderr}");
        assert!(stderr.contains(&format!("--vary {vary}: {want}")), "{vary}: {stderr:?} should say {want:?}");
    }
}

/// A value nested a million deep is refused on its line of two megabytes,
/// which the error showed whole: `kfsim validate F 2>&1 | head` closed the
/// pipe in the middle of it and the write panicked (exit 101).
#[test]
fn an_error_on_a_huge_line_is_short_and_survives_a_closed_stderr() {
    use std::io::Read;
    let dir = scratch("huge-line");
    let file = dir.join("deep.toml");
    std::fs::write(&file, format!("name = {}{}\n", "[".repeat(1_000_000), "]".repeat(1_000_000))).unwrap();
    let o = kfsim(&["validate", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with(&format!("error: {}:1:", file.display())), "{stderr}");
    assert!(stderr.len() < 2000, "{} bytes of error", stderr.len());
    let mut child = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .args(["validate", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 6];
    child.stderr.take().unwrap().read_exact(&mut first).unwrap();
    // the pipe is closed here, before the rest of the message is read
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2), "{status:?}");
}

/// A value of megabytes named in an error, in the file or in an override,
/// came back whole (three times for an override): errors are cut around
/// `…` (found by probing: a 3 MB message).
#[test]
fn an_error_naming_a_huge_value_is_short() {
    let dir = scratch("huge-value");
    let file = dir.join("huge.toml");
    let text = std::fs::read_to_string("scenarios/erlang-c.toml").unwrap();
    let huge = format!("{}h", "9".repeat(1_000_000));
    std::fs::write(&file, text.replace("duration = \"", &format!("duration = \"{huge}\"\n# \""))).unwrap();
    let set = format!("seed={}", "9".repeat(100_000));
    for args in
        [vec!["validate", file.to_str().unwrap()], vec!["validate", "scenarios/erlang-c.toml", "--set", &set]]
    {
        let o = kfsim(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert!(stderr.len() < 2000, "{} bytes of error", stderr.len());
        assert!(stderr.contains(" … "), "{stderr}");
    }
}

/// The delivery line of a live run adds up: what was sent but neither
/// delivered nor lost (a bot's sessions', abandoned ones') is printed
/// ("sent 15250 · delivered 13270 · lost 0" read as a leak).
#[test]
fn a_live_runs_delivery_line_adds_up() {
    let out = scratch("delivery-line");
    let o = kfsim(&[
        "run",
        "scenarios/quickstart.toml",
        "--engine",
        "live",
        "--set",
        "duration=1h",
        "--set",
        "warmup=0s",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let m = read_summary(&out).messages;
    let (sent, delivered, lost) = (m.sent.unwrap(), m.delivered.unwrap(), m.lost.unwrap());
    // the quickstart's bot resolves about 30 % of some 700 sessions
    assert!(sent > delivered + lost, "{sent} {delivered} {lost}");
    let line = stdout.lines().find(|l| l.starts_with("delivery ")).expect("a delivery line");
    let want = format!(
        "sent {sent} · delivered {delivered} · lost {lost} · for no servicer {}",
        sent - delivered - lost
    );
    assert!(line.contains(&want), "{line}: should say {want}");
}

/// A live run's `--time-scale` far below 1 and a `--start-at` past any
/// clock panicked converting them to a wall time (exit 101).
#[test]
fn live_times_beyond_a_clock_are_refused() {
    let cases: [(&[&str], &str); 4] = [
        (&["--time-scale", "1e-308"], "--time-scale must be a number from 0.000001 to 1000000"),
        (&["--time-scale", "2e6"], "--time-scale must be a number from 0.000001 to 1000000"),
        (&["--start-at", "1e300"], "--start-at 1e300: seconds since the epoch, from 0 to 253402300799"),
        (&["--start-at=-1"], "--start-at -1: seconds since the epoch"),
    ];
    for (args, want) in cases {
        let mut all = vec!["run", "scenarios/quickstart.toml", "--engine", "live", "--quiet"];
        all.extend(args);
        let o = kfsim(&all);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr:?} should say {want:?}");
    }
}

/// A sweep whose values all read as numbers but not finite ones (an entry
/// named "NaN", or "inf") drew its charts on an axis over them: plotters
/// looked for ticks for ever and the sweep never ended.
#[test]
fn a_sweep_over_values_that_are_no_finite_numbers_ends() {
    // TOML reads `inf` and `1e308` as numbers, no names; Rust reads these too
    // (a name holds no `.`: it is a segment of metric paths)
    for vary in ["entry.web.name=NaN", "entry.web.name=Infinity,-Infinity", "entry.web.name=9e308,-9e308"] {
        let out = scratch("sweep-nan");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kfsim"))
            .args([
                "sweep",
                "scenarios/erlang-c.toml",
                "--replications",
                "1",
                "--serial",
                "--set",
                "duration=2h",
            ])
            .args(["--vary", vary, "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("{vary}: the sweep did not end within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(0), "{vary}");
        assert!(out.join("sweep.html").exists(), "{vary}");
    }
}

/// Agents whose wrap-up lasts a million days, in a day of arrivals, push
/// the simulator's clock to its end (u64::MAX µs, where it saturates): the
/// time series then overflowed computing the end of that interval, a panic
/// in a debug build.
#[test]
fn a_clock_run_to_its_end_does_not_panic() {
    let out = scratch("clock-end");
    let o = kfsim(&[
        "run",
        "scenarios/erlang-c.toml",
        "--quiet",
        "--no-gates",
        "--set",
        "agents.kf.wrap_up=1000000d",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Sessions that would outlive the simulator's clock (a thousand replies of
/// a million days each) stop at its horizon, and the run says so. Before,
/// their events piled up at the clock's end: replies of no duration, a run
/// ending at u64::MAX µs, and no word of it.
#[test]
fn a_run_past_the_clock_horizon_stops_there_and_says_so() {
    let out = scratch("horizon");
    let file = out.join("long.toml");
    let text = r#"
name = "long"
duration = "10s"
[[account]]
name = "kf"
[[agents]]
count = 10
reply_delay = "1000000d"
[[entry]]
scene = "web"
rate = "1/s"
messages = 1000
"#;
    std::fs::write(&file, text).unwrap();
    let report = out.join("report");
    let o = kfsim(&["run", file.to_str().unwrap(), "--quiet", "--out", report.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("clock horizon"), "{stderr}");
    let s = read_summary(&report);
    assert!(s.run.horizon, "{:?}", s.run);
    assert!(s.run.end_s <= kfsim::sim::HORIZON_US as f64 / 1e6, "{:?}", s.run);
    // every reply took its million days (the mean is exact)
    let mean = s.latency_ms.reply.mean.unwrap();
    assert!((mean - 8.64e13).abs() < 1.0, "{:?}", s.latency_ms.reply);
    // a run that ends in time leaves the field out
    std::fs::write(&file, text.replace("messages = 1000", "messages = 3")).unwrap();
    let o = kfsim(&["run", file.to_str().unwrap(), "--quiet", "--out", report.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!std::fs::read_to_string(report.join("summary.json")).unwrap().contains("horizon"));
}

#[test]
fn bench_of_the_engine_alone_runs_the_same_sessions() {
    // the scenario's sessions column, per scenario
    let sessions = |extra: &[&str]| -> Vec<(String, u64)> {
        let mut args =
            vec!["bench", "--sessions", "30000", "scenarios/bench-mmc.toml", "scenarios/bench-chat.toml"];
        args.extend_from_slice(extra);
        let o = kfsim(&args);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8(o.stdout).unwrap();
        out.lines()
            .filter(|l| l.starts_with("bench-"))
            .map(|l| {
                let mut w = l.split_whitespace();
                (w.next().unwrap().to_owned(), w.next().unwrap().parse().unwrap())
            })
            .collect()
    };
    let measured = sessions(&[]);
    assert_eq!(measured.len(), 2, "{measured:?}");
    // the same seed and scenario: the same arrivals, with or without metrics
    assert_eq!(sessions(&["--engine-only"]), measured);
    assert!(measured.iter().all(|(_, n)| (25_000..35_000).contains(n)), "{measured:?}");
}

/// Whether process `pid` still runs (a zombie nobody reaps has ended).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// Found by probing: `kfsim bench` killed (a CI job's timeout, a closed
/// terminal, SIGKILL) left its measuring child running on, orphaned, for
/// as long as its sessions take. The child now ends with its parent.
#[test]
fn a_killed_bench_takes_its_child_with_it() {
    // a billion sessions: minutes of work for the child
    let mut parent = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .args(["bench", "--sessions", "1000000000", "scenarios/bench-mmc.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let children = format!("/proc/{0}/task/{0}/children", parent.id());
    let mut child = String::new();
    for _ in 0..200 {
        child = std::fs::read_to_string(&children).unwrap_or_default().trim().to_owned();
        if !child.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!child.is_empty(), "the benchmark process never started");
    let killed = Command::new("kill").args(["-KILL", &parent.id().to_string()]).status().unwrap();
    assert!(killed.success());
    parent.wait().unwrap();
    // a bound on a hang, not a measure of speed: the child ends within a
    // moment, or runs for minutes
    let mut left = 600;
    while running(&child) && left > 0 {
        std::thread::sleep(Duration::from_millis(50));
        left -= 1;
    }
    let orphaned = running(&child);
    if orphaned {
        let _ = Command::new("kill").args(["-KILL", &child]).status();
    }
    assert!(!orphaned, "the benchmark process {child} outlived its parent");
}

#[test]
fn bench_refuses_sessions_it_could_not_run() {
    for sessions in ["0", "1000000001"] {
        let o = kfsim(&["bench", "--sessions", sessions]);
        assert_eq!(o.status.code(), Some(2), "{sessions}: {}", String::from_utf8_lossy(&o.stderr));
    }
    // sessions a scenario's rate could not bring within the longest
    // duration: an argument out of range too (exit 2, as documented)
    let dir = scratch("bench-slow");
    for rate in ["1/d", "5e-324/s"] {
        let path = dir.join("slow.toml");
        let text = std::fs::read_to_string("scenarios/bench-mmc.toml").unwrap().replace("10/min", rate);
        std::fs::write(&path, text).unwrap();
        let o = kfsim(&["bench", path.to_str().unwrap(), "--sessions", "1000000000"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{rate}: {err}");
        assert!(err.contains("ask for fewer") && err.len() < 400, "{rate}: {err}");
    }
}

/// Found by probing: at or above its servers' load, with no patience and
/// no bound on the pool, a plain queue has no steady state (its ASA doubled
/// with the run's length), and nothing said so. `run` warns and a sweep
/// marks the point; a point below the load is left alone.
#[test]
fn an_overloaded_plain_queue_is_said_to_be_unstable() {
    let out = scratch("unstable");
    let dir = out.join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .args([
            "run",
            "scenarios/erlang-c.toml",
            "--quiet",
            "--set",
            "duration=2h",
            "--set",
            "agents.kf.count=40",
        ])
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning: the offered load is 40.00 Erlangs for 40 servers"), "{stderr}");
    let o = kfsim(&[
        "sweep",
        "scenarios/erlang-c.toml",
        "--set",
        "duration=2h",
        "--vary",
        "agents.kf.count=40,44",
        "--replications",
        "2",
        "--out",
        out.join("sweep").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let line = |n: &str| {
        stdout.lines().find(|l| l.starts_with(&format!("agents.kf.count={n}:"))).unwrap().to_owned()
    };
    assert!(line("40").contains("UNSTABLE"), "{stdout}");
    assert!(!line("44").contains("UNSTABLE") && line("44").contains("theory"), "{stdout}");
    let sweep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sweep").join("sweep.json")).unwrap()).unwrap();
    assert_eq!(sweep["points"][0]["unstable"], true);
    assert!(sweep["points"][1].get("unstable").is_none());
}

/// `--out` naming a file is the user's mistake, said before the run (it
/// was exit 3 "removing FILE/shard.json: Not a directory").
#[test]
fn out_naming_a_file_is_refused_before_the_run() {
    let dir = scratch("out-file");
    let file = dir.join("report.txt");
    std::fs::write(&file, "mine").unwrap();
    let o = kfsim(&["run", "scenarios/erlang-c.toml", "-q", "--out", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("a file is there; --out names a folder"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine", "left as it was");
}

/// Every bad gate of a scenario is reported in one go, each at its line
/// and column: a second one (a share written as 80) was only found after
/// the first was fixed. `--no-gates` warns about a gate whose metric the
/// run has not, but refuses a condition that does not parse, as `validate`
/// does: before, one behind an unbound gate went unsaid.
#[test]
fn every_bad_gate_is_reported_at_once() {
    let dir = scratch("gates");
    let file = dir.join("g.toml");
    let head = "name = \"g\"\nduration = \"1h\"\n[[account]]\nname = \"kf\"\n[[agents]]\ncount = 2\n\
                reply_delay = \"30s\"\n[[entry]]\nscene = \"web\"\nrate = \"1/min\"\n[gates]\n";
    let write = |gates: &str| std::fs::write(&file, format!("{head}{gates}")).unwrap();
    let (f, out) = (file.to_str().unwrap(), dir.join("out"));
    write("\"nope.x\" = \"< 1\"\n\"service_level\" = \">= 80\"\n\"asa_ms\" = 5\n");
    for args in [vec!["validate", f], vec!["run", f, "-q", "--out", out.to_str().unwrap()]] {
        let o = kfsim(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        for (at, what) in [
            ("12:1", "unknown metric `nope.x`"),
            ("13:19", "invalid condition \">= 80\": service_level is a share from 0 to 1"),
            ("14:12", "the condition of `asa_ms` must be a string"),
        ] {
            let line = format!("error: {f}:{at}: {what}");
            assert!(stderr.contains(&line), "{args:?}: want {line:?} in\n{stderr}");
        }
    }
    let o = kfsim(&["run", f, "-q", "--no-gates", "--out", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("warning: {f}:12:1: unknown metric `nope.x`")), "{stderr}");
    assert!(stderr.contains(&format!("error: {f}:13:19: ")), "{stderr}");
    assert!(stderr.contains(&format!("error: {f}:14:12: ")), "{stderr}");
    assert!(!out.join("summary.json").exists(), "refused before the run");
    // metrics the run has not, and nothing else: warnings, and the run goes on
    write("\"nope.x\" = \"< 1\"\n\"by_entry.app.service_level\" = \">= 0.8\"\n");
    let o = kfsim(&["run", f, "-q", "--no-gates", "--out", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("(not checked: --no-gates)").count(), 2, "{stderr}");
    assert!(out.join("summary.json").exists());
}

/// A `--junit` file that cannot be written does not hide the scenario's
/// own mistake (found by probing: exit 3, "writing /dev/full", and not a
/// word of the bad gate), and a file where its folder should be is an
/// argument's mistake, said as one.
#[test]
fn an_unwritable_junit_file_does_not_hide_the_scenario_error() {
    let dir = scratch("junit-unwritable");
    let bad = dir.join("bad.toml");
    let text = "name = \"bad\"\n[[account]]\nname = \"kf\"\n[[agents]]\ncount = 2\nreply_delay = \"1m\"\n\
                [[entry]]\nscene = \"web\"\nrate = \"1/min\"\n[gates]\n\"service_level\" = \"=> 0.5\"\n";
    std::fs::write(&bad, text).unwrap();
    let out = dir.join("out");
    let (bad, out) = (bad.to_str().unwrap(), out.to_str().unwrap());
    if std::path::Path::new("/dev/full").exists() {
        let o = kfsim(&["run", bad, "--quiet", "--out", out, "--junit", "/dev/full"]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("invalid condition \"=> 0.5\""), "{stderr}");
        assert!(stderr.contains("warning: writing /dev/full"), "{stderr}");
    }
    let file = dir.join("afile");
    std::fs::write(&file, "").unwrap();
    let junit = file.join("x.xml");
    let o = kfsim(&[
        "run",
        "scenarios/quickstart.toml",
        "--quiet",
        "--out",
        out,
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{} is a file, not a folder", file.display())), "{stderr}");
}

/// An `--out` that cannot be a folder is refused before anything runs, by
/// every command alike (found by probing: a plan exited 3 after its whole
/// search, its results lost).
#[test]
fn an_out_that_cannot_be_a_folder_is_refused_first() {
    let dir = scratch("out-file");
    let file = dir.join("afile");
    std::fs::write(&file, "").unwrap();
    let (f, under) = (file.to_str().unwrap().to_owned(), file.join("sub").to_str().unwrap().to_owned());
    let sc = "scenarios/erlang-c.toml";
    for args in [
        vec!["plan", sc, "--target", "service_level>=0.8", "--vary", "agents.kf.count", "--out", &f],
        vec!["sweep", sc, "--vary", "agents.kf.count=40..41:1", "--out", &under],
        vec!["run", sc, "--out", &under],
    ] {
        let o = kfsim(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--out") && stderr.contains("afile"), "{args:?}: {stderr}");
        assert!(o.stdout.is_empty(), "{args:?}: nothing ran");
    }
}

/// A wait only shards read is refused without them, as `--listen` is
/// without `--middleware`: `run --barrier-wait` without `--barrier` (in the
/// simulator too, which refuses `--barrier`), and `plan --shard-wait` or
/// `--exchange` without `--shard`/`--shards`, were accepted and ignored
/// (found checking README's list of the live flags the simulator refuses).
#[test]
fn waits_for_other_shards_are_refused_without_shards() {
    let out = scratch("shard-waits");
    let dir = out.to_str().unwrap();
    let plan =
        ["plan", "scenarios/erlang-c.toml", "--target", "service_level>=0.8", "--vary", "agents.kf.count"];
    let cases: [(Vec<&str>, &str); 3] = [
        (vec!["run", "scenarios/erlang-c.toml", "--out", dir, "--barrier-wait", "5s"], "--barrier"),
        ([&plan[..], &["--out", dir, "--shard-wait", "2s"]].concat(), "--shard"),
        ([&plan[..], &["--out", dir, "--exchange", dir]].concat(), "--shard"),
    ];
    for (args, names) in cases {
        let o = kfsim(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
        assert!(!out.join("summary.json").exists() && !out.join("plan.json").exists(), "{args:?} ran");
    }
}

/// A scenario's bot is refused against a middleware, which is the bot:
/// kfsim plays none, and the account's sessions were counted as the bot's
/// and never as offered to people (a service level above 1 beside other
/// accounts). The quickstart's presale account has one.
#[test]
fn a_scenario_bot_is_refused_against_a_middleware() {
    let out = scratch("middleware-bot");
    let args = [
        "run",
        "scenarios/quickstart.toml",
        "--engine",
        "live",
        "--middleware",
        "http://127.0.0.1:9/kf/callback",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = kfsim(&args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("account `presale` has a `bot`"), "{stderr}");
    assert!(!out.join("summary.json").exists(), "it ran");
}
