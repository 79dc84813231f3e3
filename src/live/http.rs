//! The driver's HTTP client: keep-alive connections from one pool
//! ([`super::pool`]) for every call, a timeout on each, and per-endpoint
//! statistics measured from the *intended* time of the call (so a slow
//! target cannot hide behind a driver that waited for it: no coordinated
//! omission).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::pool::{self, Method, Pool};
use crate::metrics::Hist;
use crate::summary::HttpEndpoint;

/// Marks the driver's calls, which a target's injected faults spare (the
/// header of `service::faults`; the driver plays customers and servicers).
const DRIVER_HEADER: (&str, &str) = ("x-kfsim-driver", "1");

/// Why a call failed; counted per endpoint by [`CallError::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No connection could be made (refused, or no answer to the connect).
    Connect(String),
    /// A connection was made and broke: the request could not be written,
    /// or the answer ended early, or was no HTTP/1.x answer.
    Broken(String),
    /// No complete answer within the timeout.
    Timeout,
    /// An HTTP status other than 200.
    Status(u16),
    /// A WeCom-style error code in a 200 answer.
    Errcode(i64),
    /// The body was not JSON, or not the answer of the protocol (a pull
    /// without `next_cursor`, a batch without `results`: see
    /// [`Answer::well_formed`]).
    Decode,
    /// No request could be built (a URL that is not a URI).
    Request(String),
    /// The answer was longer than [`MAX_ANSWER`].
    TooLarge,
    /// Still in flight when the run stopped waiting for answers
    /// ([`Http::cut_in_flight`]): not a failure of the target's, and
    /// counted apart from the calls (`live.calls_cut_at_end`).
    Cut,
}

impl CallError {
    /// The error's kind as reported in `summary.json`.
    pub fn kind(&self) -> String {
        match self {
            CallError::Connect(_) => "connect".into(),
            CallError::Broken(_) => "broken".into(),
            CallError::Timeout => "timeout".into(),
            CallError::Status(s) => format!("http_{s}"),
            CallError::Errcode(c) => format!("errcode_{c}"),
            CallError::Decode => "decode".into(),
            CallError::Request(_) => "request".into(),
            CallError::TooLarge => "too_large".into(),
            CallError::Cut => "cut".into(),
        }
    }
}

/// One endpoint's calls: latency from each call's intended time [µs], and
/// errors by kind.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    latency: Hist,
    errors: BTreeMap<String, u64>,
}

/// Every endpoint the driver names in `http`: gates on `http.NAME.…`
/// are checked against this list (`gate::LIVE_ONLY` spells it out; tests
/// hold the three together).
pub const ENDPOINTS: &[&str] = &[
    "customer_batch",
    "customer_pull",
    "servicer_batch",
    "servicer_pull",
    "open_channel",
    "close_channel",
    "set_status",
    "gettoken",
    "account_list",
    "servicer_list",
    "send_msg",
    "service_state_trans",
];

/// The endpoints whose errors count more than failed calls: a batch's
/// refused actions, a pull's notes that break the protocol
/// ([`HttpStats::action_error`]). Another endpoint's errors are at most
/// its calls, which `kfsim compare` and `kfsim report` hold a summary to.
pub const ERRORS_BEYOND_CALLS: &[&str] = &["customer_batch", "servicer_batch", "customer_pull"];

/// Counts and latencies per endpoint, shared by every task.
#[derive(Clone, Default)]
pub struct HttpStats(Arc<Mutex<BTreeMap<&'static str, Endpoint>>>);

impl HttpStats {
    /// Record one call of `endpoint` that took `us` from its intended time.
    pub fn record(&self, endpoint: &'static str, us: u64, error: Option<&CallError>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(endpoint).or_default();
        e.latency.record(us);
        if let Some(err) = error {
            *e.errors.entry(err.kind()).or_default() += 1;
        }
    }

    /// Count an error inside a successful answer (a failed batch action,
    /// a pulled note that breaks the protocol).
    pub fn action_error(&self, endpoint: &'static str, kind: String) {
        // a summary of an endpoint left out would be refused as impossible
        debug_assert!(ERRORS_BEYOND_CALLS.contains(&endpoint), "{endpoint} is not in ERRORS_BEYOND_CALLS");
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(endpoint).or_default().errors.entry(kind).or_default() += 1;
    }

    /// Errors of every kind so far.
    pub fn errors(&self) -> u64 {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.values().flat_map(|e| e.errors.values()).sum()
    }

    /// The current p95 latency of `endpoint` [ms], for progress display.
    pub fn p95_ms(&self, endpoint: &'static str) -> Option<f64> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(endpoint).and_then(|e| e.latency.stats_ms().p95)
    }

    /// What was measured per endpoint, as state that merges.
    pub fn state(&self) -> BTreeMap<String, Endpoint> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, e)| (k.to_string(), e.clone())).collect()
    }

    /// The summary section, and the histograms (µs) keyed `http.ENDPOINT`.
    pub fn finish(&self) -> (BTreeMap<String, HttpEndpoint>, BTreeMap<String, hdrhistogram::Histogram<u64>>) {
        summarise(&self.state())
    }
}

/// The summary's `http` section of `endpoints`, and the histograms (µs)
/// keyed `http.ENDPOINT`.
pub fn summarise(
    endpoints: &BTreeMap<String, Endpoint>,
) -> (BTreeMap<String, HttpEndpoint>, BTreeMap<String, hdrhistogram::Histogram<u64>>) {
    let mut out = BTreeMap::new();
    let mut hists = BTreeMap::new();
    for (name, e) in endpoints.iter() {
        let errors: u64 = e.errors.values().sum();
        let latency = e.latency.stats_ms();
        let error_rate = crate::summary::ratio(errors as f64, latency.count as f64);
        out.insert(
            name.to_string(),
            HttpEndpoint { errors, error_rate, errors_by_kind: e.errors.clone(), latency },
        );
        hists.insert(format!("http.{name}"), e.latency.histogram());
    }
    (out, hists)
}

/// An answer's WeCom `errcode` (0 or absent: success). Typed answers give
/// every field a default, so that an error answer still decodes.
pub trait Answer {
    /// The errcode.
    fn errcode(&self) -> i64;

    /// A successful answer has what the protocol's answer has (a pull its
    /// `next_cursor`, a batch its `results`): one without is counted as
    /// `decode`, like one that is not JSON.
    fn well_formed(&self) -> bool {
        true
    }
}

impl Answer for Value {
    fn errcode(&self) -> i64 {
        self.get("errcode").and_then(Value::as_i64).unwrap_or(0)
    }
}

/// `s` percent-encoded for a query parameter: everything but unreserved
/// characters (RFC 3986), so that a `+` or `&` in a secret arrives as sent.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The largest answer the driver reads [bytes]: a full page of a pull
/// (1000 events) or of a batch's results is well under 1 MiB. A target
/// answering more gets the call failed (`too_large`) instead of the
/// driver's memory.
pub const MAX_ANSWER: usize = 16 << 20;

/// WeCom's errcodes for a token that is not (or no longer) valid.
const TOKEN_INVALID: i64 = 40014;
const TOKEN_EXPIRED: i64 = 42001;

/// The access_token and what is known of its life.
#[derive(Debug, Default)]
struct Token {
    value: String,
    /// `value` percent-encoded for a query, once per token, not per call.
    encoded: String,
    /// Bumped on every renewal, so that calls failing with the same old
    /// token renew it once, not once each.
    generation: u64,
    /// Renew before a call made from then on (wall time).
    renew_at: Option<Instant>,
}

/// A JSON-over-HTTP client for one target.
#[derive(Clone)]
pub struct Http {
    pool: Pool,
    token: Arc<Mutex<Token>>,
    /// `gettoken`'s path with its query, once credentials are known: the
    /// token is then renewed before it expires and when the target says
    /// it is invalid or expired (40014, 42001), as WeCom's SDKs do.
    gettoken: Arc<Mutex<Option<String>>>,
    /// One renewal at a time.
    renewing: Arc<tokio::sync::Mutex<()>>,
    /// Statistics of every call.
    pub stats: HttpStats,
    timeout: Duration,
    /// Since when every call failed to connect, refused or not answered
    /// within the connect timeout (`None` since a call had another
    /// outcome): a target that is down. Microseconds since `epoch`, plus
    /// one (0: no such time): an atomic read on every call, written only
    /// when the outcome changes, where a lock was taken on every call of
    /// the driver's hot path.
    refused_since: Arc<AtomicU64>,
    epoch: Instant,
    /// Bumped by [`Http::cut_in_flight`]: a call that began before the
    /// bump ends at once, where it waited for its answer up to its
    /// timeout (a target that accepts and never answers kept a run that
    /// was over waiting 40 s and more).
    cut: Arc<tokio::sync::watch::Sender<u64>>,
    /// Calls cut so.
    cut_calls: Arc<AtomicU64>,
}

impl Http {
    /// A client for `base` (`http://host:port`).
    pub fn new(base: &str, timeout: Duration) -> Http {
        Http {
            pool: Pool::new(base),
            token: Default::default(),
            gettoken: Default::default(),
            renewing: Default::default(),
            stats: HttpStats::default(),
            timeout,
            refused_since: Default::default(),
            epoch: Instant::now(),
            cut: Arc::new(tokio::sync::watch::Sender::new(0)),
            cut_calls: Default::default(),
        }
    }

    /// End every call in flight now with [`CallError::Cut`], without its
    /// answer; calls made from now on are not cut.
    pub fn cut_in_flight(&self) {
        self.cut.send_modify(|g| *g += 1);
    }

    /// Calls [`Http::cut_in_flight`] ended.
    pub fn calls_cut(&self) -> u64 {
        self.cut_calls.load(Ordering::Relaxed)
    }

    /// How long every call has failed to connect, if the latest did: the
    /// target is down (not merely slow: a call it sits on, or answers
    /// with an error, was connected).
    pub fn unreachable_for(&self) -> Option<Duration> {
        match self.refused_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(self.epoch.elapsed().saturating_sub(Duration::from_micros(since - 1))),
        }
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Use `token` as the `access_token` of every call (never renewed).
    pub fn set_token(&self, token: &str) {
        let mut t = self.token.lock().unwrap_or_else(|e| e.into_inner());
        t.value = token.to_owned();
        t.encoded = percent_encode(token);
        t.generation += 1;
    }

    /// Get a token from `gettoken_path` (`/cgi-bin/gettoken?corpid=…`) and
    /// renew it from there whenever needed. The error is the first call's.
    pub async fn login(&self, gettoken_path: &str) -> Result<(), CallError> {
        *self.gettoken.lock().unwrap_or_else(|e| e.into_inner()) = Some(gettoken_path.to_owned());
        let generation = self.token.lock().unwrap_or_else(|e| e.into_inner()).generation;
        self.renew(generation, *self.cut.borrow()).await
    }

    /// Renew the token, unless another call has renewed it since
    /// `generation`. A failed renewal keeps the old token (the call goes on
    /// and fails as it must; the next one tries again).
    async fn renew(&self, generation: u64, cut: u64) -> Result<(), CallError> {
        let Some(path) = self.gettoken.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Ok(());
        };
        let _one = self.renewing.lock().await;
        if self.token.lock().unwrap_or_else(|e| e.into_inner()).generation != generation {
            return Ok(());
        }
        // marked like every driver call: a middleware's gettoken count must
        // not include the driver's
        let url = self.pool.path(&path);
        let v: Value =
            self.send_once("gettoken", Method::Get, &url, b"", Instant::now(), self.timeout, cut).await?;
        let Some(token) = v.get("access_token").and_then(Value::as_str) else {
            return Err(CallError::Decode);
        };
        let life = v.get("expires_in").and_then(Value::as_u64).map(Duration::from_secs);
        let mut t = self.token.lock().unwrap_or_else(|e| e.into_inner());
        let same = t.value == token;
        t.value = token.to_owned();
        t.encoded = percent_encode(token);
        t.generation += 1;
        t.renew_at = life.map(|l| {
            if same {
                // WeCom (and the reference service) hand out the same
                // token until it expires: ask again when it has, at most
                // once a second; a call that meets it expired renews it
                Instant::now() + l.max(Duration::from_secs(1))
            } else {
                // a new token is renewed at 80 % of its life (at most 5
                // minutes before its end), before calls start failing
                Instant::now() + l - (l / 5).min(Duration::from_secs(300))
            }
        });
        Ok(())
    }

    /// The request path of `path` with the current token, and the token's
    /// generation; whether it is due for renewal.
    fn url(&self, path: &str) -> (String, u64, bool) {
        let mut url = self.pool.path(path);
        let t = self.token.lock().unwrap_or_else(|e| e.into_inner());
        let due = t.renew_at.is_some_and(|at| Instant::now() >= at);
        if !t.value.is_empty() {
            url.push(if path.contains('?') { '&' } else { '?' });
            url.push_str("access_token=");
            url.push_str(&t.encoded);
        }
        (url, t.generation, due)
    }

    /// GET `path`, recorded under `endpoint`.
    pub async fn get(&self, endpoint: &'static str, path: &str) -> Result<Value, CallError> {
        self.send(endpoint, Method::Get, path, &[], Instant::now(), self.timeout).await
    }

    /// POST `body` to `path`, recorded under `endpoint` with latency from
    /// `intended`; `extra` lengthens the timeout (long-polls).
    pub async fn post(
        &self,
        endpoint: &'static str,
        path: &str,
        body: &Value,
        intended: Instant,
        extra: Duration,
    ) -> Result<Value, CallError> {
        self.call(endpoint, path, body, intended, extra).await
    }

    /// [`Http::post`] with typed request and answer.
    pub async fn call<T: DeserializeOwned + Answer>(
        &self,
        endpoint: &'static str,
        path: &str,
        body: &impl Serialize,
        intended: Instant,
        extra: Duration,
    ) -> Result<T, CallError> {
        let bytes = serde_json::to_vec(body).map_err(|e| CallError::Request(e.to_string()))?;
        let timeout = self.timeout + extra;
        self.send(endpoint, Method::Post, path, &bytes, intended, timeout).await
    }

    /// A call with the current token: renewed first if it is due, and
    /// once more, with the call sent again, if the target says it is
    /// invalid or expired (it restarted, or its clock runs ahead).
    async fn send<T: DeserializeOwned + Answer>(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        body: &[u8],
        intended: Instant,
        timeout: Duration,
    ) -> Result<T, CallError> {
        // at most one renewal before the call (it is due) and one after a
        // refusal of the token, whatever the target answers
        let mut renewed = false;
        let mut checked = false;
        // a cut while the token is renewed cuts the call that follows
        let cut = *self.cut.borrow();
        loop {
            let (mut url, mut generation, due) = self.url(path);
            if due && !checked {
                checked = true;
                let _ = self.renew(generation, cut).await;
                (url, generation, _) = self.url(path);
            }
            let result = self.send_once(endpoint, method, &url, body, intended, timeout, cut).await;
            match result {
                Err(CallError::Errcode(TOKEN_INVALID | TOKEN_EXPIRED)) if !renewed => {
                    renewed = true;
                    if self.renew(generation, cut).await.is_err() {
                        return result;
                    }
                }
                _ => return result,
            }
        }
    }

    /// One call, cut if [`Http::cut_in_flight`] is called after the cut
    /// generation was `cut`.
    #[allow(clippy::too_many_arguments)]
    async fn send_once<T: DeserializeOwned + Answer>(
        &self,
        endpoint: &'static str,
        method: Method,
        url: &str,
        body: &[u8],
        intended: Instant,
        timeout: Duration,
        cut: u64,
    ) -> Result<T, CallError> {
        let headers: &[(&str, &str)] = match method {
            Method::Post => &[DRIVER_HEADER, ("content-type", "application/json")],
            Method::Get => &[DRIVER_HEADER],
        };
        let req = pool::Request { method, target: url, headers, body };
        let mut cuts = self.cut.subscribe();
        let call = tokio::time::timeout(timeout, async {
            let answer = self.pool.send(&req, MAX_ANSWER, |status, body| {
                if status != 200 {
                    return Err(CallError::Status(status));
                }
                serde_json::from_slice::<T>(body).map_err(|_| CallError::Decode)
            });
            let v = answer.await.map_err(|e| match e {
                pool::Error::Url(e) | pool::Error::Request(e) => CallError::Request(e),
                pool::Error::Connect(e) => CallError::Connect(e),
                pool::Error::Broken(e) => CallError::Broken(e),
                pool::Error::TooLarge => CallError::TooLarge,
            })??;
            match v.errcode() {
                0 if !v.well_formed() => Err(CallError::Decode),
                0 => Ok(v),
                code => Err(CallError::Errcode(code)),
            }
        });
        let result = tokio::select! {
            // an answer that is in is read, cut or not
            biased;
            r = call => r.unwrap_or(Err(CallError::Timeout)),
            _ = cuts.wait_for(|&g| g != cut) => {
                // dropping the call drops its connection: the target sees
                // the request abandoned, and no answer lands in a pooled one;
                // a long-poll waits by design, and is not counted
                if !endpoint.ends_with("_pull") {
                    self.cut_calls.fetch_add(1, Ordering::Relaxed);
                }
                return Err(CallError::Cut);
            }
        };
        let us = intended.elapsed().as_micros() as u64;
        self.stats.record(endpoint, us, result.as_ref().err());
        let refused = matches!(result, Err(CallError::Connect(_)));
        match (refused, self.refused_since.load(Ordering::Relaxed)) {
            (true, 0) => {
                let now = self.epoch.elapsed().as_micros() as u64 + 1;
                // the first of concurrent refusals sets the start
                let _ = self.refused_since.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            }
            (false, since) if since != 0 => self.refused_since.store(0, Ordering::Relaxed),
            _ => {}
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target that accepts every connection, reads, and never answers.
    async fn silent() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        format!("http://{addr}")
    }

    /// A call the target sits on ends when the run cuts it, not at its
    /// timeout, and is counted; a long-poll cut is not counted, and a call
    /// made after the cut is not cut.
    #[tokio::test]
    async fn a_cut_ends_the_calls_in_flight_and_counts_them() {
        let http = Http::new(&silent().await, Duration::from_secs(60));
        let call = |endpoint: &'static str| {
            let http = http.clone();
            tokio::spawn(async move {
                http.post(endpoint, "/x", &Value::Null, Instant::now(), Duration::ZERO).await
            })
        };
        let (batch, pull) = (call("customer_batch"), call("customer_pull"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!batch.is_finished() && !pull.is_finished(), "the target answers nothing");
        http.cut_in_flight();
        let within = Duration::from_secs(30);
        let batch = tokio::time::timeout(within, batch).await.expect("cut, not waited out").unwrap();
        let pull = tokio::time::timeout(within, pull).await.expect("cut, not waited out").unwrap();
        assert_eq!((batch, pull), (Err(CallError::Cut), Err(CallError::Cut)));
        assert_eq!(http.calls_cut(), 1, "the long-poll is not counted");
        // a cut call is neither an answer nor an error of the target's
        assert_eq!(http.stats.errors(), 0);
        let after = Http { timeout: Duration::from_millis(300), ..http.clone() };
        let r: Result<Value, _> =
            after.post("close_channel", "/x", &Value::Null, Instant::now(), Duration::ZERO).await;
        assert_eq!(r, Err(CallError::Timeout), "a call made after the cut runs to its own end");
        assert_eq!(http.calls_cut(), 1);
    }
}
