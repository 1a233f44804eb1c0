//! dashcdn geodns: an authoritative DNS that sends every viewer to the nearest healthy edge.
//!
//! `video.netcinema.test CNAME a1105.kingcdn.test`, and `a1105.kingcdn.test` answers with
//! the A/AAAA of the PoP nearest to the viewer that is up. Built on hickory-server (TCP
//! framing, request parsing, response encoding) with our own request handling, and on
//! `maxminddb` for geolocation.
//!
//! Layout (every module private; this file re-exports what the binary, the demo and
//! tests use):
//! - `config`: the TOML file → validated [`GeodnsConfig`], record data parsed once.
//! - `zone`: zones as answer tables; CNAME chains, NXDOMAIN vs NODATA, REFUSED.
//! - `geo`: coverage zones, MaxMind City (both record shapes), great-circle choice, ECS scope.
//! - `health`: probing each PoP's `/_edge/healthz` (and optionally `/_edge/stats`).
//! - `state`: the snapshot of one config generation that answers read.
//! - `answer`: one query → one response (EDNS, ECS, truncation), shared by UDP and TCP.
//! - `udp`, `tcp`, `dot`, `doh`: the transports; `server`: [`GeoDns`], its lifecycle
//!   and reload; `rrl`: response rate limiting of UDP answers; `wire`: raw-byte checks.
//! - `metrics`: Prometheus families behind `/metrics`; `explain`: [`explain`].
//! - [`cli`]: `dashcdn geodns` and `dashcdn geodns explain IP`.
//!
//! In-process use (the demo, tests): bind the sockets yourself and call [`run`], or
//! [`GeoDns::new`] + [`GeoDns::serve`] to keep a handle for [`GeoDns::reload`].

#![warn(unreachable_pub)]

mod acme;
mod answer;
mod cache;
pub mod cli;
mod config;
mod dnssec;
mod doh;
mod dot;
mod error;
mod explain;
mod geo;
mod health;
mod metrics;
mod rrl;
mod server;
mod state;
mod tcp;
mod udp;
mod wire;
mod zone;

use std::future::Future;

pub use config::{
    CoverageConfig, GeoNameConfig, GeodnsConfig, HealthConfig, PopConfig, RecordConfig, RrlConfig,
    SoaConfig, TlsFiles, ZoneConfig,
};
pub use dnssec::{keygen, KeyAlgorithm, KeyError};
pub use error::GeodnsError;
pub use explain::{explain, Explanation, PopLine};
pub use geo::{CityHit, Decision, GeoDbError, Placement};
pub use server::GeoDns;

/// Serves DNS on `udp` and `tcp` with `config` until `shutdown` completes. Use
/// [`GeoDns::new`] and [`GeoDns::serve`] instead to keep a reload handle.
pub async fn run(
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    config: GeodnsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GeodnsError> {
    GeoDns::new(config)?.serve(udp, tcp, shutdown).await
}
