//! Determinism of `flowsentry simulate`: the same seed gives byte-identical files, a
//! different seed gives different ones, and the committed fixtures equal a fresh
//! regeneration.

use flowsentry::sim::{generate, scenario, SimulateArgs};
use std::path::{Path, PathBuf};

const FILES: [&str; 4] = [
    "capture.pcap",
    "labels.jsonl",
    "episodes.jsonl",
    "inventory.toml",
];

/// Seed used for every committed fixture (must match scripts/make-fixtures.sh).
const FIXTURE_SEED: u64 = 1;

fn args(scenario: &str, seed: u64, out: &Path) -> SimulateArgs {
    SimulateArgs {
        scenario: scenario.to_string(),
        seed,
        out: out.to_path_buf(),
        duration: None,
        devices: None,
        summary: false,
        packets: None,
        video_kbps: None,
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

fn run(scenario: &str, seed: u64, dir: &Path) {
    if let Err(e) = generate(&args(scenario, seed, dir)) {
        panic!("simulate {scenario} seed {seed} failed: {e}");
    }
}

#[test]
fn same_seed_is_byte_identical_and_different_seed_differs() {
    for name in ["fixture-mirai", "fixture-benign-hub", "fixture-arp-spoof"] {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let c = tempfile::tempdir().expect("tempdir");
        run(name, 7, a.path());
        run(name, 7, b.path());
        run(name, 8, c.path());
        for f in FILES {
            let fa = read(&a.path().join(f));
            assert_eq!(
                fa,
                read(&b.path().join(f)),
                "{name}: {f} differs between two runs with seed 7"
            );
            if f == "capture.pcap" || f == "labels.jsonl" {
                assert_ne!(
                    fa,
                    read(&c.path().join(f)),
                    "{name}: {f} identical for seeds 7 and 8"
                );
            }
        }
    }
}

#[test]
fn evaluation_hour_is_deterministic() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    for d in [a.path(), b.path()] {
        let mut x = args("evaluation", 3, d);
        x.duration = Some("1h".into());
        x.devices = Some(1);
        generate(&x).unwrap_or_else(|e| panic!("evaluation 1h failed: {e}"));
    }
    for f in FILES {
        assert_eq!(
            read(&a.path().join(f)),
            read(&b.path().join(f)),
            "evaluation: {f} differs"
        );
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pcaps")
}

#[test]
fn committed_fixtures_match_regeneration() {
    let dir = fixtures_dir();
    let mut checked = 0;
    for name in scenario::fixture_names() {
        let pcap = dir.join(format!("{name}.pcap"));
        if !pcap.exists() {
            panic!(
                "committed fixture {} is missing (run `make fixtures`)",
                pcap.display()
            );
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        run(name, FIXTURE_SEED, tmp.path());
        let pairs = [
            ("capture.pcap", format!("{name}.pcap")),
            ("labels.jsonl", format!("{name}.labels.jsonl")),
            ("episodes.jsonl", format!("{name}.episodes.jsonl")),
            ("inventory.toml", format!("{name}.inventory.toml")),
        ];
        for (fresh, committed) in pairs {
            assert!(
                read(&tmp.path().join(fresh)) == read(&dir.join(&committed)),
                "fixtures/pcaps/{committed} differs from a fresh `simulate --scenario {name} --seed {FIXTURE_SEED}`; run `make fixtures`"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 12);
}

#[test]
fn labels_are_well_formed_and_ordered() {
    let tmp = tempfile::tempdir().expect("tempdir");
    run("fixture-floods", 1, tmp.path());
    let text = String::from_utf8(read(&tmp.path().join("labels.jsonl"))).expect("utf8");
    let mut last = 0u64;
    let mut attacks = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        let keys: Vec<&str> = v
            .as_object()
            .map(|o| o.keys().map(|k| k.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(keys.len(), 13, "{line}");
        let start = v["start_us"].as_u64().expect("start_us");
        assert!(start >= last, "labels not ordered by start");
        assert!(v["end_us"].as_u64().expect("end_us") >= start);
        last = start;
        if v["label"] != "benign" {
            attacks += 1;
            assert!(v["episode_id"].is_u64());
        } else {
            assert!(v["episode_id"].is_null());
        }
    }
    assert!(attacks > 100);
    let eps = String::from_utf8(read(&tmp.path().join("episodes.jsonl"))).expect("utf8");
    assert_eq!(eps.lines().count(), 4);
}
