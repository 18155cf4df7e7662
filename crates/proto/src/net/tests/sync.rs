//! The SYNC handshake, the full peer table and the drop reports: replays
//! into a restarted daemon deliver nothing and cause no NAK, a late joiner
//! starts at the current position, a receiver started before a sender gets
//! all of it, fake node ids do not lock a real peer out, and every reply,
//! request and report is rate-limited.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::reliable::{gaps, warm_up};
use super::*;
use crate::net::seal::{seal_datagram, Key};
use crate::net::wire::{Heartbeat, SyncRequest};
use crate::net::{DropReason, NetEvent, MAX_PEERS};

fn key(b: u8) -> Key {
    Key::new([b; 32])
}

/// `n` nodes sealing with the same key.
fn keyed(seed: u64, n: usize) -> Sim {
    Sim::new(seed, n, |i| {
        let mut c = cfg(i as u64 + 1);
        c.key = Some(key(7));
        c
    })
}

type Tape = Rc<RefCell<Vec<Vec<u8>>>>;

/// Records every DATA datagram node 0 sends to node 1, as it left.
fn record_data(s: &mut Sim) -> Tape {
    let tape: Tape = Default::default();
    let t = tape.clone();
    s.filter = Some(Box::new(move |from, to, d| {
        if from == 0 && to == 1 && d[6] == wire::kind::DATA {
            t.borrow_mut().push(d.to_vec());
        }
        true
    }));
    tape
}

fn replay(s: &mut Sim, to: usize, tape: &Tape) {
    for d in tape.borrow().iter() {
        s.inject(to, sim::addr(0), d);
    }
}

fn heartbeat(node: u64, seq: u64, last_seq: u64) -> Vec<u8> {
    let mut b = Vec::new();
    let hb = Heartbeat {
        name: "fake",
        last_seq,
        uptime_ms: 1 << 30,
        messages_out: 0,
        datagrams_out: 0,
        bytes_out: 0,
    };
    wire::encode_heartbeat(&mut b, node, seq, &hb);
    b
}

#[test]
fn replays_into_a_restarted_receiver_deliver_nothing_and_cause_no_nak() {
    let mut s = keyed(61, 2);
    warm_up(&mut s);
    let tape = record_data(&mut s);
    for q in 1..=100 {
        s.send(0, "A", "e", &[q as u8; 600], 1, q);
        s.run_for(MS);
    }
    s.run_for(100 * MS);
    assert_eq!(s.nodes[1].inbox.len(), 100);
    assert!(
        tape.borrow().len() >= 50,
        "{} datagrams",
        tape.borrow().len()
    );
    s.filter = None;
    let retransmitted = s.nodes[0].net.stats().retransmitted;

    // Node 1 restarts; the recording reaches it before it heard anything
    // else of node 0, then again while it syncs, then after.
    s.restart(1, 1001);
    s.nodes[1].inbox.clear();
    s.nodes[1].events.clear();
    replay(&mut s, 1, &tape);
    s.run_for(MS);
    replay(&mut s, 1, &tape);
    warm_up(&mut s);
    replay(&mut s, 1, &tape);
    s.run_for(Duration::from_secs(3));

    let r = s.nodes[1].net.stats();
    assert_eq!(s.nodes[1].inbox.len(), 0, "history was delivered");
    assert_eq!(r.naks_out, 0, "the replay caused NAKs");
    assert!(gaps(&s, 1).is_empty(), "{:?}", gaps(&s, 1));
    assert!(r.unsynced > 0 && r.duplicates > 0, "{r:?}");
    assert_eq!(s.nodes[0].net.stats().retransmitted, retransmitted);

    // The stream goes on from where node 0 is.
    for q in 101..=110 {
        s.send(0, "A", "e", b"new", 1, q);
    }
    s.run_for(100 * MS);
    let got: Vec<u64> = s.nodes[1].inbox.iter().map(|m| m.seq).collect();
    assert_eq!(got, (101..=110).collect::<Vec<_>>());
}

#[test]
fn a_replay_into_a_running_receiver_delivers_nothing() {
    let mut s = keyed(62, 2);
    warm_up(&mut s);
    let tape = record_data(&mut s);
    for q in 1..=20 {
        s.send(0, "A", "e", b"x", 1, q);
        s.run_for(MS);
    }
    s.run_for(50 * MS);
    s.filter = None;
    replay(&mut s, 1, &tape);
    s.run_for(Duration::from_secs(1));
    assert_eq!(s.nodes[1].inbox.len(), 20);
    assert_eq!(s.nodes[1].net.stats().naks_out, 0);
}

#[test]
fn a_late_joiner_starts_at_the_current_position() {
    let mut s = keyed(63, 3);
    s.stop(2);
    warm_up_some(&mut s, 2);
    for q in 1..=50 {
        s.send(0, "A", "e", b"old", 1, q);
        s.run_for(MS);
    }
    s.run_for(Duration::from_secs(2));
    s.restart(2, 3003);
    warm_up(&mut s);
    for q in 51..=60 {
        s.send(0, "A", "e", b"new", 1, q);
    }
    s.run_for(200 * MS);
    let got: Vec<u64> = s.nodes[2].inbox.iter().map(|m| m.seq).collect();
    assert_eq!(got, (51..=60).collect::<Vec<_>>());
    let st = s.nodes[2].net.stats();
    assert_eq!((st.naks_out, st.gaps), (0, 0), "{st:?}");
    assert_eq!(s.nodes[1].inbox.len(), 60);
}

/// Runs until the first `n` nodes see each other up.
fn warm_up_some(s: &mut Sim, n: usize) {
    for _ in 0..100 {
        if s.nodes[..n]
            .iter()
            .all(|x| x.net.peers().filter(|p| p.up).count() == n - 1)
        {
            return;
        }
        s.run_for(100 * MS);
    }
    panic!("peers never came up");
}

#[test]
fn a_receiver_started_before_the_sender_gets_everything() {
    let mut s = keyed(64, 2);
    s.stop(0);
    s.run_for(Duration::from_secs(2));
    // The sender starts now and sends at once, before anyone synced it.
    s.restart(0, 4004);
    for q in 1..=200 {
        s.send(0, "A", "e", &[1; 300], 1, q);
    }
    s.run_for(Duration::from_secs(1));
    let got: Vec<u64> = s.nodes[1].inbox.iter().map(|m| m.seq).collect();
    assert_eq!(got, (1..=200).collect::<Vec<_>>());
    let st = s.nodes[1].net.stats();
    assert!(st.unsynced > 0, "the first DATA came before the SYNC reply");
    assert_eq!(st.gaps, 0);
}

#[test]
fn sync_replies_are_rate_limited_and_never_larger_than_the_request() {
    let t0 = Instant::now();
    let mut n = Net::new(cfg(1), t0);
    let from: SocketAddr = "10.0.0.9:4000".parse().unwrap();
    let request = |node: u64, seq: u64| {
        let mut b = Vec::new();
        wire::encode_sync(&mut b, node, seq, &SyncRequest { target: 1 });
        b
    };
    let _ = drain(&mut n, t0);
    // One requester asking 1000 times over one second: 4 replies.
    let mut replies = Vec::new();
    for i in 0..1000u64 {
        let t = t0 + Duration::from_millis(i);
        n.handle_datagram(t, from, &request(77, i + 1));
        replies.extend(
            drain(&mut n, t)
                .into_iter()
                .filter(|d| d[6] == wire::kind::SYNC_REPLY),
        );
    }
    assert_eq!(replies.len(), 4, "one per 250 ms");
    let req_len = request(77, 1).len();
    for r in &replies {
        assert!(r.len() <= req_len, "{} > {req_len}", r.len());
    }
    // 5000 requesters within 100 ms: the global rate (burst 100, then
    // 100 a second) bounds the replies.
    let t1 = t0 + Duration::from_secs(5);
    let mut count = 0;
    for i in 0..5000u64 {
        let t = t1 + Duration::from_micros(i * 20);
        n.handle_datagram(t, from, &request(1000 + i, 1));
        count += drain(&mut n, t)
            .iter()
            .filter(|d| d[6] == wire::kind::SYNC_REPLY)
            .count();
    }
    assert!((100..=111).contains(&count), "{count} replies");
    assert!(n.stats().syncs_limited >= 5000 - 111);
}

#[test]
fn sync_requests_are_rate_limited() {
    let t0 = Instant::now();
    let mut n = Net::new(cfg(1), t0);
    let from: SocketAddr = "10.0.0.9:4000".parse().unwrap();
    for i in 0..1000u64 {
        n.handle_datagram(t0, from, &heartbeat(500 + i, 1, 0));
    }
    let sent = |n: &mut Net, t| {
        drain(n, t)
            .iter()
            .filter(|d| d[6] == wire::kind::SYNC)
            .count()
    };
    assert_eq!(sent(&mut n, t0), 100, "the burst");
    let mut total = 100;
    let mut t = t0;
    while t < t0 + Duration::from_secs(1) {
        t += MS;
        n.handle_timeout(t);
        total += sent(&mut n, t);
    }
    // Burst, plus 100 a second.
    assert!((190..=201).contains(&total), "{total} requests in a second");
    assert_eq!(n.peers().filter(|p| p.synced).count(), 0);
}

#[test]
fn fake_node_ids_do_not_lock_out_a_real_peer() {
    let mut s = Sim::with_defaults(65, 2);
    warm_up(&mut s);
    let from = sim::addr(7);
    for i in 0..5000u64 {
        let hb = heartbeat(10_000 + i, 1, 0);
        s.inject(0, from, &hb);
        if i % 100 == 0 {
            s.run_for(MS);
        }
    }
    let st = s.nodes[0].net.stats();
    assert!(s.nodes[0].net.peers().count() <= MAX_PEERS);
    assert!(st.peers_evicted >= 5000 - MAX_PEERS as u64, "{st:?}");
    assert_eq!(st.peers_refused, 0, "{st:?}");
    assert!(
        s.nodes[0].net.peers().any(|p| p.node == 2 && p.up),
        "the real peer, up, stays"
    );
    // A real daemon restarting now is admitted, and its messages arrive.
    s.restart(1, 2002);
    for _ in 0..50 {
        if s.nodes[0].net.peers().any(|p| p.node == 2002 && p.up) {
            break;
        }
        s.run_for(100 * MS);
    }
    for q in 1..=10 {
        s.send(1, "A", "e", b"real", 1, q);
    }
    s.run_for(200 * MS);
    let got: Vec<u64> = s.nodes[0]
        .inbox
        .iter()
        .filter(|m| m.node == 2002)
        .map(|m| m.seq)
        .collect();
    assert_eq!(got, (1..=10).collect::<Vec<_>>());
}

#[test]
fn a_table_full_of_up_peers_refuses_and_reports_once_per_source_a_minute() {
    let t0 = Instant::now();
    let mut n = Net::new(cfg(1), t0);
    let from: SocketAddr = "10.0.0.9:4000".parse().unwrap();
    // MAX_PEERS fake peers, synced and named: up.
    let mut t = t0;
    for i in 0..MAX_PEERS as u64 {
        t += Duration::from_millis(10); // within the SYNC request rate
        fake_sync(&mut n, t, 100 + i, from, 0);
        n.handle_datagram(t, from, &heartbeat(100 + i, 1, 0));
    }
    // All heard again just now, so none is stale.
    for i in 0..MAX_PEERS as u64 {
        n.handle_datagram(t, from, &heartbeat(100 + i, 2, 0));
    }
    assert_eq!(n.peers().filter(|p| p.up).count(), MAX_PEERS);
    while n.poll_event().is_some() {}
    let real: SocketAddr = "10.0.0.2:4000".parse().unwrap();
    for k in 0..100u64 {
        n.handle_datagram(t + MS * k as u32, real, &heartbeat(9, k + 1, 0));
    }
    let reports: Vec<NetEvent> = std::iter::from_fn(|| n.poll_event()).collect();
    assert_eq!(
        reports,
        vec![NetEvent::Dropped {
            addr: real,
            node: Some(9),
            reason: DropReason::PeerTableFull,
            count: 1,
        }]
    );
    assert_eq!(n.stats().peers_refused, 100);
    assert!(!n.peers().any(|p| p.node == 9));
}

#[test]
fn drop_reports_are_one_per_source_a_minute_and_name_the_reason() {
    let t0 = Instant::now();
    let mut c = cfg(1);
    c.key = Some(key(1));
    let mut n = Net::new(c, t0);
    let stranger: SocketAddr = "10.0.0.3:4000".parse().unwrap();
    let mut sealed = Vec::new();
    seal_datagram(&key(2), &heartbeat(5, 1, 0), &mut sealed);
    // 1000 datagrams over 150 s from one address: a report at 0, 60, 120 s.
    let mut reports = Vec::new();
    for i in 0..1000u64 {
        n.handle_datagram(t0 + Duration::from_millis(i * 150), stranger, &sealed);
        reports.extend(std::iter::from_fn(|| n.poll_event()));
    }
    let counts: Vec<u64> = reports
        .iter()
        .map(|e| match e {
            NetEvent::Dropped {
                addr,
                reason,
                count,
                ..
            } => {
                assert_eq!(*addr, stranger);
                assert_eq!(*reason, DropReason::AnotherKey);
                assert!(reason.to_string().contains("another key"), "{reason}");
                *count
            }
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(counts, vec![1, 400, 400]);
    // A flood from 10000 addresses within a minute: at most 257 reports.
    let t1 = t0 + Duration::from_secs(1000);
    let mut lines = 0;
    for i in 0..10_000u32 {
        let a = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 4000));
        n.handle_datagram(
            t1 + Duration::from_millis(i as u64 * 5),
            a,
            b"not ours at all",
        );
        lines += std::iter::from_fn(|| n.poll_event()).count();
    }
    assert!((256..=257).contains(&lines), "{lines} reports");
}

#[test]
fn sync_bodies_round_trip_and_a_short_request_is_malformed() {
    let mut b = Vec::new();
    wire::encode_sync(&mut b, 5, 3, &SyncRequest { target: 9 });
    assert_eq!(b.len(), wire::HEADER_LEN + wire::SYNC_REQUEST_BODY);
    match wire::decode_datagram(&b).unwrap().body {
        wire::Body::Sync(r) => assert_eq!(r.target, 9),
        other => panic!("{other:?}"),
    }
    let short = &b[..b.len() - 1];
    assert!(matches!(
        wire::decode_datagram(short),
        Err(crate::net::WireError::BadSync(_))
    ));
    let r = wire::SyncReply {
        requester: u64::MAX,
        request_seq: u64::MAX,
        last_seq: u64::MAX,
        uptime_ms: u64::MAX,
    };
    let mut c = Vec::new();
    wire::encode_sync_reply(&mut c, 5, 4, &r);
    assert!(
        c.len() <= b.len(),
        "the largest reply fits the request size"
    );
    match wire::decode_datagram(&c).unwrap().body {
        wire::Body::SyncReply(x) => assert_eq!(x, r),
        other => panic!("{other:?}"),
    }
}

#[test]
fn replayed_control_datagrams_are_reported_but_network_duplicates_are_not() {
    let t0 = Instant::now();
    let mut n = Net::new(cfg(1), t0);
    let peer: SocketAddr = "10.0.0.2:4000".parse().unwrap();
    let other: SocketAddr = "10.0.0.66:5000".parse().unwrap();
    let reports = |n: &mut Net| {
        std::iter::from_fn(|| n.poll_event())
            .filter(|e| matches!(e, NetEvent::Dropped { .. }))
            .collect::<Vec<_>>()
    };
    for seq in 1..=300 {
        let hb = heartbeat(5, seq, 0);
        n.handle_datagram(t0, peer, &hb);
        // The same datagram twice from its own address: a duplicate.
        n.handle_datagram(t0, peer, &hb);
    }
    assert_eq!(n.stats().replayed, 300);
    assert!(reports(&mut n).is_empty());
    // Recorded heartbeat 280 sent again from elsewhere, and heartbeat 3
    // (older than the window) from the peer's own address: replays.
    n.handle_datagram(t0, other, &heartbeat(5, 280, 0));
    n.handle_datagram(t0, peer, &heartbeat(5, 3, 0));
    let got = reports(&mut n);
    assert_eq!(got.len(), 2, "{got:?}");
    for e in got {
        assert!(matches!(
            e,
            NetEvent::Dropped {
                reason: DropReason::Replayed,
                node: Some(5),
                ..
            }
        ));
    }
}
