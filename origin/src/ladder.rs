//! The bitrate ladder: which renditions to encode.
//!
//! The default follows the common 16:9 web ladder (1080p down to 240p). A rung's number is
//! its **short side**, so "1080p" of a portrait phone video is 1080×1920 and of a 2.35:1
//! film 2538×1080. The short side rather than the pixel count because it is what the names
//! mean to people and to players' quality menus, it keeps every rung of a source at the
//! source's own aspect ratio with whole even sizes, and it gives the same rungs to the
//! same film in portrait or landscape; bitrates follow the pixel count (a rung's kbit/s is
//! for 16:9, scaled by the rendition's pixels). Rungs above the source are dropped, never
//! upscaled; when the source lies between two rungs it gets a rung at its own size, so a
//! 720×405 upload keeps its 405 lines instead of falling to 360. Every dimension is even,
//! because 4:2:0 H.264 cannot have odd sizes.

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

/// The renditions for one source, and the requested rungs it could not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Largest first.
    pub renditions: Vec<Rendition>,
    /// Rungs above the source, as written (`4320p:9000k`): dropped, never upscaled.
    pub dropped: Vec<String>,
}

/// Pixels a `short`-line rung has at 16:9, what its bitrate is meant for.
fn reference_pixels(short: u32) -> f64 {
    let s = short as f64;
    s * s * 16.0 / 9.0
}

fn scaled_kbps(kbps: u32, ref_short: u32, w: u32, h: u32) -> u32 {
    let k = kbps as f64 * (w as f64 * h as f64) / reference_pixels(ref_short);
    (k.round() as u32).max(100)
}

impl Ladder {
    /// The renditions to encode for a source shown at `width` x `height` (square pixels,
    /// upright): see the module doc for the rules. Duplicates (same size) keep the first.
    pub fn resolve(&self, width: u32, height: u32) -> Resolved {
        let (width, height) = (width.max(2), height.max(2));
        let short = width.min(height);
        let portrait = height > width;
        let aspect = width.max(height) as f64 / short as f64;
        let mut out: Vec<Rendition> = Vec::new();
        let mut dropped = Vec::new();
        // The smallest rung above the source: its bitrate, scaled, is the source-size rung's.
        let mut above: Option<(u32, u32)> = None;
        for r in &self.0 {
            let (w, h, kbps) = match r.width {
                Some(w) => {
                    // A size given landscape for a portrait source (or the other way
                    // round) is meant the source's way up: never squeeze the picture.
                    let (w, h) = if (r.height > w) != portrait && r.height != w {
                        (r.height, w)
                    } else {
                        (w, r.height)
                    };
                    if w > width || h > height {
                        dropped.push(rung_name(r));
                        above = Some(nearest(above, (r.height.min(w), r.kbps)));
                        continue;
                    }
                    (w, h, r.kbps)
                }
                None => {
                    if r.height > short {
                        dropped.push(rung_name(r));
                        above = Some(nearest(above, (r.height, r.kbps)));
                        continue;
                    }
                    let long = (r.height as f64 * aspect).round() as u32;
                    let (w, h) = if portrait {
                        (r.height, long)
                    } else {
                        (long, r.height)
                    };
                    (w, h, scaled_kbps(r.kbps, r.height, even(w), even(h)))
                }
            };
            push(&mut out, w, h, kbps);
        }
        let (sw, sh) = (even(width), even(height));
        let have_source = out.iter().any(|r| r.width.min(r.height) >= sh.min(sw));
        if !have_source && (above.is_some() || out.is_empty()) {
            let kbps = match above {
                Some((s, k)) => scaled_kbps(k, s, sw, sh),
                None => scaled_kbps(default_kbps(short), short, sw, sh),
            };
            push(&mut out, sw, sh, kbps);
        }
        out.sort_by(|a, b| {
            (b.width * b.height)
                .cmp(&(a.width * a.height))
                .then(b.kbps.cmp(&a.kbps))
        });
        Resolved {
            renditions: out,
            dropped,
        }
    }
}

fn nearest(cur: Option<(u32, u32)>, new: (u32, u32)) -> (u32, u32) {
    match cur {
        Some(c) if c.0 <= new.0 => c,
        _ => new,
    }
}

fn rung_name(r: &Rung) -> String {
    match r.width {
        Some(w) => format!("{w}x{}:{}k", r.height, r.kbps),
        None => format!("{}p:{}k", r.height, r.kbps),
    }
}

fn push(out: &mut Vec<Rendition>, w: u32, h: u32, kbps: u32) {
    let (w, h) = (even(w), even(h));
    if out.iter().any(|r| r.width == w && r.height == h) {
        return;
    }
    let short = w.min(h);
    let id = if out.iter().any(|r| r.width.min(r.height) == short) {
        format!("{w}x{h}")
    } else {
        format!("{short}p")
    };
    out.push(Rendition {
        id,
        width: w,
        height: h,
        kbps,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ladder_never_upscales() {
        let r = Ladder::default().resolve(1280, 720).renditions;
        let ids: Vec<_> = r.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["720p", "480p", "360p", "240p"]);
        assert_eq!((r[0].width, r[0].height), (1280, 720));
        assert_eq!((r[2].width, r[2].height), (640, 360));
    }

    #[test]
    fn odd_sizes_made_even() {
        // 4:3 at 240 lines is 320 wide; a 16:9 source at 480 gives 853.3 → 852.
        let r = Ladder::default().resolve(854, 480).renditions;
        assert_eq!((r[0].width, r[0].height), (854, 480));
        let r = Ladder::default().resolve(1001, 563).renditions;
        assert!(r.iter().all(|r| r.width % 2 == 0 && r.height % 2 == 0));
    }

    #[test]
    fn tiny_source_keeps_one_rendition_at_source_size() {
        let r = Ladder::default().resolve(175, 99).renditions;
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

    fn sizes(r: &Resolved) -> Vec<(u32, u32)> {
        r.renditions.iter().map(|r| (r.width, r.height)).collect()
    }

    #[test]
    fn portrait_ladder_is_by_the_short_side() {
        let r = Ladder::default().resolve(1080, 1920);
        assert_eq!(r.renditions[0].id, "1080p");
        assert_eq!(
            sizes(&r),
            [
                (1080, 1920),
                (720, 1280),
                (480, 852),
                (360, 640),
                (240, 426)
            ]
        );
        // Same pixels as landscape 1080p, same bitrate.
        assert_eq!(r.renditions[0].kbps, 5000);
        assert!(r.dropped.is_empty());
    }

    #[test]
    fn a_source_between_rungs_keeps_its_own_size() {
        let r = Ladder::default().resolve(720, 405);
        assert_eq!(sizes(&r), [(720, 404), (640, 360), (426, 240)]);
        assert_eq!(r.renditions[0].id, "404p");
        let wide = Ladder::default().resolve(640, 272);
        assert_eq!(sizes(&wide), [(640, 272), (564, 240)]);
        // 2.35:1 at 240 lines has 32% more pixels than 16:9: so has its bitrate.
        assert_eq!(wide.renditions[1].kbps, 529);
        // Bitrate of the own-size rung scales from the rung above (480p, 1400k).
        let k = wide.renditions[0].kbps;
        assert!((400..1400).contains(&k), "{k}");
    }

    #[test]
    fn rungs_above_the_source_are_named() {
        let l: Ladder = "4320p:9000k,360p:800k".parse().unwrap();
        let r = l.resolve(1280, 720);
        assert_eq!(r.dropped, ["4320p:9000k"]);
        assert_eq!(sizes(&r), [(1280, 720), (640, 360)]);
    }

    #[test]
    fn an_explicit_size_follows_the_source_orientation() {
        let l: Ladder = "640x360:800k".parse().unwrap();
        let r = l.resolve(1080, 1920);
        assert_eq!(sizes(&r), [(360, 640)]);
        assert!(r.dropped.is_empty());
    }
}
