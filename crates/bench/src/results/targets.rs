//! The targets judged against one run's numbers: each target's
//! verdict (met, not met, pending, unknown) and the figures behind it, for
//! the daemon against its peers and for the client library against the raw
//! client. The numbers themselves live in the parent module.

use serde::Serialize;

use super::{metric, Results};
use crate::roles::System;

/// Whether a target holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Holds.
    Met,
    /// Does not hold.
    NotMet,
    /// Not measurable yet (network layer).
    Pending,
    /// A number it needs is missing (a peer was not run).
    Unknown,
}

impl Verdict {
    /// The word in the report.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "NOT MET",
            Verdict::Pending => "pending",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One of the targets, judged.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    /// The target as the issue states it.
    pub target: String,
    /// Met or not.
    pub verdict: Verdict,
    /// The numbers behind the verdict.
    pub detail: String,
}

fn judge(ok: Option<bool>) -> Verdict {
    match ok {
        Some(true) => Verdict::Met,
        Some(false) => Verdict::NotMet,
        None => Verdict::Unknown,
    }
}

/// The targets against a run.
pub fn targets(r: &Results) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    let us = |ns: f64| format!("{:.1} µs", ns / 1e3);
    for (id, what) in [
        ("tp_1to1_16", "1→1 throughput 16 B ≥ 1.5 × the faster peer"),
        (
            "tp_1to1_256",
            "1→1 throughput 256 B ≥ 1.5 × the faster peer",
        ),
        ("tp_1to4_256", "1→4 fan-out 256 B ≥ 1.5 × the faster peer"),
    ] {
        let ratio = r.ratio(id);
        let detail = match (r.get(id, System::Nc), r.best_peer(id)) {
            (Some(nc), Some((s, p))) => format!(
                "{:.2}× ({} vs {} {})",
                nc / p,
                metric(id).unit.format(nc),
                s.label(),
                metric(id).unit.format(p)
            ),
            _ => "not measured".into(),
        };
        out.push(TargetCheck {
            target: what.into(),
            verdict: judge(ratio.map(|x| x >= 1.5)),
            detail,
        });
    }
    let nc50 = r.get("rtt1_p50", System::Nc);
    let nc99 = r.get("rtt1_p99", System::Nc);
    let peer50 = r.best_peer("rtt1_p50");
    out.push(TargetCheck {
        target: "Round trip p50 on one CPU ≤ 0.7 × the faster peer".into(),
        verdict: judge(r.ratio("rtt1_p50").map(|x| x <= 0.7)),
        detail: match (nc50, peer50) {
            (Some(n), Some((s, p))) => {
                format!("{:.2}× ({} vs {} {})", n / p, us(n), s.label(), us(p))
            }
            _ => "not measured".into(),
        },
    });
    let raw50 = r.socketpair.get("one_cpu").map(|l| l.p50_ns as f64);
    out.push(TargetCheck {
        target: "Round trip p50 on one CPU ≤ 2.5 × the raw socketpair round trip".into(),
        verdict: judge(nc50.zip(raw50).map(|(n, s)| n <= 2.5 * s)),
        detail: match (nc50, raw50) {
            (Some(n), Some(s)) => format!("{:.2}× ({} vs socketpair {})", n / s, us(n), us(s)),
            _ => "not measured".into(),
        },
    });
    out.push(TargetCheck {
        target: "Round trip p99 on one CPU ≤ the faster peer's p50".into(),
        verdict: judge(nc99.zip(peer50).map(|(n, (_, p))| n <= p)),
        detail: match (nc99, peer50) {
            (Some(n), Some((s, p))) => format!("p99 {} vs {} p50 {}", us(n), s.label(), us(p)),
            _ => "not measured".into(),
        },
    });
    let cpu: Vec<(&str, f64)> = ["cpu_1to1_16", "cpu_1to1_256", "cpu_1to4_256"]
        .iter()
        .filter_map(|id| r.get(id, System::Nc).map(|v| (metric(id).label, v)))
        .collect();
    out.push(TargetCheck {
        target: "Daemon CPU per delivered message ≤ 150 ns".into(),
        verdict: if cpu.is_empty() {
            Verdict::Unknown
        } else {
            judge(Some(cpu.iter().all(|(_, v)| *v <= 150.0)))
        },
        detail: cpu
            .iter()
            .map(|(l, v)| {
                format!(
                    "{v:.0} ns ({})",
                    l.trim_start_matches("broker CPU per delivery, ")
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    });
    for (id, limit, what) in [
        ("rss_idle", 8.0, "Daemon RSS ≤ 8 MiB idle"),
        (
            "rss_clients",
            64.0,
            "Daemon RSS ≤ 64 MiB with 1000 idle clients",
        ),
    ] {
        let v = r.get(id, System::Nc).map(|k| k / 1024.0);
        out.push(TargetCheck {
            target: what.into(),
            verdict: judge(v.map(|v| v <= limit)),
            detail: v.map_or("not measured".into(), |v| format!("{v:.1} MiB")),
        });
    }
    out.extend(library_targets(r));
    let mc = r.get("mcast_64", System::Nc);
    out.push(TargetCheck {
        target: "Multicast between two namespaces ≥ 1 M messages/s at 64 B".into(),
        verdict: judge(mc.map(|v| v >= 1e6)),
        detail: mc.map_or("not measured (needs root)".into(), |v| {
            format!("{:.2} M msg/s", v / 1e6)
        }),
    });
    out.extend(natsbridge_targets(r));
    out
}

/// Issue 14's target: the bridge costs at most 20 % against a native NATS
/// client's publish→subscribe through the same server. Judged against
/// the hand-written batched client (column "NATS", the fastest native
/// client); the same check against async-nats (the client the bridge is
/// built on) is listed beside it.
pub fn natsbridge_targets(r: &Results) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    for (id, size) in [("natsbridge_64", "64 B"), ("natsbridge_64k", "64 KiB")] {
        let lost = r.get(&format!("{id}_lost"), System::Nc);
        for (native, what) in [
            (
                System::Nats,
                "native NATS publish→subscribe (hand-written batched client)",
            ),
            (System::AsyncNats, "async-nats publish→subscribe"),
        ] {
            let pair = r.get(id, System::Nc).zip(r.get(id, native));
            out.push(TargetCheck {
                target: format!("NATS bridge {size} ≥ 80 % of {what}"),
                verdict: judge(pair.map(|(b, n)| b >= 0.8 * n)),
                detail: pair.map_or("not measured".into(), |(b, n)| {
                    let u = metric(id).unit;
                    format!(
                        "{:.0} % ({} vs {} {}; {} not delivered)",
                        100.0 * b / n,
                        u.format(b),
                        native.label(),
                        u.format(n),
                        lost.map_or("?".into(), |l| format!("{l:.0}"))
                    )
                }),
            });
        }
    }
    out
}

/// Issue 15's targets: the client library against the raw-protocol
/// client on the same daemon, in the same run.
pub fn library_targets(r: &Results) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    for (id, what) in [
        ("tp_1to1_16", "Library 1→1 16 B ≥ 90 % of the raw client's"),
        (
            "tp_1to1_256",
            "Library 1→1 256 B ≥ 90 % of the raw client's",
        ),
        (
            "tp_1to4_256",
            "Library 1→4 256 B ≥ 90 % of the raw client's",
        ),
    ] {
        let pair = r.get(id, System::Nc).zip(r.get(id, System::NcRaw));
        out.push(TargetCheck {
            target: what.into(),
            verdict: judge(pair.map(|(lib, raw)| lib >= 0.9 * raw)),
            detail: pair.map_or("not measured".into(), |(lib, raw)| {
                let u = metric(id).unit;
                format!(
                    "{:.0} % ({} vs raw {})",
                    100.0 * lib / raw,
                    u.format(lib),
                    u.format(raw)
                )
            }),
        });
    }
    let pair = r
        .get("rtt1_p50", System::Nc)
        .zip(r.get("rtt1_p50", System::NcRaw));
    out.push(TargetCheck {
        target: "Library round trip p50 on one CPU ≤ the raw client's + 1 µs".into(),
        verdict: judge(pair.map(|(lib, raw)| lib <= raw + 1000.0)),
        detail: pair.map_or("not measured".into(), |(lib, raw)| {
            format!(
                "+{:.1} µs ({:.1} µs vs raw {:.1} µs)",
                (lib - raw) / 1e3,
                lib / 1e3,
                raw / 1e3
            )
        }),
    });
    out
}
