//! The driver's connections to its target: HTTP/1.1 keep-alive
//! connections, each request written and its answer read in the calling
//! task, connections reused last-in first-out.
//!
//! Why not hyper's client: the driver's ceiling (`benches/driver`, issue 18)
//! stayed near 0.72 of wrk with hyper's connection API, where every request
//! crossed from its caller's task to its connection's task and back (two
//! task wake-ups), and a read was tried before the answer could be there
//! (a `recvfrom` that fails with `EAGAIN` per request). Polling hyper's
//! connection in the caller's task still left 0.77. The driver's requests
//! are its own (a method, a path, two or three headers, a JSON body), so
//! they are written directly; answers are parsed by `httparse` (hyper's
//! own parser) and framed as RFC 9112 §6.3 says: by length, chunked, or
//! until the target closes.
//!
//! Contract:
//! - a request goes out on an idle connection that is still open (the most
//!   recently used first: it is the least likely to have been closed by the
//!   target), else on a new one; an idle connection the target closed, or
//!   sent unasked bytes on, is dropped when it is taken;
//! - a request is sent once: a reused connection that failed before
//!   accepting a byte of it gets it sent on another; once a byte was
//!   written, whether the target acted on it is unknown, and the call fails;
//! - a connection goes back to the pool only once its answer was read to
//!   the end, nothing followed it and the target did not ask to close; a
//!   call abandoned on the way (a timeout, an answer too long) drops it,
//!   so that a late answer can never be read as the next call's;
//! - 1xx interim answers are skipped; 204 and 304 have no body;
//! - at most [`MAX_IDLE`] idle connections are kept, none idle longer than
//!   [`IDLE_FOR`].

use std::io;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Idle connections kept for reuse: more callers at once open connections
/// of their own and close them when done.
pub const MAX_IDLE: usize = 256;

/// How long an idle connection is trusted (hyper's default too): a target
/// or a proxy in between may have dropped it without a word.
pub const IDLE_FOR: Duration = Duration::from_secs(90);

/// How long a new connection may take to open.
const CONNECT_WITHIN: Duration = Duration::from_secs(3);

/// The longest answer head (status line and headers) read [bytes], and
/// the most header fields in it: hyper's defaults are of the same order.
const MAX_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 100;

/// How much is read from the socket at a time, at least [bytes].
const READ_AHEAD: usize = 8 << 10;

/// Why no answer came.
#[derive(Debug)]
pub enum Error {
    /// The base URL is not `http://host[:port][/prefix]`.
    Url(String),
    /// The request cannot be written as HTTP/1.1 (a path or header with
    /// spaces or line breaks: a token or target from outside).
    Request(String),
    /// No connection could be made.
    Connect(String),
    /// A connection was made, but the request could not be written, or
    /// it closed or broke before the answer ended, or the answer was no
    /// HTTP/1.x answer: a target that takes connections and breaks them
    /// (all of this was `Connect`, which sent its reader after a port or a
    /// network that were fine; found by probing).
    Broken(String),
    /// The answer's body is longer than the caller's cap.
    TooLarge,
}

/// A request's method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// A request: `target` is its path and query ([`Pool::path`]); the `Host`
/// and, with a body or a POST, `content-length` headers are added.
pub struct Request<'a> {
    pub method: Method,
    pub target: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// One open connection and what was read from it but not yet used.
struct Conn {
    stream: TcpStream,
    /// Bytes read; those before `pos` are used.
    buf: Vec<u8>,
    pos: usize,
    /// The request being written (kept to reuse its allocation).
    out: Vec<u8>,
    /// When it went idle.
    since: Instant,
}

struct Inner {
    /// `host:port`, as connected to.
    addr: String,
    /// The `Host` header's value.
    host: String,
    idle: Mutex<Vec<Conn>>,
}

/// Connections to one target. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct Pool {
    inner: Result<Arc<Inner>, String>,
    /// The base URL's path, put before every request's (`/prefix`), without
    /// a trailing `/`.
    prefix: String,
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

    /// Send `req` and read its answer whole, at most `max` bytes of body;
    /// `read` gets the status and the body (as sent: a chunked one put
    /// together) while they are still in the connection's buffer.
    pub async fn send<R>(
        &self,
        req: &Request<'_>,
        max: usize,
        read: impl FnOnce(u16, &[u8]) -> R,
    ) -> Result<R, Error> {
        let inner = self.inner.as_ref().map_err(|e| Error::Url(e.clone()))?;
        check(req)?;
        let mut conn = loop {
            let (mut conn, reused) = match checkout(inner) {
                Some(c) => (c, true),
                None => (connect(inner).await?, false),
            };
            conn.out.clear();
            write_request(&mut conn.out, &inner.host, req);
            match conn.write_out().await {
                Ok(()) => break conn,
                // not a byte of it taken: the target had closed the connection
                Err((0, _)) if reused => continue,
                Err((_, e)) => return Err(Error::Broken(format!("write to {}: {e}", inner.addr))),
            }
        };
        let (r, keep) = conn.answer(max, read).await?;
        if keep {
            release(inner, conn);
        }
        Ok(r)
    }
}

/// How an answer's body ends (RFC 9112 §6.3).
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// What an answer's head says.
struct Head {
    status: u16,
    framing: Framing,
    /// The connection may carry another request.
    keep: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn { stream, buf: Vec::with_capacity(READ_AHEAD), pos: 0, out: Vec::new(), since: Instant::now() }
    }

    /// Write `out` whole; on failure, how much of it was taken.
    async fn write_out(&mut self) -> Result<(), (usize, io::Error)> {
        let mut written = 0;
        while written < self.out.len() {
            match self.stream.write(&self.out[written..]).await {
                Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
                Ok(n) => written += n,
                Err(e) => return Err((written, e)),
            }
        }
        Ok(())
    }

    /// Read more of the answer; the target closing first is an error.
    async fn fill(&mut self) -> Result<(), Error> {
        if self.fill_or_end().await? {
            Ok(())
        } else {
            Err(Error::Broken("the target closed the connection before the answer ended".into()))
        }
    }

    /// Read more; false if the target closed the connection.
    async fn fill_or_end(&mut self) -> Result<bool, Error> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(READ_AHEAD);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(Error::Broken(format!("read: {e}"))),
        }
    }

    fn unread(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The answer to the request just written: `read`'s result, and whether
    /// the connection may carry the next request.
    async fn answer<R>(
        &mut self,
        max: usize,
        read: impl FnOnce(u16, &[u8]) -> R,
    ) -> Result<(R, bool), Error> {
        let head = loop {
            let head = self.head().await?;
            // interim answers (100 Continue, 103 Early Hints) come before the real one
            if !(100..200).contains(&head.status) {
                break head;
            }
            if head.status == 101 {
                return Err(Error::Broken("the target switched protocols unasked (101)".into()));
            }
        };
        let mut keep = head.keep;
        let r = match head.framing {
            Framing::Length(n) => {
                let n = usize::try_from(n).ok().filter(|&n| n <= max).ok_or(Error::TooLarge)?;
                while self.unread().len() < n {
                    self.fill().await?;
                }
                let r = read(head.status, &self.unread()[..n]);
                self.pos += n;
                r
            }
            Framing::Chunked => {
                let body = self.chunked(max).await?;
                read(head.status, &body)
            }
            Framing::UntilClose => {
                while self.fill_or_end().await? {
                    if self.unread().len() > max {
                        return Err(Error::TooLarge);
                    }
                }
                keep = false;
                let r = read(head.status, self.unread());
                self.pos = self.buf.len();
                r
            }
        };
        // bytes after the answer were never asked for: the connection's
        // framing cannot be trusted any more
        keep &= self.unread().is_empty();
        if keep {
            self.pos = 0;
            self.buf.clear();
            self.quiet();
        }
        Ok((r, keep))
    }

    /// The next answer head, consumed from the buffer.
    async fn head(&mut self) -> Result<Head, Error> {
        loop {
            if !self.unread().is_empty() {
                let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut fields);
                match resp.parse(&self.buf[self.pos..]) {
                    Ok(httparse::Status::Complete(len)) => {
                        let head = read_head(&resp)?;
                        self.pos += len;
                        return Ok(head);
                    }
                    Ok(httparse::Status::Partial) if self.unread().len() > MAX_HEAD => {
                        return Err(Error::Broken(format!("an answer head longer than {MAX_HEAD} bytes")));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(Error::Broken(format!("no HTTP/1.x answer: {e}"))),
                }
            }
            self.fill().await?;
        }
    }

    /// A chunked body put together (RFC 9112 §7.1), its trailers skipped.
    async fn chunked(&mut self, max: usize) -> Result<Vec<u8>, Error> {
        let mut body = Vec::new();
        loop {
            let (line, size) = match httparse::parse_chunk_size(self.unread()) {
                Ok(httparse::Status::Complete(c)) => c,
                Ok(httparse::Status::Partial) if self.unread().len() > MAX_HEAD => {
                    return Err(Error::Broken("a chunk size line without end".into()));
                }
                Ok(httparse::Status::Partial) => {
                    self.fill().await?;
                    continue;
                }
                Err(_) => return Err(Error::Broken("a malformed chunk size".into())),
            };
            if size == 0 {
                self.pos += line;
                return self.trailers().await.map(|()| body);
            }
            let size =
                usize::try_from(size).ok().filter(|&s| s <= max - body.len()).ok_or(Error::TooLarge)?;
            while self.unread().len() < line + size + 2 {
                self.fill().await?;
            }
            let chunk = &self.unread()[line..line + size + 2];
            if &chunk[size..] != b"\r\n" {
                return Err(Error::Broken("a chunk not followed by CRLF".into()));
            }
            body.extend_from_slice(&chunk[..size]);
            self.pos += line + size + 2;
        }
    }

    /// Skip a chunked body's trailer fields up to the empty line.
    async fn trailers(&mut self) -> Result<(), Error> {
        let mut skipped = 0;
        loop {
            match self.unread().windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.pos += 2;
                    return Ok(());
                }
                Some(end) => {
                    skipped += end + 2;
                    self.pos += end + 2;
                }
                None => self.fill().await?,
            }
            if skipped > MAX_HEAD {
                return Err(Error::Broken(format!("trailers longer than {MAX_HEAD} bytes")));
            }
        }
    }

    /// Forget that the socket was readable. The answer was read to its
    /// end and nothing followed, so tokio's readiness is stale: left set,
    /// the next call would try a read before its answer could be there (a
    /// system call that fails with `EAGAIN`). Readiness the reactor sets
    /// after this (the target closing, the next answer) is not lost:
    /// tokio clears only the readiness it was shown.
    fn quiet(&self) {
        let _ = self.stream.try_io(Interest::READABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
    }

    /// Whether an idle connection can carry a request: nothing happened on
    /// it since its last answer (the usual case, no system call), or what
    /// woke it was stale. Closed by the target, or unasked bytes on it: no.
    fn still_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// Status, framing and persistence of a parsed head (RFC 9112 §6.3, §9.3).
fn read_head(resp: &httparse::Response<'_, '_>) -> Result<Head, Error> {
    let status = resp.code.unwrap_or(0);
    let mut keep = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            for v in h.value.split(|&b| b == b',') {
                let n = decimal(v.trim_ascii())
                    .ok_or_else(|| Error::Broken("a content-length that is no number".into()))?;
                if length.is_some_and(|l| l != n) {
                    return Err(Error::Broken("content-lengths that disagree".into()));
                }
                length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // the last coding decides: chunked, or the body runs to the close
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                    keep = true;
                }
            }
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else if let Some(chunked) = chunked {
        // a length beside a transfer coding may be a smuggling attempt:
        // the coding wins and the connection is not reused
        keep &= length.is_none();
        if chunked { Framing::Chunked } else { Framing::UntilClose }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Head { status, framing, keep })
}

/// A length in decimal digits, if it is one and fits.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() { n.checked_mul(10)?.checked_add(u64::from(d - b'0')) } else { None }
    })
}

/// A request that would not be one HTTP/1.1 request as written: a target
/// or header with spaces, line breaks or control bytes.
fn check(req: &Request<'_>) -> Result<(), Error> {
    if req.target.is_empty() || !req.target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Request(format!("{:?} is no request target", req.target)));
    }
    for (name, value) in req.headers {
        let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        let value_ok = value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        if !name_ok || !value_ok {
            return Err(Error::Request(format!("header {name:?}: {value:?} cannot be sent")));
        }
    }
    Ok(())
}

fn write_request(out: &mut Vec<u8>, host: &str, req: &Request<'_>) {
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in req.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // a GET without a body says nothing of one (RFC 9110 §8.6)
    if req.method == Method::Post || !req.body.is_empty() {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(req.body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(req.body);
}

/// An idle connection that is still open, if there is one.
fn checkout(inner: &Inner) -> Option<Conn> {
    loop {
        let mut conn = inner.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        if conn.since.elapsed() > IDLE_FOR {
            // older ones lie below it: let them all go
            inner.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
            return None;
        }
        if conn.still_open() {
            return Some(conn);
        }
    }
}

fn release(inner: &Inner, mut conn: Conn) {
    conn.since = Instant::now();
    let mut idle = inner.idle.lock().unwrap_or_else(|e| e.into_inner());
    if idle.len() < MAX_IDLE {
        idle.push(conn);
    }
}

async fn connect(inner: &Inner) -> Result<Conn, Error> {
    let stream = tokio::time::timeout(CONNECT_WITHIN, TcpStream::connect(&inner.addr))
        .await
        .map_err(|_| Error::Connect(format!("connect {}: no answer in {CONNECT_WITHIN:?}", inner.addr)))?
        .map_err(|e| Error::Connect(format!("connect {}: {e}", inner.addr)))?;
    // small requests and answers: waiting for Nagle would only add latency
    stream.set_nodelay(true).map_err(|e| Error::Connect(format!("connect {}: {e}", inner.addr)))?;
    Ok(Conn::new(stream))
}

/// `(host:port, Host header, path prefix)` of an `http://` base URL.
fn parse_base(base: &str) -> Result<(String, String, String), String> {
    let uri: hyper::Uri = base.parse().map_err(|e| format!("target {base:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(s) => return Err(format!("target {base:?}: the driver speaks http, not {s}")),
        None => return Err(format!("target {base:?} is not a URL: http://host:port expected")),
    }
    let authority = uri.authority().ok_or_else(|| format!("target {base:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("target {base:?}: the driver sends no credentials in the URL"));
    }
    let port = authority.port_u16().unwrap_or(80);
    let host = authority.host();
    let addr = format!("{host}:{port}");
    if uri.query().is_some() {
        return Err(format!("target {base:?}: a base URL takes no query"));
    }
    let prefix = uri.path().trim_end_matches('/').to_owned();
    Ok((addr, authority.as_str().to_owned(), prefix))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// The answer written for a request of `path` (bodies are the path,
    /// unless said otherwise), and whether the target then closes.
    fn answer_for(path: &str, raw: &str) -> (Vec<u8>, bool) {
        let plain = |extra: &str, body: &str| {
            format!("HTTP/1.1 200 OK\r\n{extra}content-length: {}\r\n\r\n{body}", body.len()).into_bytes()
        };
        match path.strip_prefix("/api").unwrap_or(path) {
            "/echo" => (plain("", raw), false),
            "/chunked" | "/trickle" => (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n/ch\r\n5;ext=1\r\nunked\r\n0\r\nx-sum: 1\r\n\r\n"
                    .to_vec(),
                false,
            ),
            "/until-close" => (b"HTTP/1.1 200 OK\r\n\r\n/until-close".to_vec(), true),
            "/interim" => {
                let mut a = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
                a.extend(plain("", path));
                (a, false)
            }
            "/close" => (plain("connection: close\r\n", path), false),
            "/extra" => {
                let mut a = plain("", path);
                a.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
                (a, false)
            }
            "/no-content" => (b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(), false),
            "/garbage" => (b"SMTP ready\r\n\r\n".to_vec(), false),
            "/huge" => (b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n".to_vec(), false),
            "/huge-chunks" => {
                let mut a = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                for _ in 0..20 {
                    a.extend_from_slice(format!("400\r\n{}\r\n", "x".repeat(1024)).as_bytes());
                }
                (a, false)
            }
            _ => (plain("", path), false),
        }
    }

    /// A target answering requests one after another on each connection
    /// (see `answer_for`; `/slow` after 300 ms); closing each connection
    /// after its first answer if `close`. Counts the connections it accepted.
    async fn target(close: bool) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                stream.set_nodelay(true).unwrap();
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
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |n| n.parse().unwrap());
                        while buf.len() < end + 4 + length {
                            let mut chunk = [0; 1024];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let raw = String::from_utf8_lossy(&buf[..end + 4 + length]).into_owned();
                        buf.drain(..end + 4 + length);
                        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                        if path == "/slow" {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let (answer, closes) = answer_for(&path, &raw);
                        let written = if path == "/trickle" {
                            let mut ok = true;
                            for b in &answer {
                                ok &= stream.write_all(&[*b]).await.is_ok();
                                tokio::task::yield_now().await;
                            }
                            ok
                        } else {
                            stream.write_all(&answer).await.is_ok()
                        };
                        if !written || close || closes {
                            return;
                        }
                    }
                });
            }
        });
        (base, accepted)
    }

    /// One GET of `path`: its answer's status and body.
    async fn get(pool: &Pool, path: &str) -> Result<(u16, String), Error> {
        let target = pool.path(path);
        let req = Request { method: Method::Get, target: &target, headers: &[], body: b"" };
        pool.send(&req, 4096, |status, body| (status, String::from_utf8(body.to_vec()).unwrap())).await
    }

    async fn body(pool: &Pool, path: &str) -> String {
        let (status, body) = get(pool, path).await.unwrap();
        assert_eq!(status, 200, "{path}");
        body
    }

    #[tokio::test]
    async fn calls_one_after_another_share_one_connection() {
        let (base, accepted) = target(false).await;
        let pool = Pool::new(&base);
        for i in 0..20 {
            assert_eq!(body(&pool, &format!("/{i}")).await, format!("/{i}"));
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
                tokio::spawn(async move { body(&pool, &format!("/slow?{i}")).await })
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
            assert_eq!(body(&pool, &format!("/{i}")).await, format!("/{i}"));
            // the close reaches the reactor
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
        assert_eq!(body(&pool, "/next").await, "/next");
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "the abandoned call's connection was closed");
    }

    #[tokio::test]
    async fn requests_are_written_as_http_1_1() {
        let (base, _) = target(false).await;
        let pool = Pool::new(&format!("{base}/api/"));
        let target = pool.path("/echo");
        let req = Request { method: Method::Post, target: &target, headers: &[("x-a", "1")], body: b"{}" };
        let raw = pool.send(&req, 4096, |_, b| String::from_utf8(b.to_vec()).unwrap()).await.unwrap();
        let host = base.trim_start_matches("http://");
        assert_eq!(
            raw,
            format!("POST /api/echo HTTP/1.1\r\nhost: {host}\r\nx-a: 1\r\ncontent-length: 2\r\n\r\n{{}}")
        );
        let get = Request { method: Method::Get, target: &target, headers: &[], body: b"" };
        let raw = pool.send(&get, 4096, |_, b| String::from_utf8(b.to_vec()).unwrap()).await.unwrap();
        assert_eq!(raw, format!("GET /api/echo HTTP/1.1\r\nhost: {host}\r\n\r\n"));
    }

    #[tokio::test]
    async fn answers_framed_every_way_are_read_whole() {
        let (base, accepted) = target(false).await;
        let pool = Pool::new(&base);
        // chunked (with an extension and a trailer), in one write and byte by byte
        assert_eq!(body(&pool, "/chunked").await, "/chunked");
        assert_eq!(body(&pool, "/trickle").await, "/chunked");
        assert_eq!(body(&pool, "/interim").await, "/interim");
        assert_eq!(get(&pool, "/no-content").await.unwrap(), (204, String::new()));
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "all on one connection");
        // to the close: that connection is done
        assert_eq!(body(&pool, "/until-close").await, "/until-close");
        assert_eq!(body(&pool, "/after").await, "/after");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_that_cannot_be_trusted_is_not_reused() {
        let (base, accepted) = target(false).await;
        let pool = Pool::new(&base);
        assert_eq!(body(&pool, "/close").await, "/close");
        assert_eq!(body(&pool, "/a").await, "/a");
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "the target asked to close");
        assert_eq!(body(&pool, "/extra").await, "/extra");
        assert_eq!(body(&pool, "/b").await, "/b");
        assert_eq!(accepted.load(Ordering::SeqCst), 3, "bytes followed the answer");
    }

    #[tokio::test]
    async fn bad_answers_and_requests_fail_the_call() {
        let (base, _) = target(false).await;
        let pool = Pool::new(&base);
        assert!(matches!(get(&pool, "/garbage").await, Err(Error::Broken(e)) if e.contains("no HTTP")));
        assert!(matches!(get(&pool, "/huge").await, Err(Error::TooLarge)));
        assert!(matches!(get(&pool, "/huge-chunks").await, Err(Error::TooLarge)));
        for bad in ["/a b", "/a\r\nx-injected: 1", ""] {
            assert!(matches!(get(&pool, bad).await, Err(Error::Request(_))), "{bad:?}");
        }
        let target = pool.path("/echo");
        let req =
            Request { method: Method::Get, target: &target, headers: &[("x-a", "1\r\nx: 2")], body: b"" };
        assert!(matches!(pool.send(&req, 4096, |_, _| ()).await, Err(Error::Request(_))));
        assert_eq!(body(&pool, "/still").await, "/still");
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
        assert_eq!((addr.as_str(), host.as_str(), prefix.as_str()), ("127.0.0.1:8080", "127.0.0.1:8080", ""));
        let (addr, host, prefix) = parse_base("http://kf.example/api/").unwrap();
        assert_eq!((addr.as_str(), host.as_str(), prefix.as_str()), ("kf.example:80", "kf.example", "/api"));
        let (addr, _, _) = parse_base("http://[::1]:9000/").unwrap();
        assert_eq!(addr, "[::1]:9000");
        for bad in [
            "https://kf.example",
            "kf.example:80",
            "",
            "http://kf.example/?a=1",
            "http://",
            "http://u:p@kf.example",
        ] {
            assert!(parse_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lengths_in_decimal() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        for bad in [&b""[..], b"18446744073709551616", b"-1", b"1 2", b"0x10", b"+5"] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
    }
}
