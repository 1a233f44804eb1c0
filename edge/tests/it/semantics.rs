//! HTTP caching semantics against a scripted upstream: what is stored, for how long,
//! what the viewer sees.

use std::time::Duration;

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hit_headers_head_and_conditionals() {
    let mock = Mock::start().await;
    mock.script(
        "/a.m4s",
        Script {
            etag: Some("\"e1\"".into()),
            headers: vec![
                ("cache-control", "public, max-age=3600".into()),
                ("last-modified", "Tue, 14 Nov 2023 22:13:20 GMT".into()),
                ("content-type", "video/mp4".into()),
            ],
            ..Script::ok(content(5000, 1), "")
        },
    );
    let edge = Edge::start(config("eu", &mock.url())).await;
    let c = client();
    let r = edge.get("/a.m4s").await;
    assert_eq!(x_cache(&r), "MISS");
    edge.settled().await;
    let r = edge.get("/a.m4s").await;
    assert_eq!(x_cache(&r), "HIT");
    assert_eq!(r.headers()["via"], "1.1 eu");
    assert_eq!(r.headers()["etag"], "\"e1\"");
    assert_eq!(
        r.headers()["last-modified"],
        "Tue, 14 Nov 2023 22:13:20 GMT"
    );
    assert_eq!(r.headers()["content-type"], "video/mp4");
    assert_eq!(r.headers()["content-length"], "5000");
    assert!(r.headers().contains_key("age"));

    let h = c.head(edge.url("/a.m4s")).send().await.unwrap();
    assert_eq!((h.status().as_u16(), x_cache(&h)), (200, "HIT".into()));
    assert_eq!(h.headers()["content-length"], "5000");

    let r = c
        .get(edge.url("/a.m4s"))
        .header("if-none-match", "\"e1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = c
        .get(edge.url("/a.m4s"))
        .header("if-modified-since", "Wed, 15 Nov 2023 00:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = c
        .get(edge.url("/a.m4s"))
        .header("range", "bytes=10-19")
        .header("if-range", "\"old\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "If-Range mismatch: whole object");
    let r = c
        .get(edge.url("/a.m4s"))
        .header("range", "bytes=0-1,5-6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "multi-range refused with the whole object");
    let r = c
        .get(edge.url("/a.m4s"))
        .header("range", "bytes=9000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */5000");
    assert_eq!(mock.hits("/a.m4s"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_no_store_and_cookies_are_never_shared() {
    let mock = Mock::start().await;
    mock.script("/private", Script::ok("p", "private, max-age=60"));
    mock.script("/nostore", Script::ok("n", "no-store"));
    let mut cookie = Script::ok("c", "public, max-age=60");
    cookie.headers.push(("set-cookie", "session=1".into()));
    mock.script("/cookie", cookie);
    let edge = Edge::start(config("eu", &mock.url())).await;
    for path in ["/private", "/nostore", "/cookie"] {
        for _ in 0..3 {
            let r = edge.get(path).await;
            assert_eq!(r.status(), 200);
            assert_ne!(x_cache(&r), "HIT", "{path}");
        }
        // One upstream request per viewer request: the first viewer gets the fill's
        // own response, later ones pass.
        assert_eq!(mock.hits(path), 3, "{path}");
    }
    let r = edge.get("/cookie").await;
    assert_eq!(
        r.headers()["set-cookie"],
        "session=1",
        "passed to its own viewer only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_not_cached_but_404_is_briefly() {
    let mock = Mock::start().await;
    let mut c = config("eu", &mock.url());
    c.negative_ttl_secs = 1;
    let edge = Edge::start(c).await;
    assert_eq!(edge.get("/missing").await.status(), 404);
    let r = edge.get("/missing").await;
    assert_eq!((r.status().as_u16(), x_cache(&r)), (404, "HIT".into()));
    assert_eq!(mock.hits("/missing"), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(x_cache(&edge.get("/missing").await), "MISS");
    assert_eq!(mock.hits("/missing"), 2);

    mock.set_mode(FAIL);
    assert_eq!(edge.get("/boom").await.status(), 500);
    edge.settled().await;
    assert_eq!(edge.get("/boom").await.status(), 500);
    assert_eq!(mock.hits("/boom"), 2, "5xx never cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_pass_through_with_status_headers_and_body() {
    let mock = Mock::start().await;
    mock.script(
        "/down.m4s",
        Script {
            status: 503,
            headers: vec![
                ("retry-after", "30".into()),
                ("x-origin-says", "maintenance".into()),
            ],
            ..Script::ok("back soon\n", "no-cache")
        },
    );
    let edge = Edge::start(config("eu", &mock.url())).await;
    for _ in 0..2 {
        let r = edge.get("/down.m4s").await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "30");
        assert_eq!(r.headers()["x-origin-says"], "maintenance");
        assert_eq!(r.text().await.unwrap(), "back soon\n");
        edge.settled().await;
    }
    assert_eq!(
        mock.hits("/down.m4s"),
        2,
        "one upstream request per viewer request, none stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entries_revalidate_with_validators() {
    let mock = Mock::start().await;
    mock.script(
        "/m.mpd",
        Script {
            etag: Some("\"v7\"".into()),
            ..Script::ok("manifest", "max-age=60").aged(100)
        },
    );
    let edge = Edge::start(config("eu", &mock.url())).await;
    assert_eq!(x_cache(&edge.get("/m.mpd").await), "MISS");
    edge.settled().await;
    let r = edge.get("/m.mpd").await;
    assert_eq!(x_cache(&r), "REVALIDATED");
    assert_eq!(r.text().await.unwrap(), "manifest");
    assert_eq!(
        mock.last_headers.lock().unwrap()["/m.mpd"]["if-none-match"],
        "\"v7\""
    );
    assert_eq!(x_cache(&edge.get("/m.mpd").await), "HIT");
    assert_eq!(mock.hits("/m.mpd"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_normalisation_and_stats_and_metrics() {
    let mock = Mock::start().await;
    mock.script("/q?a=1&b=2", Script::ok("q", "max-age=60"));
    let mut c = config("eu", &mock.url());
    c.drop_query_params = vec!["utm_*".into()];
    let edge = Edge::start(c).await;
    assert_eq!(x_cache(&edge.get("/q?b=2&a=1").await), "MISS");
    edge.settled().await;
    assert_eq!(x_cache(&edge.get("/q?a=1&utm_source=x&b=2").await), "HIT");
    assert_eq!(mock.hits("/q?a=1&b=2"), 1);

    let s = edge.stats().await;
    assert_eq!(s["pop"], "eu");
    assert_eq!(s["requests"], 2);
    assert_eq!(s["hit_ratio"], 0.5);
    assert_eq!(s["overloaded"], false);
    assert!(s["load"].as_f64().unwrap() >= 0.0);
    assert_eq!(s["cache_entries"], 1);
    assert!(s["cache_bytes"].as_u64().unwrap() > 0);
    assert!(s["in_flight"].as_u64().is_some());
    let m = edge.metrics().await;
    for needle in [
        "dashcdn_edge_requests_total{pop=\"eu\",cache=\"hit\"} 1",
        "dashcdn_edge_requests_total{pop=\"eu\",cache=\"miss\"} 1",
        "dashcdn_edge_bytes_from_cache_total{pop=\"eu\"} 1",
        "dashcdn_edge_bytes_from_upstream_total{pop=\"eu\"} 1",
        "dashcdn_edge_cache_entries{pop=\"eu\"} 1",
        "dashcdn_edge_upstream_response_seconds_count",
        "dashcdn_edge_in_flight_requests",
    ] {
        assert!(m.contains(needle), "{needle} missing in\n{m}");
    }
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_body_that_stalls_is_cut_off() {
    let mock = Mock::start().await;
    mock.script(
        "/live",
        Script {
            chunk: Some(100),
            chunk_delay: Duration::from_secs(60),
            ..Script::ok(content(1000, 3), "private")
        },
    );
    let mut c = config("eu", &mock.url());
    c.read_timeout_ms = 300;
    let edge = Edge::start(c).await;
    let r = edge.get("/live").await;
    assert_eq!(x_cache(&r), "PASS");
    let body = tokio::time::timeout(Duration::from_secs(10), r.bytes())
        .await
        .expect("the edge cuts a stalled pass body off");
    assert!(body.is_err(), "a truncated body must not look complete");
    assert_eq!(edge.get("/_edge/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_stalls_mid_body_is_not_cached() {
    let mock = Mock::start().await;
    mock.script(
        "/seg.m4s",
        Script {
            chunk: Some(100),
            chunk_delay: Duration::from_secs(60),
            ..Script::ok(content(1000, 4), "max-age=60")
        },
    );
    let mut c = config("eu", &mock.url());
    c.read_timeout_ms = 300;
    let edge = Edge::start(c).await;
    let r = edge.get("/seg.m4s").await;
    assert_eq!(x_cache(&r), "MISS");
    let body = tokio::time::timeout(Duration::from_secs(10), r.bytes())
        .await
        .expect("never hangs");
    assert!(body.is_err(), "a truncated body must not look complete");
    let r = edge.get("/seg.m4s").await;
    assert_eq!(x_cache(&r), "MISS", "the broken object was not stored");
    assert_eq!(mock.hits("/seg.m4s"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_credentials_go_to_the_origin_and_are_not_shared() {
    let mock = Mock::start().await;
    mock.script("/s.m4s", Script::ok("for you", "max-age=60"));
    let edge = Edge::start(config("eu", &mock.url())).await;
    let c = client();
    for _ in 0..2 {
        let r = c
            .get(edge.url("/s.m4s"))
            .header("authorization", "Bearer viewer-1")
            .send()
            .await
            .unwrap();
        assert_eq!(x_cache(&r), "PASS");
        assert_eq!(r.text().await.unwrap(), "for you");
        assert_eq!(
            mock.last_headers.lock().unwrap()["/s.m4s"]["authorization"],
            "Bearer viewer-1"
        );
    }
    assert_eq!(mock.hits("/s.m4s"), 2);
    edge.settled().await;
    assert_eq!(edge.stats().await["cache_entries"], 0, "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unshareable_response_costs_one_upstream_request_per_viewer_request() {
    let mock = Mock::start().await;
    mock.script("/me.json", Script::ok("mine", "private, max-age=60"));
    let edge = Edge::start(config("eu", &mock.url())).await;
    for n in 1..=3 {
        let r = edge.get("/me.json").await;
        assert_eq!(r.text().await.unwrap(), "mine");
        edge.settled().await;
        assert_eq!(mock.hits("/me.json"), n, "request {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_file_gets_a_line_per_request_and_reopens_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mock = Mock::start().await;
    mock.script("/x.m4s", Script::ok("abc", "max-age=60"));
    let mut c = config("eu", &mock.url());
    c.access_log_file = Some(log.clone());
    let edge = Edge::start(c).await;
    let lines_of = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let wait_lines = |p: std::path::PathBuf, n: usize| async move {
        for _ in 0..200 {
            let l = lines_of(&p);
            if l.len() >= n {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fewer than {n} lines in {}", p.display());
    };
    assert_eq!(edge.get("/x.m4s").await.text().await.unwrap(), "abc");
    let l = wait_lines(log.clone(), 1).await;
    assert!(l[0].contains("GET /x.m4s 200 MISS 3 complete"), "{}", l[0]);
    // logrotate: move the file away, SIGHUP, the next line lands in a new file.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let pid = std::process::id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    edge.get("/x.m4s").await.text().await.unwrap();
    let l = wait_lines(log.clone(), 1).await;
    assert!(l[0].contains("GET /x.m4s 200 HIT"), "{}", l[0]);
    assert_eq!(lines_of(&rotated).len(), 1);
    let m = edge.metrics().await;
    assert!(
        m.contains("dashcdn_edge_access_log_dropped_lines_total{pop=\"eu\"} 0"),
        "{m}"
    );
}
