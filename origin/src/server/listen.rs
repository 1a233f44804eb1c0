//! The accept loop: hyper's HTTP/1 connection with the protections `axum::serve` lacks.
//!
//! - **Connection cap** (`max_connections`) and **per-client cap**
//!   (`max_connections_per_client`, by source address): beyond either, a short 503 with
//!   `Connection: close`, so an edge or a person sees why rather than a reset.
//! - **Header timeout**: a connection has `header_timeout` to send a whole request head,
//!   counted from the accept (a fresh connection) or from the first byte of the next
//!   request (a kept-alive one). Slowloris connections are closed at it.
//! - **Idle timeout**: a kept-alive connection with no request for `idle_timeout` is closed.
//! - **Send timeout**: a response whose client accepts no byte for `send_timeout` is
//!   dropped with its connection (nginx's `send_timeout`), so slow readers cannot pin
//!   buffered segment bodies in memory.
//! - **HTTP/1 strictness** (RFC 9112 §3.2, §6.1): an HTTP/1.1 request without exactly one
//!   `Host`, or with `Transfer-Encoding` sent twice, gets 400 and the connection closes.
//!
//! hyper's own `header_read_timeout` is off: it starts whenever hyper waits for a head,
//! including on an idle kept-alive connection, so it cannot tell a slowloris from a
//! quiet edge. A watchdog per connection reads what the connection's I/O and requests
//! did (a few atomics updated by [`Watched`] and the service) and closes the connection
//! when the deadline of its current state passes.
//!
//! Written for the origin while the shared `dashcdn_http::serve` is being written; it is
//! generic over the axum `Router` and keeps no origin state, so it can move there.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::header::{CONNECTION, HOST, TRANSFER_ENCODING};
use axum::http::{HeaderValue, Request, Response, StatusCode, Version};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::metrics::{ConnEvent, Metrics};

/// How long shutdown waits for open connections to finish their responses.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request head accepted (431 beyond): MPD and segment requests are a few
/// hundred bytes; 16 KiB leaves room for long cookies from a browser on the same host.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The limits in force, with the defaults resolved.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resolved {
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_client: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) send_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown`, then lets open connections finish
/// (up to [`DRAIN_TIMEOUT`]).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Resolved,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(MAX_HEADER_BYTES * 4)
        .keep_alive(true);
    let slots = Arc::new(Slots::default());
    let graceful = GracefulShutdown::new();
    metrics.set_connections_max(limits.max_connections);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning. The derived cap
                    // keeps descriptors in reserve, so this means something else holds them.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match slots.take(peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(event) => {
                metrics.connection(event);
                debug!(%peer, ?event, "connection refused");
                tokio::spawn(reject(stream));
                continue;
            }
        };
        metrics.connection(ConnEvent::accepted);
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "cannot set TCP_NODELAY");
        }
        let state = Arc::new(ConnState::new());
        let service = {
            let state = Arc::clone(&state);
            let router = router.clone();
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let state = Arc::clone(&state);
                let router = router.clone();
                async move { Ok::<_, Infallible>(handle(router, state, request).await) }
            })
        };
        let io = TokioIo::new(Watched {
            inner: stream,
            state: Arc::clone(&state),
        });
        let conn = graceful.watch(builder.serve_connection(io, service));
        let metrics = Arc::clone(&metrics);
        let open = metrics.connections_open().clone();
        open.inc();
        tokio::spawn(async move {
            tokio::select! {
                ended = conn => if let Err(error) = ended {
                    debug!(%peer, %error, "connection ended with an error");
                },
                event = watchdog(&state, &limits) => {
                    debug!(%peer, ?event, "closing connection");
                    metrics.connection(event);
                }
            }
            open.dec();
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => warn!("connections still open after {DRAIN_TIMEOUT:?}; closing"),
    }
}

/// Past a cap: a short 503 and close, so clients see why.
async fn reject(mut stream: TcpStream) {
    const ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
        retry-after: 1\r\nconnection: close\r\ncontent-length: 19\r\n\r\norigin at capacity\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(ANSWER).await?;
        stream.shutdown().await
    })
    .await;
}

/// One request: the HTTP/1 checks hyper leaves to the server, then the router; the
/// response body is wrapped so the watchdog knows when it is done.
async fn handle(
    router: Router,
    state: Arc<ConnState>,
    request: Request<Incoming>,
) -> Response<Body> {
    state.request_started();
    let guard = InFlight(Arc::clone(&state));
    let response = match strictness(&request) {
        Some(reason) => {
            debug!(reason, "bad request");
            let mut response = Response::new(Body::from(format!("bad request: {reason}\n")));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            response
        }
        None => match router.oneshot(request.map(Body::new)).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
    };
    response.map(|body| {
        Body::new(Tracked {
            body,
            _guard: guard,
        })
    })
}

/// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
/// HTTP/1.1 request message that lacks a Host header field and to any request message
/// that contains more than one Host header field line". §6.1 makes a repeated
/// `Transfer-Encoding` a framing we refuse rather than guess at (request smuggling).
fn strictness(request: &Request<Incoming>) -> Option<&'static str> {
    let hosts = request.headers().get_all(HOST).iter().count();
    if hosts > 1 {
        return Some("more than one Host");
    }
    if hosts == 0 && request.version() == Version::HTTP_11 {
        return Some("HTTP/1.1 without Host");
    }
    if request.headers().get_all(TRANSFER_ENCODING).iter().count() > 1 {
        return Some("Transfer-Encoding sent more than once");
    }
    None
}

/// Connections held, in total and per client address.
#[derive(Default)]
struct Slots {
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// One held connection slot; given back on drop.
struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
}

impl Slots {
    fn take(self: &Arc<Self>, ip: IpAddr, limits: &Resolved) -> Result<Slot, ConnEvent> {
        if self.total.load(Ordering::Relaxed) >= limits.max_connections {
            return Err(ConnEvent::refused_capacity);
        }
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let held = per_client.entry(ip).or_default();
        if *held >= limits.max_connections_per_client {
            return Err(ConnEvent::refused_per_client);
        }
        *held += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            slots: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.total.fetch_sub(1, Ordering::Relaxed);
        let mut per_client = self
            .slots
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = per_client.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                per_client.remove(&self.ip);
            }
        }
    }
}

/// "Not set" for the millisecond stamps below.
const NEVER: u64 = u64::MAX;

/// What one connection has been doing, in milliseconds since it was accepted.
struct ConnState {
    accepted: Instant,
    /// Requests whose response body is not finished yet.
    in_flight: AtomicUsize,
    /// Requests started on this connection.
    requests: AtomicU64,
    /// When the last response finished.
    idle_since: AtomicU64,
    /// First byte of a request head read while no request was in flight.
    head_started: AtomicU64,
    /// Since when a write has been waiting for the client to accept bytes.
    write_blocked: AtomicU64,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NEVER),
            write_blocked: AtomicU64::new(NEVER),
        }
    }

    fn now(&self) -> u64 {
        self.accepted.elapsed().as_millis() as u64
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(NEVER, Ordering::Relaxed);
    }

    fn response_finished(&self) {
        self.idle_since.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The deadline of the connection's current state, and what passing it means.
    fn deadline(&self, limits: &Resolved) -> (u64, ConnEvent) {
        let ms = |d: Duration| d.as_millis() as u64;
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return match self.write_blocked.load(Ordering::Relaxed) {
                // Producing the response, or writing freely: nothing to time.
                NEVER => (NEVER, ConnEvent::send_timeout),
                since => (since + ms(limits.send_timeout), ConnEvent::send_timeout),
            };
        }
        let head = self.head_started.load(Ordering::Relaxed);
        if head != NEVER {
            return (head + ms(limits.header_timeout), ConnEvent::header_timeout);
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            // A fresh connection owes its first request head from the accept.
            return (ms(limits.header_timeout), ConnEvent::header_timeout);
        }
        let idle = self.idle_since.load(Ordering::Relaxed);
        (idle + ms(limits.idle_timeout), ConnEvent::idle_timeout)
    }
}

/// Resolves when the connection's current deadline passes, with why. The state can move
/// to an earlier deadline while it sleeps, so it looks again at least every `tick`.
async fn watchdog(state: &ConnState, limits: &Resolved) -> ConnEvent {
    let shortest = limits
        .header_timeout
        .min(limits.idle_timeout)
        .min(limits.send_timeout);
    let tick = (shortest / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    loop {
        let (deadline, event) = state.deadline(limits);
        let now = state.now();
        if now >= deadline {
            return event;
        }
        let wait = Duration::from_millis(deadline - now).min(tick);
        tokio::time::sleep(wait).await;
    }
}

/// Counts a request in flight until its response body is dropped (sent or abandoned).
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.response_finished();
    }
}

/// A response body that keeps its request [`InFlight`] until hyper drops it.
struct Tracked {
    body: Body,
    _guard: InFlight,
}

impl HttpBody for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket, reporting read and write progress to its [`ConnState`].
struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let state = &self.state;
            if state.in_flight.load(Ordering::Relaxed) == 0
                && state.head_started.load(Ordering::Relaxed) == NEVER
            {
                state.head_started.store(state.now(), Ordering::Relaxed);
            }
        }
        polled
    }
}

impl Watched {
    fn wrote<T>(&self, polled: &Poll<io::Result<T>>) {
        match polled {
            Poll::Pending => {
                let _ = self.state.write_blocked.compare_exchange(
                    NEVER,
                    self.state.now(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            Poll::Ready(_) => self.state.write_blocked.store(NEVER, Ordering::Relaxed),
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&polled);
        polled
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

/// The open-file limit after raising the soft limit to the hard one, and the connection
/// cap derived from it: the limit minus a reserve for library files (one per request in
/// the blocking pool), 503 answers in progress, the listener, logs and the runtime.
pub(crate) fn fd_limits() -> (u64, usize) {
    let nofile = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(error) => {
            warn!(%error, "cannot read or raise the open-file limit; assuming 1024");
            1024
        }
    };
    (nofile, derived_max_connections(nofile))
}

fn derived_max_connections(nofile: u64) -> usize {
    let reserve = (nofile / 4).clamp(32, 1024);
    usize::try_from(nofile.saturating_sub(reserve).max(1)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_caps_leave_a_reserve() {
        assert_eq!(derived_max_connections(256), 192);
        assert_eq!(derived_max_connections(1024), 768);
        assert_eq!(derived_max_connections(65_536), 64_512);
        assert_eq!(derived_max_connections(20), 1);
    }

    fn limits() -> Resolved {
        Resolved {
            max_connections: 2,
            max_connections_per_client: 1,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn slots_cap_total_and_per_client() {
        let slots = Arc::new(Slots::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let first = slots.take(a, &limits()).unwrap();
        assert_eq!(
            slots.take(a, &limits()).err(),
            Some(ConnEvent::refused_per_client)
        );
        let _second = slots.take(b, &limits()).unwrap();
        assert_eq!(
            slots.take(c, &limits()).err(),
            Some(ConnEvent::refused_capacity)
        );
        drop(first);
        let _third = slots.take(a, &limits()).unwrap();
        assert_eq!(slots.per_client.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_connection_state() {
        let l = limits();
        let state = ConnState::new();
        // Fresh: the first head is owed from the accept.
        assert_eq!(state.deadline(&l), (10_000, ConnEvent::header_timeout));
        state.request_started();
        assert_eq!(state.deadline(&l).0, NEVER);
        tokio::time::advance(Duration::from_secs(1)).await;
        state.write_blocked.store(state.now(), Ordering::Relaxed);
        assert_eq!(state.deadline(&l), (31_000, ConnEvent::send_timeout));
        state.write_blocked.store(NEVER, Ordering::Relaxed);
        tokio::time::advance(Duration::from_secs(1)).await;
        state.response_finished();
        assert_eq!(state.deadline(&l), (62_000, ConnEvent::idle_timeout));
        state
            .head_started
            .store(state.now() + 500, Ordering::Relaxed);
        assert_eq!(state.deadline(&l), (12_500, ConnEvent::header_timeout));
    }
}
