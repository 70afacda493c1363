//! tshark decodes every simulated frame: no malformed packets, no error-level expert
//! info, no bad IP/TCP/UDP checksums, and each device class speaks its protocols.
//! Skipped (with a note) when tshark is missing, unless `CI=true`.

mod common;

use flowsentry::sim::{generate, scenario, SimulateArgs};
use std::path::Path;

/// tshark on a simulated capture: checksums verified, RTP/RTCP ports decoded as such.
fn tshark(file: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-d",
        "udp.port==5000,rtp",
        "-d",
        "udp.port==5001,rtcp",
    ];
    args.extend_from_slice(extra);
    common::tshark(file, &args)
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
    if !common::tshark_available() {
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
    if !common::tshark_available() {
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
