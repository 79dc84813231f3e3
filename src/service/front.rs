//! The connection's front door. The endpoints a load test calls thousands
//! of times a second go straight to their handlers; every other request,
//! and every request when faults are configured, goes through the axum
//! application ([`super::app`]), which routes the same paths to the same
//! handlers.
//!
//! Why: through axum's router and a `from_fn` middleware a request cost
//! five boxed futures, three clones of boxed services and an extensions
//! map; here it costs one box (callgrind: a `send_msg` 38 900 → 32 100
//! instructions). The answers are the same either way (the handlers
//! are), and so are the metrics: each request is timed and recorded under
//! its path as the middleware records it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxState};
use axum::http::Method;
use axum::response::Response;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper_util::service::TowerToHyperService;

use super::faults::Caller;
use super::{Service, api, channels, metrics};

/// An endpoint served without the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hot {
    SendMsg,
    SyncMsg,
    StateGet,
    StateTrans,
    CustomerBatch,
    CustomerPull,
    ServicerBatch,
    ServicerPull,
}

impl Hot {
    /// Every one, for the test that the router serves them too.
    #[cfg(test)]
    pub(super) const ALL: [Hot; 8] = [
        Hot::SendMsg,
        Hot::SyncMsg,
        Hot::StateGet,
        Hot::StateTrans,
        Hot::CustomerBatch,
        Hot::CustomerPull,
        Hot::ServicerBatch,
        Hot::ServicerPull,
    ];

    /// Its path (all are POST), as the router's `MatchedPath` names it.
    pub(super) fn path(self) -> &'static str {
        match self {
            Hot::SendMsg => "/cgi-bin/kf/send_msg",
            Hot::SyncMsg => "/cgi-bin/kf/sync_msg",
            Hot::StateGet => "/cgi-bin/kf/service_state/get",
            Hot::StateTrans => "/cgi-bin/kf/service_state/trans",
            Hot::CustomerBatch => "/sim/customer/batch",
            Hot::CustomerPull => "/sim/customer/pull",
            Hot::ServicerBatch => "/sim/servicer/batch",
            Hot::ServicerPull => "/sim/servicer/pull",
        }
    }

    fn of(method: &Method, path: &str) -> Option<Hot> {
        if method != Method::POST {
            return None;
        }
        Some(match path {
            "/cgi-bin/kf/send_msg" => Hot::SendMsg,
            "/cgi-bin/kf/sync_msg" => Hot::SyncMsg,
            "/cgi-bin/kf/service_state/get" => Hot::StateGet,
            "/cgi-bin/kf/service_state/trans" => Hot::StateTrans,
            "/sim/customer/batch" => Hot::CustomerBatch,
            "/sim/customer/pull" => Hot::CustomerPull,
            "/sim/servicer/batch" => Hot::ServicerBatch,
            "/sim/servicer/pull" => Hot::ServicerPull,
            _ => return None,
        })
    }

    async fn run(self, svc: Service, req: Request) -> Response {
        match self {
            Hot::SendMsg => api::send_msg_direct(svc, req).await,
            Hot::SyncMsg => api::sync_msg_direct(svc, req).await,
            Hot::StateGet => api::state_get_direct(svc, req).await,
            Hot::StateTrans => api::state_trans_direct(svc, req).await,
            Hot::CustomerBatch => channels::customer_batch(AxState(svc), req).await,
            Hot::CustomerPull => channels::customer_pull(AxState(svc), req).await,
            Hot::ServicerBatch => channels::servicer_batch(AxState(svc), req).await,
            Hot::ServicerPull => channels::servicer_pull(AxState(svc), req).await,
        }
    }
}

/// The service of every connection.
#[derive(Clone)]
pub(super) struct Front {
    svc: Service,
    app: TowerToHyperService<axum::Router>,
    /// Hot endpoints skip the router (not when faults are configured: their
    /// middleware is the router's).
    direct: bool,
}

impl Front {
    pub(super) fn new(svc: Service) -> Front {
        let direct = svc.inner.faults.is_none();
        Front { app: TowerToHyperService::new(super::app(svc.clone())), svc, direct }
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    // A request's own duration is wall time by definition.
    #[allow(clippy::disallowed_methods)]
    fn call(&self, req: hyper::Request<Incoming>) -> Answer {
        let hot = if self.direct { Hot::of(req.method(), req.uri().path()) } else { None };
        let Some(hot) = hot else {
            if req.body().is_end_stream() {
                return Box::pin(self.app.call(req));
            }
            // the router's handlers answer many requests without their
            // body (unknown paths, GETs, refused tokens, injected faults):
            // what a handler left unread comes back here to be settled
            let expect_continue = super::http::expects_continue(req.headers());
            let left = Arc::new(Mutex::new(None));
            let answer = self.app.call(req.map(|inner| Tracked { inner: Some(inner), left: left.clone() }));
            return Box::pin(async move {
                let resp = answer.await?;
                let unread = left.lock().unwrap_or_else(|e| e.into_inner()).take();
                Ok(match unread {
                    Some(body) => super::http::settle(resp, Body::new(body), expect_continue).await,
                    None => resp,
                })
            });
        };
        let svc = self.svc.clone();
        Box::pin(async move {
            let api = hot.path().starts_with("/cgi-bin/") && Caller::of(req.headers()) == Caller::Client;
            let started = Instant::now();
            let resp = hot.run(svc.clone(), req.map(Body::new)).await;
            metrics::note(&svc, hot.path(), api, started.elapsed(), &resp);
            Ok(resp)
        })
    }
}

/// A request body that, dropped before its end, hands what is left of it
/// back to the front.
struct Tracked {
    inner: Option<Incoming>,
    left: Arc<Mutex<Option<Incoming>>>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or(SizeHint::with_exact(0), Incoming::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take().filter(|b| !b.is_end_stream()) {
            *self.left.lock().unwrap_or_else(|e| e.into_inner()) = Some(inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::to_bytes;
    use hyper::service::Service as _;

    use super::*;
    use crate::service::state::{Config, State};
    use crate::service::{Options, SystemClock};

    /// The front and the router give each hot path the same handler: the
    /// same answer, byte for byte, to a call whose token is wrong, and not
    /// the router's answer to a path it does not know.
    #[tokio::test]
    async fn the_router_serves_every_hot_path_as_the_front_does() {
        let svc = Service::new(State::new(Config::default()), Arc::new(SystemClock), Options::default());
        let app = TowerToHyperService::new(super::super::app(svc.clone()));
        let answer = |r: Response| async move {
            let status = r.status();
            (status, to_bytes(r.into_body(), 1 << 20).await.unwrap())
        };
        let req =
            |path: &str| Request::post(format!("{path}?access_token=nope")).body(Body::from("{}")).unwrap();
        let unknown = answer(app.call(req("/cgi-bin/kf/no_such_call")).await.unwrap()).await;
        for hot in Hot::ALL {
            assert_eq!(Hot::of(&Method::POST, hot.path()), Some(hot));
            assert_eq!(Hot::of(&Method::GET, hot.path()), None, "other methods go through the router");
            let routed = answer(app.call(req(hot.path())).await.unwrap()).await;
            let direct = answer(hot.run(svc.clone(), req(hot.path())).await).await;
            assert_eq!(routed, direct, "{}", hot.path());
            assert_ne!(routed.1, unknown.1, "{}", hot.path());
        }
    }
}
