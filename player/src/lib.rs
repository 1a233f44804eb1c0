//! dashcdn player: a DASH client with ABR algorithms, QoE metrics and a trace-driven ABR lab.
//!
//! Layout:
//! - [`session`]: one playback session as a state machine (buffer, startup, stalls, ABR
//!   decisions, abandonment), shared by streaming and simulation.
//! - [`buffer`]: the playback buffer model and its metrics; [`estimate`]: EWMA throughput.
//! - [`abr`]: the algorithms (throughput, BOLA, BOLA-E, dynamic, BBA, RobustMPC).
//! - [`content`]: ladder + segment sizes; [`trace`]: bandwidth traces; [`qoe`]: the summary.
//! - [`sim`]: the ABR lab (sabre's network model, batch tables); [`movie`]: an MPD as a movie.
//! - [`stream`]: streaming over real HTTP; [`mpd`]: MPD → playlist; [`net`]: HTTP with
//!   timing, retries and failover; [`dns`]: `--dns` with EDNS Client Subnet; [`shape`]:
//!   `--trace` token bucket; [`plot`]: `--plot` SVG.
//! - [`cli`]: `dashcdn player` and `dashcdn player simulate`.

// Errors carry the URL, address and cause they are about; they are built on cold paths
// only, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod abr;
pub mod buffer;
pub mod cli;
pub mod content;
pub mod dns;
pub mod estimate;
pub mod movie;
pub mod mpd;
pub mod net;
pub mod plot;
pub mod qoe;
pub mod session;
pub mod shape;
pub mod sim;
pub mod stream;
pub mod trace;

pub use abr::AbrKind;
pub use qoe::Summary;
pub use session::SessionConfig;
pub use sim::{simulate, SimResult};
pub use stream::{stream, stream_many, stream_report, PlayerError, Report, StreamOptions};
