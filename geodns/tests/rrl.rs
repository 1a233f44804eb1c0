//! Response rate limiting against a real flood on loopback: one network floods, another
//! asks as usual. Linux routes all of 127.0.0.0/8 to `lo`, so the two clients bind
//! 127.0.8.1 and 127.0.9.1: two /24s, as two sites would be.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use support::*;

fn query(id: u16) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["a1105", "kingcdn", "test"] {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    p
}

struct Tally {
    full: usize,
    slipped: usize,
}

/// Sends `count` queries from `from` over `over`, evenly paced, and sorts the replies.
async fn ask(server: SocketAddr, from: &str, count: u16, over: Duration) -> Tally {
    let sock = tokio::net::UdpSocket::bind((from, 0)).await.unwrap();
    let gap = over / u32::from(count);
    let start = Instant::now();
    let mut seen = HashSet::new();
    let mut tally = Tally {
        full: 0,
        slipped: 0,
    };
    let mut buf = vec![0u8; 4096];
    let mut sort = |reply: &[u8], tally: &mut Tally| {
        let m = Message::from_vec(reply).expect("parsable reply");
        if !seen.insert(m.metadata.id) {
            return;
        }
        if m.metadata.truncation {
            assert!(m.answers.is_empty(), "a slipped answer carries no records");
            tally.slipped += 1;
        } else {
            assert_eq!(m.answers.len(), 1);
            tally.full += 1;
        }
    };
    for i in 0..count {
        sock.send_to(&query(i), server).await.unwrap();
        let next = start + gap * (u32::from(i) + 1);
        while let Ok(Ok((n, _))) =
            tokio::time::timeout_at(next.into(), sock.recv_from(&mut buf)).await
        {
            sort(&buf[..n], &mut tally);
        }
    }
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await
    {
        sort(&buf[..n], &mut tally);
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_held_to_the_rate_while_another_network_is_answered() {
    let mut c = config("");
    c.rrl.responses_per_second = 20;
    c.rrl.slip = 2;
    let s = spawn(c).await;
    let secs = 1.0;
    let (flood, legit) = tokio::join!(
        // 10× the limit for one second.
        ask(s.addr, "127.0.8.1", 200, Duration::from_secs_f64(secs)),
        ask(s.addr, "127.0.9.1", 15, Duration::from_secs_f64(secs)),
    );
    // One second's burst plus one second's refill, at most.
    let bound = (20.0 * (1.0 + secs)) as usize;
    assert!(
        flood.full <= bound,
        "flood answered {} > {bound}",
        flood.full
    );
    assert!(
        flood.full >= 20,
        "the rate itself is answered: {}",
        flood.full
    );
    let withheld = 200 - flood.full;
    // Every second withheld response slips.
    assert!(
        flood.slipped.abs_diff(withheld / 2) <= 1,
        "slipped {} of {withheld} withheld",
        flood.slipped
    );
    assert_eq!(legit.full, 15, "the other network gets every answer");
    let metrics = s.dns.metrics_text();
    assert!(
        metrics.contains(&format!(
            "dashcdn_geodns_rrl_responses_total{{action=\"slipped\"}} {}",
            flood.slipped
        )),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exempt_networks_are_never_limited() {
    let mut c = config("");
    c.rrl.responses_per_second = 5;
    c.rrl.exempt = vec!["127.0.8.0/24".parse().unwrap()];
    let s = spawn(c).await;
    let t = ask(s.addr, "127.0.8.1", 50, Duration::from_millis(200)).await;
    assert_eq!(t.full, 50);
    s.stop().await;
}
