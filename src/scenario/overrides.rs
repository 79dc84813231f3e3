//! `--set key=value` overrides of a scenario, the same paths that `sweep
//! --vary` uses.
//!
//! Paths: a top-level key (`seed`, `duration`), or a table of an array chosen
//! by name: `account.NAME.KEY`, `agents.GROUP.KEY`, `entry.NAME.KEY` (an entry
//! is named by its `name`, else its `scene`; a group by its `group`, else its
//! account). Deeper keys go into inline tables: `entry.web.patience.mean=2m`;
//! a number picks an element of an array the scenario has, from 0:
//! `entry.web.route.0.share=0.5`, `agents.kf.online.0=["9h", "17h"]`.
//! The value is read as TOML when it is TOML (`20`, `true`, `{ … }`) and as a
//! string otherwise (`2h`, `idle_first`).
//!
//! A segment is quoted as in a TOML dotted key when it holds a `.` or an
//! `=` (`gates."queue_wait.p95"`, `agents."a=b".count`); the KEY ends at the
//! first `=` outside quotes. Under `gates`, where every key is a metric path
//! and no value is a table, the rest of an unquoted path is that metric
//! path: `gates.queue_wait.p95="< 2m"`.

use toml::{Table, Value};

use super::ScenarioError;

/// An override as given: the option that gave it (`--set`, `--vary`),
/// which its errors name, and `KEY=VALUE`.
pub(super) type Given<'a> = (&'static str, &'a str);

/// Apply every override to the document and return it as TOML text.
pub(super) fn apply(text: &str, sets: &[Given<'_>]) -> Result<String, ScenarioError> {
    let all = |message: String| ScenarioError::Override {
        flag: sets.first().map_or("--set", |(flag, _)| flag),
        arg: sets.iter().map(|(_, arg)| *arg).collect::<Vec<_>>().join(" "),
        message,
    };
    let mut doc: Table = toml::from_str(text).map_err(|e| all(e.message().to_owned()))?;
    for &(flag, arg) in sets {
        let fail = |message: String| ScenarioError::Override { flag, arg: arg.to_owned(), message };
        let (path, raw) = split_key_value(arg)
            .ok_or_else(|| fail(if arg.contains('=') { NOT_CLOSED } else { "expected KEY=VALUE" }.into()))?;
        set(&mut doc, path.trim(), parse_value(raw.trim())).map_err(fail)?;
    }
    toml::to_string(&doc).map_err(|e| all(e.to_string()))
}

const NOT_CLOSED: &str = "expected KEY=VALUE: a quote in KEY is not closed (a name that begins with a quote \
                          is quoted whole, like entry.\"'tis\".rate)";

/// `KEY=VALUE` split at the first `=` outside the KEY's quotes (a quote
/// opens one only where a segment starts: `o'brien` is a bare name).
pub fn split_key_value(arg: &str) -> Option<(&str, &str)> {
    let mut quote = None;
    let mut escaped = false;
    let mut starts = true;
    for (i, c) in arg.char_indices() {
        match (quote, c) {
            (Some('"'), _) if escaped => escaped = false,
            (Some('"'), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') if starts => quote = Some(c),
            (None, '=') => return Some((&arg[..i], &arg[i + 1..])),
            (None, _) => {}
        }
        starts = quote.is_none() && c == '.';
    }
    None
}

/// One segment of a key path, unquoted.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// The key (or element number) as read.
    pub text: String,
    /// Written in quotes: a key, never an element number.
    pub quoted: bool,
}

/// The segments of a key path written as a TOML dotted key: bare between
/// dots, or quoted, `"…"` with TOML's escapes or `'…'` as it is. A quote
/// inside a bare segment is part of the name, as it always was.
pub fn segments(path: &str) -> Result<Vec<Segment>, String> {
    let not_a_path = || format!("`{path}` is not a key path");
    let mut out = Vec::new();
    let mut rest = path;
    loop {
        let (seg, after) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let close = rest[1..].char_indices().scan(false, |escaped, (i, c)| {
                    let end = c == q && !*escaped;
                    *escaped = q == '"' && c == '\\' && !*escaped;
                    Some((i, end))
                });
                let Some(end) = close.filter(|&(_, end)| end).map(|(i, _)| i + 1).next() else {
                    return Err(format!("`{path}`: a quote is not closed"));
                };
                let quoted = &rest[..=end];
                let text = if q == '"' {
                    // TOML's own reading of the escapes
                    let t: Table = toml::from_str(&format!("k = {quoted}")).map_err(|_| not_a_path())?;
                    t["k"].as_str().ok_or_else(not_a_path)?.to_owned()
                } else {
                    quoted[1..quoted.len() - 1].to_owned()
                };
                (Segment { text, quoted: true }, &rest[end + 1..])
            }
            _ => {
                let end = rest.find('.').unwrap_or(rest.len());
                if end == 0 {
                    return Err(not_a_path());
                }
                (Segment { text: rest[..end].to_owned(), quoted: false }, &rest[end..])
            }
        };
        out.push(seg);
        match after.strip_prefix('.') {
            Some(next) => rest = next,
            None if after.is_empty() => return Ok(out),
            None => return Err(not_a_path()),
        }
    }
}

fn parse_value(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        // `20\nseed=5` reads as two keys: the second was dropped unseen
        .filter(|t| t.len() == 1)
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

/// A name (or key) as one segment of a path: bare where that reads back
/// as the same name, else quoted.
pub fn key_segment(name: &str) -> String {
    let bare = !name.is_empty()
        && name.trim() == name
        && !name.contains(['.', '='])
        && !name.starts_with(['"', '\''])
        && !name.chars().any(char::is_control);
    if bare {
        return name.to_owned();
    }
    let mut out = String::from("\"");
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Segments written back as a path that reads as them.
fn shown(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| if numeric(p) { (*p).to_owned() } else { key_segment(p) })
        .collect::<Vec<_>>()
        .join(".")
}

/// The gate a path sets, if it is under `gates`: there every key is a
/// metric path and no value a table, so the rest of the path, dots and
/// all, is the metric path (`gates.queue_wait.p95`).
pub fn gate_metric(path: &str) -> Option<String> {
    let segs = segments(path).ok()?;
    (segs.len() >= 2 && segs[0].text == "gates")
        .then(|| segs[1..].iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join("."))
}

/// Set `path` in `doc`, selecting array elements by name.
pub(super) fn set(doc: &mut Table, path: &str, value: Value) -> Result<(), String> {
    let mut segs = segments(path)?;
    if let Some(metric) = gate_metric(path) {
        segs.truncate(1);
        segs.push(Segment { text: metric, quoted: true });
    }
    let parts: Vec<&str> = segs.iter().map(|s| s.text.as_str()).collect();
    // only a bare segment can number an element
    let bare_number = |j: usize| !segs[j].quoted && numeric(parts[j]);
    let index_at = |j: usize| parts.get(j).copied().filter(|_| !segs[j].quoted);
    let default_account = single_account_name(doc);
    let (table, rest) = match parts[0] {
        array @ ("account" | "agents" | "entry") => {
            let name = parts.get(1).ok_or_else(|| format!("`{array}` needs a name: {array}.NAME.KEY"))?;
            if parts.len() < 3 {
                return Err(format!("expected {array}.{}.KEY", key_segment(name)));
            }
            let items = doc
                .get_mut(array)
                .and_then(Value::as_array_mut)
                .ok_or_else(|| format!("the scenario has no [[{array}]] tables"))?;
            let names: Vec<String> =
                items.iter().map(|t| element_name(array, t, default_account.as_deref())).collect();
            let idx = names.iter().position(|n| n == name).ok_or_else(|| {
                format!("no [[{array}]] named \"{name}\" (there are: {})", names.join(", "))
            })?;
            let table = items[idx].as_table_mut().ok_or_else(|| format!("[[{array}]] is not a table"))?;
            (table, &parts[2..])
        }
        _ => (doc, &parts[..]),
    };
    let (last, inner) = rest.split_last().expect("a path has a key");
    // the path up to segment `j` of `rest`, as written
    let off = parts.len() - rest.len();
    let before = |j: usize| shown(&parts[..off + j]);
    let mut cur = table;
    let mut i = 0;
    while i < inner.len() {
        let key = inner[i];
        if bare_number(off + i) {
            return Err(not_an_array(path, &before(i), key));
        }
        let v = cur.entry(key.to_string()).or_insert_with(|| Value::Table(Table::new()));
        cur = match v {
            Value::Table(t) => t,
            Value::Array(items) if i + 1 == inner.len() => {
                // the last key numbers the element to replace
                let at = element(items, path, key, index_at(parts.len() - 1))?;
                items[at] = value;
                return Ok(());
            }
            Value::Array(items) => {
                let at = element(items, path, key, index_at(off + i + 1))?;
                i += 1;
                let not_table = || format!("element {at} of `{key}` in `{path}` is not a table");
                items[at].as_table_mut().ok_or_else(not_table)?
            }
            _ => return Err(format!("`{key}` in `{path}` is not a table")),
        };
        i += 1;
    }
    if bare_number(parts.len() - 1) {
        return Err(not_an_array(path, &before(inner.len()), last));
    }
    cur.insert(last.to_string(), value);
    Ok(())
}

/// A segment written as a number (signed, or with leading zeros, too):
/// never a key of a scenario's table.
fn numeric(segment: &str) -> bool {
    let digits = segment.strip_prefix(['-', '+']).unwrap_or(segment);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The index of `items` (the array `key`) that `index` names: digits as
/// an element's number is written, `0`, `1`… (`+0` or `00` are not).
fn element(items: &[Value], path: &str, key: &str, index: Option<&str>) -> Result<usize, String> {
    let n = items.len();
    let range = if n == 0 { "it is empty".to_owned() } else { format!("0 to {}", n - 1) };
    let canonical = |x: &&str| x.bytes().all(|b| b.is_ascii_digit()) && (*x == "0" || !x.starts_with('0'));
    let Some(at) = index.filter(canonical).and_then(|x| x.parse::<usize>().ok()) else {
        return Err(match index.filter(|x| numeric(x)) {
            Some(x) => format!("`{x}` in `{path}` is not an element number of `{key}` ({range})"),
            None => format!(
                "`{key}` in `{path}` is an array: name an element by its number ({range}), or set the whole array"
            ),
        });
    };
    if at >= n {
        return Err(format!(
            "`{key}` in `{path}` has no element {at} ({range}): set the whole array to add one"
        ));
    }
    Ok(at)
}

/// An element number after `before` (the path up to it), where the
/// scenario has no array of tables to pick from.
fn not_an_array(path: &str, before: &str, index: &str) -> String {
    if before.is_empty() {
        return format!("`{path}` is not a key path: it starts with a number");
    }
    format!(
        "`{index}` in `{path}` numbers an element, but `{before}` is not an array of tables in the scenario: \
         set the whole array, like `{before}=[…]`"
    )
}

fn single_account_name(doc: &Table) -> Option<String> {
    match doc.get("account").and_then(Value::as_array).map(Vec::as_slice) {
        Some([only]) => only.get("name").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn element_name(array: &str, item: &Value, default_account: Option<&str>) -> String {
    let get = |k: &str| item.get(k).and_then(Value::as_str);
    let name = match array {
        "account" => get("name"),
        "agents" => get("group").or_else(|| get("account")).or(default_account),
        _ => get("name").or_else(|| get("scene")),
    };
    name.unwrap_or("?").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_typed_when_they_can_be() {
        assert_eq!(parse_value("20"), Value::Integer(20));
        assert_eq!(parse_value("0.5"), Value::Float(0.5));
        assert_eq!(parse_value("true"), Value::Boolean(true));
        assert_eq!(parse_value("2h"), Value::String("2h".into()));
        assert_eq!(parse_value("\"2h\""), Value::String("2h".into()));
        assert!(parse_value("{ dist = \"exponential\", mean = \"2m\" }").is_table());
        // a value that is more than one TOML value is taken as it is given
        assert_eq!(parse_value("44\nseed=5"), Value::String("44\nseed=5".into()));
    }

    #[test]
    fn keys_are_quoted_as_in_toml() {
        let bare = |t: &str| Segment { text: t.into(), quoted: false };
        let quoted = |t: &str| Segment { text: t.into(), quoted: true };
        assert_eq!(segments("gates.\"a.b\"").unwrap(), [bare("gates"), quoted("a.b")]);
        assert_eq!(segments("account.'x=\\y'.cap").unwrap(), [bare("account"), quoted("x=\\y"), bare("cap")]);
        assert_eq!(segments(r#"a."q\"d.\u0041""#).unwrap(), [bare("a"), quoted("q\"d.A")]);
        for bad in ["a..b", "a.", ".a", "a.\"b", "a.\"b\"c", ""] {
            assert!(segments(bad).is_err(), "{bad}");
        }
        // a quote inside a bare name is the name's
        assert_eq!(segments("entry.o'brien.rate").unwrap()[1], bare("o'brien"));
        assert_eq!(segments("entry.a\"b\".rate").unwrap()[1], bare("a\"b\""));
        assert_eq!(split_key_value("entry.o'brien=x.rate=2/s"), Some(("entry.o'brien", "x.rate=2/s")));
        // names written back into a path read as themselves
        for name in ["web", "o'brien", "'tis", "a=b", "\"q\"", "a\\b", " pad", "tab\there", "é"] {
            let path = format!("entry.{}.rate", key_segment(name));
            assert_eq!(segments(&path).unwrap()[1].text, name, "{path}");
            assert_eq!(split_key_value(&format!("{path}=1")).map(|(k, _)| k), Some(path.as_str()));
        }
        assert_eq!(key_segment("web"), "web");
        assert_eq!(key_segment("a=b"), "\"a=b\"");
        assert_eq!(split_key_value("gates.\"a=b\"=< 1s"), Some(("gates.\"a=b\"", "< 1s")));
        assert_eq!(split_key_value("a.'b=\"'=c=d"), Some(("a.'b=\"'", "c=d")));
        assert_eq!(split_key_value("a.\"b\\\"=\"=1"), Some(("a.\"b\\\"=\"", "1")));
        assert_eq!(split_key_value("a.\"b=1"), None);
    }

    #[test]
    fn a_gate_is_set_by_its_metric_path_quoted_or_not() {
        let text = "[gates]\n\"queue_wait.p95\" = \"< 1m\"\n";
        for path in ["gates.queue_wait.p95", "gates.\"queue_wait.p95\"", "gates.'queue_wait.p95'"] {
            let mut doc: Table = toml::from_str(text).unwrap();
            set(&mut doc, path, Value::String("< 2m".into())).unwrap();
            assert_eq!(doc["gates"]["queue_wait.p95"].as_str(), Some("< 2m"), "{path}");
            assert_eq!(doc["gates"].as_table().unwrap().len(), 1, "{path}");
        }
        // a quoted number is a key, not an element
        let mut doc: Table =
            toml::from_str("[[entry]]\nscene = \"web\"\nroute = [{ account = \"a\" }]\n").unwrap();
        assert!(set(&mut doc, "entry.web.\"0\"", Value::Integer(1)).is_ok());
        assert_eq!(doc["entry"][0]["0"].as_integer(), Some(1));
        assert!(set(&mut doc, "entry.web.0", Value::Integer(1)).unwrap_err().contains("numbers an element"));
        // nor an element of an array (it picked one)
        let e = set(&mut doc, "entry.web.route.\"0\".account", Value::Integer(1)).unwrap_err();
        assert!(e.contains("is an array: name an element by its number"), "{e}");
        // `"gates"` is `gates`
        let mut doc: Table = toml::from_str(text).unwrap();
        set(&mut doc, "\"gates\".queue_wait.p95", Value::String("< 3m".into())).unwrap();
        assert_eq!(doc["gates"]["queue_wait.p95"].as_str(), Some("< 3m"));
        // advice names a name as it must be written
        let mut doc: Table = toml::from_str("[[entry]]\nname = \"k=v\"\nscene = \"web\"\n").unwrap();
        let e = set(&mut doc, "entry.\"k=v\".think.0.mean", Value::Integer(1)).unwrap_err();
        assert!(e.contains("like `entry.\"k=v\".think=[…]`"), "{e}");
    }

    #[test]
    fn unknown_names_are_reported() {
        let mut doc: Table =
            toml::from_str("[[agents]]\ngroup = \"day\"\n[[entry]]\nscene = \"web\"\n").unwrap();
        assert!(set(&mut doc, "agents.night.count", Value::Integer(1)).unwrap_err().contains("day"));
        assert!(set(&mut doc, "agents.day", Value::Integer(1)).is_err());
        set(&mut doc, "entry.web.patience.mean", Value::String("2m".into())).unwrap();
        assert_eq!(doc["entry"][0]["patience"]["mean"].as_str(), Some("2m"));
    }

    #[test]
    fn a_number_picks_an_element_of_an_array() {
        let text = "[[entry]]\nscene = \"web\"\nroute = [{ account = \"a\" }, { account = \"b\", share = 0.2 }]\n\
                    [[agents]]\naccount = \"a\"\nonline = [[\"0h\", \"8h\"]]\n";
        let mut doc: Table = toml::from_str(text).unwrap();
        set(&mut doc, "entry.web.route.1.share", Value::Float(0.5)).unwrap();
        assert_eq!(doc["entry"][0]["route"][1]["share"].as_float(), Some(0.5));
        assert_eq!(doc["entry"][0]["route"][0].get("share"), None);
        let err = |doc: &mut Table, path: &str| set(doc, path, Value::Float(0.5)).unwrap_err();
        let e = err(&mut doc, "entry.web.route.2.share");
        assert_eq!(
            e,
            "`route` in `entry.web.route.2.share` has no element 2 (0 to 1): set the whole array to add one"
        );
        let e = err(&mut doc, "entry.web.route.share");
        assert!(e.contains("is an array: name an element by its number (0 to 1)"), "{e}");
        // an element that is not a table, and a number where there is no array
        let e = err(&mut doc, "agents.a.online.0.from");
        assert_eq!(e, "element 0 of `online` in `agents.a.online.0.from` is not a table");
        let e = err(&mut doc, "entry.web.think.0.mean");
        assert!(e.contains("but `entry.web.think` is not an array of tables in the scenario: set the whole array, like `entry.web.think=[…]`"), "{e}");
        let e = err(&mut doc, "entry.web.route.0.1");
        assert!(e.contains("but `entry.web.route.0` is not an array"), "{e}");
        // an element is numbered as written: 0, 1…
        for odd in ["+0", "00", "-1", "18446744073709551616"] {
            let e = err(&mut doc, &format!("entry.web.route.{odd}.share"));
            assert!(
                e.contains(&format!(
                    "`{odd}` in `entry.web.route.{odd}.share` is not an element number of `route` (0 to 1)"
                )),
                "{e}"
            );
        }
        assert!(err(&mut doc, "0").contains("starts with a number"));
        // a whole element replaced
        let shift = parse_value("[\"9h\", \"17h\"]");
        set(&mut doc, "agents.a.online.0", shift.clone()).unwrap();
        assert_eq!(doc["agents"][0]["online"][0], shift);
        assert!(err(&mut doc, "agents.a.online.1").contains("has no element 1 (0 to 0)"));
    }
}
