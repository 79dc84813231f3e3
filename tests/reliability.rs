//! The command line against bad input (issue 17): every mistake is exit 2
//! with a message, never a panic; error messages say things once.

use std::process::{Command, Output};

fn kfsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kfsim")).args(args).output().expect("kfsim runs")
}

/// Items 8 and 14: `--target` values the driver could not build a request
/// from panicked (exit 101); an out-of-range port was exit 3.
#[test]
fn bad_targets_exit_2_without_a_panic() {
    let out = std::env::temp_dir().join(format!("kfsim-test-{}-bad-target", std::process::id()));
    for target in ["http://", "http://a b", "http://[::1", "http://127.0.0.1:99999", "http://h:80/x"] {
        let o = kfsim(&[
            "run",
            "scenarios/live-check.toml",
            "--engine",
            "live",
            "-q",
            "--target",
            target,
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{target}: {stderr}");
        assert!(stderr.contains("expected http://HOST:PORT"), "{target}: {stderr}");
        assert!(!stderr.contains("panicked"), "{target}: {stderr}");
    }
    assert!(!out.exists(), "nothing ran");
}

/// Item 8: a gamma with a tiny cv passed `validate`, then panicked when
/// the run built its sampler; the same override is now refused up front.
#[test]
fn a_degenerate_gamma_is_refused_before_the_run() {
    let o = kfsim(&[
        "run",
        "scenarios/quickstart.toml",
        "-q",
        "--set",
        "agents.day-shift.reply_delay={ dist = \"gamma\", mean = \"1m\", cv = 1e-160 }",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`cv` must be between"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Item 14: a folder given as the scenario said the OS error twice.
#[test]
fn a_folder_as_scenario_says_why_once() {
    let o = kfsim(&["validate", "scenarios"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.matches("Is a directory").count(), 1, "{stderr}");
}

fn scratch_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("kfsim-test-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// A scenario of `entries` entry points, with a gate (gates are bound
/// against a blank summary with every entry's metrics).
fn many_entries(entries: usize) -> String {
    let mut text = String::from(
        "name = \"many\"\n[gates]\n\"sessions.abandoned\" = \"< 10\"\n[[account]]\nname = \"a\"\n\
         [[agents]]\ncount = 2\nreply_delay = \"1m\"\n",
    );
    for i in 0..entries {
        text += &format!("[[entry]]\nscene = \"web\"\nname = \"e{i}\"\nrate = \"1/min\"\n");
    }
    text
}

/// Item 3: each entry cost about 1.1 MB in `validate` (two latency
/// histograms allocated up front), 4000 entries 4.5 GB. Under a 1 GB
/// address-space limit, a thousand entries must still validate.
#[cfg(target_os = "linux")]
#[test]
fn a_thousand_entries_validate_in_little_memory() {
    let path = scratch_file("thousand.toml", &many_entries(1000));
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v 1000000 && exec \"{}\" validate \"$0\"", env!("CARGO_BIN_EXE_kfsim")))
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("1000 entry point(s)"));
}

/// Item 3: what no real scenario needs is refused where it is written.
#[test]
fn sizes_no_scenario_needs_are_refused_at_their_place() {
    let text = many_entries(1001);
    let e = kfsim::scenario::Scenario::parse(&text, "many.toml").unwrap_err().to_string();
    // the 1001st table's header, two lines above its name (1-based)
    let line = text.lines().position(|l| l == "name = \"e1000\"").unwrap() - 1;
    assert!(e.starts_with(&format!("many.toml:{line}:1: at most 1000 [[entry]] tables")), "{e}");
    let agents = "name = \"x\"\n[[account]]\nname = \"a\"\n[[agents]]\ngroup = \"g\"\ncount = 600000\nreply_delay = \"1m\"\n\
                  [[agents]]\ngroup = \"h\"\ncount = 600000\nreply_delay = \"1m\"\n[[entry]]\nscene = \"web\"\nrate = \"1/s\"\n";
    let e = kfsim::scenario::Scenario::parse(agents, "agents.toml").unwrap_err().to_string();
    assert!(e.starts_with("agents.toml:10:9: at most 1000000 agents"), "{e}");
}

/// Item 3: a 100 MB file of unknown keys took 3.6 GB before exit 2. A file
/// over the cap is refused before it is parsed.
#[test]
fn a_huge_file_is_refused_unread() {
    let junk = "# padding\n".repeat(500_000);
    let path = scratch_file("huge.toml", &junk);
    let o = kfsim(&["validate", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("larger than 4 MiB"), "{stderr}");
}
