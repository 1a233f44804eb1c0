//! A bounded fuzz run in the fast tier: mutated queries over UDP and TCP, every reply must
//! parse (a reply a resolver cannot read is a bug: three were found this way), and the
//! server must still answer afterwards. Deterministic (fixed seed), a few seconds at most.

mod support;

use std::time::Duration;

use hickory_proto::op::Message;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Valid and nearly valid queries the mutations start from.
fn seeds() -> Vec<Vec<u8>> {
    let q = "1234 0000 0001 0000 0000 0000 05613131303507 6b696e6763646e 0474657374 00 0001 0001";
    let opt =
        "1234 0000 0001 0000 0000 0001 05613131303507 6b696e6763646e 0474657374 00 0001 0001 \
               00 0029 04d0 00008000 000b 0008 0007 0001 18 00 510245";
    let any = "1234 0000 0001 0000 0000 0000 096e6574636e656d61 0474657374 00 00ff 0001";
    let cname =
        "1234 0000 0001 0000 0000 0001 05766964656f 096e6574636e656d61 0474657374 00 0001 0001 \
                 00 0029 1000 00000000 0000";
    let pointer = "000a 0000 0001 0000 0000 0000 c002 0006 0001";
    [q, opt, any, cname, pointer]
        .iter()
        .map(|s| hex(s))
        .collect()
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut p = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !p.is_empty() => {
                let i = rng.below(p.len());
                p[i] ^= 1 << rng.below(8);
            }
            1 if !p.is_empty() => {
                let i = rng.below(p.len());
                p[i] = rng.next() as u8;
            }
            2 => p.truncate(rng.below(p.len() + 1)),
            3 => {
                let i = rng.below(p.len() + 1);
                p.insert(i, [0xc0, 0x3f, 0x00, 0xff][rng.below(4)]);
            }
            4 if p.len() >= 12 => {
                // Section counts that do not match what follows.
                let i = 4 + 2 * rng.below(4);
                p[i + 1] = rng.next() as u8;
            }
            _ => p.extend((0..rng.below(8)).map(|_| rng.next() as u8)),
        }
    }
    // Keep it a query (QR clear): responses are rightly ignored.
    if p.len() > 2 {
        p[2] &= 0x7f;
    }
    p
}

fn check(reply: &[u8], query: &[u8]) {
    if let Err(e) = Message::from_vec(reply) {
        panic!("unparsable reply ({e}) to {query:02x?}: {reply:02x?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_queries_get_parsable_replies_and_the_server_keeps_serving() {
    let s = spawn(config("")).await;
    let mut rng = Rng(0x5eed_dead_beef_0001);
    let seeds = seeds();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (mut sent, mut replies) = (0, 0);
    for _ in 0..100 {
        let batch: Vec<Vec<u8>> = (0..30)
            .map(|_| {
                let seed = &seeds[rng.below(seeds.len())];
                mutate(&mut rng, seed)
            })
            .collect();
        for p in &batch {
            sock.send_to(p, s.addr).await.unwrap();
            sent += 1;
        }
        while let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(20), sock.recv_from(&mut buf)).await
        {
            // Which query it answers is not tracked under reordering; show the batch.
            if Message::from_vec(&buf[..n]).is_err() {
                check(&buf[..n], &batch.concat());
            }
            replies += 1;
        }
    }
    assert!(
        replies > sent / 2,
        "most mutants are still queries: {replies}/{sent}"
    );

    // TCP: each mutant on its own connection, framed as sent.
    for _ in 0..150 {
        let seed = &seeds[rng.below(seeds.len())];
        let p = mutate(&mut rng, seed);
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        c.write_all(&(p.len() as u16).to_be_bytes()).await.unwrap();
        c.write_all(&p).await.unwrap();
        let mut len = [0u8; 2];
        let got = tokio::time::timeout(Duration::from_secs(2), c.read_exact(&mut len)).await;
        if let Ok(Ok(_)) = got {
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
            c.read_exact(&mut reply).await.unwrap();
            check(&reply, &p);
        }
    }

    let d = dig(s.addr, &["a1105.kingcdn.test", "+subnet=81.2.69.160/27"]).await;
    assert_eq!(d.values("A"), ["127.0.1.1"], "still serving: {}", d.text);
    s.stop().await;
}
