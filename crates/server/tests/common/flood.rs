//! Helpers of the hostile-neighbour tests: datagrams a host without the key
//! crafts under fake node ids with the proto crate's own encoders (plain
//! heartbeats, NAKs, ACKs, DATA fragments), and a sampler of a daemon's
//! resident memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use netcluster_proto::net::wire::{self, Ack, Header, Heartbeat, Kind, HEADER_LEN};

/// A fake node: its id and the sequence numbers of its datagrams.
pub struct Fake {
    pub node: u64,
    hb: u64,
    nak: u64,
    ack: u64,
}

impl Fake {
    pub fn new(node: u64) -> Fake {
        Fake {
            node,
            hb: 0,
            nak: 0,
            ack: 0,
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
