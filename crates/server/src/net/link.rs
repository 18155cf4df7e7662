//! The network driver as one of the hub's links ([`crate::link::Link`]),
//! and how the layers above the hub find it among them.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use netcluster_proto::router::ChannelRules;

use super::NetDriver;
use crate::hub::Hub;
use crate::link::Link;

impl Link for NetDriver {
    fn name(&self) -> &'static str {
        "the network"
    }

    fn carries(&self, rules: &ChannelRules) -> bool {
        rules.to_net
    }

    fn send(
        &self,
        channel: &str,
        event: &str,
        payload: &[u8],
        client: u64,
        seq: u64,
    ) -> Result<(), String> {
        NetDriver::send(self, channel, event, payload, client, seq).map_err(|e| e.to_string())
    }

    fn backlogged(&self) -> bool {
        NetDriver::backlogged(self)
    }

    fn wait_room(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(NetDriver::wait_room(self))
    }

    fn flush(&self) {
        NetDriver::flush(self)
    }

    fn as_any(self: Rc<Self>) -> Rc<dyn Any> {
        self
    }
}

/// The network driver among the hub's links, when the daemon is on the
/// network (for `showpeers`, metrics, reload and shutdown).
pub fn driver(hub: &Hub) -> Option<Rc<NetDriver>> {
    hub.links()
        .into_iter()
        .find_map(|l| l.as_any().downcast::<NetDriver>().ok())
}
