//! The emit fast path's side of the output buffer: the one length check
//! ([`Out::room_until`], kept by [`Out::relimit`]) and the append of a
//! Publish frame without the general path's checks
//! ([`Shared::try_publish`]).

use netcluster_proto::frame;

use super::{Options, Out, Shared};

impl Out {
    /// Recomputes [`Out::room_until`] from `closed`, `closing` and
    /// `offline`; called after any of them changes.
    pub fn relimit(&mut self, opts: &Options) {
        self.room_until = if self.closed.is_some() || self.closing {
            0
        } else if self.offline.is_some() {
            opts.offline_bytes
        } else {
            opts.max_pending
        };
    }
}

impl Shared {
    /// The hot path of an emit: appends a Publish frame if the buffer is
    /// below [`Out::room_until`] and returns true; false (nothing done)
    /// otherwise, and the caller takes the general path ([`Shared::send`]),
    /// which waits for room or reports why it cannot append. The same
    /// append as `try_put` with that frame, minus the checks that only
    /// matter when there is no room.
    #[inline(always)]
    pub fn try_publish(&self, event: &str, payload: &[u8]) -> bool {
        let mut out = self.out();
        let len = out.buf.len();
        if len >= out.room_until {
            return false;
        }
        frame::encode_publish(&mut out.buf, event, payload);
        out.appended += 1;
        self.write_now(&mut out);
        // The writer sleeps while the buffer is empty: whoever makes it
        // non-empty wakes it.
        let wake = len == 0 && !out.buf.is_empty();
        drop(out);
        if wake {
            self.wake.notify_one();
        }
        true
    }
}
