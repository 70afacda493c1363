//! Software prefetch of flow-table memory for batched lookups ([`super::FlowTable::observe_batch`]).
//!
//! Owns only the address arithmetic and the CPU hint: a prefetch never changes what the
//! table computes, it only asks the cache to start loading lines a few packets before
//! they are needed.

/// Asks the CPU to start loading the cache line holding byte `p` (no-op off x86-64).
#[inline(always)]
#[allow(unsafe_code)]
fn hint(p: *const i8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is only a hint: it never faults and never reads into the
        // program, whatever the address (the pointer is not dereferenced). SSE, which
        // the intrinsic needs, is part of the x86-64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks the CPU to start loading the first cache line of `*p`.
#[inline(always)]
pub(super) fn line<T>(p: *const T) {
    hint(p.cast());
}

/// Asks the CPU to start loading every cache line of `*p`.
#[inline(always)]
pub(super) fn lines_of<T>(p: *const T) {
    let base = p.cast::<i8>();
    let size = std::mem::size_of::<T>();
    let mut off = 0;
    while off < size {
        hint(base.wrapping_add(off));
        off += 64;
    }
    // The last line, when the object straddles one more line than size / 64.
    hint(base.wrapping_add(size.saturating_sub(1)));
}
