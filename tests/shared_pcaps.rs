//! Every capture of the shared dev set (`../shared/pcaps`) replays through both readers
//! without a panic: exit code 0, or 3 for the inputs that are meant to be unreadable, every
//! output line is JSON, the last line is the `stats` event and its frame count is what the
//! reader delivered. The damaged/foreign files must name the file (and packet number /
//! byte offset where the damage has one) in a one-line message.

mod common;

use common::{capture_files, exit_code, par_map, parse_lines, rel, stats_of};
use std::path::{Path, PathBuf};

/// Files meant to be rejected or partly unreadable: (path, substrings the message must
/// contain with the native reader, with the libpcap reader).
const DAMAGED: [(&str, &[&str], &[&str]); 9] = [
    (
        "robustness/formats/ftp-many-port-expected.pcap.gz",
        &["not a pcap or pcapng file", "gzip-compressed"],
        &["not a pcap or pcapng file", "gzip-compressed"],
    ),
    (
        "robustness/formats/solaris.snoop",
        &["not a pcap or pcapng file", "snoop"],
        &["not a pcap or pcapng file", "snoop"],
    ),
    (
        "robustness/formats/pcap-invalid-version-1.pcap",
        &[
            "unsupported pcap version 1.4",
            "corrupt capture: the file header:",
        ],
        &[
            "archaic pcap savefile format",
            "corrupt capture: the file header:",
        ],
    ),
    (
        "robustness/formats/pcap-invalid-version-2.pcap",
        &[
            "unsupported pcap version 2.5",
            "corrupt capture: the file header:",
        ],
        &[
            "unsupported pcap savefile version 2.5",
            "corrupt capture: the file header:",
        ],
    ),
    (
        "robustness/formats/pcapng-invalid-vers-1.pcapng",
        &[
            "unsupported pcapng version 0.1",
            "corrupt capture: the file header:",
        ],
        &[
            "unsupported pcapng savefile version 0.1",
            "corrupt capture: the file header:",
        ],
    ),
    (
        "robustness/formats/shb-option-too-long.pcapng",
        &["corrupt capture", "packet 1"],
        &["corrupt capture"],
    ),
    (
        "robustness/formats/bug-6875-01__fuzz.pcap",
        &["corrupt capture", "packet 2", "offset 228"],
        &["corrupt capture", "packet 2", "offset 228"],
    ),
    (
        "robustness/formats/fuzz-2021-10-13.pcap",
        &["truncated", "packet 2", "offset 237"],
        &["truncated", "packet 2", "offset 237"],
    ),
    (
        "robustness/formats/http-mime-truncated__input.pcap",
        &["truncated", "packet 2697", "offset 2715459"],
        &["truncated", "packet 2697", "offset 2715459"],
    ),
];

/// pcapng files whose interfaces differ in link type or snapshot length: libpcap refuses
/// them (the native reader reads them).
pub const LIBPCAP_MIXED_INTERFACES: [&str; 3] = [
    "robustness/formats/many_interfaces-1.pcapng",
    "robustness/formats/pcapng-example.pcapng",
    "robustness/malformed/ipv4-malformed.pcap",
];

fn check(path: &Path, reader: &str) -> Result<(), String> {
    let file = rel(path);
    let what = format!("{file} (--reader {reader})");
    let out = common::replay(path, &["--reader", reader]);
    let code = exit_code(&out, &what);
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.contains("panicked") || code == 101 {
        return Err(format!("{what}: panicked: {stderr}"));
    }
    let events = parse_lines(&out.stdout, &what);
    let stats = stats_of(&events, &what);
    let frames = stats["frames"].as_u64().unwrap_or(u64::MAX);
    let delivered: u64 = stats["inputs"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["frames"].as_u64()).sum())
        .unwrap_or(0);
    if frames != delivered {
        return Err(format!(
            "{what}: stats.frames {frames} but the reader delivered {delivered}"
        ));
    }
    // Every event before the closing stats event (flow, anomaly, incident).
    let flows = events.iter().filter(|e| e["event_type"] != "stats").count() as u64;
    if stats["events"].as_u64() != Some(flows) {
        return Err(format!(
            "{what}: stats.events {} but {flows} events were written before it",
            stats["events"]
        ));
    }
    let expected = DAMAGED.iter().find(|(f, _, _)| *f == file);
    let mixed = reader == "libpcap" && LIBPCAP_MIXED_INTERFACES.contains(&file.as_str());
    match (expected, code) {
        (None, 0) if !mixed => Ok(()),
        (None, 3) if mixed => {
            if stderr.contains(&file) && stderr.lines().count() == 1 {
                Ok(())
            } else {
                Err(format!(
                    "{what}: expected one line naming the file, got: {stderr}"
                ))
            }
        }
        (Some((_, native, libpcap)), 3) => {
            let needles = if reader == "native" { native } else { libpcap };
            let missing: Vec<_> = needles.iter().filter(|n| !stderr.contains(*n)).collect();
            if !stderr.contains(&file) || !missing.is_empty() || stderr.lines().count() != 1 {
                return Err(format!(
                    "{what}: expected a one-line message naming the file and {needles:?}, got: {stderr}"
                ));
            }
            let error = stats["inputs"][0]["error"].as_str().unwrap_or("");
            if error.is_empty() {
                return Err(format!("{what}: stats.inputs[0].error is empty"));
            }
            Ok(())
        }
        _ => Err(format!(
            "{what}: unexpected exit code {code}; stderr: {stderr}"
        )),
    }
}

#[test]
fn every_shared_capture_replays_without_panic_through_both_readers() {
    let Some(root) = common::pcaps_root() else {
        return;
    };
    let t0 = std::time::Instant::now();
    let files = capture_files(&root);
    for (f, _, _) in DAMAGED {
        assert!(
            files.contains(&root.join(f)),
            "{f} (listed as damaged) is missing from {}",
            root.display()
        );
    }
    let jobs: Vec<(PathBuf, &str)> = files
        .iter()
        .flat_map(|f| [(f.clone(), "native"), (f.clone(), "libpcap")])
        .collect();
    let results = par_map(&jobs, common::threads(), |(f, r)| check(f, r));
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    eprintln!(
        "{} files x 2 readers in {:.1} s",
        files.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} failures; first: {}\nall:\n{}",
        failures.len(),
        failures[0],
        failures.join("\n")
    );
}
