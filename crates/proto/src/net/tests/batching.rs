//! Batching: when datagrams close, what they hold, the flush timer, pacing.

use super::*;
use crate::net::wire::{HEADER_LEN, TAG_LEN};
use crate::net::{Dest, SendError, Transmit};

/// A sender past its first heartbeat, so only data is left to transmit.
fn sender(c: NetConfig) -> (Net, Instant) {
    let t0 = Instant::now();
    let mut n = Net::new(c, t0);
    n.handle_timeout(t0);
    assert_eq!(drain(&mut n, t0).len(), 1, "the first heartbeat");
    (n, t0)
}

/// Bytes a datagram's records may fill: the mtu less room for a tag.
fn budget(n: &Net) -> usize {
    n.config().mtu - TAG_LEN
}

/// Payload length that makes a record that implies every field but the
/// payload exactly `room` bytes long.
fn implied_payload_for(room: usize) -> usize {
    // tag + varint(len) + len; lengths here need a two-byte varint.
    room - 1 - 2
}

#[test]
fn exactly_full_batch_leaves_at_once() {
    let (mut n, t0) = sender(cfg(1));
    let first = [7u8; 64];
    n.send(t0, &out("A", "e", &first, 1, 1)).unwrap();
    let used = HEADER_LEN + 1 + wire::message_body_len(&out("A", "e", &first, 1, 1));
    let p = vec![9u8; implied_payload_for(budget(&n) - used)];
    n.send(t0, &out("A", "e", &p, 1, 2)).unwrap();
    assert_eq!(
        n.pending_transmits(),
        1,
        "a full batch does not wait for the timer"
    );
    let d = drain(&mut n, t0);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].len(), budget(&n));
    assert_eq!(records(&d[0]).len(), 2);
}

#[test]
fn one_byte_over_starts_a_new_batch() {
    let (mut n, t0) = sender(cfg(1));
    let first = [7u8; 64];
    n.send(t0, &out("A", "e", &first, 1, 1)).unwrap();
    let used = HEADER_LEN + 1 + wire::message_body_len(&out("A", "e", &first, 1, 1));
    let p = vec![9u8; implied_payload_for(budget(&n) - used) + 1];
    n.send(t0, &out("A", "e", &p, 1, 2)).unwrap();
    assert_eq!(n.pending_transmits(), 1, "the first batch closed");
    let d = drain(&mut n, t0);
    assert_eq!(d.len(), 1, "the second batch waits for its timer");
    assert_eq!(d[0].len(), used);
    let later = drain(&mut n, t0 + MS);
    assert_eq!(later.len(), 1);
    match records(&later[0])[..] {
        [Record::Msg(m)] => assert_eq!((m.seq, m.payload.len()), (2, p.len())),
        ref r => panic!("{r:?}"),
    }
    assert_eq!(n.stats().fragmented_out, 0);
}

#[test]
fn message_of_exactly_one_datagram_is_not_fragmented() {
    let (mut n, t0) = sender(cfg(1));
    let base = HEADER_LEN + 1 + wire::message_body_len(&out("A", "e", &[], 1, 1));
    // The payload length varint grows from 1 to 2 bytes at 128.
    let p = vec![1u8; budget(&n) - base - 1];
    n.send(t0, &out("A", "e", &p, 1, 1)).unwrap();
    let d = drain(&mut n, t0);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].len(), budget(&n));
    assert_eq!(n.stats().fragmented_out, 0);

    let p = vec![1u8; budget(&n) - base];
    n.send(t0, &out("A", "e", &p, 1, 2)).unwrap();
    assert_eq!(n.stats().fragmented_out, 1);
    let d = drain(&mut n, t0 + MS);
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|d| d.len() <= budget(&n)));
}

#[test]
fn batch_flushes_on_timer() {
    let (mut n, t0) = sender(cfg(1));
    let delay = n.config().flush_delay;
    n.send(t0, &out("A", "e", b"x", 1, 1)).unwrap();
    assert_eq!(n.pending_transmits(), 0);
    assert!(drain(&mut n, t0).is_empty());
    assert_eq!(n.poll_timeout(), Some(t0 + delay));
    assert!(drain(&mut n, t0 + delay - Duration::from_nanos(1)).is_empty());
    // The timer closes it…
    n.handle_timeout(t0 + delay);
    assert_eq!(n.pending_transmits(), 1);
    // …and later messages start a new batch.
    n.send(t0 + delay, &out("A", "e", b"y", 1, 2)).unwrap();
    let d = drain(&mut n, t0 + delay);
    assert_eq!(d.len(), 1);
    assert_eq!(records(&d[0]).len(), 1);
}

#[test]
fn zero_flush_delay_flushes_on_every_poll() {
    let mut c = cfg(1);
    c.flush_delay = Duration::ZERO;
    let (mut n, t0) = sender(c);
    for s in 1..=3 {
        n.send(t0, &out("A", "e", b"x", 1, s)).unwrap();
    }
    let mut buf = Vec::new();
    assert_eq!(
        n.poll_transmit(t0, &mut buf),
        Some(Transmit { dest: Dest::All })
    );
    assert_eq!(
        records(&buf).len(),
        3,
        "what was sent before the poll is batched"
    );
    assert_eq!(n.poll_transmit(t0, &mut buf), None);
    assert!(buf.is_empty());
}

#[test]
fn batches_imply_repeated_fields() {
    let (mut n, t0) = sender(cfg(1));
    let p = [0u8; 64];
    for s in 1..=100 {
        n.send(t0, &out("A", "e", &p, 7, s)).unwrap();
    }
    let d = drain(&mut n, t0 + MS);
    let bytes: usize = d.iter().map(Vec::len).sum();
    let overhead = (bytes - 100 * 64) as f64 / 100.0;
    assert!(overhead < 4.0, "{overhead} bytes per message");
    let seqs: Vec<u64> = d
        .iter()
        .flat_map(|d| records(d))
        .map(|r| match r {
            Record::Msg(m) => m.seq,
            r => panic!("{r:?}"),
        })
        .collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
}

#[test]
fn send_refuses_what_the_wire_cannot_carry() {
    let mut c = cfg(1);
    c.max_message = 1000;
    let (mut n, t0) = sender(c);
    assert_eq!(
        n.send(t0, &out("A", "e", &[0; 1001], 1, 1)),
        Err(SendError::TooLarge {
            len: 1001,
            max: 1000
        })
    );
    assert!(matches!(
        n.send(t0, &out("", "e", b"", 1, 1)),
        Err(SendError::BadName {
            what: "channel",
            ..
        })
    ));
    let long = "e".repeat(1025);
    assert!(matches!(
        n.send(t0, &out("A", &long, b"", 1, 1)),
        Err(SendError::BadName { what: "event", .. })
    ));
    assert_eq!(n.stats().messages_out, 0);
    assert!(drain(&mut n, t0 + MS).is_empty());
}

#[test]
fn heartbeats_follow_the_interval_and_queued_data() {
    let (mut n, t0) = sender(cfg(1));
    let hb = n.config().heartbeat_interval;
    assert_eq!(n.poll_timeout(), Some(t0 + hb));
    n.send(t0, &out("A", "e", b"x", 1, 1)).unwrap();
    n.handle_timeout(t0 + hb);
    let d = drain(&mut n, t0 + hb);
    assert_eq!(d.len(), 2);
    assert_eq!(records(&d[0]).len(), 1, "data first");
    match wire::decode_datagram(&d[1]).unwrap().body {
        Body::Heartbeat(h) => {
            assert_eq!(h.last_seq, 1);
            assert_eq!(h.name, "n1");
            assert_eq!(h.uptime_ms, 1000);
            assert_eq!(h.messages_out, 1);
        }
        b => panic!("{b:?}"),
    }
    assert_eq!(n.stats().heartbeats_out, 2);
}

#[test]
fn pacing_spreads_datagrams_out() {
    let mut c = cfg(1);
    c.pace_rate = 1_000_000; // 1 MB/s: a 1400-byte datagram every 1.4 ms
    c.pace_burst = 1400;
    c.heartbeat_interval = Duration::from_secs(10);
    c.peer_timeout = Duration::from_secs(30);
    c.flush_delay = Duration::ZERO;
    let (mut n, t0) = sender(c);
    let t1 = t0 + Duration::from_millis(1500); // bucket full, no heartbeat due
    let p = [0u8; 1300];
    for s in 1..=5 {
        n.send(t1, &out("A", "e", &p, 1, s)).unwrap();
    }
    assert_eq!(drain(&mut n, t1).len(), 1, "one burst's worth");
    let next = n.poll_timeout().unwrap();
    assert!(
        next > t1 && next <= t1 + Duration::from_micros(1400),
        "{:?}",
        next - t1
    );
    assert!(drain(&mut n, next - Duration::from_micros(50)).is_empty());
    assert_eq!(drain(&mut n, next).len(), 1);
    assert_eq!(
        drain(&mut n, t1 + Duration::from_millis(100)).len(),
        1,
        "bucket holds one burst"
    );
}
