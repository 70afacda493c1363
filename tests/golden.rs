//! Golden JSON: the flow and stats events of every committed fixture are byte-stable
//! across runs and worker counts, and equal the committed golden files (wall-clock stats
//! fields removed). Small fixtures are stored whole under `tests/golden/`; the large scan
//! and flood fixtures as a SHA-1 digest in `tests/golden/digests.txt`.
//!
//! Every event carries `"sensor_id":"golden"` (fixed here so the files do not depend on the
//! host name) and its `seq`. The first test runs with detection off (`--no-detect`): the
//! engine's output; the second pins the detection events (`--alerts-only` with the
//! fixture's inventory and the built-in model) under `tests/golden/alerts/`.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test --test golden`
//! and review the diff.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Fixtures stored only as digests (their outputs are megabytes of one-packet flows).
const DIGEST_ONLY: [&str; 4] = [
    "fixture-floods",
    "fixture-mirai",
    "fixture-portscan",
    "fixture-dns-tunnel",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn normalised(pcap: &Path, workers: &str) -> String {
    run_normalised(pcap, workers, &["--no-detect"])
}

/// The detection events (`--alerts-only`, the fixture's inventory, the built-in model).
fn normalised_alerts(pcap: &Path, workers: &str) -> String {
    let inv = pcap.with_extension("inventory.toml");
    let inv = inv.to_string_lossy().into_owned();
    run_normalised(pcap, workers, &["--alerts-only", "--inventory", &inv])
}

fn run_normalised(pcap: &Path, workers: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flowsentry"))
        .args([
            "replay",
            "--no-progress",
            "--sensor-id",
            "golden",
            "--workers",
            workers,
        ])
        .args(extra)
        .arg(pcap)
        .output()
        .expect("run flowsentry");
    assert!(out.status.success(), "{}: replay failed", pcap.display());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut s = String::with_capacity(text.len());
    for line in text.lines() {
        if line.contains("\"event_type\":\"stats\"") {
            let mut v: serde_json::Value = serde_json::from_str(line).expect("stats json");
            if let Some(st) = v.get_mut("stats").and_then(|x| x.as_object_mut()) {
                st.remove("wall_time_s");
                st.remove("packets_per_sec");
                if let Some(f) = st.get_mut("flows").and_then(|f| f.as_object_mut()) {
                    f.remove("peak_active");
                }
                // Input paths depend on where the checkout lives.
                st.remove("inputs");
            }
            s.push_str(&v.to_string());
        } else {
            s.push_str(line);
        }
        s.push('\n');
    }
    s
}

fn digest(s: &str) -> String {
    format!("{:x}", <sha1::Sha1 as sha1::Digest>::digest(s.as_bytes()))
}

#[test]
fn fixture_outputs_equal_golden_files() {
    check_goldens(&root().join("tests/golden"), normalised);
}

/// The anomaly, incident and stats events of every fixture with the shipped default model
/// and the fixture's inventory: the detection output format and the default model's
/// verdicts, pinned (regenerate after retraining the model with `UPDATE_GOLDEN=1`).
#[test]
fn fixture_alerts_equal_golden_files() {
    check_goldens(&root().join("tests/golden/alerts"), normalised_alerts);
}

fn check_goldens(gdir: &Path, run: fn(&Path, &str) -> String) {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    if update {
        std::fs::create_dir_all(gdir).expect("golden dir");
    }
    let digests_path = gdir.join("digests.txt");
    let mut digests: BTreeMap<String, String> = std::fs::read_to_string(&digests_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    let pcaps = common::fixture_pcaps();
    for pcap in pcaps {
        let name = pcap
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let a = run(&pcap, "0");
        let b = run(&pcap, "0");
        assert_eq!(a, b, "{name}: output differs between two runs");
        let c = run(&pcap, "2");
        assert_eq!(a, c, "{name}: output differs between 0 and 2 workers");
        if DIGEST_ONLY.contains(&name.as_str()) {
            let d = digest(&a);
            if update {
                digests.insert(name.clone(), d);
            } else {
                let want = digests
                    .get(&name)
                    .unwrap_or_else(|| panic!("{name}: no digest in {}", digests_path.display()));
                assert_eq!(
                    &d, want,
                    "{name}: output digest changed (UPDATE_GOLDEN=1 to accept)"
                );
            }
        } else {
            let g = gdir.join(format!("{name}.jsonl"));
            if update {
                std::fs::write(&g, &a).expect("write golden");
            } else {
                let want = std::fs::read_to_string(&g).unwrap_or_else(|e| {
                    panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", g.display())
                });
                for (i, (x, y)) in a.lines().zip(want.lines()).enumerate() {
                    assert_eq!(x, y, "{name}: line {} differs from {}", i + 1, g.display());
                }
                assert_eq!(
                    a.lines().count(),
                    want.lines().count(),
                    "{name}: line count differs"
                );
            }
        }
    }
    if update {
        let text: String = digests.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        std::fs::write(&digests_path, text).expect("write digests");
    }
}
