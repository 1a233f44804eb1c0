//! The `dashcdn` umbrella: the front doors of each server and the in-process harness that
//! `dashcdn demo` and the end-to-end tests in `tests/` share.
//!
//! - [`demo`]: the whole CDN in one process (origin, shield, three edges, geodns).

pub mod demo;

/// Resolves on Ctrl-C or SIGTERM (one signal future for every server).
pub use dashcdn_config::shutdown_signal;
