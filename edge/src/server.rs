//! The listener: accept loop, connection limits, slowloris timeouts, graceful shutdown.
//!
//! Why hyper's HTTP/1 server directly rather than `axum::serve`: the edge needs the knobs
//! axum does not expose — the request-head size limit (431), the head read timeout that
//! also bounds idle keep-alive connections (hyper starts it whenever it waits for a
//! head), and a connection cap answered with a 503 — and its single handler (a cache
//! lookup on every path) gains nothing from a router.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::{debug, info, warn, Level};

use crate::body::{Access, EdgeBody, InFlight};
use crate::config::EdgeConfig;
use crate::metrics::{CacheStatus, Metrics};
use crate::proxy::{Served, Shared};
use crate::{admin, proxy, EdgeError};

/// How long shutdown waits for open connections to finish their responses.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts one open connection until dropped.
struct Connection(Arc<Metrics>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves on `listener` until `shutdown` resolves; then stops accepting and lets open
/// connections finish (up to 10 s).
pub async fn run(
    listener: TcpListener,
    config: EdgeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), EdgeError> {
    config.validate()?;
    let sh = Arc::new(Shared::new(config).map_err(EdgeError::Setup)?);
    let addr = listener.local_addr()?;
    info!(
        %addr,
        pop = %sh.config.pop,
        cache_size = %sh.config.cache_size,
        upstreams = sh.config.upstreams.len(),
        "listening on {addr}"
    );
    let health = {
        let ups = sh.upstreams.clone();
        let every = EdgeConfig::ms(sh.config.health_interval_ms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                ups.probe_all().await;
            }
        })
    };
    // HTTPS beside plain HTTP (docs/tls.md): same handler, HTTP/2 by ALPN.
    let https = sh
        .config
        .tls
        .build()
        .map_err(|e| EdgeError::Setup(dashcdn_config::chain(&e)))?;
    let http01 = https.as_ref().map(|h| h.http01()).unwrap_or_default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tls_task = match https {
        None => None,
        Some(https) => {
            let tls_listener = TcpListener::bind(https.listen).await.map_err(|e| {
                EdgeError::Setup(format!("cannot listen on {} ({e})", https.listen))
            })?;
            let tls_sh = sh.clone();
            let mut stopped = stopped.clone();
            Some(tokio::spawn(https.serve(
                tls_listener,
                move |peer| {
                    let sh = tls_sh.clone();
                    service_fn(move |req: Request<Incoming>| {
                        let sh = sh.clone();
                        async move { Ok::<_, Infallible>(handle(&sh, req, peer).await) }
                    })
                },
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            )))
        }
    };
    serve(listener, sh, http01, async move {
        shutdown.await;
        let _ = stop.send(true);
    })
    .await;
    if let Some(task) = tls_task {
        let _ = task.await;
    }
    health.abort();
    Ok(())
}

async fn serve(
    listener: TcpListener,
    sh: Arc<Shared>,
    http01: dashcdn_http::acme::Http01Answers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(EdgeConfig::ms(sh.config.header_read_timeout_ms))
        .max_header_size(sh.config.max_header_bytes)
        .max_buf_size((sh.config.max_header_bytes * 2).max(8192))
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let open = sh.metrics.connections.load(Ordering::Relaxed);
        if open >= sh.config.max_connections as i64 {
            sh.metrics.rejected();
            tokio::spawn(reject(stream));
            continue;
        }
        sh.metrics.connections.fetch_add(1, Ordering::Relaxed);
        let guard = Connection(sh.metrics.clone());
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "cannot set TCP_NODELAY");
        }
        let svc_sh = sh.clone();
        let http01 = http01.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let sh = svc_sh.clone();
            // ACME HTTP-01 (only while a validation runs): before the proxy, never cached.
            let acme = http01.respond(req.uri().path());
            async move {
                if let Some(answer) = acme {
                    return Ok::<_, Infallible>(answer.map(EdgeBody::full));
                }
                Ok::<_, Infallible>(handle(&sh, req, peer).await)
            }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                debug!(%peer, %error, "connection ended with an error");
            }
            drop(guard);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => warn!("connections still open after {DRAIN_TIMEOUT:?}; closing"),
    }
}

/// Past `max_connections`: a short 503 and close, so clients (and geodns) see why.
async fn reject(mut stream: TcpStream) {
    const ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
        retry-after: 1\r\nconnection: close\r\ncontent-length: 18\r\n\r\nedge at capacity.\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(ANSWER).await?;
        stream.shutdown().await
    })
    .await;
}

async fn handle(sh: &Arc<Shared>, req: Request<Incoming>, peer: SocketAddr) -> Response<EdgeBody> {
    // The clock is read only when the access log will use it (a 1 KB hit costs ~8 µs of
    // CPU in all, most of it in the kernel; every clock read shows).
    let log =
        sh.config.access_log && tracing::enabled!(target: "dashcdn_edge::access", Level::INFO);
    let started = log.then(Instant::now);
    let in_flight = InFlight::new(&sh.metrics);
    let (parts, body) = req.into_parts();
    let served = if parts.uri.path().starts_with("/_edge/") {
        Served {
            response: admin::handle(sh, &parts, body).await,
            cache: CacheStatus::Local,
            upstream: None,
        }
    } else {
        drop(body);
        proxy::handle(sh, &parts).await
    };
    sh.metrics.request(served.cache);
    let mut response = served.response;
    let status = response.status().as_u16();
    let body = response.body_mut();
    body._in_flight = Some(in_flight);
    if let Some(started) = started {
        body.access = Some(Box::new(Access {
            method: parts.method,
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.to_string(), |pq| pq.as_str().to_string()),
            peer,
            status,
            cache: served.cache.as_str(),
            started,
            head_us: started.elapsed().as_micros() as u64,
            upstream: served.upstream,
            bytes: 0,
            complete: false,
        }));
    }
    response
}
