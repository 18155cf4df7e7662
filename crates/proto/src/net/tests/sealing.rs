//! Sealing: keyed nodes talk, strangers and tampering are rejected and
//! counted by source, replays are dropped, and a key change has a grace
//! period.

use std::time::Duration;

use super::reliable::{gaps, warm_up};
use super::*;
use crate::net::seal::{seal_datagram, Key};
use crate::net::wire::{flags, TAG_LEN};
use crate::net::WireError;

fn key(b: u8) -> Key {
    Key::new([b; 32])
}

/// `n` nodes; node `i` gets `keys(i)`.
fn keyed(seed: u64, n: usize, keys: impl Fn(usize) -> Option<Key>) -> Sim {
    Sim::new(seed, n, |i| {
        let mut c = cfg(i as u64 + 1);
        c.key = keys(i);
        c
    })
}

/// Every datagram node 0 sends, as it left.
fn capture(s: &mut Sim) -> std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>> {
    let got: std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>> = Default::default();
    let g = got.clone();
    s.filter = Some(Box::new(move |from, to, d| {
        if from == 0 && to == 1 {
            g.borrow_mut().push(d.to_vec());
        }
        true
    }));
    got
}

#[test]
fn keys_parse_from_hex_and_hide_in_debug() {
    let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
    let k = Key::from_hex(&format!(" {hex}\n")).unwrap();
    assert_ne!(k.id(), 0);
    assert_eq!(k, Key::from_hex(&hex.to_lowercase()).unwrap());
    assert!(!format!("{k:?}").contains("aabb"), "{k:?}");
    assert_eq!(Key::from_hex("abc"), Err(crate::net::KeyError::Length(3)));
    let bad = format!("{}x", &hex[..63]);
    assert_eq!(Key::from_hex(&bad), Err(crate::net::KeyError::NotHex(64)));
    // Ids differ between keys (most of the time; these two do).
    assert_ne!(key(1).id(), key(2).id());
}

#[test]
fn keyed_nodes_talk_and_nothing_travels_in_clear() {
    let mut s = keyed(40, 3, |_| Some(key(7)));
    s.link.loss = 0.1;
    warm_up(&mut s);
    let wire = capture(&mut s);
    for q in 1..=300 {
        s.send(0, "secret-channel", "e", b"attack at dawn", 1, q);
    }
    s.send(0, "secret-channel", "e", &pattern(20_000, 9), 1, 301);
    s.run_for(Duration::from_secs(2));
    for r in [1, 2] {
        assert_eq!(
            ids(&s.nodes[r].inbox),
            (1..=301).map(|q| (1, q)).collect::<Vec<_>>()
        );
        assert_eq!(s.nodes[r].net.stats().rejected, 0);
    }
    let wire = wire.borrow();
    assert!(!wire.is_empty());
    for d in wire.iter() {
        assert_eq!(d[5] & flags::SEALED, flags::SEALED);
        assert_eq!(d[7], key(7).id());
        assert!(d.len() <= s.nodes[0].net.config().mtu);
        let text = String::from_utf8_lossy(d);
        assert!(!text.contains("dawn") && !text.contains("secret"));
    }
}

#[test]
fn another_key_hears_nothing_and_is_counted_by_source() {
    let mut s = keyed(41, 3, |i| Some(key(if i == 2 { 9 } else { 7 })));
    s.run_for(Duration::from_millis(1500));
    s.send(0, "A", "e", b"for the cluster", 1, 1);
    s.send(2, "A", "e", b"from a stranger", 1, 1);
    s.run_for(50 * MS);
    assert_eq!(ids(&s.nodes[1].inbox), vec![(1, 1)]);
    assert_eq!(s.nodes[1].inbox[0].node, 1);
    assert!(s.nodes[2].inbox.is_empty(), "the stranger decoded nothing");
    for (r, stranger) in [(0, 2), (1, 2), (2, 0)] {
        let n = &s.nodes[r].net;
        let peers: Vec<u64> = n.peers().map(|p| p.node).collect();
        assert!(
            !peers.contains(&(stranger as u64 + 1)),
            "node {r} made a peer of {stranger}: {peers:?}"
        );
        assert!(n.stats().rejected >= 2, "{:?}", n.stats());
        let by_source: Vec<_> = n.rejected_sources().collect();
        assert!(by_source
            .iter()
            .any(|&(a, c)| a == sim::addr(stranger) && c >= 2));
    }
    let (_, e) = s.nodes[1].net.stats().last_error.clone().unwrap();
    assert!(matches!(
        e,
        WireError::UnknownKey(_) | WireError::Unauthentic
    ));
}

#[test]
fn plain_and_sealed_do_not_mix() {
    let mut s = keyed(42, 2, |i| (i == 0).then(|| key(7)));
    s.run_for(Duration::from_millis(1500));
    s.send(0, "A", "e", b"sealed", 1, 1);
    s.send(1, "A", "e", b"plain", 1, 1);
    s.run_for(50 * MS);
    assert!(s.nodes[0].inbox.is_empty() && s.nodes[1].inbox.is_empty());
    assert_eq!(s.nodes[0].net.peers().count(), 0);
    assert_eq!(s.nodes[1].net.peers().count(), 0);
    assert!(s.nodes[0].net.stats().rejected > 0);
    assert!(s.nodes[1].net.stats().rejected > 0);
}

#[test]
fn every_tampered_byte_is_rejected() {
    let mut s = keyed(43, 2, |_| Some(key(7)));
    warm_up(&mut s);
    let wire = capture(&mut s);
    s.send(0, "A", "e", b"original", 1, 1);
    s.run_for(10 * MS);
    s.filter = None;
    let d = wire
        .borrow()
        .iter()
        .find(|d| d[6] == wire::kind::DATA)
        .cloned()
        .unwrap();
    let before = s.nodes[1].net.stats().clone();
    // Flip one bit at every position but the magic and version (those make
    // it foreign) and the flags and key id (those make it malformed or
    // name another key): each is rejected, nothing delivered.
    let mut rejected = 0;
    for i in 0..d.len() {
        let mut t = d.clone();
        t[i] ^= 0x10;
        s.inject(1, sim::addr(0), &t);
        rejected += 1;
    }
    let st = s.nodes[1].net.stats();
    let bad = (st.rejected - before.rejected)
        + (st.foreign - before.foreign)
        + (st.malformed - before.malformed);
    assert_eq!(bad, rejected);
    assert!(st.rejected - before.rejected >= (d.len() - 8) as u64);
    assert_eq!(ids(&s.nodes[1].inbox), vec![(1, 1)], "only the original");
    // A truncated tag is refused too.
    s.inject(1, sim::addr(0), &d[..d.len() - TAG_LEN]);
    assert_eq!(ids(&s.nodes[1].inbox), vec![(1, 1)]);
}

#[test]
fn replayed_datagrams_are_dropped() {
    let mut s = keyed(44, 2, |_| Some(key(7)));
    warm_up(&mut s);
    let wire = capture(&mut s);
    for q in 1..=5 {
        s.send(0, "A", "e", &pattern(1000, q as u8), 1, q);
    }
    s.run_for(Duration::from_millis(1100));
    s.filter = None;
    let all = wire.borrow().clone();
    assert!(all.iter().any(|d| d[6] == wire::kind::HEARTBEAT));
    let before = s.nodes[1].net.stats().clone();
    for d in &all {
        s.inject(1, sim::addr(0), d);
    }
    let st = s.nodes[1].net.stats();
    let data = all.iter().filter(|d| d[6] == wire::kind::DATA).count() as u64;
    assert_eq!(st.duplicates - before.duplicates, data);
    assert_eq!(
        st.replayed - before.replayed,
        all.len() as u64 - data,
        "heartbeats replayed"
    );
    assert_eq!(st.rejected, before.rejected);
    assert_eq!(s.nodes[1].inbox.len(), 5, "nothing delivered twice");
    // Even from another address, and after the peer went away (its windows
    // are remembered).
    s.stop(0);
    s.run_for(Duration::from_secs(5));
    assert_eq!(s.nodes[1].net.peers().count(), 0);
    for d in &all {
        s.inject(1, sim::addr(9), d);
    }
    assert_eq!(s.nodes[1].inbox.len(), 5);
}

#[test]
fn a_changed_key_keeps_the_old_one_for_the_grace_period() {
    let mut s = keyed(45, 2, |_| Some(key(1)));
    warm_up(&mut s);
    let grace = s.nodes[0].net.config().key_grace;
    // Node 0 reloads first: it seals with key 2 and still opens key 1.
    let now = s.now;
    s.nodes[0].net.set_key(now, Some(key(2)));
    s.send(1, "A", "e", b"old key, accepted", 1, 1);
    s.send(0, "A", "e", b"new key, not yet known", 1, 1);
    s.run_for(3 * MS);
    assert_eq!(ids(&s.nodes[0].inbox), vec![(1, 1)]);
    assert!(s.nodes[1].inbox.is_empty());
    assert!(s.nodes[1].net.stats().rejected > 0);
    // Node 1 reloads a moment later: the message is recovered by NAK.
    let now = s.now;
    s.nodes[1].net.set_key(now, Some(key(2)));
    s.run_for(200 * MS);
    assert_eq!(ids(&s.nodes[1].inbox), vec![(1, 1)]);
    assert!(gaps(&s, 1).is_empty());
    // After the grace period, key 1 is refused.
    s.run_for(grace);
    let stale = {
        let mut plain = Vec::new();
        wire::encode_heartbeat(
            &mut plain,
            2,
            1_000,
            &wire::Heartbeat {
                name: "node1",
                last_seq: 1,
                uptime_ms: 1,
                messages_out: 0,
                datagrams_out: 0,
                bytes_out: 0,
            },
        );
        let mut d = Vec::new();
        seal_datagram(&key(1), &plain, &mut d);
        d
    };
    let before = s.nodes[0].net.stats().rejected;
    s.inject(0, sim::addr(1), &stale);
    assert_eq!(s.nodes[0].net.stats().rejected, before + 1);
    // And both keep talking with key 2.
    s.send(1, "A", "e", b"new", 1, 2);
    s.run_for(10 * MS);
    assert_eq!(ids(&s.nodes[0].inbox), vec![(1, 1), (1, 2)]);
}

#[test]
fn dropping_the_key_accepts_sealed_datagrams_for_the_grace_period() {
    let mut s = keyed(46, 2, |_| Some(key(1)));
    warm_up(&mut s);
    let now = s.now;
    s.nodes[0].net.set_key(now, None);
    s.send(1, "A", "e", b"still sealed", 1, 1);
    s.run_for(10 * MS);
    assert_eq!(ids(&s.nodes[0].inbox), vec![(1, 1)]);
    let now = s.now;
    s.nodes[1].net.set_key(now, None);
    s.send(0, "A", "e", b"plain now", 1, 1);
    s.run_for(10 * MS);
    assert_eq!(ids(&s.nodes[1].inbox), vec![(1, 1)]);
}
