//! A raw netcluster client, written from `docs/PROTOCOL.md` alone (no use
//! of the `netcluster` client library nor of `netcluster-proto`): the
//! yardstick that shows what the daemon offers, beside the library row
//! (issue 15). Like the NATS and Redis clients it uses blocking I/O on the
//! channel's Unix socket, writes in 64 KiB batches and parses `Deliver`
//! frames in the receive buffer without copying.
//!
//! This module owns the connection and the workload roles: it sends
//! `Hello`, `Subscribe` (with an ack id, waited for), `Publish` and `Ping`
//! (the barrier) and answers the daemon's `Ping`. The frames themselves are
//! encoded and parsed in `frames`.

use std::io::Write;
use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};

use crate::outcome::{LatencyOut, PubOut, SubOut};
use crate::payload::{self, Checker, Progress};
use crate::sys::monotonic_ns;
use crate::wire::{BatchWriter, RecvBuf};

mod frames;

use frames::ping;
pub use frames::{hello, parse, publish_header, subscribe, Op, MAX_BODY};

/// The channel every netcluster workload uses.
pub const CHANNEL: &str = "bench";
/// How long a blocking read may wait before the run fails.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one channel of `ncserver`.
#[derive(Debug)]
pub struct Conn {
    /// The socket (also for writing).
    pub stream: UnixStream,
    rb: RecvBuf,
    next_id: u32,
    /// Our client id (from Welcome).
    pub client: u64,
}

impl Conn {
    /// Connects to `{dir}/netcluster-bench` and shakes hands.
    pub fn connect(dir: &Path, name: &str) -> Result<Conn> {
        let path = dir.join(format!("netcluster-{CHANNEL}"));
        let stream = UnixStream::connect(&path)
            .with_context(|| format!("connecting to {}", path.display()))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let mut c = Conn {
            stream,
            rb: RecvBuf::default(),
            next_id: 1,
            client: 0,
        };
        c.stream.write_all(&hello(std::process::id(), name))?;
        match c.next_op()? {
            (
                Op::Welcome {
                    client, channel, ..
                },
                _,
            ) => {
                ensure!(channel == CHANNEL, "Welcome names channel {channel:?}");
                c.client = client;
            }
            (op, _) => bail!("netcluster sent {op:?} instead of Welcome"),
        }
        Ok(c)
    }

    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Subscribes to `event` and waits for the daemon's Ack.
    pub fn subscribe(&mut self, event: &str) -> Result<()> {
        let ack = self.id();
        self.stream.write_all(&subscribe(ack, event))?;
        loop {
            match self.next_op()? {
                (Op::Ack(id), _) if id == ack => return Ok(()),
                (Op::Deliver { .. }, _) => bail!("a message arrived before the Ack"),
                _ => {}
            }
        }
    }

    /// Sends Ping and waits for its Pong: the daemon handled everything
    /// sent before.
    pub fn barrier(&mut self) -> Result<()> {
        let token = u64::from(self.id());
        self.stream.write_all(&ping(false, token))?;
        loop {
            match self.next_op()? {
                (Op::Pong(t), _) if t == token => return Ok(()),
                (Op::Deliver { .. }, _) => bail!("a message arrived during a barrier"),
                _ => {}
            }
        }
    }

    /// The next message's payload as an absolute range for [`Conn::get`].
    #[inline]
    pub fn next_msg(&mut self) -> Result<Range<usize>> {
        loop {
            if let (Op::Deliver { payload, .. }, base) = self.next_op()? {
                return Ok(base + payload.start..base + payload.end);
            }
        }
    }

    /// Bytes of a range from [`Conn::next_msg`] (valid until the next read).
    #[inline]
    pub fn get(&self, r: Range<usize>) -> &[u8] {
        self.rb.get(r)
    }

    /// The next frame other than Ping (answered), with the absolute offset
    /// its ranges are relative to. Fails on an Error frame: the benchmark
    /// expects none.
    fn next_op(&mut self) -> Result<(Op, usize)> {
        loop {
            match parse(self.rb.data()).map_err(|e| anyhow!("netcluster protocol: {e}"))? {
                Some((op, n)) => {
                    let base = self.rb.offset();
                    self.rb.consume(n);
                    match op {
                        Op::Ping(t) => self.stream.write_all(&ping(true, t))?,
                        Op::Error { code, message, .. } => {
                            bail!("netcluster error {code}: {message}")
                        }
                        op => return Ok((op, base)),
                    }
                }
                None => {
                    self.rb
                        .fill(&mut self.stream)
                        .map_err(|e| anyhow!("reading from ncserver: {e}"))?;
                }
            }
        }
    }
}

/// Receives `count` messages of `size` bytes on `subject`.
pub fn subscriber(
    dir: &Path,
    subject: &str,
    count: u64,
    size: usize,
    timeout: Duration,
    ready: &mut dyn FnMut(),
) -> Result<SubOut> {
    let checker = Checker::new(size, count);
    let mut c = Conn::connect(dir, "ncbench-raw-sub")?;
    c.subscribe(subject)?;
    // A read waits at most the whole run's deadline.
    c.stream.set_read_timeout(Some(timeout.min(READ_TIMEOUT)))?;
    ready();
    let deadline = Instant::now() + timeout;
    let mut first_ns = 0;
    loop {
        let r = c.next_msg().map_err(|e| match checker.finish() {
            Err(short) => anyhow!("netcluster (raw) subscriber: {short} ({e})"),
            Ok(()) => e,
        })?;
        match checker
            .check(c.get(r))
            .map_err(|e| anyhow!("netcluster (raw) subscriber: {e}"))?
        {
            Progress::More(1) => first_ns = monotonic_ns(),
            Progress::More(_) => {}
            Progress::Done => break,
        }
        // Checked every 64 Ki messages only: reading the clock is not free.
        if checker.received() & 0xffff == 0 && Instant::now() > deadline {
            bail!("timed out: {}", checker.finish().unwrap_err());
        }
    }
    let last_ns = monotonic_ns();
    checker.finish().map_err(|e| anyhow!(e))?;
    Ok(SubOut {
        count,
        first_ns: if count == 1 { last_ns } else { first_ns },
        last_ns,
    })
}

/// Publishes `count` messages in 64 KiB batches, then waits (Ping/Pong)
/// until the daemon has handled them all.
pub fn publisher(dir: &Path, subject: &str, count: u64, size: usize) -> Result<PubOut> {
    let mut c = Conn::connect(dir, "ncbench-raw-pub")?;
    let head = publish_header(subject, size);
    let mut p = payload::new(size);
    let mut w = BatchWriter::default();
    let start_ns = monotonic_ns();
    for seq in 0..count {
        payload::set_seq(&mut p, seq);
        w.push(&mut c.stream, &[&head, &p])?;
    }
    w.flush(&mut c.stream)?;
    c.barrier()?;
    let end_ns = monotonic_ns();
    Ok(PubOut {
        count,
        start_ns,
        end_ns,
    })
}

/// Answers `count` messages on `ping` with the same payload on `pong`.
pub fn ponger(dir: &Path, count: u64, size: usize, ready: &mut dyn FnMut()) -> Result<()> {
    let checker = Checker::new(size, count);
    let mut c = Conn::connect(dir, "ncbench-raw-pong")?;
    c.subscribe("ping")?;
    ready();
    let head = publish_header("pong", size);
    let mut out = Vec::with_capacity(head.len() + size);
    for _ in 0..count {
        let r = c.next_msg()?;
        let p = c.get(r);
        checker.check(p).map_err(|e| anyhow!("ponger: {e}"))?;
        out.clear();
        out.extend_from_slice(&head);
        out.extend_from_slice(p);
        c.stream.write_all(&out)?;
    }
    c.barrier()
}

/// Sends `warmup + count` pings, each after the previous pong, and returns
/// the round-trip times of the last `count`.
pub fn pinger(
    dir: &Path,
    count: u64,
    warmup: u64,
    size: usize,
    timeout: Duration,
) -> Result<LatencyOut> {
    let total = warmup + count;
    let checker = Checker::new(size, total);
    let mut c = Conn::connect(dir, "ncbench-raw-ping")?;
    c.subscribe("pong")?;
    let head = publish_header("ping", size);
    let mut p = payload::new(size);
    let mut out = Vec::with_capacity(head.len() + size);
    let mut rtts = Vec::with_capacity(count as usize);
    let deadline = Instant::now() + timeout;
    for seq in 0..total {
        payload::set_seq(&mut p, seq);
        out.clear();
        out.extend_from_slice(&head);
        out.extend_from_slice(&p);
        let t0 = Instant::now();
        c.stream.write_all(&out)?;
        let r = c.next_msg()?;
        let dt = t0.elapsed();
        checker
            .check(c.get(r))
            .map_err(|e| anyhow!("pinger: {e}"))?;
        if seq >= warmup {
            rtts.push(dt.as_nanos() as u64);
        }
        ensure!(
            Instant::now() < deadline,
            "netcluster (raw) pinger timed out"
        );
    }
    checker.finish().map_err(|e| anyhow!(e))?;
    Ok(LatencyOut::from_samples(rtts))
}

/// Opens `clients` idle connections, calls `ready`, holds them until
/// `hold` returns.
pub fn idle(dir: &Path, clients: u32, ready: &mut dyn FnMut(), hold: impl FnOnce()) -> Result<()> {
    let mut all = Vec::with_capacity(clients as usize);
    for i in 0..clients {
        all.push(Conn::connect(dir, "ncbench-raw-idle").with_context(|| format!("client {i}"))?);
    }
    ready();
    hold();
    Ok(())
}
