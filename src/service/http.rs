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
use http_body_util::BodyExt as _;
use hyper::body::Body as _;
use serde::Serialize;
use serde::de::{self as de, DeserializeOwned, DeserializeSeed, Deserializer, Visitor};
use tokio::sync::{Notify, OwnedSemaphorePermit};

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

/// Room first made for an answer: most fit.
const ANSWER_BYTES: usize = 512;

/// A JSON answer with HTTP 200 and errcode 0.
pub(super) fn ok<T: Serialize>(body: T) -> Response {
    // serde_json starts at 128 bytes, and a customer message's answer is
    // about 200: growing it was 3 % of that path's time (perf)
    let mut bytes = Vec::with_capacity(ANSWER_BYTES);
    match serde_json::to_writer(&mut bytes, &Ok { errcode: 0, errmsg: "ok", body }) {
        Result::Ok(()) => json_response(StatusCode::OK, bytes, 0),
        Err(e) => error(ApiError::new(code::SYSTEM_BUSY, format!("system busy: {e}"))),
    }
}

/// A WeCom error answer.
pub(super) fn error(e: ApiError) -> Response {
    let body = serde_json::json!({ "errcode": e.code, "errmsg": e.msg });
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::OK);
    json_response(status, body.to_string().into_bytes(), e.code)
}

/// An answer after which the connection closes, and says so. hyper keeps
/// a connection only once the request's body is read to its end: answered
/// without it (a refused token, an unknown path, a body too large or too
/// slow), hyper closed the connection after the answer unless the rest was
/// already there, and without this header a keep-alive client sent its
/// next request into a closed socket (found by probing: 40 % of the calls
/// after a refused token failed).
pub(super) fn closing(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The most of an unread body [bytes] read and dropped so that its
/// connection can be kept, and how long that may take.
const DRAIN_MAX: usize = 64 << 10;
const DRAIN_WAIT: Duration = Duration::from_millis(20);

/// `resp`, the answer to a request whose `body` its handler did not read:
/// a body that is small and already on its way (a client that sent its
/// request in one write) is read and dropped — never kept — so that the
/// connection can carry the next request; any other closes the connection,
/// saying so (see [`closing`]). `expect_continue`: the client waits for a
/// `100 Continue` before it sends the body, which is not asked for.
pub(super) async fn settle(resp: Response, mut body: Body, expect_continue: bool) -> Response {
    if body.is_end_stream() {
        return resp;
    }
    if expect_continue || body.size_hint().lower() > DRAIN_MAX as u64 {
        return closing(resp);
    }
    let drained = tokio::time::timeout(DRAIN_WAIT, async {
        let mut left = DRAIN_MAX;
        while let Some(frame) = body.frame().await {
            let Result::Ok(frame) = frame else { return false };
            let n = frame.data_ref().map_or(0, Bytes::len);
            if n > left {
                return false;
            }
            left -= n;
        }
        true
    });
    if drained.await.unwrap_or(false) { resp } else { closing(resp) }
}

/// Whether a request asks for `100 Continue` before it sends its body.
pub(super) fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The error answer of a request whose body was not read (see [`settle`]).
pub(super) async fn refuse_unread(e: ApiError, body: Body, headers: &HeaderMap) -> Response {
    settle(error(e), body, expects_continue(headers)).await
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

/// This service's origin (`http://host:port`) as the client of `req`
/// reached it: its `Host`, which behind a port mapping or a proxy is what
/// the client can reach and the listening address is not. kfsim serves
/// plain HTTP (a TLS proxy in front would have to rewrite the scheme). A
/// `Host` that is no bare host and port (user info, a path) is not
/// trusted; then `localhost`.
pub(super) fn own_origin(req: &Request) -> String {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    let authority = host
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .or_else(|| req.uri().authority().cloned())
        .filter(|a| !a.as_str().contains('@'));
    format!("http://{}", authority.as_ref().map_or("localhost", |a| a.as_str()))
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
            // two hex digits only: `from_str_radix` alone read `%+1` as
            // the byte 1, where a form decoder keeps `%` and reads `+` as a
            // space
            b'%' if i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                i += 2;
            }
            b'%' => out.push(b'%'),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request's body, read, with its share of the service's
/// [`BODY_BUDGET`](super::BODY_BUDGET): the share is given back when the
/// body is dropped.
pub(super) struct HeldBody {
    bytes: Bytes,
    _share: BodyShare,
}

impl std::ops::Deref for HeldBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// A request's share of the service's budget of body bytes, taken as the
/// bytes arrive and given back when it is dropped. Taken for bytes
/// received, not for the `Content-Length` announced: when a body's whole
/// declared length was taken before any of it came, 512 connections each
/// declaring 1 MiB and sending nothing (36 idle media uploads) held the
/// whole budget, and every other client's body was refused for as long as
/// they stayed (found by probing). Past the budget the request is refused
/// at once: waiting for room would let clients that hold their bodies
/// stall every other request behind them.
pub(super) struct BodyShare {
    bodies: Arc<tokio::sync::Semaphore>,
    held: Option<OwnedSemaphorePermit>,
    capacity: u64,
}

impl BodyShare {
    pub(super) fn new(svc: &Service) -> BodyShare {
        BodyShare { bodies: svc.inner.bodies.clone(), held: None, capacity: svc.inner.body_budget as u64 }
    }

    /// Take `n` more bytes of the budget, or refuse the request (HTTP 503,
    /// errcode -1) when they are not there.
    pub(super) fn take(&mut self, n: usize) -> Result<(), ApiError> {
        if n == 0 {
            return Ok(());
        }
        let n = u32::try_from(n).map_err(|_| self.busy())?;
        let permit = self.bodies.clone().try_acquire_many_owned(n).map_err(|_| self.busy())?;
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }

    pub(super) fn busy(&self) -> ApiError {
        ApiError::new(
            code::SYSTEM_BUSY,
            format!(
                "system busy: the request bodies being received hold the service's budget of {} MiB; try again",
                self.capacity >> 20
            ),
        )
        .with_status(503)
    }
}

/// A body whose bytes are charged to a [`BodyShare`] as they arrive, for a
/// body another parser reads (a multipart upload): past the budget it
/// fails with [`OverBudget`] (see [`over_budget`]).
pub(super) struct Charged {
    pub(super) inner: Body,
    pub(super) share: Arc<std::sync::Mutex<BodyShare>>,
}

/// The error a [`Charged`] body fails with past the budget.
#[derive(Debug)]
pub(super) struct OverBudget;

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the service's budget of request bodies is spent")
    }
}

impl std::error::Error for OverBudget {}

/// Whether `e` or an error under it is an [`OverBudget`].
pub(super) fn over_budget(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<OverBudget>() {
            return true;
        }
        cause = c.source();
    }
    false
}

impl hyper::body::Body for Charged {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len());
                let charged = self.share.lock().unwrap_or_else(|p| p.into_inner()).take(len);
                Poll::Ready(Some(match charged {
                    Ok(()) => Ok(frame),
                    Err(_) => Err(Box::new(OverBudget)),
                }))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

/// Read the body within the service's time for one, refusing more than its
/// `max_body` bytes with HTTP 413 and, once the bytes received would pass
/// the budget of body bytes held at once, with HTTP 503.
pub(super) async fn read_body(
    svc: &Service,
    mut body: Body,
    headers: &HeaderMap,
) -> Result<HeldBody, ApiError> {
    let (max, within) = (svc.inner.max_body, svc.inner.body_read);
    let too_large = || {
        ApiError::param(format!("request body larger than {max} bytes (the limit is 1 MiB)")).with_status(413)
    };
    if declared_length(headers).is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut share = BodyShare::new(svc);
    let read = async {
        // most bodies come in one frame, kept as it is: no copy
        let mut first: Option<Bytes> = None;
        let mut more: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            // a body that breaks off or is badly framed (chunked encoding)
            // is the client's malformed request
            let frame = frame
                .map_err(|e| ApiError::param(format!("unreadable request body: {e}")).with_status(400))?;
            let Ok(data) = frame.into_data() else { continue };
            let len = first.as_ref().map_or(0, |f| f.len()) + more.len();
            if len + data.len() > max {
                return Err(too_large());
            }
            share.take(data.len())?;
            match &first {
                None => first = Some(data),
                Some(f) => {
                    if more.is_empty() {
                        more.extend_from_slice(f);
                    }
                    more.extend_from_slice(&data);
                }
            }
        }
        Ok(if more.is_empty() { first.unwrap_or_default() } else { Bytes::from(more) })
    };
    let Result::Ok(bytes) = tokio::time::timeout(within, read).await else {
        return Err(ApiError::param("request body not received in time").with_status(408));
    };
    Ok(HeldBody { bytes: bytes?, _share: share })
}

/// Parse a JSON body: syntax errors, wrong types and a body or any struct
/// in it that is not an object are 47001 ("Warning: wrong json format."),
/// a missing required field 40058. An empty body is `{}`.
pub(super) fn parse_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return read_strictly(serde_json::Deserializer::from_str("{}"));
    }
    // checked as UTF-8 once, then read as text: from bytes, serde_json
    // checks each string it copies (a twentieth of a customer message);
    // a body that is not UTF-8 gets serde_json's own error from bytes
    match std::str::from_utf8(bytes) {
        Ok(text) => read_strictly(serde_json::Deserializer::from_str(text)),
        Err(_) => read_strictly(serde_json::Deserializer::from_slice(bytes)),
    }
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
    read_strictly(serde_json::Deserializer::from_str(v.get()))
}

/// Read a whole `T` from `de`, each struct in it from a JSON object only
/// (see [`AsMap`]), as `serde_json::from_str` reads it otherwise.
fn read_strictly<'de, R: serde_json::de::Read<'de>, T: serde::Deserialize<'de>>(
    mut de: serde_json::Deserializer<R>,
) -> Result<T, ApiError> {
    let value = T::deserialize(AsMap(&mut de)).map_err(json_error)?;
    de.end().map_err(json_error)?;
    Ok(value)
}

/// A deserializer, visitor, seed or access that asks serde_json for every
/// struct below it as a map, which serde_json reads from an object only:
/// asked for a struct, it takes an array too and fills the fields by
/// position (`"text": ["hi"]` was `{"content": "hi"}`), where WeCom
/// answers 47001. Wrapping each level on the way down reaches every struct
/// a request holds (message objects, `reception_rule`, batch actions)
/// whatever its type, with no field to mark. It costs no allocation and no
/// second pass: a map is the struct read, less its array branch, and every
/// other call goes to the same method of the wrapped deserializer, which
/// keeps its errors and its borrowing (a `&RawValue` is still a slice).
struct AsMap<T>(T);

/// `fn $name(self, visitor)` of a `Deserializer`, forwarded with the
/// visitor wrapped.
macro_rules! forward_deserialize {
    ($($name:ident)*) => {$(
        fn $name<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            self.0.$name(AsMap(v))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for AsMap<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    // A string field given `null` reads as absent (empty), as `Option`
    // fields already did: clients that write every optional parameter,
    // `null` when unset (AstrBot's statistics calls), got 47001 from
    // some fields and not others (found by probing with them).
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_option(NullIsEmpty(v, false))
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_option(NullIsEmpty(v, true))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(AsMap(v))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, AsMap(v))
    }

    // serde_json's `RawValue` comes through here, by a name it knows
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, AsMap(v))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, AsMap(v))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, AsMap(v))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, AsMap(v))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// For `#[serde(default, deserialize_with = "null_is_default")]`: a
/// number, flag or list given `null` reads as absent, as a string or an
/// `Option` does (see `deserialize_str` above). Without it `"voice_format":
/// null`, `"need_enter_session_context": null` or `"department_id_list":
/// null`, as clients that write every optional parameter send them, were
/// 47001 where `"cursor": null` was taken (found by probing). Only for a
/// field whose default is its type's (`0`, `false`, empty).
pub(super) fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

/// A string's visitor asked through `deserialize_option`: `null` is the
/// empty string, anything else is read as the string it must be (owned
/// when `.1`), with the visitor's own errors.
struct NullIsEmpty<V>(V, bool);

impl<'de, V: Visitor<'de>> Visitor<'de> for NullIsEmpty<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.0.expecting(f)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_borrowed_str("")
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        if self.1 { d.deserialize_string(AsMap(self.0)) } else { d.deserialize_str(AsMap(self.0)) }
    }

    // a deserializer whose `deserialize_option` is its `deserialize_any`
    // (serde_json's raw values) hands the string over at once
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_borrowed_str("")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.0.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.0.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.0.visit_string(v)
    }
}

/// `fn $name(self, v: $t)` of a `Visitor`, forwarded.
macro_rules! forward_visit {
    ($($name:ident: $t:ty,)*) => {$(
        fn $name<E: de::Error>(self, v: $t) -> Result<V::Value, E> {
            self.0.$name(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for AsMap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.0.expecting(f)
    }

    forward_visit! {
        visit_bool: bool, visit_i8: i8, visit_i16: i16, visit_i32: i32, visit_i64: i64,
        visit_i128: i128, visit_u8: u8, visit_u16: u16, visit_u32: u32, visit_u64: u64,
        visit_u128: u128, visit_f32: f32, visit_f64: f64, visit_char: char, visit_str: &str,
        visit_borrowed_str: &'de str, visit_string: String, visit_bytes: &[u8],
        visit_borrowed_bytes: &'de [u8], visit_byte_buf: Vec<u8>,
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(AsMap(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(AsMap(d))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(AsMap(seq))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(AsMap(map))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(AsMap(data))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for AsMap<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(AsMap(d))
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for AsMap<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(AsMap(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for AsMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(AsMap(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(AsMap(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for AsMap<A> {
    type Error = A::Error;
    type Variant = AsMap<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self::Variant), A::Error> {
        self.0.variant_seed(AsMap(seed)).map(|(value, variant)| (value, AsMap(variant)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for AsMap<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(AsMap(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, AsMap(v))
    }

    // `struct_variant` would read the struct, from an array as well: its
    // content is asked for as a map instead
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, A::Error> {
        self.0.newtype_variant_seed(MapOf(v))
    }
}

/// A seed that reads a map with the visitor it holds.
struct MapOf<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for MapOf<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_map(AsMap(self.0))
    }
}

/// Run a POST endpoint: read and parse the body, check the access_token,
/// run `op` on the state at the current time.
pub(super) async fn call<Req, Resp>(
    svc: Service,
    req: Request,
    op: impl FnOnce(&mut State, Req, u64) -> Result<Resp, ApiError>,
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
        return refuse_unread(e, body, &parts.headers).await;
    }
    let parsed = match read_body(&svc, body, &parts.headers).await {
        Result::Ok(bytes) => parse_json::<Req>(&bytes),
        // what is left of the body, if anything, is not read
        Err(e) => return closing(error(e)),
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
        assert_eq!(query_param(Some("corpsecret=a%+1b"), "corpsecret"), "a% 1b", "a sign is no hex digit");
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
            #[serde(default)]
            plain: String,
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
            (r#"{"plain": null}"#, ""),
            (r#"{"plain": 5}"#, "invalid type: the number 5, expected a string at line 1 column 11"),
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
                let r = parse_json::<R>(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
                assert_eq!(r.plain, "", "null is absent");
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

    /// serde read a struct inside a request from an array as well, by
    /// position: `"text": ["hi"]` was `{"content": "hi"}`. Every struct, at
    /// any depth and behind an `Option`, a `Vec` or an enum, is read from an
    /// object only; what is not a struct reads as before.
    #[test]
    fn a_struct_at_any_depth_is_read_from_an_object_only() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Text {
            content: String,
        }
        #[derive(serde::Deserialize, Debug, PartialEq)]
        #[serde(rename_all = "snake_case")]
        enum Kind {
            Plain,
            Boxed(Text),
            Shaped { text: Text },
        }
        #[derive(serde::Deserialize, Debug)]
        struct R<'a> {
            text: Option<Text>,
            #[serde(default)]
            list: Vec<Text>,
            kind: Option<Kind>,
            deep: Option<Vec<Option<Text>>>,
            any: Option<serde_json::Value>,
            #[serde(borrow)]
            raw: Option<&'a serde_json::value::RawValue>,
        }
        for (body, column) in [
            (r#"{"text": ["hi"]}"#, 9),
            (r#"{"list": [{"content": "a"}, ["b"]]}"#, 28),
            (r#"{"kind": {"boxed": ["x"]}}"#, 19),
            (r#"{"kind": {"shaped": [["x"]]}}"#, 20),
            (r#"{"kind": {"shaped": {"text": ["x"]}}}"#, 29),
            (r#"{"deep": [null, ["x"]]}"#, 16),
        ] {
            let e = parse_json::<R>(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, code::BAD_JSON, "{body}: {e}");
            let want =
                format!("invalid type: a JSON array, expected a JSON object at line 1 column {column}");
            assert!(e.msg.ends_with(&want), "{body}: {e}");
            let raw = serde_json::value::RawValue::from_string(body.to_owned()).unwrap();
            assert_eq!(from_raw::<Kinded>(&raw).unwrap_err().code, code::BAD_JSON, "{body}");
        }
        let r = parse_json::<R>(
            br#"{"text": null, "list": [{"content": "a"}], "kind": {"shaped": {"text": {"content": "b"}}},
                 "deep": [null, {"content": "c"}], "any": [1, ["x"], {"y": []}], "raw": ["kept", 1]}"#,
        )
        .unwrap();
        assert_eq!((r.text, r.list), (None, vec![Text { content: "a".into() }]));
        assert_eq!(r.kind, Some(Kind::Shaped { text: Text { content: "b".into() } }));
        assert_eq!(r.deep, Some(vec![None, Some(Text { content: "c".into() })]));
        assert_eq!(r.any, Some(serde_json::json!([1, ["x"], {"y": []}])), "a JSON value takes anything");
        assert_eq!(r.raw.map(|v| v.get()), Some(r#"["kept", 1]"#), "a raw value is the text as sent");
        for (kind, want) in [
            ("\"plain\"", Kind::Plain),
            (r#"{"boxed": {"content": "d"}}"#, Kind::Boxed(Text { content: "d".into() })),
        ] {
            let body = format!(r#"{{"kind": {kind}}}"#);
            assert_eq!(parse_json::<R>(body.as_bytes()).unwrap().kind, Some(want));
        }

        /// A batch action's shape: the same strictness through `from_raw`.
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Kinded {
            text: Option<Text>,
            list: Option<Vec<Text>>,
            kind: Option<Kind>,
            deep: Option<Vec<Option<Text>>>,
        }
    }
}
