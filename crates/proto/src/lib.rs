//! netcluster-proto: the sans-IO core of netcluster.
//!
//! Everything here is pure: byte layouts, decoders and encoders, and the
//! state machines that decide what happens to a message. Nothing here opens
//! a socket, spawns a task or reads a clock; callers pass bytes and time in
//! and take bytes and decisions out, which keeps every rule testable in
//! memory and deterministic.
//!
//! - [`frame`]: the native local protocol between clients and the daemon.
//! - [`legacy`]: the seed's NUL-terminated JSON packets.
//! - [`router`]: channels, propagation rules and subscription filtering.
//! - [`names`]: what a valid channel or event name is.
//! - [`net`]: datagrams between daemons and the network state machine
//!   (batching, fragmentation, ordering, peers, heartbeats).
//! - [`nats`]: how messages look on NATS (subjects, escaping, headers)
//!   and the per-origin receive state of the NATS bridge.
//! - [`varint`]: LEB128 integers used by the frames.
#![warn(missing_docs)]

pub mod frame;
pub mod legacy;
pub mod names;
pub mod nats;
pub mod net;
pub mod router;
pub mod varint;
