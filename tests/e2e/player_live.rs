//! `dashcdn player` on a live channel as a viewer meets it: the name resolved by geodns
//! (the KingCDN CNAME chain to the nearest healthy PoP), the MPD, the server clock and the
//! segments in progress through an edge, for 20 s; the summary reports live latency.

use std::time::Duration;

use dashcdn_origin::live::{Input, LiveConfig, Rung};
use dashcdn_testkit::{answers_ok, origin, spawn_edge, spawn_geodns};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a real-time live encoder and a 20 s player session"]
async fn the_player_plays_live_through_geodns_and_an_edge_and_reports_latency() {
    let library = tempfile::tempdir().unwrap();
    let mut ch = LiveConfig::new("t", Input::Testsrc);
    ch.ladder = vec![
        Rung::video("v0", 426, 240, 400),
        Rung::video("v1", 256, 144, 150),
        Rung::audio("a0", 32),
    ];
    ch.window = Duration::from_secs(30);
    let origin = origin(library.path()).config(|c| c.live = vec![ch]).await;
    let edge = spawn_edge().upstream(origin.addr).pop("eu-west").await;

    // geodns as the demo runs it, with the London PoP at our edge (a viewer on
    // 127.0.0.1 is in no coverage zone and gets the default PoP, eu-west).
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("geodns/example.toml"),
    )
    .unwrap();
    let mut cfg = dashcdn_geodns::GeodnsConfig::from_toml(&example).unwrap();
    cfg.metrics = None;
    cfg.maxmind = None;
    for pop in &mut cfg.pops {
        if pop.name == "eu-west" {
            pop.ipv4 = vec![[127, 0, 0, 1].into()];
            pop.ipv6.clear();
            pop.health_url = Some(edge.url("/_edge/healthz"));
        }
    }
    let dns = spawn_geodns(cfg).await;

    let mpd = edge.url("/live/t/manifest.mpd");
    answers_ok(&mpd, Duration::from_secs(20)).await;

    // On air long enough that the live edge minus the target is inside the stream.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let url = format!(
        "http://video.netcinema.test:{}/live/t/manifest.mpd",
        edge.addr.port()
    );
    let dns_addr = dns.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        crate::util::dashcdn()
            .args(["player", &url, "--dns", &dns_addr])
            .args(["--live-seconds", "20", "--json", "--no-progress", "-q"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "player failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON summary");
    let mean = s["live_latency_s"].as_f64().expect("live_latency_s");
    let p95 = s["live_latency_p95_s"]
        .as_f64()
        .expect("live_latency_p95_s");
    assert!(mean > 0.0 && mean < 4.0, "mean live latency {mean}: {s}");
    // A p95 lies within the samples, not necessarily above their mean (one late sample
    // lifts the mean over a p95 of otherwise equal ones).
    let (lo, hi) = (
        s["live"]["latency_min_s"].as_f64().unwrap(),
        s["live"]["latency_max_s"].as_f64().unwrap(),
    );
    assert!((lo..=hi).contains(&p95) && p95 < 6.0, "p95 {p95}: {s}");
    let segments = s["segments"].as_u64().unwrap();
    eprintln!("through geodns and an edge: live latency {mean:.3} s mean, {p95:.3} s p95, {segments} segments");
    assert!(segments >= 7, "20 s of 2 s segments: {s}");
    assert!(
        s["live"]["in_progress_segments"].as_u64().unwrap() >= 5,
        "segments read while produced: {s}"
    );
    // Every download went through the edge (its Via names the PoP) and some were cache
    // verdicts of its own.
    let edges = s["edges"].as_object().unwrap();
    assert_eq!(edges.len(), 1, "one edge served: {s}");
    assert!(
        edges.keys().next().unwrap().contains("eu-west"),
        "served by the eu-west edge: {s}"
    );
    assert!(!s["cache"].as_object().unwrap().is_empty(), "{s}");
    dns.join().await;
    edge.join().await;
    origin.join().await;
}
