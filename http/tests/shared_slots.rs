//! Connection caps across serving loops on several runtimes. geodns serves DoH from one
//! single-threaded runtime per core on one socket; the caps must hold for the socket, not
//! per runtime (a client refused by one runtime while another had room, or a cap
//! multiplied by the number of cores). Listeners that share a [`Slots`]
//! (`Listener::share_slots`) count together, whichever loop serves them.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashcdn_http::serve::{serve_listeners, Limits, Listener, Slots};
use http_body_util::Full;
use hyper::{Request, Response};

/// A serving loop on a runtime of its own, on its own thread: returns its address and a
/// sender that stops it.
fn serving_loop(
    slots: Arc<Slots>,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = Limits {
        max_connections: 1,
        max_connections_per_client: 1,
        busy_text: "busy",
        ..Limits::default()
    };
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let tcp = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let svc = |_peer: SocketAddr| {
                hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                })
            };
            serve_listeners(
                vec![Listener::plain(tcp).share_slots(slots)],
                Limits {
                    drain_timeout: Duration::from_millis(100),
                    ..limits
                },
                Arc::new(()),
                svc,
                async move {
                    let _ = stopped.await;
                },
            )
            .await;
        });
    });
    (addr, stop, thread)
}

/// Opens a connection, asks for `/` (keep-alive) and returns the connection with the
/// start of what came back.
fn ask(addr: SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: cdn.test\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    (s, String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn loops_that_share_slots_hold_one_cap_between_them() {
    let shared = Arc::new(Slots::default());
    let (a, stop_a, ta) = serving_loop(Arc::clone(&shared));
    let (b, stop_b, tb) = serving_loop(Arc::clone(&shared));
    // A loop of its own, for contrast: the same limits, counted alone.
    let (c, stop_c, tc) = serving_loop(Arc::new(Slots::default()));

    // The one connection the cap allows, held open on loop A's runtime.
    let (held, first) = ask(a);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Loop B runs on another runtime but counts in the same slots: refused.
    let (_, refused) = ask(b);
    assert!(
        refused.starts_with("HTTP/1.1 503") && refused.contains("busy"),
        "{refused}"
    );
    // Loop C counts alone and has room.
    let (_other, own) = ask(c);
    assert!(own.starts_with("HTTP/1.1 200"), "{own}");

    // Once A's connection closes, its slot is free for B.
    drop(held);
    let mut served = String::new();
    for _ in 0..50 {
        served = ask(b).1;
        if served.starts_with("HTTP/1.1 200") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");

    for stop in [stop_a, stop_b, stop_c] {
        let _ = stop.send(());
    }
    for t in [ta, tb, tc] {
        t.join().unwrap();
    }
}
