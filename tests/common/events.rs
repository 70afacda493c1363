//! Event-file helpers shared by the sink and live tests: events keyed by `seq`, and the
//! check that a receiver holds exactly the events of the file output, byte for byte.

use serde_json::Value;
use std::collections::BTreeMap;

/// The events of a JSON Lines text by `seq` (each line kept verbatim; the first of
/// duplicates).
pub fn by_seq(text: &str, what: &str) -> BTreeMap<u64, String> {
    let mut m = BTreeMap::new();
    for (i, l) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("{what}: line {} is not JSON ({e}): {l}", i + 1));
        let seq = v["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: line {} has no seq: {l}", i + 1));
        m.entry(seq).or_insert_with(|| l.to_string());
    }
    m
}

/// Every event of the file must be at the receiver, byte for byte, and the receiver must
/// hold nothing else; returns how many receiver lines there were (duplicates included).
pub fn assert_same(file: &BTreeMap<u64, String>, got_text: &str, what: &str) -> usize {
    let got = by_seq(got_text, what);
    let missing: Vec<u64> = file
        .keys()
        .filter(|s| !got.contains_key(s))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} events missing, first {:?}",
        missing.len(),
        file.len(),
        &missing[..missing.len().min(10)]
    );
    let extra: Vec<u64> = got
        .keys()
        .filter(|s| !file.contains_key(s))
        .copied()
        .collect();
    assert!(
        extra.is_empty(),
        "{what}: events not in the file output: {:?}",
        &extra[..extra.len().min(10)]
    );
    for (seq, line) in file {
        assert_eq!(&got[seq], line, "{what}: event seq {seq} differs");
    }
    got_text.lines().count()
}

/// Runs a `flowsentry tail` command (built by the caller, e.g. inside a namespace) and
/// returns its output: every event the receiver holds now, one JSON line each.
pub fn run_tail(mut cmd: std::process::Command, url: &str) -> String {
    let out = cmd.output().expect("run tail");
    assert!(
        out.status.success(),
        "tail {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}
