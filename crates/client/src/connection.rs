//! The connection: one socket, owned by a reader task and a writer task.
//!
//! Emitters encode frames straight into a shared output buffer under a
//! short lock and wake the writer only when the buffer was empty, so a
//! burst of emits leaves in one write. The reader decodes frames in
//! batches and dispatches deliveries to the listener table, and completes
//! pending requests, subscription acks and pings. When the connection ends
//! every pending operation fails with the reason.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use netcluster_proto::frame::{self, Frame, Status, FRAME_OVERHEAD, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};

use crate::error::ConnectError;
use crate::table::{Listeners, Sink};
use crate::Message;

/// How long the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes reserved per read.
const READ_CHUNK: usize = 256 * 1024;

#[cfg(unix)]
type Stream = tokio::net::UnixStream;
#[cfg(unix)]
type ReadHalf = tokio::net::unix::OwnedReadHalf;
#[cfg(unix)]
type WriteHalf = tokio::net::unix::OwnedWriteHalf;
#[cfg(not(unix))]
type Stream = tokio::net::TcpStream;
#[cfg(not(unix))]
type ReadHalf = tokio::net::tcp::OwnedReadHalf;
#[cfg(not(unix))]
type WriteHalf = tokio::net::tcp::OwnedWriteHalf;

/// The reply to a request: the JSON text of the result, or the error text.
pub type Reply = Result<Bytes, String>;

/// Operations waiting for an answer from the server.
#[derive(Default)]
pub struct Pending {
    pub requests: HashMap<u32, oneshot::Sender<Reply>>,
    pub acks: HashMap<u32, oneshot::Sender<Result<(), String>>>,
    pub pings: HashMap<u64, oneshot::Sender<()>>,
}

/// The output side shared by emitters and the writer.
pub struct Out {
    pub buf: BytesMut,
    /// Set once the connection is closed, with the reason.
    pub closed: Option<String>,
    /// The application asked to close after the buffer is written.
    pub closing: bool,
}

/// What the server told us in its Welcome.
#[derive(Debug, Clone, Copy)]
pub struct Welcome {
    pub node: u64,
    pub client: u64,
    pub max_message: usize,
}

/// State shared by the client handles and the connection's tasks.
pub struct Shared {
    pub channel: Arc<str>,
    pub path: PathBuf,
    pub welcome: Welcome,
    pub echo: bool,
    pub max_pending: usize,
    pub out: Mutex<Out>,
    /// Emitters waiting for room in `out`.
    pub space: Notify,
    /// Wakes the writer.
    pub wake: Notify,
    /// Notified when the writer has finished (socket shut down).
    pub writer_done: Notify,
    pub listeners: Listeners,
    pub pending: Mutex<Pending>,
    next_id: AtomicU32,
    next_listener: AtomicU64,
    /// Sequence of this client's own messages (for echo-to-self).
    pub seq: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn out(&self) -> MutexGuard<'_, Out> {
        lock(&self.out)
    }

    pub fn pending(&self) -> MutexGuard<'_, Pending> {
        lock(&self.pending)
    }

    /// A fresh non-zero id for requests, acks and pings.
    pub fn next_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    pub fn next_listener_id(&self) -> u64 {
        self.next_listener.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The reason the connection is closed, if it is.
    pub fn closed(&self) -> Option<String> {
        self.out().closed.clone()
    }

    /// Appends a frame with `encode`, waiting while the buffer is over
    /// `max_pending`. Fails if the connection is closed.
    pub async fn send(&self, encode: impl FnOnce(&mut BytesMut)) -> Result<(), String> {
        let mut encode = Some(encode);
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let mut out = self.out();
                if let Some(r) = &out.closed {
                    return Err(r.clone());
                }
                if out.buf.len() < self.max_pending {
                    let was_empty = out.buf.is_empty();
                    (encode.take().expect("called once"))(&mut out.buf);
                    drop(out);
                    if was_empty {
                        self.wake.notify_one();
                    }
                    return Ok(());
                }
            }
            space.await;
        }
    }

    /// Marks the connection closed and fails everything pending.
    pub fn close(&self, reason: &str) {
        {
            let mut out = self.out();
            if out.closed.is_some() {
                return;
            }
            out.closed = Some(reason.to_string());
        }
        tracing::debug!(channel = %self.channel, reason, "connection closed");
        let p = std::mem::take(&mut *self.pending());
        for (_, tx) in p.requests {
            let _ = tx.send(Err(format!("not connected: {reason}")));
        }
        for (_, tx) in p.acks {
            let _ = tx.send(Err(format!("not connected: {reason}")));
        }
        drop(p.pings);
        self.listeners.clear();
        self.space.notify_waiters();
        self.wake.notify_one();
    }
}

/// Options for a connection.
pub struct Options {
    pub name: String,
    pub echo: bool,
    pub max_pending: usize,
}

/// Connects, performs the handshake and starts the tasks.
pub async fn open(dir: &Path, channel: &str, opts: Options) -> Result<Arc<Shared>, ConnectError> {
    netcluster_proto::names::check_channel(channel)?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ConnectError::NoRuntime);
    }
    let path = dir.join(netcluster_proto::names::socket_file_name(channel));
    let mut stream = connect(&path, channel).await?;
    let welcome = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&mut stream, &opts.name, channel),
    )
    .await
    .map_err(|_| ConnectError::Handshake {
        path: path.clone(),
        reason: format!("no answer within {HANDSHAKE_TIMEOUT:?}"),
    })?
    .map_err(|e| match e {
        HandshakeError::Refused(message) => ConnectError::Refused {
            channel: channel.into(),
            message,
        },
        HandshakeError::Other(reason) => ConnectError::Handshake {
            path: path.clone(),
            reason,
        },
    })?;
    let (rd, wr) = stream.into_split();
    let shared = Arc::new(Shared {
        channel: channel.into(),
        path,
        welcome,
        echo: opts.echo,
        max_pending: opts.max_pending,
        out: Mutex::new(Out {
            buf: BytesMut::new(),
            closed: None,
            closing: false,
        }),
        space: Notify::new(),
        wake: Notify::new(),
        writer_done: Notify::new(),
        listeners: Listeners::default(),
        pending: Mutex::new(Pending::default()),
        next_id: AtomicU32::new(1),
        next_listener: AtomicU64::new(0),
        seq: AtomicU64::new(0),
    });
    tokio::spawn(writer(shared.clone(), wr));
    tokio::spawn(reader(shared.clone(), rd));
    Ok(shared)
}

#[cfg(unix)]
async fn connect(path: &Path, channel: &str) -> Result<Stream, ConnectError> {
    Stream::connect(path).await.map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ConnectError::NoSuchChannel {
            channel: channel.into(),
            path: path.into(),
        },
        io::ErrorKind::ConnectionRefused => ConnectError::NotRunning {
            channel: channel.into(),
            path: path.into(),
        },
        io::ErrorKind::PermissionDenied => ConnectError::PermissionDenied {
            channel: channel.into(),
            path: path.into(),
        },
        _ => ConnectError::Io {
            path: path.into(),
            source: e,
        },
    })
}

#[cfg(not(unix))]
async fn connect(path: &Path, _channel: &str) -> Result<Stream, ConnectError> {
    Err(ConnectError::Io {
        path: path.into(),
        source: io::Error::new(
            io::ErrorKind::Unsupported,
            "local channels are not supported on this platform yet",
        ),
    })
}

enum HandshakeError {
    Refused(String),
    Other(String),
}

async fn handshake(
    stream: &mut Stream,
    name: &str,
    channel: &str,
) -> Result<Welcome, HandshakeError> {
    let other = |e: io::Error| HandshakeError::Other(e.to_string());
    let mut b = BytesMut::new();
    frame::encode_hello(&mut b, std::process::id(), name);
    stream.write_all(&b).await.map_err(other)?;
    let mut buf = BytesMut::with_capacity(512);
    loop {
        match frame::decode(&buf, 64 * 1024) {
            Ok(Some((
                Frame::Welcome {
                    node,
                    client,
                    max_message,
                    channel: ch,
                    ..
                },
                _,
            ))) => {
                if ch != channel {
                    return Err(HandshakeError::Other(format!(
                        "server says this is channel {ch:?}, expected {channel:?}"
                    )));
                }
                return Ok(Welcome {
                    node,
                    client,
                    max_message: max_message as usize,
                });
            }
            Ok(Some((Frame::Error { message, .. }, _))) => {
                return Err(HandshakeError::Refused(message.to_string()))
            }
            Ok(Some((f, _))) => {
                return Err(HandshakeError::Other(format!(
                    "unexpected first frame from server: {f:?}"
                )))
            }
            Ok(None) => {}
            Err(frame::FrameError::UnknownType(b'{')) => {
                return Err(HandshakeError::Other(
                    "the daemon took this connection for a seed (JSON) client because the hello came late; retry".into(),
                ))
            }
            Err(e) => return Err(HandshakeError::Other(format!("bad frame from server: {e}"))),
        }
        if stream.read_buf(&mut buf).await.map_err(other)? == 0 {
            return Err(HandshakeError::Other(
                "the server closed the connection".into(),
            ));
        }
    }
}

async fn writer(shared: Arc<Shared>, mut wr: WriteHalf) {
    let mut spare = BytesMut::new();
    loop {
        let batch = {
            let mut out = shared.out();
            if out.closed.is_some() {
                break;
            }
            if out.buf.is_empty() {
                if out.closing {
                    break;
                }
                None
            } else {
                Some(std::mem::replace(&mut out.buf, std::mem::take(&mut spare)))
            }
        };
        match batch {
            None => shared.wake.notified().await,
            Some(mut batch) => {
                shared.space.notify_waiters();
                if let Err(e) = wr.write_all(&batch).await {
                    shared.close(&format!("write failed: {e}"));
                    break;
                }
                batch.clear();
                if batch.capacity() <= 4 * READ_CHUNK {
                    spare = batch;
                }
            }
        }
    }
    let _ = wr.shutdown().await;
    shared.writer_done.notify_waiters();
}

async fn reader(shared: Arc<Shared>, mut rd: ReadHalf) {
    let reason = read_loop(&shared, &mut rd).await;
    shared.close(&reason);
}

async fn read_loop(shared: &Arc<Shared>, rd: &mut ReadHalf) -> String {
    let max_body = shared.welcome.max_message + FRAME_OVERHEAD;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut removals: Vec<u64> = Vec::new();
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_CHUNK);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => return "the server closed the connection".into(),
            Ok(_) => {}
            Err(e) => return format!("read failed: {e}"),
        }
        // Split off the complete frames as one shared buffer; messages
        // point into it.
        let mut complete = 0;
        while buf.len() - complete >= HEADER_LEN {
            let h = &buf[complete..];
            let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
            if len > max_body {
                return format!("the server sent a frame of {len} bytes, over the limit");
            }
            if buf.len() - complete < HEADER_LEN + len {
                break;
            }
            complete += HEADER_LEN + len;
        }
        if complete == 0 {
            continue;
        }
        let chunk = buf.split_to(complete).freeze();
        let table = shared.listeners.snapshot();
        let mut off = 0;
        while off < chunk.len() {
            let (f, n) = match frame::decode(&chunk[off..], max_body) {
                Ok(Some(x)) => x,
                Ok(None) => unreachable!("complete frames were measured"),
                Err(e) => return format!("bad frame from server: {e}"),
            };
            off += n;
            match f {
                Frame::Deliver(d) => {
                    if !table.wants(d.event) {
                        continue;
                    }
                    let msg =
                        Message::from_deliver(&chunk, &d, &shared.channel, shared.welcome.node);
                    dispatch(&table, &msg, &mut removals).await;
                }
                Frame::Response {
                    id,
                    status,
                    payload,
                } => {
                    let tx = shared.pending().requests.remove(&id);
                    if let Some(tx) = tx {
                        let reply = match status {
                            Status::Ok => Ok(chunk.slice_ref(payload)),
                            Status::Failed => Err(error_text(payload)),
                        };
                        let _ = tx.send(reply);
                    }
                }
                Frame::Ack(id) => {
                    if let Some(tx) = shared.pending().acks.remove(&id) {
                        let _ = tx.send(Ok(()));
                    }
                }
                Frame::Pong(token) => {
                    if let Some(tx) = shared.pending().pings.remove(&token) {
                        let _ = tx.send(());
                    }
                }
                Frame::Ping(token) => {
                    let _ = shared.send(|b| frame::encode_ping(b, false, token)).await;
                }
                Frame::Error {
                    message,
                    fatal: true,
                    ..
                } => return message.to_string(),
                Frame::Error { id, message, .. } => {
                    let tx = shared.pending().acks.remove(&id);
                    match tx {
                        Some(tx) => {
                            let _ = tx.send(Err(message.to_string()));
                        }
                        None => {
                            tracing::warn!(channel = %shared.channel, "server reported: {message}")
                        }
                    }
                }
                other => return format!("unexpected frame from server: {other:?}"),
            }
        }
        for id in removals.drain(..) {
            crate::client::remove_listener_id(shared, id);
        }
    }
}

/// Hands a message to every listener of its event.
pub async fn dispatch(table: &crate::table::Table, msg: &Message, removals: &mut Vec<u64>) {
    for e in table.matching(msg.event()) {
        if !e.claim() {
            continue;
        }
        if e.fired.is_some() {
            removals.push(e.id);
        }
        match &e.sink {
            Sink::Handler(h) => h(msg),
            Sink::Stream(tx) => match tx.try_send(msg.clone()) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(m)) => {
                    // Lossless: wait for the application to catch up; the
                    // daemon applies backpressure meanwhile.
                    if tx.send(m).await.is_err() {
                        removals.push(e.id);
                    }
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => removals.push(e.id),
            },
        }
    }
}

fn error_text(payload: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(v) => match v.get("error").and_then(|e| e.as_str()) {
            Some(s) => s.to_string(),
            None => v.to_string(),
        },
        Err(_) => String::from_utf8_lossy(payload).into_owned(),
    }
}
