//! The `dashcdn` umbrella: the front doors of each server and the in-process harness that
//! `dashcdn demo` and the end-to-end tests in `tests/` share.
//!
//! - [`ServeArgs`] / [`serve_origin`]: `dashcdn origin serve`.
//! - [`demo`]: generate a clip, package it, serve it (the main job until the full-CDN demo).
//! - [`clip`]: test media made by ffmpeg (`testsrc2` + `sine`), never downloaded.

pub mod clip;

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

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    pub seconds: u32,
    pub serve: bool,
}

/// The main job: a generated clip, packaged into a library, served by a local origin.
pub async fn demo(opts: DemoOptions) -> Result<()> {
    let library = opts.dir.join("library");
    let source = opts.dir.join(format!("testsrc2-{}s.mp4", opts.seconds));
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("cannot create {}", opts.dir.display()))?;
    if !source.exists() {
        info!(clip = %source.display(), "generating the demo clip with ffmpeg");
        clip::Clip::new(opts.seconds as f64)
            .size(1280, 720)
            .write(&source)
            .context("cannot generate the demo clip")?;
    }
    if !library.join("demo").join("manifest.mpd").exists() {
        let mut p = dashcdn_origin::package::PackageOptions::new("demo", &library);
        p.force = true;
        p.ladder = "720p:3000k,480p:1400k,360p:800k,240p:400k".parse()?;
        let src = source.clone();
        tokio::task::spawn_blocking(move || dashcdn_origin::package::package(&src, &p)).await??;
    }
    if !opts.serve {
        println!("packaged {}", library.join("demo").display());
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    println!("dashcdn demo: origin serving {}", library.display());
    println!("  MPD:     http://{addr}/vod/demo/manifest.mpd");
    println!("  assets:  http://{addr}/vod/");
    println!("  metrics: http://{addr}/metrics");
    println!("  try:     ffprobe http://{addr}/vod/demo/manifest.mpd   (Ctrl-C to stop)");
    let cfg = dashcdn_origin::config::ServeConfig {
        library,
        listen: addr,
        ..Default::default()
    };
    dashcdn_origin::server::run(listener, cfg, shutdown_signal()).await?;
    Ok(())
}
