//! JUnit XML for CI systems: one test case per gate and per compared
//! metric, so a pipeline's test view shows which threshold failed.
//!
//! Test names are the metric alone (`service_level`, not `service_level >=
//! 0.8`), so a test's history survives a changed threshold; the condition,
//! the measured value and the rule are in the failure's message and body.
//! The suites carry the run's seed, engine, scenario fingerprint and kfsim
//! version as properties, a `timestamp` and the run's wall `time`. A run
//! that could not be made (an invalid scenario, an unreachable target)
//! still writes a file, with one test case in error, so CI shows an error
//! instead of no result.

use std::io::{self, Write};

use crate::compare::{Comparison, Status};
use crate::gate::{self, GateResult, Verdict};

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

/// What a JUnit file says about the run besides its cases.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// The scenario's name (the suites are named after it).
    pub scenario: String,
    /// When the run started, ISO 8601 in UTC (`2026-05-01T08:00:00`).
    pub timestamp: Option<String>,
    /// Wall time of the run or the comparison [s].
    pub time_s: f64,
    /// The engine (`sim`, `live`), for the reason of a skipped gate.
    pub engine: Option<String>,
    /// Properties of every suite: seed, fingerprint, engine, version…
    pub properties: Vec<(String, String)>,
    /// The run was stopped before its end (Ctrl-C, a signal): a case in
    /// error says so, which a property alone did not show on a CI
    /// dashboard (found by probing: an interrupted run was green).
    pub interrupted: bool,
}

enum Outcome {
    Pass,
    Failure { message: String, body: String },
    Skipped(String),
    Error { message: String, body: String },
}

struct Case {
    name: String,
    outcome: Outcome,
}

fn suite(
    w: &mut dyn Write,
    meta: &Meta,
    name: &str,
    cases: &[Case],
    extra: &[(String, String)],
) -> io::Result<()> {
    let count = |f: fn(&Outcome) -> bool| cases.iter().filter(|c| f(&c.outcome)).count();
    let failures = count(|o| matches!(o, Outcome::Failure { .. }));
    let errors = count(|o| matches!(o, Outcome::Error { .. }));
    let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
    let stamp = meta.timestamp.as_ref().map_or(String::new(), |t| format!(r#" timestamp="{}""#, escape(t)));
    writeln!(
        w,
        r#"  <testsuite name="{}" tests="{}" failures="{failures}" errors="{errors}" skipped="{skipped}" time="{:.3}"{stamp}>"#,
        escape(name),
        cases.len(),
        meta.time_s
    )?;
    let props: Vec<&(String, String)> = meta.properties.iter().chain(extra).collect();
    if !props.is_empty() {
        writeln!(w, "    <properties>")?;
        for (k, v) in props {
            writeln!(w, r#"      <property name="{}" value="{}"/>"#, escape(k), escape(v))?;
        }
        writeln!(w, "    </properties>")?;
    }
    for c in cases {
        write!(w, r#"    <testcase classname="{}" name="{}" time="0""#, escape(name), escape(&c.name))?;
        match &c.outcome {
            Outcome::Pass => writeln!(w, "/>")?,
            Outcome::Failure { message, body } => writeln!(
                w,
                ">\n      <failure message=\"{}\" type=\"threshold\">{}</failure>\n    </testcase>",
                escape(message),
                escape(body)
            )?,
            Outcome::Error { message, body } => writeln!(
                w,
                ">\n      <error message=\"{}\" type=\"error\">{}</error>\n    </testcase>",
                escape(message),
                escape(body)
            )?,
            Outcome::Skipped(reason) => {
                writeln!(w, ">\n      <skipped message=\"{}\"/>\n    </testcase>", escape(reason))?
            }
        }
    }
    writeln!(w, "  </testsuite>")
}

fn gate_case(g: &GateResult, meta: &Meta) -> Case {
    let unit = gate::unit_of(&g.path);
    let actual = g.actual.map_or("no data".to_owned(), |v| gate::format_like(&g.condition, v, unit));
    let outcome = match g.verdict {
        Verdict::Pass => Outcome::Pass,
        Verdict::Skipped => Outcome::Skipped(format!(
            "{} is not measured by the {} engine",
            g.path,
            meta.engine.as_deref().unwrap_or("this")
        )),
        Verdict::Fail => Outcome::Failure {
            message: format!("{} {} failed: actual {actual}", g.metric, g.condition),
            body: format!(
                "metric:    {} ({})\ncondition: {}\nactual:    {actual}\n",
                g.metric, g.path, g.condition
            ),
        },
    };
    Case { name: g.metric.clone(), outcome }
}

/// Write the gates of a run (`None` for `kfsim compare`, which has none)
/// and, if any, a baseline comparison. A run without gates or baseline
/// gets one passing case, so CI records that it ran.
pub fn write(
    meta: &Meta,
    gates: Option<&[GateResult]>,
    comparison: Option<&Comparison>,
    w: &mut dyn Write,
) -> io::Result<()> {
    writeln!(w, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(w, r#"<testsuites name="kfsim {}">"#, escape(&meta.scenario))?;
    if meta.interrupted {
        let message = "the run was interrupted before its end: its figures cover only what ran".to_owned();
        let case = Case { name: "run".into(), outcome: Outcome::Error { body: message.clone(), message } };
        suite(w, meta, &format!("{} run", meta.scenario), &[case], &[])?;
    }
    match gates {
        Some(gates) if !gates.is_empty() => {
            let cases: Vec<Case> = gates.iter().map(|g| gate_case(g, meta)).collect();
            suite(w, meta, &format!("{} gates", meta.scenario), &cases, &[])?;
        }
        Some(_) if comparison.is_none() && !meta.interrupted => {
            let case = Case { name: "run".into(), outcome: Outcome::Pass };
            suite(w, meta, &format!("{} run", meta.scenario), &[case], &[])?;
        }
        _ => {}
    }
    if let Some(c) = comparison {
        let cases: Vec<Case> = c
            .rows
            .iter()
            .map(|r| {
                let outcome = if r.status.fails() {
                    let verdict = match r.status {
                        Status::Changed => "changed",
                        Status::Missing => "missing",
                        _ => "regressed",
                    };
                    Outcome::Failure {
                        message: format!("{verdict}: {}", r.describe()),
                        body: format!(
                            "{verdict}: {}\n{}",
                            r.describe(),
                            c.notes.iter().map(|n| format!("note: {n}\n")).collect::<String>()
                        ),
                    }
                } else {
                    Outcome::Pass
                };
                Case { name: r.metric.clone(), outcome }
            })
            .collect();
        let mut extra = vec![("comparison.mode".to_owned(), format!("{:?}", c.mode).to_lowercase())];
        extra.extend(c.notes.iter().map(|n| ("comparison.note".to_owned(), n.clone())));
        suite(w, meta, &format!("{} baseline", meta.scenario), &cases, &extra)?;
    }
    writeln!(w, "</testsuites>")
}

/// A run that could not be made: one case in error with the message.
pub fn write_error(meta: &Meta, message: &str, w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(w, r#"<testsuites name="kfsim {}">"#, escape(&meta.scenario))?;
    let first = message.lines().next().unwrap_or(message).to_owned();
    let case =
        Case { name: "run".into(), outcome: Outcome::Error { message: first, body: message.to_owned() } };
    suite(w, meta, &format!("{} run", meta.scenario), &[case], &[])?;
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
