//! The control session: runs parsed calls against the daemon's control
//! agent and prints the answers.
//!
//! A call `name(args)` becomes the control request `nc-control-{name}` on
//! the `control` channel, with argument `null` (no arguments), the single
//! argument, or an array of them. The daemon decides which names exist, so
//! new daemon commands work here without a change; the only functions known
//! on this side are `help`, `exit`/`quit` (never sent) and
//! `reloadconfig`/`reloaconfig`, whose relative path is made absolute
//! against this process's working directory, because the daemon reads the
//! file from its own. `ncclient -c` (see [`run_script`]) and the REPL both
//! run calls through [`Session`].

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use netcluster::{Client, RequestError};
use serde_json::Value;

use crate::call::{self, Call};
use crate::common::{self, DaemonError, Global};

/// The channel control requests go to.
pub const CONTROL_CHANNEL: &str = "control";
/// Prefix of control request names.
const REQUEST_PREFIX: &str = "nc-control-";
/// How ncclient names itself to the daemon.
const CLIENT_NAME: &str = "ncclient";

/// The REPL's `help()` text: one line per function.
pub const HELP: &str = "\
Functions (arguments are JSON values; strings may use '…' too; write \\\\ for a backslash):
  showconfig()              the daemon's active configuration
  reloadconfig(\"path\")      load and apply a config file (a relative path is taken from
                            ncclient's directory); reloadconfig() re-reads the daemon's file;
                            reloaconfig(…) is the seed's spelling of the same
  showchannel()             every channel: client count, propagation targets, socket
  showchannel(\"A\")          the clients of channel A: id, name, pid, uid, since, counters
  showclient(\"A\", 3)        one client of channel A by id (3, \"3\" or \"node:3\")
  status()                  daemon version, node id, start time, config source, counts
  showpeers()               the other daemons on the network (if this daemon has networking)
  help()                    this list
  exit(), quit(), Ctrl-D    leave
Any other name(args) is sent to the daemon as nc-control-name. Parentheses are optional
without arguments; several calls may share a line, separated by ';'.";

/// What to do after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next call.
    Continue,
    /// `exit()` or `quit()`: stop.
    Exit,
}

/// A connection to the control channel, opened on first use and reopened
/// if the daemon restarted in between.
pub struct Session {
    global: Global,
    client: Option<Client>,
}

impl Session {
    /// A session that connects when it first needs to.
    pub fn new(global: &Global) -> Session {
        Session {
            global: global.clone(),
            client: None,
        }
    }

    /// The connected client, connecting (or reconnecting after the
    /// connection was lost) if needed.
    pub async fn client(&mut self) -> anyhow::Result<&Client> {
        let alive = self
            .client
            .as_ref()
            .is_some_and(|c| c.closed_reason().is_none());
        if !alive {
            self.client = None;
            let c = self
                .global
                .connect(CONTROL_CHANNEL, CLIENT_NAME, false)
                .await?;
            self.client = Some(c);
        }
        Ok(self.client.as_ref().expect("connected above"))
    }

    /// Runs one call and prints its result on stdout. A refusal by the
    /// daemon is a [`DaemonError`].
    pub async fn run(&mut self, call: &Call) -> anyhow::Result<Flow> {
        match call.name.as_str() {
            "exit" | "quit" => return Ok(Flow::Exit),
            "help" => {
                print_out(HELP)?;
                return Ok(Flow::Continue);
            }
            _ => {}
        }
        let cwd = std::env::current_dir().unwrap_or_default();
        let (name, arg) = request_for(call, &cwd);
        let client = self.client().await?;
        match client.request(&name, &arg).await {
            Ok(answer) => {
                let text = serde_json::to_string_pretty(&answer)
                    .context("cannot format the daemon's answer")?;
                print_out(&text)?;
                Ok(Flow::Continue)
            }
            Err(RequestError::Failed(m)) => Err(DaemonError(m).into()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("{}() failed", call.name))),
        }
    }
}

/// Writes `text` and a newline to stdout.
fn print_out(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// The control request for `call`: its name and argument. `cwd` resolves
/// a relative path given to `reloadconfig`.
pub fn request_for(call: &Call, cwd: &Path) -> (String, Value) {
    let mut args = call.args.clone();
    if matches!(call.name.as_str(), "reloadconfig" | "reloaconfig") && args.len() == 1 {
        if let Value::String(path) = &args[0] {
            if let Some(abs) = absolute(Path::new(path), cwd).to_str() {
                args[0] = Value::String(abs.to_string());
            }
        }
    }
    let arg = match args.len() {
        0 => Value::Null,
        1 => args.remove(0),
        _ => Value::Array(args),
    };
    (format!("{REQUEST_PREFIX}{}", call.name), arg)
}

/// `path` made absolute against `cwd`, without `.` components.
fn absolute(path: &Path, cwd: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let mut out = cwd.to_path_buf();
    for c in path.components() {
        if c != Component::CurDir {
            out.push(c);
        }
    }
    out
}

/// `ncclient -c TEXT`: parses every call first (a syntax error runs
/// nothing), then runs them in order and stops at the first failure.
pub fn run_script(global: &Global, text: &str) -> anyhow::Result<()> {
    let calls = call::parse_line(text)?;
    let rt = common::runtime()?;
    let mut session = Session::new(global);
    rt.block_on(async {
        for c in &calls {
            if session.run(c).await? == Flow::Exit {
                break;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn req(line: &str) -> (String, Value) {
        let calls = call::parse_line(line).unwrap();
        request_for(&calls[0], Path::new("/home/u/work"))
    }

    #[test]
    fn arguments_map_to_null_value_or_array() {
        assert_eq!(
            req("showconfig"),
            ("nc-control-showconfig".into(), json!(null))
        );
        assert_eq!(
            req("showchannel('A')"),
            ("nc-control-showchannel".into(), json!("A"))
        );
        assert_eq!(
            req("showclient('A', 3)"),
            ("nc-control-showclient".into(), json!(["A", 3]))
        );
        assert_eq!(
            req("anything({a: [1]})"),
            ("nc-control-anything".into(), json!({"a": [1]}))
        );
    }

    #[test]
    fn reload_paths_become_absolute() {
        assert_eq!(
            req("reloadconfig('cfg.json')").1,
            json!("/home/u/work/cfg.json")
        );
        assert_eq!(
            req("reloaconfig('./conf/../x.json')"),
            (
                "nc-control-reloaconfig".into(),
                json!("/home/u/work/conf/../x.json")
            )
        );
        assert_eq!(req("reloadconfig('/etc/n.json')").1, json!("/etc/n.json"));
        assert_eq!(req("reloadconfig()").1, json!(null));
        // Only reloadconfig's path argument is touched.
        assert_eq!(req("showchannel('cfg.json')").1, json!("cfg.json"));
        assert_eq!(req("reloadconfig({a: 'b'})").1, json!({"a": "b"}));
    }
}
