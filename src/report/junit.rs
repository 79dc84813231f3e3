//! JUnit XML for CI systems: one test case per gate and per compared
//! metric, so a pipeline's test view shows which threshold failed.

use std::io::{self, Write};

use crate::compare::{Comparison, Status};
use crate::gate::{GateResult, Verdict};

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

struct Case {
    name: String,
    failure: Option<String>,
    skipped: bool,
}

fn suite(w: &mut dyn Write, name: &str, cases: &[Case]) -> io::Result<()> {
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let skipped = cases.iter().filter(|c| c.skipped).count();
    writeln!(
        w,
        r#"  <testsuite name="{}" tests="{}" failures="{failures}" errors="0" skipped="{skipped}">"#,
        escape(name),
        cases.len()
    )?;
    for c in cases {
        write!(w, r#"    <testcase classname="{}" name="{}""#, escape(name), escape(&c.name))?;
        match (&c.failure, c.skipped) {
            (Some(msg), _) => {
                writeln!(w, ">\n      <failure message=\"{}\"/>\n    </testcase>", escape(msg))?;
            }
            (None, true) => writeln!(w, ">\n      <skipped/>\n    </testcase>")?,
            (None, false) => writeln!(w, "/>")?,
        }
    }
    writeln!(w, "  </testsuite>")
}

/// Write the gates of `scenario` and, if any, a baseline comparison.
pub fn write(
    scenario: &str,
    gates: &[GateResult],
    comparison: Option<&Comparison>,
    w: &mut dyn Write,
) -> io::Result<()> {
    writeln!(w, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(w, r#"<testsuites name="kfsim {}">"#, escape(scenario))?;
    let gate_cases: Vec<Case> = gates
        .iter()
        .map(|g| Case {
            name: format!("{} {}", g.metric, g.condition),
            failure: (g.verdict == Verdict::Fail).then(|| g.to_string()),
            skipped: g.verdict == Verdict::Skipped,
        })
        .collect();
    suite(w, &format!("{scenario} gates"), &gate_cases)?;
    if let Some(c) = comparison {
        let cases: Vec<Case> = c
            .rows
            .iter()
            .map(|r| Case {
                name: r.metric.clone(),
                failure: r.status.fails().then(|| {
                    format!(
                        "{:?}: baseline {:?}, current {:?}, tolerance {}",
                        r.status, r.baseline, r.current, r.tolerance
                    )
                }),
                skipped: r.status == Status::Missing,
            })
            .collect();
        suite(w, &format!("{scenario} baseline"), &cases)?;
    }
    writeln!(w, "</testsuites>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("p95 < 60s & \"x\""), "p95 &lt; 60s &amp; &quot;x&quot;");
    }
}
