//! `dashcdn player`: the command-line front door of the player and the ABR lab.
//!
//! - `dashcdn player URL [flags]` streams an MPD in real time and prints the QoE summary
//!   (a dynamic MPD plays live, see `crate::stream::live`).
//! - `dashcdn player simulate --movie MOVIE --trace TRACE [--abr ALG]` runs the same session
//!   code over a bandwidth trace; `--batch DIR` runs every trace for every algorithm.
//!
//! The root binary owns `-q/--quiet` (a global flag), so the progress line reads the
//! effect: when the log level is below `info`, it stays hidden.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tracing::level_filters::LevelFilter;

use crate::abr::AbrKind;
use crate::content::Content;
use crate::log::LogSink;
use crate::net::{NetConfig, ResolveOverride};
use crate::session::SessionConfig;
use crate::sim;
use crate::stream::{self, StreamOptions};
use crate::trace::Trace;
use crate::tracegen::{generate, write_sabre, Family, Split};

/// Flags of `dashcdn player` (and its `simulate` subcommand).
#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PlayerArgs {
    #[command(subcommand)]
    pub command: Option<PlayerCommand>,
    /// The MPD to play (http://…/manifest.mpd): on demand, or live (a dynamic MPD, played
    /// at the live edge; see --live-seconds).
    #[arg(required = true)]
    pub url: Option<String>,
    #[command(flatten)]
    pub stream: StreamFlags,
}

#[derive(Subcommand, Debug, Clone)]
pub enum PlayerCommand {
    /// The ABR lab: play a movie over a bandwidth trace on a simulated clock.
    Simulate(SimulateArgs),
    /// Every algorithm on every trace family × movie of a generated trace set, against
    /// sabre's algorithms in both modes (the evaluation of docs/player-abr.md).
    Lab(LabArgs),
    /// Write a generated trace set as sabre network JSON files (to run sabre on them).
    Traces(TracesArgs),
}

/// Which generated trace set.
#[derive(Args, Debug, Clone)]
pub struct SetFlags {
    /// 1 = the training set, 2 = the test set (any other seed: a fresh held-out set).
    #[arg(long, default_value_t = 2)]
    pub seed: u64,
    /// Traces per family.
    #[arg(long, default_value_t = 40)]
    pub count: usize,
    /// The measured 4G traces the `4g` family resamples.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/abr/traces-4g"))]
    pub lte_dir: PathBuf,
}

impl SetFlags {
    fn split(&self) -> Split {
        if self.seed == 1 {
            Split::Train
        } else {
            Split::Test
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct LabArgs {
    /// Movies (sabre movie JSON); repeat. Default: bbb.json and bbb4k.json of data/abr.
    #[arg(long, value_name = "MOVIE")]
    pub movie: Vec<PathBuf>,
    #[command(flatten)]
    pub set: SetFlags,
    /// Print the rows as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct TracesArgs {
    /// 3g, 4g or fcc.
    #[arg(long)]
    pub family: Family,
    #[command(flatten)]
    pub set: SetFlags,
    /// Folder to write `{family}-{i}.json` into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Flags shared by streaming and simulation: the playback model.
#[derive(Args, Debug, Clone)]
pub struct ModelFlags {
    /// Buffer capacity, seconds.
    #[arg(long, default_value_t = 25.0)]
    pub max_buffer: f64,
    /// Media buffered before playback starts, seconds (0: as soon as the first segment is in).
    #[arg(long, default_value_t = 0.0)]
    pub startup: f64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write one JSON object per downloaded segment (JSON Lines) to FILE.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Draw bitrate, throughput and buffer over time to FILE.svg.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// sabre's `-ao` mode for bola, bolae and dynamic: no step above what throughput
    /// supports; wait instead.
    #[arg(long)]
    pub ao: bool,
}

#[derive(Args, Debug, Clone)]
pub struct StreamFlags {
    /// ABR algorithm: robust (the on-demand default), lolp (the live default), throughput,
    /// bola, bolae, dynamic, bba, mpc, mpc-paper.
    #[arg(long)]
    pub abr: Option<AbrKind>,
    /// Stop after this many seconds of media.
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Live (dynamic MPD): stop after S seconds of wall time (else --duration of media
    /// played, else Ctrl-C).
    #[arg(long, value_name = "S")]
    pub live_seconds: Option<f64>,
    /// Play the audio AdaptationSet whose @lang is LANG: the same tag first, else the same
    /// language by any ISO 639 code or BCP 47 tag (fr = fra = fre = fr-CA).
    #[arg(long, value_name = "LANG")]
    pub audio_lang: Option<String>,
    /// Fetch the subtitle (text) track whose @lang is LANG (matched as --audio-lang) and
    /// count its cues.
    #[arg(long, value_name = "LANG")]
    pub subtitles: Option<String>,
    /// Shape downloads to a bandwidth trace (sabre JSON or `time Mbps` text).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Resolve host names through this DNS server (IP[:PORT], port 53 by default).
    #[arg(long, value_name = "ADDR")]
    pub dns: Option<String>,
    /// Send this EDNS Client Subnet with --dns queries (e.g. 81.2.69.0/24).
    #[arg(long, value_name = "CIDR", requires = "dns")]
    pub client_subnet: Option<String>,
    /// Use these addresses for HOST:PORT (like curl); several = failover candidates.
    /// ADDR may carry its own port: `video.test:80:127.0.0.1:8081,127.0.0.1:8082`.
    #[arg(long, value_name = "HOST:PORT:ADDR[,ADDR]")]
    pub resolve: Vec<String>,
    /// Run N independent sessions at once and print min/median/max of each QoE figure.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub clients: usize,
    /// Connect / first-byte / stalled-body timeout, seconds.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub timeout: f64,
    /// Retries on one edge address before failing over to the next.
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
    /// No live progress line.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub model: ModelFlags,
}

#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// The movie: sabre movie JSON, or an MPD (file or http:// URL; sizes from byte ranges,
    /// local files or HEAD requests).
    #[arg(long, value_name = "MOVIE")]
    pub movie: String,
    /// Bandwidth trace: sabre network JSON or Pensieve-style `time Mbps` text.
    #[arg(long, value_name = "TRACE", required_unless_present = "batch")]
    pub trace: Option<PathBuf>,
    /// Run every trace in DIR for every algorithm (or those given with --abr) and print a
    /// table; with neither --abr nor --ao, sabre's algorithms in both of its modes, and a last
    /// line with the default against the best of them.
    #[arg(long, value_name = "DIR", conflicts_with = "trace")]
    pub batch: Option<PathBuf>,
    /// ABR algorithm(s) (robust, throughput, bola, bolae, dynamic, bba, mpc, mpc-paper); repeat
    /// or comma-separate. Default: robust (all with --batch).
    #[arg(long, value_delimiter = ',')]
    pub abr: Vec<AbrKind>,
    /// Multiply every bandwidth of the trace.
    #[arg(long, default_value_t = 1.0)]
    pub network_multiplier: f64,
    #[command(flatten)]
    pub model: ModelFlags,
}

fn session_config(m: &ModelFlags) -> Result<SessionConfig> {
    if !(m.max_buffer.is_finite() && m.max_buffer > 0.0) {
        bail!(
            "--max-buffer {}: must be a positive number of seconds",
            m.max_buffer
        );
    }
    if !(m.startup.is_finite() && m.startup >= 0.0) {
        bail!("--startup {}: must be zero or more seconds", m.startup);
    }
    Ok(SessionConfig {
        max_buffer_ms: m.max_buffer * 1000.0,
        startup_ms: m.startup * 1000.0,
        ao: m.ao,
        ..SessionConfig::default()
    })
}

fn quiet() -> bool {
    LevelFilter::current() < LevelFilter::INFO
}

fn parse_dns(s: &str) -> Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: IpAddr = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .with_context(|| format!("--dns `{s}`: expected IP or IP:PORT"))?;
    Ok(SocketAddr::new(ip, 53))
}

fn open_log(path: &Path) -> Result<LogSink> {
    let f = File::create(path).with_context(|| format!("cannot create log {}", path.display()))?;
    Ok(LogSink::new(Box::new(BufWriter::new(f))))
}

/// Streams (or simulates) and prints the QoE summary.
///
/// With `--json`, a failure is also printed on stdout as `{"error": "…"}` (the whole cause
/// chain on one line), so a script reading stdout sees what went wrong.
pub async fn run(args: PlayerArgs) -> Result<()> {
    let json = match &args.command {
        Some(PlayerCommand::Simulate(s)) => s.model.json,
        Some(PlayerCommand::Lab(l)) => l.json,
        Some(PlayerCommand::Traces(_)) => false,
        None => args.stream.model.json,
    };
    let result = match args.command {
        Some(PlayerCommand::Simulate(s)) => simulate_cmd(s).await,
        Some(PlayerCommand::Lab(l)) => lab_cmd(l),
        Some(PlayerCommand::Traces(t)) => traces_cmd(t),
        None => match args.url {
            Some(url) => stream_cmd(url, args.stream).await,
            None => Err(anyhow::anyhow!("give the MPD URL to play")),
        },
    };
    if let (true, Err(e)) = (json, &result) {
        println!("{}", json_error(e));
    }
    result
}

fn lab_cmd(a: LabArgs) -> Result<()> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/abr");
    let paths = if a.movie.is_empty() {
        vec![data.join("bbb.json"), data.join("bbb4k.json")]
    } else {
        a.movie.clone()
    };
    let movies = paths
        .iter()
        .map(|p| {
            let name = p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            Ok((name, Content::load_sabre(p)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let rows = crate::lab::lab(
        &movies,
        a.set.split(),
        a.set.seed,
        a.set.count,
        &a.set.lte_dir,
        &crate::lab::lab_variants(),
        &SessionConfig::default(),
    )?;
    if a.json {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        print!("{}", crate::lab::lab_table(&rows));
    }
    Ok(())
}

fn traces_cmd(a: TracesArgs) -> Result<()> {
    let traces = generate(
        a.family,
        a.set.split(),
        a.set.seed,
        a.set.count,
        &a.set.lte_dir,
    )?;
    write_sabre(&a.out, &format!("{}-", a.family.name()), &traces)
        .with_context(|| format!("cannot write traces into {}", a.out.display()))?;
    Ok(())
}

fn json_error(e: &anyhow::Error) -> serde_json::Value {
    serde_json::json!({ "error": format!("{e:#}") })
}

async fn stream_cmd(url: String, f: StreamFlags) -> Result<()> {
    if f.clients == 0 {
        bail!("--clients 0: need at least one client");
    }
    if !(f.timeout.is_finite() && f.timeout > 0.0) {
        bail!(
            "--timeout {}: must be a positive number of seconds",
            f.timeout
        );
    }
    let mut opts = StreamOptions::new(url);
    opts.abr = f.abr;
    opts.session = session_config(&f.model)?;
    opts.duration_s = f.duration;
    if let Some(l) = f.live_seconds {
        if !(l.is_finite() && l > 0.0) {
            bail!("--live-seconds {l}: must be a positive number of seconds");
        }
    }
    opts.live_seconds = f.live_seconds;
    opts.tracks = crate::mpd::tracks::TrackPrefs {
        audio_lang: f.audio_lang.clone(),
        subtitles: f.subtitles.clone(),
    };
    opts.trace = f.trace.as_deref().map(Trace::load).transpose()?;
    opts.dns = f.dns.as_deref().map(parse_dns).transpose()?;
    opts.client_subnet = f.client_subnet.clone();
    opts.resolve = f
        .resolve
        .iter()
        .map(|r| r.parse::<ResolveOverride>())
        .collect::<Result<_, _>>()?;
    opts.net = NetConfig {
        timeout: Duration::from_secs_f64(f.timeout),
        retries: f.retries,
        ..NetConfig::default()
    };
    opts.progress = !f.no_progress && !quiet() && f.clients == 1;
    if let Some(p) = &f.model.log {
        opts.log = Some(open_log(p)?);
    }
    let log = opts.log.clone();
    let result = stream_sessions(opts, &f).await;
    // Lines of a session that failed are still written before the process exits.
    if let Some(sink) = log {
        sink.flush().await.context("cannot write the log")?;
    }
    result
}

async fn stream_sessions(opts: StreamOptions, f: &StreamFlags) -> Result<()> {
    if f.clients > 1 {
        let (results, agg) = stream::stream_many(opts, f.clients).await;
        for (i, r) in results.iter().enumerate() {
            if let Err(e) = r {
                tracing::error!(client = i, "session failed: {e}");
            }
        }
        if f.model.json {
            println!("{}", serde_json::to_string(&agg)?);
        } else {
            println!(
                "{} sessions ({} failed)            min      median         max",
                agg.sessions + agg.failed,
                agg.failed
            );
            let row = |name: &str, s: &crate::qoe::Spread| {
                println!(
                    "{name:<24} {:>10.2} {:>10.2} {:>10.2}",
                    s.min, s.median, s.max
                )
            };
            row("startup (s)", &agg.startup_s);
            row("avg bitrate (kbit/s)", &agg.avg_bitrate_kbps);
            row("switches", &agg.switches);
            row("rebuffer (s)", &agg.rebuffer_s);
            row("rebuffer events", &agg.rebuffer_count);
            row("QoE (linear)", &agg.qoe_lin);
            if let Some(l) = &agg.live_latency_s {
                row("live latency (s)", l);
            }
            if !agg.edges.is_empty() {
                println!("served by: {:?}", agg.edges);
            }
        }
        if agg.failed > 0 {
            bail!(
                "{} of {} sessions failed",
                agg.failed,
                agg.failed + agg.sessions
            );
        }
        return Ok(());
    }

    let report = stream::stream_report(opts).await?;
    if let Some(p) = &f.model.plot {
        let recs: Vec<_> = report.log.iter().filter_map(|e| e.video.clone()).collect();
        crate::plot::plot(
            p,
            &format!(
                "{} — {}",
                report.summary.abr.as_deref().unwrap_or("?"),
                report.summary.segments
            ),
            &recs,
        )?;
    }
    print_summary(&report.summary, f.model.json)?;
    Ok(())
}

fn print_summary(s: &crate::qoe::Summary, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(s)?);
        return Ok(());
    }
    let mut o = std::io::stdout().lock();
    writeln!(o, "abr               {}", s.abr.as_deref().unwrap_or("?"))?;
    writeln!(
        o,
        "segments          {} ({:.1} s of media)",
        s.segments, s.media_s
    )?;
    writeln!(o, "startup           {:.3} s", s.startup_s)?;
    writeln!(
        o,
        "bitrate           {:.1} kbit/s average ({:.1} time-average)",
        s.avg_bitrate_kbps, s.time_avg_bitrate_kbps
    )?;
    writeln!(
        o,
        "switches          {} (total {:.0} kbit/s)",
        s.switches, s.switch_magnitude_kbps
    )?;
    writeln!(
        o,
        "rebuffering       {} events, {:.3} s ({:.2} %)",
        s.rebuffer_count,
        s.rebuffer_s,
        s.rebuffer_ratio * 100.0
    )?;
    writeln!(
        o,
        "QoE (linear)      {:.3} ({:.3} per segment)",
        s.qoe_lin, s.qoe_lin_per_segment
    )?;
    if !s.edges.is_empty() {
        writeln!(o, "served by         {:?}", s.edges)?;
    }
    if !s.cache.is_empty() {
        writeln!(o, "cache             {:?}", s.cache)?;
    }
    if s.failovers > 0 || s.retries > 0 {
        writeln!(
            o,
            "failures          {} retries, {} failovers",
            s.retries, s.failovers
        )?;
    }
    if s.integrity_failures > 0 {
        writeln!(
            o,
            "integrity         {} segment downloads refused (boxes did not add up) and fetched again",
            s.integrity_failures
        )?;
    }
    if let (Some(mean), Some(p95)) = (s.live_latency_s, s.live_latency_p95_s) {
        writeln!(o, "live latency      {mean:.3} s mean, {p95:.3} s p95")?;
    }
    if let Some(l) = &s.live {
        writeln!(
            o,
            "live              target {:.2} s, {} in-progress segments, catch-up {:.1} s, {} skips, {} MPD refreshes, {} periods",
            l.target_latency_s, l.in_progress_segments, l.catchup_s, l.skips, l.mpd_refreshes, l.periods
        )?;
    }
    if let Some(t) = &s.tracks {
        let list = |v: &[crate::mpd::tracks::TrackInfo]| {
            v.iter()
                .map(|t| t.lang.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(a) = &t.audio {
            writeln!(
                o,
                "audio             {} (available: {})",
                a.lang,
                list(&t.audio_available)
            )?;
        }
        if let Some(st) = &t.subtitles {
            writeln!(
                o,
                "subtitles         {} ({} cues; available: {})",
                st.lang,
                t.subtitle_cues.unwrap_or(0),
                list(&t.subtitles_available)
            )?;
        } else if !t.subtitles_available.is_empty() {
            writeln!(
                o,
                "subtitles         off (available: {})",
                list(&t.subtitles_available)
            )?;
        }
    }
    Ok(())
}

async fn load_movie(movie: &str) -> Result<Content> {
    let lower = movie.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.ends_with(".mpd") {
        return crate::movie::content_from_mpd(movie)
            .await
            .with_context(|| format!("cannot use the MPD {movie} as a movie"));
    }
    Ok(Content::load_sabre(Path::new(movie))?)
}

async fn simulate_cmd(a: SimulateArgs) -> Result<()> {
    let cfg = session_config(&a.model)?;
    let content = load_movie(&a.movie).await?;
    if let Some(dir) = &a.batch {
        // Every algorithm, and sabre's in both of its modes unless --ao picks one: the
        // table then ends with the default against the best of sabre's.
        let variants: Vec<sim::Variant> = if a.abr.is_empty() && !a.model.ao {
            let mut v = crate::lab::lab_variants();
            v.extend(
                AbrKind::ALL
                    .iter()
                    .filter(|k| !v.iter().any(|x| x.abr == **k))
                    .map(|&abr| sim::Variant { abr, ao: false })
                    .collect::<Vec<_>>(),
            );
            v
        } else {
            let algos = if a.abr.is_empty() {
                AbrKind::ALL.to_vec()
            } else {
                a.abr.clone()
            };
            algos
                .into_iter()
                .map(|abr| sim::Variant {
                    abr,
                    ao: a.model.ao && abr.has_ao(),
                })
                .collect()
        };
        let rows = sim::batch(&content, dir, &variants, &cfg)?;
        if a.model.json {
            println!("{}", serde_json::to_string(&rows)?);
        } else {
            print!("{}", sim::batch_table(&rows));
        }
        return Ok(());
    }
    let trace_path = a.trace.as_deref().context("give --trace or --batch")?;
    let trace = Trace::load(trace_path)?.scaled(a.network_multiplier);
    let algos = if a.abr.is_empty() {
        vec![AbrKind::DEFAULT]
    } else {
        a.abr.clone()
    };
    let log = a.model.log.as_deref().map(open_log).transpose()?;
    for abr in algos {
        let r = sim::simulate(&content, &trace, abr, &cfg);
        if let Some(sink) = &log {
            for rec in &r.records {
                let mut v = serde_json::to_value(rec)?;
                v["abr"] = serde_json::Value::from(abr.name());
                sink.line(v.to_string());
            }
            sink.flush().await?;
        }
        if let Some(p) = &a.model.plot {
            crate::plot::plot(
                p,
                &format!("{abr} over {}", trace_path.display()),
                &r.records,
            )?;
        }
        print_summary(&r.summary, a.model.json)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Top {
        #[command(flatten)]
        player: PlayerArgs,
    }

    fn parse(args: &[&str]) -> Result<PlayerArgs, clap::Error> {
        Top::try_parse_from(std::iter::once("player").chain(args.iter().copied())).map(|t| t.player)
    }

    #[test]
    fn streaming_and_simulate_command_lines() {
        let a = parse(&[
            "http://h/m.mpd",
            "--abr",
            "mpc",
            "--dns",
            "127.0.0.1:53",
            "--json",
        ])
        .unwrap();
        assert_eq!(a.url.as_deref(), Some("http://h/m.mpd"));
        assert_eq!(a.stream.abr, Some(AbrKind::Mpc));
        assert!(a.stream.model.json);
        assert!(a.command.is_none());
        // No --abr: the session picks (robust on demand, lolp live).
        assert_eq!(parse(&["u"]).unwrap().stream.abr, None);
        assert_eq!(
            parse(&["u", "--abr", "lolp"]).unwrap().stream.abr,
            Some(AbrKind::Lolp)
        );

        let a = parse(&[
            "simulate",
            "--movie",
            "m.json",
            "--trace",
            "t.json",
            "--abr",
            "bolae,bba",
        ])
        .unwrap();
        let Some(PlayerCommand::Simulate(s)) = a.command else {
            panic!("simulate parsed as {:?}", a.command)
        };
        assert_eq!(s.abr, vec![AbrKind::Bolae, AbrKind::Bba]);

        assert!(parse(&[]).is_err(), "a URL is required");
        assert!(
            parse(&["simulate", "--movie", "m.json"]).is_err(),
            "a trace or a batch"
        );
        let e = parse(&["u", "--abr", "fastest"]).unwrap_err().to_string();
        assert!(e.contains("unknown ABR algorithm"), "{e}");
        assert!(
            parse(&["u", "--client-subnet", "1.2.3.0/24"]).is_err(),
            "needs --dns"
        );
        let a = parse(&[
            "http://h/live.mpd",
            "--live-seconds",
            "20",
            "--audio-lang",
            "fra",
            "--subtitles",
            "eng",
        ])
        .unwrap();
        assert_eq!(a.stream.live_seconds, Some(20.0));
        assert_eq!(a.stream.audio_lang.as_deref(), Some("fra"));
        assert_eq!(a.stream.subtitles.as_deref(), Some("eng"));
    }

    #[tokio::test]
    async fn traces_are_written_for_sabre_and_ao_parses() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("t");
        let a = parse(&[
            "traces",
            "--family",
            "3g",
            "--seed",
            "5",
            "--count",
            "3",
            "--out",
            out.to_str().unwrap(),
        ])
        .unwrap();
        run(a).await.unwrap();
        let first = out.join("3g-000.json");
        let t = Trace::load(&first).unwrap();
        assert_eq!(t.periods.len(), 600);
        assert!(out.join("3g-002.json").is_file());

        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
        let movie = format!("{data}/example-movie.json");
        let a = parse(&[
            "simulate",
            "--movie",
            &movie,
            "--trace",
            first.to_str().unwrap(),
            "--abr",
            "bola",
            "--ao",
        ])
        .unwrap();
        let Some(PlayerCommand::Simulate(s)) = &a.command else {
            panic!("{a:?}")
        };
        assert!(s.model.ao && s.abr == vec![AbrKind::Bola]);
        run(a).await.unwrap();
        assert!(parse(&["lab", "--seed", "1", "--count", "2"]).is_ok());
    }

    #[tokio::test]
    async fn simulate_writes_log_and_plot() {
        let dir = tempfile::tempdir().unwrap();
        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
        let log = dir.path().join("s.jsonl");
        let svg = dir.path().join("s.svg");
        let a = parse(&[
            "simulate",
            "--movie",
            &format!("{data}/example-movie.json"),
            "--trace",
            &format!("{data}/example-network.json"),
            "--abr",
            "bolae",
            "--json",
            "--log",
            log.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ])
        .unwrap();
        run(a).await.unwrap();
        let lines = std::fs::read_to_string(&log).unwrap();
        assert_eq!(lines.lines().count(), 199);
        for l in lines.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["abr"], "bolae");
        }
        let svg = std::fs::read_to_string(&svg).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("bitrate"),
            "{}",
            &svg[..200]
        );
    }

    #[tokio::test]
    async fn bad_trace_and_movie_files_fail_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("bad-trace.txt");
        std::fs::write(&t, "0 1\nx y\n").unwrap();
        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
        let movie = format!("{data}/example-movie.json");
        let a = parse(&[
            "simulate",
            "--movie",
            &movie,
            "--trace",
            t.to_str().unwrap(),
        ])
        .unwrap();
        let e = format!("{:#}", run(a).await.unwrap_err());
        assert!(e.contains("bad-trace.txt line 2"), "{e}");
        let a = parse(&[
            "simulate",
            "--movie",
            &movie,
            "--trace",
            t.to_str().unwrap(),
            "--json",
        ])
        .unwrap();
        let j = json_error(&run(a).await.unwrap_err());
        let text = j["error"].as_str().expect("an error string");
        assert!(text.contains("bad-trace.txt line 2"), "{j}");
        let a = parse(&[
            "simulate",
            "--movie",
            t.to_str().unwrap(),
            "--trace",
            t.to_str().unwrap(),
        ])
        .unwrap();
        let e = format!("{:#}", run(a).await.unwrap_err());
        assert!(e.contains("bad-trace.txt") && e.contains("movie"), "{e}");
    }
}
