//! The HTTP endpoint (config key `http`): `GET /metrics`, `/healthz` and
//! `/api/status` for monitoring, and the live dashboard (`GET /` and its
//! event streams, see `dashboard`), over a minimal HTTP/1.1 server.
//!
//! It runs on the daemon's own thread, as tasks beside the channel
//! listeners: the hub's state is single-threaded (`Rc`, `Cell`), so a
//! handler reads it directly at request time, and the message path does
//! no HTTP work and takes no lock for it. What a request costs the daemon
//! is bounded: at most [`MAX_CONNECTIONS`] at once (more are closed at
//! accept), [`MAX_REQUEST_BYTES`] of request head read within
//! [`REQUEST_TIMEOUT`], one response written within [`WRITE_TIMEOUT`],
//! then the connection is closed; building a response is one pass over
//! the channels and clients, as a control `status()` request is.
//!
//! This module owns the listener and connections; `request` parses
//! requests and writes responses, `routes` maps paths to handlers (add a
//! route there), `metrics` samples the hub into Prometheus text. The
//! dashboard's paths are handed to `dashboard`, which writes its own
//! responses: its event streams stay open (under its own write timeout)
//! instead of the one response of the other routes.

pub mod dashboard;
mod metrics;
mod request;
mod routes;

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::hub::Hub;
use crate::stats::HttpHandle;

/// Connections served at once; more are closed as soon as accepted.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its whole request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) read.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Binds `addr` and serves it until the returned handle is dropped.
pub fn start(hub: &Rc<Hub>, addr: SocketAddr) -> io::Result<HttpHandle> {
    // Bound synchronously, so that a bad or busy address is an error of the
    // start or reload that asked for it.
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let listener = TcpListener::from_std(std_listener)?;
    let task = tokio::task::spawn_local(accept_loop(Rc::downgrade(hub), listener));
    tracing::info!(addr = %local, "HTTP endpoint listening (/metrics, /healthz, /api/status)");
    Ok(HttpHandle {
        configured: addr,
        task: task.abort_handle(),
    })
}

/// Decrements the connection count when a connection's task ends, however
/// it ends (including abort at shutdown).
struct Slot(Rc<Cell<usize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

async fn accept_loop(hub: std::rc::Weak<Hub>, listener: TcpListener) {
    let active = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off, don't spin.
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if active.get() >= MAX_CONNECTIONS {
            tracing::debug!("HTTP connection refused: {MAX_CONNECTIONS} already open");
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

/// One request, one response, then close.
async fn serve(hub: &Hub, mut stream: tokio::net::TcpStream) {
    let response = match tokio::time::timeout(
        REQUEST_TIMEOUT,
        request::read(&mut stream, MAX_REQUEST_BYTES),
    )
    .await
    {
        Ok(Ok(req)) if dashboard::owns(&req.path) => {
            let dash = dashboard::DashRequest {
                method: &req.method,
                path: &req.path,
                query: &req.query,
                authorization: req.authorization.as_deref(),
            };
            return dashboard::serve(hub, &dash, &mut stream).await;
        }
        Ok(Ok(req)) => routes::handle(hub, &req),
        Ok(Err(request::ReadError::Io(_))) => return,
        Ok(Err(e)) => request::Response::text(e.status(), &format!("{e}\n")),
        Err(_) => request::Response::text(408, "request head not received in time\n"),
    };
    let bytes = response.to_bytes();
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
}
