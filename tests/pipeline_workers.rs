//! The threaded pipeline writes byte-identical flow events (and identical stats apart from
//! wall-clock fields and the per-shard peak) for 0 (inline), 1, 2 and 4 workers, on real captures.

use std::path::{Path, PathBuf};
use std::process::Command;

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
    if p.is_dir() {
        Some(p)
    } else if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "CI=true but the shared captures folder {} is missing",
            p.display()
        );
    } else {
        eprintln!("note: {} missing; skipping", p.display());
        None
    }
}

/// Output lines with the wall-clock stats fields removed.
fn run(file: &Path, workers: usize) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_flowsentry"))
        .args(["replay", "--no-progress", "--workers", &workers.to_string()])
        .arg(file)
        .output()
        .expect("run flowsentry");
    assert!(
        out.status.code().is_some(),
        "{}: flowsentry died from a signal",
        file.display()
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    text.lines()
        .map(|l| {
            if l.contains("\"event_type\":\"stats\"") {
                let mut v: serde_json::Value = serde_json::from_str(l).expect("stats json");
                if let Some(s) = v.get_mut("stats").and_then(|s| s.as_object_mut()) {
                    s.remove("wall_time_s");
                    s.remove("packets_per_sec");
                    // Sum of per-shard peaks: deterministic for a given worker count, but
                    // a resource figure that depends on the sharding (docs/events.md).
                    if let Some(f) = s.get_mut("flows").and_then(|f| f.as_object_mut()) {
                        f.remove("peak_active");
                    }
                }
                v.to_string()
            } else {
                l.to_string()
            }
        })
        .collect()
}

#[test]
fn output_identical_for_any_worker_count() {
    let Some(dir) = shared() else { return };
    let files = [
        "benign/tls2.pcap",
        "benign/many-protocols.pcap",
        "benign/example.pcap",
        "attacks/flood/pkt.TCP.synflood.spoofed.pcap",
        "attacks/scan/ps-udp.pcap",
        "robustness/ipv6-frag/ip6_fragments.pcap",
        "robustness/timing/dnp3-too-long-reassembly-request__input.pcap",
        "iot/modbus",
        // Packet times past 2262 saturate at i64::MAX ns, the merge's "source ended"
        // watermark: records were once let out in arrival order (varied from run to run
        // with 2 and 4 workers), so this file is run several times below.
        "robustness/formats/pcapng-example.pcapng",
    ];
    for rel in files {
        let p = dir.join(rel);
        let list: Vec<PathBuf> = if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&p)
                .expect("read dir")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            v.sort();
            v
        } else {
            vec![p]
        };
        for f in list {
            assert!(f.exists(), "missing shared capture {}", f.display());
            let base = run(&f, 0);
            assert!(base.len() > 1, "{}: no flow events", f.display());
            let rounds = if f.ends_with("pcapng-example.pcapng") {
                5
            } else {
                1
            };
            for w in (0..rounds).flat_map(|_| [1, 2, 4]) {
                let other = run(&f, w);
                assert_eq!(
                    base.len(),
                    other.len(),
                    "{}: {} workers: line count differs",
                    f.display(),
                    w
                );
                for (i, (a, b)) in base.iter().zip(other.iter()).enumerate() {
                    assert_eq!(
                        a,
                        b,
                        "{}: {} workers: line {} differs",
                        f.display(),
                        w,
                        i + 1
                    );
                }
            }
        }
    }
}
