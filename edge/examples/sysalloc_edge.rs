//! `dashcdn edge` with the system allocator instead of the binary's mimalloc, for
//! comparing the resident set of the two (see the README's memory section):
//! `cargo run --release -p dashcdn-edge --example sysalloc_edge -- --upstream URL ...`

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    edge: dashcdn_edge::cli::EdgeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dashcdn_edge::cli::run(Cli::parse().edge).await
}
