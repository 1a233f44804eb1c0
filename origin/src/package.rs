//! `dashcdn origin package`: probe → transcode → segment → MPD, written atomically.
//!
//! Everything is built in a staging folder beside the library (`{library}/.tmp-package-…`,
//! same filesystem, so the final step is one `rename`). Dot-names are never assets, so a
//! crash or Ctrl-C leaves nothing half-visible; the next run removes staging folders whose
//! process is gone.

use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use crate::ladder::{Ladder, LadderError};
use crate::library::{self, AssetSummary, RepresentationSummary};
use crate::manifest::{self, ManifestError};
use crate::media::{MediaError, MediaInfo, PackagedTrack};
use crate::mp4source;
use crate::probe::{self, ProbeError};
use crate::segment;
use crate::transcode::{self, EncodeOptions, TranscodeError};

const STAGING_PREFIX: &str = ".tmp-package-";

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
    // Every check on the input happens before the library is touched.
    let probe = probe::probe(input)?;
    let renditions = opts
        .ladder
        .resolve(probe.video.display_width, probe.video.height);
    info!(input = %input.display(), duration = probe.duration, ladder = ?renditions.iter().map(|r| &r.id).collect::<Vec<_>>(), "probed");

    let (staging, out) = stage(opts)?;
    // Encodes go beside the asset folder, inside staging, and vanish with it.
    let work = staging.path().join("work");
    std::fs::create_dir(&work).map_err(io("cannot create", &work))?;

    let encoded = transcode::transcode(
        &probe,
        &renditions,
        opts.segment_duration,
        &opts.encode,
        &work,
    )?;

    let jobs: Vec<Job> = encoded
        .video
        .iter()
        .map(|(r, f)| Job {
            id: r.id.clone(),
            file: f.clone(),
            video: true,
        })
        .chain(encoded.audio.iter().map(|f| Job {
            id: "audio".into(),
            file: f.clone(),
            video: false,
        }))
        .collect();
    assemble(input, &jobs, opts, &out, staging.path())
}

/// One already-encoded track to segment into a representation.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub file: PathBuf,
    pub video: bool,
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
            });
        }
        if has_audio && !jobs.iter().any(|j| !j.video) {
            let id = if has_video { "audio".to_string() } else { stem };
            jobs.push(Job {
                id,
                file: f.clone(),
                video: false,
            });
        }
    }
    let (staging, out) = stage(opts)?;
    let first = inputs.first().cloned().unwrap_or_default();
    assemble(&first, &jobs, opts, &out, staging.path())
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
    let mut audio = None;
    for r in results {
        let t = r?;
        match t.info.media {
            MediaInfo::Video { .. } => video.push(t),
            MediaInfo::Audio { .. } => audio = Some(t),
        }
    }
    let manifest_err = |source| PackageError::Manifest {
        input: input.to_owned(),
        source,
    };
    let mpd = manifest::build(&video, audio.as_ref()).map_err(manifest_err)?;
    let xml = manifest::to_xml(&mpd).map_err(manifest_err)?;
    let mpd_path = out.join("manifest.mpd");
    std::fs::write(&mpd_path, xml).map_err(io("cannot write", &mpd_path))?;
    let summary = summarise(&opts.asset, &video, audio.as_ref());
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
    debug!(id, segments = t.segments.len(), "segmented");
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

fn summarise(asset: &str, video: &[PackagedTrack], audio: Option<&PackagedTrack>) -> AssetSummary {
    // The video's length, as the MPD's mediaPresentationDuration (see `manifest::build`):
    // AAC decode time includes its priming frame.
    let duration = video
        .iter()
        .map(PackagedTrack::duration_secs)
        .fold(0.0, f64::max);
    let representations = video
        .iter()
        .chain(audio)
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
