//! dashcdn origin: turns any video into a multi-bitrate DASH presentation and serves it.
//!
//! Layout:
//! - [`probe`]: ffprobe JSON → what the input is, or a clear reason it is not a video.
//! - [`ladder`]: the bitrate ladder (default and `--ladder`), never upscaling.
//! - [`transcode`]: one ffmpeg run → one MP4 per rendition + one audio MP4, keyframes forced
//!   on segment boundaries, progress from `-progress`.
//! - [`media`]: the track/sample model and the [`media::SampleSource`] trait segmenting reads from.
//! - [`mp4source`]: a [`media::SampleSource`] over a finished MP4 file (shiguredo_mp4 demuxer).
//! - [`segment`]: CMAF segmenter: `{n}.m4s` (moof+mdat) cut on sync samples.
//! - [`init`]: the CMAF initialization segment, `init.mp4` (ftyp+moov, edit list, mvex).
//! - [`manifest`]: the static MPD (dash-mpd-core model, serialised by quick-xml).
//! - [`package`]: the whole `origin package` job, written atomically into the library.
//! - [`library`]: the media library on disk and safe path resolution.
//! - [`server`]: the HTTP origin (axum): MPD, segments, listing, health, metrics.
//! - [`file`](mod@file): one library file as a response: the blocking-pool load, 200/206/304/412/416.
//! - [`conditional`]: RFC 9110 §13 preconditions (ETag, Last-Modified) → what to send.
//! - [`range`]: RFC 9110 §14 `Range: bytes=` parsing; multi-range requests get the whole file.
//! - [`small_files`]: MPDs and init segments kept in memory for a second.
//! - [`body`]: file bodies, read in one go up to 8 MB, streamed beyond.
//! - [`config`]: `origin serve` configuration (TOML + CLI overrides).
//! - [`web`]: the dash.js watch page at `/`, its files under `/web/`, and `/time`.

pub mod body;
mod clip;
pub mod conditional;
pub mod config;
pub mod file;
pub mod init;
pub mod ladder;
pub mod library;
pub mod manifest;
pub mod media;
pub mod metrics;
pub mod mp4source;
pub mod package;
pub mod probe;
pub mod range;
pub mod segment;
pub mod server;
pub mod small_files;
pub mod transcode;
pub mod web;

pub use clip::{Clip, ClipError};
