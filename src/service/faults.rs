//! Faults the platform injects into its API, for resilience tests of a
//! middleware: added latency, a share of calls answered `-1` (系统繁忙)
//! and a share answered `45009` (接口调用超过限制). Tokens invalidated
//! early are the state's (`Config::token_invalid_after_us`), callback
//! faults are [`super::push`]'s. Every injected fault is counted in
//! `/metrics`, so a test can reconcile what the middleware saw.
//!
//! Faults apply to the WeCom API (`/cgi-bin/`) as the middleware calls it.
//! kfsim's own live driver marks its calls (`X-Kfsim-Driver`) and is
//! spared: it plays the customers and servicers, not the middleware.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State as AxState};
use axum::middleware::Next;
use axum::response::Response;

use super::Service;
use super::errors::{ApiError, code};
use super::http::error;
use crate::scenario::TimeDist;
use crate::workload::{Stream, TimeSampler, stream, unit};

/// The header that marks kfsim's own driver's calls.
pub const DRIVER_HEADER: &str = "x-kfsim-driver";

/// Who makes a call: kfsim's own live driver, which injected faults spare
/// (it plays the customers and servicers, not the middleware under test),
/// or any other client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A call marked with [`DRIVER_HEADER`].
    Driver,
    /// Everyone else (a middleware, an SDK, a test).
    Client,
}

impl Caller {
    /// The caller of a request with these headers.
    pub fn of(headers: &axum::http::HeaderMap) -> Caller {
        if headers.contains_key(DRIVER_HEADER) { Caller::Driver } else { Caller::Client }
    }
}

/// What to inject into API calls.
#[derive(Debug, Clone, Default)]
pub struct ApiFaults {
    /// Extra time before a call is handled.
    pub latency: Option<TimeDist>,
    /// Share of calls answered `-1` (系统繁忙).
    pub error_rate: f64,
    /// Share of calls answered `45009` (frequency limit).
    pub busy_rate: f64,
}

impl ApiFaults {
    /// Whether anything is injected.
    pub fn any(&self) -> bool {
        self.latency.is_some() || self.error_rate > 0.0 || self.busy_rate > 0.0
    }
}

/// How many faults were injected.
#[derive(Debug, Default)]
pub struct FaultStats {
    /// Calls held back by the added latency.
    pub delayed: AtomicU64,
    /// Calls answered `-1`.
    pub system_busy: AtomicU64,
    /// Calls answered `45009`.
    pub rate_limited: AtomicU64,
}

/// The faults of a running service, with their seeded stream.
pub(super) struct Injector {
    faults: ApiFaults,
    latency: Option<TimeSampler>,
    rng: Mutex<Stream>,
    pub(super) stats: FaultStats,
}

impl Injector {
    pub(super) fn new(faults: ApiFaults, seed: u64) -> Injector {
        Injector {
            latency: faults.latency.as_ref().map(TimeSampler::new),
            faults,
            rng: Mutex::new(stream(seed, "api-faults")),
            stats: FaultStats::default(),
        }
    }

    /// This call's draws: the delay, and the errcode to answer instead.
    fn draw(&self) -> (Option<Duration>, Option<i32>) {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let delay = self.latency.as_ref().map(|s| Duration::from_micros(s.sample(&mut rng)));
        let u = unit(&mut rng);
        let errcode = if u < self.faults.error_rate {
            Some(code::SYSTEM_BUSY)
        } else if u < self.faults.error_rate + self.faults.busy_rate {
            Some(code::LIMIT)
        } else {
            None
        };
        (delay, errcode)
    }
}

/// Middleware: inject the configured faults into `/cgi-bin/` calls.
pub(super) async fn inject(AxState(svc): AxState<Service>, req: Request, next: Next) -> Response {
    let Some(inj) = svc.inner.faults.as_ref() else { return next.run(req).await };
    if !req.uri().path().starts_with("/cgi-bin/") || Caller::of(req.headers()) == Caller::Driver {
        return next.run(req).await;
    }
    let (delay, errcode) = inj.draw();
    if let Some(d) = delay {
        inj.stats.delayed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(d).await;
    }
    match errcode {
        Some(c @ code::SYSTEM_BUSY) => {
            inj.stats.system_busy.fetch_add(1, Ordering::Relaxed);
            error(ApiError::new(c, "system busy (系统繁忙): an injected fault"))
        }
        Some(c) => {
            inj.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            error(ApiError::new(c, "api freq out of limit (接口调用超过限制): an injected fault"))
        }
        None => next.run(req).await,
    }
}
