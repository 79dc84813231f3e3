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
