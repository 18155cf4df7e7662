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

/// The functions this side knows of (the daemon's commands as of this
/// version, and the REPL's own), for "did you mean" after a typo.
const FUNCTIONS: &[&str] = &[
    "showconfig",
    "reloadconfig",
    "showchannel",
    "showclient",
    "status",
    "showpeers",
    "help",
    "exit",
    "quit",
];
/// How the daemon's refusal of an unknown command begins.
const UNKNOWN_COMMAND: &str = "unknown control command";

/// The REPL's `help()` text: one line per function.
pub const HELP: &str = "\
Functions (arguments are JSON values; strings may use '…' too; write \\\\ for a backslash):
  showconfig()              the daemon's active configuration
  reloadconfig(\"path\")      load and apply a config file (a relative path is taken from
                            ncclient's directory); reloadconfig() re-reads the file the active
                            config was last loaded from;
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
            Err(RequestError::Failed(m)) if m.starts_with(UNKNOWN_COMMAND) => {
                Err(DaemonError(unknown_function(&call.name, &m)).into())
            }
            Err(RequestError::Failed(m)) => Err(DaemonError(m).into()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("{}() failed", call.name))),
        }
    }
}

/// The message for a function the daemon does not know: the name (cut if
/// long), the nearest known function, and the list. `refusal` is the
/// daemon's message, whose list of commands is used when present (a newer
/// daemon may know more than [`FUNCTIONS`]).
fn unknown_function(name: &str, refusal: &str) -> String {
    let mut known: Vec<&str> = match refusal.split_once("known commands: ") {
        Some((_, list)) => list.split(", ").map(str::trim).collect(),
        None => FUNCTIONS.to_vec(),
    };
    for f in ["help", "exit", "quit"] {
        if !known.contains(&f) {
            known.push(f);
        }
    }
    let hint = match nearest(name, &known) {
        Some(f) => format!("; did you mean {f}()?"),
        None => String::new(),
    };
    format!(
        "unknown function {}{hint} Functions: {} (help() describes them)",
        common::quote_name(name),
        known
            .iter()
            .map(|f| format!("{f}()"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The candidate nearest to `name` by edit distance, if near enough: at
/// most max(2, a third of its length) edits; ties go to the first listed.
fn nearest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|c| (edit_distance(&name.to_lowercase(), c), *c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
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
    fn unknown_functions_get_a_suggestion_and_a_short_name() {
        let daemon = "unknown control command \"x\"; known commands: showconfig, reloadconfig, \
                      showchannel, showclient, showpeers, status, newthing";
        let m = unknown_function("showchanel", daemon);
        assert!(
            m.starts_with("unknown function \"showchanel\"; did you mean showchannel()?"),
            "{m}"
        );
        assert!(m.contains("newthing(), help(), exit(), quit()"), "{m}");
        assert!(unknown_function("hlep", daemon).contains("did you mean help()?"));
        assert!(unknown_function("Status", daemon).contains("did you mean status()?"));
        let m = unknown_function("zzzzzz", daemon);
        assert!(!m.contains("did you mean"), "{m}");
        let long = "f".repeat(1000);
        let m = unknown_function(&long, daemon);
        assert!(m.len() < 400, "{m}");
        assert!(m.contains("… (1000 bytes)"), "{m}");
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
