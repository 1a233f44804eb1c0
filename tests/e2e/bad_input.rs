//! Bad inputs get one clear error line naming the file and the reason, a non-zero exit,
//! and a library exactly as it was.

use std::path::{Path, PathBuf};

use dashcdn_testkit::Clip;

use crate::util::*;

struct Case {
    dir: tempfile::TempDir,
    library: PathBuf,
}

/// A library that already holds one asset, so "untouched" means something.
fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("library");
    std::fs::create_dir_all(library.join("existing/360p")).unwrap();
    std::fs::write(library.join("existing/manifest.mpd"), "<MPD/>").unwrap();
    std::fs::write(library.join("existing/360p/1.m4s"), b"segment").unwrap();
    Case { dir, library }
}

/// Runs `dashcdn origin package INPUT --asset new` and returns its stderr; asserts it
/// failed and left the library byte-for-byte as it was.
fn package_fails(c: &Case, input: &Path, extra: &[&str]) -> String {
    let before = snapshot(&c.library);
    let o = run(dashcdn()
        .args(["-q", "origin", "package"])
        .arg(input)
        .args(["--asset", "new", "--library"])
        .arg(&c.library)
        .args(extra));
    assert!(
        !o.status.success(),
        "packaging {} should fail",
        input.display()
    );
    assert_eq!(
        snapshot(&c.library),
        before,
        "library changed after a failed package"
    );
    String::from_utf8_lossy(&o.stderr).trim_end().to_string()
}

#[test]
fn missing_file() {
    let c = case();
    let p = c.dir.path().join("nope.mp4");
    assert_eq!(
        package_fails(&c, &p, &[]),
        format!("error: {}: no such file", p.display())
    );
}

#[test]
fn not_a_video() {
    let c = case();
    let p = c.dir.path().join("notes.mp4");
    std::fs::write(&p, "these are my notes, not a video\n").unwrap();
    assert_eq!(
        package_fails(&c, &p, &[]),
        format!(
            "error: {}: not a video ffmpeg can read (moov atom not found; Invalid data found when processing input)",
            p.display()
        )
    );
}

#[test]
fn a_directory() {
    let c = case();
    let p = c.dir.path().to_owned();
    assert_eq!(
        package_fails(&c, &p, &[]),
        format!("error: {}: is a directory, not a video file", p.display())
    );
}

#[test]
fn audio_only() {
    let c = case();
    let p = c.dir.path().join("song.m4a");
    Clip::new(2.0).video(false).write(&p).unwrap();
    assert_eq!(
        package_fails(&c, &p, &[]),
        format!(
            "error: {}: has no video stream (streams found: audio:aac)",
            p.display()
        )
    );
}

#[test]
fn truncated_without_its_index() {
    // ffmpeg writes the moov last by default: an upload cut short has no index at all.
    let c = case();
    let full = c.dir.path().join("full.mp4");
    Clip::new(4.0).write(&full).unwrap();
    let bytes = std::fs::read(&full).unwrap();
    let p = c.dir.path().join("cut.mp4");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(
        package_fails(&c, &p, &[]),
        format!(
            "error: {}: truncated or corrupt (moov atom not found; Invalid data found when processing input)",
            p.display()
        )
    );
}

#[test]
fn truncated_with_its_index_first() {
    // With +faststart the index survives and promises media that is not there: this is
    // only found while decoding, after the transcode has started writing.
    let c = case();
    let full = c.dir.path().join("full.mp4");
    Clip::new(8.0)
        .arg("-movflags")
        .arg("+faststart")
        .write(&full)
        .unwrap();
    let bytes = std::fs::read(&full).unwrap();
    let p = c.dir.path().join("cut.mp4");
    std::fs::write(&p, &bytes[..bytes.len() * 2 / 5]).unwrap();
    let err = package_fails(&c, &p, &["--ladder", "240p:300k", "--preset", "ultrafast"]);
    let want = format!(
        "error: {}: truncated or corrupt (the file ends early: ",
        p.display()
    );
    assert!(err.starts_with(&want), "got: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn existing_asset_needs_force() {
    let c = case();
    let p = c.dir.path().join("ok.mp4");
    Clip::new(2.0).write(&p).unwrap();
    let before = snapshot(&c.library);
    let o = run(dashcdn()
        .args(["-q", "origin", "package"])
        .arg(&p)
        .args(["--asset", "existing", "--library"])
        .arg(&c.library));
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim_end(),
        format!(
            "error: asset `existing` already exists in {}; pass --force to replace it",
            c.library.display()
        )
    );
    assert_eq!(snapshot(&c.library), before);

    // With --force the old asset is replaced whole, and no staging folder remains.
    let o = run(dashcdn()
        .args(["-q", "origin", "package"])
        .arg(&p)
        .args([
            "--asset",
            "existing",
            "--force",
            "--preset",
            "ultrafast",
            "--ladder",
            "240p:300k",
            "--library",
        ])
        .arg(&c.library));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(c.library.join("existing/240p/init.mp4").is_file());
    assert!(
        !c.library.join("existing/360p").exists(),
        "old asset's files remain"
    );
    let names: Vec<_> = std::fs::read_dir(&c.library)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["existing"]);
}

#[test]
fn hostile_asset_names_are_refused() {
    let c = case();
    let p = c.dir.path().join("ok.mp4");
    std::fs::write(&p, b"not read: the name is checked first").unwrap();
    for name in ["../escape", ".hidden", "a/b", ""] {
        let before = snapshot(&c.library);
        let o = run(dashcdn()
            .args(["-q", "origin", "package"])
            .arg(&p)
            .args(["--asset", name, "--library"])
            .arg(&c.library));
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).starts_with(&format!("error: asset name `{name}`")),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(snapshot(&c.library), before);
    }
    assert!(!c.dir.path().join("escape").exists());
}
