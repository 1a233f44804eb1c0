//! The edge cache as its own `dashcdn edge` process: real media through it, and its
//! memory bound measured as the process's resident set.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};

use crate::util::*;

/// A `dashcdn edge` child process, killed on drop.
struct EdgeProcess {
    child: Child,
    addr: SocketAddr,
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `dashcdn edge` on an ephemeral port and reads the port from its
/// `listening on ADDR` log line.
fn start_edge(upstream: SocketAddr, extra: &[&str]) -> EdgeProcess {
    let mut child = dashcdn()
        .args([
            "edge",
            "--listen",
            "127.0.0.1:0",
            "--pop",
            "e2e",
            "--no-access-log",
        ])
        .arg("--upstream")
        .arg(format!("http://{upstream}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dashcdn edge");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap().to_string();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("edge printed its address")
        .parse()
        .unwrap();
    EdgeProcess { child, addr }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// VmRSS and VmHWM (peak) of a process, in bytes.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread")]
async fn ffprobe_plays_the_packaged_clip_through_the_edge() {
    let f = fixture();
    let origin = spawn_origin(&f.library).await;
    let edge = start_edge(origin.addr, &["--cache-size", "64MiB"]);
    let url = format!("http://{}/vod/{ASSET}/manifest.mpd", edge.addr);
    let probe_url = url.clone();
    let v = tokio::task::spawn_blocking(move || {
        ffprobe_json(&["-show_entries", "stream=codec_type"], &probe_url)
    })
    .await
    .unwrap();
    assert_eq!(v["streams"].as_array().unwrap().len(), 3, "{v}");
    let r = http().get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(r.headers()["via"], "1.1 e2e");
    origin.join().await;
}

/// A library of `count` distinct segment paths of `size` bytes, as hard links of one
/// file so the disk holds one copy.
fn big_library(dir: &Path, count: usize, size: usize) {
    let rep = dir.join("big").join("v0");
    std::fs::create_dir_all(&rep).unwrap();
    let first = rep.join("1.m4s");
    let bytes: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    std::fs::write(&first, bytes).unwrap();
    for n in 2..=count {
        std::fs::hard_link(&first, rep.join(format!("{n}.m4s"))).unwrap();
    }
}

/// Fills the edge with 8x its `--cache-size` of 1 MiB segments and checks that the
/// resident set (current and peak) stays within the stated margin of it.
#[ignore = "slow: fills 8x the cache and measures RSS"]
#[tokio::test(flavor = "multi_thread")]
async fn rss_stays_within_cache_size_plus_margin() {
    const CACHE: u64 = 64 << 20;
    /// Stated bound: peak RSS <= cache_size + 128 MiB. The cache's own accounting is
    /// exact (`live_body_bytes` == bodies of cached entries, checked below); the rest is
    /// the debug binary's baseline (~25 MiB), in-flight fills and upstream read buffers
    /// (~15 MiB at 8 concurrent misses, measured with DHAT), and the allocator keeping
    /// freed 1 MiB buffers committed for reuse (~60-70 MiB measured, independent of
    /// cache_size: 256 MiB cache -> 326 MiB RSS in release, see the README).
    const MARGIN: u64 = 128 << 20;
    const SEGMENTS: usize = 512;
    let dir = tempfile::tempdir().unwrap();
    big_library(dir.path(), SEGMENTS, 1 << 20);
    let origin = spawn_origin(dir.path()).await;
    let edge = start_edge(origin.addr, &["--cache-size", "64MiB"]);
    let pid = edge.child.id();
    let (base, _) = rss(pid);

    let client = http();
    let base_url = format!("http://{}/vod/big/v0", edge.addr);
    let mut peak = 0;
    for batch in (1..=SEGMENTS).collect::<Vec<_>>().chunks(8) {
        let tasks: Vec<_> = batch
            .iter()
            .map(|n| {
                let (c, url) = (client.clone(), format!("{base_url}/{n}.m4s"));
                tokio::spawn(async move {
                    let r = c.get(url).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().await.unwrap().len()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 1 << 20);
        }
        peak = peak.max(rss(pid).0);
    }
    // Hot segments are still served, and again (from cache or not) correctly.
    let r = client
        .get(format!("{base_url}/1.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 1 << 20);

    let stats: serde_json::Value = client
        .get(format!("http://{}/_edge/stats", edge.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cache_bytes = stats["cache_bytes"].as_u64().unwrap();
    assert!(
        cache_bytes <= CACHE,
        "weighted size {cache_bytes} over budget"
    );
    assert!(
        cache_bytes > CACHE / 2,
        "the cache was filled: {cache_bytes}"
    );
    let live = stats["live_body_bytes"].as_u64().unwrap();
    // Bodies alive = cached ones + evicted ones still being sent (or still in moka's
    // pending-eviction queue for a moment): a few 1 MiB segments of slack, no more.
    assert!(
        live <= cache_bytes + (4 << 20),
        "bodies alive {live} > weighted size {cache_bytes} + 4 MiB"
    );
    let (now, hwm) = rss(pid);
    eprintln!(
        "edge RSS: start {} MiB, now {} MiB, sampled peak {} MiB, VmHWM {} MiB; cache {} MiB of {} MiB",
        base >> 20,
        now >> 20,
        peak >> 20,
        hwm >> 20,
        cache_bytes >> 20,
        CACHE >> 20
    );
    assert!(
        hwm <= CACHE + MARGIN,
        "peak RSS {} MiB exceeds cache-size {} MiB + {} MiB",
        hwm >> 20,
        CACHE >> 20,
        MARGIN >> 20
    );
    let fetched = origin_segment_requests(origin.addr).await;
    assert!(
        (SEGMENTS as u64..=SEGMENTS as u64 + 1).contains(&fetched),
        "one origin request per segment (plus 1.m4s again if it was evicted): {fetched}"
    );
    origin.join().await;
}

async fn origin_segment_requests(addr: SocketAddr) -> u64 {
    let text = http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("dashcdn_origin_http_requests_total{route=\"segment\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}
