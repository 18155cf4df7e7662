//! The NATS bridge rows (issue 14): messages per second between two
//! `ncserver` daemons through one `nats-server`, beside a native NATS
//! client's publish→subscribe through the same server.
//!
//! A run starts two daemons on loopback (socket directories in a
//! temporary directory), each with a `nats` section naming the suite's
//! `nats-server` and channel `bench` with `propagatetonats`, and waits
//! until both are connected and subscribed. A `pub` role emits the
//! messages on the first daemon; a `bridge-sub` role on the second counts
//! what arrives. Unlike the other rows' subscriber it does not fail on a
//! hole: the bridge may drop (by design, when NATS is slower than the
//! publisher for longer than `nats.buffer` absorbs), so it reports how
//! many messages arrived (checking that they come in order, each once) and
//! stops once all arrived or nothing came for [`IDLE`]. The row's figure
//! is delivered messages per second, from the publisher's first emit to
//! the last delivery; the messages that never arrived are a row of their
//! own (zero is a figure). There are two native yardsticks, each a
//! publisher and a subscriber process with the same sizes and count on
//! another subject of the same server: the suite's NATS `sub`/`pub` roles
//! (the hand-written batched protocol client, column "NATS"), and the
//! same roles through `async-nats` (column "NATS (async-nats)": the client
//! a Rust program would use, and the one the bridge is built on; see
//! [`crate::asyncnats`]).
//!
//! Everything a run starts (daemons, temporary files) is removed when it
//! ends, also on error; each role has the plan's deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::child::Proc;
use crate::outcome::{PubOut, SubOut};
use crate::payload;
use crate::results::{median, Results, Run};
use crate::roles::System;
use crate::sys::monotonic_ns;

/// The bridge subscriber stops this long after the last message.
pub const IDLE: Duration = Duration::from_secs(2);
/// The receiving daemon's client queue: as large as a run, so the row
/// measures the bridge, not a subscriber sharing two CPUs with both
/// daemons and nats-server (as for the multicast rows).
const SINK_QUEUE: &str = "2GiB";

/// One bridge row.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// Metric id of the throughput row (netcluster: the bridge; NATS:
    /// native publish→subscribe).
    pub id: &'static str,
    /// Metric id of the row of messages that never arrived.
    pub lost_id: &'static str,
    /// Message size.
    pub size: usize,
}

/// The rows, in table order.
pub const VARIANTS: &[Variant] = &[
    Variant {
        id: "natsbridge_64",
        lost_id: "natsbridge_64_lost",
        size: 64,
    },
    Variant {
        id: "natsbridge_64k",
        lost_id: "natsbridge_64k_lost",
        size: 64 << 10,
    },
];

/// What a bridge run needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `ncserver` binary.
    pub ncserver: PathBuf,
    /// This executable (for the roles).
    pub exe: PathBuf,
    /// The suite's nats-server, `host:port`.
    pub nats: String,
    /// Messages per 64 B run.
    pub count_small: u64,
    /// Messages per 64 KiB run.
    pub count_large: u64,
    /// Deadline of each role.
    pub timeout: Duration,
}

impl Options {
    fn count(&self, v: &Variant) -> u64 {
        if v.size > 1024 {
            self.count_large
        } else {
            self.count_small
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Messages emitted.
    pub sent: u64,
    /// Messages delivered on the far daemon.
    pub delivered: u64,
    /// Delivered messages per second.
    pub rate: f64,
    /// What the sending daemon's bridge counted as dropped.
    pub bridge_dropped: u64,
    /// The receiving daemon's bridge: messages reported lost in `nc-gap`s
    /// and the NATS client's slow-consumer events (where the rest went).
    pub receiver_lost: u64,
    /// See `receiver_lost`.
    pub receiver_slow: u64,
}

/// Two daemons bridged through NATS; killed and removed on drop.
struct Pair {
    daemons: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Pair {
    fn drop(&mut self) {
        crate::child::kill_all(&mut self.daemons);
    }
}

impl Pair {
    fn start(o: &Options) -> Result<Pair> {
        let mut pair = Pair {
            daemons: Vec::new(),
            dir: tempfile::Builder::new()
                .prefix("ncbench-natsbridge")
                .tempdir()
                .context("temporary directory")?,
        };
        for i in 0..2 {
            let dir = pair.sockets(i);
            std::fs::create_dir_all(&dir)?;
            let cfg = pair.dir.path().join(format!("host{i}.json"));
            std::fs::write(
                &cfg,
                format!(
                    r#"{{ "nodename": "bridge{i}", "socketdir": "{}", "queuebytes": "{SINK_QUEUE}",
                       "startcontrol": true,
                       "nats": {{ "servers": ["nats://{}"], "prefix": "ncbench" }},
                       "channels": {{ "bench": {{ "propagatetonats": true }} }} }}"#,
                    dir.display(),
                    o.nats
                ),
            )?;
            let log = std::fs::File::create(pair.dir.path().join(format!("host{i}.log")))?;
            let mut cmd = Command::new(&o.ncserver);
            // If this process dies, the kernel kills the daemon too.
            // SAFETY: prctl is async-signal-safe and touches no memory.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd
                .args(["--log", "warn"])
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", o.ncserver.display()))?;
            pair.daemons.push(child);
        }
        let deadline = Instant::now() + o.timeout;
        for i in 0..2 {
            loop {
                let s = nats_status(&pair.sockets(i));
                let ok = s.as_ref().is_some_and(|s| {
                    s["state"] == "connected" && s["subscriptions"].as_u64() >= Some(1)
                });
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    let log = std::fs::read_to_string(pair.dir.path().join(format!("host{i}.log")))
                        .unwrap_or_default();
                    bail!("daemon {i} never connected to NATS ({s:?}); log:\n{log}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(pair)
    }

    /// Socket directory of daemon `i`.
    fn sockets(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("host{i}"))
    }
}

/// The `nats` object of the daemon's `showpeers`, if it answers.
fn nats_status(dir: &Path) -> Option<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let c = netcluster::Client::builder("control")
            .socket_dir(dir)
            .connect()
            .await
            .ok()?;
        let v: serde_json::Value = c.request("nc-control-showpeers", &()).await.ok()?;
        Some(v["nats"].clone())
    })
}

fn role_args(
    role: &str,
    system: &str,
    at: &str,
    subject: &str,
    count: u64,
    size: usize,
) -> Vec<String> {
    [
        role,
        "--system",
        system,
        "--at",
        at,
        "--subject",
        subject,
        "--count",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([count.to_string(), "--size".into(), size.to_string()])
    .collect()
}

/// One bridge run of `v` on a fresh pair of daemons.
pub fn run_bridge(o: &Options, v: &Variant) -> Result<Outcome> {
    let pair = Pair::start(o)?;
    let count = o.count(v);
    let at = |i: usize| pair.sockets(i).display().to_string();
    let sub_args: Vec<String> = [
        "bridge-sub".into(),
        "--at".into(),
        at(1),
        "--count".into(),
        count.to_string(),
        "--size".into(),
        v.size.to_string(),
        "--timeout-s".into(),
        o.timeout.as_secs().to_string(),
    ]
    .into();
    let mut sub = Proc::spawn(&o.exe, &sub_args, format!("{} subscriber", v.id))?;
    sub.ready(o.timeout)?;
    let mut publ = Proc::spawn(
        &o.exe,
        &role_args("pub", "nc", &at(0), "bench", count, v.size),
        format!("{} publisher", v.id),
    )?;
    let p: PubOut = publ.result(o.timeout)?;
    let s: BridgeSubOut = sub.result(o.timeout + IDLE)?;
    let dropped = nats_status(&pair.sockets(0))
        .and_then(|n| n["dropped"].as_u64())
        .unwrap_or(0);
    let far = nats_status(&pair.sockets(1)).unwrap_or_default();
    let secs = s.last_ns.saturating_sub(p.start_ns).max(1) as f64 / 1e9;
    Ok(Outcome {
        sent: count,
        delivered: s.count,
        rate: s.count as f64 / secs,
        bridge_dropped: dropped,
        receiver_lost: far["lost"].as_u64().unwrap_or(0),
        receiver_slow: far["slow_consumer"].as_u64().unwrap_or(0),
    })
}

/// The native clients the bridge is measured against.
pub const NATIVE: [System; 2] = [System::Nats, System::AsyncNats];

/// One native NATS publish→subscribe run with `v`'s size and count
/// through `client` (one of [`NATIVE`]); returns messages per second.
pub fn run_native(o: &Options, v: &Variant, client: System) -> Result<f64> {
    let count = o.count(v);
    let sys = client.arg();
    let mut sub_args = role_args("sub", sys, &o.nats, "natsbridge", count, v.size);
    sub_args.extend(["--timeout-s".into(), o.timeout.as_secs().to_string()]);
    let mut sub = Proc::spawn(&o.exe, &sub_args, format!("{} NATS subscriber", v.id))?;
    sub.ready(o.timeout)?;
    let mut publ = Proc::spawn(
        &o.exe,
        &role_args("pub", sys, &o.nats, "natsbridge", count, v.size),
        format!("{} NATS publisher", v.id),
    )?;
    let p: PubOut = publ.result(o.timeout)?;
    let s: SubOut = sub.result(o.timeout)?;
    anyhow::ensure!(
        s.count == count,
        "NATS subscriber got {} of {count}",
        s.count
    );
    let secs = s.last_ns.saturating_sub(p.start_ns).max(1) as f64 / 1e9;
    Ok(count as f64 / secs)
}

/// What the bridge subscriber reports.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct BridgeSubOut {
    /// Messages received (in order, each once; holes allowed).
    pub count: u64,
    /// `CLOCK_MONOTONIC` at the last message.
    pub last_ns: u64,
}

/// Role `bridge-sub`: receives up to `count` messages of `size` bytes on
/// `subject` through the daemon in `dir`, in order and each once but
/// tolerating holes; stops at `count` or after [`IDLE`] without a message
/// (or at `timeout`).
pub fn subscriber(
    dir: &Path,
    subject: &str,
    count: u64,
    size: usize,
    timeout: Duration,
    ready: &mut dyn FnMut(),
) -> Result<BridgeSubOut> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = netcluster::Client::builder("bench")
            .socket_dir(dir)
            .echo(false)
            .name("ncbench-bridge-sub")
            .connect()
            .await
            .with_context(|| format!("connecting to {}", dir.display()))?;
        struct St {
            got: AtomicU64,
            next: AtomicU64,
            last_ns: AtomicU64,
            error: Mutex<Option<String>>,
        }
        let st = Arc::new(St {
            got: AtomicU64::new(0),
            next: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            error: Mutex::new(None),
        });
        let s = st.clone();
        client
            .on(subject, move |m| {
                let p = m.payload();
                let seq = payload::seq_of(p);
                let want = s.next.load(Ordering::Relaxed);
                let bad = match seq {
                    _ if p.len() != size => Some(format!("{} bytes, expected {size}", p.len())),
                    Some(q) if q < want => {
                        Some(format!("message {q} after {want}: reordered or duplicated"))
                    }
                    None => Some("no sequence number".into()),
                    Some(_) => None,
                };
                if let Some(e) = bad {
                    let mut err = s.error.lock().unwrap_or_else(|p| p.into_inner());
                    err.get_or_insert(e);
                    return;
                }
                s.next.store(seq.unwrap_or(0) + 1, Ordering::Relaxed);
                s.got
                    .store(s.got.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                s.last_ns.store(monotonic_ns(), Ordering::Relaxed);
            })
            .await
            .context("subscribing")?;
        ready();
        let deadline = Instant::now() + timeout;
        let mut seen = (0, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let got = st.got.load(Ordering::Relaxed);
            if got >= count || st.error.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                break;
            }
            if got != seen.0 {
                seen = (got, Instant::now());
            } else if got > 0 && seen.1.elapsed() > IDLE {
                break;
            }
            if Instant::now() > deadline {
                break;
            }
        }
        if let Some(e) = st.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bail!("bridge subscriber: {e}");
        }
        Ok(BridgeSubOut {
            count: st.got.load(Ordering::Relaxed),
            last_ns: st.last_ns.load(Ordering::Relaxed),
        })
    })
}

/// One repetition of `v`: the bridge, then each native client (back to
/// back, so a noisy moment hits all); returns the bridge's outcome and the
/// native rates in [`NATIVE`]'s order, and prints a line about them.
pub fn run_all(o: &Options, v: &Variant, rep: u32) -> Result<(Outcome, [f64; 2])> {
    let b = run_bridge(o, v).with_context(|| format!("NATS bridge {}, run {rep}", v.id))?;
    let mut n = [0.0; 2];
    for (i, c) in NATIVE.into_iter().enumerate() {
        n[i] = run_native(o, v, c)
            .with_context(|| format!("native {} {}, run {rep}", c.label(), v.id))?;
    }
    eprintln!(
        "ncbench: {:<15} run {rep}: bridge {:>8.0} msg/s ({} of {} delivered; dropped by the sender {}, lost on the way {}, slow-consumer events {}), native NATS {:>8.0} msg/s ({:.0} %), async-nats {:>8.0} msg/s ({:.0} %)",
        v.id,
        b.rate,
        b.delivered,
        b.sent,
        b.bridge_dropped,
        b.receiver_lost,
        b.receiver_slow,
        n[0],
        100.0 * b.rate / n[0],
        n[1],
        100.0 * b.rate / n[1],
    );
    Ok((b, n))
}

/// Runs every row `reps` times (see [`run_all`]); the table shows the
/// medians.
pub fn rows(o: &Options, reps: u32, r: &mut Results) -> Result<()> {
    for v in VARIANTS {
        let (mut bridge, mut native, mut asyncn, mut lost) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for rep in 1..=reps {
            let (b, [n, a]) = run_all(o, v, rep)?;
            let l = (b.sent - b.delivered) as f64;
            for (metric, system, value) in [
                (v.id, System::Nc, b.rate),
                (v.id, System::Nats, n),
                (v.id, System::AsyncNats, a),
                (v.lost_id, System::Nc, l),
            ] {
                r.runs.push(Run {
                    metric: metric.into(),
                    system,
                    rep,
                    value,
                });
            }
            bridge.push(b.rate);
            native.push(n);
            asyncn.push(a);
            lost.push(l);
        }
        r.set(v.id, System::Nc, median(&bridge));
        r.set(v.id, System::Nats, median(&native));
        r.set(v.id, System::AsyncNats, median(&asyncn));
        r.set(v.lost_id, System::Nc, median(&lost));
        // The native clients' subscribers check every message arrived.
        r.set(v.lost_id, System::Nats, 0.0);
        r.set(v.lost_id, System::AsyncNats, 0.0);
    }
    Ok(())
}
