//! The driver's connections to its target: HTTP/1.1 keep-alive
//! connections made with hyper's own connection API, reused last-in
//! first-out.
//!
//! hyper-util's pooled client did the same at a price the driver's ceiling
//! showed (`benches/driver`, issue 18): a SipHash of the scheme and
//! authority on every checkout and return, a task spawned per request to
//! hand the connection back once it was ready again, and futures large
//! enough that moving them was 7 % of the driver's instructions. One
//! target, one host: a vector of idle senders is all the pool this needs.
//!
//! Contract:
//! - a request goes out on an idle connection that is still open (the most
//!   recently used first: it is the least likely to have been closed by the
//!   target), else on a new one;
//! - a request refused by a reused connection before any of it was written
//!   (the target closed it while idle) is sent again on another; one that
//!   was written is never sent twice — whether the target acted on it is
//!   unknown, and the caller counts it as failed;
//! - a connection goes back to the pool only once its answer was read to
//!   the end ([`Lease::release`]); a call abandoned on the way (a timeout, an
//!   answer too long) closes it, so that a late answer can never be read as
//!   the next call's;
//! - at most [`MAX_IDLE`] idle connections are kept, none idle longer than
//!   [`IDLE_FOR`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderValue};
use hyper_util::rt::TokioIo;

/// Idle connections kept for reuse: more callers at once open connections
/// of their own and close them when done.
pub const MAX_IDLE: usize = 256;

/// How long an idle connection is trusted (hyper-util's default too): a
/// target or a proxy in between may have dropped it without a word.
pub const IDLE_FOR: Duration = Duration::from_secs(90);

/// How long a new connection may take to open.
const CONNECT_WITHIN: Duration = Duration::from_secs(3);

/// Why no answer came.
#[derive(Debug)]
pub enum Error {
    /// The base URL is not `http://host[:port][/prefix]`.
    Url(String),
    /// No connection, or it broke before the answer's head arrived.
    Connect(String),
}

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

struct Inner {
    /// `host:port`, as connected to.
    addr: String,
    host: HeaderValue,
    idle: Mutex<Vec<Idle>>,
}

/// Connections to one target. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct Pool {
    inner: Result<Arc<Inner>, String>,
    /// The base URL's path, put before every request's (`/prefix`), without
    /// a trailing `/`.
    prefix: String,
}

/// A connection in use: give it back with [`Lease::release`] once its answer
/// is read to the end; dropped, it closes.
pub struct Lease {
    sender: SendRequest<Full<Bytes>>,
    pool: Arc<Inner>,
}

impl Lease {
    /// The answer was read whole: the connection may carry the next request.
    pub fn release(self) {
        let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE && !self.sender.is_closed() {
            idle.push(Idle { sender: self.sender, since: Instant::now() });
        }
    }
}

impl Pool {
    /// A pool for `base` (`http://host:port`, optionally with a path
    /// prefix). A base that is no such URL is reported by every request.
    pub fn new(base: &str) -> Pool {
        match parse_base(base) {
            Ok((addr, host, prefix)) => {
                let idle = Mutex::new(Vec::with_capacity(MAX_IDLE));
                Pool { inner: Ok(Arc::new(Inner { addr, host, idle })), prefix }
            }
            Err(e) => Pool { inner: Err(e), prefix: String::new() },
        }
    }

    /// The path to request for `path` (`/cgi-bin/…?…`) at this target.
    pub fn path(&self, path: &str) -> String {
        let mut p = String::with_capacity(self.prefix.len() + path.len() + 64);
        p.push_str(&self.prefix);
        p.push_str(path);
        p
    }

    /// Send `req` (its URI in origin form, a path and query: [`Pool::path`])
    /// and wait for the answer's head. The body is the caller's to read;
    /// then [`Lease::release`].
    pub async fn send(
        &self,
        mut req: hyper::Request<Full<Bytes>>,
    ) -> Result<(hyper::Response<Incoming>, Lease), Error> {
        let inner = self.inner.as_ref().map_err(|e| Error::Url(e.clone()))?;
        req.headers_mut().insert(HOST, inner.host.clone());
        loop {
            let (mut sender, reused) = match checkout(inner).await {
                Some(s) => (s, true),
                None => (connect(inner).await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, Lease { sender, pool: inner.clone() })),
                Err(mut e) => match e.take_message() {
                    // not a byte of it written: the connection had closed
                    Some(back) if reused => req = back,
                    _ => return Err(Error::Connect(e.into_error().to_string())),
                },
            }
        }
    }
}

/// An idle connection ready for a request, if one is open.
async fn checkout(inner: &Inner) -> Option<SendRequest<Full<Bytes>>> {
    loop {
        let Idle { mut sender, since } = inner.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        if since.elapsed() > IDLE_FOR {
            // older ones lie below it: let them all go
            inner.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
            return None;
        }
        // Just given back, its connection's task may not have seen the end
        // of the answer yet; an error means it closed.
        if sender.is_ready() || sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
}

async fn connect(inner: &Inner) -> Result<SendRequest<Full<Bytes>>, Error> {
    let stream = tokio::time::timeout(CONNECT_WITHIN, tokio::net::TcpStream::connect(&inner.addr))
        .await
        .map_err(|_| Error::Connect(format!("connect {}: no answer in {CONNECT_WITHIN:?}", inner.addr)))?
        .map_err(|e| Error::Connect(format!("connect {}: {e}", inner.addr)))?;
    // small requests and answers: waiting for Nagle would only add latency
    stream.set_nodelay(true).map_err(|e| Error::Connect(format!("connect {}: {e}", inner.addr)))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Error::Connect(format!("handshake {}: {e}", inner.addr)))?;
    // The connection's own task reads and writes; it ends when the target
    // closes it or every sender is dropped. Its error reaches the request
    // in flight, if any.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// `(host:port, Host header, path prefix)` of an `http://` base URL.
fn parse_base(base: &str) -> Result<(String, HeaderValue, String), String> {
    let uri: hyper::Uri = base.parse().map_err(|e| format!("target {base:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(s) => return Err(format!("target {base:?}: the driver speaks http, not {s}")),
        None => return Err(format!("target {base:?} is not a URL: http://host:port expected")),
    }
    let authority = uri.authority().ok_or_else(|| format!("target {base:?} has no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    let host = authority.host();
    let addr = format!("{host}:{port}");
    let header = HeaderValue::from_str(authority.as_str()).map_err(|e| format!("target {base:?}: {e}"))?;
    if uri.query().is_some() {
        return Err(format!("target {base:?}: a base URL takes no query"));
    }
    let prefix = uri.path().trim_end_matches('/').to_owned();
    Ok((addr, header, prefix))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A target answering each GET with its path, on one connection after
    /// another: `/slow` after 300 ms; closing each connection after its
    /// first answer if `close`. Counts the connections it accepted.
    async fn target(close: bool) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            let mut chunk = [0; 1024];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                        if path == "/slow" {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let answer =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{path}", path.len());
                        if stream.write_all(answer.as_bytes()).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        (base, accepted)
    }

    /// One GET of `path`: its answer's body.
    async fn get(pool: &Pool, path: &str) -> Result<String, Error> {
        let mut req = hyper::Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = pool.path(path).parse().unwrap();
        let (resp, lease) = pool.send(req).await?;
        let body = resp.into_body().collect().await.map_err(|e| Error::Connect(e.to_string()))?;
        lease.release();
        Ok(String::from_utf8(body.to_bytes().to_vec()).unwrap())
    }

    #[tokio::test]
    async fn calls_one_after_another_share_one_connection() {
        let (base, accepted) = target(false).await;
        let pool = Pool::new(&base);
        for i in 0..20 {
            assert_eq!(get(&pool, &format!("/{i}")).await.unwrap(), format!("/{i}"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn calls_at_once_open_a_connection_each_and_keep_them() {
        let (base, accepted) = target(false).await;
        let pool = Pool::new(&base);
        for _ in 0..3 {
            let calls = (0..8).map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { get(&pool, &format!("/slow?{i}")).await.unwrap() })
            });
            let bodies: Vec<String> = join_all(calls).await;
            assert_eq!(bodies, (0..8).map(|i| format!("/slow?{i}")).collect::<Vec<_>>());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 8, "8 at once, three times over");
    }

    #[tokio::test]
    async fn a_connection_the_target_closed_while_idle_is_replaced() {
        let (base, accepted) = target(true).await;
        let pool = Pool::new(&base);
        for i in 0..5 {
            assert_eq!(get(&pool, &format!("/{i}")).await.unwrap(), format!("/{i}"));
            // the close reaches the connection's task
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn an_abandoned_call_never_lends_its_answer_to_the_next() {
        let (base, accepted) = target(false).await;
        let pool = Pool::new(&base);
        let abandoned = tokio::time::timeout(Duration::from_millis(50), get(&pool, "/slow")).await;
        assert!(abandoned.is_err(), "the call was abandoned");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(get(&pool, "/next").await.unwrap(), "/next");
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "the abandoned call's connection was closed");
    }

    #[tokio::test]
    async fn no_target_is_an_error_of_the_call() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        assert!(matches!(get(&Pool::new(&base), "/").await, Err(Error::Connect(_))));
        assert!(matches!(get(&Pool::new("https://kf.example"), "/").await, Err(Error::Url(_))));
    }

    async fn join_all<T: Send + 'static>(calls: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::new();
        for c in calls.collect::<Vec<_>>() {
            out.push(c.await.unwrap());
        }
        out
    }

    #[test]
    fn base_urls() {
        let (addr, host, prefix) = parse_base("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (addr.as_str(), host.to_str().unwrap(), prefix.as_str()),
            ("127.0.0.1:8080", "127.0.0.1:8080", "")
        );
        let (addr, host, prefix) = parse_base("http://kf.example/api/").unwrap();
        assert_eq!(
            (addr.as_str(), host.to_str().unwrap(), prefix.as_str()),
            ("kf.example:80", "kf.example", "/api")
        );
        let (addr, _, _) = parse_base("http://[::1]:9000/").unwrap();
        assert_eq!(addr, "[::1]:9000");
        for bad in ["https://kf.example", "kf.example:80", "", "http://kf.example/?a=1", "http://"] {
            assert!(parse_base(bad).is_err(), "{bad}");
        }
    }
}
