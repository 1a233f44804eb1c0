//! Adaptive-bitrate algorithms behind one small trait.
//!
//! An algorithm sees the session through [`Ctx`] (ladder, buffer level, throughput and
//! latency estimates) and answers three questions: which quality next and whether to wait
//! first ([`Abr::choose`]), whether to give up on a download in flight
//! ([`Abr::check_abandon`]), and it hears about every finished download
//! ([`Abr::report_download`]). The rules are those of sabre (Spiteri et al., MMSys 2018),
//! which are dash.js's rules re-expressed for a simulator; BBA and RobustMPC follow their
//! papers.
//!
//! - [`throughput`]: dash.js's ThroughputRule (EWMA × 0.9 safety factor, insufficient-buffer
//!   rule, abandonment at 1.8 × segment duration).
//! - [`bola`]: BOLA (Spiteri et al., INFOCOM 2016) as sabre's `bola`, and BOLA-E (placeholder
//!   buffer, insufficient-buffer rule, startup by throughput) as in dash.js's BolaRule.
//! - [`dynamic`]: dash.js's DYNAMIC strategy: throughput at low buffer, BOLA at high.
//! - [`bba`]: buffer-based (Huang et al., SIGCOMM 2014), BBA-0's rate map.
//! - [`mpc`]: RobustMPC (Yin et al., SIGCOMM 2015).
//! - [`robust`]: the default, an MPC that plans against the last ten downloads as
//!   equally likely scenarios (expected QoE, a buffer reserve, stall cost scaled to the
//!   ladder), tuned on training traces of three families (`docs/player-abr.md`).
//! - [`lolp`]: the live default, a low-latency rule after dash.js's LoL+ (chunk-burst
//!   throughput, rungs that sustain the catch-up rate). Not in [`AbrKind::ALL`], the
//!   on-demand evaluation set.

pub(crate) mod bba;
pub(crate) mod bola;
pub(crate) mod dynamic;
pub(crate) mod lolp;
pub(crate) mod mpc;
pub(crate) mod robust;
pub(crate) mod throughput;

use std::fmt;
use std::str::FromStr;

use crate::content::Content;

/// What an algorithm may look at when it decides.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub content: &'a Content,
    /// Buffered media, ms.
    pub buffer_ms: f64,
    /// The buffer capacity, ms.
    pub max_buffer_ms: f64,
    /// EWMA throughput, kbit/s (`None` before the first download).
    pub throughput_kbps: Option<f64>,
    /// EWMA latency (time to first byte), ms.
    pub latency_ms: Option<f64>,
    /// Quality of the last downloaded segment.
    pub last_quality: Option<usize>,
}

impl Ctx<'_> {
    /// The highest quality whose segment would download within one segment duration at
    /// `tput` kbit/s, latency included (sabre's `quality_from_throughput`).
    pub(crate) fn quality_from_throughput(&self, tput: f64) -> usize {
        let p = self.content.segment_ms;
        let lat = self.latency_ms.unwrap_or(0.0);
        let rates = &self.content.bitrates_kbps;
        let mut q = 0;
        while q + 1 < rates.len() && lat + p * rates[q + 1] / tput <= p {
            q += 1;
        }
        q
    }
}

/// A download in flight, as the abandonment check sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    /// The segment downloading.
    pub segment: usize,
    pub quality: usize,
    /// Whole segment, bits.
    pub size_bits: f64,
    pub downloaded_bits: f64,
    /// Since the request, ms.
    pub time_ms: f64,
    /// Time to first byte, ms.
    pub ttfb_ms: f64,
}

/// A finished (or abandoned) download.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Downloaded {
    pub quality: usize,
    pub downloaded_bits: f64,
    pub time_ms: f64,
    pub ttfb_ms: f64,
    /// The quality the ABR wanted instead, when it abandoned this download.
    pub abandoned_to: Option<usize>,
}

/// The choice for the next segment: a quality and how long to wait before fetching it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Choice {
    pub quality: usize,
    pub delay_ms: f64,
}

impl Choice {
    pub(crate) fn now(quality: usize) -> Choice {
        Choice {
            quality,
            delay_ms: 0.0,
        }
    }
}

/// An adaptive-bitrate algorithm.
pub(crate) trait Abr: Send {
    /// The first segment's quality, before anything is measured.
    fn first_quality(&mut self, _ctx: &Ctx) -> usize {
        0
    }
    /// The next segment's quality and any wait before requesting it.
    fn choose(&mut self, ctx: &Ctx, segment: usize) -> Choice;
    /// The session waited `delay_ms` because the buffer was full.
    fn report_delay(&mut self, _delay_ms: f64) {}
    /// A download finished or was abandoned (not called for the first segment, as in sabre).
    fn report_download(&mut self, _ctx: &Ctx, _d: &Downloaded) {}
    /// Abandon the download in flight for a lower quality? `buffer_ms` is the buffer left now.
    fn check_abandon(&mut self, _ctx: &Ctx, _p: &Progress, _buffer_ms: f64) -> Option<usize> {
        None
    }
}

/// The algorithms `--abr` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AbrKind {
    Throughput,
    Bola,
    Bolae,
    Dynamic,
    Bba,
    Mpc,
    /// RobustMPC exactly as published (for comparison; see [`mpc::MpcConfig`]).
    #[serde(rename = "mpc-paper")]
    MpcPaper,
    /// The default (see [`robust`]).
    Robust,
    /// The live default (see [`lolp`]).
    Lolp,
}

impl AbrKind {
    /// What `dashcdn player` and `player simulate` use when no `--abr` is given (VOD).
    pub const DEFAULT: AbrKind = AbrKind::Robust;

    pub const ALL: [AbrKind; 8] = [
        AbrKind::Robust,
        AbrKind::Throughput,
        AbrKind::Bola,
        AbrKind::Bolae,
        AbrKind::Dynamic,
        AbrKind::Bba,
        AbrKind::Mpc,
        AbrKind::MpcPaper,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AbrKind::Throughput => "throughput",
            AbrKind::Bola => "bola",
            AbrKind::Bolae => "bolae",
            AbrKind::Dynamic => "dynamic",
            AbrKind::Bba => "bba",
            AbrKind::Mpc => "mpc",
            AbrKind::MpcPaper => "mpc-paper",
            AbrKind::Robust => "robust",
            AbrKind::Lolp => "lolp",
        }
    }

    /// The algorithms of sabre, which the default must beat (in both of sabre's modes).
    pub const SABRE: [AbrKind; 4] = [
        AbrKind::Bola,
        AbrKind::Bolae,
        AbrKind::Throughput,
        AbrKind::Dynamic,
    ];

    /// Whether sabre's `-ao` changes this algorithm.
    pub fn has_ao(self) -> bool {
        matches!(self, AbrKind::Bola | AbrKind::Bolae | AbrKind::Dynamic)
    }

    /// A fresh instance for one session over `content`, with the session's buffer
    /// capacity, sabre's `-ao` mode (BOLA variants) and the knobs of `robust`.
    pub(crate) fn build(
        self,
        content: &Content,
        max_buffer_ms: f64,
        ao: bool,
        robust: robust::RobustConfig,
    ) -> Box<dyn Abr> {
        match self {
            AbrKind::Robust => Box::new(robust::Robust::new(robust)),
            // A quarter-segment chunk outside a live session (`player simulate`).
            AbrKind::Lolp => Box::new(lolp::Lolp::new(content.segment_ms / 4.0)),
            AbrKind::Throughput => Box::new(throughput::Throughput::new()),
            AbrKind::Bola => Box::new(bola::Bola::new(content, max_buffer_ms, ao)),
            AbrKind::Bolae => Box::new(bola::BolaE::new(content, max_buffer_ms, ao)),
            AbrKind::Dynamic => Box::new(dynamic::Dynamic::new(content, max_buffer_ms, ao)),
            AbrKind::Bba => Box::new(bba::Bba::new(content, max_buffer_ms)),
            AbrKind::Mpc => Box::new(mpc::RobustMpc::new(content, max_buffer_ms)),
            AbrKind::MpcPaper => Box::new(mpc::RobustMpc::with_config(
                content,
                max_buffer_ms,
                mpc::MpcConfig::PAPER,
            )),
        }
    }
}

impl fmt::Display for AbrKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AbrKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "throughput" | "tput" => AbrKind::Throughput,
            "bola" => AbrKind::Bola,
            "bolae" | "bola-e" => AbrKind::Bolae,
            "dynamic" => AbrKind::Dynamic,
            "bba" => AbrKind::Bba,
            "mpc" | "robustmpc" | "robust-mpc" => AbrKind::Mpc,
            "mpc-paper" => AbrKind::MpcPaper,
            "robust" => AbrKind::Robust,
            "lolp" | "lol+" | "lowlatency" | "low-latency" => AbrKind::Lolp,
            other => {
                return Err(format!(
                    "unknown ABR algorithm `{other}`; choose one of robust, lolp, throughput, bola, bolae, dynamic, bba, mpc, mpc-paper"
                ))
            }
        })
    }
}
