//! Shards and `kfsim merge` as processes: a sweep and a plan sharded over
//! three processes merge into the unsharded output byte for byte; a live
//! run sharded over three processes against one `kfsim serve` carries the
//! schedule of one process; merge refuses what is not the shards of one
//! thing (exit 2); merging a run's own folder gives its own figures.

mod sdk_util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn kfsim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kfsim"))
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shard").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Exit 0, or 1 when only the scenario's gates failed: the folder is written.
fn ran(out: Output, what: &str) {
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{what}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ok(out: Output, what: &str) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap()
}

/// Run `args` once per shard, all at once (as the pods of an Indexed Job),
/// with `--shard I/N --out DIR/shard-I`; the shard folders.
fn shards(dir: &Path, n: u32, args: &[&str]) -> Vec<PathBuf> {
    let outs: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("shard-{i}"))).collect();
    shards_into(&outs, args);
    outs
}

/// Run `args` as `outs.len()` shards at once, shard i writing to `outs[i]`
/// (their exchange, for a plan, is the folders' parent).
fn shards_into(outs: &[PathBuf], args: &[&str]) {
    let n = outs.len();
    let children: Vec<_> = outs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            kfsim()
                .args(args)
                .args(["--shard", &format!("{i}/{n}"), "--out"])
                .arg(out)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        ok(c.wait_with_output().unwrap(), &format!("shard {i}/{n}"));
    }
}

fn merge(dirs: &[PathBuf], out: &Path) -> Output {
    kfsim().arg("merge").args(dirs).arg("--out").arg(out).output().unwrap()
}

const SWEEP: &[&str] = &[
    "sweep",
    "scenarios/erlang-c.toml",
    "--set",
    "duration=4h",
    "--vary",
    "agents.kf.count=43..47:2",
    "--vary",
    "account.kf.policy=round_robin,idle_first",
    "--replications",
    "4",
];

#[test]
fn a_sweep_in_three_shards_merges_into_the_unsharded_sweep() {
    let d = tmp("sweep");
    ok(kfsim().args(SWEEP).arg("--out").arg(d.join("whole")).output().unwrap(), "the whole sweep");
    let parts = shards(&d, 3, SWEEP);
    // every shard ran some of the 6 points × 4 replications, none all
    for p in &parts {
        let n = json(&p.join("shard.json"))["sweep"]["results"].as_array().unwrap().len();
        assert_eq!(n, 8, "{}: 24 runs dealt to 3 shards", p.display());
    }
    ok(merge(&parts, &d.join("merged")), "merge");
    for f in ["sweep.json", "sweep.csv"] {
        assert_eq!(read(&d.join("merged").join(f)), read(&d.join("whole").join(f)), "{f}: number for number");
    }
    // in any order
    let mut rev = parts.clone();
    rev.reverse();
    ok(merge(&rev, &d.join("merged-rev")), "merge in reverse");
    assert_eq!(read(&d.join("merged-rev/sweep.json")), read(&d.join("whole/sweep.json")));
}

/// SIGTERM to `child`, which must exit within 10 s (killed at 30 s): its output.
fn terminate_within_10_s(mut child: std::process::Child) -> Output {
    use std::time::{Duration, Instant};
    let asked = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    while child.try_wait().unwrap().is_none() && asked.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(10), "SIGTERM answered after {:?}", asked.elapsed());
    o
}

/// A plan shard stopped by SIGTERM while it waits for the others' replications
/// exits 130 at once, writes no shard.json (its search has no answer), and
/// leaves the replications it finished in the exchange, where the shard
/// started again takes them up instead of running them again.
#[test]
fn a_plan_shard_stopped_by_sigterm_keeps_its_replications_for_a_restart() {
    use std::time::{Duration, Instant};
    let d = tmp("plan-term");
    let args = |out: &str| {
        let mut c = kfsim();
        c.args(["plan", "scenarios/erlang-c.toml", "--set", "duration=2h", "--target", "service_level>=0.8"])
            .args([
                "--vary",
                "agents.kf.count",
                "--replications",
                "2",
                "--shard",
                "0/2",
                "--shard-wait",
                "10m",
            ])
            .arg("--exchange")
            .arg(&d)
            .arg("--out")
            .arg(d.join(out));
        c
    };
    let exchanged = || -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("exchange-"))
            .flat_map(|e| std::fs::read_dir(e.path()).unwrap().flatten().map(|f| f.path()))
            .collect();
        files.sort();
        files
    };
    let child = args("first").stderr(std::process::Stdio::piped()).spawn().unwrap();
    // its own share of the first point is quick; then it waits for shard 1
    let started = Instant::now();
    while exchanged().is_empty() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mine = exchanged();
    assert!(!mine.is_empty(), "no replication in the exchange after 60 s");
    let o = terminate_within_10_s(child);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted") && stderr.contains("exchange-"), "{stderr}");
    assert!(!d.join("first/shard.json").exists(), "a plan cut short wrote a shard.json");
    let modified = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let kept: Vec<_> = mine.iter().map(|p| (p.clone(), modified(p))).collect();
    // started again: it waits for shard 1 at once, with nothing to run
    let again = args("second").stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(Command::new("kill").args(["-TERM", &again.id().to_string()]).status().unwrap().success());
    let o = again.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", String::from_utf8_lossy(&o.stderr));
    for (p, when) in &kept {
        assert_eq!(modified(p), *when, "{} was run and written again", p.display());
    }
}

/// A whole-run plan (the search doubles replications where a value is
/// unclear: erlang-c at 45 agents needs 40) and an intraday table.
#[test]
fn a_plan_in_three_shards_merges_into_the_unsharded_plan() {
    let cases: [&[&str]; 2] = [
        &[
            "plan",
            "scenarios/erlang-c.toml",
            "--set",
            "duration=6h",
            "--target",
            "service_level>=0.8",
            "--vary",
            "agents.kf.count",
            "--max-replications",
            "20",
        ],
        &[
            "plan",
            "scenarios/erlang-c.toml",
            "--set",
            "duration=4h",
            "--target",
            "service_level>=0.8",
            "--vary",
            "agents.kf.count",
            "--per-interval",
            "2h",
            "--replications",
            "3",
            "--max-replications",
            "6",
        ],
    ];
    for (k, args) in cases.iter().enumerate() {
        let d = tmp(&format!("plan-{k}"));
        let whole =
            ok(kfsim().args(*args).arg("--out").arg(d.join("whole")).output().unwrap(), "the whole plan");
        let parts = shards(&d, 3, args);
        let merged = ok(merge(&parts, &d.join("merged")), "merge");
        assert_eq!(
            read(&d.join("merged/plan.json")),
            read(&d.join("whole/plan.json")),
            "case {k}: plan.json number for number"
        );
        // the same lines on the terminal, but the report's path
        let lines =
            |t: &str| t.lines().filter(|l| !l.starts_with("report")).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(lines(&merged), lines(&whole), "case {k}");
        // the shards shared the work: each ran a part of the replications
        let ran: Vec<usize> = parts
            .iter()
            .map(|p| json(&p.join("shard.json"))["plan"]["values"].as_object().unwrap().len())
            .collect();
        assert!(ran.iter().all(|&n| n > 0), "{ran:?}");
        // shards of another kfsim are refused for their version (the merge
        // decides again under its own rules)
        let other: Vec<PathBuf> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let dir = d.join(format!("other-{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                let mut f = json(&p.join("shard.json"));
                f["kfsim_version"] = "0.0.1-other".into();
                std::fs::write(dir.join("shard.json"), f.to_string()).unwrap();
                dir
            })
            .collect();
        refused(&other, &d.join("other-merged"), "written by kfsim 0.0.1-other");
    }
}

fn sim_run(out: &Path, sets: &[&str]) {
    let mut c = kfsim();
    c.args(["run", "scenarios/quickstart.toml", "--quiet", "--out"]).arg(out);
    for s in sets {
        c.args(["--set", s]);
    }
    // gates may fail (exit 1): the folder is written either way
    let o = c.output().unwrap();
    assert!(matches!(o.status.code(), Some(0 | 1)), "{o:?}");
}

/// Every numeric field of a run's summary (and its series and
/// histograms) is reproduced by merging the run's own folder: a field
/// computed outside the merged state would differ here.
#[test]
fn merging_a_runs_own_folder_gives_its_figures_field_for_field() {
    let d = tmp("one");
    sim_run(&d.join("run"), &[]);
    let o = merge(&[d.join("run")], &d.join("merged"));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{o:?}");
    for f in ["summary.json", "series.json", "histograms.json"] {
        assert_eq!(json(&d.join("merged").join(f)), json(&d.join("run").join(f)), "{f}");
    }
}

fn refused(dirs: &[PathBuf], out: &Path, says: &str) {
    let o = merge(dirs, out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(says), "`{says}` in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn merge_refuses_what_is_not_every_shard_of_one_thing() {
    let d = tmp("refuse");
    let a = shards(&d.join("a"), 3, SWEEP);
    let out = d.join("out");
    refused(&a[..2], &out, "shard 2/3 is missing");
    refused(&[a[0].clone(), a[1].clone(), a[1].clone()], &out, "shard 1/3 is given twice");
    // another seed: another sweep
    let seeded = [SWEEP, &["--set", "seed=99"]].concat();
    let b = shards(&d.join("b"), 3, &seeded);
    refused(&[a[0].clone(), b[1].clone(), a[2].clone()], &out, "seeds");
    // another scenario
    let other = [SWEEP, &["--set", "entry.web.rate=9/min"]].concat();
    let c = shards(&d.join("c"), 3, &other);
    refused(&[a[0].clone(), c[1].clone(), a[2].clone()], &out, "scenario fingerprints");
    // another shard count
    let e = shards(&d.join("e"), 2, SWEEP);
    refused(&[a[0].clone(), e[1].clone(), a[2].clone()], &out, "shard counts");
    // another version of kfsim
    let v = d.join("v");
    std::fs::create_dir_all(&v).unwrap();
    let mut f = json(&a[1].join("shard.json"));
    f["kfsim_version"] = "0.0.1 (elsewhere)".into();
    std::fs::write(v.join("shard.json"), f.to_string()).unwrap();
    refused(&[a[0].clone(), v.clone(), a[2].clone()], &out, "kfsim versions");
    // a sweep and a run
    sim_run(&d.join("run"), &["duration=1h"]);
    refused(&[a[0].clone(), d.join("run")], &out, "kfsim commands");
    // not a shard folder at all
    refused(&[d.join("nowhere")], &out, "has no shard.json");
    assert!(!out.exists(), "nothing written when refused");
}

/// `--shards N` takes the index from JOB_COMPLETION_INDEX, as in an Indexed Job.
#[test]
fn shards_take_their_index_from_the_job() {
    let d = tmp("job");
    let run = |env: Option<&str>| {
        let mut c = kfsim();
        c.args(SWEEP).args(["--shards", "3", "--out"]).arg(d.join("s"));
        match env {
            Some(i) => c.env("JOB_COMPLETION_INDEX", i),
            None => c.env_remove("JOB_COMPLETION_INDEX"),
        };
        c.output().unwrap()
    };
    ok(run(Some("2")), "index 2");
    assert_eq!(json(&d.join("s/shard.json"))["shard"], serde_json::json!({"index": 2, "count": 3}));
    for bad in [None, Some("3"), Some("x")] {
        let o = run(bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stderr).contains("JOB_COMPLETION_INDEX"));
    }
}

/// The live scenario: live-check shortened (20 min at ×120: 10 s of wall
/// time, 600 arrivals expected).
const LIVE: &[&str] =
    &["scenarios/live-check.toml", "--set", "duration=20m", "--set", "warmup=2m", "--quiet"];

fn live_run(url: &str, out: &Path, extra: &[&str]) -> Command {
    let mut c = kfsim();
    c.arg("run").args(LIVE).args(["--engine", "live", "--target", url]).args(extra).arg("--out").arg(out);
    c
}

/// `n` live shards against `url` meeting at `barrier`, each writing
/// `d/shard-I`, their output captured.
fn spawn_live_shards(
    url: &str,
    d: &Path,
    n: u32,
    barrier: &Path,
    extra: &[&str],
) -> Vec<std::process::Child> {
    (0..n)
        .map(|i| {
            let shard = format!("{i}/{n}");
            let mut args = vec!["--shard", shard.as_str(), "--barrier", barrier.to_str().unwrap()];
            args.extend_from_slice(extra);
            live_run(url, &d.join(format!("shard-{i}")), &args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

/// A live shard stopped by SIGTERM (a pod deleted) while it waits at the
/// barrier exits 130 at once and takes its ready file back: the other
/// shards would otherwise count on it and start without it.
#[test]
fn a_live_shard_stopped_at_the_barrier_takes_its_ready_file_back() {
    use std::time::{Duration, Instant};
    let d = tmp("barrier-stop");
    let barrier = d.join("barrier");
    let args = ["--shard", "0/2", "--barrier", barrier.to_str().unwrap()];
    // never reached: the shard stops before it connects
    let child = live_run("http://127.0.0.1:9", &d.join("out"), &args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ready = barrier.join("ready-0-of-2");
    let waited = Instant::now();
    while !ready.exists() && waited.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ready.exists(), "the shard reached the barrier");
    let o = terminate_within_10_s(child);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopped at the barrier"), "{stderr}");
    assert!(!ready.exists(), "the ready file was taken back");
    assert!(!d.join("out/summary.json").exists(), "nothing ran");

    // Past the barrier, a shard stopped while it waits for the common
    // start says its customers are done: the others would otherwise serve
    // them until the end of their drain.
    let addr = format!("127.0.0.1:{}", sdk_util::free_port());
    let serve = sdk_util::Proc::start(kfsim().args(["serve", "--addr", &addr, "--scenario", LIVE[0]]));
    serve.wait_for("listening");
    let url = format!("http://{addr}");
    let barrier = d.join("barrier-2");
    let children = spawn_live_shards(&url, &d, 2, &barrier, &[]);
    let both = |name: &str| (0..2).all(|i| barrier.join(format!("{name}-{i}-of-2")).exists());
    let waited = Instant::now();
    while !both("ready") && waited.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(both("ready"), "both shards reached the barrier");
    // within the 3 s between the last ready file and the common start
    std::thread::sleep(Duration::from_millis(500));
    let mut children = children.into_iter();
    let o = terminate_within_10_s(children.next().unwrap());
    assert_eq!(o.status.code(), Some(130), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(barrier.join("done-0-of-2").exists(), "an interrupted shard is done too");
    terminate_within_10_s(children.next().unwrap());
}

/// A barrier file that cannot be another shard's ready time is refused at
/// once, named (exit 3): one written by a clock a year ahead held the
/// shard until then, silently, and one that is not a time, or a folder in
/// its place, was waited on until `--barrier-wait` ran out and then taken
/// for a shard not running. The refusing shard takes its own file back.
#[test]
fn a_barrier_file_that_is_no_ready_time_is_refused_at_once() {
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
    let d = tmp("barrier-bad");
    let year_ahead =
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(365 * 86_400);
    for (name, content, says) in [
        ("ahead", Some(year_ahead.as_millis().to_string()), "ahead of this machine's clock"),
        ("garbage", Some("ready".to_owned()), "is not a shard's ready file"),
        ("folder", None, "reading"),
    ] {
        let barrier = d.join(name);
        let theirs = barrier.join("ready-1-of-2");
        match content {
            Some(c) => {
                std::fs::create_dir_all(&barrier).unwrap();
                std::fs::write(&theirs, c).unwrap();
            }
            None => std::fs::create_dir_all(&theirs).unwrap(),
        }
        let args = ["--shard", "0/2", "--barrier", barrier.to_str().unwrap(), "--barrier-wait", "1m"];
        let started = Instant::now();
        // never reached: the shard stops before it connects
        let o = live_run("http://127.0.0.1:9", &d.join("out"), &args).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{name}: {stderr}");
        assert!(stderr.contains(says) && stderr.contains(&*theirs.to_string_lossy()), "{name}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(20), "{name}: {:?}", started.elapsed());
        assert!(!barrier.join("ready-0-of-2").exists(), "{name}: the refusing shard took its file back");
    }
    // and so does a shard that gave up waiting: a retry, or a shard that
    // came late, counted on it
    let barrier = d.join("alone");
    let args = ["--shard", "0/2", "--barrier", barrier.to_str().unwrap(), "--barrier-wait", "1s"];
    let o = live_run("http://127.0.0.1:9", &d.join("out"), &args).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("waited 1 s at the barrier") && stderr.contains("1/2"), "{stderr}");
    assert!(barrier.is_dir(), "the shard reached the barrier");
    assert!(!barrier.join("ready-0-of-2").exists(), "the shard that gave up took its file back");
}

/// Three live shards against one service carry the load of one process:
/// the same arrivals at the same scenario times (each shard keeps every
/// third arrival of the one seeded stream, so the merged arrival series
/// equals the single run's exactly — no tolerance is needed, and the
/// offered count is within 4 Poisson standard deviations of the rate ×
/// the window as a check on both), with nothing lost.
#[test]
fn live_shards_carry_the_schedule_of_one_process() {
    let d = tmp("live");
    let port = sdk_util::free_port();
    let addr = format!("127.0.0.1:{port}");
    let serve = sdk_util::Proc::start(kfsim().args(["serve", "--addr", &addr, "--scenario", LIVE[0]]));
    serve.wait_for("listening");
    let url = format!("http://{addr}");
    ran(live_run(&url, &d.join("one"), &[]).output().unwrap(), "one process");
    let barrier = d.join("barrier");
    let children = spawn_live_shards(&url, &d, 3, &barrier, &[]);
    for (i, c) in children.into_iter().enumerate() {
        ran(c.wait_with_output().unwrap(), &format!("live shard {i}/3"));
    }
    let parts: Vec<PathBuf> = (0..3).map(|i| d.join(format!("shard-{i}"))).collect();
    let o = merge(&parts, &d.join("merged"));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{o:?}");
    let one = json(&d.join("one/summary.json"));
    let merged = json(&d.join("merged/summary.json"));
    let offered = |s: &Value| s["sessions"]["offered"].as_u64().unwrap();
    assert_eq!(offered(&merged), offered(&one), "the same offered load");
    let expected = 30.0 * 18.0; // 30/min over the 18 measured minutes
    assert!((offered(&one) as f64 - expected).abs() < 4.0 * expected.sqrt(), "{}", offered(&one));
    // the shards' agents served until every shard was done: the merged run
    // may end later, with more empty intervals at the end
    let series = |dir: &str| {
        let mut s: Vec<u64> =
            serde_json::from_value(json(&d.join(dir).join("series.json"))["arrivals"]["web"].clone())
                .unwrap();
        while s.last() == Some(&0) {
            s.pop();
        }
        s
    };
    assert_eq!(series("merged"), series("one"), "the same arrivals per interval");
    // each shard sent about a third
    for p in &parts {
        let n = offered(&json(&p.join("summary.json"))) as f64;
        assert!((n - expected / 3.0).abs() < 4.0 * (expected / 3.0).sqrt(), "{}: {n}", p.display());
    }
    for s in [&one, &merged] {
        assert_eq!(s["messages"]["lost"], 0, "nothing lost");
        assert_eq!(s["messages"]["sent"], s["messages"]["delivered"]);
        assert_eq!(s["live"]["shed"], 0);
        assert_eq!(s["live"]["gave_up"]["messages"], 0);
        assert_eq!(s["sessions"]["answered"], s["sessions"]["offered"], "every session answered");
    }
    // every agent ran in one shard: the union is the whole staff
    assert_eq!(merged["fairness"]["kf"]["agents"], 34);
    // a live run's own folder merges into its own figures
    let o = merge(&[d.join("one")], &d.join("one-merged"));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{o:?}");
    assert_eq!(json(&d.join("one-merged/summary.json")), one);
}

/// The service killed (SIGKILL) in the middle of a live run in two shards
/// and started again on the same port: each shard notices once, opens new
/// channels and goes on, and the merged run reconciles as one process's
/// does — the sessions the killed service had are counted lost with it,
/// and the shards sent the new service exactly what it counted.
#[test]
fn a_restart_of_the_service_during_a_sharded_live_run_is_noticed_by_every_shard() {
    let d = tmp("restart");
    let port = sdk_util::free_port();
    let addr = format!("127.0.0.1:{port}");
    let serve = || {
        let p = sdk_util::Proc::start(kfsim().args(["serve", "--addr", &addr, "--scenario", LIVE[0]]));
        p.wait_for("listening");
        p
    };
    let first = serve();
    let url = format!("http://{addr}");
    let barrier = d.join("barrier");
    // no warm-up: the service's counts cover the whole run, as the driver's must
    let children = spawn_live_shards(&url, &d, 2, &barrier, &["--set", "warmup=0s"]);
    // killed once sessions have been served and several are held
    let guard = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let m = sdk_util::metrics(port);
        let held: f64 = m.iter().filter(|(k, _)| k.contains("state=\"3\"")).map(|(_, v)| v).sum();
        if sdk_util::total(&m, "kfsim_sessions_ended_total") >= 10 && held >= 3.0 {
            break;
        }
        assert!(std::time::Instant::now() < guard, "the run never got going: {m:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(first);
    let _second = serve();
    let mut stderrs = Vec::new();
    for (i, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(0), "shard {i}/2: {stderr}");
        assert!(stderr.contains("forgot the run's channels 1 time"), "shard {i}/2 says so: {stderr}");
        stderrs.push(stderr);
    }
    let after = sdk_util::metrics(port);
    let parts: Vec<PathBuf> = (0..2).map(|i| d.join(format!("shard-{i}"))).collect();
    let o = merge(&parts, &d.join("merged"));
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let s = json(&d.join("merged/summary.json"));
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("a count: {v}"));
    let (c, m, live) = (&s["sessions"], &s["messages"], &s["live"]);
    let r = &live["reconnects"];
    eprintln!("{}\nsessions {c}\nmessages {m}\nreconnects {r}", stderrs.join("\n"));
    for p in &parts {
        assert_eq!(json(&p.join("summary.json"))["live"]["reconnects"]["count"], 1, "{}", p.display());
    }
    assert_eq!(n(&r["count"]), 2, "once per shard: {r}");
    assert!(n(&r["held"]) + n(&r["waiting"]) >= 1, "sessions were in flight at the kill: {r}");
    // what the shards sent since their reconnect is what the new service took
    assert_eq!(n(&r["sent_since"]), sdk_util::total(&after, "kfsim_customer_messages_total"), "{r}");
    assert!(sdk_util::total(&after, "kfsim_sessions_started_total") >= 10, "sessions after the restart");
    assert_eq!(sdk_util::total(&after, "kfsim_channels"), 0, "both shards closed the channels they opened");
    // every session offered is accounted for once, as in one process
    let sum = |keys: &[&str]| keys.iter().map(|k| n(&c[*k])).sum::<u64>();
    assert_eq!(n(&c["offered"]), sum(&["answered", "abandoned", "rejected", "unfinished"]), "{c}");
    let ended = n(&s["latency_ms"]["session"]["count"]);
    assert_eq!(n(&c["answered"]), ended + n(&live["open_at_end"]) + n(&r["held"]), "{c} {r}");
    assert_eq!(n(&c["unfinished"]), n(&r["waiting"]), "only the sessions the restart lost: {c} {r}");
    assert_eq!(m["lost"], r["messages_lost"], "{m} {r}");
    assert_eq!(n(&live["gave_up"]["messages"]), 0, "a short outage: nothing given up on");
    assert_eq!(n(&m["delivered"]) + n(&r["messages_lost"]), n(&m["customer"]), "each seen or lost: {m} {r}");
}

/// `kfsim merge` of a run's shards takes `kfsim run`'s report options and
/// writes what they ask for; a sweep's shards refuse the ones of a run.
#[test]
fn merge_writes_the_report_options_of_run() {
    let d = tmp("options");
    sim_run(&d.join("run"), &["duration=1h"]);
    let merged = d.join("merged");
    let junit = d.join("gates.xml");
    let out = kfsim()
        .args(["merge"])
        .arg(d.join("run"))
        .arg("--out")
        .arg(&merged)
        .args(["--quiet", "--no-gates", "--export", "hgrm", "--baseline"])
        .arg(d.join("run"))
        .args(["--tolerance", "*=5%", "--junit"])
        .arg(&junit)
        .output()
        .unwrap();
    // the merge of a run's own folder is that run: no regression, no gate
    let stdout = ok(out, "merge with run's options");
    assert!(stdout.is_empty(), "--quiet: {stdout}");
    assert!(read(&junit).contains("<testsuite"), "JUnit written");
    let hgrm = std::fs::read_dir(merged.join("hgrm")).unwrap().count();
    assert!(hgrm > 0, "--export hgrm wrote the histograms");
    // a tolerance needs a baseline, as for `kfsim run`
    let out = kfsim()
        .arg("merge")
        .arg(d.join("run"))
        .arg("--out")
        .arg(d.join("m2"))
        .args(["--tolerance", "*=5%"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    // a sweep's shards: the options of a run are refused
    let parts = shards(&d.join("sweep"), 2, SWEEP);
    let out = kfsim()
        .arg("merge")
        .args(&parts)
        .arg("--out")
        .arg(d.join("m3"))
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A live shard whose driver was behind for most of its run is named by
/// `kfsim merge`, even where the pooled `live.saturated` stays under the
/// warning's threshold (one shard of eight behind all along reads 0.125):
/// merge printed none of the driver's warnings. The shard's probe is
/// replaced by one of 100 ticks, 60 of them 50 ms late.
#[test]
fn merge_names_a_shard_whose_driver_was_behind() {
    let d = tmp("saturated");
    let run = d.join("calm");
    let o = kfsim()
        .args(["run", "scenarios/live-check.toml", "--set", "duration=2m", "--set", "warmup=0s"])
        .args(["--engine", "live", "--quiet", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    ran(o, "a short live run");
    let behind = |o: &Output| String::from_utf8_lossy(&o.stderr).contains("driver was behind");
    let calm = merge(std::slice::from_ref(&run), &d.join("calm-merged"));
    assert!(matches!(calm.status.code(), Some(0 | 1)), "{calm:?}");
    assert!(!behind(&calm), "{}", String::from_utf8_lossy(&calm.stderr));
    let starved = d.join("starved");
    std::fs::create_dir_all(&starved).unwrap();
    let mut f = json(&run.join("shard.json"));
    let mut ticks = kfsim::metrics::Hist::default();
    for _ in 0..100 {
        ticks.record(50_000);
    }
    f["run"]["live"]["counts"]["probe"] = serde_json::json!({ "ticks": ticks, "behind": 60 });
    std::fs::write(starved.join("shard.json"), f.to_string()).unwrap();
    let o = merge(&[starved], &d.join("starved-merged"));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("shard 0/1's driver was behind for 60% of its run"), "{err}");
    let summary = json(&d.join("starved-merged/summary.json"));
    assert_eq!(summary["live"]["saturated"], 0.6, "the shard's share, pooled over one shard");
}

/// A shard waiting for a far `--start-at` answers SIGTERM at once (it
/// answered only when its run began, minutes later), and a shard whose
/// start comes after the service's channel lease begins on the channels
/// it opened (its customer channel ran out of its lease while it waited,
/// and the run began by reconnecting).
#[test]
fn a_shard_waiting_for_its_start_stops_when_told_and_keeps_its_channels() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let d = tmp("start-at");
    let addr = format!("127.0.0.1:{}", sdk_util::free_port());
    let serve = sdk_util::Proc::start(kfsim().args([
        "serve",
        "--addr",
        &addr,
        "--scenario",
        LIVE[0],
        "--channel-lease",
        "3s",
    ]));
    serve.wait_for("listening");
    let url = format!("http://{addr}");
    let in_s = |s: u64| (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + s).to_string();

    let far = in_s(600);
    let child = live_run(&url, &d.join("far"), &["--start-at", &far])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let o = terminate_within_10_s(child);
    assert_eq!(o.status.code(), Some(130), "{}", String::from_utf8_lossy(&o.stderr));
    let s = json(&d.join("far/summary.json"));
    assert_eq!(s["run"]["interrupted"], true);
    assert_eq!(s["sessions"]["offered"], 0);

    // twice the lease away
    let soon = in_s(7);
    ran(live_run(&url, &d.join("late"), &["--start-at", &soon]).output().unwrap(), "a late start");
    let s = json(&d.join("late/summary.json"));
    assert_eq!(s["live"]["reconnects"]["count"], 0, "{}", s["live"]["reconnects"]);
    assert_eq!(s["messages"]["lost"], 0);
    assert!(s["sessions"]["answered"].as_u64().unwrap() > 0);
}

/// Shard files edited by hand, or a merge pointed at its own input, are
/// refused with exit 2 and a reason, never merged (all found by probing):
/// a count of 10⁸ shards made the merge list every missing one (10 GB), a
/// count of 0 merged; a series interval of 0 panicked (exit 101); the
/// scenario text of a shard but the first was not checked; `--out` one of
/// the shard folders overwrote it with the whole.
#[test]
fn merge_refuses_edited_shard_files_and_its_own_inputs() {
    let d = tmp("edited");
    let a = shards(&d.join("a"), 3, SWEEP);
    let out = d.join("out");
    let edited = |name: &str, edit: &dyn Fn(&mut Value)| {
        let dir = d.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut f = json(&a[1].join("shard.json"));
        edit(&mut f);
        std::fs::write(dir.join("shard.json"), f.to_string()).unwrap();
        vec![a[0].clone(), dir, a[2].clone()]
    };
    let started = std::time::Instant::now();
    refused(&edited("huge", &|f| f["shard"]["count"] = 100_000_000.into()), &out, "0 ≤ I < N ≤ 10000");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());
    refused(&edited("zero", &|f| f["shard"]["count"] = 0.into()), &out, "expected I/N");
    let text = |f: &mut Value| {
        let t = f["source"]["text"].as_str().unwrap().replace("rate = ", "rate = \"31/min\" # ");
        f["source"]["text"] = t.into();
    };
    refused(&edited("text", &text), &out, "scenario texts or --set overrides differ");
    refused(&a, &a[0], "is one of the shard folders");
    // a sweep shard holding a replication twice: one file, not two shards
    let twice = edited("twice", &|f: &mut Value| {
        let results = f["sweep"]["results"].as_array_mut().unwrap();
        results.push(results[0].clone());
    });
    refused(&twice, &out, &format!("twice in {}", twice[1].join("shard.json").display()));
    // a run's own folder, its series interval edited
    sim_run(&d.join("run"), &["duration=1h"]);
    let shard = d.join("run").join("shard.json");
    let f = read(&shard);
    assert!(f.contains("\"interval\":"), "the series interval is in the state");
    let at = f.find("\"interval\":").unwrap() + "\"interval\":".len();
    let digits = f[at..].find(|c: char| !c.is_ascii_digit()).unwrap();
    let edited = format!("{}0{}", &f[..at], &f[at + digits..]);
    std::fs::write(&shard, edited).unwrap();
    refused(&[d.join("run")], &out, "series interval is not the scenario's");
    // the text a shard kept, broken: named as that text, not the file on disk
    sim_run(&d.join("run2"), &["duration=1h"]);
    let shard = d.join("run2").join("shard.json");
    let mut f = json(&shard);
    f["source"]["text"] = f["source"]["text"].as_str().unwrap().replacen("seed = ", "seed = [", 1).into();
    std::fs::write(&shard, f.to_string()).unwrap();
    refused(
        &[d.join("run2")],
        &out,
        "text kept in the shards' shard.json (not the file on disk) does not parse",
    );
    // a state that fails only when the shards are merged names its file
    sim_run(&d.join("run3"), &["duration=1h"]);
    let shard = d.join("run3").join("shard.json");
    let mut f = json(&shard);
    let hists = f["run"]["metrics"]["series"]["interval_hists"].as_object_mut().unwrap();
    hists.values_mut().next().unwrap()["hdr"] = true.into();
    std::fs::write(&shard, f.to_string()).unwrap();
    refused(&[d.join("run3")], &out, &format!("without its \"hdr\" (in {})", shard.display()));
    assert!(!out.exists(), "nothing written when refused");
}

/// A run killed before it wrote its files left the shard file of the run
/// before it in a reused folder, and merge took that for this run's (exit
/// 0): a run removes it as it starts.
#[test]
fn a_run_killed_in_a_reused_folder_leaves_no_earlier_shard_file() {
    let d = tmp("reused");
    let out = d.join("run");
    sim_run(&out, &["duration=1h"]);
    assert!(out.join("shard.json").exists());
    let mut child = kfsim()
        .args(["run", "scenarios/bench-mmc.toml", "--set", "duration=36500d", "--quiet", "--out"])
        .arg(&out)
        .spawn()
        .unwrap();
    let gone = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        !out.join("shard.json").exists()
    });
    child.kill().unwrap();
    let _ = child.wait();
    assert!(gone, "the earlier shard.json is still there");
    assert!(!out.join("shard.json").exists());
    let o = merge(std::slice::from_ref(&out), &d.join("merged"));
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Two plans whose shards share an exchange (`--out` folders with one
/// parent) record different figures of the same replications (their
/// targets, the varied group's load): the second read the first's files,
/// lacked its own figures, and its merge was refused (found by review).
#[test]
fn two_plans_sharing_an_exchange_each_merge() {
    let d = tmp("two-plans");
    let plan = |target: &str| -> Vec<String> {
        ["plan", "scenarios/erlang-c.toml", "--set", "duration=6h", "--target", target]
            .into_iter()
            .chain(["--vary", "agents.kf.count", "--max-replications", "10"])
            .map(str::to_owned)
            .collect()
    };
    for (name, target) in [("a", "service_level>=0.8"), ("b", "latency_ms.queue_wait.p90<60s")] {
        let args = plan(target);
        let outs: Vec<PathBuf> = (0..2).map(|i| d.join(format!("{name}-{i}"))).collect();
        shards_into(&outs, &args.iter().map(String::as_str).collect::<Vec<_>>());
        ok(merge(&outs, &d.join(format!("{name}-merged"))), &format!("merge of plan {name}"));
        ok(kfsim().args(&args).arg("--out").arg(d.join(format!("{name}-whole"))).output().unwrap(), "whole");
        assert_eq!(
            read(&d.join(format!("{name}-merged/plan.json"))),
            read(&d.join(format!("{name}-whole/plan.json"))),
            "plan {name}"
        );
    }
}
