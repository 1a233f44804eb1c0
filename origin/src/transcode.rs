//! One ffmpeg run turns the input into one MP4 per rendition, one per audio rendition and
//! one WebVTT file per text subtitle stream.
//!
//! ffmpeg only decodes and encodes here; segmenting is ours ([`crate::segment`]). What we
//! ask of it so that segments line up across renditions: keyframes forced at every
//! multiple of the segment duration (`-force_key_frames`), no scene-cut keyframes, a GOP
//! equal to the segment, the source's exact frame rate (`-r 60000/1001`), and a video
//! timescale that is a multiple of it ([`video_timescale`]), so every frame lasts a whole
//! number of ticks and the MPD can say `frameRate="60000/1001"`.
//!
//! The picture is made upright (ffmpeg's autorotation applies the display matrix; the
//! outputs carry none), deinterlaced with `bwdif` when the probe saw fields (or, when the
//! stream does not say, frame by frame where `idet` finds them), and
//! tone-mapped to SDR BT.709 with zscale + tonemap (hable) when it is PQ or HLG, before
//! one `split` feeds every rendition's scaler.
//!
//! ffmpeg runs in its own process group, killed with the group when [`Ffmpeg`] is dropped
//! (an error, a panic, an interrupted demo), and under `setpriv --pdeathsig KILL`, so it
//! also dies when we are killed outright: `PR_SET_PDEATHSIG` has to be set in the child
//! between fork and exec, which from Rust means `pre_exec` (unsafe, forbidden here);
//! util-linux's `setpriv` (always on Debian) sets it and execs ffmpeg.
//!
//! Progress comes from `-progress pipe:1` (`out_time_us=`, `speed=`) and is drawn with
//! indicatif; a truncated input is caught from ffmpeg's `partial file` complaint or from
//! decoding ending well short of the probed duration.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use indicatif::{ProgressBar, ProgressStyle};
use tracing::{debug, warn};

use crate::ladder::Rendition;
use crate::probe::Probe;

/// One audio rendition to encode: a stream of the input at a channel count.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AudioOut {
    /// Representation id and file stem.
    pub id: String,
    /// Input stream index.
    pub stream: u32,
    pub channels: u16,
    pub kbps: u32,
}

/// One text subtitle stream of the input, converted to WebVTT.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TextOut {
    pub id: String,
    pub stream: u32,
}

/// Everything one ffmpeg run writes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outputs {
    pub video: Vec<Rendition>,
    pub audio: Vec<AudioOut>,
    pub text: Vec<TextOut>,
}

/// What one transcode produced, in the work folder.
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    /// `(rendition, file)` from highest to lowest.
    pub video: Vec<(Rendition, PathBuf)>,
    pub audio: Vec<(AudioOut, PathBuf)>,
    pub text: Vec<(TextOut, PathBuf)>,
}

/// x264's presets, the values `--preset` accepts.
pub(crate) const PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

/// A video timescale in which a frame at `rate` lasts a whole number of ticks: 90 kHz when
/// it divides (25, 30, 50, 60 fps), else a multiple of the rate's reduced numerator (60000
/// for 60000/1001, 24000 for 24000/1001).
pub(crate) fn video_timescale(rate: Option<(u32, u32)>) -> u32 {
    let Some((n, d)) = rate else { return 90_000 };
    let g = gcd(n, d);
    let (n, d) = (n / g, d / g);
    if d == 1 && 90_000 % n == 0 {
        return 90_000;
    }
    // ticks per frame = ts * d / n: whole when n divides ts.
    let k = 10_000u32.div_ceil(n).max(1);
    n.saturating_mul(k)
}

/// Broadcast and film rates a measured average is snapped to.
const STANDARD_RATES: &[(u32, u32)] = &[
    (24000, 1001),
    (24, 1),
    (25, 1),
    (30000, 1001),
    (30, 1),
    (48, 1),
    (50, 1),
    (60000, 1001),
    (60, 1),
    (100, 1),
    (120000, 1001),
    (120, 1),
];

/// A variable-rate phone clip reports an average like 13978/467 (29.93 fps): within 0.5 %
/// of a standard rate it is encoded at that rate (a few frames repeated or dropped), so the
/// MPD says `30000/1001` rather than a fraction no player menu shows.
pub(crate) fn snap_rate((n, d): (u32, u32)) -> (u32, u32) {
    let r = n as f64 / d.max(1) as f64;
    STANDARD_RATES
        .iter()
        .copied()
        .find(|(sn, sd)| {
            let s = *sn as f64 / *sd as f64;
            (r - s).abs() / s < 0.005
        })
        .unwrap_or((n, d))
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// A running ffmpeg: its whole process group is killed when this is dropped before it ends.
struct Ffmpeg {
    child: std::process::Child,
    done: bool,
}

impl Ffmpeg {
    fn spawn(args: &[String]) -> std::io::Result<Ffmpeg> {
        use std::os::unix::process::CommandExt;
        let setpriv = Path::new("/usr/bin/setpriv");
        let mut cmd = if setpriv.exists() {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--", "ffmpeg"]);
            c
        } else {
            Command::new("ffmpeg")
        };
        let child = cmd
            .args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        Ok(Ffmpeg { child, done: false })
    }

    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let s = self.child.wait()?;
        self.done = true;
        Ok(s)
    }
}

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Converts a subtitle file (SRT, ASS, WebVTT…) to WebVTT at `out`.
pub(crate) fn subtitles_to_webvtt(input: &Path, out: &Path) -> Result<(), TranscodeError> {
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-y", "-i"])
        .arg(input)
        .args(["-map", "0:s:0", "-c:s", "webvtt", "-f", "webvtt"])
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| TranscodeError::Spawn {
            path: input.to_owned(),
            source,
        })?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(TranscodeError::Failed {
            path: input.to_owned(),
            reason: format!("not a subtitle file ffmpeg can read: {}", last.trim()),
        });
    }
    Ok(())
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
pub(crate) fn ffmpeg_args(
    probe: &Probe,
    outputs: &Outputs,
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
    let ladder = &outputs.video;
    let n = ladder.len();
    let mut pre: Vec<String> = Vec::new();
    if probe.video.interlaced {
        // One frame out per frame in: the rate stays the source's.
        pre.push("bwdif=mode=send_frame:parity=auto:deint=all".into());
    } else if probe.video.scan_unknown {
        // idet marks the frames it finds interlaced; bwdif touches only those.
        pre.push("idet,bwdif=mode=send_frame:parity=auto:deint=interlaced".into());
    }
    if let Some(h) = &probe.video.hdr {
        pre.push(format!(
            "zscale=tin={}:pin={}:min={}:t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,\
             tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p",
            h.transfer, h.primaries, h.matrix
        ));
    }
    let mut graph = format!("[0:{}]", probe.video.index);
    for f in &pre {
        graph.push_str(f);
        graph.push(',');
    }
    graph.push_str(&format!("split={n}"));
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
    let rate = probe
        .video
        .frame_rate
        .filter(|(n, d)| *n as f64 / *d as f64 <= 240.0)
        .map(snap_rate);
    let timescale = video_timescale(rate).to_string();
    for (i, r) in ladder.iter().enumerate() {
        let k = r.kbps;
        if let Some((n, d)) = rate {
            a.extend(["-r".into(), format!("{n}/{d}")]);
        }
        if probe.video.hdr.is_some() {
            for (flag, v) in [
                ("-color_primaries", "bt709"),
                ("-color_trc", "bt709"),
                ("-colorspace", "bt709"),
                ("-color_range", "tv"),
            ] {
                a.extend([flag.into(), v.into()]);
            }
        }
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
            timescale.clone(),
            "-map_metadata".into(),
            "-1".into(),
            work.join(format!("{}.mp4", r.id))
                .to_string_lossy()
                .into_owned(),
        ]);
    }
    for au in &outputs.audio {
        a.extend([
            "-map".into(),
            format!("0:{}", au.stream),
            "-vn".into(),
            "-c:a".into(),
            "aac".into(),
            "-b:a".into(),
            format!("{}k", au.kbps),
            "-ac".into(),
            au.channels.to_string(),
            "-ar".into(),
            "48000".into(),
            "-map_metadata".into(),
            "-1".into(),
            work.join(format!("{}.mp4", au.id))
                .to_string_lossy()
                .into_owned(),
        ]);
    }
    for t in &outputs.text {
        a.extend([
            "-map".into(),
            format!("0:{}", t.stream),
            "-c:s".into(),
            "webvtt".into(),
            "-f".into(),
            "webvtt".into(),
            work.join(format!("{}.vtt", t.id))
                .to_string_lossy()
                .into_owned(),
        ]);
    }
    a
}

/// Runs the transcode, drawing progress, and checks the output covers the input.
pub(crate) fn transcode(
    probe: &Probe,
    outputs: &Outputs,
    segment_duration: f64,
    opts: &EncodeOptions,
    work: &Path,
) -> Result<Encoded, TranscodeError> {
    let path = &probe.path;
    let ladder = &outputs.video;
    let args = ffmpeg_args(probe, outputs, segment_duration, opts, work);
    debug!(?args, "ffmpeg");
    let mut child = Ffmpeg::spawn(&args).map_err(|source| TranscodeError::Spawn {
        path: path.clone(),
        source,
    })?;
    // stderr is drained on its own thread so a chatty ffmpeg never blocks on a full pipe.
    let mut stderr = child.child.stderr.take().expect("piped stderr");
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
    let stdout = child.child.stdout.take().expect("piped stdout");
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
        audio: outputs
            .audio
            .iter()
            .map(|a| (a.clone(), work.join(format!("{}.mp4", a.id))))
            .collect(),
        text: outputs
            .text
            .iter()
            .map(|t| (t.clone(), work.join(format!("{}.vtt", t.id))))
            .collect(),
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
                rotation: 0,
                interlaced: false,
                scan_unknown: false,
                hdr: None,
            },
            audio: vec![AudioStream {
                index: 0,
                codec: "pcm_s16le".into(),
                sample_rate: 48000,
                channels: 6,
                language: None,
                title: None,
                role: Default::default(),
            }],
            subtitles: vec![],
            skipped: vec![],
        };
        let outputs = Outputs {
            video: crate::ladder::Ladder::default()
                .resolve(1920, 1080)
                .renditions,
            audio: vec![AudioOut {
                id: "audio".into(),
                stream: 0,
                channels: 2,
                kbps: 128,
            }],
            text: vec![],
        };
        let a = ffmpeg_args(
            &probe,
            &outputs,
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
        assert!(a.windows(2).any(|w| w[0] == "-r" && w[1] == "30000/1001"));
        assert!(a
            .windows(2)
            .any(|w| w[0] == "-video_track_timescale" && w[1] == "30000"));
    }

    #[test]
    fn measured_averages_snap_to_standard_rates() {
        assert_eq!(snap_rate((13978, 467)), (30000, 1001));
        assert_eq!(snap_rate((2997, 100)), (30000, 1001));
        assert_eq!(snap_rate((25, 1)), (25, 1));
        assert_eq!(snap_rate((1000000, 16683)), (60000, 1001));
        assert_eq!(snap_rate((15, 1)), (15, 1));
    }

    #[test]
    fn timescale_holds_whole_frames() {
        assert_eq!(video_timescale(Some((25, 1))), 90_000);
        assert_eq!(video_timescale(Some((60000, 1001))), 60_000);
        assert_eq!(video_timescale(Some((24000, 1001))), 24_000);
        assert_eq!(video_timescale(Some((30000, 1001))), 30_000);
        assert_eq!(video_timescale(Some((7, 1))) % 7, 0);
        assert_eq!(video_timescale(None), 90_000);
    }
}
