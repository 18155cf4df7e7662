//! The hub's side of its links (see [`crate::link`]): handing a routed
//! message to every link that carries its channel, asking whether any of
//! them wants local publishers to wait, and flushing them after a batch.

use std::rc::Rc;

use netcluster_proto::router::ChannelId;

use super::Hub;
use crate::link::Link;

impl Hub {
    /// Attaches a link: local messages of the channels it carries are
    /// handed to it from now on.
    pub fn add_link(&self, link: Rc<dyn Link>) {
        self.links.borrow_mut().push(link);
    }

    /// Detaches every link and returns them (on shutdown).
    pub fn take_links(&self) -> Vec<Rc<dyn Link>> {
        std::mem::take(&mut *self.links.borrow_mut())
    }

    /// The attached links.
    pub fn links(&self) -> Vec<Rc<dyn Link>> {
        self.links.borrow().clone()
    }

    /// Tells the links that the events listened to on channel `id`
    /// changed (see [`Link::interest_changed`]).
    pub fn interest_changed(&self, id: ChannelId) {
        let links = self.links.borrow().clone();
        if links.is_empty() {
            return;
        }
        let name = self.router.borrow().rules(id).name.clone();
        for l in links {
            l.interest_changed(&name);
        }
    }

    /// True when the daemon has network or NATS links (a message may need
    /// its payload for them).
    pub fn has_links(&self) -> bool {
        !self.links.borrow().is_empty()
    }

    /// Copies a local message to every link that carries `channel`. The
    /// hub flushes the links after the batch. An error names what did not
    /// leave, and where.
    pub fn send_to_links(
        &self,
        channel: ChannelId,
        event: &str,
        payload: &[u8],
        client: u64,
        seq: u64,
    ) -> Result<(), String> {
        let links = self.links.borrow();
        if links.is_empty() {
            return Ok(());
        }
        let router = self.router.borrow();
        let rules = router.rules(channel);
        let mut result = Ok(());
        // The channel's name from its rules (borrowed from the router for
        // the whole loop anyway): no copy of it per message.
        for link in links.iter().filter(|l| l.carries(rules)) {
            if let Err(e) = link.send(&rules.name, event, payload, client, seq) {
                result = Err(format!("not sent to {}: {e}", link.name()));
            }
        }
        result
    }

    /// A link that carries `channel` and has too much waiting to leave:
    /// its publishers should wait for [`Link::wait_room`] before reading
    /// more (back-pressure from a slow receiver beyond it).
    pub fn link_backlog(&self, channel: ChannelId) -> Option<Rc<dyn Link>> {
        let links = self.links.borrow();
        if links.is_empty() {
            return None;
        }
        let router = self.router.borrow();
        let rules = router.rules(channel);
        links
            .iter()
            .find(|l| l.backlogged() && l.carries(rules))
            .cloned()
    }

    /// Flushes every link (after a batch).
    pub(super) fn flush_links(&self) {
        for link in self.links.borrow().iter() {
            link.flush();
        }
    }
}
