//! Every file in `tests/data/bad` is a malformed scenario. Its first line says
//! where the error must point and what it must say:
//!
//! ```text
//! # expect: LINE:COL: SUBSTRING
//! ```
//!
//! The library must refuse the file with a message that starts with
//! `PATH:LINE:COL: ` and contains SUBSTRING, and `kfsim validate` must exit
//! with code 2, print nothing on stdout and name the file on stderr. Nothing
//! may panic. All failures are collected and reported together.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;

use kfsim::scenario::Scenario;

/// What the first line of a bad file promises.
struct Expect {
    line: usize,
    column: usize,
    substring: String,
}

fn bad_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("data").join("bad")
}

fn bad_files() -> Vec<PathBuf> {
    let dir = bad_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

/// Parse `# expect: LINE:COL: SUBSTRING` from the first line of `text`.
fn parse_expect(text: &str) -> Result<Expect, String> {
    let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
    let rest = first
        .strip_prefix("# expect: ")
        .ok_or_else(|| format!("first line {first:?} is not `# expect: LINE:COL: SUBSTRING`"))?;
    let parsed = (|| {
        let (line, rest) = rest.split_once(':')?;
        let (column, rest) = rest.split_once(':')?;
        let substring = rest.strip_prefix(' ')?;
        Some(Expect {
            line: line.trim().parse().ok()?,
            column: column.trim().parse().ok()?,
            substring: substring.to_owned(),
        })
    })();
    match parsed {
        Some(e) if e.line > 0 && e.column > 0 && !e.substring.trim().is_empty() => Ok(e),
        _ => Err(format!("cannot parse expectation {first:?}; want `# expect: LINE:COL: SUBSTRING`")),
    }
}

/// Check the library's answer for one file; `Err` describes what is wrong.
fn check_library(path: &Path, expect: &Expect) -> Result<(), String> {
    let loaded = catch_unwind(AssertUnwindSafe(|| {
        Scenario::load(path, &[]).and_then(|s| kfsim::gate::bind(&s).map(|_| s))
    }))
    .map_err(|_| "Scenario::load panicked".to_owned())?;
    let err = match loaded {
        Ok(_) => return Err("was accepted, but it is malformed".into()),
        Err(err) => err.to_string(),
    };
    let prefix = format!("{}:{}:{}: ", path.display(), expect.line, expect.column);
    // The first line of the Display is `FILE:LINE:COL: message`; the caret
    // snippet below it quotes the file (for a 1:1 error, the `# expect` line
    // itself), so the substring is looked for in the message line only.
    let headline = err.lines().next().unwrap_or("");
    let mut problems = Vec::new();
    if !err.starts_with(&prefix) {
        problems.push(format!("should start with {prefix:?}"));
    }
    if !headline.contains(&expect.substring) {
        problems.push(format!("message should contain {:?}", expect.substring));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}; got:\n{}", problems.join(" and "), indent(&err)))
    }
}

/// Check `kfsim validate FILE` for one file.
fn check_binary(path: &Path) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .arg("validate")
        .arg(path)
        .output()
        .map_err(|e| format!("could not run kfsim: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut problems = Vec::new();
    if out.status.code() != Some(2) {
        problems.push(format!("`kfsim validate` exited with {:?}, want 2", out.status.code()));
    }
    if !stdout.is_empty() {
        problems.push(format!("`kfsim validate` printed on stdout:\n{}", indent(&stdout)));
    }
    if stderr.contains("panicked") {
        problems.push("`kfsim validate` panicked".to_owned());
    }
    if !stderr.contains(name.as_ref()) {
        problems.push(format!("`kfsim validate` stderr does not name {name}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n  stderr:\n{}", problems.join("\n  "), indent(&stderr)))
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

#[test]
fn every_bad_scenario_is_refused_at_the_right_place() {
    let files = bad_files();
    assert!(
        files.len() >= 20,
        "expected at least 20 bad scenarios in {}, found {}",
        bad_dir().display(),
        files.len()
    );

    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        // some files are not UTF-8 on purpose: their expectation is
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                failures.push(format!("{name}: cannot read: {e}"));
                continue;
            }
        };
        match parse_expect(&text) {
            Ok(expect) => {
                if let Err(why) = check_library(path, &expect) {
                    failures.push(format!("{name}: {why}"));
                }
            }
            Err(why) => failures.push(format!("{name}: {why}")),
        }
        if let Err(why) = check_binary(path) {
            failures.push(format!("{name}: {why}"));
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} bad scenarios failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn expectation_lines_parse() {
    let e = parse_expect("# expect: 12:3: unknown key `x`: did you mean `y`?\nname = 1\n").unwrap();
    assert_eq!((e.line, e.column, e.substring.as_str()), (12, 3, "unknown key `x`: did you mean `y`?"));
    let crlf = parse_expect("# expect: 1:1: missing\r\n").unwrap();
    assert_eq!(crlf.substring, "missing");
    for bad in ["", "name = 1", "# expect: 1: x", "# expect: a:1: x", "# expect: 0:1: x", "# expect: 1:1: "] {
        assert!(parse_expect(bad).is_err(), "{bad:?} should not parse");
    }
}
