//! A connection whose writes may not stall for ever.
//!
//! hyper bounds how long a client may take to send a request's head (and
//! the service its body), but not how long an answer may wait to be
//! written. A client that pipelines requests and never reads the answers
//! fills its socket's buffers, and the connection then waits on a write
//! with nobody to wake it: it held its socket and buffers for ever, and
//! enough of them ran the process out of file descriptors. [`WriteStall`]
//! fails a write (and so the connection) once it has made no progress for
//! its limit; a client that reads, however slowly, keeps it going.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `io` whose writes fail after `limit` without progress.
#[derive(Debug)]
pub struct WriteStall<S> {
    io: S,
    limit: Duration,
    /// Since the first write that found the socket full, unless one has
    /// gone through since.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteStall<S> {
    pub fn new(io: S, limit: Duration) -> Self {
        WriteStall { io, limit, stalled: None }
    }

    /// `r`, a write's outcome: progress clears the stall; no progress for
    /// the limit is an error (the timer wakes the task to find out).
    fn watch<T>(&mut self, r: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            let e = io::Error::new(io::ErrorKind::TimedOut, "the client has not read its answers");
            return Poll::Ready(Err(e));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch(r, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_reads_fails_after_the_limit_and_a_slow_reader_does_not() {
        let (a, b) = tokio::io::duplex(64);
        let mut w = WriteStall::new(a, Duration::from_secs(30));
        // nobody reads: the buffer fills, then the write waits 30 s and fails
        let started = tokio::time::Instant::now();
        let e = w.write_all(&[7; 1000]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        // a reader taking 20 s per 64 bytes keeps a writer going: each
        // write makes progress within the limit
        let (a, mut b2) = tokio::io::duplex(64);
        let mut w = WriteStall::new(a, Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while got.len() < 1000 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                let n = b2.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        w.write_all(&[9; 1000]).await.unwrap();
        assert_eq!(reader.await.unwrap(), vec![9; 1000]);
        drop(b);
    }
}
