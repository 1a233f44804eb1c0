//! Packaging a generated clip: the MPD is valid and tells the truth about the media.

use std::path::Path;
use std::process::Command;

use dash_mpd_core::MPD;

use crate::util::*;

fn mpd() -> MPD {
    let xml = std::fs::read_to_string(fixture().library.join(ASSET).join("manifest.mpd")).unwrap();
    dash_mpd_core::parse(&xml).expect("our MPD parses back")
}

/// `(rep id, timescale, [(start, duration)])` of one representation, from the MPD alone.
type Timeline = (String, u64, Vec<(u64, u64)>);

fn timelines(mpd: &MPD) -> Vec<Timeline> {
    let mut out = Vec::new();
    for set in &mpd.periods[0].adaptations {
        for rep in &set.representations {
            let t = rep
                .SegmentTemplate
                .as_ref()
                .or(set.SegmentTemplate.as_ref())
                .expect("a SegmentTemplate");
            let ts = t.timescale.unwrap_or(1);
            let total =
                (mpd.mediaPresentationDuration.unwrap().as_secs_f64() * ts as f64).round() as u64;
            let mut segs = Vec::new();
            if let Some(tl) = &t.SegmentTimeline {
                let mut now = 0;
                for s in &tl.segments {
                    now = s.t.unwrap_or(now);
                    for _ in 0..=s.r.unwrap_or(0) {
                        segs.push((now, s.d));
                        now += s.d;
                    }
                }
            } else {
                let d = t.duration.unwrap() as u64;
                let mut now = 0;
                while now < total.saturating_sub(ts / 100) {
                    segs.push((now, d.min(total - now)));
                    now += d;
                }
            }
            out.push((rep.id.clone().unwrap(), ts, segs));
        }
    }
    out
}

#[test]
fn mpd_validates_against_the_dash_schema() {
    let f = fixture();
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dash-schema/DASH-MPD.xsd");
    let o = run(Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(&schema)
        .arg(f.library.join(ASSET).join("manifest.mpd")));
    assert!(
        o.status.success(),
        "xmllint: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn mpd_has_the_required_shape() {
    let m = mpd();
    assert_eq!(m.mpdtype.as_deref(), Some("static"));
    assert_eq!(
        m.profiles.as_deref(),
        Some("urn:mpeg:dash:profile:isoff-live:2011")
    );
    assert!(m.minBufferTime.is_some());
    let sets = &m.periods[0].adaptations;
    assert_eq!(sets.len(), 2, "one video and one audio AdaptationSet");
    let (v, a) = (&sets[0], &sets[1]);
    assert_eq!(v.contentType.as_deref(), Some("video"));
    assert_eq!((v.segmentAlignment, v.startWithSAP), (Some(true), Some(1)));
    let sizes: Vec<_> = v
        .representations
        .iter()
        .map(|r| (r.width, r.height))
        .collect();
    assert_eq!(sizes, [(Some(640), Some(360)), (Some(426), Some(240))]);
    for r in &v.representations {
        assert_eq!(r.frameRate.as_deref(), Some("25"));
        assert_eq!(r.sar.as_deref(), Some("1:1"));
        assert!(
            r.bandwidth.unwrap() > 50_000,
            "bandwidth measured: {:?}",
            r.bandwidth
        );
    }
    assert_eq!(a.contentType.as_deref(), Some("audio"));
    let ar = &a.representations[0];
    assert_eq!(ar.codecs.as_deref(), Some("mp4a.40.2"));
    assert_eq!(ar.audioSamplingRate.as_deref(), Some("48000"));
}

#[test]
fn segment_count_and_durations_match_the_source() {
    let f = fixture();
    let m = mpd();
    let total = m.mediaPresentationDuration.unwrap().as_secs_f64();
    assert!(
        (total - f.source_duration).abs() < 0.15,
        "MPD says {total} s, source is {} s",
        f.source_duration
    );
    for (id, ts, segs) in timelines(&m) {
        // 12 s at 4 s segments: 3 segments (audio may carry a sliver of a 4th frame run).
        assert_eq!(segs.len(), 3, "{id}: {segs:?}");
        let sum: u64 = segs.iter().map(|s| s.1).sum();
        let secs = sum as f64 / ts as f64;
        assert!(
            (secs - f.source_duration).abs() < 0.15,
            "{id}: {secs} s vs {}",
            f.source_duration
        );
        for (i, (_, d)) in segs.iter().enumerate().take(segs.len() - 1) {
            let d = *d as f64 / ts as f64;
            assert!((d - 4.0).abs() < 0.05, "{id} segment {} lasts {d} s", i + 1);
        }
        for n in 1..=segs.len() {
            assert!(f
                .library
                .join(ASSET)
                .join(&id)
                .join(format!("{n}.m4s"))
                .is_file());
        }
        assert!(!f
            .library
            .join(ASSET)
            .join(&id)
            .join(format!("{}.m4s", segs.len() + 1))
            .exists());
    }
}

#[test]
fn tfdt_is_continuous_and_matches_the_mpd() {
    let f = fixture();
    for (id, _, segs) in timelines(&mpd()) {
        let mut expected = 0;
        for (i, (start, d)) in segs.iter().enumerate() {
            let bytes = std::fs::read(
                f.library
                    .join(ASSET)
                    .join(&id)
                    .join(format!("{}.m4s", i + 1)),
            )
            .unwrap();
            let t = tfdt(&bytes);
            assert_eq!(
                t,
                expected,
                "{id} segment {}: tfdt {t}, previous ended at {expected}",
                i + 1
            );
            assert_eq!(
                t,
                *start,
                "{id} segment {}: tfdt differs from the MPD",
                i + 1
            );
            expected = t + d;
        }
    }
}

/// `avc1.PPCCLL` from ffprobe's profile and level of the segments themselves.
fn expected_avc1(profile: &str, level: u64) -> (String, String) {
    let p = match profile {
        "High" => 0x64,
        "Main" => 0x4d,
        "Baseline" | "Constrained Baseline" => 0x42,
        other => panic!("unexpected H.264 profile {other}"),
    };
    (format!("{p:02x}"), format!("{level:02x}"))
}

#[test]
fn codecs_strings_match_ffprobe_of_the_segments() {
    let f = fixture();
    let m = mpd();
    for set in &m.periods[0].adaptations {
        for rep in &set.representations {
            let id = rep.id.as_deref().unwrap();
            let dir = f.library.join(ASSET).join(id);
            let mut bytes = std::fs::read(dir.join("init.mp4")).unwrap();
            bytes.extend(std::fs::read(dir.join("1.m4s")).unwrap());
            let tmp = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(tmp.path(), &bytes).unwrap();
            let v = ffprobe_json(&["-show_streams"], tmp.path().to_str().unwrap());
            let s = &v["streams"][0];
            let codecs = rep.codecs.as_deref().unwrap();
            match s["codec_name"].as_str().unwrap() {
                "h264" => {
                    let (p, l) =
                        expected_avc1(s["profile"].as_str().unwrap(), s["level"].as_u64().unwrap());
                    assert!(codecs.starts_with("avc1."), "{id}: {codecs}");
                    assert_eq!(&codecs[5..7], p, "{id}: profile in {codecs}");
                    assert_eq!(&codecs[9..11], l, "{id}: level in {codecs}");
                    assert_eq!(rep.width, s["width"].as_u64());
                    assert!(
                        s["has_b_frames"].as_u64().unwrap() > 0,
                        "{id}: no B-frames to test with"
                    );
                    assert_eq!(rep.height, s["height"].as_u64());
                }
                "aac" => {
                    assert_eq!(s["profile"].as_str(), Some("LC"));
                    assert_eq!(codecs, "mp4a.40.2");
                    assert_eq!(s["sample_rate"].as_str(), Some("48000"));
                }
                other => panic!("{id}: unexpected codec {other}"),
            }
        }
    }
}

#[test]
fn every_representation_decodes_whole_and_starts_at_zero() {
    let f = fixture();
    for (id, _, segs) in timelines(&mpd()) {
        let dir = f.library.join(ASSET).join(&id);
        let mut bytes = std::fs::read(dir.join("init.mp4")).unwrap();
        for n in 1..=segs.len() {
            bytes.extend(std::fs::read(dir.join(format!("{n}.m4s"))).unwrap());
        }
        let tmp = tempfile::Builder::new().suffix(".mp4").tempfile().unwrap();
        std::fs::write(tmp.path(), &bytes).unwrap();
        let o = run(Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(tmp.path())
            .args(["-f", "null", "-"]));
        assert!(o.status.success());
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            "",
            "{id}: decode errors"
        );
        let d = ffprobe_duration(tmp.path());
        assert!(
            (d - f.source_duration).abs() < 0.15,
            "{id}: decodes {d} s of {}",
            f.source_duration
        );
        // The first presented frame/sample is at time 0 (edit lists and B-frames handled).
        let v = ffprobe_json(
            &["-show_entries", "frame=pts_time", "-read_intervals", "%+#3"],
            tmp.path().to_str().unwrap(),
        );
        let first = v["frames"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|fr| fr["pts_time"].as_str()?.parse::<f64>().ok())
            .fold(f64::MAX, f64::min);
        assert!(first.abs() < 0.001, "{id}: first frame at {first} s");
    }
}

/// Not H.264, not MP4, odd-sized and smaller than every rung, with a language tag: one
/// rendition at the source size made even, never upscaled, and the language in the MPD.
#[test]
fn any_video_in_small_odd_mkv_with_language() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("odd.mkv");
    dashcdn_testkit::Clip::new(5.0)
        .size(301, 171)
        .arg("-c:v")
        .arg("ffv1")
        .arg("-metadata:s:a:0")
        .arg("language=fra")
        .write(&src)
        .unwrap();
    let library = dir.path().join("library");
    let mut opts = dashcdn_origin::PackageOptions::new("odd", &library);
    opts.encode.progress = false;
    opts.encode.preset = "ultrafast".into();
    opts.segment_duration = 2.0;
    let done = dashcdn_origin::package(&src, &opts).unwrap();
    let ids: Vec<_> = done
        .summary
        .representations
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(ids, ["170p", "audio"]);

    let xml = std::fs::read_to_string(library.join("odd/manifest.mpd")).unwrap();
    let m = dash_mpd_core::parse(&xml).unwrap();
    let sets = &m.periods[0].adaptations;
    let v = &sets[0].representations[0];
    assert_eq!((v.width, v.height), (Some(300), Some(170)));
    assert_eq!(sets[1].lang.as_deref(), Some("fra"));
    // 5 s at 2 s segments: 2, 2, 1.
    let n = std::fs::read_dir(library.join("odd/170p")).unwrap().count();
    assert_eq!(n, 4, "init + 3 segments");
}

/// A 1 s 160x90 MKV with a font attachment, which is not packaged and must be named.
fn tiny_mkv_with_attachment(dir: &Path) -> std::path::PathBuf {
    let font = dir.join("font.ttf");
    std::fs::write(&font, b"not really a font").unwrap();
    let src = dir.join("tiny.mkv");
    dashcdn_testkit::Clip::new(1.0)
        .size(160, 90)
        .arg("-attach")
        .arg(font.to_str().unwrap())
        .arg("-metadata:s:t")
        .arg("mimetype=application/x-truetype-font")
        .write(&src)
        .unwrap();
    src
}

fn package_cmd(src: &Path, library: &Path, extra: &[&str]) -> std::process::Output {
    run(dashcdn()
        .args(["origin", "package"])
        .arg(src)
        .args(["--asset", "x", "--library"])
        .arg(library)
        .args(extra))
}

#[test]
fn options_are_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let src = tiny_mkv_with_attachment(dir.path());
    let library = dir.path().join("library");
    for (args, names) in [
        (&["--preset", "turbo"][..], "`turbo`"),
        (&["--segment-duration", "0.1"][..], "0.1"),
        (&["--ladder", "720p:fast"][..], "`720p:fast`"),
    ] {
        let o = package_cmd(&src, &library, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        // clap adds its "For more information, try '--help'." hint under a bad flag value.
        let lines = err
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
            .count();
        assert_eq!(lines, 1, "{args:?}: one line: {err}");
        assert!(err.contains(names), "{args:?}: {err}");
        assert!(!library.join("x").exists(), "{args:?}: nothing written");
    }
}

#[test]
fn rungs_above_the_source_and_unpackaged_streams_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let src = tiny_mkv_with_attachment(dir.path());
    let library = dir.path().join("library");
    let o = package_cmd(
        &src,
        &library,
        &[
            "-q",
            "--ladder",
            "4320p:9000k",
            "--preset",
            "ultrafast",
            "--segment-duration",
            "1",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("4320p:9000k") && err.contains("160x90"),
        "the dropped rung is named: {err}"
    );
    assert!(
        err.contains("stream #2 (attachment"),
        "the attachment is named: {err}"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("90p"), "one rung at the source's size: {out}");
}

fn ffmpeg_pids_under(path: &Path) -> Vec<u32> {
    let needle = path.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.starts_with("ffmpeg ") && cmd.contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

/// Alive and not a zombie waiting for a reaper.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

#[ignore = "slow: transcodes a 20 s clip and kills the packager"]
#[test]
fn a_killed_packager_takes_its_ffmpeg_along_and_the_next_run_cleans_up() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("long.mp4");
    dashcdn_testkit::Clip::new(20.0).write(&src).unwrap();
    let library = dir.path().join("library");
    let mut child = dashcdn()
        .args(["-q", "origin", "package"])
        .arg(&src)
        .args(["--asset", "long", "--preset", "slow", "--library"])
        .arg(&library)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let pids = loop {
        let p = ffmpeg_pids_under(&library);
        if !p.is_empty() {
            break p;
        }
        assert!(Instant::now() < deadline, "ffmpeg never started");
        assert!(child.try_wait().unwrap().is_none(), "packaging ended early");
        std::thread::sleep(Duration::from_millis(50));
    };
    // SIGKILL: no handler, no Drop; only the kernel's parent-death signal is left.
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "ffmpeg {pids:?} outlived the packager"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let staging = |lib: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(lib)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains(".tmp-package-"))
            .collect()
    };
    assert_eq!(staging(&library).len(), 1, "the dead run's staging folder");

    let short = tiny_mkv_with_attachment(dir.path());
    let o = run(dashcdn()
        .args(["-q", "origin", "package"])
        .arg(&short)
        .args(["--asset", "short", "--preset", "ultrafast", "--library"])
        .arg(&library));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(staging(&library).is_empty(), "{:?}", staging(&library));
}

#[ignore = "slow: packages the demo clip twice"]
#[test]
fn the_demo_repackages_when_its_source_differs_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let demo = |seconds: &str| -> String {
        let o = run(dashcdn()
            .args(["-q", "demo", "--no-serve", "--seconds", seconds, "--dir"])
            .arg(dir.path()));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let duration = || {
        let xml = std::fs::read_to_string(dir.path().join("library/demo/manifest.mpd")).unwrap();
        let m = dash_mpd_core::parse(&xml).unwrap();
        m.mediaPresentationDuration.unwrap().as_secs_f64()
    };
    let out = demo("2");
    assert!(
        out.starts_with("packaged ") && out.contains(" 2 s"),
        "{out}"
    );
    assert!((duration() - 2.0).abs() < 0.1);
    let out = demo("2");
    assert!(
        out.starts_with("already packaged ") && out.contains("nothing to do"),
        "{out}"
    );
    let out = demo("3");
    assert!(
        out.starts_with("packaged ") && out.contains(" 3 s"),
        "{out}"
    );
    assert!((duration() - 3.0).abs() < 0.1, "{}", duration());
}

/// A subtitle track is one WebVTT file the origin serves as `text/vtt` at the MPD's BaseURL.
#[tokio::test]
async fn the_origin_serves_a_subtitle_track_as_text_vtt() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tiny.mp4");
    dashcdn_testkit::Clip::new(1.0)
        .size(160, 90)
        .write(&src)
        .unwrap();
    let srt = dir.path().join("en.srt");
    std::fs::write(&srt, "1\n00:00:00,100 --> 00:00:00,900\nHello\n").unwrap();
    let library = dir.path().join("library");
    let o = package_cmd(
        &src,
        &library,
        &[
            "-q",
            "--preset",
            "ultrafast",
            "--segment-duration",
            "1",
            "--subtitles",
            &format!("{}:eng", srt.display()),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let xml = std::fs::read_to_string(library.join("x/manifest.mpd")).unwrap();
    let m = dash_mpd_core::parse(&xml).unwrap();
    let text = m.periods[0]
        .adaptations
        .iter()
        .find(|a| a.contentType.as_deref() == Some("text"))
        .expect("a text AdaptationSet");
    assert_eq!(text.lang.as_deref(), Some("eng"));
    let base = &text.representations[0].BaseURL[0].base;

    let origin = spawn_origin(&library).await;
    let r = reqwest::get(origin.url(&format!("/vod/x/{base}")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/vtt"), "{ct}");
    let body = r.text().await.unwrap();
    assert!(
        body.starts_with("WEBVTT") && body.contains("Hello"),
        "{body}"
    );
    let other = reqwest::get(origin.url("/vod/x/text-eng/other.vtt"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "only subtitles.vtt is served");
    origin.join().await;
}
