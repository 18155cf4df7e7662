//! A minimal NATS client: the text protocol over TCP, just what the
//! benchmark needs (`CONNECT`, `SUB`, `PUB`, `PING`/`PONG`, and parsing of
//! `MSG`, `PING`, `PONG`, `+OK`, `-ERR`, `INFO`). Blocking I/O with batched
//! writes; messages are parsed in the receive buffer without copying. No
//! client crate: the protocol is a few lines, and the benchmark wants to
//! control batching exactly as it does for Redis.

use std::io::{self, Write};
use std::net::TcpStream;
use std::ops::Range;

use anyhow::{anyhow, bail, Context, Result};

use crate::wire::{find_crlf, parse_usize, RecvBuf};

/// One thing the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    /// `MSG subject sid [reply] size` and its payload (ranges in the parsed slice).
    Msg {
        /// The subject.
        subject: Range<usize>,
        /// The payload.
        payload: Range<usize>,
    },
    /// `PING`: must be answered with `PONG`.
    Ping,
    /// `PONG`: answers our `PING`.
    Pong,
    /// `+OK` (verbose mode only).
    Ok,
    /// `-ERR 'text'`.
    Err(String),
    /// `INFO {...}`.
    Info,
}

/// Parses one server operation at the start of `b`. `Ok(None)`: incomplete.
pub fn parse(b: &[u8]) -> Result<Option<(ServerOp, usize)>, String> {
    let Some(eol) = find_crlf(b) else {
        if b.len() > 64 * 1024 {
            return Err("protocol line over 64 KiB".into());
        }
        return Ok(None);
    };
    let line = &b[..eol];
    let next = eol + 2;
    if let Some(args) = line.strip_prefix(b"MSG ") {
        let mut parts = args
            .split(|&c| c == b' ' || c == b'\t')
            .filter(|p| !p.is_empty());
        let subject = parts.next().ok_or("MSG without subject")?;
        let _sid = parts.next().ok_or("MSG without sid")?;
        let a = parts.next().ok_or("MSG without size")?;
        let size = match parts.next() {
            Some(s) => s, // `a` was the reply subject
            None => a,
        };
        let size = parse_usize(size).ok_or("MSG with a bad size")?;
        if b.len() < next + size + 2 {
            return Ok(None);
        }
        if &b[next + size..next + size + 2] != b"\r\n" {
            return Err("MSG payload not followed by CRLF".into());
        }
        let s0 = subject.as_ptr() as usize - b.as_ptr() as usize;
        return Ok(Some((
            ServerOp::Msg {
                subject: s0..s0 + subject.len(),
                payload: next..next + size,
            },
            next + size + 2,
        )));
    }
    let op = match line {
        b"PING" => ServerOp::Ping,
        b"PONG" => ServerOp::Pong,
        b"+OK" => ServerOp::Ok,
        l if l.starts_with(b"-ERR") => {
            ServerOp::Err(String::from_utf8_lossy(&l[4..]).trim().to_string())
        }
        l if l.starts_with(b"INFO") => ServerOp::Info,
        l => return Err(format!("unexpected line {:?}", String::from_utf8_lossy(l))),
    };
    Ok(Some((op, next)))
}

/// A connection to nats-server.
#[derive(Debug)]
pub struct Conn {
    /// The socket (also for writing).
    pub stream: TcpStream,
    rb: RecvBuf,
}

impl Conn {
    /// Connects, reads `INFO`, sends `CONNECT` (not verbose, no echo) and
    /// waits for the `PONG` that proves the server accepted it.
    pub fn connect(addr: &str) -> Result<Conn> {
        let stream =
            TcpStream::connect(addr).with_context(|| format!("connecting to NATS {addr}"))?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            rb: RecvBuf::default(),
        };
        match c.next_op()? {
            (ServerOp::Info, _) => {}
            (op, _) => bail!("NATS sent {op:?} instead of INFO"),
        }
        c.stream.write_all(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false,\"name\":\"ncbench\",\"lang\":\"rust\",\"version\":\"0\",\"protocol\":1}\r\n",
        )?;
        c.barrier()?;
        Ok(c)
    }

    /// Subscribes `subject` with subscription id `sid`, then waits until the
    /// server has applied it.
    pub fn subscribe(&mut self, subject: &str, sid: u32) -> Result<()> {
        write!(self.stream, "SUB {subject} {sid}\r\n")?;
        self.barrier()
    }

    /// Sends `PING` and waits for its `PONG`: everything sent before was
    /// handled by the server.
    pub fn barrier(&mut self) -> Result<()> {
        self.stream.write_all(b"PING\r\n")?;
        loop {
            match self.next_op()? {
                (ServerOp::Pong, _) => return Ok(()),
                (ServerOp::Msg { .. }, _) => bail!("NATS delivered a message during a barrier"),
                _ => {}
            }
        }
    }

    /// The next message: the absolute range of its payload, for
    /// [`Conn::get`]. Answers server `PING`s; fails on `-ERR`.
    #[inline]
    pub fn next_msg(&mut self) -> Result<Range<usize>> {
        loop {
            match self.next_op()? {
                (ServerOp::Msg { payload, .. }, base) => {
                    return Ok(base + payload.start..base + payload.end)
                }
                _ => continue,
            }
        }
    }

    /// Bytes of a range from [`Conn::next_msg`] (valid until the next read).
    #[inline]
    pub fn get(&self, r: Range<usize>) -> &[u8] {
        self.rb.get(r)
    }

    /// The next operation other than `PING` (answered) and `+OK`, with the
    /// absolute offset its ranges are relative to.
    fn next_op(&mut self) -> Result<(ServerOp, usize)> {
        loop {
            match parse(self.rb.data()).map_err(|e| anyhow!("NATS protocol: {e}"))? {
                Some((op, n)) => {
                    let base = self.rb.offset();
                    self.rb.consume(n);
                    match op {
                        ServerOp::Ping => self.stream.write_all(b"PONG\r\n")?,
                        ServerOp::Ok => {}
                        ServerOp::Err(e) => bail!("NATS error: {e}"),
                        op => return Ok((op, base)),
                    }
                }
                None => {
                    self.rb.fill(&mut self.stream).map_err(io_ctx)?;
                }
            }
        }
    }
}

fn io_ctx(e: io::Error) -> anyhow::Error {
    anyhow!("reading from NATS: {e}")
}

/// The `PUB` line for a payload of `size` bytes on `subject`.
pub fn pub_header(subject: &str, size: usize) -> Vec<u8> {
    format!("PUB {subject} {size}\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_msg_with_and_without_reply() {
        let b = b"MSG bench 1 5\r\nhello\r\nMSG a.b 22 inbox.1 3\r\nxyz\r\n";
        let (op, n) = parse(b).unwrap().unwrap();
        assert_eq!(
            op,
            ServerOp::Msg {
                subject: 4..9,
                payload: 15..20
            }
        );
        assert_eq!(&b[15..20], b"hello");
        let (op, m) = parse(&b[n..]).unwrap().unwrap();
        let ServerOp::Msg { subject, payload } = op else {
            panic!()
        };
        assert_eq!(&b[n..][subject], b"a.b");
        assert_eq!(&b[n..][payload], b"xyz");
        assert_eq!(n + m, b.len());
    }

    #[test]
    fn incomplete_and_control_lines() {
        assert_eq!(parse(b"MSG bench 1 5\r\nhel").unwrap(), None);
        assert_eq!(parse(b"PIN").unwrap(), None);
        assert_eq!(parse(b"PING\r\n").unwrap(), Some((ServerOp::Ping, 6)));
        assert_eq!(parse(b"PONG\r\n").unwrap(), Some((ServerOp::Pong, 6)));
        assert_eq!(parse(b"+OK\r\n").unwrap(), Some((ServerOp::Ok, 5)));
        assert_eq!(
            parse(b"-ERR 'Slow Consumer'\r\n").unwrap(),
            Some((ServerOp::Err("'Slow Consumer'".into()), 22))
        );
        assert_eq!(
            parse(b"INFO {\"a\":1}\r\n").unwrap(),
            Some((ServerOp::Info, 14))
        );
        assert!(parse(b"MSG bench 1 2\r\nhello\r\n").is_err());
        assert!(parse(b"WHAT\r\n").is_err());
    }
}
