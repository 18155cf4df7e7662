//! netcluster-server: the netcluster daemon as a library, and the `ncserver` binary.
#![warn(missing_docs)]

pub mod config;
