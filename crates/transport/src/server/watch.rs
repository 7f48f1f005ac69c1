//! A connection's timers (`docs/protocol.md` 3.5): how long it may sit with
//! nothing in flight (idle), how long an HTTP/1.1 request's headers may take
//! from their first byte, and how long a request's body may take. hyper's
//! own header timer runs from the moment a connection is ready for the next
//! request, so it would close idle HTTP/1.1 connections at the header
//! timeout; these timers tell the two apart and cover h2 as well.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::connections::ConnectionLimits;

/// No byte read since the connection last had nothing in flight.
const NONE: u64 = u64::MAX;

/// What one connection is doing, shared by its reader, its service and its
/// watchdog.
pub(super) struct Watch {
    start: Instant,
    /// Requests whose answer is not ready yet.
    in_flight: AtomicUsize,
    /// When (ms after `start`) the last request's answer was ready, or the
    /// connection was set up.
    waiting_since: AtomicU64,
    /// When (ms after `start`) the first byte came since then (`NONE`).
    head_since: AtomicU64,
    changed: Notify,
}

/// Why the watchdog closes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expired {
    /// Nothing in flight for the idle timeout.
    Idle,
    /// An HTTP/1.1 request's headers did not arrive in time.
    Headers,
}

/// A request in flight on a connection, until dropped.
pub(super) struct Busy(Arc<Watch>);

impl Watch {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Watch {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            waiting_since: AtomicU64::new(0),
            head_since: AtomicU64::new(NONE),
            changed: Notify::new(),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn read_some(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self
                .head_since
                .compare_exchange(NONE, self.now(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// A request's headers are in: it is in flight until the guard drops.
    pub(super) fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Release);
        Busy(self.clone())
    }

    /// When the connection is due to close as things stand, and why;
    /// `None` while a request is in flight (the request and body timeouts
    /// bound those).
    fn due(&self, limits: &ConnectionLimits, h2: bool) -> Option<(Instant, Expired)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle = self.at(self.waiting_since.load(Ordering::Acquire)) + limits.idle;
        let head = self.head_since.load(Ordering::Acquire);
        if !h2 && head != NONE {
            let headers = self.at(head) + limits.headers;
            if headers < idle {
                return Some((headers, Expired::Headers));
            }
        }
        Some((idle, Expired::Idle))
    }

    /// Waits until the connection is due to close.
    pub(super) async fn expired(&self, limits: &ConnectionLimits, h2: bool) -> Expired {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the state is read: no change is missed.
            changed.as_mut().enable();
            match self.due(limits, h2) {
                None => changed.await,
                Some((at, why)) => {
                    if Instant::now() >= at {
                        return why;
                    }
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let watch = &self.0;
        if watch.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            watch.waiting_since.store(watch.now(), Ordering::Release);
            watch.head_since.store(NONE, Ordering::Release);
            watch.changed.notify_one();
        }
    }
}

/// A connection's stream (TLS, decrypted), telling its watch when bytes
/// arrive.
pub(super) struct Watched<T> {
    inner: T,
    watch: Arc<Watch>,
}

impl<T> Watched<T> {
    pub(super) fn new(inner: T, watch: Arc<Watch>) -> Self {
        Watched { inner, watch }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.watch.read_some();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that must be in by a deadline; after it, reading fails
/// with [`BodyTimedOut`].
pub(super) struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    /// Set the first time the body is not all there at once.
    sleep: Option<Pin<Box<Sleep>>>,
}

/// The body did not arrive within the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the body did not arrive in time")]
pub struct BodyTimedOut;

impl TimedBody {
    pub(super) fn new(inner: Incoming, timeout: Duration) -> Self {
        TimedBody {
            inner,
            deadline: Instant::now() + timeout,
            sleep: None,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = tower::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
