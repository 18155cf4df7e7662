//! Which subjects the bridge subscribes to on NATS, kept in step with the
//! config (at start and on reload) and, with `nats.narrow`, with the events
//! local clients listen to.
//!
//! By default each local channel with `acceptfromnats` gets one
//! subscription, `{prefix}.{channel}.*`. With `narrow`, a channel gets one
//! subscription per event its local clients listen to (none while nobody
//! listens), updated as clients subscribe, unsubscribe and leave; it falls
//! back to the channel wildcard when a client listens to `*` or to
//! `nc-gap` (gap reports need every message of an origin: a channel
//! subscribed by event cannot tell a message it did not ask for from one
//! lost), when the channel copies its messages to other channels
//! (`propagatetochannels`: their clients' interest counts too), or past
//! [`MAX_EVENT_SUBJECTS`] events. A subscription that goes is dropped at
//! once and a new one counts from the server's confirmation, so a message
//! published in that round trip may be missed (when the channel is
//! subscribed whole, receivers see it as `nc-gap`).

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use netcluster_proto::nats as wire;
use rustc_hash::FxHashSet;

use super::{NatsBridge, Sub};
use crate::conn::GAP_EVENT;
use crate::hub::Hub;

/// Most NATS subscriptions one channel gets when narrowed to its events;
/// past it the channel is subscribed whole (`{prefix}.{channel}.*`).
pub const MAX_EVENT_SUBJECTS: usize = 32;

impl NatsBridge {
    /// Takes the channel settings of the hub's config and subscribes to
    /// what is wanted now (see the module docs), dropping subscriptions no
    /// longer wanted (at start, on reload, and as local interest changes).
    pub fn update_subscriptions(self: &Rc<Self>, hub: &Rc<Hub>) {
        self.set_channels(&hub.config());
        *self.hub.borrow_mut() = Rc::downgrade(hub);
        let Some(client) = self.client.borrow().clone() else {
            return; // run() calls again once connected
        };
        let cfg = self.cfg();
        let mut want: HashMap<String, ()> = HashMap::new();
        let mut narrowed = FxHashSet::default();
        for ch in self.accepted.borrow().iter() {
            match self.wanted_events(hub, ch, cfg.narrow) {
                None => {
                    want.insert(wire::subject::channel_wildcard(&cfg.prefix, ch), ());
                }
                Some(events) => {
                    narrowed.insert(ch.clone());
                    for e in events {
                        want.insert(wire::subject(&cfg.prefix, ch, &e), ());
                    }
                }
            }
        }
        *self.narrowed.borrow_mut() = narrowed;
        let mut subs = self.subs.borrow_mut();
        subs.retain(|subject, h| {
            let keep = want.contains_key(subject);
            if !keep {
                h.task.abort();
            }
            keep
        });
        for (subject, ()) in want {
            if subs.contains_key(&subject) {
                continue;
            }
            let ready = Rc::new(Cell::new(false));
            // Unconstrained: the NATS client's task reads up to tokio's
            // budget of socket reads per turn (many thousand messages) into
            // the subscription's queue, and drops what does not fit; the
            // listener must drain all of it each turn, not a budget's worth.
            let task = tokio::task::spawn_local(tokio::task::unconstrained(self.clone().listen(
                hub.clone(),
                client.clone(),
                subject.clone(),
                ready.clone(),
            )));
            let task = task.abort_handle();
            subs.insert(subject, Sub { task, ready });
        }
    }

    /// The events to subscribe to on `channel`, or `None` for all of them
    /// (see the module docs).
    fn wanted_events(&self, hub: &Hub, channel: &str, narrow: bool) -> Option<Vec<String>> {
        if !narrow {
            return None;
        }
        let router = hub.router.borrow();
        let id = router.channel(channel)?;
        if router.targets(id).next().is_some() {
            return None;
        }
        let events = router.listened_events(id)?;
        if events.len() > MAX_EVENT_SUBJECTS || events.contains(&GAP_EVENT) {
            return None;
        }
        Some(events.into_iter().map(str::to_string).collect())
    }

    /// Local interest in `channel` changed: with `narrow`, the
    /// subscriptions follow.
    pub fn interest_changed(&self, channel: &str) {
        if self.stopped.get()
            || !self.cfg.borrow().narrow
            || !self.accepted.borrow().contains(channel)
        {
            return;
        }
        let (Some(me), Some(hub)) = (self.me.upgrade(), self.hub.borrow().upgrade()) else {
            return;
        };
        me.update_subscriptions(&hub);
    }
}
