//! Tests of [`Net`](super::Net): directly driven for exact batching
//! boundaries, and through the simulator for everything between nodes.

mod batching;
mod fragments;
mod peers;
mod props;
mod reliable;
mod sealing;
mod strangers;
mod sync;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::sim::{self, Sim};
use super::wire::{self, Body, Record};
use super::{InMessage, Net, NetConfig, OutMessage};

fn cfg(id: u64) -> NetConfig {
    NetConfig::new(id, format!("n{id}"))
}

fn out<'a>(
    channel: &'a str,
    event: &'a str,
    payload: &'a [u8],
    client: u64,
    seq: u64,
) -> OutMessage<'a> {
    OutMessage {
        channel,
        event,
        payload,
        client,
        seq,
    }
}

/// Every datagram `net` has to send at `now`.
fn drain(net: &mut Net, now: Instant) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let mut buf = Vec::new();
    while net.poll_transmit(now, &mut buf).is_some() {
        v.push(buf.clone());
    }
    v
}

/// Moves every datagram from `a` to `b` at `now`; returns how many.
fn pump(a: &mut Net, b: &mut Net, now: Instant) -> usize {
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let d = drain(a, now);
    for x in &d {
        b.handle_datagram(now, from, x);
    }
    d.len()
}

fn messages(net: &mut Net) -> Vec<InMessage> {
    std::iter::from_fn(|| net.poll_message()).collect()
}

/// The DATA records of a datagram (empty for a heartbeat).
fn records(d: &[u8]) -> Vec<Record<'_>> {
    match wire::decode_datagram(d).expect("valid datagram").body {
        Body::Data(r) => r.collect(),
        _ => Vec::new(),
    }
}

/// A payload whose bytes tell its position, so misplaced bytes show.
fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

/// The (client, seq) of each message, to compare orders.
fn ids(v: &[InMessage]) -> Vec<(u64, u64)> {
    v.iter().map(|m| (m.client, m.seq)).collect()
}

const MS: Duration = Duration::from_millis(1);

/// Runs the SYNC handshake between `a` and `b` (both ways) at `now`, as a
/// driver would, so that each takes the other's DATA from then on.
fn sync_pair(a: &mut Net, b: &mut Net, now: Instant) {
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    for _ in 0..8 {
        a.handle_timeout(now);
        b.handle_timeout(now);
        for x in drain(a, now) {
            b.handle_datagram(now, from, &x);
        }
        for x in drain(b, now) {
            a.handle_datagram(now, from, &x);
        }
        let synced = |n: &Net| n.peers().all(|p| p.synced) && n.peers().count() == 1;
        if synced(a) && synced(b) {
            return;
        }
    }
    panic!("no SYNC between the two nodes");
}

/// Makes `net` take the DATA of `node` (which never answers by itself)
/// from its seq `last + 1`: the SYNC reply it would have sent, made to
/// answer the request `net` sends on hearing it.
fn fake_sync(net: &mut Net, now: Instant, node: u64, from: SocketAddr, last: u64) {
    let me = net.config().node_id;
    let reply = |seq, request_seq| {
        let mut b = Vec::new();
        let r = wire::SyncReply {
            requester: me,
            request_seq,
            last_seq: last,
            uptime_ms: 1 << 40,
        };
        wire::encode_sync_reply(&mut b, node, seq, &r);
        b
    };
    // The first one answers nothing but makes `net` ask.
    net.handle_datagram(now, from, &reply(1 << 40, 0));
    let asked = net.stats().syncs_out;
    net.handle_datagram(now, from, &reply((1 << 40) + 1, asked));
    assert!(
        net.peers().any(|p| p.node == node && p.synced),
        "fake node {node} not synced"
    );
}
