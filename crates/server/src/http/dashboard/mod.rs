//! The live dashboard: a page at `GET /` and the two event streams it reads.
//!
//! This module owns the dashboard's routes: the page itself (`/`,
//! `/app.js`, `/app.css`, `/favicon.svg`: hand-written files embedded in the binary), the
//! snapshot stream `GET /api/events` (Server-Sent Events, one JSON
//! snapshot a second, see `snapshot`) and the live tail `GET
//! /api/tail?channel=C&event=E` (one event per message of channel C, only
//! with `http.tail`), and the bearer-token check of every `/api/` route
//! ([`authorized`]). The page shell carries no data, so it is served
//! without the token: it is what asks for it.
//!
//! The dashboard never slows the message path. A snapshot is built by the
//! page's own task, once a second, only while the page is connected; the
//! tail is fed by a tap the hub checks with one flag (`crate::tap`), into a
//! bounded queue. A page that does not take what is written to it within
//! [`STREAM_WRITE_TIMEOUT`] is dropped: all that is held for it is the
//! kernel's socket buffer and one batch.

mod snapshot;

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::hub::{origin_string, Hub};
use crate::timefmt::rfc3339;

/// How often a connected page gets a snapshot.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);
/// A page that has not taken a write within this time is dropped.
pub const STREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle tail sends a comment this often (to notice a page that left).
pub const TAIL_KEEPALIVE: Duration = Duration::from_secs(15);
/// Longest event name accepted in a tail filter, in bytes.
pub const MAX_TAIL_EVENT: usize = 255;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const FAVICON: &str = include_str!("favicon.svg");

/// The page may load its own script and style and talk to its own origin,
/// nothing else (no inline script, no third party, no framing).
const CSP: &str = "Content-Security-Policy: default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// What the dashboard needs of a request.
#[derive(Debug, Clone, Copy)]
pub struct DashRequest<'a> {
    /// `GET`, `HEAD`, …
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The query string, without `?` (empty when none).
    pub query: &'a str,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
}

/// True for the paths this module answers.
pub fn owns(path: &str) -> bool {
    matches!(
        path,
        "/" | "/index.html" | "/app.js" | "/app.css" | "/favicon.svg" | "/api/events" | "/api/tail"
    )
}

/// True when `authorization` carries the configured bearer token, or when
/// no token is configured. The comparison takes the same time wherever the
/// first difference is.
pub fn authorized(hub: &Hub, authorization: Option<&str>) -> bool {
    let cfg = hub.config();
    let Some(want) = cfg.http.as_ref().and_then(|h| h.token.as_deref()) else {
        return true;
    };
    let Some(got) = authorization.and_then(|a| {
        let (scheme, rest) = a.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    }) else {
        return false;
    };
    got.len() == want.len()
        && got
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Answers a dashboard request on `out`: a file in one response, or an
/// event stream until the page goes away or stops reading.
pub async fn serve<W: AsyncWrite + Unpin>(hub: &Hub, req: &DashRequest<'_>, out: &mut W) {
    let head_only = match req.method {
        "GET" => false,
        "HEAD" if !req.path.starts_with("/api/") => true,
        _ => {
            let r = plain(405, "only GET is served here\n", &["Allow: GET"]);
            return send(out, &r).await;
        }
    };
    let file = |ctype: &str, body: &str| {
        let mut r = head(200, ctype, Some(body.len()), &[CSP]);
        if !head_only {
            r.extend_from_slice(body.as_bytes());
        }
        r
    };
    let response = match req.path {
        "/" | "/index.html" => file("text/html; charset=utf-8", INDEX_HTML),
        "/app.js" => file("text/javascript; charset=utf-8", APP_JS),
        "/app.css" => file("text/css; charset=utf-8", APP_CSS),
        "/favicon.svg" => file("image/svg+xml", FAVICON),
        _ if !authorized(hub, req.authorization) => plain(
            401,
            "a bearer token is required (Authorization: Bearer <http.token>)\n",
            &["WWW-Authenticate: Bearer realm=\"netcluster\""],
        ),
        "/api/events" => return events(hub, req, out).await,
        "/api/tail" => return tail(hub, req, out).await,
        _ => plain(404, "no such page\n", &[]),
    };
    send(out, &response).await
}

/// `GET /api/events`: a snapshot now and every [`SNAPSHOT_INTERVAL`].
async fn events<W: AsyncWrite + Unpin>(hub: &Hub, req: &DashRequest<'_>, out: &mut W) {
    if !write(out, &stream_head()).await {
        return;
    }
    let mut tick = tokio::time::interval(SNAPSHOT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // A reload may have changed the token: streams obey the new one.
        if !authorized(hub, req.authorization) {
            return;
        }
        let snap = snapshot::build(hub);
        let frame = format!("event: snapshot\ndata: {snap}\n\n");
        if !write(out, frame.as_bytes()).await {
            return;
        }
    }
}

/// `GET /api/tail?channel=C[&event=E]`: the messages routed on C (emitted
/// by its clients or received for it from the network), cut to
/// `tap::TAP_PAYLOAD` bytes, as they pass.
async fn tail<W: AsyncWrite + Unpin>(hub: &Hub, req: &DashRequest<'_>, out: &mut W) {
    let refuse = |status, msg: String| plain(status, &(msg + "\n"), &[]);
    let cfg = hub.config();
    if !cfg.http.as_ref().is_some_and(|h| h.tail) {
        let r = refuse(
            403,
            "the live tail is off: it shows payloads; set \"tail\": true in the config's \"http\" object".into(),
        );
        return send(out, &r).await;
    }
    let Some(channel) = query_param(req.query, "channel").filter(|c| !c.is_empty()) else {
        return send(
            out,
            &refuse(400, "give the channel: /api/tail?channel=NAME".into()),
        )
        .await;
    };
    if cfg.channel(&channel).is_none() {
        let names: Vec<&str> = cfg.channels.iter().map(|c| c.name.as_str()).collect();
        let msg = format!(
            "no channel named {channel:?}; channels are: {}",
            names.join(", ")
        );
        return send(out, &refuse(404, msg)).await;
    }
    let event = query_param(req.query, "event").filter(|e| !e.is_empty());
    if event.as_ref().is_some_and(|e| e.len() > MAX_TAIL_EVENT) {
        let msg = format!("the event filter is longer than {MAX_TAIL_EVENT} bytes");
        return send(out, &refuse(400, msg)).await;
    }
    drop(cfg);
    let Some(guard) = hub.taps.open(&channel, event) else {
        let msg = format!(
            "{} tails are open already; close one first",
            crate::tap::MAX_TAPS
        );
        return send(out, &refuse(503, msg)).await;
    };
    let mut first = stream_head();
    first.extend_from_slice(format!(": tail of {channel:?}\n\n").as_bytes());
    if !write(out, &first).await {
        return;
    }
    let tap = guard.tap();
    loop {
        let woke = tokio::time::timeout(TAIL_KEEPALIVE, tap.notify.notified()).await;
        // The tail ends when a reload turns it off, changes the token or
        // removes the channel.
        let cfg = hub.config();
        if !cfg.http.as_ref().is_some_and(|h| h.tail)
            || !authorized(hub, req.authorization)
            || cfg.channel(&channel).is_none()
        {
            return;
        }
        let mut batch = String::new();
        if woke.is_err() {
            batch.push_str(": keepalive\n\n");
        }
        let (msgs, dropped) = tap.take();
        for m in msgs {
            let line = json!({
                "time": rfc3339(m.time),
                "channel": channel,
                "event": m.event,
                "origin": origin_string(m.node, m.client),
                "seq": m.seq,
                "size": m.size,
                "payload": String::from_utf8_lossy(&m.payload),
                "truncated": m.size > m.payload.len(),
            });
            let _ = write!(batch, "event: message\ndata: {line}\n\n");
        }
        if dropped > 0 {
            let _ = write!(batch, "event: dropped\ndata: {{\"dropped\":{dropped}}}\n\n");
        }
        if !batch.is_empty() && !write(out, batch.as_bytes()).await {
            return;
        }
    }
}

/// The head of an event stream (no length: it ends when the connection does).
fn stream_head() -> Vec<u8> {
    head(200, "text/event-stream; charset=utf-8", None, &[])
}

/// A status line and headers; `len` is the body's length if known.
fn head(status: u16, ctype: &str, len: Option<usize>, extra: &[&str]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut h = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n"
    );
    if let Some(n) = len {
        let _ = write!(h, "Content-Length: {n}\r\n");
    }
    for e in extra {
        h.push_str(e);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// A complete plain-text response.
fn plain(status: u16, body: &str, extra: &[&str]) -> Vec<u8> {
    let mut r = head(status, "text/plain; charset=utf-8", Some(body.len()), extra);
    r.extend_from_slice(body.as_bytes());
    r
}

/// Writes `bytes` within [`STREAM_WRITE_TIMEOUT`]; false if the page is gone
/// or does not read.
async fn write<W: AsyncWrite + Unpin>(out: &mut W, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(STREAM_WRITE_TIMEOUT, async {
            out.write_all(bytes).await?;
            out.flush().await
        })
        .await,
        Ok(Ok(()))
    )
}

/// Writes a whole response, then closes the writing side.
async fn send<W: AsyncWrite + Unpin>(out: &mut W, bytes: &[u8]) {
    if write(out, bytes).await {
        let _ = tokio::time::timeout(STREAM_WRITE_TIMEOUT, out.shutdown()).await;
    }
}

/// The first value of `name` in a query string, percent-decoded (`+` is a
/// space); invalid escapes are kept as written.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let q = "channel=A%2Fb&event=a+b%21&x";
        assert_eq!(query_param(q, "channel").as_deref(), Some("A/b"));
        assert_eq!(query_param(q, "event").as_deref(), Some("a b!"));
        assert_eq!(query_param(q, "x").as_deref(), Some(""));
        assert_eq!(query_param(q, "y"), None);
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%c3%a9"), "é");
    }

    #[test]
    fn embedded_files_reference_each_other() {
        assert!(INDEX_HTML.contains("app.js") && INDEX_HTML.contains("app.css"));
        // The CSP forbids inline script and style: the files must not need them.
        assert!(!INDEX_HTML.contains("<script>") && !INDEX_HTML.contains("style="));
        assert!(!APP_JS.contains("style:") && !APP_JS.contains(".style"));
        assert!(
            !APP_JS.contains("innerHTML"),
            "data is inserted as text only"
        );
    }
}
