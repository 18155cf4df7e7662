//! Fragmentation and reassembly, through the simulator.

use std::time::Duration;

use super::*;
use crate::net::sim::Link;
use crate::net::wire::{put_frag_head, put_header, Header, Kind, HEADER_LEN};

/// True if the datagram holds the last fragment of a message.
fn has_last_fragment(d: &[u8]) -> bool {
    wire::decode_datagram(d).is_ok()
        && records(d)
            .iter()
            .any(|r| matches!(r, Record::Frag(f) if f.index + 1 == f.count))
}

/// True if the datagram holds a fragment with this index.
fn has_fragment(d: &[u8], index: u64) -> bool {
    wire::decode_datagram(d).is_ok()
        && records(d)
            .iter()
            .any(|r| matches!(r, Record::Frag(f) if f.index == index))
}

#[test]
fn one_mebibyte_message_arrives_whole() {
    let mut s = Sim::with_defaults(1, 3);
    s.run_for(10 * MS);
    let big = pattern(1 << 20, 3);
    s.send(0, "files", "blob", &big, 5, 1);
    s.run_for(100 * MS);
    for r in [1, 2] {
        let inbox = &s.nodes[r].inbox;
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].payload.len(), big.len());
        assert!(inbox[0].payload == big, "payload intact");
        assert_eq!((inbox[0].node, inbox[0].client, inbox[0].seq), (1, 5, 1));
        assert_eq!(inbox[0].channel, "files");
        assert_eq!(inbox[0].event, "blob");
        let peer = s.nodes[r].net.peers().find(|p| p.node == 1).unwrap();
        assert_eq!(peer.reassembly_bytes, 0, "memory freed");
    }
    assert!(s.nodes[0].net.stats().datagrams_out > 700);
}

#[test]
fn reordered_and_duplicated_fragments_reassemble_once_in_order() {
    let mut s = Sim::with_defaults(7, 2);
    s.link = Link {
        reorder: 0.3,
        dup: 0.3,
        ..Link::default()
    };
    s.run_for(10 * MS);
    let mut sent = Vec::new();
    for i in 0..30u64 {
        let len = if i % 3 == 1 {
            20_000 + i as usize * 111
        } else {
            40
        };
        let p = pattern(len, i as u8);
        s.send(0, "A", "e", &p, 1, i + 1);
        sent.push(p);
        s.run_for(MS / 10);
    }
    s.run_for(200 * MS);
    let inbox = &s.nodes[1].inbox;
    assert_eq!(ids(inbox), (1..=30).map(|q| (1, q)).collect::<Vec<_>>());
    for (m, p) in inbox.iter().zip(&sent) {
        assert!(m.payload == *p);
    }
    let st = s.nodes[1].net.stats();
    assert!(st.duplicates > 0, "the link duplicated something");
    assert_eq!((st.lost, st.incomplete), (0, 0));
}

#[test]
fn per_sender_order_holds_across_batches_and_fragments() {
    let mut s = Sim::with_defaults(11, 3);
    s.link.reorder = 0.2;
    s.run_for(10 * MS);
    let mut rng = crate::net::rng::XorShift::new(5);
    for q in 1..=400u64 {
        for from in [0, 1] {
            let len = match rng.below(10) {
                0 => 3000 + rng.below(10_000) as usize,
                1 => 1300 + rng.below(200) as usize,
                _ => rng.below(200) as usize,
            };
            let client = 1 + rng.below(3);
            s.send(from, "A", "e", &pattern(len, q as u8), client, q);
        }
        if q % 7 == 0 {
            s.run_for(MS / 5);
        }
    }
    s.run_for(300 * MS);
    let inbox = &s.nodes[2].inbox;
    assert_eq!(inbox.len(), 800);
    for node in [1, 2] {
        let seqs: Vec<u64> = inbox
            .iter()
            .filter(|m| m.node == node)
            .map(|m| m.seq)
            .collect();
        assert_eq!(
            seqs,
            (1..=400).collect::<Vec<_>>(),
            "order from node {node}"
        );
    }
}

#[test]
fn reassembly_timeout_frees_memory() {
    // NAK rounds that outlast the reassembly timeout, so the timeout, not
    // giving up on the missing datagram, ends the partial message.
    let mut s = Sim::new(2, 2, |i| {
        let mut c = cfg(i as u64 + 1);
        c.nak_rounds = 100_000;
        c
    });
    s.run_for(10 * MS);
    s.filter = Some(Box::new(|_, _, d| !has_last_fragment(d)));
    s.send(0, "A", "e", &pattern(100_000, 1), 1, 1);
    s.run_for(100 * MS);
    let peer = s.nodes[1].net.peers().next().unwrap().clone();
    assert!(
        peer.reassembly_bytes >= 100_000,
        "{}",
        peer.reassembly_bytes
    );
    let timeout = s.nodes[1].net.config().reassembly_timeout;
    s.run_for(timeout - 200 * MS);
    assert!(s.nodes[1].net.peers().next().unwrap().reassembly_bytes > 0);
    s.run_for(200 * MS);
    let peer = s.nodes[1].net.peers().next().unwrap();
    assert_eq!(peer.reassembly_bytes, 0);
    assert_eq!(peer.incomplete, 1);
    assert_eq!(s.nodes[1].net.stats().incomplete, 1);
    assert!(s.nodes[1].inbox.is_empty());
}

#[test]
fn a_lost_fragment_is_given_up_when_the_stream_moves_on() {
    let mut s = Sim::with_defaults(3, 2);
    s.run_for(10 * MS);
    s.filter = Some(Box::new(|_, _, d| !has_fragment(d, 2)));
    s.send(0, "A", "e", &pattern(10_000, 1), 1, 1);
    s.send(0, "A", "e", b"after", 1, 2);
    // The fragment never gets through, not even when NAKed: after the last
    // NAK round the receiver gives up on it and moves on.
    // Rounds back off: 10, 20, 40, 80, 160, then 200 ms (about 2 s).
    s.run_for(Duration::from_millis(2500));
    assert_eq!(ids(&s.nodes[1].inbox), vec![(1, 2)]);
    let peer = s.nodes[1].net.peers().next().unwrap();
    assert_eq!(
        (peer.lost, peer.gaps, peer.incomplete, peer.reassembly_bytes),
        (1, 1, 1, 0)
    );
    let rounds = s.nodes[1].net.config().nak_rounds as u64;
    assert_eq!(peer.naks_out, rounds);
    assert_eq!(s.nodes[0].net.stats().retransmitted, rounds);
}

#[test]
fn oversized_messages_are_refused_and_counted() {
    // Node 1 accepts 100 KiB messages; node 2 has 50 KiB of reassembly memory.
    let mut s = Sim::new(4, 3, |i| {
        let mut c = cfg(i as u64 + 1);
        if i == 1 {
            c.max_message = 100 << 10;
        }
        if i == 2 {
            c.reassembly_bytes = 50 << 10;
        }
        c
    });
    s.run_for(10 * MS);
    s.send(0, "A", "e", &pattern(200 << 10, 1), 1, 1);
    s.send(0, "A", "e", &pattern(60 << 10, 2), 1, 2);
    s.send(0, "A", "e", b"small", 1, 3);
    s.run_for(100 * MS);
    assert_eq!(ids(&s.nodes[1].inbox), vec![(1, 2), (1, 3)]);
    assert_eq!(ids(&s.nodes[2].inbox), vec![(1, 3)]);
    assert_eq!(
        s.nodes[1].net.stats().oversized,
        1,
        "counted once per message"
    );
    assert_eq!(s.nodes[2].net.stats().oversized, 2);
    for r in [1, 2] {
        let peer = s.nodes[r].net.peers().find(|p| p.node == 1).unwrap();
        assert_eq!(peer.reassembly_bytes, 0);
        assert_eq!(peer.oversized, s.nodes[r].net.stats().oversized);
    }
}

/// A DATA datagram from node 9 holding one fragment.
fn frag_datagram(
    seq: u64,
    id: u64,
    index: u64,
    count: u64,
    total: u64,
    offset: u64,
    data: &[u8],
) -> Vec<u8> {
    let mut b = vec![0; HEADER_LEN];
    put_header(
        &mut b,
        &Header {
            kind: Kind::Data,
            flags: 0,
            key_id: 0,
            node: 9,
            seq,
        },
    );
    put_frag_head(&mut b, id, index, count, total, offset, data.len());
    b.extend_from_slice(data);
    b
}

#[test]
fn interleaved_partials_from_a_nonconforming_sender_use_one_slot() {
    let mut s = Sim::with_defaults(5, 1);
    let from = sim::addr(9);
    let body = |salt| {
        let p = pattern(5000, salt);
        let m = out("A", "e", &p, 1, salt as u64);
        let mut b = Vec::new();
        wire::put_message_head(&mut b, wire::tag::MSG, &m);
        b.extend_from_slice(&p);
        b
    };
    let (a, b) = (body(1), body(2));
    let (ta, tb) = (a.len() as u64, b.len() as u64);
    fake_sync(&mut s.nodes[0].net, s.now, 9, from, 0);
    s.inject(0, from, &frag_datagram(1, 1, 0, 2, ta, 0, &a[..3000]));
    assert!(s.nodes[0].net.peers().next().unwrap().reassembly_bytes >= a.len());
    s.inject(0, from, &frag_datagram(2, 2, 0, 2, tb, 0, &b[..3000]));
    let peer = s.nodes[0].net.peers().next().unwrap();
    assert_eq!(peer.incomplete, 1, "the first partial was abandoned");
    assert!(peer.reassembly_bytes < a.len() + b.len());
    s.inject(0, from, &frag_datagram(3, 2, 1, 2, tb, 3000, &b[3000..]));
    assert_eq!(ids(&s.nodes[0].inbox), vec![(1, 2)]);
    // Fragments whose numbers disagree with the partial are dropped with it.
    s.inject(0, from, &frag_datagram(4, 3, 0, 2, ta, 0, &a[..3000]));
    s.inject(0, from, &frag_datagram(5, 3, 1, 3, ta, 3000, &a[3000..]));
    let peer = s.nodes[0].net.peers().next().unwrap();
    assert_eq!((peer.malformed, peer.reassembly_bytes), (1, 0));
    // A duplicate fragment changes nothing; overlapping ones that do not add
    // up to the total are refused.
    s.inject(0, from, &frag_datagram(6, 4, 0, 2, ta, 0, &a[..3000]));
    s.inject(0, from, &frag_datagram(6, 4, 0, 2, ta, 0, &a[..3000]));
    s.inject(0, from, &frag_datagram(7, 4, 0, 2, ta, 0, &a[..3000]));
    s.inject(0, from, &frag_datagram(8, 4, 1, 2, ta, 0, &a[..3000]));
    let peer = s.nodes[0].net.peers().next().unwrap();
    assert_eq!(
        (peer.duplicates, peer.malformed, peer.reassembly_bytes),
        (1, 2, 0)
    );
    assert_eq!(s.nodes[0].inbox.len(), 1);
}
