//! The suite: runs every workload against every broker it was given, each
//! role in its own process (this executable, `ncbench ROLE`), and gathers
//! the numbers. The brokers are started and stopped by `bench/run.sh`; the
//! suite only needs their PIDs (for `/proc`) and addresses.
//!
//! Order, chosen so numbers do not disturb each other: idle RSS of the
//! fresh brokers, then with 1000 idle clients (before any run has grown
//! their heaps), then the peak RSS (VmHWM) is reset; throughput runs
//! (repetitions interleaved across brokers, so a noisy moment hits all of
//! them); ping-pong unpinned, then with every process on CPU 0; last, the
//! peak RSS of those runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::mcast;
use crate::results::{median, Machine, Plan, Results, Run};
use crate::roles::{LatencyOut, System};
pub use crate::runner::Broker;
use crate::runner::{s, throughput, Ctx};
use crate::sys;

/// What the suite needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The brokers, in any order.
    pub brokers: Vec<Broker>,
    /// Sizes.
    pub plan: Plan,
    /// netcluster commit, for the report.
    pub commit: Option<String>,
    /// The CPU every process shares in the one-CPU runs.
    pub cpu: usize,
    /// `ncserver`, for the multicast rows (two daemons in network
    /// namespaces; skipped without it or without root).
    pub ncserver: Option<PathBuf>,
}

/// Prints a progress line on standard error.
macro_rules! say {
    ($($t:tt)*) => {{ eprintln!("ncbench: {}", format!($($t)*)); }};
}

/// One ping-pong run, optionally with broker and both clients on `cpu`.
fn pingpong(c: &Ctx, b: &Broker, cpu: Option<usize>) -> Result<LatencyOut> {
    let saved = match cpu {
        Some(n) => Some(sys::pin_process(b.pid, &[n])?),
        None => None,
    };
    let run = (|| {
        let total = c.plan.rtt_count + c.plan.rtt_warmup;
        let mut common = vec![s("--system"), s(b.system.arg()), s("--at"), b.at.clone()];
        if let Some(n) = cpu {
            common.extend([s("--cpu"), s(n)]);
        }
        let where_ = if cpu.is_some() { "one CPU" } else { "unpinned" };
        let mut pong = c.role(
            [
                vec![s("pong")],
                common.clone(),
                vec![s("--count"), s(total), s("--size"), s(c.plan.rtt_size)],
            ]
            .concat(),
            format!("{} ponger ({where_})", b.system.label()),
        )?;
        pong.ready(c.timeout)?;
        let mut ping = c.role(
            [
                vec![s("ping")],
                common,
                vec![
                    s("--count"),
                    s(c.plan.rtt_count),
                    s("--warmup"),
                    s(c.plan.rtt_warmup),
                    s("--size"),
                    s(c.plan.rtt_size),
                    s("--timeout-s"),
                    s(c.timeout.as_secs()),
                ],
            ]
            .concat(),
            format!("{} pinger ({where_})", b.system.label()),
        )?;
        let l: LatencyOut = ping.result(c.timeout)?;
        pong.finish(c.timeout)?;
        Ok(l)
    })();
    if let Some(saved) = saved {
        sys::restore(b.pid, saved)?;
    }
    run
}

fn socketpair(c: &Ctx, cpu: Option<usize>) -> Result<LatencyOut> {
    let mut args = vec![
        s("raw-ping"),
        s("--count"),
        s(c.plan.rtt_count),
        s("--warmup"),
        s(c.plan.rtt_warmup),
        s("--size"),
        s(c.plan.rtt_size),
    ];
    if let Some(n) = cpu {
        args.extend([s("--cpu"), s(n)]);
    }
    c.role(args, s("socketpair pinger"))?.result(c.timeout)
}

fn idle_rss(c: &Ctx, b: &Broker) -> Result<u64> {
    let mut p = c.role(
        vec![
            s("idle"),
            s("--system"),
            s(b.system.arg()),
            s("--at"),
            b.at.clone(),
            s("--clients"),
            s(c.plan.idle_clients),
        ],
        format!("{} idle clients", b.system.label()),
    )?;
    p.ready(c.timeout)?;
    // Let the broker finish whatever each new client started (logging,
    // buffers) before reading its memory.
    std::thread::sleep(Duration::from_millis(300));
    let kib = sys::mem(b.pid)?.rss_kib;
    p.release();
    p.finish(c.timeout)?;
    Ok(kib)
}

/// Runs the whole suite.
pub fn run(opts: Options) -> Result<Results> {
    let exe = std::env::current_exe().context("locating ncbench")?;
    let c = Ctx {
        exe,
        plan: opts.plan,
        timeout: Duration::from_secs(opts.plan.child_timeout_s),
    };
    let mut brokers = opts.brokers.clone();
    brokers.sort_by_key(|b| b.system);
    let mut r = Results::new(
        utc_now(),
        opts.commit.clone(),
        machine(),
        opts.plan,
        brokers.iter().map(|b| b.system).collect(),
    );
    let plan = opts.plan;
    // Only the large-message rows (a quick look at them, issue 15).
    if std::env::var_os(crate::large::ONLY_ENV).is_some() {
        crate::large::rows(&c, &brokers, &mut r)?;
        return Ok(r);
    }

    // The raw client's row shares the library's daemon: memory is a
    // property of the broker, measured once, on the library's row.
    let memory_rows = |b: &&Broker| b.system != System::NcRaw;
    for b in brokers.iter().filter(memory_rows) {
        let m = sys::mem(b.pid)?;
        r.set("rss_idle", b.system, m.rss_kib as f64);
        say!(
            "{}: idle RSS {:.1} MiB",
            b.system.label(),
            m.rss_kib as f64 / 1024.0
        );
    }

    // Idle clients on the fresh brokers: after the runs their heaps keep
    // what the runs allocated, which is not what idle clients cost.
    for b in brokers.iter().filter(memory_rows) {
        let kib = idle_rss(&c, b).with_context(|| {
            format!(
                "{} with {} idle clients",
                b.system.label(),
                plan.idle_clients
            )
        })?;
        r.set("rss_clients", b.system, kib as f64);
        say!(
            "{}: RSS with {} idle clients {:.1} MiB",
            b.system.label(),
            plan.idle_clients,
            kib as f64 / 1024.0
        );
        // The peak row is about the runs: start it afresh.
        sys::reset_peak(b.pid)?;
    }

    let workloads = [
        ("1to1_16", 1, 16, plan.count_16),
        ("1to1_256", 1, 256, plan.count_256),
        ("1to4_256", plan.fanout, 256, plan.count_fanout),
    ];
    for (id, subs, size, count) in workloads {
        let mut tp: BTreeMap<System, Vec<f64>> = BTreeMap::new();
        let mut cpu: BTreeMap<System, Vec<f64>> = BTreeMap::new();
        for rep in 1..=plan.reps {
            for b in &brokers {
                let (rate, ns) = throughput(&c, b, subs, size, count).with_context(|| {
                    format!(
                        "{} throughput 1→{subs} {size} B, run {rep}",
                        b.system.label()
                    )
                })?;
                say!(
                    "{:<10} 1→{subs} {size:>3} B run {rep}: {:>6.2} M deliveries/s, broker {:>4.0} ns CPU/delivery",
                    b.system.label(),
                    rate / 1e6,
                    ns
                );
                tp.entry(b.system).or_default().push(rate);
                cpu.entry(b.system).or_default().push(ns);
                for (metric, value) in [(format!("tp_{id}"), rate), (format!("cpu_{id}"), ns)] {
                    r.runs.push(Run {
                        metric,
                        system: b.system,
                        rep,
                        value,
                    });
                }
            }
        }
        for (sys, v) in tp {
            r.set(&format!("tp_{id}"), sys, median(&v));
        }
        for (sys, v) in cpu {
            r.set(&format!("cpu_{id}"), sys, median(&v));
        }
    }

    crate::large::rows(&c, &brokers, &mut r)?;

    for (prefix, key, cpu) in [
        ("rtt", "unpinned", None),
        ("rtt1", "one_cpu", Some(opts.cpu)),
    ] {
        let raw = socketpair(&c, cpu).with_context(|| format!("socketpair round trips ({key})"))?;
        say!(
            "socketpair  RTT {key:<9}: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs",
            raw.p50_ns as f64 / 1e3,
            raw.p99_ns as f64 / 1e3,
            raw.p999_ns as f64 / 1e3
        );
        r.socketpair.insert(key.into(), raw);
        for b in &brokers {
            let l = pingpong(&c, b, cpu)
                .with_context(|| format!("{} ping-pong ({key})", b.system.label()))?;
            say!(
                "{:<10} RTT {key:<9}: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs",
                b.system.label(),
                l.p50_ns as f64 / 1e3,
                l.p99_ns as f64 / 1e3,
                l.p999_ns as f64 / 1e3
            );
            r.set(&format!("{prefix}_p50"), b.system, l.p50_ns as f64);
            r.set(&format!("{prefix}_p99"), b.system, l.p99_ns as f64);
            r.set(&format!("{prefix}_p999"), b.system, l.p999_ns as f64);
        }
    }

    for b in brokers.iter().filter(memory_rows) {
        let m = sys::mem(b.pid)?;
        r.set("rss_peak", b.system, m.hwm_kib as f64);
        say!(
            "{}: peak RSS {:.1} MiB",
            b.system.label(),
            m.hwm_kib as f64 / 1024.0
        );
    }

    match (&opts.ncserver, mcast::unavailable()) {
        (None, _) => say!("multicast rows skipped: no --ncserver given"),
        (Some(_), Some(why)) => say!("multicast rows skipped: {why}"),
        (Some(ncserver), None) => {
            let o = mcast::Options {
                ncserver: ncserver.clone(),
                exe: c.exe.clone(),
                count_small: plan.mcast_small,
                count_large: plan.mcast_large,
                timeout: c.timeout,
            };
            multicast(&o, plan.reps.min(MCAST_REPS), &mut r)?;
        }
    }

    let nats = brokers.iter().find(|b| b.system == System::Nats);
    match (&opts.ncserver, nats) {
        (Some(ncserver), Some(nats)) => {
            let o = crate::natsbridge::Options {
                ncserver: ncserver.clone(),
                exe: c.exe.clone(),
                nats: nats.at.clone(),
                count_small: plan.natsbridge_small,
                count_large: plan.natsbridge_large,
                timeout: c.timeout,
            };
            crate::natsbridge::rows(&o, plan.reps.min(MCAST_REPS), &mut r)?;
        }
        _ => say!("NATS bridge rows skipped: they need --ncserver and a NATS broker"),
    }
    Ok(r)
}

/// Repetitions of each multicast row (each starts two daemons).
const MCAST_REPS: u32 = 3;

/// Runs the multicast rows `reps` times each; the table shows the median.
pub fn multicast(o: &mcast::Options, reps: u32, r: &mut Results) -> Result<()> {
    for v in mcast::VARIANTS {
        let mut values = Vec::new();
        for rep in 1..=reps {
            let (msgs, bytes) =
                mcast::run_one(o, v).with_context(|| format!("multicast {}, run {rep}", v.id))?;
            say!(
                "multicast {:<15} run {rep}: {:>6.2} M msg/s, {:>7.1} MB/s",
                v.id,
                msgs / 1e6,
                bytes / 1e6
            );
            let value = if v.size > 1024 { bytes } else { msgs };
            values.push(value);
            r.runs.push(Run {
                metric: v.id.into(),
                system: System::Nc,
                rep,
                value,
            });
        }
        r.set(v.id, System::Nc, median(&values));
    }
    Ok(())
}

fn first_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines().next().map(|l| l.trim().to_string())
}

/// Facts about this machine and the programs measured.
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut versions = BTreeMap::new();
    if let Some(v) = first_line("nats-server", &["--version"]) {
        versions.insert(
            "nats-server".into(),
            v.trim_start_matches("nats-server: ").into(),
        );
    }
    if let Some(v) = first_line("redis-server", &["--version"]) {
        let v = v
            .split_whitespace()
            .find_map(|w| w.strip_prefix("v="))
            .unwrap_or(&v)
            .to_string();
        versions.insert("redis-server".into(), v);
    }
    if let Some(v) = first_line("rustc", &["--version"]) {
        versions.insert("rustc".into(), v.trim_start_matches("rustc ").into());
    }
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        kernel,
        versions,
    }
}

/// The time now as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

/// Formats seconds since the epoch as `YYYY-MM-DD HH:MM UTC` (civil
/// calendar from the day count, as in Howard Hinnant's `civil_from_days`).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400 + 3_660), "2000-02-29 01:01 UTC");
        assert_eq!(utc(1_767_225_600), "2026-01-01 00:00 UTC");
    }
}
