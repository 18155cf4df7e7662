//! LEB128 variable-length unsigned integers, used where small numbers are
//! common (client ids, sequence numbers) to keep small frames small.

use bytes::BufMut;

/// Longest encoding of a `u64`.
pub const MAX_LEN: usize = 10;

/// Bytes needed to encode `v`.
#[inline]
pub fn len(v: u64) -> usize {
    // 1 byte per started group of 7 significant bits, at least 1.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `v`.
#[inline]
pub fn put(out: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Decodes a value from the start of `buf`: `(value, bytes used)`, or `None`
/// if `buf` ends inside the number or the number overflows a `u64`.
#[inline]
pub fn decode(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(MAX_LEN) {
        let part = (b & 0x7f) as u64;
        if i == MAX_LEN - 1 && part > 1 {
            return None;
        }
        v |= part << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edges() {
        for v in [
            0,
            1,
            127,
            128,
            16383,
            16384,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put(&mut b, v);
            assert_eq!(b.len(), len(v), "len of {v}");
            assert_eq!(decode(&b), Some((v, b.len())));
            assert_eq!(decode(&b[..b.len() - 1]), None);
        }
    }

    #[test]
    fn rejects_overflow() {
        assert_eq!(decode(&[0xff; 10]), None);
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
    }
}
