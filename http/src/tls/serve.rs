//! The TLS accept loop: TCP accept under a connection cap, TLS handshake under a timeout,
//! then HTTP/1.1 or HTTP/2 by ALPN (hyper-util's auto builder) with hyper's HTTP/2 flood
//! limits set, and a graceful shutdown that lets open requests finish.
//!
//! HTTP/2 abuse and the limit that bounds it (h2 0.4 / hyper 1):
//! - rapid reset (CVE-2023-44487, streams opened and reset at once): at most
//!   `h2_max_pending_accept_reset_streams` such streams are queued before the connection
//!   is closed with ENHANCE_YOUR_CALM, and `h2_max_local_error_reset_streams` bounds the
//!   streams the server itself must reset (the "MadeYouReset" variant);
//! - CONTINUATION flood (CVE-2024-27316 family): the header block is bounded by
//!   `h2_max_header_list_size`, and h2 counts CONTINUATION frames and drops the connection
//!   past its bound, so a header block never grows without end;
//! - too many streams at once: `h2_max_concurrent_streams` (advertised in SETTINGS);
//! - SETTINGS/PING floods: h2 bounds queued SETTINGS ACKs and PING pongs internally; a dead
//!   or stalling peer is dropped by the keep-alive PING with `h2_keepalive_timeout`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{TlsServer, ACME_TLS_ALPN};

/// Limits of a TLS listener. `Default` is what origin and edge use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at once; accept waits when it is reached.
    pub max_connections: usize,
    /// A client that has not finished the TLS handshake by then is dropped.
    pub handshake_timeout: Duration,
    /// HTTP/1.1: a request head not received by then closes the connection (slowloris).
    pub header_read_timeout: Duration,
    /// HTTP/2: streams one connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: bytes of one decoded header list (SETTINGS_MAX_HEADER_LIST_SIZE).
    pub h2_max_header_list_size: u32,
    /// HTTP/2: remotely reset streams queued before the connection is closed (rapid reset).
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2: streams the server resets because of client errors before closing.
    pub h2_max_local_error_reset_streams: usize,
    /// HTTP/2: PING interval on an idle connection, and how long to wait for the answer.
    pub h2_keepalive_interval: Duration,
    pub h2_keepalive_timeout: Duration,
    /// Graceful shutdown: how long open connections may take to finish.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            h2_max_concurrent_streams: 128,
            h2_max_header_list_size: 32 * 1024,
            h2_max_pending_accept_reset_streams: 32,
            h2_max_local_error_reset_streams: 256,
            h2_keepalive_interval: Duration::from_secs(30),
            h2_keepalive_timeout: Duration::from_secs(20),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// hyper-util's auto (HTTP/1.1 + HTTP/2) builder with `limits` applied.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.h2_max_header_list_size)
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.h2_max_local_error_reset_streams)
        .keep_alive_interval(limits.h2_keepalive_interval)
        .keep_alive_timeout(limits.h2_keepalive_timeout);
    b
}

/// Serve HTTPS on `listener` until `shutdown` completes, then let open connections finish
/// (up to `limits.drain_timeout`). `make_service` is called once per connection with the
/// peer's address; wrap a tower service (axum `Router`) in
/// `hyper_util::service::TowerToHyperService`.
pub async fn serve_tls<M, S, B>(
    listener: TcpListener,
    tls: Arc<TlsServer>,
    limits: Limits,
    make_service: M,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    M: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "tls: listening on {local}");
    let builder = Arc::new(builder(&limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "tls: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tls.acceptor();
        let service = make_service(peer);
        let builder = builder.clone();
        let handshake_timeout = limits.handshake_timeout;
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "tls: handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "tls: handshake timed out");
                    return;
                }
            };
            if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                // RFC 8737 §3: the validation is the handshake itself; nothing follows.
                tracing::info!(%peer, "tls: answered a TLS-ALPN-01 validation");
                return;
            }
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "tls: connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!("tls: drain timeout, closing the connections still open");
        }
    }
    Ok(())
}
