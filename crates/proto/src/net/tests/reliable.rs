//! Reliability through the simulator: NAKs and retransmission under loss,
//! duplication and reordering, suppression, tail loss, window exhaustion
//! and the gaps it leaves, late joiners, restarts.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::net::sim::Link;
use crate::net::NetEvent;

/// The gaps reported to node `r`: (sender node, first, last).
pub(super) fn gaps(s: &Sim, r: usize) -> Vec<(u64, u64, u64)> {
    s.nodes[r]
        .events
        .iter()
        .filter_map(|e| match e {
            NetEvent::Gap { node, first, last } => Some((*node, *first, *last)),
            _ => None,
        })
        .collect()
}

/// Runs until every node has every other one up (their heartbeats start
/// the receive windows, so nothing sent afterwards is silently skipped).
pub(super) fn warm_up(s: &mut Sim) {
    let n = s.nodes.len();
    // Up to 60 s of simulated time: under heavy loss an unlucky seed
    // needs over 15 s for every pair's heartbeat and sync to get through.
    for _ in 0..600 {
        if s.nodes
            .iter()
            .all(|x| x.net.peers().filter(|p| p.up).count() == n - 1)
        {
            return;
        }
        s.run_for(100 * MS);
    }
    panic!("peers never all came up");
}

/// Which messages (by per-origin seq) each DATA datagram of node 0
/// carried, whole or in part; filled by a sim filter.
pub(super) type Carried = std::rc::Rc<std::cell::RefCell<BTreeMap<u64, Vec<u64>>>>;

/// Installs a filter that records what node 0's DATA datagrams carry and
/// lets everything through. `fragmented` lists, in send order, the seqs
/// of the messages that were fragmented (their msg ids are 1, 2, …).
pub(super) fn record_carried(s: &mut Sim, fragmented: Vec<u64>) -> Carried {
    let carried: Carried = Default::default();
    let c = carried.clone();
    s.filter = Some(Box::new(move |from, _, d| {
        if from == 0 {
            if let Ok(dg) = wire::decode_datagram(d) {
                if let Body::Data(recs) = dg.body {
                    let seqs = recs
                        .map(|r| match r {
                            Record::Msg(m) => m.seq,
                            Record::Frag(f) => fragmented[f.msg_id as usize - 1],
                        })
                        .collect();
                    c.borrow_mut().insert(dg.header.seq, seqs);
                }
            }
        }
        true
    }));
    carried
}

/// Checks node `r`'s inbox against what node 0 sent: in order, once,
/// intact, and every message either delivered or carried by a datagram in
/// a reported gap (and no delivered one touched by a gap).
pub(super) fn check_stream(s: &Sim, r: usize, sent: &[(u64, Vec<u8>)], carried: &Carried) {
    let inbox: Vec<&InMessage> = s.nodes[r].inbox.iter().filter(|m| m.node == 1).collect();
    let seqs: Vec<u64> = inbox.iter().map(|m| m.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "node {r}: out of order or duplicated: {seqs:?}"
    );
    let by_seq: BTreeMap<u64, &[u8]> = sent.iter().map(|(q, p)| (*q, &p[..])).collect();
    for m in &inbox {
        assert!(
            m.payload == by_seq[&m.seq],
            "node {r}: message {} altered",
            m.seq
        );
    }
    let gaps = gaps(s, r);
    let in_gap = |d: u64| gaps.iter().any(|&(n, a, b)| n == 1 && a <= d && d <= b);
    let carried = carried.borrow();
    let mut touched: BTreeMap<u64, bool> = BTreeMap::new();
    for (d, msgs) in carried.iter() {
        for q in msgs {
            *touched.entry(*q).or_default() |= in_gap(*d);
        }
    }
    // Each gap sits between the messages of the datagrams before it and
    // those after it.
    let marks = &s.nodes[r].gap_marks;
    assert_eq!(
        marks
            .iter()
            .map(|&(_, n, a, b)| (n, a, b))
            .collect::<Vec<_>>(),
        gaps,
        "node {r}: the gaps among the messages are the gap events"
    );
    let span = |q: u64| {
        let ds = carried
            .iter()
            .filter(|(_, m)| m.contains(&q))
            .map(|(d, _)| *d);
        (ds.clone().min().unwrap(), ds.max().unwrap())
    };
    for &(at, node, first, last) in marks.iter().filter(|m| m.1 == 1) {
        for (k, m) in s.nodes[r]
            .inbox
            .iter()
            .enumerate()
            .filter(|(_, m)| m.node == node)
        {
            let (lo, hi) = span(m.seq);
            if k < at {
                assert!(
                    hi < first,
                    "node {r}: message {} (datagrams {lo}..={hi}) after gap {first}..={last}",
                    m.seq
                );
            } else {
                assert!(
                    lo > last,
                    "node {r}: message {} (datagrams {lo}..={hi}) before gap {first}..={last}",
                    m.seq
                );
            }
        }
    }
    let delivered: std::collections::BTreeSet<u64> = seqs.iter().copied().collect();
    for (q, _) in sent {
        let gap = touched.get(q).copied().unwrap_or(false);
        assert!(
            delivered.contains(q) != gap,
            "node {r}: message {q} delivered: {}, in a reported gap: {gap}; gaps {gaps:?}",
            delivered.contains(q)
        );
    }
}

/// Sends `n` messages from node 0 with sizes chosen by `size(i)`,
/// stepping the clock now and then; returns what was sent and the seqs of
/// the fragmented ones.
pub(super) fn send_burst(
    s: &mut Sim,
    n: u64,
    size: impl Fn(u64) -> usize,
) -> (Vec<(u64, Vec<u8>)>, Vec<u64>) {
    let mut sent = Vec::new();
    let mut fragmented = Vec::new();
    for q in 1..=n {
        let p = pattern(size(q), q as u8);
        if p.len() > 1300 {
            fragmented.push(q);
        }
        s.send(0, "A", "e", &p, 1, q);
        sent.push((q, p));
        if q % 8 == 0 {
            s.run_for(MS / 2);
        }
    }
    (sent, fragmented)
}

/// Sizes with small messages, datagram-filling ones and fragmented ones.
fn mixed(q: u64) -> usize {
    match q % 13 {
        0 => 5000,
        5 => 1200,
        _ => 64,
    }
}

#[test]
fn thirty_percent_loss_with_duplication_and_reordering() {
    for seed in [11, 12, 13] {
        let mut s = Sim::with_defaults(seed, 3);
        s.link = Link {
            loss: 0.3,
            dup: 0.05,
            reorder: 0.2,
            ..Link::default()
        };
        warm_up(&mut s);
        // Fragmented messages are predicted from the sizes.
        let fragmented: Vec<u64> = (1..=1500).filter(|&q| mixed(q) > 1300).collect();
        let carried = record_carried(&mut s, fragmented);
        let (sent, _) = send_burst(&mut s, 1500, mixed);
        s.run_for(Duration::from_secs(2));
        for r in [1, 2] {
            check_stream(&s, r, &sent, &carried);
            let st = s.nodes[r].net.stats();
            assert!(st.naks_out > 0 && st.duplicates > 0, "{st:?}");
            // Nearly everything is repaired even at 30% loss.
            let got = s.nodes[r].inbox.len();
            assert!(got >= 1400, "seed {seed}: node {r} got only {got} of 1500");
            assert_eq!(s.nodes[r].net.peers().map(|p| p.held).sum::<usize>(), 0);
        }
    }
}

#[test]
fn ten_percent_loss_loses_nothing() {
    let mut s = Sim::with_defaults(21, 3);
    s.link = Link {
        loss: 0.1,
        dup: 0.02,
        reorder: 0.1,
        ..Link::default()
    };
    warm_up(&mut s);
    let fragmented: Vec<u64> = (1..=3000).filter(|&q| mixed(q) > 1300).collect();
    let carried = record_carried(&mut s, fragmented);
    let (sent, _) = send_burst(&mut s, 3000, mixed);
    s.run_for(Duration::from_secs(1));
    for r in [1, 2] {
        check_stream(&s, r, &sent, &carried);
        assert_eq!(s.nodes[r].inbox.len(), 3000);
        assert!(gaps(&s, r).is_empty());
    }
    assert!(s.nodes[0].net.stats().retransmitted > 0);
}

#[test]
fn one_nak_repairs_every_receiver_that_missed_the_same_datagram() {
    let mut s = Sim::with_defaults(22, 6);
    warm_up(&mut s);
    // Datagram 3 of node 0 is lost for everyone, once (loss at the sender).
    s.filter = Some(Box::new(move |from, _, d| {
        !(from == 0 && d[6] == wire::kind::DATA && d[16] == 3)
    }));
    for q in 1..=10 {
        s.send(0, "A", "e", &pattern(1000, q as u8), 1, q);
        s.run_for(MS / 4);
    }
    // The filter drops datagram 3 for every receiver of that transmission;
    // stop dropping before a retransmission can leave.
    s.run_for(MS / 2);
    s.filter = None;
    s.run_for(50 * MS);
    for r in 1..6 {
        assert_eq!(
            ids(&s.nodes[r].inbox),
            (1..=10).map(|q| (1, q)).collect::<Vec<_>>()
        );
    }
    let naks: u64 = (1..6).map(|r| s.nodes[r].net.stats().naks_out).sum();
    let spared: u64 = (1..6).map(|r| s.nodes[r].net.stats().naks_suppressed).sum();
    assert!(
        naks <= 2,
        "{naks} NAKs for one datagram: suppression failed"
    );
    // Each NAK heard counts a round at every other receiver that misses it.
    assert!(spared >= 5 - naks, "{spared}");
    assert_eq!(s.nodes[0].net.stats().retransmitted, 1);
}

#[test]
fn tail_loss_is_noticed_without_waiting_for_a_heartbeat() {
    let mut s = Sim::with_defaults(23, 2);
    warm_up(&mut s);
    s.run_for(Duration::from_millis(100));
    let mut first = true;
    s.filter = Some(Box::new(move |_, _, d| {
        let drop = first && d[6] == wire::kind::DATA;
        first &= !drop;
        !drop
    }));
    s.send(0, "A", "e", b"last", 1, 1);
    // The probe follows 5 ms after the burst; then a NAK round.
    s.run_for(20 * MS);
    assert_eq!(ids(&s.nodes[1].inbox), vec![(1, 1)]);
    assert_eq!(s.nodes[0].net.stats().retransmitted, 1);
}

#[test]
fn exhausted_window_is_reported_as_a_gap() {
    let mut s = Sim::new(24, 2, |i| {
        let mut c = cfg(i as u64 + 1);
        // About three full datagrams.
        c.retransmit_bytes = 4000;
        c
    });
    warm_up(&mut s);
    // Node 1 misses DATA 3..=20 (a partition), and their retransmissions.
    s.filter = Some(Box::new(|from, _, d| {
        let seq = u64::from_le_bytes(d[16..24].try_into().unwrap());
        !(from == 0 && d[6] == wire::kind::DATA && (3..=20).contains(&seq))
    }));
    for q in 1..=30 {
        s.send(0, "A", "e", &pattern(1300, q as u8), 1, q);
        s.run_for(MS / 4);
    }
    s.run_for(100 * MS);
    // The window holds the last three; 3..=20 are gone (reported in one
    // or more adjacent runs, as the receiver learned of them).
    let g = gaps(&s, 1);
    assert_eq!((g[0].1, g[g.len() - 1].2), (3, 20), "{g:?}");
    assert!(g.windows(2).all(|w| w[0].2 + 1 == w[1].1), "{g:?}");
    let got: Vec<u64> = s.nodes[1].inbox.iter().map(|m| m.seq).collect();
    let want: Vec<u64> = (1..=2).chain(21..=30).collect();
    assert_eq!(got, want);
    let p = s.nodes[1].net.peers().next().unwrap();
    assert_eq!((p.lost, p.gaps), (18, g.len() as u64));
    assert!(s.nodes[0].net.stats().gone_out >= 1);
    // Fragments across the gap: a message is whole or not at all.
    let mut s = Sim::new(25, 2, |i| {
        let mut c = cfg(i as u64 + 1);
        c.retransmit_bytes = 0;
        c
    });
    warm_up(&mut s);
    s.filter = Some(Box::new(|from, _, d| {
        let seq = u64::from_le_bytes(d[16..24].try_into().unwrap());
        !(from == 0 && d[6] == wire::kind::DATA && seq == 3)
    }));
    s.send(0, "A", "e", &pattern(6000, 1), 1, 1);
    s.send(0, "A", "e", b"after", 1, 2);
    s.run_for(100 * MS);
    assert_eq!(ids(&s.nodes[1].inbox), vec![(1, 2)]);
    assert_eq!(gaps(&s, 1), vec![(1, 3, 3)]);
    assert_eq!(s.nodes[1].net.stats().incomplete, 1);
}

#[test]
fn late_joiner_asks_for_no_history() {
    let mut s = Sim::with_defaults(26, 3);
    s.stop(2);
    warm_up_two(&mut s);
    for q in 1..=500 {
        s.send(0, "A", "e", &[1; 64], 1, q);
    }
    s.run_for(100 * MS);
    s.nodes[2].online = true;
    s.run_for(Duration::from_millis(1500));
    s.send(0, "A", "e", b"now", 1, 501);
    s.run_for(50 * MS);
    assert_eq!(ids(&s.nodes[2].inbox), vec![(1, 501)]);
    let st = s.nodes[2].net.stats();
    assert_eq!((st.naks_out, st.gaps, st.lost), (0, 0, 0));
    assert_eq!(s.nodes[0].net.stats().gone_out, 0);
}

/// Warms up nodes 0 and 1 only.
fn warm_up_two(s: &mut Sim) {
    for _ in 0..50 {
        s.run_for(100 * MS);
        if s.nodes[1].net.peers().any(|p| p.node == 1 && p.up) {
            return;
        }
    }
    panic!("node 0 never came up at node 1");
}

#[test]
fn restarted_sender_is_a_new_stream_and_the_old_one_ends_cleanly() {
    let mut s = Sim::with_defaults(27, 2);
    s.link.loss = 0.1;
    warm_up(&mut s);
    for q in 1..=200 {
        s.send(0, "A", "e", &[2; 100], 1, q);
    }
    s.run_for(300 * MS);
    s.restart(0, 77);
    for q in 1..=200 {
        s.send(0, "A", "e", &[3; 100], 1, q);
    }
    s.run_for(Duration::from_secs(3));
    let old: Vec<u64> = s.nodes[1]
        .inbox
        .iter()
        .filter(|m| m.node == 1)
        .map(|m| m.seq)
        .collect();
    let new: Vec<u64> = s.nodes[1]
        .inbox
        .iter()
        .filter(|m| m.node == 77)
        .map(|m| m.seq)
        .collect();
    assert_eq!(old, (1..=200).collect::<Vec<_>>());
    // The new run's first datagrams may be lost before its first heartbeat
    // reaches node 1; from there on everything arrives.
    assert!(new.windows(2).all(|w| w[1] == w[0] + 1), "{new:?}");
    assert_eq!(new.last(), Some(&200));
    assert!(gaps(&s, 1).is_empty());
}

#[test]
fn a_peer_heard_again_after_a_partition_reports_what_it_missed() {
    let mut s = Sim::with_defaults(28, 2);
    s.link.loss = 0.0;
    warm_up(&mut s);
    s.send(0, "A", "e", b"before", 1, 1);
    s.run_for(10 * MS);
    // Node 1 hears nothing from node 0 for 5 s: node 0 goes down there.
    s.filter = Some(Box::new(|from, to, _| !(from == 0 && to == 1)));
    for q in 2..=50 {
        s.send(0, "A", "e", &[4; 1000], 1, q);
        s.run_for(MS);
    }
    s.run_for(Duration::from_secs(5));
    assert_eq!(s.nodes[1].net.peers().count(), 0);
    s.filter = None;
    s.send(0, "A", "e", b"after", 1, 51);
    s.run_for(Duration::from_millis(1500));
    let got: Vec<u64> = s.nodes[1].inbox.iter().map(|m| m.seq).collect();
    // Its window went on where it stopped: what was sent meanwhile is
    // retransmitted (still in the window), nothing is replayed.
    assert_eq!(got, (1..=51).collect::<Vec<_>>());
    assert!(gaps(&s, 1).is_empty());
}

#[test]
fn a_receiver_falling_behind_holds_the_sender_back_instead_of_losing() {
    let mut s = Sim::new(29, 3, |i| {
        let mut c = cfg(i as u64 + 1);
        // A window of about twenty datagrams.
        c.retransmit_bytes = 20 * 1400;
        c
    });
    warm_up(&mut s);
    // Data flows: the receivers acknowledge, and so take part in flow control.
    s.send(0, "A", "e", b"start", 1, 0);
    s.run_for(10 * MS);
    let deaf = std::rc::Rc::new(std::cell::Cell::new(true));
    let d = deaf.clone();
    // Node 1 misses every DATA datagram for a while (shorter than its NAK
    // rounds), as an overloaded receiver whose socket buffer overflows.
    s.filter = Some(Box::new(move |_, to, p| {
        !(d.get() && to == 1 && p[6] == wire::kind::DATA)
    }));
    for q in 1..=30 {
        s.send(0, "A", "e", &pattern(1000, q as u8), 1, q);
        s.run_for(MS / 4);
    }
    s.run_for(20 * MS);
    assert!(s.nodes[0].net.pending_transmits() > 0, "held back");
    for q in 31..=200 {
        s.send(0, "A", "e", &pattern(1000, q as u8), 1, q);
    }
    s.run_for(20 * MS);
    // Held back about a window ahead of node 1: node 2 got little more.
    let ahead = s.nodes[2].inbox.len();
    assert!(ahead < 30, "{ahead} delivered to node 2 meanwhile");
    deaf.set(false);
    s.run_for(Duration::from_millis(500));
    for r in [1, 2] {
        assert_eq!(
            ids(&s.nodes[r].inbox),
            (0..=200).map(|q| (1, q)).collect::<Vec<_>>(),
            "node {r}"
        );
        assert!(gaps(&s, r).is_empty());
    }
    assert!(s.nodes[0].net.stats().flow_waits > 0);
}

#[test]
fn a_silent_receiver_holds_the_sender_back_only_for_the_flow_timeout() {
    let mut s = Sim::new(30, 3, |i| {
        let mut c = cfg(i as u64 + 1);
        c.retransmit_bytes = 20 * 1400;
        c
    });
    warm_up(&mut s);
    s.send(0, "A", "e", b"first", 1, 1);
    s.run_for(10 * MS);
    s.stop(1);
    for q in 2..=200 {
        s.send(0, "A", "e", &pattern(1000, q as u8), 1, q);
    }
    let timeout = s.nodes[0].net.config().flow_timeout;
    s.run_for(timeout / 2);
    assert!(s.nodes[2].inbox.len() < 100, "held back by node 1");
    s.run_for(timeout);
    assert_eq!(
        ids(&s.nodes[2].inbox),
        (1..=200).map(|q| (1, q)).collect::<Vec<_>>()
    );
}
