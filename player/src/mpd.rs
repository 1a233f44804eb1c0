//! The MPD → a playlist: for every period, the video ladder and an audio track, each
//! representation with its initialization segment and every media segment's URL (and byte
//! range) and duration.
//!
//! Parsing uses dash-mpd-core, the same MPD model the origin writes with, so the two can
//! never disagree about the schema. Addressing supported (ISO/IEC 23009-1 §5.3.9):
//! `SegmentTemplate` with `@duration` or a `SegmentTimeline` (`$Number$`, `$Time$`,
//! `$RepresentationID$`, `$Bandwidth$`, `%0Nd` widths), `SegmentList` (URLs or media
//! ranges), and `SegmentBase` whose segments come from the `sidx` box at `@indexRange`
//! (fetched later, see [`Presentation::needs_index`]). Elements inherit down Period →
//! AdaptationSet → Representation, BaseURLs resolve against each other and the MPD URL,
//! and periods play one after the other. What cannot be played (live MPDs, encryption,
//! xlink) is an error naming the feature.

pub(crate) mod tracks;

use dash_mpd_core::{AdaptationSet, Period, Representation, SegmentTemplate, SegmentTimeline, MPD};
use url::Url;

use tracks::TrackPrefs;

#[derive(Debug, thiserror::Error)]
pub enum MpdError {
    #[error("{url} is not an MPD: {reason}")]
    NotMpd { url: String, reason: String },
    #[error("{url}: unsupported MPD feature: {feature}")]
    Unsupported { url: String, feature: String },
    #[error("{url}: {problem}")]
    Invalid { url: String, problem: String },
    #[error("{url}: no video AdaptationSet (the player adapts video; audio-only presentations are not supported)")]
    NoVideo { url: String },
    #[error("{url}: bad sidx: {problem}")]
    Sidx { url: String, problem: String },
    #[error("{url}: no {kind} track in language `{lang}`; the presentation has: {available}")]
    NoTrack {
        url: String,
        kind: &'static str,
        lang: String,
        available: String,
    },
}

/// One fetchable piece: a URL and maybe a byte range (inclusive, as in HTTP).
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub url: Url,
    pub range: Option<(u64, u64)>,
}

impl Resource {
    /// The size when a byte range says it.
    pub fn range_len(&self) -> Option<u64> {
        self.range.map(|(a, b)| b + 1 - a)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub resource: Resource,
    pub duration_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Addressing {
    Segments(Vec<Segment>),
    /// SegmentBase: the segments are listed in the `sidx` box at `index` (ISO/IEC 14496-12
    /// §8.16.3); `media` is the file they are byte ranges of.
    Sidx {
        media: Url,
        index: (u64, u64),
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rep {
    pub id: String,
    /// `@bandwidth`, bit/s.
    pub bandwidth: u64,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub codecs: Option<String>,
    pub init: Option<Resource>,
    pub addressing: Addressing,
}

impl Rep {
    pub fn segments(&self) -> &[Segment] {
        match &self.addressing {
            Addressing::Segments(s) => s,
            Addressing::Sidx { .. } => &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeriodPlan {
    pub id: Option<String>,
    pub start_s: f64,
    pub duration_s: f64,
    /// Video representations, lowest bandwidth first.
    pub video: Vec<Rep>,
    /// The audio representation played (audio has no ABR: the highest bandwidth one of
    /// the chosen language's AdaptationSet).
    pub audio: Option<Rep>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Presentation {
    pub url: Url,
    pub duration_s: f64,
    pub periods: Vec<PeriodPlan>,
    /// Audio and subtitle tracks chosen and on offer (first period).
    pub tracks: tracks::Tracks,
    /// The chosen subtitle track's WebVTT file (`--subtitles`).
    pub subtitle_url: Option<Url>,
}

pub(crate) fn unsupported(url: &Url, feature: impl Into<String>) -> MpdError {
    MpdError::Unsupported {
        url: url.to_string(),
        feature: feature.into(),
    }
}

pub(crate) fn invalid(url: &Url, problem: impl Into<String>) -> MpdError {
    MpdError::Invalid {
        url: url.to_string(),
        problem: problem.into(),
    }
}

/// `a-b` (inclusive byte range).
fn parse_range(url: &Url, s: &str) -> Result<(u64, u64), MpdError> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| invalid(url, format!("byte range `{s}` is not `first-last`")))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| invalid(url, format!("byte range `{s}`")))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| invalid(url, format!("byte range `{s}`")))?;
    if b < a {
        return Err(invalid(
            url,
            format!("byte range `{s}` ends before it starts"),
        ));
    }
    Ok((a, b))
}

/// An `<Initialization sourceURL range>` of SegmentList/SegmentBase: its URL (the
/// representation's own when absent) and byte range.
fn init_resource(
    i: &dash_mpd_core::Initialization,
    base: &Url,
    mpd_url: &Url,
) -> Result<Resource, MpdError> {
    Ok(Resource {
        url: match &i.sourceURL {
            Some(s) => join(base, s, mpd_url)?,
            None => base.clone(),
        },
        range: i
            .range
            .as_deref()
            .map(|r| parse_range(mpd_url, r))
            .transpose()?,
    })
}

pub(crate) fn join(base: &Url, rel: &str, mpd_url: &Url) -> Result<Url, MpdError> {
    base.join(rel.trim()).map_err(|e| {
        invalid(
            mpd_url,
            format!("cannot resolve URL `{rel}` against {base}: {e}"),
        )
    })
}

pub(crate) fn base_of(
    base: &Url,
    urls: &[dash_mpd_core::BaseURL],
    mpd_url: &Url,
) -> Result<Url, MpdError> {
    // Several BaseURLs are alternatives (DVB failover); the first is used.
    match urls.first() {
        Some(b) => join(base, &b.base, mpd_url),
        None => Ok(base.clone()),
    }
}

/// Expands `$Identifier$` and `$Identifier%0Nd$` (ISO/IEC 23009-1 §5.3.9.4.4).
pub(crate) fn expand_template(
    t: &str,
    rep_id: &str,
    number: u64,
    time: u64,
    bandwidth: u64,
) -> Result<String, String> {
    let mut out = String::with_capacity(t.len() + 16);
    let mut rest = t;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let j = after
            .find('$')
            .ok_or_else(|| format!("template `{t}` has an unclosed `$`"))?;
        let ident = &after[..j];
        rest = &after[j + 1..];
        if ident.is_empty() {
            out.push('$');
            continue;
        }
        let (name, fmt) = match ident.find('%') {
            Some(k) => (&ident[..k], Some(&ident[k..])),
            None => (ident, None),
        };
        let value: String = match name {
            "RepresentationID" => {
                if fmt.is_some() {
                    return Err(format!("`${ident}$`: RepresentationID takes no format"));
                }
                out.push_str(rep_id);
                continue;
            }
            "Number" => number.to_string(),
            "Time" => time.to_string(),
            "Bandwidth" => bandwidth.to_string(),
            other => return Err(format!("unknown template identifier `${other}$` in `{t}`")),
        };
        match fmt {
            None => out.push_str(&value),
            Some(f) => {
                // %0Nd (and %d): zero-pad to N digits.
                let spec = f
                    .strip_prefix('%')
                    .and_then(|s| s.strip_suffix('d'))
                    .ok_or_else(|| format!("format `{f}` in `{t}`: only %0Nd is allowed"))?;
                let width: usize = if spec.is_empty() {
                    0
                } else {
                    spec.trim_start_matches('0')
                        .parse()
                        .ok()
                        .filter(|_| {
                            spec.starts_with('0') || spec.chars().all(|c| c.is_ascii_digit())
                        })
                        .filter(|w| *w <= 32)
                        .ok_or_else(|| format!("format `{f}` in `{t}` (width at most 32)"))?
                };
                out.push_str(&format!("{value:0>width$}"));
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Template fields merged Period → AdaptationSet → Representation (the lower level wins).
pub(crate) fn merge_template(levels: &[Option<&SegmentTemplate>]) -> Option<SegmentTemplate> {
    let mut out: Option<SegmentTemplate> = None;
    for t in levels.iter().flatten() {
        let t = (*t).clone();
        out = Some(match out {
            None => t,
            Some(o) => SegmentTemplate {
                media: t.media.or(o.media),
                index: t.index.or(o.index),
                initialization: t.initialization.or(o.initialization),
                startNumber: t.startNumber.or(o.startNumber),
                endNumber: t.endNumber.or(o.endNumber),
                duration: t.duration.or(o.duration),
                timescale: t.timescale.or(o.timescale),
                presentationTimeOffset: t.presentationTimeOffset.or(o.presentationTimeOffset),
                Initialization: t.Initialization.or(o.Initialization),
                SegmentTimeline: t.SegmentTimeline.or(o.SegmentTimeline),
                ..t
            },
        });
    }
    out
}

/// (start time, duration, number) of every segment a timeline lists, in timescale units.
pub(crate) fn timeline_entries(
    tl: &SegmentTimeline,
    start_number: u64,
    period_end_ts: Option<u64>,
    url: &Url,
) -> Result<Vec<(u64, u64, u64)>, MpdError> {
    let mut out = Vec::new();
    let mut t: u64 = 0;
    let mut number = start_number;
    for (i, s) in tl.segments.iter().enumerate() {
        if let Some(st) = s.t {
            t = st;
        }
        if s.d == 0 {
            return Err(invalid(url, "SegmentTimeline S@d = 0"));
        }
        let repeat: u64 = match s.r.unwrap_or(0) {
            r if r >= 0 => r as u64,
            _ => {
                // r = -1: repeat until the next S@t or the end of the period.
                let end = tl
                    .segments
                    .get(i + 1)
                    .and_then(|n| n.t)
                    .or(period_end_ts)
                    .ok_or_else(|| {
                        invalid(
                            url,
                            "SegmentTimeline S@r=-1 with no end (no period duration)",
                        )
                    })?;
                end.saturating_sub(t).div_ceil(s.d).saturating_sub(1)
            }
        };
        if repeat > 1_000_000 || out.len() > 1_000_000 {
            return Err(invalid(
                url,
                "SegmentTimeline lists more than a million segments",
            ));
        }
        for _ in 0..=repeat {
            out.push((t, s.d, number));
            t += s.d;
            number += 1;
        }
    }
    Ok(out)
}

struct Scope<'a> {
    mpd_url: &'a Url,
    period: &'a Period,
    set: &'a AdaptationSet,
    duration_s: f64,
}

fn rep_plan(sc: &Scope, rep: &Representation, base: &Url) -> Result<Rep, MpdError> {
    let url = sc.mpd_url;
    let id = rep.id.clone().unwrap_or_default();
    let bandwidth = rep
        .bandwidth
        .ok_or_else(|| invalid(url, format!("Representation `{id}` has no @bandwidth")))?;
    if !rep.ContentProtection.is_empty() {
        return Err(unsupported(
            url,
            format!("encrypted content (ContentProtection on Representation `{id}`)"),
        ));
    }
    if rep.href.is_some() {
        return Err(unsupported(url, "xlink on Representation"));
    }
    let base = base_of(base, &rep.BaseURL, url)?;
    let template = merge_template(&[
        sc.period.SegmentTemplate.as_ref(),
        sc.set.SegmentTemplate.as_ref(),
        rep.SegmentTemplate.as_ref(),
    ]);
    let list = rep
        .SegmentList
        .as_ref()
        .or(sc.set.SegmentList.as_ref())
        .or(sc.period.SegmentList.as_ref());
    let sbase = rep
        .SegmentBase
        .as_ref()
        .or(sc.set.SegmentBase.as_ref())
        .or(sc.period.SegmentBase.as_ref());

    let (init, addressing) = if let Some(t) = template {
        let ts = t.timescale.unwrap_or(1).max(1);
        let start_number = t.startNumber.unwrap_or(1);
        let media = t.media.clone().ok_or_else(|| {
            invalid(
                url,
                format!("SegmentTemplate of Representation `{id}` has no @media"),
            )
        })?;
        let expand = |tpl: &str, number: u64, time: u64| -> Result<Url, MpdError> {
            let s =
                expand_template(tpl, &id, number, time, bandwidth).map_err(|e| invalid(url, e))?;
            join(&base, &s, url)
        };
        let init = match (&t.initialization, &t.Initialization) {
            (Some(i), _) => Some(Resource {
                url: expand(i, start_number, 0)?,
                range: None,
            }),
            (None, Some(i)) => match &i.sourceURL {
                Some(s) => Some(Resource {
                    url: expand(s, start_number, 0)?,
                    range: i
                        .range
                        .as_deref()
                        .map(|r| parse_range(url, r))
                        .transpose()?,
                }),
                None => None,
            },
            _ => None,
        };
        let mut segs = Vec::new();
        if let Some(tl) = &t.SegmentTimeline {
            let pto = t.presentationTimeOffset.unwrap_or(0);
            let end =
                (sc.duration_s > 0.0).then(|| pto + (sc.duration_s * ts as f64).round() as u64);
            for (time, d, number) in timeline_entries(tl, start_number, end, url)? {
                segs.push(Segment {
                    resource: Resource {
                        url: expand(&media, number, time)?,
                        range: None,
                    },
                    duration_s: d as f64 / ts as f64,
                });
            }
        } else if let Some(d) = t.duration {
            if d <= 0.0 {
                return Err(invalid(
                    url,
                    format!("SegmentTemplate@duration {d} of `{id}`"),
                ));
            }
            let seg_s = d / ts as f64;
            if sc.duration_s <= 0.0 {
                return Err(invalid(
                    url,
                    "SegmentTemplate@duration with no period or presentation duration",
                ));
            }
            let mut count = (sc.duration_s / seg_s - 1e-6).ceil().max(1.0) as u64;
            if let Some(end) = t.endNumber {
                count = count.min(end.saturating_sub(start_number) + 1);
            }
            if count > 1_000_000 {
                return Err(invalid(url, "more than a million segments"));
            }
            for k in 0..count {
                let number = start_number + k;
                let dur = seg_s.min(sc.duration_s - k as f64 * seg_s).max(0.0);
                segs.push(Segment {
                    resource: Resource {
                        url: expand(&media, number, (k as f64 * d).round() as u64)?,
                        range: None,
                    },
                    duration_s: if dur > 0.0 { dur } else { seg_s },
                });
            }
        } else if media.contains("$Number") || media.contains("$Time") {
            return Err(invalid(
                url,
                format!("SegmentTemplate of `{id}` has neither @duration nor a SegmentTimeline"),
            ));
        } else {
            // One segment: the whole file.
            segs.push(Segment {
                resource: Resource {
                    url: expand(&media, start_number, 0)?,
                    range: None,
                },
                duration_s: sc.duration_s,
            });
        }
        (init, Addressing::Segments(segs))
    } else if let Some(l) = list {
        if l.href.is_some() {
            return Err(unsupported(url, "xlink on SegmentList"));
        }
        let ts = l.timescale.unwrap_or(1).max(1);
        let init = l
            .Initialization
            .as_ref()
            .map(|i| init_resource(i, &base, url))
            .transpose()?;
        let durations: Vec<f64> = if let Some(tl) = &l.SegmentTimeline {
            timeline_entries(tl, 1, None, url)?
                .iter()
                .map(|(_, d, _)| *d as f64 / ts as f64)
                .collect()
        } else if let Some(d) = l.duration {
            vec![d as f64 / ts as f64; l.segment_urls.len()]
        } else if l.segment_urls.len() == 1 {
            vec![sc.duration_s]
        } else {
            return Err(invalid(
                url,
                format!("SegmentList of `{id}` has no @duration or SegmentTimeline"),
            ));
        };
        let mut segs = Vec::new();
        for (k, su) in l.segment_urls.iter().enumerate() {
            let u = match &su.media {
                Some(m) => join(&base, m, url)?,
                None => base.clone(),
            };
            let range = su
                .mediaRange
                .as_deref()
                .map(|r| parse_range(url, r))
                .transpose()?;
            segs.push(Segment {
                resource: Resource { url: u, range },
                duration_s: durations.get(k).copied().unwrap_or(0.0),
            });
        }
        (init, Addressing::Segments(segs))
    } else if let Some(b) = sbase {
        let index = b.indexRange.as_deref().ok_or_else(|| {
            unsupported(
                url,
                format!("SegmentBase without @indexRange on `{id}` (no sidx to find segments in)"),
            )
        })?;
        let index = parse_range(url, index)?;
        let init = b
            .Initialization
            .as_ref()
            .map(|i| init_resource(i, &base, url))
            .transpose()?;
        (
            init,
            Addressing::Sidx {
                media: base.clone(),
                index,
            },
        )
    } else {
        return Err(unsupported(
            url,
            format!("Representation `{id}` has no SegmentTemplate, SegmentList or SegmentBase"),
        ));
    };
    if let Addressing::Segments(s) = &addressing {
        if s.is_empty() {
            return Err(invalid(
                url,
                format!("Representation `{id}` lists no segments"),
            ));
        }
    }
    Ok(Rep {
        id,
        bandwidth,
        width: rep.width,
        height: rep.height,
        codecs: rep.codecs.clone().or_else(|| sc.set.codecs.clone()),
        init,
        addressing,
    })
}

pub(crate) fn secs(d: &Option<std::time::Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

/// Parses MPD text fetched from `url`.
pub fn parse(xml: &str, url: &Url) -> Result<Presentation, MpdError> {
    plan(&parse_doc(xml, url)?, url, &TrackPrefs::default())
}

/// The MPD document, before planning (live and on-demand plan differently).
pub(crate) fn parse_doc(xml: &str, url: &Url) -> Result<MPD, MpdError> {
    let trimmed = xml.trim_start_matches('\u{feff}').trim_start();
    if !trimmed.starts_with('<') {
        return Err(MpdError::NotMpd {
            url: url.to_string(),
            reason: "the document is not XML".into(),
        });
    }
    dash_mpd_core::parse(xml).map_err(|e| MpdError::NotMpd {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// The sidecar WebVTT file of a text AdaptationSet: its (first) Representation's BaseURL.
pub(crate) fn text_url(set: &AdaptationSet, base: &Url, mpd_url: &Url) -> Result<Url, MpdError> {
    let base = base_of(base, &set.BaseURL, mpd_url)?;
    let rep = set
        .representations
        .first()
        .ok_or_else(|| invalid(mpd_url, "a text AdaptationSet has no Representation"))?;
    if rep.BaseURL.is_empty() {
        return Err(unsupported(
            mpd_url,
            "segmented subtitles (only a sidecar text/vtt Representation with a BaseURL is fetched)",
        ));
    }
    base_of(&base, &rep.BaseURL, mpd_url)
}

/// Builds the playlist of a parsed MPD, with the tracks `prefs` asks for.
pub(crate) fn plan(mpd: &MPD, url: &Url, prefs: &TrackPrefs) -> Result<Presentation, MpdError> {
    if mpd.mpdtype.as_deref() == Some("dynamic") {
        return Err(unsupported(
            url,
            "live presentations (MPD@type=\"dynamic\")",
        ));
    }
    if !mpd.ContentProtection.is_empty() {
        return Err(unsupported(url, "encrypted content (ContentProtection)"));
    }
    if mpd.periods.is_empty() {
        return Err(invalid(url, "the MPD has no Period"));
    }
    let total = secs(&mpd.mediaPresentationDuration);
    let base = base_of(url, &mpd.base_url, url)?;
    let mut periods = Vec::new();
    let mut start = 0.0;
    let mut tracks = tracks::Tracks::default();
    let mut subtitle_url = None;
    for (i, p) in mpd.periods.iter().enumerate() {
        if p.href.is_some() {
            return Err(unsupported(url, "xlink on Period (remote periods)"));
        }
        let p_start = secs(&p.start).unwrap_or(start);
        let next_start = mpd.periods.get(i + 1).and_then(|n| secs(&n.start));
        let duration = secs(&p.duration)
            .or_else(|| next_start.map(|n| n - p_start))
            .or_else(|| total.map(|t| t - p_start))
            .unwrap_or(0.0)
            .max(0.0);
        let p_base = base_of(&base, &p.BaseURL, url)?;
        let chosen = tracks::choose(p, i == 0, prefs, url)?;
        let (vset, aset) = (chosen.video, chosen.audio);
        if i == 0 {
            tracks = chosen.tracks;
            if let Some(t) = chosen.text {
                subtitle_url = Some(text_url(t, &p_base, url)?);
            }
        }
        let (video, audio) = ladders(
            url,
            &p_base,
            (vset, aset),
            |r: &Rep| r.bandwidth,
            |set, r, sbase| {
                let sc = Scope {
                    mpd_url: url,
                    period: p,
                    set,
                    duration_s: duration,
                };
                rep_plan(&sc, r, sbase)
            },
        )?;
        periods.push(PeriodPlan {
            id: p.id.clone(),
            start_s: p_start,
            duration_s: duration,
            video,
            audio,
        });
        start = p_start + duration;
    }
    let duration_s = total.unwrap_or(start);
    Ok(Presentation {
        url: url.clone(),
        duration_s,
        periods,
        tracks,
        subtitle_url,
    })
}

impl Presentation {
    /// Representations whose segments are still in a sidx to fetch: (period, video index or
    /// `None` for audio).
    pub fn needs_index(&self) -> Vec<(usize, Option<usize>)> {
        let mut out = Vec::new();
        for (pi, p) in self.periods.iter().enumerate() {
            for (ri, r) in p.video.iter().enumerate() {
                if matches!(r.addressing, Addressing::Sidx { .. }) {
                    out.push((pi, Some(ri)));
                }
            }
            if let Some(a) = &p.audio {
                if matches!(a.addressing, Addressing::Sidx { .. }) {
                    out.push((pi, None));
                }
            }
        }
        out
    }

    pub fn rep_mut(&mut self, period: usize, video: Option<usize>) -> &mut Rep {
        let p = &mut self.periods[period];
        match video {
            Some(i) => &mut p.video[i],
            None => p.audio.as_mut().expect("audio rep"),
        }
    }

    /// [`Presentation::check_aligned`], and every period with the same number of video
    /// rungs (what the ABR lab's movie model needs: one size table).
    pub fn validate(&self) -> Result<(), MpdError> {
        let rungs = self.periods[0].video.len();
        for (pi, p) in self.periods.iter().enumerate() {
            if p.video.len() != rungs {
                return Err(unsupported(
                    &self.url,
                    format!(
                        "periods with different video ladders (period {pi} has {} representations, period 0 has {rungs})",
                        p.video.len()
                    ),
                ));
            }
        }
        self.check_aligned()
    }

    /// Checks that all rungs of a period have the same segment count (segment alignment);
    /// the player switches between rungs at segment boundaries. Periods may have ladders
    /// of their own (see [`Presentation::rung`]).
    pub fn check_aligned(&self) -> Result<(), MpdError> {
        for p in &self.periods {
            let n = p.video[0].segments().len();
            if let Some(r) = p.video.iter().find(|r| r.segments().len() != n) {
                return Err(unsupported(
                    &self.url,
                    format!(
                        "video representations that are not segment-aligned (`{}` has {} segments, `{}` has {n})",
                        r.id,
                        r.segments().len(),
                        p.video[0].id
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The rung of period `period` that plays quality `quality` of the session's ladder
    /// (period 0's, see [`Presentation::content`]).
    pub fn rung(&self, period: usize, quality: usize) -> usize {
        rung_for(&self.periods[0].video, &self.periods[period].video, quality)
    }

    /// The video segments of the whole presentation in play order: (period, index in period).
    pub fn video_segments(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (pi, p) in self.periods.iter().enumerate() {
            for si in 0..p.video[0].segments().len() {
                out.push((pi, si));
            }
        }
        out
    }

    /// The ABR's view: ladder (bitrates of period 0, kbit/s) and segment durations, with
    /// sizes when byte ranges tell them.
    pub fn content(&self) -> crate::content::Content {
        let bitrates: Vec<f64> = self.periods[0]
            .video
            .iter()
            .map(|r| r.bandwidth as f64 / 1000.0)
            .collect();
        let mut durations = Vec::new();
        let mut sizes: Vec<Vec<f64>> = Vec::new();
        let mut all_sized = true;
        for p in &self.periods {
            for si in 0..p.video[0].segments().len() {
                durations.push(p.video[0].segments()[si].duration_s * 1000.0);
                let row: Vec<f64> = (0..self.periods[0].video.len())
                    .map(|q| &p.video[rung_for(&self.periods[0].video, &p.video, q)])
                    .map(|r| match r.segments()[si].resource.range_len() {
                        Some(n) => n as f64 * 8.0,
                        None => {
                            all_sized = false;
                            0.0
                        }
                    })
                    .collect();
                sizes.push(row);
            }
        }
        let n = durations.len().max(1) as f64;
        let segment_ms = durations.iter().sum::<f64>() / n;
        // The nominal duration is the most common one (the last segment is often short).
        let nominal = durations
            .iter()
            .copied()
            .fold(0.0f64, f64::max)
            .min(segment_ms * 2.0)
            .max(1.0);
        crate::content::Content {
            bitrates_kbps: dedup_ascending(bitrates),
            segment_ms: nominal,
            durations_ms: durations,
            sizes_bits: all_sized.then_some(sizes),
        }
    }
}

/// One Period's video ladder (lowest bandwidth first; an error when empty) and its audio
/// (the highest bandwidth Representation: audio has no ABR), each Representation planned
/// by `plan` with its AdaptationSet's base URL. What neither the on-demand nor the live
/// planner plays (xlink, ContentProtection) is refused by name.
pub(crate) fn ladders<R>(
    url: &Url,
    period_base: &Url,
    (vset, aset): (&AdaptationSet, Option<&AdaptationSet>),
    bandwidth: impl Fn(&R) -> u64,
    plan: impl Fn(&AdaptationSet, &Representation, &Url) -> Result<R, MpdError>,
) -> Result<(Vec<R>, Option<R>), MpdError> {
    let set_plan = |set: &AdaptationSet| -> Result<Vec<R>, MpdError> {
        if set.href.is_some() {
            return Err(unsupported(url, "xlink on AdaptationSet"));
        }
        if !set.ContentProtection.is_empty() {
            return Err(unsupported(url, "encrypted content (ContentProtection)"));
        }
        let sbase = base_of(period_base, &set.BaseURL, url)?;
        let mut reps = set
            .representations
            .iter()
            .map(|r| plan(set, r, &sbase))
            .collect::<Result<Vec<_>, _>>()?;
        reps.sort_by_key(&bandwidth);
        Ok(reps)
    };
    let video = set_plan(vset)?;
    if video.is_empty() {
        return Err(MpdError::NoVideo {
            url: url.to_string(),
        });
    }
    let audio = match aset {
        Some(a) => set_plan(a)?.pop(),
        None => None,
    };
    Ok((video, audio))
}

/// A quality of ladder `of` played from ladder `to` (another period's): the same index when
/// the ladders have as many rungs, else the highest rung of `to` not above its bandwidth
/// (the lowest when all are above).
pub(crate) fn rung_for(of: &[Rep], to: &[Rep], quality: usize) -> usize {
    if of.len() == to.len() {
        return quality.min(to.len() - 1);
    }
    let want = of[quality.min(of.len() - 1)].bandwidth;
    to.iter().rposition(|r| r.bandwidth <= want).unwrap_or(0)
}

/// Equal @bandwidth on two rungs would make them indistinguishable to the ABR: nudge.
pub(crate) fn dedup_ascending(mut v: Vec<f64>) -> Vec<f64> {
    for i in 1..v.len() {
        if v[i] <= v[i - 1] {
            v[i] = v[i - 1] + 0.001;
        }
    }
    v
}

/// Parses a `sidx` box (ISO/IEC 14496-12 §8.16.3) found at `index` in `media`; returns the
/// segments it references.
pub(crate) fn parse_sidx(
    data: &[u8],
    media: &Url,
    index: (u64, u64),
) -> Result<Vec<Segment>, MpdError> {
    let bad = |p: &str| MpdError::Sidx {
        url: media.to_string(),
        problem: p.into(),
    };
    // The range may start with other boxes (styp); find the sidx.
    let mut off = 0usize;
    let body = loop {
        if off + 8 > data.len() {
            return Err(bad("no sidx box in the index range"));
        }
        let size = u32::from_be_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        let ty = &data[off + 4..off + 8];
        if size < 8 {
            return Err(bad("box with a size under 8"));
        }
        if ty == b"sidx" {
            let end = (off + size).min(data.len());
            break (off + size, &data[off + 8..end]);
        }
        off += size;
    };
    let (box_end, b) = body;
    let rd32 = |o: usize| -> Result<u64, MpdError> {
        b.get(o..o + 4)
            .map(|s| u32::from_be_bytes(s.try_into().unwrap()) as u64)
            .ok_or_else(|| bad("truncated"))
    };
    let rd64 = |o: usize| -> Result<u64, MpdError> {
        b.get(o..o + 8)
            .map(|s| u64::from_be_bytes(s.try_into().unwrap()))
            .ok_or_else(|| bad("truncated"))
    };
    let version = *b.first().ok_or_else(|| bad("truncated"))?;
    let timescale = rd32(8)?.max(1);
    let (first_offset, mut o) = if version == 0 {
        (rd32(16)?, 20)
    } else {
        (rd64(20)?, 28)
    };
    let count = b
        .get(o + 2..o + 4)
        .map(|s| u16::from_be_bytes(s.try_into().unwrap()) as usize)
        .ok_or_else(|| bad("truncated"))?;
    o += 4;
    let mut start = index.0 + box_end as u64 + first_offset;
    let mut segs = Vec::with_capacity(count);
    for _ in 0..count {
        let r = rd32(o)?;
        let dur = rd32(o + 4)?;
        o += 12;
        if r & 0x8000_0000 != 0 {
            return Err(MpdError::Unsupported {
                url: media.to_string(),
                feature: "hierarchical sidx (a sidx referencing other sidx boxes)".into(),
            });
        }
        let size = r & 0x7fff_ffff;
        if size == 0 {
            return Err(bad("a reference of size 0"));
        }
        segs.push(Segment {
            resource: Resource {
                url: media.clone(),
                range: Some((start, start + size - 1)),
            },
            duration_s: dur as f64 / timescale as f64,
        });
        start += size;
    }
    if segs.is_empty() {
        return Err(bad("the sidx references no segment"));
    }
    Ok(segs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u() -> Url {
        Url::parse("http://h/a/manifest.mpd").unwrap()
    }

    #[test]
    fn templates_expand() {
        assert_eq!(
            expand_template("c-$RepresentationID$-$Number%05d$.m4s", "v0", 7, 0, 1).unwrap(),
            "c-v0-00007.m4s"
        );
        assert_eq!(
            expand_template("$Time$.m4s$$", "v", 1, 90000, 1).unwrap(),
            "90000.m4s$"
        );
        assert!(expand_template("$Foo$", "v", 1, 0, 1).is_err());
        assert!(expand_template("$Number", "v", 1, 0, 1).is_err());
        assert!(expand_template("$Number%0999999999d$", "v", 1, 0, 1).is_err());
    }

    #[test]
    fn not_xml_and_no_video_are_clear() {
        let e = parse("{\"json\": true}", &u()).unwrap_err();
        assert!(e.to_string().contains("not XML"), "{e}");
        let audio_only = r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT4S"><Period><AdaptationSet contentType="audio" mimeType="audio/mp4"><SegmentTemplate media="$Number$.m4s" duration="2" /><Representation id="a" bandwidth="96000"/></AdaptationSet></Period></MPD>"#;
        let e = parse(audio_only, &u()).unwrap_err();
        assert!(e.to_string().contains("no video"), "{e}");
        let live = audio_only.replace("type=\"static\"", "type=\"dynamic\"");
        let e = parse(&live, &u()).unwrap_err();
        assert!(e.to_string().contains("dynamic"), "{e}");
    }

    #[test]
    fn timeline_list_and_base() {
        let xml = r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT10S">
          <BaseURL>media/</BaseURL>
          <Period id="p0" duration="PT6S">
            <AdaptationSet mimeType="video/mp4">
              <SegmentTemplate timescale="1000" media="$RepresentationID$/$Time$.m4s" initialization="$RepresentationID$/init.mp4">
                <SegmentTimeline><S t="0" d="2000" r="1"/><S d="2000"/></SegmentTimeline>
              </SegmentTemplate>
              <Representation id="lo" bandwidth="300000"/>
              <Representation id="hi" bandwidth="900000"/>
            </AdaptationSet>
          </Period>
          <Period id="p1" duration="PT4S">
            <AdaptationSet mimeType="video/mp4">
              <Representation id="lo" bandwidth="300000"><BaseURL>lo.mp4</BaseURL>
                <SegmentList timescale="10" duration="20"><Initialization range="0-99"/>
                  <SegmentURL mediaRange="100-199"/><SegmentURL mediaRange="200-399"/></SegmentList></Representation>
              <Representation id="hi" bandwidth="900000"><BaseURL>hi.mp4</BaseURL>
                <SegmentBase indexRange="100-150"><Initialization range="0-99"/></SegmentBase></Representation>
            </AdaptationSet>
          </Period>
        </MPD>"#;
        let p = parse(xml, &u()).unwrap();
        assert_eq!(p.periods.len(), 2);
        let v = &p.periods[0].video;
        assert_eq!(v[0].id, "lo");
        assert_eq!(v[1].segments().len(), 3);
        assert_eq!(
            v[1].segments()[2].resource.url.as_str(),
            "http://h/a/media/hi/4000.m4s"
        );
        let lo = &p.periods[1].video[0];
        assert_eq!(lo.segments()[1].resource.range, Some((200, 399)));
        assert_eq!(
            lo.segments()[1].resource.url.as_str(),
            "http://h/a/media/lo.mp4"
        );
        assert_eq!(lo.segments()[1].duration_s, 2.0);
        assert_eq!(p.needs_index(), vec![(1, Some(1))]);
    }

    #[test]
    fn sidx_boxes() {
        // version 0 sidx: timescale 1000, first_offset 0, two references.
        let mut b = Vec::new();
        let mut body = vec![0u8, 0, 0, 0];
        body.extend(1u32.to_be_bytes());
        body.extend(1000u32.to_be_bytes());
        body.extend(0u32.to_be_bytes());
        body.extend(0u32.to_be_bytes());
        body.extend(0u16.to_be_bytes());
        body.extend(2u16.to_be_bytes());
        for (size, dur) in [(500u32, 2000u32), (700, 1500)] {
            body.extend(size.to_be_bytes());
            body.extend(dur.to_be_bytes());
            body.extend(0x9000_0000u32.to_be_bytes());
        }
        b.extend(((body.len() + 8) as u32).to_be_bytes());
        b.extend(b"sidx");
        b.extend(&body);
        let url = Url::parse("http://h/v.mp4").unwrap();
        let segs = parse_sidx(&b, &url, (800, 800 + b.len() as u64 - 1)).unwrap();
        let end = 800 + b.len() as u64;
        assert_eq!(segs[0].resource.range, Some((end, end + 499)));
        assert_eq!(segs[1].resource.range, Some((end + 500, end + 1199)));
        assert_eq!(segs[1].duration_s, 1.5);
        assert!(parse_sidx(&b[..20], &url, (0, 19)).is_err());
    }
}
