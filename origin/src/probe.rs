//! What the input is, from `ffprobe -print_format json`.
//!
//! Every way an input can be unusable ends here or in [`crate::transcode`] as one
//! [`ProbeError`] line that names the file and the reason, before anything is written.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

/// The parts of a probed input that packaging needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Probe {
    pub path: PathBuf,
    /// Container duration in seconds.
    pub duration: f64,
    pub video: VideoStream,
    /// Every audio stream, in input order; the ladder is video-only without one.
    pub audio: Vec<AudioStream>,
    /// Text subtitle streams (SRT, ASS/SSA, mov_text, WebVTT), packaged as WebVTT.
    pub subtitles: Vec<SubtitleStream>,
    /// Every stream that will not be packaged, with why: reported as a warning each.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VideoStream {
    pub index: u32,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Display width after the sample aspect ratio, what a viewer sees.
    pub display_width: u32,
    /// Average frame rate as a fraction; `None` when ffprobe cannot tell (0/0).
    pub frame_rate: Option<(u32, u32)>,
    /// Clockwise rotation a player applies to show the picture upright (display matrix or
    /// the old `rotate` tag), normalised to 0, 90, 180 or 270.
    pub rotation: u32,
    /// Coded as fields (`field_order` tt/bb/tb/bt): deinterlaced before scaling.
    pub interlaced: bool,
    /// The stream does not say (`field_order` absent or `unknown`, e.g. MPEG-4 Part 2 in
    /// AVI): ffmpeg's `idet` decides frame by frame and only those frames are deinterlaced.
    pub scan_unknown: bool,
    /// PQ or HLG transfer: tone-mapped to SDR BT.709.
    pub hdr: Option<Hdr>,
}

/// A high-dynamic-range transfer function, with the primaries and matrix it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hdr {
    /// `smpte2084` (PQ) or `arib-std-b67` (HLG), as zscale names them.
    pub transfer: String,
    pub primaries: String,
    pub matrix: String,
}

impl VideoStream {
    /// The size a viewer sees: square pixels (after the sample aspect ratio) and upright
    /// (after rotation). Every ladder decision is made on this.
    pub(crate) fn shown_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.height, self.display_width)
        } else {
            (self.display_width, self.height)
        }
    }
}

/// How an audio track is meant to be used, from the stream's disposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct AudioRole {
    pub default: bool,
    pub commentary: bool,
    /// Audio description for the visually impaired.
    pub description: bool,
    pub dub: bool,
}

/// A text subtitle stream of the input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SubtitleStream {
    pub index: u32,
    pub codec: String,
    pub language: Option<String>,
    pub title: Option<String>,
}

/// A stream left out of the package, and what it was.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Skipped {
    pub index: u32,
    /// `data`, `attachment`, `subtitle`, `video`…
    pub kind: String,
    pub codec: String,
    pub language: Option<String>,
    pub reason: &'static str,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stream #{} ({} {}, language {}) not packaged: {}",
            self.index,
            self.kind,
            self.codec,
            self.language.as_deref().unwrap_or("und"),
            self.reason
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AudioStream {
    pub index: u32,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub language: Option<String>,
    /// The stream's `title` tag, used as the MPD `Label`.
    pub title: Option<String>,
    pub role: AudioRole,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{path}: no such file")]
    NotFound { path: PathBuf },
    #[error("{path}: is a directory, not a video file")]
    IsDirectory { path: PathBuf },
    #[error("{path}: not a video ffmpeg can read ({reason})")]
    NotMedia { path: PathBuf, reason: String },
    #[error("{path}: truncated or corrupt ({reason})")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: has no video stream (streams found: {found})")]
    NoVideo { path: PathBuf, found: String },
    #[error("{path}: has no duration; a finite video file is needed for on-demand packaging")]
    NoDuration { path: PathBuf },
    #[error("cannot run ffprobe on {path}: {source}; install ffmpeg (apt-get install ffmpeg)")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
struct RawProbe {
    #[serde(default)]
    streams: Vec<RawStream>,
    format: Option<RawFormat>,
}

#[derive(Deserialize)]
struct RawFormat {
    duration: Option<String>,
}

#[derive(Deserialize)]
struct RawStream {
    index: u32,
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    sample_aspect_ratio: Option<String>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    sample_rate: Option<String>,
    channels: Option<u16>,
    field_order: Option<String>,
    color_transfer: Option<String>,
    color_primaries: Option<String>,
    color_space: Option<String>,
    #[serde(default)]
    side_data_list: Vec<SideData>,
    duration: Option<String>,
    #[serde(default)]
    disposition: Disposition,
    #[serde(default)]
    tags: Tags,
}

#[derive(Deserialize, Default)]
struct SideData {
    rotation: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Disposition {
    attached_pic: u8,
    default: u8,
    comment: u8,
    visual_impaired: u8,
    dub: u8,
}

#[derive(Deserialize, Default)]
struct Tags {
    language: Option<String>,
    title: Option<String>,
    /// MP4 keeps a track's name here (MKV in `title`); muxers fill in generic ones.
    handler_name: Option<String>,
    rotate: Option<String>,
}

impl Tags {
    /// The stream's own name: `title`, else an MP4 `handler_name` that is not a muxer's
    /// default (`SoundHandler`, `Core Media Audio`, …).
    fn name(&self) -> Option<String> {
        let generic = |h: &str| {
            h.contains("Handler")
                || h.starts_with("Core Media")
                || h.starts_with("GPAC")
                || h.starts_with("L-SMASH")
        };
        self.title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| {
                self.handler_name
                    .clone()
                    .filter(|h| !h.trim().is_empty() && !generic(h))
            })
    }
}

/// Subtitle codecs ffmpeg turns into WebVTT; the rest (PGS, DVB, DVD) are pictures.
const TEXT_SUBTITLES: &[&str] = &["subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text"];

/// Runs ffprobe on `path` and says what it is, or exactly why it cannot be packaged.
pub(crate) fn probe(path: &Path) -> Result<Probe, ProbeError> {
    from_raw(path, ffprobe(path)?)
}

fn ffprobe(path: &Path) -> Result<RawProbe, ProbeError> {
    let meta = std::fs::metadata(path).map_err(|_| ProbeError::NotFound {
        path: path.to_owned(),
    })?;
    if meta.is_dir() {
        return Err(ProbeError::IsDirectory {
            path: path.to_owned(),
        });
    }
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .output()
        .map_err(|source| ProbeError::Spawn {
            path: path.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(classify_failure(
            path,
            &String::from_utf8_lossy(&out.stderr),
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| ProbeError::NotMedia {
        path: path.to_owned(),
        reason: format!("ffprobe printed unreadable JSON: {e}"),
    })
}

/// ffprobe's last stderr line, minus the `[demuxer @ 0x…]` / `path:` prefixes, says why.
fn classify_failure(path: &Path, stderr: &str) -> ProbeError {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let clean = |l: &str| -> String {
        let l = match l.find("] ") {
            Some(i) if l.starts_with('[') => &l[i + 2..],
            _ => l,
        };
        let prefix = format!("{}: ", path.display());
        l.strip_prefix(&prefix).unwrap_or(l).to_string()
    };
    let reason = lines
        .iter()
        .map(|l| clean(l))
        .collect::<Vec<_>>()
        .join("; ");
    let reason = if reason.is_empty() {
        "ffprobe failed without a message".to_string()
    } else {
        reason
    };
    // A missing moov in a file that starts like ISO BMFF is the classic cut-off upload; in
    // anything else (a text file named .mp4) it only means "not MP4 at all".
    let corrupt = if reason.contains("moov atom not found") {
        looks_like_iso_bmff(path)
    } else {
        reason.contains("End of file") || reason.contains("partial file")
    };
    if corrupt {
        ProbeError::Corrupt {
            path: path.to_owned(),
            reason,
        }
    } else {
        ProbeError::NotMedia {
            path: path.to_owned(),
            reason,
        }
    }
}

/// Whether the file opens with an ISO BMFF box (`ftyp`, `mdat`, …), read from its first bytes.
fn looks_like_iso_bmff(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    if f.read_exact(&mut head).is_err() {
        return false;
    }
    matches!(
        &head[4..8],
        b"ftyp" | b"styp" | b"moov" | b"mdat" | b"free" | b"skip" | b"wide"
    )
}

fn parse_f64(s: Option<&String>) -> Option<f64> {
    s.and_then(|s| s.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
}

fn parse_ratio(s: Option<&String>, sep: char) -> Option<(u32, u32)> {
    let (a, b) = s?.split_once(sep)?;
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a > 0 && b > 0).then_some((a, b))
}

fn from_raw(path: &Path, raw: RawProbe) -> Result<Probe, ProbeError> {
    let kinds: Vec<String> = raw
        .streams
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s.codec_type.as_deref().unwrap_or("unknown"),
                s.codec_name.as_deref().unwrap_or("?")
            )
        })
        .collect();
    // Cover art is a video stream to ffprobe but a single picture to us.
    let video = raw.streams.iter().find(|s| {
        s.codec_type.as_deref() == Some("video")
            && s.disposition.attached_pic == 0
            && s.width.unwrap_or(0) > 0
            && s.height.unwrap_or(0) > 0
    });
    let Some(v) = video else {
        return Err(ProbeError::NoVideo {
            path: path.to_owned(),
            found: if kinds.is_empty() {
                "none".into()
            } else {
                kinds.join(", ")
            },
        });
    };
    let duration = parse_f64(raw.format.as_ref().and_then(|f| f.duration.as_ref()))
        .or_else(|| parse_f64(v.duration.as_ref()))
        .ok_or_else(|| ProbeError::NoDuration {
            path: path.to_owned(),
        })?;
    let (width, height) = (v.width.unwrap_or(0), v.height.unwrap_or(0));
    let display_width = match parse_ratio(v.sample_aspect_ratio.as_ref(), ':') {
        Some((n, d)) => ((width as u64 * n as u64) / d as u64) as u32,
        None => width,
    };
    let frame_rate = parse_ratio(v.avg_frame_rate.as_ref(), '/')
        .or_else(|| parse_ratio(v.r_frame_rate.as_ref(), '/'));
    let lang = |s: &RawStream| {
        s.tags
            .language
            .clone()
            .filter(|l| l != "und" && !l.is_empty())
    };
    let mut audio = Vec::new();
    let mut subtitles = Vec::new();
    let mut skipped = Vec::new();
    for s in &raw.streams {
        if s.index == v.index {
            continue;
        }
        let codec = s.codec_name.clone().unwrap_or_else(|| "unknown".into());
        let kind = s.codec_type.clone().unwrap_or_else(|| "unknown".into());
        let mut skip = |reason| {
            skipped.push(Skipped {
                index: s.index,
                kind: kind.clone(),
                codec: codec.clone(),
                language: lang(s),
                reason,
            })
        };
        match kind.as_str() {
            "audio" => audio.push(AudioStream {
                index: s.index,
                codec: codec.clone(),
                sample_rate: s
                    .sample_rate
                    .as_ref()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(48_000),
                channels: s.channels.unwrap_or(2),
                language: lang(s),
                title: s.tags.name(),
                role: AudioRole {
                    default: s.disposition.default != 0,
                    commentary: s.disposition.comment != 0,
                    description: s.disposition.visual_impaired != 0,
                    dub: s.disposition.dub != 0,
                },
            }),
            "subtitle" if TEXT_SUBTITLES.contains(&codec.as_str()) => {
                subtitles.push(SubtitleStream {
                    index: s.index,
                    codec: codec.clone(),
                    language: lang(s),
                    title: s.tags.name(),
                })
            }
            "subtitle" => skip("bitmap subtitles cannot become WebVTT; convert them to SRT (OCR) and pass --subtitles"),
            "video" if s.disposition.attached_pic != 0 => skip("cover art"),
            "video" => skip("only the first video stream is packaged"),
            "data" => skip("data streams are not packaged"),
            "attachment" => skip("attachments (fonts, images) are not packaged"),
            _ => skip("unknown stream type"),
        }
    }
    let rotation = v
        .side_data_list
        .iter()
        .find_map(|d| d.rotation)
        .map(|r| -r)
        .or_else(|| v.tags.rotate.as_ref().and_then(|r| r.parse::<f64>().ok()))
        .map(|r| (r.round() as i64).rem_euclid(360) as u32)
        .unwrap_or(0);
    let interlaced = matches!(v.field_order.as_deref(), Some("tt" | "bb" | "tb" | "bt"));
    let scan_unknown = matches!(v.field_order.as_deref(), None | Some("unknown"));
    let hdr = match v.color_transfer.as_deref() {
        Some(t @ ("smpte2084" | "arib-std-b67")) => Some(Hdr {
            transfer: t.to_string(),
            primaries: v.color_primaries.clone().unwrap_or_else(|| "bt2020".into()),
            matrix: match v.color_space.as_deref() {
                Some("bt2020c") => "2020_cl".into(),
                _ => "2020_ncl".into(),
            },
        }),
        _ => None,
    };
    Ok(Probe {
        path: path.to_owned(),
        duration,
        video: VideoStream {
            index: v.index,
            codec: v.codec_name.clone().unwrap_or_default(),
            width,
            height,
            display_width,
            frame_rate,
            rotation,
            interlaced,
            scan_unknown,
            hdr,
        },
        audio,
        subtitles,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> RawProbe {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn audio_only_is_no_video() {
        let r = raw(
            r#"{"streams":[{"index":0,"codec_type":"audio","codec_name":"aac"}],
                        "format":{"duration":"3.0"}}"#,
        );
        let e = from_raw(Path::new("a.m4a"), r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a.m4a: has no video stream (streams found: audio:aac)"
        );
    }

    #[test]
    fn cover_art_is_not_video() {
        let r = raw(
            r#"{"streams":[{"index":0,"codec_type":"video","codec_name":"mjpeg",
                        "width":500,"height":500,"disposition":{"attached_pic":1}}],
                        "format":{"duration":"3.0"}}"#,
        );
        assert!(matches!(
            from_raw(Path::new("x.mp3"), r),
            Err(ProbeError::NoVideo { .. })
        ));
    }

    #[test]
    fn anamorphic_display_width_and_rate() {
        let r = raw(
            r#"{"streams":[{"index":0,"codec_type":"video","codec_name":"h264",
                        "width":720,"height":576,"sample_aspect_ratio":"16:15",
                        "avg_frame_rate":"25/1"},
                        {"index":1,"codec_type":"audio","codec_name":"aac","sample_rate":"44100",
                        "channels":2,"tags":{"language":"eng"}}],
                        "format":{"duration":"12.5"}}"#,
        );
        let p = from_raw(Path::new("x.mp4"), r).unwrap();
        assert_eq!(p.video.display_width, 768);
        assert_eq!(p.video.frame_rate, Some((25, 1)));
        assert_eq!(p.duration, 12.5);
        let a = &p.audio[0];
        assert_eq!((a.sample_rate, a.language.as_deref()), (44100, Some("eng")));
    }

    #[test]
    fn moov_missing_is_corrupt_only_in_an_mp4() {
        let dir = tempfile::tempdir().unwrap();
        let (cut, text) = (dir.path().join("cut.mp4"), dir.path().join("notes.mp4"));
        std::fs::write(&cut, b"\0\0\0\x20ftypisom\0\0\x02\0").unwrap();
        std::fs::write(&text, b"just some notes").unwrap();
        let stderr = |p: &Path| {
            format!("[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55] moov atom not found\n{}: Invalid data found when processing input\n", p.display())
        };
        assert_eq!(
            classify_failure(&cut, &stderr(&cut)).to_string(),
            format!("{}: truncated or corrupt (moov atom not found; Invalid data found when processing input)", cut.display())
        );
        assert!(matches!(
            classify_failure(&text, &stderr(&text)),
            ProbeError::NotMedia { .. }
        ));
    }

    #[test]
    fn rotation_streams_and_what_is_left_out() {
        let r = raw(
            r#"{"streams":[{"index":0,"codec_type":"video","codec_name":"h264",
                "width":1920,"height":1080,"field_order":"tt","color_transfer":"arib-std-b67",
                "side_data_list":[{"side_data_type":"Display Matrix","rotation":-90}]},
              {"index":1,"codec_type":"audio","codec_name":"aac","channels":6,
                "tags":{"language":"eng","title":"Surround"},"disposition":{"default":1}},
              {"index":2,"codec_type":"audio","codec_name":"aac","channels":2,
                "tags":{"language":"fra"},"disposition":{"comment":1}},
              {"index":3,"codec_type":"subtitle","codec_name":"subrip","tags":{"language":"eng"}},
              {"index":4,"codec_type":"subtitle","codec_name":"hdmv_pgs_subtitle","tags":{"language":"deu"}},
              {"index":5,"codec_type":"data","codec_name":"bin_data"}],
              "format":{"duration":"3.0"}}"#,
        );
        let p = from_raw(Path::new("phone.mov"), r).unwrap();
        assert_eq!(p.video.rotation, 90);
        assert_eq!(p.video.shown_size(), (1080, 1920));
        assert!(p.video.interlaced && !p.video.scan_unknown);
        assert_eq!(p.video.hdr.as_ref().unwrap().transfer, "arib-std-b67");
        assert_eq!(p.audio.len(), 2);
        assert_eq!(p.audio[0].title.as_deref(), Some("Surround"));
        assert!(p.audio[0].role.default && p.audio[1].role.commentary);
        assert_eq!(p.subtitles.len(), 1);
        let skipped: Vec<String> = p.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(skipped.len(), 2);
        assert!(
            skipped[0]
                .starts_with("stream #4 (subtitle hdmv_pgs_subtitle, language deu) not packaged"),
            "{skipped:?}"
        );
        assert!(
            skipped[1].starts_with("stream #5 (data bin_data, language und)"),
            "{skipped:?}"
        );
    }

    #[test]
    fn old_rotate_tag_counts_too() {
        let r = raw(
            r#"{"streams":[{"index":0,"codec_type":"video","codec_name":"h264",
                "width":640,"height":360,"tags":{"rotate":"270"}}],"format":{"duration":"1.0"}}"#,
        );
        let p = from_raw(Path::new("x.mp4"), r).unwrap();
        assert_eq!((p.video.rotation, p.video.shown_size()), (270, (360, 640)));
    }
}
