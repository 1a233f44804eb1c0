//! The multi-region deployment: the compose file is valid, and the network-namespace
//! simulation routes every region's viewer to its own edge through one shield.

use std::path::Path;

use crate::util::{fixture, run, ASSET};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `docker-compose config` (Debian's compose, installed by scripts/setup.sh) parses and
/// resolves deploy/compose.yaml without a Docker engine.
#[test]
fn compose_file_is_valid() {
    let out = run(std::process::Command::new("docker-compose")
        .current_dir(repo())
        .args(["-f", "deploy/compose.yaml", "config"]));
    assert!(
        out.status.success(),
        "docker-compose config rejected deploy/compose.yaml (run scripts/setup.sh if it is missing): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = String::from_utf8_lossy(&out.stdout);
    for service in [
        "origin:",
        "shield:",
        "geodns:",
        "edge-eu-west:",
        "edge-us-west:",
        "edge-ap-east:",
        "client-eu-west:",
        "client-us-west:",
        "client-ap-east:",
    ] {
        assert!(cfg.contains(service), "compose config lacks {service}");
    }
    assert!(cfg.contains("NET_ADMIN"), "WAN delay needs NET_ADMIN");
    // The geodns config the containers use parses as ours.
    let geodns = repo().join("deploy/compose/geodns.toml");
    dashcdn_geodns::GeodnsConfig::load(&geodns)
        .unwrap_or_else(|e| panic!("{}: {e}", geodns.display()));
}

/// The whole simulation in network namespaces (root only; CI runs as root): clients in three
/// regions land on their own edge, the origin sees about one request per object, and when
/// eu-west's edge dies its viewer is sent to another region and still finishes.
#[test]
fn netns_simulation_routes_regions_and_fails_over() {
    let f = fixture();
    let out_dir = tempfile::tempdir().unwrap();
    let out = run(std::process::Command::new("bash")
        .arg(repo().join("deploy/netns/sim.sh"))
        .arg("--dashcdn")
        .arg(env!("CARGO_BIN_EXE_dashcdn"))
        .arg("--library")
        .arg(&f.library)
        .args(["--asset", ASSET])
        .arg("--out")
        .arg(out_dir.path()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sim failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out_dir.path().join("results.json")).expect("results.json"),
    )
    .unwrap();
    let rows = results["rows"].as_array().unwrap();
    for region in ["eu-west", "us-west", "ap-east"] {
        let row = rows
            .iter()
            .find(|r| r["phase"] == "steady" && r["region"] == region)
            .unwrap_or_else(|| panic!("no row for {region}:\n{stdout}"));
        assert_eq!(
            row["edge"], region,
            "{region}'s viewer went elsewhere:\n{stdout}"
        );
        assert!(
            row["summary"]["segments"].as_u64().unwrap_or(0) > 0,
            "{row}"
        );
        assert!(
            row["avg_bitrate_kbps"].as_f64().unwrap_or(0.0) > 0.0,
            "{row}"
        );
    }
    // Three regions, one shield: each object reaches the origin about once (the MPD may be
    // revalidated when its short max-age runs out).
    let objects = results["origin"]["objects"].as_u64().unwrap();
    let requests = results["origin"]["origin_requests"].as_u64().unwrap();
    assert!(
        requests > 0 && requests <= objects + 3,
        "origin saw {requests} requests for {objects} objects"
    );
    let failover = rows
        .iter()
        .find(|r| r["phase"] == "failover")
        .unwrap_or_else(|| panic!("no failover row:\n{stdout}"));
    assert_ne!(
        failover["edge"], "eu-west",
        "a dead edge stayed in the answers:\n{stdout}"
    );
    assert!(failover["summary"]["segments"].as_u64().unwrap_or(0) > 0);
    assert!(out_dir.path().join("chart.svg").exists());
}
