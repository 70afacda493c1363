//! Issue 3's cross-check: every flow the replay engine produces from a scenario capture
//! matches exactly one label record (same 5-tuple, VLANs and time span, same packet
//! count), and every label record matches a flow. Run on every committed fixture, with
//! the active timeout disabled (labels describe whole flows).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

type Key = (String, u64, String, u64, String, String, i64, i64);

fn iso_to_us(s: &str) -> i64 {
    flowsentry::eval::parse_eve_us(s).unwrap_or_else(|| panic!("bad timestamp {s}"))
}

#[test]
fn every_flow_matches_exactly_one_label_and_back() {
    for pcap in common::fixture_pcaps() {
        let labels_path = pcap.with_extension("labels.jsonl");
        let labels_text = std::fs::read_to_string(&labels_path)
            .unwrap_or_else(|e| panic!("{}: {e}", labels_path.display()));
        let mut labels: BTreeMap<Key, (u64, usize)> = BTreeMap::new();
        for (i, line) in labels_text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).expect("label json");
            let k: Key = (
                v["src_ip"].as_str().unwrap_or("").into(),
                v["src_port"].as_u64().unwrap_or(0),
                v["dest_ip"].as_str().unwrap_or("").into(),
                v["dest_port"].as_u64().unwrap_or(0),
                v["proto"].as_str().unwrap_or("").into(),
                v["vlan"].to_string(),
                v["start_us"].as_i64().unwrap_or(0),
                v["end_us"].as_i64().unwrap_or(0),
            );
            let e = labels
                .entry(k.clone())
                .or_insert((v["pkts"].as_u64().unwrap_or(0), 0));
            e.1 += 1;
            assert_eq!(
                e.1,
                1,
                "{}: label line {} duplicates {:?}",
                labels_path.display(),
                i + 1,
                k
            );
        }
        let out = Command::new(env!("CARGO_BIN_EXE_flowsentry"))
            .args([
                "replay",
                "--no-progress",
                "--no-detect",
                "--active-timeout",
                "0",
            ])
            .arg(&pcap)
            .output()
            .expect("run flowsentry");
        assert!(out.status.success(), "{}: replay failed", pcap.display());
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let mut matched = 0usize;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("event json");
            if v["event_type"] != "flow" {
                continue;
            }
            let vlan = if v["vlan"].is_null() {
                "[]".to_string()
            } else {
                v["vlan"].to_string()
            };
            let k: Key = (
                v["src_ip"].as_str().unwrap_or("").into(),
                v["src_port"].as_u64().unwrap_or(0),
                v["dest_ip"].as_str().unwrap_or("").into(),
                v["dest_port"].as_u64().unwrap_or(0),
                v["proto"].as_str().unwrap_or("").into(),
                vlan,
                iso_to_us(v["flow"]["start"].as_str().unwrap_or("")),
                iso_to_us(v["flow"]["end"].as_str().unwrap_or("")),
            );
            let pkts = v["flow"]["pkts_toserver"].as_u64().unwrap_or(0)
                + v["flow"]["pkts_toclient"].as_u64().unwrap_or(0);
            match labels.get_mut(&k) {
                Some((lp, seen)) => {
                    assert_eq!(
                        *lp,
                        pkts,
                        "{}: flow {:?}: {} packets, label says {}",
                        pcap.display(),
                        k,
                        pkts,
                        lp
                    );
                    *seen += 1;
                    assert_eq!(
                        *seen,
                        2,
                        "{}: flow {:?} matched a label twice",
                        pcap.display(),
                        k
                    );
                    matched += 1;
                }
                None => panic!(
                    "{}: flow {:?} ({} packets) has no label",
                    pcap.display(),
                    k,
                    pkts
                ),
            }
        }
        let missing: Vec<&Key> = labels
            .iter()
            .filter(|(_, (_, s))| *s == 1)
            .map(|(k, _)| k)
            .collect();
        assert!(
            missing.is_empty(),
            "{}: {} label(s) match no flow, first {:?}",
            pcap.display(),
            missing.len(),
            missing.first()
        );
        assert!(matched > 0, "{}: no flows", pcap.display());
    }
}

#[test]
fn iso_parse_is_right() {
    assert_eq!(iso_to_us("1970-01-01T00:00:00.000001+0000"), 1);
    assert_eq!(
        iso_to_us("2026-01-05T00:00:03.746799+0000"),
        1_767_571_203_746_799
    );
}
