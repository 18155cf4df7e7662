//! Routing: which connected clients get a message.
//!
//! The [`Router`] owns the channel table (built from the config's rules), the
//! membership of clients in channels and each client's event subscriptions.
//! It decides, once per message at ingress, the full list of recipients:
//! the other subscribers of the message's channel, then the subscribers of
//! each channel the channel's `propagatetochannels` rule selects (one hop:
//! the target channels' own rules are never applied). Rules never select
//! the [`CONTROL_CHANNEL`]: it carries the daemon's control requests and
//! answers, not application traffic, so `true` means every other channel
//! but `control` and a regex that matches `control` skips it. It knows
//! nothing of sockets; the server maps [`Slot`]s to connections.

use regex::Regex;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::frame::WILDCARD;
pub use crate::names::CONTROL_CHANNEL;

/// A connected client's dense index, chosen by the server.
pub type Slot = u32;

/// A channel's index in the router. Ids of removed channels may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(u32);

impl ChannelId {
    /// The index as a `usize`, for tables kept beside the router.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Which other channels a channel's messages are copied to.
#[derive(Debug, Clone)]
pub enum Propagation {
    /// `false`: none.
    None,
    /// `true`: every other channel.
    All,
    /// A regex or list of regexes: every other channel whose name any of them
    /// matches (unanchored search, like JavaScript's `RegExp.test`).
    Patterns(Vec<Regex>),
}

impl Propagation {
    /// Whether a channel named `name` is selected (the source channel itself
    /// is excluded by the caller).
    pub fn selects(&self, name: &str) -> bool {
        match self {
            Propagation::None => false,
            Propagation::All => true,
            Propagation::Patterns(res) => res.iter().any(|r| r.is_match(name)),
        }
    }
}

impl PartialEq for Propagation {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Propagation::None, Propagation::None) | (Propagation::All, Propagation::All) => true,
            (Propagation::Patterns(a), Propagation::Patterns(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.as_str() == y.as_str())
            }
            _ => false,
        }
    }
}

/// The routing-relevant settings of one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRules {
    /// Channel name (already validated).
    pub name: String,
    /// `propagatetochannels`.
    pub propagate: Propagation,
    /// `propagatetonet`: copy the channel's local messages to the network.
    pub to_net: bool,
    /// `acceptfromnet`: deliver messages for this channel that come from the network.
    pub from_net: bool,
}

impl ChannelRules {
    /// Rules for a channel that propagates nowhere.
    pub fn isolated(name: impl Into<String>) -> Self {
        ChannelRules {
            name: name.into(),
            propagate: Propagation::None,
            to_net: false,
            from_net: true,
        }
    }
}

/// One recipient of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient {
    /// The recipient client.
    pub slot: Slot,
    /// True if the recipient is on the message's own channel (the Deliver
    /// frame then omits the channel name).
    pub own_channel: bool,
}

/// What [`Router::set_rules`] changed.
#[derive(Debug, Default, PartialEq)]
pub struct RulesChange {
    /// Channels that did not exist before.
    pub added: Vec<String>,
    /// Channels that no longer exist, with the clients that were on them
    /// (already detached from the router; the server must disconnect them).
    pub removed: Vec<(String, Vec<Slot>)>,
    /// Channels whose rules changed.
    pub changed: Vec<String>,
}

#[derive(Debug)]
struct Channel {
    rules: ChannelRules,
    /// Channels this one propagates to, by id, in name order.
    targets: Vec<ChannelId>,
    members: Vec<Slot>,
    /// Clients subscribed to `*`.
    wildcard: Vec<Slot>,
    /// Clients subscribed to a given event (may include wildcard clients;
    /// they are skipped at lookup so nobody gets a message twice).
    by_event: FxHashMap<Box<str>, Vec<Slot>>,
}

#[derive(Debug)]
struct Client {
    channel: ChannelId,
    wildcard: bool,
    events: FxHashSet<Box<str>>,
}

/// The routing table and subscription index. See the module docs.
#[derive(Debug, Default)]
pub struct Router {
    channels: Vec<Option<Channel>>,
    by_name: FxHashMap<String, ChannelId>,
    clients: Vec<Option<Client>>,
}

impl Router {
    /// An empty router; call [`Router::set_rules`] to create channels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the channel rules. Channels are matched by name: clients of
    /// a channel that stays keep their membership and subscriptions;
    /// clients of removed channels are detached and returned.
    pub fn set_rules(&mut self, rules: Vec<ChannelRules>) -> RulesChange {
        let mut change = RulesChange::default();
        let new_names: FxHashSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        let mut gone: Vec<String> = self
            .by_name
            .keys()
            .filter(|n| !new_names.contains(n.as_str()))
            .cloned()
            .collect();
        gone.sort();
        for name in gone {
            let id = self.by_name.remove(&name).expect("listed above");
            let ch = self.channels[id.index()].take().expect("live channel");
            for &slot in &ch.members {
                self.clients[slot as usize] = None;
            }
            change.removed.push((name, ch.members));
        }
        for r in rules {
            match self.by_name.get(&r.name) {
                Some(&id) => {
                    let ch = self.channels[id.index()].as_mut().expect("live channel");
                    if ch.rules != r {
                        change.changed.push(r.name.clone());
                        ch.rules = r;
                    }
                }
                None => {
                    change.added.push(r.name.clone());
                    let ch = Channel {
                        rules: r,
                        targets: Vec::new(),
                        members: Vec::new(),
                        wildcard: Vec::new(),
                        by_event: FxHashMap::default(),
                    };
                    let id = match self.channels.iter().position(Option::is_none) {
                        Some(i) => {
                            self.channels[i] = Some(ch);
                            ChannelId(i as u32)
                        }
                        None => {
                            self.channels.push(Some(ch));
                            ChannelId(self.channels.len() as u32 - 1)
                        }
                    };
                    let name = self.channels[id.index()]
                        .as_ref()
                        .expect("just set")
                        .rules
                        .name
                        .clone();
                    self.by_name.insert(name, id);
                }
            }
        }
        self.recompute_targets();
        change
    }

    fn recompute_targets(&mut self) {
        let mut names: Vec<(String, ChannelId)> = self
            .by_name
            .iter()
            .map(|(n, &id)| (n.clone(), id))
            .collect();
        names.sort();
        for i in 0..self.channels.len() {
            let Some(ch) = &self.channels[i] else {
                continue;
            };
            let targets = names
                .iter()
                .filter(|(n, id)| {
                    id.index() != i && n != CONTROL_CHANNEL && ch.rules.propagate.selects(n)
                })
                .map(|&(_, id)| id)
                .collect();
            self.channels[i].as_mut().expect("checked").targets = targets;
        }
    }

    /// Looks a channel up by name.
    pub fn channel(&self, name: &str) -> Option<ChannelId> {
        self.by_name.get(name).copied()
    }

    /// Names of all channels, sorted.
    pub fn channel_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    fn ch(&self, id: ChannelId) -> &Channel {
        self.channels[id.index()]
            .as_ref()
            .expect("channel id is live")
    }

    fn ch_mut(&mut self, id: ChannelId) -> &mut Channel {
        self.channels[id.index()]
            .as_mut()
            .expect("channel id is live")
    }

    /// The rules of a live channel.
    pub fn rules(&self, id: ChannelId) -> &ChannelRules {
        &self.ch(id).rules
    }

    /// The channels a channel propagates to, in name order.
    pub fn targets(&self, id: ChannelId) -> impl Iterator<Item = &str> {
        self.ch(id)
            .targets
            .iter()
            .map(|&t| self.ch(t).rules.name.as_str())
    }

    /// Clients on a channel, in join order.
    pub fn members(&self, id: ChannelId) -> &[Slot] {
        &self.ch(id).members
    }

    /// The channel a client is on, if it is attached.
    pub fn client_channel(&self, slot: Slot) -> Option<ChannelId> {
        self.clients.get(slot as usize)?.as_ref().map(|c| c.channel)
    }

    /// Attaches a client to a channel, with no subscriptions. A slot already
    /// attached is first detached.
    pub fn join(&mut self, slot: Slot, channel: ChannelId) {
        self.leave(slot);
        let i = slot as usize;
        if self.clients.len() <= i {
            self.clients.resize_with(i + 1, || None);
        }
        self.clients[i] = Some(Client {
            channel,
            wildcard: false,
            events: FxHashSet::default(),
        });
        self.ch_mut(channel).members.push(slot);
    }

    /// Detaches a client and drops its subscriptions. Unknown slots are ignored.
    pub fn leave(&mut self, slot: Slot) {
        let Some(client) = self.clients.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        let ch = self.ch_mut(client.channel);
        remove_slot(&mut ch.members, slot);
        if client.wildcard {
            remove_slot(&mut ch.wildcard, slot);
        }
        for e in client.events.iter() {
            if let Some(list) = ch.by_event.get_mut(e) {
                remove_slot(list, slot);
                if list.is_empty() {
                    ch.by_event.remove(e);
                }
            }
        }
    }

    /// Subscribes a client to an event (`*` = all). Returns false if it
    /// already was subscribed or is not attached.
    pub fn subscribe(&mut self, slot: Slot, event: &str) -> bool {
        let Some(client) = self.clients.get_mut(slot as usize).and_then(Option::as_mut) else {
            return false;
        };
        let chan = client.channel;
        if event == WILDCARD {
            if client.wildcard {
                return false;
            }
            client.wildcard = true;
            self.ch_mut(chan).wildcard.push(slot);
            return true;
        }
        if !client.events.insert(event.into()) {
            return false;
        }
        self.ch_mut(chan)
            .by_event
            .entry(event.into())
            .or_default()
            .push(slot);
        true
    }

    /// The events a channel's clients listen to, sorted; `None` when one
    /// of them listens to every event (`*`).
    pub fn listened_events(&self, id: ChannelId) -> Option<Vec<&str>> {
        let ch = self.ch(id);
        if !ch.wildcard.is_empty() {
            return None;
        }
        let mut v: Vec<&str> = ch.by_event.keys().map(|e| &**e).collect();
        v.sort_unstable();
        Some(v)
    }

    /// Removes one subscription. Returns false if there was none.
    pub fn unsubscribe(&mut self, slot: Slot, event: &str) -> bool {
        let Some(client) = self.clients.get_mut(slot as usize).and_then(Option::as_mut) else {
            return false;
        };
        let chan = client.channel;
        if event == WILDCARD {
            if !client.wildcard {
                return false;
            }
            client.wildcard = false;
            remove_slot(&mut self.ch_mut(chan).wildcard, slot);
            return true;
        }
        if !client.events.remove(event) {
            return false;
        }
        let ch = self.ch_mut(chan);
        if let Some(list) = ch.by_event.get_mut(event) {
            remove_slot(list, slot);
            if list.is_empty() {
                ch.by_event.remove(event);
            }
        }
        true
    }

    /// A client's subscriptions, sorted (`*` first if present).
    pub fn subscriptions(&self, slot: Slot) -> Vec<&str> {
        let Some(Some(c)) = self.clients.get(slot as usize) else {
            return Vec::new();
        };
        let mut v: Vec<&str> = c.events.iter().map(|e| &**e).collect();
        v.sort_unstable();
        if c.wildcard {
            v.insert(0, WILDCARD);
        }
        v
    }

    /// Appends to `out` every client that gets a message with `event` on
    /// `channel`, except `exclude` (the emitter). Recipients on `channel`
    /// come first, then those of each propagation target in name order.
    /// Pass `propagate = false` to route to `channel`'s own clients only.
    pub fn route(
        &self,
        channel: ChannelId,
        event: &str,
        exclude: Option<Slot>,
        propagate: bool,
        out: &mut Vec<Recipient>,
    ) {
        let ch = self.ch(channel);
        self.collect(ch, event, exclude, true, out);
        if propagate {
            for &t in &ch.targets {
                self.collect(self.ch(t), event, exclude, false, out);
            }
        }
    }

    #[inline]
    fn collect(
        &self,
        ch: &Channel,
        event: &str,
        exclude: Option<Slot>,
        own_channel: bool,
        out: &mut Vec<Recipient>,
    ) {
        for &slot in &ch.wildcard {
            if Some(slot) != exclude {
                out.push(Recipient { slot, own_channel });
            }
        }
        if let Some(list) = ch.by_event.get(event) {
            for &slot in list {
                if Some(slot) == exclude {
                    continue;
                }
                let wild = self.clients[slot as usize]
                    .as_ref()
                    .is_some_and(|c| c.wildcard);
                if !wild {
                    out.push(Recipient { slot, own_channel });
                }
            }
        }
    }
}

fn remove_slot(list: &mut Vec<Slot>, slot: Slot) {
    if let Some(pos) = list.iter().position(|&s| s == slot) {
        list.remove(pos);
    }
}

#[cfg(test)]
mod tests;
