//! The reference KF service (`kfsim serve`): a WeChat-Customer-Service
//! style reception system on axum + tokio, with the same reception core as
//! the simulator.
//!
//! Two surfaces (documented in `docs/protocol.md` and `docs/openapi.yaml`):
//! the enterprise API, compatible with WeCom's `cgi-bin/kf` ([`api`]), and
//! the ports that play the WeChat app (customers, batched over channels)
//! and the WeCom client (servicers) ([`channels`]).
//!
//! Layout: [`state`], [`admin`], [`session`], [`agent`], [`enterprise`] and
//! [`upgrade`] are the pure state machine (time is an argument, no I/O);
//! [`http`] is the plumbing; [`api`] and [`channels`] are the handlers;
//! [`metrics`] renders `/metrics`. The command line's `serve` starts it. Wall-clock time enters
//! only through a [`Clock`], read by the handlers at the edge. The state is
//! one mutex; no lock is held across an await, and long-polls wait on a
//! per-queue `Notify`.

pub mod admin;
pub mod agent;
pub mod api;
pub mod audit;
pub mod callbacks;
pub mod channels;
pub mod crypto;
pub mod enterprise;
pub mod errors;
pub mod faults;
pub mod feed;
mod front;
mod http;
mod idle;
pub mod media;
pub mod metrics;
pub mod model;
pub mod push;
pub mod session;
mod stall;
pub mod state;
pub mod stats;
#[cfg(test)]
mod tests;
pub mod upgrade;

use std::collections::HashMap;
use std::future::Future;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};

pub use state::{Config, State};

use crate::scenario::Scenario;

/// The largest request body accepted [bytes].
pub const MAX_BODY: usize = 1 << 20;

/// The largest request head (request line and headers) read [bytes]:
/// hyper's read buffer per connection; a longer head is HTTP 431.
pub const MAX_HEAD: usize = 64 << 10;

/// The most bytes of request bodies (JSON and media uploads) held at once
/// across all connections. Each request's limit alone did not bound the
/// service's memory: 4000 clients each sending 1 MiB of a body and then
/// waiting held 4 GB (found by probing). A request that would go past it
/// is refused at once (HTTP 503, errcode -1), its body unread.
pub const BODY_BUDGET: usize = 512 << 20;

/// Where wall-clock time comes from.
pub trait Clock: Send + Sync + 'static {
    /// Now, in µs since the Unix epoch.
    fn now_us(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one place the service reads the wall clock: the handlers take
    // time from their `Clock`, so tests can move it by hand.
    #[allow(clippy::disallowed_methods)]
    fn now_us(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock at `now_us`.
    pub fn new(now_us: u64) -> ManualClock {
        ManualClock(AtomicU64::new(now_us))
    }

    /// Move forward by `us`.
    pub fn advance(&self, us: u64) {
        self.0.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Options of a service instance beyond its state.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Servicers answer every customer message at once and end the
    /// session (benchmarks only).
    pub auto_reply: bool,
    /// Send `kf_msg_or_event` callbacks there (WeCom's callback to a
    /// middleware).
    pub callbacks: Option<push::CallbackSettings>,
    /// Faults to inject into API calls.
    pub api_faults: faults::ApiFaults,
    /// How long a request's body may take ([`BODY_READ_TIMEOUT`] when
    /// `None`).
    pub body_read: Option<Duration>,
    /// Bytes of request bodies held at once ([`BODY_BUDGET`] when `None`).
    pub body_budget: Option<usize>,
}

/// The callbacks of a service that sends them.
struct Callbacks {
    settings: Arc<push::CallbackSettings>,
    stats: Arc<push::CallbackStats>,
    /// Woken when an account owes a callback.
    owed: Notify,
}

/// A running service's shared handle: the state, the clock, the HTTP
/// metrics. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    http: metrics::HttpMetrics,
    /// Enterprise-API calls not from kfsim's driver.
    api_calls: metrics::ApiCalls,
    shutdown: watch::Sender<bool>,
    /// Woken when servicer queues get items, in auto-reply mode.
    agents: Option<Notify>,
    callbacks: Option<Callbacks>,
    faults: Option<faults::Injector>,
    max_body: usize,
    body_read: Duration,
    /// Permits are bytes of `body_budget` (see [`http::BodyShare`]).
    bodies: Arc<Semaphore>,
    body_budget: usize,
}

impl Service {
    /// A service over `state`, reading time from `clock`.
    pub fn new(mut state: State, clock: Arc<dyn Clock>, options: Options) -> Service {
        state.cfg.callbacks = options.callbacks.is_some();
        state.cfg.auto_reply = options.auto_reply;
        if let Some(c) = &options.callbacks {
            state.cfg.callback_max_in_flight = c.max_in_flight.max(1);
        }
        let seed = state.cfg.seed;
        let body_budget = options.body_budget.unwrap_or(BODY_BUDGET).min(Semaphore::MAX_PERMITS);
        Service {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                clock,
                http: metrics::HttpMetrics::default(),
                api_calls: metrics::ApiCalls::default(),
                shutdown: watch::channel(false).0,
                agents: options.auto_reply.then(Notify::new),
                callbacks: options.callbacks.map(|s| Callbacks {
                    settings: Arc::new(s),
                    stats: Arc::default(),
                    owed: Notify::new(),
                }),
                faults: options.api_faults.any().then(|| faults::Injector::new(options.api_faults, seed)),
                max_body: MAX_BODY,
                body_read: options.body_read.unwrap_or(BODY_READ_TIMEOUT),
                bodies: Arc::new(Semaphore::new(body_budget)),
                body_budget,
            }),
        }
    }

    /// The faults injected so far (`None` without faults).
    pub fn fault_stats(&self) -> Option<&faults::FaultStats> {
        self.inner.faults.as_ref().map(|f| &f.stats)
    }

    /// What became of the callbacks so far (`None` without callbacks).
    pub fn callback_stats(&self) -> Option<Arc<push::CallbackStats>> {
        self.inner.callbacks.as_ref().map(|c| c.stats.clone())
    }

    /// What a middleware did so far, as this service saw it: the callbacks
    /// it was sent, its API calls and what the state watched in the
    /// sessions of API-managed accounts. `time_scale` and the service-level
    /// threshold `sl_us` (scenario µs) weigh its added latency.
    ///
    /// The closes still in progress are finished first (a part per hold
    /// of the lock, as the sweeper would): a close the driver's HTTP call
    /// gave up on left the sessions not yet ended out of `owed_at_end`.
    /// Counting what they owe at `begin_close` instead would walk the
    /// whole channel in one hold, which the parts are there to avoid.
    pub async fn middleware_summary(&self, time_scale: f64, sl_us: u64) -> crate::summary::MiddlewareSummary {
        use crate::summary::{CallbackSummary, MiddlewareSummary};
        finish_closing(self).await;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // callbacks may still be out (a middleware that hangs, a retry's
        // wait): their ends are read before what was sent, which only
        // grows, so what is neither is never negative
        let ends = self
            .inner
            .callbacks
            .as_ref()
            .map(|c| (c, get(&c.stats.delivered), get(&c.stats.failed), get(&c.stats.dropped)));
        // what was sent and what is still owed are read under one lock,
        // as they are changed: together with the entries coalesced they
        // are every entry logged
        let (w, unannounced, sent) = self
            .with_state(|st, _| (st.audit().clone(), st.callbacks_unannounced(), st.counters.callbacks_sent));
        let (url, callbacks) = match ends {
            Some((c, delivered, failed, dropped)) => {
                let summary = CallbackSummary {
                    sent,
                    delivered,
                    failed,
                    dropped,
                    duplicated: get(&c.stats.duplicated),
                    in_flight_at_end: sent.saturating_sub(delivered + failed + dropped),
                    unannounced_at_end: unannounced,
                    retried: get(&c.stats.retries),
                    latency_ms: c.stats.latency_stats(),
                };
                (c.settings.url.clone(), summary)
            }
            None => (String::new(), CallbackSummary::default()),
        };
        let api = self.inner.api_calls.summary();
        let routed = w.routed.stats_ms();
        let scale_effect = routed.p50.filter(|_| sl_us > 0).map(|ms| ms * time_scale / (sl_us as f64 / 1e3));
        MiddlewareSummary {
            url,
            callbacks,
            synced: w.synced,
            resynced: w.resynced,
            sync_lag_ms: w.sync_lag.stats_ms(),
            customer_messages: w.customer_messages,
            bot_reply_ms: w.bot_reply.stats_ms(),
            routed_ms: routed,
            handoff_ms: w.handoff.stats_ms(),
            gettoken: api.get("gettoken").map_or(0, |e| e.count),
            api,
            unacted: w.unacted,
            owed_at_end: w.owed_at_close,
            replies_after_end: w.replies_after_end,
            sent_twice: w.sent_twice,
            sync_without_token: w.sync_without_token,
            scale_effect,
        }
    }

    fn callback_notify(&self) -> Option<&Notify> {
        self.inner.callbacks.as_ref().map(|c| &c.owed)
    }

    /// A service with the accounts, contact ways and servicers of a
    /// scenario (see [`State::from_scenario`]).
    pub fn from_scenario(sc: &Scenario, cfg: Config, clock: Arc<dyn Clock>, options: Options) -> Service {
        let now = clock.now_us();
        Service::new(State::from_scenario(sc, cfg, now), clock, options)
    }

    /// Now, from the service's clock [µs since the epoch].
    pub fn now_us(&self) -> u64 {
        self.inner.clock.now_us()
    }

    /// Run `f` on the state at the current time, then wake the long-polls
    /// of every queue it filled and drop the channels it closed (after the
    /// lock is released).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State, u64) -> R) -> R {
        // the thread's list, lent out: a fresh one was an allocation in
        // most calls (taken, so a nested call finds an empty one)
        let mut wakes = WAKES.with_borrow_mut(std::mem::take);
        let (r, any_user, closed) = {
            // A panic while holding the lock would be a bug; the state is
            // still the best there is, so later requests go on with it.
            let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            let r = f(&mut st, self.inner.clock.now_us());
            let any_user = st.take_wakes(&mut wakes);
            if st.owes_callbacks()
                && let Some(n) = self.callback_notify()
            {
                n.notify_one();
            }
            (r, any_user, st.take_closed())
        };
        // dropped without the lock
        drop(closed);
        for n in wakes.drain(..) {
            n.notify_waiters();
        }
        WAKES.with_borrow_mut(|w| *w = wakes);
        if any_user && let Some(agents) = &self.inner.agents {
            agents.notify_one();
        }
        r
    }

    /// Make long-polls answer now (shutdown).
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

/// The HTTP application: both surfaces, `/healthz`, `/metrics`, and
/// WeCom-style JSON errors for unknown paths and methods.
pub fn app(svc: Service) -> axum::Router {
    let app = api::routes()
        .merge(channels::routes())
        .merge(metrics::routes())
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::wrong_method)
        .with_state(svc.clone());
    // a middleware layer costs every request a boxed future (~2 000
    // instructions, 4 % of a send_msg): the faults' only where configured
    let app = match svc.inner.faults {
        Some(_) => app.layer(axum::middleware::from_fn_with_state(svc.clone(), faults::inject)),
        None => app,
    };
    app.layer(axum::middleware::from_fn_with_state(svc, metrics::track))
}

/// How long a connection may take to send a request's head — counted from
/// its opening, or from the previous answer on a kept-alive connection —
/// before it is closed: a client that trickles its headers (slowloris), or
/// holds a connection it does not use, cannot hold a socket for long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request's body may take to arrive once its head has (HTTP
/// 408 after that).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long writing an answer may go without progress (a client that
/// sends requests and does not read the answers) before the connection is
/// closed (the `stall` module).
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// After the shutdown signal, requests in flight have this long to finish
/// (long-polls answer at once); connections still open then are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The timeouts of [`serve_with`].
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read: Duration,
    /// See [`SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
    /// See [`WRITE_STALL_TIMEOUT`].
    pub write_stall: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read: HEADER_READ_TIMEOUT,
            shutdown_grace: SHUTDOWN_GRACE,
            write_stall: WRITE_STALL_TIMEOUT,
        }
    }
}

/// Serve `svc` on `listener` until `shutdown` completes, then finish the
/// requests in flight (long-polls answer at once) for at most
/// [`SHUTDOWN_GRACE`] and return. Runs the sweeper, the per-minute log line
/// and, if asked for, the auto-reply servicers alongside.
pub async fn serve(
    listener: TcpListener,
    svc: Service,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, svc, shutdown, ServeLimits::default()).await
}

/// [`serve`] with other timeouts.
pub async fn serve_with(
    listener: TcpListener,
    svc: Service,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServeLimits,
) -> std::io::Result<()> {
    let mut tasks = vec![
        tokio::spawn(sweeper(svc.clone())),
        tokio::spawn(metrics::log_every_minute(svc.clone())),
        tokio::spawn(auto_replier(svc.clone())),
    ];
    if let Some(c) = &svc.inner.callbacks {
        let seed = svc.with_state(|st, _| st.cfg.seed);
        tasks.push(tokio::spawn(push::deliver(svc.clone(), c.settings.clone(), c.stats.clone(), seed)));
    }
    let app = front::Front::new(svc.clone());
    let mut builder = hyper::server::conn::http1::Builder::new();
    // A client may shut down its write half once its request is sent (`nc
    // -N`, some load tools): without `half_close`, hyper took an end of
    // input that came before the answer for a client gone, and dropped the
    // answer. An end of input before a whole head still closes at once, and
    // the header-read timeout still bounds a head that never ends. The
    // cost: a client that vanishes mid-request is noticed when its answer
    // is written (a long-poll waits at most 60 s).
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_read).half_close(true);
    // A connection's read buffer holds a request head: at hyper's default
    // (about 400 KB) 4000 clients each sending most of a head and waiting
    // held 1.2 GB (found by probing), 8 GB at 20 000 descriptors. KF
    // requests have heads of a few hundred bytes.
    builder.max_buf_size(MAX_HEAD);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    // what the loop knows of each open connection, by its task
    let mut watches: HashMap<tokio::task::Id, Arc<idle::Watch>> = HashMap::new();
    let epochs = idle::Epochs::default();
    let mut ticker = tokio::time::interval(idle::EPOCH);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drained_logged: Option<tokio::time::Instant> = None;
    let mut busy_logged: Option<tokio::time::Instant> = None;
    let mut drained = 0u64;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
            // reap finished connections as they go
            Some(done) = conns.join_next_with_id(), if !conns.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                watches.remove(&id);
                continue;
            }
            _ = ticker.tick() => {
                epochs.tick();
                continue;
            }
        };
        let stream = match stream {
            Ok((stream, _)) => stream,
            // A client that reset its connection before it was accepted:
            // nothing to wait for.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            // Out of file descriptors: the connections idle longest make
            // room; with none idle, wait for others to finish. (Only then:
            // idle keep-alive connections are a client's to keep.)
            Err(e) if idle::out_of_descriptors(&e) => {
                let asked = idle::drain_idle(watches.values(), epochs.now());
                if asked == 0 {
                    // every connection is busy (requests being received,
                    // long-polls): new clients wait, and the operator must
                    // be told why
                    if busy_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        busy_logged = Some(tokio::time::Instant::now());
                        tracing::warn!(
                            "out of file descriptors and no idle connection to close: {} open, all busy \
                             (requests being received or long-polls); new connections wait \
                             (raise `ulimit -n` for more)",
                            watches.len()
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                } else {
                    drained += asked as u64;
                    if drained_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        drained_logged = Some(tokio::time::Instant::now());
                        tracing::warn!(
                            "out of file descriptors: {drained} idle connection(s) closed so far to accept new ones \
                             ({} open; raise `ulimit -n` for more)",
                            watches.len()
                        );
                    }
                    // let them close before the next `accept`
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                continue;
            }
            // out of memory for sockets or the like: wait, others finish
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let watch = idle::Watch::new(epochs.clone());
        let stream = idle::Stamped::new(stall::WriteStall::new(stream, limits.write_stall), watch.clone());
        let conn = builder.serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            idle::Counted::new(app.clone(), watch.clone()),
        );
        let mut stop = stop_rx.clone();
        let drain = watch.clone();
        let task = conns.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => {}
                () = drain.drain.notified() => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
        watches.insert(task.id(), watch);
    }
    drop(listener);
    svc.begin_shutdown();
    let _ = stop_tx.send(true);
    // a client holding a half-sent request must not keep the process up
    let drained =
        tokio::time::timeout(limits.shutdown_grace, async { while conns.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        conns.abort_all();
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// End and forget the customers of the channels closed so far, a part per
/// hold of the lock, letting other requests in between.
pub(crate) async fn finish_closing(svc: &Service) {
    while svc.with_state(|st, now| st.drain_closing(session::CLOSE_CHUNK, now).1) {
        tokio::task::yield_now().await;
    }
}

async fn sweeper(svc: Service) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        svc.with_state(|st, now| st.sweep(now, 20_000));
        finish_closing(&svc).await;
    }
}

thread_local! {
    /// [`Service::with_state`]'s list of queues to wake.
    static WAKES: std::cell::RefCell<Vec<Arc<Notify>>> = const { std::cell::RefCell::new(Vec::new()) };
}

async fn auto_replier(svc: Service) {
    let Some(_) = &svc.inner.agents else { return };
    loop {
        if let Some(agents) = &svc.inner.agents {
            // The timeout is a safety net; a push wakes it at once.
            let _ = tokio::time::timeout(Duration::from_millis(50), agents.notified()).await;
        }
        // Small batches keep each lock short; more work yields in between.
        for _ in 0..10_000 {
            if !svc.with_state(|st, now| st.auto_reply(64, now)) {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}
