//! Per-origin receive state of the NATS path: in order, once, no loops.
//!
//! Every bridged message names its origin (node, client) and the client's
//! sequence number. [`Receiver::accept`] decides, per message, whether to
//! deliver it: messages from this node, or from a node this daemon
//! currently hears on its own LAN (those arrive by multicast), are dropped
//! as loops; a sequence number at or below the last one delivered from
//! that origin is a duplicate; a jump forward delivers the message and
//! reports the numbers skipped as a gap. The first message from an origin
//! sets its baseline (the bridge cannot know what was sent before it
//! subscribed). The table of origins is bounded by [`MAX_ORIGINS`]; when
//! it is full the origin heard least recently is forgotten (a later message
//! from it starts a new baseline).

use rustc_hash::FxHashMap;

/// Most origins (node, client) whose last sequence number is remembered.
pub const MAX_ORIGINS: usize = 65_536;

/// What to do with an incoming bridged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it; `gap` is the range of sequence numbers skipped before
    /// it (lost on the NATS path), if any.
    Deliver {
        /// `(first, last)` missing sequence numbers.
        gap: Option<(u64, u64)>,
    },
    /// Already delivered (or older than what was): drop.
    Duplicate,
    /// Sent by this node: drop.
    Own,
    /// Its origin is heard on the LAN, where it arrives by multicast: drop.
    HeardOnLan,
}

struct Origin {
    last: u64,
    touched: u64,
}

/// See the module docs.
pub struct Receiver {
    me: u64,
    origins: FxHashMap<(u64, u64), Origin>,
    limit: usize,
    clock: u64,
}

impl Receiver {
    /// A receiver for node `me`.
    pub fn new(me: u64) -> Receiver {
        Receiver::with_limit(me, MAX_ORIGINS)
    }

    /// A receiver remembering at most `limit` origins (at least one).
    pub fn with_limit(me: u64, limit: usize) -> Receiver {
        Receiver {
            me,
            origins: FxHashMap::default(),
            limit: limit.max(1),
            clock: 0,
        }
    }

    /// How many origins are remembered.
    pub fn origins(&self) -> usize {
        self.origins.len()
    }

    /// Decides about a message from (`node`, `client`) numbered `seq`;
    /// `heard_on_lan` says whether the message reaches this node by
    /// multicast too (its origin sent it to the LAN, where `node` is a
    /// peer currently up, and the channel takes messages from there).
    pub fn accept(&mut self, node: u64, client: u64, seq: u64, heard_on_lan: bool) -> Verdict {
        if node == self.me {
            return Verdict::Own;
        }
        if heard_on_lan {
            return Verdict::HeardOnLan;
        }
        self.clock += 1;
        let now = self.clock;
        if let Some(o) = self.origins.get_mut(&(node, client)) {
            o.touched = now;
            if seq <= o.last {
                return Verdict::Duplicate;
            }
            let gap = (seq > o.last + 1).then(|| (o.last + 1, seq - 1));
            o.last = seq;
            return Verdict::Deliver { gap };
        }
        if self.origins.len() >= self.limit {
            // Rare (only past the limit), so a scan is fine.
            if let Some(&oldest) = self
                .origins
                .iter()
                .min_by_key(|(_, o)| o.touched)
                .map(|(k, _)| k)
            {
                self.origins.remove(&oldest);
            }
        }
        self.origins.insert(
            (node, client),
            Origin {
                last: seq,
                touched: now,
            },
        );
        Verdict::Deliver { gap: None }
    }

    /// Forgets every origin of `node` (it restarted or left).
    pub fn forget_node(&mut self, node: u64) {
        self.origins.retain(|&(n, _), _| n != node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: Verdict = Verdict::Deliver { gap: None };

    #[test]
    fn in_order_once_with_gaps() {
        let mut r = Receiver::new(1);
        assert_eq!(r.accept(2, 5, 10, false), D);
        assert_eq!(r.accept(2, 5, 11, false), D);
        assert_eq!(r.accept(2, 5, 11, false), Verdict::Duplicate);
        assert_eq!(r.accept(2, 5, 9, false), Verdict::Duplicate);
        assert_eq!(
            r.accept(2, 5, 15, false),
            Verdict::Deliver {
                gap: Some((12, 14))
            }
        );
        // Another client of the same node has its own numbering.
        assert_eq!(r.accept(2, 6, 1, false), D);
        assert_eq!(r.origins(), 2);
    }

    #[test]
    fn drops_loops() {
        let mut r = Receiver::new(1);
        assert_eq!(r.accept(1, 5, 1, false), Verdict::Own);
        assert_eq!(r.accept(3, 5, 1, true), Verdict::HeardOnLan);
        assert_eq!(r.origins(), 0);
        // Once no longer heard, its messages come through NATS.
        assert_eq!(r.accept(3, 5, 2, false), D);
    }

    #[test]
    fn bounded_table_forgets_the_least_recent() {
        let mut r = Receiver::with_limit(0, 2);
        r.accept(1, 1, 1, false);
        r.accept(2, 1, 1, false);
        r.accept(1, 1, 2, false);
        r.accept(3, 1, 1, false); // evicts (2, 1)
        assert_eq!(r.origins(), 2);
        assert_eq!(r.accept(1, 1, 2, false), Verdict::Duplicate);
        assert_eq!(r.accept(2, 1, 1, false), D); // new baseline
        r.forget_node(2);
        assert_eq!(r.origins(), 1);
    }

    proptest! {
        /// Whatever duplicates and reordering the path adds, each number
        /// is delivered at most once, delivered numbers increase, and
        /// every number between the first and the last delivered is either
        /// delivered or inside a reported gap.
        #[test]
        fn once_in_order_and_accounted(seqs in proptest::collection::vec(1u64..60, 1..200)) {
            let mut r = Receiver::new(0);
            let mut seen = Vec::new();
            let mut gaps = Vec::new();
            for s in seqs {
                if let Verdict::Deliver { gap } = r.accept(9, 9, s, false) {
                    seen.push(s);
                    gaps.extend(gap);
                }
            }
            prop_assert!(seen.windows(2).all(|w| w[0] < w[1]));
            let (lo, hi) = (seen[0], *seen.last().unwrap());
            for n in lo..=hi {
                let covered = seen.contains(&n) || gaps.iter().any(|&(a, b)| a <= n && n <= b);
                prop_assert!(covered, "{} neither delivered nor reported", n);
            }
        }
    }
}
