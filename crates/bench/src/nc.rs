//! The netcluster side of each workload, driven through the public client
//! library exactly as an application would: `Client::builder(..)
//! .socket_dir(..).echo(false).connect()`, `emit_bytes`, `on` (throughput:
//! a handler runs on the connection's task for every message),
//! `subscribe` (ping-pong: a `Stream` the caller awaits) and `flush`.
//!
//! Each role runs on a single-threaded tokio runtime: one process, one
//! thread, like the hand-written peer clients, and no cross-thread wake-ups
//! on the latency path.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use netcluster::Client;
use tokio::sync::Notify;

use crate::outcome::{LatencyOut, PubOut, SubOut};
use crate::payload::{self, Checker, Progress};
use crate::sys::monotonic_ns;

/// The channel every netcluster workload uses (the script's config has it).
pub const CHANNEL: &str = "bench";

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")
}

/// Set (to a pool size in bytes) by the large-message rows: the roles
/// then use shared memory (`ClientBuilder::shared_memory`).
pub const SHM_ENV: &str = "NCBENCH_SHM";

/// Set (to anything) by the large-message rows' loan variant: the
/// publisher builds each payload in a loaned slot (`Client::loan`, then
/// `emit_loan`) instead of copying it in with `emit_bytes`. It writes the
/// whole payload of every message in place: the sequence number, then the
/// filler over the rest (a producer making its data where subscribers
/// read it; nothing is left over from an earlier message in the slot).
pub const LOAN_ENV: &str = "NCBENCH_LOAN";

/// Set (to a size in bytes) for A/B runs of the library's output bound:
/// the roles then use `ClientBuilder::max_pending(bytes)` instead of the
/// default. `bench/run.sh` does not set it.
pub const MAX_PENDING_ENV: &str = "NCBENCH_MAX_PENDING";

async fn connect(dir: &Path, name: &str) -> Result<Client> {
    let mut b = Client::builder(CHANNEL)
        .socket_dir(dir)
        .echo(false)
        .name(name);
    if let Some(bytes) = std::env::var(SHM_ENV).ok().and_then(|v| v.parse().ok()) {
        b = b.shared_memory(bytes);
    }
    if let Some(bytes) = std::env::var(MAX_PENDING_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
    {
        b = b.max_pending(bytes);
    }
    b.connect().await.with_context(|| {
        format!(
            "connecting to netcluster channel {CHANNEL} in {}",
            dir.display()
        )
    })
}

/// What the throughput handler shares with the waiting task.
struct SubState {
    checker: Checker,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    error: Mutex<Option<String>>,
    done: Notify,
}

/// Receives `count` messages of `size` bytes on `subject`, checking order
/// and count; calls `ready` once subscribed.
pub fn subscriber(
    dir: &Path,
    subject: &str,
    count: u64,
    size: usize,
    timeout: Duration,
    ready: &mut dyn FnMut(),
) -> Result<SubOut> {
    runtime()?.block_on(async {
        let client = connect(dir, "ncbench-sub").await?;
        let st = Arc::new(SubState {
            checker: Checker::new(size, count),
            first_ns: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            error: Mutex::new(None),
            done: Notify::new(),
        });
        let s = st.clone();
        client
            .on(subject, move |m| match s.checker.check(m.payload()) {
                Ok(Progress::More(1)) => s.first_ns.store(monotonic_ns(), Ordering::Relaxed),
                Ok(Progress::More(_)) => {}
                Ok(Progress::Done) => {
                    s.last_ns.store(monotonic_ns(), Ordering::Relaxed);
                    if count == 1 {
                        s.first_ns.store(monotonic_ns(), Ordering::Relaxed);
                    }
                    s.done.notify_one();
                }
                Err(e) => {
                    let mut err = s.error.lock().unwrap_or_else(|p| p.into_inner());
                    if err.is_none() {
                        *err = Some(e);
                        s.done.notify_one();
                    }
                }
            })
            .await
            .context("subscribing")?;
        ready();
        let waited = tokio::time::timeout(timeout, st.done.notified()).await;
        if let Some(e) = st.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bail!("netcluster subscriber: {e}");
        }
        if waited.is_err() {
            bail!(
                "netcluster subscriber: timed out after {timeout:?}: {}",
                st.checker.finish().unwrap_err()
            );
        }
        st.checker.finish().map_err(|e| anyhow!(e))?;
        drop(client);
        Ok(SubOut {
            count,
            first_ns: st.first_ns.load(Ordering::Relaxed),
            last_ns: st.last_ns.load(Ordering::Relaxed),
        })
    })
}

/// Emits `count` messages of `size` bytes on `subject`, then waits until
/// the daemon has handled them all (`flush`).
pub fn publisher(dir: &Path, subject: &str, count: u64, size: usize) -> Result<PubOut> {
    runtime()?.block_on(async {
        let client = connect(dir, "ncbench-pub").await?;
        let mut p = payload::new(size);
        let loan = std::env::var_os(LOAN_ENV).is_some();
        let start_ns = monotonic_ns();
        for seq in 0..count {
            if loan {
                let mut l = client.loan(size).await.context("loan")?;
                payload::write(&mut l, seq);
                client.emit_loan(subject, l).await.context("emit")?;
                continue;
            }
            payload::set_seq(&mut p, seq);
            client.emit_bytes(subject, &p).await.context("emit")?;
        }
        client.flush().await.context("flush")?;
        let end_ns = monotonic_ns();
        client.disconnect().await.context("disconnect")?;
        Ok(PubOut {
            count,
            start_ns,
            end_ns,
        })
    })
}

/// Answers `count` messages on `ping` with the same payload on `pong`.
pub fn ponger(dir: &Path, count: u64, size: usize, ready: &mut dyn FnMut()) -> Result<()> {
    runtime()?.block_on(async {
        let client = connect(dir, "ncbench-pong").await?;
        let mut sub = client.subscribe("ping").await.context("subscribing")?;
        ready();
        let checker = Checker::new(size, count);
        for _ in 0..count {
            let m = sub
                .recv()
                .await
                .ok_or_else(|| anyhow!("connection closed: {:?}", client.closed_reason()))?;
            checker
                .check(m.payload())
                .map_err(|e| anyhow!("ponger: {e}"))?;
            client.emit_bytes("pong", m.payload()).await?;
        }
        client.flush().await?;
        Ok(())
    })
}

/// Sends `warmup + count` pings one at a time, each after the previous
/// pong, and returns the round-trip times of the last `count`.
pub fn pinger(
    dir: &Path,
    count: u64,
    warmup: u64,
    size: usize,
    timeout: Duration,
) -> Result<LatencyOut> {
    runtime()?.block_on(async {
        let client = connect(dir, "ncbench-ping").await?;
        let mut sub = client.subscribe("pong").await.context("subscribing")?;
        let total = warmup + count;
        let checker = Checker::new(size, total);
        let mut p = payload::new(size);
        let mut rtts = Vec::with_capacity(count as usize);
        // The deadline is kept by a watchdog thread, not a tokio timer: a
        // pending timer makes the runtime walk its timer wheel and read the
        // clock on every park (about 1,200 instructions per round trip under
        // callgrind), a cost the raw clients' deadline check does not have.
        let what = format!("netcluster pinger timed out after {timeout:?}");
        std::thread::spawn(move || {
            std::thread::sleep(timeout);
            eprintln!("ncbench: error: {what}");
            std::process::exit(2);
        });
        let run = async {
            for seq in 0..total {
                payload::set_seq(&mut p, seq);
                let t0 = Instant::now();
                client.emit_bytes("ping", &p).await?;
                let m = sub
                    .recv()
                    .await
                    .ok_or_else(|| anyhow!("connection closed: {:?}", client.closed_reason()))?;
                let dt = t0.elapsed();
                checker
                    .check(m.payload())
                    .map_err(|e| anyhow!("pinger: {e}"))?;
                if seq >= warmup {
                    rtts.push(dt.as_nanos() as u64);
                }
            }
            Ok::<_, anyhow::Error>(())
        };
        run.await?;
        Ok(LatencyOut::from_samples(rtts))
    })
}

/// Opens `clients` idle connections, calls `ready`, then holds them until
/// `hold` returns (it runs on a blocking thread).
pub fn idle(
    dir: &Path,
    clients: u32,
    ready: &mut dyn FnMut(),
    hold: impl FnOnce() + Send + 'static,
) -> Result<()> {
    runtime()?.block_on(async {
        let mut all = Vec::with_capacity(clients as usize);
        for _ in 0..clients {
            all.push(connect(dir, "ncbench-idle").await?);
        }
        ready();
        tokio::task::spawn_blocking(hold).await?;
        drop(all);
        Ok(())
    })
}
