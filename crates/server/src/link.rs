//! Links: the transports that carry a channel's messages beyond this
//! daemon (the UDP multicast network today, a NATS bridge next), as the
//! hub sees them.
//!
//! The hub routes a message once and hands it to every link that carries
//! its channel; it knows a link only through [`Link`], so a link never
//! reaches into sessions or control, and the hub knows nothing of sockets,
//! datagrams or subjects. Messages that arrive from a link enter the hub
//! as remote origins, like any other message routed by it, and are never
//! handed back to a link.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use netcluster_proto::router::ChannelRules;

/// A transport the hub copies local messages to. See the module docs.
pub trait Link {
    /// What the link reaches, for messages ("the network").
    fn name(&self) -> &'static str;

    /// Whether this link carries the messages of a channel with `rules`
    /// (e.g. the network: `propagatetonet`).
    fn carries(&self, rules: &ChannelRules) -> bool;

    /// Queues one local message; the hub calls [`Link::flush`] after each
    /// read batch. An error says why the message did not leave (it is sent
    /// to the publisher as a warning; local delivery already happened).
    fn send(
        &self,
        channel: &str,
        event: &str,
        payload: &[u8],
        client: u64,
        seq: u64,
    ) -> Result<(), String>;

    /// Whether so much waits to leave that local publishers whose channel
    /// this link carries should wait for [`Link::wait_room`].
    fn backlogged(&self) -> bool;

    /// Resolves once the backlog has drained to the link's low mark.
    fn wait_room(&self) -> Pin<Box<dyn Future<Output = ()> + '_>>;

    /// Sends what is ready to leave, as far as the transport takes it.
    fn flush(&self);

    /// The events local clients of `channel` listen to changed (a client
    /// subscribed, unsubscribed or left): a link that subscribes remotely
    /// by event may follow.
    fn interest_changed(&self, _channel: &str) {}

    /// The link as `Any`, so the layers above the hub that know the
    /// concrete transport (control, the HTTP endpoint, the server) can
    /// reach its own views (peers, metrics) without the hub knowing them.
    fn as_any(self: Rc<Self>) -> Rc<dyn Any>;
}
