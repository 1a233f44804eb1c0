//! The dynamic MPD of a live channel (ISO/IEC 23009-1 §5.3.1.2 type="dynamic"; DASH-IF
//! "Low-latency Modes for DASH": `availabilityTimeOffset`, `availabilityTimeComplete`,
//! `ServiceDescription`, `UTCTiming`).
//!
//! Written as text rather than through dash-mpd-core: the few low-latency elements are
//! all this writer adds, and tests validate the result against the ISO schema.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::store::{Period, Track};
use super::{LiveConfig, TrackKind};
use crate::web::iso8601;

/// Seconds as an `xs:duration` (`PT2S`, `PT0.5S`).
fn xs_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("PT{}S", ms / 1000)
    } else {
        format!("PT{}S", ms as f64 / 1000.0)
    }
}

pub(super) fn xs_seconds(s: f64) -> String {
    xs_duration(Duration::from_millis((s * 1000.0).round().max(0.0) as u64))
}

/// `<AdaptationSet …>` of one media kind (shared by the live MPD and a recording's static one).
pub(super) fn open_adaptation_set(x: &mut String, set: usize, kind: TrackKind, fps: u32) {
    let (content, mime) = match kind {
        TrackKind::Video => ("video", "video/mp4"),
        TrackKind::Audio => ("audio", "audio/mp4"),
    };
    let _ = write!(
        x,
        r#"    <AdaptationSet id="{set}" contentType="{content}" mimeType="{mime}" segmentAlignment="true" startWithSAP="1""#
    );
    if kind == TrackKind::Video {
        let _ = write!(x, r#" frameRate="{fps}""#);
    } else {
        x.push_str(r#" lang="und""#);
    }
    x.push_str(">\n");
}

/// `<Representation …>` of `t` with its audio channel configuration, left open for the
/// caller's `SegmentTemplate`.
pub(super) fn open_representation(x: &mut String, id: &str, t: &Track) {
    let r = &t.rung;
    let _ = write!(
        x,
        r#"      <Representation id="{id}" codecs="{}" bandwidth="{}""#,
        t.info.codecs,
        u64::from(r.kbps) * 1000
    );
    if r.kind == TrackKind::Video {
        let _ = write!(
            x,
            r#" width="{}" height="{}" sar="1:1">"#,
            r.width, r.height
        );
    } else {
        x.push_str(r#" audioSamplingRate="48000">"#);
        x.push_str("\n        <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:mpegB:cicp:ChannelConfiguration\" value=\"2\"/>");
    }
}

/// The MPD at `now` for `periods` (oldest first), media time 0 of the first run at `ast`.
pub(crate) fn write(
    config: &LiveConfig,
    ast: SystemTime,
    periods: &[Period],
    now: SystemTime,
) -> String {
    let seg = config.segment_duration;
    let chunk = config.chunk_duration;
    let target = config.target_latency.as_millis();
    let mut x = String::with_capacity(4096);
    // `write!` into a String cannot fail.
    let _ = write!(
        x,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="dynamic" availabilityStartTime="{ast}" publishTime="{now}" minimumUpdatePeriod="{mup}" timeShiftBufferDepth="{tsb}" maxSegmentDuration="{seg_d}" minBufferTime="{mbt}">
  <ServiceDescription id="0">
    <Latency referenceId="0" target="{target}" min="{min}" max="{max}"/>
    <PlaybackRate min="0.96" max="1.04"/>
  </ServiceDescription>
"#,
        ast = iso8601(ast),
        now = iso8601(now),
        mup = xs_duration(seg),
        tsb = xs_duration(config.window),
        seg_d = xs_duration(seg),
        mbt = xs_duration(chunk * 2),
        min = target / 2,
        max = target * 2,
    );
    for p in periods {
        let _ = writeln!(
            x,
            r#"  <Period id="p{}" start="{}">"#,
            p.id,
            xs_seconds(p.start)
        );
        for (set, kind) in [TrackKind::Video, TrackKind::Audio].into_iter().enumerate() {
            let tracks: Vec<_> = p.tracks.iter().filter(|t| t.rung.kind == kind).collect();
            if tracks.is_empty() {
                continue;
            }
            open_adaptation_set(&mut x, set, kind, config.fps);
            let mut sorted = tracks;
            sorted.sort_by_key(|t| std::cmp::Reverse(t.rung.kbps));
            for t in sorted {
                open_representation(&mut x, &t.rung.id, t);
                let ts = u64::from(t.info.timescale);
                let _ = write!(
                    x,
                    r#"
        <SegmentTemplate timescale="{ts}" duration="{dur}" startNumber="{start}" presentationTimeOffset="0" availabilityTimeOffset="{ato}" availabilityTimeComplete="false" initialization="$RepresentationID$/init-{period}.mp4" media="$RepresentationID$/$Number$.m4s"/>
      </Representation>
"#,
                    dur = (seg.as_secs_f64() * ts as f64).round() as u64,
                    start = p.start_number,
                    ato = (seg - chunk).as_secs_f64(),
                    period = p.id,
                );
            }
            x.push_str("    </AdaptationSet>\n");
        }
        x.push_str("  </Period>\n");
    }
    // Relative: resolved against the page, which is served by the same origin or edge
    // as the MPD, and a cached MPD must not name one host.
    x.push_str(
        "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"/time\"/>\n</MPD>\n",
    );
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::fmp4::InitInfo;
    use crate::live::store::Track;
    use crate::live::{Input, Rung};

    #[test]
    fn durations_are_xs_durations() {
        assert_eq!(xs_duration(Duration::from_secs(2)), "PT2S");
        assert_eq!(xs_duration(Duration::from_millis(500)), "PT0.5S");
        assert_eq!(xs_seconds(12.3456), "PT12.346S");
    }

    #[test]
    fn low_latency_attributes_are_present() {
        let config = LiveConfig::new("x", Input::Testsrc);
        let track = Track {
            rung: Rung::video("v0", 640, 360, 800),
            info: InitInfo {
                timescale: 12800,
                track_id: 1,
                codecs: "avc1.42C01E".into(),
            },
            init: bytes::Bytes::new(),
        };
        let p = Period {
            id: 3,
            start: 4.5,
            start_number: 7,
            tracks: vec![track],
        };
        let t = SystemTime::UNIX_EPOCH;
        let mpd = write(&config, t, &[p], t);
        for want in [
            r#"type="dynamic""#,
            r#"availabilityStartTime="1970-01-01T00:00:00.000Z""#,
            r#"availabilityTimeOffset="1.5" availabilityTimeComplete="false""#,
            r#"<Latency referenceId="0" target="1500""#,
            r#"startNumber="7""#,
            r#"duration="25600""#,
            r#"init-3.mp4"#,
            r#"<Period id="p3" start="PT4.5S">"#,
        ] {
            assert!(mpd.contains(want), "{want} missing from\n{mpd}");
        }
    }
}
