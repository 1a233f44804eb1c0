//! The edge's lifecycle: health checks, the plain listener
//! and the HTTPS listener beside it, both on the shared accept loop (`dashcdn_http::serve`:
//! connection caps, header/idle/send timeouts, 431, graceful shutdown, the same as the
//! origin's), and the handler that turns a request into an admin answer or a proxied one.
//!
//! The handler is one function (a cache lookup on every path) rather than a router: it
//! gains nothing from routing.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::{info, Level};

use crate::body::{Access, EdgeBody, InFlight};
use crate::config::EdgeConfig;
use crate::metrics::CacheStatus;
use crate::proxy::Served;
use crate::state::Shared;
use crate::{admin, proxy, EdgeError};

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
        max_connections = sh.limits.max_connections,
        per_client = sh.limits.max_connections_per_client,
        "listening on {addr}"
    );
    let health = {
        let ups = sh.fill.upstreams.clone();
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
    // One accept loop for plain HTTP and HTTPS: the same caps, timeouts and metrics.
    // Health and metrics stay on plain HTTP under --redirect-https (probes speak it).
    let exempt = &["/_edge/healthz", "/_edge/metrics"];
    let (listeners, _upkeep) = sh.config.tls.listeners(listener, https, exempt).await?;
    let limits = sh.limits.clone();
    let observer = sh.fill.metrics.clone();
    dashcdn_http::serve::serve_listeners(
        listeners,
        limits,
        observer,
        move |peer| {
            let sh = sh.clone();
            let http01 = http01.clone();
            service_fn(move |req: Request<Incoming>| {
                let sh = sh.clone();
                // ACME HTTP-01 (only while a validation runs): before the proxy, never cached.
                // (Answered on the HTTPS listener too: harmless, the CA asks over port 80.)
                let acme = http01.respond(req.uri().path());
                async move {
                    if let Some(answer) = acme {
                        return Ok::<_, Infallible>(answer.map(EdgeBody::full));
                    }
                    Ok::<_, Infallible>(handle(&sh, req, peer).await)
                }
            })
        },
        shutdown,
    )
    .await;
    health.abort();
    Ok(())
}

async fn handle(sh: &Arc<Shared>, req: Request<Incoming>, peer: SocketAddr) -> Response<EdgeBody> {
    // The clock is read only when the access log will use it (a 1 KB hit costs ~8 µs of
    // CPU in all, most of it in the kernel; every clock read shows).
    let log = sh.access.is_some()
        || (sh.config.access_log && tracing::enabled!(target: "dashcdn_edge::access", Level::INFO));
    let started = log.then(Instant::now);
    let in_flight = InFlight::new(&sh.fill.metrics);
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
    sh.fill.metrics.request(served.cache);
    let mut response = served.response;
    let status = response.status().as_u16();
    let body = response.body_mut();
    body._in_flight = Some(in_flight);
    if let Some(started) = started {
        body.access = Some(Box::new(Access {
            method: parts.method,
            target: parts.uri,
            peer,
            status,
            cache: served.cache.as_str(),
            started,
            head_us: started.elapsed().as_micros() as u64,
            upstream: served.upstream,
            bytes: 0,
            complete: false,
            file: sh.access.clone(),
        }));
    }
    response
}
