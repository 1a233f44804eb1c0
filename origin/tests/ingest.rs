//! Real-world inputs through `package`: each made by ffmpeg here, small and short, then
//! checked with ffprobe/ffmpeg and the MPD read back. Transcodes of big frames, and the
//! filter-heavy ones (deinterlace, tone-map), are in the slow tier.

use std::path::{Path, PathBuf};
use std::process::Command;

use dash_mpd_core::MPD;
use dashcdn_origin::{package, PackageError, PackageOptions, Packaged, SubtitleFile};
use tempfile::TempDir;

/// Runs ffmpeg with `args` and fails the test with its stderr if it fails.
fn ff(args: &[&str]) {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(
        o.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn ffmpeg_stderr(args: &[&str]) -> String {
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ffprobe(args: &[&str], path: &Path) -> serde_json::Value {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

struct Out {
    _dir: TempDir,
    done: Packaged,
    mpd: MPD,
}

impl Out {
    fn asset(&self) -> &Path {
        &self.done.dir
    }

    /// `init.mp4` and every `{n}.m4s` of `rep` in order, as one playable file.
    fn concat(&self, rep: &str) -> PathBuf {
        let dir = self.asset().join(rep);
        let mut bytes = std::fs::read(dir.join("init.mp4")).unwrap();
        for n in 1.. {
            match std::fs::read(dir.join(format!("{n}.m4s"))) {
                Ok(b) => bytes.extend(b),
                Err(_) => break,
            }
        }
        let out = self.asset().join(format!("{rep}-whole.mp4"));
        std::fs::write(&out, bytes).unwrap();
        out
    }

    fn sets(&self, kind: &str) -> Vec<&dash_mpd_core::AdaptationSet> {
        self.mpd.periods[0]
            .adaptations
            .iter()
            .filter(|a| a.contentType.as_deref() == Some(kind))
            .collect()
    }
}

fn options(lib: &Path, ladder: &str) -> PackageOptions {
    let mut o = PackageOptions::new("a", lib);
    o.ladder = ladder.parse().unwrap();
    o.segment_duration = 1.0;
    o.encode.preset = "ultrafast".into();
    o.encode.progress = false;
    o
}

fn pack(input: &Path, ladder: &str, tweak: impl FnOnce(&mut PackageOptions)) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&dir.path().join("lib"), ladder);
    tweak(&mut o);
    let done = package(input, &o).unwrap_or_else(|e| panic!("package: {e}"));
    let mpd_path = done.dir.join("manifest.mpd");
    assert_schema_valid(&mpd_path);
    let mpd = dash_mpd_core::parse(&std::fs::read_to_string(&mpd_path).unwrap()).unwrap();
    Out {
        _dir: dir,
        done,
        mpd,
    }
}

fn assert_schema_valid(mpd: &Path) {
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/dash-schema/DASH-MPD.xsd");
    let o = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(&schema)
        .arg(mpd)
        .output()
        .expect("xmllint runs (apt-get install libxml2-utils)");
    assert!(
        o.status.success(),
        "xmllint: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(mpd).unwrap()
    );
}

/// A `seconds`-long testsrc2 clip of `size` at `rate` (an ffmpeg rate, e.g. `60000/1001`).
fn video_args(seconds: &str, size: &str, rate: &str) -> Vec<String> {
    vec![
        "-f".into(),
        "lavfi".into(),
        "-t".into(),
        seconds.into(),
        "-i".into(),
        format!("testsrc2=size={size}:rate={rate}"),
    ]
}

fn frames_decoded(file: &Path) -> u64 {
    let j = ffprobe(
        &[
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
        ],
        file,
    );
    j["streams"][0]["nb_read_frames"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_bad_preset_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    let mut o = options(&lib, "360p");
    o.encode.preset = "turbo".into();
    let e = package(Path::new("/nonexistent.mp4"), &o).unwrap_err();
    assert!(matches!(e, PackageError::BadPreset(_)));
    let msg = e.to_string();
    assert!(
        msg.contains("`turbo`") && msg.contains("veryfast") && !msg.contains('\n'),
        "{msg}"
    );
    assert!(!lib.exists(), "nothing may be written");
    o.encode.preset = "fast".into();
    o.segment_duration = 0.1;
    let e = package(Path::new("/nonexistent.mp4"), &o).unwrap_err();
    assert!(e.to_string().contains("0.1"), "{e}");
    assert!(!lib.exists());
}

#[test]
fn every_audio_language_gets_a_set_and_5_1_keeps_six_channels() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("langs.mp4");
    let mut args = video_args("2", "160x90", "25");
    args.extend(
        [
            "-f",
            "lavfi",
            "-t",
            "2",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-f",
            "lavfi",
            "-t",
            "2",
            "-i",
            "sine=frequency=660:sample_rate=48000",
            "-filter_complex",
            "[1:a]pan=5.1|FL=c0|FR=c0|FC=c0|LFE=c0|BL=c0|BR=c0[s]",
            "-map",
            "0:v",
            "-map",
            "[s]",
            "-map",
            "2:a",
            "-map",
            "2:a",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-ac:a:1",
            "2",
            "-metadata:s:a:0",
            "language=eng",
            "-metadata:s:a:1",
            "language=fra",
            "-metadata:s:a:2",
            "language=eng",
            "-metadata:s:a:2",
            "handler_name=Director's commentary",
            "-disposition:a:0",
            "default",
            "-disposition:a:2",
            "comment",
        ]
        .map(String::from),
    );
    args.push(src.to_string_lossy().into_owned());
    ff(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let out = pack(&src, "90p:200k", |_| {});
    let audio = out.sets("audio");
    let langs: Vec<_> = audio.iter().map(|a| a.lang.as_deref().unwrap()).collect();
    assert_eq!(langs, ["eng", "fra", "eng"]);
    let roles: Vec<_> = audio
        .iter()
        .map(|a| a.Role[0].value.as_deref().unwrap())
        .collect();
    assert_eq!(roles, ["main", "alternate", "commentary"]);
    assert_eq!(audio[2].Label[0].content, "Director's commentary");
    assert!(audio.iter().all(|a| !a.Label.is_empty()));
    let channels = |a: &dash_mpd_core::AdaptationSet| -> Vec<String> {
        a.representations
            .iter()
            .map(|r| r.AudioChannelConfiguration[0].value.clone().unwrap())
            .collect()
    };
    assert_eq!(channels(audio[0]), ["6", "2"]);
    assert_eq!(channels(audio[1]), ["2"]);
    // What the files hold, not what the MPD says.
    for (rep, want) in [
        (audio[0].representations[0].id.as_deref().unwrap(), 6),
        (audio[0].representations[1].id.as_deref().unwrap(), 2),
        (audio[1].representations[0].id.as_deref().unwrap(), 2),
    ] {
        let j = ffprobe(&["-show_entries", "stream=channels"], &out.concat(rep));
        assert_eq!(j["streams"][0]["channels"], want, "{rep}");
    }
}

#[test]
fn subtitles_in_the_input_and_a_sidecar_become_webvtt_sets() {
    let dir = tempfile::tempdir().unwrap();
    let srt = dir.path().join("eng.srt");
    std::fs::write(
        &srt,
        "1\n00:00:00,200 --> 00:00:01,000\nHello\n\n2\n00:00:01,200 --> 00:00:01,900\nWorld\n",
    )
    .unwrap();
    let vtt = dir.path().join("fr.vtt");
    std::fs::write(
        &vtt,
        "WEBVTT\n\n00:00:00.100 --> 00:00:00.900\nBonjour\n\n00:00:01.000 --> 00:00:01.800\nle monde\n\n00:00:01.850 --> 00:00:01.950\n!\n",
    )
    .unwrap();
    let font = dir.path().join("font.ttf");
    std::fs::write(&font, b"not really a font").unwrap();
    let src = dir.path().join("subs.mkv");
    let mut args = video_args("2", "160x90", "25");
    args.extend(["-i".into(), srt.to_string_lossy().into_owned()]);
    args.extend(
        [
            "-map",
            "0:v",
            "-map",
            "1:s",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:s",
            "srt",
            "-metadata:s:s:0",
            "language=eng",
            "-attach",
            font.to_str().unwrap(),
            "-metadata:s:t",
            "mimetype=application/x-truetype-font",
        ]
        .map(String::from),
    );
    args.push(src.to_string_lossy().into_owned());
    ff(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let sidecar: SubtitleFile = format!("{}:fra", vtt.display()).parse().unwrap();
    assert_eq!(sidecar.lang, "fra");
    let out = pack(&src, "90p:200k", |o| o.subtitles = vec![sidecar]);
    let text = out.sets("text");
    let langs: Vec<_> = text.iter().map(|a| a.lang.as_deref().unwrap()).collect();
    assert_eq!(langs, ["eng", "fra"]);
    for (set, cues) in text.iter().zip([2, 3]) {
        assert_eq!(set.mimeType.as_deref(), Some("text/vtt"));
        let rep = &set.representations[0];
        let file = out.asset().join(&rep.BaseURL[0].base);
        let body = std::fs::read_to_string(&file).unwrap();
        assert!(body.starts_with("WEBVTT"), "{body}");
        assert_eq!(body.matches(" --> ").count(), cues, "{body}");
    }
    assert!(
        std::fs::read_to_string(out.asset().join("text-eng/subtitles.vtt"))
            .unwrap()
            .contains("Hello")
    );
    // No audio in the input: no audio set.
    assert!(out.sets("audio").is_empty());
}

#[test]
fn a_missing_sidecar_is_named_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    let mut o = options(&lib, "360p");
    o.subtitles = vec!["/nope/missing.srt:eng".parse().unwrap()];
    let e = package(Path::new("/nonexistent.mp4"), &o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "subtitle file /nope/missing.srt: no such file"
    );
    assert!(!lib.exists());
}

fn assert_exact_rate(rate: &str, seconds: &str) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("rate.mp4");
    let mut args = video_args(seconds, "160x90", rate);
    args.extend(["-c:v", "libx264", "-preset", "ultrafast"].map(String::from));
    args.push(src.to_string_lossy().into_owned());
    ff(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let src_frames = frames_decoded(&src);
    let out = pack(&src, "90p:200k", |_| {});
    let v = &out.sets("video")[0].representations[0];
    assert_eq!(v.frameRate.as_deref(), Some(rate));
    let file = out.concat(v.id.as_deref().unwrap());
    assert_eq!(frames_decoded(&file), src_frames, "every frame is there");
    // ...and decodes without a complaint.
    let err = ffmpeg_stderr(&[
        "-v",
        "error",
        "-i",
        file.to_str().unwrap(),
        "-f",
        "null",
        "-",
    ]);
    assert!(err.trim().is_empty(), "{err}");
}

#[test]
fn frame_rate_59_94_is_exact() {
    assert_exact_rate("60000/1001", "2");
}

#[test]
fn frame_rate_23_976_is_exact() {
    assert_exact_rate("24000/1001", "2");
}

#[test]
#[ignore = "slow: transcodes a rotated clip and compares pictures"]
fn a_rotated_phone_video_comes_out_upright() {
    let dir = tempfile::tempdir().unwrap();
    let stored = dir.path().join("stored.mp4");
    let mut args = video_args("2", "640x360", "25");
    args.extend(["-c:v", "libx264", "-preset", "ultrafast"].map(String::from));
    args.push(stored.to_string_lossy().into_owned());
    ff(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let phone = dir.path().join("phone.mp4");
    ff(&[
        "-i",
        stored.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        phone.to_str().unwrap(),
    ]);
    let out = pack(&phone, "360p:800k,240p:400k", |_| {});
    let top = &out.sets("video")[0].representations[0];
    let (w, h) = (top.width.unwrap(), top.height.unwrap());
    assert!(w < h, "portrait: {w}x{h}");
    let aspect = w as f64 / h as f64;
    assert!((aspect / (360.0 / 640.0) - 1.0).abs() < 0.01, "{w}x{h}");
    assert_eq!(top.sar.as_deref(), Some("1:1"));
    let file = out.concat(top.id.as_deref().unwrap());
    // No rotation left in the output: what is stored is what is shown.
    let j = ffprobe(&["-show_streams"], &file);
    let s = &j["streams"][0];
    assert!(
        s["side_data_list"].is_null() && s["tags"]["rotate"].is_null(),
        "{s}"
    );
    // ffmpeg's own autorotation of the source is the reference picture.
    let err = ffmpeg_stderr(&[
        "-i",
        file.to_str().unwrap(),
        "-i",
        phone.to_str().unwrap(),
        "-lavfi",
        &format!("[1:v]scale={w}:{h},setsar=1[r];[0:v][r]psnr"),
        "-f",
        "null",
        "-",
    ]);
    let avg: f64 = err
        .split("average:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no PSNR in {err}"));
    assert!(avg >= 30.0, "PSNR {avg} dB");
}

#[test]
#[ignore = "slow: encodes 1080x1920"]
fn a_portrait_source_tops_out_at_its_own_size() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("portrait.mp4");
    let mut args = video_args("1", "1080x1920", "25");
    args.extend(["-c:v", "libx264", "-preset", "ultrafast"].map(String::from));
    args.push(src.to_string_lossy().into_owned());
    ff(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = pack(&src, "1080p:5000k,360p:800k", |_| {});
    let sizes: Vec<_> = out.sets("video")[0]
        .representations
        .iter()
        .map(|r| (r.id.clone().unwrap(), r.width.unwrap(), r.height.unwrap()))
        .collect();
    assert_eq!(
        sizes,
        [("1080p".into(), 1080, 1920), ("360p".into(), 360, 640)]
    );
}

/// Packages `src` and runs `idet` over the output: at least 95% progressive frames.
fn assert_comes_out_progressive(src: &Path) {
    let out = pack(src, "576p:1500k", |_| {});
    let rep = &out.sets("video")[0].representations[0];
    let file = out.concat(rep.id.as_deref().unwrap());
    let err = ffmpeg_stderr(&[
        "-i",
        file.to_str().unwrap(),
        "-vf",
        "idet",
        "-f",
        "null",
        "-",
    ]);
    // "Single frame detection: TFF: 0 BFF: 0 Progressive: 100 Undetermined: 0". The
    // multi-frame line lags by its hysteresis over the first frames; testsrc2's fast
    // motion is judged per frame.
    let line = err
        .lines()
        .find(|l| l.contains("Single frame detection"))
        .unwrap_or_else(|| panic!("no idet summary in {err}"));
    let num = |key: &str| -> f64 {
        line.split(key)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let (tff, bff, prog, und) = (
        num("TFF:"),
        num("BFF:"),
        num("Progressive:"),
        num("Undetermined:"),
    );
    let share = prog / (tff + bff + prog + und);
    assert!(share >= 0.95, "{}: {line}", src.display());
    let j = ffprobe(&["-show_entries", "stream=field_order"], &file);
    let fo = j["streams"][0]["field_order"]
        .as_str()
        .unwrap_or("progressive");
    assert_eq!(fo, "progressive");
}

/// 4 s of 50 fields/s woven into 25 interlaced frames, top field first, 704x576.
fn interlaced_args(codec: &[&str]) -> Vec<String> {
    let mut args = video_args("4", "704x576", "50");
    args.extend(["-vf", "tinterlace=interleave_top,fieldorder=tff"].map(String::from));
    args.extend(codec.iter().map(|s| s.to_string()));
    args
}

#[test]
#[ignore = "slow: deinterlaces with bwdif and runs idet"]
fn interlaced_input_comes_out_progressive() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tff.mp4");
    let mut args = interlaced_args(&[
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-flags",
        "+ilme+ildct",
        "-x264opts",
        "tff=1",
    ]);
    args.push(src.to_string_lossy().into_owned());
    ff(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let j = ffprobe(&["-show_entries", "stream=field_order"], &src);
    assert_eq!(
        j["streams"][0]["field_order"], "tt",
        "the input is flagged tff"
    );
    assert_comes_out_progressive(&src);
}

/// MPEG-4 Part 2 in AVI does not say how it was scanned: idet finds the fields.
#[test]
#[ignore = "slow: deinterlaces with idet + bwdif and runs idet"]
fn unflagged_interlaced_input_comes_out_progressive() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("fields.avi");
    let mut args = interlaced_args(&[
        "-c:v",
        "mpeg4",
        "-q:v",
        "3",
        "-flags",
        "+ilme+ildct",
        "-top",
        "1",
    ]);
    args.push(src.to_string_lossy().into_owned());
    ff(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let j = ffprobe(&["-show_entries", "stream=field_order"], &src);
    let fo = &j["streams"][0]["field_order"];
    assert!(
        fo.is_null() || fo == "unknown",
        "the input says nothing: {fo}"
    );
    assert_comes_out_progressive(&src);
}

#[test]
#[ignore = "slow: tone-maps 10-bit HLG through zscale"]
fn hdr_input_is_tone_mapped_to_sdr_bt709() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("hlg.mp4");
    let mut args = video_args("1", "320x180", "25");
    args.extend(
        [
            "-pix_fmt",
            "yuv420p10le",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-color_primaries",
            "bt2020",
            "-color_trc",
            "arib-std-b67",
            "-colorspace",
            "bt2020nc",
        ]
        .map(String::from),
    );
    args.push(src.to_string_lossy().into_owned());
    ff(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = pack(&src, "180p:300k", |_| {});
    let rep = &out.sets("video")[0].representations[0];
    let j = ffprobe(
        &[
            "-show_entries",
            "stream=pix_fmt,color_transfer,color_primaries,color_space",
        ],
        &out.concat(rep.id.as_deref().unwrap()),
    );
    let s = &j["streams"][0];
    assert_eq!(s["pix_fmt"], "yuv420p", "{s}");
    assert_eq!(s["color_transfer"], "bt709", "{s}");
    assert_eq!(s["color_primaries"], "bt709", "{s}");
    assert_eq!(s["color_space"], "bt709", "{s}");
    // Tone-mapped, not just re-tagged: the picture's mean luma moves away from what a plain
    // 10→8-bit conversion of the same HLG frame gives.
    let yavg = |file: &Path| -> f64 {
        let err = ffmpeg_stderr(&[
            "-i",
            file.to_str().unwrap(),
            "-vf",
            "format=yuv420p,signalstats,metadata=print:key=lavfi.signalstats.YAVG",
            "-frames:v",
            "1",
            "-f",
            "null",
            "-",
        ]);
        err.split("YAVG=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no YAVG in {err}"))
    };
    let (ours, naive) = (yavg(&out.concat(rep.id.as_deref().unwrap())), yavg(&src));
    assert!(
        (ours - naive).abs() > 0.15 * naive,
        "mean luma {ours} vs {naive} untouched"
    );
}

#[test]
fn a_sidecar_that_is_not_subtitles_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("v.mp4");
    let mut args = video_args("1", "160x90", "25");
    args.extend(["-c:v", "libx264", "-preset", "ultrafast"].map(String::from));
    args.push(src.to_string_lossy().into_owned());
    ff(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let junk = dir.path().join("notes.srt");
    std::fs::write(&junk, b"\x00\x01 this is not a subtitle file").unwrap();
    let lib = dir.path().join("lib");
    let mut o = options(&lib, "90p");
    o.subtitles = vec![format!("{}:eng", junk.display()).parse().unwrap()];
    let e = package(&src, &o).unwrap_err().to_string();
    assert!(
        e.contains("notes.srt") && e.contains("not a subtitle file"),
        "{e}"
    );
    assert!(!lib.join("a").exists());
}
