//! The flow table's hash index: key hash -> slab index, open addressing with linear
//! probing over one array of 8-byte entries.
//!
//! Owns only the index. Each entry packs the high 32 bits of the key's hash (the tag) with
//! the slab index; an entry's home bucket is taken from its tag, so the index can grow and
//! delete (backward shift, no tombstones) without looking at the keys. It replaces
//! `hashbrown::HashTable` because a lookup's memory is then known from the hash alone:
//! [`FlowIndex::prefetch`] can ask for a packet's bucket several packets before its
//! lookup, which `HashTable` (no bucket address in its API) cannot.

/// An empty entry.
const EMPTY: u64 = 0;
/// Entries are at most this share of the buckets (3/4) before the index doubles.
const MAX_LOAD_NUM: usize = 3;
const MAX_LOAD_DEN: usize = 4;
/// Buckets of the first allocation.
const MIN_BUCKETS: usize = 64;

/// Hash -> slab index, for the slab indices `0..u32::MAX - 1`.
#[derive(Debug, Default)]
pub(super) struct FlowIndex {
    /// `tag << 32 | (slab index + 1)`, or [`EMPTY`]; the length is a power of two (or 0).
    entries: Vec<u64>,
    len: usize,
}

#[inline]
fn tag_of(hash: u64) -> u64 {
    hash >> 32
}

impl FlowIndex {
    /// An empty index (nothing allocated yet).
    pub(super) fn new() -> Self {
        FlowIndex::default()
    }

    #[inline]
    fn mask(&self) -> usize {
        self.entries.len().wrapping_sub(1)
    }

    /// The home bucket of a tag.
    #[inline]
    fn home(&self, tag: u64) -> usize {
        (tag as usize) & self.mask()
    }

    /// Asks the CPU to start loading the home bucket of `hash`.
    #[inline(always)]
    pub(super) fn prefetch(&self, hash: u64) {
        if let Some(e) = self.entries.get(self.home(tag_of(hash))) {
            super::prefetch::line(e);
        }
    }

    /// The slab index of the first entry with `hash`'s tag for which `eq` is true.
    #[inline]
    pub(super) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.entries.is_empty() {
            return None;
        }
        let tag = tag_of(hash);
        let mask = self.mask();
        let mut b = self.home(tag);
        loop {
            let e = self.entries[b];
            if e == EMPTY {
                return None;
            }
            if e >> 32 == tag {
                let idx = (e as u32).wrapping_sub(1);
                if eq(idx) {
                    return Some(idx);
                }
            }
            b = (b + 1) & mask;
        }
    }

    /// Adds `idx` under `hash` (the caller knows no entry for the same key exists).
    pub(super) fn insert(&mut self, hash: u64, idx: u32) {
        if (self.len + 1) * MAX_LOAD_DEN > self.entries.len() * MAX_LOAD_NUM {
            self.grow();
        }
        self.place(tag_of(hash) << 32 | (u64::from(idx) + 1));
        self.len += 1;
    }

    /// Puts an entry into the first empty bucket from its home on.
    fn place(&mut self, entry: u64) {
        let mask = self.mask();
        let mut b = self.home(entry >> 32);
        while self.entries[b] != EMPTY {
            b = (b + 1) & mask;
        }
        self.entries[b] = entry;
    }

    fn grow(&mut self) {
        let buckets = (self.entries.len() * 2).max(MIN_BUCKETS);
        let old = std::mem::replace(&mut self.entries, vec![EMPTY; buckets]);
        for e in old {
            if e != EMPTY {
                self.place(e);
            }
        }
    }

    /// Removes the entry of slab index `idx` stored under `hash`; false if there is none.
    pub(super) fn remove(&mut self, hash: u64, idx: u32) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let want = tag_of(hash) << 32 | (u64::from(idx) + 1);
        let mask = self.mask();
        let mut hole = self.home(want >> 32);
        loop {
            let e = self.entries[hole];
            if e == EMPTY {
                return false;
            }
            if e == want {
                break;
            }
            hole = (hole + 1) & mask;
        }
        // Backward-shift deletion: move later entries of the run into the hole when their
        // home is not between the hole and their bucket (cyclically).
        let mut b = hole;
        loop {
            b = (b + 1) & mask;
            let e = self.entries[b];
            if e == EMPTY {
                break;
            }
            let home = self.home(e >> 32);
            let dist_home = b.wrapping_sub(home) & mask;
            let dist_hole = b.wrapping_sub(hole) & mask;
            if dist_home >= dist_hole {
                self.entries[hole] = e;
                hole = b;
            }
        }
        self.entries[hole] = EMPTY;
        self.len -= 1;
        true
    }

    /// Bytes allocated.
    pub(super) fn allocation_size(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Remove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct hashes (and tags), so runs, wrap-around and equal tags are common.
        let hash = (0u64..40, 0u64..6).prop_map(|(t, lo)| t.wrapping_mul(0x9e37_79b9) << 32 | lo);
        prop_oneof![3 => hash.prop_map(Op::Insert), 2 => any::<usize>().prop_map(Op::Remove)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Against a model map: every live index is found under its hash (and only
        /// there), removals take out exactly one entry, through growth and backward shifts.
        #[test]
        fn matches_a_model_map(ops in proptest::collection::vec(op(), 1..600)) {
            let mut ix = FlowIndex::new();
            let mut model: HashMap<u32, u64> = HashMap::new();
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Insert(h) => {
                        ix.insert(h, next);
                        model.insert(next, h);
                        next += 1;
                    }
                    Op::Remove(k) => {
                        let mut live: Vec<u32> = model.keys().copied().collect();
                        live.sort_unstable();
                        if let Some(&idx) = live.get(k % live.len().max(1)) {
                            let h = model[&idx];
                            prop_assert!(!ix.remove(h ^ (1 << 40), idx), "wrong hash removed");
                            prop_assert!(ix.remove(h, idx));
                            model.remove(&idx);
                            prop_assert_eq!(ix.find(h, |i| i == idx), None);
                        }
                    }
                }
                prop_assert_eq!(ix.len, model.len());
                for (&idx, &h) in &model {
                    prop_assert_eq!(ix.find(h, |i| i == idx), Some(idx));
                }
            }
            let used = ix.entries.iter().filter(|&&e| e != EMPTY).count();
            prop_assert_eq!(used, model.len());
        }
    }

    #[test]
    fn empty_index_finds_and_removes_nothing() {
        let mut ix = FlowIndex::new();
        assert_eq!(ix.find(7, |_| true), None);
        assert!(!ix.remove(7, 0));
        ix.prefetch(7);
        assert_eq!(ix.allocation_size(), 0);
    }
}
