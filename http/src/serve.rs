//! The one accept loop of origin and edge, for plain HTTP and HTTPS alike: hyper's HTTP/1
//! and HTTP/2 connections with the protections `axum::serve` lacks, so both servers, and
//! both their listeners, hold the same promises.
//!
//! A server hands [`serve_listeners`] its [`Listener`]s: plain ones (HTTP/1.1, plus
//! prior-knowledge HTTP/2 when [`Listener::h2c`] is on, optionally answering 308 to HTTPS,
//! [`Listener::redirect_https`]) and TLS ones ([`Listener::tls`]). One loop accepts on all of
//! them; TLS is only a different connection type: the handshake runs inside the
//! connection's own task under `handshake_timeout` and the watchdog, never in the accept
//! loop, then ALPN picks HTTP/2 or HTTP/1.1. Caps, timeouts and [`Observer`] events are the
//! same for every listener (the per-client cap counts a client's plain and TLS connections
//! together).
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
//!   cannot pin response bodies in memory. "Accepts no byte" is the socket refusing writes,
//!   and on HTTP/2 also a response body not asked for its next chunk since it handed one
//!   over: that is how a stream held at a zero flow-control window shows (its connection's
//!   socket, PINGs and other streams flow freely). hyper gives no handle to reset one
//!   stream from outside, so the whole connection closes, as for HTTP/1.
//! - **Buffers per connection**: HTTP/1 read and write buffers at most
//!   `2 × max_header_bytes` (hyper's default grows to ~400 KiB); HTTP/2 at most
//!   `H2_MAX_SEND_BUF` queued per stream beyond the client's window, and hyper's 1 MiB
//!   receive window per connection.
//! - **Head size**: a request head over `max_header_bytes` gets 431 (hyper).
//! - **TLS handshake**: a client that has not finished it within `handshake_timeout` (and
//!   the header timeout, counted from the accept) is closed; counted as a header timeout.
//!   A refused TLS connection is closed without a 503: it has no channel to read one on.
//! - **HTTP/2** (TLS ALPN `h2`, or h2c): hyper's flood limits (rapid reset, CONTINUATION,
//!   stream count, header list size, keep-alive PING), see [`Limits`]. The header timeout
//!   covers the first request; after it an HTTP/2 connection with no stream open is timed
//!   by `idle_timeout` (its frames are not request heads, so they do not restart a header
//!   clock), and the send timeout applies per stream (above).
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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST, LOCATION, TRANSFER_ENCODING};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
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
    /// TLS: a client that has not finished the handshake by then is closed.
    pub handshake_timeout: Duration,
    /// HTTP/2: streams one connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: bytes of one decoded header list (SETTINGS_MAX_HEADER_LIST_SIZE); h2 also
    /// counts CONTINUATION frames against it, which bounds a CONTINUATION flood
    /// (CVE-2024-27316 family).
    pub h2_max_header_list_size: u32,
    /// HTTP/2: remotely reset streams queued before the connection is closed with
    /// ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487).
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2: streams the server resets because of client errors before closing
    /// ("MadeYouReset").
    pub h2_max_local_error_reset_streams: usize,
    /// HTTP/2: PING interval on a quiet connection, and how long to wait for the answer
    /// (SETTINGS and PING floods are bounded inside h2 itself).
    pub h2_keepalive_interval: Duration,
    pub h2_keepalive_timeout: Duration,
}

impl Default for Limits {
    /// A cap derived from the open-file limit, a quarter of it per client, 10 s for a
    /// head (and for a TLS handshake), 60 s idle, 30 s without send progress, 16 KiB heads,
    /// 128 HTTP/2 streams per connection.
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
            handshake_timeout: Duration::from_secs(10),
            h2_max_concurrent_streams: 128,
            h2_max_header_list_size: 32 * 1024,
            h2_max_pending_accept_reset_streams: 32,
            h2_max_local_error_reset_streams: 256,
            h2_keepalive_interval: Duration::from_secs(30),
            h2_keepalive_timeout: Duration::from_secs(20),
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

/// One listening socket and how its connections are spoken.
pub struct Listener {
    tcp: TcpListener,
    kind: Kind,
    /// Where its connections are counted against the caps: the serving loop's own slots
    /// unless shared ([`Listener::share_slots`]).
    slots: Option<Arc<Slots>>,
}

#[derive(Clone)]
enum Kind {
    /// Cleartext HTTP/1.1; `h2c`: prior-knowledge HTTP/2 too; `redirect`: the HTTPS port
    /// every request not exempt ([`redirect_exempt`] with the server's `exempt` paths) is
    /// sent to with 308.
    Plain {
        h2c: bool,
        redirect: Option<u16>,
        exempt: &'static [&'static str],
    },
    /// TLS, then HTTP/2 or HTTP/1.1 by ALPN.
    Tls(TlsAcceptor),
}

impl Listener {
    /// Cleartext HTTP/1.1.
    pub fn plain(tcp: TcpListener) -> Listener {
        Listener {
            tcp,
            kind: Kind::Plain {
                h2c: false,
                redirect: None,
                exempt: &[],
            },
            slots: None,
        }
    }

    /// TLS with `config` (its ALPN list decides what is offered: `h2`, `http/1.1`; a
    /// connection that negotiates anything else, e.g. TLS-ALPN-01's `acme-tls/1`, ends after
    /// the handshake, RFC 8737 §3).
    pub fn tls(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> Listener {
        Listener {
            tcp,
            kind: Kind::Tls(TlsAcceptor::from(config)),
            slots: None,
        }
    }

    /// Plain listeners: also accept cleartext HTTP/2 with prior knowledge (RFC 9113 §3.3).
    /// There is no `Upgrade: h2c` (RFC 9113 removed it).
    pub fn h2c(mut self, on: bool) -> Listener {
        if let Kind::Plain { h2c, .. } = &mut self.kind {
            *h2c = on;
        }
        self
    }

    /// Plain listeners: answer 308 with the same URL on `https://` and `port`, except for
    /// the paths [`redirect_exempt`] keeps on plain HTTP.
    pub fn redirect_https(mut self, port: Option<u16>) -> Listener {
        if let Kind::Plain { redirect, .. } = &mut self.kind {
            *redirect = port;
        }
        self
    }

    /// Plain listeners: the server's own paths that stay on plain HTTP under
    /// [`Listener::redirect_https`] besides ACME's (its health and metrics probes, e.g.
    /// `/healthz`, `/_edge/metrics`): exact paths.
    pub fn redirect_exempt(mut self, paths: &'static [&'static str]) -> Listener {
        if let Kind::Plain { exempt, .. } = &mut self.kind {
            *exempt = paths;
        }
        self
    }

    /// Counts this listener's connections in `slots`, which listeners served by other
    /// loops (on other runtimes) may share: the connection caps then hold across them.
    pub fn share_slots(mut self, slots: Arc<Slots>) -> Listener {
        self.slots = Some(slots);
        self
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.kind, Kind::Tls(_))
    }
}

/// Paths a plain listener keeps serving under [`Listener::redirect_https`]: ACME HTTP-01
/// for every server (RFC 8555 §8.3: the CA fetches it over port 80, and a redirect would
/// only cost it a round trip), and the server's own `exempt` paths
/// ([`Listener::redirect_exempt`]): the health and metrics probes of geodns, Prometheus and
/// load balancers, which speak plain HTTP, are each server's to name.
pub fn redirect_exempt(path: &str, exempt: &[&str]) -> bool {
    path.starts_with("/.well-known/acme-challenge/") || exempt.contains(&path)
}

/// Serves HTTP/1.1 on `listener` until `shutdown` (see [`serve_listeners`]).
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
    serve_listeners(
        vec![Listener::plain(listener)],
        limits,
        observer,
        make_service,
        shutdown,
    )
    .await
}

/// Bytes one HTTP/2 stream may have queued for sending beyond what the client's window
/// lets out (hyper's default is 400 KiB); with `SETTINGS_MAX_CONCURRENT_STREAMS` it bounds
/// a connection's send side as HTTP/1's `max_buf_size` does. Body chunks are queued by
/// reference (no copy), so this limits how far ahead of the client a body is pulled.
const H2_MAX_SEND_BUF: usize = 64 * 1024;

/// The HTTP/2 limits of [`Limits`] (stream count, header list, the rapid-reset and
/// error-reset bounds, keep-alive pings), applied to hyper's own builder and to the copy
/// inside hyper-util's auto builder: two types with the same methods, so a macro.
macro_rules! h2_limits {
    ($builder:expr, $limits:expr) => {
        $builder
            .timer(TokioTimer::new())
            .max_concurrent_streams($limits.h2_max_concurrent_streams)
            .max_header_list_size($limits.h2_max_header_list_size)
            .max_pending_accept_reset_streams($limits.h2_max_pending_accept_reset_streams)
            .max_local_error_reset_streams($limits.h2_max_local_error_reset_streams)
            .keep_alive_interval($limits.h2_keepalive_interval)
            .keep_alive_timeout($limits.h2_keepalive_timeout)
            .max_send_buf_size(H2_MAX_SEND_BUF);
    };
}

/// The connection builders, made once per [`serve_listeners`] from its [`Limits`].
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// HTTP/1.1 or prior-knowledge HTTP/2 (h2c), told apart by the connection preface.
    auto: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &Limits) -> Builders {
        let max_buf = (limits.max_header_bytes * 2).max(8192);
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(max_buf)
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        h2_limits!(http2, limits);
        // hyper-util's auto builder holds its own copies of both; the same settings.
        let mut auto = auto::Builder::new(TokioExecutor::new());
        // (No max_header_size there: its read buffer bounds the head, hyper answers 431.)
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .keep_alive(true);
        h2_limits!(auto.http2(), limits);
        Builders { http1, http2, auto }
    }
}

/// Serves every listener until `shutdown`, then lets open connections finish (up to
/// `limits.drain_timeout`). `make_service` is called once per connection with the peer's
/// address; for an axum `Router`, wrap it in `hyper_util::service::TowerToHyperService`.
pub async fn serve_listeners<M, S, B>(
    listeners: Vec<Listener>,
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
    for l in listeners.iter().filter(|l| l.is_tls()) {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(%addr, "tls: listening on {addr}");
        }
    }
    let builders = Arc::new(Builders::new(&limits));
    let limits = Arc::new(limits);
    let own_slots = Arc::new(Slots::default());
    let graceful = GracefulShutdown::new();
    // Which listener is polled first turns over, so a flood on one cannot starve another.
    let mut first = 0usize;
    tokio::pin!(shutdown);
    loop {
        let accept = std::future::poll_fn(|cx| {
            let n = listeners.len();
            for i in 0..n {
                let at = (first + i) % n;
                if let Poll::Ready(r) = listeners[at].tcp.poll_accept(cx) {
                    return Poll::Ready((at, r));
                }
            }
            Poll::Pending
        });
        let (at, stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            (at, accepted) = accept => match accepted {
                Ok((stream, peer)) => (at, stream, peer),
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning. The derived cap
                    // keeps descriptors in reserve, so this means something else holds them.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        first = first.wrapping_add(1);
        let kind = listeners[at].kind.clone();
        let slots = listeners[at].slots.as_ref().unwrap_or(&own_slots);
        let slot = match slots.take(peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(event) => {
                observer.event(event);
                debug!(%peer, ?event, "connection refused");
                if let Kind::Plain { .. } = kind {
                    tokio::spawn(reject(stream, limits.busy_text));
                }
                continue;
            }
        };
        observer.event(ConnEvent::Accepted);
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "cannot set TCP_NODELAY");
        }
        let state = Arc::new(ConnState::new());
        let redirect = match kind {
            Kind::Plain {
                redirect, exempt, ..
            } => redirect.map(|port| (port, exempt)),
            Kind::Tls(_) => None,
        };
        let service = {
            let state = Arc::clone(&state);
            let inner = Arc::new(make_service(peer));
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let state = Arc::clone(&state);
                let inner = Arc::clone(&inner);
                async move { Ok::<_, Infallible>(handle(&*inner, state, redirect, request).await) }
            })
        };
        let io = Watched {
            inner: stream,
            state: Arc::clone(&state),
        };
        let watcher = graceful.watcher();
        let observer = Arc::clone(&observer);
        let limits = Arc::clone(&limits);
        let builders = Arc::clone(&builders);
        tokio::spawn(async move {
            let watchdog = watchdog(&state, &limits);
            tokio::pin!(watchdog);
            let ended = match kind {
                Kind::Plain { h2c: false, .. } => {
                    let conn = builders.http1.serve_connection(TokioIo::new(io), service);
                    drive(watcher.watch(conn), &mut watchdog).await
                }
                Kind::Plain { h2c: true, .. } => {
                    state.sniff_preface.store(true, Ordering::Relaxed);
                    let conn = builders.auto.serve_connection(TokioIo::new(io), service);
                    drive(watcher.watch(conn), &mut watchdog).await
                }
                Kind::Tls(acceptor) => {
                    let shake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(io));
                    let tls = tokio::select! {
                        event = &mut watchdog => Err(Some(event)),
                        shaken = shake => match shaken {
                            Ok(Ok(tls)) => Ok(tls),
                            Ok(Err(error)) => {
                                debug!(%peer, %error, "tls: handshake failed");
                                Err(None)
                            }
                            Err(_) => Err(Some(ConnEvent::HeaderTimeout)),
                        },
                    };
                    match tls {
                        Err(event) => event,
                        Ok(tls) => match tls.get_ref().1.alpn_protocol() {
                            Some(b"h2") => {
                                state.multiplexed.store(true, Ordering::Relaxed);
                                let conn =
                                    builders.http2.serve_connection(TokioIo::new(tls), service);
                                drive(watcher.watch(conn), &mut watchdog).await
                            }
                            None | Some(b"http/1.1") => {
                                let conn =
                                    builders.http1.serve_connection(TokioIo::new(tls), service);
                                drive(watcher.watch(conn), &mut watchdog).await
                            }
                            Some(other) => {
                                // RFC 8737 §3: a TLS-ALPN-01 validation is the handshake itself.
                                tracing::info!(%peer, alpn = %String::from_utf8_lossy(other), "tls: answered a handshake-only validation");
                                None
                            }
                        },
                    }
                }
            };
            if let Some(event) = ended {
                debug!(%peer, ?event, "closing connection");
                observer.event(event);
            }
            observer.event(ConnEvent::Closed);
            drop(slot);
        });
    }
    drop(listeners);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.drain_timeout) => {
            warn!("connections still open after {:?}; closing", limits.drain_timeout);
        }
    }
}

/// Runs a connection until it ends or its watchdog fires; `Some(why)` for the latter.
async fn drive<E: std::fmt::Display>(
    conn: impl Future<Output = Result<(), E>>,
    watchdog: &mut Pin<&mut impl Future<Output = ConnEvent>>,
) -> Option<ConnEvent> {
    tokio::select! {
        ended = conn => {
            if let Err(error) = ended {
                debug!(%error, "connection ended with an error");
            }
            None
        }
        event = watchdog => Some(event),
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

/// One request: the HTTP/1 checks hyper leaves to the server, the HTTPS redirect when the
/// listener has one, then the service; the response body is wrapped so the watchdog knows
/// when it is done.
async fn handle<S, B>(
    service: &S,
    state: Arc<ConnState>,
    redirect: Option<(u16, &'static [&'static str])>,
    request: Request<Incoming>,
) -> Response<Served<B>>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
{
    state.request_started();
    let guard = InFlight::new(Arc::clone(&state));
    let own = |status: StatusCode, text: String, guard: InFlight| {
        let mut response = Response::new(Served::Own {
            body: Full::new(Bytes::from(text)),
            guard,
        });
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        response
    };
    if let Some(reason) = strictness(&request) {
        debug!(reason, "bad request");
        let mut response = own(
            StatusCode::BAD_REQUEST,
            format!("bad request: {reason}\n"),
            guard,
        );
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    if let Some((port, _)) =
        redirect.filter(|(_, exempt)| !redirect_exempt(request.uri().path(), exempt))
    {
        return match https_location(&request, port) {
            // RFC 9110 §15.4.9: 308 keeps the method and body, unlike 301.
            Some(location) => {
                let mut response = own(
                    StatusCode::PERMANENT_REDIRECT,
                    "use https\n".to_string(),
                    guard,
                );
                response.headers_mut().insert(LOCATION, location);
                response
            }
            None => own(
                StatusCode::BAD_REQUEST,
                "bad request: no Host to redirect to https\n".to_string(),
                guard,
            ),
        };
    }
    let response = match service.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    response.map(|body| Served::Inner { body, guard })
}

/// `https://HOST[:PORT]/path?query` for a plain request: the host from the request target
/// or `Host` without its port, the HTTPS listener's port unless it is 443.
fn https_location<T>(request: &Request<T>, port: u16) -> Option<HeaderValue> {
    let authority = match request.uri().authority() {
        Some(a) => a.clone(),
        None => request
            .headers()
            .get(HOST)?
            .to_str()
            .ok()?
            .parse::<http::uri::Authority>()
            .ok()?,
    };
    let host = authority.host();
    if host.is_empty() {
        return None;
    }
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    HeaderValue::from_str(&location).ok()
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

/// Connections held, in total and per client address, against [`Limits`]'
/// `max_connections` and `max_connections_per_client`. Each [`serve_listeners`] loop has
/// its own; listeners served by several loops (one runtime per core on one socket) share
/// one through [`Listener::share_slots`], so the caps hold for the socket, not per runtime.
#[derive(Default, Debug)]
pub struct Slots {
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
    /// One stamp per response in flight ([`Served`]): since when its body has handed over
    /// a chunk to send and not been asked for the next one. Used on HTTP/2 only, where a
    /// stream whose client keeps its flow-control window shut never shows on the socket
    /// (its other streams and PINGs flow). It is also a minimum rate: a stream that takes
    /// longer than `send_timeout` to take one chunk (≤ 64 KiB for a streamed body, i.e.
    /// slower than ~2 KB/s at 30 s) counts as stalled. HTTP/1 keeps `write_blocked` alone,
    /// which resets on every byte the client takes.
    stalls: Mutex<Vec<Arc<AtomicU64>>>,
    /// HTTP/2: reads are frames of any stream (or PINGs), not a request head, so they do
    /// not start the header clock; a quiet connection is timed by `idle_timeout`.
    multiplexed: AtomicBool,
    /// h2c listeners: look at the first bytes for the HTTP/2 connection preface.
    sniff_preface: AtomicBool,
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
            stalls: Mutex::new(Vec::new()),
            multiplexed: AtomicBool::new(false),
            sniff_preface: AtomicBool::new(false),
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

    fn stalls(&self) -> std::sync::MutexGuard<'_, Vec<Arc<AtomicU64>>> {
        self.stalls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The oldest stall stamp of the responses in flight, or [`NEVER`].
    fn oldest_stall(&self) -> u64 {
        let stalls = self.stalls();
        stalls
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .min()
            .unwrap_or(NEVER)
    }

    /// The deadline of the connection's current state, and what passing it means.
    fn deadline(&self, limits: &Limits) -> (u64, ConnEvent) {
        let ms = |d: Duration| d.as_millis() as u64;
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            // HTTP/1's socket shows a stalled client exactly (a write that cannot finish);
            // an HTTP/2 stream's only sign is its body not asked for the next chunk.
            let stall = if self.multiplexed.load(Ordering::Relaxed) {
                self.oldest_stall()
            } else {
                NEVER
            };
            let blocked = self.write_blocked.load(Ordering::Relaxed).min(stall);
            return match blocked {
                // Producing the response, or writing freely: nothing to time.
                NEVER => (NEVER, ConnEvent::SendTimeout),
                since => (since + ms(limits.send_timeout), ConnEvent::SendTimeout),
            };
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            // A fresh connection owes its first request head from the accept (for TLS,
            // the handshake included), however slowly its first bytes came.
            return (ms(limits.header_timeout), ConnEvent::HeaderTimeout);
        }
        let head = self.head_started.load(Ordering::Relaxed);
        if head != NEVER {
            return (head + ms(limits.header_timeout), ConnEvent::HeaderTimeout);
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

/// Counts a request in flight until its response body is dropped (sent or abandoned),
/// with the stall stamp of its body (see [`ConnState::stalls`]).
struct InFlight {
    state: Arc<ConnState>,
    /// On HTTP/2 only (the protocol is known before the first request is parsed): HTTP/1
    /// reads stalls off its socket, so its requests skip the allocation, the two locks and
    /// the clock read per chunk.
    stall: Option<Arc<AtomicU64>>,
}

impl InFlight {
    fn new(state: Arc<ConnState>) -> InFlight {
        let stall = state.multiplexed.load(Ordering::Relaxed).then(|| {
            let stall = Arc::new(AtomicU64::new(NEVER));
            state.stalls().push(Arc::clone(&stall));
            stall
        });
        InFlight { state, stall }
    }

    /// What a poll of the body returned: a chunk is now the client's to take (the clock
    /// runs until the body is asked for more); anything else is not the client's doing.
    fn polled<T>(&self, polled: &Poll<Option<T>>) {
        let Some(stall) = &self.stall else { return };
        let stamp = match polled {
            Poll::Ready(Some(_)) => self.state.now(),
            _ => NEVER,
        };
        stall.store(stamp, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(stall) = &self.stall {
            self.state.stalls().retain(|s| !Arc::ptr_eq(s, stall));
        }
        self.state.response_finished();
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request [`InFlight`] until hyper drops it: the
    /// service's own body, or the server's own answer (a 400, an HTTPS redirect).
    #[project = ServedProj]
    pub enum Served<B> {
        Inner { #[pin] body: B, guard: InFlight },
        Own { #[pin] body: Full<Bytes>, guard: InFlight },
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
            ServedProj::Inner { body, guard } => {
                let polled = body.poll_frame(cx).map_err(Into::into);
                guard.polled(&polled);
                polled
            }
            ServedProj::Own { body, guard } => {
                let polled = body.poll_frame(cx).map_err(|never| match never {});
                guard.polled(&polled);
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Served::Inner { body, .. } => body.is_end_stream(),
            Served::Own { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Served::Inner { body, .. } => body.size_hint(),
            Served::Own { body, .. } => body.size_hint(),
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
            if state.sniff_preface.swap(false, Ordering::Relaxed)
                && buf.filled()[before..].starts_with(b"PRI * HTTP/2.0")
            {
                state.multiplexed.store(true, Ordering::Relaxed);
            }
            if !state.multiplexed.load(Ordering::Relaxed)
                && state.in_flight.load(Ordering::Relaxed) == 0
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
            ..Limits::default()
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

    #[test]
    fn https_location_keeps_host_path_and_query_and_names_the_port() {
        let req = |host: &str, target: &str| {
            Request::builder()
                .uri(target)
                .header(HOST, host)
                .body(())
                .unwrap()
        };
        let at = |r: &Request<()>, port| {
            https_location(r, port).map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(
            at(&req("cdn.test:8080", "/vod/a/1.m4s?x=1"), 8443).as_deref(),
            Some("https://cdn.test:8443/vod/a/1.m4s?x=1")
        );
        assert_eq!(
            at(&req("cdn.test", "/"), 443).as_deref(),
            Some("https://cdn.test/")
        );
        assert_eq!(
            at(&req("[::1]:80", "/a"), 8443).as_deref(),
            Some("https://[::1]:8443/a")
        );
        // An absolute-form target names the host itself.
        assert_eq!(
            at(&req("other.test", "http://cdn.test:80/a"), 443).as_deref(),
            Some("https://cdn.test/a")
        );
        assert_eq!(at(&req("", "/a"), 443), None);
        let edge = &["/_edge/healthz", "/_edge/metrics"][..];
        let origin = &["/healthz", "/metrics"][..];
        for exempt in [edge, origin, &[]] {
            assert!(redirect_exempt("/.well-known/acme-challenge/tok", exempt));
        }
        assert!(redirect_exempt("/_edge/healthz", edge) && redirect_exempt("/metrics", origin));
        // Each server's paths are its own: the origin's /metrics is a cached path on an edge.
        assert!(!redirect_exempt("/metrics", edge) && !redirect_exempt("/_edge/metrics", origin));
        assert!(
            !redirect_exempt("/_edge/purge", edge) && !redirect_exempt("/_edge/healthz/x", edge)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_not_asked_for_its_next_chunk_times_http2_only() {
        let l = limits();
        let http1 = Arc::new(ConnState::new());
        http1.request_started();
        let guard1 = InFlight::new(Arc::clone(&http1));
        let state = Arc::new(ConnState::new());
        state.multiplexed.store(true, Ordering::Relaxed);
        state.request_started();
        let guard = InFlight::new(Arc::clone(&state));
        tokio::time::advance(Duration::from_secs(2)).await;
        // The body handed over a chunk at 2 s and is not polled again.
        guard1.polled(&Poll::Ready(Some(())));
        assert_eq!(http1.deadline(&l).0, NEVER, "HTTP/1: the socket decides");
        assert!(
            http1.stalls().is_empty(),
            "HTTP/1 requests keep no stall stamp"
        );
        guard.polled(&Poll::Ready(Some(())));
        assert_eq!(state.deadline(&l), (32_000, ConnEvent::SendTimeout));
        // Asked again (the producer has nothing yet): not the client's doing.
        guard.polled(&Poll::<Option<()>>::Pending);
        assert_eq!(state.deadline(&l).0, NEVER);
        guard.polled(&Poll::Ready(Some(())));
        drop(guard);
        assert!(state.stalls().is_empty());
        assert_eq!(state.deadline(&l).1, ConnEvent::IdleTimeout);
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
