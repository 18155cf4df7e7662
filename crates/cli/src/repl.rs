//! The REPL: reads lines of calls, runs them through a control
//! [`Session`], prints each answer, and keeps going after errors.
//!
//! On a terminal it uses rustyline (line editing, history kept in
//! `$XDG_STATE_HOME/netcluster/ncclient_history`, else
//! `~/.netcluster_history`; history problems are ignored) with the prompt
//! `nc> `. When stdin is not a terminal the same lines are read plainly
//! with no prompt, so the REPL can be scripted; the exit status is then the
//! worst status of the lines (see `common`).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use rustyline::error::ReadlineError;
use tokio::runtime::Runtime;

use crate::call;
use crate::common::{self, Global};
use crate::control::{Flow, Session, CONTROL_CHANNEL};

/// The prompt on a terminal.
const PROMPT: &str = "nc> ";

/// Runs the REPL until `exit()`, end of input or an unrecoverable error;
/// returns the exit status.
pub fn run(global: &Global) -> anyhow::Result<u8> {
    let rt = common::runtime()?;
    let mut session = Session::new(global);
    // Connect now so a missing daemon is reported before any input.
    let (node, client) = rt.block_on(async {
        let c = session.client().await?;
        anyhow::Ok((c.node_id(), c.client_id()))
    })?;
    if std::io::stdin().is_terminal() {
        println!(
            "connected to {CONTROL_CHANNEL} on node {node:016x} as client {client}; \
             help() lists the functions, exit() or Ctrl-D leaves"
        );
        interactive(&rt, &mut session)
    } else {
        piped(&rt, &mut session)
    }
}

/// What one line led to.
struct LineResult {
    status: u8,
    flow: Flow,
}

/// Parses and runs one line, printing answers on stdout and errors on
/// stderr as `error: …`. With `caret`, a parse error is also pointed at
/// under the prompt line.
fn run_line(rt: &Runtime, session: &mut Session, line: &str, caret: bool) -> LineResult {
    let calls = match call::parse_line(line) {
        Ok(c) => c,
        Err(e) => {
            if caret {
                eprintln!("{}^", " ".repeat(PROMPT.len() + e.column - 1));
            }
            eprintln!("error: {e}");
            return LineResult {
                status: common::EXIT_ERROR,
                flow: Flow::Continue,
            };
        }
    };
    for c in &calls {
        match rt.block_on(session.run(c)) {
            Ok(Flow::Continue) => {}
            Ok(Flow::Exit) => {
                return LineResult {
                    status: 0,
                    flow: Flow::Exit,
                }
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                // The rest of the line is not run, as with `ncclient -c`.
                return LineResult {
                    status: common::exit_status(&e),
                    flow: Flow::Continue,
                };
            }
        }
    }
    LineResult {
        status: 0,
        flow: Flow::Continue,
    }
}

fn interactive(rt: &Runtime, session: &mut Session) -> anyhow::Result<u8> {
    let mut rl = rustyline::DefaultEditor::new()?;
    let history = history_file();
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    loop {
        match rl.readline(PROMPT) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = rl.add_history_entry(line.as_str());
                }
                if run_line(rt, session, &line, true).flow == Flow::Exit {
                    break;
                }
            }
            // Ctrl-C abandons the line being typed, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => {
                // Leave the shell's prompt on a line of its own.
                println!();
                break;
            }
            Err(e) => {
                save_history(&mut rl, history.as_ref());
                return Err(anyhow::Error::new(e).context("cannot read the terminal"));
            }
        }
    }
    save_history(&mut rl, history.as_ref());
    Ok(0)
}

fn piped(rt: &Runtime, session: &mut Session) -> anyhow::Result<u8> {
    let mut worst = 0;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| anyhow::anyhow!("cannot read stdin: {e}"))?;
        let r = run_line(rt, session, &line, false);
        worst = worst.max(r.status);
        if r.flow == Flow::Exit {
            break;
        }
    }
    Ok(worst)
}

/// `$XDG_STATE_HOME/netcluster/ncclient_history` (its directory created),
/// else `~/.netcluster_history`; `None` if neither can be named.
fn history_file() -> Option<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(state) = non_empty("XDG_STATE_HOME") {
        let dir = PathBuf::from(state).join("netcluster");
        if std::fs::create_dir_all(&dir).is_ok() {
            return Some(dir.join("ncclient_history"));
        }
    }
    non_empty("HOME").map(|h| PathBuf::from(h).join(".netcluster_history"))
}

fn save_history(rl: &mut rustyline::DefaultEditor, path: Option<&PathBuf>) {
    if let Some(p) = path {
        // History is a convenience: a read-only home must not stop ncclient.
        let _ = rl.save_history(p);
    }
}
