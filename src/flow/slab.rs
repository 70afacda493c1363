//! The flow table's slab: flow slots in fixed-size chunks, addressed by a `u32` index.
//!
//! Owns only storage. Growing a `Vec` of slots reallocates and copies the whole slab and,
//! at any growth factor, leaves a share of it unused at the peak (with growth by a
//! quarter, up to 20 % of the table state). Chunks of [`CHUNK`] slots are allocated one at
//! a time and never move, so at most one partly used chunk is ever held beyond the live
//! flows, and a slot's address is stable for the table's lifetime.

use std::ops::{Index, IndexMut};

/// log2 of the slots per chunk.
const CHUNK_BITS: u32 = 10;
/// Slots per chunk (1,024: about 280 KiB of flow slots).
pub(super) const CHUNK: usize = 1 << CHUNK_BITS;

/// Slots in chunks of [`CHUNK`]; indices `0..len()` are in use.
#[derive(Debug)]
pub(super) struct Slab<T> {
    /// Whole chunks (a fixed-size array each, so indexing inside one needs no check).
    chunks: Vec<Box<[T; CHUNK]>>,
    len: usize,
}

impl<T: Clone> Slab<T> {
    /// An empty slab (no chunk allocated yet).
    pub(super) fn new() -> Self {
        Slab {
            chunks: Vec::new(),
            len: 0,
        }
    }

    /// Slots in use.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Appends a slot, allocating a new chunk (filled with copies of `v`) when the last
    /// one is full.
    pub(super) fn push(&mut self, v: T) {
        let at = self.len & (CHUNK - 1);
        if at == 0 {
            let chunk: Box<[T]> = vec![v.clone(); CHUNK].into_boxed_slice();
            let Ok(chunk) = Box::<[T; CHUNK]>::try_from(chunk) else {
                unreachable!("a vec of CHUNK elements is a [T; CHUNK]")
            };
            self.chunks.push(chunk);
        }
        if let Some(c) = self.chunks.last_mut() {
            c[at] = v;
            self.len += 1;
        }
    }

    /// The slot at `i`, if in use.
    #[inline]
    pub(super) fn get(&self, i: usize) -> Option<&T> {
        if i < self.len {
            self.chunks
                .get(i >> CHUNK_BITS)
                .map(|c| &c[i & (CHUNK - 1)])
        } else {
            None
        }
    }

    /// Bytes allocated for slots (whole chunks) and the chunk table.
    pub(super) fn allocation_size(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Box<[T; CHUNK]>>()
            + self.chunks.len() * std::mem::size_of::<[T; CHUNK]>()
    }
}

impl<T> Index<usize> for Slab<T> {
    type Output = T;
    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

impl<T> IndexMut<usize> for Slab<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_cross_chunks_and_memory_grows_by_one_chunk() {
        let mut s = Slab::new();
        assert_eq!(s.allocation_size(), 0);
        for i in 0..(2 * CHUNK + 3) as u64 {
            s.push(i);
        }
        assert_eq!(s.len(), 2 * CHUNK + 3);
        for i in [0, CHUNK - 1, CHUNK, 2 * CHUNK + 2] {
            assert_eq!(s[i], i as u64);
            assert_eq!(s.get(i), Some(&(i as u64)));
        }
        assert_eq!(s.get(2 * CHUNK + 3), None);
        s[CHUNK] = 7;
        assert_eq!(s[CHUNK], 7);
        let slots = 3 * CHUNK * std::mem::size_of::<u64>();
        assert!(s.allocation_size() >= slots);
        assert!(
            s.allocation_size() < slots + 1024,
            "{}",
            s.allocation_size()
        );
    }
}
