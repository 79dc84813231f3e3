//! Parsing of the human units in scenario files: durations (`"2h30m"`) and
//! rates (`"120/min"`).
//!
//! Virtual time is kept in integer microseconds everywhere in kfsim, so a
//! duration parses to `u64` µs. Parsers here take `&str` and return a message
//! on error; the serde glue in `schema` attaches the file position.

use std::fmt;

/// The highest arrival rate of an entry [1/s]: far above any reception
/// system, low enough that the simulator's time stays in integer µs.
pub const MAX_RATE_PER_S: f64 = 1e6;

/// Microseconds in one second.
pub const US_PER_S: f64 = 1e6;

/// Parse a duration such as `"20s"`, `"2h30m"`, `"1.5h"`, `"250ms"` or `"3d"`
/// into microseconds.
///
/// Units: `d`, `h`, `m`/`min`, `s`, `ms`, `us`/`µs`. Parts may be separated by
/// spaces. A bare number is refused on purpose: `"20"` could mean seconds or
/// minutes, and the file should say which.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let expected = || {
        format!(
            "invalid duration \"{text}\": expected a number with a unit, \
             like \"20s\", \"2m\", \"1h30m\", \"250ms\" or \"3d\""
        )
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(expected());
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total = 0.0_f64;
    // units of a combination from the largest down, each once: "1h1h" or
    // "30m2h" is more likely a slip than a wish for 2 h or 2 h 30 m
    let mut last_factor = f64::INFINITY;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if start == i {
            return Err(expected());
        }
        let number: f64 = s[start..i].parse().map_err(|_| expected())?;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let unit_start = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b' ' || bytes[i] == b'.') {
            i += 1;
        }
        let factor = match &s[unit_start..i] {
            "d" | "day" | "days" => 86_400e6,
            "h" | "hr" | "hour" | "hours" => 3_600e6,
            "m" | "min" | "mins" | "minute" | "minutes" => 60e6,
            "s" | "sec" | "secs" | "second" | "seconds" => 1e6,
            "ms" => 1e3,
            "us" | "µs" => 1.0,
            _ => return Err(expected()),
        };
        if factor >= last_factor {
            return Err(format!(
                "invalid duration \"{text}\": in a combination each unit comes once, from the largest down, like \"1h30m\""
            ));
        }
        last_factor = factor;
        total += number * factor;
    }
    if !total.is_finite() || total > 1e17 {
        // the bound alone, as "is too long" left the file's author to guess it
        return Err(format!(
            "duration \"{text}\" is too long: a duration is at most 100000000000s (10¹⁷ µs, about 3 170 years)"
        ));
    }
    Ok(total.round() as u64)
}

/// Render microseconds the way a person writes a duration (`"2h30m"`), the
/// inverse of [`parse_duration`] (below 2⁵³ µs, where it parses exactly).
pub fn format_duration(us: u64) -> String {
    if us == 0 {
        return "0s".into();
    }
    if us < 1_000_000 {
        return if us % 1000 == 0 { format!("{}ms", us / 1000) } else { format!("{us}us") };
    }
    // a second's fraction rides on the seconds ("7d2h4m4.898s"): a length
    // `kfsim bench` or a plan computed reads as days and hours, not as
    // 612244898ms
    let (mut s, frac) = (us / 1_000_000, us % 1_000_000);
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    if frac > 0 {
        let digits = format!("{frac:06}");
        out.push_str(&format!("{s}.{}s", digits.trim_end_matches('0')));
    } else if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// [`format_duration`] of a length in seconds, rounded to the µs: a
/// length truncated to it could read one µs short ("2.013631s").
pub fn format_seconds(s: f64) -> String {
    format_duration((s * 1e6).round() as u64)
}

/// A rate in events per second, parsed from `"120/min"`, `"2/s"` or `"600/h"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Mean events per second.
    pub per_s: f64,
}

impl Rate {
    /// Parse `"<number>/<unit>"` with unit `s`, `min` or `h`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let expected = || {
            format!(
                "invalid rate \"{text}\": expected a number of arrivals per unit of time, \
                 like \"2/s\", \"120/min\" or \"600/h\""
            )
        };
        let (number, unit) = text.split_once('/').ok_or_else(expected)?;
        let number: f64 = number.trim().parse().map_err(|_| expected())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hr" | "hour" => 3600.0,
            "d" | "day" => 86_400.0,
            _ => return Err(expected()),
        };
        if !number.is_finite() || number <= 0.0 {
            return Err(format!("rate \"{text}\" must be positive and finite"));
        }
        if number / per > MAX_RATE_PER_S {
            return Err(format!("rate \"{text}\" is above the most kfsim runs, 1000000/s"));
        }
        Ok(Rate { per_s: number / per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.per_s)
    }
}

/// A duration in ms as a person reads it: `850ms`, `25.9s`, `4m12s`.
pub fn human_ms(v: Option<f64>) -> String {
    let Some(ms) = v else { return "—".into() };
    if ms == 0.0 {
        "0s".into()
    } else if ms < 1.0 {
        format!("{:.0}µs", ms * 1e3)
    } else if ms < 1_000.0 {
        format!("{ms:.0}ms")
    } else if ms < 60_000.0 {
        format!("{:.1}s", ms / 1e3)
    } else if ms < 3_600_000.0 {
        let s = (ms / 1e3).round() as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = (ms / 60e3).round() as u64;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

/// The first character of an EncodingAESKey outside base64's alphabet
/// (letters, digits, `+` and `/`) and its place, counted in characters
/// from 1: a key of 43 characters with one wrong was told it "must be 43
/// characters; got 43" (found by probing).
pub fn non_base64_char(key: &str) -> Option<(char, usize)> {
    let base64 = |c: &char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/');
    key.chars().zip(1..).find(|(c, _)| !base64(c))
}

/// A middleware's callback URL: `http://HOST:PORT/PATH`, its host and
/// port as [`check_target_url`] takes them (a URL with no host or port
/// 99999 passed, and the service retried it for 30 s before it gave up:
/// found by probing), its path without spaces or control characters.
pub fn check_callback_url(url: &str) -> Result<(), String> {
    let bad =
        |why: String| Err(format!("invalid callback URL \"{url}\": {why}; expected http://HOST:PORT/PATH"));
    let Some(rest) = url.strip_prefix("http://") else {
        return bad("it must start with http://".into());
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if let Err(why) = target_problem(&format!("http://{authority}")) {
        return bad(why.into());
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("no space or control character may be in its path".into());
    }
    Ok(())
}

/// Check a live target URL: `http://HOST[:PORT]` (an optional trailing
/// `/`), HOST a name, an IPv4 address or a bracketed IPv6 address, PORT
/// 1–65535. The driver builds every request from it, so anything it could
/// not turn into a request is refused here, with a message for the user.
pub fn check_target_url(url: &str) -> Result<(), String> {
    target_problem(url).map_err(|why| format!("invalid target \"{url}\": {why}; expected http://HOST:PORT"))
}

/// What is wrong with a target URL, if anything ([`check_target_url`]).
fn target_problem(url: &str) -> Result<(), &'static str> {
    let bad = |why: &'static str| Err(why);
    let Some(rest) = url.strip_prefix("http://") else {
        return bad("it must start with http://");
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return bad("no host");
    }
    if authority.contains(['/', '?', '#', '@']) {
        return bad("no path, query, fragment or user may follow the host");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return bad("an IPv6 address needs its closing `]`");
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("not an IPv6 address between the brackets");
        }
        match after {
            "" => (addr, None),
            p => match p.strip_prefix(':') {
                Some(p) => (addr, Some(p)),
                None => return bad("only `:PORT` may follow `]`"),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return bad("no host");
    }
    if !authority.starts_with('[') && !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        return bad("a host name has only letters, digits, `-`, `.` and `_`");
    }
    if let Some(p) = port
        && !(p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0))
    {
        return bad("the port must be a number from 1 to 65535");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s"), Ok(20_000_000));
        assert_eq!(parse_duration("2h30m"), Ok(9_000_000_000));
        assert_eq!(parse_duration("2h 30m"), Ok(9_000_000_000));
        assert_eq!(parse_duration("1.5h"), Ok(5_400_000_000));
        assert_eq!(parse_duration("250ms"), Ok(250_000));
        assert_eq!(parse_duration("3d"), Ok(259_200_000_000));
        assert_eq!(parse_duration("0s"), Ok(0));
        assert_eq!(parse_duration("1min"), Ok(60_000_000));
        assert_eq!(parse_duration("1 h 2 mins 3s"), Ok(3_723_000_000));
        for bad in
            ["", "20", "5 minutes please", "h", "1x", "-3s", "1..2s", "s20", "1h1h", "30m2h", "1m 1min"]
        {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn duration_round_trip() {
        for us in [
            0,
            1,
            1500,
            20_000_000,
            9_000_000_000,
            259_200_000_000 + 61_000_000,
            1_000_001,
            612_244_898_000,
            86_400_000_000 + 500_000,
        ] {
            assert_eq!(parse_duration(&format_duration(us)), Ok(us));
        }
        assert_eq!(format_duration(612_244_898_000), "7d2h4m4.898s");
        assert_eq!(format_duration(1_500_000), "1.5s");
        assert_eq!(format_duration(60_000_001), "1m0.000001s");
        assert_eq!(format_duration(250_000), "250ms");
        assert_eq!(format_duration(9_000_000_000), "2h30m");
        // 2.013632 × 1e6 is 2013631.9999…: rounded, not truncated
        assert_eq!(format_seconds(2.013632), "2.013632s");
    }

    #[test]
    fn rates() {
        assert_eq!(Rate::parse("120/min").unwrap().per_s, 2.0);
        assert_eq!(Rate::parse("2/s").unwrap().per_s, 2.0);
        assert_eq!(Rate::parse("7200/h").unwrap().per_s, 2.0);
        for bad in ["120", "120/week", "-1/s", "0/s", "x/s", "inf/s", "NaN/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn target_urls() {
        for good in
            ["http://127.0.0.1:8080", "http://localhost:1/", "http://[::1]:65535", "http://kf.example"]
        {
            assert_eq!(check_target_url(good), Ok(()), "{good}");
        }
        for bad in [
            "http://",
            "http://a b",
            "http://[::1",
            "http://[zz]:80",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:0",
            "http://127.0.0.1:",
            "http://h:80/path",
            "http://u@h:80",
            "https://h:80",
            "http://:80",
        ] {
            let e = check_target_url(bad).unwrap_err();
            assert!(e.contains("expected http://HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_ms(Some(0.5)), "500µs");
        assert_eq!(human_ms(Some(850.0)), "850ms");
        assert_eq!(human_ms(Some(25_900.0)), "25.9s");
        assert_eq!(human_ms(Some(252_000.0)), "4m12s");
        assert_eq!(human_ms(Some(9_000_000.0)), "2h30m");
        assert_eq!(human_ms(None), "—");
    }
}
