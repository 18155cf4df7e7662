//! Dialing the daemon: connects to the channel's socket (naming the
//! channel and path in the error when it is missing, not running or not
//! ours to use), sends the Hello and waits for the Welcome, retrying a hello
//! that came so late the daemon took us for a seed client. Used for the
//! first connection and for every reconnect.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use netcluster_proto::frame::{self, Frame};

use super::{Stream, Welcome};
use crate::error::ConnectError;

/// How long the handshake may take.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects and shakes hands.
pub(super) async fn dial(
    path: &Path,
    channel: &str,
    name: &str,
    shm: bool,
) -> Result<(Stream, Welcome), ConnectError> {
    let mut attempts = 0;
    let (stream, result) = loop {
        let stream = connect(path, channel).await?;
        let result =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&stream, name, channel, shm)).await;
        attempts += 1;
        match result {
            // A very busy machine delayed our hello past the daemon's wait
            // for seed clients: a fresh connection fixes it.
            Ok(Err(HandshakeError::Late)) if attempts < 3 => continue,
            r => break (stream, r),
        }
    };
    let welcome = result
        .map_err(|_| ConnectError::Handshake {
            path: path.into(),
            reason: format!("no answer within {HANDSHAKE_TIMEOUT:?}"),
        })?
        .map_err(|e| match e {
            HandshakeError::Late => ConnectError::Handshake {
                path: path.into(),
                reason: "the daemon took this connection for a seed (JSON) client because the hello came late"
                    .into(),
            },
            HandshakeError::Refused(message) => ConnectError::Refused {
                channel: channel.into(),
                message,
            },
            HandshakeError::Other(reason) => ConnectError::Handshake {
                path: path.into(),
                reason,
            },
        })?;
    Ok((stream, welcome))
}

async fn connect(path: &Path, channel: &str) -> Result<Stream, ConnectError> {
    netcluster_local::connect(path)
        .await
        .map(Arc::new)
        .map_err(|e| match e.kind() {
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
                cause: e,
            },
        })
}

enum HandshakeError {
    Refused(String),
    /// The daemon decided we were a seed client before our hello arrived.
    Late,
    Other(String),
}

async fn handshake(
    stream: &Stream,
    name: &str,
    channel: &str,
    shm: bool,
) -> Result<Welcome, HandshakeError> {
    let other = |e: io::Error| HandshakeError::Other(e.to_string());
    let mut b = BytesMut::new();
    frame::encode_hello(&mut b, std::process::id(), name);
    if shm {
        frame::shm::set_flags(&mut b, 0, frame::shm::HELLO_SHM);
    }
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
                let flags = frame::shm::welcome_flags(&buf);
                return Ok(Welcome {
                    node,
                    client,
                    max_message: max_message as usize,
                    shm: shm && flags & frame::shm::WELCOME_SHM != 0,
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
            Err(frame::FrameError::UnknownType(b'{')) => return Err(HandshakeError::Late),
            Err(e) => return Err(HandshakeError::Other(format!("bad frame from server: {e}"))),
        }
        // Never read past the Welcome: the daemon may follow it at once
        // with a shared-memory pool frame whose descriptor only a
        // `recvmsg` that asks for it receives (a plain read would discard
        // it), and the reader task owns everything after the Welcome.
        let need = match buf.get(1..frame::HEADER_LEN) {
            Some(h) => {
                frame::HEADER_LEN + u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize
                    - buf.len()
            }
            None => frame::HEADER_LEN - buf.len(),
        };
        // A buffer whose spare room is exactly `need` (`zeroed` allocates
        // exactly; `read_buf` reads at most the spare room).
        let mut part = BytesMut::zeroed(need);
        part.clear();
        let n = stream.read_buf(&mut part).await.map_err(other)?;
        buf.extend_from_slice(&part[..n.min(need)]);
        if n == 0 {
            return Err(HandshakeError::Other(
                "the server closed the connection".into(),
            ));
        }
    }
}
