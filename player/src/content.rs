//! What the ABR logic knows about the presentation: the bitrate ladder, the segment
//! durations and (when known) every segment's size at every bitrate.
//!
//! Units follow sabre's so the simulator reproduces its figures bit for bit: time in
//! milliseconds, sizes in bits, rates in kbit/s (= bits per millisecond).

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("cannot read movie {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("movie {path} is not a sabre movie JSON (segment_duration_ms, bitrates_kbps, segment_sizes_bits)")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("movie {path}: {problem}")]
    Invalid { path: String, problem: String },
}

/// The ladder and segment table one playback session adapts over.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    /// Representation bitrates in kbit/s, ascending; index = quality.
    pub bitrates_kbps: Vec<f64>,
    /// The nominal segment duration (sabre's `segment_time`): EWMA latency half-lives and
    /// the ABR rules' "one segment" are expressed in it.
    pub segment_ms: f64,
    /// Duration of every segment, ms.
    pub durations_ms: Vec<f64>,
    /// `sizes_bits[segment][quality]` when known (sabre movies, sidx, HEAD); otherwise sizes
    /// are estimated as bitrate × duration.
    pub sizes_bits: Option<Vec<Vec<f64>>>,
}

#[derive(Deserialize)]
struct RawMovie {
    segment_duration_ms: f64,
    bitrates_kbps: Vec<f64>,
    segment_sizes_bits: Vec<Vec<f64>>,
}

impl Content {
    /// Segments all of the same duration, sizes estimated from the bitrates.
    pub fn uniform(bitrates_kbps: Vec<f64>, segment_ms: f64, segments: usize) -> Content {
        Content {
            bitrates_kbps,
            segment_ms,
            durations_ms: vec![segment_ms; segments],
            sizes_bits: None,
        }
    }

    /// Parses a sabre movie description (`example-movie.json`, `bbb.json`).
    pub fn from_sabre_json(text: &str, path: &str) -> Result<Content, ContentError> {
        let raw: RawMovie = serde_json::from_str(text).map_err(|source| ContentError::Json {
            path: path.into(),
            source,
        })?;
        let invalid = |problem: String| ContentError::Invalid {
            path: path.into(),
            problem,
        };
        if !(raw.segment_duration_ms.is_finite() && raw.segment_duration_ms > 0.0) {
            return Err(invalid(format!(
                "segment_duration_ms must be positive, not {}",
                raw.segment_duration_ms
            )));
        }
        if raw.bitrates_kbps.is_empty() {
            return Err(invalid("bitrates_kbps is empty".into()));
        }
        if raw
            .bitrates_kbps
            .windows(2)
            .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
            || raw
                .bitrates_kbps
                .iter()
                .any(|b| b.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
        {
            return Err(invalid(
                "bitrates_kbps must be positive and strictly ascending".into(),
            ));
        }
        if raw.segment_sizes_bits.is_empty() {
            return Err(invalid("segment_sizes_bits lists no segment".into()));
        }
        for (i, row) in raw.segment_sizes_bits.iter().enumerate() {
            if row.len() != raw.bitrates_kbps.len() {
                return Err(invalid(format!(
                    "segment {i} has {} sizes for {} bitrates",
                    row.len(),
                    raw.bitrates_kbps.len()
                )));
            }
            if row.iter().any(|s| !(s.is_finite() && *s >= 0.0)) {
                return Err(invalid(format!(
                    "segment {i} has a negative or non-numeric size"
                )));
            }
        }
        let n = raw.segment_sizes_bits.len();
        Ok(Content {
            bitrates_kbps: raw.bitrates_kbps,
            segment_ms: raw.segment_duration_ms,
            durations_ms: vec![raw.segment_duration_ms; n],
            sizes_bits: Some(raw.segment_sizes_bits),
        })
    }

    pub fn load_sabre(path: &Path) -> Result<Content, ContentError> {
        let text = std::fs::read_to_string(path).map_err(|source| ContentError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Content::from_sabre_json(&text, &path.display().to_string())
    }

    pub fn segments(&self) -> usize {
        self.durations_ms.len()
    }

    pub fn qualities(&self) -> usize {
        self.bitrates_kbps.len()
    }

    pub fn top(&self) -> usize {
        self.bitrates_kbps.len() - 1
    }

    pub fn duration_ms(&self, segment: usize) -> f64 {
        self.durations_ms
            .get(segment)
            .copied()
            .unwrap_or(self.segment_ms)
    }

    /// Size in bits of `segment` at `quality`: the real one when known, else bitrate × duration.
    pub fn size_bits(&self, segment: usize, quality: usize) -> f64 {
        match &self.sizes_bits {
            Some(s) if segment < s.len() => s[segment][quality],
            _ => self.bitrates_kbps[quality] * self.duration_ms(segment),
        }
    }

    /// Total presentation length, ms.
    pub fn total_ms(&self) -> f64 {
        self.durations_ms.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_example_movie() {
        let c = Content::from_sabre_json(include_str!("../tests/data/example-movie.json"), "m")
            .unwrap();
        assert_eq!(c.qualities(), 10);
        assert_eq!(c.segment_ms, 3000.0);
        assert_eq!(c.size_bits(0, 0), 886360.0);
    }

    #[test]
    fn rejects_bad_movies() {
        let e = Content::from_sabre_json("[1,2]", "m.json").unwrap_err();
        assert!(e.to_string().contains("m.json"), "{e}");
        let e = Content::from_sabre_json(
            r#"{"segment_duration_ms":3000,"bitrates_kbps":[300,200],"segment_sizes_bits":[[1,2]]}"#,
            "m.json",
        )
        .unwrap_err();
        assert!(e.to_string().contains("ascending"), "{e}");
        let e = Content::from_sabre_json(
            r#"{"segment_duration_ms":3000,"bitrates_kbps":[200,300],"segment_sizes_bits":[[1]]}"#,
            "m.json",
        )
        .unwrap_err();
        assert!(e.to_string().contains("segment 0"), "{e}");
    }
}
