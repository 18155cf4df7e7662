//! netcluster: emit and listen to events across processes and machines.
//!
//! A daemon (`ncserver`) owns one local socket per channel. Connect to a
//! channel, then `emit(event, data)` and `on(event, handler)` as with Node's
//! EventEmitter; the daemon routes each message to the channel's other
//! clients, to channels chosen by its rules, and to other machines.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let a = netcluster::Client::connect("A").await?;
//! a.on("log", |msg| println!("{} said {:?}", msg.origin(), msg.json::<String>())).await?;
//! a.emit("log", "TESTE").await?;
//! # Ok(()) }
//! ```
//!
//! Code without async uses [`blocking::Client`], the same client run on a
//! small runtime of its own. Errors are one enum per operation, in
//! [`error`]; each message says what to do.
#![warn(missing_docs)]

pub mod blocking;
mod client;
mod connection;
pub mod error;
mod message;
#[cfg(target_os = "linux")]
mod shm;
mod table;

pub use client::{
    default_socket_dir, Client, ClientBuilder, ListenerId, Loan, Subscription, DEFAULT_MAX_PENDING,
    DEFAULT_OFFLINE_QUEUE, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SUBSCRIPTION_CAPACITY,
};
pub use connection::ConnectionState;
pub use error::{ConnectError, EmitError, FlushError, RequestError, SubscribeError};
pub use message::{Message, Origin};
