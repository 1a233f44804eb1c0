//! Response bodies, and the access log line written when a body is done.
//!
//! One enum instead of a boxed `dyn Body` so a hit (a single `Bytes`) costs no
//! allocation beyond the response itself. The access-log record and the in-flight guard
//! ride on the body because a request is only over when its last byte is written (or
//! the viewer hung up): that is when timings and byte counts are known.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// What a body yields: bytes, or an error that makes hyper abort the connection (a
/// truncated response must not look complete to the viewer).
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) enum Kind {
    Empty,
    Full(Option<Bytes>),
    /// Fed by a reader task following an in-flight fill (see [`crate::fill`]).
    Channel {
        rx: mpsc::Receiver<Result<Bytes, BodyError>>,
        len: Option<u64>,
    },
    /// A pass-through response straight from the upstream; a gap longer than `idle`
    /// between two chunks ends it with an error (a hung upstream never holds a viewer).
    Upstream {
        body: Incoming,
        idle: std::time::Duration,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

/// Counts one request as in flight until dropped.
pub(crate) struct InFlight(Arc<Metrics>);

impl InFlight {
    pub(crate) fn new(metrics: &Arc<Metrics>) -> InFlight {
        metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(metrics.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The access-log record, completed as the body is sent.
pub(crate) struct Access {
    pub method: http::Method,
    /// The request target as received (cloning a `Uri` shares its bytes: no copy).
    pub target: http::Uri,
    pub peer: std::net::SocketAddr,
    pub status: u16,
    pub cache: &'static str,
    pub started: Instant,
    /// Time to response head.
    pub head_us: u64,
    pub upstream: Option<String>,
    pub bytes: u64,
    pub complete: bool,
    /// The file log (`--access-log`); `None`: a `tracing` event.
    pub file: Option<crate::access::AccessLog>,
}

impl Drop for Access {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            // Moved, not formatted: the writer thread formats (see `crate::access`).
            let at = std::time::Instant::now();
            file.log(crate::access::Record {
                at,
                peer: self.peer,
                method: std::mem::take(&mut self.method),
                target: dashcdn_http::access_log::Target::of(&self.target),
                status: self.status,
                cache: self.cache,
                bytes: self.bytes,
                complete: self.complete,
                head_us: self.head_us,
                total_us: at
                    .saturating_duration_since(self.started.into_std())
                    .as_micros() as u64,
                upstream: self.upstream.take(),
            });
            return;
        }
        let path = self
            .target
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        // Admin requests (`/_edge/healthz` probed by geodns every few seconds, metrics
        // scrapes) are logged at debug, so the info-level log is the viewers' traffic.
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    target: "dashcdn_edge::access",
                    peer = %self.peer,
                    method = %self.method,
                    path = %dashcdn_http::access_log::clip(path, 2048),
                    status = self.status,
                    cache = self.cache,
                    bytes = self.bytes,
                    complete = self.complete,
                    head_ms = self.head_us as f64 / 1000.0,
                    total_ms = self.started.elapsed().as_secs_f64() * 1000.0,
                    upstream = self.upstream.as_deref().unwrap_or("-"),
                    "access"
                )
            };
        }
        if path.starts_with("/_edge/") {
            line!(debug);
        } else {
            line!(info);
        }
    }
}

pub(crate) struct EdgeBody {
    kind: Kind,
    pub(crate) access: Option<Box<Access>>,
    pub(crate) _in_flight: Option<InFlight>,
}

impl EdgeBody {
    pub(crate) fn new(kind: Kind) -> EdgeBody {
        EdgeBody {
            kind,
            access: None,
            _in_flight: None,
        }
    }

    pub(crate) fn empty() -> EdgeBody {
        EdgeBody::new(Kind::Empty)
    }

    pub(crate) fn full(b: impl Into<Bytes>) -> EdgeBody {
        EdgeBody::new(Kind::Full(Some(b.into())))
    }

    fn sent(&mut self, n: usize) {
        if let Some(a) = &mut self.access {
            a.bytes += n as u64;
        }
    }

    fn done(&mut self) {
        if let Some(a) = &mut self.access {
            a.complete = true;
        }
    }
}

impl Default for EdgeBody {
    fn default() -> EdgeBody {
        EdgeBody::empty()
    }
}

impl Body for EdgeBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Channel { rx, .. } => match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            Kind::Upstream { body, idle, timer } => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) => {
                    *timer = None;
                    match f.into_data() {
                        Ok(d) => Poll::Ready(Some(Ok(Frame::data(d)))),
                        // Trailers are dropped: nothing a viewer of a segment needs.
                        Err(_) => Poll::Ready(None),
                    }
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e) as BodyError))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => {
                    let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(*idle)));
                    match t.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Some(Err("upstream body stalled".into()))),
                        Poll::Pending => Poll::Pending,
                    }
                }
            },
        };
        match &polled {
            Poll::Ready(Some(Ok(f))) => {
                let n = f.data_ref().map_or(0, |d| d.len());
                this.sent(n);
                // hyper stops polling once a sized body has given all its bytes, so the
                // final `None` may never come: the last byte is what completes it.
                let sized_done = match (&this.kind, &this.access) {
                    (Kind::Channel { len: Some(len), .. }, Some(a)) => a.bytes >= *len,
                    _ => false,
                };
                if sized_done || this.is_end_stream() {
                    this.done();
                }
            }
            Poll::Ready(None) => this.done(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.is_none(),
            Kind::Channel { len, .. } => *len == Some(0),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Channel { len: Some(n), .. } => SizeHint::with_exact(*n),
            Kind::Channel { len: None, .. } => SizeHint::default(),
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}
