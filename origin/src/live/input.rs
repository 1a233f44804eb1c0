//! A channel's INPUT and the one ffmpeg command that decodes it once and encodes every
//! rung, each to its own fragmented-MP4 FIFO.

use std::path::{Path, PathBuf};

use super::{LiveConfig, Rung, TrackKind};

/// Where a channel's pictures come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// ffmpeg's testsrc2 + a sine tone, the UTC wall-clock time burned into the picture
    /// so that latency can be read off a screen.
    Testsrc,
    /// A file played in real time, looped.
    File(PathBuf),
    /// Anything with `://` (`srt://…?mode=listener`, `rtmp://…`, `udp://…`): a live
    /// input ffmpeg opens as given; a publisher (OBS, ffmpeg) pushes to it.
    Url(String),
}

impl Input {
    /// `testsrc`, a URL (contains `://`), or a file path.
    pub fn parse(s: &str) -> Input {
        if s == "testsrc" {
            Input::Testsrc
        } else if s.contains("://") {
            Input::Url(s.to_owned())
        } else {
            Input::File(PathBuf::from(s))
        }
    }

    /// Whether a publisher may take a while to show up (no init segments expected at start).
    pub(crate) fn waits_for_publisher(&self) -> bool {
        matches!(self, Input::Url(_))
    }
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Testsrc => f.write_str("testsrc"),
            Input::File(p) => write!(f, "{}", p.display()),
            Input::Url(u) => f.write_str(u),
        }
    }
}

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";

/// ffmpeg's arguments for `config`, writing rung `i` to `fifos[i]`.
pub(crate) fn ffmpeg_args(config: &LiveConfig, fifos: &[PathBuf]) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin"]
        .map(String::from)
        .to_vec();
    let (w, h) = config
        .ladder
        .iter()
        .filter(|r| r.kind == TrackKind::Video)
        .map(|r| (r.width, r.height))
        .max()
        .unwrap_or((640, 360));
    let fps = config.fps;
    let (video, audio) = match &config.input {
        Input::Testsrc => {
            a.extend(
                [
                    "-re",
                    "-f",
                    "lavfi",
                    "-i",
                    &format!("testsrc2=size={w}x{h}:rate={fps}"),
                    "-re",
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440:sample_rate=48000",
                ]
                .map(String::from),
            );
            ("0:v", "1:a")
        }
        Input::File(p) => {
            a.extend(["-re", "-stream_loop", "-1", "-i"].map(String::from));
            a.push(p.display().to_string());
            ("0:v:0", "0:a:0")
        }
        Input::Url(u) => {
            a.extend(["-i".to_owned(), u.clone()]);
            ("0:v:0", "0:a:0")
        }
    };
    let videos: Vec<&Rung> = config
        .ladder
        .iter()
        .filter(|r| r.kind == TrackKind::Video)
        .collect();
    let mut graph = format!("[{video}]fps={fps},setsar=1");
    if config.input == Input::Testsrc && Path::new(FONT).exists() {
        graph.push_str(&format!(
            ",drawtext=fontfile={FONT}:fontsize={}:fontcolor=white:box=1:boxcolor=black@0.6:x=8:y=8:text='%{{gmtime\\:%T}}'",
            (h / 8).max(12)
        ));
    }
    graph.push_str(&format!(",split={}", videos.len().max(1)));
    for i in 0..videos.len() {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, r) in videos.iter().enumerate() {
        graph.push_str(&format!(";[s{i}]scale={}:{}[v{i}]", r.width, r.height));
    }
    a.extend(["-filter_complex".to_owned(), graph]);
    let seg = config.segment_duration.as_secs_f64();
    let gop = ((seg * f64::from(fps)).round() as u32).max(1);
    let frag = [
        "-f",
        "mp4",
        "-movflags",
        "empty_moov+default_base_moof+frag_keyframe",
        "-frag_duration",
    ];
    let chunk_us = config.chunk_duration.as_micros().to_string();
    let mut v = 0;
    for (rung, fifo) in config.ladder.iter().zip(fifos) {
        match rung.kind {
            TrackKind::Video => {
                a.extend([
                    "-map".to_owned(),
                    format!("[v{v}]"),
                    "-c:v".to_owned(),
                    "libx264".to_owned(),
                    "-preset".to_owned(),
                    "ultrafast".to_owned(),
                    "-tune".to_owned(),
                    "zerolatency".to_owned(),
                    "-b:v".to_owned(),
                    format!("{}k", rung.kbps),
                    "-maxrate".to_owned(),
                    format!("{}k", rung.kbps),
                    "-bufsize".to_owned(),
                    format!("{}k", rung.kbps),
                    "-g".to_owned(),
                    gop.to_string(),
                    "-keyint_min".to_owned(),
                    gop.to_string(),
                    "-sc_threshold".to_owned(),
                    "0".to_owned(),
                    "-force_key_frames".to_owned(),
                    format!("expr:gte(t,n_forced*{seg})"),
                    "-pix_fmt".to_owned(),
                    "yuv420p".to_owned(),
                ]);
                v += 1;
            }
            TrackKind::Audio => {
                // Opus: 20 ms frames divide 0.5 s chunks and 2 s segments exactly (AAC's
                // 1024-sample frames divide neither), so audio segments start on the grid.
                a.extend(
                    [
                        "-map",
                        audio,
                        "-c:a",
                        "libopus",
                        "-b:a",
                        &format!("{}k", rung.kbps),
                        "-ac",
                        "2",
                        "-ar",
                        "48000",
                        "-frame_duration",
                        "20",
                        "-application",
                        "lowdelay",
                    ]
                    .map(String::from),
                );
            }
        }
        a.extend(frag.map(String::from));
        a.extend([
            chunk_us.clone(),
            "-flush_packets".to_owned(),
            "1".to_owned(),
            "-y".to_owned(),
            fifo.display().to_string(),
        ]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds() {
        assert_eq!(Input::parse("testsrc"), Input::Testsrc);
        assert_eq!(
            Input::parse("srt://0.0.0.0:9000?mode=listener"),
            Input::Url("srt://0.0.0.0:9000?mode=listener".into())
        );
        assert_eq!(Input::parse("a.mp4"), Input::File("a.mp4".into()));
    }

    #[test]
    fn every_rung_gets_its_fifo_and_keyframes_on_segments() {
        let config = LiveConfig::new("ch", Input::Testsrc);
        let fifos: Vec<PathBuf> = (0..config.ladder.len())
            .map(|i| PathBuf::from(format!("/f{i}")))
            .collect();
        let args = ffmpeg_args(&config, &fifos);
        for f in &fifos {
            assert!(args.contains(&f.display().to_string()));
        }
        assert!(args.contains(&"expr:gte(t,n_forced*2)".to_owned()));
        assert!(args.contains(&"500000".to_owned()));
    }
}
