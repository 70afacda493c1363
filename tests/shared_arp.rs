//! The ARP rules on a real capture: `../shared/pcaps/attacks/mitm/na-arpSpoofing.pcap`
//! (markfvl/Pcaphunt) holds only an attacker's forged replies, 36 of them, telling
//! 10.0.0.153 and 10.0.0.157 that the other's address is at 00:e0:4d:3c:25:7b. With no
//! inventory and no genuine reply, there is no binding to conflict with: only the
//! cross-claim rule sees it, once for the run. And no benign shared capture raises any
//! of the ARP rules.

mod common;

use std::path::Path;

fn arp_alerts(file: &Path) -> Vec<serde_json::Value> {
    let what = common::rel(file);
    let out = common::replay(file, &["--alerts-only", "--out", "-"]);
    assert_eq!(common::exit_code(&out, &what), 0, "{what}: replay failed");
    common::parse_lines(&out.stdout, &what)
        .into_iter()
        .filter(|e| {
            e["event_type"] == "anomaly"
                && e["detector"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("arp_"))
        })
        .collect()
}

#[test]
fn a_real_two_way_arp_poisoning_is_one_cross_claim_alert() {
    let Some(root) = common::pcaps_root() else {
        return;
    };
    let file = root.join("attacks/mitm/na-arpSpoofing.pcap");
    if !file.is_file() {
        common::missing(&format!("{} is missing", file.display()));
        return;
    }
    let alerts = arp_alerts(&file);
    assert_eq!(alerts.len(), 1, "{}: {alerts:?}", common::rel(&file));
    let a = &alerts[0];
    assert_eq!(a["detector"], "arp_cross_claim", "{a}");
    assert_eq!(a["arp"]["new_mac"], "00:e0:4d:3c:25:7b", "{a}");
    let mut pair = [
        a["arp"]["ip"].as_str().unwrap_or_default(),
        a["arp"]["also_claims"].as_str().unwrap_or_default(),
    ];
    pair.sort_unstable();
    assert_eq!(pair, ["10.0.0.153", "10.0.0.157"], "{a}");
}

#[test]
fn benign_shared_captures_raise_no_arp_alert() {
    let Some(root) = common::pcaps_root() else {
        return;
    };
    let files = common::capture_files(&root.join("benign"));
    if files.is_empty() {
        common::missing(&format!(
            "no capture under {}",
            root.join("benign").display()
        ));
        return;
    }
    for f in files {
        let alerts = arp_alerts(&f);
        assert!(alerts.is_empty(), "{}: {alerts:?}", common::rel(&f));
    }
}
