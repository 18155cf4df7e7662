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
mod emit;
mod listen;
mod repl;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use common::Global;

/// ncclient: talk to a running ncserver: control REPL, scripted control
/// calls, and emitting or listening to events from the shell.
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

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Emit an event on a channel.
    ///
    /// DATA is sent as-is when it is valid JSON, else as a JSON string
    /// (`emit A log 42` sends a number, `emit A log hello` the string
    /// "hello"). Without DATA, each line of stdin is one message under the
    /// same rule; blank lines are skipped. ncclient exits once the daemon
    /// has taken every message.
    Emit {
        /// The channel to emit on.
        channel: String,
        /// The event name.
        event: String,
        /// The payload; omit it to read one message per line of stdin.
        #[arg(allow_hyphen_values = true)]
        data: Option<OsString>,
        /// Send DATA (or each line) as raw bytes instead of JSON.
        #[arg(long)]
        raw: bool,
    },
    /// Print the events of a channel, one JSON object per line.
    ///
    /// Each line is {"channel":…,"event":…,"data":…,"origin":"node:client","seq":N};
    /// data is the payload parsed as JSON, or a JSON string when it is not
    /// JSON. The line "listening on CHANNEL for EVENTS" goes to stderr once the
    /// daemon has acknowledged the subscription: wait for it before emitting. If the daemon goes
    /// away, ncclient reconnects and goes on (messages emitted meanwhile are
    /// not replayed); with --no-reconnect it exits with an error instead.
    Listen {
        /// The channel to listen on.
        channel: String,
        /// Events to print; none means all events (*).
        events: Vec<String>,
        /// Exit after printing N messages.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Exit after SECS seconds (fractions allowed).
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        timeout: Option<Duration>,
        /// Exit with an error when the daemon goes away instead of reconnecting.
        #[arg(long)]
        no_reconnect: bool,
    },
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
  printf 'status()\\nshowconfig()\\n' | ncclient   script the REPL
  ncclient emit A log '{{\"level\": \"info\"}}'       emit a JSON object
  ncclient emit A log hello                     emit the string \"hello\"
  tail -f app.log | ncclient emit A log         one message per line
  ncclient listen A                             print every message of A
  ncclient listen A log err --count 10          ten log or err messages, then exit
  ncclient --socket-dir /tmp/nc listen B --timeout 5",
        help = control::HELP
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a usable duration"))
}

fn main() -> ExitCode {
    let matches = Cli::command().after_help(after_help()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // Not `args_conflicts_with_subcommands`: that would also refuse the
    // global --socket-dir before a subcommand.
    if cli.calls.is_some() && cli.command.is_some() {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "-c runs control calls and cannot be combined with emit or listen",
            )
            .exit();
    }
    match dispatch(cli) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("ncclient: error: {e:#}");
            ExitCode::from(common::exit_status(&e))
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let mut global = Global {
        socket_dir: cli.socket_dir,
        reconnect: false,
    };
    match (cli.calls, cli.command) {
        (Some(calls), _) => control::run_script(&global, &calls).map(|()| 0),
        (None, None) => repl::run(&global),
        (
            None,
            Some(Command::Emit {
                channel,
                event,
                data,
                raw,
            }),
        ) => {
            let req = emit::Request {
                channel,
                event,
                data: data.map(os_bytes),
                raw,
            };
            emit::run(&global, req).map(|()| 0)
        }
        (
            None,
            Some(Command::Listen {
                channel,
                events,
                count,
                timeout,
                no_reconnect,
            }),
        ) => {
            global.reconnect = !no_reconnect;
            let req = listen::Request {
                channel,
                events,
                count,
                timeout,
            };
            listen::run(&global, req).map(|()| 0)
        }
    }
}

/// The bytes of an argument: exact on Unix, UTF-8 (lossy) elsewhere.
fn os_bytes(s: OsString) -> Vec<u8> {
    #[cfg(unix)]
    {
        std::os::unix::ffi::OsStringExt::into_vec(s)
    }
    #[cfg(not(unix))]
    {
        s.to_string_lossy().into_owned().into_bytes()
    }
}
