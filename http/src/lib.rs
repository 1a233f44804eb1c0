//! dashcdn-http: the HTTP serving layer the origin and the edge share, so that both answer
//! the same request the same way.
//!
//! - [`serve`]: accept loop with a connection cap, header-read, idle and send timeouts,
//!   graceful shutdown.
//! - [`range`]: `Range` parsing and slicing (RFC 9110 §14).
//! - [`conditional`]: preconditions `If-Match`, `If-None-Match`, `If-Modified-Since`,
//!   `If-Unmodified-Since`, `If-Range` (RFC 9110 §13).
//! - [`cors`]: CORS headers and preflight answers.
//! - [`hop`]: hop-by-hop header hygiene and `Via`.
#![warn(unreachable_pub)]

pub mod conditional;
pub mod cors;
pub mod hop;
pub mod range;
pub mod serve;
