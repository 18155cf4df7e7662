//! The bridge's connection: the client options from the `nats` section,
//! the task that connects, subscribes and sends, and replacing the
//! connection when a reload changes the section.
//!
//! async-nats reconnects by itself within one server list; a reload that
//! changes `servers`, `prefix`, `name`, the auth or `tls` (or `buffer`)
//! makes the bridge close its connection and open one with the new
//! settings. What local clients emit meanwhile waits in the bridge's
//! queue (up to `buffer`), and goes to the new connection. Before the old
//! connection is dropped, what was handed to it gets one flush (at most
//! [`STOP_DRAIN`]); what it still held is no longer counted against
//! `buffer` (lost with it, receivers see the hole as `nc-gap`).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{NatsBridge, CLIENT_CAPACITY, MAX_RECONNECT_DELAY, STOP_DRAIN};
use crate::config::{Config, NatsAuth, NatsConfig};
use crate::hub::Hub;

/// Why a connection's task ended.
pub(super) enum Halt {
    /// The daemon is stopping.
    Stop,
    /// A reload changed the connection settings.
    Reconnect,
}

impl NatsBridge {
    /// The client options for the `nats` section in force.
    pub fn options(&self) -> Result<async_nats::ConnectOptions, String> {
        self.options_for(&self.cfg())
    }

    /// The client options for `cfg`: auth, TLS, reconnect policy, event
    /// counters (files it names are read here, so a bad one is an error
    /// before anything changes).
    fn options_for(&self, cfg: &NatsConfig) -> Result<async_nats::ConnectOptions, String> {
        let connects = self.connects.clone();
        let disconnects = self.disconnects.clone();
        let slow = self.slow.clone();
        // A creds file builds its own options (JWT and signer); the other
        // settings are added on top of them.
        let base = match &cfg.auth {
            Some(NatsAuth::CredsFile(p)) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read nats.credsfile {}: {e}", p.display()))?;
                async_nats::ConnectOptions::with_credentials(&text)
                    .map_err(|e| format!("nats.credsfile {}: {e}", p.display()))?
            }
            _ => async_nats::ConnectOptions::new(),
        };
        let mut o = base
            .name(
                cfg.name
                    .clone()
                    .unwrap_or_else(|| format!("netcluster {}", self.nodename)),
            )
            .retry_on_initial_connect()
            .max_reconnects(None)
            // The list is in order of preference (the site's own server
            // first); async-nats would otherwise shuffle it.
            .retain_servers_order()
            // Our own publications need not come back (the receive state
            // would drop them anyway).
            .no_echo()
            .client_capacity(CLIENT_CAPACITY)
            .reconnect_delay_callback(|n| {
                (Duration::from_millis(100) * n.min(100) as u32).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |e| {
                match e {
                    async_nats::Event::Connected => {
                        connects.fetch_add(1, Ordering::Relaxed);
                    }
                    async_nats::Event::Disconnected => {
                        disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    async_nats::Event::SlowConsumer(_) => {
                        slow.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                async {}
            });
        match &cfg.auth {
            Some(NatsAuth::UserPassword { user, password }) => {
                o = o.user_and_password(user.clone(), password.clone())
            }
            Some(NatsAuth::Token(t)) => o = o.token(t.clone()),
            Some(NatsAuth::CredsFile(_)) => {}
            Some(NatsAuth::NkeyFile(p)) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read nats.nkeyfile {}: {e}", p.display()))?;
                let seed = text
                    .lines()
                    .map(str::trim)
                    .find(|l| l.starts_with('S'))
                    .ok_or_else(|| format!("nats.nkeyfile {} holds no seed", p.display()))?;
                o = o.nkey(seed.to_string());
            }
            None => {}
        }
        if let Some(tls) = &cfg.tls {
            if let Some(ca) = &tls.ca {
                o = o.add_root_certificates(ca.clone());
            }
            if let (Some(c), Some(k)) = (&tls.cert, &tls.key) {
                o = o.add_client_certificate(c.clone(), k.clone());
            }
        }
        Ok(o)
    }

    /// Checks a reload's `nats` section before anything changes (the files
    /// it names are read; an error names the key).
    pub fn check_reload(&self, cfg: &Config) -> Result<(), String> {
        let nats = cfg.nats.as_ref().ok_or("nats section missing")?;
        self.options_for(nats).map(|_| ())
    }

    /// Takes a reloaded `nats` section: when the connection settings
    /// changed, the bridge reconnects with them (see the module docs).
    pub fn reconfigure(&self, cfg: &Config) {
        let Some(nats) = cfg.nats.as_ref() else {
            return;
        };
        if **self.cfg.borrow() == *nats {
            return;
        }
        tracing::info!(servers = ?nats.servers, prefix = %nats.prefix, "NATS settings changed: reconnecting");
        *self.cfg.borrow_mut() = Rc::new(nats.clone());
        self.reconnect.notify_one();
    }

    /// The bridge task: one connection after the other (a reload may ask
    /// for a new one) until the daemon stops.
    pub async fn run(self: Rc<Self>, hub: Rc<Hub>) {
        loop {
            match self.connection(&hub).await {
                Halt::Stop => return,
                Halt::Reconnect => self.retire().await,
            }
        }
    }

    /// Connects with the settings in force, subscribes, and sends what is
    /// queued, until stopped or told to reconnect.
    async fn connection(self: &Rc<Self>, hub: &Rc<Hub>) -> Halt {
        let cfg = self.cfg();
        let client = match self.options_for(&cfg) {
            Ok(opts) => tokio::select! {
                biased;
                _ = self.stop.notified() => return Halt::Stop,
                _ = self.reconnect.notified() => return Halt::Reconnect,
                c = opts.connect(cfg.servers.clone()) => c.map_err(|e| e.to_string()),
            },
            Err(e) => Err(e),
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                // Only a reload can mend this.
                tracing::error!("NATS bridge not connected: {e}");
                return tokio::select! {
                    biased;
                    _ = self.stop.notified() => Halt::Stop,
                    _ = self.reconnect.notified() => Halt::Reconnect,
                };
            }
        };
        *self.client.borrow_mut() = Some(client.clone());
        self.max_payload.set(client.server_info().max_payload);
        self.update_subscriptions(hub);
        loop {
            tokio::select! {
                biased;
                _ = self.stop.notified() => return Halt::Stop,
                _ = self.reconnect.notified() => return Halt::Reconnect,
                _ = self.wake.notified() => {}
            }
            if let Err(h) = self.send_queued(&client).await {
                return h;
            }
        }
    }

    /// Drops the current connection (after one bounded flush) and its
    /// subscriptions; what it held no longer counts against `buffer`.
    async fn retire(&self) {
        for (_, h) in self.subs.borrow_mut().drain() {
            h.task.abort();
        }
        let old = self.client.borrow_mut().take();
        if let Some(old) = old {
            let connected = matches!(
                old.connection_state(),
                async_nats::connection::State::Connected
            );
            if connected {
                let _ = tokio::time::timeout(STOP_DRAIN, old.flush()).await;
            }
        }
        self.queued
            .set(self.queued.get() - self.inflight.replace(0));
        self.max_payload.set(0);
        // The prefix may have changed: subjects are built afresh.
        self.names.borrow_mut().clear();
        self.names_len.set(0);
        self.room.notify_waiters();
        // What waits in the queue goes to the new connection.
        self.wake.notify_one();
    }
}
