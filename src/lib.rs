//! The `dashcdn` umbrella: the front doors of each server and the in-process harness that
//! `dashcdn demo` and the end-to-end tests in `tests/` share.
//!
//! - [`ServeArgs`] / [`serve_origin`]: `dashcdn origin serve`.
//! - [`demo`]: the whole CDN in one process (origin, shield, three edges, geodns).

pub mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tracing::info;

/// `dashcdn origin serve`: flags override the TOML config file.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// TOML config file (see origin/example.toml); flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The media library folder.
    #[arg(long)]
    pub library: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The watch page's folder (player/web with node_modules/dashjs); default: found under
    /// the working directory or the binary's checkout.
    #[arg(long)]
    pub web_root: Option<PathBuf>,
}

impl ServeArgs {
    pub fn into_config(self) -> Result<dashcdn_origin::config::ServeConfig> {
        let mut cfg = match &self.config {
            Some(p) => dashcdn_origin::config::ServeConfig::load(p)?,
            None => dashcdn_origin::config::ServeConfig::default(),
        };
        if let Some(l) = self.library {
            cfg.library = l;
        }
        if let Some(a) = self.listen {
            cfg.listen = a;
        }
        if let Some(w) = self.web_root {
            cfg.web_root = Some(w);
        }
        Ok(cfg)
    }
}

/// Resolves on Ctrl-C or SIGTERM, so servers finish in-flight requests before exiting.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    info!("shutting down");
}

pub async fn serve_origin(args: ServeArgs) -> Result<()> {
    let cfg = args.into_config()?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    dashcdn_origin::server::run(listener, cfg, shutdown_signal())
        .await
        .context("origin server failed")
}
