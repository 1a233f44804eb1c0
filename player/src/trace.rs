//! Bandwidth traces: what the network does over time, for the simulator and for `--trace`.
//!
//! Two formats are read:
//! - sabre's JSON: `[{"duration_ms": 1000, "bandwidth_kbps": 33809, "latency_ms": 20}, ...]`;
//! - Pensieve-style text: one `time_s throughput_Mbps` pair per line (cooked traces, Mahimahi
//!   derived), with an optional third column of latency in ms. Each line opens a period that
//!   lasts until the next line's time; the last lasts as long as the one before it.
//!
//! Like sabre, a trace loops when playback outlasts it.

use std::path::Path;

use serde::Deserialize;

/// One constant stretch of network.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Period {
    pub duration_ms: f64,
    pub bandwidth_kbps: f64,
    #[serde(default)]
    pub latency_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub periods: Vec<Period>,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("trace {path} is not a sabre trace JSON (a list of {{duration_ms, bandwidth_kbps, latency_ms}})")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "trace {path} line {line}: {problem}; expected `time_seconds throughput_Mbps [latency_ms]`"
    )]
    Text {
        path: String,
        line: usize,
        problem: String,
    },
    #[error("trace model: {problem}")]
    Model { problem: String },
    #[error("trace {path}: {problem}")]
    Invalid { path: String, problem: String },
}

impl Trace {
    /// A constant link.
    pub fn constant(bandwidth_kbps: f64, latency_ms: f64) -> Trace {
        Trace {
            periods: vec![Period {
                duration_ms: 1000.0,
                bandwidth_kbps,
                latency_ms,
            }],
        }
    }

    /// Reads either format, telling them apart by the first non-blank character.
    pub fn load(path: &Path) -> Result<Trace, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Trace::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, path: &str) -> Result<Trace, TraceError> {
        let t = if text.trim_start().starts_with('[') {
            Trace::from_sabre_json(text, path)?
        } else {
            Trace::from_text(text, path)?
        };
        t.validate(path)?;
        Ok(t)
    }

    pub fn from_sabre_json(text: &str, path: &str) -> Result<Trace, TraceError> {
        let periods: Vec<Period> =
            serde_json::from_str(text).map_err(|source| TraceError::Json {
                path: path.into(),
                source,
            })?;
        Ok(Trace { periods })
    }

    pub fn from_text(text: &str, path: &str) -> Result<Trace, TraceError> {
        let mut rows: Vec<(f64, f64, f64)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |problem: String| TraceError::Text {
                path: path.into(),
                line: i + 1,
                problem,
            };
            let cols: Vec<&str> = line.split_whitespace().collect();
            if !(2..=3).contains(&cols.len()) {
                return Err(err(format!("{} columns", cols.len())));
            }
            let num = |s: &str| -> Result<f64, TraceError> {
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| err(format!("`{s}` is not a non-negative number")))
            };
            let time = num(cols[0])?;
            let mbps = num(cols[1])?;
            let lat = cols.get(2).map(|c| num(c)).transpose()?.unwrap_or(0.0);
            if let Some(&(prev, _, _)) = rows.last() {
                if time <= prev {
                    return Err(err(format!("time {time} does not come after {prev}")));
                }
            }
            rows.push((time, mbps, lat));
        }
        let mut periods = Vec::with_capacity(rows.len());
        for (i, &(t, mbps, lat)) in rows.iter().enumerate() {
            let dur_s = match rows.get(i + 1) {
                Some(&(next, _, _)) => next - t,
                None if i > 0 => t - rows[i - 1].0,
                None => 1.0,
            };
            periods.push(Period {
                duration_ms: dur_s * 1000.0,
                bandwidth_kbps: mbps * 1000.0,
                latency_ms: lat,
            });
        }
        Ok(Trace { periods })
    }

    fn validate(&self, path: &str) -> Result<(), TraceError> {
        let invalid = |problem: String| TraceError::Invalid {
            path: path.into(),
            problem,
        };
        if self.periods.is_empty() {
            return Err(invalid("no periods".into()));
        }
        for (i, p) in self.periods.iter().enumerate() {
            let ok = |v: f64| v.is_finite() && v >= 0.0;
            if !(ok(p.duration_ms) && ok(p.bandwidth_kbps) && ok(p.latency_ms)) {
                return Err(invalid(format!(
                    "period {i} has a negative or non-numeric value"
                )));
            }
        }
        if !self
            .periods
            .iter()
            .any(|p| p.duration_ms > 0.0 && p.bandwidth_kbps > 0.0)
        {
            return Err(invalid(
                "no period with both a duration and a bandwidth: nothing could ever download"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Scales every bandwidth (sabre's `--network-multiplier`).
    pub fn scaled(mut self, factor: f64) -> Trace {
        for p in &mut self.periods {
            p.bandwidth_kbps *= factor;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_formats() {
        let t = Trace::parse(include_str!("../tests/data/example-network.json"), "n").unwrap();
        assert_eq!(t.periods.len(), 4);
        assert_eq!(t.periods[0].latency_ms, 75.0);
        let t = Trace::parse("0 1.5\n1 3.0\n3.5 0.5 40\n", "x.txt").unwrap();
        assert_eq!(t.periods.len(), 3);
        assert_eq!(t.periods[0].duration_ms, 1000.0);
        assert_eq!(t.periods[1].duration_ms, 2500.0);
        assert_eq!(t.periods[2].duration_ms, 2500.0);
        assert_eq!(t.periods[1].bandwidth_kbps, 3000.0);
        assert_eq!(t.periods[2].latency_ms, 40.0);
    }

    #[test]
    fn malformed_traces_are_clear_errors() {
        let e = Trace::parse("0 1.5\n1 fast\n", "t.txt").unwrap_err();
        assert!(e.to_string().contains("t.txt line 2"), "{e}");
        let e = Trace::parse("[{\"duration_ms\": 1}]", "t.json").unwrap_err();
        assert!(e.to_string().contains("bandwidth_kbps"), "{e}");
        let e = Trace::parse("0 0\n1 0\n", "t.txt").unwrap_err();
        assert!(e.to_string().contains("nothing could ever download"), "{e}");
        let e = Trace::parse("", "t.txt").unwrap_err();
        assert!(e.to_string().contains("no periods"), "{e}");
        let e = Trace::parse("2 1\n1 1\n", "t.txt").unwrap_err();
        assert!(e.to_string().contains("does not come after"), "{e}");
    }
}
