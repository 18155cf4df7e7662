//! The roles a benchmark process plays — subscriber, publisher, ponger,
//! pinger, a crowd of idle clients — for each broker, plus the raw Unix
//! socketpair round trip that is the yardstick. Each role is one
//! process (the suite starts them), so publisher, subscribers and broker
//! never share a process.
//!
//! netcluster's roles live in [`crate::nc`] (its client library) and
//! [`crate::ncraw`] (the raw-protocol yardstick); NATS and Redis use the
//! hand-written clients with batched writes.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};

pub use crate::outcome::{LatencyOut, PubOut, SubOut, System};
use crate::payload::{self, Checker, Progress};
use crate::sys::monotonic_ns;
use crate::wire::BatchWriter;
use crate::{asyncnats, nats, nc, ncraw, resp};

/// What the `async-nats` system plays (the NATS bridge rows' yardstick).
const ONLY_PUB_SUB: &str = "async-nats plays only the pub and sub roles";

/// How long a peer client's blocking read may wait before the run fails.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Receives `count` messages of `size` bytes on `subject`.
pub fn subscriber(
    sys: System,
    at: &str,
    subject: &str,
    count: u64,
    size: usize,
    timeout: Duration,
    ready: &mut dyn FnMut(),
) -> Result<SubOut> {
    let checker = Checker::new(size, count);
    let mut first_ns = 0;
    let mut on = |p: &[u8]| -> Result<bool> {
        match checker
            .check(p)
            .map_err(|e| anyhow!("{} subscriber: {e}", sys.label()))?
        {
            Progress::More(1) => first_ns = monotonic_ns(),
            Progress::More(_) => {}
            Progress::Done => return Ok(true),
        }
        Ok(false)
    };
    let deadline = Instant::now() + timeout;
    match sys {
        System::Nc => return nc::subscriber(Path::new(at), subject, count, size, timeout, ready),
        System::NcRaw => {
            return ncraw::subscriber(Path::new(at), subject, count, size, timeout, ready)
        }
        System::AsyncNats => {
            return asyncnats::subscriber(at, subject, count, size, timeout, ready)
        }
        System::Nats => {
            let mut c = nats::Conn::connect(at)?;
            c.stream.set_read_timeout(Some(READ_TIMEOUT))?;
            c.subscribe(subject, 1)?;
            ready();
            loop {
                let r = c.next_msg().with_context(|| progress(&checker))?;
                if on(c.get(r))? {
                    break;
                }
                check_deadline(deadline, &checker)?;
            }
        }
        System::Redis => {
            let mut c = resp::Conn::connect(Path::new(at))?;
            c.stream.set_read_timeout(Some(READ_TIMEOUT))?;
            c.subscribe(subject)?;
            ready();
            loop {
                let r = c.next_message().with_context(|| progress(&checker))?;
                if on(c.get(r))? {
                    break;
                }
                check_deadline(deadline, &checker)?;
            }
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

fn progress(c: &Checker) -> String {
    format!("after {} messages", c.received())
}

#[inline]
fn check_deadline(deadline: Instant, c: &Checker) -> Result<()> {
    // Checked every 64 Ki messages only: reading the clock is not free.
    if c.received() & 0xffff == 0 && Instant::now() > deadline {
        bail!("timed out: {}", c.finish().unwrap_err());
    }
    Ok(())
}

/// Publishes `count` messages of `size` bytes on `subject`, batched, and
/// waits until the broker has handled them all. For Redis each `PUBLISH`
/// reply is read and must say `receivers` subscribers got the message.
pub fn publisher(
    sys: System,
    at: &str,
    subject: &str,
    count: u64,
    size: usize,
    receivers: u32,
) -> Result<PubOut> {
    let mut p = payload::new(size);
    match sys {
        System::Nc => nc::publisher(Path::new(at), subject, count, size),
        System::NcRaw => ncraw::publisher(Path::new(at), subject, count, size),
        System::AsyncNats => asyncnats::publisher(at, subject, count, size),
        System::Nats => {
            let mut c = nats::Conn::connect(at)?;
            c.stream.set_read_timeout(Some(READ_TIMEOUT))?;
            let head = nats::pub_header(subject, size);
            let mut w = BatchWriter::default();
            let start_ns = monotonic_ns();
            for seq in 0..count {
                payload::set_seq(&mut p, seq);
                w.push(&mut c.stream, &[&head, &p, b"\r\n"])?;
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
        System::Redis => {
            let c = resp::Conn::connect(Path::new(at))?;
            c.stream.set_read_timeout(Some(READ_TIMEOUT))?;
            let mut wr = c.stream.try_clone()?;
            // Replies are read on a second thread while this one writes, as
            // a pipelining client does; otherwise both sides' buffers fill.
            let replies = std::thread::spawn(move || -> Result<()> {
                let mut c = c;
                for i in 0..count {
                    let n = c.next_int()?;
                    ensure!(
                        n == i64::from(receivers),
                        "PUBLISH {i} reached {n} subscribers, expected {receivers}"
                    );
                }
                Ok(())
            });
            let head = resp::publish_header(subject, size);
            let mut w = BatchWriter::default();
            let start_ns = monotonic_ns();
            let sent = (|| -> Result<()> {
                for seq in 0..count {
                    payload::set_seq(&mut p, seq);
                    w.push(&mut wr, &[&head, &p, b"\r\n"])?;
                }
                w.flush(&mut wr)?;
                Ok(())
            })();
            let read = replies
                .join()
                .map_err(|_| anyhow!("reply reader panicked"))?;
            read.context("reading PUBLISH replies")?;
            sent.context("writing PUBLISH commands")?;
            let end_ns = monotonic_ns();
            Ok(PubOut {
                count,
                start_ns,
                end_ns,
            })
        }
    }
}

/// Answers `count` messages on `ping` with the same payload on `pong`.
pub fn ponger(
    sys: System,
    at: &str,
    count: u64,
    size: usize,
    ready: &mut dyn FnMut(),
) -> Result<()> {
    let checker = Checker::new(size, count);
    match sys {
        System::Nc => nc::ponger(Path::new(at), count, size, ready),
        System::NcRaw => ncraw::ponger(Path::new(at), count, size, ready),
        System::AsyncNats => bail!(ONLY_PUB_SUB),
        System::Nats => {
            let mut c = nats::Conn::connect(at)?;
            c.stream.set_read_timeout(Some(READ_TIMEOUT))?;
            c.subscribe("ping", 1)?;
            ready();
            let head = nats::pub_header("pong", size);
            let mut out = Vec::with_capacity(head.len() + size + 2);
            for _ in 0..count {
                let r = c.next_msg()?;
                let p = c.get(r);
                checker.check(p).map_err(|e| anyhow!("ponger: {e}"))?;
                out.clear();
                out.extend_from_slice(&head);
                out.extend_from_slice(p);
                out.extend_from_slice(b"\r\n");
                c.stream.write_all(&out)?;
            }
            c.barrier()?;
            Ok(())
        }
        System::Redis => {
            // A subscribed RESP2 connection cannot publish: one of each.
            let mut sub = resp::Conn::connect(Path::new(at))?;
            let mut publ = resp::Conn::connect(Path::new(at))?;
            sub.stream.set_read_timeout(Some(READ_TIMEOUT))?;
            publ.stream.set_read_timeout(Some(READ_TIMEOUT))?;
            sub.subscribe("ping")?;
            ready();
            let head = resp::publish_header("pong", size);
            let mut out = Vec::with_capacity(head.len() + size + 2);
            let mut unread = 0;
            for _ in 0..count {
                let r = sub.next_message()?;
                let p = sub.get(r);
                checker.check(p).map_err(|e| anyhow!("ponger: {e}"))?;
                out.clear();
                out.extend_from_slice(&head);
                out.extend_from_slice(p);
                out.extend_from_slice(b"\r\n");
                publ.stream.write_all(&out)?;
                unread += 1;
                // PUBLISH replies are read in bulk, off the critical path
                // (they are already there: each preceded its pong).
                if unread == 256 {
                    drain_ints(&mut publ, &mut unread)?;
                }
            }
            drain_ints(&mut publ, &mut unread)?;
            Ok(())
        }
    }
}

fn drain_ints(c: &mut resp::Conn, unread: &mut u32) -> Result<()> {
    while *unread > 0 {
        let n = c.next_int()?;
        ensure!(n == 1, "PUBLISH reached {n} subscribers, expected 1");
        *unread -= 1;
    }
    Ok(())
}

/// Sends `warmup + count` pings, each after the previous pong, and returns
/// the round-trip times of the last `count`.
pub fn pinger(
    sys: System,
    at: &str,
    count: u64,
    warmup: u64,
    size: usize,
    timeout: Duration,
) -> Result<LatencyOut> {
    match sys {
        System::Nc => return nc::pinger(Path::new(at), count, warmup, size, timeout),
        System::NcRaw => return ncraw::pinger(Path::new(at), count, warmup, size, timeout),
        System::AsyncNats => bail!(ONLY_PUB_SUB),
        System::Nats | System::Redis => {}
    }
    let total = warmup + count;
    let checker = Checker::new(size, total);
    let mut p = payload::new(size);
    let mut rtts = Vec::with_capacity(count as usize);
    let deadline = Instant::now() + timeout;
    match sys {
        System::Nc | System::NcRaw | System::AsyncNats => unreachable!("handled above"),
        System::Nats => {
            let mut c = nats::Conn::connect(at)?;
            c.stream.set_read_timeout(Some(READ_TIMEOUT))?;
            c.subscribe("pong", 1)?;
            let head = nats::pub_header("ping", size);
            let mut out = Vec::with_capacity(head.len() + size + 2);
            for seq in 0..total {
                payload::set_seq(&mut p, seq);
                out.clear();
                out.extend_from_slice(&head);
                out.extend_from_slice(&p);
                out.extend_from_slice(b"\r\n");
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
                ensure!(Instant::now() < deadline, "NATS pinger timed out");
            }
        }
        System::Redis => {
            let mut sub = resp::Conn::connect(Path::new(at))?;
            let mut publ = resp::Conn::connect(Path::new(at))?;
            sub.stream.set_read_timeout(Some(READ_TIMEOUT))?;
            publ.stream.set_read_timeout(Some(READ_TIMEOUT))?;
            sub.subscribe("pong")?;
            let head = resp::publish_header("ping", size);
            let mut out = Vec::with_capacity(head.len() + size + 2);
            let mut unread = 0;
            for seq in 0..total {
                payload::set_seq(&mut p, seq);
                out.clear();
                out.extend_from_slice(&head);
                out.extend_from_slice(&p);
                out.extend_from_slice(b"\r\n");
                let t0 = Instant::now();
                publ.stream.write_all(&out)?;
                let r = sub.next_message()?;
                let dt = t0.elapsed();
                checker
                    .check(sub.get(r))
                    .map_err(|e| anyhow!("pinger: {e}"))?;
                if seq >= warmup {
                    rtts.push(dt.as_nanos() as u64);
                }
                unread += 1;
                if unread == 256 {
                    drain_ints(&mut publ, &mut unread)?;
                }
                ensure!(Instant::now() < deadline, "Redis pinger timed out");
            }
            drain_ints(&mut publ, &mut unread)?;
        }
    }
    checker.finish().map_err(|e| anyhow!(e))?;
    Ok(LatencyOut::from_samples(rtts))
}

/// Opens `clients` connections that do nothing, calls `ready` once all
/// are established, and holds them until `hold` returns.
pub fn idle(
    sys: System,
    at: &str,
    clients: u32,
    ready: &mut dyn FnMut(),
    hold: impl FnOnce() + Send + 'static,
) -> Result<()> {
    crate::sys::raise_nofile(u64::from(clients) + 256)?;
    match sys {
        System::Nc => nc::idle(Path::new(at), clients, ready, hold),
        System::NcRaw => ncraw::idle(Path::new(at), clients, ready, hold),
        System::AsyncNats => bail!(ONLY_PUB_SUB),
        System::Nats => {
            let mut all = Vec::with_capacity(clients as usize);
            for i in 0..clients {
                all.push(nats::Conn::connect(at).with_context(|| format!("client {i}"))?);
            }
            ready();
            hold();
            Ok(())
        }
        System::Redis => {
            let mut all = Vec::with_capacity(clients as usize);
            for i in 0..clients {
                all.push(
                    resp::Conn::connect(Path::new(at)).with_context(|| format!("client {i}"))?,
                );
            }
            ready();
            hold();
            Ok(())
        }
    }
}

/// The yardstick: `warmup + count` round trips of `size` bytes over a raw
/// Unix socketpair between this process and a child (`exe raw-pong`),
/// with blocking `write` and `read` on both sides.
pub fn raw_pinger(exe: &Path, count: u64, warmup: u64, size: usize) -> Result<LatencyOut> {
    let (mut mine, theirs) = UnixStream::pair()?;
    let total = warmup + count;
    let mut child = Command::new(exe)
        .args([
            "raw-pong",
            "--count",
            &total.to_string(),
            "--size",
            &size.to_string(),
        ])
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .spawn()
        .context("starting raw-pong")?;
    mine.set_read_timeout(Some(READ_TIMEOUT))?;
    let checker = Checker::new(size, total);
    let mut p = payload::new(size);
    let mut back = vec![0; size];
    let mut rtts = Vec::with_capacity(count as usize);
    let run = (|| -> Result<()> {
        for seq in 0..total {
            payload::set_seq(&mut p, seq);
            let t0 = Instant::now();
            mine.write_all(&p)?;
            mine.read_exact(&mut back)?;
            let dt = t0.elapsed();
            checker
                .check(&back)
                .map_err(|e| anyhow!("raw pinger: {e}"))?;
            if seq >= warmup {
                rtts.push(dt.as_nanos() as u64);
            }
        }
        Ok(())
    })();
    if run.is_err() {
        let _ = child.kill();
    }
    let status = child.wait()?;
    run?;
    ensure!(status.success(), "raw-pong failed: {status}");
    Ok(LatencyOut::from_samples(rtts))
}

/// The child of [`raw_pinger`]: echoes `count` payloads of `size` bytes on
/// the socket it got as standard input.
pub fn raw_ponger(count: u64, size: usize) -> Result<()> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let mut s = UnixStream::from(fd);
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut b = vec![0; size];
    for _ in 0..count {
        s.read_exact(&mut b)?;
        s.write_all(&b)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let l = LatencyOut::from_samples((1..=1000).rev().collect());
        assert_eq!(l.samples, 1000);
        assert_eq!(l.p50_ns, 500);
        assert_eq!(l.p99_ns, 990);
        assert_eq!(l.p999_ns, 999);
        assert_eq!((l.min_ns, l.max_ns), (1, 1000));
        assert_eq!(LatencyOut::from_samples(vec![7]).p999_ns, 7);
        assert_eq!(LatencyOut::from_samples(vec![]).samples, 0);
    }
}
