//! Scoring throughput of a 200-tree isolation forest on 33 features (issue 4's benchmark):
//! train on 4096 rows, score 100 000 rows on one core, as rows (flows) per second. The
//! data come from a counter-based SplitMix64 generator that
//! `scripts/bench_sklearn_score.py` reproduces bit for bit, so scikit-learn's
//! `score_samples` can be timed on identical data (see `docs/benchmarks.md`).
//!
//! Run: `cargo bench --bench forest` (then `python3 scripts/bench_sklearn_score.py`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowsentry::forest::{ForestParams, IsolationForest};
use std::hint::black_box;
use std::time::Duration;

const N_FEATURES: usize = 33;
const N_TRAIN: usize = 4096;
const N_TEST: usize = 100_000;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) with 24 bits: exact in f32.
fn uniform(seed: u64, i: u64) -> f32 {
    (mix(seed.wrapping_add((i + 1).wrapping_mul(GOLDEN))) >> 40) as f32 / (1u32 << 24) as f32
}

/// Flow-like rows: four clusters, a cubic heavy tail and integer-valued columns.
fn rows(seed: u64, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * N_FEATURES);
    for r in 0..n {
        let k = (r % 4) as f32;
        for j in 0..N_FEATURES {
            let v = uniform(seed, (r * N_FEATURES + j) as u64);
            out.push(match j % 3 {
                0 => k * 2.0 + v,
                1 => v * v * v * 1000.0,
                _ => (v * 8.0).floor(),
            });
        }
    }
    out
}

/// Wrapping sum of the f32 bit patterns (compared with the Python script's).
fn checksum(v: &[f32]) -> u64 {
    v.iter()
        .fold(0u64, |a, x| a.wrapping_add(u64::from(x.to_bits())))
}

/// Seconds this thread has been on a CPU (Linux `/proc/thread-self/schedstat`), to
/// compare with the Python script's CPU time on a shared machine; `None` elsewhere.
fn thread_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// Best-of-`reps` rows/s of `f` over `N_TEST` rows, in wall-clock and in on-CPU time.
fn best_rows_per_s(reps: usize, mut f: impl FnMut()) -> (f64, Option<f64>) {
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        let (w0, c0) = (std::time::Instant::now(), thread_cpu_seconds());
        f();
        wall = wall.min(w0.elapsed().as_secs_f64());
        if let (Some(c0), Some(c1)) = (c0, thread_cpu_seconds()) {
            cpu = cpu.min(c1 - c0);
        }
    }
    let n = N_TEST as f64;
    (n / wall, cpu.is_finite().then(|| n / cpu))
}

fn bench(c: &mut Criterion) {
    let train = rows(1, N_TRAIN);
    let test = rows(2, N_TEST);
    let forest = IsolationForest::fit(&train, N_FEATURES, &ForestParams::default())
        .expect("training on generated data");
    let nodes: usize = forest.trees().iter().map(|t| t.n_nodes()).sum();
    eprintln!(
        "data checksums: train {} test {}; forest: {} trees, psi {}, {:.1} nodes/tree",
        checksum(&train),
        checksum(&test),
        forest.n_trees(),
        forest.psi(),
        nodes as f64 / forest.n_trees() as f64
    );

    // Same method as scripts/bench_sklearn_score.py: best of 7, wall and CPU time.
    let mut out = vec![0.0; N_TEST];
    let per_row = best_rows_per_s(7, || {
        let mut acc = 0.0;
        for x in test.chunks_exact(N_FEATURES) {
            acc += forest.score(black_box(x));
        }
        black_box(acc);
    });
    let batch = best_rows_per_s(7, || {
        forest
            .score_batch(black_box(&test), &mut out)
            .expect("dimensions match");
        black_box(&out);
    });
    for (name, (wall, cpu)) in [("score (per row)", per_row), ("score_batch", batch)] {
        eprintln!(
            "best of 7, {name}: wall {wall:.0} rows/s; CPU {} rows/s",
            cpu.map_or("n/a".to_string(), |c| format!("{c:.0}"))
        );
    }

    let mut g = c.benchmark_group("forest_score_100k");
    g.throughput(Throughput::Elements(N_TEST as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("score_per_row", |b| {
        b.iter(|| {
            let mut acc = 0.0;
            for x in test.chunks_exact(N_FEATURES) {
                acc += forest.score(black_box(x));
            }
            acc
        })
    });
    g.bench_function("score_batch", |b| {
        b.iter(|| {
            forest
                .score_batch(black_box(&test), &mut out)
                .expect("dimensions match");
            out[N_TEST - 1]
        })
    });
    g.finish();

    let mut g = c.benchmark_group("forest_fit");
    g.sample_size(10);
    g.bench_function("fit_4096x33_200_trees", |b| {
        b.iter(|| IsolationForest::fit(black_box(&train), N_FEATURES, &ForestParams::default()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
