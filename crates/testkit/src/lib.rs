//! Test helpers shared by the workspace's integration tests: a daemon in a
//! temporary socket directory, configs, and paths of the built binaries;
//! [`netns`] builds multi-host networks out of network namespaces.

use std::path::{Path, PathBuf};

#[cfg(unix)]
pub mod netns;

pub use netcluster_server::config::Config;
use netcluster_server::{Server, ServerHandle};

/// A daemon running in-process with its sockets in a fresh temporary
/// directory, stopped and cleaned up on drop.
pub struct TestDaemon {
    /// The running server (dropped first: it stops the daemon).
    pub handle: Option<ServerHandle>,
    /// The config it runs (`socketdir` set to `dir`).
    pub config: Config,
    /// The temporary socket directory.
    pub dir: tempfile::TempDir,
}

impl TestDaemon {
    /// Starts a daemon for a config given as JSON(C) text; its `socketdir`
    /// is replaced by a temporary directory.
    pub fn start(config: &str) -> TestDaemon {
        let cfg = Config::parse(config, "test-config.json")
            .unwrap_or_else(|e| panic!("test config: {e}"));
        TestDaemon::with_config(cfg)
    }

    /// Starts a daemon on the built-in default config (control, A, B).
    pub fn builtin() -> TestDaemon {
        TestDaemon::with_config(Config::builtin())
    }

    /// Starts a daemon for `config` with a temporary `socketdir`.
    pub fn with_config(mut config: Config) -> TestDaemon {
        let dir = tempdir();
        config.socketdir = Some(dir.path().to_path_buf());
        let handle =
            Server::start(config.clone()).unwrap_or_else(|e| panic!("start test daemon: {e}"));
        TestDaemon {
            handle: Some(handle),
            config,
            dir,
        }
    }

    /// Stops the daemon and starts a new one (new node id) with the same
    /// config and socket directory, as a restart would.
    pub fn restart(&mut self) {
        self.stop();
        let handle = Server::start(self.config.clone())
            .unwrap_or_else(|e| panic!("restart test daemon: {e}"));
        self.handle = Some(handle);
    }

    /// The socket directory.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The node id of this daemon run.
    pub fn node_id(&self) -> u64 {
        self.handle.as_ref().expect("running").node_id()
    }

    /// Stops the daemon now (socket files are removed).
    pub fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop();
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A temporary directory with a short path (socket paths are limited to
/// 107 bytes).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nc")
        .tempdir_in(short_tmp())
        .expect("create temp dir")
}

fn short_tmp() -> PathBuf {
    let t = std::env::temp_dir();
    if t.as_os_str().len() <= 40 {
        t
    } else {
        PathBuf::from("/tmp")
    }
}

/// Path of a binary built by this workspace (`target/{profile}/{name}`),
/// found next to the running test executable. Prefer `CARGO_BIN_EXE_*`
/// for the binaries of the crate under test.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/{profile}/deps/test-binary -> target/{profile}/name
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        p.exists(),
        "{} is not built; run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// Polls `cond` every 10 ms until it holds or `secs` pass; panics with
/// `what` on timeout. For waiting on other processes, never for timing.
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
