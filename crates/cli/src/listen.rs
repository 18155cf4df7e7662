//! `ncclient listen CHANNEL [EVENT...]`: prints messages as JSON lines.
//!
//! Each message becomes one line on stdout,
//! `{"channel":…,"event":…,"data":…,"origin":"…","seq":N}`, flushed at once
//! so the output can be piped. `data` is the payload parsed as JSON, or a
//! JSON string (invalid UTF-8 replaced) when the payload is not JSON. When
//! subscribed, a notice goes to stderr (`listening on A for log, err`), so
//! scripts can wait for it before emitting. `--count` and `--timeout` end
//! the command successfully; the daemon going away ends it with an error.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use netcluster::{Client, ConnectionState, Message, Subscription};
use serde_json::Value;
use tokio::time::Instant;

use crate::common::{self, Global};

/// How ncclient listen names itself to the daemon.
const CLIENT_NAME: &str = "ncclient listen";
/// The subscription to every event.
const ALL_EVENTS: &str = "*";

/// What to listen to, and for how long.
#[derive(Debug, Clone)]
pub struct Request {
    /// The channel to connect to.
    pub channel: String,
    /// Event names; empty = all events.
    pub events: Vec<String>,
    /// Stop after this many messages.
    pub count: Option<u64>,
    /// Stop after this long.
    pub timeout: Option<Duration>,
}

/// Connects, subscribes, prints until done.
pub fn run(global: &Global, req: Request) -> anyhow::Result<()> {
    let rt = common::runtime()?;
    rt.block_on(listen(global, req))
}

async fn listen(global: &Global, req: Request) -> anyhow::Result<()> {
    let deadline = req.timeout.map(|t| Instant::now() + t);
    let client = global.connect(&req.channel, CLIENT_NAME, false).await?;
    let events = subscription_set(&req.events);
    let mut source = Source::open(&client, &events).await?;
    eprintln!("listening on {} for {}", req.channel, events.join(", "));
    tokio::spawn(report_reconnects(client.clone(), req.channel.clone()));
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    while req.count.map_or(true, |n| seen < n) {
        let next = match deadline {
            None => source.next().await,
            Some(d) => match tokio::time::timeout_at(d, source.next()).await {
                Ok(m) => m,
                Err(_) => return Ok(()),
            },
        };
        let Some(msg) = next else {
            anyhow::bail!(
                "the connection to ncserver on channel {:?} closed: {}",
                req.channel,
                client
                    .closed_reason()
                    .unwrap_or_else(|| "no reason given".into())
            );
        };
        let line = json_line(
            msg.channel(),
            msg.event(),
            msg.payload(),
            &msg.origin().to_string(),
            msg.seq(),
        );
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            // The reader went away (e.g. `| head -1`): that ends listening.
            if common::is_broken_pipe(&e) {
                return Ok(());
            }
            return Err(e).context("cannot write to stdout");
        }
        seen += 1;
    }
    Ok(())
}

/// Says on stderr why the connection was lost each time the client starts
/// reconnecting (e.g. the daemon closed it as a slow consumer), and when it
/// is back; the messages in between are not replayed.
async fn report_reconnects(client: Client, channel: String) {
    let mut state = client.watch_state();
    let mut lost = false;
    while state.changed().await.is_ok() {
        let now = *state.borrow_and_update();
        match now {
            ConnectionState::Reconnecting if !lost => {
                lost = true;
                let why = client
                    .not_connected_reason()
                    .unwrap_or_else(|| "no reason given".into());
                eprintln!("ncclient: lost the connection on channel {channel:?}: {why}");
            }
            ConnectionState::Connected if lost => {
                lost = false;
                eprintln!(
                    "listening on {channel} again (messages emitted meanwhile are not replayed)"
                );
            }
            _ => {}
        }
    }
}

/// The events to subscribe to: all (`*`) when none are named or `*` is
/// among them, else the names without repeats. Overlapping subscriptions
/// would deliver a message twice.
fn subscription_set(events: &[String]) -> Vec<String> {
    if events.is_empty() || events.iter().any(|e| e == ALL_EVENTS) {
        return vec![ALL_EVENTS.to_string()];
    }
    let mut out: Vec<String> = Vec::new();
    for e in events {
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    out
}

/// Where messages come from: one [`Subscription`] over every event asked
/// for, which keeps their order and holds the daemon back when stdout is
/// slow (nothing queues up without bound).
struct Source(Subscription);

impl Source {
    async fn open(client: &Client, events: &[String]) -> anyhow::Result<Source> {
        let sub = client.subscribe_many(events).await.with_context(|| {
            let names: Vec<String> = events.iter().map(|e| common::quote_name(e)).collect();
            format!("cannot subscribe to {}", names.join(", "))
        })?;
        Ok(Source(sub))
    }

    async fn next(&mut self) -> Option<Message> {
        self.0.recv().await
    }
}

/// One output line (without the newline). Fields are written in a fixed
/// order, so scripts and people can rely on it.
pub fn json_line(channel: &str, event: &str, payload: &[u8], origin: &str, seq: u64) -> String {
    let data = serde_json::from_slice::<Value>(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()));
    let s = |v: &str| Value::String(v.to_string());
    format!(
        "{{\"channel\":{},\"event\":{},\"data\":{},\"origin\":{},\"seq\":{}}}",
        s(channel),
        s(event),
        data,
        s(origin),
        seq
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lines_have_a_fixed_shape() {
        let l = json_line("A", "log", b"{\n \"a\": 1 }", "00000000000000ff:3", 7);
        assert_eq!(
            l,
            r#"{"channel":"A","event":"log","data":{"a":1},"origin":"00000000000000ff:3","seq":7}"#
        );
        let v: Value = serde_json::from_str(&json_line("A", "e\"v", b"not json", "o", 1)).unwrap();
        assert_eq!(v["data"], json!("not json"));
        assert_eq!(v["event"], json!("e\"v"));
        let v: Value = serde_json::from_str(&json_line("A", "b", b"\xff\n", "o", 1)).unwrap();
        assert_eq!(v["data"], json!("\u{fffd}\n"));
    }

    #[test]
    fn star_or_nothing_means_everything() {
        let s = |v: &[&str]| subscription_set(&v.iter().map(|e| e.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&[]), ["*"]);
        assert_eq!(s(&["log", "*"]), ["*"]);
        assert_eq!(s(&["log", "err", "log"]), ["log", "err"]);
    }
}
