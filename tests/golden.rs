//! Every shipped scenario, simulated with a fixed seed through the binary,
//! gives the summary recorded in `tests/data/golden/`: a refactor that
//! changes no behaviour changes no number.
//!
//! A deliberate change of the model is recorded again with
//! `KFSIM_BLESS=1 cargo test --test golden`, and the diff of the golden
//! files shows what moved.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The shipped scenarios, with overrides that keep the two benchmark
/// scenarios (30 and 100 simulated days) to a test's length.
const CASES: &[(&str, &[&str])] = &[
    ("bench-chat", &["duration=2d"]),
    ("bench-live", &[]),
    ("bench-mmc", &["duration=2d"]),
    ("bench-sweep", &[]),
    ("erlang-c", &[]),
    ("live-check", &[]),
    ("middleware", &[]),
    ("quickstart", &[]),
    ("tiers", &[]),
];

fn run(name: &str, sets: &[&str]) -> Value {
    let out = std::env::temp_dir().join(format!("kfsim-golden-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfsim"));
    cmd.args(["run", &format!("scenarios/{name}.toml"), "--quiet", "--seed", "3", "--out"]).arg(&out);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let o = cmd.output().expect("kfsim runs");
    // 1: a gate failed, which is part of what is recorded
    assert!(matches!(o.status.code(), Some(0 | 1)), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary.json");
    let _ = std::fs::remove_dir_all(&out);
    let mut v: Value = serde_json::from_str(&text).expect("JSON");
    // the commit that built the binary is not a result
    v.as_object_mut().expect("an object").remove("kfsim_version");
    v
}

fn golden(name: &str) -> PathBuf {
    Path::new("tests/data/golden").join(format!("{name}.json"))
}

#[test]
fn shipped_scenarios_give_their_recorded_summaries() {
    let bless = std::env::var_os("KFSIM_BLESS").is_some();
    let mut differ = Vec::new();
    for (name, sets) in CASES {
        let got = run(name, sets);
        let path = golden(name);
        if bless {
            std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let want: Value = serde_json::from_str(&text).unwrap();
        if got != want {
            differ.push(format!("{name}: {}", first_difference(&want, &got, String::new())));
        }
    }
    assert!(
        differ.is_empty(),
        "summaries changed (KFSIM_BLESS=1 records them again):\n{}",
        differ.join("\n")
    );
}

/// The first path at which two JSON values differ, with both values.
fn first_difference(want: &Value, got: &Value, path: String) -> String {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            for k in a.keys().chain(b.keys()) {
                let (x, y) = (a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null));
                if x != y || a.contains_key(k) != b.contains_key(k) {
                    return first_difference(x, y, format!("{path}.{k}"));
                }
            }
            format!("{path}: key order")
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
            first_difference(&a[i], &b[i], format!("{path}[{i}]"))
        }
        _ => format!("{path}: recorded {want}, now {got}"),
    }
}
