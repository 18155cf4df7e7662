//! Role processes as the suite sees them: `ncbench ROLE ...` children that
//! print `READY` once set up and `RESULT <json>` at the end on standard
//! output (errors go to standard error, which the suite passes through).
//! Every wait has a deadline; a child that misses it is killed and the run
//! fails, naming it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;

/// The line a role prints once it is subscribed / connected.
pub const READY: &str = "READY";
/// The prefix of the line carrying a role's result as JSON.
pub const RESULT: &str = "RESULT ";

/// Prints the `READY` line (roles call this).
pub fn say_ready() {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{READY}");
    let _ = out.flush();
}

/// Prints the `RESULT` line (roles call this).
pub fn say_result(v: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{RESULT}{}", serde_json::to_string(v)?)?;
    out.flush()?;
    Ok(())
}

/// A running role process.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Proc {
    /// Starts `exe args...`; `name` identifies it in errors.
    pub fn spawn(exe: &Path, args: &[String], name: impl Into<String>) -> Result<Proc> {
        let name = name.into();
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {name}: {} {}", exe.display(), args.join(" ")))?;
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc {
            name,
            child,
            stdin,
            lines,
        })
    }

    /// The next line on standard output within `timeout`.
    fn line(&mut self, timeout: Duration, waiting_for: &str) -> Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                bail!("{}: no {waiting_for} within {timeout:?}; killed", self.name)
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait()?;
                bail!("{}: exited ({status}) before {waiting_for}", self.name)
            }
        }
    }

    /// Waits for `READY`.
    pub fn ready(&mut self, timeout: Duration) -> Result<()> {
        loop {
            let l = self.line(timeout, "READY")?;
            if l == READY {
                return Ok(());
            }
            eprintln!("{}: {l}", self.name);
        }
    }

    /// Waits for the `RESULT` line, then for a successful exit.
    pub fn result<T: DeserializeOwned>(&mut self, timeout: Duration) -> Result<T> {
        let deadline = Instant::now() + timeout;
        let v = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = self.line(left, "RESULT")?;
            if let Some(json) = l.strip_prefix(RESULT) {
                break serde_json::from_str(json)
                    .with_context(|| format!("{}: bad result {json:?}", self.name))?;
            }
            eprintln!("{}: {l}", self.name);
        };
        self.finish(deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5))?;
        Ok(v)
    }

    /// Closes the child's standard input (roles that hold connections
    /// until told to stop end then).
    pub fn release(&mut self) {
        drop(self.stdin.take());
    }

    /// Waits for a successful exit within `timeout`.
    pub fn finish(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                bail!("{} failed: {status}", self.name);
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(anyhow!(
                    "{}: did not exit within {timeout:?}; killed",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Kills and reaps background processes (daemons a run started), for
/// their owners' `Drop`.
pub fn kill_all(children: &mut [std::process::Child]) {
    for c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}
