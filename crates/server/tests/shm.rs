//! Shared-memory payloads through the real `ncserver` binary and real
//! sockets (Linux): a publisher's sealed memfd pool passed with
//! `SCM_RIGHTS`, descriptors routed to shm subscribers (who map the pool
//! read-only) while socket subscribers get the bytes, slots freed when
//! every recipient released them or went away, and hostile descriptors
//! refused with an Error while the daemon keeps serving the others.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use common::{Daemon, Got, Raw};
use netcluster_local::shm::{create_pool, recv_with_fds, send_with_fd, Mapping};
use netcluster_proto::frame::shm::{self as wire, ShmFrame};
use netcluster_proto::frame::{self, ErrorCode};

/// A frame a shm-capable client got.
#[derive(Debug)]
enum S {
    Plain(Got),
    Deliver {
        pool: u64,
        offset: u64,
        len: u32,
        event: String,
        client: u64,
    },
    Free(Vec<u64>),
}

/// A hand-written client that negotiates shared memory.
struct ShmRaw {
    raw: Raw,
    buf: BytesMut,
    fds: Vec<OwnedFd>,
    /// Pools mapped from ShmPoolFd frames.
    maps: Vec<(u64, Mapping)>,
}

impl ShmRaw {
    fn connect(d: &Daemon, channel: &str, name: &str) -> ShmRaw {
        let mut raw = Raw::connect(&d.path(channel));
        let mut b = BytesMut::new();
        frame::encode_hello(&mut b, std::process::id(), name);
        wire::set_flags(&mut b, 0, wire::HELLO_SHM);
        raw.send(&b);
        raw.s.set_nonblocking(true).unwrap();
        let mut me = ShmRaw {
            raw,
            buf: BytesMut::new(),
            fds: Vec::new(),
            maps: Vec::new(),
        };
        let welcome = me.read_whole_frame();
        assert_eq!(welcome[0], frame::kind::WELCOME);
        assert_eq!(
            wire::welcome_flags(&welcome),
            wire::WELCOME_SHM,
            "shm accepted"
        );
        let Ok(Some((frame::Frame::Welcome { client, .. }, _))) = frame::decode(&welcome, 1 << 20)
        else {
            panic!("welcome")
        };
        me.raw.client = client;
        me
    }

    fn send(&mut self, b: &[u8]) {
        let mut rest = b;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !rest.is_empty() {
            match (&self.raw.s).write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "write timed out");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("write: {e}"),
            }
        }
    }

    /// Registers a pool of `size` bytes; returns its writable mapping.
    fn register(&mut self, size: usize) -> Mapping {
        let (fd, map) = create_pool(size).unwrap();
        let mut b = BytesMut::new();
        wire::encode_pool(&mut b, 77, size as u64);
        assert_eq!(
            send_with_fd(self.raw.s.as_raw_fd(), &b, fd.as_raw_fd()).unwrap(),
            b.len()
        );
        match self.next() {
            Some(S::Plain(Got::Ack(77))) => map,
            other => panic!("expected the pool's ack, got {other:?}"),
        }
    }

    fn publish(&mut self, event: &str, offset: u64, len: u32) {
        let mut b = BytesMut::new();
        wire::encode_publish(&mut b, offset, len, event);
        self.send(&b);
    }

    fn release(&mut self, slots: &[(u64, u64)]) {
        let mut b = BytesMut::new();
        wire::encode_release(&mut b, slots);
        self.send(&b);
    }

    fn subscribe(&mut self, event: &str) {
        let mut b = BytesMut::new();
        frame::encode_subscription(&mut b, true, 5, [event]);
        self.send(&b);
        match self.next() {
            Some(S::Plain(Got::Ack(5))) => {}
            other => panic!("expected ack, got {other:?}"),
        }
    }

    /// Sends a Ping and returns what came before its Pong.
    fn ping(&mut self) -> Vec<S> {
        let mut b = BytesMut::new();
        frame::encode_ping(&mut b, true, 999);
        self.send(&b);
        let mut before = Vec::new();
        loop {
            match self.next() {
                Some(S::Plain(Got::Pong(999))) => return before,
                Some(s) => before.push(s),
                None => panic!("closed before the pong; got {before:?}"),
            }
        }
    }

    fn read_whole_frame(&mut self) -> BytesMut {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_le_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let total = 5 + len as usize;
                if self.buf.len() >= total {
                    return self.buf.split_to(total);
                }
            }
            if !self.fill() {
                panic!("closed inside a frame");
            }
        }
    }

    /// Reads more; false at the end of the stream.
    fn fill(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        self.buf.reserve(256 * 1024);
        loop {
            match recv_with_fds(self.raw.s.as_raw_fd(), &mut self.buf, &mut self.fds) {
                Ok(0) => return false,
                Ok(_) => return true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "read timed out");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn next(&mut self) -> Option<S> {
        loop {
            if let Some(&t) = self.buf.first() {
                if wire::is_shm_kind(t) {
                    if let Some((f, n)) = wire::decode_shm(&self.buf, 1 << 26).unwrap() {
                        let s = match f {
                            ShmFrame::PoolFd { pool, size } => {
                                // Mapped at once: it may come before any
                                // frame the test waits for.
                                let fd = self.fds.remove(0);
                                let map = Mapping::map(&fd, size as usize, false).unwrap();
                                self.maps.push((pool, map));
                                self.buf.advance(n);
                                continue;
                            }
                            ShmFrame::Deliver {
                                pool,
                                offset,
                                len,
                                head,
                            } => S::Deliver {
                                pool,
                                offset,
                                len,
                                event: String::from_utf8(head.event.to_vec()).unwrap(),
                                client: head.client,
                            },
                            ShmFrame::Free(s) => S::Free(s.iter().map(|(_, o)| o).collect()),
                            other => panic!("unexpected {other:?}"),
                        };
                        self.buf.advance(n);
                        return Some(s);
                    }
                } else if let Some((f, n)) = frame::decode(&self.buf, 1 << 26).unwrap() {
                    let g = common::frames(&self.buf[..n]).remove(0);
                    let _ = f;
                    self.buf.advance(n);
                    return Some(S::Plain(g));
                }
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// The pools it was sent, in order.
    fn pools(&self) -> Vec<u64> {
        self.maps.iter().map(|(p, _)| *p).collect()
    }

    fn view(&self, pool: u64, offset: u64, len: u32) -> &[u8] {
        let (_, m) = self
            .maps
            .iter()
            .find(|(p, _)| *p == pool)
            .expect("pool mapped");
        m.slice(offset as usize, len as usize)
    }
}

use std::io::Write;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

const KIB64: usize = 64 * 1024;
const MIB: usize = 1024 * 1024;

#[test]
fn large_messages_reach_shm_and_socket_subscribers_and_slots_are_reused() {
    let d = Daemon::start(r#"{ "channels": { "A": {} } }"#);
    let mut publisher = ShmRaw::connect(&d, "A", "pub");
    let pool = publisher.register(4 * MIB);
    let mut shm_sub = ShmRaw::connect(&d, "A", "shm-sub");
    shm_sub.subscribe("big");
    let mut sock_sub = d.raw("A", "socket-sub");
    sock_sub.subscribe(&["big"]);

    let small = pattern(KIB64, 1);
    let large = pattern(MIB, 2);
    pool.write(0, &small);
    pool.write(MIB, &large);
    publisher.publish("big", 0, KIB64 as u32);
    publisher.publish("big", MIB as u64, MIB as u32);
    // Nobody released yet: the publisher gets no ShmFree.
    let early = publisher.ping();
    assert!(early.is_empty(), "no free before the release: {early:?}");

    // The socket subscriber gets the bytes.
    for want in [&small, &large] {
        match sock_sub.next() {
            Some(Got::Deliver {
                event,
                payload,
                client,
                ..
            }) => {
                assert_eq!((event.as_str(), client), ("big", publisher.raw.client));
                assert!(payload == **want, "socket payload intact");
            }
            other => panic!("socket subscriber got {other:?}"),
        }
    }
    // The shm subscriber got the pool once (when it joined), then
    // descriptors into it.
    let pool_id = publisher.raw.client;
    assert_eq!(shm_sub.pools(), vec![pool_id]);
    let mut slots = Vec::new();
    for want in [&small, &large] {
        match shm_sub.next() {
            Some(S::Deliver {
                pool,
                offset,
                len,
                event,
                client,
            }) => {
                assert_eq!(
                    (pool, event.as_str(), client),
                    (pool_id, "big", publisher.raw.client)
                );
                assert!(
                    shm_sub.view(pool, offset, len) == want.as_slice(),
                    "shm payload intact"
                );
                slots.push((pool, offset));
            }
            other => panic!("shm subscriber got {other:?}"),
        }
    }
    let mut ctl = d.control();
    let rec = ctl.show_client("A", publisher.raw.client).unwrap();
    assert_eq!(rec["shm"]["pool_bytes"], 4 * MIB as u64, "{rec}");
    assert_eq!(rec["shm"]["slots_in_flight"], 2, "{rec}");
    let rec = ctl.show_client("A", shm_sub.raw.client).unwrap();
    assert_eq!(rec["shm"]["holding"], 2, "{rec}");

    shm_sub.release(&slots);
    let mut freed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while freed.len() < 2 {
        assert!(Instant::now() < deadline, "frees: {freed:?}");
        for s in publisher.ping() {
            match s {
                S::Free(o) => freed.extend(o),
                other => panic!("publisher got {other:?}"),
            }
        }
    }
    freed.sort();
    assert_eq!(freed, vec![0, MIB as u64]);

    // A shm subscriber that joins after the pool gets its descriptor
    // when it joins, while its queue is empty.
    let mut late = ShmRaw::connect(&d, "A", "late");
    late.subscribe("big");
    assert_eq!(late.pools(), vec![pool_id]);
    drop(late);

    // Reuse slot 0 with new bytes: no new pool descriptor this time.
    let again = pattern(KIB64, 9);
    pool.write(0, &again);
    publisher.publish("big", 0, KIB64 as u32);
    match shm_sub.next() {
        Some(S::Deliver {
            pool, offset, len, ..
        }) => {
            assert_eq!((pool, offset), (pool_id, 0));
            assert!(shm_sub.view(pool, offset, len) == again.as_slice());
        }
        other => panic!("expected the reused slot, got {other:?}"),
    }
    match sock_sub.next() {
        Some(Got::Deliver { payload, .. }) => assert!(payload == again),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_subscriber_that_dies_holding_slots_frees_them() {
    let d = Daemon::start(r#"{ "channels": { "A": {} } }"#);
    let mut publisher = ShmRaw::connect(&d, "A", "pub");
    let pool = publisher.register(MIB);
    let mut holder = ShmRaw::connect(&d, "A", "holder");
    holder.subscribe("big");
    pool.write(0, &pattern(KIB64, 3));
    publisher.publish("big", 0, KIB64 as u32);
    publisher.publish("big", KIB64 as u64, KIB64 as u32);
    assert!(matches!(holder.next(), Some(S::Deliver { .. })));
    assert!(matches!(holder.next(), Some(S::Deliver { .. })));
    assert_eq!(holder.pools(), vec![publisher.raw.client]);
    assert!(publisher.ping().is_empty(), "held: not free yet");
    // The process dies: the kernel closes its socket, never releasing.
    drop(holder);
    let mut freed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while freed.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "frees after the holder died: {freed:?}"
        );
        for s in publisher.ping() {
            if let S::Free(o) = s {
                freed.extend(o);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    freed.sort();
    assert_eq!(freed, vec![0, KIB64 as u64]);
    // With no shm recipient, a publish is freed at once (nobody holds it).
    let mut sock_sub = d.raw("A", "socket-sub");
    sock_sub.subscribe(&["big"]);
    publisher.publish("big", 0, 100);
    let got = publisher.ping();
    assert!(matches!(&got[..], [S::Free(o)] if o == &[0]), "{got:?}");
    assert!(matches!(sock_sub.next(), Some(Got::Deliver { payload, .. }) if payload.len() == 100));
}

fn expect_error(c: &mut ShmRaw, id: u32, needle: &str) {
    eprintln!("expecting {needle}");
    let got = c.ping();
    let found = got.iter().any(|s| {
        matches!(s, S::Plain(Got::Error { code: ErrorCode::BadRequest, id: i, fatal: false, message })
            if *i == id && message.contains(needle))
    });
    assert!(found, "expected an error with {needle:?}, got {got:?}");
}

#[test]
fn hostile_descriptors_get_an_error_and_the_daemon_serves_on() {
    let d = Daemon::start(r#"{ "shmbytes": "1MiB", "channels": { "A": {} } }"#);
    let mut bystander = d.raw("A", "bystander");
    bystander.subscribe(&["ok"]);
    let mut evil = ShmRaw::connect(&d, "A", "evil");

    // A descriptor before any pool.
    evil.publish("big", 0, 10);
    expect_error(&mut evil, 0, "without a registered pool");
    // A pool frame without a descriptor.
    let mut b = BytesMut::new();
    wire::encode_pool(&mut b, 3, 4096);
    evil.send(&b);
    expect_error(&mut evil, 3, "without a file descriptor");
    // A regular file is not a memfd.
    let f: OwnedFd = tempfile::tempfile().unwrap().into();
    send_with_fd(evil.raw.s.as_raw_fd(), &b, f.as_raw_fd()).unwrap();
    expect_error(&mut evil, 3, "not a sealable memfd");
    // An unsealed memfd (its owner could shrink it under readers).
    // SAFETY: plain syscalls; checked.
    let m = unsafe {
        let raw = libc::memfd_create(c"evil".as_ptr(), libc::MFD_ALLOW_SEALING);
        assert!(raw >= 0);
        assert_eq!(libc::ftruncate(raw, 4096), 0);
        OwnedFd::from_raw_fd(raw)
    };
    send_with_fd(evil.raw.s.as_raw_fd(), &b, m.as_raw_fd()).unwrap();
    expect_error(&mut evil, 3, "lacks seals");
    // A sealed pool over shmbytes.
    let (big, _map) = create_pool(2 * MIB).unwrap();
    let mut b2 = BytesMut::new();
    wire::encode_pool(&mut b2, 4, 2 * MIB as u64);
    send_with_fd(evil.raw.s.as_raw_fd(), &b2, big.as_raw_fd()).unwrap();
    expect_error(&mut evil, 4, "shmbytes allows");
    // A size that lies.
    let (small, _m2) = create_pool(64 * 1024).unwrap();
    let mut b3 = BytesMut::new();
    wire::encode_pool(&mut b3, 6, MIB as u64);
    send_with_fd(evil.raw.s.as_raw_fd(), &b3, small.as_raw_fd()).unwrap();
    expect_error(&mut evil, 6, "not the 1048576 bytes");

    // A proper pool, then descriptors out of it.
    let pool = evil.register(MIB);
    pool.write(0, b"fine");
    evil.publish("ok", MIB as u64 - 2, 4);
    expect_error(&mut evil, 0, "out of bounds");
    evil.publish("ok", u64::MAX - 1, 4);
    expect_error(&mut evil, 0, "out of bounds");
    evil.publish("ok", 0, 0);
    expect_error(&mut evil, 0, "0 bytes");
    // Releasing what it does not hold: a slot, an unknown pool.
    evil.release(&[(evil.raw.client, 0)]);
    expect_error(&mut evil, 0, "does not hold");
    evil.release(&[(123_456, 0)]);
    expect_error(&mut evil, 0, "does not hold");

    // Everything refused touched no one; the connection and the daemon
    // still work: a proper descriptor reaches the bystander.
    evil.publish("ok", 0, 4);
    match bystander.next() {
        Some(Got::Deliver { event, payload, .. }) => {
            assert_eq!((event.as_str(), &payload[..]), ("ok", &b"fine"[..]))
        }
        other => panic!("bystander got {other:?}"),
    }
    let mut ctl = d.control();
    let rec = ctl.show_client("A", evil.raw.client).unwrap();
    assert_eq!(rec["shm"]["pool_bytes"], MIB as u64, "{rec}");
}

#[test]
fn shm_frames_without_negotiation_close_the_connection() {
    let d = Daemon::start(r#"{ "channels": { "A": {} } }"#);
    let mut plain = d.raw("A", "plain");
    let mut b = BytesMut::new();
    wire::encode_publish(&mut b, 0, 10, "x");
    plain.send(&b);
    let got = plain.drain();
    assert!(
        got.iter().any(|g| matches!(g, Got::Error { fatal: true, message, .. } if message.contains("did not negotiate"))),
        "{got:?}"
    );
    let mut other = d.raw("A", "other");
    other.ping();
}
