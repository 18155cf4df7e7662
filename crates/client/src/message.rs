//! A received message. It keeps the frame it arrived in and points into it,
//! so receiving allocates nothing per message and cloning is cheap.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use netcluster_proto::frame::Deliver;
use serde::de::DeserializeOwned;

/// Who emitted a message: the daemon (node) it entered through and the
/// client id that daemon gave the emitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Node id of the origin daemon (random per daemon start).
    pub node: u64,
    /// Client id on that daemon.
    pub client: u64,
}

impl fmt::Display for Origin {
    /// `{node as 16 hex digits}:{client}`, the form `ncclient` and the
    /// daemon's control answers use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}:{}", self.node, self.client)
    }
}

/// One message: event name, payload, channel and origin.
#[derive(Clone)]
pub struct Message {
    frame: Bytes,
    /// The receiving client's channel, named when `channel` is `None`.
    own_channel: Arc<str>,
    event: Range<usize>,
    payload: Range<usize>,
    /// The origin channel's name in the frame, when it is another channel.
    channel: Option<Range<usize>>,
    origin: Origin,
    seq: u64,
    /// The payload, when it is a view into a shared-memory pool (the
    /// frame then holds only the origin and event).
    shm: Option<Bytes>,
}

impl Message {
    /// Builds a message from a decoded Deliver that borrows from `frame`.
    pub(crate) fn from_deliver(
        frame: &Bytes,
        d: &Deliver<'_>,
        own_channel: &Arc<str>,
        local_node: u64,
    ) -> Self {
        let mut m = Message {
            frame: frame.clone(),
            own_channel: own_channel.clone(),
            event: 0..0,
            payload: 0..0,
            channel: None,
            origin: Origin { node: 0, client: 0 },
            seq: 0,
            shm: None,
        };
        m.retarget(d, local_node);
        m
    }

    /// A message whose payload is `payload` (a view into a shared-memory
    /// pool) rather than bytes of `frame`.
    #[cfg(target_os = "linux")]
    pub(crate) fn from_shm(
        frame: &Bytes,
        d: &Deliver<'_>,
        payload: Bytes,
        own_channel: &Arc<str>,
        local_node: u64,
    ) -> Self {
        let mut m = Self::from_deliver(frame, d, own_channel, local_node);
        m.shm = Some(payload);
        m
    }

    /// Points this message at another Deliver decoded from the same frame
    /// buffer (no reference counting: one `Message` serves a whole batch of
    /// handler calls).
    pub(crate) fn retarget(&mut self, d: &Deliver<'_>, local_node: u64) {
        let base = self.frame.as_ptr() as usize;
        let range = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            debug_assert!(
                start + s.len() <= self.frame.len(),
                "the Deliver borrows from this frame"
            );
            start..start + s.len()
        };
        self.event = range(d.event.as_bytes());
        self.payload = range(d.payload);
        self.channel = d.channel.map(|c| range(c.as_bytes()));
        self.origin = Origin {
            node: d.node.unwrap_or(local_node),
            client: d.client,
        };
        self.seq = d.seq;
    }

    fn text(&self, r: &Range<usize>) -> &str {
        let bytes = &self.frame[r.clone()];
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: ranges are only ever set from `&str`s the frame decoder
        // produced from these very bytes after checking they are UTF-8, and
        // `frame` is immutable.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// The event name.
    pub fn event(&self) -> &str {
        self.text(&self.event)
    }

    /// The channel the message was emitted on (differs from the receiver's
    /// channel when it arrived through a propagation rule).
    pub fn channel(&self) -> &str {
        match &self.channel {
            None => &self.own_channel,
            Some(r) => self.text(r),
        }
    }

    /// Who emitted it.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Sequence number of the message among its origin's messages (from 1).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The payload bytes (shares the receive buffer, no copy).
    pub fn bytes(&self) -> Bytes {
        match &self.shm {
            Some(b) => b.clone(),
            None => self.frame.slice(self.payload.clone()),
        }
    }

    /// The payload as a slice.
    pub fn payload(&self) -> &[u8] {
        match &self.shm {
            Some(b) => b,
            None => &self.frame[self.payload.clone()],
        }
    }

    /// Parses the payload as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.payload())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("channel", &self.channel())
            .field("event", &self.event())
            .field("origin", &format_args!("{}", self.origin))
            .field("seq", &self.seq)
            .field(
                "payload",
                &String::from_utf8_lossy(&self.payload()[..self.payload().len().min(64)]),
            )
            .finish()
    }
}
