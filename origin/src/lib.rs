//! dashcdn origin: turns any video into a multi-bitrate DASH presentation and serves it.
//!
//! What other crates use: [`run`] / [`router`] / [`AppState`] with a [`ServeConfig`] (the
//! HTTP origin), [`package()`] / [`package_encoded`] with [`PackageOptions`] (the
//! packager), [`Ladder`], the library's [`AssetSummary`], the test [`Clip`] builder, and
//! [`cli`] (`dashcdn origin …`).
//!
//! Layout. Ingest and packaging:
//! - `probe`: ffprobe JSON → what the input is, or a clear reason it is not a video.
//! - `ladder`: the bitrate ladder (default and `--ladder`), never upscaling.
//! - `transcode`: one ffmpeg run → one MP4 per rendition + one audio MP4, keyframes forced
//!   on segment boundaries, progress from `-progress`.
//! - `media`: the track/sample model and the `SampleSource` trait segmenting reads from.
//! - `mp4source`: a `SampleSource` over a finished MP4 file (shiguredo_mp4 demuxer).
//! - `segment`: CMAF segmenter: `{n}.m4s` (moof+mdat) cut on sync samples.
//! - `init`: the CMAF initialization segment, `init.mp4` (ftyp+moov, edit list, mvex).
//! - `manifest`: the static MPD (dash-mpd-core model, serialised by quick-xml).
//! - `package`: the whole `origin package` job, written atomically into the library.
//!
//! Serving:
//! - `library`: the media library on disk and safe path resolution.
//! - `app`: the shared state handlers take parts of (`FromRef`), and the one error type.
//! - `server`: routing, the small handlers (listing, health, metrics), CORS, and `run` on
//!   `dashcdn_http::serve` (connection cap, per-client cap, header/idle/send timeouts).
//! - `file`: one library file as a response (200/206/304/412/416 decided by
//!   `dashcdn_http::conditional`); `file::small` keeps MPDs and init segments in memory
//!   for a second, `file::body` reads or streams the bytes.
//! - `web`: the dash.js watch page at `/`, its files under `/web/`, and `/time`.
//! - `metrics`: the Prometheus/OpenMetrics registry behind `/metrics`.
//! - `config`: `origin serve` configuration (TOML + CLI overrides); `cli`: the front door.
#![warn(unreachable_pub)]

mod access;
mod app;
pub mod cli;
mod clip;
mod config;
mod file;
mod init;
mod ladder;
mod library;
pub mod live;
mod manifest;
mod media;
mod metrics;
mod mp4source;
mod package;
mod probe;
mod segment;
mod server;
#[cfg(test)]
mod testing;
mod transcode;
mod web;

pub use app::AppState;
pub use clip::{Clip, ClipError};
pub use config::{Limits, ServeConfig};
pub use ladder::Ladder;
pub use library::{AssetSummary, RepresentationSummary};
pub use package::{package, package_encoded, PackageError, PackageOptions, Packaged, SubtitleFile};
pub use server::{router, run};
