//! The local listener: one socket per channel, behind a small platform
//! abstraction. On Unix it is a Unix domain socket file at
//! `{socketdir}/netcluster-{channel}`; on Windows it is the named pipe
//! `\\.\pipe\netcluster-{channel}` (see `crate::pipe`; the socket
//! directory plays no part there).
//!
//! This module owns binding (with stale-socket replacement and live-daemon
//! detection), permissions, peer credentials and removal of the socket file
//! when the listener is dropped.

#[cfg(not(windows))]
use std::io;
#[cfg(not(windows))]
use std::path::{Path, PathBuf};

#[cfg(not(windows))]
use netcluster_proto::names;

#[cfg(not(windows))]
use crate::LocalStream;

pub use crate::endpoint::{channel_path, BindError, PeerInfo};

#[cfg(unix)]
pub use unix::{group_id, LocalListener};

#[cfg(windows)]
pub use crate::pipe::listener::{group_id, LocalListener};

#[cfg(not(any(unix, windows)))]
pub use unsupported::{group_id, LocalListener};

#[cfg(unix)]
mod unix {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    /// `sun_path` holds 108 bytes including the terminating NUL on Linux.
    const MAX_PATH: usize = 107;

    /// A bound channel socket. Dropping it removes the socket file, if it is
    /// still the one this listener created.
    #[derive(Debug)]
    pub struct LocalListener {
        inner: tokio::net::UnixListener,
        path: PathBuf,
        ino: (u64, u64),
    }

    /// Names the process accepting on the other end of `s`: its pid from
    /// the socket's peer credentials and its command name, so that "socket
    /// in use" says what to stop.
    #[cfg(target_os = "linux")]
    fn holder(s: &std::os::unix::net::UnixStream) -> String {
        use std::os::fd::AsRawFd;
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: the fd is open for the duration of the call (borrowed
        // from `s`), and `cred`/`len` are valid for writes of `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                std::ptr::addr_of_mut!(cred).cast(),
                &mut len,
            )
        };
        if rc != 0 || cred.pid <= 0 {
            return "a process".into();
        }
        match std::fs::read_to_string(format!("/proc/{}/comm", cred.pid)) {
            Ok(name) => format!("process {} ({})", cred.pid, name.trim_end()),
            Err(_) => format!("process {}", cred.pid),
        }
    }

    /// Other Unix systems: the peer's pid is not portable to get.
    #[cfg(not(target_os = "linux"))]
    fn holder(_: &std::os::unix::net::UnixStream) -> String {
        "a process".into()
    }

    impl LocalListener {
        /// What [`LocalListener::bind`] checks before touching the file
        /// system: the channel name and that the socket path fits a
        /// `sockaddr_un`. Returns the path. (`ncserver --check` runs it for
        /// every channel.)
        pub fn check(dir: &Path, channel: &str) -> Result<PathBuf, BindError> {
            names::check_channel(channel)?;
            let path = channel_path(dir, channel);
            let len = path.as_os_str().len();
            if len > MAX_PATH {
                return Err(BindError::PathTooLong {
                    channel: channel.into(),
                    path,
                    len,
                    max: MAX_PATH,
                });
            }
            Ok(path)
        }

        /// Binds `{dir}/netcluster-{channel}` with the given file mode and
        /// group, replacing a stale socket left by a dead daemon. Must be
        /// called inside a tokio runtime.
        pub fn bind(
            dir: &Path,
            channel: &str,
            mode: u32,
            group: Option<u32>,
        ) -> Result<Self, BindError> {
            let path = Self::check(dir, channel)?;
            let io_err = |cause| BindError::Io {
                channel: channel.into(),
                path: path.clone(),
                cause,
            };
            std::fs::create_dir_all(dir).map_err(io_err)?;
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_socket() => {
                    match std::os::unix::net::UnixStream::connect(&path) {
                        Ok(s) => {
                            return Err(BindError::InUse {
                                channel: channel.into(),
                                path,
                                holder: holder(&s),
                            })
                        }
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                            tracing::info!(path = %path.display(), "replacing stale socket left by a stopped daemon");
                            std::fs::remove_file(&path).map_err(io_err)?;
                        }
                        Err(e) => return Err(io_err(e)),
                    }
                }
                Ok(_) => {
                    return Err(BindError::NotASocket {
                        channel: channel.into(),
                        path,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(e)),
            }
            let inner = tokio::net::UnixListener::bind(&path).map_err(io_err)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(io_err)?;
            if let Some(gid) = group {
                std::os::unix::fs::chown(&path, None, Some(gid)).map_err(io_err)?;
            }
            let meta = std::fs::symlink_metadata(&path).map_err(io_err)?;
            Ok(LocalListener {
                inner,
                path,
                ino: (meta.dev(), meta.ino()),
            })
        }

        /// Waits for the next client.
        pub async fn accept(&self) -> io::Result<(LocalStream, PeerInfo)> {
            let (stream, _) = self.inner.accept().await?;
            let peer = match stream.peer_cred() {
                Ok(c) => PeerInfo {
                    uid: Some(c.uid()),
                    gid: Some(c.gid()),
                    pid: c.pid(),
                },
                Err(_) => PeerInfo::default(),
            };
            Ok((LocalStream::from_tokio(stream)?, peer))
        }

        /// The socket path.
        pub fn path(&self) -> &Path {
            &self.path
        }
    }

    /// The numeric id of the group called `name`.
    pub fn group_id(name: &str) -> Result<u32, BindError> {
        let unknown = || BindError::UnknownGroup {
            name: name.to_string(),
        };
        let cname = std::ffi::CString::new(name).map_err(|_| unknown())?;
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        // SAFETY: an all-zero `group` is a valid value for getgrnam_r to fill.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the duration of the call and
        // `buf` is as long as we say; getgrnam_r is thread-safe.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc != 0 || result.is_null() {
            return Err(unknown());
        }
        Ok(grp.gr_gid)
    }

    impl LocalListener {
        /// Removes the socket file now (new clients get "no channel"), if
        /// it is still the one this listener created: a newer daemon may
        /// have replaced it after this one was declared stale.
        pub fn unlink(&self) {
            if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
                if (meta.dev(), meta.ino()) == self.ino {
                    let _ = std::fs::remove_file(&self.path);
                }
            }
        }
    }

    impl Drop for LocalListener {
        fn drop(&mut self) {
            self.unlink();
        }
    }
}

#[cfg(not(any(unix, windows)))]
mod unsupported {
    use super::*;

    /// Placeholder: binding always fails with [`BindError::Unsupported`].
    #[derive(Debug)]
    pub struct LocalListener {
        path: PathBuf,
    }

    /// Group names mean nothing here.
    pub fn group_id(name: &str) -> Result<u32, BindError> {
        Err(BindError::UnknownGroup {
            name: name.to_string(),
        })
    }

    impl LocalListener {
        /// Always fails on this platform.
        pub fn check(_dir: &Path, channel: &str) -> Result<PathBuf, BindError> {
            names::check_channel(channel)?;
            Err(BindError::Unsupported {
                channel: channel.into(),
            })
        }

        /// Always fails on this platform.
        pub fn bind(
            _dir: &Path,
            channel: &str,
            _mode: u32,
            _group: Option<u32>,
        ) -> Result<Self, BindError> {
            names::check_channel(channel)?;
            Err(BindError::Unsupported {
                channel: channel.into(),
            })
        }

        /// Never returns a client.
        pub async fn accept(&self) -> io::Result<(LocalStream, PeerInfo)> {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "local channels are not supported on this platform yet",
            ))
        }

        /// The path.
        pub fn path(&self) -> &Path {
            &self.path
        }

        /// Nothing to remove on this platform.
        pub fn unlink(&self) {}
    }
}
