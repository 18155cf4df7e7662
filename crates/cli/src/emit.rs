//! `ncclient emit CHANNEL EVENT [DATA]`: sends messages from the shell.
//!
//! DATA is sent as-is when it is valid JSON, and as a JSON string when it is
//! not, so `emit A log 42` sends the number and `emit A log hello` the
//! string "hello". Without DATA each line of stdin is one message under the
//! same rule (blank lines are skipped). `--raw` sends the bytes unchanged.
//! The command waits until the daemon has confirmed every message
//! (`Client::flush`, a barrier the daemon answers after routing what came
//! before it) before exiting 0. Lines are confirmed as they go (every
//! [`CONFIRM_EVERY`] lines, and whenever stdin pauses); if the connection
//! breaks (the daemon stopped or crashed), the command exits non-zero
//! naming how many of the lines it sent were not confirmed: any of those
//! may be lost, none of the confirmed ones is.

use std::io::BufRead;

use anyhow::Context;
use netcluster::Client;
use tokio::sync::mpsc;

use crate::common::{self, Global};

/// How ncclient emit names itself to the daemon.
const CLIENT_NAME: &str = "ncclient emit";
/// Lines read ahead of the connection.
const STDIN_QUEUE: usize = 256;
/// Lines sent before the daemon is asked to confirm them, at most.
pub const CONFIRM_EVERY: u64 = 1000;

/// What to emit.
#[derive(Debug, Clone)]
pub struct Request {
    /// The channel to connect to.
    pub channel: String,
    /// The event name.
    pub event: String,
    /// The single payload; `None` = one message per line of stdin.
    pub data: Option<Vec<u8>>,
    /// Send the bytes unchanged instead of as JSON.
    pub raw: bool,
}

/// Connects, emits, flushes.
pub fn run(global: &Global, req: Request) -> anyhow::Result<()> {
    let rt = common::runtime()?;
    rt.block_on(async {
        let client = global.connect(&req.channel, CLIENT_NAME, false).await?;
        match &req.data {
            Some(data) => {
                emit_one(&client, &req, data).await?;
                client
                    .flush()
                    .await
                    .context("the daemon did not confirm the message")?;
            }
            None => emit_lines(&client, &req).await?,
        }
        // Everything is with the daemon; a failure to close is not the
        // caller's problem.
        let _ = client.disconnect().await;
        Ok(())
    })
}

async fn emit_one(client: &Client, req: &Request, data: &[u8]) -> anyhow::Result<()> {
    let payload = if req.raw {
        data.to_vec()
    } else {
        json_payload(data)
    };
    client
        .emit_bytes(&req.event, payload)
        .await
        .with_context(|| {
            format!(
                "cannot emit {} on {}",
                common::quote_name(&req.event),
                common::quote_name(&req.channel)
            )
        })
}

/// Lines sent and confirmed so far.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    confirmed: u64,
}

impl Tally {
    /// Asks the daemon to confirm what was sent since the last time.
    async fn confirm(&mut self, client: &Client) -> anyhow::Result<()> {
        if self.sent == self.confirmed {
            return Ok(());
        }
        match client.flush().await {
            Ok(()) => {
                self.confirmed = self.sent;
                Ok(())
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// The error naming the lines left unconfirmed.
    fn failed(&self, why: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!(
            "{} of the {} lines sent were not confirmed by the daemon and may be lost \
             ({} confirmed): {why}",
            self.sent - self.confirmed,
            self.sent,
            self.confirmed
        )
    }
}

/// Emits every non-blank line of stdin, confirming them as it goes.
async fn emit_lines(client: &Client, req: &Request) -> anyhow::Result<()> {
    // Stdin is read on a thread of its own so a slow producer never stalls
    // the connection, and each line leaves as soon as it is read.
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(STDIN_QUEUE);
    std::thread::Builder::new()
        .name("ncclient-stdin".into())
        .spawn(move || read_lines(tx))
        .context("cannot start the stdin reader")?;
    let mut t = Tally::default();
    loop {
        let line = match rx.try_recv() {
            Ok(line) => line,
            Err(mpsc::error::TryRecvError::Empty) => {
                // Stdin pauses: have what was sent confirmed meanwhile.
                t.confirm(client).await?;
                match rx.recv().await {
                    Some(line) => line,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        let mut line = line.context("cannot read stdin")?;
        trim_line_end(&mut line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        t.sent += 1;
        if let Err(e) = emit_one(client, req, &line).await {
            return Err(t.failed(format!("{e:#}")));
        }
        if t.sent - t.confirmed >= CONFIRM_EVERY {
            t.confirm(client).await?;
        }
    }
    t.confirm(client).await
}

fn read_lines(tx: mpsc::Sender<std::io::Result<Vec<u8>>>) {
    let mut stdin = std::io::stdin().lock();
    loop {
        let mut line = Vec::new();
        let item = match stdin.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => Ok(line),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

/// Removes a trailing `\n` or `\r\n`.
fn trim_line_end(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

/// The JSON payload for `data`: the text itself (without surrounding
/// whitespace) if it is valid JSON, else the text as a JSON string
/// (invalid UTF-8 replaced).
pub fn json_payload(data: &[u8]) -> Vec<u8> {
    if let Ok(text) = std::str::from_utf8(data) {
        if serde_json::from_str::<serde_json::Value>(text).is_ok() {
            return text.trim().as_bytes().to_vec();
        }
    }
    let text = String::from_utf8_lossy(data);
    serde_json::Value::String(text.into_owned())
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        String::from_utf8(json_payload(s.as_bytes())).unwrap()
    }

    #[test]
    fn valid_json_is_sent_as_is_and_the_rest_as_a_string() {
        assert_eq!(p("42"), "42");
        assert_eq!(p(" {\"a\": [1, 2]} "), "{\"a\": [1, 2]}");
        assert_eq!(p("\"quoted\""), "\"quoted\"");
        assert_eq!(p("true"), "true");
        assert_eq!(p("hello world"), "\"hello world\"");
        assert_eq!(p("{broken"), "\"{broken\"");
        assert_eq!(p("say \"hi\"\\"), r#""say \"hi\"\\""#);
        assert_eq!(p(""), "\"\"");
        assert_eq!(
            String::from_utf8(json_payload(b"\xffx")).unwrap(),
            "\"\u{fffd}x\""
        );
    }

    #[test]
    fn line_ends_are_trimmed() {
        for (input, want) in [
            (&b"a\n"[..], &b"a"[..]),
            (b"a\r\n", b"a"),
            (b"a", b"a"),
            (b"a\r", b"a\r"),
            (b"\n", b""),
        ] {
            let mut v = input.to_vec();
            trim_line_end(&mut v);
            assert_eq!(v, want);
        }
    }
}
