//! dash.js in a real browser: Debian's Chromium, headless, driven by playwright-core from
//! `player/web/test/play.mjs`, against a real origin on an ephemeral port.
//!
//! The script does the browser work and prints one `ok -`/`not ok -` line per check (see
//! its header); this test prepares the library, starts the origin, runs the script and
//! fails with its report. Node, Chromium and the npm packages are installed by
//! `scripts/setup.sh`; when one is missing the test fails saying so (it never skips).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use dashcdn_origin::{package, PackageOptions};
use dashcdn_testkit::Clip;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::util::*;

/// Asset names the script expects (its defaults).
const GOOD: &str = "abr";
const MALFORMED: &str = "malformed";
const INVALID: &str = "invalid";
const HOLES: &str = "holes";
/// Three rungs far apart, so "well under the lowest rung" cannot be mistaken for the
/// middle one, and 2 s segments so a 12 s clip still has six decisions to make.
const BROWSER_LADDER: &str = "360p:2000k,240p:700k,144p:150k";
/// The whole browser run takes ~45 s alone; this is only a hang guard.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(240);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where screenshots and report.json go: `target/artifacts/browser`.
pub(crate) fn artifact_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("artifacts/browser")
}

/// Fails, naming the fix, unless node, Chromium and the npm packages are all there.
pub(crate) fn require_browser_tools() {
    const SETUP: &str = "run scripts/setup.sh (CI does): it installs chromium and nodejs \
                         from Debian and runs `npm ci` in player/web";
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "the browser test needs node, which is not on PATH ({node:?}); {SETUP}"
    );
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "the browser test needs Debian's /usr/bin/chromium, which is missing; {SETUP}"
    );
    for package in ["playwright-core", "dashjs", "shaka-player"] {
        let dir = repo().join("player/web/node_modules").join(package);
        assert!(
            dir.join("package.json").is_file(),
            "the browser test needs the npm package {package} in {}; {SETUP}",
            dir.display()
        );
    }
}

/// A library with a good short clip, a copy whose MPD is truncated into junk, one whose
/// MPD is well-formed XML that describes nothing playable, and a copy missing segment 3 of
/// every video representation (audio is intact, so the failure is the video's wherever
/// ABR happens to be).
fn browser_library(root: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("browser-clip.mp4");
    Clip::new(12.0).write(&source).unwrap();
    let mut opts = PackageOptions::new(GOOD, root);
    opts.ladder = BROWSER_LADDER.parse().unwrap();
    opts.segment_duration = 2.0;
    opts.encode.progress = false;
    package(&source, &opts).expect("packaging the browser clip");

    let good = root.join(GOOD);
    copy_dir(&good, &root.join(MALFORMED));
    // A truncated MPD followed by junk: what a half-written or mangled file looks like.
    let mpd = std::fs::read(good.join("manifest.mpd")).unwrap();
    let mut broken = mpd[..mpd.len() / 3].to_vec();
    broken.extend_from_slice(b"\n]]> not xml <<\n");
    std::fs::write(root.join(MALFORMED).join("manifest.mpd"), broken).unwrap();

    copy_dir(&good, &root.join(INVALID));
    std::fs::write(
        root.join(INVALID).join("manifest.mpd"),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
         type=\"static\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\"><Period id=\"0\"/></MPD>\n",
    )
    .unwrap();

    copy_dir(&good, &root.join(HOLES));
    let mut removed = 0;
    for rep in ["360p", "240p", "144p"] {
        let segment = root.join(HOLES).join(rep).join("3.m4s");
        std::fs::remove_file(&segment)
            .unwrap_or_else(|e| panic!("removing {}: {e}", segment.display()));
        removed += 1;
    }
    assert_eq!(removed, 3);
}

#[ignore = "slow: headless Chromium"]
#[tokio::test(flavor = "multi_thread")]
async fn dashjs_plays_adapts_seeks_and_reports_errors_in_chromium() {
    require_browser_tools();
    let library = tempfile::tempdir().unwrap();
    let root = library.path().to_owned();
    tokio::task::spawn_blocking(move || browser_library(&root))
        .await
        .unwrap();
    let origin = spawn_origin(library.path()).await;
    let report = run_play_script(&origin.url(""), &artifact_dir(), None).await;
    origin.join().await;
    // The script's checks are the substance; make sure they all ran.
    let passed = report.iter().filter(|l| l.starts_with("ok -")).count();
    assert!(
        passed >= 25,
        "only {passed} checks ran:\n{}",
        report.join("\n")
    );
    assert!(
        artifact_dir().join("watch.png").is_file(),
        "no screenshot written"
    );
}

/// The same page through a `dashcdn edge` in front of the origin, as viewers use it: the
/// page, dash.js, `/time`, MPDs and segments all pass through the edge (the script fails if
/// any request leaves the edge's URL). The ABR and manual-quality phases are the origin
/// test's: they exercise dash.js, not the path.
#[ignore = "slow: headless Chromium"]
#[tokio::test(flavor = "multi_thread")]
async fn dashjs_plays_through_an_edge() {
    require_browser_tools();
    let library = tempfile::tempdir().unwrap();
    let root = library.path().to_owned();
    tokio::task::spawn_blocking(move || browser_library(&root))
        .await
        .unwrap();
    let origin = spawn_origin(library.path()).await;
    let edge = EdgeChild::start(&origin.url(""));
    let artifacts = artifact_dir().with_file_name("browser-edge");
    run_play_script(
        &format!("http://{}", edge.addr),
        &artifacts,
        Some("play,seek,errors"),
    )
    .await;
    drop(edge);
    origin.join().await;
}

/// `dashcdn edge` as a child process on an ephemeral port, killed on drop.
struct EdgeChild {
    child: std::process::Child,
    addr: String,
}

impl EdgeChild {
    fn start(upstream: &str) -> EdgeChild {
        use std::io::BufRead;
        let mut child = dashcdn()
            .args([
                "edge",
                "--listen",
                "127.0.0.1:0",
                "--pop",
                "browser",
                "--no-access-log",
            ])
            .args(["--upstream", upstream.trim_end_matches('/')])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting dashcdn edge");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps draining stderr after the address is found, so the edge never blocks on it.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':' | '[' | ']'))
                        .collect();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("dashcdn edge printed `listening on ADDR`");
        EdgeChild { child, addr }
    }
}

impl Drop for EdgeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `player/web/test/play.mjs BASE ARTIFACTS [--only=PHASES]`, echoing its lines, and
/// fails with its `not ok` lines unless every check passed. `base` may be an origin or an
/// edge in front of one (the library of [`browser_library`] behind it).
async fn run_play_script(base: &str, artifacts: &Path, only: Option<&str>) -> Vec<String> {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(repo().join("player/web/test/play.mjs"))
        .arg(base)
        .arg(artifacts)
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(only) = only {
        command.arg(format!("--only={only}"));
    }
    let mut child = command.spawn().expect("starting node");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut report = Vec::new();
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("{line}");
            report.push(line);
        }
        child.wait().await.unwrap()
    };
    let status = tokio::time::timeout(BROWSER_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("the browser test hung for {BROWSER_TIMEOUT:?}"));
    let failed: Vec<&str> = report
        .iter()
        .filter(|l| l.starts_with("not ok"))
        .map(String::as_str)
        .collect();
    assert!(
        status.success() && failed.is_empty(),
        "browser test against {base} failed ({status}):\n{}\nartifacts (screenshots, report.json) in {}",
        failed.join("\n"),
        artifacts.display()
    );
    report
}
