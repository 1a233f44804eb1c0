//! Just enough ISO-BMFF to cut ffmpeg's fragmented MP4 into CMAF chunks: read top-level
//! boxes from a byte stream, find `tfdt` in a `moof`, the timescale and codec in an
//! init segment, and write the `styp` and `prft` boxes we add.
//!
//! ffmpeg writes `ftyp`+`moov` once, then one `moof`+`mdat` per fragment
//! (`-frag_duration` = the chunk duration, `default_base_moof`, so each pair is
//! self-contained and boxes may be inserted before a `moof` without moving data offsets).

use std::io::{self, Read};

use bytes::{BufMut, Bytes, BytesMut};

/// One top-level box: its four-character type and all its bytes (header included).
pub(crate) struct TopBox {
    pub(crate) kind: [u8; 4],
    pub(crate) bytes: Bytes,
}

/// Reads the next top-level box; `Ok(None)` at a clean end of stream (between boxes).
pub(crate) fn read_box(r: &mut impl Read) -> io::Result<Option<TopBox>> {
    let mut header = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        let n = r.read(&mut header[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    let size32 = u32::from_be_bytes(header[0..4].try_into().expect("4 bytes"));
    let kind: [u8; 4] = header[4..8].try_into().expect("4 bytes");
    let mut out = BytesMut::new();
    out.extend_from_slice(&header);
    let size = match size32 {
        1 => {
            let mut large = [0u8; 8];
            r.read_exact(&mut large)?;
            out.extend_from_slice(&large);
            u64::from_be_bytes(large)
        }
        // Size 0 ("to the end of the file") never appears in a fragmented stream.
        0 => return Err(invalid("box of size 0 in a live stream")),
        n => u64::from(n),
    };
    if size < out.len() as u64 || size > 256 << 20 {
        return Err(invalid("box size out of range"));
    }
    let rest = size as usize - out.len();
    out.resize(size as usize, 0);
    let start = out.len() - rest;
    r.read_exact(&mut out[start..])?;
    Ok(Some(TopBox {
        kind,
        bytes: out.freeze(),
    }))
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The children of a box's payload, as (type, payload) pairs.
fn children(payload: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut rest = payload;
    std::iter::from_fn(move || {
        if rest.len() < 8 {
            return None;
        }
        let size = u32::from_be_bytes(rest[0..4].try_into().ok()?) as usize;
        let kind: [u8; 4] = rest[4..8].try_into().ok()?;
        if size < 8 || size > rest.len() {
            return None;
        }
        let body = &rest[8..size];
        rest = &rest[size..];
        Some((kind, body))
    })
}

/// The payload of the first box at `path` below `payload` (each step one level down).
fn find<'a>(payload: &'a [u8], path: &[&[u8; 4]]) -> Option<&'a [u8]> {
    let (first, more) = path.split_first()?;
    let (_, body) = children(payload).find(|(k, _)| k == *first)?;
    if more.is_empty() {
        Some(body)
    } else {
        find(body, more)
    }
}

/// `tfdt`'s baseMediaDecodeTime of the first track fragment in a whole `moof` box.
pub(crate) fn moof_decode_time(moof: &[u8]) -> Option<u64> {
    let tfdt = find(moof.get(8..)?, &[b"traf", b"tfdt"])?;
    match tfdt.first()? {
        1 => Some(u64::from_be_bytes(tfdt.get(4..12)?.try_into().ok()?)),
        _ => Some(u64::from(u32::from_be_bytes(
            tfdt.get(4..8)?.try_into().ok()?,
        ))),
    }
}

/// Sum of the sample durations of the first track fragment in a whole `moof` box, in the
/// track's timescale: `trun` per-sample durations, else `tfhd`'s default (ISO/IEC 14496-12
/// §8.8.7, §8.8.8). `None` when neither is present (the default then lives in `trex`).
pub(crate) fn moof_duration(moof: &[u8]) -> Option<u64> {
    let traf = find(moof.get(8..)?, &[b"traf"])?;
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let mut default = None;
    if let Some(tfhd) = find(traf, &[b"tfhd"]) {
        let flags = u32_at(tfhd, 0)? & 0x00ff_ffff;
        // track_ID, then the optional fields in order.
        let mut at = 8;
        if flags & 0x01 != 0 {
            at += 8; // base_data_offset
        }
        if flags & 0x02 != 0 {
            at += 4; // sample_description_index
        }
        if flags & 0x08 != 0 {
            default = Some(u32_at(tfhd, at)?);
        }
    }
    let trun = find(traf, &[b"trun"])?;
    let flags = u32_at(trun, 0)? & 0x00ff_ffff;
    let count = u32_at(trun, 4)? as usize;
    if flags & 0x100 == 0 {
        return default.map(|d| u64::from(d) * count as u64);
    }
    let mut at = 8;
    if flags & 0x01 != 0 {
        at += 4; // data_offset
    }
    if flags & 0x04 != 0 {
        at += 4; // first_sample_flags
    }
    let per_sample = [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|f| flags & *f != 0)
        .count()
        * 4;
    let mut total = 0u64;
    for i in 0..count {
        total += u64::from(u32_at(trun, at + i * per_sample)?);
    }
    Some(total)
}

/// What the MPD needs from an init segment (`ftyp`+`moov`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InitInfo {
    /// `mdhd` timescale of the (only) track.
    pub(crate) timescale: u32,
    /// `tkhd` track_ID, named by `prft`.
    pub(crate) track_id: u32,
    /// RFC 6381 codec string (`avc1.PPCCLL` or `opus`/`mp4a.40.2`).
    pub(crate) codecs: String,
}

/// Reads [`InitInfo`] from the bytes of `moov` (the whole box).
pub(crate) fn init_info(moov: &[u8]) -> Option<InitInfo> {
    let moov = moov.get(8..)?;
    let mdhd = find(moov, &[b"trak", b"mdia", b"mdhd"])?;
    let timescale = match mdhd.first()? {
        1 => u32::from_be_bytes(mdhd.get(20..24)?.try_into().ok()?),
        _ => u32::from_be_bytes(mdhd.get(12..16)?.try_into().ok()?),
    };
    let tkhd = find(moov, &[b"trak", b"tkhd"])?;
    let id_at = if *tkhd.first()? == 1 { 20 } else { 12 };
    let track_id = u32::from_be_bytes(tkhd.get(id_at..id_at + 4)?.try_into().ok()?);
    let codecs = if let Some(at) = moov.windows(4).position(|w| w == b"avcC") {
        // avcC payload: configurationVersion, AVCProfileIndication, profile_compatibility,
        // AVCLevelIndication.
        let p = moov.get(at + 5..at + 8)?;
        format!("avc1.{:02X}{:02X}{:02X}", p[0], p[1], p[2])
    } else if moov.windows(4).any(|w| w == b"Opus") {
        "opus".to_owned()
    } else if moov.windows(4).any(|w| w == b"mp4a") {
        "mp4a.40.2".to_owned()
    } else {
        return None;
    };
    Some(InitInfo {
        timescale,
        track_id,
        codecs,
    })
}

/// The `styp` that opens every segment (CMAF §7.3.3: brand `cmfs`, compatible `msdh`).
pub(crate) fn styp() -> Bytes {
    let mut b = BytesMut::with_capacity(24);
    b.put_u32(24);
    b.put_slice(b"styp");
    b.put_slice(b"msdh");
    b.put_u32(0);
    b.put_slice(b"msdh");
    b.put_slice(b"cmfs");
    b.freeze()
}

/// A `ProducerReferenceTimeBox` (ISO/IEC 14496-12 §8.16.5), version 1: the wall-clock
/// time (`unix_secs`, as NTP) at which the sample with decode time `media_time`
/// (in the track's timescale) was produced. Players use it to measure latency.
pub(crate) fn prft(track_id: u32, unix_secs: f64, media_time: u64) -> Bytes {
    // NTP counts from 1900-01-01: 70 years incl. 17 leap days before the Unix epoch.
    const NTP_UNIX_OFFSET: f64 = 2_208_988_800.0;
    let ntp = unix_secs + NTP_UNIX_OFFSET;
    let secs = ntp.trunc() as u64;
    let frac = (ntp.fract() * 4_294_967_296.0) as u64;
    let mut b = BytesMut::with_capacity(32);
    b.put_u32(32);
    b.put_slice(b"prft");
    // version 1, flags 0 (the time the encoder output the sample's chunk)
    b.put_u32(0x0100_0000);
    b.put_u32(track_id);
    b.put_u64(secs << 32 | (frac & 0xffff_ffff));
    b.put_u64(media_time);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dashcdn_http::cmaf::mp4box;

    #[test]
    fn reads_boxes_until_a_clean_end() {
        let mut data = mp4box(b"ftyp", b"isom");
        data.extend(mp4box(b"free", b""));
        let mut r = &data[..];
        assert_eq!(&read_box(&mut r).unwrap().unwrap().kind, b"ftyp");
        let free = read_box(&mut r).unwrap().unwrap();
        assert_eq!((&free.kind, free.bytes.len()), (b"free", 8));
        assert!(read_box(&mut r).unwrap().is_none());
    }

    #[test]
    fn a_truncated_box_is_an_error() {
        let data = mp4box(b"mdat", b"12345678");
        let mut r = &data[..10];
        assert!(read_box(&mut r).is_err());
    }

    #[test]
    fn finds_tfdt_version_0_and_1() {
        let mut tfdt1 = vec![1, 0, 0, 0];
        tfdt1.extend(0x1_0000_0002u64.to_be_bytes());
        let moof = mp4box(b"moof", &mp4box(b"traf", &mp4box(b"tfdt", &tfdt1)));
        assert_eq!(moof_decode_time(&moof), Some(0x1_0000_0002));
        let tfdt0 = [0, 0, 0, 0, 0, 0, 0, 7];
        let moof = mp4box(b"moof", &mp4box(b"traf", &mp4box(b"tfdt", &tfdt0)));
        assert_eq!(moof_decode_time(&moof), Some(7));
    }

    #[test]
    fn moof_duration_from_trun_or_tfhd_default() {
        // trun: flags duration|size, 2 samples of 512 and 488.
        let mut trun = vec![0, 0, 0x03, 0x00, 0, 0, 0, 2];
        for (d, s) in [(512u32, 9u32), (488, 7)] {
            trun.extend(d.to_be_bytes());
            trun.extend(s.to_be_bytes());
        }
        let moof = mp4box(b"moof", &mp4box(b"traf", &mp4box(b"trun", &trun)));
        assert_eq!(moof_duration(&moof), Some(1000));
        // tfhd default-sample-duration 1024 (after sample_description_index), trun of 3.
        let mut tfhd = vec![0, 0, 0, 0x0a, 0, 0, 0, 1, 0, 0, 0, 1];
        tfhd.extend(1024u32.to_be_bytes());
        let trun = [0, 0, 0, 0, 0, 0, 0, 3];
        let mut traf = mp4box(b"tfhd", &tfhd);
        traf.extend(mp4box(b"trun", &trun));
        let moof = mp4box(b"moof", &mp4box(b"traf", &traf));
        assert_eq!(moof_duration(&moof), Some(3072));
    }

    #[test]
    fn prft_is_32_bytes_with_ntp_time() {
        let b = prft(1, 1.5, 90_000);
        assert_eq!(b.len(), 32);
        assert_eq!(&b[4..8], b"prft");
        let ntp = u64::from_be_bytes(b[16..24].try_into().unwrap());
        assert_eq!(ntp >> 32, 2_208_988_801);
        assert_eq!(ntp & 0xffff_ffff, 1 << 31);
    }
}
