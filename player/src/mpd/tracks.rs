//! Which audio and subtitle tracks a session plays (`--audio-lang`, `--subtitles`), and
//! what the presentation offers, for the summary's `tracks`.
//!
//! An audio AdaptationSet is one language (issue 13: one set per language, 5.1 and its
//! stereo rendition in the same set); `--audio-lang` picks it by `@lang`, else the set
//! whose `Role` is `main`, else the first. Languages match as [`lang_match`] says: the
//! same full tag first, else the same language whatever code names it (`fr` = `fra` =
//! `fre`, `en-US` ↔ `eng`). Subtitles are text AdaptationSets (WebVTT); the
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

/// ISO 639-2/B codes and their 639-2/T (= 639-3) twins: the 20 languages whose
/// bibliographic code differs (ISO 639-2, Library of Congress list). `isolang` knows 639-1
/// and 639-3 only.
const ISO639_2B: [(&str, &str); 20] = [
    ("alb", "sqi"),
    ("arm", "hye"),
    ("baq", "eus"),
    ("bur", "mya"),
    ("chi", "zho"),
    ("cze", "ces"),
    ("dut", "nld"),
    ("fre", "fra"),
    ("geo", "kat"),
    ("ger", "deu"),
    ("gre", "ell"),
    ("ice", "isl"),
    ("mac", "mkd"),
    ("mao", "mri"),
    ("may", "msa"),
    ("per", "fas"),
    ("rum", "ron"),
    ("slo", "slk"),
    ("tib", "bod"),
    ("wel", "cym"),
];

/// The language a tag names, as its ISO 639-3 code: the primary subtag of a BCP 47 tag
/// (`pt-BR` → `por`), read as ISO 639-1, 639-2/T or 639-3, or 639-2/B (`fre` → `fra`).
/// An unknown primary subtag stands for itself, lowercased.
fn language(tag: &str) -> String {
    let tag = tag.trim().to_ascii_lowercase();
    let primary = tag.split(['-', '_']).next().unwrap_or_default();
    let t = ISO639_2B
        .iter()
        .find(|(b, _)| *b == primary)
        .map_or(primary, |(_, t)| t);
    isolang::Language::from_639_1(t)
        .or_else(|| isolang::Language::from_639_3(t))
        .map_or_else(|| t.to_string(), |l| l.to_639_3().to_string())
}

/// How well `have` (an AdaptationSet's `@lang`) answers `want`: 2 the same tag
/// (case-insensitive), 1 the same language (`fr` / `fra` / `fre` / `fr-CA`), else none.
fn lang_match(have: &str, want: &str) -> Option<u8> {
    if have.trim().eq_ignore_ascii_case(want.trim()) {
        Some(2)
    } else if language(have) == language(want) {
        Some(1)
    } else {
        None
    }
}

/// The set among `sets` whose `@lang` best answers `want` (the first of equals).
fn best_lang<'a>(sets: &[&'a AdaptationSet], want: &str) -> Option<&'a AdaptationSet> {
    let mut best: Option<(u8, &'a AdaptationSet)> = None;
    for s in sets {
        let Some(score) = s.lang.as_deref().and_then(|l| lang_match(l, want)) else {
            continue;
        };
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, s));
        }
    }
    best.map(|(_, s)| s)
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
        return best_lang(sets, want)
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
    best_lang(sets, want).ok_or_else(|| MpdError::NoTrack {
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
    fn languages_match_by_language_whatever_the_code_and_cues_count() {
        // ISO 639-1, 639-2/T, 639-2/B and 639-3 name the same language.
        for (have, want) in [
            ("fra", "fr"),
            ("fre", "fr"),
            ("fr", "fra"),
            ("fra", "fre"),
            ("eng", "en"),
            ("en", "eng"),
            ("deu", "ger"),
            ("zho", "chi"),
            // BCP 47: the primary language subtag.
            ("en-GB", "en"),
            ("en-US", "eng"),
            ("eng", "en-US"),
            ("pt-BR", "por"),
            ("pt", "pt-BR"),
        ] {
            assert_eq!(lang_match(have, want), Some(1), "{have} for {want}");
        }
        assert_eq!(lang_match("FRA", "fra"), Some(2));
        assert_eq!(lang_match("pt-BR", "pt-br"), Some(2));
        for (have, want) in [("fra", "en"), ("en", "es"), ("und", "en"), ("xx", "yy")] {
            assert_eq!(lang_match(have, want), None, "{have} for {want}");
        }
        // An unknown code still matches itself and its regional forms.
        assert_eq!(lang_match("qaa-x", "qaa"), Some(1));
        let vtt =
            "WEBVTT\n\n00:00.500 --> 00:02.000\nHi\n\nNOTE x\n\n00:03.000 --> 00:04.000\nYo\n";
        assert_eq!(count_cues(vtt), 2);
    }

    fn set(lang: &str) -> AdaptationSet {
        AdaptationSet {
            lang: Some(lang.into()),
            ..Default::default()
        }
    }

    #[test]
    fn an_exact_tag_wins_over_the_same_language() {
        let (pt, br, en) = (set("por"), set("pt-BR"), set("eng"));
        let sets = [&pt, &br, &en];
        let lang = |w: &str| best_lang(&sets, w).and_then(|s| s.lang.clone());
        assert_eq!(lang("pt-BR").as_deref(), Some("pt-BR"));
        assert_eq!(
            lang("pt-PT").as_deref(),
            Some("por"),
            "the first of the language"
        );
        assert_eq!(lang("pt").as_deref(), Some("por"));
        assert_eq!(lang("en-US").as_deref(), Some("eng"));
        assert_eq!(lang("fr"), None);
    }
}
