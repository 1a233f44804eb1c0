//! A dynamic MPD → what a live session needs: the timing (`availabilityStartTime`,
//! `minimumUpdatePeriod`, `timeShiftBufferDepth`), the ServiceDescription (latency target,
//! playback-rate bounds), the UTCTiming sources and, per Period, the video ladder and the
//! audio track with their `SegmentTemplate` (`$Number$` / `$Time$` with `@duration` or a
//! `SegmentTimeline`, and `availabilityTimeOffset` for segments that can be read while
//! they are produced).
//!
//! Times are seconds on the MPD timeline: 0 is `availabilityStartTime`, a Period starts
//! at `Period@start`, and segment `n` of a Period covers
//! `start + (n − startNumber) × duration` onwards (ISO/IEC 23009-1 §5.3.9.5.3), or, with a
//! `SegmentTimeline` (ffmpeg's `-use_timeline 1`, Shaka Packager), `start + (S@t −
//! presentationTimeOffset) / timescale` of its entry. A timeline lists the segments that
//! exist when the MPD is written; the ones after it are reckoned on with the last `S@d`
//! (the live edge) and become requestable once a refreshed MPD lists them — or, with an
//! `availabilityTimeOffset`, the one right after the last listed (the segment in
//! progress) at its availability time. A last `S` with `@r="-1"` repeats without end.

use dash_mpd_core::{AdaptationSet, Representation, MPD};
use url::Url;

use crate::mpd::tracks::{self, TrackPrefs, Tracks};
use crate::mpd::{
    base_of, expand_template, invalid, join, ladders, merge_template, secs, timeline_entries,
    unsupported, MpdError,
};

/// One representation of a live Period.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LiveRep {
    pub(super) id: String,
    pub(super) bandwidth: u64,
    media: String,
    init: Option<String>,
    base: Url,
    timescale: u64,
    /// Segment duration in `timescale` units (with a timeline: the last entry's).
    duration: u64,
    /// `SegmentTimeline` entries, (S@t, S@d) in `timescale` units, numbered from
    /// `start_number`; empty with `@duration`.
    timeline: Vec<(u64, u64)>,
    /// The timeline's last `S` repeats without end (`@r="-1"`).
    open_ended: bool,
    pub(super) start_number: u64,
    pto: u64,
    /// `availabilityTimeOffset`, s (0 when absent).
    pub(super) ato_s: f64,
}

impl LiveRep {
    /// The nominal (with a timeline: the latest) segment duration, s.
    pub(super) fn seg_s(&self) -> f64 {
        self.duration as f64 / self.timescale as f64
    }

    /// Whether segment `number` can be asked for (in a timeline, it is listed or follows
    /// the last listed one on a stream with an `availabilityTimeOffset`); `@duration`
    /// templates: always, availability is a matter of time.
    pub(super) fn listed(&self, number: u64) -> bool {
        if self.timeline.is_empty() || self.open_ended {
            return true;
        }
        let last = self.start_number + self.timeline.len() as u64 - 1;
        number <= last || (self.ato_s > 0.0 && number == last + 1)
    }

    /// (start, duration) of segment `number` in `timescale` units relative to the
    /// presentation time offset.
    fn at(&self, number: u64) -> (u64, u64) {
        let k = number.saturating_sub(self.start_number);
        match self.timeline.last() {
            None => (k * self.duration, self.duration),
            Some(&(lt, ld)) => match self.timeline.get(k as usize) {
                Some(&(t, d)) => (t.saturating_sub(self.pto), d),
                None => {
                    let past = k - (self.timeline.len() as u64 - 1);
                    ((lt + past * ld).saturating_sub(self.pto), ld)
                }
            },
        }
    }

    /// The chunk segment `number` arrives in: the whole segment without an
    /// `availabilityTimeOffset`.
    pub(super) fn chunk_s_of(&self, number: u64) -> f64 {
        let d = self.dur_s(number);
        if self.ato_s > 0.0 {
            self.chunk_s().min(d)
        } else {
            d
        }
    }

    /// The end of the last segment a timeline lists, s from the Period's start (`None`:
    /// no timeline, or one without end).
    fn listed_end(&self) -> Option<f64> {
        if self.timeline.is_empty() || self.open_ended {
            return None;
        }
        let last = self.start_number + self.timeline.len() as u64 - 1;
        Some(self.offset_s(last) + self.dur_s(last))
    }

    /// Segment `number`'s duration, s.
    pub(super) fn dur_s(&self, number: u64) -> f64 {
        self.at(number).1 as f64 / self.timescale as f64
    }

    /// Segment `number`'s start, s from the Period's start.
    fn offset_s(&self, number: u64) -> f64 {
        self.at(number).0 as f64 / self.timescale as f64
    }

    /// The segment covering `t` s from the Period's start.
    fn number_at(&self, t: f64) -> u64 {
        let t = t.max(0.0);
        if self.timeline.is_empty() {
            let k = (t / self.seg_s() + 1e-9).floor() as u64;
            return self.start_number + k;
        }
        let ts = (t * self.timescale as f64).round() as u64 + self.pto;
        let i = self.timeline.partition_point(|&(st, _)| st <= ts);
        let (lt, ld) = self.timeline[self.timeline.len() - 1];
        if i < self.timeline.len() || ts < lt + ld {
            return self.start_number + i.saturating_sub(1) as u64;
        }
        let past = (ts - lt) / ld;
        self.start_number + self.timeline.len() as u64 - 1 + past
    }

    /// The chunk a low-latency segment is delivered in: the DASH-IF convention is
    /// `availabilityTimeOffset` = segment − chunk. Without an offset the segment is one
    /// chunk (playable only when whole).
    pub(super) fn chunk_s(&self) -> f64 {
        let seg = self.seg_s();
        if self.ato_s > 0.0 && self.ato_s < seg {
            seg - self.ato_s
        } else {
            seg
        }
    }

    fn expand(&self, tpl: &str, number: u64, mpd_url: &Url) -> Result<Url, MpdError> {
        let time = self.pto + self.at(number).0;
        let s = expand_template(tpl, &self.id, number, time, self.bandwidth)
            .map_err(|e| invalid(mpd_url, e))?;
        join(&self.base, &s, mpd_url)
    }

    pub(super) fn url(&self, number: u64, mpd_url: &Url) -> Result<Url, MpdError> {
        self.expand(&self.media, number, mpd_url)
    }

    pub(super) fn init_url(&self, mpd_url: &Url) -> Result<Option<Url>, MpdError> {
        self.init
            .as_deref()
            .map(|i| self.expand(i, self.start_number, mpd_url))
            .transpose()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct LivePeriod {
    /// `Period@id`, else its position: how a refreshed MPD's Period is recognised.
    pub(super) id: String,
    pub(super) start_s: f64,
    /// The next Period's start, or `start + Period@duration`; `None`: still going.
    pub(super) end_s: Option<f64>,
    /// Lowest bandwidth first.
    pub(super) video: Vec<LiveRep>,
    pub(super) audio: Option<LiveRep>,
}

impl LivePeriod {
    pub(super) fn seg_s(&self) -> f64 {
        self.video[0].seg_s()
    }

    pub(super) fn start_number(&self) -> u64 {
        self.video[0].start_number
    }

    /// The segment covering MPD time `t` (the first one before the Period starts).
    pub(super) fn number_at(&self, rep: &LiveRep, t: f64) -> u64 {
        rep.number_at(t - self.start_s)
    }

    pub(super) fn seg_start(&self, rep: &LiveRep, number: u64) -> f64 {
        self.start_s + rep.offset_s(number)
    }

    /// Whether segment `number` begins at or after the Period's end.
    pub(super) fn past_end(&self, rep: &LiveRep, number: u64) -> bool {
        self.end_s
            .is_some_and(|e| self.seg_start(rep, number) >= e - 1e-3)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct LiveManifest {
    /// `availabilityStartTime`, Unix seconds.
    pub(super) ast: f64,
    pub(super) min_update_s: Option<f64>,
    pub(super) time_shift_s: Option<f64>,
    /// ServiceDescription `Latency` target / min / max, s.
    pub(super) target_s: Option<f64>,
    pub(super) latency_max_s: Option<f64>,
    /// ServiceDescription `PlaybackRate` min / max.
    pub(super) rate_min: Option<f64>,
    pub(super) rate_max: Option<f64>,
    /// `suggestedPresentationDelay`, s: the latency target when there is no
    /// ServiceDescription.
    pub(super) suggested_delay_s: Option<f64>,
    /// (schemeIdUri, value) of every UTCTiming, in the MPD's order of preference.
    pub(super) utc_timing: Vec<(String, String)>,
    pub(super) periods: Vec<LivePeriod>,
    pub(super) tracks: Tracks,
}

fn rep_plan(
    mpd_url: &Url,
    period: &dash_mpd_core::Period,
    set: &AdaptationSet,
    rep: &Representation,
    base: &Url,
) -> Result<LiveRep, MpdError> {
    let id = rep.id.clone().unwrap_or_default();
    let bandwidth = rep
        .bandwidth
        .ok_or_else(|| invalid(mpd_url, format!("Representation `{id}` has no @bandwidth")))?;
    if !rep.ContentProtection.is_empty() || !set.ContentProtection.is_empty() {
        return Err(unsupported(
            mpd_url,
            "encrypted content (ContentProtection)",
        ));
    }
    let t = merge_template(&[
        period.SegmentTemplate.as_ref(),
        set.SegmentTemplate.as_ref(),
        rep.SegmentTemplate.as_ref(),
    ])
    .ok_or_else(|| {
        unsupported(
            mpd_url,
            format!("live Representation `{id}` without a SegmentTemplate (SegmentList/SegmentBase in a dynamic MPD)"),
        )
    })?;
    let timescale = t.timescale.unwrap_or(1).max(1);
    let start_number = t.startNumber.unwrap_or(1);
    let (timeline, open_ended) = match &t.SegmentTimeline {
        Some(tl) => {
            // A last S@r="-1" repeats until the Period ends, which a live Period has not:
            // it is read as one entry whose duration goes on.
            let mut tl = tl.clone();
            let open = tl
                .segments
                .last_mut()
                .filter(|s| s.r.is_some_and(|r| r < 0))
                .map(|s| s.r = Some(0))
                .is_some();
            let v: Vec<(u64, u64)> = timeline_entries(&tl, start_number, None, mpd_url)?
                .into_iter()
                .map(|(t, d, _)| (t, d))
                .collect();
            if v.is_empty() {
                return Err(invalid(
                    mpd_url,
                    format!("the SegmentTimeline of `{id}` lists no segment"),
                ));
            }
            (v, open)
        }
        None => (Vec::new(), false),
    };
    let duration = match timeline.last() {
        Some(&(_, d)) => d,
        None => t
            .duration
            .filter(|d| *d > 0.0)
            .ok_or_else(|| {
                invalid(
                    mpd_url,
                    format!("live SegmentTemplate of `{id}` has neither @duration nor a SegmentTimeline"),
                )
            })?
            .round() as u64,
    };
    let media = t
        .media
        .clone()
        .ok_or_else(|| invalid(mpd_url, format!("SegmentTemplate of `{id}` has no @media")))?;
    // availabilityTimeOffset: the lowest level that sets it. (§5.3.9.5.3 adds a
    // BaseURL's to the template's; BaseURL offsets are not read here, and the origin,
    // ffmpeg and the DASH-IF examples put it on the SegmentTemplate only.)
    let ato_s = [
        rep.SegmentTemplate.as_ref(),
        set.SegmentTemplate.as_ref(),
        period.SegmentTemplate.as_ref(),
    ]
    .into_iter()
    .flatten()
    .find_map(|t| t.availabilityTimeOffset)
    .filter(|a| a.is_finite() && *a > 0.0)
    .unwrap_or(0.0);
    Ok(LiveRep {
        id,
        bandwidth,
        media,
        init: t
            .initialization
            .clone()
            .or_else(|| t.Initialization.as_ref().and_then(|i| i.sourceURL.clone())),
        base: base_of(base, &rep.BaseURL, mpd_url)?,
        timescale,
        duration,
        timeline,
        open_ended,
        start_number,
        pto: t.presentationTimeOffset.unwrap_or(0),
        ato_s,
    })
}

impl LiveManifest {
    /// The live edge at server time `now` (s on the MPD timeline): `now`, but at most one
    /// segment past the end of what the last Period's timeline lists — a packager running
    /// late (or on another clock) publishes its edge there, and the next segment is not
    /// made before then.
    pub(super) fn edge(&self, now: f64) -> f64 {
        let Some(p) = self.periods.last() else {
            return now;
        };
        let v = &p.video[0];
        match v.listed_end() {
            Some(end) => now.min(p.start_s + end + v.seg_s()),
            None => now,
        }
    }
}

/// The live plan of a dynamic MPD fetched from `url`.
pub(super) fn plan(mpd: &MPD, url: &Url, prefs: &TrackPrefs) -> Result<LiveManifest, MpdError> {
    let ast = mpd
        .availabilityStartTime
        .ok_or_else(|| invalid(url, "a dynamic MPD without @availabilityStartTime"))?
        .timestamp_millis() as f64
        / 1000.0;
    if mpd.periods.is_empty() {
        return Err(invalid(url, "the MPD has no Period"));
    }
    let base = base_of(url, &mpd.base_url, url)?;
    let sd = mpd.ServiceDescription.first();
    let latency = sd.and_then(|s| s.Latency.first());
    let rate = sd.and_then(|s| s.PlaybackRate.first());
    let mut periods = Vec::new();
    let mut tracks = Tracks::default();
    let mut start = 0.0;
    for (i, p) in mpd.periods.iter().enumerate() {
        if p.href.is_some() {
            return Err(unsupported(url, "xlink on Period (remote periods)"));
        }
        let p_start = secs(&p.start).unwrap_or(start);
        let p_base = base_of(&base, &p.BaseURL, url)?;
        let chosen = tracks::choose(p, i == 0, prefs, url)?;
        let (vset, aset) = (chosen.video, chosen.audio);
        if i == 0 {
            tracks = chosen.tracks;
        }
        let (video, audio) = ladders(
            url,
            &p_base,
            (vset, aset),
            |r: &LiveRep| r.bandwidth,
            |set, r, sbase| rep_plan(url, p, set, r, sbase),
        )?;
        let end = secs(&p.duration).map(|d| p_start + d);
        periods.push(LivePeriod {
            id: p.id.clone().unwrap_or_else(|| format!("#{i}")),
            start_s: p_start,
            end_s: end,
            video,
            audio,
        });
        start = end.unwrap_or(p_start);
    }
    // A Period ends where the next begins (§5.3.2.1).
    for i in 1..periods.len() {
        let next = periods[i].start_s;
        let prev = &mut periods[i - 1];
        prev.end_s = Some(prev.end_s.map_or(next, |e| e.min(next)));
    }
    Ok(LiveManifest {
        ast,
        min_update_s: secs(&mpd.minimumUpdatePeriod),
        time_shift_s: secs(&mpd.timeShiftBufferDepth),
        target_s: latency.and_then(|l| l.target).map(|ms| ms / 1000.0),
        latency_max_s: latency.and_then(|l| l.max).map(|ms| ms / 1000.0),
        rate_min: rate.and_then(|r| r.min),
        rate_max: rate.and_then(|r| r.max),
        suggested_delay_s: secs(&mpd.suggestedPresentationDelay),
        utc_timing: mpd
            .UTCTiming
            .iter()
            .map(|u| (u.schemeIdUri.clone(), u.value.clone().unwrap_or_default()))
            .collect(),
        periods,
        tracks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2026-01-01T00:00:00.000Z" publishTime="2026-01-01T00:01:00.000Z" minimumUpdatePeriod="PT2S" timeShiftBufferDepth="PT30S" maxSegmentDuration="PT2S" minBufferTime="PT1S">
  <ServiceDescription id="0"><Latency referenceId="0" target="1500" min="750" max="3000"/><PlaybackRate min="0.96" max="1.04"/></ServiceDescription>
  <Period id="p0" start="PT0S">
    <AdaptationSet contentType="video" mimeType="video/mp4"><Representation id="v0" bandwidth="800000"><SegmentTemplate timescale="12800" duration="25600" startNumber="0" availabilityTimeOffset="1.5" availabilityTimeComplete="false" initialization="$RepresentationID$/init-0.mp4" media="$RepresentationID$/$Number$.m4s"/></Representation>
    <Representation id="v1" bandwidth="400000"><SegmentTemplate timescale="12800" duration="25600" startNumber="0" availabilityTimeOffset="1.5" initialization="$RepresentationID$/init-0.mp4" media="$RepresentationID$/$Number$.m4s"/></Representation></AdaptationSet>
    <AdaptationSet contentType="audio" mimeType="audio/mp4" lang="und"><Representation id="a0" bandwidth="64000"><SegmentTemplate timescale="48000" duration="96000" startNumber="0" availabilityTimeOffset="1.5" initialization="$RepresentationID$/init-0.mp4" media="$RepresentationID$/$Number$.m4s"/></Representation></AdaptationSet>
  </Period>
  <Period id="p1" start="PT100S">
    <AdaptationSet contentType="video" mimeType="video/mp4"><Representation id="v0" bandwidth="800000"><SegmentTemplate timescale="12800" duration="25600" startNumber="48" availabilityTimeOffset="1.5" initialization="$RepresentationID$/init-1.mp4" media="$RepresentationID$/$Number$.m4s"/></Representation></AdaptationSet>
  </Period>
  <UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="/time"/>
</MPD>"#;

    #[test]
    fn a_live_mpd_plans_its_timeline_and_periods() {
        let url = Url::parse("http://e/live/t/manifest.mpd").unwrap();
        let doc = crate::mpd::parse_doc(LIVE, &url).unwrap();
        let m = plan(&doc, &url, &TrackPrefs::default()).unwrap();
        assert_eq!(m.ast, 1_767_225_600.0);
        assert_eq!(m.target_s, Some(1.5));
        assert_eq!(m.latency_max_s, Some(3.0));
        assert_eq!((m.rate_min, m.rate_max), (Some(0.96), Some(1.04)));
        assert_eq!(m.min_update_s, Some(2.0));
        assert_eq!(m.utc_timing[0].1, "/time");
        let p0 = &m.periods[0];
        assert_eq!(p0.end_s, Some(100.0));
        assert_eq!(p0.video[0].id, "v1");
        let v = &p0.video[1];
        assert_eq!(v.seg_s(), 2.0);
        assert_eq!(v.chunk_s(), 0.5);
        assert_eq!(p0.number_at(v, 7.9), 3);
        assert_eq!(p0.seg_start(v, 3), 6.0);
        assert!(p0.past_end(v, 50));
        assert_eq!(v.url(3, &url).unwrap().as_str(), "http://e/live/t/v0/3.m4s");
        assert_eq!(
            v.init_url(&url).unwrap().unwrap().as_str(),
            "http://e/live/t/v0/init-0.mp4"
        );
        let p1 = &m.periods[1];
        assert_eq!(
            (p1.end_s, p1.video.len(), p1.audio.is_none()),
            (None, 1, true)
        );
        assert_eq!(p1.number_at(&p1.video[0], 103.0), 49);
        assert_eq!(m.tracks.audio.as_ref().unwrap().lang, "und");
        let e = plan(
            &doc,
            &url,
            &TrackPrefs {
                audio_lang: Some("fra".into()),
                subtitles: None,
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("`fra`") && e.to_string().contains("und"),
            "{e}"
        );
    }

    /// Shaka Packager's shape: `$Time$`, a timeline whose head has left the window
    /// (startNumber absent), a presentationTimeOffset.
    const TIMELINE: &str = r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z" publishTime="2026-01-01T00:01:00Z" minimumUpdatePeriod="PT2S" timeShiftBufferDepth="PT10S" minBufferTime="PT2S">
  <Period id="0" start="PT0S">
    <AdaptationSet contentType="video" mimeType="video/mp4"><SegmentTemplate timescale="90000" presentationTimeOffset="900000" initialization="v/init.mp4" media="v/$Time$.m4s"><SegmentTimeline><S t="4500000" d="180000" r="2"/><S d="90000"/></SegmentTimeline></SegmentTemplate>
      <Representation id="v0" bandwidth="500000"/></AdaptationSet>
  </Period>
</MPD>"#;

    #[test]
    fn a_live_segment_timeline_is_followed_and_reckoned_on_past_its_end() {
        let url = Url::parse("http://e/l/manifest.mpd").unwrap();
        let doc = crate::mpd::parse_doc(TIMELINE, &url).unwrap();
        let m = plan(&doc, &url, &TrackPrefs::default()).unwrap();
        let p = &m.periods[0];
        let v = &p.video[0];
        // Entries at 40, 42, 44 (2 s) and 46 (1 s) on the Period's timeline (S@t − PTO).
        assert_eq!((v.start_number, v.seg_s()), (1, 1.0));
        assert_eq!(p.number_at(v, 41.0), 1);
        assert_eq!(p.number_at(v, 44.5), 3);
        assert_eq!((p.seg_start(v, 3), v.dur_s(3)), (44.0, 2.0));
        assert_eq!(v.url(3, &url).unwrap().as_str(), "http://e/l/v/4860000.m4s");
        assert!(
            v.listed(4) && !v.listed(5),
            "the next one waits for a refresh"
        );
        // Past the last entry the last S@d goes on.
        assert_eq!(p.number_at(v, 47.5), 5);
        assert_eq!(p.seg_start(v, 5), 47.0);
        assert_eq!(v.url(5, &url).unwrap().as_str(), "http://e/l/v/5130000.m4s");
        // The timeline lists up to 47 s: the edge is at most a segment later, whatever
        // the clock says.
        assert_eq!(m.edge(47.5), 47.5);
        assert_eq!(m.edge(60.0), 48.0);
        // With an availabilityTimeOffset the segment after the last listed is in progress
        // and may be asked for; S@r=-1 at the end repeats without end.
        let lowlat = TIMELINE.replace(
            r#"presentationTimeOffset="900000""#,
            r#"presentationTimeOffset="900000" availabilityTimeOffset="0.5""#,
        );
        let doc = crate::mpd::parse_doc(&lowlat, &url).unwrap();
        let v = &plan(&doc, &url, &TrackPrefs::default()).unwrap().periods[0].video[0];
        assert!(v.listed(5) && !v.listed(6));
        assert_eq!(v.chunk_s_of(5), 0.5);
        let open = TIMELINE.replace(r#"<S d="90000"/>"#, r#"<S d="90000" r="-1"/>"#);
        let doc = crate::mpd::parse_doc(&open, &url).unwrap();
        let v = &plan(&doc, &url, &TrackPrefs::default()).unwrap().periods[0].video[0];
        assert!(v.listed(100));
    }
}
