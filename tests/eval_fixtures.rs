//! `flowsentry eval` on the committed fixtures with the shipped default model: every
//! attack episode a fixture holds is detected (the listed exceptions are the known
//! limitations of docs/evaluation.md), the benign fixtures raise no alert and no incident, and the
//! report's figures are consistent with the labels it read.

use std::path::Path;
use std::process::Command;

/// The report of fixture `name` in the product mode and the baseline.
fn eval(name: &str) -> serde_json::Value {
    eval_modes(name, "per-class,global")
}

/// `flowsentry eval --json` of fixture `name` in `modes` (comma-separated).
fn eval_modes(name: &str, modes: &str) -> serde_json::Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pcaps");
    let pcap = dir.join(format!("{name}.pcap"));
    let labels = dir.join(format!("{name}.labels.jsonl"));
    let out = Command::new(env!("CARGO_BIN_EXE_flowsentry"))
        .args(["eval", "--modes", modes, "--json", "--pcap"])
        .arg(&pcap)
        .arg("--labels")
        .arg(&labels)
        .output()
        .unwrap_or_else(|e| panic!("{name}: cannot run flowsentry eval: {e}"));
    assert!(
        out.status.success(),
        "{name}: flowsentry eval failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{name}: eval output is not JSON: {e}"))
}

/// (fixture, attacks whose every episode must be detected in per-class mode).
const ATTACKS: [(&str, &[&str]); 7] = [
    (
        "fixture-mirai",
        &["telnet_bruteforce", "mirai_c2", "mirai_scan"],
    ),
    // http_flood in this fixture comes from the same bot /24 seconds after the other
    // floods, so its new-public-peer alert is suppressed as a repeat and its flows stay
    // inside the camera's envelope (docs/evaluation.md, known limitations).
    ("fixture-floods", &["syn_flood", "udp_flood", "ack_flood"]),
    (
        "fixture-portscan",
        &["port_scan_vertical", "port_scan_horizontal"],
    ),
    ("fixture-exfil-beacon", &["exfiltration", "c2_beacon"]),
    ("fixture-dns-tunnel", &["dns_tunnel"]),
    ("fixture-modbus-write", &["modbus_write"]),
    ("fixture-arp-spoof", &["arp_spoof"]),
];

#[test]
fn every_fixture_attack_episode_is_detected() {
    for (name, attacks) in ATTACKS {
        let r = eval(name);
        assert_eq!(
            r["records"], r["matched"],
            "{name}: records without a label"
        );
        let m = &r["modes"][0];
        assert_eq!(m["mode"], "per-class", "{name}");
        for a in attacks {
            let pa = &m["per_attack"][a];
            let eps = pa["episodes"].as_u64().unwrap_or(0);
            assert!(eps >= 1, "{name}: no {a} episode in the report");
            assert_eq!(
                pa["detected"].as_u64(),
                Some(eps),
                "{name}: {a}: {} of {eps} episodes detected",
                pa["detected"]
            );
            let ttd = pa["ttd_median_s"].as_f64().unwrap_or(f64::INFINITY);
            assert!(ttd < 600.0, "{name}: {a}: time to detect {ttd} s");
        }
        assert!(
            m["triage"]["incidents"].as_u64().unwrap_or(0) >= 1,
            "{name}: the attacks opened no incident"
        );
        // The product against the baseline at the baseline's false-alert rate.
        let x = &m["matched"];
        assert_eq!(x["baseline"], "global", "{name}: matched point {x}");
        let (fpr, base_fpr) = (x["fpr"].as_f64(), x["baseline_fpr"].as_f64());
        assert!(
            matches!((fpr, base_fpr), (Some(a), Some(b)) if a <= b),
            "{name}: matched FPR above the baseline's: {x}"
        );
        assert_eq!(
            x["baseline_fpr"], r["modes"][1]["pooled"]["fpr"],
            "{name}: matched against another FPR than the global mode's"
        );
        assert!(
            r["modes"][1]["matched"].is_null(),
            "{name}: the baseline has a baseline"
        );
    }
}

#[test]
fn flows_diverted_by_arp_spoofing_are_alerted_in_every_mode() {
    // The camera's RTSP session and both RTP streams to the NVR are relayed by the
    // attacker's MAC during the episode: each of the 3 records is an
    // `arp_intercepted_flow` alert, its 6 benign records are not. Without the inventory
    // (inferred) the forged replies are the first ARP seen: the cross claim shows them.
    let r = eval_modes("fixture-arp-spoof", "per-class,inferred,global");
    assert_eq!(
        r["modes"].as_array().map(Vec::len),
        Some(3),
        "{}",
        r["modes"]
    );
    for m in r["modes"].as_array().into_iter().flatten() {
        let mode = &m["mode"];
        let flows = &m["per_attack"]["arp_spoof"]["flows"];
        assert_eq!(flows["attack"].as_u64(), Some(3), "mode {mode}: {flows}");
        assert_eq!(flows["tpr"].as_f64(), Some(1.0), "mode {mode}: {flows}");
        assert_eq!(flows["fp"].as_u64(), Some(0), "mode {mode}: {flows}");
        assert_eq!(
            m["alerts_by_detector"]["arp_intercepted_flow"].as_u64(),
            Some(3),
            "mode {mode}: {}",
            m["alerts_by_detector"]
        );
    }
}

#[test]
fn benign_fixtures_raise_no_alert_and_no_incident() {
    for class in ["camera", "thermostat", "plc", "plug", "hub"] {
        let name = format!("fixture-benign-{class}");
        let r = eval(&name);
        for m in r["modes"].as_array().into_iter().flatten() {
            assert_eq!(
                m["triage"]["incidents"].as_u64(),
                Some(0),
                "{name}: mode {}: incidents on benign traffic",
                m["mode"]
            );
            assert_eq!(m["pooled"]["attack"].as_u64(), Some(0), "{name}");
            let benign = m["pooled"]["benign"].as_u64().unwrap_or(0);
            assert!(benign > 0, "{name}: no benign flow evaluated");
            // No alert at all on a benign fixture: each one is an analyst's time wasted.
            // (The hub fixture's later TLS slice used to trip the envelope guard from
            // below on F28-F30: src/detect/envelope.rs, UPPER_ONLY.)
            let fp = m["pooled"]["fp"].as_u64().unwrap_or(u64::MAX);
            assert_eq!(
                fp, 0,
                "{name}: mode {}: {fp} of {benign} benign flows alerted",
                m["mode"]
            );
            // No attack traffic: every alert is a false alert.
            let sum = |counts: &serde_json::Value| -> u64 {
                counts
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(_, v)| v.as_u64())
                    .sum()
            };
            assert_eq!(
                sum(&m["triage"]["false_alerts_by_detector"]),
                sum(&m["alerts_by_detector"]),
                "{name}: mode {}: false alerts by detector {} against alerts {}",
                m["mode"],
                m["triage"]["false_alerts_by_detector"],
                m["alerts_by_detector"]
            );
        }
    }
}

#[test]
fn bad_label_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let labels = dir.path().join("labels.jsonl");
    std::fs::write(&labels, "{\"src_ip\": \"10.0.0.1\"}\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("episodes.jsonl"), "").unwrap_or_else(|e| panic!("{e}"));
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pcaps/fixture-mirai.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_flowsentry"))
        .args(["eval", "--pcap"])
        .arg(&pcap)
        .arg("--labels")
        .arg(&labels)
        .output()
        .unwrap_or_else(|e| panic!("cannot run flowsentry eval: {e}"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("labels.jsonl:1:"), "{err}");
}
