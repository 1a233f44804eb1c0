//! `dashcdn demo`: the whole CDN in one process, on embedded defaults.
//!
//! A clip (generated with ffmpeg, or `--input FILE`) is packaged once into `{dir}/library`
//! and reused by later runs; then, on fixed loopback addresses a person can type:
//!
//! | part | default | flag |
//! | --- | --- | --- |
//! | origin + watch page | 127.0.0.1:8080 | `--origin` |
//! | shield (parent edge) | 127.0.0.2:8080 | `--shield` |
//! | edge `eu-west` | 127.0.1.1:8080 | `--eu-west` |
//! | edge `us-west` | 127.0.2.1:8080 | `--us-west` |
//! | edge `ap-east` | 127.0.3.1:8080 | `--ap-east` |
//! | geodns (UDP + TCP) | 127.0.0.1:5353 | `--dns` |
//! | geodns metrics | 127.0.0.1:9153 | `--dns-metrics` |
//!
//! Every socket is bound before anything starts, so a taken port fails the whole demo with
//! one line naming the part, the address and the flag that moves it. geodns serves
//! `geodns/example.toml` (compiled in) with its PoPs pointed at the edges above, and with
//! MaxMind's City *test* database (also compiled in, a few kB) unless `--maxmind` names a real
//! GeoLite2/GeoIP2 City file: the test database places 81.2.69.160 in London, 216.160.83.56
//! near Seattle and 175.16.199.0 in China, which is what the printed `dig` line shows.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tracing::info;

use dashcdn_origin::Clip;

/// The geodns config of the demo (the KingCDN example), compiled in.
const GEODNS_EXAMPLE: &str = include_str!("../geodns/example.toml");
/// MaxMind's GeoIP2 City test database (MIT/Apache-2.0, see geodns/tests/data/README.md).
const MAXMIND_TEST_DB: &[u8] = include_bytes!("../geodns/tests/data/GeoIP2-City-Test.mmdb");

/// The asset name the demo packages and prints URLs for.
pub const ASSET: &str = "demo";
/// The demo's live channel: `/live/live/manifest.mpd`.
pub const LIVE: &str = "live";

/// The demo's fixed addresses, defined once: [`DemoOptions::new`] and the `dashcdn demo`
/// flags' defaults both read them.
pub mod addr {
    pub const ORIGIN: &str = "127.0.0.1:8080";
    pub const SHIELD: &str = "127.0.0.2:8080";
    pub const EU_WEST: &str = "127.0.1.1:8080";
    pub const US_WEST: &str = "127.0.2.1:8080";
    pub const AP_EAST: &str = "127.0.3.1:8080";
    pub const DNS: &str = "127.0.0.1:5353";
    pub const DNS_METRICS: &str = "127.0.0.1:9153";
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Data directory: the generated clip and the library (reused on the next run).
    pub dir: PathBuf,
    /// Package this file instead of a generated clip.
    pub input: Option<PathBuf>,
    /// Length of the generated clip.
    pub seconds: u32,
    /// `false`: package and exit.
    pub serve: bool,
    pub origin: SocketAddr,
    pub shield: SocketAddr,
    /// The regional edges: (PoP name, address).
    pub edges: Vec<(String, SocketAddr)>,
    pub dns: SocketAddr,
    pub dns_metrics: SocketAddr,
    /// A real MaxMind City database instead of the compiled-in test one.
    pub maxmind: Option<PathBuf>,
    /// Memory cache of each edge.
    pub cache_size: dashcdn_edge::ByteSize,
    /// HTTPS port on the origin's and each edge's address (`None`: plain HTTP only).
    pub https_port: Option<u16>,
    /// Run the `live` channel (testsrc with the wall clock burned in) on the origin.
    pub live: bool,
}

impl DemoOptions {
    pub fn new(dir: impl Into<PathBuf>) -> DemoOptions {
        let a = |s: &str| s.parse::<SocketAddr>().expect("a literal address");
        DemoOptions {
            dir: dir.into(),
            input: None,
            seconds: 30,
            serve: true,
            origin: a(addr::ORIGIN),
            shield: a(addr::SHIELD),
            edges: vec![
                ("eu-west".into(), a(addr::EU_WEST)),
                ("us-west".into(), a(addr::US_WEST)),
                ("ap-east".into(), a(addr::AP_EAST)),
            ],
            dns: a(addr::DNS),
            dns_metrics: a(addr::DNS_METRICS),
            maxmind: None,
            cache_size: "512MiB".parse().expect("a literal size"),
            https_port: Some(8443),
            live: true,
        }
    }
}

/// The demo's ladder, part of what makes the asset what it is.
const DEMO_LADDER: &str = "720p:3000k,480p:1400k,360p:800k,240p:400k";
/// `{dir}/demo-source.txt`: one line saying what the packaged asset was made from.
const RECORD_FILE: &str = "demo-source.txt";

/// What `prepare_library` did, so the demo never claims work it did not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The library already held the asset made from this source.
    Reused { source: String },
    /// Packaged now, from this source.
    Packaged { source: String },
}

/// How the asset is to be made: the source (a generated clip's length, or an input file's
/// path, size and modification time) and the ladder. A different line means repackaging.
fn source_record(opts: &DemoOptions) -> Result<String> {
    Ok(match &opts.input {
        Some(input) => {
            let meta = std::fs::metadata(input)
                .with_context(|| format!("cannot read the demo input {}", input.display()))?;
            let path = std::fs::canonicalize(input).unwrap_or_else(|_| input.clone());
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            format!(
                "{} ({} bytes, modified {mtime}), ladder {DEMO_LADDER}",
                path.display(),
                meta.len()
            )
        }
        None => format!(
            "generated testsrc2 1280x720, {} s, ladder {DEMO_LADDER}",
            opts.seconds
        ),
    })
}

/// Generates (or takes) the clip and packages it into `{dir}/library/demo`, unless the
/// library already holds the asset made from the same source (`{dir}/demo-source.txt`
/// says from what). Returns the library folder and what was done.
pub async fn prepare_library(opts: &DemoOptions) -> Result<(PathBuf, Prepared)> {
    let library = opts.dir.join("library");
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("cannot create the demo folder {}", opts.dir.display()))?;
    let wanted = source_record(opts)?;
    let record = opts.dir.join(RECORD_FILE);
    let had = std::fs::read_to_string(&record).ok();
    let packaged = library.join(ASSET).join("manifest.mpd").exists();
    if packaged && had.as_deref().map(str::trim) == Some(wanted.as_str()) {
        info!(library = %library.display(), source = %wanted, "reusing the packaged demo asset");
        return Ok((library, Prepared::Reused { source: wanted }));
    }
    // An asset put there by hand (or by an older demo) has no record: serve it as it is,
    // unless an input was named.
    if packaged && had.is_none() && opts.input.is_none() {
        let source = "an asset with no record of its source".to_string();
        info!(library = %library.display(), "reusing the demo asset found in the library (no {RECORD_FILE}); remove it to repackage");
        return Ok((library, Prepared::Reused { source }));
    }
    if packaged {
        info!(
            was = had.as_deref().map_or("unknown (no record)", str::trim),
            now = %wanted,
            "the packaged demo asset was made from another source; repackaging"
        );
    }
    let source = match &opts.input {
        Some(input) => input.clone(),
        None => {
            let source = opts.dir.join(format!("testsrc2-{}s.mp4", opts.seconds));
            if !source.exists() {
                info!(clip = %source.display(), "generating the demo clip with ffmpeg");
                let clip = Clip::new(opts.seconds as f64).size(1280, 720);
                let out = source.clone();
                tokio::task::spawn_blocking(move || clip.write(&out))
                    .await
                    .context("the clip task panicked")?
                    .context("cannot generate the demo clip")?;
            }
            source
        }
    };
    let mut p = dashcdn_origin::PackageOptions::new(ASSET, &library);
    p.force = true;
    p.ladder = DEMO_LADDER.parse()?;
    // The record goes first: a run killed after publishing would otherwise leave a new
    // asset under an old record. A stale record with no asset is harmless (no manifest).
    let _ = std::fs::remove_file(&record);
    tokio::task::spawn_blocking(move || dashcdn_origin::package(&source, &p))
        .await
        .context("the packaging task panicked")??;
    std::fs::write(&record, format!("{wanted}\n"))
        .with_context(|| format!("cannot write {}", record.display()))?;
    Ok((library, Prepared::Packaged { source: wanted }))
}

/// The geodns config of the demo: the example's zones and coverage, PoPs at our edges.
pub fn geodns_config(opts: &DemoOptions, maxmind: &Path) -> Result<dashcdn_geodns::GeodnsConfig> {
    let mut cfg = dashcdn_geodns::GeodnsConfig::from_toml(GEODNS_EXAMPLE)
        .context("the compiled-in geodns/example.toml does not parse")?;
    cfg.listen = opts.dns;
    cfg.metrics = Some(opts.dns_metrics);
    cfg.maxmind = Some(maxmind.to_path_buf());
    for pop in &mut cfg.pops {
        let Some((_, addr)) = opts.edges.iter().find(|(name, _)| *name == pop.name) else {
            continue;
        };
        match addr {
            SocketAddr::V4(v4) => {
                pop.ipv4 = vec![*v4.ip()];
                pop.ipv6.clear();
            }
            SocketAddr::V6(v6) => {
                pop.ipv6 = vec![*v6.ip()];
                pop.ipv4.clear();
            }
        }
        pop.health_url = Some(format!("http://{addr}/_edge/healthz"));
    }
    Ok(cfg)
}

struct Sockets {
    origin: TcpListener,
    shield: TcpListener,
    edges: Vec<(String, TcpListener)>,
    dns_udp: UdpSocket,
    dns_tcp: TcpListener,
    dns_metrics: TcpListener,
}

async fn bind_tcp(what: &str, addr: SocketAddr, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the {what}; choose another address with {flag} ADDR")
    })
}

async fn bind_all(opts: &DemoOptions) -> Result<Sockets> {
    let origin = bind_tcp("origin", opts.origin, "--origin").await?;
    let shield = bind_tcp("shield edge", opts.shield, "--shield").await?;
    let mut edges = Vec::new();
    for (name, addr) in &opts.edges {
        let l = bind_tcp(&format!("{name} edge"), *addr, &format!("--{name}")).await?;
        edges.push((name.clone(), l));
    }
    let dns_udp = UdpSocket::bind(opts.dns).await.with_context(|| {
        format!(
            "cannot listen on UDP {} for geodns; choose another with --dns ADDR",
            opts.dns
        )
    })?;
    let dns_tcp = bind_tcp("geodns (TCP)", opts.dns, "--dns").await?;
    let dns_metrics = bind_tcp("geodns metrics", opts.dns_metrics, "--dns-metrics").await?;
    Ok(Sockets {
        origin,
        shield,
        edges,
        dns_udp,
        dns_tcp,
        dns_metrics,
    })
}

/// The main job: package, then run origin, shield, three edges and geodns until `stop`
/// resolves (Ctrl-C for the binary). `ready` is told the addresses once everything listens.
pub async fn run(
    opts: DemoOptions,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<()> {
    let (library, prepared) = prepare_library(&opts).await?;
    if !opts.serve {
        let dir = library.join(ASSET);
        match prepared {
            Prepared::Packaged { source } => {
                println!("packaged {} from {source}", dir.display())
            }
            Prepared::Reused { source } => println!(
                "already packaged {} from {source}; nothing to do",
                dir.display()
            ),
        }
        return Ok(());
    }
    let maxmind = match &opts.maxmind {
        Some(p) => p.clone(),
        None => {
            let p = opts.dir.join("GeoIP2-City-Test.mmdb");
            std::fs::write(&p, MAXMIND_TEST_DB)
                .with_context(|| format!("cannot write {}", p.display()))?;
            p
        }
    };
    let geodns_cfg = geodns_config(&opts, &maxmind)?;
    let dns = dashcdn_geodns::GeoDns::new(geodns_cfg.clone())
        .context("geodns refused the demo configuration")?;
    let sockets = bind_all(&opts).await?;

    let (tx, rx) = watch::channel(false);
    let until_stopped = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();

    let tls = DemoTls::new(&opts)?;
    let origin_cfg = dashcdn_origin::ServeConfig {
        library: library.clone(),
        listen: opts.origin,
        tls: tls.args("origin", opts.origin)?,
        live: if opts.live {
            vec![dashcdn_origin::live::LiveConfig::new(
                LIVE,
                dashcdn_origin::live::Input::Testsrc,
            )]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let s = until_stopped();
    tasks.spawn(async move {
        dashcdn_origin::run(sockets.origin, origin_cfg, s)
            .await
            .context("the origin failed")
    });

    let edge_cfg = |pop: &str, upstream: dashcdn_edge::UpstreamConfig, listen: SocketAddr| {
        dashcdn_edge::EdgeConfig {
            pop: pop.to_string(),
            listen,
            cache_size: opts.cache_size,
            upstreams: vec![upstream],
            ..dashcdn_edge::EdgeConfig::default()
        }
    };
    let shield_cfg = edge_cfg(
        "shield",
        dashcdn_edge::UpstreamConfig::origin(format!("http://{}", opts.origin)),
        opts.shield,
    );
    let mut shield_cfg = shield_cfg;
    shield_cfg.tls = tls.args("shield", opts.shield)?;
    let s = until_stopped();
    tasks.spawn(async move {
        dashcdn_edge::run(sockets.shield, shield_cfg, s)
            .await
            .context("the shield edge failed")
    });
    for (name, listener) in sockets.edges {
        let addr = listener.local_addr()?;
        // The shield first; the origin itself only when the shield is down.
        let mut cfg = edge_cfg(
            &name,
            dashcdn_edge::UpstreamConfig::parent(format!("http://{}", opts.shield)),
            addr,
        );
        cfg.upstreams
            .push(dashcdn_edge::UpstreamConfig::origin(format!(
                "http://{}",
                opts.origin
            )));
        cfg.tls = tls.args(&name, addr)?;
        let s = until_stopped();
        tasks.spawn(async move {
            dashcdn_edge::run(listener, cfg, s)
                .await
                .with_context(|| format!("the {name} edge failed"))
        });
    }

    let metrics_dns = dns.clone();
    let s = until_stopped();
    tasks.spawn(async move {
        metrics_dns
            .serve_metrics(sockets.dns_metrics, s)
            .await
            .context("the geodns metrics server failed")
    });
    let s = until_stopped();
    tasks.spawn(async move {
        dns.serve(sockets.dns_udp, sockets.dns_tcp, s)
            .await
            .context("geodns failed")
    });

    print_next_steps(&opts, &library, tls.ca.as_deref());
    if let Some(ready) = ready {
        let _ = ready.send(());
    }

    // Stop on the signal, or as soon as one part fails (then the others stop too).
    let mut first_error = None;
    tokio::select! {
        _ = stop => {}
        Some(done) = tasks.join_next() => {
            first_error = Some(match done {
                Ok(Ok(())) => anyhow::anyhow!("a part of the demo stopped unexpectedly"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("a part of the demo panicked: {e}"),
            });
        }
    }
    info!("stopping the demo");
    let _ = tx.send(true);
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn print_next_steps(opts: &DemoOptions, library: &Path, ca: Option<&Path>) {
    let o = opts.origin;
    let mpd = format!("/vod/{ASSET}/manifest.mpd");
    let edge_port = opts.edges.first().map(|(_, a)| a.port()).unwrap_or(8080);
    println!(
        "dashcdn demo: the whole CDN on loopback (library {})",
        library.display()
    );
    println!();
    println!("  watch page    http://{o}/?mpd={mpd}");
    for (name, addr) in &opts.edges {
        println!("  via {name:<9} http://{addr}/?mpd={mpd}");
    }
    if opts.live {
        let (name, addr) = opts
            .edges
            .first()
            .map_or(("origin", o), |(n, a)| (n.as_str(), *a));
        println!("  live          http://{addr}/?mpd=/live/{LIVE}/manifest.mpd  (low-latency DASH via {name})");
    }
    println!(
        "  DNS           dig @{} -p {} video.netcinema.test +subnet=81.2.69.160/27",
        opts.dns.ip(),
        opts.dns.port()
    );
    println!(
        "  player        {} player http://video.netcinema.test:{edge_port}{mpd} --dns {} --client-subnet 216.160.83.56/29",
        command_name(),
        opts.dns
    );
    println!("  metrics       http://{o}/metrics  (origin)");
    println!(
        "                http://{}/_edge/metrics  (shield)",
        opts.shield
    );
    for (name, addr) in &opts.edges {
        println!("                http://{addr}/_edge/metrics  ({name})");
    }
    println!(
        "                http://{}/metrics  (geodns)",
        opts.dns_metrics
    );
    if let (Some(port), Some(ca)) = (opts.https_port, ca) {
        let https = |a: SocketAddr| SocketAddr::new(a.ip(), port);
        println!(
            "  https         https://{}/?mpd={mpd}  (TLS 1.3, HTTP/2)",
            https(o)
        );
        for (name, addr) in &opts.edges {
            println!("  https {name:<7} https://{}/?mpd={mpd}", https(*addr));
        }
        println!("  CA            {}", ca.display());
        println!(
            "                curl --cacert {} https://{}/healthz",
            ca.display(),
            https(o)
        );
        println!(
            "                Chromium: certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n dashcdn-demo -i {}",
            ca.display()
        );
    }
    println!();
    println!("  Ctrl-C stops everything.");
}

/// How to type this binary: `dashcdn` when that name on `PATH` is this very binary
/// (`scripts/demo.sh` links it there), else its full path, so the printed line always works.
fn command_name() -> String {
    let Ok(me) = std::env::current_exe().and_then(|p| p.canonicalize()) else {
        return "dashcdn".into();
    };
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("dashcdn"))
            .find(|c| c.is_file())
            .and_then(|c| c.canonicalize().ok())
    });
    if on_path.as_deref() == Some(me.as_path()) {
        "dashcdn".into()
    } else {
        me.display().to_string()
    }
}

/// HTTPS for the demo: a local CA in `{dir}/tls` (kept across runs, so a browser trusts it
/// once) and a certificate per part, for its address, `localhost` and the demo's names.
struct DemoTls {
    ca: Option<PathBuf>,
    local: Option<dashcdn_http::tls::LocalCa>,
    port: Option<u16>,
}

impl DemoTls {
    fn new(opts: &DemoOptions) -> Result<DemoTls> {
        let Some(port) = opts.https_port else {
            return Ok(DemoTls {
                ca: None,
                local: None,
                port: None,
            });
        };
        let dir = opts.dir.join("tls");
        let local = dashcdn_http::tls::local_ca(&dir)
            .with_context(|| format!("cannot make the demo's local CA in {}", dir.display()))?;
        Ok(DemoTls {
            ca: Some(local.ca_cert()),
            local: Some(local),
            port: Some(port),
        })
    }

    /// The `[tls]` settings of the part `stem` listening on `addr`: HTTPS on the same IP.
    fn args(&self, stem: &str, addr: SocketAddr) -> Result<dashcdn_http::https::TlsArgs> {
        let (Some(local), Some(port)) = (&self.local, self.port) else {
            return Ok(Default::default());
        };
        let ip = addr.ip().to_string();
        let pair = local
            .issue(
                stem,
                &[
                    &ip,
                    "localhost",
                    "video.netcinema.test",
                    "a1105.kingcdn.test",
                ],
            )
            .with_context(|| format!("cannot issue the {stem} certificate"))?;
        // Fail now, naming the flag, rather than from inside a server task.
        let listen = SocketAddr::new(addr.ip(), port);
        std::net::TcpListener::bind(listen).with_context(|| {
            format!("cannot listen on {listen} for the {stem} HTTPS; choose another port with --https-port PORT (0: off)")
        })?;
        Ok(dashcdn_http::https::TlsArgs {
            listen: Some(listen),
            cert: vec![pair.cert],
            key: vec![pair.key],
            ..Default::default()
        })
    }
}
