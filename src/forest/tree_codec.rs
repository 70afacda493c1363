//! The compact binary form of one [`Tree`], used by non-human-readable serde formats
//! (the model file's bincode body); human-readable formats (JSON) keep the five named
//! arrays.
//!
//! Nodes in index order, each:
//!
//! | field | encoding |
//! |---|---|
//! | split feature | LEB128 varint: 0 for a leaf, feature + 1 otherwise |
//! | threshold | 8 bytes, the `f64` bit pattern, little-endian |
//! | left, right child | internal nodes only: LEB128 varints of `child - node` (>= 1) |
//! | training rows | LEB128 varint |
//!
//! preceded by the node count (varint). Children always point forward in a valid tree,
//! so their offsets are small (1 for a left child in depth-first order): a tree takes
//! about 11 bytes per node. Decoding is one loop over the bytes, so a model loads
//! several times faster than through serde's element-by-element sequences (format 4).
//! Decoding checks only what it needs to rebuild the arrays (lengths, varint widths,
//! index overflow); the structure is checked by [`super::IsolationForest::validate`],
//! which every deserialised forest goes through.

use super::{Tree, NONE};

/// Smallest encoding of one node (feature, threshold, rows), which bounds the node count
/// a blob of a given length can claim before anything is allocated.
const MIN_NODE_BYTES: usize = 10;

/// Encodes a tree. Fails, naming the node, when a leaf has children or a child does not
/// point forward: such a tree cannot be valid, and the format has no room for it.
pub(super) fn encode(tree: &Tree) -> Result<Vec<u8>, String> {
    let n = tree.feature.len();
    if tree.threshold.len() != n
        || tree.left.len() != n
        || tree.right.len() != n
        || tree.n_samples.len() != n
    {
        return Err("node arrays of different lengths".into());
    }
    let mut out = Vec::with_capacity(n * 12 + 5);
    put(&mut out, n as u64);
    for i in 0..n {
        let f = tree.feature[i];
        let (l, r) = (tree.left[i], tree.right[i]);
        put(&mut out, if f == NONE { 0 } else { u64::from(f) + 1 });
        out.extend_from_slice(&tree.threshold[i].to_bits().to_le_bytes());
        if f == NONE {
            if l != NONE || r != NONE {
                return Err(format!("node {i}: leaf with children"));
            }
        } else {
            for c in [l, r] {
                if c == NONE || c as usize <= i {
                    return Err(format!("node {i}: child {c} does not point forward"));
                }
                put(&mut out, u64::from(c) - i as u64);
            }
        }
        put(&mut out, u64::from(tree.n_samples[i]));
    }
    Ok(out)
}

/// Decodes a tree written by [`encode`]; the error says what is wrong and where.
pub(super) fn decode(bytes: &[u8]) -> Result<Tree, String> {
    let mut c = Cursor { bytes, at: 0 };
    let n = c.u32("node count")? as usize;
    if n > bytes.len() / MIN_NODE_BYTES {
        return Err(format!(
            "{n} nodes cannot fit in a {}-byte tree",
            bytes.len()
        ));
    }
    let mut tree = Tree {
        feature: Vec::with_capacity(n),
        threshold: Vec::with_capacity(n),
        left: Vec::with_capacity(n),
        right: Vec::with_capacity(n),
        n_samples: Vec::with_capacity(n),
    };
    for i in 0..n {
        let f = c.u32("feature")?;
        tree.feature.push(f.wrapping_sub(1)); // 0 (leaf) -> NONE
        tree.threshold.push(f64::from_bits(c.u64_le()?));
        if f == 0 {
            tree.left.push(NONE);
            tree.right.push(NONE);
        } else {
            for side in [&mut tree.left, &mut tree.right] {
                let d = c.u32("child offset")?;
                match (i as u32).checked_add(d) {
                    Some(child) if d > 0 && child != NONE => side.push(child),
                    _ => return Err(format!("node {i}: child offset {d} out of range")),
                }
            }
        }
        tree.n_samples.push(c.u32("training rows")?);
    }
    if c.at != bytes.len() {
        return Err(format!(
            "{} bytes left after the last of {n} nodes",
            bytes.len() - c.at
        ));
    }
    Ok(tree)
}

/// Appends `v` as an unsigned LEB128 varint.
fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reading position in a tree's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    /// A varint that must fit a `u32`; `what` names it in errors.
    #[inline(always)]
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        // Most values (features, child offsets, small row counts) take one byte.
        if let Some(&b) = self.bytes.get(self.at) {
            if b < 0x80 {
                self.at += 1;
                return Ok(u32::from(b));
            }
        }
        self.u32_long(what)
    }

    /// [`Cursor::u32`] for values of two bytes and more, and every error.
    #[inline(never)]
    fn u32_long(&mut self, what: &str) -> Result<u32, String> {
        let mut v: u32 = 0;
        for shift in (0..35).step_by(7) {
            let Some(&b) = self.bytes.get(self.at) else {
                return Err(format!("truncated in a {what} at byte {}", self.at));
            };
            self.at += 1;
            let bits = u32::from(b & 0x7f);
            if shift == 28 && bits > 0x0f {
                return Err(format!("{what} at byte {} exceeds 32 bits", self.at - 1));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("{what} at byte {} exceeds 32 bits", self.at - 1))
    }

    /// Eight little-endian bytes.
    #[inline]
    fn u64_le(&mut self) -> Result<u64, String> {
        let end = self.at + 8;
        let Some(b) = self.bytes.get(self.at..end) else {
            return Err(format!("truncated in a threshold at byte {}", self.at));
        };
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        self.at = end;
        Ok(u64::from_le_bytes(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Tree {
        Tree {
            feature: vec![3, NONE, 0, NONE, NONE],
            threshold: vec![0.25, 0.0, -1e300, -2.0, f64::MIN_POSITIVE],
            left: vec![1, NONE, 3, NONE, NONE],
            right: vec![2, NONE, 4, NONE, NONE],
            n_samples: vec![256, 200, 56, 1, 55],
        }
    }

    #[test]
    fn round_trips_exactly() {
        let t = tree();
        let b = encode(&t).expect("encodes");
        assert_eq!(decode(&b), Ok(t));
        let single = Tree {
            feature: vec![NONE],
            threshold: vec![0.0],
            left: vec![NONE],
            right: vec![NONE],
            n_samples: vec![u32::MAX],
        };
        assert_eq!(decode(&encode(&single).expect("encodes")), Ok(single));
    }

    #[test]
    fn refuses_to_encode_what_cannot_be_valid() {
        let mut t = tree();
        t.left[0] = 0;
        assert!(encode(&t).is_err_and(|e| e.contains("node 0")));
        let mut t = tree();
        t.right[1] = 4;
        assert!(encode(&t).is_err_and(|e| e.contains("leaf with children")));
        let mut t = tree();
        t.n_samples.pop();
        assert!(encode(&t).is_err());
    }

    #[test]
    fn every_truncation_and_a_trailing_byte_are_errors() {
        let b = encode(&tree()).expect("encodes");
        for len in 0..b.len() {
            assert!(decode(&b[..len]).is_err(), "prefix of {len} bytes decoded");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode(&longer).is_err_and(|e| e.contains("left after")));
    }

    #[test]
    fn huge_counts_and_offsets_are_errors_before_allocating() {
        // A node count of 2^32 - 1 in a 5-byte blob.
        assert!(decode(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err_and(|e| e.contains("cannot fit")));
        // A sixth varint byte, and a fifth one with bits beyond 32.
        assert!(decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert!(decode(&[0xff, 0xff, 0xff, 0xff, 0x10]).is_err_and(|e| e.contains("32 bits")));
        // A child offset that overflows the node index.
        let mut b = Vec::new();
        put(&mut b, 1);
        put(&mut b, 1);
        b.extend_from_slice(&0f64.to_bits().to_le_bytes());
        put(&mut b, u64::from(u32::MAX));
        put(&mut b, 1);
        put(&mut b, 1);
        assert!(decode(&b).is_err_and(|e| e.contains("child offset")));
    }
}
