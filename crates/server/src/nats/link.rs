//! The NATS bridge as one of the hub's links ([`crate::link::Link`]), and
//! how the layers above the hub find it among them.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use netcluster_proto::router::ChannelRules;

use super::NatsBridge;
use crate::hub::Hub;
use crate::link::Link;

impl Link for NatsBridge {
    fn name(&self) -> &'static str {
        "NATS"
    }

    fn carries(&self, rules: &ChannelRules) -> bool {
        self.carries_channel(&rules.name)
    }

    fn send(
        &self,
        channel: &str,
        event: &str,
        payload: &[u8],
        client: u64,
        seq: u64,
    ) -> Result<(), String> {
        NatsBridge::send(self, channel, event, payload, client, seq)
    }

    /// While connected and progressing, a queue past half of `buffer`
    /// holds the publisher back (see the `nats` module docs); never for
    /// longer than the connection goes without progress.
    fn backlogged(&self) -> bool {
        NatsBridge::backlogged(self)
    }

    fn wait_room(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(NatsBridge::wait_room(self))
    }

    fn flush(&self) {
        NatsBridge::flush(self)
    }

    fn interest_changed(&self, channel: &str) {
        NatsBridge::interest_changed(self, channel)
    }

    fn as_any(self: Rc<Self>) -> Rc<dyn Any> {
        self
    }
}

/// The NATS bridge among the hub's links, when the config has one (for
/// `status`, `showpeers`, reload and shutdown).
pub fn bridge(hub: &Hub) -> Option<Rc<NatsBridge>> {
    hub.links()
        .into_iter()
        .find_map(|l| l.as_any().downcast::<NatsBridge>().ok())
}
