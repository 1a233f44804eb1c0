//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use dashcdn_testkit::{packaged, Clip, Spec};

/// The packaged library every read-only test shares: packaging is the slow part, so the
/// test kit makes it once and keeps it for every test binary and later runs.
pub struct Fixture {
    pub library: PathBuf,
    pub source: PathBuf,
    /// Duration of the source clip as ffprobe reads it.
    pub source_duration: f64,
}

pub const ASSET: &str = "clip";
pub const LADDER: &str = "360p:800k,240p:400k";

/// A 12 s 640x360 testsrc2 + sine clip with B-frames (preset veryfast keeps them, so
/// composition offsets and the encoder's edit list are exercised), packaged at 4 s segments.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut spec = Spec::new(ASSET);
        spec.clip = Clip::new(12.0).arg("-bf").arg("3");
        spec.ladder = LADDER.into();
        spec.segment_duration = 4.0;
        spec.preset = "veryfast".into();
        let p = packaged(spec);
        Fixture {
            library: p.library.clone(),
            source: p.source.clone(),
            source_duration: ffprobe_duration(&p.source),
        }
    })
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `ffprobe -show_entries` as JSON.
pub fn ffprobe_json(args: &[&str], target: &str) -> serde_json::Value {
    let o = run(Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(target));
    assert!(
        o.status.success(),
        "ffprobe {target} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

pub fn ffprobe_duration(path: &Path) -> f64 {
    let v = ffprobe_json(
        &["-show_entries", "format=duration"],
        path.to_str().unwrap(),
    );
    v["format"]["duration"].as_str().unwrap().parse().unwrap()
}

/// Every file under `dir` with its size and content hash-ish (bytes), sorted: a snapshot
/// that changes if anything is added, removed or rewritten.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(root: &Path, d: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            if p.is_dir() {
                out.push((rel, Vec::new()));
                walk(root, &p, out);
            } else {
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The `dashcdn` binary built for these tests.
pub fn dashcdn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dashcdn"))
}

/// Reads the boxes of an ISO BMFF buffer: (type, payload) at one level.
pub fn boxes(mut b: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 8 {
        let size = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
        let ty: [u8; 4] = b[4..8].try_into().unwrap();
        let (hdr, size) = match size {
            1 => (
                16,
                u64::from_be_bytes(b[8..16].try_into().unwrap()) as usize,
            ),
            0 => (8, b.len()),
            s => (8, s),
        };
        assert!(
            size >= hdr && size <= b.len(),
            "box {:?} size {size} overruns",
            std::str::from_utf8(&ty)
        );
        out.push((ty, &b[hdr..size]));
        b = &b[size..];
    }
    out
}

pub fn child<'a>(b: &'a [u8], ty: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(b).into_iter().find(|(t, _)| t == ty).map(|(_, p)| p)
}

/// `tfdt` base media decode time of a media segment (moof/traf/tfdt).
pub fn tfdt(segment: &[u8]) -> u64 {
    let moof = child(segment, b"moof").expect("segment has a moof");
    let traf = child(moof, b"traf").expect("moof has a traf");
    let t = child(traf, b"tfdt").expect("traf has a tfdt");
    match t[0] {
        1 => u64::from_be_bytes(t[4..12].try_into().unwrap()),
        _ => u32::from_be_bytes(t[4..8].try_into().unwrap()) as u64,
    }
}

pub use dashcdn_testkit::spawn_origin;

/// Copies the directory tree `from` to `to` (which must not exist): files and folders only.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copying {}: {e}", entry.path().display()));
        }
    }
}

/// A port free on every one of `ips` (the regional edges share one port, as in production).
/// Taken below the kernel's ephemeral range (32768+), where the other tests' listeners on
/// port 0 and every outgoing connection get their ports, so nothing else grabs it between
/// this check and the demo binding it.
pub fn free_port_on(ips: &[&str]) -> u16 {
    for _ in 0..200 {
        let port = low_port();
        let held: Vec<_> = ips
            .iter()
            .map(|ip| std::net::TcpListener::bind((*ip, port)))
            .collect();
        if held.iter().all(|l| l.is_ok()) {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// A pseudo-random port in 20000..32000, different for each call and each test process.
pub fn low_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let seed = std::process::id().wrapping_mul(2_654_435_761) ^ n.wrapping_mul(40_503);
    20_000 + (seed % 12_000) as u16
}
