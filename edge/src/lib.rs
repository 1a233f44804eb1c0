//! dashcdn edge: the caching reverse proxy that serves segments close to viewers.
//!
//! Not built yet: issue "The edge cache" fills this crate. Until then the
//! `dashcdn edge` subcommand says so and exits non-zero rather than pretending.

/// Why the `edge` subcommand cannot run yet.
pub const NOT_YET: &str = "the edge cache is not built yet (see issue: The edge cache)";
