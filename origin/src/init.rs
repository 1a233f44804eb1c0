//! The CMAF initialization segment, `init.mp4` (ISO/IEC 23000-19 7.3.1): an `ftyp` and a
//! `moov` that describe the one track of a representation and hold no samples; the media
//! segments of [`crate::segment`] carry those.
//!
//! The track's [`TrackInfo::presentation_offset`] (B-frame delay, AAC priming) becomes a
//! one-entry edit list, as ffmpeg's DASH muxer writes it, so every player presents the first
//! frame at 0. For AAC, an iTunes gapless tag (`iTunSMPB`) states the priming again for
//! ffmpeg, which applies the edit list to fragmented files only as a shift of the timeline.
//! Creation and modification times are all 0, so packaging the same input twice gives the
//! same bytes (and the same ETag).

use std::num::NonZeroU32;
use std::path::Path;

use shiguredo_mp4::boxes::{
    Brand, DinfBox, EdtsBox, ElstBox, ElstEntry, FtypBox, HdlrBox, MdhdBox, MdiaBox, MediaHeader,
    MehdBox, MinfBox, MoovBox, MvexBox, MvhdBox, SampleEntry, SmhdBox, StblBox, StcoBox, StscBox,
    StsdBox, StszBox, SttsBox, TkhdBox, TrakBox, TrexBox, UnknownBox, VmhdBox,
};
use shiguredo_mp4::{
    BoxSize, BoxType, Either, Encode, FixedPointNumber, LanguageCode, Mp4FileTime, SampleFlags,
};

use crate::media::{MediaError, MediaInfo, TrackInfo};

/// Every representation is a single-track CMAF file, so its track is always 1: declared
/// here, referred to by every fragment's `tfhd`.
pub(crate) const TRACK_ID: u32 = 1;

/// Writes `dir/init.mp4`: `ftyp` + a `moov` with the one track's sample entry, its edit list
/// (when it has a presentation offset) and `mvex`. Every creation and modification time in
/// it is 0 so that packaging the same input twice gives the same bytes (and the same ETag).
pub(crate) fn write(dir: &Path, info: &TrackInfo, total_duration: u64) -> Result<(), MediaError> {
    let path = dir.join("init.mp4");
    let err = |reason: String| MediaError::Mux {
        path: path.clone(),
        reason,
    };
    let timescale =
        NonZeroU32::new(info.timescale).ok_or_else(|| err("track timescale is 0".into()))?;
    let epoch = Mp4FileTime::from_secs(0);

    let (handler_type, name, media_header, volume, width, height) = match info.media {
        MediaInfo::Video {
            width,
            height,
            sar: (sar_w, sar_h),
        } => {
            // tkhd carries the display size: stored width stretched by the sample aspect ratio.
            let display_width = u64::from(width) * u64::from(sar_w) / u64::from(sar_h.max(1));
            let fixed = |v: u64| {
                i16::try_from(v)
                    .map(|v| FixedPointNumber::new(v, 0))
                    .map_err(|_| err(format!("display size {v} does not fit tkhd")))
            };
            (
                HdlrBox::HANDLER_TYPE_VIDE,
                &b"VideoHandler\0"[..],
                MediaHeader::Vmhd(VmhdBox::default()),
                TkhdBox::DEFAULT_VIDEO_VOLUME,
                fixed(display_width)?,
                fixed(u64::from(height))?,
            )
        }
        MediaInfo::Audio { .. } => (
            HdlrBox::HANDLER_TYPE_SOUN,
            &b"SoundHandler\0"[..],
            MediaHeader::Smhd(SmhdBox::default()),
            TkhdBox::DEFAULT_AUDIO_VOLUME,
            FixedPointNumber::new(0, 0),
            FixedPointNumber::new(0, 0),
        ),
    };
    let language = info
        .language
        .as_deref()
        .and_then(LanguageCode::from_ascii)
        .unwrap_or(LanguageCode::UNDEFINED);

    // The source's edit list, as ffmpeg's DASH muxer writes it: one entry, rate 1, duration 0
    // (movenc's value for fragmented output, whose length is unknown when the moov is
    // written). Chromium (track_run_iterator.cc) and Firefox (MoofParser) subtract the first
    // entry's media_time from every composition time and ignore its duration; so does ffmpeg
    // for fragmented files, as a shift of the timeline.
    let edts_box = match info.presentation_offset {
        0 => None,
        offset => Some(EdtsBox {
            elst_box: Some(ElstBox {
                entries: vec![ElstEntry {
                    edit_duration: 0,
                    media_time: i64::try_from(offset)
                        .map_err(|_| err(format!("presentation offset {offset} is too large")))?,
                    media_rate: FixedPointNumber::new(1, 0),
                }],
            }),
            unknown_boxes: Vec::new(),
        }),
    };

    let ftyp = FtypBox {
        major_brand: Brand::ISO6,
        minor_version: 0,
        compatible_brands: vec![Brand::ISO6, Brand::new(*b"cmfc"), Brand::new(*b"dash")],
    };
    let trak = TrakBox {
        tkhd_box: TkhdBox {
            flag_track_enabled: true,
            flag_track_in_movie: true,
            flag_track_in_preview: false,
            flag_track_size_is_aspect_ratio: false,
            creation_time: epoch,
            modification_time: epoch,
            track_id: TRACK_ID,
            duration: 0,
            layer: TkhdBox::DEFAULT_LAYER,
            alternate_group: TkhdBox::DEFAULT_ALTERNATE_GROUP,
            volume,
            matrix: TkhdBox::DEFAULT_MATRIX,
            width,
            height,
        },
        edts_box,
        mdia_box: MdiaBox {
            mdhd_box: MdhdBox {
                creation_time: epoch,
                modification_time: epoch,
                timescale,
                duration: 0,
                language,
            },
            hdlr_box: HdlrBox {
                handler_type,
                name: name.to_vec(),
            },
            minf_box: MinfBox {
                media_header: Some(media_header),
                dinf_box: DinfBox::LOCAL_FILE,
                // Samples live in the fragments; the moov only describes them.
                stbl_box: StblBox {
                    stsd_box: StsdBox {
                        entries: vec![info.sample_entry.clone()],
                    },
                    stts_box: SttsBox {
                        entries: Vec::new(),
                    },
                    ctts_box: None,
                    cslg_box: None,
                    stsc_box: StscBox {
                        entries: Vec::new(),
                    },
                    stsz_box: StszBox::Variable {
                        entry_sizes: Vec::new(),
                    },
                    stco_or_co64_box: Either::A(StcoBox {
                        chunk_offsets: Vec::new(),
                    }),
                    stss_box: None,
                    sdtp_box: None,
                    unknown_boxes: Vec::new(),
                },
                unknown_boxes: Vec::new(),
            },
            unknown_boxes: Vec::new(),
        },
        unknown_boxes: Vec::new(),
    };
    let moov = MoovBox {
        mvhd_box: MvhdBox {
            creation_time: epoch,
            modification_time: epoch,
            // The track's own timescale, so mehd states the duration exactly.
            timescale,
            duration: 0,
            rate: MvhdBox::DEFAULT_RATE,
            volume: MvhdBox::DEFAULT_VOLUME,
            matrix: MvhdBox::DEFAULT_MATRIX,
            next_track_id: TRACK_ID + 1,
        },
        trak_boxes: vec![trak],
        mvex_box: Some(MvexBox {
            mehd_box: Some(MehdBox {
                fragment_duration: total_duration,
            }),
            trex_boxes: vec![TrexBox {
                track_id: TRACK_ID,
                default_sample_description_index: 1,
                default_sample_duration: 0,
                default_sample_size: 0,
                default_sample_flags: SampleFlags::new(0),
            }],
            unknown_boxes: Vec::new(),
        }),
        unknown_boxes: aac_priming_udta(info, total_duration).into_iter().collect(),
    };

    let mut bytes = ftyp.encode_to_vec().map_err(|e| err(e.to_string()))?;
    bytes.extend(moov.encode_to_vec().map_err(|e| err(e.to_string()))?);
    std::fs::write(&path, bytes).map_err(|source| MediaError::Write {
        path: path.clone(),
        source,
    })
}

/// For AAC with priming, a `udta` holding iTunes' gapless tag (`iTunSMPB`) that states the
/// priming again, for ffmpeg: reading a fragmented file it applies the edit list only as a
/// shift of the timeline and decodes the priming frame at -21 ms, whereas this tag makes it
/// skip the priming samples (mov.c `start_pad`), so its first audio frame is at 0 as in MSE.
/// The MSE parsers of Chromium and Firefox do not read `udta`. `None` when there is nothing
/// to trim or the track's timescale is not its sample rate (the tag counts samples).
fn aac_priming_udta(info: &TrackInfo, total_duration: u64) -> Option<UnknownBox> {
    let MediaInfo::Audio { sample_rate, .. } = info.media else {
        return None;
    };
    let priming = info.presentation_offset;
    let is_aac = matches!(info.sample_entry, SampleEntry::Mp4a(_));
    // ffmpeg ignores a priming of 16384 samples or more.
    if !is_aac || priming == 0 || priming >= 16384 || sample_rate != info.timescale {
        return None;
    }
    // The layout iTunes writes: reserved, priming, end padding, sample count, then eight
    // reserved words; hex, each field led by a space. End padding is unknown here (0), so the
    // count is every sample after the priming.
    let value = format!(
        " 00000000 {priming:08X} 00000000 {:016X}{}",
        total_duration.saturating_sub(priming),
        " 00000000".repeat(8)
    );
    let full = |box_type: &[u8; 4], payload: &[u8]| raw_box(box_type, &[&[0; 4], payload]);
    let tag = raw_box(
        b"----",
        &[
            &full(b"mean", b"com.apple.iTunes"),
            &full(b"name", b"iTunSMPB"),
            // Well-known type 1 (UTF-8), locale 0.
            &raw_box(b"data", &[&[0, 0, 0, 1, 0, 0, 0, 0], value.as_bytes()]),
        ],
    );
    // The metadata handler `mdir` is what marks `ilst` as iTunes-style metadata.
    let hdlr = full(b"hdlr", &[&[0; 4], &b"mdirappl"[..], &[0; 9]].concat());
    let meta = full(b"meta", &[hdlr, raw_box(b"ilst", &[&tag])].concat());
    let box_type = BoxType::Normal(*b"udta");
    Some(UnknownBox {
        box_type,
        box_size: BoxSize::with_payload_size(box_type, meta.len() as u64),
        payload: meta,
    })
}

/// A plain box: 32-bit size, type, then `parts` back to back. Only for the few small boxes
/// shiguredo_mp4 has no type for.
fn raw_box(box_type: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = 8 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend((len as u32).to_be_bytes());
    out.extend(box_type);
    for part in parts {
        out.extend(*part);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use shiguredo_mp4::Decode;

    use super::*;
    use crate::media::SampleSource;
    use crate::mp4source::open_tracks;
    use crate::mp4source::tests::{clip, Clip};

    /// The first track of `input`.
    fn track(input: &Path) -> TrackInfo {
        open_tracks(input).unwrap()[0].track().clone()
    }

    /// `dir/init.mp4`'s `ftyp` and `moov`, checking they are all it holds.
    fn read(dir: &Path) -> (FtypBox, MoovBox) {
        let bytes = std::fs::read(dir.join("init.mp4")).unwrap();
        let (ftyp, ftyp_len) = FtypBox::decode(&bytes).unwrap();
        let (moov, moov_len) = MoovBox::decode(&bytes[ftyp_len..]).unwrap();
        assert_eq!(ftyp_len + moov_len, bytes.len());
        (ftyp, moov)
    }

    /// The one edit of `dir/init.mp4` as (edit_duration, media_time, rate), if it has one.
    pub(crate) fn edit(dir: &Path) -> Option<(u64, i64, i16)> {
        let (_, moov) = read(dir);
        let elst = moov.trak_boxes[0].edts_box.as_ref()?.elst_box.as_ref()?;
        let [entry] = elst.entries.as_slice() else {
            panic!("one edit expected, got {:?}", elst.entries);
        };
        Some((
            entry.edit_duration,
            entry.media_time,
            entry.media_rate.integer,
        ))
    }

    #[test]
    fn init_segment_is_cmaf_with_one_track_and_mvex() {
        let dir = tempfile::tempdir().unwrap();
        let input = clip(dir.path(), "v.mp4", Clip::VideoOnly, true);
        write(dir.path(), &track(&input), 9 * 12800).unwrap();
        let (ftyp, moov) = read(dir.path());
        assert_eq!(ftyp.major_brand, Brand::ISO6);
        assert!(ftyp.compatible_brands.contains(&Brand::new(*b"cmfc")));
        assert_eq!(moov.trak_boxes.len(), 1);
        let trak = &moov.trak_boxes[0];
        assert_eq!(trak.tkhd_box.width.integer, 320);
        assert_eq!(trak.mdia_box.mdhd_box.timescale.get(), 12800);
        assert!(matches!(
            trak.mdia_box.minf_box.stbl_box.stsd_box.entries[..],
            [SampleEntry::Avc1(_)]
        ));
        let mvex = moov.mvex_box.unwrap();
        assert_eq!(mvex.trex_boxes[0].track_id, TRACK_ID);
        assert_eq!(mvex.mehd_box.unwrap().fragment_duration, 9 * 12800);
    }

    #[test]
    fn aac_priming_is_an_edit_and_a_gapless_tag() {
        let dir = tempfile::tempdir().unwrap();
        let input = clip(dir.path(), "a.mp4", Clip::AudioOnly, true);
        let info = track(&input);
        assert_eq!(info.presentation_offset, 1024);
        let total = 9 * 48_000;
        write(dir.path(), &info, total).unwrap();
        assert_eq!(edit(dir.path()), Some((0, 1024, 1)));

        let (_, moov) = read(dir.path());
        let [udta] = moov.unknown_boxes.as_slice() else {
            panic!("one udta expected, got {:?}", moov.unknown_boxes);
        };
        assert_eq!(udta.box_type, BoxType::Normal(*b"udta"));
        let value = format!(
            " 00000000 00000400 00000000 {:016X}{}",
            total - 1024,
            " 00000000".repeat(8)
        );
        let payload = String::from_utf8_lossy(&udta.payload);
        assert!(payload.contains("iTunSMPB"), "{payload}");
        assert!(payload.ends_with(&value), "{payload}");

        // Nothing to trim, nothing to say.
        let unprimed = TrackInfo {
            presentation_offset: 0,
            ..info
        };
        write(dir.path(), &unprimed, total).unwrap();
        assert_eq!(edit(dir.path()), None);
        assert!(read(dir.path()).1.unknown_boxes.is_empty());
    }
}
