//! What one suite run measured and the rows of the table (each with its unit
//! and whether higher or lower is better). Saved as JSON so the report can be
//! rendered again without measuring. The targets judged against the
//! numbers are in `targets`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::roles::{LatencyOut, System};

mod targets;

pub use targets::{library_targets, natsbridge_targets, targets, TargetCheck, Verdict};

/// Whether a bigger number is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Throughput.
    Higher,
    /// Latency, CPU, memory.
    Lower,
}

/// How a value is stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Messages per second.
    MsgPerSec,
    /// Deliveries per second (summed over subscribers).
    DeliveriesPerSec,
    /// Nanoseconds, shown in µs.
    Micros,
    /// Nanoseconds of broker CPU per delivered message.
    NanosPerDelivery,
    /// KiB, shown in MiB.
    MiB,
    /// Bytes per second, shown in MB/s.
    MBPerSec,
    /// A count of messages.
    Messages,
}

impl Unit {
    /// The unit as printed in the table.
    pub fn label(self) -> &'static str {
        match self {
            Unit::MsgPerSec => "msg/s",
            Unit::DeliveriesPerSec => "deliveries/s",
            Unit::Micros => "µs",
            Unit::NanosPerDelivery => "ns/delivery",
            Unit::MiB => "MiB",
            Unit::MBPerSec => "MB/s",
            Unit::Messages => "messages",
        }
    }

    /// A stored value in this unit, for a table cell.
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::MsgPerSec | Unit::DeliveriesPerSec => {
                if v >= 1e6 {
                    format!("{:.2} M", v / 1e6)
                } else if v >= 1e4 {
                    format!("{:.0} k", v / 1e3)
                } else {
                    // The 64 KiB NATS bridge rows: a few thousand.
                    format!("{:.1} k", v / 1e3)
                }
            }
            Unit::Micros => format!("{:.1}", v / 1e3),
            Unit::NanosPerDelivery => format!("{v:.0}"),
            Unit::MiB => format!("{:.1}", v / 1024.0),
            Unit::MBPerSec => format!("{:.0}", v / 1e6),
            Unit::Messages => format!("{v:.0}"),
        }
    }

    /// A compact form for chart labels.
    pub fn short(self, v: f64) -> String {
        match self {
            Unit::MsgPerSec | Unit::DeliveriesPerSec => {
                if v >= 1e6 {
                    format!("{:.1}M", v / 1e6)
                } else {
                    format!("{:.0}k", v / 1e3)
                }
            }
            Unit::Micros => format!("{:.0}µs", v / 1e3),
            Unit::NanosPerDelivery => format!("{v:.0}ns"),
            Unit::MiB => format!("{:.0}MiB", v / 1024.0),
            Unit::MBPerSec => format!("{:.0}MB/s", v / 1e6),
            Unit::Messages => format!("{v:.0}"),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Key in [`Results::values`].
    pub id: &'static str,
    /// Row label.
    pub label: &'static str,
    /// Label under the chart's bar group (two short lines).
    pub chart: [&'static str; 2],
    /// Unit.
    pub unit: Unit,
    /// Direction.
    pub better: Better,
    /// Shown as "pending: …" until the workload exists (none is now).
    pub pending: Option<&'static str>,
}

const fn m(
    id: &'static str,
    label: &'static str,
    chart: [&'static str; 2],
    unit: Unit,
    better: Better,
) -> Metric {
    Metric {
        id,
        label,
        chart,
        unit,
        better,
        pending: None,
    }
}

/// The table's rows, in order.
pub const METRICS: &[Metric] = &[
    m(
        "tp_1to1_16",
        "1→1 throughput, 16 B",
        ["1→1", "16 B"],
        Unit::MsgPerSec,
        Better::Higher,
    ),
    m(
        "tp_1to1_256",
        "1→1 throughput, 256 B",
        ["1→1", "256 B"],
        Unit::MsgPerSec,
        Better::Higher,
    ),
    m(
        "tp_1to4_256",
        "1→4 fan-out, 256 B",
        ["1→4", "256 B"],
        Unit::DeliveriesPerSec,
        Better::Higher,
    ),
    m(
        "rtt_p50",
        "ping-pong RTT p50, unpinned",
        ["RTT p50", "2 CPUs"],
        Unit::Micros,
        Better::Lower,
    ),
    m(
        "rtt_p99",
        "ping-pong RTT p99, unpinned",
        ["RTT p99", "2 CPUs"],
        Unit::Micros,
        Better::Lower,
    ),
    m(
        "rtt_p999",
        "ping-pong RTT p99.9, unpinned",
        ["RTT p99.9", "2 CPUs"],
        Unit::Micros,
        Better::Lower,
    ),
    m(
        "rtt1_p50",
        "ping-pong RTT p50, one CPU",
        ["RTT p50", "1 CPU"],
        Unit::Micros,
        Better::Lower,
    ),
    m(
        "rtt1_p99",
        "ping-pong RTT p99, one CPU",
        ["RTT p99", "1 CPU"],
        Unit::Micros,
        Better::Lower,
    ),
    m(
        "rtt1_p999",
        "ping-pong RTT p99.9, one CPU",
        ["RTT p99.9", "1 CPU"],
        Unit::Micros,
        Better::Lower,
    ),
    m(
        "cpu_1to1_16",
        "broker CPU per delivery, 1→1 16 B",
        ["CPU/msg", "1→1 16 B"],
        Unit::NanosPerDelivery,
        Better::Lower,
    ),
    m(
        "cpu_1to1_256",
        "broker CPU per delivery, 1→1 256 B",
        ["CPU/msg", "1→1 256 B"],
        Unit::NanosPerDelivery,
        Better::Lower,
    ),
    m(
        "cpu_1to4_256",
        "broker CPU per delivery, 1→4 256 B",
        ["CPU/msg", "1→4 256 B"],
        Unit::NanosPerDelivery,
        Better::Lower,
    ),
    m(
        "rss_idle",
        "broker RSS, idle",
        ["RSS", "idle"],
        Unit::MiB,
        Better::Lower,
    ),
    m(
        "rss_clients",
        "broker RSS, 1000 idle clients",
        ["RSS 1000", "clients"],
        Unit::MiB,
        Better::Lower,
    ),
    m(
        "rss_peak",
        "broker peak RSS (VmHWM) over the runs",
        ["RSS", "peak"],
        Unit::MiB,
        Better::Lower,
    ),
    m(
        "mcast_64",
        "multicast between 2 netns, 64 B",
        ["mcast", "64 B"],
        Unit::MsgPerSec,
        Better::Higher,
    ),
    m(
        "mcast_64k",
        "multicast between 2 netns, 64 KiB",
        ["mcast", "64 KiB"],
        Unit::MBPerSec,
        Better::Higher,
    ),
    m(
        "mcast_64_key",
        "multicast between 2 netns, 64 B, sealed (key)",
        ["mcast key", "64 B"],
        Unit::MsgPerSec,
        Better::Higher,
    ),
    m(
        "mcast_64k_key",
        "multicast between 2 netns, 64 KiB, sealed (key)",
        ["mcast key", "64 KiB"],
        Unit::MBPerSec,
        Better::Higher,
    ),
    m(
        "mcast_64_loss",
        "multicast between 2 netns, 64 B, 10% loss",
        ["mcast loss", "64 B"],
        Unit::MsgPerSec,
        Better::Higher,
    ),
    m(
        "mcast_64k_loss",
        "multicast between 2 netns, 64 KiB, 10% loss",
        ["mcast loss", "64 KiB"],
        Unit::MBPerSec,
        Better::Higher,
    ),
    m(
        "natsbridge_64",
        "NATS bridge, 2 daemons via nats-server, 64 B (NATS columns: native pub→sub)",
        ["NATS bridge", "64 B"],
        Unit::MsgPerSec,
        Better::Higher,
    ),
    m(
        "natsbridge_64k",
        "NATS bridge, 2 daemons via nats-server, 64 KiB (NATS columns: native pub→sub)",
        ["NATS bridge", "64 KiB"],
        Unit::MsgPerSec,
        Better::Higher,
    ),
    m(
        "natsbridge_64_lost",
        "NATS bridge, 64 B: messages not delivered per run",
        ["bridge lost", "64 B"],
        Unit::Messages,
        Better::Lower,
    ),
    m(
        "natsbridge_64k_lost",
        "NATS bridge, 64 KiB: messages not delivered per run",
        ["bridge lost", "64 KiB"],
        Unit::Messages,
        Better::Lower,
    ),
    // Large messages (issue 15, docs/SHM.md): netcluster's library column
    // publishes and reads through shared memory, the raw client's through
    // the socket.
    m(
        "tp_1to1_64k",
        "1→1 throughput, 64 KiB (netcluster: shared memory, loan API)",
        ["1→1", "64 KiB"],
        Unit::DeliveriesPerSec,
        Better::Higher,
    ),
    m(
        "tp_1to4_64k",
        "1→4 fan-out, 64 KiB (netcluster: shared memory, loan API)",
        ["1→4", "64 KiB"],
        Unit::DeliveriesPerSec,
        Better::Higher,
    ),
    m(
        "bw_1to1_1m",
        "1→1 payload bandwidth, 1 MiB (netcluster: shared memory, loan API)",
        ["1→1", "1 MiB"],
        Unit::MBPerSec,
        Better::Higher,
    ),
    // The same runs with netcluster copying each payload in (`emit_bytes`);
    // the peers' cells repeat the rows above.
    m(
        "tp_1to1_64k_copy",
        "1→1 throughput, 64 KiB (netcluster: shared memory, copy-in emit_bytes)",
        ["1→1 copy-in", "64 KiB"],
        Unit::DeliveriesPerSec,
        Better::Higher,
    ),
    m(
        "tp_1to4_64k_copy",
        "1→4 fan-out, 64 KiB (netcluster: shared memory, copy-in emit_bytes)",
        ["1→4 copy-in", "64 KiB"],
        Unit::DeliveriesPerSec,
        Better::Higher,
    ),
    m(
        "bw_1to1_1m_copy",
        "1→1 payload bandwidth, 1 MiB (netcluster: shared memory, copy-in emit_bytes)",
        ["1→1 copy-in", "1 MiB"],
        Unit::MBPerSec,
        Better::Higher,
    ),
    m(
        "memcpy_1m",
        "memcpy bandwidth, 1 MiB blocks (yardstick, this machine)",
        ["memcpy", "1 MiB"],
        Unit::MBPerSec,
        Better::Higher,
    ),
    m(
        "cpu_1to1_64k",
        "broker CPU per delivery, 1→1 64 KiB",
        ["CPU 1→1", "64 KiB"],
        Unit::NanosPerDelivery,
        Better::Lower,
    ),
    m(
        "cpu_1to4_64k",
        "broker CPU per delivery, 1→4 64 KiB",
        ["CPU 1→4", "64 KiB"],
        Unit::NanosPerDelivery,
        Better::Lower,
    ),
    m(
        "cpu_1to1_1m",
        "broker CPU per delivery, 1→1 1 MiB",
        ["CPU 1→1", "1 MiB"],
        Unit::NanosPerDelivery,
        Better::Lower,
    ),
];

/// Looks up a row by id.
pub fn metric(id: &str) -> &'static Metric {
    METRICS
        .iter()
        .find(|m| m.id == id)
        .unwrap_or_else(|| panic!("unknown metric {id}"))
}

/// The machine the run was on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs available (`nproc`).
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Versions of the brokers and the toolchain, by program.
    pub versions: BTreeMap<String, String>,
}

/// Sizes of the run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Plan {
    /// Messages per 1→1 16 B run.
    pub count_16: u64,
    /// Messages per 1→1 256 B run.
    pub count_256: u64,
    /// Messages published per 1→4 run (each subscriber gets them all).
    pub count_fanout: u64,
    /// Subscribers of the fan-out run.
    pub fanout: u32,
    /// Repetitions of each throughput run (the table shows the median).
    pub reps: u32,
    /// Measured round trips per ping-pong run.
    pub rtt_count: u64,
    /// Round trips before measuring.
    pub rtt_warmup: u64,
    /// Ping payload size in bytes.
    pub rtt_size: usize,
    /// Idle clients for the memory row.
    pub idle_clients: u32,
    /// Deadline of one role process, in seconds.
    pub child_timeout_s: u64,
    /// Messages per 64 B multicast run.
    #[serde(default)]
    pub mcast_small: u64,
    /// Messages per 64 KiB multicast run.
    #[serde(default)]
    pub mcast_large: u64,
    /// Messages per 64 B NATS bridge run (and its native NATS yardstick).
    #[serde(default)]
    pub natsbridge_small: u64,
    /// Messages per 64 KiB NATS bridge run (and its native yardstick).
    #[serde(default)]
    pub natsbridge_large: u64,
    /// Messages per 64 KiB run of the large-message rows (1 MiB runs
    /// send a sixteenth of it: the same bytes).
    #[serde(default)]
    pub count_large: u64,
}

impl Plan {
    /// The sizes `bench/run.sh` uses: each run one to four seconds on the
    /// 2-core machine of issue 4, the whole suite about two minutes.
    pub fn full() -> Plan {
        Plan {
            count_16: 8_000_000,
            count_256: 4_000_000,
            count_fanout: 2_000_000,
            fanout: 4,
            reps: 5,
            rtt_count: 20_000,
            rtt_warmup: 2_000,
            rtt_size: 16,
            idle_clients: 1000,
            child_timeout_s: 60,
            mcast_small: 4_000_000,
            mcast_large: 10_000,
            natsbridge_small: 1_000_000,
            natsbridge_large: 10_000,
            count_large: 40_000,
        }
    }

    /// A run of a second or so in all, for tests of the harness.
    pub fn tiny() -> Plan {
        Plan {
            count_16: 20_000,
            count_256: 10_000,
            count_fanout: 5_000,
            fanout: 4,
            reps: 1,
            rtt_count: 200,
            rtt_warmup: 20,
            rtt_size: 16,
            idle_clients: 50,
            child_timeout_s: 30,
            mcast_small: 20_000,
            mcast_large: 200,
            natsbridge_small: 20_000,
            natsbridge_large: 200,
            count_large: 320,
        }
    }
}

/// One measurement of one repetition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// Metric id.
    pub metric: String,
    /// Broker.
    pub system: System,
    /// Repetition (from 1).
    pub rep: u32,
    /// Value in the metric's stored unit.
    pub value: f64,
}

/// Everything a suite run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// When it ran (UTC).
    pub when: String,
    /// The netcluster commit measured, if known.
    pub commit: Option<String>,
    /// Where it ran.
    pub machine: Machine,
    /// Sizes.
    pub plan: Plan,
    /// Brokers measured.
    pub systems: Vec<System>,
    /// Metric id → broker → value (medians for repeated runs).
    pub values: BTreeMap<String, BTreeMap<System, f64>>,
    /// Every repetition.
    pub runs: Vec<Run>,
    /// Raw Unix socketpair round trips: "unpinned" and "one_cpu".
    pub socketpair: BTreeMap<String, LatencyOut>,
}

impl Results {
    /// A run with no values yet.
    pub fn new(
        when: String,
        commit: Option<String>,
        machine: Machine,
        plan: Plan,
        systems: Vec<System>,
    ) -> Self {
        Results {
            when,
            commit,
            machine,
            plan,
            systems,
            values: BTreeMap::new(),
            runs: Vec::new(),
            socketpair: BTreeMap::new(),
        }
    }

    /// The value of a metric for a broker.
    pub fn get(&self, id: &str, s: System) -> Option<f64> {
        self.values.get(id).and_then(|v| v.get(&s)).copied()
    }

    /// Sets a value.
    pub fn set(&mut self, id: &str, s: System, v: f64) {
        self.values.entry(id.to_string()).or_default().insert(s, v);
    }

    /// The best peer's value of a metric (NATS through either client, or
    /// Redis), if any.
    pub fn best_peer(&self, id: &str) -> Option<(System, f64)> {
        let better = metric(id).better;
        [System::Nats, System::AsyncNats, System::Redis]
            .into_iter()
            .filter_map(|s| self.get(id, s).map(|v| (s, v)))
            .reduce(|a, b| match better {
                Better::Higher if b.1 > a.1 => b,
                Better::Lower if b.1 < a.1 => b,
                _ => a,
            })
    }

    /// netcluster ÷ best peer for a metric.
    pub fn ratio(&self, id: &str) -> Option<f64> {
        let nc = self.get(id, System::Nc)?;
        let (_, peer) = self.best_peer(id)?;
        (peer > 0.0).then(|| nc / peer)
    }
}

/// The median of some values (upper median for an even count is avoided:
/// the mean of the two middle ones).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests;
