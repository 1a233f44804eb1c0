//! The one accept loop of origin and edge: hyper's HTTP/1 connection with the
//! protections `axum::serve` lacks, so both servers hold the same promises.
//!
//! - **Connection cap** (`max_connections`) and **per-client cap**
//!   (`max_connections_per_client`, by source address): beyond either, a short 503 with
//!   `Connection: close`, so an edge, geodns or a person sees why rather than a reset.
//! - **Header timeout**: a connection has `header_timeout` to send a whole request head,
//!   counted from the accept (a fresh connection) or from the first byte of the next
//!   request (a kept-alive one). Slowloris connections are closed at it.
//! - **Idle timeout**: a kept-alive connection with no request for `idle_timeout` is closed.
//! - **Send timeout**: a response whose client accepts no byte for `send_timeout` is
//!   dropped with its connection (nginx's and Varnish's `send_timeout`), so slow readers
//!   cannot pin response bodies in memory.
//! - **Head size**: a request head over `max_header_bytes` gets 431 (hyper).
//! - **HTTP/1 strictness** (RFC 9112 §3.2, §6.1): an HTTP/1.1 request without exactly one
//!   `Host`, or with `Transfer-Encoding` sent twice, gets 400 and the connection closes.
//!
//! hyper's own `header_read_timeout` is off: it starts whenever hyper waits for a head,
//! including on an idle kept-alive connection, so it cannot tell a slowloris from a
//! quiet edge. A watchdog per connection reads what the connection's I/O and requests
//! did (a few atomics updated by [`Watched`] and the service) and closes the connection
//! when the deadline of its current state passes.
//!
//! The server gives each connection's service its peer address (the edge logs it, rate
//! limits use it) and reports what happens to connections to an [`Observer`], which each
//! server turns into its own metrics.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, TRANSFER_ENCODING};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::{debug, warn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The limits in force, resolved (see [`fd_limits`] for a cap that fits the process).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; beyond it a new connection gets 503 and is closed.
    pub max_connections: usize,
    /// Connections one client address may hold at once; beyond it, 503 and close.
    pub max_connections_per_client: usize,
    /// Time a new connection (or a kept-alive one, for its next request) has to send a
    /// whole request head.
    pub header_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time a response may go without the client accepting a byte.
    pub send_timeout: Duration,
    /// Longest request head (request line + headers); 431 beyond.
    pub max_header_bytes: usize,
    /// How long shutdown waits for open connections to finish their responses.
    pub drain_timeout: Duration,
    /// The body of the 503 a refused connection gets, e.g. `edge at capacity`.
    pub busy_text: &'static str,
}

impl Default for Limits {
    /// A cap derived from the open-file limit, a quarter of it per client, 10 s for a
    /// head, 60 s idle, 30 s without send progress, 16 KiB heads.
    fn default() -> Self {
        let (_, max_connections) = fd_limits();
        Limits {
            max_connections,
            max_connections_per_client: (max_connections / 4).max(1),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
            drain_timeout: Duration::from_secs(10),
            busy_text: "at capacity",
        }
    }
}

/// What happened to a connection, for the server's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnEvent {
    /// Accepted and served.
    Accepted,
    /// Refused: `max_connections` were open.
    RefusedCapacity,
    /// Refused: its address held `max_connections_per_client`.
    RefusedPerClient,
    /// Closed: no whole request head within `header_timeout`.
    HeaderTimeout,
    /// Closed: kept alive with no request for `idle_timeout`.
    IdleTimeout,
    /// Closed: the client accepted no byte of a response for `send_timeout`.
    SendTimeout,
    /// An accepted connection ended (for whatever reason): one fewer open.
    Closed,
}

impl ConnEvent {
    /// A label value for metrics (`accepted`, `refused_capacity`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnEvent::Accepted => "accepted",
            ConnEvent::RefusedCapacity => "refused_capacity",
            ConnEvent::RefusedPerClient => "refused_per_client",
            ConnEvent::HeaderTimeout => "header_timeout",
            ConnEvent::IdleTimeout => "idle_timeout",
            ConnEvent::SendTimeout => "send_timeout",
            ConnEvent::Closed => "closed",
        }
    }
}

/// Told what happens to connections; each server turns it into its metrics.
pub trait Observer: Send + Sync + 'static {
    fn event(&self, event: ConnEvent);
}

/// No metrics.
impl Observer for () {
    fn event(&self, _: ConnEvent) {}
}

/// Counts of [`ConnEvent`]s and the connections open, for servers that want plain atomics.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    pub refused_capacity: AtomicU64,
    pub refused_per_client: AtomicU64,
    pub header_timeout: AtomicU64,
    pub idle_timeout: AtomicU64,
    pub send_timeout: AtomicU64,
}

impl Observer for ConnStats {
    fn event(&self, event: ConnEvent) {
        let counter = match event {
            ConnEvent::Accepted => {
                self.open.fetch_add(1, Ordering::Relaxed);
                &self.accepted
            }
            ConnEvent::Closed => {
                self.open.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            ConnEvent::RefusedCapacity => &self.refused_capacity,
            ConnEvent::RefusedPerClient => &self.refused_per_client,
            ConnEvent::HeaderTimeout => &self.header_timeout,
            ConnEvent::IdleTimeout => &self.idle_timeout,
            ConnEvent::SendTimeout => &self.send_timeout,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Serves HTTP/1.1 on `listener` until `shutdown`, then lets open connections finish (up
/// to `limits.drain_timeout`). `make_service` is called once per connection with the
/// peer's address; for an axum `Router`, wrap it in
/// `hyper_util::service::TowerToHyperService`.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    limits: Limits,
    observer: Arc<dyn Observer>,
    make_service: M,
    shutdown: impl Future<Output = ()>,
) where
    M: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size((limits.max_header_bytes * 2).max(8192))
        .keep_alive(true);
    let limits = Arc::new(limits);
    let slots = Arc::new(Slots::default());
    let graceful = GracefulShutdown::new();
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
                observer.event(event);
                debug!(%peer, ?event, "connection refused");
                tokio::spawn(reject(stream, limits.busy_text));
                continue;
            }
        };
        observer.event(ConnEvent::Accepted);
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "cannot set TCP_NODELAY");
        }
        let state = Arc::new(ConnState::new());
        let service = {
            let state = Arc::clone(&state);
            let inner = Arc::new(make_service(peer));
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let state = Arc::clone(&state);
                let inner = Arc::clone(&inner);
                async move { Ok::<_, Infallible>(handle(&*inner, state, request).await) }
            })
        };
        let io = TokioIo::new(Watched {
            inner: stream,
            state: Arc::clone(&state),
        });
        let conn = graceful.watch(builder.serve_connection(io, service));
        let observer = Arc::clone(&observer);
        let limits = Arc::clone(&limits);
        tokio::spawn(async move {
            tokio::select! {
                ended = conn => if let Err(error) = ended {
                    debug!(%peer, %error, "connection ended with an error");
                },
                event = watchdog(&state, &limits) => {
                    debug!(%peer, ?event, "closing connection");
                    observer.event(event);
                }
            }
            observer.event(ConnEvent::Closed);
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.drain_timeout) => {
            warn!("connections still open after {:?}; closing", limits.drain_timeout);
        }
    }
}

/// Past a cap: a short 503 and close, so clients see why.
async fn reject(mut stream: TcpStream, busy_text: &'static str) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{busy_text}\n",
        busy_text.len() + 1
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// One request: the HTTP/1 checks hyper leaves to the server, then the service; the
/// response body is wrapped so the watchdog knows when it is done.
async fn handle<S, B>(
    service: &S,
    state: Arc<ConnState>,
    request: Request<Incoming>,
) -> Response<Served<B>>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
{
    state.request_started();
    let guard = InFlight(Arc::clone(&state));
    if let Some(reason) = strictness(&request) {
        debug!(reason, "bad request");
        let mut response = Response::new(Served::Refused {
            body: Full::new(Bytes::from(format!("bad request: {reason}\n"))),
            _guard: guard,
        });
        *response.status_mut() = StatusCode::BAD_REQUEST;
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let response = match service.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    response.map(|body| Served::Inner {
        body,
        _guard: guard,
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
    fn take(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Result<Slot, ConnEvent> {
        if self.total.load(Ordering::Relaxed) >= limits.max_connections {
            return Err(ConnEvent::RefusedCapacity);
        }
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let held = per_client.entry(ip).or_default();
        if *held >= limits.max_connections_per_client {
            return Err(ConnEvent::RefusedPerClient);
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
    fn deadline(&self, limits: &Limits) -> (u64, ConnEvent) {
        let ms = |d: Duration| d.as_millis() as u64;
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return match self.write_blocked.load(Ordering::Relaxed) {
                // Producing the response, or writing freely: nothing to time.
                NEVER => (NEVER, ConnEvent::SendTimeout),
                since => (since + ms(limits.send_timeout), ConnEvent::SendTimeout),
            };
        }
        let head = self.head_started.load(Ordering::Relaxed);
        if head != NEVER {
            return (head + ms(limits.header_timeout), ConnEvent::HeaderTimeout);
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            // A fresh connection owes its first request head from the accept.
            return (ms(limits.header_timeout), ConnEvent::HeaderTimeout);
        }
        let idle = self.idle_since.load(Ordering::Relaxed);
        (idle + ms(limits.idle_timeout), ConnEvent::IdleTimeout)
    }
}

/// Resolves when the connection's current deadline passes, with why. The state can move
/// to an earlier deadline while it sleeps, so it looks again at least every `tick`.
async fn watchdog(state: &ConnState, limits: &Limits) -> ConnEvent {
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

pin_project_lite::pin_project! {
    /// A response body that keeps its request [`InFlight`] until hyper drops it: the
    /// service's own body, or the server's 400 for a request it refused.
    #[project = ServedProj]
    pub enum Served<B> {
        Inner { #[pin] body: B, _guard: InFlight },
        Refused { #[pin] body: Full<Bytes>, _guard: InFlight },
    }
}

impl<B> Body for Served<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project() {
            ServedProj::Inner { body, .. } => body.poll_frame(cx).map_err(Into::into),
            ServedProj::Refused { body, .. } => body.poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Served::Inner { body, .. } => body.is_end_stream(),
            Served::Refused { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Served::Inner { body, .. } => body.size_hint(),
            Served::Refused { body, .. } => body.size_hint(),
        }
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
/// cap derived from it: the limit minus a reserve for files, upstream sockets, 503 answers
/// in progress, the listener, logs and the runtime. Raising is done once per process.
pub fn fd_limits() -> (u64, usize) {
    static RAISED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let nofile = *RAISED.get_or_init(|| match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(error) => {
            warn!(%error, "cannot read or raise the open-file limit; assuming 1024");
            1024
        }
    });
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

    fn limits() -> Limits {
        Limits {
            max_connections: 2,
            max_connections_per_client: 1,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
            drain_timeout: Duration::from_secs(10),
            busy_text: "busy",
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
            Some(ConnEvent::RefusedPerClient)
        );
        let _second = slots.take(b, &limits()).unwrap();
        assert_eq!(
            slots.take(c, &limits()).err(),
            Some(ConnEvent::RefusedCapacity)
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
        assert_eq!(state.deadline(&l), (10_000, ConnEvent::HeaderTimeout));
        state.request_started();
        assert_eq!(state.deadline(&l).0, NEVER);
        tokio::time::advance(Duration::from_secs(1)).await;
        state.write_blocked.store(state.now(), Ordering::Relaxed);
        assert_eq!(state.deadline(&l), (31_000, ConnEvent::SendTimeout));
        state.write_blocked.store(NEVER, Ordering::Relaxed);
        tokio::time::advance(Duration::from_secs(1)).await;
        state.response_finished();
        assert_eq!(state.deadline(&l), (62_000, ConnEvent::IdleTimeout));
        state
            .head_started
            .store(state.now() + 500, Ordering::Relaxed);
        assert_eq!(state.deadline(&l), (12_500, ConnEvent::HeaderTimeout));
    }
}
