//! Peers: discovery, liveness, restarts, own datagrams, counting bad input,
//! duplicates, loss and late joiners.

use std::time::Duration;

use super::*;
use crate::net::sim::Link;
use crate::net::wire::{put_header, Header, Kind, HEADER_LEN};
use crate::net::{DownReason, NetEvent, WireError};

fn ups(events: &[NetEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            NetEvent::PeerUp { node, .. } => Some(*node),
            _ => None,
        })
        .collect()
}

fn downs(events: &[NetEvent]) -> Vec<(u64, DownReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            NetEvent::PeerDown { node, reason, .. } => Some((*node, *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn peers_come_up_with_name_and_address() {
    let mut s = Sim::with_defaults(1, 3);
    s.run_for(10 * MS);
    assert_eq!(
        s.nodes[0].events,
        vec![
            NetEvent::PeerUp {
                node: 2,
                name: "node1".into(),
                addr: sim::addr(1)
            },
            NetEvent::PeerUp {
                node: 3,
                name: "node2".into(),
                addr: sim::addr(2)
            },
        ]
    );
    let p = s.nodes[0].net.peers().find(|p| p.node == 2).unwrap();
    assert!(p.up);
    assert_eq!(p.first_seen, s.start + Duration::from_micros(100));
    s.run_for(Duration::from_secs(5));
    let p = s.nodes[0].net.peers().find(|p| p.node == 2).unwrap();
    assert!(p.last_seen > s.start + Duration::from_secs(4));
    // Six heartbeats, and node 1's SYNC request and reply with each of
    // the two others (multicast: node 0 hears those for node 2 too).
    assert_eq!(p.datagrams_in, 10, "six heartbeats, four SYNC datagrams");
    assert_eq!(p.reported.uptime_ms, 5000);
    assert!(
        s.nodes[0].events.len() == 2,
        "no flapping: {:?}",
        s.nodes[0].events
    );
}

#[test]
fn silent_peer_goes_down_after_the_timeout() {
    let mut s = Sim::with_defaults(2, 2);
    s.run_for(Duration::from_millis(1500));
    s.stop(1);
    // Last heard at 1 s (+ latency); the timeout is 3.5 s.
    s.run_for(Duration::from_millis(2950));
    assert!(downs(&s.nodes[0].events).is_empty());
    assert_eq!(s.nodes[0].net.peers().count(), 1);
    s.run_for(Duration::from_millis(100));
    assert_eq!(downs(&s.nodes[0].events), vec![(2, DownReason::Timeout)]);
    assert_eq!(s.nodes[0].net.peers().count(), 0);
    let down = s.nodes[0].events.last().unwrap();
    assert!(matches!(down, NetEvent::PeerDown { name, .. } if name == "node1"));
}

#[test]
fn restart_with_a_new_node_id_is_a_new_peer() {
    let mut s = Sim::with_defaults(3, 2);
    s.run_for(Duration::from_millis(1500));
    s.restart(1, 99);
    s.run_for(Duration::from_millis(1600));
    let ev = &s.nodes[0].events;
    assert_eq!(ups(ev), vec![2, 99]);
    // Retired when it missed its heartbeat, well before the 3.5 s timeout.
    assert_eq!(downs(ev), vec![(2, DownReason::Restarted { new_node: 99 })]);
    let nodes: Vec<u64> = s.nodes[0].net.peers().map(|p| p.node).collect();
    assert_eq!(nodes, vec![99]);
    // The new run's messages flow from sequence 1 on.
    s.send(1, "A", "e", b"hi", 1, 1);
    s.run_for(10 * MS);
    assert_eq!(ids(&s.nodes[0].inbox), vec![(1, 1)]);
    assert_eq!(s.nodes[0].inbox[0].node, 99);
}

#[test]
fn live_daemons_sharing_name_and_address_do_not_retire_each_other() {
    let mut s = Sim::new(4, 3, |i| {
        NetConfig::new(i as u64 + 1, if i == 0 { "a" } else { "twin" })
    });
    s.nodes[2].addr = sim::addr(1);
    s.run_for(Duration::from_secs(10));
    assert_eq!(ups(&s.nodes[0].events), vec![2, 3]);
    assert!(downs(&s.nodes[0].events).is_empty());
}

#[test]
fn own_datagrams_are_ignored() {
    let mut s = Sim::with_defaults(5, 2);
    s.loopback = true;
    s.run_for(10 * MS);
    s.send(0, "A", "e", b"mine", 1, 1);
    s.send(0, "A", "e", &pattern(5000, 0), 1, 2);
    s.run_for(10 * MS);
    assert!(s.nodes[0].inbox.is_empty());
    assert_eq!(s.nodes[0].net.peers().count(), 1);
    assert!(
        s.nodes[0].net.stats().own_ignored >= 5,
        "heartbeat and data came back"
    );
    assert_eq!(ids(&s.nodes[1].inbox), vec![(1, 1), (1, 2)]);
}

#[test]
fn bad_datagrams_are_counted_per_source_and_globally() {
    let mut s = Sim::with_defaults(6, 2);
    s.run_for(10 * MS);
    s.inject(0, sim::addr(1), b"hello, world: not ours at all");
    let mut bad_body = vec![0; HEADER_LEN];
    let h = Header {
        kind: Kind::Data,
        flags: 0,
        key_id: 0,
        node: 2,
        seq: 7,
    };
    put_header(&mut bad_body, &h);
    bad_body.push(0x40);
    s.inject(0, "127.9.9.9:1".parse().unwrap(), &bad_body);
    s.inject(0, "127.9.9.9:1".parse().unwrap(), b"NCDG\x01");
    let st = s.nodes[0].net.stats();
    assert_eq!((st.foreign, st.malformed), (1, 2));
    assert_eq!(
        st.last_error,
        Some((
            "127.9.9.9:1".parse().unwrap(),
            WireError::TooShort { len: 5 }
        ))
    );
    let p = s.nodes[0].net.peers().find(|p| p.node == 2).unwrap();
    assert_eq!(p.malformed, 2, "by address, then by node id");
    // The peer's stream is unharmed.
    s.send(1, "A", "e", b"fine", 1, 1);
    s.run_for(10 * MS);
    assert_eq!(ids(&s.nodes[0].inbox), vec![(1, 1)]);
}

#[test]
fn duplicated_datagrams_are_delivered_once() {
    let mut s = Sim::with_defaults(7, 2);
    s.link.dup = 1.0;
    s.run_for(10 * MS);
    for q in 1..=50 {
        s.send(0, "A", "e", b"x", 1, q);
        s.run_for(MS);
    }
    s.run_for(10 * MS);
    assert_eq!(
        ids(&s.nodes[1].inbox),
        (1..=50).map(|q| (1, q)).collect::<Vec<_>>()
    );
    assert_eq!(s.nodes[1].net.stats().duplicates, 50);
}

#[test]
fn loss_and_reordering_are_repaired_in_order() {
    let mut s = Sim::with_defaults(8, 2);
    s.link = Link {
        loss: 0.1,
        reorder: 0.2,
        ..Link::default()
    };
    super::reliable::warm_up(&mut s);
    for q in 1..=2000 {
        s.send(0, "A", "e", &[0; 64], 1, q);
        if q % 10 == 0 {
            s.run_for(MS);
        }
    }
    s.run_for(Duration::from_millis(500));
    let got: Vec<u64> = s.nodes[1].inbox.iter().map(|m| m.seq).collect();
    assert_eq!(got, (1..=2000).collect::<Vec<_>>(), "all, in order, once");
    let st = s.nodes[1].net.stats();
    assert_eq!((st.lost, st.gaps), (0, 0));
    assert!(st.naks_out > 0);
    assert!(s.nodes[0].net.stats().retransmitted > 0);
    assert_eq!(s.nodes[1].net.peers().next().unwrap().held, 0);
}

#[test]
fn late_joiner_starts_from_the_current_sequence() {
    let mut s = Sim::with_defaults(9, 2);
    s.stop(1);
    s.run_for(10 * MS);
    for q in 1..=20 {
        s.send(0, "A", "e", b"early", 1, q);
    }
    s.run_for(100 * MS);
    s.nodes[1].online = true;
    s.run_for(Duration::from_secs(1));
    s.send(0, "A", "e", b"late", 1, 21);
    s.run_for(10 * MS);
    assert_eq!(ids(&s.nodes[1].inbox), vec![(1, 21)]);
    let st = s.nodes[1].net.stats();
    assert_eq!((st.lost, st.duplicates), (0, 0));
}

#[test]
fn a_lost_datagram_is_naked_and_retransmitted() {
    let mut s = Sim::with_defaults(10, 2);
    s.run_for(10 * MS);
    let mut first = true;
    s.filter = Some(Box::new(move |_, _, d| {
        let is_data = d.get(6) == Some(&wire::kind::DATA);
        let drop = is_data && first;
        first &= !is_data;
        !drop
    }));
    s.send(0, "A", "e", b"1", 1, 1);
    s.run_for(MS);
    s.send(0, "A", "e", b"2", 1, 2);
    s.run_for(MS);
    assert!(s.nodes[1].inbox.is_empty(), "held behind the gap");
    assert_eq!(s.nodes[1].net.peers().next().unwrap().held, 1);
    let c = s.nodes[1].net.config();
    s.run_for(c.reorder_timeout + c.nak_backoff + MS);
    assert_eq!(ids(&s.nodes[1].inbox), vec![(1, 1), (1, 2)]);
    let st = s.nodes[1].net.stats();
    assert_eq!((st.lost, st.naks_out), (0, 1));
    let st = s.nodes[0].net.stats();
    assert_eq!((st.naks_in, st.retransmitted), (1, 1));
}
