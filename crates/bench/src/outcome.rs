//! What benchmark roles report (subscriber, publisher and round-trip
//! results) and which broker a role runs against: plain data shared by
//! the role runners and the report code, kept apart so that the runners
//! of each broker need not import each other.

use serde::{Deserialize, Serialize};

/// A broker under test.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// netcluster's `ncserver`, through the `netcluster` client library.
    Nc,
    /// The same `ncserver`, through the raw-protocol client of
    /// `ncraw` (the yardstick for the library, issue 15).
    #[value(name = "nc-raw")]
    #[serde(rename = "nc_raw")]
    NcRaw,
    /// nats-server, NATS text protocol over TCP loopback.
    Nats,
    /// The same nats-server through the `async-nats` client (publish and
    /// subscribe roles only: the NATS bridge rows' second yardstick).
    #[value(name = "async-nats")]
    #[serde(rename = "async_nats")]
    AsyncNats,
    /// redis-server, RESP over its Unix socket.
    Redis,
}

impl System {
    /// Every system, in table order.
    pub const ALL: [System; 5] = [
        System::Nc,
        System::NcRaw,
        System::Nats,
        System::AsyncNats,
        System::Redis,
    ];

    /// The name in tables.
    pub fn label(self) -> &'static str {
        match self {
            System::Nc => "netcluster",
            System::NcRaw => "netcluster (raw)",
            System::Nats => "NATS",
            System::AsyncNats => "NATS (async-nats)",
            System::Redis => "Redis",
        }
    }

    /// The name on the command line.
    pub fn arg(self) -> &'static str {
        match self {
            System::Nc => "nc",
            System::NcRaw => "nc-raw",
            System::Nats => "nats",
            System::AsyncNats => "async-nats",
            System::Redis => "redis",
        }
    }
}

/// What a subscriber reports.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SubOut {
    /// Messages received (checked: all, in order).
    pub count: u64,
    /// `CLOCK_MONOTONIC` at the first message.
    pub first_ns: u64,
    /// `CLOCK_MONOTONIC` at the last message.
    pub last_ns: u64,
}

/// What a publisher reports.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PubOut {
    /// Messages sent.
    pub count: u64,
    /// `CLOCK_MONOTONIC` just before the first message.
    pub start_ns: u64,
    /// `CLOCK_MONOTONIC` once the broker confirmed it had them all.
    pub end_ns: u64,
}

/// Round-trip statistics, in nanoseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct LatencyOut {
    /// Round trips measured (after warm-up).
    pub samples: u64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Fastest.
    pub min_ns: u64,
    /// Slowest.
    pub max_ns: u64,
    /// Mean.
    pub mean_ns: u64,
}

impl LatencyOut {
    /// Statistics of round-trip samples (nearest-rank percentiles).
    pub fn from_samples(mut v: Vec<u64>) -> LatencyOut {
        if v.is_empty() {
            return LatencyOut {
                samples: 0,
                p50_ns: 0,
                p99_ns: 0,
                p999_ns: 0,
                min_ns: 0,
                max_ns: 0,
                mean_ns: 0,
            };
        }
        v.sort_unstable();
        // Nearest rank, in integers (per mille) so 99.9 % of 1000 is 999.
        let rank = |permille: usize| {
            let r = (v.len() * permille).div_ceil(1000);
            v[r.clamp(1, v.len()) - 1]
        };
        LatencyOut {
            samples: v.len() as u64,
            p50_ns: rank(500),
            p99_ns: rank(990),
            p999_ns: rank(999),
            min_ns: v[0],
            max_ns: v[v.len() - 1],
            mean_ns: v.iter().sum::<u64>() / v.len() as u64,
        }
    }
}
