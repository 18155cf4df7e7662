//! What a stranger without the key can make a node do: memory held for
//! fake node ids (fragments announcing huge messages, held datagrams,
//! far-ahead sequence numbers) stays within `reassembly_bytes` for all
//! peers together and is freed; a NAK yields a bounded number of
//! retransmissions, within a per-requester rate; NAKs and ACKs of nodes
//! never heard count for nothing; a receiver that ACKs without progressing
//! holds a sender back for `flow_timeout` at most.

use std::net::SocketAddr;

use super::reliable::{self, warm_up};
use super::*;
use crate::net::wire::{put_frag_head, put_header, Ack, Header, Heartbeat, Kind, HEADER_LEN};
use crate::net::{NetStats, NAK_ANSWER_MAX};

/// A fake node's datagrams, numbered like a real node's.
struct Fake {
    node: u64,
    from: SocketAddr,
    hb: u64,
    nak: u64,
    ack: u64,
}

impl Fake {
    fn new(node: u64) -> Self {
        Fake {
            node,
            from: sim::addr(200),
            hb: 0,
            nak: 0,
            ack: 0,
        }
    }

    /// Makes node `i` of `s` take this fake's DATA from seq 1, as if it had
    /// answered the node's SYNC (a stranger without the key can), so the
    /// bounds are tested past the handshake; a heartbeat then makes it up.
    fn join(&self, s: &mut Sim, i: usize) {
        let now = s.now;
        fake_sync(&mut s.nodes[i].net, now, self.node, self.from, 0);
    }

    fn heartbeat(&mut self) -> Vec<u8> {
        self.hb += 1;
        let mut b = Vec::new();
        let hb = Heartbeat {
            name: "fake",
            last_seq: 0,
            uptime_ms: 10_000,
            messages_out: 0,
            datagrams_out: 0,
            bytes_out: 0,
        };
        wire::encode_heartbeat(&mut b, self.node, self.hb, &hb);
        b
    }

    fn nak(&mut self, target: u64, ranges: &[(u64, u64)]) -> Vec<u8> {
        self.nak += 1;
        let mut b = Vec::new();
        wire::encode_nak(&mut b, self.node, self.nak, target, ranges);
        b
    }

    fn ack(&mut self, target: u64, next: u64) -> Vec<u8> {
        self.ack += 1;
        let mut b = Vec::new();
        wire::encode_ack(&mut b, self.node, self.ack, &Ack { target, next });
        b
    }

    /// A DATA datagram holding the first fragment of a message announcing
    /// `total` bytes, carrying `len` of them.
    fn first_fragment(&self, seq: u64, total: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; HEADER_LEN];
        put_header(&mut b, &self.data_header(seq));
        put_frag_head(&mut b, 1, 0, total / len as u64 + 1, total, 0, len);
        b.resize(b.len() + len, 7);
        b
    }

    /// A DATA datagram holding one message of `len` payload bytes.
    fn message(&self, seq: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; HEADER_LEN];
        put_header(&mut b, &self.data_header(seq));
        let p = vec![5u8; len];
        wire::put_msg_record(&mut b, wire::tag::MSG, &out("A", "e", &p, 1, seq));
        b
    }

    fn data_header(&self, seq: u64) -> Header {
        Header {
            kind: Kind::Data,
            flags: 0,
            key_id: 0,
            node: self.node,
            seq,
        }
    }
}

/// Sum of what the peer rows show as held for reassembly.
fn reassembly_sum(net: &Net) -> usize {
    net.peers().map(|p| p.reassembly_bytes).sum()
}

#[test]
fn a_fragment_costs_what_it_carries_not_what_it_announces() {
    let mut s = Sim::with_defaults(40, 1);
    let f = Fake::new(1000);
    f.join(&mut s, 0);
    s.inject(0, f.from, &f.first_fragment(1, 16 << 20, 60_000));
    let used = reassembly_sum(&s.nodes[0].net);
    assert!(
        (60_000..=60_000 + (64 << 10)).contains(&used),
        "16 MiB announced, 60 kB received: {used} bytes held"
    );
}

#[test]
fn a_fragment_flood_from_fake_ids_stays_within_the_budget_and_is_freed() {
    const BUDGET: usize = 8 << 20;
    let mut s = Sim::new(41, 2, |i| {
        let mut c = cfg(i as u64 + 1);
        c.max_message = 4 << 20;
        c.reassembly_bytes = BUDGET;
        c
    });
    s.run_for(10 * MS);
    let mut peak = 0;
    for id in 0..300 {
        let f = Fake::new(5000 + id);
        // SYNC requests are rate-limited (SYNC_RATE a second in all).
        s.run_for(11 * MS);
        f.join(&mut s, 1);
        s.inject(1, f.from, &f.first_fragment(1, 4 << 20, 60_000));
        let net = &s.nodes[1].net;
        peak = peak.max(net.receive_memory());
        assert!(reassembly_sum(net) <= BUDGET, "{}", reassembly_sum(net));
        assert!(net.receive_memory() <= BUDGET, "{}", net.receive_memory());
    }
    let st = s.nodes[1].net.stats().clone();
    assert!(st.evicted > 0, "{st:?}");
    assert!(peak > BUDGET / 2, "the flood filled the budget: {peak}");
    // A real node's largest message still gets through while the fake
    // partials are there: theirs give way.
    let big = pattern(4 << 20, 3);
    s.send(0, "A", "e", &big, 1, 1);
    s.run_for(500 * MS);
    assert_eq!(s.nodes[1].inbox.len(), 1);
    assert_eq!(s.nodes[1].inbox[0].payload, big);
    // The flood stopped: its memory is freed after the reassembly timeout.
    s.run_for(s.nodes[1].net.config().reassembly_timeout + 100 * MS);
    assert_eq!(reassembly_sum(&s.nodes[1].net), 0);
    assert_eq!(s.nodes[1].net.receive_memory(), 0);
}

#[test]
fn held_datagrams_and_far_ahead_seqs_of_fake_ids_stay_within_the_budget() {
    const BUDGET: usize = 4 << 20;
    let mut s = Sim::new(42, 1, |i| {
        let mut c = cfg(i as u64 + 1);
        c.max_message = 1 << 20;
        c.reassembly_bytes = BUDGET;
        c
    });
    for id in 0..100 {
        let f = Fake::new(7000 + id);
        f.join(&mut s, 0);
        // Seq 1 starts its window; 2 never comes, so 3.. are held. The
        // last one announces seq 5000: all between are tracked missing.
        s.inject(0, f.from, &f.message(1, 10));
        for seq in 3..40 {
            s.inject(0, f.from, &f.message(seq, 1300));
        }
        s.inject(0, f.from, &f.message(5000, 10));
        let net = &s.nodes[0].net;
        assert!(net.receive_memory() <= BUDGET, "{}", net.receive_memory());
    }
    let held: usize = s.nodes[0].net.peers().map(|p| p.held).sum();
    assert!(held < 100 * 37, "some held datagrams were released: {held}");
    assert!(s.nodes[0].net.stats().evicted > 0);
    // Silent fake ids go down and take their memory with them.
    s.run_for(s.nodes[0].net.config().peer_timeout + 100 * MS);
    assert_eq!(s.nodes[0].net.receive_memory(), 0);
    assert_eq!(s.nodes[0].net.peers().count(), 0);
}

/// Node 0 sends `n` datagram-sized messages to node 1.
fn fill_window(s: &mut Sim, n: u64) {
    for q in 1..=n {
        s.send(0, "A", "e", &[1; 1300], 1, q);
    }
    s.run_for(50 * MS);
}

fn retransmitted_bytes(before: &NetStats, after: &NetStats) -> u64 {
    // Everything node 0 sent after the NAK besides heartbeats is
    // retransmitted DATA (and possibly a GONE).
    after.bytes_out - before.bytes_out
}

#[test]
fn one_small_nak_yields_at_most_a_few_datagrams() {
    let mut s = Sim::with_defaults(43, 2);
    warm_up(&mut s);
    fill_window(&mut s, 2000);
    let mut f = Fake::new(900);
    f.join(&mut s, 0);
    s.inject(0, f.from, &f.heartbeat());
    s.run_for(200 * MS);
    let before = s.nodes[0].net.stats().clone();
    let nak = f.nak(1, &[(1, 2000)]);
    assert!(nak.len() <= 40, "{}", nak.len());
    s.inject(0, f.from, &nak);
    s.run_for(5 * MS);
    let after = s.nodes[0].net.stats().clone();
    assert_eq!(
        after.heartbeats_out, before.heartbeats_out,
        "a quiet moment"
    );
    let sent = retransmitted_bytes(&before, &after);
    let mtu = s.nodes[0].net.config().mtu as u64;
    assert_eq!(
        after.retransmitted - before.retransmitted,
        NAK_ANSWER_MAX as u64
    );
    assert!(
        sent <= NAK_ANSWER_MAX as u64 * mtu,
        "{sent} bytes for one NAK"
    );
    assert!(
        sent <= 162 * nak.len() as u64,
        "{sent} bytes for a {}-byte NAK",
        nak.len()
    );
    assert!(after.retransmits_limited >= 1996);
}

#[test]
fn retransmissions_are_rate_limited_per_requester() {
    const RATE: u64 = 100_000;
    const BURST: usize = 50_000;
    let mut s = Sim::new(44, 2, |i| {
        let mut c = cfg(i as u64 + 1);
        c.retransmit_rate = RATE;
        c.retransmit_burst = BURST;
        c
    });
    warm_up(&mut s);
    fill_window(&mut s, 2000);
    let mut a = Fake::new(901);
    let mut b = Fake::new(902);
    a.join(&mut s, 0);
    b.join(&mut s, 0);
    s.inject(0, a.from, &a.heartbeat());
    s.inject(0, b.from, &b.heartbeat());
    s.run_for(10 * MS);
    let before = s.nodes[0].net.stats().retransmitted;
    // Requester a asks for 4 new datagrams every millisecond for 100 ms.
    for i in 0..100u64 {
        let q = 1 + 4 * i;
        let nak = a.nak(1, &[(q, q + 3)]);
        s.inject(0, a.from, &nak);
        s.run_for(MS);
    }
    let by_a = s.nodes[0].net.stats().retransmitted - before;
    // 100 ms at 100 kB/s plus the 50 kB burst, in datagrams of ~1.4 kB.
    let allowed = (BURST as u64 + RATE / 10) / 1300 + 1;
    assert!(by_a <= allowed, "{by_a} datagrams, at most {allowed}");
    assert!(by_a >= allowed / 2, "{by_a} datagrams: the rate was usable");
    // Requester b has its own bucket.
    let nak = b.nak(1, &[(1000, 1003)]);
    s.inject(0, b.from, &nak);
    s.run_for(5 * MS);
    let by_b = s.nodes[0].net.stats().retransmitted - before - by_a;
    assert_eq!(by_b, 4);
}

#[test]
fn naks_and_acks_from_unheard_nodes_are_ignored() {
    let mut s = Sim::with_defaults(45, 2);
    warm_up(&mut s);
    fill_window(&mut s, 100);
    let mut f = Fake::new(903);
    let before = s.nodes[0].net.stats().clone();
    s.inject(0, f.from, &f.nak(1, &[(1, 100)]));
    s.inject(0, f.from, &f.ack(1, 1));
    s.run_for(5 * MS);
    let after = s.nodes[0].net.stats().clone();
    assert_eq!(after.retransmitted, before.retransmitted);
    assert_eq!(after.unheard_ignored - before.unheard_ignored, 2);
    // Its ACK of nothing does not hold the sender back: with a small
    // window, a stream goes on at once.
    s.nodes[0].net.set_retransmit_bytes(64 << 10);
    for q in 101..=400 {
        s.send(0, "A", "e", &[1; 1300], 1, q);
    }
    s.run_for(100 * MS);
    assert_eq!(s.nodes[1].inbox.len(), 400);
    assert_eq!(s.nodes[0].net.stats().flow_waits, before.flow_waits);
}

#[test]
fn a_receiver_acking_without_progress_holds_the_sender_back_only_for_the_flow_timeout() {
    let mut s = Sim::new(46, 2, |i| {
        let mut c = cfg(i as u64 + 1);
        // A window of 46 datagrams, so 2000 messages need flow control.
        c.retransmit_bytes = 64 << 10;
        c
    });
    warm_up(&mut s);
    let mut f = Fake::new(904);
    f.join(&mut s, 0);
    s.inject(0, f.from, &f.heartbeat());
    s.inject(0, f.from, &f.ack(1, 1));
    let start = s.now;
    for q in 1..=2000 {
        s.send(0, "A", "e", &[1; 1300], 1, q);
    }
    // The fake receiver "progresses" by one datagram every half second,
    // and keeps announcing itself, as a stalling attacker would.
    let mut done = None;
    for step in 0..60u64 {
        if step % 5 == 0 {
            s.inject(0, f.from, &f.heartbeat());
            s.inject(0, f.from, &f.ack(1, 2 + step / 5));
        }
        s.run_for(100 * MS);
        if done.is_none() && s.nodes[1].inbox.len() == 2000 {
            done = Some(s.now - start);
        }
    }
    let took =
        done.unwrap_or_else(|| panic!("stalled: {} of 2000 delivered", s.nodes[1].inbox.len()));
    let timeout = s.nodes[0].net.config().flow_timeout;
    assert!(
        took <= timeout + 600 * MS,
        "held back {took:?}, flow timeout {timeout:?}"
    );
    assert_eq!(ids(&s.nodes[1].inbox).len(), 2000);
    assert!(reliable::gaps(&s, 1).is_empty());
}
