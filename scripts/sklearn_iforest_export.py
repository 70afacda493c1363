#!/usr/bin/env python3
"""Export scikit-learn IsolationForest fixtures for flowsentry's forest cross-checks.

Writes two JSON files used by `tests/forest_sklearn.rs` (no Python needed at test time):

* tests/fixtures/sklearn_iforest.json       exact cross-check (design detection.md 1.6 a):
  a fixed synthetic data set (float32), one sklearn forest fitted on it (`trees` in the
  format read by `IsolationForest::from_sklearn_json`), the rows to score and sklearn's
  `-score_samples` on them (the paper's score s, higher = more anomalous).
* tests/fixtures/sklearn_iforest_stats.json statistical check (1.6 b): sklearn's
  `-score_samples` on the training + evaluation rows for several seeds (200 trees), plus
  the outlier labels, so the test can compare our trainer's ranking/AUC with sklearn's
  seed-to-seed spread.

Regenerate (from the repository root; needs numpy and scikit-learn):

    python3 scripts/sklearn_iforest_export.py

The output depends only on the numpy/scikit-learn versions (recorded in the files) and the
seeds below; rerunning with the same versions gives identical files.
"""

import json
import os
import sys

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_EXACT = os.path.join(ROOT, "tests", "fixtures", "sklearn_iforest.json")
OUT_STATS = os.path.join(ROOT, "tests", "fixtures", "sklearn_iforest_stats.json")

DATA_SEED = 20240601
EXACT_TREES = 100
EXACT_MAX_SAMPLES = 256
EXACT_RANDOM_STATE = 42
STATS_TREES = 200
STATS_SEEDS = list(range(10))
N_FEATURES = 8


def inliers(rng, n):
    """Two Gaussian clusters plus heavy-tailed, integer, sparse, constant and uniform
    columns (exercises ties and features that are constant in many nodes)."""
    cluster = rng.integers(0, 2, size=n)
    centre = np.where(cluster == 0, 0.0, 5.0)
    x = np.empty((n, N_FEATURES))
    x[:, 0] = centre + rng.normal(0.0, 1.0, n)
    x[:, 1] = centre + rng.normal(0.0, 1.0, n)
    x[:, 2] = rng.lognormal(3.0, 1.0, n)  # heavy tail ("bytes")
    x[:, 3] = rng.poisson(3.0, n)  # integer counts: many ties
    x[:, 4] = (rng.random(n) < 0.05).astype(float)  # mostly 0
    x[:, 5] = 7.0  # constant: never split on
    x[:, 6] = rng.uniform(0.0, 1000.0, n)
    x[:, 7] = 0.5 * x[:, 0] + rng.normal(0.0, 0.2, n)
    return x


def outliers(rng, n):
    x = inliers(rng, n)
    x[:, 0] = rng.uniform(-12.0, 17.0, n)
    x[:, 1] = rng.uniform(-12.0, 17.0, n)
    x[:, 2] = rng.lognormal(7.0, 1.0, n)
    x[:, 3] = rng.integers(10, 40, n)
    x[:, 7] = rng.uniform(-8.0, 8.0, n)
    return x


def f32list(a):
    # Full float64 repr of float32 values: parses back exactly.
    return [[float(v) for v in row] for row in np.asarray(a, dtype=np.float32)]


def export_trees(m):
    trees = []
    for est, f_idx in zip(m.estimators_, m.estimators_features_):
        t = est.tree_
        trees.append({
            "left": t.children_left.tolist(),
            "right": t.children_right.tolist(),
            "feature": [int(f_idx[f]) if f >= 0 else -1 for f in t.feature],
            "threshold": [float(v) for v in t.threshold],
            # exact float64 bit patterns (JSON float parsing may be off by an ulp)
            "threshold_bits": t.threshold.astype(np.float64).view(np.uint64).tolist(),
            "n": t.n_node_samples.tolist(),
        })
    return trees


def boundary_rows(m, base, rng, count):
    """Rows whose value at a split feature sits exactly on / next to the threshold after
    the float32 cast (tests `(x as f32) as f64 <= thr`)."""
    rows = []
    for _ in range(count):
        est_i = int(rng.integers(len(m.estimators_)))
        t = m.estimators_[est_i].tree_
        f_idx = m.estimators_features_[est_i]
        internal = np.flatnonzero(t.feature >= 0)
        node = int(rng.choice(internal))
        f = int(f_idx[t.feature[node]])
        thr = t.threshold[node]
        near = np.float32(thr)
        for v in (near, np.nextafter(near, np.float32(-np.inf)), np.nextafter(near, np.float32(np.inf))):
            row = base[int(rng.integers(len(base)))].copy()
            row[f] = v
            rows.append(row)
    return np.asarray(rows, dtype=np.float32)


def main():
    rng = np.random.default_rng(DATA_SEED)
    train = np.vstack([inliers(rng, 480), outliers(rng, 32)])
    train_labels = [0] * 480 + [1] * 32
    evaluation = np.vstack([inliers(rng, 200), outliers(rng, 40)])
    eval_labels = [0] * 200 + [1] * 40
    train = train.astype(np.float32)
    evaluation = evaluation.astype(np.float32)
    extreme = np.array([
        [0.0] * N_FEATURES,
        [1e30] * N_FEATURES,
        [-1e30] * N_FEATURES,
        [3.0e38, -3.0e38, 3.0e38, -3.0e38, 3.0e38, -3.0e38, 3.0e38, -3.0e38],
        [2.5, 2.5, 20.0, 3.0, 0.0, 7.0, 500.0, 1.25],
    ], dtype=np.float32)

    m = IsolationForest(n_estimators=EXACT_TREES, max_samples=EXACT_MAX_SAMPLES,
                        random_state=EXACT_RANDOM_STATE).fit(train)
    boundary = boundary_rows(m, train, rng, 40)
    rows = np.vstack([train, evaluation, boundary, extreme]).astype(np.float32)
    kinds = (["train"] * len(train) + ["eval"] * len(evaluation)
             + ["boundary"] * len(boundary) + ["extreme"] * len(extreme))
    score = -m.score_samples(rows)
    exact = {
        "generator": "scripts/sklearn_iforest_export.py",
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "n_estimators": EXACT_TREES,
        "random_state": EXACT_RANDOM_STATE,
        "n_features": N_FEATURES,
        "max_samples": int(m.max_samples_),
        "offset": float(m.offset_),
        "feature_ranges": [[float(lo), float(hi)] for lo, hi in zip(train.min(axis=0), train.max(axis=0))],
        "train_rows": f32list(train),
        "train_labels": train_labels,
        "eval_rows": f32list(evaluation),
        "eval_labels": eval_labels,
        "rows": f32list(rows),
        "row_kinds": kinds,
        "score": [float(v) for v in score],
        "trees": export_trees(m),
    }

    stat_rows = np.vstack([train, evaluation])
    by_seed = []
    for seed in STATS_SEEDS:
        ms = IsolationForest(n_estimators=STATS_TREES, random_state=seed).fit(train)
        by_seed.append([float(v) for v in -ms.score_samples(stat_rows)])
    stats = {
        "generator": "scripts/sklearn_iforest_export.py",
        "sklearn_version": sklearn.__version__,
        "n_estimators": STATS_TREES,
        "max_samples": "auto",
        "seeds": STATS_SEEDS,
        "rows": "train_rows then eval_rows of sklearn_iforest.json",
        "labels": train_labels + eval_labels,
        "scores_by_seed": by_seed,
    }

    with open(OUT_EXACT, "w") as fh:
        json.dump(exact, fh, separators=(",", ":"))
        fh.write("\n")
    with open(OUT_STATS, "w") as fh:
        json.dump(stats, fh, separators=(",", ":"))
        fh.write("\n")
    for p in (OUT_EXACT, OUT_STATS):
        print(f"wrote {os.path.relpath(p, ROOT)} ({os.path.getsize(p)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
