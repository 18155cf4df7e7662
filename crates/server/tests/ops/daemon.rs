//! A running ncserver for these tests: spawned on a config file in a temp
//! dir, its stderr captured, signalled by pid, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use netcluster_testkit::{tempdir, wait_until};

pub const BIN: &str = env!("CARGO_BIN_EXE_ncserver");

pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Daemon {
    /// Starts ncserver on `config` (written to DIR/config.json) with its
    /// sockets in DIR/sock, plus extra arguments and environment.
    pub fn spawn(config: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let dir = tempdir();
        std::fs::create_dir(dir.path().join("sock")).unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        let log = dir.path().join("stderr.log");
        let mut cmd = Command::new(BIN);
        cmd.arg(dir.path().join("config.json"))
            .args(args)
            .env("NETCLUSTER_SOCKET_DIR", dir.path().join("sock"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn ncserver");
        Daemon { child, dir, log }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    pub fn socket(&self, channel: &str) -> PathBuf {
        netcluster_local::channel_path(&self.socket_dir(), channel)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `text` (panics if the daemon exits).
    pub fn wait_log(&mut self, text: &str) {
        let log = self.log.clone();
        let what = format!("ncserver to log {text:?}");
        wait_until(20, &what, || {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "ncserver exited with {st}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(text)
        });
    }

    /// Counts the occurrences of `text` in the log.
    pub fn log_count(&self, text: &str) -> usize {
        self.log().matches(text).count()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let mut status = None;
        wait_until(15, "ncserver to exit after SIGTERM", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
