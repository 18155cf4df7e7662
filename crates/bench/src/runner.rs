//! What the suite's workloads share (below the suite and
//! the large-message rows, which both use it): the brokers, the context of a role
//! run, and one throughput run (subscribers and a publisher, each in its
//! own process).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::child::Proc;
use crate::results::Plan;
use crate::roles::{PubOut, SubOut, System};
use crate::sys;

/// A running broker.
#[derive(Debug, Clone)]
pub struct Broker {
    /// Which one.
    pub system: System,
    /// Its PID (its CPU time and memory are read from /proc).
    pub pid: u32,
    /// Where clients connect: netcluster's socket directory, NATS's
    /// `host:port`, Redis's socket path.
    pub at: String,
}

/// What every role run needs (the suite and the large-message rows).
pub(crate) struct Ctx {
    pub(crate) exe: PathBuf,
    pub(crate) plan: Plan,
    pub(crate) timeout: Duration,
}

impl Ctx {
    pub(crate) fn role(&self, args: Vec<String>, name: String) -> Result<Proc> {
        Proc::spawn(&self.exe, &args, name)
    }
}

pub(crate) fn s(x: impl ToString) -> String {
    x.to_string()
}

/// One throughput run: `subs` subscribers, one publisher. Returns
/// deliveries per second and broker CPU nanoseconds per delivery.
pub(crate) fn throughput(
    c: &Ctx,
    b: &Broker,
    subs: u32,
    size: usize,
    count: u64,
) -> Result<(f64, f64)> {
    let name = |role: &str| format!("{} {role} ({subs}×{size} B)", b.system.label());
    // What both roles are told: the broker, the count and the size.
    let role_args = |role: &str| {
        vec![
            s(role),
            s("--system"),
            s(b.system.arg()),
            s("--at"),
            b.at.clone(),
            s("--count"),
            s(count),
            s("--size"),
            s(size),
        ]
    };
    let mut subscribers = Vec::new();
    for i in 0..subs {
        let mut args = role_args("sub");
        args.extend([s("--timeout-s"), s(c.timeout.as_secs())]);
        let mut p = c.role(args, name(&format!("subscriber {}", i + 1)))?;
        p.ready(c.timeout)?;
        subscribers.push(p);
    }
    let cpu0 = sys::cpu_time_ns(b.pid)?;
    let mut args = role_args("pub");
    args.extend([s("--receivers"), s(subs)]);
    let mut publ = c.role(args, name("publisher"))?;
    let p: PubOut = publ.result(c.timeout)?;
    let mut last = 0;
    for sp in &mut subscribers {
        let r: SubOut = sp.result(c.timeout)?;
        anyhow::ensure!(
            r.count == count,
            "subscriber reported {} of {count}",
            r.count
        );
        last = last.max(r.last_ns);
    }
    let cpu1 = sys::cpu_time_ns(b.pid)?;
    let deliveries = count * u64::from(subs);
    let secs = last.saturating_sub(p.start_ns).max(1) as f64 / 1e9;
    Ok((
        deliveries as f64 / secs,
        (cpu1 - cpu0) as f64 / deliveries as f64,
    ))
}
