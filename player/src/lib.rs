//! dashcdn player: DASH client, ABR algorithms, QoE metrics and trace-driven simulation.
//!
//! Not built yet: issue "The player" fills this crate. Until then the `dashcdn player`
//! subcommand says so and exits non-zero rather than pretending.

/// Why the `player` subcommand cannot run yet.
pub const NOT_YET: &str = "the player is not built yet (see issue: The player)";
