//! Helpers for the player's integration tests: generated media, in-process servers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use dashcdn_origin::{package, PackageOptions};

pub const ASSET: &str = "clip";
/// Three rungs far apart, so traces can tell them apart.
pub const LADDER: &str = "360p:1500k,240p:500k,180p:150k";
pub const CLIP_SECONDS: f64 = 8.0;

/// Runs ffmpeg, failing the test loudly.
pub fn ffmpeg(args: &[&str]) {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs (scripts/setup.sh installs it)");
    assert!(
        o.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A testsrc2 + sine clip.
pub fn clip(out: &Path, seconds: f64, audio: bool) {
    let t = seconds.to_string();
    let mut a = vec![
        "-f",
        "lavfi",
        "-t",
        &t,
        "-i",
        "testsrc2=size=640x360:rate=25",
    ];
    if audio {
        a.extend([
            "-f",
            "lavfi",
            "-t",
            &t,
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ]);
    }
    a.extend([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    ]);
    if audio {
        a.extend(["-c:a", "aac", "-b:a", "64k"]);
    }
    let out = out.to_str().unwrap();
    a.push(out);
    ffmpeg(&a);
}

/// The origin library every test shares, packaged once per test binary.
pub struct Library {
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn library() -> &'static Library {
    static L: OnceLock<Library> = OnceLock::new();
    L.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("source.mp4");
        clip(&src, CLIP_SECONDS, true);
        let root = dir.path().join("library");
        let mut opts = PackageOptions::new(ASSET, &root);
        opts.ladder = LADDER.parse().unwrap();
        opts.segment_duration = 1.0;
        opts.encode.progress = false;
        opts.encode.preset = "ultrafast".into();
        package(&src, &opts).expect("packaging the generated clip");
        Library { root, _dir: dir }
    })
}

/// ffmpeg dash-muxer outputs of one clip, in several addressing modes, plus hand-written
/// MPDs over ffmpeg's files for what its muxer does not write (SegmentBase, periods).
pub struct FfmpegDash {
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

fn dash(dir: &Path, extra: &[&str], audio: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.parent().unwrap().join("src.mp4");
    let mpd = dir.join("manifest.mpd");
    let mut a: Vec<&str> = vec!["-i", src.to_str().unwrap(), "-map", "0:v", "-map", "0:v"];
    if audio {
        a.extend(["-map", "0:a"]);
    }
    a.extend([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-b:v:0",
        "150k",
        "-b:v:1",
        "600k",
        "-s:v:0",
        "320x180",
        "-g",
        "25",
        "-keyint_min",
        "25",
        "-sc_threshold",
        "0",
        "-seg_duration",
        "1",
    ]);
    if audio {
        a.extend([
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-adaptation_sets",
            "id=0,streams=v id=1,streams=a",
        ]);
    } else {
        a.extend(["-adaptation_sets", "id=0,streams=v"]);
    }
    a.extend(extra);
    a.extend(["-f", "dash", mpd.to_str().unwrap()]);
    ffmpeg(&a);
}

/// Top-level boxes of an MP4 file: (type, offset, size).
pub fn top_boxes(data: &[u8]) -> Vec<([u8; 4], usize, usize)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 8 <= data.len() {
        let size = u32::from_be_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        let ty: [u8; 4] = data[off + 4..off + 8].try_into().unwrap();
        if size < 8 {
            break;
        }
        out.push((ty, off, size));
        off += size;
    }
    out
}

pub fn ffmpeg_dash() -> &'static FfmpegDash {
    static F: OnceLock<FfmpegDash> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        clip(&root.join("src.mp4"), 5.0, true);
        // SegmentTemplate + SegmentTimeline, $Number%05d$ (ffmpeg's default).
        dash(&root.join("timeline"), &[], true);
        // SegmentTemplate@duration, no timeline.
        dash(&root.join("duration"), &["-use_timeline", "0"], true);
        // $Time$ addressing.
        dash(&root.join("time"), &["-media_seg_name", "c-$RepresentationID$-$Time$.m4s"], false);
        // One file per representation: SegmentList with media ranges; a global sidx.
        dash(
            &root.join("single"),
            &["-single_file", "1", "-use_template", "0", "-global_sidx", "1"],
            false,
        );
        // SegmentBase over the single files: the sidx finds the segments.
        let mut reps = String::new();
        for (i, bw) in [(0, 150_000), (1, 600_000)] {
            let name = format!("manifest-stream{i}.mp4");
            let data = std::fs::read(root.join("single").join(&name)).unwrap();
            let boxes = top_boxes(&data);
            let moov = boxes.iter().find(|b| &b.0 == b"moov").expect("moov");
            let sidx = boxes.iter().find(|b| &b.0 == b"sidx").expect("global sidx");
            reps.push_str(&format!(
                r#"<Representation id="v{i}" mimeType="video/mp4" codecs="avc1.42c01e" bandwidth="{bw}"><BaseURL>{name}</BaseURL><SegmentBase indexRange="{}-{}"><Initialization range="0-{}"/></SegmentBase></Representation>"#,
                sidx.1,
                sidx.1 + sidx.2 - 1,
                moov.1 + moov.2 - 1
            ));
        }
        let base = format!(
            r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" mediaPresentationDuration="PT5S" minBufferTime="PT2S"><Period id="0"><AdaptationSet mimeType="video/mp4" contentType="video">{reps}</AdaptationSet></Period></MPD>"#
        );
        std::fs::write(root.join("single").join("segmentbase.mpd"), base).unwrap();
        // Two periods: ffmpeg's timeline output, then its duration output (BaseURL per period).
        let period = |id: &str, start: &str, dir: &str| -> String {
            let text = std::fs::read_to_string(root.join(dir).join("manifest.mpd")).unwrap();
            let p0 = text.find("<Period").unwrap();
            let p1 = text.find("</Period>").unwrap() + "</Period>".len();
            let inner = &text[p0..p1];
            let open_end = inner.find('>').unwrap();
            format!(
                r#"<Period id="{id}" start="{start}" duration="PT5S"><BaseURL>{dir}/</BaseURL>{}"#,
                &inner[open_end + 1..]
            )
        };
        let multi = format!(
            r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" profiles="urn:mpeg:dash:profile:isoff-live:2011" mediaPresentationDuration="PT10S" minBufferTime="PT2S">{}{}</MPD>"#,
            period("a", "PT0S", "timeline"),
            period("b", "PT5S", "duration")
        );
        std::fs::write(root.join("multi.mpd"), multi).unwrap();
        FfmpegDash { root, _dir: dir }
    })
}

/// A server on an ephemeral loopback port; stops when dropped or shut down.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Serves `app` on `addr` (port 0 for any).
pub async fn serve_on(addr: &str, app: axum::Router) -> Server {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Server {
        addr,
        stop: Some(tx),
        task: Some(task),
    }
}

pub fn origin_router(library: &Path) -> axum::Router {
    let cfg = dashcdn_origin::ServeConfig {
        library: library.to_owned(),
        ..Default::default()
    };
    dashcdn_origin::router(dashcdn_origin::AppState::new(&cfg).unwrap())
}

/// Our origin serving the shared library.
pub async fn spawn_origin() -> Server {
    serve_on("127.0.0.1:0", origin_router(&library().root)).await
}

/// A plain static file server (tower-http ServeDir) over `dir`.
pub async fn spawn_static(dir: &Path) -> Server {
    let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
    serve_on("127.0.0.1:0", app).await
}

pub fn manifest_path() -> String {
    format!("/vod/{ASSET}/manifest.mpd")
}
