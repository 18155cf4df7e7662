//! A minimal Redis client: RESP2 over a Unix socket, just what the
//! benchmark needs (`SUBSCRIBE`, pipelined `PUBLISH`, `PING`). Blocking
//! I/O with batched writes; replies and pushes are parsed in the receive
//! buffer without copying. No client crate: pipelining and the reading of
//! `PUBLISH` replies stay in the benchmark's hands.

use std::io::Write;
use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use crate::wire::{find_crlf, parse_usize, RecvBuf};

/// Most elements of an array reply the parser keeps (pub/sub pushes have 3).
pub const MAX_ITEMS: usize = 4;

/// One element of an array reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Item {
    /// A bulk string (range in the parsed slice).
    Bulk(Range<usize>),
    /// An integer.
    Int(i64),
    /// A null bulk string or array.
    #[default]
    Nil,
}

/// One reply or push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `*N` with up to [`MAX_ITEMS`] flat elements.
    Array([Item; MAX_ITEMS], usize),
    /// `:n`.
    Int(i64),
    /// `+text` (range in the parsed slice).
    Simple(Range<usize>),
    /// `-text`.
    Error(String),
    /// `$n` at top level.
    Bulk(Item),
}

fn parse_int(b: &[u8]) -> Option<i64> {
    match b.strip_prefix(b"-") {
        Some(rest) => parse_usize(rest).map(|n| -(n as i64)),
        None => parse_usize(b).map(|n| n as i64),
    }
}

/// Parses an item (bulk, integer or nil) at `b[at..]`: `Ok(None)` if
/// incomplete, else the item and the offset after it.
fn parse_item(b: &[u8], at: usize) -> Result<Option<(Item, usize)>, String> {
    let Some(eol) = find_crlf(&b[at..]) else {
        return Ok(None);
    };
    let line = &b[at..at + eol];
    let next = at + eol + 2;
    match line.first() {
        Some(b'$') if line == b"$-1" => Ok(Some((Item::Nil, next))),
        Some(b'$') => {
            let n = parse_usize(&line[1..]).ok_or("bad bulk length")?;
            if b.len() < next + n + 2 {
                return Ok(None);
            }
            if &b[next + n..next + n + 2] != b"\r\n" {
                return Err("bulk string not followed by CRLF".into());
            }
            Ok(Some((Item::Bulk(next..next + n), next + n + 2)))
        }
        Some(b':') => Ok(Some((
            Item::Int(parse_int(&line[1..]).ok_or("bad integer")?),
            next,
        ))),
        _ => Err(format!(
            "unsupported array element {:?}",
            String::from_utf8_lossy(line)
        )),
    }
}

/// Parses one reply at the start of `b`. `Ok(None)`: incomplete.
pub fn parse(b: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(eol) = find_crlf(b) else {
        return Ok(None);
    };
    let line = &b[..eol];
    let next = eol + 2;
    let reply = match line.first() {
        Some(b'*') => {
            let n = parse_usize(&line[1..]).ok_or("bad array length")?;
            if n > MAX_ITEMS {
                return Err(format!(
                    "array of {n} elements, at most {MAX_ITEMS} expected"
                ));
            }
            let mut items: [Item; MAX_ITEMS] = Default::default();
            let mut at = next;
            for item in items.iter_mut().take(n) {
                match parse_item(b, at)? {
                    None => return Ok(None),
                    Some((it, after)) => {
                        *item = it;
                        at = after;
                    }
                }
            }
            return Ok(Some((Reply::Array(items, n), at)));
        }
        Some(b':') => Reply::Int(parse_int(&line[1..]).ok_or("bad integer")?),
        Some(b'+') => Reply::Simple(1..eol),
        Some(b'-') => Reply::Error(String::from_utf8_lossy(&line[1..]).into_owned()),
        Some(b'$') => {
            return Ok(parse_item(b, 0)?.map(|(it, n)| (Reply::Bulk(it), n)));
        }
        _ => {
            return Err(format!(
                "unexpected reply {:?}",
                String::from_utf8_lossy(line)
            ))
        }
    };
    Ok(Some((reply, next)))
}

/// A RESP command with bulk-string arguments.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Everything of a `PUBLISH channel <payload>` command that precedes the
/// payload bytes, for a payload of `size` bytes; `\r\n` follows the payload.
pub fn publish_header(channel: &str, size: usize) -> Vec<u8> {
    let mut out = command(&[b"PUBLISH", channel.as_bytes()]);
    out[1] = b'3';
    out.extend_from_slice(format!("${size}\r\n").as_bytes());
    out
}

/// A connection to redis-server.
#[derive(Debug)]
pub struct Conn {
    /// The socket (also for writing).
    pub stream: UnixStream,
    rb: RecvBuf,
}

impl Conn {
    /// Connects and checks the server answers `PING`.
    pub fn connect(path: &Path) -> Result<Conn> {
        let stream = UnixStream::connect(path)
            .with_context(|| format!("connecting to Redis at {}", path.display()))?;
        let mut c = Conn {
            stream,
            rb: RecvBuf::default(),
        };
        c.stream.write_all(&command(&[b"PING"]))?;
        match c.next()? {
            (Reply::Simple(r), base) if c.rb.get(base + r.start..base + r.end) == b"PONG" => {}
            (r, _) => bail!("Redis answered PING with {r:?}"),
        }
        Ok(c)
    }

    /// Subscribes to `channel` and waits for the confirmation.
    pub fn subscribe(&mut self, channel: &str) -> Result<()> {
        self.stream
            .write_all(&command(&[b"SUBSCRIBE", channel.as_bytes()]))?;
        match self.next()? {
            (Reply::Array(items, 3), base) => match &items[0] {
                Item::Bulk(r) if self.rb.get(base + r.start..base + r.end) == b"subscribe" => {
                    Ok(())
                }
                _ => bail!("unexpected answer to SUBSCRIBE"),
            },
            (r, _) => bail!("unexpected answer to SUBSCRIBE: {r:?}"),
        }
    }

    /// The next published message: the absolute range of its payload, for
    /// [`Conn::get`].
    #[inline]
    pub fn next_message(&mut self) -> Result<Range<usize>> {
        match self.next()? {
            (Reply::Array(items, 3), base) => match &items[2] {
                Item::Bulk(p) => Ok(base + p.start..base + p.end),
                i => bail!("message push with a {i:?} payload"),
            },
            (r, _) => bail!("expected a message push, got {r:?}"),
        }
    }

    /// The next integer reply (e.g. a `PUBLISH` answer: receivers reached).
    #[inline]
    pub fn next_int(&mut self) -> Result<i64> {
        match self.next()? {
            (Reply::Int(n), _) => Ok(n),
            (r, _) => bail!("expected an integer reply, got {r:?}"),
        }
    }

    /// Bytes of a range from [`Conn::next_message`] (valid until the next read).
    #[inline]
    pub fn get(&self, r: Range<usize>) -> &[u8] {
        self.rb.get(r)
    }

    /// The next reply with the absolute offset its ranges are relative to;
    /// an error reply is an error.
    fn next(&mut self) -> Result<(Reply, usize)> {
        loop {
            match parse(self.rb.data()).map_err(|e| anyhow!("Redis protocol: {e}"))? {
                Some((Reply::Error(e), _)) => bail!("Redis error: {e}"),
                Some((r, n)) => {
                    let base = self.rb.offset();
                    self.rb.consume(n);
                    return Ok((r, base));
                }
                None => {
                    self.rb
                        .fill(&mut self.stream)
                        .map_err(|e| anyhow!("reading from Redis: {e}"))?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_push_and_replies() {
        let b = b"*3\r\n$7\r\nmessage\r\n$5\r\nbench\r\n$3\r\nabc\r\n:4\r\n+PONG\r\n-ERR no\r\n";
        let (r, n) = parse(b).unwrap().unwrap();
        let Reply::Array(items, 3) = r else { panic!() };
        assert_eq!(items[0], Item::Bulk(8..15));
        let Item::Bulk(p) = &items[2] else { panic!() };
        assert_eq!(&b[p.clone()], b"abc");
        let (r, m) = parse(&b[n..]).unwrap().unwrap();
        assert_eq!(r, Reply::Int(4));
        let (r, k) = parse(&b[n + m..]).unwrap().unwrap();
        assert_eq!(r, Reply::Simple(1..5));
        let (r, _) = parse(&b[n + m + k..]).unwrap().unwrap();
        assert_eq!(r, Reply::Error("ERR no".into()));
    }

    #[test]
    fn incomplete_until_the_last_byte() {
        let b = b"*3\r\n$9\r\nsubscribe\r\n$5\r\nbench\r\n:1\r\n";
        for cut in 0..b.len() {
            assert_eq!(parse(&b[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (r, n) = parse(b).unwrap().unwrap();
        assert_eq!(n, b.len());
        assert!(matches!(r, Reply::Array(ref i, 3) if i[2] == Item::Int(1)));
    }

    #[test]
    fn commands_are_encoded() {
        assert_eq!(command(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n".to_vec());
        let mut p = publish_header("bench", 3);
        p.extend_from_slice(b"abc\r\n");
        assert_eq!(
            p,
            b"*3\r\n$7\r\nPUBLISH\r\n$5\r\nbench\r\n$3\r\nabc\r\n".to_vec()
        );
        assert!(parse(b"*9\r\n").is_err());
        assert_eq!(parse(b":-2\r\n").unwrap(), Some((Reply::Int(-2), 5)));
    }
}
