//! The geo DNS against real clients on loopback: `dig` (bind9-dnsutils) and hickory's
//! client, UDP and TCP, with MaxMind's test City database.
//!
//! Handy addresses of GeoIP2-City-Test.mmdb: 81.2.69.160/27 London, 216.160.83.56/29
//! Milton WA (near Seattle), 175.16.199.0/24 Changchun (nearest PoP: Tokyo).

mod support;

use std::time::Duration;

use dashcdn_geodns::{explain, GeoDns, GeodnsConfig, Placement};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::opt::ClientSubnet;
use hickory_proto::rr::{RData, RecordType};
use support::*;

const EU: &str = "127.0.1.1";
const US: &str = "127.0.2.1";
const AP: &str = "127.0.3.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_chain_is_followed_in_one_authoritative_answer() {
    let s = spawn(config("")).await;

    let d = dig(s.addr, &["video.netcinema.test", "A"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(d.flags.contains(&"aa".to_string()), "AA set: {}", d.text);
    assert!(!d.flags.contains(&"ra".to_string()), "RA clear: {}", d.text);
    assert_eq!(d.answers[0].0, "video.netcinema.test.");
    assert_eq!(d.answers[0].2, "CNAME");
    assert_eq!(d.answers[0].3, "a1105.kingcdn.test.");
    assert_eq!(d.answers[1].0, "a1105.kingcdn.test.");
    assert_eq!(d.answers[1].2, "A");
    // From 127.0.0.1 (no coverage zone, not in the database): the default PoP.
    assert_eq!(d.values("A"), [US]);
    assert_eq!(d.answers[1].1, 30, "geo TTL");

    let mut c = hickory_udp(s.addr).await;
    let m = hickory_query(&mut c, "video.netcinema.test.", RecordType::A).await;
    assert!(m.metadata.authoritative);
    assert!(!m.metadata.recursion_available);
    assert!(
        matches!(&m.answers[0].data, RData::CNAME(t) if t.0.to_ascii() == "a1105.kingcdn.test.")
    );
    assert_eq!(ipv4s(&m), [US]);

    // And over TCP with hickory's client.
    let mut t = hickory_tcp(s.addr).await;
    let m = hickory_query(&mut t, "video.netcinema.test.", RecordType::A).await;
    assert_eq!(m.answers.len(), 2);
    assert_eq!(ipv4s(&m), [US]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_subnet_picks_the_nearest_pop_and_is_echoed_with_scope() {
    let s = spawn(config("")).await;
    for (subnet, want, scope) in [
        ("81.2.69.160/27", EU, "27"),
        ("216.160.83.56/29", US, "29"),
        ("175.16.199.0/24", AP, "24"),
    ] {
        let d = dig(
            s.addr,
            &["a1105.kingcdn.test", "A", &format!("+subnet={subnet}")],
        )
        .await;
        assert_eq!(d.values("A"), [want], "{subnet}: {}", d.text);
        // dig prints ADDRESS/SOURCE/SCOPE.
        let echoed = d.subnet.as_deref().expect("ECS echoed");
        assert_eq!(echoed, format!("{subnet}/{scope}"), "{}", d.text);
    }

    // The same through hickory's client, reading the option back.
    let c = hickory_udp(s.addr).await;
    for (addr, prefix, want) in [
        ("81.2.69.160", 27, EU),
        ("216.160.83.56", 29, US),
        ("175.16.199.0", 24, AP),
    ] {
        let m = hickory_ecs(
            &c,
            "a1105.kingcdn.test.",
            RecordType::A,
            ClientSubnet::new(ip(addr), prefix, 0),
        )
        .await;
        assert_eq!(ipv4s(&m), [want], "{addr}");
        let echo = echoed_subnet(&m).expect("ECS echoed");
        assert_eq!(echo.addr(), ip(addr));
        assert_eq!(echo.source_prefix(), prefix);
        assert!(echo.scope_prefix() > 0, "a geo answer has a scope");
    }

    // A non-geo answer is the same for everyone: scope /0.
    let d = dig(s.addr, &["netcinema.test", "MX", "+subnet=81.2.69.160/27"]).await;
    assert_eq!(d.subnet.as_deref(), Some("81.2.69.160/27/0"), "{}", d.text);
    s.stop().await;
}

/// Repeated queries are answered from a per-thread answer cache. With an ECS source
/// prefix above 0 the packet's source does not matter, so one cached answer serves every
/// address; with `/0` (or no ECS) the source places the client and must stay in the key:
/// alternating sources in two coverage zones must keep getting their own PoP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_follow_the_source_unless_ecs_places_the_client() {
    let s = spawn(config("")).await;
    for _ in 0..4 {
        for (from, want) in [(EU, EU), (US, US)] {
            let d = dig(
                s.addr,
                &["-b", from, "a1105.kingcdn.test", "A", "+subnet=0.0.0.0/0"],
            )
            .await;
            assert_eq!(d.values("A"), [want], "ECS /0 from {from}: {}", d.text);
            let d = dig(
                s.addr,
                &[
                    "-b",
                    from,
                    "a1105.kingcdn.test",
                    "A",
                    "+subnet=175.16.199.0/24",
                ],
            )
            .await;
            assert_eq!(d.values("A"), [AP], "ECS Changchun from {from}: {}", d.text);
            assert_eq!(d.subnet.as_deref(), Some("175.16.199.0/24/24"));
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coverage_zones_override_the_database() {
    let s = spawn(config(
        "[[coverage]]\ncidr = \"81.2.69.0/24\"\npop = \"ap-east\"\n",
    ))
    .await;
    // London by the database, pinned to Tokyo by the operator.
    let d = dig(s.addr, &["a1105.kingcdn.test", "+subnet=81.2.69.160/27"]).await;
    assert_eq!(d.values("A"), [AP], "{}", d.text);
    assert_eq!(d.subnet.as_deref(), Some("81.2.69.160/27/24"));
    // Loopback "regions": the query's source address picks the PoP.
    for (src, want) in [("127.0.1.9", EU), ("127.0.2.9", US), ("127.0.3.9", AP)] {
        let d = dig(s.addr, &["-b", src, "a1105.kingcdn.test"]).await;
        assert_eq!(d.values("A"), [want], "from {src}: {}", d.text);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_clients_get_the_default_pop() {
    let s = spawn(config("")).await;
    // 10.0.0.0/8 is in no coverage zone and not in the test database.
    let d = dig(s.addr, &["a1105.kingcdn.test", "+subnet=10.1.2.0/24"]).await;
    assert_eq!(d.values("A"), [US], "{}", d.text);
    // No ECS, from 127.0.0.1: same.
    let d = dig(s.addr, &["a1105.kingcdn.test"]).await;
    assert_eq!(d.values("A"), [US]);
    assert!(d.subnet.is_none(), "no ECS asked, none echoed");
    s.stop().await;

    // Without a database every unpinned client is a default client.
    let mut c = config("");
    c.maxmind = None;
    let s = spawn(c).await;
    let d = dig(s.addr, &["a1105.kingcdn.test", "+subnet=81.2.69.160/27"]).await;
    assert_eq!(d.values("A"), [US], "{}", d.text);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_outside_our_zones_and_no_recursion() {
    let s = spawn(config("")).await;
    for name in ["example.com", "test", "kingcdn.test.evil.example"] {
        let d = dig(s.addr, &[name, "A", "+rec"]).await;
        assert_eq!(d.status, "REFUSED", "{name}: {}", d.text);
        assert!(d.answers.is_empty());
        assert!(!d.flags.contains(&"ra".to_string()));
        assert!(!d.flags.contains(&"aa".to_string()));
    }
    let mut c = hickory_udp(s.addr).await;
    let m = hickory_query(&mut c, "www.example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_and_nodata_carry_the_soa() {
    let s = spawn(config("")).await;
    let d = dig(s.addr, &["nope.netcinema.test", "A"]).await;
    assert_eq!(d.status, "NXDOMAIN", "{}", d.text);
    assert!(d.flags.contains(&"aa".to_string()));
    assert!(d.answers.is_empty());
    assert_eq!(d.authority.len(), 1, "{}", d.text);
    assert_eq!(d.authority[0].0, "netcinema.test.");
    assert_eq!(d.authority[0].2, "SOA");
    assert_eq!(
        d.authority[0].1, 60,
        "negative TTL = min(SOA TTL 300, minimum 60)"
    );

    // mail.netcinema.test has an A but no AAAA: NODATA.
    let d = dig(s.addr, &["mail.netcinema.test", "AAAA"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(d.answers.is_empty());
    assert_eq!(d.authority[0].2, "SOA");

    // A CNAME into a missing name: the chain, then NXDOMAIN for its end (RFC 6604).
    let extra = "[[zone]]\norigin = \"dangling.test\"\nsoa = { mname = \"ns\", rname = \"h\" }\n\
                 [[zone.record]]\nname = \"a\"\ntype = \"CNAME\"\nvalue = \"missing\"\n\
                 [[zone.record]]\nname = \"x.y.deep\"\ntype = \"A\"\nvalue = \"192.0.2.1\"\n";
    s.dns.reload(config(extra)).await.unwrap();
    let d = dig(s.addr, &["a.dangling.test", "A"]).await;
    assert_eq!(d.status, "NXDOMAIN", "{}", d.text);
    assert_eq!(d.values("CNAME"), ["missing.dangling.test."]);
    // Empty non-terminal: NODATA, not NXDOMAIN.
    let d = dig(s.addr, &["y.deep.dangling.test", "A"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert_eq!(d.authority[0].2, "SOA");

    let mut c = hickory_udp(s.addr).await;
    let m = hickory_query(&mut c, "nope.kingcdn.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(m.authorities[0].data, RData::SOA(_)));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_txt_is_truncated_on_udp_then_whole_over_tcp() {
    let values: Vec<String> = (0..40)
        .map(|i| format!("\"{i:02}-{}\"", "x".repeat(90)))
        .collect();
    let extra = format!(
        "[[zone]]\norigin = \"big.test\"\nsoa = {{ mname = \"ns\", rname = \"h\" }}\n\
         [[zone.record]]\nname = \"txt\"\ntype = \"TXT\"\nvalues = [{}]\n",
        values.join(",")
    );
    let s = spawn(config(&extra)).await;
    // UDP only (+ignore: do not retry over TCP): TC set.
    let d = dig(s.addr, &["txt.big.test", "TXT", "+ignore"]).await;
    assert!(d.flags.contains(&"tc".to_string()), "{}", d.text);
    // Without EDNS the limit is 512 bytes.
    let d = dig(s.addr, &["txt.big.test", "TXT", "+ignore", "+noedns"]).await;
    assert!(d.flags.contains(&"tc".to_string()), "{}", d.text);
    // dig's default: sees TC, retries over TCP, gets all 40.
    let d = dig(s.addr, &["txt.big.test", "TXT"]).await;
    assert!(d.text.contains("retrying in TCP mode"), "{}", d.text);
    assert_eq!(d.values("TXT").len(), 40, "{}", d.text);
    // A client advertising a large buffer gets it all over UDP (up to our 1232 cap? no:
    // 40 × ~95 bytes exceeds it, so still TC); a small answer is not truncated.
    let d = dig(s.addr, &["netcinema.test", "TXT", "+ignore"]).await;
    assert!(!d.flags.contains(&"tc".to_string()));
    // hickory's TCP client gets the whole answer too.
    let mut c = hickory_tcp(s.addr).await;
    let m = hickory_query(&mut c, "txt.big.test.", RecordType::TXT).await;
    assert_eq!(m.answers.len(), 40);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aaaa_answers_come_from_the_same_pop() {
    let s = spawn(config("")).await;
    let d = dig(
        s.addr,
        &["a1105.kingcdn.test", "AAAA", "+subnet=81.2.69.160/27"],
    )
    .await;
    assert_eq!(d.values("AAAA"), ["fd00:0:1::1"], "{}", d.text);
    let d = dig(
        s.addr,
        &["a1105.kingcdn.test", "AAAA", "+subnet=175.16.199.0/24"],
    )
    .await;
    assert_eq!(d.values("AAAA"), ["fd00:0:3::1"], "{}", d.text);
    // An IPv6 client subnet: 2001:218::/32 is Japan in the test database.
    let d = dig(
        s.addr,
        &["a1105.kingcdn.test", "AAAA", "+subnet=2001:218::/32"],
    )
    .await;
    assert_eq!(d.values("AAAA"), ["fd00:0:3::1"], "{}", d.text);
    let mut c = hickory_udp(s.addr).await;
    let m = hickory_query(&mut c, "a1105.kingcdn.test.", RecordType::AAAA).await;
    assert!(matches!(&m.answers[0].data, RData::AAAA(a) if a.0.to_string() == "fd00:0:2::1"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_pop_sheds_load_to_the_next_nearest_and_returns() {
    let edges = [fake_edge().await, fake_edge().await, fake_edge().await];
    let urls: Vec<String> = edges.iter().map(|e| e.url.clone()).collect();
    let text = replace_once(
        &config_text(Some(&city_db()), &urls, ""),
        "shed_load = false",
        "shed_load = true",
    );
    let c = GeodnsConfig::from_toml(&text).unwrap();
    assert!(c.health.shed_load);
    let bound = c.health.detection_bound();
    let s = spawn(c).await;
    let london = || async {
        dig(s.addr, &["a1105.kingcdn.test", "+subnet=81.2.69.160/27"])
            .await
            .values("A")
    };
    assert_eq!(london().await, [EU]);
    // eu-west's edge says it is overloaded (its /_edge/stats): London goes to Seattle.
    edges[0].set_overloaded(true);
    let shed = eventually(bound * 10, || async { london().await == [US] }).await;
    assert!(shed, "an overloaded eu-west shed London's viewers");
    // Every PoP overloaded: shedding never leaves a viewer without an answer.
    edges[1].set_overloaded(true);
    edges[2].set_overloaded(true);
    let answered = eventually(bound * 10, || async { !london().await.is_empty() }).await;
    assert!(answered);
    for e in &edges {
        e.set_overloaded(false);
    }
    let back = eventually(bound * 10, || async { london().await == [EU] }).await;
    assert!(back, "eu-west takes London back once its load drops");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pop_whose_edge_stops_answering_leaves_and_returns() {
    let edges = [fake_edge().await, fake_edge().await, fake_edge().await];
    let urls: Vec<String> = edges.iter().map(|e| e.url.clone()).collect();
    let c = GeodnsConfig::from_toml(&config_text(Some(&city_db()), &urls, "")).unwrap();
    // interval 100 ms, timeout 200 ms, fall 2, rise 2 (see support::config_text).
    let bound = c.health.detection_bound();
    assert_eq!(bound, Duration::from_millis(600));
    let s = spawn(c).await;
    let london = || async {
        dig(s.addr, &["a1105.kingcdn.test", "+subnet=81.2.69.160/27"])
            .await
            .values("A")
    };
    assert_eq!(london().await, [EU]);

    edges[0].set_healthy(false);
    // Stated time: fall × (interval + timeout); the test allows generous slack for CI.
    let moved = eventually(bound * 10, || async { london().await == [US] }).await;
    assert!(
        moved,
        "London viewers moved to the next-nearest PoP (Seattle)"
    );
    assert!(!s.dns.explain(ip("81.2.69.160")).pops[0].up);

    edges[0].set_healthy(true);
    let back = eventually(bound * 10, || async { london().await == [EU] }).await;
    assert!(back, "eu-west came back");

    // Every PoP down: answer with all of them rather than nothing.
    for e in &edges {
        e.set_healthy(false);
    }
    let all = eventually(bound * 10, || async {
        let mut v = london().await;
        v.sort();
        v == [EU, US, AP]
    })
    .await;
    assert!(all, "all PoPs answered when all are down");
    for e in &edges {
        e.set_healthy(true);
    }
    s.stop().await;
}

/// A minimal query for `a1105.kingcdn.test A` with the given id.
fn query_bytes(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend([0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["a1105", "kingcdn", "test"] {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    q
}

fn rcode(answer: &[u8]) -> u8 {
    answer[3] & 0x0f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_get_formerr_or_are_dropped_and_the_server_keeps_answering() {
    let s = spawn(config("")).await;
    let ok = query_bytes(7);
    let a = raw_udp(s.addr, &ok).await.expect("answers a good query");
    assert_eq!(rcode(&a), 0);

    let header = |qd: u16, an: u16, ns: u16, ar: u16| {
        let mut h = vec![0xbe, 0xef, 0x00, 0x00];
        for c in [qd, an, ns, ar] {
            h.extend(c.to_be_bytes());
        }
        h
    };
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated header", vec![0xbe, 0xef, 0x01]),
        ("empty", vec![]),
        ("question count but no question", header(1, 0, 0, 0)),
    ];
    // Label loop: the name is a pointer to itself.
    let mut looped = header(1, 0, 0, 0);
    looped.extend([0xc0, 0x0c, 0, 1, 0, 1]);
    cases.push(("label loop", looped));
    // Two pointers pointing at each other.
    let mut pingpong = header(1, 0, 0, 0);
    pingpong.extend([0xc0, 0x0e, 0xc0, 0x0c, 0, 1, 0, 1]);
    cases.push(("pointer ping-pong", pingpong));
    // Pointer past the end of the packet.
    let mut past = header(1, 0, 0, 0);
    past.extend([0xc3, 0xff, 0, 1, 0, 1]);
    cases.push(("pointer out of range", past));
    // Forward pointer into the question's own type field.
    let mut fwd = header(1, 0, 0, 0);
    fwd.extend([0xc0, 0x0e, 0, 1, 0, 1]);
    cases.push(("forward pointer", fwd));
    // Label longer than the packet.
    let mut long = header(1, 0, 0, 0);
    long.extend([63, b'a', b'b']);
    cases.push(("label past the end", long));
    // Reserved label type (0x40).
    let mut reserved = header(1, 0, 0, 0);
    reserved.extend([0x41, b'a', 0, 0, 1, 0, 1]);
    cases.push(("reserved label type", reserved));
    // Huge counts with a valid question.
    let mut huge = query_bytes(9);
    huge[6..12].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    cases.push(("huge record counts", huge));
    let mut huge_q = query_bytes(10);
    huge_q[4..6].copy_from_slice(&[0xff, 0xff]);
    cases.push(("huge question count", huge_q));
    // ECS with bits beyond the source prefix (RFC 7871 §7.1.1: FORMERR).
    let mut ecs = query_bytes(11);
    ecs[11] = 1; // ARCOUNT
    ecs.extend([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0x0b]);
    ecs.extend([0, 8, 0, 7, 0, 1, 24, 0, 81, 2, 69]); // 81.2.69.0/24: valid
    let mut bad_ecs = ecs.clone();
    let n = bad_ecs.len();
    bad_ecs[n - 5] = 20; // source /20 but the third octet has low bits set
    cases.push(("ECS with stray address bits", bad_ecs));

    for (what, packet) in &cases {
        if let Some(answer) = raw_udp(s.addr, packet).await {
            assert!(answer.len() >= 12, "{what}: answer has a header");
            assert_eq!(rcode(&answer), 1, "{what}: FORMERR");
            assert_eq!(answer[2] & 0x80, 0x80, "{what}: QR set");
        }
        let a = raw_udp(s.addr, &ok).await;
        assert!(
            a.is_some_and(|a| rcode(&a) == 0),
            "still answering after {what}"
        );
    }
    // The valid ECS query is answered normally.
    let a = raw_udp(s.addr, &ecs).await.expect("answered");
    assert_eq!(rcode(&a), 0);
    // A response (QR=1) is never answered: no reflection loops.
    let mut response = ok.clone();
    response[2] |= 0x80;
    assert!(raw_udp(s.addr, &response).await.is_none());

    // TCP: garbage in a length frame, then a connection that sends half a frame.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut t = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut framed = vec![0, 14];
    framed.extend(header(1, 0, 0, 0));
    framed.extend([0xc0, 0x0c]);
    t.write_all(&framed).await.unwrap();
    let mut buf = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_millis(500), t.read(&mut buf)).await;
    let mut half = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    half.write_all(&[0, 200, 1, 2]).await.unwrap();
    let d = dig(s.addr, &["a1105.kingcdn.test", "+tcp"]).await;
    assert_eq!(d.status, "NOERROR", "TCP still answers: {}", d.text);
    let d = dig(s.addr, &["a1105.kingcdn.test"]).await;
    assert_eq!(d.status, "NOERROR");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_maxmind_file_is_refused_at_start_and_at_reload() {
    let broken = data("GeoIP2-City-Test-Broken-Double-Format.mmdb");
    let bad = GeodnsConfig::from_toml(&config_text(Some(&broken), &[], "")).unwrap();
    let err = GeoDns::new(bad.clone()).err().expect("refused at start");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("GeoIP2-City-Test-Broken-Double-Format.mmdb"),
        "{msg}"
    );
    assert!(msg.contains("MaxMind database"), "{msg}");

    let bad_nodes = data("GeoIP2-City-Test-Invalid-Node-Count.mmdb");
    let c = GeodnsConfig::from_toml(&config_text(Some(&bad_nodes), &[], "")).unwrap();
    assert!(GeoDns::new(c).is_err(), "invalid node count refused");
    let c = GeodnsConfig::from_toml(&config_text(Some(&data("missing.mmdb")), &[], "")).unwrap();
    let err = GeoDns::new(c).err().unwrap().to_string();
    assert!(err.contains("missing.mmdb"), "{err}");

    // Running on the good database, a reload onto the broken one is refused and the old
    // database keeps routing London to eu-west.
    let s = spawn(config("")).await;
    let london = || dig(s.addr, &["a1105.kingcdn.test", "+subnet=81.2.69.160/27"]);
    assert_eq!(london().await.values("A"), [EU]);
    assert!(s.dns.reload(bad).await.is_err());
    assert_eq!(london().await.values("A"), [EU]);
    // A good reload applies: pin London's network to ap-east.
    s.dns
        .reload(config(
            "[[coverage]]\ncidr = \"81.2.69.0/24\"\npop = \"ap-east\"\n",
        ))
        .await
        .unwrap();
    assert_eq!(london().await.values("A"), [AP]);
    let metrics = s.dns.metrics_text();
    assert!(
        metrics.contains("dashcdn_geodns_reloads_total{result=\"refused\"} 1"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_are_refused_with_the_reason() {
    let cases = [
        ("listen = \"nowhere\"\n", "listen"),
        ("[[coverage]]\ncidr = \"10.0.0.0/8\"\npop = \"mars\"\n", "mars"),
        (
            "[[zone]]\norigin = \"x.test\"\nsoa = { mname = \"ns\", rname = \"h\" }\n[[zone.record]]\nname = \"a\"\ntype = \"A\"\nvalue = \"300.1.1.1\"\n",
            "300.1.1.1",
        ),
        (
            "[[zone]]\norigin = \"x.test\"\nsoa = { mname = \"ns\", rname = \"h\" }\n[[zone.record]]\nname = \"a\"\ntype = \"SRV\"\nvalue = \"1\"\n",
            "SRV",
        ),
        ("bogus_key = 1\n", "bogus_key"),
    ];
    for (extra, needle) in cases {
        // Prepend keys at top level so they are not swallowed by a table.
        let text = if extra.starts_with('[') {
            config_text(Some(&city_db()), &[], extra)
        } else {
            format!(
                "{extra}{}",
                replace_once(
                    &config_text(Some(&city_db()), &[], ""),
                    "listen = \"127.0.0.1:5353\"",
                    "",
                )
            )
        };
        let err = GeodnsConfig::from_toml(&text).expect_err(needle);
        let msg = format!("{err:#} {err:?}");
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    // A file that does not exist names the file.
    let err = GeodnsConfig::load("/nonexistent/geodns.toml").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/geodns.toml"));

    // At reload, a bad config file is refused before it reaches the server: the running
    // one keeps answering.
    let s = spawn(config("")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geodns.toml");
    std::fs::write(&path, "zone = 3").unwrap();
    assert!(GeodnsConfig::load(&path).is_err());
    assert_eq!(dig(s.addr, &["a1105.kingcdn.test"]).await.status, "NOERROR");
    s.stop().await;
}

#[tokio::test]
async fn explain_names_the_pop_and_the_reason() {
    let mut c = config("");
    c.coverage.push(dashcdn_geodns::CoverageConfig {
        cidr: "10.9.0.0/16".parse().unwrap(),
        pop: "ap-east".into(),
    });
    let e = explain(&c, ip("81.2.69.160")).unwrap();
    assert_eq!(e.pop_name(), Some("eu-west"));
    let Placement::City(hit) = &e.decision.placement else {
        panic!("{e}")
    };
    assert_eq!(hit.city.as_deref(), Some("London"));
    assert_eq!(hit.country.as_deref(), Some("GB"));
    assert!(e.decision.distance_km.unwrap() < 20.0);
    let text = e.to_string();
    assert!(text.contains("London, GB"), "{text}");
    assert!(text.contains("eu-west"), "{text}");

    let e = explain(&c, ip("10.9.1.1")).unwrap();
    assert_eq!(e.pop_name(), Some("ap-east"));
    assert!(e.to_string().contains("coverage zone 10.9.0.0/16"), "{e}");

    let e = explain(&c, ip("10.1.1.1")).unwrap();
    assert_eq!(e.pop_name(), Some("us-west"));
    assert!(e.to_string().contains("default PoP us-west"), "{e}");

    let e = explain(&c, ip("216.160.83.58")).unwrap();
    assert_eq!(e.pop_name(), Some("us-west"));
    let e = explain(&c, ip("175.16.199.1")).unwrap();
    assert_eq!(e.pop_name(), Some("ap-east"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_queries_by_type_rcode_pop_and_ecs() {
    let s = spawn(config("")).await;
    dig(s.addr, &["a1105.kingcdn.test", "+subnet=81.2.69.160/27"]).await;
    dig(s.addr, &["nope.kingcdn.test"]).await;
    dig(s.addr, &["example.com"]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dns = s.dns.clone();
    tokio::spawn(async move { dns.serve_metrics(listener, std::future::pending()).await });
    let body = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "dashcdn_geodns_queries_total{qtype=\"A\",rcode=\"NOERROR\"} 1",
        "dashcdn_geodns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\"} 1",
        "dashcdn_geodns_queries_total{qtype=\"A\",rcode=\"REFUSED\"} 1",
        "dashcdn_geodns_answers_by_pop_total{pop=\"eu-west\"} 1",
        "dashcdn_geodns_ecs_queries_total{ecs=\"present\"} 1",
        "dashcdn_geodns_ecs_queries_total{ecs=\"absent\"} 2",
        "dashcdn_geodns_query_duration_seconds_count 3",
        "dashcdn_geodns_pop_up{pop=\"eu-west\"} 1",
    ] {
        assert!(body.contains(needle), "{needle} in\n{body}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flat_npm_geolite2_records_are_read_too() {
    // 10.0.0.0/8 placed in Tokyo in the flat schema (float latitude, double longitude).
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flat.mmdb");
    std::fs::write(&db, mmdb::flat_city_db(10, 35.69, 139.69, "JP", "Tokyo")).unwrap();
    let c = GeodnsConfig::from_toml(&config_text(Some(&db), &[], "")).unwrap();
    let e = explain(&c, ip("10.20.30.40")).unwrap();
    assert_eq!(e.pop_name(), Some("ap-east"), "{e}");
    let Placement::City(hit) = &e.decision.placement else {
        panic!("{e}")
    };
    assert_eq!(hit.city.as_deref(), Some("Tokyo"));
    assert_eq!(hit.country.as_deref(), Some("JP"));
    assert_eq!(hit.network.to_string(), "10.0.0.0/8");
    let s = spawn(c).await;
    let d = dig(s.addr, &["a1105.kingcdn.test", "+subnet=10.20.30.0/24"]).await;
    assert_eq!(d.values("A"), [AP], "{}", d.text);
    assert_eq!(d.subnet.as_deref(), Some("10.20.30.0/24/8"));
    s.stop().await;
}
