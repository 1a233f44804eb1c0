//! dashcdn-http: the HTTP serving layer the origin and the edge share, so that both answer
//! the same request the same way.
//!
//! - [`serve`]: the one accept loop for plain and TLS listeners (HTTP/1.1, HTTP/2 by ALPN or
//!   h2c): connection and per-client caps, TLS handshake, header-read, idle and send
//!   timeouts, HTTP/2 flood limits, the HTTPS redirect, graceful shutdown.
//! - [`range`]: `Range` parsing and slicing (RFC 9110 §14).
//! - [`conditional`]: preconditions `If-Match`, `If-None-Match`, `If-Modified-Since`,
//!   `If-Unmodified-Since`, `If-Range` (RFC 9110 §13).
//! - [`cors`]: CORS headers and preflight answers.
//! - [`hop`]: hop-by-hop header hygiene and `Via`.
//! - [`access_log`]: access log written by its own thread, batched, reopened on SIGHUP.
//! - [`cmaf`]: segment integrity (box sizes tile the body, `trun` sizes match `mdat`).
//! - [`tls`]: rustls listener config (SNI, reload, resumption), `serve_tls` (one HTTPS
//!   listener on the shared loop), a local CA for demos and tests.
//! - [`https`]: the `--tls-*`/`--acme-*`/`--redirect-https`/`--h2c` flags and `[tls]` table,
//!   and the listeners they make (TLS listener + certificate reload + ACME), shared by origin
//!   and edge.
//! - [`client`]: TLS to upstreams (system roots or `--upstream-ca`).
//! - [`acme`]: certificates from an ACME CA (RFC 8555): HTTP-01, TLS-ALPN-01, DNS-01.
#![warn(unreachable_pub)]

pub mod access_log;
pub mod acme;
pub mod client;
pub mod cmaf;
pub mod conditional;
pub mod cors;
pub mod hop;
pub mod https;
pub mod range;
pub mod serve;
pub mod tls;
