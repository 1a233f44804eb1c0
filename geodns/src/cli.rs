//! `dashcdn geodns`: the command-line front door of the geo DNS.
//!
//! `dashcdn geodns --config geodns.toml [--listen ADDR] [--metrics ADDR]` serves until
//! Ctrl-C / SIGTERM; SIGHUP reloads the config file and the MaxMind database (a bad one
//! is refused with a log line and the old one keeps serving).
//! `dashcdn geodns --config geodns.toml explain IP` prints where IP is sent and why.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use dashcdn_http::tls::{CertPair, TlsConfig, TlsServer};
use tracing::{error, info};

use crate::{GeoDns, GeodnsConfig};

/// Flags of `dashcdn geodns` (each overrides the same setting of `--config`).
#[derive(Args, Debug, Clone)]
pub struct GeodnsArgs {
    /// TOML config (see geodns/example.toml).
    #[arg(long, global = true, default_value = "geodns.toml")]
    pub config: PathBuf,
    /// UDP and TCP address to answer on (overrides `listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address for the Prometheus `/metrics` endpoint (overrides `metrics`).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// DNS over TLS address (RFC 7858, usually port 853; overrides `dot_listen`).
    #[arg(long, value_name = "ADDR")]
    pub dot_listen: Option<SocketAddr>,
    /// DNS over HTTPS address (RFC 8484, `/dns-query`; overrides `doh_listen`).
    #[arg(long, value_name = "ADDR")]
    pub doh_listen: Option<SocketAddr>,
    /// PEM certificate chain for DoT and DoH (overrides `tls_cert`; with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (overrides `tls_key`).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Sign every zone that has keys in this folder (overrides `dnssec_keys`; see `keygen`).
    #[arg(long, value_name = "DIR")]
    pub dnssec_keys: Option<PathBuf>,
    /// Response rate limiting: UDP responses per second per client network and answer
    /// (overrides `[rrl] responses_per_second`; 0 turns it off).
    #[arg(long, value_name = "N")]
    pub rrl_rps: Option<u32>,
    /// Accept `_acme-challenge` TXT records from edges (ACME DNS-01) on the metrics
    /// listener's /_geodns/acme/, authenticated by this bearer token (docs/tls.md).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "DASHCDN_ACME_DNS_TOKEN",
        hide_env_values = true
    )]
    pub acme_token: Option<String>,
    #[command(subcommand)]
    pub command: Option<GeodnsCommand>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum GeodnsCommand {
    /// Print which PoP an address maps to and why (coverage zone, MaxMind city and
    /// distance, or default), assuming every PoP healthy.
    Explain {
        /// An IPv4 or IPv6 address (a viewer or a resolver's client subnet).
        ip: IpAddr,
    },
    /// Make a DNSSEC signing key for a zone: writes K<zone>+<alg>+<tag>.pk8 into --dir and
    /// prints the DS record for the parent zone (and the DNSKEY, for trust anchors).
    Keygen {
        /// The zone apex, e.g. kingcdn.test.
        #[arg(long)]
        zone: String,
        #[arg(long, value_enum, default_value = "ecdsap256sha256")]
        algorithm: crate::KeyAlgorithm,
        /// The key folder (`dnssec_keys` / --dnssec-keys of the server).
        #[arg(long, value_name = "KEYS")]
        dir: PathBuf,
    },
}

fn load(args: &GeodnsArgs) -> Result<GeodnsConfig> {
    let mut config = GeodnsConfig::load(&args.config).with_context(|| {
        format!(
            "cannot use {} (see geodns/example.toml for the format)",
            args.config.display()
        )
    })?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(m) = args.metrics {
        config.metrics = Some(m);
    }
    if args.dnssec_keys.is_some() {
        config.dnssec_keys = args.dnssec_keys.clone();
    }
    if let Some(n) = args.rrl_rps {
        config.rrl.responses_per_second = n;
    }
    if args.dot_listen.is_some() {
        config.dot_listen = args.dot_listen;
    }
    if args.doh_listen.is_some() {
        config.doh_listen = args.doh_listen;
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(crate::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    if (config.dot_listen.is_some() || config.doh_listen.is_some()) && config.tls.is_none() {
        anyhow::bail!(
            "DoT and DoH need a certificate: --tls-cert FILE --tls-key FILE (or tls_cert/tls_key in {})",
            args.config.display()
        );
    }
    Ok(config)
}

/// Runs the DNS server until Ctrl-C / SIGTERM (or a subcommand such as `explain`).
pub async fn run(args: GeodnsArgs) -> Result<()> {
    if let Some(GeodnsCommand::Keygen {
        zone,
        algorithm,
        dir,
    }) = &args.command
    {
        let (path, ds, dnskey) = crate::keygen(zone, *algorithm, dir)
            .with_context(|| format!("cannot make a key for {zone}"))?;
        eprintln!("wrote {}", path.display());
        println!("{ds}");
        println!("; {dnskey}");
        return Ok(());
    }
    let config = load(&args)?;
    if let Some(GeodnsCommand::Explain { ip }) = args.command {
        let e = tokio::task::spawn_blocking(move || crate::explain(&config, ip))
            .await
            .context("explain task")?
            .context("cannot build the geo tables")?;
        // `explain … | head` closes the pipe early: that is not an error.
        let mut out = std::io::stdout().lock();
        return match write!(out, "{e}").and_then(|()| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            r => r.context("cannot write to stdout"),
        };
    }
    let listen = config.listen;
    let metrics_addr = config.metrics;
    let (dot_addr, doh_addr) = (config.dot_listen, config.doh_listen);
    let tls = match &config.tls {
        Some(files) if dot_addr.is_some() || doh_addr.is_some() => {
            let pairs = vec![CertPair {
                cert: files.cert.clone(),
                key: files.key.clone(),
            }];
            Some(
                TlsServer::new(&TlsConfig {
                    pairs,
                    strict_sni: false,
                })
                .context("cannot load the DoT/DoH certificate")?,
            )
        }
        _ => None,
    };
    let udp_threads = config.udp_threads;
    // Opening the MaxMind database is file I/O: off the async workers.
    let board = args
        .acme_token
        .clone()
        .map(dashcdn_http::acme::TxtBoard::new);
    anyhow::ensure!(
        board.is_none() || metrics_addr.is_some(),
        "--acme-token needs --metrics ADDR: the TXT admin endpoint is on the metrics listener"
    );
    anyhow::ensure!(
        args.acme_token.as_ref().is_none_or(|t| t.len() >= 16),
        "--acme-token must be at least 16 characters"
    );
    let dns = tokio::task::spawn_blocking(move || GeoDns::with_acme(config, board))
        .await
        .context("start task")?
        .context("cannot start geodns")?;
    let udp = crate::udp::bind_reuseport(listen, udp_threads)
        .with_context(|| format!("cannot bind UDP {listen}"))?;
    let tcp = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot bind TCP {listen}"))?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let metrics_task = match metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot bind metrics {addr}"))?;
            let dns = dns.clone();
            let stop = wait_stop(stop_rx.clone());
            Some(tokio::spawn(async move {
                dns.serve_metrics(listener, stop).await
            }))
        }
        None => None,
    };

    let mut encrypted = Vec::new();
    if let Some(tls) = &tls {
        // Certificates reload on SIGHUP and when their files change.
        let _watch = tls.watch(Duration::from_secs(5), wait_stop(stop_rx.clone()));
        if let Some(addr) = dot_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot bind DoT {addr}"))?;
            let (dns, tls, stop) = (dns.clone(), tls.clone(), wait_stop(stop_rx.clone()));
            encrypted.push(tokio::spawn(async move {
                dns.serve_dot(listener, tls, stop).await
            }));
        }
        if let Some(addr) = doh_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot bind DoH {addr}"))?;
            let (dns, tls, stop) = (dns.clone(), tls.clone(), wait_stop(stop_rx.clone()));
            encrypted.push(tokio::spawn(async move {
                dns.serve_doh(listener, tls, stop).await
            }));
        }
    }

    #[cfg(unix)]
    {
        let dns = dns.clone();
        let args = args.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                info!(config = %args.config.display(), "SIGHUP: reloading");
                match load(&args) {
                    Ok(c) => {
                        if let Err(e) = dns.reload(c).await {
                            error!(
                                "reload refused, still serving the previous config: {:#}",
                                anyhow::Error::from(e)
                            );
                        }
                    }
                    Err(e) => error!("reload refused, still serving the previous config: {e:#}"),
                }
            }
        });
    }

    let server = dns.serve_sockets(udp, tcp, wait_stop(stop_rx));
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r.context("geodns stopped")?,
        () = dashcdn_config::shutdown_signal() => {
            let _ = stop_tx.send(true);
            server.await.context("geodns shutdown")?;
        }
    }
    let _ = stop_tx.send(true);
    if let Some(t) = metrics_task {
        t.await.context("metrics task")?.context("metrics server")?;
    }
    for t in encrypted {
        t.await.context("DoT/DoH task")?.context("DoT/DoH server")?;
    }
    Ok(())
}
