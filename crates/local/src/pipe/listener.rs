//! The channel listener on Windows: the named pipe
//! `\\.\pipe\netcluster-{channel}`, always with one instance waiting for
//! the next client.
//!
//! A pipe instance serves one client, so the listener creates the next
//! instance as soon as a client connects and before handing the connected
//! one to the daemon: clients arriving in a burst find the pipe busy for a
//! moment at most (and `connect` retries on busy) instead of finding no
//! pipe at all.

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use netcluster_proto::names;
use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use windows_sys::Win32::Foundation::{ERROR_NO_DATA, ERROR_PIPE_BUSY};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::System::Pipes::GetNamedPipeClientProcessId;

use super::security::{dacl_of, Descriptor};
use crate::endpoint::{channel_path, BindError, PeerInfo};
use crate::LocalStream;

/// Longest pipe name Windows accepts, in UTF-16 units, `\\.\pipe\` included.
const MAX_PIPE_NAME: usize = 256;

/// A served channel pipe. Dropping it (or [`LocalListener::unlink`])
/// closes the waiting instance; connected clients keep their instances.
#[derive(Debug)]
pub struct LocalListener {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The instance waiting for the next client (`None` while `accept`
    /// holds it, or after a failure to create one).
    pending: Option<NamedPipeServer>,
    /// Security of every new instance.
    security: Descriptor,
    /// `unlink` was called: accept no more clients.
    closed: bool,
}

impl LocalListener {
    /// What [`LocalListener::bind`] checks before creating anything: the
    /// channel name and the pipe name's length. Returns the pipe's path.
    /// (`ncserver --check` runs it for every channel.)
    pub fn check(dir: &Path, channel: &str) -> Result<PathBuf, BindError> {
        names::check_channel(channel)?;
        let path = channel_path(dir, channel);
        let len = path.as_os_str().encode_wide_len();
        if len > MAX_PIPE_NAME {
            return Err(BindError::PathTooLong {
                channel: channel.into(),
                path,
                len,
                max: MAX_PIPE_NAME,
            });
        }
        Ok(path)
    }

    /// Creates the pipe `\\.\pipe\netcluster-{channel}` (`dir` plays no
    /// part on Windows) with a DACL made from `mode` (see
    /// [`super::security`]). Fails with [`BindError::InUse`] if the pipe
    /// already exists: another daemon serves that channel. Must be called
    /// inside a tokio runtime.
    pub fn bind(
        dir: &Path,
        channel: &str,
        mode: u32,
        group: Option<u32>,
    ) -> Result<Self, BindError> {
        if group.is_some() {
            return Err(BindError::GroupsUnsupported);
        }
        let path = Self::check(dir, channel)?;
        // Finding the pipe server's process needs more Win32 than this is
        // worth; the pipe name already says which channel is taken.
        let in_use = || BindError::InUse {
            channel: channel.into(),
            path: path.clone(),
            holder: "a process".into(),
        };
        let io_err = |cause| BindError::Io {
            channel: channel.into(),
            path: path.clone(),
            cause,
        };
        // Is the pipe there already? Opening it as a client tells, the way
        // connecting to a socket does on Unix (this also covers systems
        // where FILE_FLAG_FIRST_PIPE_INSTANCE is not enforced, e.g. Wine).
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            Ok(_) => return Err(in_use()),
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => return Err(in_use()),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(in_use()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let security = Descriptor::for_mode(mode).map_err(io_err)?;
        let first = match create(&path, true, &security) {
            Ok(p) => p,
            // What FILE_FLAG_FIRST_PIPE_INSTANCE reports when the pipe
            // appeared since the check above.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(in_use()),
            Err(e) => return Err(io_err(e)),
        };
        Ok(LocalListener {
            path,
            state: Mutex::new(State {
                pending: Some(first),
                security,
                closed: false,
            }),
        })
    }

    /// Waits for the next client.
    pub async fn accept(&self) -> io::Result<(LocalStream, PeerInfo)> {
        loop {
            let instance = {
                let mut st = self.state();
                if st.closed {
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "the channel's pipe is closed",
                    ));
                }
                match st.pending.take() {
                    Some(p) => p,
                    None => create(&self.path, false, &st.security)?,
                }
            };
            let connected = instance.connect().await;
            // The next instance first, so clients always find one waiting.
            self.replenish();
            match connected {
                Ok(()) => {
                    let peer = PeerInfo {
                        uid: None,
                        gid: None,
                        pid: client_pid(&instance),
                    };
                    return Ok((LocalStream::from_server(instance), peer));
                }
                // The client came and went before we saw it.
                Err(e) if e.raw_os_error() == Some(ERROR_NO_DATA as i32) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The pipe name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops serving: closes the waiting instance, so new clients find no
    /// pipe once the connected ones are gone.
    pub fn unlink(&self) {
        let mut st = self.state();
        st.closed = true;
        st.pending = None;
    }

    /// Applies a new `socketmode`: to the waiting instance now and to every
    /// instance created from now on.
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        let security = Descriptor::for_mode(mode)?;
        let mut st = self.state();
        if let Some(p) = &st.pending {
            security.apply(p.as_handle())?;
        }
        st.security = security;
        Ok(())
    }

    /// The DACL of the waiting instance as SDDL, as Windows reports it.
    pub fn dacl(&self) -> io::Result<String> {
        let st = self.state();
        match &st.pending {
            Some(p) => dacl_of(p.as_handle()),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "no instance of the pipe is waiting",
            )),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the waiting instance if there is none.
    fn replenish(&self) {
        let mut st = self.state();
        if st.closed || st.pending.is_some() {
            return;
        }
        match create(&self.path, false, &st.security) {
            Ok(p) => st.pending = Some(p),
            // accept() tries again; meanwhile clients see a busy pipe.
            Err(e) => {
                tracing::warn!(pipe = %self.path.display(), "cannot create the next pipe instance: {e}")
            }
        }
    }
}

/// Creates one instance of the pipe at `path` with `security`.
fn create(path: &Path, first: bool, security: &Descriptor) -> io::Result<NamedPipeServer> {
    let mut attrs = security.attributes();
    // SAFETY: `attrs` is a valid SECURITY_ATTRIBUTES whose descriptor
    // (owned by `security`) outlives the call.
    unsafe {
        ServerOptions::new()
            .first_pipe_instance(first)
            .reject_remote_clients(true)
            .write_dac(true)
            .create_with_security_attributes_raw(
                path,
                (&mut attrs as *mut SECURITY_ATTRIBUTES).cast(),
            )
    }
}

/// The client's process id, as the pipe reports it.
fn client_pid(p: &NamedPipeServer) -> Option<i32> {
    let mut pid = 0u32;
    // SAFETY: `p` is a live, connected pipe instance; `pid` is writable.
    let ok = unsafe { GetNamedPipeClientProcessId(p.as_raw_handle(), &mut pid) };
    (ok != 0).then_some(pid as i32)
}

/// Groups cannot own pipes on Windows.
pub fn group_id(_name: &str) -> Result<u32, BindError> {
    Err(BindError::GroupsUnsupported)
}

/// Length of an OS string in UTF-16 units.
trait WideLen {
    fn encode_wide_len(&self) -> usize;
}

impl WideLen for std::ffi::OsStr {
    fn encode_wide_len(&self) -> usize {
        std::os::windows::ffi::OsStrExt::encode_wide(self).count()
    }
}
