//! `dashcdn player`: the command-line front door of the player and the ABR lab.

use clap::Args;

/// Flags of `dashcdn player` (and its `simulate` subcommand).
#[derive(Args, Debug, Clone)]
pub struct PlayerArgs {}

/// Streams (or simulates) and prints the QoE summary.
pub async fn run(_args: PlayerArgs) -> anyhow::Result<()> {
    anyhow::bail!("the player is not built yet (see issue: The player)")
}
