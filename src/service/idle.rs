//! Idle connections given up when file descriptors run out.
//!
//! Connections are not capped: a client may keep as many open as the
//! process has descriptors. Clients that open connections and leave them
//! idle could hold every descriptor until the head timeout closed them
//! (30 s), and a new client waited that long for an answer. As nginx does
//! when its connections run out, an `accept` that fails for want of a
//! descriptor now shuts down the connections that have been idle longest
//! (no request in progress, no bytes either way for a while): an idle
//! HTTP/1 connection closes at once, and its client, as any client of a
//! kept-alive connection must, opens another when it next needs one.
//!
//! Activity is stamped with a coarse clock (an epoch counted by the accept
//! loop's ticker), one relaxed store per read or write, so the hot path
//! pays no clock read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Length of one epoch of the coarse clock.
pub const EPOCH: Duration = Duration::from_millis(250);
/// Epochs without activity before a connection counts as idle (a second
/// at least): a client between two quick requests is not idle.
pub const IDLE_EPOCHS: u64 = 4;
/// Most connections shut down per failed `accept` (nginx drains 32).
pub const DRAIN_AT_ONCE: usize = 32;

/// Whether `accept` failed for want of a file descriptor: the process's
/// (EMFILE) or the system's (ENFILE), 24 and 23 on Linux, the BSDs and
/// macOS alike. std names neither as an `ErrorKind`.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// The coarse clock, shared by the accept loop and every connection.
#[derive(Debug, Default, Clone)]
pub struct Epochs(Arc<AtomicU64>);

impl Epochs {
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn tick(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the accept loop knows of one connection.
#[derive(Debug)]
pub struct Watch {
    epochs: Epochs,
    last_active: AtomicU64,
    /// Requests whose answer has not been handed to hyper yet.
    busy: AtomicU32,
    /// Notified to shut the connection down gracefully.
    pub drain: Notify,
}

impl Watch {
    pub fn new(epochs: Epochs) -> Arc<Watch> {
        let now = epochs.now();
        Arc::new(Watch {
            epochs,
            last_active: AtomicU64::new(now),
            busy: AtomicU32::new(0),
            drain: Notify::new(),
        })
    }

    fn stamp(&self) {
        self.last_active.store(self.epochs.now(), Ordering::Relaxed);
    }

    /// Since when the connection has been idle (`None` while a request is
    /// in progress).
    fn idle_since(&self) -> Option<u64> {
        (self.busy.load(Ordering::Relaxed) == 0).then(|| self.last_active.load(Ordering::Relaxed))
    }
}

/// Ask the connections idle for [`IDLE_EPOCHS`] or more, longest idle
/// first, at most [`DRAIN_AT_ONCE`], to shut down; how many were asked.
pub fn drain_idle<'a>(watches: impl Iterator<Item = &'a Arc<Watch>>, now: u64) -> usize {
    let mut idle: Vec<(u64, &Arc<Watch>)> = watches
        .filter_map(|w| {
            w.idle_since().filter(|&since| now.saturating_sub(since) >= IDLE_EPOCHS).map(|s| (s, w))
        })
        .collect();
    let n = idle.len().min(DRAIN_AT_ONCE);
    if n == 0 {
        return 0;
    }
    idle.select_nth_unstable_by_key(n - 1, |&(since, _)| since);
    for (_, w) in &idle[..n] {
        w.drain.notify_one();
    }
    n
}

/// `io` whose reads and writes stamp its [`Watch`].
#[derive(Debug)]
pub struct Stamped<S> {
    io: S,
    watch: Arc<Watch>,
}

impl<S> Stamped<S> {
    pub fn new(io: S, watch: Arc<Watch>) -> Self {
        Stamped { io, watch }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stamped<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if r.is_ready() {
            this.watch.stamp();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stamped<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if r.is_ready() {
            this.watch.stamp();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if r.is_ready() {
            this.watch.stamp();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A connection's service: each request counts as in progress until its
/// answer is handed back (a long-poll that waits is not idle).
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    watch: Arc<Watch>,
}

impl<S> Counted<S> {
    pub fn new(inner: S, watch: Arc<Watch>) -> Self {
        Counted { inner, watch }
    }
}

impl<S, R> hyper::service::Service<R> for Counted<S>
where
    S: hyper::service::Service<R>,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = InProgress<S::Future>;

    fn call(&self, req: R) -> Self::Future {
        self.watch.busy.fetch_add(1, Ordering::Relaxed);
        InProgress { inner: self.inner.call(req), watch: self.watch.clone() }
    }
}

/// A request's answer in the making; dropped (answered or abandoned), it
/// no longer counts.
pub struct InProgress<F> {
    inner: F,
    watch: Arc<Watch>,
}

impl<F: Future + Unpin> Future for InProgress<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

impl<F> Drop for InProgress<F> {
    fn drop(&mut self) {
        self.watch.stamp();
        self.watch.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_want_of_descriptors_drains() {
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(24)));
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(23)));
        // ECONNABORTED, a client gone before its connection was accepted
        assert!(!out_of_descriptors(&io::Error::from_raw_os_error(103)));
        assert!(!out_of_descriptors(&io::Error::from(io::ErrorKind::ConnectionAborted)));
    }

    #[test]
    fn the_longest_idle_are_drained_and_busy_ones_never() {
        let epochs = Epochs::default();
        let watches: Vec<_> = (0..40).map(|_| Watch::new(epochs.clone())).collect();
        for _ in 0..3 {
            epochs.tick();
        }
        // 0..40 active at epoch 3 in reverse order of index, then some later
        for (i, w) in watches.iter().enumerate() {
            w.last_active.store(40 - i as u64, Ordering::Relaxed);
        }
        watches[39].busy.store(1, Ordering::Relaxed);
        // at epoch 43: idle for IDLE_EPOCHS or more are those active at 39 or before
        let now = 43;
        let asked = drain_idle(watches.iter(), now);
        assert_eq!(asked, DRAIN_AT_ONCE, "at most DRAIN_AT_ONCE at once");
        let drained: Vec<usize> = (0..40)
            .filter(|&i| {
                // a stored permit makes `notified` ready at once
                let n = watches[i].drain.notified();
                let mut n = std::pin::pin!(n);
                let waker = std::task::Waker::noop();
                n.as_mut().poll(&mut Context::from_waker(waker)).is_ready()
            })
            .collect();
        // the busy one (39, the longest idle) is left; active at 40 (i = 0) is too recent
        assert!(!drained.contains(&39) && !drained.contains(&0), "{drained:?}");
        // the 32 longest idle of the rest: i = 38 down to 7
        assert_eq!(drained, (7..39).collect::<Vec<_>>());
        // at epoch 5 the longest idle but busy (active at 1) is 38, active at 2: not yet idle
        assert_eq!(drain_idle(watches.iter(), 2 + IDLE_EPOCHS - 1), 0);
        assert_eq!(drain_idle(watches.iter(), 2 + IDLE_EPOCHS), 1);
    }
}
