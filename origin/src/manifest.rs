//! The static MPD, built as a dash-mpd-core model and serialised by quick-xml.
//!
//! Why a model and not a template: the same structs parse MPDs back (tests, and the player
//! later), the serialiser escapes and orders elements the way the schema wants, and a field
//! we forget is a compile error rather than a malformed attribute.
//!
//! Shape (ISO/IEC 23009-1, isoff-live profile): one Period, one video AdaptationSet, one
//! audio AdaptationSet per input audio stream (`lang`, `Role` main/alternate/commentary/
//! description, `Label`; a 5.1 stream carries a 6-channel and a stereo Representation, told
//! apart by `AudioChannelConfiguration`), and one text AdaptationSet per subtitle track:
//! a whole WebVTT file as a `text/vtt` Representation with a `BaseURL`, the "sidecar" form
//! that dash.js and Shaka both render (segmented `wvtt` in fMP4 would need a WebVTT-in-MP4
//! muxer and buys nothing for files of a few kB); `SegmentTemplate` with `$Number$`. When every segment but
//! the last has the same duration the template carries `@duration`; otherwise (AAC frames
//! never divide a segment exactly) a `SegmentTimeline` lists them, run-length coded.

use std::time::Duration;

use dash_mpd_core::{
    Accessibility, AdaptationSet, AudioChannelConfiguration, BaseURL, Label, Period,
    Representation, Role, SegmentTemplate, SegmentTimeline, MPD, S,
};

use crate::media::{MediaInfo, PackagedTrack};

pub(crate) const PROFILE: &str = "urn:mpeg:dash:profile:isoff-live:2011";
/// `$RepresentationID$` folders hold `init.mp4` and `{n}.m4s`, matching the library layout.
pub(crate) const INIT_TEMPLATE: &str = "$RepresentationID$/init.mp4";
pub(crate) const MEDIA_TEMPLATE: &str = "$RepresentationID$/$Number$.m4s";

const ROLE_SCHEME: &str = "urn:mpeg:dash:role:2011";

/// One audio AdaptationSet: the renditions of one input audio stream.
#[derive(Debug, Clone)]
pub(crate) struct AudioSet {
    /// ISO 639 language, `und` when the stream has none.
    pub lang: String,
    /// The stream's title, or a name made from language and layout.
    pub label: String,
    /// DASH role values: `main`, `alternate`, `commentary`, `description`, `dub`.
    pub roles: Vec<&'static str>,
    /// Audio description for the visually impaired.
    pub description: bool,
    /// Most channels first (5.1, then its stereo rendition).
    pub tracks: Vec<PackagedTrack>,
}

/// One subtitle track, a whole WebVTT file.
#[derive(Debug, Clone)]
pub(crate) struct TextSet {
    /// Representation id, also its folder in the asset.
    pub id: String,
    pub lang: String,
    pub label: String,
    /// Path of the `.vtt` file relative to the MPD.
    pub url: String,
    /// File size × 8 / presentation duration, at least 1.
    pub bandwidth: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("no video representation to describe")]
    NoVideo,
    #[error("representation {0} has no segments")]
    Empty(String),
    #[error("cannot serialise the MPD: {0}")]
    Serialise(String),
}

/// The segment addressing of one representation.
fn template(track: &PackagedTrack) -> SegmentTemplate {
    let ts = track.info.timescale as u64;
    let segs = &track.segments;
    let first = segs.first().map(|s| s.duration).unwrap_or(0);
    // A player counts ceil(total / @duration) segments, so a template duration only works
    // when no segment, including the last, is longer than the others.
    let uniform = segs.split_last().is_none_or(|(last, rest)| {
        rest.iter().all(|s| s.duration == first) && last.duration <= first
    });
    let start = segs.first().map(|s| s.start).unwrap_or(0);
    let mut t = SegmentTemplate {
        media: Some(MEDIA_TEMPLATE.into()),
        initialization: Some(INIT_TEMPLATE.into()),
        startNumber: Some(segs.first().map(|s| s.number).unwrap_or(1)),
        timescale: Some(ts),
        ..Default::default()
    };
    // A duration-based template says segment k starts at (k-1)*duration; that only holds
    // when the first one starts at zero.
    if uniform && start == 0 {
        t.duration = Some(first as f64);
    } else {
        let mut runs: Vec<S> = Vec::new();
        let mut expected = None;
        for s in segs {
            match runs.last_mut() {
                Some(last) if last.d == s.duration && expected == Some(s.start) => {
                    last.r = Some(last.r.unwrap_or(0) + 1);
                }
                _ => runs.push(S {
                    // @t only where the timeline does not simply continue.
                    t: (expected != Some(s.start)).then_some(s.start),
                    d: s.duration,
                    ..Default::default()
                }),
            }
            expected = Some(s.start + s.duration);
        }
        t.SegmentTimeline = Some(SegmentTimeline { segments: runs });
    }
    t
}

fn secs(d: f64) -> Duration {
    Duration::from_millis((d * 1000.0 + 1e-6).floor() as u64)
}

fn ratio((n, d): (u32, u32)) -> String {
    if d == 1 {
        n.to_string()
    } else {
        format!("{n}/{d}")
    }
}

fn role(value: &str) -> Role {
    Role {
        schemeIdUri: ROLE_SCHEME.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn label(text: &str) -> Vec<Label> {
    vec![Label {
        content: text.into(),
        ..Default::default()
    }]
}

/// Builds the MPD for packaged video renditions (highest first), audio sets and subtitles.
pub(crate) fn build(
    video: &[PackagedTrack],
    audio: &[AudioSet],
    text: &[TextSet],
) -> Result<MPD, ManifestError> {
    if video.is_empty() {
        return Err(ManifestError::NoVideo);
    }
    let mut max_seg = 0.0f64;
    for t in video.iter().chain(audio.iter().flat_map(|a| &a.tracks)) {
        if t.segments.is_empty() {
            return Err(ManifestError::Empty(t.id.clone()));
        }
        let ts = t.info.timescale as f64;
        max_seg = t
            .segments
            .iter()
            .map(|s| s.duration as f64 / ts)
            .fold(max_seg, f64::max);
    }

    // The presentation lasts as long as the video. AAC ends on a whole frame and may carry
    // its encoder's priming frame, so audio can run a few tens of ms longer; were that the
    // Period's length, players would compute one more video segment than exists
    // (ceil(duration / @duration)) and ask for it. Rounded down to the millisecond for the
    // same reason.
    let duration = video
        .iter()
        .map(PackagedTrack::duration_secs)
        .fold(0.0, f64::max);
    let mut reps = Vec::new();
    let (mut max_w, mut max_h) = (0u64, 0u64);
    for t in video {
        let MediaInfo::Video { width, height, sar } = t.info.media else {
            continue;
        };
        max_w = max_w.max(width as u64);
        max_h = max_h.max(height as u64);
        reps.push(Representation {
            id: Some(t.id.clone()),
            mimeType: Some("video/mp4".into()),
            codecs: Some(t.info.codecs.clone()),
            bandwidth: Some(t.peak_bandwidth()),
            width: Some(width as u64),
            height: Some(height as u64),
            frameRate: t.frame_rate.map(ratio),
            sar: Some(format!("{}:{}", sar.0, sar.1)),
            SegmentTemplate: Some(template(t)),
            ..Default::default()
        });
    }
    let video_set = AdaptationSet {
        id: Some("0".into()),
        contentType: Some("video".into()),
        mimeType: Some("video/mp4".into()),
        segmentAlignment: Some(true),
        startWithSAP: Some(1),
        maxWidth: Some(max_w),
        maxHeight: Some(max_h),
        representations: reps,
        ..Default::default()
    };
    let mut sets = vec![video_set];
    for (i, set) in audio.iter().enumerate() {
        let mut reps = Vec::new();
        for a in &set.tracks {
            let MediaInfo::Audio {
                sample_rate,
                channels,
            } = a.info.media
            else {
                continue;
            };
            reps.push(Representation {
                id: Some(a.id.clone()),
                mimeType: Some("audio/mp4".into()),
                codecs: Some(a.info.codecs.clone()),
                bandwidth: Some(a.peak_bandwidth()),
                audioSamplingRate: Some(sample_rate.to_string()),
                AudioChannelConfiguration: vec![AudioChannelConfiguration {
                    schemeIdUri: "urn:mpeg:dash:23003:3:audio_channel_configuration:2011".into(),
                    value: Some(channels.to_string()),
                    ..Default::default()
                }],
                SegmentTemplate: Some(template(a)),
                ..Default::default()
            });
        }
        sets.push(AdaptationSet {
            id: Some((1 + i).to_string()),
            contentType: Some("audio".into()),
            mimeType: Some("audio/mp4".into()),
            lang: Some(set.lang.clone()),
            segmentAlignment: Some(true),
            startWithSAP: Some(1),
            Label: label(&set.label),
            Accessibility: if set.description {
                vec![Accessibility {
                    schemeIdUri: ROLE_SCHEME.into(),
                    value: Some("description".into()),
                    ..Default::default()
                }]
            } else {
                Vec::new()
            },
            Role: set.roles.iter().map(|r| role(r)).collect(),
            representations: reps,
            ..Default::default()
        });
    }
    for (i, t) in text.iter().enumerate() {
        sets.push(AdaptationSet {
            id: Some((1 + audio.len() + i).to_string()),
            contentType: Some("text".into()),
            mimeType: Some("text/vtt".into()),
            lang: Some(t.lang.clone()),
            Label: label(&t.label),
            Role: vec![role("subtitle")],
            representations: vec![Representation {
                id: Some(t.id.clone()),
                mimeType: Some("text/vtt".into()),
                bandwidth: Some(t.bandwidth.max(1)),
                BaseURL: vec![BaseURL {
                    base: t.url.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    Ok(MPD {
        // skip_serializing_none drops a None here, and without the namespace no schema
        // (and no strict player) recognises the document.
        xmlns: Some("urn:mpeg:dash:schema:mpd:2011".into()),
        profiles: Some(PROFILE.into()),
        mpdtype: Some("static".into()),
        mediaPresentationDuration: Some(secs(duration)),
        minBufferTime: Some(secs(max_seg.max(1.0))),
        maxSegmentDuration: Some(secs(max_seg + 0.000_999)),
        periods: vec![Period {
            id: Some("0".into()),
            start: Some(Duration::ZERO),
            adaptations: sets,
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// The MPD as XML, with the declaration players and xmllint expect.
pub(crate) fn to_xml(mpd: &MPD) -> Result<String, ManifestError> {
    let body = quick_xml_body(mpd)?;
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}\n"
    ))
}

fn quick_xml_body(mpd: &MPD) -> Result<String, ManifestError> {
    use std::fmt::Write;
    let mut s = String::new();
    write!(s, "{mpd}").map_err(|e| ManifestError::Serialise(e.to_string()))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{SegmentInfo, TrackInfo};

    fn track(id: &str, media: MediaInfo, ts: u32, durs: &[u64]) -> PackagedTrack {
        let mut start = 0;
        let segments = durs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let s = SegmentInfo {
                    number: i as u64 + 1,
                    start,
                    duration: *d,
                    bytes: 100_000,
                };
                start += d;
                s
            })
            .collect();
        let entry = shiguredo_mp4::boxes::SampleEntry::Unknown(shiguredo_mp4::boxes::UnknownBox {
            box_type: shiguredo_mp4::BoxType::Normal(*b"xxxx"),
            box_size: shiguredo_mp4::BoxSize::U32(8),
            payload: Vec::new(),
        });
        PackagedTrack {
            id: id.into(),
            dir: id.into(),
            info: TrackInfo {
                timescale: ts,
                codecs: "avc1.64001f".into(),
                language: Some("eng".into()),
                media,
                sample_entry: entry,
                presentation_offset: 0,
            },
            segments,
            frame_rate: Some((25, 1)),
        }
    }

    #[test]
    fn uniform_video_uses_duration_and_audio_uses_timeline() {
        let v = track(
            "720p",
            MediaInfo::Video {
                width: 1280,
                height: 720,
                sar: (1, 1),
            },
            90000,
            &[360000, 360000, 180000],
        );
        let a = track(
            "audio",
            MediaInfo::Audio {
                sample_rate: 48000,
                channels: 2,
            },
            48000,
            &[192512, 191488, 96000],
        );
        let set = AudioSet {
            lang: "eng".into(),
            label: "English".into(),
            roles: vec!["main"],
            description: false,
            tracks: vec![a],
        };
        let subs = TextSet {
            id: "text-fra".into(),
            lang: "fra".into(),
            label: "Français".into(),
            url: "text-fra/subtitles.vtt".into(),
            bandwidth: 300,
        };
        let mpd = build(std::slice::from_ref(&v), &[set], &[subs]).unwrap();
        let xml = to_xml(&mpd).unwrap();
        assert!(xml.starts_with("<?xml"));
        let back = dash_mpd_core::parse(&xml).unwrap();
        let sets = &back.periods[0].adaptations;
        let vt = sets[0].representations[0].SegmentTemplate.as_ref().unwrap();
        assert_eq!(vt.duration, Some(360000.0));
        assert!(vt.SegmentTimeline.is_none());
        let at = sets[1].representations[0].SegmentTemplate.as_ref().unwrap();
        let tl = &at.SegmentTimeline.as_ref().unwrap().segments;
        // Three different durations: nothing folds into a run.
        assert_eq!(tl.len(), 3);
        assert_eq!(tl[0].t, Some(0));
        assert_eq!(tl[1].t, None);
        assert_eq!(
            back.mediaPresentationDuration,
            Some(Duration::from_millis(10000))
        );
        assert_eq!(sets[1].lang.as_deref(), Some("eng"));
        assert_eq!(sets[1].Role[0].value.as_deref(), Some("main"));
        assert_eq!(sets[1].Label[0].content, "English");
        assert_eq!(sets[2].contentType.as_deref(), Some("text"));
        let t = &sets[2].representations[0];
        assert_eq!(t.BaseURL[0].base, "text-fra/subtitles.vtt");
        // 100 kB over 2 s (the short last video segment) is the peak: 400 kbit/s.
        assert_eq!(sets[0].representations[0].bandwidth, Some(400_000));
    }

    #[test]
    fn a_long_last_segment_needs_a_timeline() {
        let v = track(
            "720p",
            MediaInfo::Video {
                width: 1280,
                height: 720,
                sar: (1, 1),
            },
            90000,
            &[360000, 360000, 363600],
        );
        let t = template(&v);
        assert!(t.duration.is_none());
        let tl = t.SegmentTimeline.unwrap().segments;
        assert_eq!((tl[0].d, tl[0].r, tl[1].d), (360000, Some(1), 363600));
    }

    #[test]
    fn repeated_durations_fold_into_r() {
        let a = track(
            "audio",
            MediaInfo::Audio {
                sample_rate: 48000,
                channels: 2,
            },
            48000,
            &[1000, 1000, 1000, 1024, 500],
        );
        let t = template(&a);
        let tl = t.SegmentTimeline.unwrap().segments;
        assert_eq!((tl[0].d, tl[0].r), (1000, Some(2)));
        assert_eq!((tl[1].d, tl[1].r), (1024, None));
        assert_eq!(tl.len(), 3);
    }
}
