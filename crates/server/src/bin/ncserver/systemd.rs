//! Telling systemd what the daemon is doing (`sd_notify(3)`), for units of
//! `Type=notify`: `READY=1` once every channel is bound, `RELOADING=1`
//! (with `MONOTONIC_USEC`, which systemd 253+ wants) and `READY=1` around a
//! SIGHUP reload, `STOPPING=1`, a `STATUS=` line, and `WATCHDOG=1` pings
//! when the unit sets `WatchdogSec=`. Outside systemd (no `NOTIFY_SOCKET`)
//! every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends one notification; a failure is logged, never fatal (the daemon
/// serves whether or not its manager listens).
fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// Every channel is bound: the daemon serves.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// The daemon is stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The daemon is alive (after it answered a ping).
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC` (as sd_notify(3)
/// recommends), if systemd set one for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    (sd_notify::watchdog_enabled(false, &mut usec) && usec > 0)
        .then(|| Duration::from_micros(usec / 2))
}
