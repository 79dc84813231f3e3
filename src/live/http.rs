//! The driver's HTTP client: one pooled keep-alive hyper client for every
//! call, a timeout on each, and per-endpoint statistics measured from the
//! *intended* time of the call (so a slow target cannot hide behind a
//! driver that waited for it: no coordinated omission).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::metrics::Hist;
/// Marks the driver's calls, which a target's injected faults spare (the
/// header of `service::faults`; the driver plays customers and servicers).
const DRIVER_HEADER: &str = "x-kfsim-driver";
use crate::summary::HttpEndpoint;

/// Why a call failed; counted per endpoint by [`CallError::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No connection could be made (refused, reset before a response).
    Connect(String),
    /// No complete answer within the timeout.
    Timeout,
    /// An HTTP status other than 200.
    Status(u16),
    /// A WeCom-style error code in a 200 answer.
    Errcode(i64),
    /// The body was not JSON.
    Decode,
}

impl CallError {
    /// The error's kind as reported in `summary.json`.
    pub fn kind(&self) -> String {
        match self {
            CallError::Connect(_) => "connect".into(),
            CallError::Timeout => "timeout".into(),
            CallError::Status(s) => format!("http_{s}"),
            CallError::Errcode(c) => format!("errcode_{c}"),
            CallError::Decode => "decode".into(),
        }
    }
}

#[derive(Default)]
struct Endpoint {
    latency: Hist,
    errors: BTreeMap<String, u64>,
}

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

    /// Count an error inside a successful answer (a failed batch action).
    pub fn action_error(&self, endpoint: &'static str, kind: String) {
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

    /// The summary section, and the histograms (µs) keyed `http.ENDPOINT`.
    pub fn finish(&self) -> (BTreeMap<String, HttpEndpoint>, BTreeMap<String, hdrhistogram::Histogram<u64>>) {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeMap::new();
        let mut hists = BTreeMap::new();
        for (name, e) in map.iter() {
            let errors: u64 = e.errors.values().sum();
            let latency = e.latency.stats_ms();
            let error_rate = crate::summary::ratio(errors as f64, latency.count as f64);
            out.insert(
                name.to_string(),
                HttpEndpoint { errors, error_rate, errors_by_kind: e.errors.clone(), latency },
            );
            hists.insert(format!("http.{name}"), e.latency.histogram().clone());
        }
        (out, hists)
    }
}

/// An answer's WeCom `errcode` (0 or absent: success). Typed answers give
/// every field a default, so that an error answer still decodes.
pub trait Answer {
    /// The errcode.
    fn errcode(&self) -> i64;
}

impl Answer for Value {
    fn errcode(&self) -> i64 {
        self.get("errcode").and_then(Value::as_i64).unwrap_or(0)
    }
}

/// A JSON-over-HTTP client for one target.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    token: Arc<Mutex<String>>,
    /// Statistics of every call.
    pub stats: HttpStats,
    timeout: Duration,
}

impl Http {
    /// A client for `base` (`http://host:port`).
    pub fn new(base: &str, timeout: Duration) -> Http {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(connector);
        Http {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token: Arc::new(Mutex::new(String::new())),
            stats: HttpStats::default(),
            timeout,
        }
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Use `token` as the `access_token` of every call.
    pub fn set_token(&self, token: &str) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = token.to_owned();
    }

    fn url(&self, path: &str) -> String {
        let token = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let sep = if path.contains('?') { '&' } else { '?' };
        if token.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}{sep}access_token={token}", self.base)
        }
    }

    /// GET `path`, recorded under `endpoint`.
    pub async fn get(&self, endpoint: &'static str, path: &str) -> Result<Value, CallError> {
        let req = hyper::Request::get(self.url(path))
            .header(DRIVER_HEADER, "1")
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        self.send(endpoint, req, Instant::now(), self.timeout).await
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
        let bytes = serde_json::to_vec(body).expect("request bodies serialize");
        let req = hyper::Request::post(self.url(path))
            .header("content-type", "application/json")
            .header(DRIVER_HEADER, "1")
            .body(Full::new(Bytes::from(bytes)))
            .expect("a valid request");
        self.send(endpoint, req, intended, self.timeout + extra).await
    }

    async fn send<T: DeserializeOwned + Answer>(
        &self,
        endpoint: &'static str,
        req: hyper::Request<Full<Bytes>>,
        intended: Instant,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let result = tokio::time::timeout(timeout, async {
            let resp = self.client.request(req).await.map_err(|e| CallError::Connect(e.to_string()))?;
            let status = resp.status().as_u16();
            let body =
                resp.into_body().collect().await.map_err(|e| CallError::Connect(e.to_string()))?.to_bytes();
            if status != 200 {
                return Err(CallError::Status(status));
            }
            let v: T = serde_json::from_slice(&body).map_err(|_| CallError::Decode)?;
            match v.errcode() {
                0 => Ok(v),
                code => Err(CallError::Errcode(code)),
            }
        })
        .await
        .unwrap_or(Err(CallError::Timeout));
        let us = intended.elapsed().as_micros() as u64;
        self.stats.record(endpoint, us, result.as_ref().err());
        result
    }
}
