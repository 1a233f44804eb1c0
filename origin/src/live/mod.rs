//! Live channels: low-latency DASH from one ffmpeg process per channel.
//!
//! Layout:
//! - `config`: `[[live]]` in the origin's TOML.
//! - `input`: INPUT (`testsrc`, a file, a `://` URL) and the ffmpeg command: decode once,
//!   encode every rung (x264 zerolatency, keyframes on segment boundaries; Opus audio) to
//!   fragmented MP4, one FIFO per rung, a fragment per chunk duration.
//! - `fmp4`: the few boxes our segmenter reads (`moof`/`tfdt`, `moov`) and writes
//!   (`styp`, `prft`).
//! - `store`: the time-shift window in memory, the segment in progress chunk by chunk,
//!   one period per encoder run.
//! - `channel`: the ffmpeg process, a reader thread per rung (the segmenter), restart with
//!   backoff when the encoder dies (a new `Period` when it comes back).
//! - `mpd`: the dynamic MPD (`availabilityTimeOffset`, `ServiceDescription`, `UTCTiming`).
//! - `http`: `/live/NAME/manifest.mpd`, `/live/NAME/{rep}/init.mp4`, `/live/NAME/{rep}/{n}.m4s`;
//!   the segment in progress is streamed with chunked transfer encoding; and the admin
//!   calls that start, stop and split a channel's recording while it runs.
//! - `record`: the recording writer, which publishes a recording as a VOD asset.
//!
//! Why not ffmpeg's dash muxer: it writes files and an MPD of its own, which we would
//! have to poll and re-serve; cutting the fragments ourselves lets a request for the
//! segment in progress get each chunk the moment ffmpeg writes it, from memory.

mod channel;
mod config;
mod fmp4;
mod http;
mod input;
mod mpd;
mod record;
mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use channel::LiveError;
pub(crate) use config::RawLive;
pub use http::router;
pub use input::Input;

/// One `[[live]]` channel / `--live NAME=INPUT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveConfig {
    /// The URL path component: `/live/NAME/manifest.mpd`.
    pub name: String,
    pub input: Input,
    /// Video rungs and one audio track, in MPD order.
    pub ladder: Vec<Rung>,
    /// Output frame rate (every rung).
    pub fps: u32,
    pub segment_duration: Duration,
    /// One `moof`+`mdat` per chunk; `availabilityTimeOffset` = segment − chunk.
    pub chunk_duration: Duration,
    /// `timeShiftBufferDepth`: how far back segments are kept.
    pub window: Duration,
    /// `ServiceDescription` latency target the player steers to.
    pub target_latency: Duration,
    /// Keep every segment and, when the event ends, publish it as the VOD asset
    /// `/vod/NAME-<start time>/` (see `record`).
    pub record: bool,
    /// Publish the recording every so long (rounded to whole segments) and go on
    /// recording into the next asset from the very next segment; `None`: one recording
    /// until it is stopped.
    pub record_split: Option<Duration>,
}

impl LiveConfig {
    /// The defaults of issue 14: 2 s segments, 0.5 s chunks, 120 s window, 1.5 s target,
    /// three small rungs (the machine encodes every channel in real time) and Opus audio.
    pub fn new(name: &str, input: Input) -> LiveConfig {
        LiveConfig {
            name: name.to_owned(),
            input,
            ladder: vec![
                Rung::video("v0", 640, 360, 800),
                Rung::video("v1", 426, 240, 400),
                Rung::video("v2", 256, 144, 150),
                Rung::audio("a0", 64),
            ],
            fps: 25,
            segment_duration: Duration::from_secs(2),
            chunk_duration: Duration::from_millis(500),
            window: Duration::from_secs(120),
            target_latency: Duration::from_millis(1500),
            record: false,
            record_split: None,
        }
    }

    /// Parses `NAME=INPUT` (the `--live` flag).
    pub fn from_flag(s: &str) -> Result<LiveConfig, LiveError> {
        let (name, input) = s
            .split_once('=')
            .filter(|(n, i)| valid_name(n) && !i.is_empty())
            .ok_or_else(|| LiveError::Flag(s.to_owned()))?;
        Ok(LiveConfig::new(name, Input::parse(input)))
    }

    /// Checks what ffmpeg would otherwise reject obscurely.
    pub fn validate(&self) -> Result<(), LiveError> {
        let bad = |why: &'static str| LiveError::Config {
            name: self.name.clone(),
            why,
        };
        if !valid_name(&self.name) {
            return Err(bad("name must be letters, digits, '-' or '_'"));
        }
        if !self.ladder.iter().any(|r| r.kind == TrackKind::Video) {
            return Err(bad("the ladder needs a video rung"));
        }
        if self.chunk_duration.is_zero() || self.chunk_duration > self.segment_duration {
            return Err(bad("chunk_duration must be > 0 and ≤ segment_duration"));
        }
        if self.window < self.segment_duration * 2 {
            return Err(bad("window must hold at least two segments"));
        }
        if self.fps == 0 || self.fps > 120 {
            return Err(bad("fps must be 1..=120"));
        }
        if self.record_split.is_some_and(|s| s < self.segment_duration) {
            return Err(bad("record_split must be at least one segment_duration"));
        }
        Ok(())
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
}

/// One representation of a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rung {
    /// `Representation@id` and the URL component.
    pub id: String,
    pub kind: TrackKind,
    pub width: u32,
    pub height: u32,
    pub kbps: u32,
}

impl Rung {
    pub fn video(id: &str, width: u32, height: u32, kbps: u32) -> Rung {
        Rung {
            id: id.to_owned(),
            kind: TrackKind::Video,
            width,
            height,
            kbps,
        }
    }

    pub fn audio(id: &str, kbps: u32) -> Rung {
        Rung {
            id: id.to_owned(),
            kind: TrackKind::Audio,
            width: 0,
            height: 0,
            kbps,
        }
    }
}

/// The running channels by name. Cheap to clone; dropping the last clone stops them.
#[derive(Clone, Default)]
pub struct Channels {
    by_name: Arc<BTreeMap<String, Arc<channel::Channel>>>,
    /// Bearer token of the admin calls (`/_origin/live/NAME/record/…`); `None`: they
    /// always answer 401.
    admin_token: Option<Arc<str>>,
}

impl Channels {
    /// Starts every channel; fails, naming the channel and its INPUT, if ffmpeg cannot
    /// open an input (a file or `testsrc`) or produce its first segments. A channel with
    /// `record` needs [`Channels::start_in`].
    pub async fn start(configs: &[LiveConfig]) -> Result<Channels, LiveError> {
        Channels::start_in(configs, None).await
    }

    /// [`Channels::start`], recording the channels with `record` into `library` (the
    /// origin's media library: the recording appears there as a VOD asset).
    pub async fn start_in(
        configs: &[LiveConfig],
        library: Option<&std::path::Path>,
    ) -> Result<Channels, LiveError> {
        let mut by_name = BTreeMap::new();
        for config in configs {
            config.validate()?;
            if by_name.contains_key(&config.name) {
                return Err(LiveError::Config {
                    name: config.name.clone(),
                    why: "two channels with this name",
                });
            }
            let ch = channel::Channel::start(config.clone(), library).await?;
            by_name.insert(config.name.clone(), Arc::new(ch));
        }
        Ok(Channels {
            by_name: Arc::new(by_name),
            admin_token: None,
        })
    }

    /// Turns the admin calls on with this bearer token (`admin_token`, `--admin-token`).
    pub fn with_admin_token(mut self, token: Option<String>) -> Channels {
        self.admin_token = token.filter(|t| !t.is_empty()).map(Arc::from);
        self
    }

    /// Channel names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// Stops every channel's encoder and publishes the recordings of those with
    /// `record`; returns the recorded assets' folders. The server calls this on a
    /// graceful shutdown.
    pub async fn stop(&self) -> Vec<std::path::PathBuf> {
        let mut published = Vec::new();
        for ch in self.by_name.values() {
            published.extend(ch.stop().await);
        }
        published
    }

    fn get(&self, name: &str) -> Option<&Arc<channel::Channel>> {
        self.by_name.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_is_name_equals_input() {
        let c = LiveConfig::from_flag("news=testsrc").unwrap();
        assert_eq!((c.name.as_str(), &c.input), ("news", &Input::Testsrc));
        assert!(LiveConfig::from_flag("news").is_err());
        assert!(LiveConfig::from_flag("../x=testsrc").is_err());
        assert!(LiveConfig::from_flag("x=").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = LiveConfig::new("x", Input::Testsrc);
        assert!(c.validate().is_ok());
        c.chunk_duration = Duration::from_secs(3);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("chunk_duration") && e.contains("\"x\""), "{e}");
    }
}
