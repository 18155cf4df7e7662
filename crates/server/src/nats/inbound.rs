//! What arrives from NATS: each subscription's listener (the
//! subscriptions themselves are made in `interest.rs`) and the delivery of
//! each message through the per-origin receive state into the hub.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use async_nats::{HeaderMap, Subscriber};
use netcluster_proto::names;
use netcluster_proto::nats::{self as wire, Inbound, Verdict};
use serde_json::json;

use super::{NatsBridge, FOREIGN_NODE, GAP_CAUSE, LEGACY_NODE_HEADER, ORIGIN_HEADER, RECV_BATCH};
use crate::conn::GAP_EVENT;
use crate::hub::{Flow, Hub, Origin, Payload};
use crate::outq::SHARE_PAYLOAD_MIN;

/// The (first) value of `Nc-Origin`, and whether the older `Nc-Node` is
/// there: one pass over the headers comparing names (a bridged message
/// carries one header), where a lookup would hash the name with the map's
/// SipHash for every message.
fn origin_header(h: Option<&HeaderMap>) -> (Option<&str>, bool) {
    let (mut origin, mut legacy) = (None, false);
    for (name, values) in h.into_iter().flat_map(|h| h.iter()) {
        if *name == ORIGIN_HEADER {
            origin = values.first().map(|v| v.as_str());
        } else if *name == LEGACY_NODE_HEADER {
            legacy = true;
        }
    }
    (origin, legacy)
}

impl NatsBridge {
    pub(super) async fn listen(
        self: Rc<Self>,
        hub: Rc<Hub>,
        client: async_nats::Client,
        subject: String,
        ready: Rc<Cell<bool>>,
    ) {
        let mut sub: Subscriber = match client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%subject, "cannot subscribe on NATS: {e}");
                return;
            }
        };
        // The SUB is queued; a flush round trip confirms the server has it.
        if client.flush().await.is_ok() {
            ready.set(true);
        }
        tracing::debug!(%subject, "subscribed on NATS");
        loop {
            // Every message already received, up to RECV_BATCH, then one
            // flush of the clients' queues: few writes under a burst.
            let batch = std::future::poll_fn(|cx| {
                let mut out = Vec::new();
                while out.len() < RECV_BATCH {
                    match futures_core::Stream::poll_next(Pin::new(&mut sub), cx) {
                        Poll::Ready(Some(m)) => out.push(m),
                        Poll::Ready(None) if out.is_empty() => return Poll::Ready(None),
                        Poll::Ready(None) | Poll::Pending => break,
                    }
                }
                if out.is_empty() {
                    Poll::Pending
                } else {
                    Poll::Ready(Some(out))
                }
            })
            .await;
            let Some(batch) = batch else { return };
            for m in batch {
                // A message from a remote origin never waits for a slow
                // local client (the hub drops it for that client and tells
                // it with an `nc-gap`), so the flow is always "continue".
                let _ = self.deliver(&hub, m);
            }
            hub.flush_touched();
        }
    }

    fn refuse(&self, why: impl std::fmt::Display) -> Flow {
        let n = self.counters.refused.get() + 1;
        self.counters.refused.set(n);
        if n == 1 || n % 10_000 == 0 {
            tracing::warn!(refused = n, "message from NATS refused: {why}");
        }
        Flow::Continue
    }

    fn deliver(&self, hub: &Rc<Hub>, m: async_nats::Message) -> Flow {
        let (origin, legacy) = origin_header(m.headers.as_ref());
        if origin.is_none() && legacy {
            return self.refuse("the five headers of an older netcluster daemon (Nc-Node without Nc-Origin): run one version on a bus");
        }
        let inbound = wire::decode(&self.cfg.borrow().prefix, &m.subject, origin);
        let (channel, event, origin, gap) = match inbound {
            Err(e) => return self.refuse(e),
            Ok(Inbound::Foreign { channel, event }) => {
                let o = Origin {
                    node: Some(FOREIGN_NODE),
                    client: 0,
                    seq: 0,
                };
                (channel, event, o, None)
            }
            Ok(Inbound::Bridged(env)) => {
                let heard = self.came_by_lan(env.node, env.lan, &env.channel);
                match self
                    .recv
                    .borrow_mut()
                    .accept(env.node, env.client, env.seq, heard)
                {
                    Verdict::Deliver { gap } => {
                        let o = Origin {
                            node: Some(env.node),
                            client: env.client,
                            seq: env.seq,
                        };
                        (env.channel, env.event, o, gap)
                    }
                    Verdict::Duplicate => {
                        let c = &self.counters.duplicates;
                        c.set(c.get() + 1);
                        return Flow::Continue;
                    }
                    Verdict::Own | Verdict::HeardOnLan => {
                        let c = &self.counters.loops;
                        c.set(c.get() + 1);
                        return Flow::Continue;
                    }
                }
            }
        };
        if let Err(e) = names::check_event(&event) {
            return self.refuse(e);
        }
        let Some(ch) = hub.router.borrow().channel(&channel) else {
            return self.refuse(format_args!("no local channel {channel:?}"));
        };
        if !self.accepted.borrow().contains(&*channel) {
            return self.refuse(format_args!("channel {channel:?} has acceptfromnats false"));
        }
        if m.payload.len() > hub.max_message() {
            return self.refuse(format_args!("{} bytes exceed maxmessage", m.payload.len()));
        }
        // A channel subscribed by event cannot tell a message it did not
        // subscribe to from one lost: no gap is reported there (nobody on
        // it listens to `nc-gap`, or it would be subscribed whole).
        if let Some((first, last)) = gap.filter(|_| !self.narrowed.borrow().contains(&*channel)) {
            self.announce_gap(hub, ch, origin, first, last);
        }
        self.counters.msgs_in.set(self.counters.msgs_in.get() + 1);
        let payload = if m.payload.len() >= SHARE_PAYLOAD_MIN {
            Payload::Shared(m.payload.clone())
        } else {
            Payload::Borrowed(&m.payload)
        };
        hub.fan_out(ch, &event, payload, origin, None)
    }

    /// Tells the channel's clients (listening to `nc-gap` or `*`) that
    /// messages of one origin were lost on the NATS path.
    fn announce_gap(
        &self,
        hub: &Rc<Hub>,
        ch: netcluster_proto::router::ChannelId,
        o: Origin,
        first: u64,
        last: u64,
    ) {
        let node = format!("{:016x}", o.node.unwrap_or(0));
        self.counters.gaps.set(self.counters.gaps.get() + 1);
        let lost = &self.counters.lost;
        lost.set(lost.get() + (last - first + 1));
        tracing::warn!(%node, client = o.client, first, last, "messages lost on the NATS path");
        let body = json!({"cause": GAP_CAUSE, "node": node, "client": o.client, "first": first, "last": last});
        hub.gaps.note(body.clone());
        hub.fan_out_own(ch, GAP_EVENT, body.to_string().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_header_agrees_with_a_lookup() {
        let mut h = HeaderMap::new();
        assert_eq!(origin_header(Some(&h)), (None, false));
        assert_eq!(origin_header(None), (None, false));
        h.insert("Other", "x");
        h.insert("nc-origin", "wrong case");
        assert_eq!(origin_header(Some(&h)), (None, false));
        h.append(ORIGIN_HEADER, "first");
        h.append(ORIGIN_HEADER, "second");
        assert_eq!(
            origin_header(Some(&h)),
            (h.get(ORIGIN_HEADER).map(|v| v.as_str()), false)
        );
        assert_eq!(origin_header(Some(&h)).0, Some("first"));
        let mut old = HeaderMap::new();
        old.insert(LEGACY_NODE_HEADER, "0000000000000001");
        assert_eq!(origin_header(Some(&old)), (None, true));
        old.insert(ORIGIN_HEADER, "v");
        assert_eq!(origin_header(Some(&old)), (Some("v"), true));
    }
}
