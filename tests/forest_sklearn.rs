//! Cross-checks of `flowsentry::forest` against scikit-learn (design detection.md §1.6),
//! from fixtures written by `scripts/sklearn_iforest_export.py` (no Python at test time):
//! (a) exact: sklearn-fitted trees imported into our scorer reproduce `-score_samples`
//! to 1e-9 on every fixture row; (b) statistical: our trainer on the same data ranks rows
//! like just another sklearn seed.

use flowsentry::forest::{ForestParams, IsolationForest};
use serde::Deserialize;

const EXACT: &str = include_str!("fixtures/sklearn_iforest.json");
const STATS: &str = include_str!("fixtures/sklearn_iforest_stats.json");

#[derive(Deserialize)]
struct Exact {
    sklearn_version: String,
    n_estimators: usize,
    n_features: usize,
    max_samples: usize,
    train_rows: Vec<Vec<f64>>,
    eval_rows: Vec<Vec<f64>>,
    rows: Vec<Vec<f64>>,
    row_kinds: Vec<String>,
    score: Vec<f64>,
}

#[derive(Deserialize)]
struct Stats {
    n_estimators: usize,
    seeds: Vec<u64>,
    labels: Vec<u8>,
    scores_by_seed: Vec<Vec<f64>>,
}

/// Rows in the fixture are float32 values written as exact float64 reprs.
fn flat(rows: &[Vec<f64>]) -> Vec<f32> {
    rows.iter().flatten().map(|&v| v as f32).collect()
}

fn exact() -> Exact {
    serde_json::from_str(EXACT).expect("fixture sklearn_iforest.json parses")
}

#[test]
fn imported_sklearn_forest_reproduces_score_samples() {
    let fx = exact();
    let forest = IsolationForest::from_sklearn_json(EXACT).expect("import sklearn forest");
    assert_eq!(forest.n_trees(), fx.n_estimators);
    assert_eq!(forest.n_features(), fx.n_features);
    assert_eq!(forest.psi(), fx.max_samples);
    assert_eq!(fx.rows.len(), fx.score.len());

    let mut max_diff = 0.0f64;
    let mut contrib = vec![0.0; fx.n_features];
    for (i, (row, &want)) in fx.rows.iter().zip(&fx.score).enumerate() {
        let x: Vec<f32> = row.iter().map(|&v| v as f32).collect();
        let got = forest.score(&x);
        let diff = (got - want).abs();
        max_diff = max_diff.max(diff);
        assert!(
            diff <= 1e-9,
            "row {i} ({}): ours {got} vs sklearn {want} (|diff| = {diff:e}, sklearn {})",
            fx.row_kinds[i],
            fx.sklearn_version
        );
        let explained = forest.score_explained(&x, &mut contrib);
        assert_eq!(
            explained.to_bits(),
            got.to_bits(),
            "row {i}: score_explained"
        );
    }
    // Batch scoring gives the same values.
    let all = flat(&fx.rows);
    let mut out = vec![0.0; fx.rows.len()];
    forest.score_batch(&all, &mut out).expect("batch");
    for (i, (&b, row)) in out.iter().zip(&fx.rows).enumerate() {
        let x: Vec<f32> = row.iter().map(|&v| v as f32).collect();
        assert_eq!(b.to_bits(), forest.score(&x).to_bits(), "row {i}: batch");
    }
    eprintln!(
        "sklearn {}: {} rows, max |ours - sklearn| = {max_diff:e}",
        fx.sklearn_version,
        fx.rows.len()
    );
}

#[test]
fn imported_forest_survives_serde_round_trip() {
    let forest = IsolationForest::from_sklearn_json(EXACT).expect("import");
    let json = serde_json::to_string(&forest).expect("serialise");
    let back: IsolationForest = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, forest);
}

/// Average ranks (ties share the mean rank).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0;
        for &k in &order[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    cov / (va * vb).sqrt()
}

/// ROC-AUC of `scores` (higher = positive) against 0/1 `labels`, ties counted half.
fn auc(scores: &[f64], labels: &[u8]) -> f64 {
    let r = ranks(scores);
    let pos = labels.iter().filter(|&&l| l == 1).count() as f64;
    let neg = labels.len() as f64 - pos;
    let sum_pos: f64 = r
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l == 1)
        .map(|(r, _)| r + 1.0)
        .sum();
    (sum_pos - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

#[test]
fn our_trainer_ranks_like_another_sklearn_seed() {
    let fx = exact();
    let st: Stats = serde_json::from_str(STATS).expect("fixture sklearn_iforest_stats.json");
    let train = flat(&fx.train_rows);
    let mut rows = fx.train_rows.clone();
    rows.extend(fx.eval_rows.iter().cloned());
    let rows = flat(&rows);
    assert_eq!(rows.len() / fx.n_features, st.labels.len());

    // sklearn's own seed-to-seed spread.
    let sk = &st.scores_by_seed;
    let mut sk_min_rho = f64::INFINITY;
    for i in 0..sk.len() {
        for j in i + 1..sk.len() {
            sk_min_rho = sk_min_rho.min(spearman(&sk[i], &sk[j]));
        }
    }
    let sk_auc: Vec<f64> = sk.iter().map(|s| auc(s, &st.labels)).collect();
    let auc_lo = sk_auc.iter().copied().fold(f64::INFINITY, f64::min);
    let auc_hi = sk_auc.iter().copied().fold(f64::NEG_INFINITY, f64::max);

    let mut our_min_rho = f64::INFINITY;
    let mut our_rho_sum = 0.0;
    let mut pairs = 0;
    for &seed in &st.seeds {
        let params = ForestParams {
            n_trees: st.n_estimators,
            max_samples: 256,
            seed,
        };
        let f = IsolationForest::fit(&train, fx.n_features, &params).expect("fit");
        let mut ours = vec![0.0; st.labels.len()];
        f.score_batch(&rows, &mut ours).expect("score");
        let a = auc(&ours, &st.labels);
        assert!(
            a >= auc_lo - 0.01 && a <= auc_hi + 0.01,
            "seed {seed}: our AUC {a:.4} outside sklearn's [{auc_lo:.4}, {auc_hi:.4}] ± 0.01"
        );
        for s in sk {
            let rho = spearman(&ours, s);
            our_min_rho = our_min_rho.min(rho);
            our_rho_sum += rho;
            pairs += 1;
        }
    }
    eprintln!(
        "Spearman: sklearn seed pairs min {sk_min_rho:.4}; ours vs sklearn min {our_min_rho:.4} mean {:.4}; sklearn AUC [{auc_lo:.4}, {auc_hi:.4}]",
        our_rho_sum / pairs as f64
    );
    assert!(
        our_min_rho > 0.9,
        "Spearman ours vs sklearn {our_min_rho:.4} <= 0.9"
    );
    assert!(
        our_min_rho >= sk_min_rho - 0.01,
        "Spearman ours vs sklearn {our_min_rho:.4} < sklearn's seed-pair minimum {sk_min_rho:.4} - 0.01"
    );
}
