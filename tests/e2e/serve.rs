//! The origin serving a packaged asset over a real socket.

use std::process::Command;

use crate::util::*;

#[tokio::test(flavor = "multi_thread")]
async fn ffmpeg_dash_demuxer_sees_every_representation() {
    let f = fixture();
    let origin = spawn_origin(&f.library).await;
    let url = origin.url(&format!("/vod/{ASSET}/manifest.mpd"));
    let v = tokio::task::spawn_blocking(move || {
        let o = run(Command::new("ffprobe")
            .args(["-v", "error", "-of", "json", "-show_streams"])
            .arg(&url));
        assert!(
            o.status.success(),
            "ffprobe over HTTP: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    })
    .await
    .unwrap();
    let mut seen: Vec<String> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| match s["codec_type"].as_str().unwrap() {
            "video" => format!("video {}x{}", s["width"], s["height"]),
            other => format!("{other} {}", s["codec_name"].as_str().unwrap()),
        })
        .collect();
    seen.sort();
    assert_eq!(seen, ["audio aac", "video 426x240", "video 640x360"]);
    origin.join().await;
}

#[tokio::test]
async fn segments_ranges_and_revalidation() {
    let f = fixture();
    let origin = spawn_origin(&f.library).await;
    let http = reqwest::Client::new();
    let path = f.library.join(ASSET).join("360p/2.m4s");
    let body = std::fs::read(&path).unwrap();

    let full = http
        .get(origin.url(&format!("/vod/{ASSET}/360p/2.m4s")))
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 200);
    let h = full.headers().clone();
    assert_eq!(h["content-type"], "video/mp4");
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(h["access-control-allow-origin"], "*");
    let etag = h["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"'), "strong ETag: {etag}");
    assert_eq!(full.bytes().await.unwrap().as_ref(), &body[..]);

    let part = http
        .get(origin.url(&format!("/vod/{ASSET}/360p/2.m4s")))
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 100-199/{}", body.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &body[100..200]);

    let beyond = http
        .get(origin.url(&format!("/vod/{ASSET}/360p/2.m4s")))
        .header("Range", format!("bytes={}-", body.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);

    let again = http
        .get(origin.url(&format!("/vod/{ASSET}/360p/2.m4s")))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let audio = http
        .head(origin.url(&format!("/vod/{ASSET}/audio/init.mp4")))
        .send()
        .await
        .unwrap();
    assert_eq!(audio.status(), 200);
    assert_eq!(audio.headers()["content-type"], "audio/mp4");

    let mpd = http
        .get(origin.url(&format!("/vod/{ASSET}/manifest.mpd")))
        .send()
        .await
        .unwrap();
    assert_eq!(mpd.headers()["content-type"], "application/dash+xml");
    assert!(!mpd.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));

    let list: serde_json::Value = http
        .get(origin.url("/vod/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let asset = list
        .as_array()
        .or_else(|| list["assets"].as_array())
        .expect("a JSON list of assets")
        .iter()
        .find(|a| a["name"] == ASSET)
        .expect("our asset is listed")
        .clone();
    assert!((asset["duration_secs"].as_f64().unwrap() - f.source_duration).abs() < 0.15);
    assert_eq!(asset["representations"].as_array().unwrap().len(), 3);
    origin.join().await;
}

#[tokio::test]
async fn traversal_never_leaves_the_library() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = fixture();
    let origin = spawn_origin(&f.library).await;
    // The source clip sits beside the library: a traversal would find it.
    for path in [
        "/vod/../source.mp4",
        "/vod/%2e%2e/source.mp4",
        "/vod/clip/..%2f..%2fsource.mp4",
        "/vod/clip/360p/..%2F..%2F..%2Fsource.mp4",
        "/vod/clip%00/manifest.mpd",
    ] {
        let mut s = tokio::net::TcpStream::connect(origin.addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.unwrap();
        let head = String::from_utf8_lossy(&resp[..resp.len().min(12)]).to_string();
        assert!(
            head == "HTTP/1.1 400" || head == "HTTP/1.1 404",
            "{path}: {}",
            String::from_utf8_lossy(&resp[..resp.len().min(200)])
        );
        assert!(resp.len() < 4096, "{path}: body too large to be an error");
    }
    let ok = reqwest::get(origin.url("/healthz")).await.unwrap();
    assert_eq!(ok.status(), 200);
    origin.join().await;
    let _ = &f.source;
}
