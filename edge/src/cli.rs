//! `dashcdn edge`: the command-line front door of the edge cache.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::config::{ByteSize, EdgeConfig, Eviction, UpstreamConfig};

/// Flags of `dashcdn edge` (each overrides the same setting of `--config`).
#[derive(Args, Debug, Clone)]
pub struct EdgeArgs {
    /// TOML config file (see edge/example.toml); the flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Origin URL (http://host:port); repeat for replicas, tried in order. Replaces the
    /// file's upstreams when given (together with --parent).
    #[arg(long = "upstream", value_name = "URL")]
    pub upstreams: Vec<String>,
    /// Parent edge URL (a shield); repeat for several, objects are spread over them by
    /// rendezvous hashing.
    #[arg(long = "parent", value_name = "URL")]
    pub parents: Vec<String>,
    /// Address to listen on.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// This PoP's name (Via header, /_edge/stats).
    #[arg(long)]
    pub pop: Option<String>,
    /// Memory budget of the cache, e.g. 2GiB or 512MiB.
    #[arg(long)]
    pub cache_size: Option<ByteSize>,
    /// Objects larger than this are passed through uncached.
    #[arg(long)]
    pub max_object_size: Option<ByteSize>,
    /// Bearer token for POST /_edge/purge (or env DASHCDN_PURGE_TOKEN).
    #[arg(long, env = "DASHCDN_PURGE_TOKEN", hide_env_values = true)]
    pub purge_token: Option<String>,
    /// tinylfu or lru.
    #[arg(long, value_parser = parse_eviction)]
    pub eviction: Option<Eviction>,
    /// After serving segment n, prefetch this many following segments.
    #[arg(long)]
    pub prefetch: Option<u32>,
    /// Write the access log to FILE (reopened on SIGHUP) instead of the tracing log.
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<std::path::PathBuf>,
    /// Turn the per-request access log off.
    #[arg(long)]
    pub no_access_log: bool,
    /// CA certificate(s) (PEM) that https:// upstreams must chain to; the system roots otherwise.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// HTTPS listener and ACME (see docs/tls.md).
    #[command(flatten)]
    pub tls: dashcdn_http::https::TlsArgs,
}

fn parse_eviction(s: &str) -> Result<Eviction, String> {
    match s.to_ascii_lowercase().as_str() {
        "tinylfu" => Ok(Eviction::Tinylfu),
        "lru" => Ok(Eviction::Lru),
        _ => Err(format!("{s:?}: expected tinylfu or lru")),
    }
}

impl EdgeArgs {
    /// The config file (or defaults) with the flags applied, validated.
    pub fn into_config(self) -> Result<EdgeConfig> {
        let mut c = match &self.config {
            Some(p) => EdgeConfig::load(p)?,
            None => EdgeConfig::default(),
        };
        if !self.upstreams.is_empty() || !self.parents.is_empty() {
            c.upstreams = self
                .parents
                .into_iter()
                .map(UpstreamConfig::parent)
                .chain(self.upstreams.into_iter().map(UpstreamConfig::origin))
                .collect();
        }
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.pop {
            c.pop = v;
        }
        if let Some(v) = self.cache_size {
            c.cache_size = v;
        }
        if let Some(v) = self.max_object_size {
            c.max_object_size = v;
        }
        if let Some(v) = self.purge_token {
            c.purge_token = Some(v);
        }
        if let Some(v) = self.eviction {
            c.eviction = v;
        }
        if let Some(v) = self.prefetch {
            c.prefetch_segments = v;
        }
        if let Some(v) = self.access_log {
            c.access_log_file = Some(v);
        }
        if self.no_access_log {
            c.access_log = false;
        }
        if let Some(v) = self.upstream_ca {
            c.upstream_ca = Some(v);
        }
        c.tls = self.tls.over(c.tls);
        c.validate()?;
        Ok(c)
    }
}

/// Runs the edge until Ctrl-C / SIGTERM.
pub async fn run(args: EdgeArgs) -> Result<()> {
    let config = args.into_config()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    crate::run(listener, config, dashcdn_config::shutdown_signal()).await?;
    Ok(())
}
