//! Streaming: a [`Session`] driven by real HTTP in real time.
//!
//! The MPD is fetched and planned ([`crate::mpd`]), SegmentBase indexes are fetched and
//! read, then the session says what to fetch and when. Video segments are timed at the
//! socket (first byte separately from the transfer) and may be abandoned mid-body; audio
//! follows video (after each video segment, the audio segments covering the same media
//! time), with no ABR of its own; initialization segments are fetched when a
//! representation is first used. Time spent on audio, init segments, and failed attempts
//! passes for the buffer like any other time. When the last segment is in, the rest of
//! the buffer is counted as played without waiting for it in real time.

mod live;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tracing::{info, warn};
use url::Url;

use crate::abr::{AbrKind, Progress};
use crate::dns::{parse_subnet, DnsClient, DnsError};
use crate::log::LogSink;
use crate::mpd::tracks::TrackPrefs;
use crate::mpd::{self, Addressing, MpdError, Presentation, Resource};
use crate::net::{Fetch, Net, NetConfig, NetError, ResolveOverride, Want};
use crate::qoe::{Aggregate, Summary};
use crate::session::{Fetched, SegmentRecord, Session, SessionConfig, Step};
use crate::shape::Shaper;
use crate::trace::Trace;

#[derive(Debug, thiserror::Error)]
pub enum PlayerError {
    #[error("`{url}` is not a URL")]
    Url {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error(transparent)]
    Mpd(#[from] MpdError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error("cannot write the log")]
    Log(#[source] std::io::Error),
    #[error("{url}: the MPD is not UTF-8 text")]
    NotText { url: String },
    #[error("session task ended early: {0}")]
    Task(String),
    #[error("{url}: the live stream has had no segment for {secs:.0} s (each request: 404); is the channel's input running?")]
    LiveStalled { url: String, secs: f64 },
}

/// Everything one streaming session needs.
#[derive(Clone)]
pub struct StreamOptions {
    pub url: String,
    /// `None`: `robust` on demand, `lolp` live (a dynamic MPD).
    pub abr: Option<AbrKind>,
    pub session: SessionConfig,
    /// Stop after this much media (s).
    pub duration_s: Option<f64>,
    pub trace: Option<Trace>,
    /// Resolve through this DNS server.
    pub dns: Option<SocketAddr>,
    /// EDNS Client Subnet to send with `dns` (CIDR).
    pub client_subnet: Option<String>,
    pub resolve: Vec<ResolveOverride>,
    pub net: NetConfig,
    /// Draw the live progress line.
    pub progress: bool,
    pub log: Option<LogSink>,
    /// Tags log lines when several clients share a log.
    pub client: usize,
    /// `--audio-lang`, `--subtitles`.
    pub tracks: TrackPrefs,
    /// Live (dynamic MPD): stop after this much wall time (s); `duration_s` bounds the
    /// media played instead when this is unset.
    pub live_seconds: Option<f64>,
}

impl StreamOptions {
    pub fn new(url: impl Into<String>) -> StreamOptions {
        StreamOptions {
            url: url.into(),
            abr: None,
            session: SessionConfig::default(),
            duration_s: None,
            trace: None,
            dns: None,
            client_subnet: None,
            resolve: Vec::new(),
            net: NetConfig::default(),
            progress: false,
            log: None,
            client: 0,
            tracks: TrackPrefs::default(),
            live_seconds: None,
        }
    }
}

/// One line of `--log`.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub client: usize,
    /// `video`, `audio`, `init`.
    pub kind: &'static str,
    pub period: usize,
    pub representation: String,
    /// Session time at the end of this download, s.
    pub at_s: f64,
    pub bytes: u64,
    pub ttfb_ms: f64,
    pub download_ms: f64,
    pub url: String,
    pub edge: String,
    pub addr: String,
    pub via: Option<String>,
    pub x_cache: Option<String>,
    pub retries: u32,
    pub failovers: u32,
    /// Stall cost of failed attempts before this one, ms.
    pub lost_ms: f64,
    /// Video only: the session's record (segment, quality, bitrate, throughput, buffer…).
    #[serde(flatten)]
    pub video: Option<SegmentRecord>,
}

/// A finished session: the summary and every log line.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub summary: Summary,
    #[serde(skip)]
    pub log: Vec<LogEntry>,
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The share of a download the session counts as latency (the rest is the body's transfer,
/// what throughput is measured over). Headers and body are timed apart, but when the body
/// took less time than the headers it was already in the socket buffer when the headers
/// were read (a fast link, or a server that sent headers late): timing only the copy out of
/// the buffer would report tens of Gbit/s. Then the whole request counts as transfer.
pub(crate) fn latency_part(ttfb: Duration, total: Duration) -> f64 {
    let body = total.saturating_sub(ttfb);
    if body < ttfb {
        0.0
    } else {
        ms(ttfb)
    }
}

/// Who served what, and what it cost: the per-download log and the counters of the
/// summary (shared by on-demand and live sessions).
#[derive(Default)]
pub(crate) struct Tally {
    pub log: Vec<LogEntry>,
    pub edges: BTreeMap<String, u32>,
    pub cache: BTreeMap<String, u32>,
    pub failovers: u32,
    pub retries: u32,
    pub audio_segments: u32,
    pub integrity_failures: u32,
}

impl Tally {
    /// Logs one download: `what` is (kind, period, representation id).
    pub(crate) fn record(
        &mut self,
        opts: &StreamOptions,
        (kind, period, rep): (&'static str, usize, &str),
        res: &Resource,
        f: &Fetch,
        at_s: f64,
        video: Option<SegmentRecord>,
    ) {
        let edge = f.edge();
        *self.edges.entry(edge.clone()).or_insert(0) += 1;
        if let Some(x) = &f.x_cache {
            let verdict = x
                .split_whitespace()
                .next()
                .unwrap_or(x)
                .to_ascii_uppercase();
            *self.cache.entry(verdict).or_insert(0) += 1;
        }
        self.failovers += f.failovers;
        self.retries += f.retries;
        self.integrity_failures += f.integrity_failures;
        if f.integrity_failures > 0 {
            warn!(url = %res.url, attempts = f.integrity_failures, "refused a segment whose boxes did not add up; fetched it again");
        }
        if kind == "audio" {
            self.audio_segments += 1;
        }
        let e = LogEntry {
            client: opts.client,
            kind,
            period,
            representation: rep.into(),
            at_s,
            bytes: f.bytes,
            ttfb_ms: ms(f.ttfb),
            download_ms: ms(f.total.saturating_sub(f.ttfb)),
            url: res.url.to_string(),
            edge,
            addr: f.addr.to_string(),
            via: f.via.clone(),
            x_cache: f.x_cache.clone(),
            retries: f.retries,
            failovers: f.failovers,
            lost_ms: ms(f.lost),
            video,
        };
        if let Some(sink) = &opts.log {
            let line = serde_json::to_string(&e).expect("log entries serialise");
            sink.line(line);
        }
        self.log.push(e);
    }

    /// Copies the counters into `summary`.
    pub(crate) fn fill(&self, summary: &mut Summary) {
        summary.edges = self.edges.clone();
        summary.cache = self.cache.clone();
        summary.failovers = self.failovers;
        summary.retries = self.retries;
        summary.audio_segments = self.audio_segments;
        summary.integrity_failures = self.integrity_failures;
    }
}

struct Driver {
    opts: StreamOptions,
    net: Net,
    tally: Tally,
}

impl Driver {
    fn record(
        &mut self,
        what: (&'static str, usize, &str),
        res: &Resource,
        f: &Fetch,
        at_s: f64,
        video: Option<SegmentRecord>,
    ) -> Result<(), PlayerError> {
        self.tally.record(&self.opts, what, res, f, at_s, video);
        Ok(())
    }

    /// Fetches a whole resource (init segment, audio, index), accounting its time as idle.
    async fn fetch_plain(
        &mut self,
        session: &mut Session,
        kind: &'static str,
        period: usize,
        rep: &str,
        res: &Resource,
    ) -> Result<(), PlayerError> {
        let want = Want {
            keep: false,
            verify: kind != "init",
        };
        let f = self.net.fetch_with(res, want, |_| false).await?;
        session.idle(ms(f.lost + f.total));
        let at = session.elapsed_ms() / 1000.0;
        self.record((kind, period, rep), res, &f, at, None)
    }
}

/// Fetches and plans the MPD at `url` (indexes included).
pub(crate) async fn load_presentation(
    net: &mut Net,
    url: &str,
) -> Result<Presentation, PlayerError> {
    let url = Url::parse(url).map_err(|source| PlayerError::Url {
        url: url.to_string(),
        source,
    })?;
    let (doc, retries, failovers) = fetch_doc(net, &url).await?;
    Ok(
        plan_vod(net, &doc, &url, &TrackPrefs::default(), retries, failovers)
            .await?
            .0,
    )
}

/// The MPD document at `url`; also the (retries, failovers) its fetch cost.
pub(crate) async fn fetch_doc(
    net: &mut Net,
    url: &Url,
) -> Result<(dash_mpd_core::MPD, u32, u32), PlayerError> {
    let res = Resource {
        url: url.clone(),
        range: None,
    };
    let f = net.fetch(&res, true, |_, _, _, _| false).await?;
    let body = f.body.unwrap_or_default();
    let text = String::from_utf8(body).map_err(|_| PlayerError::NotText {
        url: url.to_string(),
    })?;
    Ok((mpd::parse_doc(&text, url)?, f.retries, f.failovers))
}

/// The on-demand playlist of `doc` and its indexes; also the (retries, failovers) so far.
async fn plan_vod(
    net: &mut Net,
    doc: &dash_mpd_core::MPD,
    url: &Url,
    prefs: &TrackPrefs,
    mut retries: u32,
    mut failovers: u32,
) -> Result<(Presentation, u32, u32), PlayerError> {
    let mut pres = mpd::plan(doc, url, prefs)?;
    for (pi, vi) in pres.needs_index() {
        let rep = pres.rep_mut(pi, vi);
        let Addressing::Sidx { media, index } = rep.addressing.clone() else {
            continue;
        };
        let f = net
            .fetch(
                &Resource {
                    url: media.clone(),
                    range: Some(index),
                },
                true,
                |_, _, _, _| false,
            )
            .await?;
        retries += f.retries;
        failovers += f.failovers;
        let segs = mpd::parse_sidx(&f.body.unwrap_or_default(), &media, index)?;
        rep.addressing = Addressing::Segments(segs);
    }
    pres.check_aligned()?;
    Ok((pres, retries, failovers))
}

/// `--subtitles`: fetches the chosen WebVTT file and counts its cues.
pub(crate) async fn subtitle_cues(net: &mut Net, url: &Url) -> Result<u32, PlayerError> {
    let res = Resource {
        url: url.clone(),
        range: None,
    };
    let f = net.fetch(&res, true, |_, _, _, _| false).await?;
    let text = String::from_utf8(f.body.unwrap_or_default()).map_err(|_| PlayerError::NotText {
        url: url.to_string(),
    })?;
    Ok(crate::mpd::tracks::count_cues(&text))
}

fn progress_bar(n: usize) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(n as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{prefix} segment {pos}/{len} {msg}")
            .expect("static template"),
    );
    pb
}

fn buffer_bar(level_s: f64, max_s: f64) -> String {
    let width = 20usize;
    let full = ((level_s / max_s.max(1e-9)) * width as f64)
        .round()
        .clamp(0.0, width as f64) as usize;
    format!("[{}{}]", "█".repeat(full), "·".repeat(width - full))
}

/// Streams one session and returns its QoE summary.
pub(crate) async fn stream(opts: StreamOptions) -> Result<Summary, PlayerError> {
    Ok(stream_report(opts).await?.summary)
}

/// The `--dns` resolver of a session, if any.
pub(crate) fn dns_client(opts: &StreamOptions) -> Result<Option<DnsClient>, PlayerError> {
    Ok(match opts.dns {
        Some(server) => {
            let subnet = opts
                .client_subnet
                .as_deref()
                .map(parse_subnet)
                .transpose()?;
            Some(DnsClient::new(server, subnet))
        }
        None => None,
    })
}

/// Streams one session; the summary and the per-download log.
pub async fn stream_report(opts: StreamOptions) -> Result<Report, PlayerError> {
    let url = Url::parse(&opts.url).map_err(|source| PlayerError::Url {
        url: opts.url.clone(),
        source,
    })?;
    let dns = dns_client(&opts)?;
    let shaper = opts.trace.clone().map(Shaper::new);
    let mut net = Net::new(opts.net.clone(), dns, opts.resolve.clone(), shaper);
    let (doc, r0, f0) = fetch_doc(&mut net, &url).await?;
    if doc.mpdtype.as_deref() == Some("dynamic") {
        return live::play(opts, net, doc, url, (r0, f0)).await;
    }
    let (mut pres, load_retries, load_failovers) =
        plan_vod(&mut net, &doc, &url, &opts.tracks, r0, f0).await?;
    if let Some(u) = pres.subtitle_url.clone() {
        pres.tracks.subtitle_cues = Some(subtitle_cues(&mut net, &u).await?);
    }

    let abr = opts.abr.unwrap_or(AbrKind::DEFAULT);
    let mut order = pres.video_segments();
    let mut content = pres.content();
    if let Some(d) = opts.duration_s {
        let mut t = 0.0;
        let mut keep = 0;
        for dur in &content.durations_ms {
            if t >= d * 1000.0 - 1e-6 {
                break;
            }
            t += dur;
            keep += 1;
        }
        let keep = keep.max(1);
        order.truncate(keep);
        content.durations_ms.truncate(keep);
        if let Some(s) = &mut content.sizes_bits {
            s.truncate(keep);
        }
    }
    // Period-relative end time of every video segment, for audio to follow.
    let mut video_end = Vec::with_capacity(order.len());
    {
        let mut t = 0.0;
        let mut period = usize::MAX;
        for &(pi, si) in &order {
            if pi != period {
                period = pi;
                t = 0.0;
            }
            t += pres.periods[pi].video[0].segments()[si].duration_s;
            video_end.push(t);
        }
    }
    info!(
        url = %url,
        periods = pres.periods.len(),
        segments = order.len(),
        ladder_kbps = ?content.bitrates_kbps,
        abr = %abr,
        "playing"
    );

    let max_buffer_s = opts.session.max_buffer_ms / 1000.0;
    let mut session = Session::new(content, abr, opts.session.clone());
    let pb = opts.progress.then(|| progress_bar(order.len()));
    let mut d = Driver {
        opts: opts.clone(),
        net,
        tally: Tally {
            failovers: load_failovers,
            retries: load_retries,
            ..Tally::default()
        },
    };
    let mut inits: HashSet<(usize, Option<usize>)> = HashSet::new();
    let mut audio_next = vec![(0usize, 0.0f64); pres.periods.len()];

    loop {
        match session.next_step() {
            Step::Done => break,
            Step::Wait { ms: wait, reason } => {
                let t0 = Instant::now();
                tokio::time::sleep(Duration::from_secs_f64(wait / 1000.0)).await;
                session.waited(ms(t0.elapsed()), reason);
            }
            Step::Fetch {
                segment,
                quality,
                abandonable,
            } => {
                let (pi, si) = order[segment];
                let rung = pres.rung(pi, quality);
                let rep = &pres.periods[pi].video[rung];
                if !inits.contains(&(pi, Some(rung))) {
                    if let Some(init) = &rep.init {
                        d.fetch_plain(&mut session, "init", pi, &rep.id, init)
                            .await?;
                    }
                    inits.insert((pi, Some(rung)));
                }
                let res = &rep.segments()[si].resource;
                let mut abandon_to = None;
                let want = Want {
                    keep: false,
                    verify: true,
                };
                let f = d
                    .net
                    .fetch_with(res, want, |p| {
                        let (bytes, size, t, ttfb) = (p.bytes, p.size, p.since, p.ttfb);
                        let (Some(size), true) = (size, abandonable) else {
                            return false;
                        };
                        if t.saturating_sub(ttfb) < Duration::from_millis(1) {
                            return false;
                        }
                        let p = Progress {
                            segment,
                            quality,
                            size_bits: size as f64 * 8.0,
                            downloaded_bits: bytes as f64 * 8.0,
                            time_ms: ms(t),
                            ttfb_ms: ms(ttfb),
                        };
                        abandon_to = session.check_abandon(&p);
                        abandon_to.is_some()
                    })
                    .await?;
                if f.retries > 0 {
                    warn!(
                        segment,
                        lost_ms = ms(f.lost) as u64,
                        "stalled on a failing edge"
                    );
                }
                session.idle(ms(f.lost));
                let size = f.size.unwrap_or(f.bytes);
                let rec = session.fetched(Fetched {
                    size_bits: size as f64 * 8.0,
                    downloaded_bits: f.bytes as f64 * 8.0,
                    time_ms: ms(f.total),
                    ttfb_ms: latency_part(f.ttfb, f.total),
                    abandoned_to: if f.abandoned { abandon_to } else { None },
                });
                let abandoned = rec.abandoned;
                if let Some(pb) = &pb {
                    pb.set_position(session.segments_done() as u64);
                    pb.set_message(format!(
                        "{} {:.0} kb/s · measured {:.0} kb/s · buffer {} {:.1} s{}",
                        rep.id,
                        rec.bitrate_kbps,
                        rec.throughput_kbps,
                        buffer_bar(rec.buffer_s, max_buffer_s),
                        rec.buffer_s,
                        if abandoned { " · abandoned" } else { "" }
                    ));
                }
                let at = rec.at_s;
                d.record(("video", pi, &rep.id), res, &f, at, Some(rec))?;
                if abandoned {
                    continue;
                }
                // Audio for the media time this video segment covers.
                if let Some(audio) = &pres.periods[pi].audio {
                    let end = video_end[segment];
                    let segs = audio.segments();
                    while audio_next[pi].0 < segs.len() && audio_next[pi].1 < end - 1e-3 {
                        if !inits.contains(&(pi, None)) {
                            if let Some(init) = &audio.init {
                                d.fetch_plain(&mut session, "init", pi, &audio.id, init)
                                    .await?;
                            }
                            inits.insert((pi, None));
                        }
                        let s = &segs[audio_next[pi].0];
                        d.fetch_plain(&mut session, "audio", pi, &audio.id, &s.resource)
                            .await?;
                        audio_next[pi].0 += 1;
                        audio_next[pi].1 += s.duration_s;
                    }
                }
            }
        }
    }
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let mut summary = session.finish();
    d.tally.fill(&mut summary);
    summary.tracks = Some(pres.tracks.clone());
    if let Some(sink) = &d.opts.log {
        sink.flush().await.map_err(PlayerError::Log)?;
    }
    Ok(Report {
        summary,
        log: d.tally.log,
    })
}

/// `--clients N`: N independent sessions at once; every summary (or error) and the aggregate.
pub async fn stream_many(
    opts: StreamOptions,
    clients: usize,
) -> (Vec<Result<Summary, PlayerError>>, Aggregate) {
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let mut o = opts.clone();
        o.client = c;
        o.progress = false;
        tasks.push(tokio::spawn(stream(o)));
    }
    let mut results = Vec::with_capacity(clients);
    for t in tasks {
        results.push(match t.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(PlayerError::Task(e.to_string())),
        });
    }
    let ok: Vec<Summary> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let agg = Aggregate::of(&ok, results.len() - ok.len());
    (results, agg)
}
