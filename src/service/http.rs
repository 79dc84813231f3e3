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

/// Parse a JSON body: syntax errors and wrong types are 47001 ("Warning:
/// wrong json format."), a missing required field 40058. An empty body is
/// `{}`.
pub(super) fn parse_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    // checked as UTF-8 once, then read as text: from bytes, serde_json
    // checks each string it copies (a twentieth of a customer message);
    // a body that is not UTF-8 gets serde_json's own error from bytes
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
    .map_err(json_error)
}

/// The WeCom error for a serde_json error.
pub(super) fn json_error(e: serde_json::Error) -> ApiError {
    let text = e.to_string();
    if e.is_data() && text.starts_with("missing field") {
        let field = text.split('`').nth(1).unwrap_or("?");
        return ApiError::missing(field);
    }
    ApiError::bad_json(text)
}

/// Parse a batch action like [`parse_json`].
pub(super) fn from_raw<T: DeserializeOwned>(v: &serde_json::value::RawValue) -> Result<T, ApiError> {
    serde_json::from_str(v.get()).map_err(json_error)
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
}
