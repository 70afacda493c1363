//! Community ID v1 against tshark's `communityid` dissector on real captures: every flow
//! event's `community_id` (flows outside tunnels) must be one tshark computes for a packet
//! of the same capture, so flowsentry events join with Zeek and Suricata logs. The files
//! cover TCP, UDP, ICMP echo and errors, ICMPv6, IGMP (a protocol without ports, whose
//! IDs once hashed two zero ports), IPv6 and several link types.
//!
//! Across all shared captures (measured 2026-12-07), 63,321 of 63,352 such flows have an
//! ID tshark also computes; the rest are tunnels tshark looks into and we do not
//! (Teredo, Geneve, 4in6, 6in4, GTP-U, IP-in-IP), IPv6 fragments and AH, MLDv2 behind a
//! hop-by-hop header, and fuzzed frames (docs/events.md).

mod common;

use std::collections::BTreeSet;

const FILES: [&str; 8] = [
    "iot/smarthome/mdns.pcap",
    "benign/example.pcap",
    "benign/many-protocols.pcap",
    "attacks/scan/hs-icmpScan.pcap",
    "attacks/tunnel/icmp-tunnel.pcap",
    "attacks/scan/ps-udp.pcap",
    "robustness/linktypes/four_ipv6_http_streams.pcap",
    "robustness/linktypes/sll.pcap",
];

/// Every Community ID tshark computes for the packets of `path`.
fn tshark_ids(path: &std::path::Path) -> BTreeSet<String> {
    let args = [
        "--enable-protocol",
        "communityid",
        "-T",
        "fields",
        "-e",
        "communityid",
    ];
    common::tshark(path, &args)
        .lines()
        .flat_map(|l| l.split(','))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn community_ids_equal_tsharks() {
    let Some(root) = common::pcaps_root_with_tshark() else {
        return;
    };
    let mut portless_seen = false;
    for rel in FILES {
        let path = root.join(rel);
        assert!(path.is_file(), "{} is missing", path.display());
        let out = common::replay(&path, &["--no-detect"]);
        assert_eq!(common::exit_code(&out, rel), 0, "{rel}: replay failed");
        let theirs = tshark_ids(&path);
        assert!(!theirs.is_empty(), "{rel}: tshark computed no Community ID");
        let mut flows = 0;
        for ev in common::parse_lines(&out.stdout, rel) {
            if ev["event_type"] != "flow" || ev.get("tunnel").is_some() {
                continue;
            }
            flows += 1;
            let id = ev["community_id"].as_str().unwrap_or_default();
            assert!(
                theirs.contains(id),
                "{rel}: flow {} {}:{} -> {}:{} has Community ID {id}, which tshark does not compute for any packet",
                ev["proto"],
                ev["src_ip"],
                ev["src_port"],
                ev["dest_ip"],
                ev["dest_port"]
            );
            let p = ev["proto"].as_str().unwrap_or_default();
            portless_seen |= !matches!(p, "TCP" | "UDP" | "ICMP" | "IPv6-ICMP" | "ICMPv6");
        }
        assert!(flows > 0, "{rel}: no flow events");
    }
    assert!(
        portless_seen,
        "no flow of a protocol without ports was compared"
    );
}
