//! Segment integrity: does a CMAF / fragmented-MP4 body add up?
//!
//! An upstream that cuts a segment short and rewrites `Content-Length` to match hands over
//! a body that HTTP alone cannot tell from a whole one. The box structure can: the edge runs
//! [`check`] before it stores a segment (a body that fails is served once and never
//! cached), and the player before it plays one (a failure is retried). Two rules, both
//! cheap (headers only, no sample data read):
//!
//! 1. The top-level boxes (`styp`, `sidx`, `moof`, `mdat`, … or `ftyp`, `moov` for an
//!    init segment) tile the body exactly: each declared size (ISO/IEC 14496-12 §4.2,
//!    including the 64-bit `largesize` and size 0 "to the end") fits, and the sizes sum to
//!    the body length.
//! 2. Every `moof` is followed by an `mdat` whose payload is the sum of the sample sizes
//!    its `trun` boxes declare (§8.8.8), each sample's size taken from the `trun` or, when
//!    absent there, from the `tfhd` default (§8.8.7). A body whose `mdat` header was also
//!    rewritten to the cut length passes rule 1 and fails here.
//!
//! A `trun` whose sizes live only in the init segment's `trex` defaults cannot be summed
//! from the segment alone; such a fragment is counted in [`Summary::unverified`] rather
//! than refused (ffmpeg and dashcdn's packager always write sizes in the `trun`).

use std::fmt;

/// What a body that adds up holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Top-level boxes.
    pub boxes: usize,
    /// `moof` + `mdat` pairs whose sample sizes were summed and matched.
    pub fragments: usize,
    /// Samples in those fragments.
    pub samples: u64,
    /// Fragments whose sample sizes are known only from the init segment (not checked).
    pub unverified: usize,
}

/// A four-character box type, printed as text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BoxType(pub [u8; 4]);

impl fmt::Display for BoxType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            let c = if b.is_ascii_graphic() { b as char } else { '?' };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BoxType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Why a body is not a whole segment. Offsets are byte positions in the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmafError {
    #[error("empty body: a segment has at least one box")]
    Empty,
    #[error("box `{kind}` at byte {at} declares {declared} bytes but only {available} remain (body cut short)")]
    Truncated {
        kind: BoxType,
        at: u64,
        declared: u64,
        available: u64,
    },
    #[error("box `{kind}` at byte {at} has an impossible size {size}")]
    BadSize { kind: BoxType, at: u64, size: u64 },
    #[error("{bytes} stray bytes at byte {at}, too few for a box header (body cut short)")]
    Trailing { at: u64, bytes: u64 },
    #[error("`{kind}` inside the `moof` at byte {at} is malformed")]
    Malformed { kind: BoxType, at: u64 },
    #[error("the `moof` at byte {at} is not followed by an `mdat`")]
    NoMdat { at: u64 },
    #[error("the `moof` at byte {at} declares {declared} bytes of samples but its `mdat` carries {payload}")]
    SampleSizes {
        at: u64,
        declared: u64,
        payload: u64,
    },
}

const HEADER: usize = 8;

/// One box: its type, where it starts, where its payload starts and where it ends.
#[derive(Debug, Clone, Copy)]
struct Mp4Box {
    kind: BoxType,
    start: usize,
    payload: usize,
    end: usize,
}

/// Boxes tiling `buf[from..to]` exactly, in order; `base` is `buf`'s offset in the body
/// (for error messages).
fn boxes(buf: &[u8], from: usize, to: usize) -> Result<Vec<Mp4Box>, CmafError> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let left = to - at;
        if left < HEADER {
            return Err(CmafError::Trailing {
                at: at as u64,
                bytes: left as u64,
            });
        }
        let size32 = u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
        let kind = BoxType(buf[at + 4..at + 8].try_into().expect("4 bytes"));
        let (size, header) = match size32 {
            // Size 0: the box runs to the end of its container (§4.2).
            0 => (left as u64, HEADER),
            1 => {
                if left < 16 {
                    return Err(CmafError::Trailing {
                        at: at as u64,
                        bytes: left as u64,
                    });
                }
                let large = u64::from_be_bytes(buf[at + 8..at + 16].try_into().expect("8 bytes"));
                (large, 16)
            }
            n => (u64::from(n), HEADER),
        };
        if size < header as u64 {
            return Err(CmafError::BadSize {
                kind,
                at: at as u64,
                size,
            });
        }
        if size > left as u64 {
            return Err(CmafError::Truncated {
                kind,
                at: at as u64,
                declared: size,
                available: left as u64,
            });
        }
        let end = at + size as usize;
        out.push(Mp4Box {
            kind,
            start: at,
            payload: at + header,
            end,
        });
        at = end;
    }
    Ok(out)
}

/// Checks that `body` is a whole init or media segment (module doc: the two rules).
pub fn check(body: &[u8]) -> Result<Summary, CmafError> {
    if body.is_empty() {
        return Err(CmafError::Empty);
    }
    let top = boxes(body, 0, body.len())?;
    let mut summary = Summary {
        boxes: top.len(),
        ..Summary::default()
    };
    for (i, b) in top.iter().enumerate() {
        if &b.kind.0 != b"moof" {
            continue;
        }
        let Some(mdat) = top[i + 1..]
            .iter()
            .find(|n| &n.kind.0 == b"mdat" || &n.kind.0 == b"moof")
        else {
            return Err(CmafError::NoMdat { at: b.start as u64 });
        };
        if &mdat.kind.0 != b"mdat" {
            return Err(CmafError::NoMdat { at: b.start as u64 });
        }
        match moof_sample_bytes(body, b)? {
            None => summary.unverified += 1,
            Some((declared, samples)) => {
                let payload = (mdat.end - mdat.payload) as u64;
                if declared != payload {
                    return Err(CmafError::SampleSizes {
                        at: b.start as u64,
                        declared,
                        payload,
                    });
                }
                summary.fragments += 1;
                summary.samples += samples;
            }
        }
    }
    Ok(summary)
}

/// Sum of sample sizes over every `trun` of a `moof`, and the sample count; `None` when a
/// size is known only from the init segment.
fn moof_sample_bytes(body: &[u8], moof: &Mp4Box) -> Result<Option<(u64, u64)>, CmafError> {
    let mut bytes = 0u64;
    let mut samples = 0u64;
    let mut known = true;
    for traf in boxes(body, moof.payload, moof.end)? {
        if &traf.kind.0 != b"traf" {
            continue;
        }
        let children = boxes(body, traf.payload, traf.end)?;
        let default_size = match children.iter().find(|c| &c.kind.0 == b"tfhd") {
            Some(tfhd) => tfhd_default_size(body, tfhd)?,
            None => return Err(malformed(b"traf", &traf)),
        };
        for trun in children.iter().filter(|c| &c.kind.0 == b"trun") {
            match trun_sample_bytes(body, trun, default_size)? {
                Some((b, n)) => {
                    bytes += b;
                    samples += n;
                }
                None => known = false,
            }
        }
    }
    Ok(known.then_some((bytes, samples)))
}

fn malformed(kind: &[u8; 4], b: &Mp4Box) -> CmafError {
    CmafError::Malformed {
        kind: BoxType(*kind),
        at: b.start as u64,
    }
}

/// A cursor over a full box's payload (version + flags first).
struct Fields<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Fields<'_> {
    fn u32(&mut self) -> Option<u32> {
        let v = self.buf.get(self.at..self.at + 4)?;
        self.at += 4;
        Some(u32::from_be_bytes(v.try_into().expect("4 bytes")))
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        (self.at + n <= self.buf.len()).then(|| self.at += n)
    }
}

/// §8.8.7: `default_sample_size` when the tfhd carries one (flag 0x10).
fn tfhd_default_size(body: &[u8], tfhd: &Mp4Box) -> Result<Option<u32>, CmafError> {
    let err = || malformed(b"tfhd", tfhd);
    let mut f = Fields {
        buf: &body[tfhd.payload..tfhd.end],
        at: 0,
    };
    let flags = f.u32().ok_or_else(err)? & 0x00ff_ffff;
    f.u32().ok_or_else(err)?; // track_ID
    if flags & 0x01 != 0 {
        f.skip(8).ok_or_else(err)?; // base_data_offset
    }
    if flags & 0x02 != 0 {
        f.skip(4).ok_or_else(err)?; // sample_description_index
    }
    if flags & 0x08 != 0 {
        f.skip(4).ok_or_else(err)?; // default_sample_duration
    }
    if flags & 0x10 != 0 {
        return Ok(Some(f.u32().ok_or_else(err)?));
    }
    Ok(None)
}

/// §8.8.8: the bytes and count of a `trun`'s samples.
fn trun_sample_bytes(
    body: &[u8],
    trun: &Mp4Box,
    default_size: Option<u32>,
) -> Result<Option<(u64, u64)>, CmafError> {
    let err = || malformed(b"trun", trun);
    let mut f = Fields {
        buf: &body[trun.payload..trun.end],
        at: 0,
    };
    let flags = f.u32().ok_or_else(err)? & 0x00ff_ffff;
    let count = f.u32().ok_or_else(err)?;
    if flags & 0x001 != 0 {
        f.skip(4).ok_or_else(err)?; // data_offset
    }
    if flags & 0x004 != 0 {
        f.skip(4).ok_or_else(err)?; // first_sample_flags
    }
    let size_present = flags & 0x200 != 0;
    let per_sample = [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|&&bit| flags & bit != 0)
        .count()
        * 4;
    // The sample table must fit the box: a lying count cannot make us read past it.
    if (count as usize).saturating_mul(per_sample) > f.buf.len() - f.at {
        return Err(err());
    }
    if !size_present {
        return Ok(default_size.map(|s| (u64::from(s) * u64::from(count), u64::from(count))));
    }
    let mut bytes = 0u64;
    for _ in 0..count {
        if flags & 0x100 != 0 {
            f.skip(4).ok_or_else(err)?;
        }
        bytes += u64::from(f.u32().ok_or_else(err)?);
        if flags & 0x400 != 0 {
            f.skip(4).ok_or_else(err)?;
        }
        if flags & 0x800 != 0 {
            f.skip(4).ok_or_else(err)?;
        }
    }
    Ok(Some((bytes, u64::from(count))))
}

/// One ISO-BMFF box around `payload`: a 32-bit size, `kind`, the payload. What the tests
/// of every crate build fragments with.
pub fn mp4box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut b = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(payload);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// A one-track fragment: tfhd (default size when `default` is set) and a trun listing
    /// `sizes` (or only a count when they come from the default).
    fn fragment(sizes: &[u32], default: Option<u32>) -> Vec<u8> {
        let mut tfhd = Vec::new();
        let flags: u32 = if default.is_some() {
            0x02_0010
        } else {
            0x02_0000
        };
        tfhd.extend_from_slice(&flags.to_be_bytes());
        tfhd.extend_from_slice(&1u32.to_be_bytes());
        if let Some(d) = default {
            tfhd.extend_from_slice(&d.to_be_bytes());
        }
        let mut trun = Vec::new();
        let tflags: u32 = if default.is_some() { 0x001 } else { 0x201 };
        trun.extend_from_slice(&tflags.to_be_bytes());
        trun.extend_from_slice(&(sizes.len() as u32).to_be_bytes());
        trun.extend_from_slice(&0u32.to_be_bytes()); // data_offset
        if default.is_none() {
            for s in sizes {
                trun.extend_from_slice(&s.to_be_bytes());
            }
        }
        let traf = mp4box(
            b"traf",
            &[mp4box(b"tfhd", &tfhd), mp4box(b"trun", &trun)].concat(),
        );
        let moof = mp4box(b"moof", &traf);
        let total: u32 = sizes.iter().sum();
        let mdat = mp4box(b"mdat", &vec![7u8; total as usize]);
        [mp4box(b"styp", b"msdhmsix"), moof, mdat].concat()
    }

    #[test]
    fn sizes_in_trun_or_tfhd_default_add_up() {
        let s = check(&fragment(&[100, 20, 3], None)).unwrap();
        assert_eq!((s.boxes, s.fragments, s.samples), (3, 1, 3));
        let s = check(&fragment(&[50, 50], Some(50))).unwrap();
        assert_eq!((s.fragments, s.samples), (1, 2));
    }

    #[test]
    fn a_cut_body_is_refused_naming_the_box() {
        let whole = fragment(&[100, 20, 3], None);
        let cut = &whole[..whole.len() - 10];
        let e = check(cut).unwrap_err();
        assert!(
            matches!(e, CmafError::Truncated { kind, declared, available, .. }
                if kind.0 == *b"mdat" && declared == available + 10),
            "{e}"
        );
        assert!(e.to_string().contains("`mdat`"), "{e}");
        assert!(matches!(
            check(&whole[..5]),
            Err(CmafError::Trailing { .. })
        ));
        assert_eq!(check(&[]), Err(CmafError::Empty));
    }

    #[test]
    fn a_cut_body_with_a_rewritten_mdat_size_is_refused() {
        let mut body = fragment(&[100, 20, 3], None);
        body.truncate(body.len() - 10);
        let mdat_at = body.len() - (123 - 10) - 8;
        assert_eq!(&body[mdat_at + 4..mdat_at + 8], b"mdat");
        body[mdat_at..mdat_at + 4].copy_from_slice(&((123 - 10 + 8) as u32).to_be_bytes());
        let e = check(&body).unwrap_err();
        assert!(
            matches!(
                e,
                CmafError::SampleSizes {
                    declared: 123,
                    payload: 113,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn box_size_forms() {
        // size 0: to the end; size 1: 64-bit largesize.
        let mut zero = mp4box(b"mdat", b"abcd");
        zero[..4].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            check(&[mp4box(b"styp", b"x"), zero].concat())
                .unwrap()
                .boxes,
            2
        );
        let mut large = 1u32.to_be_bytes().to_vec();
        large.extend_from_slice(b"free");
        large.extend_from_slice(&20u64.to_be_bytes());
        large.extend_from_slice(b"abcd");
        assert_eq!(check(&large).unwrap().boxes, 1);
        let mut bad = mp4box(b"free", b"");
        bad[..4].copy_from_slice(&3u32.to_be_bytes());
        assert!(matches!(
            check(&bad),
            Err(CmafError::BadSize { size: 3, .. })
        ));
        // A moof with no mdat after it, and a trun whose count runs past its box.
        let frag = fragment(&[4], None);
        let no_mdat = &frag[..frag.len() - 12];
        assert!(matches!(check(no_mdat), Err(CmafError::NoMdat { .. })));
    }

    #[test]
    fn a_lying_sample_count_is_malformed_not_a_panic() {
        let mut body = fragment(&[1, 2], None);
        // trun count lives 4 bytes after the trun's version/flags.
        let trun = body.windows(4).position(|w| w == b"trun").unwrap();
        body[trun + 8..trun + 12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(check(&body), Err(CmafError::Malformed { .. })));
    }

    fn ffmpeg(dir: &Path, args: &[&str]) {
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("ffmpeg runs (scripts/setup.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Real segments from ffmpeg's DASH muxer (one track per segment, CMAF-style) and a
    /// fragmented MP4 with audio and video in each fragment: whole ones pass, cut ones fail.
    #[test]
    fn ffmpeg_segments_add_up_and_cut_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        ffmpeg(
            dir.path(),
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=160x120:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                "2",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
                "-c:a",
                "aac",
                "-seg_duration",
                "1",
                "-use_template",
                "1",
                "-use_timeline",
                "0",
                "-f",
                "dash",
                "m.mpd",
            ],
        );
        ffmpeg(
            dir.path(),
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=160x120:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                "2",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
                "-c:a",
                "aac",
                "-movflags",
                "frag_keyframe+empty_moov+default_base_moof",
                "f.mp4",
            ],
        );
        let mut media = 0;
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".mpd") {
                continue;
            }
            let body = std::fs::read(&path).unwrap();
            let s = check(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.unverified, 0, "{name}");
            if s.fragments > 0 {
                media += 1;
                assert!(s.samples > 0, "{name}");
                let half = &body[..body.len() / 2];
                assert!(check(half).is_err(), "{name} cut in half passed");
                // The attack: cut inside the last mdat and make it claim the cut
                // length (f.mp4 ends with an `mfra` index, dropped with the cut).
                let mut lying = body.clone();
                let last = boxes(&body, 0, body.len())
                    .unwrap()
                    .into_iter()
                    .rev()
                    .find(|b| &b.kind.0 == b"mdat")
                    .unwrap();
                let keep = last.payload + (last.end - last.payload) / 2;
                lying.truncate(keep);
                let size = (keep - last.start) as u32;
                lying[last.start..last.start + 4].copy_from_slice(&size.to_be_bytes());
                assert!(
                    matches!(check(&lying), Err(CmafError::SampleSizes { .. })),
                    "{name} with a rewritten mdat passed"
                );
            }
        }
        assert!(media >= 3, "expected media segments and f.mp4, got {media}");
    }
}
