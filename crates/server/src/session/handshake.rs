//! The handshake of a new connection: learns its dialect from the first
//! byte (`{` starts the seed's JSON packets, anything else must be a native
//! Hello frame) or from silence (a seed client that only listens), with the
//! client's name and pid. Bytes read past the Hello stay in `pending` for
//! the read loop. Admission (channel, access, registration) is the parent's.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use netcluster_local::LocalStream;
use netcluster_proto::frame::{self, ErrorCode, Frame};

use crate::conn::Dialect;

/// How long a new connection may take to say hello.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A new connection that sends nothing for this long is taken for a seed
/// client that only listens (native clients send their hello at once).
pub(super) const LEGACY_SILENCE: Duration = Duration::from_millis(500);

/// What the handshake learned.
pub(super) struct Hello {
    pub(super) dialect: Dialect,
    pub(super) name: String,
    pub(super) pid: u32,
    /// The Hello's flags (`frame::shm::HELLO_SHM`).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(super) flags: u16,
}

/// Why a handshake failed.
pub(super) struct Refusal {
    pub(super) code: ErrorCode,
    pub(super) message: String,
}

/// Reads until the client's dialect is known (see the module doc).
pub(super) async fn handshake(
    stream: &LocalStream,
    pending: &mut BytesMut,
) -> Result<Hello, Refusal> {
    let io = |e: io::Error| Refusal {
        code: ErrorCode::BadFrame,
        message: e.to_string(),
    };
    loop {
        if pending.first() == Some(&b'{') {
            return Ok(Hello {
                dialect: Dialect::Legacy,
                name: "legacy".into(),
                pid: 0,
                flags: 0,
            });
        }
        match frame::decode(pending, 4096) {
            Ok(Some((Frame::Hello { version, pid, name }, n))) => {
                if version < 1 {
                    return Err(Refusal {
                        code: ErrorCode::Version,
                        message: format!(
                            "protocol version {version} is not supported; this server speaks {}",
                            frame::VERSION
                        ),
                    });
                }
                let hello = Hello {
                    dialect: Dialect::Native,
                    name: name.to_string(),
                    pid,
                    flags: frame::shm::hello_flags(pending),
                };
                pending.advance(n);
                return Ok(hello);
            }
            Ok(Some(_)) => {
                return Err(Refusal {
                    code: ErrorCode::BadFrame,
                    message: "expected a hello frame first".into(),
                });
            }
            Ok(None) => {}
            Err(e) => {
                return Err(Refusal {
                    code: ErrorCode::BadFrame,
                    message: format!("{e}; is this a netcluster client?"),
                })
            }
        }
        if pending.is_empty() {
            // The seed's clients may connect and only listen, never sending
            // a byte; native clients send their hello at once. Silence
            // therefore means a legacy client.
            match tokio::time::timeout(LEGACY_SILENCE, stream.readable()).await {
                Err(_) => {
                    return Ok(Hello {
                        dialect: Dialect::Legacy,
                        name: "legacy".into(),
                        pid: 0,
                        flags: 0,
                    })
                }
                Ok(r) => r.map_err(io)?,
            }
        } else {
            stream.readable().await.map_err(io)?;
        }
        pending.reserve(4096);
        match stream.try_read_buf(pending) {
            Ok(0) => {
                return Err(Refusal {
                    code: ErrorCode::BadFrame,
                    message: "closed before hello".into(),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(io(e)),
        }
    }
}
