//! netcluster-server: the netcluster daemon as a library, and `ncserver`.
//!
//! [`Server::start`] runs a daemon for a [`config::Config`] on its own
//! thread; the `ncserver` binary is argument parsing around it. The message
//! path lives in [`hub`] and the per-connection code in `session` and
//! `conn`; wire formats and routing rules come from `netcluster-proto`.
//! The HTTP endpoint (`/metrics`, `/healthz`, `/api/status`) lives in
//! `http`, above the hub; what it reads beyond the per-connection counters
//! (health, departed clients' totals) is kept in `stats`, below it.
#![warn(missing_docs)]

mod access;
pub mod config;
mod conn;
mod control;
mod early;
mod entropy;
mod http;
mod hub;
mod iface;
mod link;
mod nats;
mod net;
mod outq;
mod partial;
mod server;
mod session;
#[cfg(target_os = "linux")]
mod shm;
mod stats;
mod tap;
mod timefmt;

pub use server::{is_root, Server, ServerHandle, StartError};
