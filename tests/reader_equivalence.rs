//! The native (pcap-parser) and libpcap readers give byte-identical flow events on every
//! shared capture both read, and a `--bpf` filter gives exactly the filtered subset of the
//! unfiltered flows, with either reader and on stdin, and counts what it rejects.

mod common;

use common::{capture_files, exit_code, par_map, parse_lines, rel, stats_of};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// pcapng files libpcap refuses: interfaces with different link types or snapshot
/// lengths. The native reader reads them; nothing to compare with.
const LIBPCAP_REFUSES: [(&str, &str); 3] = [
    (
        "robustness/formats/many_interfaces-1.pcapng",
        "interfaces with different link types (Ethernet, BSD null)",
    ),
    (
        "robustness/formats/pcapng-example.pcapng",
        "interfaces with different link types (Ethernet, Linux SLL)",
    ),
    (
        "robustness/malformed/ipv4-malformed.pcap",
        "interfaces with different snapshot lengths",
    ),
];

/// Output lines split into flow lines and the stats object without wall-clock fields and
/// reader-specific error texts.
fn normalised(stdout: &[u8], what: &str) -> (Vec<String>, Value) {
    let text = String::from_utf8_lossy(stdout);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let events = parse_lines(stdout, what);
    let mut stats = stats_of(&events, what).clone();
    lines.pop();
    if let Some(o) = stats.as_object_mut() {
        o.remove("wall_time_s");
        o.remove("packets_per_sec");
    }
    // libpcap and pcap-parser word their errors differently; presence must agree.
    if let Some(inputs) = stats["inputs"].as_array_mut() {
        for i in inputs {
            if let Some(e) = i.get_mut("error") {
                if !e.is_null() {
                    *e = Value::from("<error>");
                }
            }
        }
    }
    (lines, stats)
}

fn compare_readers(path: &Path) -> Result<Option<String>, String> {
    let file = rel(path);
    let native = common::replay(path, &["--reader", "native"]);
    let libpcap = common::replay(path, &["--reader", "libpcap"]);
    let (cn, cl) = (exit_code(&native, &file), exit_code(&libpcap, &file));
    if let Some((_, why)) = LIBPCAP_REFUSES.iter().find(|(f, _)| *f == file) {
        if cn != 0 || cl != 3 {
            return Err(format!(
                "{file}: expected native 0 and libpcap 3 ({why}), got {cn} and {cl}"
            ));
        }
        return Ok(Some(format!("{file}: libpcap refuses it: {why}")));
    }
    if cn != cl {
        return Err(format!(
            "{file}: exit codes differ: native {cn}, libpcap {cl}; stderr native: {} / libpcap: {}",
            String::from_utf8_lossy(&native.stderr).trim(),
            String::from_utf8_lossy(&libpcap.stderr).trim()
        ));
    }
    let (ln, sn) = normalised(&native.stdout, &format!("{file} native"));
    let (ll, sl) = normalised(&libpcap.stdout, &format!("{file} libpcap"));
    if let Some(i) = (0..ln.len().max(ll.len())).find(|&i| ln.get(i) != ll.get(i)) {
        return Err(format!(
            "{file}: flow line {} differs:\n  native:  {}\n  libpcap: {}",
            i + 1,
            ln.get(i).map_or("<none>", String::as_str),
            ll.get(i).map_or("<none>", String::as_str)
        ));
    }
    if sn != sl {
        return Err(format!(
            "{file}: stats differ:\n  native:  {sn}\n  libpcap: {sl}"
        ));
    }
    Ok(None)
}

#[test]
fn native_and_libpcap_readers_give_identical_events() {
    let Some(root) = common::pcaps_root() else {
        return;
    };
    let t0 = std::time::Instant::now();
    let files = capture_files(&root);
    let results = par_map(&files, common::threads(), |p| compare_readers(p));
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for r in results {
        match r {
            Ok(Some(n)) => notes.push(n),
            Ok(None) => {}
            Err(e) => failures.push(e),
        }
    }
    eprintln!(
        "{} files in {:.1} s; not compared:\n  {}",
        files.len(),
        t0.elapsed().as_secs_f64(),
        notes.join("\n  ")
    );
    assert!(
        failures.is_empty(),
        "{} files differ between readers; first: {}\nall:\n{}",
        failures.len(),
        failures[0],
        failures.join("\n")
    );
}

/// Flow lines of TCP flows only (without `seq`: a filtered run numbers fewer events).
fn tcp_flow_lines(stdout: &[u8], what: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(stdout);
    let events = parse_lines(stdout, what);
    text.lines()
        .zip(events.iter())
        .filter(|(_, e)| e["event_type"] == "flow" && e["proto"] == "TCP")
        .map(|(l, _)| common::without_seq(l))
        .collect()
}

fn all_flow_lines(stdout: &[u8], what: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(stdout);
    let events = parse_lines(stdout, what);
    text.lines()
        .zip(events.iter())
        .filter(|(_, e)| e["event_type"] == "flow")
        .map(|(l, _)| common::without_seq(l))
        .collect()
}

/// Captures without VLAN tags, tunnels or non-IP TCP lookalikes, where the BPF `tcp`
/// selects exactly the packets of TCP flows (on several link types).
/// `raw_ip.pcap` is `LINKTYPE_RAW` (101 in the file, `DLT_RAW` 12 for libpcap's
/// compiler: the native reader once passed 101 and refused every filter on it).
const BPF_FILES: [&str; 5] = [
    "benign/example.pcap",
    "robustness/linktypes/raw_ip.pcap",
    "iot/coap/coap_mqtt.pcap",
    "iot/opcua/opc-ua.pcap",
    "attacks/tunnel/dns2tcp_tunnel.pcap",
];

#[test]
fn bpf_tcp_equals_the_tcp_subset_for_both_readers_and_stdin() {
    let Some(root) = common::pcaps_root() else {
        return;
    };
    // Readers seen rejecting frames (not every file has non-TCP frames).
    let mut filtering_seen = std::collections::BTreeSet::new();
    for f in BPF_FILES {
        let path: PathBuf = root.join(f);
        assert!(path.is_file(), "{} is missing", path.display());
        let full = common::replay(&path, &[]);
        assert_eq!(exit_code(&full, f), 0, "{f}: unfiltered replay failed");
        let want = tcp_flow_lines(&full.stdout, f);
        assert!(!want.is_empty(), "{f}: no TCP flows to compare");
        let full_events = parse_lines(&full.stdout, f);
        let all = stats_of(&full_events, f)["frames"].as_u64();
        let bytes = std::fs::read(&path).expect("read capture");
        let runs = ["native", "libpcap", "stdin"].map(|reader| {
            let what = format!("{f} --bpf tcp --reader {reader}");
            let out = if reader == "stdin" {
                common::run(
                    &["replay", "-", "--no-progress", "--bpf", "tcp"],
                    Some(&bytes),
                )
            } else {
                common::replay(&path, &["--bpf", "tcp", "--reader", reader])
            };
            (reader, what, out)
        });
        for (reader, what, out) in runs {
            assert_eq!(exit_code(&out, &what), 0, "{what}: failed");
            assert_eq!(all_flow_lines(&out.stdout, &what), want, "{what}");
            let events = parse_lines(&out.stdout, &what);
            let s = stats_of(&events, &what);
            let kept = s["frames"].as_u64().unwrap_or(0);
            let filtered = s["inputs"][0]["filtered"].as_u64().unwrap_or(0);
            if filtered > 0 {
                filtering_seen.insert(reader);
            }
            assert_eq!(
                Some(kept + filtered),
                all,
                "{what}: frames kept + filtered must be all frames: {s}"
            );
        }
    }
    assert_eq!(
        filtering_seen.len(),
        3,
        "each reader must reject frames on some file: {filtering_seen:?}"
    );
}
