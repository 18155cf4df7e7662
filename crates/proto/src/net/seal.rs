//! Sealing: authenticated encryption of datagrams with a pre-shared key.
//!
//! This module owns the key type, the key ring (the current key and, for a
//! grace period after a change, the previous one) and the transformation
//! between a plain datagram and its sealed form. A sealed datagram keeps
//! its 24-byte header in clear, with the `SEALED` flag and the key id set;
//! the header is the AEAD's associated data, so no byte of it can be
//! altered, and the body is replaced by its ciphertext followed by a
//! 16-byte tag.
//!
//! The AEAD is XChaCha20-Poly1305 (ChaCha20-Poly1305 with a 24-byte nonce,
//! from RustCrypto's `chacha20poly1305` crate). The nonce is the header's
//! node id, kind and sequence number, which name exactly one datagram of
//! one daemon run: 17 bytes, more than the 12 of the plain construction
//! could hold without cutting the node id (and cut node ids would collide
//! across restarts long before 64-bit ones do). A retransmission reuses the
//! nonce with the same bytes, which reveals nothing; a key change seals the
//! retransmission under the new key.
//!
//! The key id byte is derived from the key (a keyed hash, 1..=255), so
//! daemons given the same key agree on it without configuring it, and a
//! receiver tries only the key that the datagram names.

use std::fmt;
use std::time::Instant;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use super::wire::{flags, WireError, HEADER_LEN, TAG_LEN};

/// Bytes of a key.
pub const KEY_LEN: usize = 32;

/// A pre-shared 256-bit key. Its `Debug` shows only the key id.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    bytes: [u8; KEY_LEN],
    id: u8,
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not 64 characters long.
    #[error("a key is 64 hexadecimal digits (32 bytes), found {0} characters")]
    Length(usize),
    /// A character that is not a hexadecimal digit.
    #[error("a key is 64 hexadecimal digits; character {0} is not one")]
    NotHex(usize),
}

impl Key {
    /// A key from its bytes.
    pub fn new(bytes: [u8; KEY_LEN]) -> Key {
        let id = derive_id(&bytes);
        Key { bytes, id }
    }

    /// A key from 64 hexadecimal digits (either case; surrounding
    /// whitespace is ignored).
    pub fn from_hex(text: &str) -> Result<Key, KeyError> {
        let t = text.trim();
        if t.chars().count() != KEY_LEN * 2 {
            return Err(KeyError::Length(t.chars().count()));
        }
        let mut bytes = [0u8; KEY_LEN];
        let digits = t.as_bytes();
        for (i, b) in bytes.iter_mut().enumerate() {
            let hi = hex(digits[2 * i]).ok_or(KeyError::NotHex(2 * i + 1))?;
            let lo = hex(digits[2 * i + 1]).ok_or(KeyError::NotHex(2 * i + 2))?;
            *b = hi << 4 | lo;
        }
        Ok(Key::new(bytes))
    }

    /// The key id carried in the header of datagrams it seals (1..=255).
    pub fn id(&self) -> u8 {
        self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.bytes.into())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(id {})", self.id)
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The key id: the first byte of the tag of an empty message under a nonce
/// no datagram uses (kind byte 0xff), mapped to 1..=255.
fn derive_id(bytes: &[u8; KEY_LEN]) -> u8 {
    let c = XChaCha20Poly1305::new(&(*bytes).into());
    let nonce = XNonce::from([0xff; 24]);
    let tag = c
        .encrypt_in_place_detached(&nonce, b"netcluster key id", &mut [])
        .expect("an empty message always seals");
    1 + tag[0] % 255
}

/// The nonce of a datagram: node id, kind and sequence number from its
/// header, then zeros.
fn nonce(header: &[u8]) -> XNonce {
    let mut n = [0u8; 24];
    n[..8].copy_from_slice(&header[8..16]);
    n[8] = header[6];
    n[9..17].copy_from_slice(&header[16..24]);
    XNonce::from(n)
}

/// A key ready to seal and open.
pub(crate) struct Sealer {
    key: Key,
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealer(id {})", self.key.id)
    }
}

impl Sealer {
    pub(crate) fn new(key: &Key) -> Sealer {
        Sealer {
            key: key.clone(),
            cipher: key.cipher(),
        }
    }

    /// Appends the sealed form of the plain datagram `plain` to `out`.
    pub(crate) fn seal(&self, plain: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(plain);
        let d = &mut out[start..];
        d[5] |= flags::SEALED;
        d[7] = self.key.id;
        let (head, body) = d.split_at_mut(HEADER_LEN);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce(head), head, body)
            .expect("datagrams are far below the AEAD's length limit");
        out.extend_from_slice(&tag);
    }

    /// Opens a sealed datagram in place: on success `d` holds the plain
    /// datagram (header with the flag and key id cleared, then the body).
    fn open(&self, d: &mut Vec<u8>) -> Result<(), WireError> {
        let body_end = d.len() - TAG_LEN;
        let tag = Tag::clone_from_slice(&d[body_end..]);
        let (head, rest) = d.split_at_mut(HEADER_LEN);
        let body = &mut rest[..body_end - HEADER_LEN];
        self.cipher
            .decrypt_in_place_detached(&nonce(head), head, body, &tag)
            .map_err(|_| WireError::Unauthentic)?;
        d.truncate(body_end);
        d[5] &= !flags::SEALED;
        d[7] = 0;
        Ok(())
    }
}

/// Seals a plain datagram (as [`wire`](super::wire) encodes them) with
/// `key`, appending the result to `out`. For tools and tests; a
/// [`Net`](super::Net) seals what it sends by itself.
pub fn seal_datagram(key: &Key, plain: &[u8], out: &mut Vec<u8>) {
    assert!(plain.len() >= HEADER_LEN, "a datagram starts with a header");
    Sealer::new(key).seal(plain, out);
}

/// The keys of a node: the one it seals with, and the one it had before,
/// still accepted until a deadline. `None` is "no key" (plain datagrams).
#[derive(Debug, Default)]
pub(crate) struct Keyring {
    current: Option<Sealer>,
    previous: Option<(Option<Sealer>, Instant)>,
}

impl Keyring {
    pub(crate) fn new(key: Option<&Key>) -> Keyring {
        Keyring {
            current: key.map(Sealer::new),
            previous: None,
        }
    }

    /// The key to seal with, if any.
    pub(crate) fn sealer(&self) -> Option<&Sealer> {
        self.current.as_ref()
    }

    /// Switches to `key`; the old one stays accepted until `until`. Setting
    /// the key in force again changes nothing.
    pub(crate) fn rotate(&mut self, key: Option<&Key>, until: Instant) {
        let same = match (&self.current, key) {
            (Some(c), Some(k)) => c.key == *k,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        let old = std::mem::replace(&mut self.current, key.map(Sealer::new));
        self.previous = Some((old, until));
    }

    /// The previous key while its grace period lasts.
    fn previous(&self, now: Instant) -> Option<&Option<Sealer>> {
        self.previous
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(k, _)| k)
    }

    /// Whether plain datagrams are accepted at `now`.
    pub(crate) fn accepts_plain(&self, now: Instant) -> bool {
        self.current.is_none() || matches!(self.previous(now), Some(None))
    }

    /// Opens the sealed datagram `data` into `out` (replaced), with the key
    /// it names among those accepted at `now`.
    pub(crate) fn open(
        &self,
        now: Instant,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        let id = data[7];
        let mut tried = false;
        let candidates = [
            self.current.as_ref(),
            self.previous(now).and_then(Option::as_ref),
        ];
        for s in candidates.into_iter().flatten().filter(|s| s.key.id == id) {
            tried = true;
            out.clear();
            out.extend_from_slice(data);
            if s.open(out).is_ok() {
                return Ok(());
            }
        }
        if !tried {
            return Err(if self.current.is_none() && self.previous(now).is_none() {
                WireError::Sealed
            } else {
                WireError::UnknownKey(id)
            });
        }
        Err(WireError::Unauthentic)
    }
}
