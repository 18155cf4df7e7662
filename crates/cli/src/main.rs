//! `ncclient`: the netcluster control REPL, and `emit`/`listen` for shells.
//!
//! Only argument parsing and dispatch live here. The input language is in
//! `call`, control requests in `control`, the REPL in `repl`, the shell
//! commands in `emit` and `listen`, and what they share (connecting, exit
//! statuses) in `common`. Errors are printed with their whole chain as
//! `ncclient: error: …`.

mod call;
mod common;
mod control;
mod repl;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};

use common::Global;

/// Talk to a running ncserver: control REPL, scripted control calls, and
/// emitting or listening to events from the shell.
///
/// Without a command, ncclient opens a REPL on the daemon's control
/// channel: type calls such as showchannel("A") and it prints the daemon's
/// answer as JSON (prompt `nc> `, line editing and history on a terminal;
/// lines are read plainly when stdin is a pipe, so the REPL can be
/// scripted).
#[derive(Parser, Debug)]
#[command(name = "ncclient", version)]
struct Cli {
    /// Directory holding the channel sockets. Default: $NETCLUSTER_SOCKET_DIR,
    /// else /var/run for root, else $XDG_RUNTIME_DIR, else /tmp (the
    /// daemon's rule).
    #[arg(long, global = true, value_name = "DIR")]
    socket_dir: Option<PathBuf>,

    /// Run control calls and exit, e.g. -c 'showchannel("A")'. Several calls
    /// may be separated by ';'; they run in order and the first failure
    /// stops them.
    #[arg(short = 'c', long = "command", value_name = "CALLS")]
    calls: Option<String>,
}

/// Printed after the options in `--help`.
fn after_help() -> String {
    format!(
        "REPL functions:\n{help}\n\n\
Exit status: 0 on success; 1 when the daemon refused a request (its message
is printed); 2 for usage, syntax and connection errors. A REPL reading a
pipe exits with the worst status of its lines.

Examples:
  ncclient                                      open the control REPL
  ncclient -c 'showchannel()'                   list the channels
  ncclient -c 'showchannel(\"A\"); showclient(\"A\", 3)'
  ncclient -c 'reloadconfig(\"new.json\")'        apply new.json (from this directory)
  printf 'status()\\nshowconfig()\\n' | ncclient   script the REPL",
        help = control::HELP
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn main() -> ExitCode {
    let matches = Cli::command().after_help(after_help()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match dispatch(cli) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("ncclient: error: {e:#}");
            ExitCode::from(common::exit_status(&e))
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let global = Global {
        socket_dir: cli.socket_dir,
    };
    match cli.calls {
        Some(calls) => control::run_script(&global, &calls).map(|()| 0),
        None => repl::run(&global),
    }
}
