//! Replay throughput benchmark (issue 2, "Speed"), run by `make bench` / `cargo bench`.
//!
//! Generates (once) `target/bench-data/bench-2m.pcap`: 2,000,000 small frames over 50,000
//! bidirectional flows (`flowsentry::benchgen`), then measures in this one process, pinned
//! to one core, several repetitions per mode (the median is reported):
//!
//! * (a) `libpcap-count`: libpcap read loop that only counts frames, the ceiling;
//! * (b) `native-count`: the pure-Rust (pcap-parser) reader, count only;
//! * (c) `decode`: native read + `flowsentry::decode::decode` of every frame;
//! * (d) `flows`: full replay to flow records (read + decode + fragments + flow table; the
//!   records are consumed, not serialised) — the figure the issue's targets apply to;
//! * (d2) `flows-libpcap`: the same with the libpcap reader (what `--bpf` uses);
//! * (e) `replay-json`: `flowsentry::pipeline::replay` with JSON events to `io::sink()`,
//!   i.e. what `flowsentry replay` does.
//!
//! Peak RSS is measured per mode in a fresh child process (this binary re-run with
//! `--child MODE`), from `VmHWM` in `/proc/self/status`. A counting global allocator
//! reports heap allocations per frame in mode (d). `argus` and `softflowd` are timed on
//! the same file when installed (skipped with a note otherwise).
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it only checks every mode on a
//! small capture.
//!
//! Environment: `FLOWSENTRY_BENCH_REPS` (default 5), `FLOWSENTRY_BENCH_CPU` (core to pin
//! to, default 1; `none` to not pin), `FLOWSENTRY_BENCH_EXTERNAL=0` to skip argus/softflowd.

use flowsentry::benchgen::{ensure_bench_pcap, BENCH_FLOWS, BENCH_FRAMES, BENCH_SEED};
use flowsentry::capture::{Backend, Input, NativeReader, Source};
use flowsentry::event::EventWriter;
use flowsentry::flow::{EndReason, FlowConfig};
use flowsentry::packet::PacketSummary;
use flowsentry::pipeline::{replay, Engine, ReplayOptions};
use flowsentry::time::Nanos;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counts allocation calls (alloc, alloc_zeroed, realloc).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every operation to `System`; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BATCH: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    LibpcapCount,
    NativeCount,
    Decode,
    Flows,
    FlowsLibpcap,
    ReplayJson,
}

impl Mode {
    const ALL: [Mode; 6] = [
        Mode::LibpcapCount,
        Mode::NativeCount,
        Mode::Decode,
        Mode::Flows,
        Mode::FlowsLibpcap,
        Mode::ReplayJson,
    ];
    fn name(self) -> &'static str {
        match self {
            Mode::LibpcapCount => "libpcap-count",
            Mode::NativeCount => "native-count",
            Mode::Decode => "decode",
            Mode::Flows => "flows",
            Mode::FlowsLibpcap => "flows-libpcap",
            Mode::ReplayJson => "replay-json",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Mode::LibpcapCount => "(a) libpcap read, count only",
            Mode::NativeCount => "(b) native read, count only",
            Mode::Decode => "(c) native read + decode",
            Mode::Flows => "(d) full replay to flow records",
            Mode::FlowsLibpcap => "(d2) (d) with the libpcap reader",
            Mode::ReplayJson => "(e) (d) + JSON events to sink",
        }
    }
    fn from_name(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// What one run of a mode observed.
#[derive(Debug, Default, Clone, Copy)]
struct RunOut {
    frames: u64,
    /// Wall-clock seconds.
    secs: f64,
    /// CPU seconds of this process (user + system), which waiting for a CPU on a busy
    /// machine does not inflate.
    cpu: f64,
    /// Mode (d): allocation calls during the run, flow-table bytes at the end (the
    /// table never shrinks, so this is its peak), peak active flows, records.
    allocs: u64,
    table_bytes: u64,
    peak_flows: u64,
    records: u64,
    check: u64,
}

fn die(msg: String) -> ! {
    eprintln!("bench replay: {msg}");
    std::process::exit(2)
}

fn run_mode(mode: Mode, path: &Path) -> RunOut {
    let input = Input::File(path.to_path_buf());
    let mut out = RunOut::default();
    let c0 = cpu_secs();
    let t0 = Instant::now();
    match mode {
        Mode::LibpcapCount => {
            let mut cap = pcap::Capture::from_file(path)
                .unwrap_or_else(|e| die(format!("libpcap open: {e}")));
            let mut n = 0u64;
            loop {
                match cap.next_packet() {
                    Ok(p) => {
                        black_box(p.data.len());
                        n += 1;
                    }
                    Err(pcap::Error::NoMorePackets) => break,
                    Err(e) => die(format!("libpcap read: {e}")),
                }
            }
            out.frames = n;
        }
        Mode::NativeCount => {
            let mut rd = NativeReader::open(&input, None).unwrap_or_else(|e| die(format!("{e}")));
            let mut n = 0u64;
            loop {
                let got = rd
                    .dispatch(BATCH, |f| {
                        black_box(f.data.len());
                        n += 1;
                    })
                    .unwrap_or_else(|e| die(format!("{e}")));
                if got == 0 {
                    break;
                }
            }
            out.frames = n;
        }
        Mode::Decode => {
            let mut rd = NativeReader::open(&input, None).unwrap_or_else(|e| die(format!("{e}")));
            let (mut n, mut ip, mut ports) = (0u64, 0u64, 0u64);
            loop {
                let got = rd
                    .dispatch(BATCH, |f| {
                        n += 1;
                        if let Ok(PacketSummary::Ip(p)) = flowsentry::decode::decode(f) {
                            ip += 1;
                            ports = ports.wrapping_add(u64::from(p.src_port ^ p.dst_port));
                        }
                    })
                    .unwrap_or_else(|e| die(format!("{e}")));
                if got == 0 {
                    break;
                }
            }
            out.frames = n;
            out.check = black_box(ip ^ ports);
        }
        Mode::Flows | Mode::FlowsLibpcap => {
            let backend = if mode == Mode::Flows {
                Backend::Native
            } else {
                Backend::Libpcap
            };
            let a0 = ALLOCS.load(Ordering::Relaxed);
            let mut src =
                Source::open(&input, backend, None).unwrap_or_else(|e| die(format!("{e}")));
            let mut eng = Engine::new(FlowConfig::default(), 65_536, Nanos::from_secs(30));
            let (mut records, mut pkts) = (0u64, 0u64);
            loop {
                let got = src
                    .dispatch(BATCH, |f| eng.on_frame(f))
                    .unwrap_or_else(|e| die(format!("{e}")));
                for r in eng.drain_finished() {
                    records += 1;
                    pkts += r.pkts();
                }
                if got == 0 {
                    break;
                }
            }
            out.table_bytes = eng.flows().memory_bytes() as u64;
            out.peak_flows = eng.flows().counters().peak_active;
            eng.flush(EndReason::EndOfInput);
            for r in eng.drain_finished() {
                records += 1;
                pkts += r.pkts();
            }
            out.allocs = ALLOCS.load(Ordering::Relaxed) - a0;
            out.frames = eng.stats().frames;
            out.records = records;
            out.check = black_box(pkts);
        }
        Mode::ReplayJson => {
            let opts = ReplayOptions {
                inputs: vec![input],
                ..ReplayOptions::default()
            };
            let mut w = flowsentry::output::Output::flows_only(EventWriter::new(
                Box::new(std::io::sink()),
                "sink",
            ));
            let o = replay(&opts, &mut w).unwrap_or_else(|e| die(format!("{e}")));
            if !o.input_errors.is_empty() {
                die(format!("replay: {:?}", o.input_errors));
            }
            out.frames = o.frames;
            out.records = o.flow_events;
        }
    }
    out.secs = t0.elapsed().as_secs_f64();
    out.cpu = cpu_secs() - c0;
    out
}

/// CPU time used by this (single-threaded) process so far, in seconds.
fn cpu_secs() -> f64 {
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        if libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) == 0 {
            ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
        } else {
            0.0
        }
    }
}

/// Peak resident set of this process in KiB: `VmHWM` of `/proc/self/status` (reset by
/// exec, unlike `getrusage`'s `ru_maxrss`, which keeps the pre-exec high-water mark of
/// the forking parent on Linux), falling back to `ru_maxrss`.
fn max_rss_kib() -> u64 {
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        });
    if let Some(h) = hwm {
        return h;
    }
    // SAFETY: getrusage writes into the zeroed struct we own.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) == 0 {
            ru.ru_maxrss as u64
        } else {
            0
        }
    }
}

fn pin(cpu: Option<usize>) -> String {
    let Some(cpu) = cpu else {
        return "not pinned".into();
    };
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0, ..) affects this process only.
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    if ok {
        format!("pinned to cpu {cpu}")
    } else {
        format!("pinning to cpu {cpu} failed; not pinned")
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown cpu".into());
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{model}, {n} cpus")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Child mode: run one mode once and print `frames wall_secs rss_kib_before rss_kib_after
/// cpu_secs`.
fn child(mode: &str, path: &str) {
    let Some(m) = Mode::from_name(mode) else {
        die(format!("unknown mode {mode}"))
    };
    let before = max_rss_kib();
    let o = run_mode(m, Path::new(path));
    println!(
        "{} {} {} {} {}",
        o.frames,
        o.secs,
        before,
        max_rss_kib(),
        o.cpu
    );
}

fn rss_of(mode: Mode, path: &Path) -> Option<(u64, u64)> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe)
        .arg("--child")
        .arg(mode.name())
        .arg(path)
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let v: Vec<&str> = s.split_whitespace().collect();
    Some((v.get(2)?.parse().ok()?, v.get(3)?.parse().ok()?))
}

/// CPU time (user + system) of all waited-for children so far, in seconds.
fn children_cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

/// Times an external tool `reps` times (median wall and CPU seconds), or says why not.
fn time_external(tool: &str, args: &[&str], reps: usize) -> Result<(f64, f64), String> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        return Err(format!("{tool} not installed, skipped"));
    }
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..reps {
        let c0 = children_cpu_secs();
        let t0 = Instant::now();
        let st = Command::new(tool)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("{tool}: {e}"))?;
        let dt = t0.elapsed().as_secs_f64();
        if !st.success() {
            return Err(format!("{tool} exited with {st}, skipped"));
        }
        times.push(dt);
        cpu.push(children_cpu_secs() - c0);
    }
    Ok((median(&mut times), median(&mut cpu)))
}

/// `cargo test --all-targets` runs this binary without `--bench`: check every mode on a
/// small capture instead of running the benchmark.
fn smoke() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/smoke-20k.pcap");
    if let Err(e) = ensure_bench_pcap(&path, 20_000, 500, BENCH_SEED) {
        die(format!("cannot write {}: {e}", path.display()));
    }
    for m in Mode::ALL {
        let o = run_mode(m, &path);
        if o.frames != 20_000 {
            die(format!("smoke {}: read {} frames", m.name(), o.frames));
        }
    }
    println!(
        "replay bench smoke test: every mode read 20,000 frames (run `cargo bench` to measure)"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let (Some(m), Some(p)) = (args.get(i + 1), args.get(i + 2)) else {
            die("--child MODE PATH".into())
        };
        child(m, p);
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        smoke();
        return;
    }
    let reps: usize = std::env::var("FLOWSENTRY_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let cpu = match std::env::var("FLOWSENTRY_BENCH_CPU").as_deref() {
        Ok("none") => None,
        Ok(s) => s.parse().ok(),
        Err(_) => Some(1),
    };

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    let path = dir.join("bench-2m.pcap");
    let t0 = Instant::now();
    match ensure_bench_pcap(&path, BENCH_FRAMES, BENCH_FLOWS, BENCH_SEED) {
        Ok(true) => println!(
            "generated {} in {:.1} s",
            path.display(),
            t0.elapsed().as_secs_f64()
        ),
        Ok(false) => {}
        Err(e) => die(format!("cannot write {}: {e}", path.display())),
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let machine = cpu_model();
    let pinned = pin(cpu);
    println!("flowsentry replay benchmark");
    println!(
        "  file     {} ({} frames, {} flows, seed {:#x}, {:.1} MB)",
        path.display(),
        BENCH_FRAMES,
        BENCH_FLOWS,
        BENCH_SEED,
        size as f64 / 1e6
    );
    println!("  machine  {machine}");
    println!(
        "  method   {reps} repetitions per mode (interleaved), median; {pinned}; load avg at start {}",
        loadavg()
    );

    // Warm the page cache and the code once.
    for m in Mode::ALL {
        black_box(run_mode(m, &path));
    }
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); Mode::ALL.len()];
    let mut cpu_t: Vec<Vec<f64>> = vec![Vec::new(); Mode::ALL.len()];
    let mut last: Vec<RunOut> = vec![RunOut::default(); Mode::ALL.len()];
    for _ in 0..reps {
        for (i, m) in Mode::ALL.into_iter().enumerate() {
            let o = run_mode(m, &path);
            if o.frames != BENCH_FRAMES {
                die(format!("{}: read {} frames", m.name(), o.frames));
            }
            wall[i].push(o.secs);
            cpu_t[i].push(o.cpu);
            last[i] = o;
        }
    }
    let rss: Vec<Option<(u64, u64)>> = Mode::ALL.iter().map(|&m| rss_of(m, &path)).collect();

    let frames = BENCH_FRAMES as f64;
    let wall_med: Vec<f64> = wall.iter_mut().map(|t| median(t)).collect();
    let cpu_med: Vec<f64> = cpu_t.iter_mut().map(|t| median(t)).collect();
    let mpps: Vec<f64> = wall_med.iter().map(|s| frames / s / 1e6).collect();
    let mpps_cpu: Vec<f64> = cpu_med.iter().map(|s| frames / s / 1e6).collect();
    println!();
    println!(
        "  {:<34} {:>8} {:>7} {:>7} {:>8} {:>7} {:>7} {:>13} {:>8}",
        "mode", "wall s", "Mpps", "vs (a)", "CPU s", "Mpps", "vs (a)", "wall min-max", "RSS MiB"
    );
    for (i, m) in Mode::ALL.into_iter().enumerate() {
        let t = &wall[i];
        let rss_s = rss[i]
            .map(|(_, a)| format!("{:.1}", a as f64 / 1024.0))
            .unwrap_or_else(|| "?".into());
        println!(
            "  {:<34} {:>8.3} {:>7.2} {:>6.0}% {:>8.3} {:>7.2} {:>6.0}% {:>6.3}-{:<6.3} {:>8}",
            m.label(),
            wall_med[i],
            mpps[i],
            100.0 * mpps[i] / mpps[0],
            cpu_med[i],
            mpps_cpu[i],
            100.0 * mpps_cpu[i] / mpps_cpu[0],
            t[0],
            t[t.len() - 1],
            rss_s
        );
    }
    println!(
        "  (Mpps = 2,000,000 frames / median seconds; CPU = user + system time of the process)"
    );
    let d = last[3];
    let slot = flowsentry::flow::FlowTable::slot_bytes();
    let per_flow = d.table_bytes as f64 / d.peak_flows.max(1) as f64;
    println!();
    println!(
        "  flow table at peak: {} active flows, {:.2} MiB of table state = {:.0} bytes/flow (slot {} bytes)",
        d.peak_flows,
        d.table_bytes as f64 / 1048576.0,
        per_flow,
        slot
    );
    println!(
        "  (d) heap allocation calls in one whole run: {} = {:.5} per frame; {} flow records",
        d.allocs,
        d.allocs as f64 / BENCH_FRAMES as f64,
        d.records
    );
    if let Some((b, _)) = rss[0] {
        println!(
            "  RSS of the bench process before reading (per child): {:.1} MiB",
            b as f64 / 1024.0
        );
    }

    let ext = std::env::var("FLOWSENTRY_BENCH_EXTERNAL").as_deref() != Ok("0");
    let p = path.to_string_lossy().to_string();
    let (d_secs, e_secs) = (wall_med[3], wall_med[5]);
    if ext {
        println!();
        let ext_reps = reps.min(3);
        for (tool, args) in [
            ("argus", vec!["-r", p.as_str(), "-w", "/dev/null"]),
            ("softflowd", vec!["-r", p.as_str(), "-n", "127.0.0.1:9"]),
        ] {
            match time_external(tool, &args, ext_reps) {
                Ok((s, c)) => println!(
                    "  {tool:<10} wall {s:.3} s = {:.2} Mpps, CPU {c:.3} s = {:.2} Mpps (median of {ext_reps}); flowsentry is faster by (d) {:.1}x / (e) {:.1}x wall, (d) {:.1}x / (e) {:.1}x CPU",
                    frames / s / 1e6,
                    frames / c / 1e6,
                    s / d_secs,
                    s / e_secs,
                    c / cpu_med[3],
                    c / cpu_med[5]
                ),
                Err(note) => println!("  {note}"),
            }
        }
    }

    println!();
    let ok = |w: bool, c: bool| match (w, c) {
        (true, true) => "met",
        (false, true) => "met on CPU time, MISSED on wall time",
        (true, false) => "met on wall time, MISSED on CPU time",
        (false, false) => "MISSED",
    };
    println!(
        "  target (d) >= 50% of (a):            wall {:.0}%, CPU {:.0}% -> {}",
        100.0 * mpps[3] / mpps[0],
        100.0 * mpps_cpu[3] / mpps_cpu[0],
        ok(mpps[3] >= 0.5 * mpps[0], mpps_cpu[3] >= 0.5 * mpps_cpu[0])
    );
    println!(
        "  target (d) >= 5.0 Mpps on one core:  wall {:.2}, CPU {:.2} Mpps -> {}",
        mpps[3],
        mpps_cpu[3],
        ok(mpps[3] >= 5.0, mpps_cpu[3] >= 5.0)
    );
    println!(
        "  target < 200 bytes state per flow:   {:.0} bytes -> {}",
        per_flow,
        ok(per_flow < 200.0, per_flow < 200.0)
    );
    println!(
        "  no per-packet heap allocation:       {} allocation calls in a whole (d) run ({} flow records); proof in tests/alloc_steady_state.rs",
        d.allocs, d.records
    );
    println!("  load avg at end {}", loadavg());
}
