//! A deterministic in-memory network for testing [`Net`]s together.
//!
//! This module owns the simulated world: N nodes, a virtual clock, and a
//! link that loses, duplicates, delays and reorders datagrams according to
//! a seeded xorshift generator, so every run of a test sees exactly the same
//! traffic. Every datagram goes to every node (a multicast group), back to
//! its sender too when `loopback` is on. A filter lets a test drop chosen
//! datagrams, and `inject` hands a node hand-made bytes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::rng::XorShift;
use super::{InMessage, Incoming, Net, NetConfig, NetEvent, OutMessage};

/// What the simulated link does to each datagram, per receiver.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    /// Probability a copy is lost.
    pub(crate) loss: f64,
    /// Probability a datagram is delivered twice.
    pub(crate) dup: f64,
    /// Probability a copy gets an extra random delay (up to `jitter`),
    /// which reorders it behind later datagrams.
    pub(crate) reorder: f64,
    /// Delay of every copy.
    pub(crate) latency: Duration,
    /// Largest extra delay of a reordered copy.
    pub(crate) jitter: Duration,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            loss: 0.0,
            dup: 0.0,
            reorder: 0.0,
            latency: Duration::from_micros(100),
            jitter: Duration::from_millis(2),
        }
    }
}

/// A node of the simulation and what it has received.
pub(crate) struct Node {
    pub(crate) net: Net,
    pub(crate) addr: SocketAddr,
    pub(crate) online: bool,
    pub(crate) inbox: Vec<InMessage>,
    pub(crate) events: Vec<NetEvent>,
    /// The gaps yielded among the messages: (inbox length when the gap
    /// came, node, first, last).
    pub(crate) gap_marks: Vec<(usize, u64, u64, u64)>,
}

/// A datagram on its way.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Flight {
    at: Instant,
    order: u64,
    to: usize,
    from: SocketAddr,
    data: Vec<u8>,
}

/// Decides whether a datagram (sender index, receiver index, bytes) is
/// delivered; `false` drops it.
pub(crate) type Filter = Box<dyn FnMut(usize, usize, &[u8]) -> bool>;

/// The simulated world.
pub(crate) struct Sim {
    pub(crate) start: Instant,
    pub(crate) now: Instant,
    pub(crate) nodes: Vec<Node>,
    pub(crate) link: Link,
    pub(crate) loopback: bool,
    pub(crate) filter: Option<Filter>,
    /// Datagrams handed to the link (before loss), all senders.
    pub(crate) transmitted: u64,
    rng: XorShift,
    flights: BinaryHeap<Reverse<Flight>>,
    order: u64,
    buf: Vec<u8>,
}

/// The address of node `i`.
pub(crate) fn addr(i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 0, 1, i as u8 + 1), 4000))
}

impl Sim {
    /// `n` nodes, node `i` configured by `cfg(i)`.
    pub(crate) fn new(seed: u64, n: usize, cfg: impl Fn(usize) -> NetConfig) -> Self {
        let start = Instant::now();
        let nodes = (0..n)
            .map(|i| Node {
                net: Net::new(cfg(i), start),
                addr: addr(i),
                online: true,
                inbox: Vec::new(),
                events: Vec::new(),
                gap_marks: Vec::new(),
            })
            .collect();
        Sim {
            start,
            now: start,
            nodes,
            link: Link::default(),
            loopback: false,
            filter: None,
            transmitted: 0,
            rng: XorShift::new(seed),
            flights: BinaryHeap::new(),
            order: 0,
            buf: Vec::new(),
        }
    }

    /// `n` nodes with default settings, ids `i + 1`, names `node{i}`.
    pub(crate) fn with_defaults(seed: u64, n: usize) -> Self {
        Sim::new(seed, n, |i| {
            NetConfig::new(i as u64 + 1, format!("node{i}"))
        })
    }

    /// Node `i` sends a message now.
    pub(crate) fn send(
        &mut self,
        i: usize,
        channel: &str,
        event: &str,
        payload: &[u8],
        client: u64,
        seq: u64,
    ) {
        let m = OutMessage {
            channel,
            event,
            payload,
            client,
            seq,
        };
        self.nodes[i]
            .net
            .send(self.now, &m)
            .expect("message accepted");
    }

    /// Hands node `to` a datagram as if it came from `from`, now.
    pub(crate) fn inject(&mut self, to: usize, from: SocketAddr, data: &[u8]) {
        self.nodes[to].net.handle_datagram(self.now, from, data);
        self.collect(to);
    }

    /// Takes node `i` off the network (it neither sends nor receives).
    pub(crate) fn stop(&mut self, i: usize) {
        self.nodes[i].online = false;
    }

    /// Restarts node `i` with a new node id, keeping name and address.
    pub(crate) fn restart(&mut self, i: usize, node_id: u64) {
        let mut cfg = self.nodes[i].net.config().clone();
        cfg.node_id = node_id;
        self.nodes[i].net = Net::new(cfg, self.now);
        self.nodes[i].online = true;
    }

    /// Runs the world for `d` of virtual time.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            for i in 0..self.nodes.len() {
                self.service(i);
            }
            let mut next = self.flights.peek().map(|Reverse(f)| f.at);
            for n in self.nodes.iter().filter(|n| n.online) {
                next = super::earliest(next, n.net.poll_timeout());
            }
            // Always move forward, so a deadline already due cannot spin.
            let Some(next) = next.map(|t| t.max(self.now + Duration::from_micros(1))) else {
                break;
            };
            if next > end {
                break;
            }
            self.now = next;
            while self
                .flights
                .peek()
                .is_some_and(|Reverse(f)| f.at <= self.now)
            {
                let Reverse(f) = self.flights.pop().expect("peeked");
                if self.nodes[f.to].online {
                    self.nodes[f.to]
                        .net
                        .handle_datagram(self.now, f.from, &f.data);
                }
            }
        }
        self.now = end;
        for i in 0..self.nodes.len() {
            self.service(i);
        }
    }

    /// Fires node `i`'s timers, sends what it has and collects its output.
    fn service(&mut self, i: usize) {
        if !self.nodes[i].online {
            return;
        }
        if self.nodes[i]
            .net
            .poll_timeout()
            .is_some_and(|t| t <= self.now)
        {
            self.nodes[i].net.handle_timeout(self.now);
        }
        let mut buf = std::mem::take(&mut self.buf);
        while self.nodes[i]
            .net
            .poll_transmit(self.now, &mut buf)
            .is_some()
        {
            self.transmitted += 1;
            self.broadcast(i, &buf);
        }
        self.buf = buf;
        self.collect(i);
    }

    fn broadcast(&mut self, from: usize, data: &[u8]) {
        for to in 0..self.nodes.len() {
            if to == from && !self.loopback {
                continue;
            }
            if let Some(f) = &mut self.filter {
                if !f(from, to, data) {
                    continue;
                }
            }
            let copies = if self.rng.chance(self.link.dup) { 2 } else { 1 };
            for _ in 0..copies {
                if self.rng.chance(self.link.loss) {
                    continue;
                }
                let mut delay = self.link.latency;
                if self.rng.chance(self.link.reorder) {
                    let j = self.link.jitter.as_nanos() as u64;
                    delay += Duration::from_nanos(self.rng.below(j.max(1)));
                }
                self.order += 1;
                self.flights.push(Reverse(Flight {
                    at: self.now + delay,
                    order: self.order,
                    to,
                    from: self.nodes[from].addr,
                    data: data.to_vec(),
                }));
            }
        }
    }

    fn collect(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        while let Some(m) = n.net.poll_incoming() {
            match m {
                Incoming::Message(m) => n.inbox.push(m),
                Incoming::Gap { node, first, last } => {
                    n.gap_marks.push((n.inbox.len(), node, first, last))
                }
            }
        }
        while let Some(e) = n.net.poll_event() {
            n.events.push(e);
        }
    }
}
