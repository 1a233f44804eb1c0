//! `dashcdn origin …`: the command-line front door of the origin (package, segment, serve).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::config::ServeConfig;
use crate::ladder::Ladder;
use crate::package::{package, package_encoded, PackageOptions, Packaged, SubtitleFile};

/// The subcommands of `dashcdn origin`.
#[derive(Subcommand, Debug)]
pub enum OriginCommand {
    /// Transcode INPUT to a bitrate ladder and package it as DASH into the library.
    Package(PackageArgs),
    /// Package MP4s that are already encoded (keyframes aligned on segment boundaries)
    /// without transcoding: each file's video is a representation named after the file.
    Segment(SegmentArgs),
    /// Serve the library over HTTP.
    Serve(ServeArgs),
}

/// `dashcdn origin package`.
#[derive(Args, Debug)]
pub struct PackageArgs {
    /// Any video file ffmpeg can read.
    input: PathBuf,
    /// Asset name: the folder in the library and the `/vod/{asset}/` path.
    #[arg(long)]
    asset: String,
    /// The media library folder.
    #[arg(long, default_value = "library")]
    library: PathBuf,
    /// Renditions, e.g. `1080p:5000k,720p:3000k,360p:800k` or `640x360:700k`; rungs taller
    /// than the source are dropped. Default: 1080p/720p/480p/360p/240p.
    #[arg(long)]
    ladder: Option<Ladder>,
    /// Target segment duration in seconds; keyframes are forced on its multiples.
    #[arg(long, default_value_t = 4.0)]
    segment_duration: f64,
    /// x264 preset (ultrafast … veryslow).
    #[arg(long, default_value = "veryfast")]
    preset: String,
    /// A subtitle file (SRT, ASS, WebVTT) to add as a text track, with its ISO 639 language,
    /// e.g. `--subtitles fr.srt:fra`. Repeatable.
    #[arg(long = "subtitles", value_name = "FILE[:LANG]")]
    subtitles: Vec<SubtitleFile>,
    /// Replace an existing asset of the same name.
    #[arg(long)]
    force: bool,
}

/// `dashcdn origin segment`.
#[derive(Args, Debug)]
pub struct SegmentArgs {
    /// Encoded MP4 files (H.264/AAC...), one per rendition, plus one with audio.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[arg(long)]
    asset: String,
    #[arg(long, default_value = "library")]
    library: PathBuf,
    #[arg(long, default_value_t = 4.0)]
    segment_duration: f64,
    #[arg(long)]
    force: bool,
}

/// `dashcdn origin serve`: flags override the TOML config file.
#[derive(Args, Debug, Clone, Default)]
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
    /// Most connections served at once; beyond it a connection gets 503 and is closed.
    /// Default: derived from the open-file limit (see docs/origin-serving.md).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Most connections from one client address (default: a quarter of the cap).
    #[arg(long)]
    pub max_connections_per_client: Option<usize>,
    /// Milliseconds a client has to send a whole request head.
    #[arg(long, value_name = "MS")]
    pub header_timeout_ms: Option<u64>,
    /// Milliseconds an idle keep-alive connection is kept.
    #[arg(long, value_name = "MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Milliseconds a response may go without the client accepting a byte before the
    /// connection is dropped (slow readers).
    #[arg(long, value_name = "MS")]
    pub send_timeout_ms: Option<u64>,
    /// A live channel, repeatable: NAME=INPUT with INPUT `testsrc`, a file (played in
    /// real time, looped) or a URL (`srt://…?mode=listener`, `rtmp://…`, `udp://…`);
    /// served at /live/NAME/manifest.mpd. Added to the file's `[[live]]` channels.
    #[arg(long, value_name = "NAME=INPUT")]
    pub live: Vec<String>,
    /// Record live channel NAME (from --live or [[live]]), repeatable: when the server
    /// stops, the event becomes the VOD asset /vod/NAME-<start time>/ (`record = true`).
    /// With --admin-token, recordings are also started and stopped while it runs.
    #[arg(long, value_name = "NAME")]
    pub record: Vec<String>,
    /// Bearer token of the admin calls that start, stop and split a live channel's
    /// recording while it runs (POST /_origin/live/NAME/record/{start,stop,split}, see
    /// docs/origin-live.md); without one they answer 401.
    #[arg(long, env = "DASHCDN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Append a line per request to FILE (date, client, method, path, status, bytes,
    /// complete|cut, ms to the head and to the end, Via), written off the request path;
    /// SIGHUP reopens it (logrotate).
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
    /// HTTPS listener and ACME (see docs/tls.md). Boxed: the flags are many and
    /// `OriginCommand`'s other variants small.
    #[command(flatten)]
    pub tls: Box<dashcdn_http::https::TlsArgs>,
}

impl ServeArgs {
    /// The config file (or defaults) with the flags applied.
    pub fn into_config(self) -> Result<ServeConfig> {
        let mut cfg = match &self.config {
            Some(p) => ServeConfig::load(p)?,
            None => ServeConfig::default(),
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
        for flag in &self.live {
            cfg.live.push(crate::live::LiveConfig::from_flag(flag)?);
        }
        for name in &self.record {
            let channel = cfg.live.iter_mut().find(|c| &c.name == name);
            let Some(channel) = channel else {
                anyhow::bail!(
                    "--record {name:?}: no live channel of that name (add --live {name}=INPUT)"
                );
            };
            channel.record = true;
        }
        if let Some(t) = self.admin_token {
            anyhow::ensure!(!t.is_empty(), "--admin-token must not be empty");
            cfg.admin_token = Some(t);
        }
        if let Some(path) = self.access_log {
            cfg.access_log_file = Some(path);
        }
        cfg.tls = (*self.tls).over(cfg.tls);
        let limits = &mut cfg.limits;
        if let Some(n) = self.max_connections {
            anyhow::ensure!(n > 0, "--max-connections must be at least 1");
            limits.max_connections = Some(n);
        }
        if let Some(n) = self.max_connections_per_client {
            anyhow::ensure!(n > 0, "--max-connections-per-client must be at least 1");
            limits.max_connections_per_client = Some(n);
        }
        for (flag, value, slot) in [
            (
                "--header-timeout-ms",
                self.header_timeout_ms,
                &mut limits.header_timeout,
            ),
            (
                "--idle-timeout-ms",
                self.idle_timeout_ms,
                &mut limits.idle_timeout,
            ),
            (
                "--send-timeout-ms",
                self.send_timeout_ms,
                &mut limits.send_timeout,
            ),
        ] {
            if let Some(ms) = value {
                anyhow::ensure!(ms > 0, "{flag} must be at least 1");
                *slot = Duration::from_millis(ms);
            }
        }
        Ok(cfg)
    }
}

/// Runs one `dashcdn origin` subcommand; `quiet` turns packaging progress off.
pub fn run(command: OriginCommand, quiet: bool) -> Result<()> {
    match command {
        OriginCommand::Package(a) => {
            let mut opts = PackageOptions::new(a.asset, a.library);
            if let Some(l) = a.ladder {
                opts.ladder = l;
            }
            opts.segment_duration = a.segment_duration;
            opts.force = a.force;
            opts.encode.preset = a.preset;
            opts.subtitles = a.subtitles;
            opts.encode.progress = !quiet;
            report(&package(&a.input, &opts)?);
            Ok(())
        }
        OriginCommand::Segment(a) => {
            let mut opts = PackageOptions::new(a.asset, a.library);
            opts.segment_duration = a.segment_duration;
            opts.force = a.force;
            report(&package_encoded(&a.inputs, &opts)?);
            Ok(())
        }
        OriginCommand::Serve(a) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(serve(a)),
    }
}

/// `dashcdn origin serve`: binds the configured address and serves until Ctrl-C/SIGTERM.
pub async fn serve(args: ServeArgs) -> Result<()> {
    let cfg = args.into_config()?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    crate::server::run(listener, cfg, dashcdn_config::shutdown_signal())
        .await
        .context("origin server failed")
}

fn report(done: &Packaged) {
    let reps: Vec<&str> = done
        .summary
        .representations
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    println!(
        "packaged {} ({:.1} s; {}) into {}",
        done.summary.name,
        done.summary.duration_secs,
        reps.join(", "),
        done.dir.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: OriginCommand,
    }

    fn serve_args(args: &[&str]) -> ServeArgs {
        let argv = ["origin", "serve"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            OriginCommand::Serve(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn serve_flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("origin.toml");
        std::fs::write(
            &file,
            "library = \"/lib\"\nmax_connections = 50\nidle_timeout_ms = 9000\n",
        )
        .unwrap();
        let config = serve_args(&[
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:9",
            "--max-connections-per-client",
            "5",
            "--send-timeout-ms",
            "700",
        ])
        .into_config()
        .unwrap();
        assert_eq!(config.library, PathBuf::from("/lib"));
        assert_eq!(config.listen, "127.0.0.1:9".parse().unwrap());
        assert_eq!(config.limits.max_connections, Some(50));
        assert_eq!(config.limits.max_connections_per_client, Some(5));
        assert_eq!(config.limits.idle_timeout, Duration::from_secs(9));
        assert_eq!(config.limits.send_timeout, Duration::from_millis(700));
    }

    #[test]
    fn zero_limits_are_refused_by_flag_name() {
        for flag in ["--max-connections", "--header-timeout-ms"] {
            let err = serve_args(&[flag, "0"]).into_config().unwrap_err();
            assert!(format!("{err:#}").contains(flag), "{err:#}");
        }
    }
}
