//! Operational behaviour: a full disk or unwritable output is a clear error with the count
//! of events that reached the output, the shipped example config validates, and a config
//! with an unknown key is refused naming the key.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_flowsentry");

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/pcaps")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn full_disk_is_a_clear_error() {
    if !Path::new("/dev/full").exists() {
        eprintln!("note: /dev/full missing; skipped");
        return;
    }
    let out = Command::new(BIN)
        .args(["replay", "--no-progress", "--out", "/dev/full"])
        .arg(fixture("fixture-benign-hub.pcap"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/dev/full") && err.contains("No space left"),
        "{err}"
    );
    assert!(err.contains("confirmed written"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unwritable_output_path_is_named() {
    let out = Command::new(BIN)
        .args([
            "replay",
            "--no-progress",
            "--out",
            "/nonexistent-dir/x/events.jsonl",
        ])
        .arg(fixture("fixture-benign-plc.pcap"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent-dir/x/events.jsonl") && err.contains("cannot open output"),
        "{err}"
    );
}

#[test]
fn example_config_validates_and_unknown_keys_are_named() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/flowsentry.example.toml");
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&example)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[capture]\nsnaplen = 1518\npromiscuous = true\n").expect("write");
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("promiscuous") && err.contains("bad.toml"),
        "{err}"
    );
    std::fs::write(&bad, "[flow]\nmax_flows = 0\n").expect("write");
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flow.max_flows"));
}
