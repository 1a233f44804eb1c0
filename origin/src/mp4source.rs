//! A [`SampleSource`] over a finished (non-fragmented) MP4 file, one per track.
//!
//! The `moov` is decoded with shiguredo_mp4's box types and each track's sample table is walked
//! with its [`SampleTableAccessor`], the same machinery its `Mp4FileDemuxer` uses. We do not use
//! the demuxer itself because it interleaves all tracks into one stream and hides what packaging
//! needs per track: the edit list, the `mdhd` language and the sample entry up front.
//!
//! Sample data is read a whole chunk at a time (a chunk is a run of the track's samples that
//! lie back to back in the file), so a file of a few hundred MB is never held in
//! memory and a track stored in long chunks (a separate audio file) costs few system calls.
//!
//! # Edit lists and composition offsets
//!
//! libx264 with B-frames makes ffmpeg write `ctts` offsets (the IDR's offset is the reorder
//! delay) and an `elst` whose `media_time` is that delay, so the first frame presents at 0.
//! For AAC the edit's `media_time` is the encoder priming (1024 samples). We keep both as
//! they are: samples carry `ctts` unchanged and the edit becomes
//! [`TrackInfo::presentation_offset`], which the segmenter writes back as the edit list of
//! `init.mp4`, as ffmpeg's own DASH muxer does.
//!
//! Folding the edit into the offsets instead (`ctts - media_time`) makes them negative for
//! B-frames, and ffmpeg's mov demuxer then shifts a fragmented file's timeline by the most
//! negative offset it has seen, so the first frame shows at 0.04 s rather than 0. For audio
//! it would put a segment's earliest presentation before its `tfdt`.
//!
//! A source with negative offsets (`ctts` version 1, e.g. ffmpeg's `negative_cts_offsets`)
//! is brought to the same form: its most negative offset is subtracted from every offset and
//! added to the presentation offset, which keeps what presents when but avoids `trun` v1.
//! Without an edit list the earliest composition time of the first GOP presents at 0.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use shiguredo_mp4::aux::SampleTableAccessor;
use shiguredo_mp4::boxes::{HdlrBox, MoovBox, SampleEntry, StblBox, TrakBox};
use shiguredo_mp4::{BoxHeader, BoxSize, Decode, LanguageCode};

use crate::media::{MediaError, MediaInfo, Sample, SampleSource, TrackInfo};

/// A chunk larger than this is read sample by sample instead of whole, to bound memory on
/// files written with few, huge chunks.
const MAX_CHUNK_READ: u64 = 8 * 1024 * 1024;

/// How many samples at most are scanned for the earliest composition time when a track has
/// no edit list (a GOP is rarely longer).
const FIRST_GOP_SCAN: u32 = 512;

/// One video or audio track of an MP4 file, read in decode order.
pub(crate) struct Mp4FileSource {
    /// The file, named in every error.
    path: PathBuf,
    /// Opened for this track alone: a `try_clone` would share the file offset, and tracks of
    /// one file may be packaged on different threads.
    file: File,
    info: TrackInfo,
    track_id: u32,
    table: SampleTableAccessor<StblBox>,
    /// 1-based index of the next sample to return.
    next: u32,
    /// Subtracted from every `ctts` offset; zero unless the source's offsets are negative
    /// (see the module doc).
    composition_shift: i64,
    /// File bytes of (part of) the current chunk, starting at `window_start`.
    window: Vec<u8>,
    window_start: u64,
}

impl std::fmt::Debug for Mp4FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mp4FileSource")
            .field("path", &self.path)
            .field("track_id", &self.track_id)
            .field("codecs", &self.info.codecs)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// Opens `path` and returns one source per video or audio track, in file order.
/// Other tracks (subtitles, timecode, ...) are skipped.
pub(crate) fn open_tracks(path: &Path) -> Result<Vec<Mp4FileSource>, MediaError> {
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let moov = read_moov(path, &mut file)?;
    if moov.mvex_box.is_some() {
        return Err(unsupported(
            path,
            "fragmented MP4 (mvex present); expected a finished file",
        ));
    }

    let mut sources = Vec::new();
    for trak in moov.trak_boxes {
        let is_video = match trak.mdia_box.hdlr_box.handler_type {
            HdlrBox::HANDLER_TYPE_VIDE => true,
            HdlrBox::HANDLER_TYPE_SOUN => false,
            _ => continue,
        };
        let file = File::open(path).map_err(|e| io_error(path, e))?;
        sources.push(Mp4FileSource::new(path, file, trak, is_video)?);
    }
    Ok(sources)
}

impl Mp4FileSource {
    fn new(path: &Path, file: File, trak: TrakBox, is_video: bool) -> Result<Self, MediaError> {
        let track_id = trak.tkhd_box.track_id;
        let mdhd = &trak.mdia_box.mdhd_box;
        let timescale = mdhd.timescale.get();
        let language =
            (mdhd.language != LanguageCode::UNDEFINED).then(|| mdhd.language.to_string());
        // The edit's media_time is the composition time shown at movie time 0; an empty edit
        // (-1) only delays the track relative to others, which a per-track timeline ignores.
        let media_time = trak
            .edts_box
            .as_ref()
            .and_then(|edts| edts.elst_box.as_ref())
            .and_then(|elst| elst.entries.iter().find(|e| e.media_time >= 0))
            .map(|e| e.media_time);

        let stbl = trak.mdia_box.minf_box.stbl_box;
        let track_err = |reason: String| unsupported(path, format!("track {track_id}: {reason}"));
        // The segmenter writes one sample entry into init.mp4; a track that switches entries
        // mid-stream would need a new init segment (a new period).
        let [sample_entry] = stbl.stsd_box.entries.as_slice() else {
            return Err(track_err(format!(
                "{} sample entries in stsd, expected 1",
                stbl.stsd_box.entries.len()
            )));
        };
        let sample_entry = sample_entry.clone();
        if stbl
            .stsc_box
            .entries
            .iter()
            .any(|e| e.sample_description_index.get() != 1)
        {
            return Err(track_err("stsc refers to a missing sample entry".into()));
        }

        let codecs = shiguredo_mp4::codec_string::from_sample_entry(&sample_entry)
            .map_err(|e| track_err(format!("no codecs string for its sample entry: {e}")))?;
        let media = if is_video {
            video_info(&sample_entry).ok_or_else(|| {
                track_err(format!("video track with non-video sample entry {codecs}"))
            })?
        } else {
            audio_info(&sample_entry, timescale).ok_or_else(|| {
                track_err(format!("audio track with non-audio sample entry {codecs}"))
            })?
        };

        let table = SampleTableAccessor::new(stbl)
            .map_err(|e| demux_error(path, format!("track {track_id}: sample table: {e}")))?;
        // Offsets are raised only when some are negative, and then by the most negative one
        // anywhere in the track, so none stays negative (see the module doc).
        let composition_shift = table
            .stbl_box()
            .ctts_box
            .as_ref()
            .and_then(|ctts| {
                ctts.entries
                    .iter()
                    .filter(|e| e.sample_count > 0)
                    .map(|e| e.sample_offset)
                    .min()
            })
            .unwrap_or(0)
            .min(0);
        // Without an edit list the earliest composed frame is meant to present first.
        let start = media_time.unwrap_or_else(|| earliest_composition_time(&table));
        let presentation_offset = start
            .checked_sub(composition_shift)
            .and_then(|t| u64::try_from(t).ok())
            .ok_or_else(|| {
                track_err(format!(
                    "presentation starts at media time {start}, out of range"
                ))
            })?;

        Ok(Self {
            path: path.to_owned(),
            file,
            info: TrackInfo {
                timescale,
                codecs,
                language,
                media,
                sample_entry,
                presentation_offset,
            },
            track_id,
            table,
            next: 1,
            composition_shift,
            window: Vec::new(),
            window_start: 0,
        })
    }

    /// Makes `window` hold `size` bytes at `offset`, reading the rest of the chunk along with
    /// them so the chunk's next samples are already in memory.
    fn fill_window(&mut self, index: NonZeroU32, offset: u64, size: u64) -> Result<(), MediaError> {
        let in_window = offset >= self.window_start
            && offset + size <= self.window_start + self.window.len() as u64;
        if in_window {
            return Ok(());
        }
        let sample = self
            .table
            .get_sample(index)
            .expect("index checked by caller");
        // Samples of one chunk are contiguous by definition (ISO/IEC 14496-12 8.7.4).
        let chunk_end = sample
            .chunk()
            .samples()
            .last()
            .map(|last| last.data_offset() + u64::from(last.data_size()))
            .unwrap_or(offset + size);
        let mut len = chunk_end.saturating_sub(offset).max(size);
        if len > MAX_CHUNK_READ {
            len = size;
        }
        let len = usize::try_from(len)
            .map_err(|_| demux_error(&self.path, format!("sample {index} is too large")))?;
        self.window.resize(len, 0);
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut self.window))
            .map_err(|e| io_error(&self.path, e))?;
        self.window_start = offset;
        Ok(())
    }
}

impl SampleSource for Mp4FileSource {
    fn track(&self) -> &TrackInfo {
        &self.info
    }

    fn next_sample(&mut self) -> Result<Option<Sample>, MediaError> {
        let Some(index) = NonZeroU32::new(self.next) else {
            return Ok(None);
        };
        let Some(sample) = self.table.get_sample(index) else {
            return Ok(None);
        };
        let (dts, duration, is_sync) = (
            sample.timestamp(),
            sample.duration(),
            sample.is_sync_sample(),
        );
        let (offset, size) = (sample.data_offset(), u64::from(sample.data_size()));
        let ctts = sample.composition_time_offset().unwrap_or(0);
        let composition_offset = i32::try_from(ctts - self.composition_shift).map_err(|_| {
            demux_error(
                &self.path,
                format!("sample {index}: composition offset {ctts} out of range"),
            )
        })?;

        self.fill_window(index, offset, size)?;
        let start = (offset - self.window_start) as usize;
        let data = self.window[start..start + size as usize].to_vec();
        self.next = self.next.saturating_add(1);
        Ok(Some(Sample {
            dts,
            duration,
            composition_offset,
            is_sync,
            data,
        }))
    }
}

/// Finds the top-level `moov` (before or after `mdat`, i.e. with or without `+faststart`) and
/// decodes it; `mdat` itself is skipped by its size, never read.
fn read_moov(path: &Path, file: &mut File) -> Result<MoovBox, MediaError> {
    let file_len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let mut offset = 0u64;
    let mut header_buf = [0u8; BoxHeader::MAX_SIZE];
    while offset < file_len {
        let avail = (file_len - offset).min(header_buf.len() as u64) as usize;
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut header_buf[..avail]))
            .map_err(|e| io_error(path, e))?;
        let (header, header_len) = BoxHeader::decode(&header_buf[..avail])
            .map_err(|e| demux_error(path, format!("box header at byte {offset}: {e}")))?;
        let box_len = match header.box_size {
            BoxSize::U32(0) => file_len - offset,
            BoxSize::U32(n) => u64::from(n),
            BoxSize::U64(n) => n,
        };
        if box_len < header_len as u64 || offset + box_len > file_len {
            return Err(demux_error(
                path,
                format!(
                    "box {} at byte {offset} runs past the end of the file",
                    header.box_type
                ),
            ));
        }
        if header.box_type == MoovBox::TYPE {
            let len = usize::try_from(box_len)
                .map_err(|_| demux_error(path, "moov is too large".into()))?;
            let mut buf = vec![0u8; len];
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut buf))
                .map_err(|e| io_error(path, e))?;
            let (moov, _) =
                MoovBox::decode(&buf).map_err(|e| demux_error(path, format!("moov: {e}")))?;
            return Ok(moov);
        }
        offset += box_len;
    }
    Err(demux_error(path, "no moov box".into()))
}

fn video_info(entry: &SampleEntry) -> Option<MediaInfo> {
    let (visual, children) = match entry {
        SampleEntry::Avc1(b) => (&b.visual, &b.unknown_boxes),
        SampleEntry::Hev1(b) => (&b.visual, &b.unknown_boxes),
        SampleEntry::Hvc1(b) => (&b.visual, &b.unknown_boxes),
        SampleEntry::Vp08(b) => (&b.visual, &b.unknown_boxes),
        SampleEntry::Vp09(b) => (&b.visual, &b.unknown_boxes),
        SampleEntry::Av01(b) => (&b.visual, &b.unknown_boxes),
        _ => return None,
    };
    // shiguredo_mp4 has no PixelAspectRatioBox type; its payload is two u32s
    // (hSpacing, vSpacing), ISO/IEC 14496-12 12.1.4.
    let sar = children
        .iter()
        .find(|b| b.box_type.as_bytes() == b"pasp")
        .and_then(|b| {
            let h = u32::from_be_bytes(b.payload.get(0..4)?.try_into().ok()?);
            let v = u32::from_be_bytes(b.payload.get(4..8)?.try_into().ok()?);
            (h > 0 && v > 0).then_some((h, v))
        })
        .unwrap_or((1, 1));
    Some(MediaInfo::Video {
        width: u32::from(visual.width),
        height: u32::from(visual.height),
        sar,
    })
}

fn audio_info(entry: &SampleEntry, timescale: u32) -> Option<MediaInfo> {
    let audio = match entry {
        SampleEntry::Mp4a(b) => &b.audio,
        SampleEntry::Opus(b) => &b.audio,
        SampleEntry::Flac(b) => &b.audio,
        _ => return None,
    };
    // ffmpeg writes the mp4a entry's template values (2 channels, 16 bit) whatever the stream
    // is, so for AAC the truth is in the AudioSpecificConfig.
    if let Some((sample_rate, channels)) = aac_config(entry) {
        return Some(MediaInfo::Audio {
            sample_rate,
            channels,
        });
    }
    // The sample entry's rate is 16.16 fixed point, so ffmpeg writes 0 above 65535 Hz; its
    // audio mdhd timescale is the sample rate then.
    let sample_rate = match u32::from(audio.samplerate.integer) {
        0 => timescale,
        rate => rate,
    };
    Some(MediaInfo::Audio {
        sample_rate,
        channels: audio.channelcount,
    })
}

/// Sample rate and channel count from the start of an AAC AudioSpecificConfig
/// (ISO/IEC 14496-3 1.6.2.1). Parsed here because shiguredo_mp4's parser refuses the
/// backward-compatible SBR signalling ffmpeg appends (`56 e5 00`) after the two bytes we need.
/// `None` for other codecs and for channel layouts given by a PCE (configuration 0).
fn aac_config(entry: &SampleEntry) -> Option<(u32, u16)> {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let SampleEntry::Mp4a(mp4a) = entry else {
        return None;
    };
    let asc = &mp4a
        .esds_box
        .es
        .dec_config_descr
        .dec_specific_info
        .as_ref()?
        .payload;
    // At most 5 + 6 + 4 + 24 + 4 bits are needed: they fit in the first 8 bytes.
    let mut word = [0u8; 8];
    let n = asc.len().min(8);
    word[..n].copy_from_slice(&asc[..n]);
    let bits = u64::from_be_bytes(word);
    let mut pos = 0;
    let mut read = |width: u32| {
        let value = (bits << pos) >> (64 - width);
        pos += width;
        value as u32
    };
    if read(5) == 31 {
        read(6);
    }
    let rate = match read(4) {
        15 => read(24),
        index => *RATES.get(index as usize)?,
    };
    let channels = match read(4) {
        0 | 8.. => return None,
        7 => 8,
        n => n as u16,
    };
    let needed_bytes = (pos as usize).div_ceil(8);
    (asc.len() >= needed_bytes && rate > 0).then_some((rate, channels))
}

/// The earliest composition time (decode time + `ctts`) of the first GOP: the frame a track
/// without an edit list presents first. For audio the first GOP is the first frame.
fn earliest_composition_time(table: &SampleTableAccessor<StblBox>) -> i64 {
    let mut earliest: Option<i64> = None;
    for sample in table.samples().take(FIRST_GOP_SCAN as usize) {
        if sample.index().get() > 1 && sample.is_sync_sample() {
            break;
        }
        let time = sample.timestamp() as i64 + sample.composition_time_offset().unwrap_or(0);
        earliest = Some(earliest.map_or(time, |e| e.min(time)));
    }
    earliest.unwrap_or(0)
}

fn io_error(path: &Path, source: std::io::Error) -> MediaError {
    MediaError::Io {
        path: path.to_owned(),
        source,
    }
}

fn demux_error(path: &Path, reason: String) -> MediaError {
    MediaError::Demux {
        path: path.to_owned(),
        reason,
    }
}

fn unsupported(path: &Path, reason: impl Into<String>) -> MediaError {
    MediaError::Unsupported {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::process::Command;

    use super::*;

    /// What a clip made by [`clip`] contains.
    #[derive(Clone, Copy)]
    pub(crate) enum Clip {
        AudioVideo,
        VideoOnly,
        AudioOnly,
    }

    /// Encodes a 9 s test clip the way ingest does (libx264 with B-frames, keyframes every 2 s
    /// and forced on every 4 s boundary, AAC-LC), `+faststart` or not.
    pub(crate) fn clip(dir: &Path, name: &str, kind: Clip, faststart: bool) -> PathBuf {
        let out = dir.join(name);
        let mut args: Vec<&str> = vec!["-v", "error", "-y"];
        if !matches!(kind, Clip::AudioOnly) {
            args.extend(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"]);
        }
        if !matches!(kind, Clip::VideoOnly) {
            args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
        }
        args.extend(["-t", "9"]);
        if !matches!(kind, Clip::AudioOnly) {
            args.extend([
                "-c:v",
                "libx264",
                "-bf",
                "2",
                "-g",
                "50",
                "-keyint_min",
                "50",
                "-sc_threshold",
                "0",
                "-force_key_frames",
                "expr:gte(t,n_forced*4)",
            ]);
        }
        if !matches!(kind, Clip::VideoOnly) {
            args.extend(["-c:a", "aac"]);
        }
        if faststart {
            args.extend(["-movflags", "+faststart"]);
        }
        args.push("-shortest");
        run("ffmpeg", &args, &out);
        out
    }

    /// Runs `program args.. last`, panicking with its stderr when it fails; returns stdout.
    pub(crate) fn run(program: &str, args: &[&str], last: &Path) -> String {
        let output = Command::new(program)
            .args(args)
            .arg(last)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} {last:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    fn read_all(source: &mut Mp4FileSource) -> Vec<Sample> {
        std::iter::from_fn(|| source.next_sample().expect("sample reads")).collect()
    }

    /// ffprobe's view of one stream's packets: (pts, size, keyframe) in decode order.
    fn probe_packets(path: &Path, stream: &str) -> Vec<(i64, usize, bool)> {
        let out = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-select_streams",
                stream,
                "-show_entries",
                "packet=pts,size,flags",
                "-of",
                "csv=p=0",
            ],
            path,
        );
        // Side data (the priming frame's skip_samples) adds blank lines.
        out.lines()
            .filter(|line| !line.is_empty())
            .map(|line| {
                let mut fields = line.split(',');
                let pts = fields.next().unwrap().parse().unwrap();
                let size = fields.next().unwrap().parse().unwrap();
                let key = fields.next().unwrap().starts_with('K');
                (pts, size, key)
            })
            .collect()
    }

    #[test]
    fn finds_video_and_audio_tracks_with_their_properties() {
        let dir = tempfile::tempdir().unwrap();
        let path = clip(dir.path(), "av.mp4", Clip::AudioVideo, true);
        let tracks = open_tracks(&path).unwrap();
        assert_eq!(tracks.len(), 2);

        let video = tracks[0].track();
        assert!(video.codecs.starts_with("avc1."), "{}", video.codecs);
        assert_eq!(video.timescale, 12800);
        assert_eq!(
            video.media,
            MediaInfo::Video {
                width: 320,
                height: 240,
                sar: (1, 1)
            }
        );
        assert!(matches!(video.sample_entry, SampleEntry::Avc1(_)));

        let audio = tracks[1].track();
        assert_eq!(audio.codecs, "mp4a.40.2");
        assert_eq!(
            audio.media,
            MediaInfo::Audio {
                sample_rate: 48000,
                channels: 1
            }
        );
        // ffmpeg writes "und" unless told a language; that is no language.
        assert_eq!(audio.language, None);
    }

    /// Presentation time of a sample once the track's edit list is applied.
    fn presentation(track: &TrackInfo, sample: &Sample) -> i64 {
        sample.dts as i64 + i64::from(sample.composition_offset) - track.presentation_offset as i64
    }

    #[test]
    fn video_samples_match_ffprobe_and_present_from_zero_despite_b_frames() {
        let dir = tempfile::tempdir().unwrap();
        // Without +faststart the moov comes after mdat.
        let path = clip(dir.path(), "v.mp4", Clip::VideoOnly, false);
        let mut tracks = open_tracks(&path).unwrap();
        assert_eq!(tracks.len(), 1);
        let info = tracks[0].track().clone();
        // Two B-frames of reorder delay at 25 fps in 1/12800 s, as ffmpeg's edit list says.
        assert_eq!(info.presentation_offset, 1024);
        let samples = read_all(&mut tracks[0]);
        assert_eq!(samples.len(), 225);
        assert_eq!(samples[0].dts, 0);
        assert!(samples.iter().all(|s| s.composition_offset >= 0));
        assert!(
            samples
                .iter()
                .any(|s| i64::from(s.composition_offset) < info.presentation_offset as i64),
            "B-frames expected"
        );

        // ffmpeg applies the edit list too, so its pts are the presentation times we promise.
        let probed = probe_packets(&path, "v");
        assert_eq!(probed.len(), samples.len());
        for (sample, &(pts, size, key)) in samples.iter().zip(&probed) {
            assert_eq!(presentation(&info, sample), pts);
            assert_eq!(sample.data.len(), size);
            assert_eq!(sample.is_sync, key);
        }
        let first_pts = samples.iter().map(|s| presentation(&info, s)).min();
        assert_eq!(first_pts, Some(0));
        // Keyframes every 2 s, and each one presents at its own decode time: what lets a
        // segment's tfdt stand for its presentation start.
        let keyframes: Vec<_> = samples.iter().filter(|s| s.is_sync).collect();
        assert_eq!(
            keyframes.iter().map(|s| s.dts).collect::<Vec<_>>(),
            [0, 25600, 51200, 76800, 102400]
        );
        assert!(keyframes
            .iter()
            .all(|s| presentation(&info, s) == s.dts as i64));
        // Every sample's bytes are one H.264 access unit in AVCC form: the first NAL length
        // prefix stays within the sample.
        for s in &samples {
            let nal_len = u32::from_be_bytes(s.data[..4].try_into().unwrap()) as usize;
            assert!(4 + nal_len <= s.data.len());
        }
    }

    #[test]
    fn negative_offsets_are_raised_into_the_presentation_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("neg.mp4");
        // ctts version 1 with negative offsets for B-frames and an edit list at media time 0.
        run(
            "ffmpeg",
            &[
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25",
                "-t",
                "2",
                "-c:v",
                "libx264",
                "-bf",
                "2",
                "-movflags",
                "+negative_cts_offsets",
            ],
            &path,
        );
        let mut tracks = open_tracks(&path).unwrap();
        let info = tracks[0].track().clone();
        assert_eq!(info.presentation_offset, 512);
        let samples = read_all(&mut tracks[0]);
        assert!(samples.iter().all(|s| s.composition_offset >= 0));
        let probed = probe_packets(&path, "v");
        assert_eq!(probed.len(), samples.len());
        for (sample, &(pts, _, _)) in samples.iter().zip(&probed) {
            assert_eq!(presentation(&info, sample), pts);
        }
        assert_eq!(
            samples.iter().map(|s| presentation(&info, s)).min(),
            Some(0)
        );
    }

    #[test]
    fn audio_priming_becomes_the_presentation_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = clip(dir.path(), "a.mp4", Clip::AudioOnly, true);
        let mut tracks = open_tracks(&path).unwrap();
        assert_eq!(tracks.len(), 1);
        let info = tracks[0].track().clone();
        assert_eq!(info.codecs, "mp4a.40.2");
        // The AAC encoder's priming frame presents before 0, where players drop it.
        assert_eq!(info.presentation_offset, 1024);
        let samples = read_all(&mut tracks[0]);
        let probed = probe_packets(&path, "a");
        assert_eq!(samples.len(), probed.len());
        for (i, s) in samples.iter().enumerate() {
            assert_eq!(s.dts, i as u64 * 1024);
            assert!(s.is_sync);
            assert_eq!(s.composition_offset, 0);
            assert_eq!(s.data.len(), probed[i].1);
            assert_eq!(presentation(&info, s), probed[i].0);
        }
        assert_eq!(presentation(&info, &samples[1]), 0);
    }

    #[test]
    fn reads_sample_aspect_ratio_and_language_from_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anamorphic.mp4");
        run(
            "ffmpeg",
            &[
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25",
                "-t",
                "1",
                "-vf",
                "setsar=4/3",
                "-c:v",
                "libx264",
                "-metadata:s:v",
                "language=fra",
            ],
            &path,
        );
        let tracks = open_tracks(&path).unwrap();
        let video = tracks[0].track();
        assert_eq!(
            video.media,
            MediaInfo::Video {
                width: 320,
                height: 240,
                sar: (4, 3)
            }
        );
        assert_eq!(video.language.as_deref(), Some("fra"));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.mp4");
        let err = open_tracks(&missing).unwrap_err();
        assert!(matches!(err, MediaError::Io { .. }), "{err}");
        assert!(err.to_string().contains("missing.mp4"));

        let junk = dir.path().join("junk.mp4");
        std::fs::write(&junk, b"this is not an mp4 file at all").unwrap();
        let err = open_tracks(&junk).unwrap_err();
        assert!(matches!(err, MediaError::Demux { .. }), "{err}");
        assert!(err.to_string().contains("junk.mp4"), "{err}");
    }
}
