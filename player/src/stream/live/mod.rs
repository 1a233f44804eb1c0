//! Live playback of a dynamic MPD (low-latency DASH, DASH-IF "Low-latency Modes for DASH").
//!
//! - Start: the server clock from `UTCTiming` ([`clock`]); the playhead starts at the live
//!   edge minus the target latency (`ServiceDescription` `Latency@target`, else
//!   `suggestedPresentationDelay`, else [`DEFAULT_TARGET_S`]), in the segment covering it.
//! - Each segment is requested at its availability time, `AST + Period@start + segment
//!   start + duration − availabilityTimeOffset`: with the usual offset (segment − chunk),
//!   that is once its first chunk exists, and the rest streams in by chunked transfer.
//!   Video and audio download side by side (two keep-alive connections, as a browser's
//!   two SourceBuffers). A chunk counts as playable when its `moof`+`mdat` has arrived
//!   whole (`dashcdn_http::cmaf::check` on the bytes since the last chunk), so playback
//!   ([`playback`]) runs at most a chunk behind the encoder.
//! - Throughput of a chunked download is measured inside each chunk's burst only — from
//!   the read that began the chunk to the read that completed it, the first read's bytes
//!   left out — and summed over the chunks: the time the server spent waiting for the
//!   encoder between chunks is not bandwidth (counted, a 4 Mbit/s link would look like
//!   the stream's own 0.8 Mbit/s and the ABR could never step up). A response with
//!   `Content-Length` (a complete segment) is timed from first byte to last, as on demand.
//! - A `SegmentTimeline` (ffmpeg's `-use_timeline 1`, Shaka Packager) lists the segments
//!   that exist: one whose time has come but that is not listed yet is waited for with the
//!   MPD fetched again every [`TIMELINE_POLL`] (see [`manifest`]). Segments delivered whole
//!   (no `availabilityTimeOffset`) exist a segment after they start: a latency target
//!   under a segment + [`WHOLE_SEGMENT_MARGIN_S`] is raised to that.
//! - ABR: `--abr`, else `lolp` (`abr::lolp`, the low-latency rule).
//! - The MPD is fetched again every `minimumUpdatePeriod`; a new `Period` (the origin
//!   starts one when its input comes back after a gap) is entered when the current one
//!   ends, with its own ladder (the ABR is rebuilt on it) and init segments.
//! - Catch-up: the playback rate (see [`playback`]); past `Latency@max` (else target +
//!   two segments) the playhead skips to the live edge minus the target.
//! - Stop: `--live-seconds` of wall time, else `--duration` of media played, else Ctrl-C.

mod clock;
mod manifest;
mod playback;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use dash_mpd_core::MPD;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use url::Url;

use crate::abr::lolp::Lolp;
use crate::abr::{Abr, AbrKind, Ctx, Downloaded};
use crate::content::Content;
use crate::estimate::Ewma;
use crate::mpd::Resource;
use crate::net::{Fetch, Net, NetError, Want};
use crate::qoe::LiveStats;
use crate::session::SegmentRecord;
use crate::stream::{
    dns_client, fetch_doc, latency_part, ms, PlayerError, Report, StreamOptions, Tally,
};
use clock::Clock;
use manifest::{LiveManifest, LivePeriod, LiveRep};
use playback::{Kind, Playback};

/// The latency aimed at when the MPD names none (dash.js's default live delay is 3
/// segments; a low-latency stream always carries a ServiceDescription).
pub(crate) const DEFAULT_TARGET_S: f64 = 3.0;
/// Playback-rate bounds without a ServiceDescription `PlaybackRate`.
const DEFAULT_RATES: (f64, f64) = (0.95, 1.05);
/// How often playback advances while nothing arrives.
const TICK: Duration = Duration::from_millis(100);
/// Above a segment of latency for segments delivered whole: time to publish and fetch one.
const WHOLE_SEGMENT_MARGIN_S: f64 = 0.5;
/// Media needed to start or resume at most (a whole segment can be long).
const MAX_RESUME_S: f64 = 1.0;
/// How often the MPD is fetched while a due segment is not in its SegmentTimeline yet.
const TIMELINE_POLL: Duration = Duration::from_millis(250);

/// A chunked download, cut into CMAF chunks as it arrives.
#[derive(Default)]
struct Chunks {
    buf: Vec<u8>,
    /// Bytes of `buf` that are whole boxes.
    verified: usize,
    /// Whole `moof`+`mdat` fragments so far.
    fragments: usize,
    /// When the chunk being received began (its first read), and that read's size.
    chunk_began: Option<Duration>,
    first_len: usize,
    /// Σ over complete chunks of (last read − first read), and the bytes after each
    /// chunk's first read.
    active: Duration,
    active_bytes: u64,
}

impl Chunks {
    /// Adds the bytes of one read at `since`; returns whether a chunk completed.
    fn push(&mut self, data: &[u8], since: Duration) -> bool {
        if self.verified == self.buf.len() {
            self.chunk_began = Some(since);
            self.first_len = data.len();
        }
        self.buf.extend_from_slice(data);
        let Ok(s) = dashcdn_http::cmaf::check(&self.buf[self.verified..]) else {
            return false;
        };
        let new = self.buf.len() - self.verified;
        if let Some(b) = self.chunk_began.take() {
            self.active += since.saturating_sub(b);
            self.active_bytes += new.saturating_sub(self.first_len) as u64;
        }
        self.verified = self.buf.len();
        self.fragments += s.fragments + s.unverified;
        s.fragments + s.unverified > 0
    }
}

/// One segment to fetch: where it sits on the timeline and how it is delivered.
struct Job<'a> {
    kind: Kind,
    res: Resource,
    start: f64,
    seg_s: f64,
    chunk_s: f64,
    kbps: f64,
    rep: &'a LiveRep,
}

/// Session state shared by the video and audio downloads. They run in one task, so the
/// lock is never contended; a `Mutex` rather than a `RefCell` keeps the future `Send`
/// (`--clients N` spawns sessions on the runtime).
struct Shared {
    pb: Mutex<Playback>,
    clock: Clock,
    ast: f64,
}

impl Shared {
    fn pb(&self) -> MutexGuard<'_, Playback> {
        // Nothing panics while holding it; a poisoned lock still holds consistent state.
        self.pb.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn edge(&self) -> f64 {
        self.clock.now() - self.ast
    }

    fn tick(&self) {
        self.pb().advance(Instant::now(), self.edge());
    }

    /// Runs `f`, letting playback advance every [`TICK`] meanwhile.
    async fn ticking<F: Future>(&self, f: F) -> F::Output {
        tokio::pin!(f);
        let mut iv = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                out = &mut f => {
                    self.tick();
                    return out;
                }
                _ = iv.tick() => self.tick(),
            }
        }
    }

    /// Downloads one segment, extending the playable media chunk by chunk.
    async fn fetch(&self, net: &mut Net, job: &Job<'_>) -> Result<(Fetch, f64), NetError> {
        self.pb()
            .begin(job.kind, job.start, job.start + job.seg_s, job.kbps);
        let mut chunks = Chunks::default();
        let chunked = job.chunk_s < job.seg_s - 1e-6;
        let want = Want {
            keep: false,
            verify: true,
        };
        let f = net
            .fetch_with(&job.res, want, |p| {
                // A new attempt (after a failed one) starts over.
                if p.bytes == p.data.len() as u64 {
                    chunks = Chunks::default();
                }
                if chunks.push(p.data, p.since) && chunked {
                    let mut pb = self.pb();
                    pb.advance(Instant::now(), self.edge());
                    let media = (chunks.fragments as f64 * job.chunk_s).min(job.seg_s);
                    pb.extend(job.kind, job.start + media);
                }
                false
            })
            .await?;
        let media = if chunks.fragments > 0 && chunked {
            (chunks.fragments as f64 * job.chunk_s).min(job.seg_s)
        } else {
            job.seg_s
        };
        {
            let mut pb = self.pb();
            pb.advance(Instant::now(), self.edge());
            pb.extend(job.kind, job.start + media);
        }
        // kbit/s = bits per ms.
        let tput = if f.size.is_none() {
            let active = ms(chunks.active);
            if active >= 1.0 && chunks.active_bytes > 0 {
                chunks.active_bytes as f64 * 8.0 / active
            } else {
                f.bytes as f64 * 8.0 / active.max(1.0)
            }
        } else {
            let dl = ms(f.total) - latency_part(f.ttfb, f.total);
            f.bytes as f64 * 8.0 / dl.max(1e-3)
        };
        Ok((f, tput))
    }
}

fn is_404(e: &NetError) -> bool {
    matches!(e, NetError::Status { status: 404, .. })
}

/// `--abr`, else the low-latency rule.
fn live_abr(opts: &StreamOptions) -> AbrKind {
    opts.abr.unwrap_or(AbrKind::Lolp)
}

/// The session's ABR over the current Period's ladder.
struct Adapt {
    content: Content,
    abr: Box<dyn Abr>,
    est: Ewma,
    ladder: Vec<u64>,
    last: Option<usize>,
    count: usize,
}

impl Adapt {
    fn new(opts: &StreamOptions, p: &LivePeriod) -> Adapt {
        let rates = crate::mpd::dedup_ascending(
            p.video
                .iter()
                .map(|r| r.bandwidth as f64 / 1000.0)
                .collect(),
        );
        let seg_ms = p.seg_s() * 1000.0;
        // A live stream has no end: a long uniform horizon stands in for it.
        let content = Content::uniform(rates, seg_ms, 10_000);
        let cfg = &opts.session;
        let abr: Box<dyn Abr> = match live_abr(opts) {
            AbrKind::Lolp => Box::new(Lolp::new(p.video[0].chunk_s() * 1000.0)),
            k => k.build(&content, cfg.max_buffer_ms, cfg.ao, cfg.robust),
        };
        Adapt {
            content,
            abr,
            est: Ewma::new(&cfg.half_lives_s, seg_ms),
            ladder: p.video.iter().map(|r| r.bandwidth).collect(),
            last: None,
            count: 0,
        }
    }

    fn choose(&mut self, opts: &StreamOptions, buffer_s: f64) -> usize {
        let c = ctx(&self.content, &self.est, self.last, opts, buffer_s);
        let q = if self.count == 0 {
            self.abr.first_quality(&c)
        } else {
            self.abr.choose(&c, self.count % 5_000).quality
        };
        q.min(self.content.top())
    }

    fn downloaded(&mut self, opts: &StreamOptions, q: usize, f: &Fetch, tput: f64, buffer_s: f64) {
        let bits = f.bytes as f64 * 8.0;
        let dl_ms = (bits / tput.max(1e-6)).max(1e-3);
        let ttfb_ms = ms(f.ttfb);
        if self.count > 0 {
            let c = ctx(&self.content, &self.est, self.last, opts, buffer_s);
            self.abr.report_download(
                &c,
                &Downloaded {
                    quality: q,
                    downloaded_bits: bits,
                    time_ms: dl_ms + ttfb_ms,
                    ttfb_ms,
                    abandoned_to: None,
                },
            );
        }
        self.est.push(dl_ms, tput, ttfb_ms);
        self.last = Some(q);
        self.count += 1;
    }
}

/// What the ABR sees: a free function over the fields it reads, so that `self.abr` can be
/// borrowed mutably beside it.
fn ctx<'a>(
    content: &'a Content,
    est: &Ewma,
    last: Option<usize>,
    opts: &StreamOptions,
    buffer_s: f64,
) -> Ctx<'a> {
    Ctx {
        content,
        buffer_ms: buffer_s * 1000.0,
        max_buffer_ms: opts.session.max_buffer_ms,
        throughput_kbps: est.throughput_kbps,
        latency_ms: est.latency_ms,
        last_quality: last,
    }
}

/// Where playback should start (or skip to): the Period and segment covering `t`.
fn locate(man: &LiveManifest, t: f64) -> (LivePeriod, u64) {
    let p = man
        .periods
        .iter()
        .rev()
        .find(|p| p.start_s <= t + 1e-6)
        .unwrap_or(&man.periods[0])
        .clone();
    let n = p.number_at(&p.video[0], t.max(p.start_s));
    (p, n)
}

/// Plays the dynamic MPD `doc` (fetched from `url` over `net`) until the session's bound.
pub(crate) async fn play(
    opts: StreamOptions,
    mut net: Net,
    doc: MPD,
    url: Url,
    (load_retries, load_failovers): (u32, u32),
) -> Result<Report, PlayerError> {
    let began = Instant::now();
    let mut man = manifest::plan(&doc, &url, &opts.tracks)?;
    if opts.tracks.subtitles.is_some() {
        warn!("--subtitles: the live presentation's text tracks are listed, not fetched");
    }
    let clock = Clock::sync(&mut net, &man, &url).await;
    let mut audio_net = Net::new(
        opts.net.clone(),
        dns_client(&opts)?,
        opts.resolve.clone(),
        None,
    );
    let asked = man
        .target_s
        .or(man.suggested_delay_s)
        .unwrap_or(DEFAULT_TARGET_S);
    // Segments that can only be read whole (no availabilityTimeOffset, as ffmpeg's
    // `-use_timeline` output) exist a segment after their start: a target under a
    // segment (+ WHOLE_SEGMENT_MARGIN_S to publish and fetch it) would stall on every one.
    let whole = {
        let (p, _) = locate(&man, man.edge(clock.now() - man.ast) - asked);
        let v = &p.video[0];
        (v.ato_s <= 0.0).then(|| v.seg_s() + WHOLE_SEGMENT_MARGIN_S)
    };
    let target = match whole {
        Some(floor) if asked < floor => {
            warn!(
                target_latency_s = asked,
                aiming_at_s = floor,
                "the latency target is under one segment and segments are delivered whole (no availabilityTimeOffset); aiming at a segment + {WHOLE_SEGMENT_MARGIN_S} s"
            );
            floor
        }
        _ => asked,
    };
    // The live edge: the server's clock, held back by a timeline that lags it.
    let edge0 = man.edge(clock.now() - man.ast);
    let (cur, mut n) = locate(&man, edge0 - target);
    let max_latency = man
        .latency_max_s
        .filter(|m| *m > target)
        .unwrap_or(target + 2.0 * cur.seg_s());
    let rates = (
        man.rate_min.unwrap_or(DEFAULT_RATES.0).min(1.0),
        man.rate_max.unwrap_or(DEFAULT_RATES.1).max(1.0),
    );
    let resume = if opts.session.startup_ms > 0.0 {
        opts.session.startup_ms / 1000.0
    } else {
        cur.video[0].chunk_s().min(MAX_RESUME_S)
    };
    // A channel that began less than the target ago: start at its first media (the
    // latency is then below the target, and playing slower brings it up).
    let start_at = (edge0 - target).max(cur.start_s);
    let shared = Shared {
        pb: Mutex::new(Playback::new(
            start_at,
            cur.audio.is_some(),
            target,
            rates,
            resume,
            began,
        )),
        clock,
        ast: man.ast,
    };
    info!(
        url = %url,
        target_latency_s = target,
        clock_offset_s = clock.offset_s,
        period = %cur.id,
        segment = n,
        ladder_kbps = ?cur.video.iter().map(|r| r.bandwidth / 1000).collect::<Vec<_>>(),
        abr = %live_abr(&opts),
        "playing live"
    );
    let deadline = opts
        .live_seconds
        .map(|s| began + Duration::from_secs_f64(s.max(0.0)));
    let mut tally = Tally {
        retries: load_retries,
        failovers: load_failovers,
        ..Tally::default()
    };
    let mut adapt = Adapt::new(&opts, &cur);
    let mut cur = cur;
    let mut audio_next: Option<u64> = None;
    let mut inits: HashSet<Url> = HashSet::new();
    let mut periods_played = vec![cur.id.clone()];
    let mut last_refresh = Instant::now();
    let mut refreshes = 0u32;
    let mut in_progress = 0u32;
    let mut bytes = 0u64;
    let mut period_index = 0usize;
    let mut misses = 0u32;
    // Since when every request has been a 404: a channel whose input stopped for good
    // is an error after three timeouts, not an endless wait.
    let mut missing_since: Option<Instant> = None;
    let give_up = opts.net.timeout * 3;
    let mut force_skip = false;
    let mut refresh_now = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    let stop_reason = 'session: loop {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break "--live-seconds reached";
        }
        if opts.live_seconds.is_none()
            && opts.duration_s.is_some_and(|d| shared.pb().played_s() >= d)
        {
            break "--duration reached";
        }
        // minimumUpdatePeriod: fetch the MPD again (new Periods, the current one's end).
        let mup = man.min_update_s.map(Duration::from_secs_f64);
        if mup.is_some_and(|m| now.duration_since(last_refresh) >= m)
            || misses > 0
            || std::mem::take(&mut refresh_now)
        {
            match shared.ticking(fetch_doc(&mut net, &url)).await {
                Ok((doc, r, f)) => {
                    tally.retries += r;
                    tally.failovers += f;
                    man = manifest::plan(&doc, &url, &opts.tracks)?;
                    refreshes += 1;
                    // The current Period as now published: its end, and a timeline's
                    // new entries.
                    if let Some(p) = man.periods.iter().find(|p| p.id == cur.id) {
                        if p.video.len() == cur.video.len() {
                            // Numbers are positions in a timeline whose head may have
                            // left the window: carry the next segments over by time.
                            let mid = |per: &LivePeriod, r: &LiveRep, k: u64| {
                                per.seg_start(r, k) + r.dur_s(k) / 2.0
                            };
                            let tn = mid(&cur, &cur.video[0], n);
                            let ta = audio_next
                                .zip(cur.audio.as_ref())
                                .map(|(m, a)| mid(&cur, a, m));
                            cur = p.clone();
                            n = cur.number_at(&cur.video[0], tn);
                            audio_next =
                                ta.zip(cur.audio.as_ref()).map(|(t, a)| cur.number_at(a, t));
                        } else {
                            cur.end_s = p.end_s;
                        }
                    }
                }
                Err(e) => warn!("MPD refresh failed: {e}"),
            }
            last_refresh = Instant::now();
        }
        // Past the end of this Period: into the next one.
        if cur.past_end(&cur.video[0], n) {
            let Some(next) = man
                .periods
                .iter()
                .find(|p| p.start_s > cur.start_s + 1e-6)
                .cloned()
            else {
                break "the presentation ended";
            };
            info!(period = %next.id, start_s = next.start_s, "entering the next period");
            if next.video.iter().map(|r| r.bandwidth).collect::<Vec<_>>() != adapt.ladder {
                adapt = Adapt::new(&opts, &next);
            }
            n = next.start_number();
            cur = next;
            audio_next = None;
            period_index += 1;
            periods_played.push(cur.id.clone());
            continue;
        }
        let vrep0 = &cur.video[0];
        let seg_s = vrep0.dur_s(n);
        let seg_start = cur.seg_start(vrep0, n);
        // Wait for the segment to become available.
        let avail = man.ast + seg_start + (seg_s - vrep0.ato_s).max(0.0);
        let wait = avail - shared.clock.now();
        if wait <= 0.0 && !vrep0.listed(n) {
            // Its time has come but the timeline does not list it yet: fetch the MPD
            // again (at most every TIMELINE_POLL) rather than wait a whole
            // minimumUpdatePeriod behind the packager.
            let since = Instant::now().duration_since(last_refresh);
            if since >= TIMELINE_POLL {
                refresh_now = true;
                continue;
            }
            tokio::select! {
                _ = shared.ticking(tokio::time::sleep(TIMELINE_POLL - since)) => {}
                _ = &mut ctrl_c => break 'session "interrupted",
            }
            continue;
        }
        if wait > 0.0 {
            let until = Duration::from_secs_f64(wait.min(1.0));
            tokio::select! {
                _ = shared.ticking(tokio::time::sleep(until)) => {}
                _ = &mut ctrl_c => break 'session "interrupted",
            }
            continue;
        }
        // Too far behind: skip to the target latency.
        {
            let edge = shared.edge();
            let mut pb = shared.pb();
            let behind = pb.latency(edge);
            let window_start = man.time_shift_s.map(|t| edge - t);
            // Where the target puts the playhead (a late packager's timeline holds the
            // edge back: no use skipping to where nothing is yet).
            let to = man.edge(edge) - target;
            if pb.started && behind > max_latency && to > pb.playhead + 1e-3
                || window_start.is_some_and(|w| seg_start + seg_s < w)
                || force_skip
            {
                force_skip = false;
                let (p, m) = locate(&man, to);
                info!(
                    latency_s = behind,
                    to_segment = m,
                    "too far behind the live edge; skipping ahead"
                );
                pb.skip_to(to);
                drop(pb);
                if p.id != cur.id {
                    if p.video.iter().map(|r| r.bandwidth).collect::<Vec<_>>() != adapt.ladder {
                        adapt = Adapt::new(&opts, &p);
                    }
                    periods_played.push(p.id.clone());
                    period_index += 1;
                    cur = p;
                }
                n = m;
                audio_next = None;
                continue;
            }
        }
        let buffer_s = shared.pb().ahead();
        let q = adapt.choose(&opts, buffer_s);
        let vrep = &cur.video[q];
        let seg_end = seg_start + seg_s;
        // Init segments, once per representation and Period.
        for rep in std::iter::once(vrep).chain(cur.audio.iter()) {
            if let Some(u) = rep.init_url(&url)? {
                if inits.insert(u.clone()) {
                    let res = Resource {
                        url: u,
                        range: None,
                    };
                    let f = shared
                        .ticking(net.fetch(&res, false, |_, _, _, _| false))
                        .await?;
                    let at = began.elapsed().as_secs_f64();
                    tally.record(&opts, ("init", period_index, &rep.id), &res, &f, at, None);
                }
            }
        }
        let vjob = Job {
            kind: Kind::Video,
            res: Resource {
                url: vrep.url(n, &url)?,
                range: None,
            },
            start: seg_start,
            seg_s,
            chunk_s: vrep.chunk_s_of(n),
            kbps: vrep.bandwidth as f64 / 1000.0,
            rep: vrep,
        };
        // Audio segments covering the same stretch of the timeline.
        let mut ajobs = Vec::new();
        if let Some(a) = &cur.audio {
            let from = cur.number_at(a, seg_start).max(audio_next.unwrap_or(0));
            let mut to = cur.number_at(a, seg_end - 1e-6);
            // A timeline's audio may not list the last one yet: it comes with the next.
            while to > from && !a.listed(to) {
                to -= 1;
            }
            for m in from..=to {
                ajobs.push(Job {
                    kind: Kind::Audio,
                    res: Resource {
                        url: a.url(m, &url)?,
                        range: None,
                    },
                    start: cur.seg_start(a, m),
                    seg_s: a.dur_s(m),
                    chunk_s: a.chunk_s_of(m),
                    kbps: 0.0,
                    rep: a,
                });
            }
        }
        let video = shared.fetch(&mut net, &vjob);
        let audio = async {
            let mut out = Vec::new();
            for j in &ajobs {
                out.push((j, shared.fetch(&mut audio_net, j).await));
            }
            out
        };
        let both = async { tokio::join!(video, audio) };
        let run = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, shared.ticking(both)).await.ok(),
                None => Some(shared.ticking(both).await),
            }
        };
        let (v, a) = tokio::select! {
            r = run => match r {
                Some(r) => r,
                None => break 'session "--live-seconds reached",
            },
            _ = &mut ctrl_c => break 'session "interrupted",
        };
        for (j, r) in a {
            match r {
                Ok((f, _)) => {
                    let at = began.elapsed().as_secs_f64();
                    tally.record(
                        &opts,
                        ("audio", period_index, &j.rep.id),
                        &j.res,
                        &f,
                        at,
                        None,
                    );
                }
                Err(e) if is_404(&e) => {
                    // Missing audio plays as silence rather than stopping the picture.
                    warn!(url = %j.res.url, "audio segment not found; playing on without it");
                    shared.pb().extend(Kind::Audio, j.start + j.seg_s);
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(last) = ajobs.last() {
            audio_next = Some(cur.number_at(last.rep, last.start) + 1);
        }
        match v {
            Ok((f, tput)) => {
                misses = 0;
                missing_since = None;
                if f.size.is_none() {
                    in_progress += 1;
                }
                bytes += f.bytes;
                let buffer_s = shared.pb().ahead();
                adapt.downloaded(&opts, q, &f, tput, buffer_s);
                let at = began.elapsed().as_secs_f64();
                let rec = SegmentRecord {
                    segment: n as usize,
                    quality: q,
                    bitrate_kbps: vjob.kbps,
                    bytes: f.bytes,
                    at_s: at,
                    ttfb_ms: ms(f.ttfb),
                    download_ms: ms(f.total.saturating_sub(f.ttfb)),
                    throughput_kbps: tput,
                    estimate_kbps: adapt.est.throughput_kbps.unwrap_or(0.0),
                    buffer_s,
                    abandoned: false,
                };
                debug!(segment = n, rep = %vrep.id, throughput_kbps = tput as u64, buffer_s, "segment in");
                tally.record(
                    &opts,
                    ("video", period_index, &vrep.id),
                    &vjob.res,
                    &f,
                    at,
                    Some(rec),
                );
                n += 1;
            }
            Err(e) if is_404(&e) => {
                // Not there (yet): the encoder may be late, or its input dropped and a
                // new Period is coming. The MPD is fetched again before the next try.
                misses += 1;
                let since = *missing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > give_up {
                    return Err(PlayerError::LiveStalled {
                        url: vjob.res.url.to_string(),
                        secs: since.elapsed().as_secs_f64(),
                    });
                }
                // Within a Period the numbers are contiguous: a late segment is waited
                // for, never skipped (skipping one the encoder is still making would put
                // the playhead ahead of the media). Falling too far behind is handled by
                // the skip to the live edge above.
                shared
                    .ticking(tokio::time::sleep(Duration::from_secs_f64(vrep0.chunk_s())))
                    .await;
            }
            Err(NetError::Status { status: 410, .. }) => {
                // Left the time-shift window: rejoin at the target latency.
                warn!(
                    segment = n,
                    "segment already left the window; skipping ahead"
                );
                force_skip = true;
            }
            Err(e) => return Err(e.into()),
        }
    };
    shared.tick();
    info!(reason = stop_reason, "live session ends");
    let wall_s = began.elapsed().as_secs_f64();
    let pb = shared.pb.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut summary = pb.summary(wall_s, bytes);
    summary.abr = Some(live_abr(&opts).name().to_string());
    tally.fill(&mut summary);
    summary.tracks = Some(man.tracks.clone());
    let lat = &pb.latencies;
    summary.live = Some(LiveStats {
        target_latency_s: target,
        latency_min_s: lat
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .min(f64::MAX),
        latency_max_s: lat.iter().copied().fold(0.0, f64::max),
        latency_samples: lat.len(),
        catchup_s: pb.catchup_s,
        slowdown_s: pb.slowdown_s,
        skips: pb.skips,
        skipped_s: pb.skipped_s,
        mpd_refreshes: refreshes,
        periods: {
            periods_played.dedup();
            periods_played.len()
        },
        in_progress_segments: in_progress,
        clock_offset_s: shared.clock.offset_s,
        wall_s,
    });
    if let Some(sink) = &opts.log {
        sink.flush().await.map_err(PlayerError::Log)?;
    }
    Ok(Report {
        summary,
        log: tally.log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dashcdn_http::cmaf::mp4box;

    /// moof (tfhd with a default sample size of 100, a trun of `n` samples) + mdat.
    fn chunk(n: u32) -> Vec<u8> {
        let mut tfhd = 0x02_0010u32.to_be_bytes().to_vec();
        tfhd.extend(1u32.to_be_bytes());
        tfhd.extend(100u32.to_be_bytes());
        let mut trun = 0x001u32.to_be_bytes().to_vec();
        trun.extend(n.to_be_bytes());
        trun.extend(0u32.to_be_bytes());
        let traf = mp4box(
            b"traf",
            &[mp4box(b"tfhd", &tfhd), mp4box(b"trun", &trun)].concat(),
        );
        [
            mp4box(b"moof", &traf),
            mp4box(b"mdat", &vec![0; 100 * n as usize]),
        ]
        .concat()
    }

    #[test]
    fn throughput_counts_bursts_not_the_wait_between_chunks() {
        let ms = Duration::from_millis;
        let mut c = Chunks::default();
        let (a, b) = (chunk(10), chunk(10));
        // Chunk 1 arrives in two reads 10 ms apart; chunk 2 half a second later, also
        // in two reads 10 ms apart.
        assert!(!c.push(&a[..100], ms(0)));
        assert!(c.push(&a[100..], ms(10)));
        assert!(!c.push(&b[..100], ms(500)));
        assert!(c.push(&b[100..], ms(510)));
        assert_eq!(c.fragments, 2);
        assert_eq!(c.active, ms(20));
        let bytes = (a.len() - 100 + b.len() - 100) as u64;
        assert_eq!(c.active_bytes, bytes);
        // ≈ 0.8 Mbit/s over 20 ms of bursts, where wall time (510 ms) would say 32 kbit/s.
        let kbps = c.active_bytes as f64 * 8.0 / 20.0;
        assert!(kbps > 700.0, "{kbps}");
    }
}
