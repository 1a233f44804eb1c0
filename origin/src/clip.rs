//! Generated source media: ffmpeg's `testsrc2` picture and a `sine` tone, encoded to a file.
//! `dashcdn demo` packages one when given no `--input`; the tests make every input they need
//! with it (through `dashcdn-testkit`), so nothing is ever downloaded.

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

/// Why a clip could not be written.
#[derive(Debug, Error)]
pub enum ClipError {
    #[error("cannot run ffmpeg; install it (apt-get install ffmpeg)")]
    Spawn(#[source] std::io::Error),
    #[error("ffmpeg could not generate {path}: {stderr}")]
    Ffmpeg { path: PathBuf, stderr: String },
}

/// A clip to generate: size, rate, length, and whether it has audio / video.
#[derive(Debug, Clone)]
pub struct Clip {
    pub seconds: f64,
    pub width: u32,
    pub height: u32,
    pub rate: u32,
    pub audio: bool,
    pub video: bool,
    /// Extra ffmpeg output arguments (e.g. `-bf 3`, `-movflags +faststart`).
    pub extra: Vec<String>,
}

impl Clip {
    /// `seconds` of 640×360 at 25 fps with a 440 Hz tone.
    pub fn new(seconds: f64) -> Self {
        Clip {
            seconds,
            width: 640,
            height: 360,
            rate: 25,
            audio: true,
            video: true,
            extra: Vec::new(),
        }
    }
    pub fn size(mut self, width: u32, height: u32) -> Self {
        (self.width, self.height) = (width, height);
        self
    }
    pub fn rate(mut self, rate: u32) -> Self {
        self.rate = rate;
        self
    }
    pub fn audio(mut self, on: bool) -> Self {
        self.audio = on;
        self
    }
    pub fn video(mut self, on: bool) -> Self {
        self.video = on;
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.into());
        self
    }

    /// Writes the clip with ffmpeg (x264 veryfast + AAC). Blocking: from async code, call it
    /// in `spawn_blocking`.
    pub fn write(&self, out: &Path) -> Result<(), ClipError> {
        let mut c = Command::new("ffmpeg");
        c.args(["-v", "error", "-nostdin", "-y"]);
        let t = self.seconds.to_string();
        if self.video {
            c.args(["-f", "lavfi", "-t", &t, "-i"]).arg(format!(
                "testsrc2=size={}x{}:rate={}",
                self.width, self.height, self.rate
            ));
        }
        if self.audio {
            c.args(["-f", "lavfi", "-t", &t, "-i"])
                .arg("sine=frequency=440:sample_rate=48000");
        }
        if self.video {
            c.args([
                "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            ]);
        }
        if self.audio {
            c.args(["-c:a", "aac", "-b:a", "96k"]);
        }
        c.args(&self.extra).arg(out);
        let o = c.output().map_err(ClipError::Spawn)?;
        if !o.status.success() {
            return Err(ClipError::Ffmpeg {
                path: out.to_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}
