//! Audio languages and subtitles in dash.js, in Chromium: the watch page's menus switch
//! the audio language and show every subtitle track's cues. The browser work is
//! `player/web/test/tracks.mjs`; this test packages the asset, starts the origin and
//! fails with the script's `not ok` lines.

use std::path::Path;
use std::process::{Command, Stdio};

use dashcdn_origin::{package, PackageOptions};

use crate::browser::{artifact_dir, require_browser_tools};
use crate::util::*;

const ASSET: &str = "tracks";

/// 8 s of video with English and French audio, English SRT subtitles inside the MKV (2
/// cues) and French WebVTT beside it (3 cues).
fn tracks_library(root: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let srt = dir.path().join("eng.srt");
    std::fs::write(
        &srt,
        "1\n00:00:00,500 --> 00:00:03,000\nHello\n\n2\n00:00:04,000 --> 00:00:07,000\nWorld\n",
    )
    .unwrap();
    let vtt = dir.path().join("fra.vtt");
    std::fs::write(
        &vtt,
        "WEBVTT\n\n00:00:00.500 --> 00:00:02.500\nBonjour\n\n00:00:03.000 --> 00:00:05.000\nle\n\n00:00:05.500 --> 00:00:07.500\nmonde\n",
    )
    .unwrap();
    let src = dir.path().join("tracks.mkv");
    let t = "8";
    let o = run(Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args([
            "-f",
            "lavfi",
            "-t",
            t,
            "-i",
            "testsrc2=size=320x180:rate=25",
        ])
        .args([
            "-f",
            "lavfi",
            "-t",
            t,
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ])
        .args([
            "-f",
            "lavfi",
            "-t",
            t,
            "-i",
            "sine=frequency=660:sample_rate=48000",
        ])
        .arg("-i")
        .arg(&srt)
        .args(["-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-c:s",
            "srt",
        ])
        .args([
            "-metadata:s:a:0",
            "language=eng",
            "-metadata:s:a:1",
            "language=fra",
        ])
        .args(["-metadata:s:s:0", "language=eng"])
        .arg(&src));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut opts = PackageOptions::new(ASSET, root);
    opts.ladder = "180p:400k".parse().unwrap();
    opts.segment_duration = 2.0;
    opts.encode.progress = false;
    opts.encode.preset = "ultrafast".into();
    opts.subtitles = vec![format!("{}:fra", vtt.display()).parse().unwrap()];
    package(&src, &opts).expect("packaging the tracks clip");
}

#[ignore = "slow: headless Chromium"]
#[tokio::test(flavor = "multi_thread")]
async fn dashjs_switches_audio_language_and_shows_every_subtitle_track() {
    require_browser_tools();
    let library = tempfile::tempdir().unwrap();
    let root = library.path().to_owned();
    tokio::task::spawn_blocking(move || tracks_library(&root))
        .await
        .unwrap();
    let origin = spawn_origin(library.path()).await;
    let base = origin.url("");
    // The listing names the asset's audio and subtitle tracks before any player loads it.
    let listing: serde_json::Value = reqwest::get(origin.url("/vod/"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tracks: Vec<(String, String)> = listing["assets"][0]["tracks"]
        .as_array()
        .unwrap_or_else(|| panic!("tracks listed: {listing}"))
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().unwrap().to_owned(),
                t["lang"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for want in [
        ("audio", "eng"),
        ("audio", "fra"),
        ("text", "eng"),
        ("text", "fra"),
    ] {
        assert!(
            tracks.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} in {tracks:?}"
        );
    }
    let artifacts = artifact_dir().with_file_name("browser-tracks");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("player/web/test/tracks.mjs"))
            .arg(&base)
            .arg(&artifacts)
            .arg(format!("--asset={ASSET}"))
            .arg("--cues=eng:2,fra:3")
            .stderr(Stdio::inherit())
            .output()
            .expect("starting node")
    })
    .await
    .unwrap();
    origin.join().await;
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    let failed: Vec<&str> = report.lines().filter(|l| l.starts_with("not ok")).collect();
    assert!(
        out.status.success() && failed.is_empty(),
        "tracks test failed ({}):\n{}",
        out.status,
        failed.join("\n")
    );
    assert!(
        report.lines().filter(|l| l.starts_with("ok -")).count() >= 12,
        "{report}"
    );
}
