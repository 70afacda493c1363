//! Isolation forest (Liu, Ting & Zhou 2008) with scikit-learn's conventions: seeded,
//! flat node arrays, no I/O.
//!
//! # Algorithm (what [`IsolationForest::fit`] does)
//!
//! For each of `n_trees` trees, `psi = min(max_samples, n)` training rows are drawn
//! **without replacement**, and an isolation tree is grown on them with height limit
//! `ceil(log2(max(psi, 2)))` (scikit-learn's `max_depth`). At a node, a feature is drawn
//! uniformly among the features that are *not constant* in that node (scikit-learn's
//! `ExtraTreeRegressor(max_features=1, splitter="random")` keeps redrawing until it finds
//! a non-constant one; a feature counts as constant when `max <= min + 1e-7` in `f32`, as
//! in scikit-learn), and the threshold is drawn uniformly in `[min, max)` of that feature
//! in the node. A row goes **left when `x[f] <= threshold`**. A node becomes a leaf at the
//! height limit, when it holds one row, or when every feature is constant in it.
//!
//! # Scoring (what [`IsolationForest::score`] returns)
//!
//! For one tree, the path length of `x` is `h = depth + c(n_leaf)` where `depth` counts
//! the edges from the root to the leaf `x` reaches and `n_leaf` the training rows of that
//! leaf; `c` is [`average_path_length`] (scikit-learn's `_average_path_length`). The
//! score is the paper's `s = 2^(-E[h] / c(psi))` in `(0, 1]`; **higher means more
//! anomalous**, about 0.5 means "no distinct anomaly". It equals scikit-learn's
//! `-score_samples(x)` (checked to 1e-9 in `tests/forest_sklearn.rs`; the summation order
//! and the float32 cast of the inputs are those of scikit-learn). With `psi == 1`,
//! `c(psi) == 0` and the score is 0.5, as in scikit-learn.
//!
//! Inputs are compared as `f32`; thresholds are `f64` so that a forest exported from
//! scikit-learn ([`IsolationForest::from_sklearn_json`]) scores identically. NaN is
//! rejected at training; a NaN feature at scoring time is routed *left* (never a panic,
//! and the score stays in `(0, 1]`).
//!
//! # Attribution (what [`IsolationForest::score_explained`] adds)
//!
//! A depth-weighted isolation gain over the paths of `x`, in the spirit of DIFFI (design
//! §1.5): in tree `t`, `x` reaches a leaf with path length `h_t = depth_t + c(n_leaf)`. A
//! split at depth `d` (root = 0) on feature `f` along that path, from a node holding `n`
//! training rows to the child of `x` holding `n'`, adds
//!
//! ```text
//! w = ln(n / n') / ((d + 1) * h_t)
//! ```
//!
//! to feature `f`: `ln(n / n')` is how much of the node's training sample the split cut
//! away from `x` (a split through the bulk gains about ln 2, the split that isolates an
//! outlier gains much more), `1 / (d + 1)` favours shallow splits, and `1 / h_t` favours
//! trees that isolate `x` quickly. The per-feature sums over all trees are normalised to
//! sum to 1 (all zero if no tree split at all, e.g. constant training data). On a 5-feature
//! Gaussian with one coordinate at 8 sigma, that coordinate gets ~0.77 of the mass (a plain
//! `1 / (d + 1)` split count gave it only ~0.29).
//!
//! # Determinism
//!
//! Tree `t` draws from `ChaCha8Rng::seed_from_u64(seed)` on stream `t`, with integers and
//! floats derived from raw `next_u64` outputs by code in this file (not `rand`'s
//! distributions, which may change between releases), so the same rows, parameters and
//! seed give a bitwise-identical forest, whatever the order trees are built in.
//!
//! # Storage and integrity
//!
//! Each tree is a set of flat arrays ([`Tree`]) in scikit-learn's layout. The forest
//! (de)serialises through serde; deserialisation runs [`IsolationForest::validate`], so a
//! corrupt model file is an error, never a panic or an endless loop in `score`.
//!
//! # Scoring layout (derived, never serialised)
//!
//! When every tree has depth <= 8 (always with `psi <= 256`) and there are at most 256
//! features, each tree is re-laid out as a complete binary tree of depth 8 in heap order
//! (per internal slot a `u32` threshold key and a `u8` feature; one `f64` path-length
//! value per bottom slot; shallower leaves padded with always-left nodes), so a walk is
//! exactly 8 branch-free steps `i = 2i + (key(x[f]) > key(thr))` without child pointers
//! or bounds checks. Keys are an order-preserving `f32 -> u32` map and the `f64`
//! threshold is first rounded down to the largest `f32` not above it, so the comparison
//! is exactly scikit-learn's `(x as f32) as f64 <= thr`. `score` walks 10 trees side by
//! side for one row; `score_batch` walks each tree for blocks of 60 rows, 10 at a time
//! (tree in L1). On x86-64 the ten walks are one `asm!` block of four instructions per
//! step (LLVM's code for the same step takes about nine and spills registers), which
//! made `score_batch` about 1.8x faster (docs/benchmarks.md); elsewhere the same steps
//! are plain Rust.
//! Other forests use a flat node array with the same semantics. Every path adds the trees
//! in order, so all entry points give bitwise-identical scores.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

mod tree_codec;

/// Euler–Mascheroni constant, the value of `numpy.euler_gamma`.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// scikit-learn's `FEATURE_THRESHOLD`: a feature with `max <= min + 1e-7` (in `f32`) in a
/// node is treated as constant there.
const FEATURE_THRESHOLD: f32 = 1e-7;

/// Marker for "no feature" / "no child" in [`Tree`] arrays (scikit-learn uses negative
/// numbers).
pub const NONE: u32 = u32::MAX;

/// Trees evaluated side by side by [`IsolationForest::score`] (independent dependency
/// chains for the CPU).
const LANES: usize = 8;

/// Trees evaluated side by side in the complete-tree layout.
const PERFECT_LANES: usize = 10;

/// Rows per block in the tree-major batch kernel of the complete-tree layout.
const BLOCK_ROWS: usize = 60;
/// Rows walked side by side per tree in the batch kernel.
const BLOCK_LANES: usize = 10;
/// Feature count (power of two) up to which the batch kernel is used (row keys padded to
/// this width).
const NARROW: usize = 64;

/// Trees between two early-exit tests of [`IsolationForest::score_batch_until`].
const EXIT_CHECK: usize = 8;

/// Rows evaluated side by side per tree by [`IsolationForest::score_batch`].
const BATCH_ROWS: usize = 32;

/// Errors from training, validating or importing an isolation forest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForestError {
    /// `n_trees` was 0.
    #[error("n_trees must be at least 1")]
    ZeroTrees,
    /// `max_samples` was 0.
    #[error("max_samples must be at least 1")]
    ZeroMaxSamples,
    /// `n_features` was 0.
    #[error("n_features must be at least 1")]
    NoFeatures,
    /// More features than a node can index.
    #[error("too many features: {0} (at most {max})", max = u32::MAX - 1)]
    TooManyFeatures(usize),
    /// More training rows than a node can count.
    #[error("too many training rows: {0} (at most {max})", max = u32::MAX - 1)]
    TooManyRows(usize),
    /// No training rows.
    #[error("training data is empty")]
    EmptyInput,
    /// The row-major data length is not a multiple of the feature count.
    #[error("row-major data of length {len} is not a multiple of n_features = {n_features}")]
    RaggedInput {
        /// Length of the data slice.
        len: usize,
        /// Declared feature count.
        n_features: usize,
    },
    /// A training value is NaN or infinite.
    #[error("training value at row {row}, feature {feature} is not finite")]
    NonFinite {
        /// Row index (0-based).
        row: usize,
        /// Feature index (0-based).
        feature: usize,
    },
    /// A row to score, or an output buffer, has the wrong length.
    #[error("expected {expected} values, got {got}")]
    DimensionMismatch {
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// The forest structure is inconsistent (corrupt or hand-made model).
    #[error("invalid isolation forest: {0}")]
    InvalidModel(String),
    /// The scikit-learn export is not valid JSON of the expected shape.
    #[error("cannot parse scikit-learn export: {0}")]
    Json(#[from] serde_json::Error),
}

/// Training parameters of an [`IsolationForest`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForestParams {
    /// Number of trees (default 200; the design recommends 200-300, §1).
    pub n_trees: usize,
    /// Sub-sample size per tree; `psi = min(max_samples, n_rows)` (default 256).
    pub max_samples: usize,
    /// RNG seed; same data, parameters and seed give an identical forest.
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        Self {
            n_trees: 200,
            max_samples: 256,
            seed: 0,
        }
    }
}

impl ForestParams {
    /// Checks the parameters: `n_trees >= 1`, `max_samples >= 1`.
    pub fn validate(&self) -> Result<(), ForestError> {
        if self.n_trees == 0 {
            return Err(ForestError::ZeroTrees);
        }
        if self.max_samples == 0 {
            return Err(ForestError::ZeroMaxSamples);
        }
        Ok(())
    }
}

/// One isolation tree as flat node arrays (scikit-learn's `tree_` layout). Node 0 is the
/// root. All arrays have one entry per node. Serde writes the five named arrays in
/// human-readable formats (JSON) and a compact byte string otherwise (the model file:
/// `tree_codec`).
#[derive(Clone, Debug, PartialEq)]
pub struct Tree {
    /// Split feature of each internal node; [`NONE`] for leaves.
    pub feature: Vec<u32>,
    /// Split threshold of each internal node (`x[f] <= threshold` goes left); any finite
    /// value for leaves. Serialised as the `u64` bit patterns, so that every serde format
    /// round-trips it exactly (serde_json's default float parsing can be off by an ulp).
    pub threshold: Vec<f64>,
    /// Left child of each internal node (index > the node's own); [`NONE`] for leaves.
    pub left: Vec<u32>,
    /// Right child of each internal node (index > the node's own); [`NONE`] for leaves.
    pub right: Vec<u32>,
    /// Training rows that reached each node (scikit-learn's `n_node_samples`).
    pub n_samples: Vec<u32>,
}

impl Tree {
    /// Number of nodes.
    pub fn n_nodes(&self) -> usize {
        self.feature.len()
    }

    /// The child of internal node `node` that `x` goes to: `x[f] > threshold` goes right,
    /// so NaN goes left. Assumes a validated tree.
    #[inline]
    fn child(&self, node: usize, x: &[f32]) -> usize {
        if f64::from(x[self.feature[node] as usize]) > self.threshold[node] {
            self.right[node] as usize
        } else {
            self.left[node] as usize
        }
    }
}

/// [`Tree`]'s human-readable serde form: the five arrays by name (written).
#[derive(Serialize)]
#[serde(rename = "Tree")]
struct TreeArraysRef<'a> {
    feature: &'a [u32],
    #[serde(serialize_with = "f64_bits::serialize")]
    threshold: &'a [f64],
    left: &'a [u32],
    right: &'a [u32],
    n_samples: &'a [u32],
}

/// [`Tree`]'s human-readable serde form (read).
#[derive(Deserialize)]
#[serde(rename = "Tree")]
struct TreeArrays {
    feature: Vec<u32>,
    #[serde(deserialize_with = "f64_bits::deserialize")]
    threshold: Vec<f64>,
    left: Vec<u32>,
    right: Vec<u32>,
    n_samples: Vec<u32>,
}

impl Serialize for Tree {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            TreeArraysRef {
                feature: &self.feature[..],
                threshold: &self.threshold[..],
                left: &self.left[..],
                right: &self.right[..],
                n_samples: &self.n_samples[..],
            }
            .serialize(s)
        } else {
            let bytes = tree_codec::encode(self).map_err(serde::ser::Error::custom)?;
            s.serialize_bytes(&bytes)
        }
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Tree, D::Error> {
        if d.is_human_readable() {
            let a = TreeArrays::deserialize(d)?;
            Ok(Tree {
                feature: a.feature,
                threshold: a.threshold,
                left: a.left,
                right: a.right,
                n_samples: a.n_samples,
            })
        } else {
            d.deserialize_bytes(TreeBytes)
        }
    }
}

/// Serde visitor of a tree's compact byte string.
struct TreeBytes;

impl serde::de::Visitor<'_> for TreeBytes {
    type Value = Tree;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an isolation tree as a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Tree, E> {
        tree_codec::decode(v).map_err(|e| E::custom(format!("isolation tree: {e}")))
    }
}

/// Serde helpers storing `f64`s as their IEEE-754 bit patterns (exact in every format).
mod f64_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.to_bits()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let bits = Vec::<u64>::deserialize(d)?;
        Ok(bits.into_iter().map(f64::from_bits).collect())
    }
}

/// Serialised form of [`IsolationForest`] (its serde representation).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct ForestRepr {
    n_features: usize,
    psi: usize,
    feature_ranges: Vec<(f32, f32)>,
    trees: Vec<Tree>,
}

/// A node of the scorer's derived layout: right child is `left + 1`; a leaf has
/// `thr = +inf` and `left` = itself, so walking a fixed number of steps is branch-free.
#[derive(Clone, Copy, Debug, PartialEq)]
struct FlatNode {
    thr: f32,
    feature: u32,
    left: u32,
}

/// Derived scoring layout of the whole forest (rebuilt from the trees, not serialised).
#[derive(Clone, PartialEq, Default)]
struct Compiled {
    nodes: Vec<FlatNode>,
    /// Per node: the tree's path-length contribution if the walk ends there
    /// (`(depth + 1 + c(n)) - 1`, scikit-learn's order of operations); 0 for internal
    /// nodes.
    leaf_value: Vec<f64>,
    /// Global index of each tree's root.
    roots: Vec<u32>,
    /// Depth (edges) of each tree.
    depths: Vec<u32>,
    /// Max depth over each chunk of `LANES` trees.
    chunk_depths: Vec<u32>,
    /// `n_trees * c(psi)`.
    denominator: f64,
    /// Fast layout, used when every tree has depth <= `PERFECT_DEPTH` (always the case
    /// with `max_samples <= 256`) and there are at most 256 features; the flat arrays
    /// above are then left empty.
    perfect: Option<Perfect>,
}

impl std::fmt::Debug for Compiled {
    /// A summary only: the layout is derived from the trees, which `Debug` shows in full.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("complete_tree_layout", &self.perfect.is_some())
            .field("flat_nodes", &self.nodes.len())
            .field("denominator", &self.denominator)
            .finish()
    }
}

/// Depth of the complete-tree layout (`ceil(log2 256)`).
const PERFECT_DEPTH: usize = 8;
/// Slots of one complete tree: internal slots 1..=255 (heap order, root 1, children
/// `2i` and `2i + 1`), leaves 256..=511 (stored at `slot - 256`).
const PERFECT_SLOTS: usize = 1 << PERFECT_DEPTH;

/// Every tree as a complete binary tree of depth 8 in heap order, so a walk is exactly
/// 8 steps of `i = 2i + (x[f] > thr)` with no child pointers and no bounds checks (all
/// indices are masked to 0..=255). A leaf above depth 8 is padded with `thr = +inf`
/// nodes (always left) down to the bottom slot that stores its value.
#[derive(Clone, PartialEq)]
struct Perfect {
    /// Per tree: the walk arrays of its internal slots and its bottom-slot values.
    tree: Vec<PerfectTree>,
    /// `min_rest[t]`: the sum over trees `t..` of each tree's smallest leaf value, a
    /// lower bound of what those trees can still add to any row's path sum (length
    /// `trees + 1`, last entry 0).
    min_rest: Vec<f64>,
}

/// One tree of the complete-tree layout: the arrays a walk step reads, per internal slot
/// the threshold key (`sort_key(floor_f32(threshold))`; padding: key of `+inf`) and the
/// feature index (padding: 0), then the path-length contribution of each bottom slot
/// (see `Compiled::leaf_value`). Two plain arrays rather than one packed word: a step is
/// then a byte load, a key load and a compare against memory, with no shifts or masks
/// to unpack. Byte offsets (repr(C)): `thr` 0..1024, `feature` 1024..1280, `leaf`
/// 1280..3328 (the `asm!` kernels rely on them).
#[derive(Clone, PartialEq)]
#[repr(C)]
struct PerfectTree {
    thr: [u32; PERFECT_SLOTS],
    feature: [u8; PERFECT_SLOTS],
    leaf: [f64; PERFECT_SLOTS],
}

/// `BLOCK_LANES` rows of a batch block: their keys (padded to `NARROW` features) and
/// their path-length sums so far, side by side so that one pointer reaches both (byte
/// offsets, repr(C): `keys` 0..2560, `acc` 2560..2640).
#[derive(Clone, Copy)]
#[repr(C)]
struct RowGroup {
    keys: [[u32; NARROW]; BLOCK_LANES],
    acc: [f64; BLOCK_LANES],
}

/// Groups per batch block.
const BLOCK_GROUPS: usize = BLOCK_ROWS / BLOCK_LANES;

/// One step of a walk in the complete-tree layout: from heap slot `slot` (1..=255) to
/// its child, comparing the row's key of the node's feature with the node's key.
#[inline(always)]
fn step<const N: usize>(t: &PerfectTree, keys: &[u32; N], slot: usize) -> usize {
    let s = slot & (PERFECT_SLOTS - 1);
    let v = keys[usize::from(t.feature[s]) & (N - 1)];
    2 * slot + usize::from(v > t.thr[s])
}

/// Walks tree `t` for the `BLOCK_LANES` rows of `g` side by side and adds each row's
/// bottom-slot value to its `acc`.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn walk_rows_add(t: &PerfectTree, g: &mut RowGroup) {
    let mut idx = [1usize; BLOCK_LANES];
    for _ in 0..PERFECT_DEPTH {
        for (slot, keys) in idx.iter_mut().zip(&g.keys) {
            *slot = step(t, keys, *slot);
        }
    }
    for (a, &slot) in g.acc.iter_mut().zip(&idx) {
        *a += t.leaf[slot & (PERFECT_SLOTS - 1)];
    }
}

/// Walks `PERFECT_LANES` consecutive trees for one row; returns each tree's bottom slot
/// (256..=511).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn walk_trees(trees: &[PerfectTree; PERFECT_LANES], keys: &[u32; 256]) -> [usize; PERFECT_LANES] {
    let mut idx = [1usize; PERFECT_LANES];
    for _ in 0..PERFECT_DEPTH {
        for (slot, t) in idx.iter_mut().zip(trees) {
            *slot = step(t, keys, *slot);
        }
    }
    idx
}

/// The text of one [`step`] in four x86-64 instructions, for the `asm!` kernels: load
/// the node's feature byte, load the row's key of that feature, compare the node's
/// threshold key (in memory) with it (carry = threshold < key) and `adc s, s`
/// (s = 2 s + carry). Operands: `{t}` the tree pointer, `{k}` the keys pointer, `{f}` a
/// scratch register, and the slot register named `$s`; `$toff` and `$koff` are byte
/// offsets (literals) of this lane's `PerfectTree` from `{t}` and of its row keys from
/// `{k}`. The kernels issue ten of these per level, every slot in its own register:
/// ten independent chains keep the two dependent loads of a step from limiting
/// throughput (LLVM's code for [`step`] takes about nine instructions and spills).
///
/// In bounds when `$s` is in 1..=255, `{t} + $toff` points at a `PerfectTree` (repr(C):
/// `thr` at bytes 0..1024, `feature` at 1024..1280) and `{k} + $koff` at 4-byte keys for
/// every feature index that tree's nodes hold.
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
macro_rules! asm_step {
    ($s:literal, $toff:literal, $koff:literal) => {
        concat!(
            "movzx {f:e}, byte ptr [{t} + {", $s, "} + ", $toff, " + 1024]\n",
            "mov {f:e}, dword ptr [{k} + {f} * 4 + ", $koff, "]\n",
            "cmp dword ptr [{t} + {", $s, "} * 4 + ", $toff, "], {f:e}\n",
            "adc {", $s, "}, {", $s, "}",
        )
    };
}

/// Walks tree `t` for the `BLOCK_LANES` (10) rows of `g` side by side and adds each
/// row's bottom-slot value to its `acc`, all in one `asm!` block: ten walks of
/// [`asm_step`]s, then per row a load of `t.leaf[s - 256]`, an add of `acc` and a store
/// back. Doing the adds inside the block leaves LLVM only the loop counter to keep
/// around it (with the adds outside, it reloaded the tree pointer from the stack for
/// every group, and that reload could wait on the previous group's `acc` stores when
/// their addresses matched modulo 4 KiB: throughput then varied by 1.5x with the stack
/// position).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(unsafe_code)]
fn walk_rows_add(t: &PerfectTree, g: &mut RowGroup) {
    #[rustfmt::skip]
    macro_rules! add {
        ($s:literal, $aoff:literal) => {
            concat!(
                "movsd {x}, qword ptr [{t} + {", $s, "} * 8 - 768]\n",
                "addsd {x}, qword ptr [{k} + ", $aoff, "]\n",
                "movsd qword ptr [{k} + ", $aoff, "], {x}",
            )
        };
    }
    const _: () = assert!(
        NARROW == 64
            && BLOCK_LANES == 10
            && std::mem::offset_of!(RowGroup, acc) == 2560
            && std::mem::offset_of!(PerfectTree, leaf) == 1280
    );
    let (tp, gp) = (std::ptr::from_ref(t), std::ptr::from_mut(g));
    // SAFETY: `t` and `g` are live references (shared and exclusive), so reading `*t`
    // and reading and writing `*g` for the block's duration is sound; no other memory
    // is touched, nor the stack (`nostack`); registers other than the operands are
    // untouched, the flags are clobbered. Bounds: before walk step k (0..8) every slot
    // is in 2^k..2^(k+1), so at most 255, inside `thr` (bytes 0..1024 of the repr(C)
    // `PerfectTree`) and `feature` (1024..1280); after 8 steps it is in 256..=511, so
    // `t + 8 s - 768` is `leaf[s - 256]` (bytes 1280..3328). `Perfect::build` stores
    // features below `n_features`, and this kernel runs only when
    // `n_features <= NARROW` (`score_batch`), so feature `f` of row `i` is at byte
    // `i * NARROW * 4 + f * 4` of `g.keys` (offsets below: NARROW = 64); `acc[i]` is at
    // byte `2560 + 8 i` of `g`. The adds are `leaf + acc`, bitwise equal to `acc + leaf`.
    unsafe {
        std::arch::asm!(
            ".rept 8",
            asm_step!("s0", "0", "0"),
            asm_step!("s1", "0", "256"),
            asm_step!("s2", "0", "512"),
            asm_step!("s3", "0", "768"),
            asm_step!("s4", "0", "1024"),
            asm_step!("s5", "0", "1280"),
            asm_step!("s6", "0", "1536"),
            asm_step!("s7", "0", "1792"),
            asm_step!("s8", "0", "2048"),
            asm_step!("s9", "0", "2304"),
            ".endr",
            add!("s0", "2560"),
            add!("s1", "2568"),
            add!("s2", "2576"),
            add!("s3", "2584"),
            add!("s4", "2592"),
            add!("s5", "2600"),
            add!("s6", "2608"),
            add!("s7", "2616"),
            add!("s8", "2624"),
            add!("s9", "2632"),
            t = in(reg) tp,
            k = in(reg) gp,
            f = out(reg) _,
            x = out(xmm_reg) _,
            s0 = inout(reg) 1usize => _,
            s1 = inout(reg) 1usize => _,
            s2 = inout(reg) 1usize => _,
            s3 = inout(reg) 1usize => _,
            s4 = inout(reg) 1usize => _,
            s5 = inout(reg) 1usize => _,
            s6 = inout(reg) 1usize => _,
            s7 = inout(reg) 1usize => _,
            s8 = inout(reg) 1usize => _,
            s9 = inout(reg) 1usize => _,
            options(nostack),
        );
    }
}

/// Walks `PERFECT_LANES` (10) consecutive trees for one row, ten walks of
/// [`asm_step`]s in one `asm!` block; returns each tree's bottom slot (256..=511).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(unsafe_code)]
fn walk_trees(trees: &[PerfectTree; PERFECT_LANES], keys: &[u32; 256]) -> [usize; PERFECT_LANES] {
    const _: () = assert!(std::mem::size_of::<PerfectTree>() == 3328 && PERFECT_LANES == 10);
    let mut s = [1usize; PERFECT_LANES];
    // SAFETY: reads only (`pure, readonly, nostack`; the flags are clobbered, no other
    // register or memory is written). Before step k (0..8) every slot is in
    // 2^k..2^(k+1), so at most 255; tree `i` starts at byte `i * 3328`
    // (`size_of::<PerfectTree>()`) of `trees`; a feature byte is at most 255 and `keys`
    // has 256 entries.
    unsafe {
        std::arch::asm!(
            ".rept 8",
            asm_step!("s0", "0", "0"),
            asm_step!("s1", "3328", "0"),
            asm_step!("s2", "6656", "0"),
            asm_step!("s3", "9984", "0"),
            asm_step!("s4", "13312", "0"),
            asm_step!("s5", "16640", "0"),
            asm_step!("s6", "19968", "0"),
            asm_step!("s7", "23296", "0"),
            asm_step!("s8", "26624", "0"),
            asm_step!("s9", "29952", "0"),
            ".endr",
            t = in(reg) trees.as_ptr(),
            k = in(reg) keys.as_ptr(),
            f = out(reg) _,
            s0 = inout(reg) s[0],
            s1 = inout(reg) s[1],
            s2 = inout(reg) s[2],
            s3 = inout(reg) s[3],
            s4 = inout(reg) s[4],
            s5 = inout(reg) s[5],
            s6 = inout(reg) s[6],
            s7 = inout(reg) s[7],
            s8 = inout(reg) s[8],
            s9 = inout(reg) s[9],
            options(pure, readonly, nostack),
        );
    }
    s
}

impl Perfect {
    fn build(trees: &[Tree]) -> Perfect {
        let mut p = Perfect {
            tree: vec![
                PerfectTree {
                    thr: [sort_key(f32::INFINITY); PERFECT_SLOTS],
                    feature: [0; PERFECT_SLOTS],
                    leaf: [0.0; PERFECT_SLOTS],
                };
                trees.len()
            ],
            min_rest: vec![0.0; trees.len() + 1],
        };
        let mut min_leaf = vec![f64::INFINITY; trees.len()];
        // (original node, heap slot, depth)
        let mut stack: Vec<(usize, usize, usize)> = Vec::new();
        for (t, tree) in trees.iter().enumerate() {
            stack.clear();
            stack.push((0, 1, 0));
            while let Some((i, slot, d)) = stack.pop() {
                if tree.feature[i] == NONE {
                    // Padding: the slots below stay "+inf" (always left) to the bottom.
                    let bottom = slot << (PERFECT_DEPTH - d);
                    let v = leaf_value(d, tree.n_samples[i]);
                    p.tree[t].leaf[bottom - PERFECT_SLOTS] = v;
                    min_leaf[t] = min_leaf[t].min(v);
                } else {
                    p.tree[t].thr[slot] = sort_key(floor_f32(tree.threshold[i]));
                    p.tree[t].feature[slot] = tree.feature[i] as u8;
                    stack.push((tree.left[i] as usize, 2 * slot, d + 1));
                    stack.push((tree.right[i] as usize, 2 * slot + 1, d + 1));
                }
            }
        }
        for t in (0..trees.len()).rev() {
            // A validated tree has at least one leaf; guard anyway (no bound from it).
            let m = if min_leaf[t].is_finite() {
                min_leaf[t]
            } else {
                0.0
            };
            p.min_rest[t] = p.min_rest[t + 1] + m.max(0.0);
        }
        p
    }

    /// Sum over trees (in order) of the path-length contributions for the row keys `xs`
    /// (zero-padded to 256 features), `PERFECT_LANES` trees side by side.
    #[inline]
    fn path_sum(&self, xs: &[u32; 256]) -> f64 {
        const W: usize = PERFECT_LANES;
        let mut sum = 0.0f64;
        for tree in self.tree.chunks(W) {
            if let Ok(tree) = <&[PerfectTree; W]>::try_from(tree) {
                let idx = walk_trees(tree, xs);
                for (&slot, t) in idx.iter().zip(tree) {
                    sum += t.leaf[slot & (PERFECT_SLOTS - 1)];
                }
            } else {
                // The last, partial chunk.
                for t in tree {
                    let mut slot = 1usize;
                    for _ in 0..PERFECT_DEPTH {
                        slot = step(t, xs, slot);
                    }
                    sum += t.leaf[slot & (PERFECT_SLOTS - 1)];
                }
            }
        }
        sum
    }

    /// Tree-major scoring of a block of row groups: each tree stays in L1 while every
    /// row of the block walks it, `BLOCK_LANES` rows side by side. Each group's `acc[r]`
    /// gets row `r`'s sum over trees, added in tree order (so it is bitwise equal to
    /// `path_sum`).
    fn path_sums_block(&self, groups: &mut [RowGroup]) {
        for g in groups.iter_mut() {
            g.acc = [0.0; BLOCK_LANES];
        }
        for t in &self.tree {
            for g in groups.iter_mut() {
                walk_rows_add(t, g);
            }
        }
    }

    /// [`Perfect::path_sums_block`] that may stop early, group by group: every
    /// `EXIT_CHECK` trees, a group each of whose rows has a sum so far plus
    /// [`Perfect::min_rest`] of the remaining trees of at least `stop` skips the remaining
    /// trees, its `acc` set to that lower bound of each row's final sum. The other
    /// groups' sums are exact.
    fn path_sums_block_until(&self, groups: &mut [RowGroup], stop: f64) {
        for g in groups.iter_mut() {
            g.acc = [0.0; BLOCK_LANES];
        }
        // Indices of the groups still walking, in order.
        let mut active = [0usize; BLOCK_GROUPS];
        let mut n_active = groups.len().min(BLOCK_GROUPS);
        for (i, a) in active.iter_mut().enumerate().take(n_active) {
            *a = i;
        }
        let n = self.tree.len();
        for (i, t) in self.tree.iter().enumerate() {
            for &gi in &active[..n_active] {
                if let Some(g) = groups.get_mut(gi) {
                    walk_rows_add(t, g);
                }
            }
            let next = i + 1;
            if next % EXIT_CHECK == 0 && next < n {
                let rest = self.min_rest[next];
                let mut kept = 0;
                for j in 0..n_active {
                    let gi = active[j];
                    let Some(g) = groups.get_mut(gi) else {
                        continue;
                    };
                    if g.acc.iter().all(|&a| a + rest >= stop) {
                        for a in g.acc.iter_mut() {
                            *a += rest;
                        }
                    } else {
                        active[kept] = gi;
                        kept += 1;
                    }
                }
                n_active = kept;
                if n_active == 0 {
                    return;
                }
            }
        }
    }
}

/// Order-preserving map of an `f32` to a `u32` key: for non-NaN `a`, `b` (with `-0.0`
/// taken as `+0.0`), `a > b` ⇔ `key(a) > key(b)`. NaN maps to 0, below every other key,
/// so a NaN input goes left like in the float comparison `NaN > thr` (false).
#[inline]
fn sort_key(v: f32) -> u32 {
    if v.is_nan() {
        return 0;
    }
    let b = (v + 0.0).to_bits(); // -0.0 + 0.0 == +0.0
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Row `x` as sort keys, zero-padded to 256 features.
#[inline]
fn row_keys(x: &[f32], xs: &mut [u32; 256]) {
    for (k, &v) in xs.iter_mut().zip(x) {
        *k = sort_key(v);
    }
}

/// A trained (or imported) isolation forest. See the module docs for the algorithm,
/// score and attribution definitions.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(try_from = "ForestRepr", into = "ForestRepr")]
pub struct IsolationForest {
    n_features: usize,
    psi: usize,
    feature_ranges: Vec<(f32, f32)>,
    trees: Vec<Tree>,
    /// The scoring layout, built from the trees on the first scoring call: a model
    /// bundle holds a dozen or more forests, of which a capture often uses one or two,
    /// and building the layout of all of them took most of the model's load time.
    compiled: OnceLock<Compiled>,
}

/// Forests are equal when their parameters and trees are (the scoring layout is derived
/// from them, and may not be built yet).
impl PartialEq for IsolationForest {
    fn eq(&self, other: &Self) -> bool {
        self.n_features == other.n_features
            && self.psi == other.psi
            && self.feature_ranges == other.feature_ranges
            && self.trees == other.trees
    }
}

impl TryFrom<ForestRepr> for IsolationForest {
    type Error = ForestError;
    fn try_from(r: ForestRepr) -> Result<Self, ForestError> {
        Self::from_parts(r.n_features, r.psi, r.trees, r.feature_ranges)
    }
}

impl From<IsolationForest> for ForestRepr {
    fn from(f: IsolationForest) -> Self {
        ForestRepr {
            n_features: f.n_features,
            psi: f.psi,
            feature_ranges: f.feature_ranges,
            trees: f.trees,
        }
    }
}

/// `c(n)`: average path length of an unsuccessful search in a binary search tree of `n`
/// keys, exactly as scikit-learn's `_average_path_length`: 0 for `n <= 1`, 1 for
/// `n == 2`, else `2 (ln(n - 1) + γ) - 2 (n - 1) / n`.
pub fn average_path_length(n: usize) -> f64 {
    if n <= 1 {
        0.0
    } else if n == 2 {
        1.0
    } else {
        let n = n as f64;
        2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
    }
}

/// Node sizes up to which [`ExplainTables`] holds precomputed values (the default
/// `max_samples`; larger subsamples are computed on the spot, with the same result).
const TABLE_N: usize = 256;

/// Exact precomputed values for [`IsolationForest::score_explained`]: the isolation gain
/// `ln(n / n')` of a split from `n` to `n'` rows and `c(n)`, for node sizes up to
/// [`TABLE_N`], each computed by the very expression it replaces (so the attributions keep
/// their bits). An explanation takes a logarithm per split otherwise, which was most of
/// the detector's time during a flood (an alert per flow). 0.5 MB, built on first use.
struct ExplainTables {
    /// `ln(a / b)` at `a * (TABLE_N + 1) + b`.
    gain: Vec<f64>,
    /// `average_path_length(n)`.
    c: Vec<f64>,
}

impl ExplainTables {
    fn build() -> ExplainTables {
        let w = TABLE_N + 1;
        let mut gain = vec![0.0; w * w];
        for a in 1..w {
            for b in 1..w {
                gain[a * w + b] = (f64::from(a as u32) / f64::from(b as u32)).ln();
            }
        }
        ExplainTables {
            gain,
            c: (0..w).map(average_path_length).collect(),
        }
    }

    #[inline]
    fn gain(&self, n: u32, next: u32) -> f64 {
        let (a, b) = (n as usize, next as usize);
        if a <= TABLE_N && b <= TABLE_N && b > 0 {
            self.gain[a * (TABLE_N + 1) + b]
        } else {
            (f64::from(n) / f64::from(next)).ln()
        }
    }

    #[inline]
    fn c(&self, n: u32) -> f64 {
        self.c
            .get(n as usize)
            .copied()
            .unwrap_or_else(|| average_path_length(n as usize))
    }
}

/// The process's [`ExplainTables`].
fn explain_tables() -> &'static ExplainTables {
    static TABLES: std::sync::OnceLock<ExplainTables> = std::sync::OnceLock::new();
    TABLES.get_or_init(ExplainTables::build)
}

/// A tree's path-length contribution for a leaf at `depth` edges holding `n` rows, in
/// scikit-learn's order of operations (`decision_path_length + c(n) - 1`).
fn leaf_value(depth: usize, n: u32) -> f64 {
    ((depth + 1) as f64 + average_path_length(n as usize)) - 1.0
}

/// Largest `f32` that is `<= t`, so that for every `f32` x: `x <= t` ⇔ `x <= floor32(t)`.
fn floor_f32(t: f64) -> f32 {
    let r = t as f32;
    if f64::from(r) <= t {
        return r;
    }
    // r > t: step one ulp towards -inf (r is finite or +inf here, never NaN).
    if r == f32::INFINITY {
        f32::MAX
    } else if r > 0.0 {
        f32::from_bits(r.to_bits() - 1)
    } else if r == 0.0 {
        -f32::from_bits(1)
    } else {
        f32::from_bits(r.to_bits() + 1)
    }
}

/// Uniform integer in `0..n` (`n >= 1`) from raw RNG output (Lemire's method with
/// rejection; independent of `rand`'s distribution code).
fn uniform_below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let n = n as u64;
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(n);
        if (m as u64) >= threshold {
            return (m >> 64) as usize;
        }
    }
}

/// Uniform `f64` in `[0, 1)` with 53 random bits.
fn uniform01(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Depth (edges from the root to the deepest leaf) of a validated tree.
fn tree_depth(tree: &Tree) -> u32 {
    let mut max = 0u32;
    let mut stack = vec![(0usize, 0u32)];
    while let Some((i, d)) = stack.pop() {
        if tree.feature[i] == NONE {
            max = max.max(d);
        } else {
            stack.push((tree.left[i] as usize, d + 1));
            stack.push((tree.right[i] as usize, d + 1));
        }
    }
    max
}

/// Height limit for a sub-sample of `psi` rows: `ceil(log2(max(psi, 2)))`.
fn height_limit(psi: usize) -> usize {
    let p = psi.max(2);
    (usize::BITS - (p - 1).leading_zeros()) as usize
}

impl IsolationForest {
    /// Trains a forest on `rows`, row-major with `n_features` values per row.
    ///
    /// Errors on invalid parameters, empty or ragged data, or a non-finite value.
    pub fn fit(
        rows: &[f32],
        n_features: usize,
        params: &ForestParams,
    ) -> Result<IsolationForest, ForestError> {
        params.validate()?;
        if n_features == 0 {
            return Err(ForestError::NoFeatures);
        }
        if n_features >= NONE as usize {
            return Err(ForestError::TooManyFeatures(n_features));
        }
        if rows.is_empty() {
            return Err(ForestError::EmptyInput);
        }
        if rows.len() % n_features != 0 {
            return Err(ForestError::RaggedInput {
                len: rows.len(),
                n_features,
            });
        }
        let n = rows.len() / n_features;
        if n >= NONE as usize {
            return Err(ForestError::TooManyRows(n));
        }
        if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
            return Err(ForestError::NonFinite {
                row: i / n_features,
                feature: i % n_features,
            });
        }
        let mut feature_ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); n_features];
        for row in rows.chunks_exact(n_features) {
            for (r, &v) in feature_ranges.iter_mut().zip(row) {
                r.0 = r.0.min(v);
                r.1 = r.1.max(v);
            }
        }
        let psi = params.max_samples.min(n);
        let max_depth = height_limit(psi);

        let mut builder = TreeBuilder {
            rows,
            n_features,
            max_depth,
            perm: (0..n as u32).collect(),
            swaps: Vec::with_capacity(psi),
            sample: Vec::with_capacity(psi),
            feats: Vec::with_capacity(n_features),
            stack: Vec::new(),
        };
        let trees = (0..params.n_trees)
            .map(|t| {
                let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
                rng.set_stream(t as u64);
                builder.build(&mut rng, psi)
            })
            .collect();
        Self::from_parts(n_features, psi, trees, feature_ranges)
    }

    /// Builds a forest from its parts (e.g. a deserialised or imported model) after
    /// checking them with the same rules as [`IsolationForest::validate`].
    pub fn from_parts(
        n_features: usize,
        psi: usize,
        trees: Vec<Tree>,
        feature_ranges: Vec<(f32, f32)>,
    ) -> Result<IsolationForest, ForestError> {
        let f = IsolationForest {
            n_features,
            psi,
            feature_ranges,
            trees,
            compiled: OnceLock::new(),
        };
        f.validate()?;
        Ok(f)
    }

    /// Imports a forest exported from scikit-learn by `scripts/sklearn_iforest_export.py`.
    ///
    /// Expected JSON object (other keys are ignored): `n_features` (int), `max_samples`
    /// (int, `max_samples_`), `feature_ranges` (`[[min, max], ...]`, one per feature) and
    /// `trees`: a list of `{"left", "right", "feature", "threshold", "n"}` arrays, i.e.
    /// `tree_.children_left`, `children_right`, `feature` (mapped through
    /// `estimators_features_`; negative for leaves), `threshold` and `n_node_samples`;
    /// an optional `threshold_bits` array (the float64 bit patterns, `u64`) takes
    /// precedence over `threshold` so the import is exact whatever the JSON float parser.
    pub fn from_sklearn_json(json: &str) -> Result<IsolationForest, ForestError> {
        #[derive(Deserialize)]
        struct SkTree {
            left: Vec<i64>,
            right: Vec<i64>,
            feature: Vec<i64>,
            threshold: Vec<f64>,
            /// Exact bit patterns of `threshold` (preferred when present: JSON float
            /// parsing is not guaranteed to round-trip).
            #[serde(default)]
            threshold_bits: Option<Vec<u64>>,
            n: Vec<i64>,
        }
        #[derive(Deserialize)]
        struct SkForest {
            n_features: usize,
            max_samples: usize,
            feature_ranges: Vec<(f32, f32)>,
            trees: Vec<SkTree>,
        }
        fn index(v: i64, what: &str, tree: usize) -> Result<u32, ForestError> {
            if v < 0 {
                Ok(NONE)
            } else {
                u32::try_from(v).ok().filter(|&i| i != NONE).ok_or_else(|| {
                    ForestError::InvalidModel(format!("tree {tree}: {what} {v} out of range"))
                })
            }
        }
        let sk: SkForest = serde_json::from_str(json)?;
        let mut trees = Vec::with_capacity(sk.trees.len());
        for (t, st) in sk.trees.into_iter().enumerate() {
            let conv = |v: &[i64], what: &str| -> Result<Vec<u32>, ForestError> {
                v.iter().map(|&x| index(x, what, t)).collect()
            };
            let n_samples = st
                .n
                .iter()
                .map(|&x| {
                    u32::try_from(x).map_err(|_| {
                        ForestError::InvalidModel(format!("tree {t}: n_node_samples {x} invalid"))
                    })
                })
                .collect::<Result<Vec<u32>, _>>()?;
            let threshold = match st.threshold_bits {
                Some(bits) => {
                    if bits.len() != st.threshold.len() {
                        return Err(ForestError::InvalidModel(format!(
                            "tree {t}: threshold_bits and threshold differ in length"
                        )));
                    }
                    bits.into_iter().map(f64::from_bits).collect()
                }
                None => st.threshold,
            };
            trees.push(Tree {
                feature: conv(&st.feature, "feature")?,
                threshold,
                left: conv(&st.left, "child")?,
                right: conv(&st.right, "child")?,
                n_samples,
            });
        }
        Self::from_parts(sk.n_features, sk.max_samples, trees, sk.feature_ranges)
    }

    /// Checks structural integrity: at least one tree and feature, `psi >= 1`, one finite
    /// `(min <= max)` range per feature, per tree equal array lengths, a leaf has no
    /// feature and no children, an internal node has a feature `< n_features`, a finite
    /// threshold and two children with indices in range and greater than its own (so no
    /// cycles), every non-root node has exactly one parent, `n_samples >= 1` and an
    /// internal node's count is the sum of its children's.
    pub fn validate(&self) -> Result<(), ForestError> {
        let bad = |msg: String| Err(ForestError::InvalidModel(msg));
        if self.n_features == 0 || self.n_features >= NONE as usize {
            return bad(format!("n_features = {} out of range", self.n_features));
        }
        if self.psi == 0 || self.psi >= NONE as usize {
            return bad(format!("psi = {} out of range", self.psi));
        }
        if self.trees.is_empty() {
            return bad("no trees".into());
        }
        if self.feature_ranges.len() != self.n_features {
            return bad(format!(
                "{} feature ranges for {} features",
                self.feature_ranges.len(),
                self.n_features
            ));
        }
        for (f, &(lo, hi)) in self.feature_ranges.iter().enumerate() {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return bad(format!("feature {f}: invalid training range ({lo}, {hi})"));
            }
        }
        let total: usize = self.trees.iter().map(Tree::n_nodes).sum();
        if total >= NONE as usize {
            return bad(format!("too many nodes in total ({total})"));
        }
        let mut parents: Vec<u8> = Vec::new();
        for (t, tree) in self.trees.iter().enumerate() {
            let n = tree.feature.len();
            if n == 0 {
                return bad(format!("tree {t}: no nodes"));
            }
            if n >= NONE as usize {
                return bad(format!("tree {t}: too many nodes ({n})"));
            }
            if tree.threshold.len() != n
                || tree.left.len() != n
                || tree.right.len() != n
                || tree.n_samples.len() != n
            {
                return bad(format!("tree {t}: node arrays of different lengths"));
            }
            parents.clear();
            parents.resize(n, 0);
            for i in 0..n {
                let (f, l, r) = (tree.feature[i], tree.left[i], tree.right[i]);
                if tree.n_samples[i] == 0 {
                    return bad(format!("tree {t}, node {i}: zero n_samples"));
                }
                if !tree.threshold[i].is_finite() {
                    return bad(format!("tree {t}, node {i}: non-finite threshold"));
                }
                if f == NONE {
                    if l != NONE || r != NONE {
                        return bad(format!("tree {t}, node {i}: leaf with children"));
                    }
                    continue;
                }
                if f as usize >= self.n_features {
                    return bad(format!(
                        "tree {t}, node {i}: feature {f} >= n_features {}",
                        self.n_features
                    ));
                }
                for c in [l, r] {
                    if c == NONE || c as usize >= n {
                        return bad(format!("tree {t}, node {i}: child {c} out of range"));
                    }
                    if c as usize <= i {
                        return bad(format!(
                            "tree {t}, node {i}: child {c} does not point forward (cycle)"
                        ));
                    }
                    if parents[c as usize] != 0 {
                        return bad(format!("tree {t}, node {c}: more than one parent"));
                    }
                    parents[c as usize] = 1;
                }
                let sum =
                    u64::from(tree.n_samples[l as usize]) + u64::from(tree.n_samples[r as usize]);
                if sum != u64::from(tree.n_samples[i]) {
                    return bad(format!(
                        "tree {t}, node {i}: n_samples {} != children's sum {sum}",
                        tree.n_samples[i]
                    ));
                }
            }
            if let Some(i) = parents.iter().skip(1).position(|&p| p == 0) {
                return bad(format!("tree {t}, node {}: unreachable", i + 1));
            }
        }
        Ok(())
    }

    /// The scorer's layout, built on first use.
    #[inline]
    fn compiled(&self) -> &Compiled {
        self.compiled.get_or_init(|| self.compile())
    }

    /// Builds the scorer's layout. Assumes `validate()` passed (which bounds the total
    /// node count, so node indices fit the layout's `u32`s).
    fn compile(&self) -> Compiled {
        let total: usize = self.trees.iter().map(Tree::n_nodes).sum();
        let depths: Vec<u32> = self.trees.iter().map(tree_depth).collect();
        let denominator = self.trees.len() as f64 * average_path_length(self.psi);
        if self.n_features <= 256 && depths.iter().all(|&d| d as usize <= PERFECT_DEPTH) {
            // The complete-tree layout serves every scoring path: the flat arrays are
            // not built.
            return Compiled {
                denominator,
                perfect: Some(Perfect::build(&self.trees)),
                ..Compiled::default()
            };
        }
        let mut nodes = Vec::with_capacity(total);
        let mut leaf_values = Vec::with_capacity(total);
        let mut roots = Vec::with_capacity(self.trees.len());
        // (original node, depth), in breadth-first order; children get adjacent slots.
        let mut queue: Vec<(u32, u32)> = Vec::new();
        for tree in &self.trees {
            let base = nodes.len() as u32;
            roots.push(base);
            queue.clear();
            queue.push((0, 0));
            let mut head = 0;
            while head < queue.len() {
                let (i, d) = queue[head];
                let here = base + head as u32;
                head += 1;
                let i = i as usize;
                if tree.feature[i] == NONE {
                    nodes.push(FlatNode {
                        thr: f32::INFINITY,
                        feature: 0,
                        left: here,
                    });
                    leaf_values.push(leaf_value(d as usize, tree.n_samples[i]));
                } else {
                    let left = base + queue.len() as u32;
                    queue.push((tree.left[i], d + 1));
                    queue.push((tree.right[i], d + 1));
                    nodes.push(FlatNode {
                        thr: floor_f32(tree.threshold[i]),
                        feature: tree.feature[i],
                        left,
                    });
                    leaf_values.push(0.0);
                }
            }
        }
        let chunk_depths = depths
            .chunks(LANES)
            .map(|c| c.iter().copied().max().unwrap_or(0))
            .collect();
        Compiled {
            nodes,
            leaf_value: leaf_values,
            roots,
            depths,
            chunk_depths,
            denominator,
            perfect: None,
        }
    }

    /// Number of features per row.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// Sub-sample size per tree (scikit-learn's `max_samples_`); `c(psi)` normalises
    /// scores.
    pub fn psi(&self) -> usize {
        self.psi
    }

    /// Per-feature `(min, max)` over the training rows (for anomaly events).
    pub fn feature_ranges(&self) -> &[(f32, f32)] {
        &self.feature_ranges
    }

    /// The trees, in scoring order.
    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }

    /// Turns the summed path length into the score `2^(-sum / (n_trees c(psi)))`.
    fn finish(&self, sum: f64) -> f64 {
        let d = self.compiled().denominator;
        let ratio = if d != 0.0 { sum / d } else { 1.0 };
        2f64.powf(-ratio)
    }

    /// Anomaly score `s = 2^(-E[h(x)] / c(psi))` in `(0, 1]` (higher = more anomalous;
    /// equals scikit-learn's `-score_samples`). No allocation.
    ///
    /// # Panics
    ///
    /// If `x.len() != self.n_features()` (use [`IsolationForest::try_score`] to get an
    /// error instead).
    pub fn score(&self, x: &[f32]) -> f64 {
        assert_eq!(
            x.len(),
            self.n_features,
            "IsolationForest::score: row length"
        );
        let c = self.compiled();
        if let Some(p) = &c.perfect {
            let mut xs = [0u32; 256];
            row_keys(x, &mut xs);
            return self.finish(p.path_sum(&xs));
        }
        let nodes = &c.nodes[..];
        let mut sum = 0.0f64;
        for (roots, &depth) in c.roots.chunks(LANES).zip(&c.chunk_depths) {
            let mut idx = [roots[0]; LANES];
            idx[..roots.len()].copy_from_slice(roots);
            for _ in 0..depth {
                for slot in idx.iter_mut() {
                    let n = nodes[*slot as usize];
                    *slot = n.left + u32::from(x[n.feature as usize] > n.thr);
                }
            }
            for &i in &idx[..roots.len()] {
                sum += c.leaf_value[i as usize];
            }
        }
        self.finish(sum)
    }

    /// [`IsolationForest::score`] with a length check instead of a panic.
    pub fn try_score(&self, x: &[f32]) -> Result<f64, ForestError> {
        if x.len() != self.n_features {
            return Err(ForestError::DimensionMismatch {
                expected: self.n_features,
                got: x.len(),
            });
        }
        Ok(self.score(x))
    }

    /// The complete-tree layout's batch scoring (`rows.len() == out.len() * d`): rows in
    /// blocks of up to `BLOCK_ROWS` through the tree-major kernel, in whole groups of
    /// `BLOCK_LANES` (all rows row by row when there are more than `NARROW` features);
    /// the rest row by row. With `stop`, a group may end early
    /// ([`Perfect::path_sums_block_until`]).
    fn perfect_batch(&self, p: &Perfect, rows: &[f32], out: &mut [f64], stop: Option<f64>) {
        let d = self.n_features;
        let mut xs = [0u32; 256];
        let mut groups = [RowGroup {
            keys: [[0u32; NARROW]; BLOCK_LANES],
            acc: [0.0; BLOCK_LANES],
        }; BLOCK_GROUPS];
        let blocked = if d <= NARROW {
            out.len() - out.len() % BLOCK_LANES
        } else {
            0
        };
        let (head, tail) = out.split_at_mut(blocked);
        for (block, out) in rows.chunks(BLOCK_ROWS * d).zip(head.chunks_mut(BLOCK_ROWS)) {
            let groups = &mut groups[..out.len() / BLOCK_LANES];
            let keys = groups.iter_mut().flat_map(|g| g.keys.iter_mut());
            for (keys, x) in keys.zip(block.chunks_exact(d)) {
                for (k, &v) in keys.iter_mut().zip(x) {
                    *k = sort_key(v);
                }
            }
            match stop {
                Some(stop) => p.path_sums_block_until(groups, stop),
                None => p.path_sums_block(groups),
            }
            let acc = groups.iter().flat_map(|g| g.acc.iter());
            for (o, &a) in out.iter_mut().zip(acc) {
                *o = self.finish(a);
            }
        }
        for (x, o) in rows[blocked * d..].chunks_exact(d).zip(tail.iter_mut()) {
            row_keys(x, &mut xs);
            *o = self.finish(p.path_sum(&xs));
        }
    }

    /// Like [`IsolationForest::score_batch`] for callers that only need the exact score
    /// of rows above `threshold`: a block of rows that can no longer reach it (each
    /// row's path sum so far, plus the smallest leaf value of every remaining tree,
    /// already puts its score below `threshold`) skips its remaining trees. So for every
    /// row, `out[i] > threshold` exactly when its score is, and then `out[i]` is the
    /// exact score (the same bits as `score_batch`); otherwise `out[i]` is its score or
    /// an upper bound of it that is still below `threshold`. Most flows of a monitored
    /// device are far below their threshold: they stop after 40-60 % of the trees.
    pub fn score_batch_until(
        &self,
        rows: &[f32],
        out: &mut [f64],
        threshold: f64,
    ) -> Result<(), ForestError> {
        let d = self.n_features;
        let c = self.compiled();
        let Some(p) = &c.perfect else {
            return self.score_batch(rows, out);
        };
        if !(threshold > 0.0 && threshold < 1.0) || c.denominator <= 0.0 {
            return self.score_batch(rows, out);
        }
        if rows.len() != out.len() * d {
            return Err(ForestError::DimensionMismatch {
                expected: out.len() * d,
                got: rows.len(),
            });
        }
        // score = 2^(-sum / denominator) < threshold  <=>  sum > -denominator log2(threshold).
        // The margin keeps rounding (the bound adds the trees in another order) from
        // ever deciding a row whose exact score is at the threshold.
        let at = -c.denominator * threshold.log2();
        let stop = at + 1e-9 * at.abs().max(1.0);
        self.perfect_batch(p, rows, out, Some(stop));
        Ok(())
    }

    /// Scores many rows (row-major, `n_features` per row) into `out` (one score per row),
    /// tree by tree over blocks of rows; same values as [`IsolationForest::score`]. No
    /// allocation.
    pub fn score_batch(&self, rows: &[f32], out: &mut [f64]) -> Result<(), ForestError> {
        let d = self.n_features;
        if rows.len() != out.len() * d {
            return Err(ForestError::DimensionMismatch {
                expected: out.len() * d,
                got: rows.len(),
            });
        }
        let c = self.compiled();
        if let Some(p) = &c.perfect {
            self.perfect_batch(p, rows, out, None);
            return Ok(());
        }
        let nodes = &c.nodes[..];
        for (block, out) in rows.chunks(BATCH_ROWS * d).zip(out.chunks_mut(BATCH_ROWS)) {
            let m = out.len();
            let mut acc = [0.0f64; BATCH_ROWS];
            let mut idx = [0u32; BATCH_ROWS];
            for (&root, &depth) in c.roots.iter().zip(&c.depths) {
                idx[..m].fill(root);
                for _ in 0..depth {
                    for (r, slot) in idx[..m].iter_mut().enumerate() {
                        let n = nodes[*slot as usize];
                        *slot = n.left + u32::from(block[r * d + n.feature as usize] > n.thr);
                    }
                }
                for (a, &i) in acc[..m].iter_mut().zip(&idx[..m]) {
                    *a += c.leaf_value[i as usize];
                }
            }
            for (o, &a) in out.iter_mut().zip(&acc[..m]) {
                *o = self.finish(a);
            }
        }
        Ok(())
    }

    /// [`IsolationForest::score`] plus a per-feature attribution written to `contrib`
    /// (length `n_features`, overwritten, sums to 1 unless no tree has a split): the
    /// depth-weighted isolation gain of the module docs, `w = ln(n / n') / ((d + 1) h_t)`
    /// per split at depth `d` on `x`'s path in tree `t` (from `n` to `n'` training rows). The returned score is bitwise equal to
    /// `score(x)`. No allocation.
    ///
    /// # Panics
    ///
    /// If `x.len()` or `contrib.len()` differs from `self.n_features()`.
    pub fn score_explained(&self, x: &[f32], contrib: &mut [f64]) -> f64 {
        assert_eq!(x.len(), self.n_features, "score_explained: row length");
        assert_eq!(
            contrib.len(),
            self.n_features,
            "score_explained: contrib length"
        );
        contrib.fill(0.0);
        let tables = explain_tables();
        let mut sum = 0.0f64;
        // The splits of one path: (feature, gain), depth = position. A path longer than
        // the buffer (only with `max_samples` above 2^32) takes the second walk below.
        let mut path = [(0usize, 0.0f64); 32];
        for tree in &self.trees {
            let mut node = 0usize;
            let mut depth = 0usize;
            while tree.feature[node] != NONE {
                let f = tree.feature[node] as usize;
                let next = tree.child(node, x);
                if let Some(p) = path.get_mut(depth) {
                    *p = (f, tables.gain(tree.n_samples[node], tree.n_samples[next]));
                }
                node = next;
                depth += 1;
            }
            let n_leaf = tree.n_samples[node];
            sum += leaf_value(depth, n_leaf);
            if depth == 0 {
                continue;
            }
            let h = depth as f64 + tables.c(n_leaf);
            if depth <= path.len() {
                for (d, &(f, gain)) in path[..depth].iter().enumerate() {
                    contrib[f] += gain / ((d + 1) as f64 * h);
                }
            } else {
                let (mut node, mut d) = (0usize, 0usize);
                while tree.feature[node] != NONE {
                    let next = tree.child(node, x);
                    let gain = tables.gain(tree.n_samples[node], tree.n_samples[next]);
                    contrib[tree.feature[node] as usize] += gain / ((d + 1) as f64 * h);
                    node = next;
                    d += 1;
                }
            }
        }
        normalise(contrib);
        self.finish(sum)
    }
}

/// Scales an attribution to sum to 1 (left as is when nothing was attributed).
fn normalise(contrib: &mut [f64]) {
    let total: f64 = contrib.iter().sum();
    if total > 0.0 {
        contrib.iter_mut().for_each(|c| *c /= total);
    }
}

/// Scratch state for growing trees (reused across trees).
struct TreeBuilder<'a> {
    rows: &'a [f32],
    n_features: usize,
    max_depth: usize,
    /// The identity permutation of the row indices (restored after each tree).
    perm: Vec<u32>,
    /// Swap targets of the partial Fisher–Yates shuffle (to undo it).
    swaps: Vec<u32>,
    /// The tree's sub-sample (row indices), partitioned in place while growing.
    sample: Vec<u32>,
    feats: Vec<u32>,
    /// Pending nodes: (start, end, depth, node index).
    stack: Vec<(usize, usize, usize, usize)>,
}

impl TreeBuilder<'_> {
    fn value(&self, row: u32, f: u32) -> f32 {
        self.rows[row as usize * self.n_features + f as usize]
    }

    fn build(&mut self, rng: &mut ChaCha8Rng, psi: usize) -> Tree {
        // Sub-sample without replacement: partial Fisher–Yates on the identity
        // permutation, copied out, then the swaps are undone (so `perm` is the identity
        // again and each tree depends only on its own RNG stream).
        let n = self.perm.len();
        self.swaps.clear();
        for i in 0..psi {
            let j = i + uniform_below(rng, n - i);
            self.perm.swap(i, j);
            self.swaps.push(j as u32);
        }
        self.sample.clear();
        self.sample.extend_from_slice(&self.perm[..psi]);
        for (i, &j) in self.swaps.iter().enumerate().rev() {
            self.perm.swap(i, j as usize);
        }
        let mut tree = Tree {
            feature: vec![NONE],
            threshold: vec![0.0],
            left: vec![NONE],
            right: vec![NONE],
            n_samples: vec![psi as u32],
        };
        self.stack.clear();
        self.stack.push((0, psi, 0, 0));
        while let Some((start, end, depth, id)) = self.stack.pop() {
            let count = end - start;
            tree.n_samples[id] = count as u32;
            if count <= 1 || depth >= self.max_depth {
                continue;
            }
            // Draw features uniformly until a non-constant one is found.
            self.feats.clear();
            self.feats.extend(0..self.n_features as u32);
            let mut remaining = self.n_features;
            let split = loop {
                if remaining == 0 {
                    break None;
                }
                let j = uniform_below(rng, remaining);
                let f = self.feats[j];
                let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
                for &r in &self.sample[start..end] {
                    let v = self.value(r, f);
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
                if hi <= lo + FEATURE_THRESHOLD {
                    self.feats.swap(j, remaining - 1);
                    remaining -= 1;
                    continue;
                }
                let (lo, hi) = (f64::from(lo), f64::from(hi));
                let mut thr = (hi - lo) * uniform01(rng) + lo;
                if thr >= hi {
                    thr = lo;
                }
                break Some((f, thr));
            };
            let Some((f, thr)) = split else {
                continue;
            };
            // Partition [start, end): rows with x[f] <= thr first.
            let mut mid = start;
            for k in start..end {
                let r = self.sample[k];
                if f64::from(self.value(r, f)) <= thr {
                    self.sample.swap(mid, k);
                    mid += 1;
                }
            }
            let l = tree.feature.len();
            for _ in 0..2 {
                tree.feature.push(NONE);
                tree.threshold.push(0.0);
                tree.left.push(NONE);
                tree.right.push(NONE);
                tree.n_samples.push(0);
            }
            tree.feature[id] = f;
            tree.threshold[id] = thr;
            tree.left[id] = l as u32;
            tree.right[id] = l as u32 + 1;
            self.stack.push((mid, end, depth + 1, l + 1));
            self.stack.push((start, mid, depth + 1, l));
        }
        tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attribution as first written: two walks per tree and a logarithm per split.
    fn explained_reference(f: &IsolationForest, x: &[f32], contrib: &mut [f64]) -> f64 {
        contrib.fill(0.0);
        let mut sum = 0.0f64;
        for tree in &f.trees {
            let (mut leaf, mut depth) = (0usize, 0usize);
            while tree.feature[leaf] != NONE {
                let v = f64::from(x[tree.feature[leaf] as usize]);
                leaf = if v > tree.threshold[leaf] {
                    tree.right[leaf] as usize
                } else {
                    tree.left[leaf] as usize
                };
                depth += 1;
            }
            sum += leaf_value(depth, tree.n_samples[leaf]);
            if depth == 0 {
                continue;
            }
            let h = depth as f64 + average_path_length(tree.n_samples[leaf] as usize);
            let (mut node, mut d) = (0usize, 0usize);
            while tree.feature[node] != NONE {
                let ft = tree.feature[node] as usize;
                let next = if f64::from(x[ft]) > tree.threshold[node] {
                    tree.right[node] as usize
                } else {
                    tree.left[node] as usize
                };
                let gain = (f64::from(tree.n_samples[node]) / f64::from(tree.n_samples[next])).ln();
                contrib[ft] += gain / ((d + 1) as f64 * h);
                node = next;
                d += 1;
            }
        }
        normalise(contrib);
        f.finish(sum)
    }

    /// The table-driven, one-walk attribution keeps every bit of the reference, with the
    /// default subsample (all sizes in the tables) and a larger one (sizes past them).
    #[test]
    fn explanation_tables_keep_every_bit() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let d = 7;
        let rows: Vec<f32> = (0..1_200 * d).map(|_| next() * 10.0 - 5.0).collect();
        for max_samples in [256, 1_000] {
            let params = ForestParams {
                n_trees: 40,
                max_samples,
                seed: 3,
            };
            let f = IsolationForest::fit(&rows, d, &params).expect("fit");
            let (mut a, mut b) = (vec![0.0; d], vec![0.0; d]);
            for i in 0..300 {
                let mut x: Vec<f32> = (0..d).map(|_| next() * 14.0 - 7.0).collect();
                if i % 17 == 0 {
                    x[i % d] = f32::NAN;
                }
                let s = f.score_explained(&x, &mut a);
                let want = explained_reference(&f, &x, &mut b);
                assert_eq!(s.to_bits(), want.to_bits(), "score, row {i}");
                for (j, (p, q)) in a.iter().zip(&b).enumerate() {
                    assert_eq!(
                        p.to_bits(),
                        q.to_bits(),
                        "max_samples {max_samples}, row {i}, feature {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn floor_f32_is_exact() {
        let cases = [
            0.1f64, -0.1, 1.0, 0.0, -0.0, 1e-45, -1e-45, 3.4e38, 3.5e38, -3.5e38, 123456.789,
        ];
        for &t in &cases {
            let f = floor_f32(t);
            assert!(f64::from(f) <= t, "{t}");
            // The next f32 up is > t.
            let up = if f == 0.0 {
                f32::from_bits(1)
            } else if f > 0.0 {
                f32::from_bits(f.to_bits() + 1)
            } else {
                f32::from_bits(f.to_bits() - 1)
            };
            if f != f32::MAX {
                assert!(f64::from(up) > t, "{t}: {f} {up}");
            }
        }
    }

    #[test]
    fn height_limit_matches_sklearn() {
        for (psi, want) in [
            (1, 1),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (255, 8),
            (256, 8),
            (257, 9),
        ] {
            assert_eq!(height_limit(psi), want, "psi {psi}");
        }
    }
}
