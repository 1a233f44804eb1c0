//! A live channel on a real ffmpeg (testsrc2 + sine), served over real sockets: the
//! dynamic MPD validates against the ISO schema, its timeline agrees with the clock, the
//! segment in progress is streamed chunk by chunk, and the media decodes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashcdn_origin::live::{self, Channels, Input, LiveConfig, LiveError, Rung};

const SEGMENT: Duration = Duration::from_secs(2);
const CHUNK: Duration = Duration::from_millis(500);

/// One small rung and audio: the whole channel costs a few % of one core.
fn light(name: &str, input: Input) -> LiveConfig {
    let mut c = LiveConfig::new(name, input);
    c.ladder = vec![Rung::video("v0", 256, 144, 150), Rung::audio("a0", 32)];
    c.window = Duration::from_secs(30);
    c
}

struct Served {
    base: String,
    _channels: Channels,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(configs: &[LiveConfig]) -> Served {
    let channels = Channels::start(configs).await.expect("channels start");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = live::router(channels.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Served {
        base: format!("http://{addr}"),
        _channels: channels,
        server,
    }
}

fn schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/dash-schema/DASH-MPD.xsd")
}

fn assert_valid(xml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("live.mpd");
    std::fs::write(&file, xml).unwrap();
    let o = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(schema())
        .arg(&file)
        .output()
        .expect("xmllint runs (apt-get install libxml2-utils)");
    assert!(
        o.status.success(),
        "xmllint: {}\n{xml}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// availabilityStartTime of `xml`, Unix seconds.
fn availability_start(xml: &str) -> f64 {
    let mpd = dash_mpd_core::parse(xml).expect("MPD parses");
    assert_eq!(mpd.mpdtype.as_deref(), Some("dynamic"));
    mpd.availabilityStartTime
        .expect("availabilityStartTime")
        .timestamp_millis() as f64
        / 1000.0
}

/// Top-level box types of `bytes`.
fn boxes(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&bytes[i + 4..i + 8]).into_owned());
        assert!(size >= 8, "box size {size}");
        i += size;
    }
    assert_eq!(i, bytes.len(), "boxes end exactly at the end");
    out
}

/// Decodes `file` with ffmpeg; returns its error output (empty when clean) and frame count.
fn decode(file: &Path) -> (String, usize) {
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:v:0", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    let frames = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    (String::from_utf8_lossy(&o.stderr).into_owned(), frames)
}

#[tokio::test]
async fn an_input_ffmpeg_cannot_open_fails_at_start_naming_it() {
    let missing = "/nonexistent/live-input.mp4";
    let err = match Channels::start(&[light("bad", Input::parse(missing))]).await {
        Err(e) => e,
        Ok(_) => panic!("a missing input must not start"),
    };
    let text = err.to_string();
    assert!(matches!(err, LiveError::Input { .. }), "{text}");
    assert!(
        text.contains(missing) && text.contains("\"bad\"") && !text.contains('\n'),
        "{text}"
    );
}

#[test]
fn a_bad_flag_is_refused() {
    assert!(LiveConfig::from_flag("no-equals-sign").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a real-time encoder for about 10 s"]
async fn live_channel_mpd_timeline_chunks_and_media() {
    let s = serve(&[light("t", Input::Testsrc)]).await;
    let http = reqwest::Client::new();
    let mpd_url = format!("{}/live/t/manifest.mpd", s.base);

    let get_mpd = || async {
        let r = http.get(&mpd_url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let cc = r.headers()["cache-control"].to_str().unwrap().to_owned();
        assert_eq!(cc, "public, max-age=1", "≤ half a segment");
        r.text().await.unwrap()
    };
    let xml = get_mpd().await;
    assert_valid(&xml);
    for want in [
        "availabilityTimeOffset=\"1.5\"",
        "availabilityTimeComplete=\"false\"",
        "<Latency referenceId=\"0\" target=\"1500\"",
        "urn:mpeg:dash:utc:http-iso:2014",
    ] {
        assert!(xml.contains(want), "{want} in\n{xml}");
    }
    let ast = availability_start(&xml);

    // The next segment's first chunk arrives when the MPD says it is available:
    // availabilityStartTime + n·D + chunk (= AST + (n+1)·D − availabilityTimeOffset).
    let next = ((unix_now() - ast) / SEGMENT.as_secs_f64()).floor() as u64 + 1;
    let url = format!("{}/live/t/v0/{next}.m4s", s.base);
    let mut r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "the next segment is waited for, not 404");
    assert!(
        r.content_length().is_none(),
        "in progress: chunked, no length"
    );
    let first = r.chunk().await.unwrap().expect("a first chunk");
    let arrived = unix_now();
    let due = ast + next as f64 * SEGMENT.as_secs_f64() + CHUNK.as_secs_f64();
    assert!(
        (arrived - due).abs() <= CHUNK.as_secs_f64(),
        "first chunk of {next} at {arrived:.3}, the MPD says {due:.3}"
    );
    // The rest follows chunk by chunk over the segment's duration.
    let mut body = first.to_vec();
    let started = Instant::now();
    let mut pieces = 1;
    while let Some(c) = r.chunk().await.unwrap() {
        body.extend_from_slice(&c);
        pieces += 1;
    }
    let spread = started.elapsed();
    assert!(
        spread >= SEGMENT - CHUNK * 2,
        "the segment was streamed as produced, not at once ({spread:?}, {pieces} pieces)"
    );
    let kinds = boxes(&body);
    assert_eq!(kinds[0], "styp");
    let moofs = kinds.iter().filter(|k| *k == "moof").count();
    assert!((3..=6).contains(&moofs), "≈ segment/chunk moofs: {kinds:?}");
    for w in kinds[1..].chunks(3) {
        assert_eq!(w, ["prft", "moof", "mdat"], "{kinds:?}");
    }

    // A segment in progress answers at once: TTFB < chunk + 200 ms.
    let xml = get_mpd().await;
    assert_valid(&xml);
    let current = ((unix_now() - ast) / SEGMENT.as_secs_f64()).floor() as u64;
    let t0 = Instant::now();
    let mut r = http
        .get(format!("{}/live/t/v0/{current}.m4s", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.chunk().await.unwrap().expect("bytes");
    let ttfb = t0.elapsed();
    assert!(ttfb < CHUNK + Duration::from_millis(200), "TTFB {ttfb:?}");
    while r.chunk().await.unwrap().is_some() {}

    // A segment well ahead of the live edge is 404 no-store, at once.
    let t0 = Instant::now();
    let r = http
        .get(format!("{}/live/t/v0/{}.m4s", s.base, current + 5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(t0.elapsed() < Duration::from_millis(500));

    // A complete segment has a Content-Length; init + complete segments decode cleanly,
    // and so does init + the first chunk alone (each chunk is a self-contained moof+mdat).
    let init = http
        .get(format!("{}/live/t/v0/init.mp4", s.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut all = init.to_vec();
    for n in next..=current {
        let r = http
            .get(format!("{}/live/t/v0/{n}.m4s", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.content_length().is_some(), "segment {n} is complete");
        all.extend_from_slice(&r.bytes().await.unwrap());
    }
    let joined = dir.path().join("joined.mp4");
    std::fs::write(&joined, &all).unwrap();
    let (errors, frames) = decode(&joined);
    assert!(errors.is_empty(), "ffmpeg: {errors}");
    let expect = (current - next + 1) as usize * 50;
    assert_eq!(frames, expect, "25 fps × 2 s per segment");

    let first_chunk_len: usize = {
        // styp + prft + moof + mdat of the first chunk
        let mut i = 0;
        for _ in 0..4 {
            i += u32::from_be_bytes(body[i..i + 4].try_into().unwrap()) as usize;
        }
        i
    };
    let one = dir.path().join("one-chunk.mp4");
    std::fs::write(&one, [&init[..], &body[..first_chunk_len]].concat()).unwrap();
    let (errors, frames) = decode(&one);
    assert!(errors.is_empty(), "ffmpeg: {errors}");
    assert!((10..=14).contains(&frames), "≈ 0.5 s of frames: {frames}");

    // Unknown channels, representations and names are plain 404s.
    for path in [
        "/live/nope/manifest.mpd",
        "/live/t/zz/0.m4s",
        "/live/t/v0/x.m4s",
        "/live/t/v0/init-x.mp4",
    ] {
        let r = http.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }

    // Audio is there too, and the MPD still validates later on.
    let r = http
        .get(format!("{}/live/t/a0/init.mp4", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_valid(&get_mpd().await);
}

/// Periods of the MPD at `url`: (id, startNumber of its first Representation).
async fn periods(http: &reqwest::Client, url: &str) -> (String, Vec<(String, u64)>) {
    let r = http.get(url).send().await.unwrap();
    if r.status() != 200 {
        return (String::new(), Vec::new());
    }
    let xml = r.text().await.unwrap();
    let mpd = dash_mpd_core::parse(&xml).expect("MPD parses");
    let list = mpd
        .periods
        .iter()
        .map(|p| {
            let rep = &p.adaptations[0].representations[0];
            let start = rep
                .SegmentTemplate
                .as_ref()
                .and_then(|t| t.startNumber)
                .unwrap_or(1);
            (p.id.clone().unwrap_or_default(), start)
        })
        .collect();
    (xml, list)
}

/// Polls `check` every 200 ms for up to `within`.
async fn until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ffmpeg of channel `name` (its FIFOs sit in `dashcdn-live-NAME-*`), by scanning /proc.
fn encoder_pid(name: &str) -> Option<i32> {
    let needle = format!("dashcdn-live-{name}-");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.starts_with("ffmpeg") && cmd.contains(&needle)).then_some(pid)
    })
}

async fn decodes(http: &reqwest::Client, base: &str, init: &str, segment: &str) {
    let mut all = http
        .get(format!("{base}{init}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let r = http.get(format!("{base}{segment}")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{segment}");
    all.extend_from_slice(&r.bytes().await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.mp4");
    std::fs::write(&f, all).unwrap();
    let (errors, frames) = decode(&f);
    assert!(
        errors.is_empty() && frames > 0,
        "{init}+{segment}: {errors}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a real-time encoder killed and restarted, about 10 s"]
async fn a_dead_encoder_is_restarted_into_a_new_period() {
    let s = serve(&[light("restart", Input::Testsrc)]).await;
    let http = reqwest::Client::new();
    let mpd_url = format!("{}/live/restart/manifest.mpd", s.base);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = encoder_pid("restart").expect("the channel's ffmpeg is running");
    let killed = Command::new("kill").args(["-9", &pid.to_string()]).status();
    assert!(killed.unwrap().success());
    until("a second period", Duration::from_secs(15), || async {
        periods(&http, &mpd_url).await.1.len() == 2
    })
    .await;
    let (xml, list) = periods(&http, &mpd_url).await;
    assert_valid(&xml);
    assert!(encoder_pid("restart").is_some_and(|p| p != pid));
    assert!(list[1].1 > list[0].1, "numbers go on: {list:?}");
    // The new run's first segment completes, and decodes with the new period's init.
    let first = list[1].1;
    tokio::time::sleep(SEGMENT + CHUNK).await;
    decodes(
        &http,
        &s.base,
        "/live/restart/v0/init-1.mp4",
        &format!("/live/restart/v0/{first}.m4s"),
    )
    .await;
}

/// `ffmpeg` pushing testsrc over SRT to `url` (caller mode), killed on drop.
struct Publisher(std::process::Child);

impl Publisher {
    fn start(url: &str) -> Publisher {
        let child = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostdin",
                "-re",
                "-f",
                "lavfi",
            ])
            .args(["-i", "testsrc2=size=256x144:rate=25", "-re", "-f", "lavfi"])
            .args(["-i", "sine=frequency=300:sample_rate=48000"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args(["-g", "25", "-c:a", "aac", "-f", "mpegts", url])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("ffmpeg publisher");
        Publisher(child)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: an SRT publisher that goes away for 5 s, about 20 s"]
async fn an_srt_input_that_goes_away_and_comes_back_is_a_new_period() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("srt://127.0.0.1:{port}?mode=listener");
    let s = serve(&[light("srt", Input::parse(&listen))]).await;
    let http = reqwest::Client::new();
    let mpd_url = format!("{}/live/srt/manifest.mpd", s.base);
    // Before a publisher: the MPD is not there yet, and says so without caching.
    let r = http.get(&mpd_url).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let publisher = Publisher::start(&format!("srt://127.0.0.1:{port}"));
    until("the first period", Duration::from_secs(15), || async {
        periods(&http, &mpd_url).await.1.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(publisher);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (xml, list) = periods(&http, &mpd_url).await;
    assert_valid(&xml);
    assert_eq!(
        list.len(),
        1,
        "still the one period while the input is gone"
    );
    let _publisher = Publisher::start(&format!("srt://127.0.0.1:{port}"));
    until("a second period", Duration::from_secs(15), || async {
        periods(&http, &mpd_url).await.1.len() == 2
    })
    .await;
    let (xml, list) = periods(&http, &mpd_url).await;
    assert_valid(&xml);
    let first = list[1].1;
    tokio::time::sleep(SEGMENT + CHUNK).await;
    decodes(
        &http,
        &s.base,
        "/live/srt/v0/init-1.mp4",
        &format!("/live/srt/v0/{first}.m4s"),
    )
    .await;
}

/// An origin (`run`, the whole server) over a temporary library with `configs`, and the
/// means to stop it gracefully.
struct Origin {
    base: String,
    library: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn origin(configs: Vec<LiveConfig>, library: Option<tempfile::TempDir>) -> Origin {
    start(configs, library, None).await
}

/// [`origin`] with `admin_token` set or not.
async fn start(
    configs: Vec<LiveConfig>,
    library: Option<tempfile::TempDir>,
    admin_token: Option<&str>,
) -> Origin {
    let library = library.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let mut config = dashcdn_origin::ServeConfig::new(library.path());
    config.live = configs;
    config.admin_token = admin_token.map(str::to_owned);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dashcdn_origin::run(listener, config, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    until("the origin answers", Duration::from_secs(40), || async {
        http.get(format!("{base}/healthz")).send().await.is_ok()
    })
    .await;
    Origin {
        base,
        library,
        stop: Some(stop),
        server,
    }
}

impl Origin {
    /// Graceful shutdown; returns the library.
    async fn shut_down(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.server).await.unwrap().unwrap();
        self.library
    }
}

/// The one asset folder in `library` named `NAME-…`, and nothing half-written beside it.
fn recorded_asset(library: &Path, name: &str) -> String {
    let names: Vec<String> = std::fs::read_dir(library)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "no staging folder left: {names:?}"
    );
    let mine: Vec<_> = names
        .iter()
        .filter(|n| n.starts_with(&format!("{name}-")))
        .collect();
    assert_eq!(mine.len(), 1, "one recording of {name}: {names:?}");
    mine[0].clone()
}

fn static_mpd(library: &Path, asset: &str) -> dash_mpd_core::MPD {
    let xml = std::fs::read_to_string(library.join(asset).join("manifest.mpd")).unwrap();
    assert_valid(&xml);
    let mpd = dash_mpd_core::parse(&xml).expect("MPD parses");
    assert_eq!(mpd.mpdtype.as_deref(), Some("static"), "{xml}");
    mpd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a real-time encoder recorded for about 8 s"]
async fn a_recorded_channel_becomes_a_vod_asset_when_the_server_stops() {
    let mut c = light("rec", Input::Testsrc);
    c.record = true;
    let o = origin(vec![c], None).await;
    let started = Instant::now();
    // While the event runs, nothing of it is an asset yet.
    let listing: serde_json::Value = reqwest::get(format!("{}/vod/", o.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["assets"].as_array().unwrap().len(), 0, "{listing}");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let recorded_for = started.elapsed().as_secs_f64();
    let library = o.shut_down().await;

    let asset = recorded_asset(library.path(), "rec");
    let mpd = static_mpd(library.path(), &asset);
    assert_eq!(mpd.periods.len(), 1, "one encoder run, one Period");
    let duration = mpd.mediaPresentationDuration.unwrap().as_secs_f64();
    // The channel's first media came just before the server answered; it stopped when told.
    assert!(
        (recorded_for - 1.0..=recorded_for + 1.5).contains(&duration),
        "recorded {duration:.2} s of an event that ran {recorded_for:.2} s"
    );

    // Served as any VOD asset: listed, and ffmpeg plays it from its MPD over HTTP.
    let o = origin(Vec::new(), Some(library)).await;
    let listing: serde_json::Value = reqwest::get(format!("{}/vod/", o.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["assets"][0]["name"], asset.as_str(), "{listing}");
    let url = format!("{}/vod/{asset}/manifest.mpd", o.base);
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i", &url])
        .args(["-map", "0:v:0", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.is_empty(),
        "ffmpeg: {errors}"
    );
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    let seconds = frames as f64 / 25.0;
    assert!(
        (seconds - duration).abs() <= 0.2,
        "{frames} frames = {seconds:.2} s decoded, the MPD says {duration:.2} s"
    );
    o.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a recorded real-time encoder killed and restarted, about 12 s"]
async fn a_recording_with_an_outage_has_a_period_per_run() {
    let mut c = light("gap", Input::Testsrc);
    c.record = true;
    let o = origin(vec![c], None).await;
    let http = reqwest::Client::new();
    let mpd_url = format!("{}/live/gap/manifest.mpd", o.base);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = encoder_pid("gap").expect("the channel's ffmpeg is running");
    assert!(Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    until("a second period", Duration::from_secs(15), || async {
        periods(&http, &mpd_url).await.1.len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let library = o.shut_down().await;

    let asset = recorded_asset(library.path(), "gap");
    let mpd = static_mpd(library.path(), &asset);
    assert_eq!(mpd.periods.len(), 2, "a Period per encoder run");
    // Laid end to end: the second starts where the first ends.
    let p0 = &mpd.periods[0];
    let p1 = &mpd.periods[1];
    let end0 = p0.start.unwrap().as_secs_f64() + p0.duration.unwrap().as_secs_f64();
    assert!((p1.start.unwrap().as_secs_f64() - end0).abs() < 0.002);
    let total = mpd.mediaPresentationDuration.unwrap().as_secs_f64();
    assert!((total - end0 - p1.duration.unwrap().as_secs_f64()).abs() < 0.002);
    // Every recorded segment of each run decodes after that run's init segment, and the
    // frames add up to the Period's duration.
    for p in &mpd.periods {
        let (_, seconds) = period_segments(library.path(), &asset, p, "v0");
        let duration = p.duration.unwrap().as_secs_f64();
        assert!(
            (seconds - duration).abs() <= 0.2,
            "{:?}: {seconds:.2} s decoded, Period duration {duration:.2} s",
            p.id
        );
    }
}

const TOKEN: &str = "live-admin-test-token";

/// [`origin`] with the admin calls on (`admin_token` = [`TOKEN`]).
async fn admin_origin(configs: Vec<LiveConfig>) -> Origin {
    start(configs, None, Some(TOKEN)).await
}

/// `POST {base}/_origin/live/{call}` with `token`: status and JSON body.
async fn admin(base: &str, call: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new().post(format!("{base}/_origin/live/{call}"));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    assert_eq!(r.headers()["cache-control"], "no-store", "{call}");
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_admin_calls_need_the_token_a_known_channel_and_the_right_state() {
    let o = admin_origin(vec![light("adm", Input::Testsrc)]).await;
    let b = o.base.as_str();
    for token in [None, Some("wrong"), Some("live-admin-test-toke")] {
        let (status, body) = admin(b, "adm/record/start", token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
    }
    let (status, body) = admin(b, "nope/record/start", Some(TOKEN)).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("\"nope\""),
        "{body}"
    );
    let (status, body) = admin(b, "adm/record/pause", Some(TOKEN)).await;
    assert_eq!(status, 404, "{body}");
    for call in ["stop", "split"] {
        let (status, body) = admin(b, &format!("adm/record/{call}"), Some(TOKEN)).await;
        assert_eq!(status, 409, "{call}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("not recording"),
            "{body}"
        );
    }
    let (status, body) = admin(b, "adm/record/start", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let from = body["from_segment"].as_u64().unwrap();
    let (status, body) = admin(b, "adm/record/start", Some(TOKEN)).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("already recording"),
        "{body}"
    );
    let status: serde_json::Value = reqwest::Client::new()
        .get(format!("{b}/_origin/live/adm/record"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["recording"], true, "{status}");
    assert_eq!(status["from_segment"], from, "{status}");
    // A GET cannot start anything.
    let r = reqwest::Client::new()
        .get(format!("{b}/_origin/live/adm/record/stop"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    o.shut_down().await;

    // Without an admin_token the calls are off: any token is refused.
    let o = origin(vec![light("off", Input::Testsrc)], None).await;
    let (status, _) = admin(&o.base, "off/record/start", Some("")).await;
    assert_eq!(status, 401);
    let (status, _) = admin(&o.base, "off/record/start", Some(TOKEN)).await;
    assert_eq!(status, 401);
    o.shut_down().await;
}

/// Segment numbers of video representation `rep` of `asset`'s one Period, sorted, the
/// decoded seconds of its init + every segment (ffmpeg, no errors), and the Period's
/// duration from its MPD.
fn recorded_segments(library: &Path, asset: &str, rep: &str) -> (Vec<u64>, f64, f64) {
    let mpd = static_mpd(library, asset);
    assert_eq!(mpd.periods.len(), 1, "{asset}: one encoder run, one Period");
    let p = &mpd.periods[0];
    let (numbers, seconds) = period_segments(library, asset, p, rep);
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "{asset}: no gap {numbers:?}"
    );
    (numbers, seconds, p.duration.unwrap().as_secs_f64())
}

/// Segment numbers of representation `rep` in Period `p` of the recorded `asset`, sorted
/// (the first is the Period's `startNumber`), and the seconds its init + every segment
/// decode to (ffmpeg, no errors).
fn period_segments(
    library: &Path,
    asset: &str,
    p: &dash_mpd_core::Period,
    rep: &str,
) -> (Vec<u64>, f64) {
    let id = p.id.as_deref().unwrap();
    let dir = library.join(asset).join(format!("{id}-{rep}"));
    let mut numbers: Vec<u64> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".m4s")?.parse().ok()
        })
        .collect();
    numbers.sort();
    let start = p.adaptations[0].representations[0]
        .SegmentTemplate
        .as_ref()
        .and_then(|t| t.startNumber);
    assert_eq!(start, Some(numbers[0]), "{asset}: {numbers:?}");
    let mut all = std::fs::read(dir.join("init.mp4")).unwrap();
    for n in &numbers {
        all.extend(std::fs::read(dir.join(format!("{n}.m4s"))).unwrap());
    }
    let joined = library.join(format!("joined-{asset}-{id}-{rep}.mp4"));
    std::fs::write(&joined, all).unwrap();
    let (errors, frames) = decode(&joined);
    std::fs::remove_file(&joined).unwrap();
    assert!(errors.is_empty(), "{asset}: ffmpeg: {errors}");
    (numbers, frames as f64 / 25.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a real-time encoder recorded three times while it runs, about 25 s"]
async fn admin_calls_stop_split_and_restart_a_recording_while_the_channel_runs() {
    let o = admin_origin(vec![light("ev", Input::Testsrc)]).await;
    let b = o.base.clone();
    let lib = o.library.path().to_owned();
    let http = reqwest::Client::new();
    let assets = |lib: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(lib)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    };

    // 1. start, ~5 s, stop: one asset, published while the channel runs.
    let (status, body) = admin(&b, "ev/record/start", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let from1 = body["from_segment"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let asked = Instant::now();
    let (status, body) = admin(&b, "ev/record/stop", Some(TOKEN)).await;
    let stop_took = asked.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["recording"], false, "{body}");
    let first = body["asset"].as_str().expect("an asset").to_owned();
    assert!(first.starts_with("ev-"), "{first}");
    // It waited at most for the segment in progress to end.
    assert!(stop_took < SEGMENT + CHUNK * 2, "stop took {stop_took:?}");
    // In place when the call answers: listed and served.
    assert_eq!(assets(&lib), vec![first.clone()]);
    let listing: serde_json::Value = http
        .get(format!("{b}/vod/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["assets"][0]["name"], first.as_str(), "{listing}");
    let (numbers, seconds, duration) = recorded_segments(&lib, &first, "v0");
    assert_eq!(
        numbers[0], from1,
        "the recording begins with the segment start named"
    );
    // Whole segments: the duration is a multiple of the segment's.
    let segments = duration / SEGMENT.as_secs_f64();
    assert!(
        (segments - segments.round()).abs() < 0.02 && segments >= 2.0,
        "{duration} s is whole 2 s segments"
    );
    assert_eq!(numbers.len() as f64, segments.round(), "{numbers:?}");
    assert!(
        (seconds - duration).abs() <= 0.2,
        "{first}: decoded {seconds:.2} s, the MPD says {duration:.2} s"
    );
    // ffmpeg plays it from its MPD over HTTP (presentationTimeOffset at the first segment).
    // ffmpeg 5.1's DASH demuxer asks for one segment past the end when the duration is a
    // whole number of segments (startNumber + D/d, which the MPD does not list): its 404
    // is the only error allowed, and every frame must still be there.
    let url = format!("{b}/vod/{first}/manifest.mpd");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i", &url])
        .args(["-map", "0:v:0", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    let past_the_end = |l: &str| {
        l.contains("Error when loading first fragment of playlist")
            || l.contains("Last message repeated")
            || l.ends_with("manifest.mpd: Invalid data found when processing input")
    };
    assert!(
        out.status.success() && errors.lines().all(past_the_end),
        "ffmpeg: {errors}"
    );
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    assert!(
        (frames as f64 / 25.0 - duration).abs() <= 0.2,
        "{frames} frames played, the MPD says {duration:.2} s"
    );

    // The channel went on for its viewers: the segment after the recording's last one
    // and the next are served and decode.
    let last = *numbers.last().unwrap();
    for n in [last + 1, last + 2] {
        decodes(
            &http,
            &b,
            "/live/ev/v0/init.mp4",
            &format!("/live/ev/v0/{n}.m4s"),
        )
        .await;
    }
    let (_, live_periods) = periods(&http, &format!("{b}/live/ev/manifest.mpd")).await;
    assert_eq!(live_periods.len(), 1, "the encoder was not restarted");

    // 2. start again, split after ~4 s, stop after ~4 s more: two more assets that meet.
    let (status, body) = admin(&b, "ev/record/start", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let from2 = body["from_segment"].as_u64().unwrap();
    assert!(from2 > last, "{from2} after {last}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, body) = admin(&b, "ev/record/split", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["recording"], true, "{body}");
    let second = body["asset"].as_str().expect("an asset").to_owned();
    let from3 = body["from_segment"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, body) = admin(&b, "ev/record/stop", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let third = body["asset"].as_str().expect("an asset").to_owned();
    let mut want = vec![first.clone(), second.clone(), third.clone()];
    want.sort();
    assert_eq!(assets(&lib), want, "three assets, nothing half-written");

    let (n2, s2, d2) = recorded_segments(&lib, &second, "v0");
    let (n3, s3, d3) = recorded_segments(&lib, &third, "v0");
    assert_eq!(n2[0], from2);
    assert_eq!(n3[0], from3);
    assert_eq!(
        *n2.last().unwrap() + 1,
        from3,
        "the split leaves no gap, no overlap"
    );
    for (asset, seconds, duration) in [(&second, s2, d2), (&third, s3, d3)] {
        assert!(
            (seconds - duration).abs() <= 0.2,
            "{asset}: decoded {seconds:.2} s, the MPD says {duration:.2} s"
        );
    }
    // Audio was recorded beside the video, over the same segments, and decodes.
    let dir = lib.join(&third).join("p0-a0");
    let mut a3: Vec<u64> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".m4s")?.parse().ok()
        })
        .collect();
    a3.sort();
    assert_eq!(a3, n3);
    let mut all = std::fs::read(dir.join("init.mp4")).unwrap();
    for n in &a3 {
        all.extend(std::fs::read(dir.join(format!("{n}.m4s"))).unwrap());
    }
    let joined = lib.join("joined-audio.mp4");
    std::fs::write(&joined, all).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(&joined)
        .args(["-map", "0:a:0", "-f", "null", "-"])
        .output()
        .unwrap();
    std::fs::remove_file(&joined).unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && errors.is_empty(), "audio: {errors}");

    // After the last stop nothing records; shutting down publishes nothing more.
    let library = o.shut_down().await;
    assert_eq!(assets(library.path()), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a real-time encoder recorded in 4 s pieces, about 12 s"]
async fn record_split_publishes_the_recording_every_n_seconds_and_records_on() {
    let mut c = light("cut", Input::Testsrc);
    c.record = true;
    c.record_split = Some(Duration::from_secs(4));
    let o = origin(vec![c], None).await;
    let lib = o.library.path().to_owned();
    let published = |lib: &Path| -> Vec<String> {
        std::fs::read_dir(lib)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("cut-"))
            .collect()
    };
    // Two pieces published while the channel runs (≈ 8 s of it).
    until(
        "two recordings published",
        Duration::from_secs(20),
        || async { published(&lib).len() >= 2 },
    )
    .await;
    let library = o.shut_down().await;
    let lib = library.path();
    // Each piece: whole segments, decoding to its duration; in order, they meet exactly.
    let mut pieces: Vec<(Vec<u64>, f64, f64, String)> = published(lib)
        .into_iter()
        .map(|a| {
            let (numbers, seconds, duration) = recorded_segments(lib, &a, "v0");
            (numbers, seconds, duration, a)
        })
        .collect();
    pieces.sort_by_key(|p| p.0[0]);
    assert!(
        pieces.len() >= 3,
        "two split pieces and the rest at shutdown"
    );
    assert_eq!(pieces[0].0[0], 0, "recording from the channel's start");
    for w in pieces.windows(2) {
        assert_eq!(
            *w[0].0.last().unwrap() + 1,
            w[1].0[0],
            "{} and {} meet",
            w[0].3,
            w[1].3
        );
    }
    for (numbers, seconds, duration, asset) in &pieces[..pieces.len() - 1] {
        assert_eq!(numbers.len(), 2, "{asset}: 4 s = two 2 s segments");
        assert!((duration - 4.0).abs() < 0.01, "{asset}: {duration}");
        assert!(
            (seconds - duration).abs() <= 0.2,
            "{asset}: decoded {seconds:.2} s, the MPD says {duration:.2} s"
        );
    }
}
