//! Helpers shared by the integration tests that run the `flowsentry` binary over the shared
//! capture set (`../shared/pcaps`, see its MANIFEST.md) and compare with tshark.
//!
//! Missing prerequisites (the capture folder, tshark) fail the test loudly under `CI=true`
//! and otherwise print a note and let the test pass.

#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The shared capture folder, beside the checkout.
pub const PCAPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/pcaps");

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_flowsentry");

/// Timeouts so large that no flow ends before the end of its input, and a linger so long
/// that a TCP flow ended by FIN/RST stays until a new SYN reuses its 5-tuple or the input
/// ends. With these, one flow event is one (VLAN, tunnel, 5-tuple, port-reuse generation).
pub const NO_TIMEOUTS: [&str; 12] = [
    "--tcp-idle",
    "1e8",
    "--tcp-syn-idle",
    "1e8",
    "--udp-idle",
    "1e8",
    "--other-idle",
    "1e8",
    "--active-timeout",
    "0",
    "--tcp-linger",
    "1e8",
];

/// The project's fixture captures (`fixtures/pcaps/*.pcap`), sorted; fails when fewer
/// than the 12 committed ones are there.
pub fn fixture_pcaps() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pcaps");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    v.sort();
    assert!(
        v.len() >= 12,
        "expected the 12 fixture captures in {}, found {}",
        dir.display(),
        v.len()
    );
    v
}

/// True when running in CI (`CI=true`), where missing prerequisites are failures.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports a missing prerequisite: panics under CI, prints a note otherwise.
pub fn missing(what: &str) {
    if in_ci() {
        panic!("{what} (required under CI=true)");
    }
    eprintln!("note: skipping: {what}");
}

/// The shared capture folder, or `None` (after a note) when it is absent outside CI.
pub fn pcaps_root() -> Option<PathBuf> {
    let root = PathBuf::from(PCAPS);
    if root.join("MANIFEST.md").is_file() {
        Some(root)
    } else {
        missing(&format!(
            "shared capture folder {} (with MANIFEST.md) is missing",
            root.display()
        ));
        None
    }
}

/// Whether `tshark` runs; notes/panics via [`missing`] when not.
pub fn tshark_available() -> bool {
    let ok = Command::new("tshark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        missing("tshark is not installed (apt-get install tshark)");
    }
    ok
}

/// The shared capture folder when tshark is installed too; `None` (after [`missing`]'s
/// note, or its failure under CI) when either is not.
pub fn pcaps_root_with_tshark() -> Option<PathBuf> {
    let root = pcaps_root()?;
    tshark_available().then_some(root)
}

/// Runs `tshark -r FILE ARGS...` and returns its standard output; panics naming the file
/// when tshark cannot start or exits non-zero (with its stderr).
pub fn tshark(file: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: cannot run tshark: {e}", file.display()));
    assert!(
        out.status.success(),
        "{}: tshark failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every capture file under `root`, recursively, sorted (everything but `.md`/`.txt`).
pub fn capture_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let rd =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for ent in rd {
            let p = ent
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path();
            if p.is_dir() {
                walk(&p, out);
            } else if !matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("md") | Some("txt")
            ) {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(root, &mut v);
    v.sort();
    assert!(
        !v.is_empty(),
        "no capture files found under {}",
        root.display()
    );
    v
}

/// `path` relative to the capture folder, for messages.
pub fn rel(path: &Path) -> String {
    path.strip_prefix(PCAPS)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Runs the binary with `args`, feeding `stdin` (if any); never panics on exit status.
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("child stdin is piped");
        let data = data.to_vec();
        std::thread::spawn(move || {
            // The child may stop reading early (e.g. a corrupt input); ignore EPIPE.
            let _ = pipe.write_all(&data);
        })
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {BIN}: {e}"));
    if let Some(w) = writer {
        w.join().expect("stdin writer thread");
    }
    out
}

/// `flowsentry replay` over one file with extra args (`--no-progress` is always added).
pub fn replay(file: &Path, extra: &[&str]) -> Output {
    let f = file.to_str().expect("capture path is UTF-8");
    let mut args = vec!["replay", f, "--no-progress"];
    args.extend_from_slice(extra);
    run(&args, None)
}

/// Exit code, or a panic message naming `what` when the process died from a signal.
pub fn exit_code(out: &Output, what: &str) -> i32 {
    match out.status.code() {
        Some(c) => c,
        None => panic!(
            "{what}: killed by a signal ({:?}); stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Parses JSON Lines, panicking with `what` and the line number on invalid JSON.
pub fn parse_lines(stdout: &[u8], what: &str) -> Vec<Value> {
    let text =
        std::str::from_utf8(stdout).unwrap_or_else(|e| panic!("{what}: output is not UTF-8: {e}"));
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{what}: line {} is not JSON ({e}): {l}", i + 1))
        })
        .collect()
}

/// The `stats` object of the last line; panics when the last line is not a stats event.
pub fn stats_of<'a>(events: &'a [Value], what: &str) -> &'a Value {
    let last = events
        .last()
        .unwrap_or_else(|| panic!("{what}: no output at all"));
    assert_eq!(
        last["event_type"], "stats",
        "{what}: last line is not a stats event: {last}"
    );
    &last["stats"]
}

/// Runs `f` over `items` on `threads` worker threads; results keep the input order.
pub fn par_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                results.lock().expect("results lock")[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .expect("results lock")
        .into_iter()
        .map(|r| r.expect("every item was processed"))
        .collect()
}

/// Worker threads for file-parallel tests: the external tools mostly wait on I/O and
/// process start-up, so a few more than the cores.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) + 2
}

/// A JSON event line without its trailing `"seq":N` field, for comparing the same events
/// of two runs whose event numbering differs (e.g. a BPF-filtered run writes fewer events).
pub fn without_seq(line: &str) -> String {
    match line.rfind(",\"seq\":") {
        Some(i) if line.ends_with('}') => format!("{}}}", &line[..i]),
        _ => line.to_string(),
    }
}

/// The flow records of a capture in output order, from the library's replay (no events
/// written). A damaged capture still gives the records before the damage; only an output
/// failure, which a sink that discards cannot have, would panic.
pub fn flow_records(pcap: &Path) -> Vec<flowsentry::flow::FlowRecord> {
    let opts = flowsentry::pipeline::ReplayOptions {
        inputs: vec![flowsentry::capture::Input::File(pcap.to_path_buf())],
        ..Default::default()
    };
    let mut out = flowsentry::output::Output::flows_only(flowsentry::event::EventWriter::new(
        Box::new(std::io::sink()),
        "null",
    ));
    out.emit_flows = false;
    out.collected = Some(Vec::new());
    flowsentry::pipeline::replay(&opts, &mut out).expect("replay");
    out.collected.take().unwrap_or_default()
}
