//! A live channel (real ffmpeg, testsrc) on the origin, through an edge: many viewers
//! on the segment in progress cost one origin request and each gets the chunks as they
//! are produced; a segment asked for before it exists is served soon after it does.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashcdn_origin::live::{Input, LiveConfig, Rung};
use dashcdn_testkit::{client, origin, spawn_edge, Server};

const SEGMENT: f64 = 2.0;
const CHUNK: f64 = 0.5;

/// One small rung and audio, so the encoder costs a few % of a core.
fn light(name: &str) -> LiveConfig {
    let mut c = LiveConfig::new(name, Input::Testsrc);
    c.ladder = vec![Rung::video("v0", 256, 144, 150), Rung::audio("a0", 32)];
    c.window = Duration::from_secs(30);
    c
}

/// The origin with channel `t`, and its (empty) library folder.
async fn live_origin() -> (Server, tempfile::TempDir) {
    let library = tempfile::tempdir().unwrap();
    let server = origin(library.path())
        .config(|c| c.live = vec![light("t")])
        .await;
    (server, library)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// availabilityStartTime (Unix seconds) of the channel's MPD, fetched through `via`.
async fn availability_start(via: &Server) -> f64 {
    let r = via.get("/live/t/manifest.mpd").await;
    assert_eq!(r.status(), 200);
    let mpd = dash_mpd_core::parse(&r.text().await.unwrap()).expect("MPD parses");
    mpd.availabilityStartTime
        .expect("availabilityStartTime")
        .timestamp_millis() as f64
        / 1000.0
}

async fn segment_requests(origin: &Server) -> f64 {
    origin
        .metric(r#"dashcdn_origin_http_requests_total{route="segment""#)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a real-time encoder for about 8 s"]
async fn fifty_viewers_on_the_segment_in_progress_cost_one_origin_request() {
    let (origin, _library) = live_origin().await;
    let edge = spawn_edge().upstream(origin.addr).await;
    let ast = availability_start(&edge).await;
    // The next segment: every viewer asks before it exists, so all of them wait on the
    // same fill, which the origin streams as the encoder produces it.
    let n = ((unix_now() - ast) / SEGMENT).floor() as u64 + 1;
    let before = segment_requests(&origin).await;
    let url = edge.url(&format!("/live/t/v0/{n}.m4s"));
    let http = client();
    let viewers: Vec<_> = (0..50)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let mut r = http.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let mut body = Vec::new();
                let mut first_at = None;
                let mut pieces = 0;
                while let Some(c) = r.chunk().await.unwrap() {
                    first_at.get_or_insert_with(unix_now);
                    body.extend_from_slice(&c);
                    pieces += 1;
                }
                (body, first_at.unwrap(), unix_now(), pieces)
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for v in viewers {
        bodies.push(v.await.unwrap());
    }
    let due = ast + n as f64 * SEGMENT + CHUNK;
    for (body, first_at, done_at, pieces) in &bodies {
        assert_eq!(body, &bodies[0].0, "every viewer gets the same bytes");
        assert!(
            *first_at - due < CHUNK + 0.2,
            "first chunk {:.3} s after it was due",
            first_at - due
        );
        assert!(
            done_at - first_at > SEGMENT - 2.0 * CHUNK,
            "streamed as produced ({pieces} pieces in {:.3} s)",
            done_at - first_at
        );
    }
    assert!(bodies[0].0.len() > 1000);
    let after = segment_requests(&origin).await;
    assert_eq!(after - before, 1.0, "one origin request for 50 viewers");

    // A later viewer gets the cached copy, complete, without another origin request.
    let r = edge.get(&format!("/live/t/v0/{n}.m4s")).await;
    assert_eq!(r.bytes().await.unwrap(), bodies[0].0);
    assert_eq!(segment_requests(&origin).await, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a real-time encoder for about 10 s"]
async fn in_progress_segment_through_the_edge_and_a_future_404_not_kept() {
    let (origin, _library) = live_origin().await;
    let edge = spawn_edge().upstream(origin.addr).await;
    let ast = availability_start(&edge).await;

    // The segment in progress: its first bytes come at once, well within one chunk.
    let current = ((unix_now() - ast) / SEGMENT).floor() as u64;
    let t0 = Instant::now();
    let mut r = client()
        .get(edge.url(&format!("/live/t/v0/{current}.m4s")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.chunk().await.unwrap().expect("bytes");
    let ttfb = t0.elapsed();
    assert!(
        ttfb < Duration::from_millis(700),
        "TTFB {ttfb:?} ≥ chunk + 200 ms"
    );
    drop(r);

    // Three segments ahead: 404 at once, and the miss is not kept once it exists.
    let future = current + 3;
    let path = format!("/live/t/v0/{future}.m4s");
    let t0 = Instant::now();
    let r = edge.get(&path).await;
    assert_eq!(r.status(), 404);
    assert!(t0.elapsed() < Duration::from_millis(500));
    let due = ast + future as f64 * SEGMENT + CHUNK;
    let wait = due - unix_now() - 0.1;
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
    loop {
        let r = edge.get(&path).await;
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 404);
        assert!(
            unix_now() < due + CHUNK,
            "segment {future} still 404 through the edge {:.3} s after it was due",
            unix_now() - due
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = unix_now() - due;
    assert!(late < CHUNK, "served {late:.3} s after it was due");

    // The edge keeps the dynamic MPD no longer than its max-age (1 s): two reads 1.5 s
    // apart carry different publishTimes.
    let publish = |xml: String| {
        let m = dash_mpd_core::parse(&xml).expect("MPD parses");
        m.publishTime.expect("publishTime").timestamp_millis()
    };
    let a = publish(edge.get("/live/t/manifest.mpd").await.text().await.unwrap());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = publish(edge.get("/live/t/manifest.mpd").await.text().await.unwrap());
    assert!(b > a, "the edge served a stale MPD ({a} then {b})");
}

/// dash.js in headless Chromium plays the channel through a shield and an edge for 60 s
/// in low-latency mode (`player/web/live-test.mjs`): median live latency ≤ 2 s, no
/// `waiting` after start, frames keep being decoded, every request to the edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: headless Chromium for 60 s on a live channel"]
async fn dashjs_low_latency_through_shield_and_edge() {
    crate::browser::require_browser_tools();
    let (origin, _library) = live_origin().await;
    let shield = spawn_edge().pop("shield").upstream(origin.addr).await;
    let edge = spawn_edge().pop("edge").parent(shield.addr).await;
    let artifacts = crate::browser::artifact_dir().with_file_name("browser-live");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = tokio::process::Command::new("node")
        .arg(repo.join("player/web/live-test.mjs"))
        .arg(edge.url(""))
        .arg("/live/t/manifest.mpd")
        .arg(&artifacts)
        .arg("--seconds=60")
        .current_dir(repo)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the live browser test hung")
        .expect("node runs");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success() && !report.contains("not ok"),
        "live browser test failed ({}):\n{report}\n{}\nartifacts in {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        artifacts.display()
    );
    assert!(report.contains("ok - median live latency"), "{report}");
}

/// Shaka Player, the other DASH player people use, plays the same channel through a
/// shield and an edge in its low-latency mode (`player/web/test/shaka-live.mjs`): the
/// playhead advances with the clock, frames are decoded, no Shaka error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: headless Chromium for 20 s on a live channel"]
async fn shaka_plays_the_live_channel_through_shield_and_edge() {
    crate::browser::require_browser_tools();
    let (origin, _library) = live_origin().await;
    let shield = spawn_edge().pop("shield").upstream(origin.addr).await;
    let edge = spawn_edge().pop("edge").parent(shield.addr).await;
    let artifacts = crate::browser::artifact_dir().with_file_name("browser-shaka-live");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = tokio::process::Command::new("node")
        .arg(repo.join("player/web/test/shaka-live.mjs"))
        .arg(edge.url(""))
        .arg("/live/t/manifest.mpd")
        .arg(&artifacts)
        .arg("--seconds=20")
        .current_dir(repo)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the Shaka live test hung")
        .expect("node runs");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success() && !report.contains("not ok"),
        "Shaka live test failed ({}):\n{report}\n{}\nartifacts in {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        artifacts.display()
    );
    assert!(report.contains("ok - playback advances"), "{report}");
}

/// With `prefetch_segments = 1`, a viewer's request for segment n makes the edge ask the
/// origin for n+1 at once; the origin holds that request open until the encoder starts
/// n+1, so the viewer's own request for n+1 joins a fill that is already running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a real-time encoder for about 8 s"]
async fn edge_prefetch_of_the_next_live_segment_is_already_waiting() {
    let (origin, _library) = live_origin().await;
    let edge = spawn_edge()
        .upstream(origin.addr)
        .config(|c| c.prefetch_segments = 1)
        .await;
    let ast = availability_start(&edge).await;
    let n = ((unix_now() - ast) / SEGMENT).floor() as u64;
    let before = segment_requests(&origin).await;
    let mut r = client()
        .get(edge.url(&format!("/live/t/v0/{n}.m4s")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // While n is still being produced, the edge has already started the fill for n+1
    // (the origin holds it open until the encoder starts n+1).
    let edge_ref = &edge;
    dashcdn_testkit::eventually(
        "the edge prefetches n+1",
        Duration::from_millis(1500),
        || async move { edge_ref.metric("dashcdn_edge_prefetches").await >= 1.0 },
    )
    .await;
    while r.chunk().await.unwrap().is_some() {}
    let t0 = Instant::now();
    let mut r = client()
        .get(edge.url(&format!("/live/t/v0/{}.m4s", n + 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.chunk().await.unwrap().expect("bytes");
    assert!(
        t0.elapsed() < Duration::from_millis(700),
        "{:?}",
        t0.elapsed()
    );
    while r.chunk().await.unwrap().is_some() {}
    let after = segment_requests(&origin).await;
    // n, n+1 (prefetched while n was served), n+2 (prefetched while n+1 was): the viewer's
    // own request for n+1 cost nothing upstream.
    assert!(
        after - before <= 3.0,
        "origin segment requests: {}",
        after - before
    );
}
