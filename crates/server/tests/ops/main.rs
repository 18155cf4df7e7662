//! Operating ncserver: SIGHUP reloads, systemd notifications, the HTTP
//! endpoint and its metrics, JSON logs. Each test runs the real binary.
//! (Unix: signals and NOTIFY_SOCKET are Unix things.)
#![cfg(unix)]

mod daemon;
mod http;
mod logs;
mod notify;
mod sighup;
