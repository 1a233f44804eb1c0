//! End-to-end tests of dashcdn: real ffmpeg, real files, real HTTP on loopback.
//! One test binary (ripgrep style); `util` makes each scenario a few lines.

mod bad_input;
mod browser;
mod demo;
mod deploy;
mod edge;
mod geodns;
mod interrupt;
mod live;
mod package;
mod player_live;
mod serve;
mod tls;
mod tracks;
mod util;
