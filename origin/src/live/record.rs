//! `record = true` (or the admin call `POST /_origin/live/NAME/record/start`): every chunk
//! of a channel is also written to disk, and when the recording ends (the admin call
//! `…/record/stop` or `…/record/split`, the server shuts down, or the channel is dropped)
//! it becomes a VOD asset `/vod/NAME-<start time>/` with a static MPD, one `Period` per
//! encoder run.
//!
//! Layout while recording: `{library}/.tmp-record-NAME-…/p{period}-{rep}/{n}.m4s` and
//! `…/init.mp4` (a dot-name, so never served or listed). At the end the MPD and
//! `asset.json` are written inside that folder and the folder is renamed into place: the
//! asset appears whole or not at all.
//!
//! The writer is a thread of its own fed by a channel: the segmenter threads that produce
//! chunks (and the HTTP handlers waiting on them) never wait on the disk.
//!
//! Segment numbers are the live ones (`startNumber` = the first recorded number), media
//! time is the encoder's (`presentationTimeOffset` = where that segment begins: 0 for a
//! recording that began with the run), so the same bytes serve both the live window and
//! the recording. A recording started or stopped while the channel runs (the admin
//! calls, see `http`) begins and ends on segment boundaries. Runs are laid end to end: the
//! outage between two runs is not part of the recording.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::SystemTime;

use tracing::{info, warn};

use super::mpd::{open_adaptation_set, open_representation, xs_seconds};
use super::store::{Event, Track};
use super::{LiveConfig, TrackKind};
use crate::library::{AssetSummary, RepresentationSummary, KIND_AUDIO, MANIFEST_FILE};
use crate::web::iso8601;

/// Starts the writer thread; events go to the returned sender. Dropping every sender
/// finishes the recording too.
pub(crate) fn start(config: &LiveConfig, library: &Path) -> io::Result<mpsc::Sender<Event>> {
    let staging = tempfile::Builder::new()
        .prefix(&format!(".tmp-record-{}-", config.name))
        .tempdir_in(library)?;
    let (tx, rx) = mpsc::channel();
    let mut rec = Recording {
        config: config.clone(),
        library: library.to_owned(),
        staging: Some(staging),
        began: None,
        periods: Vec::new(),
        open: HashMap::new(),
        failed: false,
    };
    std::thread::Builder::new()
        .name(format!("record-{}", config.name))
        .spawn(move || {
            let reply = loop {
                match rx.recv() {
                    Ok(Event::Finish(reply)) => break Some(reply),
                    Ok(event) => rec.on(event),
                    Err(_) => break None,
                }
            };
            let published = rec.publish();
            if let Some(reply) = reply {
                let _ = reply.send(published);
            }
        })?;
    Ok(tx)
}

struct RecPeriod {
    id: u32,
    /// The first recorded segment (the run's first, unless the recording began during
    /// the run).
    start_number: u64,
    /// Media time (s) at which segment `start_number` begins: `presentationTimeOffset`.
    offset: f64,
    tracks: Vec<Track>,
    /// Representation id → media time (s) at which its last chunk ends.
    ends: HashMap<String, f64>,
}

struct Recording {
    config: LiveConfig,
    library: PathBuf,
    /// `None` once published (or given up).
    staging: Option<tempfile::TempDir>,
    /// When the first run began: the asset's name carries it.
    began: Option<SystemTime>,
    periods: Vec<RecPeriod>,
    /// (period, rep) → the segment being written.
    open: HashMap<(u32, String), (u64, File)>,
    /// A write failed: the recording is dropped at the end (logged once).
    failed: bool,
}

fn rep_dir(period: u32, rep: &str) -> String {
    format!("p{period}-{rep}")
}

impl Recording {
    fn on(&mut self, event: Event) {
        if self.failed {
            return;
        }
        if let Err(error) = self.write(event) {
            warn!(channel = %self.config.name, %error, "recording failed; this event will not be kept");
            self.failed = true;
            self.open.clear();
        }
    }

    fn dir(&self) -> &Path {
        self.staging
            .as_ref()
            .expect("staging until published")
            .path()
    }

    fn write(&mut self, event: Event) -> io::Result<()> {
        match event {
            Event::Period {
                id,
                start_number,
                first,
                began,
            } => {
                self.began.get_or_insert(began);
                self.periods.push(RecPeriod {
                    id,
                    start_number: first,
                    offset: (first - start_number) as f64
                        * self.config.segment_duration.as_secs_f64(),
                    tracks: Vec::new(),
                    ends: HashMap::new(),
                });
            }
            Event::Init { period, track } => {
                let dir = self.dir().join(rep_dir(period, &track.rung.id));
                fs::create_dir_all(&dir)?;
                fs::write(dir.join("init.mp4"), &track.init)?;
                if let Some(p) = self.periods.iter_mut().find(|p| p.id == period) {
                    p.tracks.retain(|t| t.rung.id != track.rung.id);
                    p.tracks.push(track);
                }
            }
            Event::Chunk {
                period,
                rep,
                number,
                bytes,
                end,
            } => {
                let key = (period, rep);
                let reopen = self.open.get(&key).is_none_or(|(n, _)| *n != number);
                if reopen {
                    let dir = self.dir().join(rep_dir(period, &key.1));
                    fs::create_dir_all(&dir)?;
                    let file = File::create(dir.join(format!("{number}.m4s")))?;
                    self.open.insert(key.clone(), (number, file));
                }
                let (_, file) = self.open.get_mut(&key).expect("opened above");
                for b in &bytes {
                    file.write_all(b)?;
                }
                if let Some(p) = self.periods.iter_mut().find(|p| p.id == period) {
                    let e = p.ends.entry(key.1).or_insert(end);
                    *e = e.max(end);
                }
            }
            Event::Finish(_) => {}
        }
        Ok(())
    }

    /// Writes the MPD and asset.json and renames the staging folder into the library.
    fn publish(&mut self) -> Option<PathBuf> {
        self.open.clear();
        let staging = self.staging.take()?;
        let name = &self.config.name;
        // Runs without media of every track they announced keep only the tracks they have.
        for p in &mut self.periods {
            p.tracks.retain(|t| p.ends.contains_key(&t.rung.id));
        }
        self.periods.retain(|p| {
            p.tracks.iter().any(|t| t.rung.kind == TrackKind::Video)
                && p.tracks.iter().all(|t| p.ends[&t.rung.id] > p.offset)
        });
        if self.failed || self.periods.is_empty() {
            warn!(channel = %name, "nothing recorded; no asset written");
            return None;
        }
        let began = self.began?;
        let stamp: String = iso8601(began)
            .chars()
            .take(19)
            .filter(|c| c.is_ascii_digit() || *c == 'T')
            .collect();
        let mut asset = format!("{name}-{stamp}Z");
        let mut n = 2;
        while self.library.join(&asset).exists() {
            asset = format!("{name}-{stamp}Z-{n}");
            n += 1;
        }
        let (mpd, summary) = static_mpd(&self.config, &asset, &self.periods);
        let result = (|| {
            fs::write(staging.path().join(MANIFEST_FILE), mpd)?;
            summary.write_to(staging.path())?;
            let dir = staging.keep();
            let target = self.library.join(&asset);
            fs::rename(&dir, &target).inspect_err(|_| {
                let _ = fs::remove_dir_all(&dir);
            })?;
            Ok::<_, io::Error>(target)
        })();
        match result {
            Ok(target) => {
                info!(channel = %name, asset = %asset, duration_secs = summary.duration_secs,
                    periods = self.periods.len(), "recording published");
                Some(target)
            }
            Err(error) => {
                warn!(channel = %name, %error, "could not publish the recording");
                None
            }
        }
    }
}

/// The length of a period: to where its shortest track ends, so every track has media
/// to the period's end.
fn period_duration(p: &RecPeriod) -> f64 {
    p.tracks
        .iter()
        .map(|t| p.ends[&t.rung.id])
        .fold(f64::INFINITY, f64::min)
        - p.offset
}

/// A static MPD (ISO/IEC 23009-1 §5.3.1.2 type="static") over the recorded periods, laid
/// end to end, and the asset's summary.
fn static_mpd(config: &LiveConfig, asset: &str, periods: &[RecPeriod]) -> (String, AssetSummary) {
    let seg = config.segment_duration.as_secs_f64();
    let total: f64 = periods.iter().map(period_duration).sum();
    let mut reps = Vec::new();
    let mut x = String::with_capacity(4096);
    let _ = write!(
        x,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="{}" maxSegmentDuration="{}" minBufferTime="PT2S">
"#,
        xs_seconds(total),
        xs_seconds(seg),
    );
    let mut start = 0.0;
    for p in periods {
        let duration = period_duration(p);
        let _ = writeln!(
            x,
            r#"  <Period id="p{}" start="{}" duration="{}">"#,
            p.id,
            xs_seconds(start),
            xs_seconds(duration)
        );
        start += duration;
        for (set, kind) in [TrackKind::Video, TrackKind::Audio].into_iter().enumerate() {
            let mut tracks: Vec<_> = p.tracks.iter().filter(|t| t.rung.kind == kind).collect();
            if tracks.is_empty() {
                continue;
            }
            tracks.sort_by_key(|t| std::cmp::Reverse(t.rung.kbps));
            open_adaptation_set(&mut x, set, kind, config.fps);
            for t in tracks {
                let r = &t.rung;
                let id = rep_dir(p.id, &r.id);
                open_representation(&mut x, &id, t);
                let ts = u64::from(t.info.timescale);
                let _ = write!(
                    x,
                    r#"
        <SegmentTemplate timescale="{ts}" duration="{}" startNumber="{}" presentationTimeOffset="{}" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s"/>
      </Representation>
"#,
                    (seg * ts as f64).round() as u64,
                    p.start_number,
                    (p.offset * ts as f64).round() as u64,
                );
                let video = kind == TrackKind::Video;
                reps.push(RepresentationSummary {
                    id,
                    kind: if video { "video" } else { KIND_AUDIO }.to_owned(),
                    codecs: t.info.codecs.clone(),
                    bandwidth: u64::from(r.kbps) * 1000,
                    width: video.then_some(r.width),
                    height: video.then_some(r.height),
                    sample_rate: (!video).then_some(48_000),
                });
            }
            x.push_str("    </AdaptationSet>\n");
        }
        x.push_str("  </Period>\n");
    }
    x.push_str("</MPD>\n");
    let summary = AssetSummary {
        name: asset.to_owned(),
        duration_secs: (total * 1000.0).round() / 1000.0,
        representations: reps,
    };
    (x, summary)
}
