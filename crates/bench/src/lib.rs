//! ncbench: netcluster side by side with NATS and Redis (issue 4).
//!
//! One executable plays every part: `ncbench suite` runs the workloads
//! and writes the report; the roles it starts (`sub`, `pub`, `ping`,
//! `pong`, `idle`, `raw-ping`, `raw-pong`) are the same executable in
//! separate processes, so publisher, subscribers and broker never share a
//! process. netcluster is driven through its public client library and,
//! as a yardstick for the library, through a raw-protocol client
//! (`ncraw`); NATS and Redis through small hand-written clients with
//! batched writes, NATS also through `async-nats` (`asyncnats`, the
//! second yardstick of the NATS bridge rows); the
//! multicast rows run two daemons in network namespaces (`mcast`). See
//! `docs/PERFORMANCE.md` for the method and `bench/run.sh` for the run.
//!
//! Linux only: it reads `/proc` and sets CPU affinity.
#![cfg(target_os = "linux")]

pub mod asyncnats;
pub mod child;
pub mod cli;
pub mod large;
pub mod mcast;
pub mod nats;
pub mod natsbridge;
pub mod nc;
pub mod ncraw;
pub mod outcome;
pub mod payload;
pub mod report;
pub mod resp;
pub mod results;
pub mod roles;
pub mod runner;
pub mod suite;
pub mod sys;
pub mod wire;
