//! Automatic device-class inference: bagged smartcore `DecisionTreeClassifier`s over
//! [`DeviceProfile`] vectors, with a vote-share confidence and abstention to `unknown`.
//!
//! smartcore 0.7's `RandomForestClassifier` has no `predict_proba`; its
//! `DecisionTreeClassifier` has one, but it is one-hot (the leaf's majority class). So we
//! bag the trees ourselves: each tree is fitted on a bootstrap sample of the training
//! profiles and a random subset of the profile features. Each leaf keeps the class shares
//! of the bootstrap rows that reached it (what scikit-learn's `predict_proba` returns for a
//! tree); the confidence is the mean of those shares over the bag for the winning class.
//!
//! Serialisation: smartcore's fitted trees keep their nodes private and their serde form
//! is an internal detail of one crate version. Right after fitting, each tree is
//! converted to our own flat form ([`FlatTree`]: feature index into the profile vector,
//! threshold, children, class) through its serde representation, and the conversion is
//! checked against smartcore's own `predict` on every training row (a mismatch is an
//! error). Only the flat trees are stored, so a model file does not depend on smartcore at
//! load time and serialises deterministically (plain `Vec`s, f64 thresholds).

use super::profile::{profile_feature_names, DeviceProfile};
use super::{DeviceClass, DeviceError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters,
};

/// Format version of [`ClassInference`]'s serialised form.
pub const INFERENCE_FORMAT_VERSION: u32 = 1;

/// Training and abstention settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceConfig {
    /// Trees in the bag. Default 50.
    pub n_trees: usize,
    /// Maximum tree depth. Default 8.
    pub max_depth: u16,
    /// Minimum training profiles in a leaf (> 1 keeps leaves impure where classes
    /// overlap, so the confidence reflects it). Default 3.
    pub min_samples_leaf: usize,
    /// Fraction of profile features each tree sees (random subspace). Default 0.6.
    pub feature_fraction: f64,
    /// Abstain (`unknown`) when the winning vote share is below this. Default 0.6.
    pub min_confidence: f64,
    /// Abstain when the winner's vote share exceeds the runner-up's by less than this.
    /// Default 0.2.
    pub min_margin: f64,
    /// A device is classified only after this many flows. Default 30.
    pub min_flows: u64,
    /// ... and after this many seconds of observation (first to last packet). Default 600.
    pub min_span_secs: f64,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            n_trees: 50,
            max_depth: 8,
            min_samples_leaf: 3,
            feature_fraction: 0.6,
            min_confidence: 0.6,
            min_margin: 0.2,
            min_flows: 30,
            min_span_secs: 600.0,
        }
    }
}

/// One node of a flat tree. A leaf has `left == right == u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FlatNode {
    /// Profile feature index tested (internal nodes).
    pub feature: u16,
    /// Go to `left` when `x[feature] <= threshold`.
    pub threshold: f64,
    /// Child for `x <= threshold`.
    pub left: u32,
    /// Child for `x > threshold`.
    pub right: u32,
    /// Majority class at this node (smartcore's `output`).
    pub class: DeviceClass,
    /// Leaves: share of the tree's bootstrap sample per class ([`DeviceClass::ALL`]
    /// order) that reached this leaf, as scikit-learn's `predict_proba`; zeros for
    /// internal nodes.
    pub probs: [f32; N_CLASSES],
}

const N_CLASSES: usize = DeviceClass::ALL.len();

/// One decision tree in flat form; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlatTree {
    /// Nodes.
    pub nodes: Vec<FlatNode>,
}

const LEAF: u32 = u32::MAX;

impl FlatTree {
    /// The leaf `x` reaches (None for a malformed tree).
    pub fn leaf(&self, x: &[f64]) -> Option<&FlatNode> {
        let mut i = 0usize;
        for _ in 0..=self.nodes.len() {
            let n = self.nodes.get(i)?;
            if n.left == LEAF || n.right == LEAF {
                return Some(n);
            }
            let v = *x.get(usize::from(n.feature))?;
            i = if v <= n.threshold { n.left } else { n.right } as usize;
        }
        None
    }

    /// The majority class of the leaf `x` reaches (None for a malformed tree).
    pub fn predict(&self, x: &[f64]) -> Option<DeviceClass> {
        self.leaf(x).map(|n| n.class)
    }

    /// Fills the leaves' class shares from the rows that trained the tree.
    fn fill_probs(&mut self, rows: &[(&[f64], DeviceClass)]) {
        let mut counts = vec![[0u32; N_CLASSES]; self.nodes.len()];
        for (x, c) in rows {
            let mut i = 0usize;
            for _ in 0..=self.nodes.len() {
                let Some(n) = self.nodes.get(i) else { break };
                if n.left == LEAF || n.right == LEAF {
                    counts[i][usize::from(c.code())] += 1;
                    break;
                }
                let v = x.get(usize::from(n.feature)).copied().unwrap_or(0.0);
                i = if v <= n.threshold { n.left } else { n.right } as usize;
            }
        }
        for (n, c) in self.nodes.iter_mut().zip(counts) {
            let total: u32 = c.iter().sum();
            if total > 0 {
                for (p, k) in n.probs.iter_mut().zip(c) {
                    *p = k as f32 / total as f32;
                }
            } else if n.left == LEAF {
                n.probs = [0.0; N_CLASSES];
                n.probs[usize::from(n.class.code())] = 1.0;
            }
        }
    }
}

/// The outcome of [`ClassInference::predict_detail`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// The winning class (before abstention).
    pub best: DeviceClass,
    /// Its mean leaf probability in [0, 1].
    pub confidence: f64,
    /// Winner's mean probability minus the runner-up's.
    pub margin: f64,
    /// `best`, or `Unknown` when the vote was not clear enough.
    pub class: DeviceClass,
}

/// A trained class-inference model (bagged flat trees). Serialisable for the model bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassInference {
    /// [`INFERENCE_FORMAT_VERSION`] at training time.
    pub format: u32,
    /// Profile feature names at training time (must equal [`profile_feature_names`]).
    pub feature_names: Vec<String>,
    /// Settings used.
    pub config: InferenceConfig,
    /// Training seed.
    pub seed: u64,
    /// Training profiles per class (sorted by class).
    pub training_counts: Vec<(DeviceClass, u32)>,
    /// The bag.
    pub trees: Vec<FlatTree>,
}

fn fit_err(detail: impl Into<String>) -> DeviceError {
    DeviceError::Inference {
        detail: detail.into(),
    }
}

/// Converts a fitted smartcore tree into flat form via its serde representation.
/// `cols` maps the tree's feature indices back to profile feature indices.
fn flatten(
    tree: &DecisionTreeClassifier<f64, u32, DenseMatrix<f64>, Vec<u32>>,
    cols: &[usize],
) -> Result<FlatTree, DeviceError> {
    let v = serde_json::to_value(tree).map_err(|e| fit_err(format!("tree export: {e}")))?;
    let classes: Vec<u32> = v
        .get("classes")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .ok_or_else(|| fit_err("tree export: no 'classes'"))?;
    let nodes = v
        .get("nodes")
        .and_then(|n| n.as_array())
        .ok_or_else(|| fit_err("tree export: no 'nodes'"))?;
    let mut out = Vec::with_capacity(nodes.len());
    for n in nodes {
        let get_u = |k: &str| n.get(k).and_then(|x| x.as_u64());
        let output =
            get_u("output").ok_or_else(|| fit_err("tree export: node without 'output'"))?;
        let code = *classes
            .get(output as usize)
            .ok_or_else(|| fit_err("tree export: output out of range"))?;
        let class = DeviceClass::from_code(code as u8)
            .ok_or_else(|| fit_err("tree export: unknown class code"))?;
        let (left, right) = (get_u("true_child"), get_u("false_child"));
        let node = match (left, right) {
            (Some(l), Some(r)) => {
                let f = get_u("split_feature")
                    .ok_or_else(|| fit_err("tree export: node without 'split_feature'"))?;
                let feature = *cols
                    .get(f as usize)
                    .ok_or_else(|| fit_err("tree export: split feature out of range"))?;
                let threshold = n
                    .get("split_value")
                    .and_then(|x| x.as_f64())
                    .ok_or_else(|| fit_err("tree export: split node without 'split_value'"))?;
                FlatNode {
                    feature: feature as u16,
                    threshold,
                    left: u32::try_from(l).map_err(|_| fit_err("tree too large"))?,
                    right: u32::try_from(r).map_err(|_| fit_err("tree too large"))?,
                    class,
                    probs: [0.0; N_CLASSES],
                }
            }
            _ => FlatNode {
                feature: 0,
                threshold: 0.0,
                left: LEAF,
                right: LEAF,
                class,
                probs: [0.0; N_CLASSES],
            },
        };
        out.push(node);
    }
    Ok(FlatTree { nodes: out })
}

impl ClassInference {
    /// Trains with [`InferenceConfig::default`].
    pub fn train(
        profiles: &[DeviceProfile],
        labels: &[DeviceClass],
        seed: u64,
    ) -> Result<ClassInference, DeviceError> {
        Self::train_with(profiles, labels, seed, InferenceConfig::default())
    }

    /// Trains the bag: deterministic for the same profiles, labels, seed and settings.
    /// Labels must be IoT classes (not `Unknown`), with at least two distinct classes.
    pub fn train_with(
        profiles: &[DeviceProfile],
        labels: &[DeviceClass],
        seed: u64,
        config: InferenceConfig,
    ) -> Result<ClassInference, DeviceError> {
        if profiles.len() != labels.len() {
            return Err(fit_err(format!(
                "{} profiles but {} labels",
                profiles.len(),
                labels.len()
            )));
        }
        if labels.contains(&DeviceClass::Unknown) {
            return Err(fit_err(
                "a training label is 'unknown'; label every training device with its class",
            ));
        }
        let mut counts: Vec<(DeviceClass, u32)> = Vec::new();
        for c in DeviceClass::ALL {
            let k = labels.iter().filter(|&&l| l == c).count() as u32;
            if k > 0 {
                counts.push((c, k));
            }
        }
        if counts.len() < 2 {
            return Err(fit_err("training needs devices of at least two classes"));
        }
        if config.n_trees == 0 {
            return Err(fit_err("n_trees must be at least 1"));
        }
        let xs: Vec<Vec<f64>> = profiles.iter().map(|p| p.vector()).collect();
        let d = profile_feature_names().len();
        let k = ((config.feature_fraction.clamp(0.0, 1.0) * d as f64).round() as usize).clamp(1, d);
        let n = xs.len();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut trees = Vec::with_capacity(config.n_trees);
        for t in 0..config.n_trees {
            let rows: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            let mut all: Vec<usize> = (0..d).collect();
            for i in 0..k {
                let j = rng.random_range(i..d);
                all.swap(i, j);
            }
            let mut cols = all[..k].to_vec();
            cols.sort_unstable();
            let y: Vec<u32> = rows.iter().map(|&r| u32::from(labels[r].code())).collect();
            let first = y[0];
            if y.iter().all(|&c| c == first) {
                let class = labels[rows[0]];
                let mut probs = [0.0; N_CLASSES];
                probs[usize::from(class.code())] = 1.0;
                trees.push(FlatTree {
                    nodes: vec![FlatNode {
                        feature: 0,
                        threshold: 0.0,
                        left: LEAF,
                        right: LEAF,
                        class,
                        probs,
                    }],
                });
                continue;
            }
            let x: Vec<Vec<f64>> = rows
                .iter()
                .map(|&r| cols.iter().map(|&c| xs[r][c]).collect())
                .collect();
            let m = DenseMatrix::from_2d_vec(&x).map_err(|e| fit_err(e.to_string()))?;
            let params = DecisionTreeClassifierParameters {
                seed: Some(seed.wrapping_add(t as u64)),
                ..Default::default()
            }
            .with_max_depth(config.max_depth.max(1))
            .with_min_samples_leaf(config.min_samples_leaf.max(1));
            let tree = DecisionTreeClassifier::fit(&m, &y, params)
                .map_err(|e| fit_err(format!("tree {t}: {e}")))?;
            let mut flat = flatten(&tree, &cols)?;
            // The flat form must decide exactly as smartcore does.
            let sm = tree
                .predict(&m)
                .map_err(|e| fit_err(format!("tree {t}: {e}")))?;
            for (i, &r) in rows.iter().enumerate() {
                let ours = flat.predict(&xs[r]).map(|c| u32::from(c.code()));
                if ours != Some(sm[i]) {
                    return Err(fit_err(format!(
                        "tree {t}: flat export disagrees with smartcore on training row {r}"
                    )));
                }
            }
            let sample: Vec<(&[f64], DeviceClass)> = rows
                .iter()
                .map(|&r| (xs[r].as_slice(), labels[r]))
                .collect();
            flat.fill_probs(&sample);
            trees.push(flat);
        }
        Ok(ClassInference {
            format: INFERENCE_FORMAT_VERSION,
            feature_names: profile_feature_names(),
            config,
            seed,
            training_counts: counts,
            trees,
        })
    }

    /// Checks a deserialised model against this build (format, profile features, trees).
    pub fn validate(&self) -> Result<(), DeviceError> {
        if self.format != INFERENCE_FORMAT_VERSION {
            return Err(fit_err(format!(
                "inference model format {} (this build reads {})",
                self.format, INFERENCE_FORMAT_VERSION
            )));
        }
        if self.feature_names != profile_feature_names() {
            return Err(fit_err(
                "inference model was trained on other profile features",
            ));
        }
        let d = self.feature_names.len();
        for (t, tree) in self.trees.iter().enumerate() {
            let len = tree.nodes.len();
            if len == 0 {
                return Err(fit_err(format!("tree {t} is empty")));
            }
            for n in &tree.nodes {
                let leaf = n.left == LEAF || n.right == LEAF;
                if !leaf
                    && (usize::from(n.feature) >= d
                        || n.left as usize >= len
                        || n.right as usize >= len
                        || !n.threshold.is_finite())
                {
                    return Err(fit_err(format!("tree {t} has a malformed node")));
                }
            }
        }
        Ok(())
    }

    /// The bag's class with abstention: `(class, confidence)`. The confidence is the
    /// winner's mean leaf probability over the trees (scikit-learn's `predict_proba` of a
    /// bagged ensemble); the class is `Unknown` when it is below `min_confidence` or
    /// exceeds the runner-up's by less than `min_margin`.
    pub fn predict(&self, profile: &DeviceProfile) -> (DeviceClass, f32) {
        let p = self.predict_detail(profile);
        (p.class, p.confidence as f32)
    }

    /// Like [`ClassInference::predict`] with the winner before abstention and the margin.
    pub fn predict_detail(&self, profile: &DeviceProfile) -> Prediction {
        let x = profile.vector();
        let mut sum = [0f64; N_CLASSES];
        let mut total = 0u32;
        for t in &self.trees {
            if let Some(n) = t.leaf(&x) {
                for (s, p) in sum.iter_mut().zip(n.probs) {
                    *s += f64::from(p);
                }
                total += 1;
            }
        }
        let mut order: Vec<usize> = (0..N_CLASSES).collect();
        // Highest mean probability first; ties broken by class order (deterministic).
        order.sort_by(|&a, &b| sum[b].total_cmp(&sum[a]).then(a.cmp(&b)));
        let share = |i: usize| {
            if total == 0 {
                0.0
            } else {
                (sum[i] / f64::from(total)).clamp(0.0, 1.0)
            }
        };
        let best = DeviceClass::ALL[order[0]];
        let confidence = share(order[0]);
        let margin = confidence - share(order[1]);
        let clear = total > 0
            && confidence >= self.config.min_confidence
            && margin >= self.config.min_margin;
        Prediction {
            best,
            confidence,
            margin,
            class: if clear { best } else { DeviceClass::Unknown },
        }
    }
}
