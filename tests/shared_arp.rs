//! The ARP rules on a real capture: `../shared/pcaps/attacks/mitm/na-arpSpoofing.pcap`
//! (markfvl/Pcaphunt) holds only an attacker's forged replies, 36 of them, telling
//! 10.0.0.153 and 10.0.0.157 that the other's address is at 00:e0:4d:3c:25:7b. With no
//! inventory and no genuine reply, there is no binding to conflict with: only the
//! cross-claim rule sees it, once for the run. And no benign shared capture raises any
//! of the ARP rules. The project's own `fixture-arp-spoof` is the same situation with
//! traffic: replayed without its inventory, the forged replies are the only ARP seen,
//! and the flows the attacker relays are still alerted.

mod common;

use std::path::Path;

fn arp_alerts(file: &Path) -> Vec<serde_json::Value> {
    let what = common::rel(file);
    // No inventory (the fixtures' own is not given either): bindings are first-seen only.
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
fn without_inventory_flows_relayed_during_a_cross_claim_are_alerted() {
    // The fixture's only ARP packets are the attacker's (02:00:5e:10:00:42) replies
    // poisoning cam-01 (192.168.10.21) and the NVR (192.168.10.5) both ways; its first
    // claims are the first seen, so no binding ever conflicts. The camera's RTSP session
    // and two RTP streams, relayed by the attacker's MAC, are 3 records.
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pcaps/fixture-arp-spoof.pcap");
    let alerts = arp_alerts(&file);
    let what = common::rel(&file);
    let of = |d: &str| alerts.iter().filter(|a| a["detector"] == d).count();
    assert_eq!(of("arp_cross_claim"), 1, "{what}: {alerts:?}");
    assert_eq!(of("arp_binding_change"), 0, "{what}: {alerts:?}");
    assert_eq!(of("arp_intercepted_flow"), 3, "{what}: {alerts:?}");
    for a in alerts
        .iter()
        .filter(|a| a["detector"] == "arp_intercepted_flow")
    {
        assert_eq!(a["flow"]["mac_changed"], true, "{what}: {a}");
        // The owner is unknown while the poisoning runs; the attacker's restoring
        // replies at the end teach the genuine bindings, and all 3 records are emitted
        // after them (end of input), so each names its endpoint's genuine MAC.
        let detail = a["rule"]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("claimed by 02:00:5e:10:00:42 (bound to 02:00:5e:10:00:"),
            "{what}: {detail}"
        );
        let ends = [&a["src_ip"], &a["dest_ip"]];
        assert!(
            ends.contains(&&serde_json::json!("192.168.10.21")),
            "{what}: {a}"
        );
    }
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
