//! tshark decodes every simulated frame: no malformed packets, no error-level expert
//! info, no bad IP/TCP/UDP checksums, and each device class speaks its protocols.
//! Skipped (with a note) when tshark is missing, unless `CI=true`.

use flowsentry::sim::{generate, scenario, SimulateArgs};
use std::path::Path;
use std::process::Command;

fn tshark_available() -> bool {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
            panic!("tshark is required in CI but was not found on PATH");
        }
        eprintln!("note: tshark not found; skipping tshark checks");
    }
    ok
}

fn tshark(file: &Path, extra: &[&str]) -> String {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file);
    for o in [
        "ip.check_checksum:TRUE",
        "tcp.check_checksum:TRUE",
        "udp.check_checksum:TRUE",
    ] {
        cmd.arg("-o").arg(o);
    }
    cmd.args(["-d", "udp.port==5000,rtp", "-d", "udp.port==5001,rtcp"]);
    cmd.args(extra);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run tshark on {}: {e}", file.display()));
    assert!(
        out.status.success(),
        "tshark failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn generate_into(name: &str, dir: &Path) -> std::path::PathBuf {
    let args = SimulateArgs {
        scenario: name.to_string(),
        seed: 1,
        out: dir.to_path_buf(),
        duration: None,
        devices: None,
        summary: false,
        packets: None,
        video_kbps: None,
    };
    generate(&args).unwrap_or_else(|e| panic!("simulate {name} failed: {e}"));
    dir.join("capture.pcap")
}

const BAD: &str = "_ws.malformed || _ws.expert.severity >= 8388608 || ip.checksum.status == 2 || tcp.checksum.status == 2 || udp.checksum.status == 2";

#[test]
fn no_malformed_frames_or_bad_checksums() {
    if !tshark_available() {
        return;
    }
    let mut failures = Vec::new();
    for name in scenario::fixture_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pcap = generate_into(name, tmp.path());
        let frames = tshark(
            &pcap,
            &[
                "-Y",
                BAD,
                "-T",
                "fields",
                "-e",
                "frame.number",
                "-e",
                "_ws.col.Protocol",
                "-e",
                "_ws.col.Info",
            ],
        );
        for line in frames.lines().filter(|l| !l.trim().is_empty()).take(5) {
            failures.push(format!("{name}.pcap frame {line}"));
        }
    }
    assert!(
        failures.is_empty(),
        "tshark reports problems:\n{}",
        failures.join("\n")
    );
}

#[test]
fn protocol_hierarchy_matches_classes() {
    if !tshark_available() {
        return;
    }
    let expect: [(&str, &[&str]); 5] = [
        (
            "fixture-benign-camera",
            &["rtsp", "rtp", "rtcp", "dns", "ntp", "tls"],
        ),
        ("fixture-benign-thermostat", &["mqtt", "tls", "dns", "ntp"]),
        ("fixture-benign-plc", &["mbtcp", "modbus", "ntp"]),
        ("fixture-benign-plug", &["tls", "dns", "ntp"]),
        ("fixture-benign-hub", &["mdns", "ssdp", "tls", "ipv6"]),
    ];
    for (name, protos) in expect {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pcap = generate_into(name, tmp.path());
        let phs = tshark(&pcap, &["-q", "-z", "io,phs"]);
        let seen: Vec<&str> = phs
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        for p in protos {
            assert!(
                seen.contains(p),
                "{name}: protocol '{p}' missing from tshark's hierarchy:\n{phs}"
            );
        }
    }
}
