//! The listener table: which handlers and subscription streams want which
//! events.
//!
//! The connection's reader takes a snapshot (`Arc`) once per read batch and
//! dispatches without holding any lock, so handlers may freely add or remove
//! listeners; changes copy the table (they are rare, messages are not).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use netcluster_proto::frame::WILDCARD;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

use crate::Message;

/// A callback listener.
pub type Handler = Arc<dyn Fn(&Message) + Send + Sync + 'static>;

/// Where a listener's messages go.
#[derive(Clone)]
pub enum Sink {
    /// Called on the connection's task.
    Handler(Handler),
    /// Sent to a [`crate::Subscription`].
    Stream(mpsc::Sender<Message>),
}

/// One listener.
#[derive(Clone)]
pub struct Entry {
    /// Its id.
    pub id: u64,
    /// Where messages go.
    pub sink: Sink,
    /// For `once` listeners: set when it has fired.
    pub fired: Option<Arc<AtomicBool>>,
}

impl Entry {
    /// For a `once` listener, claims its single call; always true otherwise.
    pub fn claim(&self) -> bool {
        match &self.fired {
            Some(f) => !f.swap(true, Ordering::AcqRel),
            None => true,
        }
    }

    /// [`Entry::claim`] for one delivery, and a `once` listener that
    /// fires goes on `removals` (the table is changed after the batch).
    pub fn take(&self, removals: &mut Vec<u64>) -> bool {
        if !self.claim() {
            return false;
        }
        if self.fired.is_some() {
            removals.push(self.id);
        }
        true
    }
}

/// The listeners of one event: those of the event, then those of `*`.
pub type Matching<'a> = (&'a [Entry], &'a [Entry]);

/// Listeners by event.
#[derive(Clone, Default)]
pub struct Table {
    by_event: FxHashMap<String, Vec<Entry>>,
    all: Vec<Entry>,
}

impl Table {
    /// Listeners for `event`: those of the event, then those of `*`
    /// (one hash lookup).
    pub fn matching<'a>(&'a self, event: &str) -> Matching<'a> {
        (
            self.by_event.get(event).map_or(&[][..], Vec::as_slice),
            &self.all,
        )
    }

    /// True if anyone listens to `event`.
    pub fn wants(&self, event: &str) -> bool {
        !self.all.is_empty() || self.by_event.contains_key(event)
    }

    /// Every event with listeners (`*` included), to subscribe again after
    /// a reconnection.
    pub fn events(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_event.keys().cloned().collect();
        if !self.all.is_empty() {
            v.push(WILDCARD.to_string());
        }
        v
    }
}

/// The shared, copy-on-write table.
pub struct Listeners {
    current: RwLock<Arc<Table>>,
    /// Serializes writers so no update is lost.
    write: Mutex<()>,
    /// True while the table has no listener at all (checked on every emit
    /// for echo-to-self without taking the lock).
    empty: std::sync::atomic::AtomicBool,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            current: RwLock::default(),
            write: Mutex::default(),
            empty: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

impl Listeners {
    /// True when nobody listens to anything.
    pub fn is_empty(&self) -> bool {
        self.empty.load(Ordering::Acquire)
    }

    /// The current table.
    pub fn snapshot(&self) -> Arc<Table> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut t = (*self.snapshot()).clone();
        let r = f(&mut t);
        self.empty
            .store(t.all.is_empty() && t.by_event.is_empty(), Ordering::Release);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
        r
    }

    /// Adds a listener; returns true if it is the first for its event (the
    /// server must then be told to send that event).
    pub fn add(&self, event: &str, entry: Entry) -> bool {
        self.update(|t| {
            let list = if event == WILDCARD {
                &mut t.all
            } else {
                t.by_event.entry(event.to_string()).or_default()
            };
            list.push(entry);
            list.len() == 1
        })
    }

    /// Removes a listener by id. Returns `Some(event)` if it was found;
    /// `Some((event, true))` when no listener is left for that event.
    pub fn remove(&self, id: u64) -> Option<(String, bool)> {
        self.update(|t| {
            if let Some(pos) = t.all.iter().position(|e| e.id == id) {
                t.all.remove(pos);
                return Some((WILDCARD.to_string(), t.all.is_empty()));
            }
            let event = t
                .by_event
                .iter()
                .find(|(_, l)| l.iter().any(|e| e.id == id))
                .map(|(k, _)| k.clone())?;
            let list = t.by_event.get_mut(&event).expect("found above");
            list.retain(|e| e.id != id);
            let last = list.is_empty();
            if last {
                t.by_event.remove(&event);
            }
            Some((event, last))
        })
    }

    /// Drops every listener (the connection is gone: streams end).
    pub fn clear(&self) {
        self.update(|t| *t = Table::default());
    }
}
