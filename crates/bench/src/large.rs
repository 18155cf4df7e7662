//! The large-message rows (issue 15, docs/SHM.md): 1→1 and 1→4 at
//! 64 KiB, 1→1 at 1 MiB, for every broker, each with the broker's CPU per
//! delivery, plus a memcpy yardstick measured in this process on the same
//! machine in the same run. netcluster's library column runs with shared
//! memory (the roles see [`crate::nc::SHM_ENV`]); its raw-client column
//! shows the same daemon through the socket.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::results::{median, Results, Run};
use crate::roles::System;
use crate::runner::{throughput, Broker, Ctx};

/// Set (to anything): `ncbench suite` runs only these rows.
pub const ONLY_ENV: &str = "NCBENCH_ONLY_LARGE";

/// The pool each netcluster role creates (the daemon's default `shmbytes`).
const POOL_BYTES: usize = 64 << 20;

/// Runs the rows (repetitions interleaved across brokers) into `r`.
pub(crate) fn rows(c: &Ctx, brokers: &[Broker], r: &mut Results) -> Result<()> {
    let plan = c.plan;
    if plan.count_large == 0 {
        return Ok(());
    }
    let kib64 = 64 * 1024;
    let mib = 1024 * 1024;
    let workloads = [
        ("1to1_64k", 1, kib64, plan.count_large),
        ("1to4_64k", plan.fanout, kib64, plan.count_large / 2),
        ("1to1_1m", 1, mib, (plan.count_large / 16).max(1)),
    ];
    let mut memcpy = Vec::new();
    for (id, subs, size, count) in workloads {
        let mut tp: BTreeMap<System, Vec<f64>> = BTreeMap::new();
        let mut cpu: BTreeMap<System, Vec<f64>> = BTreeMap::new();
        for rep in 1..=plan.reps {
            if id == "1to1_1m" {
                memcpy.push(memcpy_bandwidth(size));
            }
            for b in brokers {
                let shm = b.system == System::Nc;
                if shm {
                    std::env::set_var(crate::nc::SHM_ENV, POOL_BYTES.to_string());
                }
                let res = throughput(c, b, subs, size, count);
                std::env::remove_var(crate::nc::SHM_ENV);
                let (rate, ns) = res.with_context(|| {
                    format!(
                        "{} throughput 1→{subs} {size} B, run {rep}",
                        b.system.label()
                    )
                })?;
                eprintln!(
                    "ncbench: {:<10} 1→{subs} {:>4} KiB run {rep}: {:>8.0} deliveries/s ({:.2} GB/s), broker {:>6.0} ns CPU/delivery{}",
                    b.system.label(),
                    size / 1024,
                    rate,
                    rate * size as f64 / 1e9,
                    ns,
                    if shm { " (shared memory)" } else { "" }
                );
                tp.entry(b.system).or_default().push(rate);
                cpu.entry(b.system).or_default().push(ns);
                let key = if id == "1to1_1m" {
                    "bw_1to1_1m".to_string()
                } else {
                    format!("tp_{id}")
                };
                let value = if id == "1to1_1m" {
                    rate * size as f64
                } else {
                    rate
                };
                for (metric, value) in [(key, value), (format!("cpu_{id}"), ns)] {
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
            if id == "1to1_1m" {
                let bytes: Vec<f64> = v.iter().map(|x| x * size as f64).collect();
                r.set("bw_1to1_1m", sys, median(&bytes));
            } else {
                r.set(&format!("tp_{id}"), sys, median(&v));
            }
        }
        for (sys, v) in cpu {
            r.set(&format!("cpu_{id}"), sys, median(&v));
        }
    }
    if !memcpy.is_empty() {
        let m = median(&memcpy);
        eprintln!("ncbench: memcpy of 1 MiB blocks: {:.2} GB/s", m / 1e9);
        r.set("memcpy_1m", System::Nc, m);
    }
    Ok(())
}

/// Bytes per second `copy_from_slice` moves in `block`-byte copies
/// between two 64 MiB buffers (larger than the caches, as a pool is),
/// over 2 GiB in all.
fn memcpy_bandwidth(block: usize) -> f64 {
    const AREA: usize = 64 << 20;
    const TOTAL: usize = 2 << 30;
    let src = vec![7u8; AREA];
    let mut dst = vec![0u8; AREA];
    let start = Instant::now();
    let mut off = 0;
    let mut moved = 0;
    while moved < TOTAL {
        dst[off..off + block].copy_from_slice(&src[off..off + block]);
        std::hint::black_box(&mut dst);
        off = (off + block) % AREA;
        moved += block;
    }
    moved as f64 / start.elapsed().as_secs_f64()
}
