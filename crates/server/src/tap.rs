//! Taps: live copies of one channel's messages for an observer (the
//! dashboard's live tail), kept off the message path's cost; and the
//! [`GapLog`] of the last gaps the daemon announced.
//!
//! The hub owns one [`Taps`]. The message path asks [`Taps::any`] — one
//! `Cell` read — and does nothing more while no tap is open. An open [`Tap`]
//! holds a bounded queue ([`TAP_QUEUE`] messages of at most [`TAP_PAYLOAD`]
//! payload bytes each): when its reader falls behind, new messages are
//! counted as dropped instead of queued, so a tail never holds back
//! delivery nor grows memory. At most [`MAX_TAPS`] taps are open at once.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::SystemTime;

use tokio::sync::Notify;

/// Messages one tap queues for its reader before it drops new ones.
pub const TAP_QUEUE: usize = 256;
/// Payload bytes kept per tapped message (the rest is cut, its size kept).
pub const TAP_PAYLOAD: usize = 256;
/// Taps open at once on one daemon.
pub const MAX_TAPS: usize = 8;
/// How many `nc-gap` announcements the [`GapLog`] keeps.
pub const RECENT_GAPS: usize = 32;

/// The last `nc-gap` announcements (cause, node, range) with their time,
/// oldest first; written when a gap is announced, never per message.
#[derive(Debug, Default)]
pub struct GapLog(RefCell<VecDeque<serde_json::Value>>);

impl GapLog {
    /// Remembers a gap (`record` says its cause), forgetting the oldest
    /// past [`RECENT_GAPS`].
    pub fn note(&self, mut record: serde_json::Value) {
        record["time"] = crate::timefmt::rfc3339(SystemTime::now()).into();
        let mut gaps = self.0.borrow_mut();
        if gaps.len() == RECENT_GAPS {
            gaps.pop_front();
        }
        gaps.push_back(record);
    }

    /// The remembered gaps, newest first.
    pub fn recent(&self) -> Vec<serde_json::Value> {
        self.0.borrow().iter().rev().cloned().collect()
    }
}

/// A copy of one message, cut to [`TAP_PAYLOAD`] bytes.
#[derive(Debug, Clone)]
pub struct TapMsg {
    /// When the daemon routed it.
    pub time: SystemTime,
    /// Event name.
    pub event: String,
    /// Origin node (this daemon's id for local clients).
    pub node: u64,
    /// Origin client id on that node (0 for the daemon).
    pub client: u64,
    /// The origin's sequence number.
    pub seq: u64,
    /// Full payload size in bytes.
    pub size: usize,
    /// The first [`TAP_PAYLOAD`] bytes of the payload.
    pub payload: Vec<u8>,
}

/// One observer's tap on a channel. See the module docs.
#[derive(Debug)]
pub struct Tap {
    channel: Rc<str>,
    event: Option<String>,
    queue: RefCell<VecDeque<TapMsg>>,
    dropped: Cell<u64>,
    /// Notified when a message was queued or dropped.
    pub notify: Notify,
}

impl Tap {
    /// The queued messages and the count dropped since the last call.
    pub fn take(&self) -> (Vec<TapMsg>, u64) {
        let msgs = self.queue.borrow_mut().drain(..).collect();
        (msgs, self.dropped.replace(0))
    }
}

/// The open taps of a daemon. See the module docs.
#[derive(Debug, Default)]
pub struct Taps {
    list: RefCell<Vec<Rc<Tap>>>,
    active: Cell<bool>,
}

/// Keeps a tap open; closing it (dropping the guard) removes it.
#[derive(Debug)]
pub struct TapGuard {
    taps: Rc<Taps>,
    tap: Rc<Tap>,
}

impl TapGuard {
    /// The tap.
    pub fn tap(&self) -> &Tap {
        &self.tap
    }
}

impl Drop for TapGuard {
    fn drop(&mut self) {
        let mut list = self.taps.list.borrow_mut();
        list.retain(|t| !Rc::ptr_eq(t, &self.tap));
        self.taps.active.set(!list.is_empty());
    }
}

impl Taps {
    /// True when at least one tap is open: the only cost on the message
    /// path while none is.
    #[inline]
    pub fn any(&self) -> bool {
        self.active.get()
    }

    /// Opens a tap on `channel`, for every event or only `event`; `None`
    /// when [`MAX_TAPS`] are already open.
    pub fn open(self: &Rc<Self>, channel: &str, event: Option<String>) -> Option<TapGuard> {
        let mut list = self.list.borrow_mut();
        if list.len() >= MAX_TAPS {
            return None;
        }
        let tap = Rc::new(Tap {
            channel: channel.into(),
            event,
            queue: RefCell::new(VecDeque::new()),
            dropped: Cell::new(0),
            notify: Notify::new(),
        });
        list.push(tap.clone());
        self.active.set(true);
        Some(TapGuard {
            taps: self.clone(),
            tap,
        })
    }

    /// Offers a message routed on `channel` to the taps watching it.
    pub fn offer(&self, channel: &str, event: &str, payload: &[u8], origin: (u64, u64, u64)) {
        for tap in self.list.borrow().iter() {
            if &*tap.channel != channel || tap.event.as_deref().is_some_and(|e| e != event) {
                continue;
            }
            let mut q = tap.queue.borrow_mut();
            if q.len() >= TAP_QUEUE {
                tap.dropped.set(tap.dropped.get() + 1);
            } else {
                q.push_back(TapMsg {
                    time: SystemTime::now(),
                    event: event.to_string(),
                    node: origin.0,
                    client: origin.1,
                    seq: origin.2,
                    size: payload.len(),
                    payload: payload[..payload.len().min(TAP_PAYLOAD)].to_vec(),
                });
            }
            tap.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_bounds_and_closes() {
        let taps = Rc::new(Taps::default());
        assert!(!taps.any());
        let all = taps.open("A", None).unwrap();
        let only = taps.open("A", Some("x".into())).unwrap();
        assert!(taps.any());
        taps.offer("A", "x", &[b'a'; 1000], (1, 2, 3));
        taps.offer("A", "y", b"1", (1, 2, 4));
        taps.offer("B", "x", b"1", (1, 2, 5));
        let (m, d) = all.tap().take();
        assert_eq!((m.len(), d), (2, 0));
        assert_eq!((m[0].size, m[0].payload.len()), (1000, TAP_PAYLOAD));
        let (m, _) = only.tap().take();
        assert_eq!(m.len(), 1);
        for i in 0..TAP_QUEUE + 5 {
            taps.offer("A", "z", b"1", (1, 2, i as u64));
        }
        let (m, d) = all.tap().take();
        assert_eq!((m.len(), d), (TAP_QUEUE, 5));
        drop(all);
        drop(only);
        assert!(!taps.any());
        let guards: Vec<_> = (0..MAX_TAPS).map(|_| taps.open("A", None)).collect();
        assert!(guards.iter().all(Option::is_some));
        assert!(taps.open("A", None).is_none());
    }

    #[test]
    fn the_gap_log_keeps_the_last_ones_newest_first() {
        let log = GapLog::default();
        for i in 0..RECENT_GAPS + 3 {
            log.note(serde_json::json!({ "cause": "network", "first": i }));
        }
        let r = log.recent();
        assert_eq!(r.len(), RECENT_GAPS);
        assert_eq!(r[0]["first"], RECENT_GAPS + 2);
        assert_eq!(r[RECENT_GAPS - 1]["first"], 3);
        assert!(r[0]["time"].as_str().unwrap().ends_with('Z'));
    }
}
