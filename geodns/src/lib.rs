//! dashcdn geodns: authoritative DNS that routes each viewer to the nearest healthy edge.
//!
//! Not built yet: issue "GeoDNS" fills this crate. Until then the `dashcdn geodns`
//! subcommand says so and exits non-zero rather than pretending.

/// Why the `geodns` subcommand cannot run yet.
pub const NOT_YET: &str = "the geo DNS is not built yet (see issue: GeoDNS)";
