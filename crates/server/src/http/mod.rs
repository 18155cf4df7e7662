//! The HTTP endpoint (config key `http`): a minimal HTTP/1.1 server on the
//! daemon's thread that serves the dashboard (`dashboard`).
//!
//! Interim glue until the operations endpoint (`/metrics`, `/healthz`,
//! `/api/status`) lands: one request per connection, at most
//! [`MAX_CONNECTIONS`] at once, [`MAX_REQUEST_BYTES`] of head read within
//! [`REQUEST_TIMEOUT`]. Handlers read the hub directly (it is
//! single-threaded); the message path does no HTTP work.

pub mod dashboard;

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::hub::Hub;

/// Connections served at once; more are closed as soon as accepted.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its whole request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// The running endpoint; dropping it stops accepting.
pub struct HttpHandle {
    task: tokio::task::AbortHandle,
}

impl Drop for HttpHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` (synchronously, so a busy address fails the start) and
/// serves it until the handle is dropped.
pub fn start(hub: &Rc<Hub>, addr: SocketAddr) -> io::Result<HttpHandle> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let listener = TcpListener::from_std(std_listener)?;
    let task = tokio::task::spawn_local(accept_loop(Rc::downgrade(hub), listener));
    tracing::info!(addr = %local, "HTTP endpoint listening (dashboard at /)");
    Ok(HttpHandle {
        task: task.abort_handle(),
    })
}

struct Slot(Rc<Cell<usize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

async fn accept_loop(hub: Weak<Hub>, listener: TcpListener) {
    let active = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if active.get() >= MAX_CONNECTIONS {
            continue;
        }
        let Some(hub) = hub.upgrade() else { return };
        active.set(active.get() + 1);
        let slot = Slot(active.clone());
        tokio::task::spawn_local(async move {
            let _slot = slot;
            serve(&hub, stream).await;
        });
    }
}

async fn serve(hub: &Hub, mut stream: TcpStream) {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(h)) => h,
        _ => return,
    };
    let Some((method, target, authorization)) = parse(&head) else {
        let _ = stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        return;
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if dashboard::owns(path) {
        let req = dashboard::DashRequest {
            method,
            path,
            query,
            authorization,
        };
        dashboard::serve(hub, &req, &mut stream).await;
    } else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
    }
}

async fn read_head(s: &mut TcpStream) -> io::Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(i);
            return String::from_utf8(buf).map_err(|_| io::ErrorKind::InvalidData.into());
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
}

/// Method, target and `Authorization` of a request head.
fn parse(head: &str) -> Option<(&str, &str, Option<&str>)> {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return None;
    }
    let auth = lines.find_map(|h| {
        let (n, v) = h.split_once(':')?;
        n.eq_ignore_ascii_case("authorization").then(|| v.trim())
    });
    Some((method, target, auth))
}
