//! The `dashcdn` binary: one front door with a subcommand per part of the CDN.
//! Everything real lives in the crates; this file parses arguments and sets up logging.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use dashcdn::demo;

/// mimalloc rather than glibc malloc: the origin hands out multi-megabyte segment buffers,
/// which glibc returns to the kernel and faults back in on every request (~150 page faults
/// per 2 MB response); mimalloc keeps them, which measured ~20–30% more segment throughput.
///
/// mimalloc 3 keeps freed pages committed for `purge_delay` (1 s by default) before it
/// gives them back; under churn (fills evicted, slow viewers dropped) that second of freed
/// bodies and buffers counts in RSS, and the edge's memory bound (docs/edge.md) is met
/// only with it at 0. See [`purge_freed_memory_at_once`].
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options are read from the environment once, by a constructor that runs
/// before `main`, and setting one at run time takes `mi_option_set` (an `unsafe` FFI call,
/// which this workspace forbids). So: when `MIMALLOC_PURGE_DELAY` is not set, the process
/// replaces itself (`exec`, same pid, arguments and descriptors) with itself and
/// `MIMALLOC_PURGE_DELAY=0` in its environment. Set it yourself to keep another value
/// (`MIMALLOC_PURGE_DELAY=1000` is mimalloc's default). Measured: release edge, 16 MiB
/// cache, 456 viewers, peak RSS 87 → 78 MiB; hit throughput unchanged (docs/edge.md).
fn purge_freed_memory_at_once() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "MIMALLOC_PURGE_DELAY";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let mut args = std::env::args_os();
    let mut again = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        again.arg0(arg0);
    }
    // Only returns if the exec failed; then run on with mimalloc's default.
    let error = again.args(args).env(VAR, "0").exec();
    eprintln!("warning: cannot re-exec with {VAR}=0 ({error}); freed memory returns late");
}

#[derive(Parser)]
#[command(
    name = "dashcdn",
    version,
    about = "A video CDN: DASH origin, edge caches, geo DNS and an ABR player"
)]
struct Cli {
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Package a generated clip and serve it from a local origin (the whole job, on loopback).
    Demo(DemoArgs),
    /// The origin: package video into DASH, serve the library.
    #[command(subcommand)]
    Origin(dashcdn_origin::cli::OriginCommand),
    /// The edge cache: a caching reverse proxy in front of the origin or a parent edge.
    Edge(dashcdn_edge::cli::EdgeArgs),
    /// The geo-aware authoritative DNS.
    Geodns(dashcdn_geodns::cli::GeodnsArgs),
    /// The adaptive-bitrate DASH player, and the trace-driven ABR lab (`player simulate`).
    Player(dashcdn_player::cli::PlayerArgs),
}

#[derive(Args)]
struct DemoArgs {
    /// Data folder: the generated clip and the packaged library, reused by the next run.
    #[arg(long, default_value = ".demo")]
    dir: PathBuf,
    /// Package this video instead of a generated testsrc2 clip.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Length of the generated clip in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u32,
    /// Package and exit without serving (for scripts).
    #[arg(long)]
    no_serve: bool,
    /// The origin and the watch page.
    #[arg(long, default_value = demo::addr::ORIGIN)]
    origin: SocketAddr,
    /// The parent ("shield") edge between the regional edges and the origin.
    #[arg(long, default_value = demo::addr::SHIELD)]
    shield: SocketAddr,
    /// The eu-west edge.
    #[arg(long = "eu-west", default_value = demo::addr::EU_WEST)]
    eu_west: SocketAddr,
    /// The us-west edge.
    #[arg(long = "us-west", default_value = demo::addr::US_WEST)]
    us_west: SocketAddr,
    /// The ap-east edge.
    #[arg(long = "ap-east", default_value = demo::addr::AP_EAST)]
    ap_east: SocketAddr,
    /// geodns, UDP and TCP.
    #[arg(long, default_value = demo::addr::DNS)]
    dns: SocketAddr,
    /// geodns's Prometheus /metrics.
    #[arg(long, default_value = demo::addr::DNS_METRICS)]
    dns_metrics: SocketAddr,
    /// A MaxMind GeoLite2/GeoIP2 City database (default: MaxMind's test database, compiled in).
    #[arg(long)]
    maxmind: Option<PathBuf>,
    /// Memory cache of each edge, e.g. 512MiB.
    #[arg(long, default_value = "512MiB")]
    cache_size: dashcdn_edge::ByteSize,
    /// HTTPS (TLS 1.3, HTTP/2) port on the origin's and every edge's address, with
    /// certificates from a local CA in DIR/tls; 0 turns HTTPS off.
    #[arg(long, default_value_t = 8443)]
    https_port: u16,
    /// Do not start the `live` channel (a testsrc low-latency DASH channel on the origin).
    #[arg(long)]
    no_live: bool,
}

fn init_tracing(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    // hickory-proto warns about every malformed EDNS option a remote client sends, and rustls
    // about every client that sends an IP address as its TLS server name (kdig does): logs
    // anyone could grow. The servers count refused queries and handshakes in their metrics.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},hickory_proto=error,rustls=error")));
    // Colours only on a terminal: escapes would litter a redirected log.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    purge_freed_memory_at_once();
    let cli = Cli::parse();
    init_tracing(cli.verbose, cli.quiet);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Origin(c) => dashcdn_origin::cli::run(c, cli.quiet),
        Command::Demo(a) => {
            let mut opts = dashcdn::demo::DemoOptions::new(a.dir);
            opts.input = a.input;
            opts.seconds = a.seconds;
            opts.serve = !a.no_serve;
            opts.origin = a.origin;
            opts.shield = a.shield;
            opts.edges = vec![
                ("eu-west".into(), a.eu_west),
                ("us-west".into(), a.us_west),
                ("ap-east".into(), a.ap_east),
            ];
            opts.dns = a.dns;
            opts.dns_metrics = a.dns_metrics;
            opts.maxmind = a.maxmind;
            opts.cache_size = a.cache_size;
            opts.https_port = (a.https_port != 0).then_some(a.https_port);
            opts.live = !a.no_live;
            runtime()?.block_on(dashcdn::demo::run(opts, dashcdn::shutdown_signal(), None))
        }
        Command::Edge(a) => runtime()?.block_on(dashcdn_edge::cli::run(a)),
        Command::Geodns(a) => runtime()?.block_on(dashcdn_geodns::cli::run(a)),
        Command::Player(mut a) => {
            a.stream.no_progress |= cli.quiet;
            runtime()?.block_on(dashcdn_player::cli::run(a))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
