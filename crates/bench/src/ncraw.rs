//! A raw netcluster client, written from `docs/PROTOCOL.md` alone (no use
//! of the `netcluster` client library nor of `netcluster-proto`): the
//! yardstick that shows what the daemon offers, beside the library row
//! (issue 15). Like the NATS and Redis clients it uses blocking I/O on the
//! channel's Unix socket, writes in 64 KiB batches and parses `Deliver`
//! frames in the receive buffer without copying.
//!
//! Frames: `type u8 · body length u32 · body`, little-endian. It sends
//! `Hello`, `Subscribe` (with an ack id, waited for), `Publish` and `Ping`
//! (the barrier); it reads `Welcome`, `Deliver`, `Ack`, `Pong`, `Ping`
//! (answered) and `Error`.

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

/// The channel every netcluster workload uses.
pub const CHANNEL: &str = "bench";
/// Largest frame body this client accepts (the daemon's own limit is
/// `maxmessage` + 1536; this only guards against a corrupt length).
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// How long a blocking read may wait before the run fails.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

const HEADER: usize = 5;
const T_HELLO: u8 = 0x01;
const T_SUBSCRIBE: u8 = 0x02;
const T_PUBLISH: u8 = 0x04;
const T_PING: u8 = 0x06;
const T_PONG: u8 = 0x07;
const T_WELCOME: u8 = 0x81;
const T_DELIVER: u8 = 0x82;
const T_RESPONSE: u8 = 0x83;
const T_ERROR: u8 = 0x84;
const T_ACK: u8 = 0x85;
/// Protocol version sent in Hello.
const VERSION: u16 = 1;
/// Deliver flag bits.
const F_REMOTE: u8 = 1;
const F_CHANNEL: u8 = 2;

/// One frame from the daemon. Ranges are relative to the parsed slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `Welcome`: the handshake's answer.
    Welcome {
        /// The daemon's node id.
        node: u64,
        /// Our client id.
        client: u64,
        /// Largest payload accepted.
        max_message: u32,
        /// The channel's name.
        channel: String,
    },
    /// `Deliver`: one message.
    Deliver {
        /// Origin client id.
        client: u64,
        /// Origin sequence number.
        seq: u64,
        /// The event name.
        event: Range<usize>,
        /// The payload.
        payload: Range<usize>,
    },
    /// `Ack` of a Subscribe.
    Ack(u32),
    /// `Pong`: answers our Ping.
    Pong(u64),
    /// `Ping` from the daemon: answered with Pong.
    Ping(u64),
    /// `Response` to a request (never sent by this client).
    Response,
    /// `Error`.
    Error {
        /// Error code.
        code: u16,
        /// The id it answers, or 0.
        id: u32,
        /// The daemon closes after it.
        fatal: bool,
        /// The text.
        message: String,
    },
}

/// Reads fields of a frame body, tracking the offset in the parsed slice.
struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
    end: usize,
}

impl Cur<'_> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<Range<usize>, String> {
        if self.end - self.pos < n {
            return Err(format!("frame body too short ({n} more bytes needed)"));
        }
        self.pos += n;
        Ok(self.pos - n..self.pos)
    }
    #[inline]
    fn u8(&mut self) -> Result<u8, String> {
        let r = self.take(1)?;
        Ok(self.b[r.start])
    }
    #[inline]
    fn le<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let r = self.take(N)?;
        Ok(self.b[r].try_into().expect("N bytes"))
    }
    #[inline]
    fn varint(&mut self) -> Result<u64, String> {
        let (mut v, mut shift, mut i) = (0u64, 0, self.pos);
        let end = self.end.min(self.pos + 10);
        while i < end {
            let c = self.b[i];
            i += 1;
            v |= u64::from(c & 0x7f) << shift;
            if c & 0x80 == 0 {
                self.pos = i;
                return Ok(v);
            }
            shift += 7;
        }
        Err(bad_varint())
    }
    #[inline]
    fn rest(&mut self) -> Range<usize> {
        let r = self.pos..self.end;
        self.pos = self.end;
        r
    }
    fn text(&self, r: Range<usize>) -> String {
        String::from_utf8_lossy(&self.b[r]).into_owned()
    }
}

#[cold]
fn bad_varint() -> String {
    "varint cut short or longer than 10 bytes".into()
}

/// Parses one frame at the start of `b`: `Ok(None)` when incomplete.
#[inline]
pub fn parse(b: &[u8]) -> Result<Option<(Op, usize)>, String> {
    if b.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_le_bytes([b[1], b[2], b[3], b[4]]) as usize;
    if len > MAX_BODY {
        return Err(format!("frame body of {len} bytes, over {MAX_BODY}"));
    }
    if b.len() < HEADER + len {
        return Ok(None);
    }
    let mut c = Cur {
        b,
        pos: HEADER,
        end: HEADER + len,
    };
    let op = match b[0] {
        T_DELIVER => {
            let flags = c.u8()?;
            let client = c.varint()?;
            let seq = c.varint()?;
            if flags & F_REMOTE != 0 {
                c.take(8)?;
            }
            if flags & F_CHANNEL != 0 {
                let n = c.u8()? as usize;
                c.take(n)?;
            }
            let n = u16::from_le_bytes(c.le()?) as usize;
            let event = c.take(n)?;
            Op::Deliver {
                client,
                seq,
                event,
                payload: c.rest(),
            }
        }
        T_PONG => Op::Pong(u64::from_le_bytes(c.le()?)),
        T_PING => Op::Ping(u64::from_le_bytes(c.le()?)),
        T_ACK => Op::Ack(u32::from_le_bytes(c.le()?)),
        T_RESPONSE => Op::Response,
        T_ERROR => {
            let code = u16::from_le_bytes(c.le()?);
            let id = u32::from_le_bytes(c.le()?);
            let fatal = c.u8()? & 1 != 0;
            let r = c.rest();
            Op::Error {
                code,
                id,
                fatal,
                message: c.text(r),
            }
        }
        T_WELCOME => {
            let _version = c.le::<2>()?;
            let _flags = c.le::<2>()?;
            let node = u64::from_le_bytes(c.le()?);
            let client = u64::from_le_bytes(c.le()?);
            let max_message = u32::from_le_bytes(c.le()?);
            let n = c.u8()? as usize;
            let r = c.take(n)?;
            Op::Welcome {
                node,
                client,
                max_message,
                channel: c.text(r),
            }
        }
        t => return Err(format!("unknown frame type 0x{t:02x}")),
    };
    Ok(Some((op, HEADER + len)))
}

fn header(out: &mut Vec<u8>, ty: u8, body_len: usize) {
    out.push(ty);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
}

/// The `Hello` frame.
pub fn hello(pid: u32, name: &str) -> Vec<u8> {
    let name = &name.as_bytes()[..name.len().min(255)];
    let mut b = Vec::new();
    header(&mut b, T_HELLO, 4 + 2 + 2 + 4 + 1 + name.len());
    b.extend_from_slice(b"NCLB");
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&pid.to_le_bytes());
    b.push(name.len() as u8);
    b.extend_from_slice(name);
    b
}

/// A `Subscribe` frame for one event, acknowledged with `ack`.
pub fn subscribe(ack: u32, event: &str) -> Vec<u8> {
    let mut b = Vec::new();
    header(&mut b, T_SUBSCRIBE, 4 + 2 + 2 + event.len());
    b.extend_from_slice(&ack.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&(event.len() as u16).to_le_bytes());
    b.extend_from_slice(event.as_bytes());
    b
}

/// Everything of a `Publish` frame before its payload of `size` bytes.
pub fn publish_header(event: &str, size: usize) -> Vec<u8> {
    let mut b = Vec::new();
    header(&mut b, T_PUBLISH, 2 + event.len() + size);
    b.extend_from_slice(&(event.len() as u16).to_le_bytes());
    b.extend_from_slice(event.as_bytes());
    b
}

fn ping(pong: bool, token: u64) -> [u8; 13] {
    let mut b = [0u8; 13];
    b[0] = if pong { T_PONG } else { T_PING };
    b[1..5].copy_from_slice(&8u32.to_le_bytes());
    b[5..].copy_from_slice(&token.to_le_bytes());
    b
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A Deliver frame built by hand from the document's layout.
    fn deliver(
        flags: u8,
        client: &[u8],
        seq: &[u8],
        extra: &[u8],
        event: &str,
        p: &[u8],
    ) -> Vec<u8> {
        let mut body = vec![flags];
        body.extend_from_slice(client);
        body.extend_from_slice(seq);
        body.extend_from_slice(extra);
        body.extend_from_slice(&(event.len() as u16).to_le_bytes());
        body.extend_from_slice(event.as_bytes());
        body.extend_from_slice(p);
        let mut b = vec![T_DELIVER];
        b.extend_from_slice(&(body.len() as u32).to_le_bytes());
        b.extend_from_slice(&body);
        b
    }

    #[test]
    fn parses_the_documented_16_byte_deliver() {
        // The document's example: 31 bytes for 16 B on event `bench`.
        let b = deliver(0, &[3], &[1], &[], "bench", &[7; 16]);
        assert_eq!(b.len(), 31);
        let (op, n) = parse(&b).unwrap().unwrap();
        assert_eq!(n, 31);
        let Op::Deliver {
            client,
            seq,
            event,
            payload,
        } = op
        else {
            panic!("{op:?}")
        };
        assert_eq!((client, seq), (3, 1));
        assert_eq!(&b[event], b"bench");
        assert_eq!(&b[payload], &[7; 16]);
    }

    #[test]
    fn parses_remote_and_channel_flags_and_long_varints() {
        let mut extra = 0x1122_3344_5566_7788u64.to_le_bytes().to_vec();
        extra.push(1);
        extra.push(b'B');
        // 300 = 0b1_0010_1100 → 0xac 0x02.
        let b = deliver(
            F_REMOTE | F_CHANNEL,
            &[0xac, 0x02],
            &[5],
            &extra,
            "e",
            b"xy",
        );
        let (op, _) = parse(&b).unwrap().unwrap();
        let Op::Deliver {
            client,
            seq,
            event,
            payload,
        } = op
        else {
            panic!()
        };
        assert_eq!((client, seq), (300, 5));
        assert_eq!((&b[event], &b[payload]), (&b"e"[..], &b"xy"[..]));
    }

    #[test]
    fn incomplete_short_and_unknown_frames() {
        let b = deliver(0, &[1], &[1], &[], "bench", b"abc");
        for cut in 0..b.len() {
            assert_eq!(parse(&b[..cut]).unwrap(), None, "cut at {cut}");
        }
        // A body too short for its fields.
        assert!(parse(&[T_ACK, 2, 0, 0, 0, 1, 2]).is_err());
        assert!(parse(&[0x99, 0, 0, 0, 0]).is_err());
        let mut huge = vec![T_DELIVER];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&huge).is_err());
    }

    #[test]
    fn encodes_client_frames() {
        let h = hello(7, "x");
        assert_eq!(h[0], T_HELLO);
        assert_eq!(
            u32::from_le_bytes(h[1..5].try_into().unwrap()) as usize,
            h.len() - 5
        );
        assert_eq!(&h[5..9], b"NCLB");
        let s = subscribe(9, "ping");
        assert_eq!(s.len(), 5 + 4 + 2 + 2 + 4);
        let p = publish_header("bench", 16);
        assert_eq!(u32::from_le_bytes(p[1..5].try_into().unwrap()), 2 + 5 + 16);
        assert_eq!(parse(&ping(true, 42)).unwrap(), Some((Op::Pong(42), 13)));
    }
}
