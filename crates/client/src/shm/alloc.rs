//! The publisher's slot allocator over its pool: first fit over a free
//! list kept sorted by offset, neighbours merged on free. Slots are
//! aligned to [`ALIGN`] bytes. Pools hold few slots at a time (a 64 MiB
//! pool holds 64 slots of 1 MiB), so a linear first fit is cheap.

use std::collections::{BTreeMap, HashMap};

/// Slot alignment: a cache line, so payloads never share one.
pub const ALIGN: u64 = 64;

/// See the module docs.
#[derive(Debug)]
pub struct Alloc {
    /// Free ranges: offset → length.
    free: BTreeMap<u64, u64>,
    /// Slots handed out: offset → length.
    used: HashMap<u64, u64>,
}

impl Alloc {
    /// All of `size` bytes free.
    pub fn new(size: u64) -> Self {
        let mut free = BTreeMap::new();
        if size > 0 {
            free.insert(0, size);
        }
        Alloc {
            free,
            used: HashMap::new(),
        }
    }

    /// A slot of at least `len` bytes, or `None` when no free range fits.
    pub fn alloc(&mut self, len: u64) -> Option<u64> {
        let need = len.max(1).checked_add(ALIGN - 1)? / ALIGN * ALIGN;
        let (&off, &have) = self.free.iter().find(|(_, &l)| l >= need)?;
        self.free.remove(&off);
        if have > need {
            self.free.insert(off + need, have - need);
        }
        self.used.insert(off, need);
        Some(off)
    }

    /// Gives back the slot at `offset`; false if no such slot is out.
    pub fn free(&mut self, offset: u64) -> bool {
        let Some(len) = self.used.remove(&offset) else {
            return false;
        };
        let (mut start, mut end) = (offset, offset + len);
        if let Some((&p, &pl)) = self.free.range(..offset).next_back() {
            if p + pl == offset {
                self.free.remove(&p);
                start = p;
            }
        }
        if let Some(nl) = self.free.remove(&end) {
            end += nl;
        }
        self.free.insert(start, end - start);
        true
    }

    /// Slots handed out and not yet freed.
    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_frees_and_merges() {
        let mut a = Alloc::new(1024);
        let x = a.alloc(100).unwrap();
        let y = a.alloc(100).unwrap();
        let z = a.alloc(700).unwrap();
        assert_eq!((x, y, z), (0, 128, 256));
        assert_eq!(a.alloc(200), None, "full");
        assert!(a.free(y));
        assert!(!a.free(y), "twice");
        assert_eq!(a.alloc(128), Some(128), "reused");
        assert!(a.free(128) && a.free(x) && a.free(z));
        assert_eq!(a.in_use(), 0);
        assert_eq!(a.alloc(1024), Some(0), "merged back into one range");
    }
}
