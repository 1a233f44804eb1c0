//! Each deviation an outside review found (issue 16), tested against the RFC clause it
//! breaks: `dig` where it can say it, raw bytes where a client library would refuse to
//! send the packet.

mod support;

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EU: &str = "127.0.1.1";

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A query for `name`/`qtype` (id 0x1234, RD clear), with `opt_rdata` as its OPT's options
/// (and DO set when `dnssec_ok`), or no OPT.
fn query(name: &str, qtype: u16, opt: Option<(&[u8], bool)>) -> Vec<u8> {
    let mut p = vec![
        0x12,
        0x34,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(opt.is_some()),
    ];
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    if let Some((options, dnssec_ok)) = opt {
        p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0]);
        p.extend_from_slice(&[if dnssec_ok { 0x80 } else { 0 }, 0]);
        p.extend_from_slice(&(options.len() as u16).to_be_bytes());
        p.extend_from_slice(options);
    }
    p
}

fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

fn arcount(reply: &[u8]) -> u16 {
    u16::from_be_bytes([reply[10], reply[11]])
}

/// RFC 7871 §7.2.1: SCOPE PREFIX-LENGTH is in the option's family. An IPv4-mapped
/// address in an IPv6 option is located as IPv4 and its scope counted in IPv6 bits;
/// /27 would tell a resolver the answer holds for all of `::/27`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_ecs_gets_a_scope_in_ipv6_bits() {
    let s = spawn(config("")).await;
    let v4 = dig(s.addr, &["a1105.kingcdn.test", "+subnet=81.2.69.160/27"]).await;
    let v4_scope: u8 = v4
        .subnet
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let d = dig(
        s.addr,
        &["a1105.kingcdn.test", "+subnet=::ffff:81.2.69.160/123"],
    )
    .await;
    assert_eq!(d.values("A"), [EU], "{}", d.text);
    let echoed = d.subnet.as_deref().expect("ECS echoed");
    let scope: u8 = echoed.rsplit('/').next().unwrap().parse().unwrap();
    assert_eq!(scope, 96 + v4_scope, "{}", d.text);
    s.stop().await;
}

/// RFC 7871 §7.1.2 / §7.2.1: SOURCE PREFIX-LENGTH 0 → SCOPE PREFIX-LENGTH 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_prefix_zero_gets_scope_zero() {
    let s = spawn(config("")).await;
    let d = dig(s.addr, &["a1105.kingcdn.test", "+subnet=0.0.0.0/0"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert_eq!(d.subnet.as_deref(), Some("0.0.0.0/0/0"), "{}", d.text);
    s.stop().await;
}

/// RFC 7871 §6: too many ADDRESS octets for the SOURCE PREFIX-LENGTH → FORMERR (with
/// the OPT record, RFC 6891 §7), never an answer echoing a changed option.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_with_surplus_octets_is_formerr() {
    let s = spawn(config("")).await;
    // family 1, source /24, scope 0, four address octets.
    let ecs = hex("0008 0008 0001 18 00 510245a0");
    let reply = raw_udp(s.addr, &query("a1105.kingcdn.test", 1, Some((&ecs, false))))
        .await
        .expect("an answer");
    assert_eq!(rcode(&reply), 1, "FORMERR");
    assert_eq!(arcount(&reply), 1, "OPT included");
    Message::from_vec(&reply).expect("parsable reply");
    // Three octets are right for /24.
    let ecs = hex("0008 0007 0001 18 00 510245");
    let reply = raw_udp(s.addr, &query("a1105.kingcdn.test", 1, Some((&ecs, false))))
        .await
        .unwrap();
    assert_eq!(rcode(&reply), 0);
    s.stop().await;
}

/// RFC 3225 §3: "the DO bit of the query MUST be copied in the response".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_bit_is_copied() {
    let s = spawn(config("")).await;
    let d = dig(s.addr, &["a1105.kingcdn.test", "+dnssec"]).await;
    assert!(d.text.contains("flags: do;"), "{}", d.text);
    let d = dig(s.addr, &["a1105.kingcdn.test"]).await;
    assert!(!d.text.contains("flags: do;"), "{}", d.text);
    s.stop().await;
}

/// RFC 6891 §7: a FORMERR to a query with an OPT carries an OPT, even when the message
/// could not be parsed (here: two OPT records, §6.1.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formerr_to_a_query_with_opt_has_opt() {
    let s = spawn(config("")).await;
    let mut p = query("a1105.kingcdn.test", 1, Some((&[], true)));
    p[11] = 2;
    p.extend_from_slice(&hex("00 0029 04d0 00008000 0000"));
    let reply = raw_udp(s.addr, &p).await.expect("an answer");
    assert_eq!(rcode(&reply), 1, "FORMERR");
    assert_eq!(arcount(&reply), 1, "OPT included");
    let m = Message::from_vec(&reply).expect("parsable reply");
    let edns = m.edns.expect("OPT");
    assert!(edns.flags().dnssec_ok, "DO copied");
    s.stop().await;
}

/// RFC 1035 §4.1.4: a pointer refers to an earlier name; in the first question that can
/// only be the header. Found by fuzzing: echoed back it made an unparsable reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_pointing_into_the_header_is_formerr() {
    let s = spawn(config("")).await;
    let reply = raw_udp(s.addr, &hex("000a00000001000000000000c00200060001"))
        .await
        .expect("an answer");
    assert_eq!(&reply[..2], [0x00, 0x0a], "id echoed");
    assert_eq!(rcode(&reply), 1, "FORMERR");
    let m = Message::from_vec(&reply).expect("parsable reply");
    assert!(m.queries.is_empty());
    s.stop().await;
}

/// RFC 8945 §5.2.2: an unknown key → NOTAUTH, TSIG error BADKEY, unsigned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsig_with_an_unknown_key_is_notauth_badkey() {
    let s = spawn(config("")).await;
    let d = dig(
        s.addr,
        &[
            "-y",
            "hmac-sha256:nokey:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
            "a1105.kingcdn.test",
        ],
    )
    .await;
    assert_eq!(d.status, "NOTAUTH", "{}", d.text);
    assert!(d.text.contains("BADKEY"), "{}", d.text);
    assert!(d.answers.is_empty(), "{}", d.text);
    s.stop().await;
}

/// RFC 8482 §4.2: ANY gets one synthesized HINFO, not every RRset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_is_answered_with_one_hinfo() {
    let s = spawn(config("")).await;
    for name in ["netcinema.test", "a1105.kingcdn.test"] {
        let d = dig(s.addr, &[name, "ANY"]).await;
        assert_eq!(d.status, "NOERROR", "{}", d.text);
        assert_eq!(d.answers.len(), 1, "{}", d.text);
        assert_eq!(d.answers[0].2, "HINFO", "{}", d.text);
        assert!(d.answers[0].3.contains("RFC8482"), "{}", d.text);
    }
    // A CNAME owner answers ANY with its CNAME.
    let d = dig(s.addr, &["video.netcinema.test", "ANY"]).await;
    assert_eq!(d.values("CNAME"), ["a1105.kingcdn.test."], "{}", d.text);
    s.stop().await;
}

/// RFC 7871 §7.2.1 (CNAME chains): under ECS the CNAME to a geo name is answered alone,
/// scope /0, so resolvers share it and ask for the target with the subnet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_ecs_a_cname_to_a_geo_name_is_answered_alone() {
    let s = spawn(config("")).await;
    let d = dig(
        s.addr,
        &["video.netcinema.test", "A", "+subnet=81.2.69.160/27"],
    )
    .await;
    assert_eq!(d.answers.len(), 1, "{}", d.text);
    assert_eq!(d.values("CNAME"), ["a1105.kingcdn.test."], "{}", d.text);
    assert_eq!(d.subnet.as_deref(), Some("81.2.69.160/27/0"), "{}", d.text);
    // Without ECS the chain is answered whole.
    let d = dig(s.addr, &["video.netcinema.test", "A"]).await;
    assert_eq!(d.answers.len(), 2, "{}", d.text);
    s.stop().await;
}

/// RFC 1035 §4.1.4: answer owner names are compressed against the question.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_names_point_at_the_question() {
    let s = spawn(config("")).await;
    let q = query("a1105.kingcdn.test", 1, None);
    let reply = raw_udp(s.addr, &q).await.unwrap();
    // The answer starts right after the question; its owner is a pointer to offset 12.
    assert_eq!(&reply[q.len()..q.len() + 2], [0xc0, 0x0c], "{reply:02x?}");
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(m.answers[0].record_type(), RecordType::A);
    s.stop().await;
}

/// A TCP message that cannot be read gets its FORMERR and the connection is closed at
/// once, not left to the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tcp_message_closes_the_connection() {
    let s = spawn(config("")).await;
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let bad = hex("000a00000001000000000000c00200060001");
    c.write_all(&(bad.len() as u16).to_be_bytes())
        .await
        .unwrap();
    c.write_all(&bad).await.unwrap();
    let mut len = [0u8; 2];
    c.read_exact(&mut len).await.unwrap();
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    c.read_exact(&mut reply).await.unwrap();
    assert_eq!(rcode(&reply), 1);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "closed at once: {closed:?}");

    // A good connection answers several queries in a row.
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    for _ in 0..3 {
        let q = query("a1105.kingcdn.test", 1, None);
        c.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
        c.write_all(&q).await.unwrap();
        c.read_exact(&mut len).await.unwrap();
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        c.read_exact(&mut reply).await.unwrap();
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }
    s.stop().await;
}
