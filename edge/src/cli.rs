//! `dashcdn edge`: the command-line front door of the edge cache.

use clap::Args;

/// Flags of `dashcdn edge` (each overrides the same setting of `--config`).
#[derive(Args, Debug, Clone)]
pub struct EdgeArgs {}

/// Runs the edge until Ctrl-C / SIGTERM.
pub async fn run(_args: EdgeArgs) -> anyhow::Result<()> {
    anyhow::bail!("the edge cache is not built yet (see issue: The edge cache)")
}
