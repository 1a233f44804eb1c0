//! The CMAF segmenter: one track from a [`SampleSource`] → `{n}.m4s`, then `init.mp4`
//! (written by [`crate::init`] once the track's duration is known).
//!
//! Each media segment is `styp` + one `moof` (`mfhd` sequence number = segment number,
//! `traf` with `tfhd` default-base-is-moof, `tfdt` v1 = DTS of its first sample, one `trun`
//! with per-sample duration/size/flags/composition offset) + `mdat`: a CMAF fragment that is
//! also a whole CMAF segment (ISO/IEC 23000-19 7.3.2).
//!
//! # Presentation times
//!
//! Composition offsets are written as the source has them (non-negative for ffmpeg's files,
//! so `trun` version 0), and the track's [`TrackInfo::presentation_offset`] (B-frame delay,
//! AAC priming) becomes a one-entry edit list in `init.mp4` (see [`crate::init`]), as
//! ffmpeg's DASH muxer writes: every player subtracts it, so the first frame presents at 0.
//! Negative offsets in the fragments would work for MSE but not for ffmpeg, which then
//! shifts the whole fragmented track by its most negative offset.
//!
//! [`TrackInfo::presentation_offset`]: crate::media::TrackInfo::presentation_offset
//!
//! # Cut rule
//!
//! A segment starts at the first sample whose decode time is at or after the next multiple of
//! the segment duration and, for video, is a sync sample. Ingest forces keyframes exactly on
//! those multiples, so video renditions cut at the same instants and audio (every frame a sync
//! sample) cuts at its first frame at or after them. A keyframe that is late moves the cut
//! with it, and the following boundary is the next multiple after the cut. A last segment
//! shorter than a tenth of the duration is folded into the one before it.
//!
//! The boxes come from shiguredo_mp4's types. Its `Fmp4SegmentMuxer` is not used: it picks
//! `tfdt` version 0 for small times, computes `tfdt` from its own running sum instead of the
//! sample's DTS, writes no `styp`, and brands the init segment `iso5` without `cmfc`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use shiguredo_mp4::boxes::{
    Brand, FtypBox, MdatBox, MfhdBox, MoofBox, TfdtBox, TfhdBox, TrafBox, TrunBox, TrunSample,
    UnknownBox,
};
use shiguredo_mp4::{BoxHeader, BoxSize, BoxType, Encode, ErrorKind, SampleFlags};

use crate::init::{self, TRACK_ID};
use crate::media::{MediaError, MediaInfo, PackagedTrack, Sample, SampleSource, SegmentInfo};

/// Big enough that a segment is written in a handful of system calls, small enough that
/// large video samples bypass the buffer instead of being copied through it.
const WRITE_BUFFER: usize = 256 * 1024;

/// A last segment shorter than 1/SLIVER_DIVISOR of the segment duration is folded into the one
/// before it. It is what AAC priming leaves: audio runs one frame (21 ms) longer than video, so
/// a clip of whole segments would end its audio with a one-frame segment video does not have.
const SLIVER_DIVISOR: f64 = 10.0;

/// Sync sample: depends on nothing (`sample_depends_on` = 2).
const SYNC_FLAGS: SampleFlags = SampleFlags::from_fields(0, 2, 0, 0, 0, false, 0);
/// Non-sync sample: depends on others (1) and is not a sync point.
const NON_SYNC_FLAGS: SampleFlags = SampleFlags::from_fields(0, 1, 0, 0, 0, true, 0);

/// Reads every sample of `source` and writes `dir/init.mp4` and `dir/{n}.m4s` (n from 1),
/// cutting about every `segment_duration` seconds (see the module doc). `dir` must exist.
pub(crate) fn package_track(
    source: &mut dyn SampleSource,
    id: &str,
    dir: &Path,
    segment_duration: f64,
) -> Result<PackagedTrack, MediaError> {
    if !(segment_duration.is_finite() && segment_duration > 0.0) {
        return Err(mux_error(
            dir,
            format!(
                "segment duration must be a positive number of seconds, got {segment_duration}"
            ),
        ));
    }
    let info = source.track().clone();
    if info.timescale == 0 {
        return Err(mux_error(dir, "track timescale is 0".into()));
    }
    let is_video = matches!(info.media, MediaInfo::Video { .. });
    let mut boundaries = Boundaries::new(segment_duration, info.timescale);
    let mut writer = SegmentWriter::new(dir);
    // A finished segment is held back until its successor is known not to be a sliver.
    let mut done: Vec<Sample> = Vec::new();
    let mut pending: Vec<Sample> = Vec::new();
    let mut pending_ticks = 0u64;
    let sliver = (segment_duration * f64::from(info.timescale) / SLIVER_DIVISOR) as u64;
    // Frame rate is measured, not assumed: the most common sample duration.
    let mut duration_counts: HashMap<u32, u64> = HashMap::new();
    let mut next_dts = 0u64;

    while let Some(sample) = source.next_sample()? {
        if sample.dts < next_dts {
            return Err(mux_error(
                dir,
                format!(
                    "sample at dts {} comes before the end of the previous one ({next_dts}); \
                     samples must arrive in decode order",
                    sample.dts
                ),
            ));
        }
        next_dts = sample.dts + u64::from(sample.duration);
        let at_boundary = sample.dts >= boundaries.next() && (sample.is_sync || !is_video);
        if at_boundary && !pending.is_empty() {
            if !done.is_empty() {
                writer.write_segment(&done)?;
                done.clear();
            }
            std::mem::swap(&mut done, &mut pending);
            pending_ticks = 0;
        }
        if pending.is_empty() {
            boundaries.advance_past(sample.dts);
        }
        if is_video {
            *duration_counts.entry(sample.duration).or_default() += 1;
        }
        pending_ticks += u64::from(sample.duration);
        pending.push(sample);
        if !done.is_empty() && pending_ticks >= sliver {
            writer.write_segment(&done)?;
            done.clear();
        }
    }
    if done.is_empty() {
        if !pending.is_empty() {
            writer.write_segment(&pending)?;
        }
    } else {
        // Only a sliver follows the last full segment: fold it in rather than publish a
        // segment of a frame or two.
        done.append(&mut pending);
        writer.write_segment(&done)?;
    }
    if writer.segments.is_empty() {
        return Err(mux_error(dir, "track has no samples".into()));
    }

    let total: u64 = writer.segments.iter().map(|s| s.duration).sum();
    init::write(dir, &info, total)?;

    let frame_rate = duration_counts
        .into_iter()
        // Ties go to the shorter duration so the result does not depend on hash order.
        .max_by_key(|&(duration, count)| (count, std::cmp::Reverse(duration)))
        .filter(|&(duration, _)| duration > 0)
        .map(|(duration, _)| reduce(info.timescale, duration));

    Ok(PackagedTrack {
        id: id.to_owned(),
        dir: dir.to_owned(),
        info,
        segments: writer.segments,
        frame_rate,
    })
}

/// The segment boundaries k·duration in track timescale.
struct Boundaries {
    /// One segment duration in track ticks (may be fractional, e.g. 2.002 s at 90 kHz).
    step: f64,
    k: u64,
}

impl Boundaries {
    fn new(segment_duration: f64, timescale: u32) -> Self {
        Self {
            step: segment_duration * f64::from(timescale),
            k: 1,
        }
    }

    /// The first tick at or after boundary k. The small slack keeps 4.0 s × 12800 from
    /// rounding up to the tick after an exact boundary.
    fn next(&self) -> u64 {
        (self.k as f64 * self.step - 1e-3).ceil() as u64
    }

    /// Moves to the first boundary after `dts`, where a segment has just started.
    fn advance_past(&mut self, dts: u64) {
        // Jump straight there (a late keyframe or a gap may skip boundaries), then let the
        // loop settle what floating point leaves undecided.
        let k = ((dts as f64 + 1e-3) / self.step).floor() as u64 + 1;
        self.k = self.k.max(k);
        while self.next() <= dts {
            self.k += 1;
        }
    }
}

/// Writes numbered media segments into a directory, reusing its buffers between segments.
struct SegmentWriter {
    dir: PathBuf,
    /// The `styp` box, the same for every segment.
    styp: Vec<u8>,
    /// Scratch for encoding `moof`, kept so each segment does not reallocate it.
    moof: Vec<u8>,
    segments: Vec<SegmentInfo>,
}

impl SegmentWriter {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            styp: styp_box(),
            moof: Vec::new(),
            segments: Vec::new(),
        }
    }

    fn write_segment(&mut self, samples: &[Sample]) -> Result<(), MediaError> {
        let number = self.segments.len() as u64 + 1;
        let path = self.dir.join(format!("{number}.m4s"));
        let err = |reason: String| mux_error(&path, reason);

        let start = samples[0].dts;
        let duration: u64 = samples.iter().map(|s| u64::from(s.duration)).sum();
        let payload: u64 = samples.iter().map(|s| s.data.len() as u64).sum();
        // Offsets are omitted when all are zero (audio): the trun stays 4 bytes per sample smaller.
        let has_offsets = samples.iter().any(|s| s.composition_offset != 0);
        let trun_samples = samples
            .iter()
            .map(|s| {
                Ok(TrunSample {
                    duration: Some(s.duration),
                    size: Some(
                        u32::try_from(s.data.len())
                            .map_err(|_| err(format!("sample at dts {} exceeds 4 GiB", s.dts)))?,
                    ),
                    flags: Some(if s.is_sync {
                        SYNC_FLAGS
                    } else {
                        NON_SYNC_FLAGS
                    }),
                    // trun is written as version 1 (signed) as soon as one offset is negative.
                    composition_time_offset: has_offsets.then_some(i64::from(s.composition_offset)),
                })
            })
            .collect::<Result<Vec<_>, MediaError>>()?;

        let mut moof = MoofBox {
            mfhd_box: MfhdBox {
                sequence_number: u32::try_from(number)
                    .map_err(|_| err("too many segments".into()))?,
            },
            traf_boxes: vec![TrafBox {
                tfhd_box: TfhdBox {
                    track_id: TRACK_ID,
                    base_data_offset: None,
                    sample_description_index: None,
                    default_sample_duration: None,
                    default_sample_size: None,
                    default_sample_flags: None,
                    duration_is_empty: false,
                    default_base_is_moof: true,
                },
                tfdt_box: Some(TfdtBox {
                    version: 1,
                    base_media_decode_time: start,
                }),
                trun_boxes: vec![TrunBox {
                    data_offset: Some(0),
                    first_sample_flags: None,
                    samples: trun_samples,
                }],
                unknown_boxes: Vec::new(),
            }],
            unknown_boxes: Vec::new(),
        };
        let mdat = BoxHeader {
            box_type: MdatBox::TYPE,
            box_size: BoxSize::with_payload_size(MdatBox::TYPE, payload),
        };
        let mut mdat_header = [0u8; 16];
        let mdat_header_len = mdat
            .encode(&mut mdat_header)
            .map_err(|e| err(e.to_string()))?;

        // data_offset is a fixed-width field, so the first encoding already has the final
        // size; it counts from the start of moof (default-base-is-moof) to the first sample.
        let moof_len = encode_into(&moof, &mut self.moof).map_err(|e| err(e.to_string()))?;
        let data_offset = i32::try_from(moof_len + mdat_header_len)
            .map_err(|_| err("moof is larger than 2 GiB".into()))?;
        moof.traf_boxes[0].trun_boxes[0].data_offset = Some(data_offset);
        let moof_len = encode_into(&moof, &mut self.moof).map_err(|e| err(e.to_string()))?;

        let file = File::create(&path).map_err(write_error(&path))?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        let write = |out: &mut BufWriter<File>| -> std::io::Result<()> {
            out.write_all(&self.styp)?;
            out.write_all(&self.moof[..moof_len])?;
            out.write_all(&mdat_header[..mdat_header_len])?;
            for sample in samples {
                out.write_all(&sample.data)?;
            }
            out.flush()
        };
        write(&mut out).map_err(write_error(&path))?;

        self.segments.push(SegmentInfo {
            number,
            start,
            duration,
            bytes: (self.styp.len() + moof_len + mdat_header_len) as u64 + payload,
        });
        Ok(())
    }
}

/// The `styp` every segment starts with: a DASH media segment (`msdh`, ISO/IEC 23009-1
/// 6.3.4.2) that is a CMAF segment and fragment (`cmfs`, `cmff`). shiguredo_mp4 has no
/// SegmentTypeBox, but its payload is exactly an `ftyp`'s, so we encode an `ftyp` and take
/// its payload.
fn styp_box() -> Vec<u8> {
    let msdh = Brand::new(*b"msdh");
    let ftyp = FtypBox {
        major_brand: msdh,
        minor_version: 0,
        compatible_brands: vec![msdh, Brand::new(*b"cmfs"), Brand::new(*b"cmff")],
    };
    let encoded = ftyp.encode_to_vec().expect("a fixed ftyp encodes");
    let (_, payload) =
        BoxHeader::decode_header_and_payload(&encoded).expect("a fresh ftyp decodes");
    let box_type = BoxType::Normal(*b"styp");
    UnknownBox {
        box_type,
        box_size: BoxSize::with_payload_size(box_type, payload.len() as u64),
        payload: payload.to_vec(),
    }
    .encode_to_vec()
    .expect("a fixed styp encodes")
}

/// Encodes `b` into `buf` (grown as needed, never shrunk) and returns its length.
fn encode_into(b: &impl Encode, buf: &mut Vec<u8>) -> shiguredo_mp4::Result<usize> {
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    loop {
        // Encoders may skip reserved bytes, trusting a zeroed buffer as encode_to_vec gives.
        buf.fill(0);
        match b.encode(buf) {
            Ok(len) => return Ok(len),
            Err(e) if e.kind == ErrorKind::InsufficientBuffer => {
                let len = buf.len() * 2;
                buf.resize(len, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

/// `timescale / duration` as a reduced fraction: 12800/512 → 25/1, 30000/1001 stays.
fn reduce(timescale: u32, duration: u32) -> (u32, u32) {
    let (mut a, mut b) = (timescale, duration);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    (timescale / a, duration / a)
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> MediaError + '_ {
    move |source| MediaError::Write {
        path: path.to_owned(),
        source,
    }
}

fn mux_error(path: &Path, reason: String) -> MediaError {
    MediaError::Mux {
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use shiguredo_mp4::Decode;

    use super::*;
    use crate::media::TrackInfo;
    use crate::mp4source::open_tracks;
    use crate::mp4source::tests::{clip, run, Clip};

    /// Packages every track of `input` into `out/{video,audio}` at 4 s segments.
    fn package_all(input: &Path, out: &Path) -> Vec<PackagedTrack> {
        open_tracks(input)
            .unwrap()
            .into_iter()
            .map(|mut source| {
                let id = match source.track().media {
                    MediaInfo::Video { .. } => "video",
                    MediaInfo::Audio { .. } => "audio",
                };
                let dir = out.join(id);
                std::fs::create_dir_all(&dir).unwrap();
                package_track(&mut source, id, &dir, 4.0).unwrap()
            })
            .collect()
    }

    /// `init.mp4` followed by every segment: what a player's buffer holds.
    fn concatenate(track: &PackagedTrack) -> PathBuf {
        let mut all = std::fs::read(track.dir.join("init.mp4")).unwrap();
        for s in &track.segments {
            all.extend(std::fs::read(track.dir.join(format!("{}.m4s", s.number))).unwrap());
        }
        let path = track.dir.join("all.mp4");
        std::fs::write(&path, all).unwrap();
        path
    }

    fn assert_decodes_cleanly(path: &Path) {
        let output = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        assert!(output.status.success());
        assert_eq!(String::from_utf8_lossy(&output.stderr), "", "{path:?}");
    }

    fn probe_duration(path: &Path) -> f64 {
        let out = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
            ],
            path,
        );
        out.trim().parse().unwrap()
    }

    /// Presentation times of the decoded frames as ffprobe prints them (`pts_time`), in
    /// decode output order; what a user of ffmpeg sees.
    fn probe_frame_times(path: &Path) -> Vec<String> {
        let out = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-show_entries",
                "frame=pts_time",
                "-of",
                "csv=p=0",
            ],
            path,
        );
        // Frames with side data (x264's SEI, AAC skip samples) get a trailing comma and a
        // blank line.
        out.lines()
            .filter_map(|l| l.split(',').next().filter(|v| !v.is_empty()))
            .map(str::to_owned)
            .collect()
    }

    fn assert_contiguous(track: &PackagedTrack) {
        for (i, pair) in track.segments.windows(2).enumerate() {
            assert_eq!(pair[1].number, i as u64 + 2);
            assert_eq!(
                pair[1].start,
                pair[0].start + pair[0].duration,
                "{}",
                track.id
            );
        }
        assert_eq!(track.segments[0].number, 1);
        assert_eq!(track.segments[0].start, 0);
        for s in &track.segments {
            let len = std::fs::metadata(track.dir.join(format!("{}.m4s", s.number)))
                .unwrap()
                .len();
            assert_eq!(s.bytes, len);
        }
    }

    #[test]
    fn packages_nine_seconds_into_four_four_one() {
        let dir = tempfile::tempdir().unwrap();
        let input = clip(dir.path(), "av.mp4", Clip::AudioVideo, true);
        let tracks = package_all(&input, dir.path());
        let [video, audio] = tracks.as_slice() else {
            panic!("two tracks expected");
        };

        assert!(video.dir.join("init.mp4").is_file());
        let durations: Vec<u64> = video.segments.iter().map(|s| s.duration).collect();
        assert_eq!(durations, [51200, 51200, 12800]);
        assert_eq!(video.frame_rate, Some((25, 1)));
        assert!((video.duration_secs() - 9.0).abs() < 1e-9);

        // Audio cuts at its first frame at or after each 4 s boundary.
        assert_eq!(audio.segments.len(), 3);
        assert_eq!(audio.segments[1].start, 188 * 1024);
        assert_eq!(audio.segments[2].start, 375 * 1024);
        assert_eq!(audio.frame_rate, None);
        assert!((audio.duration_secs() - 9.0).abs() < 0.05);

        // The source's edit lists travel in init.mp4 as ffmpeg's DASH muxer writes them:
        // two frames of B-frame delay, one AAC frame of priming.
        assert_eq!(init::tests::edit(&video.dir), Some((0, 1024, 1)));
        assert_eq!(init::tests::edit(&audio.dir), Some((0, 1024, 1)));

        for track in [video, audio] {
            assert_contiguous(track);
            assert!(!track.dir.join("4.m4s").exists());
            let all = concatenate(track);
            assert_decodes_cleanly(&all);
            let duration = probe_duration(&all);
            assert!((duration - 9.0).abs() < 0.1, "{}: {duration}", track.id);
            // The first frame presents at 0: no B-frame shift for video, and the priming
            // frame trimmed for audio.
            let times = probe_frame_times(&all);
            let first = times
                .iter()
                .map(|t| t.parse::<f64>().unwrap())
                .fold(f64::MAX, f64::min);
            assert_eq!(first, 0.0, "{}: {:?}", track.id, &times[..3]);
            assert_eq!(times[0], "0.000000", "{}", track.id);
        }
    }

    /// (presentation time, composition offset) of every sample of a packaged track, read back
    /// from its boxes as ISO/IEC 14496-12 (and MSE) reads them: the composition time is tfdt
    /// plus the preceding durations plus the offset, and presentation subtracts the init
    /// segment's edit media_time. Also checks each `trun` is version 0 (unsigned offsets),
    /// which every player reads alike.
    fn read_back(track: &PackagedTrack) -> Vec<(i64, i64)> {
        let media_time = init::tests::edit(&track.dir).map_or(0, |(_, media_time, _)| media_time);
        let mut samples = Vec::new();
        for s in &track.segments {
            let bytes = std::fs::read(track.dir.join(format!("{}.m4s", s.number))).unwrap();
            let (_, styp_len) = UnknownBox::decode(&bytes).unwrap();
            let (moof, _) = MoofBox::decode(&bytes[styp_len..]).unwrap();
            let trun_at = bytes.windows(4).position(|w| w == b"trun").unwrap();
            assert_eq!(bytes[trun_at + 4], 0, "segment {}: trun version", s.number);
            let traf = &moof.traf_boxes[0];
            let mut dts = traf.tfdt_box.as_ref().unwrap().base_media_decode_time as i64;
            for sample in &traf.trun_boxes[0].samples {
                let offset = sample.composition_time_offset.unwrap_or(0);
                samples.push((dts + offset - media_time, offset));
                dts += i64::from(sample.duration.unwrap());
            }
        }
        samples
    }

    #[test]
    fn b_frames_present_from_zero_in_source_order() {
        let dir = tempfile::tempdir().unwrap();
        let input = clip(dir.path(), "v.mp4", Clip::VideoOnly, true);
        let track = package_all(&input, dir.path()).remove(0);

        let written = read_back(&track);
        assert!(written.iter().all(|&(_, offset)| offset >= 0));
        let mut presented: Vec<i64> = written.iter().map(|&(pts, _)| pts).collect();
        presented.sort_unstable();
        // Every frame once, the first at 0, 25 fps in 1/12800 s.
        assert_eq!(presented, (0..225).map(|i| i * 512).collect::<Vec<_>>());
        // Each segment starts with an IDR that presents at its tfdt, so a segment's
        // SegmentInfo::start is also its earliest presentation time.
        let mut first_of_segment = 0;
        for s in &track.segments {
            assert_eq!(
                written[first_of_segment].0, s.start as i64,
                "segment {}",
                s.number
            );
            first_of_segment += (s.duration / 512) as usize;
        }

        // FFmpeg sees exactly these presentation times, from 0.
        let all = concatenate(&track);
        assert_decodes_cleanly(&all);
        let shown: Vec<i64> = probe_frame_times(&all)
            .iter()
            .map(|t| (t.parse::<f64>().unwrap() * 12800.0).round() as i64)
            .collect();
        assert_eq!(shown, presented);
    }

    #[test]
    fn single_track_inputs_package_too() {
        let dir = tempfile::tempdir().unwrap();
        let video_only = clip(dir.path(), "v.mp4", Clip::VideoOnly, false);
        let audio_only = clip(dir.path(), "a.mp4", Clip::AudioOnly, true);
        for (input, name) in [(video_only, "v"), (audio_only, "a")] {
            let out = dir.path().join(name);
            let tracks = package_all(&input, &out);
            assert_eq!(tracks.len(), 1);
            assert_eq!(tracks[0].segments.len(), 3);
            assert_contiguous(&tracks[0]);
            let all = concatenate(&tracks[0]);
            assert_decodes_cleanly(&all);
            assert!((probe_duration(&all) - 9.0).abs() < 0.1);
        }
    }

    /// A scripted source: (duration, is_sync, composition_offset) per sample, 1 byte each.
    struct Scripted {
        info: TrackInfo,
        samples: std::vec::IntoIter<(u32, bool, i32)>,
        dts: u64,
    }

    impl Scripted {
        fn video(samples: Vec<(u32, bool, i32)>) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let input = clip(dir.path(), "v.mp4", Clip::VideoOnly, true);
            let info = open_tracks(&input).unwrap()[0].track().clone();
            Self {
                info: TrackInfo {
                    timescale: 1000,
                    presentation_offset: 0,
                    ..info
                },
                samples: samples.into_iter(),
                dts: 0,
            }
        }
    }

    impl SampleSource for Scripted {
        fn track(&self) -> &TrackInfo {
            &self.info
        }

        fn next_sample(&mut self) -> Result<Option<Sample>, MediaError> {
            Ok(self
                .samples
                .next()
                .map(|(duration, is_sync, composition_offset)| {
                    let dts = self.dts;
                    self.dts += u64::from(duration);
                    Sample {
                        dts,
                        duration,
                        composition_offset,
                        is_sync,
                        data: vec![dts as u8],
                    }
                }))
        }
    }

    #[test]
    fn video_cuts_only_on_sync_samples_at_or_after_a_boundary() {
        // 40 ms frames over 10 s; keyframes at 0, 1 s (not a boundary), 2.04 s (late for the
        // 2 s boundary), 4 s, and 6.2 s; none at 8 s.
        let keyframes = [0, 1000, 2040, 4000, 6200];
        let script = (0..250)
            .map(|i| {
                (
                    40,
                    keyframes.contains(&(i * 40)),
                    if i % 3 == 1 { -40 } else { 40 },
                )
            })
            .collect();
        let mut source = Scripted::video(script);
        let dir = tempfile::tempdir().unwrap();
        let track = package_track(&mut source, "v", dir.path(), 2.0).unwrap();
        let starts: Vec<u64> = track.segments.iter().map(|s| s.start).collect();
        assert_eq!(starts, [0, 2040, 4000, 6200]);
        assert_eq!(track.frame_rate, Some((25, 1)));

        // The second segment's boxes say what SegmentInfo says, with signed offsets.
        let bytes = std::fs::read(dir.path().join("2.m4s")).unwrap();
        let (styp, styp_len) = UnknownBox::decode(&bytes).unwrap();
        assert_eq!(styp.box_type, BoxType::Normal(*b"styp"));
        let (moof, moof_len) = MoofBox::decode(&bytes[styp_len..]).unwrap();
        assert_eq!(moof.mfhd_box.sequence_number, 2);
        let traf = &moof.traf_boxes[0];
        assert!(traf.tfhd_box.default_base_is_moof);
        let tfdt = traf.tfdt_box.as_ref().unwrap();
        assert_eq!((tfdt.version, tfdt.base_media_decode_time), (1, 2040));
        let trun = &traf.trun_boxes[0];
        assert_eq!(trun.samples.len(), (4000 - 2040) / 40);
        assert!(trun
            .samples
            .iter()
            .any(|s| s.composition_time_offset == Some(-40)));
        assert_eq!(trun.samples[0].flags, Some(SYNC_FLAGS));
        assert_eq!(trun.samples[1].flags, Some(NON_SYNC_FLAGS));
        // data_offset lands on the first payload byte: the first sample's one byte is its dts.
        let first = styp_len + trun.data_offset.unwrap() as usize;
        assert_eq!(&bytes[first - 8 + 4..first], b"mdat");
        assert_eq!(moof_len + 8, trun.data_offset.unwrap() as usize);
        assert_eq!(bytes[first], 2040u64 as u8);
    }

    #[test]
    fn a_last_sliver_is_folded_into_the_segment_before() {
        let dir = tempfile::tempdir().unwrap();
        // 8.04 s: the 40 ms after the 8 s boundary join the second segment.
        let mut source = Scripted::video(vec![(40, true, 0); 201]);
        let track = package_track(&mut source, "v", dir.path(), 4.0).unwrap();
        let shape: Vec<(u64, u64)> = track
            .segments
            .iter()
            .map(|s| (s.start, s.duration))
            .collect();
        assert_eq!(shape, [(0, 4000), (4000, 4040)]);
        assert!(!dir.path().join("3.m4s").exists());

        // 8.4 s: a tenth of the duration is a segment of its own.
        let dir = tempfile::tempdir().unwrap();
        let mut source = Scripted::video(vec![(40, true, 0); 210]);
        let track = package_track(&mut source, "v", dir.path(), 4.0).unwrap();
        let shape: Vec<(u64, u64)> = track
            .segments
            .iter()
            .map(|s| (s.start, s.duration))
            .collect();
        assert_eq!(shape, [(0, 4000), (4000, 4000), (8000, 400)]);
    }

    #[test]
    fn rejects_a_useless_segment_duration_and_an_empty_track() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = Scripted::video(Vec::new());
        for bad in [0.0, -1.0, f64::NAN] {
            let err = package_track(&mut source, "v", dir.path(), bad).unwrap_err();
            assert!(err.to_string().contains("segment duration"), "{err}");
        }
        let err = package_track(&mut source, "v", dir.path(), 4.0).unwrap_err();
        assert!(err.to_string().contains("no samples"), "{err}");
    }
}
