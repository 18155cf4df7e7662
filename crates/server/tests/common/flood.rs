//! Helpers of the hostile-neighbour tests: datagrams a host without the key
//! crafts under fake node ids with the proto crate's own encoders (plain
//! heartbeats, SYNC replies, NAKs, ACKs, DATA fragments), fake daemons that
//! answer SYNC and heartbeat as a stranger without the key can (so that a
//! daemon has them up), and a sampler of a daemon's resident memory.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netcluster_proto::net::wire::{self, Ack, Header, Heartbeat, Kind, SyncReply, HEADER_LEN};

/// A fake node: its id and the sequence numbers of its datagrams.
pub struct Fake {
    pub node: u64,
    hb: u64,
    nak: u64,
    ack: u64,
    reply: u64,
}

impl Fake {
    pub fn new(node: u64) -> Fake {
        Fake {
            node,
            hb: 0,
            nak: 0,
            ack: 0,
            reply: 0,
        }
    }

    /// A heartbeat announcing this node (so that its NAKs and ACKs count).
    pub fn heartbeat(&mut self) -> Vec<u8> {
        self.hb += 1;
        let mut b = Vec::new();
        let hb = Heartbeat {
            name: "fake",
            last_seq: 0,
            uptime_ms: 60_000,
            messages_out: 0,
            datagrams_out: 0,
            bytes_out: 0,
        };
        wire::encode_heartbeat(&mut b, self.node, self.hb, &hb);
        b
    }

    /// The SYNC reply to request `request_seq` of `requester`: this node
    /// has sent no DATA yet (so the requester takes its DATA from seq 1)
    /// and has been up for an hour (so it is no restarted daemon).
    pub fn sync_reply(&mut self, requester: u64, request_seq: u64) -> Vec<u8> {
        self.reply += 1;
        let mut b = Vec::new();
        let r = SyncReply {
            requester,
            request_seq,
            last_seq: 0,
            uptime_ms: 3_600_000,
        };
        wire::encode_sync_reply(&mut b, self.node, self.reply, &r);
        b
    }

    /// A NAK asking `target` for `ranges`.
    pub fn nak(&mut self, target: u64, ranges: &[(u64, u64)]) -> Vec<u8> {
        self.nak += 1;
        let mut b = Vec::new();
        wire::encode_nak(&mut b, self.node, self.nak, target, ranges);
        b
    }

    /// An ACK telling `target` that everything below `next` arrived.
    pub fn ack(&mut self, target: u64, next: u64) -> Vec<u8> {
        self.ack += 1;
        let mut b = Vec::new();
        wire::encode_ack(&mut b, self.node, self.ack, &Ack { target, next });
        b
    }

    /// DATA datagram `seq` holding fragment `index` (of `count`) of message
    /// 1, which announces `total` bytes; `len` bytes of data at `offset`.
    pub fn fragment(
        &self,
        seq: u64,
        index: u64,
        count: u64,
        total: u64,
        offset: u64,
        len: usize,
    ) -> Vec<u8> {
        let mut b = vec![0; HEADER_LEN];
        wire::put_header(
            &mut b,
            &Header {
                kind: Kind::Data,
                flags: 0,
                key_id: 0,
                node: self.node,
                seq,
            },
        );
        wire::put_frag_head(&mut b, 1, index, count, total, offset, len);
        b.resize(b.len() + len, 0x5a);
        b
    }
}

/// Fake daemons without the key, played on a thread inside a host's
/// network namespace until dropped: a heartbeat of each to one daemon every
/// 300 ms, and the SYNC reply to every SYNC request that names one of them
/// (read from the multicast group, where requests go), which is all a
/// stranger needs for that daemon to have its fake ids up.
pub struct FakeDaemons {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDaemons {
    /// Starts playing `ids` from namespace `ns` (its name under
    /// /var/run/netns) towards the daemon at `to`, which is in `group` on
    /// the same port.
    pub fn start(ns: &str, group: Ipv4Addr, to: SocketAddrV4, ids: &[u64]) -> FakeDaemons {
        let stop = Arc::new(AtomicBool::new(false));
        let ns = format!("/var/run/netns/{ns}");
        let mut fakes: HashMap<u64, Fake> = ids.iter().map(|&n| (n, Fake::new(n))).collect();
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let f = std::fs::File::open(&ns).expect("open the namespace");
            // SAFETY: setns with a valid namespace fd; this thread only.
            let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            let listen = group_socket(group, to.port());
            let out = UdpSocket::bind("0.0.0.0:0").unwrap();
            let mut next_beat = Instant::now();
            let mut buf = vec![0u8; 65_536];
            while !s.load(Ordering::Relaxed) {
                if Instant::now() >= next_beat {
                    for f in fakes.values_mut() {
                        let _ = out.send_to(&f.heartbeat(), to);
                    }
                    next_beat = Instant::now() + Duration::from_millis(300);
                }
                let Ok((len, _)) = listen.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(d) = wire::decode_datagram(&buf[..len]) else {
                    continue;
                };
                if let wire::Body::Sync(r) = d.body {
                    if let Some(f) = fakes.get_mut(&r.target) {
                        let _ = out.send_to(&f.sync_reply(d.header.node, d.header.seq), to);
                    }
                }
            }
        });
        FakeDaemons {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops them (they fall silent at once).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("fake daemons");
        }
    }
}

impl Drop for FakeDaemons {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A plain UDP socket on `port` joined to `group`, as any program on a
/// host could open; reads time out after 20 ms.
pub fn group_socket(group: Ipv4Addr, port: u16) -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())
        .unwrap();
    s.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s.into()
}

/// `VmRSS` of process `pid`, in bytes.
pub fn rss(pid: u32) -> u64 {
    super::status_kib(pid, "VmRSS:") * 1024
}

/// Samples a process's `VmRSS` every 10 ms on a thread, keeping the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !s.load(Ordering::Relaxed) {
                peak = peak.max(rss(pid));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak.max(rss(pid))
        });
        RssSampler { stop, thread }
    }

    /// Stops sampling; the peak seen.
    pub fn peak(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler")
    }
}

/// Mebibytes, for messages.
pub fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}
