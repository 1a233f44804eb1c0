//! The bitrate ladder: which renditions to encode.
//!
//! The default follows the common 16:9 web ladder (1080p down to 240p). Rungs taller than
//! the source are dropped, never upscaled; widths follow the source's display aspect ratio
//! and every dimension is made even, because 4:2:0 H.264 cannot have odd sizes.

use std::fmt;
use std::str::FromStr;

/// One requested rendition, before it meets a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    /// Explicit width, or `None` to follow the source's aspect ratio.
    pub width: Option<u32>,
    pub height: u32,
    /// Target video bitrate in kbit/s.
    pub kbps: u32,
}

/// A rendition resolved against the source: exact size and bitrate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    /// Representation id and folder name, e.g. `720p`.
    pub id: String,
    pub width: u32,
    pub height: u32,
    pub kbps: u32,
}

/// A ladder as given on the command line: `1080p:5000k,720p,480x270:600k`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder(pub Vec<Rung>);

/// Audio is encoded once, shared by every video rendition.
pub const AUDIO_KBPS: u32 = 128;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LadderError {
    #[error("ladder is empty; give rungs like `720p:3000k,360p:800k`")]
    Empty,
    #[error(
        "ladder rung `{0}`: expected HEIGHTp[:KBPSk] or WIDTHxHEIGHT[:KBPSk], e.g. `720p:3000k`"
    )]
    Syntax(String),
    #[error("ladder rung `{0}`: sizes must be between 16 and 8192 and bitrates above 0")]
    Range(String),
}

impl Default for Ladder {
    fn default() -> Self {
        Ladder(
            [
                (1080, 5000),
                (720, 3000),
                (480, 1400),
                (360, 800),
                (240, 400),
            ]
            .into_iter()
            .map(|(height, kbps)| Rung {
                width: None,
                height,
                kbps,
            })
            .collect(),
        )
    }
}

/// A bitrate for a height when `--ladder` names only the size: the default rung's, scaled
/// by pixel count from the nearest default rung.
fn default_kbps(height: u32) -> u32 {
    let h = height as f64;
    // ~0.1 bit per pixel per frame at 30 fps for 16:9, which is what the default rungs follow.
    let pixels = h * h * 16.0 / 9.0;
    ((pixels * 30.0 * 0.08) / 1000.0).round().max(100.0) as u32
}

impl FromStr for Rung {
    type Err = LadderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let syntax = || LadderError::Syntax(t.to_string());
        let (size, rate) = match t.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (t, None),
        };
        let (width, height) = if let Some(h) = size.strip_suffix('p') {
            (None, h.parse::<u32>().map_err(|_| syntax())?)
        } else if let Some((w, h)) = size.split_once('x') {
            (
                Some(w.parse::<u32>().map_err(|_| syntax())?),
                h.parse::<u32>().map_err(|_| syntax())?,
            )
        } else {
            return Err(syntax());
        };
        let kbps = match rate {
            None => default_kbps(height),
            Some(r) => {
                let r = r.trim_end_matches(['k', 'K']);
                r.parse::<u32>().map_err(|_| syntax())?
            }
        };
        let ok = |v: u32| (16..=8192).contains(&v);
        if !ok(height) || width.is_some_and(|w| !ok(w)) || kbps == 0 {
            return Err(LadderError::Range(t.to_string()));
        }
        Ok(Rung {
            width,
            height,
            kbps,
        })
    }
}

impl FromStr for Ladder {
    type Err = LadderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rungs = s
            .split(',')
            .filter(|r| !r.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Rung>, _>>()?;
        if rungs.is_empty() {
            return Err(LadderError::Empty);
        }
        Ok(Ladder(rungs))
    }
}

impl fmt::Display for Ladder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r.width {
                Some(w) => write!(f, "{w}x{}:{}k", r.height, r.kbps)?,
                None => write!(f, "{}p:{}k", r.height, r.kbps)?,
            }
        }
        Ok(())
    }
}

fn even(v: u32) -> u32 {
    (v & !1).max(2)
}

impl Ladder {
    /// The renditions to encode for a source of `display_width` x `height`: rungs taller
    /// than the source are dropped; if all are, one rendition at the source size remains.
    /// Duplicates (same size) keep the first.
    pub fn resolve(&self, display_width: u32, height: u32) -> Vec<Rendition> {
        let aspect = display_width as f64 / height.max(1) as f64;
        let mut out: Vec<Rendition> = Vec::new();
        fn push(out: &mut Vec<Rendition>, w: u32, h: u32, kbps: u32) {
            let (w, h) = (even(w), even(h));
            if !out.iter().any(|r| r.width == w && r.height == h) {
                let id = if out.iter().any(|r| r.height == h) {
                    format!("{w}x{h}")
                } else {
                    format!("{h}p")
                };
                out.push(Rendition {
                    id,
                    width: w,
                    height: h,
                    kbps,
                });
            }
        }
        for r in &self.0 {
            if r.height > height || r.width.is_some_and(|w| w > display_width) {
                continue;
            }
            let w = r
                .width
                .unwrap_or_else(|| (r.height as f64 * aspect).round() as u32);
            push(&mut out, w, r.height, r.kbps);
        }
        if out.is_empty() {
            let kbps = self
                .0
                .iter()
                .map(|r| r.kbps)
                .min()
                .unwrap_or(default_kbps(height));
            push(
                &mut out,
                display_width,
                height,
                kbps.min(default_kbps(height).max(100)),
            );
        }
        out.sort_by(|a, b| b.height.cmp(&a.height).then(b.kbps.cmp(&a.kbps)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ladder_never_upscales() {
        let r = Ladder::default().resolve(1280, 720);
        let ids: Vec<_> = r.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["720p", "480p", "360p", "240p"]);
        assert_eq!((r[0].width, r[0].height), (1280, 720));
        assert_eq!((r[2].width, r[2].height), (640, 360));
    }

    #[test]
    fn odd_sizes_made_even() {
        // 4:3 at 240 lines is 320 wide; a 16:9 source at 480 gives 853.3 → 852.
        let r = Ladder::default().resolve(854, 480);
        assert_eq!((r[0].width, r[0].height), (854, 480));
        let r = Ladder::default().resolve(1001, 563);
        assert!(r.iter().all(|r| r.width % 2 == 0 && r.height % 2 == 0));
    }

    #[test]
    fn tiny_source_keeps_one_rendition_at_source_size() {
        let r = Ladder::default().resolve(175, 99);
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].width, r[0].height, r[0].id.as_str()),
            (174, 98, "98p")
        );
    }

    #[test]
    fn parse_and_display_round_trip() {
        let l: Ladder = "720p:3000k, 320x180:300".parse().unwrap();
        assert_eq!(l.to_string(), "720p:3000k,320x180:300k");
        assert_eq!(l.0[0].kbps, 3000);
        assert!("480p".parse::<Ladder>().unwrap().0[0].kbps > 0);
    }

    #[test]
    fn bad_rungs_say_which() {
        assert_eq!(
            "720p:fast".parse::<Ladder>(),
            Err(LadderError::Syntax("720p:fast".into()))
        );
        assert_eq!("0p".parse::<Ladder>(), Err(LadderError::Range("0p".into())));
        assert_eq!(" , ".parse::<Ladder>(), Err(LadderError::Empty));
    }
}
