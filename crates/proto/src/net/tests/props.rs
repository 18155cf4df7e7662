//! Property tests, the throughput measurement and the fuzz seed corpus.

use proptest::prelude::*;

use super::*;
use crate::net::seal::seal_datagram;
use crate::net::wire::{put_header, Header, Kind, HEADER_LEN};

const CHANNELS: [&str; 3] = ["A", "sensors", "control"];
const EVENTS: [&str; 3] = ["e", "log", "nc-control-showconfig"];

proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        seq in 0u64..4,
        kind in 0u8..6,
    ) {
        let t0 = Instant::now();
        let mut n = Net::new(cfg(1), t0);
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        n.handle_datagram(t0, from, &bytes);
        // Behind a valid header too, to reach the body decoders and the
        // reassembly with hostile numbers.
        let mut b = vec![0; HEADER_LEN];
        let h = Header { kind: Kind::Data, flags: 0, key_id: 0, node: 2, seq: seq.max(1) };
        put_header(&mut b, &h);
        b[6] = kind;
        b.extend_from_slice(&bytes);
        let _ = wire::decode_datagram(&b);
        n.handle_datagram(t0, from, &b);
        n.handle_timeout(t0 + Duration::from_secs(10));
        while n.poll_message().is_some() {}
        let st = n.stats();
        prop_assert!(st.datagrams_in + st.foreign + st.malformed + st.own_ignored >= 1);
    }

    #[test]
    fn messages_round_trip_in_order(
        msgs in proptest::collection::vec(
            (0usize..3, 0usize..3, 1u64..4, prop_oneof![0usize..200, 0usize..5000, 1300usize..1500]),
            1..60,
        ),
        mtu in prop_oneof![Just(1400usize), 256usize..2000],
        flush in 0u64..3,
    ) {
        let t0 = Instant::now();
        let mut c = cfg(1);
        c.mtu = mtu;
        c.flush_delay = Duration::from_micros(flush * 100);
        let mut a = Net::new(c, t0);
        let mut b = Net::new(cfg(2), t0);
        sync_pair(&mut a, &mut b, t0);
        let mut sent = Vec::new();
        for (i, &(ch, ev, client, len)) in msgs.iter().enumerate() {
            let p = pattern(len, i as u8);
            a.send(t0, &out(CHANNELS[ch], EVENTS[ev], &p, client, i as u64 + 1)).unwrap();
            sent.push((CHANNELS[ch], EVENTS[ev], client, i as u64 + 1, p));
            if i % 5 == 0 {
                pump(&mut a, &mut b, t0);
            }
        }
        pump(&mut a, &mut b, t0 + MS);
        prop_assert!(a.pending_transmits() == 0);
        let got = messages(&mut b);
        prop_assert_eq!(got.len(), sent.len());
        for (m, (ch, ev, client, seq, p)) in got.iter().zip(&sent) {
            prop_assert_eq!((m.node, m.client, m.seq), (1, *client, *seq));
            prop_assert_eq!(m.channel.as_str(), *ch);
            prop_assert_eq!(m.event.as_str(), *ev);
            prop_assert_eq!(&m.payload[..], &p[..]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn lossy_links_deliver_in_order_once_whole_or_as_a_gap(
        seed in any::<u64>(),
        loss in 0.0f64..0.3,
        dup in 0.0f64..0.1,
        reorder in 0.0f64..0.3,
        n in 50u64..400,
        big_every in 3u64..20,
        window in prop_oneof![Just(crate::net::DEFAULT_RETRANSMIT_BYTES), 0usize..20_000],
    ) {
        use super::reliable::{check_stream, record_carried, send_burst, warm_up};
        let mut s = Sim::new(seed, 3, |i| {
            let mut c = cfg(i as u64 + 1);
            c.seed = seed ^ i as u64;
            c.retransmit_bytes = window;
            c
        });
        s.link = sim::Link { loss, dup, reorder, ..sim::Link::default() };
        warm_up(&mut s);
        let size = |q: u64| if q % big_every == 0 { 3000 + (q as usize * 37) % 4000 } else { 40 };
        let fragmented: Vec<u64> = (1..=n).filter(|&q| size(q) > 1300).collect();
        let carried = record_carried(&mut s, fragmented);
        let (sent, _) = send_burst(&mut s, n, size);
        // With heavy loss and a small window the sender's flow control
        // can take longer than a fixed time to get everything out: wait
        // (bounded, in simulated time) until nothing is left to send,
        // then give the receivers' NAKs time to finish.
        for _ in 0..60 {
            if s.nodes[0].net.pending_transmits() == 0 {
                break;
            }
            s.run_for(Duration::from_secs(1));
        }
        prop_assert_eq!(s.nodes[0].net.pending_transmits(), 0, "the sender never got everything out");
        s.run_for(Duration::from_secs(3));
        for r in [1, 2] {
            check_stream(&s, r, &sent, &carried);
            prop_assert_eq!(s.nodes[r].net.peers().map(|p| p.held).sum::<usize>(), 0);
        }
    }
}

/// Encode and decode rate of 64-byte messages on one core. Run with
/// `cargo test --release -p netcluster-proto net_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, run by hand in release"]
fn net_throughput() {
    const N: u64 = 2_000_000;
    let t0 = Instant::now();
    let mut a = Net::new(cfg(1), t0);
    let mut b = Net::new(cfg(2), t0);
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let payload = [0x5a; 64];
    let mut buf = Vec::with_capacity(1500);
    let (mut got, mut bytes, mut datagrams) = (0u64, 0usize, 0u64);
    let start = Instant::now();
    for q in 1..=N {
        a.send(t0, &out("A", "e", &payload, 7, q)).unwrap();
        if q % 1024 == 0 || q == N {
            while a.poll_transmit(t0 + MS, &mut buf).is_some() {
                datagrams += 1;
                bytes += buf.len();
                b.handle_datagram(t0, from, &buf);
            }
            while let Some(m) = b.poll_message() {
                got += 1;
                assert_eq!(m.seq, got);
            }
        }
    }
    let dt = start.elapsed();
    assert_eq!(got, N);
    println!(
        "{N} messages of 64 bytes in {dt:?}: {:.2} M messages/s, {datagrams} datagrams, {:.1} bytes/message on the wire",
        N as f64 / dt.as_secs_f64() / 1e6,
        bytes as f64 / N as f64
    );
}

/// Writes the seed corpus of the `net_datagram` fuzz target. Run with
/// `cargo test -p netcluster-proto write_fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes files into fuzz/corpus"]
fn write_fuzz_corpus() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/net_datagram");
    std::fs::create_dir_all(&dir).unwrap();
    let t0 = Instant::now();
    let mut c = cfg(0x1234_5678_9abc_def0);
    c.mtu = 512;
    let mut n = Net::new(c, t0);
    n.handle_timeout(t0);
    n.send(t0, &out("A", "e", b"{\"x\":1}", 1, 1)).unwrap();
    n.send(t0, &out("A", "e", b"{\"x\":2}", 1, 2)).unwrap();
    n.send(t0, &out("sensors", "temp", b"21.5", 300, 70_000))
        .unwrap();
    n.send(t0, &out("A", "blob", &pattern(1500, 1), 2, 1))
        .unwrap();
    n.send(t0, &out("control", "nc-control-showconfig", b"{}", 3, 9))
        .unwrap();
    let all = drain(&mut n, t0 + MS);
    assert!(all.len() >= 5);
    for (i, d) in all.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), d).unwrap();
    }
    // A SYNC request, and the reply that syncs the fuzz target (node 1,
    // whose first request has seq 1) to the sender from its seq 1.
    let reply = |node: u64| {
        let mut b = Vec::new();
        let r = wire::SyncReply {
            requester: 1,
            request_seq: 1,
            last_seq: 0,
            uptime_ms: 0,
        };
        wire::encode_sync_reply(&mut b, node, 1, &r);
        b
    };
    let mut request = Vec::new();
    wire::encode_sync(
        &mut request,
        0x1234_5678_9abc_def0,
        1,
        &wire::SyncRequest { target: 1 },
    );
    std::fs::write(dir.join("seed-sync"), &request).unwrap();
    std::fs::write(dir.join("seed-sync-reply"), reply(0x1234_5678_9abc_def0)).unwrap();
    // The fuzz target splits its input before each magic: one file holding
    // the first datagram (the sender is heard and asked), the reply and
    // every other datagram in a row reaches reassembly.
    let synced = |all: &[Vec<u8>], reply: Vec<u8>| {
        let mut v = all[0].clone();
        v.extend_from_slice(&reply);
        v.extend(all[1..].concat());
        v
    };
    std::fs::write(
        dir.join("seed-all"),
        synced(&all, reply(0x1234_5678_9abc_def0)),
    )
    .unwrap();

    // net_sealed: a mode byte, then datagrams. Plain ones (mode 1 seals
    // them, mode 2 seals and alters them) include NAKs and GONEs; sealed
    // ones (mode 0) come from a node with the target's key.
    let dir = dir.join("../net_sealed");
    std::fs::create_dir_all(&dir).unwrap();
    let mut control = Vec::new();
    wire::encode_nak(&mut control, 2, 1, 1, &[(1, 3), (7, 7)]);
    wire::encode_gone(
        &mut control,
        2,
        1,
        &wire::Gone {
            first_kept: 3,
            last_seq: 9,
        },
    );
    let from2: Vec<Vec<u8>> = all
        .iter()
        .map(|d| {
            // From node 2, so the target (node 1) does not ignore them.
            let mut d = d.clone();
            d[8..16].copy_from_slice(&2u64.to_le_bytes());
            d
        })
        .collect();
    let mut plain = synced(&from2, reply(2));
    plain.extend(control);
    for mode in [1u8, 2] {
        let mut f = vec![mode];
        f.extend_from_slice(&plain);
        std::fs::write(dir.join(format!("seed-mode{mode}")), f).unwrap();
    }
    let mut c = cfg(2);
    c.mtu = 512;
    c.key = Some(crate::net::Key::new([0x42; 32]));
    let mut k = Net::new(c, t0);
    k.handle_timeout(t0);
    k.send(t0, &out("A", "e", b"{\"x\":1}", 1, 1)).unwrap();
    k.send(t0, &out("A", "blob", &pattern(1500, 1), 2, 1))
        .unwrap();
    let mut sealed_reply = Vec::new();
    seal_datagram(
        &crate::net::Key::new([0x42; 32]),
        &reply(2),
        &mut sealed_reply,
    );
    let sealed = synced(&drain(&mut k, t0 + MS), sealed_reply);
    for mode in [0u8, 3] {
        let mut f = vec![mode];
        f.extend_from_slice(&sealed);
        std::fs::write(dir.join(format!("seed-mode{mode}")), f).unwrap();
    }
}

/// The committed fuzz seeds get past the SYNC handshake: fed as the fuzz
/// targets feed them, they deliver messages (so the fuzzer starts from
/// inputs that reach the DATA path, not only the unsynced drop).
#[test]
fn fuzz_seeds_reach_delivery() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let feed = |net: &mut Net, data: &[u8]| {
        let t0 = Instant::now();
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let starts: Vec<usize> = (0..data.len())
            .filter(|&i| data[i..].starts_with(&wire::MAGIC))
            .collect();
        for (k, &s) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(data.len());
            net.handle_datagram(t0, from, &data[s..end]);
        }
        messages(net).len()
    };
    let all = std::fs::read(corpus.join("net_datagram/seed-all")).unwrap();
    let mut c = cfg(1);
    c.max_message = 1 << 16;
    c.reassembly_bytes = 1 << 17;
    assert!(feed(&mut Net::new(c.clone(), Instant::now()), &all) >= 5);
    let sealed = std::fs::read(corpus.join("net_sealed/seed-mode0")).unwrap();
    c.key = Some(crate::net::Key::new([0x42; 32]));
    assert!(feed(&mut Net::new(c, Instant::now()), &sealed[1..]) >= 2);
}
