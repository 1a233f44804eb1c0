//! Which audio and subtitle tracks a session plays (`--audio-lang`, `--subtitles`), and
//! what the presentation offers, for the summary's `tracks`.
//!
//! An audio AdaptationSet is one language (issue 13: one set per language, 5.1 and its
//! stereo rendition in the same set); `--audio-lang` picks it by `@lang`, else the set
//! whose `Role` is `main`, else the first. Languages match case-insensitively, and on the
//! primary subtag (`en` matches `en-GB`). Subtitles are text AdaptationSets (WebVTT); the
//! player does not render them, it fetches the chosen one and counts its cues, which is
//! what a test of "the subtitles reach the viewer" needs.

use dash_mpd_core::{AdaptationSet, Period};
use serde::Serialize;
use url::Url;

use crate::mpd::MpdError;

/// What the viewer asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackPrefs {
    /// `--audio-lang`: the audio AdaptationSet's `@lang`.
    pub audio_lang: Option<String>,
    /// `--subtitles`: the text AdaptationSet's `@lang` whose cues to fetch and count.
    pub subtitles: Option<String>,
}

/// One track as the summary lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackInfo {
    pub lang: String,
    /// `Label`, when the set has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `Role` values (`main`, `alternate`, `commentary`, `subtitle`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// The tracks of a session: what was played and what was on offer (first period).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tracks {
    pub audio: Option<TrackInfo>,
    pub audio_available: Vec<TrackInfo>,
    pub subtitles: Option<TrackInfo>,
    pub subtitles_available: Vec<TrackInfo>,
    /// Cues in the chosen subtitle track (`--subtitles`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subtitle_cues: Option<u32>,
}

pub(crate) fn info(set: &AdaptationSet) -> TrackInfo {
    TrackInfo {
        lang: set.lang.clone().unwrap_or_else(|| "und".into()),
        label: set.Label.first().map(|l| l.content.clone()),
        roles: set.Role.iter().filter_map(|r| r.value.clone()).collect(),
    }
}

/// `want` names `have` (case-insensitive; `en` matches `en-GB`, `eng` only `eng`).
fn lang_matches(have: &str, want: &str) -> bool {
    let (have, want) = (have.to_ascii_lowercase(), want.to_ascii_lowercase());
    have == want || have.split('-').next() == Some(want.as_str())
}

fn langs(sets: &[&AdaptationSet]) -> String {
    let mut v: Vec<String> = sets.iter().map(|s| info(s).lang).collect();
    v.dedup();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The AdaptationSets one Period plays with `prefs`: its first video set, the chosen audio
/// set and, in the first Period when `--subtitles` asks, the text set. `tracks` describes
/// what was chosen and what was available (the players report the first Period's).
pub(crate) struct Chosen<'a> {
    pub video: &'a AdaptationSet,
    pub audio: Option<&'a AdaptationSet>,
    pub text: Option<&'a AdaptationSet>,
    pub tracks: Tracks,
}

/// Chooses a Period's sets (shared by the on-demand and the live planner).
pub(crate) fn choose<'a>(
    p: &'a Period,
    first: bool,
    prefs: &TrackPrefs,
    url: &Url,
) -> Result<Chosen<'a>, MpdError> {
    let of = |kind: fn(&&AdaptationSet) -> bool| -> Vec<&'a AdaptationSet> {
        p.adaptations.iter().filter(kind).collect()
    };
    let Some(video) = p
        .adaptations
        .iter()
        .find(dash_mpd_core::is_video_adaptation)
    else {
        return Err(MpdError::NoVideo {
            url: url.to_string(),
        });
    };
    let audio_sets = of(dash_mpd_core::is_audio_adaptation);
    let text_sets = of(dash_mpd_core::is_subtitle_adaptation);
    let audio = pick_audio(&audio_sets, prefs.audio_lang.as_deref(), url)?;
    let text = match &prefs.subtitles {
        Some(want) if first => Some(pick_text(&text_sets, want, url)?),
        _ => None,
    };
    let tracks = Tracks {
        audio: audio.map(info),
        audio_available: audio_sets.iter().map(|s| info(s)).collect(),
        subtitles: text.map(info),
        subtitles_available: text_sets.iter().map(|s| info(s)).collect(),
        subtitle_cues: None,
    };
    Ok(Chosen {
        video,
        audio,
        text,
        tracks,
    })
}

/// The audio AdaptationSet to play among `sets` (`None`: the period has no audio).
fn pick_audio<'a>(
    sets: &[&'a AdaptationSet],
    lang: Option<&str>,
    url: &Url,
) -> Result<Option<&'a AdaptationSet>, MpdError> {
    if let Some(want) = lang {
        return sets
            .iter()
            .find(|s| s.lang.as_deref().is_some_and(|l| lang_matches(l, want)))
            .copied()
            .map(Some)
            .ok_or_else(|| MpdError::NoTrack {
                url: url.to_string(),
                kind: "audio",
                lang: want.into(),
                available: langs(sets),
            });
    }
    let main = sets
        .iter()
        .find(|s| s.Role.iter().any(|r| r.value.as_deref() == Some("main")));
    Ok(main.or(sets.first()).copied())
}

/// The text AdaptationSet for `--subtitles LANG`.
fn pick_text<'a>(
    sets: &[&'a AdaptationSet],
    want: &str,
    url: &Url,
) -> Result<&'a AdaptationSet, MpdError> {
    sets.iter()
        .find(|s| s.lang.as_deref().is_some_and(|l| lang_matches(l, want)))
        .copied()
        .ok_or_else(|| MpdError::NoTrack {
            url: url.to_string(),
            kind: "subtitle",
            lang: want.into(),
            available: langs(sets),
        })
}

/// Cues in a WebVTT file: every timing line (`start --> end`), W3C WebVTT §4.1.
pub(crate) fn count_cues(vtt: &str) -> u32 {
    vtt.lines().filter(|l| l.contains("-->")).count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_match_on_the_primary_subtag_and_cues_count() {
        assert!(lang_matches("en-GB", "en"));
        assert!(lang_matches("FRA", "fra"));
        assert!(!lang_matches("eng", "en"));
        let vtt =
            "WEBVTT\n\n00:00.500 --> 00:02.000\nHi\n\nNOTE x\n\n00:03.000 --> 00:04.000\nYo\n";
        assert_eq!(count_cues(vtt), 2);
    }
}
