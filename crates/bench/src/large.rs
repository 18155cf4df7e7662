//! The large-message rows (issue 15, docs/SHM.md): 1→1 and 1→4 at
//! 64 KiB, 1→1 at 1 MiB, for every broker, each with the broker's CPU per
//! delivery, plus a memcpy yardstick measured in this process on the same
//! machine in the same run. netcluster's library column runs with shared
//! memory (the roles see [`crate::nc::SHM_ENV`]) and builds each payload
//! in a loaned slot ([`crate::nc::LOAN_ENV`]); right after it, in the same
//! repetition, the library runs again copying each payload in with
//! `emit_bytes`, for the `_copy` rows. Its raw-client column shows the
//! same daemon through the socket.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::results::{median, Results, Run};
use crate::roles::System;
use crate::runner::{throughput, Broker, Ctx};

/// Set (to anything): `ncbench suite` runs only these rows.
pub const ONLY_ENV: &str = "NCBENCH_ONLY_LARGE";

/// The pool each netcluster role creates: 64 slots of 64 KiB, 4 of 1 MiB.
/// The pool is the publisher's window: it runs ahead of its subscribers
/// by up to the whole pool, so with a pool far larger than the caches
/// every slot is cold when it is written again and read. With the
/// daemon's largest (`shmbytes`, 64 MiB) the rows ran 1.5–3× slower on
/// the 2-CPU machine of issue 15 (PERFORMANCE.md, "Large messages").
pub const POOL_BYTES: usize = 4 << 20;

/// Set (to a size in bytes): the pool the netcluster roles create instead
/// of [`POOL_BYTES`] (to measure what the pool's size does).
pub const POOL_ENV: &str = "NCBENCH_POOL_BYTES";

fn pool_bytes() -> String {
    std::env::var(POOL_ENV).unwrap_or_else(|_| POOL_BYTES.to_string())
}

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
    // Row key (`tp_1to1_64k`, …) → netcluster's copy-in figures.
    let mut copy: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (id, subs, size, count) in workloads {
        let mut tp: BTreeMap<System, Vec<f64>> = BTreeMap::new();
        let mut cpu: BTreeMap<System, Vec<f64>> = BTreeMap::new();
        for rep in 1..=plan.reps {
            if id == "1to1_1m" {
                memcpy.push(memcpy_bandwidth(size));
            }
            for b in brokers {
                // netcluster's library runs twice, back to back: through
                // the loan API (the row) and copying in with `emit_bytes`
                // (the `_copy` row), which goes first every other
                // repetition.
                let variants: &[Variant] = if b.system != System::Nc {
                    &[Variant::Plain]
                } else if rep % 2 == 1 {
                    &[Variant::Loan, Variant::Copy]
                } else {
                    &[Variant::Copy, Variant::Loan]
                };
                for &v in variants {
                    let (rate, ns) = run(c, b, v, subs, size, count, rep)?;
                    let key = match id {
                        "1to1_1m" => "bw_1to1_1m".to_string(),
                        _ => format!("tp_{id}"),
                    };
                    let value = match id {
                        "1to1_1m" => rate * size as f64,
                        _ => rate,
                    };
                    let mut push = |metric: String, value: f64| {
                        r.runs.push(Run {
                            metric,
                            system: b.system,
                            rep,
                            value,
                        })
                    };
                    if v == Variant::Copy {
                        push(format!("{key}_copy"), value);
                        copy.entry(key).or_default().push(value);
                        continue;
                    }
                    push(key, value);
                    push(format!("cpu_{id}"), ns);
                    tp.entry(b.system).or_default().push(rate);
                    cpu.entry(b.system).or_default().push(ns);
                }
            }
        }
        for (sys, v) in &tp {
            if id == "1to1_1m" {
                let bytes: Vec<f64> = v.iter().map(|x| x * size as f64).collect();
                r.set("bw_1to1_1m", *sys, median(&bytes));
            } else {
                r.set(&format!("tp_{id}"), *sys, median(v));
            }
        }
        for (sys, v) in cpu {
            r.set(&format!("cpu_{id}"), sys, median(&v));
        }
    }
    // The copy-in rows: netcluster's figure, and the peers' of the same
    // runs (they have no such distinction), so the ratio column reads.
    for (key, v) in copy {
        let row = format!("{key}_copy");
        r.set(&row, System::Nc, median(&v));
        for sys in [System::NcRaw, System::Nats, System::Redis] {
            if let Some(x) = r.get(&key, sys) {
                r.set(&row, sys, x);
            }
        }
    }
    if !memcpy.is_empty() {
        let m = median(&memcpy);
        eprintln!("ncbench: memcpy of 1 MiB blocks: {:.2} GB/s", m / 1e9);
        r.set("memcpy_1m", System::Nc, m);
    }
    Ok(())
}

/// How netcluster's library publishes in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// A peer (or the raw client): its own way.
    Plain,
    /// Shared memory, payloads built in loaned slots ([`crate::nc::LOAN_ENV`]).
    Loan,
    /// Shared memory, payloads copied in by `emit_bytes`.
    Copy,
}

/// One throughput run of `b` in variant `v`; prints it.
fn run(
    c: &Ctx,
    b: &Broker,
    v: Variant,
    subs: u32,
    size: usize,
    count: u64,
    rep: u32,
) -> Result<(f64, f64)> {
    if v != Variant::Plain {
        std::env::set_var(crate::nc::SHM_ENV, pool_bytes());
    }
    if v == Variant::Loan {
        std::env::set_var(crate::nc::LOAN_ENV, "1");
    }
    let res = throughput(c, b, subs, size, count);
    std::env::remove_var(crate::nc::SHM_ENV);
    std::env::remove_var(crate::nc::LOAN_ENV);
    let (rate, ns) = res.with_context(|| {
        format!(
            "{} throughput 1→{subs} {size} B ({v:?}), run {rep}",
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
        match v {
            Variant::Plain => "",
            Variant::Loan => " (shared memory, loan)",
            Variant::Copy => " (shared memory, copy-in emit_bytes)",
        }
    );
    Ok((rate, ns))
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
