//! Command-line parsing for `ncbench` and the dispatch to the suite, the
//! roles and the helpers `bench/run.sh` uses (`free-port`, `wait-for`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::child::{say_ready, say_result};
use crate::results::{Plan, Results};
use crate::roles::{self, System};
use crate::suite::{self, Broker};
use crate::{report, sys};

/// netcluster side by side with NATS and Redis.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where a role connects and which CPUs it may use.
#[derive(Args, Debug, Clone)]
struct Target {
    /// The broker.
    #[arg(long, value_enum)]
    system: System,
    /// netcluster: socket directory; NATS: host:port; Redis: socket path.
    #[arg(long)]
    at: String,
    /// Pin this process to these CPUs (e.g. `0`, `0-1`).
    #[arg(long)]
    cpu: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run every workload against the brokers given and write the report.
    Suite(SuiteArgs),
    /// Re-render the report from a saved latest.json.
    Report {
        /// The saved results.
        #[arg(long)]
        json: PathBuf,
        /// Where latest.md and chart.svg go.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Document whose generated section is replaced.
        #[arg(long)]
        doc: Option<PathBuf>,
    },
    /// Role: receive and check COUNT messages; prints READY, then RESULT.
    Sub {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "bench")]
        subject: String,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        size: usize,
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
    },
    /// Role: publish COUNT messages (batched); prints RESULT.
    Pub {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "bench")]
        subject: String,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        size: usize,
        /// Subscribers each message must reach (checked for Redis).
        #[arg(long, default_value_t = 1)]
        receivers: u32,
    },
    /// Role: answer COUNT pings with pongs; prints READY.
    Pong {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        size: usize,
    },
    /// Role: measure round trips against a ponger; prints RESULT.
    Ping {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        warmup: u64,
        #[arg(long)]
        size: usize,
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
    },
    /// Role: hold CLIENTS idle connections until standard input closes.
    Idle {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        clients: u32,
    },
    /// Role: raw Unix socketpair round trips with a child; prints RESULT.
    RawPing {
        #[arg(long)]
        count: u64,
        #[arg(long)]
        warmup: u64,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        cpu: Option<String>,
    },
    /// Role (started by raw-ping): echo on the socket given as stdin.
    RawPong {
        #[arg(long)]
        count: u64,
        #[arg(long)]
        size: usize,
    },
    /// Only the multicast rows (two ncserver daemons in network
    /// namespaces; needs root): prints each run.
    Mcast {
        /// The ncserver binary.
        #[arg(long)]
        ncserver: PathBuf,
        /// `full` or `tiny` sizes.
        #[arg(long, default_value = "full")]
        scale: String,
        /// Only the rows whose id contains this (e.g. `64k`, `key`).
        #[arg(long)]
        only: Option<String>,
        /// Repetitions of each row.
        #[arg(long, default_value_t = 1)]
        reps: u32,
    },
    /// Role: count up to COUNT messages arriving through a NATS bridge
    /// (holes allowed, order checked); prints READY, then RESULT.
    BridgeSub {
        /// The daemon's socket directory.
        #[arg(long)]
        at: String,
        #[arg(long, default_value = "bench")]
        subject: String,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        size: usize,
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
    },
    /// Only the NATS bridge rows (two ncserver daemons through one
    /// nats-server, beside native NATS publish→subscribe through the
    /// hand-written client and through async-nats): prints each run.
    NatsBridge {
        /// The ncserver binary.
        #[arg(long)]
        ncserver: PathBuf,
        /// The nats-server, host:port.
        #[arg(long)]
        nats: String,
        /// `full` or `tiny` sizes.
        #[arg(long, default_value = "full")]
        scale: String,
        /// Only the rows whose id contains this (e.g. `64k`).
        #[arg(long)]
        only: Option<String>,
        /// Repetitions of each row.
        #[arg(long, default_value_t = 1)]
        reps: u32,
    },
    /// Print a free TCP port on 127.0.0.1.
    FreePort,
    /// Wait until a TCP address or a Unix socket accepts connections.
    WaitFor {
        #[arg(long, conflicts_with = "unix")]
        tcp: Option<String>,
        #[arg(long)]
        unix: Option<PathBuf>,
        #[arg(long, default_value_t = 10)]
        timeout_s: u64,
    },
}

#[derive(Args, Debug)]
struct SuiteArgs {
    /// netcluster: the daemon's socket directory.
    #[arg(long, requires = "nc_pid")]
    nc_dir: Option<String>,
    /// netcluster: the daemon's PID (the in-process daemon of a test: own PID).
    #[arg(long)]
    nc_pid: Option<u32>,
    /// Skip the raw-protocol client's row (by default it runs beside the
    /// library's, on the same daemon).
    #[arg(long)]
    no_nc_raw: bool,
    /// NATS: host:port.
    #[arg(long, requires = "nats_pid")]
    nats_addr: Option<String>,
    #[arg(long)]
    nats_pid: Option<u32>,
    /// Redis: its Unix socket.
    #[arg(long, requires = "redis_pid")]
    redis_socket: Option<String>,
    #[arg(long)]
    redis_pid: Option<u32>,
    /// `full` (bench/run.sh) or `tiny` (tests of the harness).
    #[arg(long, default_value = "full")]
    scale: String,
    /// Override the repetitions of each throughput run.
    #[arg(long)]
    reps: Option<u32>,
    /// netcluster commit, shown in the report.
    #[arg(long)]
    commit: Option<String>,
    /// CPU shared by every process in the one-CPU runs.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
    /// Where latest.json, latest.md and chart.svg go.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Document whose generated section is replaced (docs/PERFORMANCE.md).
    #[arg(long)]
    doc: Option<PathBuf>,
    /// The ncserver binary, for the multicast rows (needs root).
    #[arg(long)]
    ncserver: Option<PathBuf>,
}

/// Runs `ncbench` with the process arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ncbench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn pin(cpu: &Option<String>) -> Result<()> {
    if let Some(c) = cpu {
        sys::pin_self(&sys::parse_cpus(c)?)?;
    }
    Ok(())
}

fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Suite(a) => run_suite(a),
        Cmd::Report { json, out_dir, doc } => {
            let text = std::fs::read_to_string(&json)
                .with_context(|| format!("reading {}", json.display()))?;
            let r: Results = serde_json::from_str(&text)?;
            publish(&r, out_dir.as_deref(), doc.as_deref())
        }
        Cmd::Sub {
            target,
            subject,
            count,
            size,
            timeout_s,
        } => {
            pin(&target.cpu)?;
            let out = roles::subscriber(
                target.system,
                &target.at,
                &subject,
                count,
                size,
                Duration::from_secs(timeout_s),
                &mut say_ready,
            )?;
            say_result(&out)
        }
        Cmd::Pub {
            target,
            subject,
            count,
            size,
            receivers,
        } => {
            pin(&target.cpu)?;
            let out =
                roles::publisher(target.system, &target.at, &subject, count, size, receivers)?;
            say_result(&out)
        }
        Cmd::Pong {
            target,
            count,
            size,
        } => {
            pin(&target.cpu)?;
            roles::ponger(target.system, &target.at, count, size, &mut say_ready)
        }
        Cmd::Ping {
            target,
            count,
            warmup,
            size,
            timeout_s,
        } => {
            pin(&target.cpu)?;
            let out = roles::pinger(
                target.system,
                &target.at,
                count,
                warmup,
                size,
                Duration::from_secs(timeout_s),
            )?;
            say_result(&out)
        }
        Cmd::Idle { target, clients } => {
            pin(&target.cpu)?;
            roles::idle(target.system, &target.at, clients, &mut say_ready, || {
                // Hold until the suite closes our standard input.
                let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            })
        }
        Cmd::RawPing {
            count,
            warmup,
            size,
            cpu,
        } => {
            pin(&cpu)?;
            let exe = std::env::current_exe()?;
            say_result(&roles::raw_pinger(&exe, count, warmup, size)?)
        }
        Cmd::RawPong { count, size } => roles::raw_ponger(count, size),
        Cmd::Mcast {
            ncserver,
            scale,
            only,
            reps,
        } => {
            let plan = plan_for(&scale)?;
            if let Some(why) = crate::mcast::unavailable() {
                bail!("cannot run the multicast rows: {why}");
            }
            let o = crate::mcast::Options {
                ncserver,
                exe: std::env::current_exe()?,
                count_small: plan.mcast_small,
                count_large: plan.mcast_large,
                timeout: Duration::from_secs(plan.child_timeout_s),
            };
            for v in crate::mcast::VARIANTS {
                if only.as_deref().is_some_and(|o| !v.id.contains(o)) {
                    continue;
                }
                for rep in 1..=reps.max(1) {
                    let (msgs, bytes) = crate::mcast::run_one(&o, v)?;
                    println!(
                        "{:<15} run {rep}: {:>6.3} M msg/s, {:>8.1} MB/s",
                        v.id,
                        msgs / 1e6,
                        bytes / 1e6
                    );
                }
            }
            Ok(())
        }
        Cmd::BridgeSub {
            at,
            subject,
            count,
            size,
            timeout_s,
        } => {
            let out = crate::natsbridge::subscriber(
                Path::new(&at),
                &subject,
                count,
                size,
                Duration::from_secs(timeout_s),
                &mut say_ready,
            )?;
            say_result(&out)
        }
        Cmd::NatsBridge {
            ncserver,
            nats,
            scale,
            only,
            reps,
        } => {
            let plan = plan_for(&scale)?;
            let o = crate::natsbridge::Options {
                ncserver,
                exe: std::env::current_exe()?,
                nats,
                count_small: plan.natsbridge_small,
                count_large: plan.natsbridge_large,
                timeout: Duration::from_secs(plan.child_timeout_s),
            };
            for v in crate::natsbridge::VARIANTS {
                if only.as_deref().is_some_and(|o| !v.id.contains(o)) {
                    continue;
                }
                for rep in 1..=reps.max(1) {
                    // run_all prints each run's figures.
                    crate::natsbridge::run_all(&o, v, rep)?;
                }
            }
            Ok(())
        }
        Cmd::FreePort => {
            let l = TcpListener::bind("127.0.0.1:0")?;
            println!("{}", l.local_addr()?.port());
            Ok(())
        }
        Cmd::WaitFor {
            tcp,
            unix,
            timeout_s,
        } => {
            let deadline = Instant::now() + Duration::from_secs(timeout_s);
            loop {
                let ok = match (&tcp, &unix) {
                    (Some(a), _) => TcpStream::connect(a).is_ok(),
                    (None, Some(p)) => std::os::unix::net::UnixStream::connect(p).is_ok(),
                    (None, None) => bail!("give --tcp ADDR or --unix PATH"),
                };
                if ok {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    bail!("{tcp:?}{unix:?} not accepting connections after {timeout_s} s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn plan_for(scale: &str) -> Result<Plan> {
    Ok(match scale {
        "full" => Plan::full(),
        "tiny" => Plan::tiny(),
        other => bail!("unknown --scale {other:?}: full or tiny"),
    })
}

fn run_suite(a: SuiteArgs) -> Result<()> {
    let mut plan = plan_for(&a.scale)?;
    if let Some(r) = a.reps {
        plan.reps = r.max(1);
    }
    let mut brokers = Vec::new();
    if let (Some(at), Some(pid)) = (a.nc_dir, a.nc_pid) {
        if !a.no_nc_raw {
            brokers.push(Broker {
                system: System::NcRaw,
                pid,
                at: at.clone(),
            });
        }
        brokers.push(Broker {
            system: System::Nc,
            pid,
            at,
        });
    }
    if let (Some(at), Some(pid)) = (a.nats_addr, a.nats_pid) {
        brokers.push(Broker {
            system: System::Nats,
            pid,
            at,
        });
    }
    if let (Some(at), Some(pid)) = (a.redis_socket, a.redis_pid) {
        brokers.push(Broker {
            system: System::Redis,
            pid,
            at,
        });
    }
    if brokers.is_empty() {
        bail!("no broker given: use --nc-dir/--nc-pid, --nats-addr/--nats-pid, --redis-socket/--redis-pid");
    }
    let r = suite::run(suite::Options {
        brokers,
        plan,
        commit: a.commit,
        cpu: a.cpu,
        ncserver: a.ncserver,
    })?;
    publish(&r, a.out_dir.as_deref(), a.doc.as_deref())
}

fn publish(r: &Results, out_dir: Option<&Path>, doc: Option<&Path>) -> Result<()> {
    println!("{}", report::text_table(r));
    if let Some(dir) = out_dir {
        report::write_all(r, dir)?;
        eprintln!(
            "ncbench: wrote {}/latest.{{json,md}} and chart.svg",
            dir.display()
        );
    }
    if let Some(doc) = doc {
        // The chart's path as seen from the document.
        let chart = match (out_dir, doc.parent()) {
            (Some(dir), Some(parent)) => relative(&dir.join("chart.svg"), parent),
            _ => "bench/chart.svg".into(),
        };
        report::update_doc(doc, r, &chart)?;
        eprintln!("ncbench: updated {}", doc.display());
    }
    Ok(())
}

/// `target` relative to `base` (both made absolute), with `/` separators.
fn relative(target: &Path, base: &Path) -> String {
    let abs = |p: &Path| -> Vec<String> {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect()
    };
    let (t, b) = (abs(target), abs(base));
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = std::iter::repeat("..".to_string())
        .take(b.len() - common)
        .collect();
    parts.extend(t[common..].iter().cloned());
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/docs/bench/chart.svg"), Path::new("/a/docs")),
            "bench/chart.svg"
        );
        assert_eq!(
            relative(Path::new("/tmp/x/chart.svg"), Path::new("/a/docs")),
            "../../tmp/x/chart.svg"
        );
    }
}
