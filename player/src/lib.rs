//! dashcdn player: a DASH client with ABR algorithms, QoE metrics and a trace-driven ABR lab.
//!
//! The root binary uses [`cli`]; the rest of the surface is what the tests drive:
//! [`stream_report`] / [`stream_many`] (streaming over real HTTP), [`simulate`] (the lab).
//!
//! Layout (all private): `session` is one playback session as a state machine, shared by
//! streaming and simulation; `buffer`, `estimate`, `qoe` its model and metrics; `abr` the
//! algorithms; `content`, `trace`, `movie` the lab's inputs; `sim` the lab (sabre's network
//! model); `stream`, `mpd`, `net`, `dns`, `shape` streaming; `live` dynamic MPDs (live
//! and low-latency: clock, catch-up, chunk-wise playback); `tracks` audio language and
//! subtitle choice; `plot` the `--plot` SVG;
//! `log` the `--log` writer thread.

#![warn(unreachable_pub)]
// Errors carry the URL, address and cause they are about; they are built on cold paths
// only, so their size does not matter.
#![allow(clippy::result_large_err)]

mod abr;
mod buffer;
pub mod cli;
mod content;
mod dns;
mod estimate;
mod lab;
mod log;
mod movie;
mod mpd;
mod net;
mod plot;
mod qoe;
mod session;
mod shape;
mod sim;
mod stream;
mod trace;
mod tracegen;

pub use abr::{robust::RobustConfig, AbrKind};
pub use content::Content;
pub use dns::DnsClient;
pub use lab::{lab, lab_table, lab_variants, LabRow};
pub use log::LogSink;
pub use movie::content_from_mpd;
pub use mpd::tracks::{TrackInfo, TrackPrefs, Tracks};
pub use mpd::{parse as parse_mpd, MpdError, Resource};
pub use net::{Net, NetConfig, NetError, ResolveOverride};
pub use qoe::{LiveStats, Summary};
pub use session::SessionConfig;
pub use sim::{run_all, simulate, SimResult, Variant};
pub use stream::{stream_many, stream_report, PlayerError, Report, StreamOptions};
pub use trace::{Period, Trace};
pub use tracegen::{generate, write_sabre, Family, Split};
