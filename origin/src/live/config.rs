//! `[[live]]` in the origin's TOML, mirrored exactly by [`RawLive`] and validated into a
//! [`LiveConfig`]. Durations are seconds (`segment_duration = 2`, `chunk_duration = 0.5`).
//!
//! ```toml
//! [[live]]
//! name = "news"
//! input = "testsrc"            # or a file (looped), or srt://…, rtmp://…, udp://…
//! ladder = "360p:800k,240p:400k,144p:150k"
//! segment_duration = 2
//! chunk_duration = 0.5
//! window = 120
//! target_latency = 1.5
//! record = false               # true: the event becomes /vod/NAME-<start time>/ at the end
//! record_split = 3600          # optional: publish the recording every hour, record on
//! ```

use std::time::Duration;

use dashcdn_config::ConfigError;
use serde::Deserialize;

use super::{Input, LiveConfig, Rung};

/// One `[[live]]` table as written; every key but `name` and `input` optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLive {
    name: String,
    input: String,
    ladder: Option<String>,
    audio_kbps: Option<u32>,
    fps: Option<u32>,
    segment_duration: Option<f64>,
    chunk_duration: Option<f64>,
    window: Option<f64>,
    target_latency: Option<f64>,
    record: Option<bool>,
    record_split: Option<f64>,
}

fn seconds(field: &str, value: Option<f64>, default: Duration) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => {
            Ok(Duration::from_millis((s * 1000.0).round() as u64))
        }
        Some(s) => Err(ConfigError::field(
            format!("live.{field}"),
            s,
            "must be a number of seconds above 0",
        )),
    }
}

/// `"360p:800k,240p:400k"`: heights (16:9, even widths) and video bitrates.
pub(crate) fn parse_ladder(text: &str) -> Result<Vec<Rung>, String> {
    let mut rungs = Vec::new();
    for (i, part) in text.split(',').map(str::trim).enumerate() {
        let parsed = part.split_once(':').and_then(|(h, k)| {
            let h: u32 = h.strip_suffix('p')?.parse().ok()?;
            let k: u32 = k.strip_suffix('k')?.parse().ok()?;
            (16..=2160).contains(&h).then_some(())?;
            (k > 0).then_some((h, k))
        });
        let Some((h, k)) = parsed else {
            return Err(format!(
                "rung {part:?}: expected HEIGHTp:KBPSk, e.g. 360p:800k"
            ));
        };
        let h = h & !1;
        let w = ((f64::from(h) * 16.0 / 9.0 / 2.0).round() as u32) * 2;
        rungs.push(Rung::video(&format!("v{i}"), w, h, k));
    }
    Ok(rungs)
}

impl RawLive {
    pub(crate) fn validate(self) -> Result<LiveConfig, ConfigError> {
        let mut c = LiveConfig::new(&self.name, Input::parse(&self.input));
        if self.input.is_empty() {
            return Err(ConfigError::field(
                "live.input",
                "",
                "must be testsrc, a file, or a URL",
            ));
        }
        if let Some(text) = &self.ladder {
            let mut rungs =
                parse_ladder(text).map_err(|why| ConfigError::field("live.ladder", text, why))?;
            rungs.push(Rung::audio("a0", self.audio_kbps.unwrap_or(64)));
            c.ladder = rungs;
        } else if let Some(k) = self.audio_kbps {
            if let Some(a) = c.ladder.iter_mut().find(|r| r.id == "a0") {
                a.kbps = k;
            }
        }
        c.fps = self.fps.unwrap_or(c.fps);
        c.segment_duration = seconds(
            "segment_duration",
            self.segment_duration,
            c.segment_duration,
        )?;
        c.chunk_duration = seconds("chunk_duration", self.chunk_duration, c.chunk_duration)?;
        c.window = seconds("window", self.window, c.window)?;
        c.target_latency = seconds("target_latency", self.target_latency, c.target_latency)?;
        c.record = self.record.unwrap_or(false);
        if self.record_split.is_some() {
            c.record_split = Some(seconds("record_split", self.record_split, c.window)?);
        }
        c.validate()
            .map_err(|e| ConfigError::field(format!("live.{}", c.name), &c.name, e.to_string()))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        live: Vec<RawLive>,
    }

    fn parse(text: &str) -> Result<LiveConfig, ConfigError> {
        let f: File = toml::from_str(text).map_err(|e| ConfigError::field("toml", e, "bad"))?;
        f.live.into_iter().next().unwrap().validate()
    }

    #[test]
    fn the_doc_example_parses() {
        let c = parse(
            "[[live]]\nname = \"news\"\ninput = \"testsrc\"\nladder = \"360p:800k,240p:400k,144p:150k\"\n\
             segment_duration = 2\nchunk_duration = 0.5\nwindow = 120\ntarget_latency = 1.5\n\
             record = true\nrecord_split = 3600\n",
        )
        .unwrap();
        assert_eq!(c.record_split, Some(Duration::from_secs(3600)));
        assert_eq!(c.ladder.len(), 4);
        assert_eq!(c.ladder[0], Rung::video("v0", 640, 360, 800));
        assert_eq!(c.ladder[2], Rung::video("v2", 256, 144, 150));
        assert_eq!(c.chunk_duration, Duration::from_millis(500));
        assert!(c.record);
    }

    #[test]
    fn bad_values_name_their_field() {
        let e =
            parse("[[live]]\nname = \"n\"\ninput = \"testsrc\"\nladder = \"big\"\n").unwrap_err();
        assert_eq!(e.field_name(), Some("live.ladder"));
        let e = parse("[[live]]\nname = \"n\"\ninput = \"testsrc\"\nwindow = -1\n").unwrap_err();
        assert_eq!(e.field_name(), Some("live.window"));
        let e =
            parse("[[live]]\nname = \"n\"\ninput = \"testsrc\"\nrecord_split = 1\n").unwrap_err();
        assert!(e.to_string().contains("record_split"), "{e}");
    }
}
