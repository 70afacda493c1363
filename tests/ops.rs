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

/// `flowsentry config check FILE`.
fn config_check(file: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["config", "check"])
        .arg(file)
        .output()
        .expect("run")
}

#[test]
fn example_config_validates_and_unknown_keys_are_named() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example =
        std::fs::read_to_string(root.join("docs/flowsentry.example.toml")).expect("example");
    // `config check` also looks up the user and loads the model and inventory the file
    // names: point them at what exists here.
    let model = root.join("models/default.fsm");
    let inventory = root.join("fixtures/pcaps/fixture-modbus-write.inventory.toml");
    let here = example
        .replace("\"/var/lib/flowsentry/site.fsm\"", &format!("{:?}", model))
        .replace(
            "\"/etc/flowsentry/inventory.toml\"",
            &format!("{:?}", inventory),
        )
        .replace("user = \"flowsentry\"", "user = \"nobody\"");
    assert_ne!(here, example, "the example's paths and user were not found");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("example.toml");
    std::fs::write(&cfg, &here).expect("write");
    let out = config_check(&cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What `live` would refuse at start is refused here too, naming the key.
    let truncated = dir.path().join("truncated.fsm");
    let bytes = std::fs::read(&model).expect("model");
    std::fs::write(&truncated, &bytes[..1000]).expect("write");
    for (body, key) in [
        (
            "[sensor]\nuser = \"no-such-user-fs\"\n".to_string(),
            "sensor.user",
        ),
        (
            "[capture]\nbpf = \"tcp port ((\"\n".to_string(),
            "capture.bpf",
        ),
        (
            "[capture]\ninterface = \"any\"\nbpf = \"ether broadcast\"\n".to_string(),
            "capture.bpf",
        ),
        (
            "[detect]\nmodel = \"/no/such.fsm\"\n".to_string(),
            "detect.model",
        ),
        (
            format!("[detect]\nmodel = {:?}\n", truncated),
            "detect.model",
        ),
        (
            "[detect]\ninventory = \"/no/such.toml\"\n".to_string(),
            "detect.inventory",
        ),
        (
            "[pipeline]\nworkers = 100000\n".to_string(),
            "pipeline.workers",
        ),
        (
            "[capture]\nsnaplen = 1000000\n".to_string(),
            "capture.snaplen",
        ),
    ] {
        std::fs::write(&cfg, &body).expect("write");
        let out = config_check(&cfg);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}: {err}");
        assert!(err.contains(key), "{body}: {err}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[capture]\nsnaplen = 1518\npromiscuous = true\n").expect("write");
    let out = config_check(&bad);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("promiscuous") && err.contains("bad.toml"),
        "{err}"
    );
    std::fs::write(&bad, "[flow]\nmax_flows = 0\n").expect("write");
    let out = config_check(&bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flow.max_flows"));
}

/// `[detect]` covers `--model`, `--inventory`, `--alerts-only`, `--no-detect` and
/// `--fail-on`; flags win over it.
#[test]
fn detect_section_of_the_config_file_drives_detection() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pcap = root.join("fixtures/pcaps/fixture-modbus-write.pcap");
    let inventory = root.join("fixtures/pcaps/fixture-modbus-write.inventory.toml");
    let model = root.join("models/default.fsm");
    let dir = tempfile::tempdir().expect("tempdir");
    let write_cfg = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).expect("write config");
        p
    };
    let run = |cfg: &Path, extra: &[&str]| {
        Command::new(BIN)
            .args(["replay", "--no-progress", "--config"])
            .arg(cfg)
            .args(extra)
            .arg(&pcap)
            .output()
            .expect("run")
    };
    let types = |out: &std::process::Output| -> Vec<String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["event_type"].as_str().map(str::to_string))
            .collect()
    };
    let cfg = write_cfg(
        "detect.toml",
        &format!(
            "[detect]\nmodel = {:?}\ninventory = {:?}\nalerts_only = true\nfail_on = \"anomaly\"\n",
            model.display().to_string(),
            inventory.display().to_string()
        ),
    );
    let out = run(&cfg, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "fail_on from the file: {err}");
    let t = types(&out);
    assert!(t.iter().any(|e| e == "anomaly"), "{t:?}");
    assert!(
        !t.iter().any(|e| e == "flow"),
        "alerts_only from the file: {t:?}"
    );
    // The inventory from the file names the PLC in the summary.
    assert!(err.contains("plc"), "{err}");

    let off = write_cfg("off.toml", "[detect]\nno_detect = true\n");
    let out = run(&off, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!types(&out).iter().any(|e| e == "anomaly"));
    // A flag that turns detection on wins over the file's no_detect.
    let out = run(&off, &["--fail-on", "anomaly"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = write_cfg("bad.toml", "[detect]\nfail_on = \"flows\"\n");
    let out = run(&bad, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("detect.fail_on"));
    let out = config_check(&bad);
    assert_eq!(out.status.code(), Some(2));
}

/// A `file:` sink whose file ends in an incomplete line (an earlier run stopped on a full
/// disk) gets a newline first and an `error` event says so; the final `stats` counts that
/// event too (a review found it one short).
#[test]
fn a_torn_sink_file_is_repaired_reported_and_counted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pcap = root.join("fixtures/pcaps/fixture-arp-spoof.pcap");
    let dir = tempfile::tempdir().expect("tempdir");
    let torn = dir.path().join("torn.jsonl");
    std::fs::write(&torn, "{\"n\":1}\n{\"n\":2,\"cut").expect("write");
    let main = dir.path().join("main.jsonl");
    let out = Command::new(BIN)
        .args(["replay", "--no-progress", "--out"])
        .arg(&main)
        .arg("--sink")
        .arg(format!("file:{}", torn.display()))
        .arg(&pcap)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("incomplete line"), "stderr: {err}");
    let text = std::fs::read_to_string(&main).expect("main output");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let last = lines.last().expect("events");
    assert_eq!(last["event_type"], "stats");
    assert_eq!(
        last["stats"]["events"],
        lines.len() as u64 - 1,
        "events before stats"
    );
    assert!(
        lines.iter().any(|e| e["event_type"] == "error"
            && e["error"]
                .as_str()
                .is_some_and(|m| m.contains("incomplete line"))),
        "no error event about the torn file"
    );
    let sink = std::fs::read_to_string(&torn).expect("sink file");
    assert!(
        sink.starts_with("{\"n\":1}\n{\"n\":2,\"cut\n{"),
        "{}",
        &sink[..60]
    );
}

/// A run stopped by an output error records the last `seq` it handed out, so the next run
/// continues after it rather than after the whole reserved block (65,536 numbers).
#[test]
fn an_output_error_records_the_last_seq() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pcap = root.join("fixtures/pcaps/fixture-arp-spoof.pcap");
    let dir = tempfile::tempdir().expect("tempdir");
    let seq = dir.path().join("s.seq");
    let out = Command::new(BIN)
        .args([
            "replay",
            "--no-progress",
            "--out",
            "/dev/full",
            "--seq-file",
        ])
        .arg(&seq)
        .arg(&pcap)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left"), "{err}");
    let last: u64 = std::fs::read_to_string(&seq)
        .expect("seq file")
        .trim()
        .parse()
        .expect("a number");
    assert!(
        (1..1000).contains(&last),
        "the seq file holds {last}, not the last seq handed out"
    );
}
