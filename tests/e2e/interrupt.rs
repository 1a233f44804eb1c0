//! Ctrl-C in the middle of packaging leaves nothing half-visible, and the next run tidies up.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dashcdn_testkit::Clip;

use crate::util::*;

fn visible(library: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(library)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().into_string().unwrap())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[ignore = "slow: transcodes a 20 s clip"]
#[tokio::test]
async fn ctrl_c_mid_package_leaves_no_asset() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("long.mp4");
    Clip::new(20.0).write(&src).unwrap();
    let library = dir.path().join("library");

    // Its own process group, like a shell job: Ctrl-C reaches dashcdn and its ffmpeg.
    let mut child = dashcdn()
        .args(["-q", "origin", "package"])
        .arg(&src)
        .args(["--asset", "long", "--preset", "slow", "--library"])
        .arg(&library)
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let staging = loop {
        let found = std::fs::read_dir(&library).ok().and_then(|rd| {
            rd.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(".tmp-package-")
            })
        });
        // Wait until ffmpeg has written into staging, so the interrupt lands mid-transcode.
        if let Some(s) = found.filter(|s| snapshot(s).iter().any(|(_, b)| !b.is_empty())) {
            break s;
        }
        assert!(Instant::now() < deadline, "packaging never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "packaging ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let pgid = child.id() as i32;
    // `kill -INT -PGID` is misread by procps' kill as `kill(-1)` (everything); `-s INT --`
    // is the unambiguous form.
    assert!(pgid > 1);
    let kill =
        run(std::process::Command::new("kill").args(["-s", "INT", "--", &format!("-{pgid}")]));
    assert!(kill.status.success());
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "interrupted packaging must not report success"
    );

    assert_eq!(
        visible(&library),
        Vec::<String>::new(),
        "a half asset is visible"
    );
    let origin = spawn_origin(&library).await;
    let mpd = reqwest::get(origin.url("/vod/long/manifest.mpd"))
        .await
        .unwrap();
    assert_eq!(mpd.status(), 404);
    let list: serde_json::Value = reqwest::get(origin.url("/vod/"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["assets"].as_array().map(Vec::len), Some(0), "{list}");
    origin.join().await;

    // The next run removes the dead run's staging folder and publishes normally.
    let short = dir.path().join("short.mp4");
    Clip::new(2.0).write(&short).unwrap();
    let o = run(dashcdn()
        .args(["-q", "origin", "package"])
        .arg(&short)
        .args([
            "--asset",
            "short",
            "--preset",
            "ultrafast",
            "--ladder",
            "240p:300k",
            "--library",
        ])
        .arg(&library));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !staging.exists(),
        "stale staging folder {} remains",
        staging.display()
    );
    assert_eq!(visible(&library), ["short"]);
}
