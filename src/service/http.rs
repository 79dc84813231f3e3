//! HTTP plumbing shared by both surfaces: the body cap, JSON parsing with
//! WeCom's errcodes, the access_token check, WeCom-shaped answers, and
//! long-polls that wake on new data.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use super::Service;
use super::errors::{ApiError, code};
use super::faults::Caller;
use super::state::State;

/// The errcode of an answer, for the metrics middleware.
#[derive(Debug, Clone, Copy)]
pub(super) struct ErrCode(pub i32);

/// `{"errcode":0,"errmsg":"ok", …fields}`.
#[derive(Serialize)]
struct Ok<'a, T> {
    errcode: i32,
    errmsg: &'a str,
    #[serde(flatten)]
    body: T,
}

/// A JSON answer with HTTP 200 and errcode 0.
pub(super) fn ok<T: Serialize>(body: T) -> Response {
    match serde_json::to_vec(&Ok { errcode: 0, errmsg: "ok", body }) {
        Result::Ok(bytes) => json_response(StatusCode::OK, bytes, 0),
        Err(e) => error(ApiError::new(code::SYSTEM_BUSY, format!("system busy: {e}"))),
    }
}

/// A WeCom error answer.
pub(super) fn error(e: ApiError) -> Response {
    let body = serde_json::json!({ "errcode": e.code, "errmsg": e.msg });
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::OK);
    json_response(status, body.to_string().into_bytes(), e.code)
}

/// The answer of an operation.
pub(super) fn respond<T: Serialize>(r: Result<T, ApiError>) -> Response {
    match r {
        Result::Ok(body) => ok(body),
        Err(e) => error(e),
    }
}

fn json_response(status: StatusCode, bytes: Vec<u8>, errcode: i32) -> Response {
    let mut resp = (status, Body::from(bytes)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    resp.extensions_mut().insert(ErrCode(errcode));
    resp
}

/// A query parameter, percent-decoded; `""` when absent. Borrowed when
/// there is nothing to decode: an access_token always, on every call.
pub(super) fn query_param<'q>(query: Option<&'q str>, name: &str) -> Cow<'q, str> {
    let Some(q) = query else { return Cow::Borrowed("") };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            if v.bytes().any(|b| b == b'%' || b == b'+') {
                return Cow::Owned(percent_decode(v));
            }
            return Cow::Borrowed(v);
        }
    }
    Cow::Borrowed("")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Result::Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Read the body, refusing more than `max` bytes with HTTP 413.
pub(super) async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::param(format!("request body larger than {max} bytes (the limit is 1 MiB)")).with_status(413)
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(super::BODY_READ_TIMEOUT, axum::body::to_bytes(body, max));
    let Result::Ok(read) = read.await else {
        return Err(ApiError::param("request body not received in time").with_status(408));
    };
    read.map_err(|e| {
        // only the cap is a 413; a body that breaks off or is badly framed
        // (chunked encoding) is the client's malformed request
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if c.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            cause = c.source();
        }
        ApiError::param(format!("unreadable request body: {e}")).with_status(400)
    })
}

/// Parse a JSON body: syntax errors, wrong types and a body that is not an
/// object are 47001 ("Warning: wrong json format."), a missing required
/// field 40058. An empty body is `{}`.
pub(super) fn parse_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return serde_json::from_str("{}").map_err(json_error);
    }
    object_only(bytes, || {
        // checked as UTF-8 once, then read as text: from bytes, serde_json
        // checks each string it copies (a twentieth of a customer message);
        // a body that is not UTF-8 gets serde_json's own error from bytes
        match std::str::from_utf8(bytes) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(bytes),
        }
        .map_err(json_error)
    })
}

/// `read` the JSON value in `bytes` if it is an object. serde reads a
/// struct from an array as well, by position (WeCom answers 47001): the
/// first byte tells, without a second parse on the hot path. Anything else
/// serde refuses itself (no JSON, or no struct); should `T` take it, it is
/// refused all the same.
fn object_only<T>(bytes: &[u8], read: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
    let Some(start) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else { return read() };
    match bytes[start] {
        b'{' => read(),
        b'[' => Err(not_an_object(bytes, start)),
        _ => read().and_then(|_| Err(not_an_object(bytes, start))),
    }
}

/// 47001 for the JSON value at `bytes[start]`, which is not an object, at
/// the place serde gives a value of the wrong type (line, and the bytes
/// before it on that line).
fn not_an_object(bytes: &[u8], start: usize) -> ApiError {
    let found = match bytes[start] {
        b'[' => "a JSON array",
        b'"' => "a string",
        b't' => "true",
        b'f' => "false",
        b'n' => "null",
        _ => "a number",
    };
    let before = &bytes[..start];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = start - before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    ApiError::bad_json(format!(
        "invalid type: {found}, expected a JSON object at line {line} column {column}"
    ))
}

/// The WeCom error for a serde_json error. serde words what it expected
/// after the Rust type it was reading into (`struct SyncMsg`, `u32`): that
/// tells a client nothing it can act on and shows the service's insides,
/// so a wrong type is said in JSON's words, at serde's line and column.
pub(super) fn json_error(e: serde_json::Error) -> ApiError {
    let text = e.to_string();
    if !e.is_data() {
        // syntax: serde's words are JSON's already
        return ApiError::bad_json(text);
    }
    if text.starts_with("missing field") {
        let field = text.split('`').nth(1).unwrap_or("?");
        return ApiError::missing(field);
    }
    let at =
        if e.line() == 0 { String::new() } else { format!(" at line {} column {}", e.line(), e.column()) };
    let what = text.strip_suffix(at.as_str()).unwrap_or(&text);
    ApiError::bad_json(format!("{}{at}", crate::json_words::in_json_terms(what)))
}

/// Parse a batch action like [`parse_json`].
pub(super) fn from_raw<T: DeserializeOwned>(v: &serde_json::value::RawValue) -> Result<T, ApiError> {
    let text = v.get();
    object_only(text.as_bytes(), || serde_json::from_str(text).map_err(json_error))
}

/// A `T` read from a JSON object only, for the items of a list (the batch
/// actions read in one pass): serde reads a struct from an array too, by
/// position. `T` is a derived struct, which asks for a struct.
pub(super) struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(AsMap(d)).map(Object)
    }
}

/// A deserializer that reads a struct as a map: serde_json reads a map
/// from an object only. As fast as the struct read: it is the same one,
/// less its array branch.
struct AsMap<D>(D);

impl<'de, D: serde::Deserializer<'de>> serde::Deserializer<'de> for AsMap<D> {
    type Error = D::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(v)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(v)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// Run a POST endpoint: read and parse the body, check the access_token,
/// run `op` on the state at the current time.
pub(super) async fn call<Req, Resp>(
    svc: Service,
    req: Request,
    op: fn(&mut State, Req, u64) -> Result<Resp, ApiError>,
) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
{
    let (parts, body) = req.into_parts();
    let token = query_param(parts.uri.query(), "access_token");
    let caller = Caller::of(&parts.headers);
    // a caller without a valid token gets nothing buffered for it
    if let Err(e) = svc.with_state(|st, now| st.check_token(&token, caller, now)) {
        return error(e);
    }
    let parsed = match read_body(body, &parts.headers, svc.inner.max_body).await {
        Result::Ok(bytes) => parse_json::<Req>(&bytes),
        Err(e) => return error(e),
    };
    respond(svc.with_state(|st, now| {
        st.check_token(&token, caller, now)?;
        op(st, parsed?, now)
    }))
}

/// Limit and wait of a long-poll, checked: `limit` 1–1000 (default 1000),
/// `timeout_ms` 0–60000 (default 0).
pub(super) fn poll_args(limit: Option<i64>, timeout_ms: Option<i64>) -> Result<(usize, Duration), ApiError> {
    let limit = limit.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::param("limit must be between 1 and 1000"));
    }
    let t = timeout_ms.unwrap_or(0);
    if !(0..=60_000).contains(&t) {
        return Err(ApiError::param("timeout_ms must be between 0 and 60000"));
    }
    Result::Ok((limit as usize, Duration::from_millis(t as u64)))
}

/// Long-poll: run `read` (which returns the data, whether it is worth
/// answering now, and the queue's wake-up) until it has something, the
/// wait is over, or the service shuts down. The wake-up is armed before
/// each read, so data pushed between the read and the wait is not missed.
pub(super) async fn long_poll<T>(
    svc: &Service,
    wait: Duration,
    mut read: impl FnMut(&mut State, u64) -> Result<(T, bool, Arc<Notify>), ApiError>,
) -> Result<T, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut shutdown = svc.inner.shutdown.subscribe();
    let mut notify: Option<Arc<Notify>> = None;
    loop {
        let armed = notify.clone();
        let notified = armed.as_ref().map(|n| n.notified());
        let mut notified = notified.map(Box::pin);
        if let Some(n) = notified.as_mut() {
            n.as_mut().enable();
        }
        let (data, ready, n) = svc.with_state(&mut read)?;
        let over = tokio::time::Instant::now() >= deadline || *shutdown.borrow();
        if ready || over {
            return Result::Ok(data);
        }
        let Some(n_fut) = notified else {
            notify = Some(n);
            continue;
        };
        tokio::select! {
            _ = n_fut => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
        notify = Some(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(query_param(Some("a=1&access_token=x%2By&b"), "access_token"), "x+y");
        assert_eq!(query_param(Some("corpid=a+b"), "corpid"), "a b");
        assert_eq!(query_param(Some("x=%zz%4"), "x"), "%zz%4");
        assert_eq!(query_param(None, "x"), "");
    }

    #[test]
    fn json_errors_map_to_wecom_codes() {
        #[derive(serde::Deserialize, Debug)]
        struct R {
            #[allow(dead_code)]
            open_kfid: String,
        }
        assert_eq!(parse_json::<R>(b"{").unwrap_err().code, code::BAD_JSON);
        assert_eq!(parse_json::<R>(br#"{"open_kfid": 5}"#).unwrap_err().code, code::BAD_JSON);
        let e = parse_json::<R>(b"{}").unwrap_err();
        assert_eq!(e.code, code::INVALID_PARAM);
        assert!(e.msg.contains("open_kfid"), "{e}");
        assert!(parse_json::<R>(b"  ").is_err(), "an empty body is {{}}");
    }

    /// serde words its expectations after the Rust type being read; a
    /// client reads JSON's words, with the position serde gave.
    #[test]
    fn wrong_types_are_worded_in_json_terms() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Inner {
            content: String,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        #[serde(deny_unknown_fields)]
        struct R {
            cap: Option<u32>,
            limit: Option<i64>,
            on: Option<bool>,
            at: Option<f64>,
            list: Option<Vec<String>>,
            text: Option<Inner>,
            name: Option<String>,
        }
        let msg = |body: &str| {
            let e = parse_json::<R>(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, code::BAD_JSON, "{body}: {e}");
            e.msg.strip_prefix("Warning: wrong json format. ").unwrap_or_else(|| panic!("{e}")).to_owned()
        };
        for (body, want) in [
            ("7", "invalid type: the number 7, expected a JSON object at line 1 column 1"),
            (
                r#"{"cap": -1}"#,
                "invalid value: the number -1, expected an integer from 0 to 4294967295 at line 1 column 10",
            ),
            (
                r#"{"limit": "9"}"#,
                "invalid type: a string, expected an integer from -9223372036854775808 to 9223372036854775807 at line 1 column 13",
            ),
            (
                r#"{"limit": 1.5}"#,
                "invalid type: the number 1.5, expected an integer from -9223372036854775808 to 9223372036854775807 at line 1 column 13",
            ),
            (r#"{"on": 1}"#, "invalid type: the number 1, expected true or false at line 1 column 8"),
            (r#"{"at": null}"#, ""),
            (r#"{"at": "x"}"#, "invalid type: a string, expected a number at line 1 column 10"),
            (r#"{"list": {}}"#, "invalid type: a JSON object, expected a JSON array at line 1 column 9"),
            (r#"{"text": 5}"#, "invalid type: the number 5, expected a JSON object at line 1 column 10"),
            (r#"{"text": {"content": true}}"#, "invalid type: true, expected a string at line 1 column 25"),
            (
                r#"{"name": null, "text": "x"}"#,
                "invalid type: a string, expected a JSON object at line 1 column 26",
            ),
        ] {
            if want.is_empty() {
                assert!(parse_json::<R>(body.as_bytes()).is_ok(), "null is an absent option");
                continue;
            }
            assert_eq!(msg(body), want, "{body}");
        }
        // a string in the message is not echoed, however long
        let long = format!(r#"{{"cap": "{}"}}"#, "x".repeat(10_000));
        assert!(msg(&long).len() < 120, "{}", msg(&long));
        // nor a field name past 64 bytes
        let unknown = msg(&format!(r#"{{"{}": 1}}"#, "y".repeat(10_000)));
        assert!(
            unknown.starts_with(&format!("unknown field `{}…`, expected one of `cap`", "y".repeat(64))),
            "{unknown}"
        );
        // syntax errors had no Rust in them and keep serde's words
        assert_eq!(msg("{"), "EOF while parsing an object at line 1 column 1");
    }

    /// serde reads a struct from an array by position; a body or an action
    /// must be an object, as WeCom requires.
    #[test]
    fn only_an_object_is_a_request() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct R {
            #[serde(default)]
            open_kfid: String,
        }
        for body in ["[]", r#"["wk1"]"#, " \n\t[\"wk1\"]", "[1", "5", "\"x\"", "null", "true"] {
            let e = parse_json::<R>(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, code::BAD_JSON, "{body}: {e}");
            if body != "[1" {
                assert!(e.msg.contains("expected a JSON object at line "), "{body}: {e}");
            }
            let raw = serde_json::value::RawValue::from_string(body.trim().to_owned());
            if let Ok(raw) = raw {
                assert_eq!(from_raw::<R>(&raw).unwrap_err().code, code::BAD_JSON, "{body}");
            }
        }
        let e = parse_json::<R>(b"\n  [\"wk1\"]").unwrap_err();
        // serde's place for a value of the wrong type: the bytes before it on its line
        assert!(
            e.msg.ends_with("invalid type: a JSON array, expected a JSON object at line 2 column 2"),
            "{e}"
        );
        assert_eq!(parse_json::<R>(br#" {"open_kfid": "wk1"}"#).unwrap().open_kfid, "wk1");
        assert_eq!(parse_json::<R>(b" \r\n").unwrap().open_kfid, "", "an empty body is {{}}");
        let raw = serde_json::value::RawValue::from_string(r#"{"open_kfid": "wk2"}"#.to_owned()).unwrap();
        assert_eq!(from_raw::<R>(&raw).unwrap().open_kfid, "wk2");
    }
}
