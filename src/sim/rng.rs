//! Deterministic randomness: a fixed, documented seed derivation (FNV-1a 64 of the
//! stream id mixed with the global seed through SplitMix64) feeding one ChaCha8 generator
//! per stream, plus the few distributions the simulator needs, built only on `next_u64`
//! so that the output does not depend on `rand`'s distribution code.

use rand::RngCore;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One SplitMix64 step (Steele, Lea, Flood 2014): advances `state` and returns the mix.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a 64-bit hash of `bytes` (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The 32-byte ChaCha8 seed of stream `stream_id`: SplitMix64 seeded with
/// `global ^ fnv1a64(stream_id) ^ salt.rotate_left(32)`, four outputs little-endian.
pub fn stream_seed(global: u64, salt: u64, stream_id: &str) -> [u8; 32] {
    let mut state = global ^ fnv1a64(stream_id.as_bytes()) ^ salt.rotate_left(32);
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_exact_mut(8) {
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    seed
}

/// A stream's private generator with the distributions the simulator uses.
#[derive(Debug, Clone)]
pub struct SimRng(ChaCha8Rng);

impl SimRng {
    /// The generator of stream `stream_id` (see [`stream_seed`]).
    pub fn for_stream(global: u64, salt: u64, stream_id: &str) -> Self {
        SimRng(ChaCha8Rng::from_seed(stream_seed(global, salt, stream_id)))
    }
    /// A uniformly random `u64`.
    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// A uniformly random `u32` (high half of one `u64`).
    pub fn u32(&mut self) -> u32 {
        (self.0.next_u64() >> 32) as u32
    }
    /// A uniformly random `u16`.
    pub fn u16(&mut self) -> u16 {
        (self.0.next_u64() >> 48) as u16
    }
    /// A uniform integer in `lo..hi` (multiply-shift; `lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        lo + ((u128::from(self.0.next_u64()) * u128::from(span)) >> 64) as u64
    }
    /// A uniform index below `n` (0 when `n` is 0).
    pub fn index(&mut self, n: usize) -> usize {
        self.range(0, n as u64) as usize
    }
    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn f64(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// A uniform float in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    /// `period × (1 + U(−j, +j))` in µs, at least 1.
    pub fn jitter(&mut self, period_us: u64, j: f64) -> u64 {
        let f = 1.0 + self.uniform(-j, j);
        ((period_us as f64 * f).round() as u64).max(1)
    }
    /// An exponential variate with the given mean in µs (Poisson inter-arrival), at least 1.
    pub fn exp(&mut self, mean_us: f64) -> u64 {
        let u = self.f64();
        ((-(1.0 - u).ln() * mean_us).round() as u64).max(1)
    }
    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.0.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
    /// A uniformly chosen element of a non-empty slice (`None` if empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.index(items.len()))
        }
    }
    /// An index drawn with probability proportional to `weights` (0 if all are zero).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.range(0, total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 0 (reference implementation by Vigna).
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn fnv_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn streams_are_independent_and_reproducible() {
        let mut a = SimRng::for_stream(1, 0, "cam-01/rtp");
        let mut b = SimRng::for_stream(1, 0, "cam-01/rtp");
        let mut c = SimRng::for_stream(1, 0, "cam-02/rtp");
        let va: Vec<u64> = (0..4).map(|_| a.u64()).collect();
        let vb: Vec<u64> = (0..4).map(|_| b.u64()).collect();
        let vc: Vec<u64> = (0..4).map(|_| c.u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
    }

    #[test]
    fn range_and_jitter_bounds() {
        let mut r = SimRng::for_stream(7, 0, "x");
        for _ in 0..1000 {
            let v = r.range(10, 20);
            assert!((10..20).contains(&v));
            let j = r.jitter(1_000_000, 0.05);
            assert!((950_000..=1_050_000).contains(&j));
        }
    }
}
