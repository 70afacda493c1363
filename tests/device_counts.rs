//! `stats.detection.devices` counts each monitored device once, under its latest class
//! source: a device is first seen as `unknown` (inference needs 30 flows over 600 s of
//! its traffic) and moves to `inferred` once the inference has decided. Before, it stayed
//! counted as `unknown`, so `inferred` never appeared.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_flowsentry");

/// `stats.detection.devices` of the final stats event of `replay ARGS`.
fn devices(args: &[&str]) -> serde_json::Map<String, serde_json::Value> {
    let out = Command::new(BIN)
        .args(["replay", "--no-progress", "--alerts-only"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run flowsentry replay: {e}"));
    assert!(out.status.success(), "replay {args:?} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let stats = text
        .lines()
        .rev()
        .find(|l| l.contains("\"event_type\":\"stats\""))
        .unwrap_or_else(|| panic!("replay {args:?}: no stats event"));
    let v: serde_json::Value =
        serde_json::from_str(stats).unwrap_or_else(|e| panic!("stats is not JSON: {e}"));
    v["stats"]["detection"]["devices"]
        .as_object()
        .cloned()
        .unwrap_or_else(|| panic!("replay {args:?}: no stats.detection.devices in {v}"))
}

#[test]
fn an_inferred_device_is_counted_as_inferred_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let out = Command::new(BIN)
        .args([
            "simulate",
            "--scenario",
            "fixture-benign-plug",
            "--duration",
            "30m",
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run flowsentry simulate: {e}"));
    assert!(out.status.success(), "simulate failed");
    let pcap = dir.path().join("capture.pcap");
    let pcap = pcap.to_string_lossy();
    let n = |m: &serde_json::Map<String, serde_json::Value>, k: &str| {
        m.get(k).and_then(|v| v.as_u64()).unwrap_or(0)
    };

    // Without the inventory: the plug is inferred after its first half hour's flows; the
    // other addresses (gateway, servers) stay unknown.
    let inferred = devices(&[&pcap]);
    assert!(
        n(&inferred, "inferred") >= 1,
        "no inferred device: {inferred:?}"
    );
    let total: u64 = inferred.values().filter_map(|v| v.as_u64()).sum();

    // With it: the same addresses, the plug from the inventory.
    let inv = dir.path().join("inventory.toml");
    let listed = devices(&["--inventory", &inv.to_string_lossy(), &pcap]);
    assert_eq!(n(&listed, "inferred"), 0, "{listed:?}");
    assert!(n(&listed, "inventory") >= 1, "{listed:?}");
    let total_listed: u64 = listed.values().filter_map(|v| v.as_u64()).sum();
    assert_eq!(
        total, total_listed,
        "each device once: {inferred:?} vs {listed:?}"
    );
}
