//! Errors in scenario files, with the file, line, column and a caret under
//! the offending text, in the style of rustc and cargo.

use std::fmt;
use std::ops::Range;

/// Why a scenario could not be loaded. All of these exit with code 2.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    // The OS error is part of the message, not a `source`: shown as both,
    // `{:#}` printed it twice.
    #[error("{path}: {error}")]
    Io {
        /// The path as given.
        path: String,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The file (or the file after overrides) is not a valid scenario.
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
    /// More than one mistake, each at its place (every bad gate of
    /// `[gates]`): a file with two was refused once for each, one run at a
    /// time (found by probing). Each is shown as an error of its own.
    #[error("{}", several(.0))]
    Several(Vec<Diagnostic>),
    /// A `--set key=value` override (or a value of a sweep's or plan's
    /// `--vary`) does not name a key of the scenario, or makes it invalid.
    #[error("{flag} {}: {}", shorten(arg), shorten(message))]
    Override {
        /// The option that gave it: `--set` or `--vary`.
        flag: &'static str,
        /// The override as given (for `--vary`, `PATH=VALUE` of the one value).
        arg: String,
        /// What is wrong with it.
        message: String,
    },
    /// Mistakes several overrides made (each breaking a gate of its own),
    /// each shown as an error of its own.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\nerror: "))]
    Overrides(Vec<ScenarioError>),
}

impl ScenarioError {
    /// The error of the mistakes `found`, in their order: none, one
    /// ([`ScenarioError::Invalid`]), or [`ScenarioError::Several`].
    pub fn of_all(mut found: Vec<Diagnostic>) -> Option<ScenarioError> {
        match found.len() {
            0 => None,
            1 => found.pop().map(|d| ScenarioError::Invalid(Box::new(d))),
            _ => Some(ScenarioError::Several(found)),
        }
    }

    /// Each mistake as an error of its own.
    pub fn split(self) -> Vec<ScenarioError> {
        match self {
            ScenarioError::Several(all) => {
                all.into_iter().map(|d| ScenarioError::Invalid(Box::new(d))).collect()
            }
            ScenarioError::Overrides(all) => all,
            one => vec![one],
        }
    }

    /// The place of the (first) mistake, if it has one in a file.
    pub fn first(&self) -> Option<&Diagnostic> {
        match self {
            ScenarioError::Invalid(d) => Some(d),
            ScenarioError::Several(all) => all.first(),
            _ => None,
        }
    }
}

/// The mistakes one after another, each introduced as the first is by
/// whoever prints the error (`error: `).
fn several(all: &[Diagnostic]) -> String {
    all.iter().map(ToString::to_string).collect::<Vec<_>>().join("\nerror: ")
}

/// One error at one place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file's name as the user gave it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong and, where possible, what is expected.
    pub message: String,
    source_line: String,
    caret_len: usize,
}

impl Diagnostic {
    /// The line of the file the error is on (empty for the whole file).
    pub fn source_line(&self) -> &str {
        &self.source_line
    }

    /// The same place with another message.
    pub fn with_message(&self, message: String) -> Diagnostic {
        Diagnostic { message, ..self.clone() }
    }

    /// Locate `span` (byte offsets into `text`) and keep the line it starts
    /// on. Without a span the error is about the whole file: it is reported
    /// at 1:1 with no snippet.
    pub fn new(file: &str, text: &str, span: Option<Range<usize>>, message: String) -> Diagnostic {
        let Some(span) = span else {
            return Diagnostic {
                file: file.to_owned(),
                line: 1,
                column: 1,
                message,
                source_line: String::new(),
                caret_len: 0,
            };
        };
        let start = span.start.min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let source_line = text[line_start..line_end].trim_end_matches('\r').to_owned();
        let column = text[line_start..start].chars().count() + 1;
        let end = span.end.clamp(start, line_end);
        Diagnostic {
            file: file.to_owned(),
            line: text[..start].matches('\n').count() + 1,
            column,
            message,
            caret_len: text[start..end].chars().count().max(1),
            source_line,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, shorten(&self.message))?;
        if !self.source_line.trim().is_empty() {
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            // a line of megabytes (a value nested a million deep) is shown
            // as the part around the column, not whole
            let chars: Vec<char> = self.source_line.chars().collect();
            let (from, to) = if chars.len() <= SNIPPET_CHARS {
                (0, chars.len())
            } else {
                let from =
                    (self.column - 1).saturating_sub(SNIPPET_CHARS / 2).min(chars.len() - SNIPPET_CHARS);
                (from, from + SNIPPET_CHARS)
            };
            let before = if from > 0 { "…" } else { "" };
            let after = if to < chars.len() { "…" } else { "" };
            let shown: String = chars[from..to].iter().collect();
            let lead: String = before
                .chars()
                .chain(chars[from..(self.column - 1).min(to)].iter().copied())
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(
                f,
                "\n{pad} |\n{num} | {before}{shown}{after}\n{pad} | {lead}{}",
                "^".repeat(self.caret_len.min(80))
            )?;
        }
        Ok(())
    }
}

/// Most characters of the file's line shown under an error.
const SNIPPET_CHARS: usize = 120;

/// Most characters of a message or an override shown: a message names the
/// value that was wrong, and a value of megabytes came back whole, three
/// times for an override (found by probing: a 3 MB error).
const MESSAGE_CHARS: usize = 400;

/// `text`, or its start and end around `…` when longer than [`MESSAGE_CHARS`].
pub(crate) fn shorten(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().count() <= MESSAGE_CHARS {
        return text.into();
    }
    let head: String = text.chars().take(MESSAGE_CHARS / 2).collect();
    let tail: Vec<char> = text.chars().rev().take(MESSAGE_CHARS / 4).collect();
    let tail: String = tail.into_iter().rev().collect();
    format!("{head} … {tail}").into()
}

/// `did you mean "x"?` when a close candidate exists, else the list.
pub fn suggest(word: &str, candidates: &[&str], what: &str) -> String {
    let best = candidates.iter().map(|c| (strsim::damerau_levenshtein(word, c), *c)).min_by_key(|(d, _)| *d);
    match best {
        Some((d, c)) if d <= (word.len().max(3) / 3).max(2) => format!("did you mean `{c}`?"),
        _ => {
            format!("{what}: {}", candidates.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "))
        }
    }
}

/// The line of `text` that contains byte `offset`.
pub fn line_at(text: &str, offset: usize) -> &str {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    &text[start..end]
}

/// Reword serde's messages for people who write scenario files, not Rust:
/// "unknown field" becomes "unknown key" with the closest known key, Rust
/// type names become words, and `[account]` written for `[[account]]` says
/// so. `line` is the source line the error points at.
pub fn improve_message(message: &str, line: &str) -> String {
    let mut m = message.trim_end().to_owned();
    for (kind, what) in [("field", "key"), ("variant", "value")] {
        let prefix = format!("unknown {kind} `");
        let Some(rest) = m.strip_prefix(&prefix) else { continue };
        let Some((word, tail)) = rest.split_once('`') else { continue };
        // serde writes "expected one of `a`, `b`", "expected `a` or `b`" or
        // "there are no fields"
        let tail = tail.trim_start_matches(',').trim();
        let candidates: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
        let hint = closest(word, &candidates).map_or(String::new(), |c| format!(": did you mean `{c}`?"));
        m = format!("unknown {what} `{word}`{hint} ({tail})");
        break;
    }
    m = m.replacen("missing field `", "missing key `", 1);
    // the reader's depth limit, in its words ("cannot recurse further; max
    // recursion depth met"), said neither what nor how deep
    if m.starts_with("cannot recurse further") {
        m = "nested deeper than the TOML reader allows: a scenario's values nest a few levels at most".into();
    }
    // the Rust type a TOML integer past i64 was read as
    m = m.replacen("` as i128,", "`,", 1);
    // toml's words for a number or an array where a name is expected
    // (`policy = 3`): the names themselves come with a string
    // and its words for a table there (`policy = { a = 1, b = 2 }`, `{}`),
    // which named neither what it got nor what it wanted
    if m == "wanted string or table" || m.starts_with("wanted exactly 1 element") {
        m = "expected a name in quotes (a string)".into();
    }
    for (rust, words) in [
        // a TOML integer is an i64: a u32 is refused past its top too
        ("expected u32", "expected a whole number from 0 to 4294967295"),
        ("expected u64", "expected a whole number ≥ 0"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
    ] {
        m = m.replace(rust, words);
    }
    let trimmed = line.trim_start();
    if m.contains("expected a sequence")
        && trimmed.starts_with('[')
        && !trimmed.starts_with("[[")
        && let Some(name) = trimmed[1..].split(']').next()
    {
        let name = name.trim();
        m = format!(
            "`[{name}]` must be written `[[{name}]]`: it is an array of tables, \
             one `[[{name}]]` per {name}"
        );
    }
    // serde names the Rust type it reads into: `expected struct RawBot`
    while let Some(i) = m.find("expected struct ") {
        let name = &m[i + "expected struct ".len()..];
        let end =
            i + "expected struct ".len() + name.find(|c: char| !c.is_alphanumeric()).unwrap_or(name.len());
        m.replace_range(i..end, "expected a table");
    }
    // a struct read from an array: "invalid length 1, expected a table with
    // 9 elements" (`mix = [1]`) counted the struct's fields as elements
    if m.starts_with("invalid length ") && m.contains("expected a table with ") {
        m = "invalid type: array, expected a table".into();
    }
    // what serde calls them, in TOML's words
    m.replace("expected a map", "expected a table")
        .replace("expected a sequence", "expected an array")
        .replacen("invalid type: sequence,", "invalid type: array,", 1)
        .replacen("invalid type: map,", "invalid type: table,", 1)
}

fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, _)| *d <= (word.len().max(3) / 3).max(2))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_and_caret() {
        let text = "a = 1\nrate = \"x\"\n";
        let d = Diagnostic::new("f.toml", text, Some(13..16), "bad rate".into());
        assert_eq!((d.line, d.column), (2, 8));
        assert_eq!(d.to_string(), "f.toml:2:8: bad rate\n  |\n2 | rate = \"x\"\n  |        ^^^");
    }

    #[test]
    fn a_long_line_is_shown_around_the_column() {
        let text = format!("name = {}x{}\n", "[".repeat(500_000), "]".repeat(500_000));
        let at = 7 + 500_000;
        let d = Diagnostic::new("f.toml", &text, Some(at..at + 1), "bad".into());
        let shown = d.to_string();
        assert!(shown.len() < 1000, "{} bytes", shown.len());
        let lines: Vec<&str> = shown.lines().collect();
        let x = lines[2].chars().position(|c| c == 'x').unwrap();
        assert_eq!(lines[3].chars().position(|c| c == '^'), Some(x), "{shown}");
        assert!(lines[2].contains("…[[[") && lines[2].ends_with("]]]…"), "{shown}");
        // the start of a long line: no ellipsis before it
        let d = Diagnostic::new("f.toml", &text, Some(0..4), "bad".into());
        assert!(d.to_string().contains("\n1 | name = [[[") && d.to_string().ends_with("\n  | ^^^^"));
    }

    #[test]
    fn unknown_key_gets_a_suggestion() {
        let m = improve_message("unknown field `ratee`, expected one of `name`, `scene`, `rate`", "");
        assert_eq!(m, "unknown key `ratee`: did you mean `rate`? (expected one of `name`, `scene`, `rate`)");
        let two = improve_message("unknown field `form`, expected `from` or `to`", "");
        assert_eq!(two, "unknown key `form`: did you mean `from`? (expected `from` or `to`)");
        let far = improve_message("unknown field `zzzzzzzz`, expected one of `name`, `rate`", "");
        assert_eq!(far, "unknown key `zzzzzzzz` (expected one of `name`, `rate`)");
    }

    #[test]
    fn rust_words_become_scenario_words() {
        assert_eq!(
            improve_message("invalid value: integer `-1`, expected u32", ""),
            "invalid value: integer `-1`, expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            improve_message("invalid value: integer `-1`, expected u64", ""),
            "invalid value: integer `-1`, expected a whole number ≥ 0"
        );
        assert_eq!(
            improve_message("invalid type: integer `18446744073709551616` as i128, expected a string", ""),
            "invalid type: integer `18446744073709551616`, expected a string"
        );
        let deep = improve_message("cannot recurse further; max recursion depth met", "x = [[[[");
        assert!(deep.starts_with("nested deeper than the TOML reader allows"), "{deep}");
        for toml in ["wanted string or table", "wanted exactly 1 element, more than 1 element"] {
            assert_eq!(improve_message(toml, "policy = 3"), "expected a name in quotes (a string)");
        }
        assert_eq!(
            improve_message("invalid length 1, expected struct Mix with 9 elements", "mix = [1]"),
            "invalid type: array, expected a table"
        );
        assert_eq!(
            improve_message("invalid type: sequence, expected a string", "name = []"),
            "invalid type: array, expected a string"
        );
        let m = improve_message("invalid type: map, expected a sequence", "[account]");
        assert!(m.starts_with("`[account]` must be written `[[account]]`"), "{m}");
        assert_eq!(
            improve_message("invalid type: integer `3`, expected struct RawBot", "bot = 3"),
            "invalid type: integer `3`, expected a table"
        );
        assert_eq!(
            improve_message("invalid type: string \"x\", expected a sequence", "online = \"x\""),
            "invalid type: string \"x\", expected an array"
        );
        assert_eq!(Diagnostic::new("f", "x", None, "m".into()).to_string(), "f:1:1: m");
    }
}
