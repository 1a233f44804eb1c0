//! `dashcdn origin package`: probe → transcode → segment → MPD, written atomically.
//!
//! Everything is built in a staging folder beside the library (`{library}/.tmp-package-…`,
//! same filesystem, so the final step is one `rename`). Dot-names are never assets, so a
//! crash or Ctrl-C leaves nothing half-visible; the next run removes staging folders whose
//! process is gone.

use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use crate::ladder::{Ladder, LadderError};
use crate::library::{self, AssetSummary, RepresentationSummary, SUBTITLE_FILE};
use crate::manifest::{self, AudioSet, ManifestError, TextSet};
use crate::media::{MediaError, MediaInfo, PackagedTrack};
use crate::mp4source;
use crate::probe::{self, AudioStream, Probe, ProbeError};
use crate::segment;
use crate::transcode::{self, AudioOut, EncodeOptions, Outputs, TextOut, TranscodeError};

const STAGING_PREFIX: &str = ".tmp-package-";

/// `--subtitles FILE[:LANG]`: a sidecar subtitle file (SRT, ASS, WebVTT) and its language.
#[derive(Debug, Clone, PartialEq)]
pub struct SubtitleFile {
    pub path: PathBuf,
    /// ISO 639 code; `und` when not given.
    pub lang: String,
}

impl std::str::FromStr for SubtitleFile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `:LANG` only when it looks like a language code, so `C:\x.srt`-like or `a:b.srt`
        // names still work.
        match s.rsplit_once(':') {
            Some((path, lang))
                if (2..=3).contains(&lang.len())
                    && lang.bytes().all(|b| b.is_ascii_alphabetic()) =>
            {
                Ok(SubtitleFile {
                    path: path.into(),
                    lang: lang.to_ascii_lowercase(),
                })
            }
            _ if s.is_empty() => Err("empty subtitle file name".into()),
            _ => Ok(SubtitleFile {
                path: s.into(),
                lang: "und".into(),
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PackageOptions {
    pub asset: String,
    pub library: PathBuf,
    pub ladder: Ladder,
    /// Target segment duration in seconds; keyframes are forced on its multiples.
    pub segment_duration: f64,
    /// Replace an asset of the same name.
    pub force: bool,
    pub encode: EncodeOptions,
    /// Sidecar subtitle files, each a text AdaptationSet.
    pub subtitles: Vec<SubtitleFile>,
}

impl PackageOptions {
    pub fn new(asset: impl Into<String>, library: impl Into<PathBuf>) -> Self {
        PackageOptions {
            asset: asset.into(),
            library: library.into(),
            ladder: Ladder::default(),
            segment_duration: 4.0,
            force: false,
            encode: EncodeOptions::default(),
            subtitles: Vec::new(),
        }
    }
}

/// What was packaged, for the command's summary line and for tests.
#[derive(Debug, Clone)]
pub struct Packaged {
    pub dir: PathBuf,
    pub summary: AssetSummary,
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Transcode(#[from] TranscodeError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("{input}: {source}")]
    Manifest {
        input: PathBuf,
        #[source]
        source: ManifestError,
    },
    #[error(transparent)]
    Ladder(#[from] LadderError),
    #[error("asset name `{0}`: use letters, digits, `-`, `_` and `.`, not starting with `.` (at most 128)")]
    BadName(String),
    #[error("segment duration {0} s: must be between 0.5 and 60 seconds")]
    BadSegmentDuration(f64),
    #[error("preset `{0}`: x264 presets are ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow, placebo")]
    BadPreset(String),
    #[error("subtitle file {0}: no such file")]
    NoSubtitles(PathBuf),
    #[error("asset `{asset}` already exists in {library}; pass --force to replace it")]
    Exists { asset: String, library: PathBuf },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PackageError + 'a {
    move |source| PackageError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Packages `input` into `{library}/{asset}`; on any error the library is as it was.
pub fn package(input: &Path, opts: &PackageOptions) -> Result<Packaged, PackageError> {
    check_target(opts)?;
    if !transcode::PRESETS.contains(&opts.encode.preset.as_str()) {
        return Err(PackageError::BadPreset(opts.encode.preset.clone()));
    }
    for f in &opts.subtitles {
        if !f.path.is_file() {
            return Err(PackageError::NoSubtitles(f.path.clone()));
        }
    }
    // Every check on the input happens before the library is touched.
    let probe = probe::probe(input)?;
    let (w, h) = probe.video.shown_size();
    let resolved = opts.ladder.resolve(w, h);
    if !resolved.dropped.is_empty() && opts.ladder != Ladder::default() {
        warn!(
            input = %input.display(),
            "ladder rungs {} are larger than the source ({w}x{h} as shown) and are dropped: never upscaled",
            resolved.dropped.join(", ")
        );
    }
    for s in &probe.skipped {
        warn!(input = %input.display(), "{s}");
    }
    let plan = Plan::new(&probe, resolved.renditions, &opts.subtitles);
    info!(
        input = %input.display(),
        duration = probe.duration,
        shown = %format!("{w}x{h}"),
        rotation = probe.video.rotation,
        interlaced = probe.video.interlaced,
        hdr = probe.video.hdr.is_some(),
        ladder = ?plan.outputs.video.iter().map(|r| &r.id).collect::<Vec<_>>(),
        audio = ?plan.outputs.audio.iter().map(|a| &a.id).collect::<Vec<_>>(),
        text = ?plan.text.iter().map(|t| &t.id).collect::<Vec<_>>(),
        "probed"
    );

    let (staging, out) = stage(opts)?;
    // Encodes go beside the asset folder, inside staging, and vanish with it.
    let work = staging.path().join("work");
    std::fs::create_dir(&work).map_err(io("cannot create", &work))?;

    // Sidecar subtitles first: a file ffmpeg cannot read fails in a second, not after the
    // whole transcode.
    let mut text = plan.text.clone();
    for t in text.iter_mut() {
        if let Some(sidecar) = &t.sidecar {
            let file = work.join(format!("{}.vtt", t.id));
            transcode::subtitles_to_webvtt(sidecar, &file)?;
            t.file = file;
        }
    }
    let encoded = transcode::transcode(
        &probe,
        &plan.outputs,
        opts.segment_duration,
        &opts.encode,
        &work,
    )?;
    for (t, file) in &encoded.text {
        if let Some(tt) = text.iter_mut().find(|x| x.id == t.id) {
            tt.file = file.clone();
        }
    }

    let jobs: Vec<Job> = encoded
        .video
        .iter()
        .map(|(r, f)| Job {
            id: r.id.clone(),
            file: f.clone(),
            video: true,
            group: 0,
        })
        .chain(encoded.audio.iter().map(|(a, f)| Job {
            id: a.id.clone(),
            file: f.clone(),
            video: false,
            group: plan.group_of(&a.id),
        }))
        .collect();
    assemble(
        input,
        &jobs,
        &plan.groups,
        &text,
        opts,
        &out,
        staging.path(),
    )
}

/// How one input audio stream is described in the MPD.
#[derive(Debug, Clone)]
pub(crate) struct AudioGroup {
    pub lang: String,
    pub label: String,
    pub roles: Vec<&'static str>,
    pub description: bool,
    /// Representation ids of this stream's renditions.
    ids: Vec<String>,
}

/// A subtitle track: from the input (converted by the main ffmpeg run) or a sidecar file.
#[derive(Debug, Clone)]
struct TextTrack {
    id: String,
    lang: String,
    label: String,
    sidecar: Option<PathBuf>,
    /// The WebVTT file, once written.
    file: PathBuf,
}

/// Every output of one package run, and how the MPD groups them.
struct Plan {
    outputs: Outputs,
    groups: Vec<AudioGroup>,
    text: Vec<TextTrack>,
}

fn unique(id: String, taken: &mut Vec<String>) -> String {
    let mut candidate = id.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{id}-{n}");
        n += 1;
    }
    taken.push(candidate.clone());
    candidate
}

/// A language code as a path component: ASCII letters and `-` only.
fn lang_id(lang: &str) -> String {
    let l: String = lang
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if l.is_empty() {
        "und".into()
    } else {
        l.to_ascii_lowercase()
    }
}

impl Plan {
    fn new(probe: &Probe, video: Vec<crate::ladder::Rendition>, sidecars: &[SubtitleFile]) -> Plan {
        let mut taken: Vec<String> = video.iter().map(|r| r.id.clone()).collect();
        let main = probe
            .audio
            .iter()
            .position(|a| a.role.default && !a.role.commentary && !a.role.description)
            .or_else(|| {
                probe
                    .audio
                    .iter()
                    .position(|a| !a.role.commentary && !a.role.description)
            })
            .unwrap_or(0);
        let mut audio = Vec::new();
        let mut groups = Vec::new();
        for (k, a) in probe.audio.iter().enumerate() {
            let lang = a.language.clone().unwrap_or_else(|| "und".into());
            // The first stream keeps the plain `audio` id older assets and players know.
            let base = if k == 0 {
                unique("audio".into(), &mut taken)
            } else {
                unique(format!("audio-{}", lang_id(&lang)), &mut taken)
            };
            let mut ids = Vec::new();
            if a.channels >= 6 {
                let id = unique(format!("{base}-5.1"), &mut taken);
                audio.push(AudioOut {
                    id: id.clone(),
                    stream: a.index,
                    channels: 6,
                    kbps: 384,
                });
                ids.push(id);
            }
            audio.push(AudioOut {
                id: base.clone(),
                stream: a.index,
                channels: a.channels.clamp(1, 2),
                kbps: if a.channels == 1 { 96 } else { 128 },
            });
            ids.push(base);
            groups.push(AudioGroup {
                label: audio_label(a, &lang),
                roles: audio_roles(a, k == main),
                description: a.role.description,
                lang,
                ids,
            });
        }
        let mut text = Vec::new();
        let mut outs = Vec::new();
        for s in &probe.subtitles {
            let lang = s.language.clone().unwrap_or_else(|| "und".into());
            let id = unique(format!("text-{}", lang_id(&lang)), &mut taken);
            outs.push(TextOut {
                id: id.clone(),
                stream: s.index,
            });
            text.push(TextTrack {
                id,
                label: s.title.clone().unwrap_or_else(|| lang.clone()),
                lang,
                sidecar: None,
                file: PathBuf::new(),
            });
        }
        for f in sidecars {
            let id = unique(format!("text-{}", lang_id(&f.lang)), &mut taken);
            text.push(TextTrack {
                id,
                label: f.lang.clone(),
                lang: f.lang.clone(),
                sidecar: Some(f.path.clone()),
                file: PathBuf::new(),
            });
        }
        Plan {
            outputs: Outputs {
                video,
                audio,
                text: outs,
            },
            groups,
            text,
        }
    }

    fn group_of(&self, id: &str) -> usize {
        self.groups
            .iter()
            .position(|g| g.ids.iter().any(|i| i == id))
            .unwrap_or(0)
    }
}

fn audio_label(a: &AudioStream, lang: &str) -> String {
    if let Some(t) = &a.title {
        return t.clone();
    }
    let layout = match a.channels {
        1 => "mono",
        2 => "stereo",
        6.. => "5.1",
        _ => "audio",
    };
    format!("{lang} {layout}")
}

fn audio_roles(a: &AudioStream, main: bool) -> Vec<&'static str> {
    let mut roles = Vec::new();
    if a.role.commentary {
        roles.push("commentary");
    }
    if a.role.description {
        roles.push("description");
    }
    if a.role.dub {
        roles.push("dub");
    }
    if roles.is_empty() {
        roles.push(if main { "main" } else { "alternate" });
    }
    roles
}

/// One already-encoded track to segment into a representation.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub id: String,
    pub file: PathBuf,
    pub video: bool,
    /// The audio group (AdaptationSet) of an audio job.
    pub group: usize,
}

/// `dashcdn origin segment`: packages MP4s that are already encoded (keyframes aligned
/// on segment boundaries by whoever encoded them) without transcoding. Each file's video
/// track becomes a representation named after the file; its audio track, if any, `audio`.
pub fn package_encoded(
    inputs: &[PathBuf],
    opts: &PackageOptions,
) -> Result<Packaged, PackageError> {
    check_target(opts)?;
    let mut jobs = Vec::new();
    let mut groups = Vec::new();
    for f in inputs {
        // Reading each index first fails on a bad input before anything is written; no
        // ffprobe here, its start-up would cost more than segmenting a short file.
        let tracks = mp4source::open_tracks(f)?;
        let is_video =
            |t: &mp4source::Mp4FileSource| matches!(t.track().media, MediaInfo::Video { .. });
        let has_video = tracks.iter().any(is_video);
        let has_audio = tracks.iter().any(|t| !is_video(t));
        let stem = f
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| library::valid_component(s))
            .ok_or_else(|| PackageError::BadName(f.display().to_string()))?
            .to_string();
        if has_video {
            jobs.push(Job {
                id: stem.clone(),
                file: f.clone(),
                video: true,
                group: 0,
            });
        }
        if has_audio && !jobs.iter().any(|j| !j.video) {
            let id = if has_video { "audio".to_string() } else { stem };
            let lang = tracks
                .iter()
                .find(|t| !is_video(t))
                .and_then(|t| t.track().language.clone())
                .unwrap_or_else(|| "und".into());
            groups.push(AudioGroup {
                label: lang.clone(),
                lang,
                roles: vec!["main"],
                description: false,
                ids: vec![id.clone()],
            });
            jobs.push(Job {
                id,
                file: f.clone(),
                video: false,
                group: 0,
            });
        }
    }
    let (staging, out) = stage(opts)?;
    let first = inputs.first().cloned().unwrap_or_default();
    assemble(&first, &jobs, &groups, &[], opts, &out, staging.path())
}

fn check_target(opts: &PackageOptions) -> Result<(), PackageError> {
    if !library::valid_component(&opts.asset) {
        return Err(PackageError::BadName(opts.asset.clone()));
    }
    if !(0.5..=60.0).contains(&opts.segment_duration) {
        return Err(PackageError::BadSegmentDuration(opts.segment_duration));
    }
    if opts.library.join(&opts.asset).exists() && !opts.force {
        return Err(PackageError::Exists {
            asset: opts.asset.clone(),
            library: opts.library.clone(),
        });
    }
    Ok(())
}

/// Creates the staging folder beside the library: `(guard, asset folder inside it)`.
fn stage(opts: &PackageOptions) -> Result<(tempfile::TempDir, PathBuf), PackageError> {
    std::fs::create_dir_all(&opts.library).map_err(io("cannot create library", &opts.library))?;
    remove_stale_staging(&opts.library);
    let staging = tempfile::Builder::new()
        .prefix(&format!("{STAGING_PREFIX}{}-", std::process::id()))
        .tempdir_in(&opts.library)
        .map_err(io("cannot create a staging folder in", &opts.library))?;
    let out = staging.path().join("asset");
    std::fs::create_dir(&out).map_err(io("cannot create", &out))?;
    Ok((staging, out))
}

/// Segments every job (in parallel: renditions are independent), writes the MPD and
/// `asset.json`, and publishes the asset.
fn assemble(
    input: &Path,
    jobs: &[Job],
    groups: &[AudioGroup],
    text: &[TextTrack],
    opts: &PackageOptions,
    out: &Path,
    staging: &Path,
) -> Result<Packaged, PackageError> {
    let seg = opts.segment_duration;
    let results: Vec<Result<PackagedTrack, PackageError>> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|j| {
                let dir = out.join(&j.id);
                s.spawn(move || segment_file(&j.file, &j.id, &dir, seg, j.video))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("segmenter thread panicked"))
            .collect()
    });
    let mut video = Vec::new();
    let mut sets: Vec<AudioSet> = groups
        .iter()
        .map(|g| AudioSet {
            lang: g.lang.clone(),
            label: g.label.clone(),
            roles: g.roles.clone(),
            description: g.description,
            tracks: Vec::new(),
        })
        .collect();
    for (r, job) in results.into_iter().zip(jobs) {
        let t = r?;
        match t.info.media {
            MediaInfo::Video { .. } => video.push(t),
            MediaInfo::Audio { .. } => {
                if let Some(set) = sets.get_mut(job.group) {
                    set.tracks.push(t);
                }
            }
        }
    }
    sets.retain(|s| !s.tracks.is_empty());
    let duration = video
        .iter()
        .map(PackagedTrack::duration_secs)
        .fold(0.0, f64::max);
    let mut text_sets = Vec::new();
    for t in text {
        let dir = out.join(&t.id);
        std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        let dest = dir.join(SUBTITLE_FILE);
        std::fs::copy(&t.file, &dest).map_err(io("cannot write", &dest))?;
        let bytes = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        text_sets.push(TextSet {
            id: t.id.clone(),
            lang: t.lang.clone(),
            label: t.label.clone(),
            url: format!("{}/{SUBTITLE_FILE}", t.id),
            bandwidth: ((bytes * 8) as f64 / duration.max(1.0)).ceil() as u64,
        });
    }
    let manifest_err = |source| PackageError::Manifest {
        input: input.to_owned(),
        source,
    };
    let mpd = manifest::build(&video, &sets, &text_sets).map_err(manifest_err)?;
    let xml = manifest::to_xml(&mpd).map_err(manifest_err)?;
    let mpd_path = out.join("manifest.mpd");
    std::fs::write(&mpd_path, xml).map_err(io("cannot write", &mpd_path))?;
    let audio: Vec<&PackagedTrack> = sets.iter().flat_map(|s| &s.tracks).collect();
    let summary = summarise(&opts.asset, &video, &audio);
    summary
        .write_to(out)
        .map_err(io("cannot write asset.json in", out))?;
    let final_dir = opts.library.join(&opts.asset);
    publish(out, &final_dir, staging)?;
    info!(asset = %opts.asset, dir = %final_dir.display(), "packaged");
    Ok(Packaged {
        dir: final_dir,
        summary,
    })
}

fn segment_file(
    file: &Path,
    id: &str,
    dir: &Path,
    seg: f64,
    video: bool,
) -> Result<PackagedTrack, PackageError> {
    let mut sources = mp4source::open_tracks(file)?;
    let idx = sources
        .iter()
        .position(|s| matches!(s.track().media, MediaInfo::Video { .. }) == video)
        .ok_or_else(|| MediaError::Unsupported {
            path: file.to_owned(),
            reason: format!(
                "ffmpeg wrote no {} track",
                if video { "video" } else { "audio" }
            ),
        })?;
    let mut src = sources.swap_remove(idx);
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    let t = segment::package_track(&mut src, id, dir, seg)?;
    debug!(id, dir = %t.dir.display(), segments = t.segments.len(), "segmented");
    Ok(t)
}

use crate::media::SampleSource as _;

/// Moves the finished asset into place. With `--force` the old copy is first moved into
/// the staging folder (removed with it), so the name is missing for only the instant
/// between two renames, and never half-written.
fn publish(out: &Path, final_dir: &Path, staging: &Path) -> Result<(), PackageError> {
    if final_dir.exists() {
        let old = staging.join("old");
        std::fs::rename(final_dir, &old).map_err(io("cannot move aside", final_dir))?;
    }
    std::fs::rename(out, final_dir).map_err(io("cannot move into place", final_dir))
}

fn summarise(asset: &str, video: &[PackagedTrack], audio: &[&PackagedTrack]) -> AssetSummary {
    // The video's length, as the MPD's mediaPresentationDuration (see `manifest::build`):
    // AAC decode time includes its priming frame.
    let duration = video
        .iter()
        .map(PackagedTrack::duration_secs)
        .fold(0.0, f64::max);
    let representations = video
        .iter()
        .chain(audio.iter().copied())
        .map(|t| {
            let (kind, width, height, sample_rate) = match t.info.media {
                MediaInfo::Video { width, height, .. } => {
                    ("video", Some(width), Some(height), None)
                }
                MediaInfo::Audio { sample_rate, .. } => ("audio", None, None, Some(sample_rate)),
            };
            RepresentationSummary {
                id: t.id.clone(),
                kind: kind.into(),
                codecs: t.info.codecs.clone(),
                bandwidth: t.peak_bandwidth(),
                width,
                height,
                sample_rate,
            }
        })
        .collect();
    AssetSummary {
        name: asset.into(),
        duration_secs: (duration * 1000.0).round() / 1000.0,
        representations,
    }
}

/// Removes `.tmp-package-{pid}-…` folders left by runs that died (Ctrl-C, crash, kill -9).
fn remove_stale_staging(library: &Path) {
    let Ok(entries) = std::fs::read_dir(library) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(STAGING_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => info!(dir = %e.path().display(), "removed staging folder of a dead run"),
                Err(err) => {
                    warn!(dir = %e.path().display(), %err, "cannot remove stale staging folder")
                }
            }
        }
    }
}
