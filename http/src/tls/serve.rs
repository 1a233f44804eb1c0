//! [`serve_tls`]: one HTTPS listener on the shared accept loop ([`crate::serve`]), for
//! callers with nothing else to serve (the TLS tests, `examples/https_bench.rs`). Origin and
//! edge hand their TLS listener to [`crate::serve::serve_listeners`] beside the plain one
//! instead (see [`crate::https`]), so both get the same caps, timeouts and metrics.
//!
//! HTTP/2 abuse and the limit that bounds it (h2 0.4 / hyper 1), all in [`Limits`]:
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

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use tokio::net::TcpListener;

use super::TlsServer;
use crate::serve::{serve_listeners, Listener};

pub use crate::serve::Limits;

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
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = Listener::tls(listener, tls.server_config());
    serve_listeners(vec![listener], limits, Arc::new(()), make_service, shutdown).await;
    Ok(())
}
