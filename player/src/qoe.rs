//! The QoE summary of a session, for streaming and simulation alike.
//!
//! - `avg_bitrate_kbps`: mean bitrate of the media played (weighted by segment duration).
//! - `time_avg_bitrate_kbps`: sabre's "time average played bitrate": Σ bitrate × duration over
//!   the session's wall time (startup and stalls included), the figure sabre publishes.
//! - `qoe_lin`: the linear QoE of Yin et al. (SIGCOMM 2015) as Pensieve evaluates it: per
//!   segment, bitrate in Mbit/s, minus λ = 1 × |change of bitrate| between consecutive
//!   segments, minus μ = 4.3 × seconds of rebuffering (startup not included); summed over the
//!   session. `qoe_lin_per_segment` divides it by the segment count, which compares across
//!   videos of different lengths.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::buffer::Playback;

pub(crate) const LAMBDA: f64 = 1.0;
pub(crate) const MU: f64 = 4.3;

/// One session's QoE. JSON keys are stable: scripts and the multi-region simulation read them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub abr: Option<String>,
    /// Time until playback started, s.
    pub startup_s: f64,
    pub avg_bitrate_kbps: f64,
    pub time_avg_bitrate_kbps: f64,
    /// Quality changes between consecutive segments.
    pub switches: u32,
    /// Σ |Δ bitrate| over those changes, kbit/s.
    pub switch_magnitude_kbps: f64,
    pub rebuffer_s: f64,
    pub rebuffer_count: u32,
    /// Rebuffer time / session wall time.
    pub rebuffer_ratio: f64,
    pub qoe_lin: f64,
    pub qoe_lin_per_segment: f64,
    /// Video segments played.
    pub segments: u32,
    /// Media played, s.
    pub media_s: f64,
    /// Session wall time: startup + media + stalls, s.
    pub session_s: f64,
    /// Video bytes downloaded (abandoned downloads included).
    pub bytes: u64,
    pub abandoned: u32,
    /// Streaming only: segments (video and audio) served by each edge (`Via`, else the
    /// address), and the `X-Cache` verdicts seen.
    pub edges: BTreeMap<String, u32>,
    pub cache: BTreeMap<String, u32>,
    /// Streaming only: audio segments downloaded, failovers to another address, failed
    /// attempts retried.
    pub audio_segments: u32,
    pub failovers: u32,
    pub retries: u32,
    /// Streaming only: segment downloads refused because their boxes did not add up (a
    /// body cut short), each fetched again; none of them was played.
    pub integrity_failures: u32,
    /// Streaming only: the audio and subtitle tracks chosen and on offer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracks: Option<crate::mpd::tracks::Tracks>,
    /// Live only: mean and 95th percentile of the live latency (server wall clock −
    /// the presentation time being played), sampled every 250 ms of playback, s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_latency_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_latency_p95_s: Option<f64>,
    /// Live only: how the session kept to the live edge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveStats>,
}

/// What a live session did to stay near the live edge.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveStats {
    /// ServiceDescription `Latency@target` (or the default), s.
    pub target_latency_s: f64,
    pub latency_min_s: f64,
    pub latency_max_s: f64,
    /// Latency samples taken.
    pub latency_samples: usize,
    /// Wall time played faster than real time to catch up, and slower to hold back, s.
    pub catchup_s: f64,
    pub slowdown_s: f64,
    /// Jumps to the live edge (latency past `Latency@max`), and the media they skipped, s.
    pub skips: u32,
    pub skipped_s: f64,
    /// MPD refreshes (minimumUpdatePeriod), and the periods played.
    pub mpd_refreshes: u32,
    pub periods: usize,
    /// Video segments fetched while still being produced (chunked transfer).
    pub in_progress_segments: u32,
    /// Server clock − local clock from UTCTiming, s (0 when the MPD has none).
    pub clock_offset_s: f64,
    /// Wall time of the session, s.
    pub wall_s: f64,
}

/// Yin et al.'s linear QoE over played bitrates (kbit/s) and rebuffer seconds.
pub(crate) fn qoe_lin(played_kbps: &[f64], rebuffer_s: f64) -> f64 {
    let util: f64 = played_kbps.iter().map(|b| b / 1000.0).sum();
    let smooth: f64 = played_kbps
        .windows(2)
        .map(|w| (w[1] - w[0]).abs() / 1000.0)
        .sum();
    util - LAMBDA * smooth - MU * rebuffer_s
}

impl Summary {
    pub fn from_playback(m: &Playback, abr: Option<String>, bytes: u64, abandoned: u32) -> Summary {
        let rebuffer_s = m.rebuffer_ms / 1000.0;
        let qoe = qoe_lin(&m.played, rebuffer_s);
        let n = m.played_segments;
        Summary {
            abr,
            startup_s: m.startup_ms / 1000.0,
            avg_bitrate_kbps: if m.played_media_ms > 0.0 {
                m.played_bitrate_ms / m.played_media_ms
            } else {
                0.0
            },
            time_avg_bitrate_kbps: if m.total_ms > 0.0 {
                m.played_bitrate_ms / m.total_ms
            } else {
                0.0
            },
            switches: m.switches,
            switch_magnitude_kbps: m.switch_kbps,
            rebuffer_s,
            rebuffer_count: m.rebuffer_events,
            rebuffer_ratio: if m.total_ms > 0.0 {
                m.rebuffer_ms / m.total_ms
            } else {
                0.0
            },
            qoe_lin: qoe,
            qoe_lin_per_segment: if n > 0 { qoe / n as f64 } else { 0.0 },
            segments: n,
            media_s: m.played_media_ms / 1000.0,
            session_s: m.total_ms / 1000.0,
            bytes,
            abandoned,
            ..Default::default()
        }
    }
}

/// min / median / max of one figure over many sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub mean: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            min: v[0],
            median,
            max: v[n - 1],
            mean: v.iter().sum::<f64>() / n as f64,
        }
    }
}

/// The aggregate of N sessions (`--clients N`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Aggregate {
    pub sessions: usize,
    pub failed: usize,
    pub startup_s: Spread,
    pub avg_bitrate_kbps: Spread,
    pub switches: Spread,
    pub rebuffer_s: Spread,
    pub rebuffer_count: Spread,
    pub qoe_lin: Spread,
    pub segments: Spread,
    /// Live sessions: the spread of their mean latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_latency_s: Option<Spread>,
    pub edges: BTreeMap<String, u32>,
}

impl Aggregate {
    pub fn of(sums: &[Summary], failed: usize) -> Aggregate {
        let f = |g: fn(&Summary) -> f64| Spread::of(&sums.iter().map(g).collect::<Vec<_>>());
        let mut edges = BTreeMap::new();
        for s in sums {
            for (k, v) in &s.edges {
                *edges.entry(k.clone()).or_insert(0) += v;
            }
        }
        Aggregate {
            sessions: sums.len(),
            failed,
            startup_s: f(|s| s.startup_s),
            avg_bitrate_kbps: f(|s| s.avg_bitrate_kbps),
            switches: f(|s| s.switches as f64),
            rebuffer_s: f(|s| s.rebuffer_s),
            rebuffer_count: f(|s| s.rebuffer_count as f64),
            qoe_lin: f(|s| s.qoe_lin),
            segments: f(|s| s.segments as f64),
            live_latency_s: {
                let l: Vec<f64> = sums.iter().filter_map(|s| s.live_latency_s).collect();
                (!l.is_empty()).then(|| Spread::of(&l))
            },
            edges,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_qoe_by_hand() {
        // 1 + 3 + 3 Mbit/s, one 2 Mbit/s switch, half a second of stall.
        let q = qoe_lin(&[1000.0, 3000.0, 3000.0], 0.5);
        assert!((q - (7.0 - 2.0 - 4.3 * 0.5)).abs() < 1e-9, "{q}");
    }

    #[test]
    fn spread() {
        let s = Spread::of(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.min, s.median, s.max, s.mean), (1.0, 2.5, 10.0, 4.0));
    }
}
