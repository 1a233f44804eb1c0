//! Packaged libraries shared by every test binary: packaging is the slow part of a test,
//! so a library is made once per (clip, ladder, segment duration, preset, packager source)
//! and kept under the target folder, where the next test binary — and the next
//! `cargo test` — finds it. A library is built in a temporary folder and renamed into
//! place, so a test killed mid-way never leaves a half library that others would use.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use dashcdn_origin::Clip;

/// A packaged library: `{library}/{asset}/manifest.mpd` and the segments, plus the source.
#[derive(Debug)]
pub struct Packaged {
    pub library: PathBuf,
    pub asset: String,
    /// The generated source clip the library was packaged from.
    pub source: PathBuf,
}

/// What to package (see [`packaged`]).
#[derive(Debug, Clone)]
pub struct Spec {
    pub asset: String,
    pub clip: Clip,
    pub ladder: String,
    pub segment_duration: f64,
    pub preset: String,
}

impl Spec {
    /// `asset` from a 12 s 640×360 clip with B-frames, `360p:800k,240p:400k`, 4 s segments,
    /// preset veryfast (which keeps B-frames, so composition offsets are exercised).
    pub fn new(asset: &str) -> Spec {
        Spec {
            asset: asset.into(),
            clip: Clip::new(12.0).arg("-bf").arg("3"),
            ladder: "360p:800k,240p:400k".into(),
            segment_duration: 4.0,
            preset: "veryfast".into(),
        }
    }

    fn key(&self) -> String {
        let mut h = DefaultHasher::new();
        format!("{self:?}").hash(&mut h);
        packager_source_hash().hash(&mut h);
        format!("{}-{:016x}", self.asset, h.finish())
    }
}

/// The library for `spec`, packaged on first use (in this process or any earlier one).
pub fn packaged(spec: Spec) -> &'static Packaged {
    static DONE: OnceLock<Mutex<HashMap<String, &'static Packaged>>> = OnceLock::new();
    let key = spec.key();
    let mut done = DONE.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = done.get(&key) {
        return p;
    }
    let dir = cache_root().join(&key);
    if !dir
        .join("library")
        .join(&spec.asset)
        .join("manifest.mpd")
        .exists()
    {
        build(&spec, &dir);
    }
    let p: &'static Packaged = Box::leak(Box::new(Packaged {
        library: dir.join("library"),
        asset: spec.asset.clone(),
        source: dir.join("source.mp4"),
    }));
    done.insert(key, p);
    p
}

fn build(spec: &Spec, dir: &Path) {
    let root = dir.parent().expect("cache root");
    std::fs::create_dir_all(root).unwrap();
    let tmp = tempfile_in(root);
    let source = tmp.join("source.mp4");
    spec.clip
        .write(&source)
        .unwrap_or_else(|e| panic!("{}", dashcdn_config::chain(&e)));
    let mut opts = dashcdn_origin::PackageOptions::new(&spec.asset, tmp.join("library"));
    opts.ladder = spec.ladder.parse().expect("a ladder");
    opts.segment_duration = spec.segment_duration;
    opts.encode.progress = false;
    opts.encode.preset = spec.preset.clone();
    dashcdn_origin::package(&source, &opts)
        .unwrap_or_else(|e| panic!("packaging the fixture: {}", dashcdn_config::chain(&e)));
    // Another process may have finished the same fixture meanwhile: theirs is as good.
    if std::fs::rename(&tmp, dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}

/// A fresh folder next to the cache entries (same file system, so rename is atomic).
fn tempfile_in(root: &Path) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = root.join(format!(".tmp-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// `target/<profile>/testkit-fixtures`, found from the running test executable
/// (`target/<profile>/deps/<test>`).
fn cache_root() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("a test binary under target/<profile>/deps");
    profile.join("testkit-fixtures")
}

/// Changes whenever the origin's source changes, so a fixture never outlives the packager
/// that made it.
fn packager_source_hash() -> u64 {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, files);
            } else {
                files.push(p);
            }
        }
    }
    let origin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../origin/src");
    let mut files = Vec::new();
    walk(&origin, &mut files);
    files.sort();
    let mut h = DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        std::fs::read(&f).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}
