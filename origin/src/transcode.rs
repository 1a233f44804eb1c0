//! One ffmpeg run turns the input into one MP4 per rendition plus one audio MP4.
//!
//! ffmpeg only decodes and encodes here; segmenting is ours ([`crate::segment`]). What we
//! ask of it so that segments line up across renditions: keyframes forced at every
//! multiple of the segment duration (`-force_key_frames`), no scene-cut keyframes, a GOP
//! equal to the segment, constant frame rate, and a 90 kHz video timescale so common
//! rates (25, 30000/1001, 60) have exact frame durations.
//!
//! Progress comes from `-progress pipe:1` (`out_time_us=`, `speed=`) and is drawn with
//! indicatif; a truncated input is caught from ffmpeg's `partial file` complaint or from
//! decoding ending well short of the probed duration.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use indicatif::{ProgressBar, ProgressStyle};
use tracing::{debug, warn};

use crate::ladder::{Rendition, AUDIO_KBPS};
use crate::probe::Probe;

/// What one transcode produced, in the work folder.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// `(rendition, file)` from highest to lowest.
    pub video: Vec<(Rendition, PathBuf)>,
    pub audio: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// x264 preset: `veryfast` by default, the usual trade for on-demand ladders.
    pub preset: String,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            preset: "veryfast".into(),
            progress: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("cannot run ffmpeg on {path}: {source}; install ffmpeg (apt-get install ffmpeg)")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: ffmpeg failed ({reason})")]
    Failed { path: PathBuf, reason: String },
    #[error("{path}: truncated or corrupt ({reason})")]
    Corrupt { path: PathBuf, reason: String },
}

/// Builds the ffmpeg argument list: one input, a `split` into every rendition's scaler,
/// one output file per rendition and one for audio.
pub fn ffmpeg_args(
    probe: &Probe,
    ladder: &[Rendition],
    segment_duration: f64,
    opts: &EncodeOptions,
    work: &Path,
) -> Vec<String> {
    let d = segment_duration;
    let mut a: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-nostats",
        "-progress",
        "pipe:1",
        "-y",
        "-i",
    ]
    .map(String::from)
    .to_vec();
    a.push(probe.path.to_string_lossy().into_owned());
    let n = ladder.len();
    let mut graph = format!("[0:{}]split={n}", probe.video.index);
    for i in 0..n {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, r) in ladder.iter().enumerate() {
        // setsar=1: renditions are square-pixel at their own (display-aspect) size.
        graph.push_str(&format!(
            ";[s{i}]scale={}:{}:flags=bicubic,setsar=1[v{i}]",
            r.width, r.height
        ));
    }
    a.extend(["-filter_complex".into(), graph]);
    // GOP of one segment at the source rate, and a keyframe at every segment boundary even
    // when the rate is fractional or variable.
    let fps = probe
        .video
        .frame_rate
        .map(|(n, d)| n as f64 / d as f64)
        .filter(|f| *f > 0.0 && *f <= 240.0)
        .unwrap_or(25.0);
    let gop = ((fps * d).round() as u32).max(1).to_string();
    let keys = format!("expr:gte(t,n_forced*{d})");
    for (i, r) in ladder.iter().enumerate() {
        let k = r.kbps;
        a.extend([
            "-map".into(),
            format!("[v{i}]"),
            "-an".into(),
            "-c:v".into(),
            "libx264".into(),
            "-preset".into(),
            opts.preset.clone(),
            "-profile:v".into(),
            "high".into(),
            "-pix_fmt".into(),
            "yuv420p".into(),
            "-b:v".into(),
            format!("{k}k"),
            "-maxrate".into(),
            format!("{}k", k * 11 / 10),
            "-bufsize".into(),
            format!("{}k", k * 2),
            "-g".into(),
            gop.clone(),
            "-keyint_min".into(),
            gop.clone(),
            "-sc_threshold".into(),
            "0".into(),
            "-forced-idr".into(),
            "1".into(),
            "-force_key_frames".into(),
            keys.clone(),
            "-fps_mode".into(),
            "cfr".into(),
            "-video_track_timescale".into(),
            "90000".into(),
            "-map_metadata".into(),
            "-1".into(),
            work.join(format!("{}.mp4", r.id))
                .to_string_lossy()
                .into_owned(),
        ]);
    }
    if let Some(au) = &probe.audio {
        a.extend([
            "-map".into(),
            format!("0:{}", au.index),
            "-vn".into(),
            "-c:a".into(),
            "aac".into(),
            "-b:a".into(),
            format!("{AUDIO_KBPS}k"),
            "-ac".into(),
            au.channels.clamp(1, 2).to_string(),
            "-ar".into(),
            "48000".into(),
            work.join("audio.mp4").to_string_lossy().into_owned(),
        ]);
    }
    a
}

/// Runs the transcode, drawing progress, and checks the output covers the input.
pub fn transcode(
    probe: &Probe,
    ladder: &[Rendition],
    segment_duration: f64,
    opts: &EncodeOptions,
    work: &Path,
) -> Result<Encoded, TranscodeError> {
    let path = &probe.path;
    let args = ffmpeg_args(probe, ladder, segment_duration, opts, work);
    debug!(?args, "ffmpeg");
    let mut child = Command::new("ffmpeg")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| TranscodeError::Spawn {
            path: path.clone(),
            source,
        })?;
    // stderr is drained on its own thread so a chatty ffmpeg never blocks on a full pipe.
    let mut stderr = child.stderr.take().expect("piped stderr");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let bar = if opts.progress {
        let b = ProgressBar::new((probe.duration * 1000.0) as u64);
        b.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg} eta {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        b.set_prefix(format!("encoding {} renditions", ladder.len()));
        b
    } else {
        ProgressBar::hidden()
    };
    let mut out_time = 0.0f64;
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(us) = line
            .strip_prefix("out_time_us=")
            .and_then(|v| v.parse::<i64>().ok())
        {
            out_time = out_time.max(us as f64 / 1e6);
            bar.set_position((out_time * 1000.0) as u64);
        } else if let Some(speed) = line.strip_prefix("speed=") {
            bar.set_message(format!("speed {}", speed.trim()));
        }
    }
    let status = child.wait().map_err(|source| TranscodeError::Spawn {
        path: path.clone(),
        source,
    })?;
    let stderr = err_thread.join().unwrap_or_default();
    bar.finish_and_clear();
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    if !status.success() {
        return Err(TranscodeError::Failed {
            path: path.clone(),
            reason: if last.is_empty() {
                format!("exit {status}")
            } else {
                last
            },
        });
    }
    if stderr.contains("partial file") {
        return Err(TranscodeError::Corrupt {
            path: path.clone(),
            reason: format!(
                "the file ends early: ffmpeg reported a partial file and decoded {out_time:.1} s of {:.1} s",
                probe.duration
            ),
        });
    }
    // Half a segment of slack: the container duration may count a trailing audio tail.
    if out_time + segment_duration.max(1.0) < probe.duration * 0.95 {
        return Err(TranscodeError::Corrupt {
            path: path.clone(),
            reason: format!(
                "decoding stopped at {out_time:.1} s of {:.1} s{}",
                probe.duration,
                if last.is_empty() {
                    String::new()
                } else {
                    format!(": {last}")
                }
            ),
        });
    }
    // Decoded to the end, so whatever ffmpeg complained about was survivable: say it once.
    for l in stderr.lines().filter(|l| !l.trim().is_empty()) {
        warn!(input = %path.display(), "ffmpeg: {l}");
    }
    Ok(Encoded {
        video: ladder
            .iter()
            .map(|r| (r.clone(), work.join(format!("{}.mp4", r.id))))
            .collect(),
        audio: probe.audio.as_ref().map(|_| work.join("audio.mp4")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{AudioStream, VideoStream};

    #[test]
    fn args_split_once_and_force_keyframes_per_segment() {
        let probe = Probe {
            path: "in.mov".into(),
            duration: 10.0,
            video: VideoStream {
                index: 1,
                codec: "prores".into(),
                width: 1920,
                height: 1080,
                display_width: 1920,
                frame_rate: Some((30000, 1001)),
            },
            audio: Some(AudioStream {
                index: 0,
                codec: "pcm_s16le".into(),
                sample_rate: 48000,
                channels: 6,
                language: None,
            }),
        };
        let ladder = crate::ladder::Ladder::default().resolve(1920, 1080);
        let a = ffmpeg_args(
            &probe,
            &ladder,
            2.0,
            &EncodeOptions::default(),
            Path::new("/w"),
        );
        let graph = &a[a.iter().position(|x| x == "-filter_complex").unwrap() + 1];
        assert!(graph.starts_with("[0:1]split=5[s0][s1][s2][s3][s4];"));
        assert!(graph.contains("scale=1280:720"));
        assert_eq!(
            a.iter().filter(|x| *x == "expr:gte(t,n_forced*2)").count(),
            5
        );
        // 29.97 fps * 2 s rounds to a 60-frame GOP.
        assert!(a.windows(2).any(|w| w[0] == "-g" && w[1] == "60"));
        assert!(a.contains(&"/w/720p.mp4".to_string()));
        assert!(a.windows(2).any(|w| w[0] == "-ac" && w[1] == "2"));
        assert_eq!(a.last().unwrap(), "/w/audio.mp4");
    }
}
