#!/usr/bin/env python3
"""scikit-learn side of the isolation-forest scoring benchmark (docs/benchmarks.md,
`## Isolation forest scoring`).

Generates exactly the data of `benches/forest.rs` (counter-based SplitMix64, 33 features,
4096 training rows with seed 1, 100 000 test rows with seed 2; the printed checksums must
equal the ones the Rust bench prints), fits
`IsolationForest(n_estimators=200, max_samples=256, random_state=0)` and times batch
`score_samples` on the 100 000 rows on one core (BLAS/OpenMP threads pinned to 1; sklearn
scores trees sequentially by default). Reports the best of several repetitions, in
wall-clock and in process CPU time.

Usage: python3 scripts/bench_sklearn_score.py [--repeat N]
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.ensemble import IsolationForest  # noqa: E402

N_FEATURES = 33
N_TRAIN = 4096
N_TEST = 100_000
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform(seed, n):
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = mix(np.uint64(seed) + i * GOLDEN)
    return (z >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24)


def rows(seed, n):
    v = uniform(seed, n * N_FEATURES).reshape(n, N_FEATURES)
    k = (np.arange(n) % 4).astype(np.float32)[:, None]
    j = np.arange(N_FEATURES) % 3
    out = np.empty_like(v)
    out[:, j == 0] = k * np.float32(2.0) + v[:, j == 0]
    c = v[:, j == 1]
    out[:, j == 1] = c * c * c * np.float32(1000.0)
    out[:, j == 2] = np.floor(v[:, j == 2] * np.float32(8.0))
    return out.astype(np.float32)


def checksum(a):
    return int(a.view(np.uint32).astype(np.uint64).sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    train, test = rows(1, N_TRAIN), rows(2, N_TEST)
    m = IsolationForest(n_estimators=200, max_samples=256, random_state=0).fit(train)
    nodes = np.mean([e.tree_.node_count for e in m.estimators_])
    print(f"sklearn {sklearn.__version__}, numpy {np.__version__}")
    print(f"data checksums: train {checksum(train)} test {checksum(test)}; "
          f"forest: {len(m.estimators_)} trees, max_samples_ {m.max_samples_}, {nodes:.1f} nodes/tree")
    m.score_samples(test[:1000])  # warm-up
    best_wall = best_cpu = float("inf")
    for _ in range(args.repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        m.score_samples(test)
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    print(f"score_samples on {N_TEST} rows: best wall {best_wall:.3f} s = {N_TEST / best_wall:,.0f} rows/s; "
          f"best CPU {best_cpu:.3f} s = {N_TEST / best_cpu:,.0f} rows/s")


if __name__ == "__main__":
    main()
