//! Fuzzes the sealed datagram path: authentication, the replay windows,
//! and everything behind them (NAK, GONE, heartbeat, SYNC and DATA
//! handling, retransmission) that only authenticated datagrams reach. The
//! seeds hold a SYNC reply after the sender's first datagram, so that its
//! DATA is taken.
//!
//! The first input byte picks a mode; the rest is split before every
//! occurrence of the magic bytes into datagrams:
//! - mode 0: fed as they are to a node with the key (the seed corpus holds
//!   datagrams sealed with it, for the fuzzer to alter);
//! - mode 1: sealed with the node's key first (so the decoders behind
//!   authentication see fuzzed bodies), each fed twice (the second copy is
//!   a replay and must change nothing);
//! - mode 2: sealed, then one byte changed (chosen by the datagram's own
//!   length): must be rejected or refused;
//! - mode 3: fed as they are to a node with another key: nothing may be
//!   accepted.
//! Timers are fired and transmits drained, so NAKs and retransmissions
//! are produced too. Nothing may panic.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netcluster_proto::net::seal::{seal_datagram, Key};
use netcluster_proto::net::{wire, Net, NetConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let key = Key::new([0x42; 32]);
    let stranger = mode % 4 == 3;
    let now = Instant::now();
    let mut cfg = NetConfig::new(1, "fuzz");
    cfg.max_message = 1 << 16;
    cfg.reassembly_bytes = 1 << 17;
    cfg.retransmit_bytes = 1 << 14;
    cfg.key = Some(if stranger { Key::new([0x43; 32]) } else { key.clone() });
    let mut net = Net::new(cfg, now);
    let from = SocketAddr::from(([127, 0, 0, 1], 4000));
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| data[i..].starts_with(&wire::MAGIC))
        .collect();
    let mut sealed = Vec::new();
    let mut buf = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(data.len());
        let d = &data[s..end];
        let t = now + Duration::from_millis(k as u64);
        match mode % 4 {
            0 | 3 => net.handle_datagram(t, from, d),
            1 if d.len() >= wire::HEADER_LEN => {
                sealed.clear();
                seal_datagram(&key, d, &mut sealed);
                net.handle_datagram(t, from, &sealed);
                while net.poll_message().is_some() {}
                net.handle_datagram(t, from, &sealed);
                assert!(net.poll_message().is_none(), "a replay delivered a message");
            }
            2 if d.len() >= wire::HEADER_LEN => {
                sealed.clear();
                seal_datagram(&key, d, &mut sealed);
                let i = d.len() % sealed.len();
                sealed[i] ^= 1 | (d.len() as u8);
                let before = net.stats().datagrams_in;
                net.handle_datagram(t, from, &sealed);
                assert_eq!(before, net.stats().datagrams_in, "a changed datagram was accepted");
            }
            _ => {}
        }
        while net.poll_message().is_some() {}
        while net.poll_transmit(t, &mut buf).is_some() {}
    }
    if stranger {
        assert_eq!(net.stats().datagrams_in, 0, "a datagram passed another key");
        assert_eq!(net.peers().count(), 0, "a stranger became a peer");
    }
    for later in [Duration::from_millis(20), Duration::from_millis(300), Duration::from_secs(10)] {
        net.handle_timeout(now + later);
        while net.poll_message().is_some() {}
        while net.poll_transmit(now + later, &mut buf).is_some() {}
    }
    while net.poll_event().is_some() {}
    let _ = net.peers().count();
});
