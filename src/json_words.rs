//! serde's error messages in JSON's words, for whoever reads them: a
//! client of the service, or an engineer whose summary file is corrupt.
//! serde words what it expected after the Rust type being read (`struct
//! SyncMsg`, `u32`); a name from the code must never reach them.

use std::borrow::Cow;

/// serde's message for a value of the wrong type, in JSON's words.
pub fn in_json_terms(what: &str) -> Cow<'_, str> {
    for kind in ["invalid type: ", "invalid value: "] {
        // the expectation is serde's own and never holds ", expected "
        if let Some((got, expected)) = what.strip_prefix(kind).and_then(|r| r.rsplit_once(", expected ")) {
            return format!("{kind}{}, expected {}", json_value(got), json_expected(expected)).into();
        }
    }
    if let Some((len, expected)) =
        what.strip_prefix("invalid length ").and_then(|r| r.split_once(", expected "))
    {
        return format!("invalid length {len}, expected {}", json_expected(expected)).into();
    }
    for kind in ["unknown field `", "unknown variant `"] {
        // the client's own word, which may be a megabyte long
        if let Some((word, rest)) = what.strip_prefix(kind).and_then(|r| r.split_once('`'))
            && word.len() > 64
        {
            let cut = (0..=64).rev().find(|&i| word.is_char_boundary(i)).unwrap_or(0);
            return format!("{kind}{}…`{rest}", &word[..cut]).into();
        }
    }
    Cow::Borrowed(what)
}

/// What serde found (`serde::de::Unexpected` as written), as JSON: a
/// string is not repeated, it may be a megabyte long.
fn json_value(got: &str) -> Cow<'_, str> {
    if let Some(n) = got.strip_prefix("integer `").or_else(|| got.strip_prefix("floating point `")) {
        return format!("the number {}", n.trim_end_matches('`')).into();
    }
    Cow::Borrowed(match got {
        "boolean `true`" => "true",
        "boolean `false`" => "false",
        "unit value" | "Option value" | "null" => "null",
        "sequence" => "a JSON array",
        "map" => "a JSON object",
        g if g.starts_with("string ") => "a string",
        _ => "a value of another type",
    })
}

/// What serde expected (a `Visitor`'s `expecting`, mostly a Rust type),
/// as JSON.
fn json_expected(expected: &str) -> Cow<'static, str> {
    fn ints(min: i128, max: u128) -> Cow<'static, str> {
        format!("an integer from {min} to {max}").into()
    }
    Cow::Borrowed(match expected {
        "u8" => return ints(0, u8::MAX.into()),
        "u16" => return ints(0, u16::MAX.into()),
        "u32" => return ints(0, u32::MAX.into()),
        "u64" | "usize" => return ints(0, u64::MAX.into()),
        "i8" => return ints(i8::MIN.into(), i8::MAX as u128),
        "i16" => return ints(i16::MIN.into(), i16::MAX as u128),
        "i32" => return ints(i32::MIN.into(), i32::MAX as u128),
        "i64" | "isize" => return ints(i64::MIN.into(), i64::MAX as u128),
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a string" | "a borrowed string" | "a character" => "a string",
        "unit" => "null",
        "any valid JSON value" => "any JSON value",
        e if e.starts_with("struct ") || e == "a map" => "a JSON object",
        e if e == "a sequence" || e.starts_with("a tuple") || e.starts_with("tuple") => "a JSON array",
        e if e.starts_with("enum ") => "one of the documented values",
        // the names a client may write (see `unknown variant`)
        e if e.starts_with("one of `") => return e.to_owned().into(),
        // never a name from the code
        _ => "a value of another type",
    })
}
