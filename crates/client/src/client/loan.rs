//! Loans: large payloads built in place ([`Client::loan`], then
//! [`Client::emit_loan`]). With shared memory on (Linux,
//! `ClientBuilder::shared_memory`), a loan is a slot of the client's own
//! pool, so the payload is written once, by the application, where
//! subscribers read it: the library never copies it. Otherwise (shared
//! memory off or refused, a payload under `SHM_MIN`, a pool still full
//! after the bounded wait) it is an ordinary heap buffer sent through the
//! socket, so the same code works everywhere. See docs/SHM.md.

use std::ops::{Deref, DerefMut};

use netcluster_proto::names;

use super::Client;
use crate::error::EmitError;

/// A writable payload of a fixed length, to fill and then emit with
/// [`Client::emit_loan`] (which consumes it). Dropped without being
/// emitted, it gives its slot back.
///
/// Its bytes are unspecified when loaned: a shared-memory slot holds what
/// an earlier message of this client left there (a heap loan is zeroed).
/// Write every byte you mean to send.
///
/// **No write after emit.** `emit_loan` takes the loan by value, and every
/// slice of it borrows it, so the compiler rejects any write after the
/// emit; there is no `Clone`, no raw pointer and no owned view. Other
/// processes can never write a pool (see docs/SHM.md). This does not
/// compile:
///
/// ```compile_fail
/// # async fn f(client: netcluster::Client) -> Result<(), netcluster::EmitError> {
/// let mut loan = client.loan(64 * 1024).await?;
/// let bytes: &mut [u8] = &mut loan;
/// client.emit_loan("frame", loan).await?; // error: `loan` is borrowed
/// bytes[0] = 1;
/// # Ok(()) }
/// ```
///
/// nor does this:
///
/// ```compile_fail
/// # async fn f(client: netcluster::Client) -> Result<(), netcluster::EmitError> {
/// let mut loan = client.loan(64 * 1024).await?;
/// client.emit_loan("frame", loan).await?;
/// loan[0] = 1; // error: `loan` was moved
/// # Ok(()) }
/// ```
pub struct Loan {
    kind: Kind,
}

enum Kind {
    #[cfg(target_os = "linux")]
    Slot(crate::shm::SlotLoan),
    Heap(Vec<u8>),
}

impl Loan {
    /// Its length (what `loan` was asked for).
    pub fn len(&self) -> usize {
        self.deref().len()
    }

    /// True for a loan of zero bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it is a slot of the shared-memory pool (emitted without a
    /// copy) rather than a heap buffer (sent through the socket).
    pub fn is_shared(&self) -> bool {
        match &self.kind {
            #[cfg(target_os = "linux")]
            Kind::Slot(_) => true,
            Kind::Heap(_) => false,
        }
    }
}

impl Deref for Loan {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.kind {
            #[cfg(target_os = "linux")]
            Kind::Slot(s) => s.bytes(),
            Kind::Heap(v) => v,
        }
    }
}

impl DerefMut for Loan {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.kind {
            #[cfg(target_os = "linux")]
            Kind::Slot(s) => s.bytes_mut(),
            Kind::Heap(v) => v,
        }
    }
}

impl AsRef<[u8]> for Loan {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsMut<[u8]> for Loan {
    fn as_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl std::fmt::Debug for Loan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loan")
            .field("len", &self.len())
            .field("shared", &self.is_shared())
            .finish()
    }
}

impl Client {
    /// A writable payload of `len` bytes to fill in place and emit with
    /// [`Client::emit_loan`]: with shared memory on, a slot of this
    /// client's pool (no copy at all: subscribers read what was written),
    /// waiting up to `SLOT_WAIT` (200 ms) for one when the pool is full;
    /// otherwise a heap buffer. Fails only when `len` is over the daemon's
    /// largest message.
    ///
    /// ```no_run
    /// # async fn f(client: netcluster::Client) -> Result<(), netcluster::EmitError> {
    /// let mut frame = client.loan(1 << 20).await?;
    /// frame[..8].copy_from_slice(&42u64.to_le_bytes()); // a header
    /// frame[8..].fill(0x80); // the rest, produced in place
    /// client.emit_loan("frame", frame).await?;
    /// # Ok(()) }
    /// ```
    pub async fn loan(&self, len: usize) -> Result<Loan, EmitError> {
        self.fits(len)?;
        #[cfg(target_os = "linux")]
        if let Some(shm) = &self.shared.shm {
            if let Some(slot) = shm.lend(len).await {
                return Ok(Loan {
                    kind: Kind::Slot(slot),
                });
            }
        }
        Ok(Loan {
            kind: Kind::Heap(vec![0; len]),
        })
    }

    /// Emits `event` with a loan's bytes, consuming it. A slot of the
    /// current pool crosses the socket as a descriptor; a slot of a pool
    /// that a reconnect retired since the loan (its offset would name
    /// other bytes in the new pool) and a heap loan are sent with their
    /// payload, like [`Client::emit_bytes`]. On error the loan's slot is
    /// given back.
    pub async fn emit_loan(&self, event: &str, loan: Loan) -> Result<(), EmitError> {
        names::check_event(event)?;
        match loan.kind {
            Kind::Heap(v) => self.emit_bytes(event, v).await,
            #[cfg(target_os = "linux")]
            Kind::Slot(s) => self.emit_slot(event, s).await,
        }
    }

    /// [`Client::emit_loan`] of a shared-memory slot.
    #[cfg(target_os = "linux")]
    async fn emit_slot(&self, event: &str, slot: crate::shm::SlotLoan) -> Result<(), EmitError> {
        use bytes::Bytes;
        use netcluster_proto::frame;
        let payload = slot.bytes();
        self.fits(payload.len())?;
        // Copied before the slot is handed over: once the daemon frees it
        // (at once if nobody listens), another loan may rewrite it.
        let echo = self
            .wants_echo(event)
            .then(|| Bytes::copy_from_slice(payload));
        let (gen, off) = slot.slot();
        let len = payload.len() as u32;
        let shm = slot.shm();
        let mut named = false;
        // Which it is, is decided under the output buffer's lock, as for
        // `emit_bytes` (see `Shm::is_current`).
        let sent = self
            .shared
            .send(|b| {
                if shm.is_current(gen) {
                    frame::shm::encode_publish(b, off, len, event);
                    named = true;
                } else {
                    frame::encode_publish(b, event, payload);
                }
            })
            .await;
        if named {
            slot.handed_over();
        } else {
            drop(slot);
        }
        sent.map_err(EmitError::Disconnected)?;
        if let Some(p) = echo {
            self.echo(event, &p).await;
        }
        Ok(())
    }
}
