//! Operation: `/healthz`, Prometheus-text `/metrics` (sessions by state,
//! queue length per account, messages routed, request counts, errors and
//! latency per route) and the log line of throughput and errors written
//! every minute.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State as AxState};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Service;
use super::faults::Caller;
use super::http::ErrCode;
use super::state::Figures;
use crate::metrics::Hist;
use crate::summary::ApiEndpoint;

/// Upper bounds of the latency buckets [s].
const BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0];

/// Requests of one route.
#[derive(Debug, Default, Clone)]
struct RouteStats {
    count: u64,
    errors: u64,
    sum_s: f64,
    /// Non-cumulative counts per bucket, the last one +Inf.
    buckets: [u64; BUCKETS.len() + 1],
}

/// Request counts, errors (errcode ≠ 0) and latency per route.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    routes: Mutex<HashMap<String, RouteStats>>,
}

impl HttpMetrics {
    fn record(&self, route: &str, latency: Duration, failed: bool) {
        let s = latency.as_secs_f64();
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let r = match routes.get_mut(route) {
            Some(r) => r,
            None => routes.entry(route.to_owned()).or_default(),
        };
        r.count += 1;
        r.errors += u64::from(failed);
        r.sum_s += s;
        let i = BUCKETS.iter().position(|&b| s <= b).unwrap_or(BUCKETS.len());
        r.buckets[i] += 1;
    }

    /// Total requests and errors so far.
    pub fn totals(&self) -> (u64, u64) {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.values().fold((0, 0), |(c, e), r| (c + r.count, e + r.errors))
    }

    fn snapshot(&self) -> Vec<(String, RouteStats)> {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = routes.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// One enterprise-API endpoint as the middleware called it.
#[derive(Debug, Default)]
struct ApiStats {
    count: u64,
    errors: u64,
    errcodes: BTreeMap<String, u64>,
    latency: Hist,
}

/// The enterprise API calls of everyone but kfsim's own driver (which marks
/// its calls): in a run against a middleware, the middleware's calls.
#[derive(Debug, Default)]
pub struct ApiCalls(Mutex<BTreeMap<String, ApiStats>>);

impl ApiCalls {
    fn record(&self, endpoint: &str, latency: Duration, errcode: Option<String>) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let e = match all.get_mut(endpoint) {
            Some(e) => e,
            None => all.entry(endpoint.to_owned()).or_default(),
        };
        e.count += 1;
        e.latency.record(latency.as_micros() as u64);
        if let Some(code) = errcode {
            e.errors += 1;
            *e.errcodes.entry(code).or_default() += 1;
        }
    }

    /// The calls so far, per endpoint (`gettoken`, `kf/sync_msg`, …).
    pub fn summary(&self) -> BTreeMap<String, ApiEndpoint> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .map(|(k, e)| {
                let s = ApiEndpoint {
                    count: e.count,
                    errors: e.errors,
                    errcodes: e.errcodes.clone(),
                    latency_ms: e.latency.stats_ms(),
                };
                (k.clone(), s)
            })
            .collect()
    }
}

/// Middleware: time every request and note its errcode; an enterprise-API
/// call not from kfsim's driver is also counted as the middleware's.
// A request's own duration is wall time by definition.
#[allow(clippy::disallowed_methods)]
pub(super) async fn track(AxState(svc): AxState<Service>, req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", |p| p.as_str());
    let api = req.uri().path().starts_with("/cgi-bin/") && Caller::of(req.headers()) == Caller::Client;
    let started = Instant::now();
    let resp = next.run(req).await;
    note(&svc, route, api, started.elapsed(), &resp);
    resp
}

/// Record a request to `route` that took `elapsed` and was answered
/// `resp`; `api`: an enterprise-API call of someone but kfsim's driver.
pub(super) fn note(svc: &Service, route: &str, api: bool, elapsed: Duration, resp: &Response) {
    let errcode = resp.extensions().get::<ErrCode>().map(|c| c.0).filter(|&c| c != 0);
    let failed = errcode.is_some() || !resp.status().is_success();
    svc.inner.http.record(route, elapsed, failed);
    if api {
        let code = match errcode {
            Some(c) => Some(c.to_string()),
            None => (!resp.status().is_success()).then(|| format!("http_{}", resp.status().as_u16())),
        };
        svc.inner.api_calls.record(route.strip_prefix("/cgi-bin/").unwrap_or(route), elapsed, code);
    }
}

/// `/healthz` and `/metrics`.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new().route("/healthz", get(healthz)).route("/metrics", get(prometheus))
}

async fn healthz() -> Response {
    super::http::ok(serde_json::json!({ "status": "ok" }))
}

async fn prometheus(AxState(svc): AxState<Service>) -> Response {
    let figures = svc.with_state(|st, _| st.figures());
    let mut text = render(&figures, &svc.inner.http.snapshot());
    if let Some(stats) = svc.callback_stats() {
        let _ = render_callbacks(&mut text, &stats, figures.counters.callbacks_sent);
    }
    if let Some(f) = svc.fault_stats() {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        for (name, help, v) in [
            ("fault_api_delayed", "Injected fault: API calls held back.", get(&f.delayed)),
            ("fault_api_system_busy", "Injected fault: API calls answered -1.", get(&f.system_busy)),
            ("fault_api_rate_limited", "Injected fault: API calls answered 45009.", get(&f.rate_limited)),
        ] {
            let _ = writeln!(
                text,
                "# HELP kfsim_{name}_total {help}\n# TYPE kfsim_{name}_total counter\nkfsim_{name}_total {v}"
            );
        }
    }
    let mut resp = text.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    resp
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn render(f: &Figures, routes: &[(String, RouteStats)]) -> String {
    let mut o = String::new();
    let _ = render_sessions(&mut o, f);
    let _ = render_counters(&mut o, f);
    let _ = render_http(&mut o, routes);
    o
}

fn render_sessions(o: &mut String, f: &Figures) -> std::fmt::Result {
    writeln!(
        o,
        "# HELP kfsim_sessions Open sessions by account and service_state (0 new, 1 bot, 2 pool, 3 servicer)."
    )?;
    writeln!(o, "# TYPE kfsim_sessions gauge")?;
    // labelled by open_kfid, which is unique; names need not be (two
    // account/add with one name made duplicate series)
    let labels = |a: &crate::service::state::AccountFigures| {
        format!("open_kfid=\"{}\",account=\"{}\"", esc(&a.open_kfid), esc(&a.name))
    };
    for a in &f.accounts {
        for (state, n) in a.by_state.iter().enumerate() {
            writeln!(o, "kfsim_sessions{{{},state=\"{state}\"}} {n}", labels(a))?;
        }
    }
    writeln!(o, "# HELP kfsim_queue_length Sessions in the waiting pool (待接入池) by account.")?;
    writeln!(o, "# TYPE kfsim_queue_length gauge")?;
    for a in &f.accounts {
        writeln!(o, "kfsim_queue_length{{{}}} {}", labels(a), a.waiting)?;
    }
    writeln!(o, "# HELP kfsim_servicers Servicers (接待人员) by account.")?;
    writeln!(o, "# TYPE kfsim_servicers gauge")?;
    for a in &f.accounts {
        writeln!(o, "kfsim_servicers{{{}}} {}", labels(a), a.servicers)?;
    }
    for (name, help, v) in [
        ("kfsim_channels", "Open customer channels.", f.channels),
        ("kfsim_customers", "Customers remembered.", f.customers),
        ("kfsim_conversations", "Customer-account sessions remembered (open or ended).", f.convs),
        ("kfsim_media_bytes", "Bytes of temporary media held.", f.media_bytes),
    ] {
        writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}")?;
    }
    Ok(())
}

fn render_counters(o: &mut String, f: &Figures) -> std::fmt::Result {
    let c = &f.counters;
    for (name, help, v) in [
        ("customer_messages", "Customer messages accepted.", c.customer_messages),
        ("messages_routed", "Customer messages handed to a servicer.", c.messages_routed),
        ("servicer_messages", "Servicer messages (origin 5).", c.servicer_messages),
        ("api_messages", "Messages sent with send_msg or send_msg_on_event.", c.api_messages),
        ("sessions_started", "Sessions started.", c.sessions_started),
        ("assignments", "Sessions given to a servicer.", c.assigned),
        ("sessions_queued", "Sessions put in a waiting pool.", c.queued),
        ("sessions_rejected", "Sessions refused because the pool was full.", c.rejected),
        ("sessions_ended", "Sessions ended.", c.ended),
        ("sessions_idle_ended", "Sessions ended for being idle.", c.idle_ended),
        ("queue_overflows", "Items pushed out of a full simulation-port queue.", c.queue_overflows),
        (
            "callbacks_coalesced",
            "Log entries announced together with others by one callback.",
            c.callbacks_coalesced,
        ),
        (
            "fault_tokens_refused_early",
            "Injected fault: calls refused (42001) with a token invalidated early.",
            c.tokens_refused_early,
        ),
        ("channels_expired", "Channels closed because their lease ran out.", c.channels_expired),
        (
            "customers_refused",
            "New customers refused (45009) because --max-customers were remembered.",
            c.customers_refused,
        ),
    ] {
        writeln!(
            o,
            "# HELP kfsim_{name}_total {help}\n# TYPE kfsim_{name}_total counter\nkfsim_{name}_total {v}"
        )?;
    }
    Ok(())
}

fn render_callbacks(o: &mut String, s: &super::push::CallbackStats, sent: u64) -> std::fmt::Result {
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    for (name, help, v) in [
        ("callbacks", "kf_msg_or_event callbacks taken for delivery.", sent),
        ("callback_attempts", "Callback POSTs sent (first tries, retries, duplicates).", get(&s.attempts)),
        ("callback_retries", "Callback POSTs sent again after one failed.", get(&s.retries)),
        ("callbacks_delivered", "Callbacks answered with a 2xx status.", get(&s.delivered)),
        ("callbacks_failed", "Callbacks given up on after every retry failed.", get(&s.failed)),
        ("callbacks_dropped", "Injected fault: callbacks never sent.", get(&s.dropped)),
        ("callbacks_duplicated", "Injected fault: callbacks sent twice.", get(&s.duplicated)),
        ("callbacks_delayed", "Injected fault: callbacks held back before sending.", get(&s.delayed)),
    ] {
        writeln!(
            o,
            "# HELP kfsim_{name}_total {help}\n# TYPE kfsim_{name}_total counter\nkfsim_{name}_total {v}"
        )?;
    }
    let (n, p50, p99) = s.latency_ms();
    writeln!(o, "# HELP kfsim_callback_answer_ms Time to a callback's 2xx answer [ms].")?;
    writeln!(o, "# TYPE kfsim_callback_answer_ms summary")?;
    for (q, v) in [("0.5", p50), ("0.99", p99)] {
        if let Some(v) = v {
            writeln!(o, "kfsim_callback_answer_ms{{quantile=\"{q}\"}} {v}")?;
        }
    }
    writeln!(o, "kfsim_callback_answer_ms_count {n}")
}

fn render_http(o: &mut String, routes: &[(String, RouteStats)]) -> std::fmt::Result {
    writeln!(o, "# HELP kfsim_http_errors_total Answers with errcode ≠ 0 or a non-2xx status, by route.")?;
    writeln!(o, "# TYPE kfsim_http_errors_total counter")?;
    for (route, r) in routes {
        writeln!(o, "kfsim_http_errors_total{{route=\"{}\"}} {}", esc(route), r.errors)?;
    }
    writeln!(o, "# HELP kfsim_http_request_duration_seconds Request latency by route.")?;
    writeln!(o, "# TYPE kfsim_http_request_duration_seconds histogram")?;
    for (route, r) in routes {
        let route = esc(route);
        let mut cumulative = 0;
        for (i, n) in r.buckets.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            writeln!(
                o,
                "kfsim_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
            )?;
        }
        writeln!(o, "kfsim_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", r.sum_s)?;
        writeln!(o, "kfsim_http_request_duration_seconds_count{{route=\"{route}\"}} {}", r.count)?;
    }
    Ok(())
}

/// Log throughput and errors once a minute.
pub(super) async fn log_every_minute(svc: Service) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    let mut last = (svc.inner.http.totals(), svc.with_state(|st, _| st.figures().counters));
    loop {
        tick.tick().await;
        let now = (svc.inner.http.totals(), svc.with_state(|st, _| st.figures().counters));
        let ((req, err), c) = now;
        let ((req0, err0), c0) = last;
        tracing::info!(
            requests = req - req0,
            errors = err - err0,
            customer_messages = c.customer_messages - c0.customer_messages,
            routed = c.messages_routed - c0.messages_routed,
            servicer_messages = c.servicer_messages - c0.servicer_messages,
            sessions_started = c.sessions_started - c0.sessions_started,
            rejected = c.rejected - c0.rejected,
            "last minute"
        );
        // a warning of its own, once a minute: a refusal per request would
        // flood the log just when a runaway client is sending thousands
        let refused = c.customers_refused - c0.customers_refused;
        if refused > 0 {
            tracing::warn!(
                customers_refused = refused,
                customers = svc.with_state(|st, _| st.figures().customers),
                "last minute: new customers refused, --max-customers are remembered"
            );
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::state::{Config, State};

    #[test]
    fn renders_every_family_with_escaped_labels() {
        let mut st = State::new(Config::default());
        let kf = st.account_add("a\"b", "", None, 0).unwrap();
        let m = HttpMetrics::default();
        m.record("/x", Duration::from_micros(700), false);
        m.record("/x", Duration::from_secs(100), true);
        let text = render(&st.figures(), &m.snapshot());
        let labels = format!("open_kfid=\"{kf}\",account=\"a\\\"b\"");
        assert!(text.contains(&format!("kfsim_sessions{{{labels},state=\"2\"}} 0")), "{text}");
        assert!(text.contains(&format!("kfsim_queue_length{{{labels}}} 0")));
        assert!(text.contains("kfsim_messages_routed_total 0"));
        assert!(text.contains("kfsim_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.001\"} 1"));
        assert!(text.contains("kfsim_http_request_duration_seconds_bucket{route=\"/x\",le=\"+Inf\"} 2"));
        assert!(text.contains("kfsim_http_errors_total{route=\"/x\"} 1"));
        assert_eq!(m.totals(), (2, 1));
    }

    /// A `Write` into a buffer the test reads afterwards.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Each minute's line counts that minute only (time paused: the
    /// minutes pass at once).
    #[tokio::test(start_paused = true)]
    async fn the_minute_line_counts_the_last_minute() {
        let out = Captured::default();
        let writer = out.clone();
        let sub = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let _guard = tracing::subscriber::set_default(sub);
        let svc = Service::new(
            State::new(Config::default()),
            std::sync::Arc::new(crate::service::ManualClock::new(0)),
            crate::service::Options::default(),
        );
        let task = tokio::spawn(log_every_minute(svc.clone()));
        // let it take the first snapshot, then three requests, one failed
        tokio::time::sleep(Duration::from_secs(1)).await;
        for failed in [false, true, false] {
            svc.inner.http.record("/x", Duration::from_millis(1), failed);
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        svc.inner.http.record("/x", Duration::from_millis(1), false);
        tokio::time::sleep(Duration::from_secs(60)).await;
        task.abort();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("last minute")).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("requests=3 errors=1"), "{}", lines[0]);
        assert!(lines[1].contains("requests=1 errors=0"), "{}", lines[1]);
    }
}
