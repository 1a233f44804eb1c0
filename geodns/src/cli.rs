//! `dashcdn geodns`: the command-line front door of the geo DNS.

use clap::Args;

/// Flags of `dashcdn geodns` (each overrides the same setting of `--config`).
#[derive(Args, Debug, Clone)]
pub struct GeodnsArgs {}

/// Runs the DNS server until Ctrl-C / SIGTERM (or a subcommand such as `explain`).
pub async fn run(_args: GeodnsArgs) -> anyhow::Result<()> {
    anyhow::bail!("geodns is not built yet (see issue: GeoDNS)")
}
