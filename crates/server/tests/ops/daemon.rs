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

impl Daemon {
    /// The address the HTTP endpoint last said it listens on.
    pub fn http_addr(&mut self) -> std::net::SocketAddr {
        self.wait_log("HTTP endpoint listening");
        let log = self.log();
        let line = log
            .lines()
            .rfind(|l| l.contains("HTTP endpoint listening"))
            .unwrap();
        let addr = line.split("addr=").nth(1).unwrap();
        addr.split_whitespace().next().unwrap().parse().unwrap()
    }
}

/// An HTTP response as the tests look at it.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Sends `request` (a whole request head) and reads the response to EOF.
pub fn http_raw(addr: std::net::SocketAddr, request: &str) -> std::io::Result<Got> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
    s.write_all(request.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok(Got {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// GET `path`, with an `Accept` header if given.
pub fn http_get(addr: std::net::SocketAddr, path: &str, accept: Option<&str>) -> Got {
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\n{accept}\r\n"),
    )
    .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The value of the sample `series` (name and labels exactly as written)
/// in metrics text.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split(' ').next()?.parse().ok()
    })
}
