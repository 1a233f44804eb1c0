//! Throughput and latency estimation: two exponentially weighted moving averages, a fast one
//! (3 s half-life) and a slow one (8 s), and the conservative pick of the two — the lower
//! throughput and the higher latency — as dash.js and sabre do.
//!
//! Throughput samples are weighted by their download time (a long download says more about
//! the link than a short one); latency samples count one per segment, so the latency
//! half-life is expressed in segments (half-life / segment duration). Each average is
//! divided by its "zero factor" so that the first samples are not dragged towards the zero
//! the average starts from.

/// EWMA throughput/latency estimator.
#[derive(Debug, Clone)]
pub(crate) struct Ewma {
    half_life_ms: Vec<f64>,
    latency_half_life: Vec<f64>,
    throughput: Vec<f64>,
    latency: Vec<f64>,
    weight_throughput: f64,
    weight_latency: f64,
    /// The current estimate, kbit/s; `None` before the first sample.
    pub throughput_kbps: Option<f64>,
    /// The current estimate, ms; `None` before the first sample.
    pub latency_ms: Option<f64>,
}

impl Ewma {
    /// `half_lives_s` in seconds (default `[3, 8]`), `segment_ms` the nominal segment length.
    pub(crate) fn new(half_lives_s: &[f64], segment_ms: f64) -> Ewma {
        let half_life_ms: Vec<f64> = half_lives_s.iter().map(|h| h * 1000.0).collect();
        let latency_half_life = half_life_ms.iter().map(|h| h / segment_ms).collect();
        let n = half_life_ms.len();
        Ewma {
            half_life_ms,
            latency_half_life,
            throughput: vec![0.0; n],
            latency: vec![0.0; n],
            weight_throughput: 0.0,
            weight_latency: 0.0,
            throughput_kbps: None,
            latency_ms: None,
        }
    }

    /// Adds one download: `time_ms` spent transferring (after the first byte), its throughput
    /// in kbit/s and its latency (time to first byte) in ms.
    pub(crate) fn push(&mut self, time_ms: f64, tput_kbps: f64, latency_ms: f64) {
        for i in 0..self.half_life_ms.len() {
            let a = 0.5f64.powf(time_ms / self.half_life_ms[i]);
            self.throughput[i] = a * self.throughput[i] + (1.0 - a) * tput_kbps;
            let a = 0.5f64.powf(1.0 / self.latency_half_life[i]);
            self.latency[i] = a * self.latency[i] + (1.0 - a) * latency_ms;
        }
        self.weight_throughput += time_ms;
        self.weight_latency += 1.0;
        let mut tput: Option<f64> = None;
        let mut lat: Option<f64> = None;
        for i in 0..self.half_life_ms.len() {
            let zero = 1.0 - 0.5f64.powf(self.weight_throughput / self.half_life_ms[i]);
            let t = self.throughput[i] / zero;
            tput = Some(tput.map_or(t, |v| v.min(t)));
            let zero = 1.0 - 0.5f64.powf(self.weight_latency / self.latency_half_life[i]);
            let l = self.latency[i] / zero;
            lat = Some(lat.map_or(l, |v| v.max(l)));
        }
        self.throughput_kbps = tput;
        self.latency_ms = lat;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_is_the_estimate_and_the_min_is_conservative() {
        let mut e = Ewma::new(&[3.0, 8.0], 3000.0);
        e.push(1000.0, 5000.0, 50.0);
        assert!((e.throughput_kbps.unwrap() - 5000.0).abs() < 1e-6);
        assert!((e.latency_ms.unwrap() - 50.0).abs() < 1e-6);
        // A drop shows in the fast average first, and the min follows it.
        e.push(1000.0, 1000.0, 50.0);
        let t = e.throughput_kbps.unwrap();
        assert!(t < 3500.0 && t > 1000.0, "{t}");
    }
}
