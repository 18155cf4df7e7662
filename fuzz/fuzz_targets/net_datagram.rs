//! Fuzzes the network datagram decoders and `Net::handle_datagram`.
//!
//! The input is decoded as one datagram, then split before every
//! occurrence of the magic bytes and fed to a `Net` as a sequence of
//! datagrams, so concatenated valid datagrams (see the seed corpus, whose
//! `seed-all` includes the SYNC reply that lets the DATA after it through)
//! reach reordering, duplicate handling and reassembly; `seed-sync` and
//! `seed-sync-reply` start the SYNC decoders. Timers are then fired
//! far in the future to reach the expiry paths. Nothing may panic.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netcluster_proto::net::{wire, Net, NetConfig};

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = wire::decode_datagram(data) {
        if let wire::Body::Data(records) = d.body {
            for _ in records {}
        }
    }
    let _ = wire::decode_message(data);

    let now = Instant::now();
    let mut cfg = NetConfig::new(1, "fuzz");
    // Small limits, so the refusal paths are reachable with small inputs.
    cfg.max_message = 1 << 16;
    cfg.reassembly_bytes = 1 << 17;
    let mut net = Net::new(cfg, now);
    let from = SocketAddr::from(([127, 0, 0, 1], 4000));
    net.handle_datagram(now, from, data);
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| data[i..].starts_with(&wire::MAGIC))
        .collect();
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(data.len());
        net.handle_datagram(now, from, &data[s..end]);
    }
    while net.poll_message().is_some() {}
    for later in [Duration::from_millis(60), Duration::from_secs(10)] {
        net.handle_timeout(now + later);
        while net.poll_message().is_some() {}
    }
    while net.poll_event().is_some() {}
    let _ = net.peers().count();
});
