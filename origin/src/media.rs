//! The media model shared by every stage of packaging: what a track is, what a
//! sample is, and what the segmenter hands to the manifest writer.
//!
//! Segmenting never knows where samples come from (a finished MP4 today, a live
//! encoder later), only that they arrive through [`SampleSource`] in decode order.

use std::path::PathBuf;

/// Video or audio; decides the AdaptationSet a representation lands in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MediaInfo {
    Video {
        width: u32,
        height: u32,
        /// Sample aspect ratio from the stream (`pasp`), 1:1 when absent.
        sar: (u32, u32),
    },
    Audio {
        sample_rate: u32,
        channels: u16,
    },
}

/// What a track is, read from the stream itself (never from what ffmpeg was asked for).
#[derive(Debug, Clone)]
pub(crate) struct TrackInfo {
    /// Units per second of every time value of this track (`mdhd` timescale).
    pub timescale: u32,
    /// RFC 6381 codecs string built from the sample entry (avcC / esds), e.g. `avc1.64001f`.
    pub codecs: String,
    /// ISO 639-2 language from `mdhd`, when it says something (not `und`).
    pub language: Option<String>,
    pub media: MediaInfo,
    /// The sample entry as the muxer needs it to write `init.mp4`.
    pub sample_entry: shiguredo_mp4::boxes::SampleEntry,
    /// Media time (track timescale) at which presentation starts, from the source's edit
    /// list: the B-frame reorder delay for video, the encoder priming for AAC. Written as a
    /// single-entry edit list (`elst` media_time) in `init.mp4`, which ffmpeg, Chromium and
    /// Firefox MSE all honour, so the first frame presents at 0 while every composition
    /// offset stays non-negative. (ffmpeg only shifts by it; to drop AAC priming it also
    /// needs the `iTunSMPB` tag the segmenter adds.)
    pub presentation_offset: u64,
}

/// One access unit in decode order.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// Decode time in track timescale; the first sample of a track is at 0.
    pub dts: u64,
    /// Decode duration in track timescale.
    pub duration: u32,
    /// Composition minus decode time, as in the source's `ctts`: non-negative for
    /// ffmpeg-written streams, whose B-frame delay is undone by
    /// [`TrackInfo::presentation_offset`] rather than here (a file source also moves any
    /// negative `ctts` there). Other sources may still give negative offsets, which the
    /// segmenter writes with `trun` version 1.
    pub composition_offset: i32,
    /// A sync sample (IDR for video; every AAC frame).
    pub is_sync: bool,
    pub data: Vec<u8>,
}

/// Where samples come from. A finished MP4 file implements it today; a live encoder later.
pub(crate) trait SampleSource {
    fn track(&self) -> &TrackInfo;
    /// The next sample in decode order, `None` at the end.
    fn next_sample(&mut self) -> Result<Option<Sample>, MediaError>;
}

/// One written media segment, as the manifest needs to describe it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SegmentInfo {
    /// `$Number$` of the segment, starting at 1.
    pub number: u64,
    /// Decode time of the first sample (`tfdt`) in track timescale. With the edit list
    /// applied the segment presents from `start` for video (the IDR at a segment's start has
    /// the reorder delay as its offset, so it presents at its decode time) and from
    /// `start - presentation_offset` for audio.
    pub start: u64,
    /// Duration in track timescale.
    pub duration: u64,
    /// Size of the `.m4s` file in bytes (`styp` + `moof` + `mdat`).
    pub bytes: u64,
}

/// A whole representation written to disk: `init.mp4` and `{number}.m4s`.
#[derive(Debug, Clone)]
pub(crate) struct PackagedTrack {
    /// Representation id, also its folder name in the asset.
    pub id: String,
    /// Where `init.mp4` and the segments were written.
    pub dir: PathBuf,
    pub info: TrackInfo,
    pub segments: Vec<SegmentInfo>,
    /// Frame rate measured from sample durations, as a fraction (video only).
    pub frame_rate: Option<(u32, u32)>,
}

impl PackagedTrack {
    /// Total duration in seconds.
    pub(crate) fn duration_secs(&self) -> f64 {
        let total: u64 = self.segments.iter().map(|s| s.duration).sum();
        total as f64 / self.info.timescale as f64
    }

    /// Peak bits per second over any single segment: what a client needs to fetch it in time.
    pub(crate) fn peak_bandwidth(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.duration > 0)
            .map(|s| s.bytes * 8 * self.info.timescale as u64 / s.duration)
            .max()
            .unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a readable MP4: {reason}")]
    Demux { path: PathBuf, reason: String },
    #[error("{path}: unsupported track: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("cannot write segment {path}: {reason}")]
    Mux { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
