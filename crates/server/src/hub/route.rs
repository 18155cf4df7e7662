//! The message path: a message routed once at ingress, encoded once per
//! wire variant, appended to each recipient's queue under its channel's
//! slow-consumer policy (network messages are never waited for), with the
//! dashboard's tap and `dumptoconsole` on the side.

use super::*;

impl Hub {
    /// Delivers a message on `channel` to its recipients: the channel's
    /// other subscribers, then those of the channels its rule selects.
    /// `exclude` is the emitter, who never gets its own message back.
    ///
    /// A message from the network (`origin.node` set) is never waited for:
    /// a recipient whose queue is full misses it as under `"drop"`
    /// (counted, then told with an `nc-gap`), whatever its channel's
    /// policy, so the result is always [`Flow::Continue`] for it.
    pub fn fan_out(
        &self,
        channel: ChannelId,
        event: &str,
        payload: Payload<'_>,
        origin: Origin,
        exclude: Option<Slot>,
    ) -> Flow {
        self.fan_out_to(channel, event, payload, origin, exclude, true)
    }

    /// Delivers a message to `channel`'s own subscribers only, without
    /// its propagation rule (events the daemon raises per channel, such
    /// as `nc-gap` for network loss, so no client gets one twice). Never
    /// waits: a full queue misses it as under `"drop"`.
    pub fn fan_out_own(&self, channel: ChannelId, event: &str, payload: &[u8]) {
        let origin = Origin {
            node: None,
            client: 0,
            seq: 0,
        };
        let payload = Payload::Borrowed(payload);
        self.fan_out_to(channel, event, payload, origin, None, false);
    }

    fn fan_out_to(
        &self,
        channel: ChannelId,
        event: &str,
        payload: Payload<'_>,
        origin: Origin,
        exclude: Option<Slot>,
        propagate: bool,
    ) -> Flow {
        // Only a local client's own publish may wait for a full queue;
        // messages from the network and the daemon's own events never do.
        let may_wait = origin.node.is_none() && propagate;
        let infos = self.channels.borrow();
        let info = infos[channel.index()].as_ref().expect("live channel");
        if info.dump {
            dump_line(&info.name, event, payload.as_slice(), &origin, self.node_id);
        }
        if self.taps.any() {
            let from = (
                origin.node.unwrap_or(self.node_id),
                origin.client,
                origin.seq,
            );
            self.taps.offer(&info.name, event, payload.as_slice(), from);
        }
        let limit = self.queue_limit();
        let router = self.router.borrow();
        let clients = self.clients.borrow();
        let mut sc = self.scratch.borrow_mut();
        let sc = &mut *sc;
        sc.recipients.clear();
        router.route(channel, event, exclude, propagate, &mut sc.recipients);
        if sc.recipients.is_empty() {
            return Flow::Continue;
        }
        // A shared-memory slot is copied (once) only if some recipient
        // cannot map its pool.
        #[cfg(target_os = "linux")]
        let (payload, pool) = match payload {
            Payload::Pool(m) => {
                let all_map = sc.recipients.iter().all(|r| {
                    clients[r.slot as usize]
                        .as_ref()
                        .map_or(true, |t| t.dialect == Dialect::Native && t.shm.on.get())
                });
                let p = if all_map {
                    Payload::Borrowed(&[])
                } else {
                    Payload::Shared(m.bytes().clone())
                };
                (p, Some(m))
            }
            p => (p, None),
        };
        let data = payload.as_slice();
        let shared = match &payload {
            Payload::Shared(b) => Some(b.clone()),
            Payload::Borrowed(b) if b.len() >= SHARE_PAYLOAD_MIN && sc.recipients.len() > 1 => {
                Some(Bytes::copy_from_slice(b))
            }
            Payload::Borrowed(_) => None,
            // Replaced above by a copy or nothing.
            #[cfg(target_os = "linux")]
            Payload::Pool(m) => Some(m.bytes().clone()),
        };
        sc.own.clear();
        sc.other.clear();
        sc.legacy.clear();
        let mut flow = Flow::Continue;
        let mut legacy_is_json = None;
        let single = sc.recipients.len() == 1;
        for r in &sc.recipients {
            let Some(target) = clients[r.slot as usize].as_ref() else {
                continue;
            };
            let policy = match infos.get(target.channel_id.index()) {
                Some(Some(i)) => i.policy,
                _ => SlowConsumer::Block,
            };
            // Who cannot wait for a full queue drops instead: `drop`
            // clients always, and every client for network messages.
            let drops =
                policy == SlowConsumer::Drop || (!may_wait && policy == SlowConsumer::Block);
            if drops && target.must_drop(limit) {
                target.note_drop();
                continue;
            }
            // A client that missed messages gets its `nc-gap` right before
            // the next message queued for it, where the hole is.
            target.queue_gap(limit);
            match target.dialect {
                #[cfg(target_os = "linux")]
                Dialect::Native if pool.is_some() && target.shm.on.get() => {
                    let m = pool.expect("checked");
                    let h = DeliverHeader {
                        node: origin.node,
                        client: origin.client,
                        seq: origin.seq,
                        channel: (!r.own_channel).then_some(&*info.name),
                    };
                    if !self.queue_shm(target, m, &h, event) {
                        self.queue_shm_copy(target, m, &h, event);
                    }
                }
                Dialect::Native if single && shared.is_none() => {
                    // One recipient: encode straight into its queue, one
                    // copy of the payload instead of two.
                    let h = DeliverHeader {
                        node: origin.node,
                        client: origin.client,
                        seq: origin.seq,
                        channel: (!r.own_channel).then_some(&*info.name),
                    };
                    let mut q = target.out.borrow_mut();
                    frame::encode_deliver(q.tail(), &h, event, data);
                    q.seal();
                }
                Dialect::Native => {
                    let buf = if r.own_channel {
                        &mut sc.own
                    } else {
                        &mut sc.other
                    };
                    if buf.is_empty() {
                        let h = DeliverHeader {
                            node: origin.node,
                            client: origin.client,
                            seq: origin.seq,
                            channel: (!r.own_channel).then_some(&*info.name),
                        };
                        match shared {
                            Some(_) => frame::encode_deliver_header(buf, &h, event, data.len()),
                            None => frame::encode_deliver(buf, &h, event, data),
                        }
                    }
                    let mut q = target.out.borrow_mut();
                    match &shared {
                        Some(p) => q.push_shared(buf, p.clone()),
                        None => q.push_copy(buf),
                    }
                }
                Dialect::Legacy => {
                    if sc.legacy.is_empty() {
                        let is_json = *legacy_is_json.get_or_insert_with(|| legacy::is_json(data));
                        let from =
                            origin_string(origin.node.unwrap_or(self.node_id), origin.client);
                        legacy::encode(&mut sc.legacy, &from, &info.name, event, data, is_json);
                    }
                    target.out.borrow_mut().push_copy(&sc.legacy);
                }
            }
            bump(&target.stats.msgs_out, 1);
            self.touch(target);
            if target.out.borrow().len() > limit {
                match policy {
                    SlowConsumer::Block if may_wait && matches!(flow, Flow::Continue) => {
                        flow = Flow::Block(target.clone())
                    }
                    SlowConsumer::Disconnect => {
                        let msg =
                            format!("slow consumer: queue reached queuebytes ({limit} bytes)");
                        self.close_later(target, ErrorCode::SlowConsumer, msg);
                    }
                    _ => {}
                }
            }
        }
        flow
    }
}

/// Logs one message as a readable line (`dumptoconsole`).
fn dump_line(channel: &str, event: &str, payload: &[u8], origin: &Origin, local: u64) {
    const SHOW: usize = 200;
    let text = String::from_utf8_lossy(&payload[..payload.len().min(SHOW)]);
    let more = if payload.len() > SHOW {
        format!("… ({} bytes)", payload.len())
    } else {
        String::new()
    };
    tracing::info!(
        target: "netcluster::dump",
        "[{channel}] {event} from {} #{}: {text}{more}",
        origin_string(origin.node.unwrap_or(local), origin.client),
        origin.seq
    );
}
