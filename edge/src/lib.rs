//! dashcdn edge: the caching reverse proxy that serves segments close to viewers and
//! protects the origin.
//!
//! A viewer's `GET`/`HEAD` is answered from memory when it can be; otherwise exactly one
//! upstream fetch per object runs, whatever the number of viewers asking, and all of them
//! are fed from it while it streams in. Upstreams are the origin and, optionally, parent
//! edges ("shields") chosen per object by rendezvous hashing.
//!
//! Layout:
//! - [`config`]: [`EdgeConfig`] (TOML + CLI overrides), sizes like `2GiB`.
//! - `server`: lifecycle; the listeners run on `dashcdn_http::serve` (caps, timeouts).
//! - `state`: what one edge's requests share (`Shared`, holding the fill's `Filler`).
//! - `proxy`: the request path: key, lookup, hit / stale / fill, ranges, conditionals, pass.
//! - `fill`: request coalescing with streaming fill (in-flight entries + `watch`).
//! - `cache`: stored entries in a byte-weighted moka cache (TinyLFU), the cache key.
//! - `headers`: what is stored and sent on (hop-by-hop stripping from `dashcdn_http::hop`).
//! - `pass`: hit-for-pass memory of keys that were not shareable.
//! - `freshness`: RFC 9111 storability, freshness, age; RFC 5861 stale extensions.
//! - `upstream`: upstreams, rendezvous hashing, health checks, pooled client.
//! - `admin`: `/_edge/healthz`, `/metrics`, `/stats` (JSON schema there), `/purge`.
//! - `metrics`: Prometheus families and the counters behind `/_edge/stats`.
//! - `body`: response bodies and the one-line-per-request access log.
//! - `access`: the access-log file, written by its own thread, reopened on SIGHUP.
//! - [`cli`]: `dashcdn edge`.
//!
//! Embedding (tests, `dashcdn demo`): bind a listener yourself, so the address is known
//! before serving:
//!
//! ```no_run
//! # async fn demo() -> Result<(), dashcdn_edge::EdgeError> {
//! use dashcdn_edge::{EdgeConfig, UpstreamConfig};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let config = EdgeConfig {
//!     pop: "eu".into(),
//!     upstreams: vec![UpstreamConfig::origin("http://127.0.0.1:8080")],
//!     ..EdgeConfig::default()
//! };
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let edge = tokio::spawn(dashcdn_edge::run(listener, config, async move { let _ = stopped.await; }));
//! // ... GET http://{addr}/vod/clip/manifest.mpd ...
//! # let _ = addr;
//! let _ = stop.send(());
//! edge.await.expect("edge task")?;
//! # Ok(()) }
//! ```

#![warn(unreachable_pub)]

mod access;
mod admin;
mod body;
mod cache;
pub mod cli;
mod config;
mod fill;
mod freshness;
mod headers;
mod metrics;
mod pass;
mod proxy;
mod server;
mod state;
mod upstream;

pub use config::{ByteSize, EdgeConfig, Eviction, Role, UpstreamConfig};
pub use server::run;

/// Why the edge could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("invalid edge configuration")]
    Config(#[from] config::ConfigError),
    #[error("cannot start the edge: {0}")]
    Setup(String),
    #[error("listener failed")]
    Io(#[from] std::io::Error),
}
