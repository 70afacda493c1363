//! Whole-pipeline benchmark (issues 4 and 5): `flowsentry replay` of the 2,000,000-frame
//! benchmark capture end to end (decode, flow table, detection with the shipped model,
//! JSON to /dev/null) for 0 (single-threaded), 1 and 2 workers, with scoring on and off,
//! as ratios to a raw libpcap read loop measured in the same run, to the single-threaded
//! path, and to `argus -r` on the same file. It also measures the fixed start-up cost of
//! a replay (a 16-frame capture, with the built-in model and with `--no-detect`), which
//! is most of the run time of a CI job replaying a small fixture. Run with `make bench`
//! (needs the release binary: `cargo build --release`). Without `--bench` (as `cargo
//! test` runs it) it only checks that the binary and the capture can be found.

use flowsentry::benchgen::{ensure_bench_pcap, BENCH_FLOWS, BENCH_FRAMES, BENCH_SEED};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

// The replay bench's capture (same parameters, so the two benches share one file
// instead of regenerating it for each other).
const FRAMES: u64 = BENCH_FRAMES;
const FLOWS: u32 = BENCH_FLOWS;
const SEED: u64 = BENCH_SEED;

fn die(msg: String) -> ! {
    eprintln!("pipeline bench: {msg}");
    std::process::exit(1)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn libpcap_count(path: &Path) -> (f64, u64) {
    let t0 = Instant::now();
    let mut cap = pcap::Capture::from_file(path).unwrap_or_else(|e| die(format!("{e}")));
    let mut n = 0u64;
    while cap.next_packet().is_ok() {
        n += 1;
    }
    (t0.elapsed().as_secs_f64(), n)
}

fn run(bin: &Path, args: &[&str]) -> f64 {
    let t0 = Instant::now();
    let st = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| die(format!("{}: {e}", bin.display())));
    if !st.success() {
        die(format!("{} {:?} exited with {st}", bin.display(), args));
    }
    t0.elapsed().as_secs_f64()
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/release/flowsentry");
    let path = root.join("target/bench-data/bench-2m.pcap");
    if !std::env::args().any(|a| a == "--bench") {
        println!("pipeline bench: run `make bench` to measure");
        return;
    }
    if !bin.exists() {
        die(format!(
            "{} missing: run `cargo build --release` first",
            bin.display()
        ));
    }
    if let Err(e) = ensure_bench_pcap(&path, FRAMES, FLOWS, SEED) {
        die(format!("cannot write {}: {e}", path.display()));
    }
    let reps: usize = std::env::var("FLOWSENTRY_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let p = path
        .to_str()
        .unwrap_or_else(|| die("non-UTF-8 path".into()));
    let mut base = Vec::new();
    for _ in 0..reps {
        let (t, n) = libpcap_count(&path);
        if n != FRAMES {
            die(format!("libpcap read {n} frames"));
        }
        base.push(t);
    }
    let base = median(&mut base);
    let configs: [(&str, Vec<&str>); 6] = [
        (
            "single-threaded, no scoring",
            vec!["--workers", "0", "--no-detect"],
        ),
        ("single-threaded, scoring", vec!["--workers", "0"]),
        (
            "1 worker, no scoring",
            vec!["--workers", "1", "--no-detect"],
        ),
        ("1 worker, scoring", vec!["--workers", "1"]),
        (
            "2 workers, no scoring",
            vec!["--workers", "2", "--no-detect"],
        ),
        ("2 workers, scoring", vec!["--workers", "2"]),
    ];
    let mut results = Vec::new();
    for (name, extra) in &configs {
        let mut args = vec!["replay", "--no-progress", "--out", "/dev/null"];
        args.extend_from_slice(extra);
        args.push(p);
        let mut v: Vec<f64> = (0..reps).map(|_| run(&bin, &args)).collect();
        results.push((*name, median(&mut v)));
    }
    let argus = if have("argus") {
        let mut v: Vec<f64> = (0..reps)
            .map(|_| run(Path::new("argus"), &["-r", p, "-w", "/dev/null"]))
            .collect();
        Some(median(&mut v))
    } else {
        None
    };
    let single = results[1].1;
    println!(
        "pipeline benchmark: {FRAMES} frames, {FLOWS} flows, median of {reps}, load {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "{:<30} {:>8} {:>8} {:>10} {:>12} {:>10}",
        "mode", "secs", "Mpps", "vs libpcap", "vs 1-thread", "x argus"
    );
    println!(
        "{:<30} {:>8.3} {:>8.2} {:>10.2}",
        "raw libpcap read loop",
        base,
        FRAMES as f64 / base / 1e6,
        1.0
    );
    for (name, t) in &results {
        let ax = argus
            .map(|a| format!("{:.1}", a / t))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<30} {:>8.3} {:>8.2} {:>10.2} {:>12.2} {:>10}",
            name,
            t,
            FRAMES as f64 / t / 1e6,
            base / t,
            single / t,
            ax
        );
    }
    match argus {
        Some(a) => println!(
            "{:<30} {:>8.3} {:>8.2} {:>10.2}",
            "argus -r",
            a,
            FRAMES as f64 / a / 1e6,
            base / a
        ),
        None => println!("argus not installed (apt-get install argus-server): comparison skipped"),
    }
    let on = results[1].1;
    let off = results[0].1;
    println!(
        "scoring on / off throughput (single-threaded): {:.2}",
        off / on
    );
    startup(&bin, &root);
}

/// Start-up cost: `flowsentry replay` of a 16-frame capture (written by the same
/// generator), median of 21 runs each, with the built-in model and with `--no-detect`;
/// the difference is what loading the model costs every replay.
fn startup(bin: &Path, root: &Path) {
    let small = root.join("target/bench-data/bench-16.pcap");
    if let Err(e) = ensure_bench_pcap(&small, 16, 4, SEED) {
        die(format!("cannot write {}: {e}", small.display()));
    }
    let p = small
        .to_str()
        .unwrap_or_else(|| die("non-UTF-8 path".into()));
    let time = |extra: &[&str]| {
        let mut args = vec![
            "replay",
            "--no-progress",
            "--workers",
            "0",
            "--out",
            "/dev/null",
        ];
        args.extend_from_slice(extra);
        args.push(p);
        let mut v: Vec<f64> = (0..21).map(|_| run(bin, &args)).collect();
        median(&mut v)
    };
    let with_model = time(&[]);
    let without = time(&["--no-detect"]);
    println!(
        "start-up (replay of 16 frames, median of 21): {:.1} ms with the built-in model, {:.1} ms with --no-detect: model load {:.1} ms",
        with_model * 1e3,
        without * 1e3,
        (with_model - without) * 1e3
    );
    // Decoding and checking the built-in model in this process (warm allocator), best
    // of 20, against hashing its bytes (the checksum part of it).
    let bytes = flowsentry::model::BUILTIN_MODEL;
    if bytes.is_empty() {
        println!("model decode: no built-in model in this build");
        return;
    }
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        match flowsentry::model::ModelBundle::from_bytes(bytes, "built-in") {
            Ok(b) => drop(std::hint::black_box(b)),
            Err(e) => die(format!("the built-in model does not load: {e}")),
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    std::hint::black_box(flowsentry::model::ModelBundle::file_digest(bytes));
    println!(
        "model decode ({} bytes, best of 20): {:.1} ms; SHA-1 of the file alone {:.1} ms",
        bytes.len(),
        best * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
}
