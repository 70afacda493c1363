//! IPv4 fragments that arrive before their first fragment (a datagram sent last fragment
//! first) are held back and counted in their datagram's flow once the first fragment
//! comes; a later fragment whose first fragment never comes still counts, with ports 0.
//! IPv6 fragments are matched by (src, dst, id) whatever their next header. The captures
//! are built here, frame by frame, with the simulator's pcap writer.

mod common;

use flowsentry::sim::pcap_writer::PcapWriter;
use serde_json::Value;
use std::path::Path;

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];

/// Internet checksum of `b`.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame with one IPv4 packet of protocol UDP carrying `body` (a UDP header and
/// payload for a first fragment, payload bytes for a later one).
fn ipv4_frame(
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    offset8: u16,
    more: bool,
    body: &[u8],
) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = (20 + body.len()) as u16;
    let flags_off = (u16::from(more) << 13) | offset8;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&id.to_be_bytes());
    ip.extend_from_slice(&flags_off.to_be_bytes());
    ip.extend_from_slice(&[64, 17, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(body);
    f
}

/// A UDP header for a datagram of `payload` bytes (checksum 0: none).
fn udp_header(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h
}

/// Writes the capture: a 2,952-byte UDP datagram A:9999 -> B:7777 in three fragments sent
/// last first, B's unfragmented reply, and an orphan later fragment of another datagram.
fn write_capture(path: &Path) {
    let payload = vec![0x5a_u8; 2952];
    let mut first = udp_header(9999, 7777, payload.len());
    first.extend_from_slice(&payload[..1472]); // 8 + 1472 = 1480 = 185 units
    let mid = &payload[1472..2952 - 8];
    let last = &payload[2952 - 8..];
    let frames = [
        (1_000_000, ipv4_frame(A, B, 41, 370, false, last)),
        (1_000_100, ipv4_frame(A, B, 41, 185, true, mid)),
        (1_000_200, ipv4_frame(A, B, 41, 0, true, &first)),
        (1_001_000, {
            let mut r = udp_header(7777, 9999, 4);
            r.extend_from_slice(b"pong");
            ipv4_frame(B, A, 900, 0, false, &r)
        }),
        (1_002_000, ipv4_frame(A, B, 42, 185, false, &[1; 64])),
    ];
    let file = std::fs::File::create(path).expect("create capture");
    let mut w = PcapWriter::new(std::io::BufWriter::new(file)).expect("pcap header");
    for (ts, f) in &frames {
        w.write(*ts, f).expect("write frame");
    }
    w.finish().expect("finish capture");
}

/// An Ethernet frame with an IPv6 header, a fragment header (next header 60, a
/// destination options header follows in the first fragment, as RFC 8200 allows) and
/// `data` (the fragment's part of the fragmentable part).
fn ipv6_fragment(id: u32, offset8: u16, more: bool, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x86, 0xdd];
    let plen = (8 + data.len()) as u16;
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&plen.to_be_bytes());
    f.extend_from_slice(&[44, 64]);
    for last in [1u8, 2] {
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        f.extend_from_slice(&[0; 11]);
        f.push(last);
    }
    f.extend_from_slice(&[60, 0]);
    f.extend_from_slice(&((offset8 << 3) | u16::from(more)).to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// A UDP datagram 2001:db8::1:4000 -> 2001:db8::2:5000 behind a destination options
/// header, in two IPv6 fragments, in order.
fn write_ipv6_capture(path: &Path) {
    let payload = vec![0x33_u8; 1200];
    let mut fragmentable = vec![17, 0, 1, 4, 0, 0, 0, 0]; // dest opts: PadN
    fragmentable.extend_from_slice(&udp_header(4000, 5000, payload.len()));
    fragmentable.extend_from_slice(&payload);
    let (a, b) = fragmentable.split_at(1000);
    let file = std::fs::File::create(path).expect("create capture");
    let mut w = PcapWriter::new(std::io::BufWriter::new(file)).expect("pcap header");
    w.write(2_000_000, &ipv6_fragment(77, 0, true, a))
        .expect("write frame");
    w.write(2_000_100, &ipv6_fragment(77, 125, false, b))
        .expect("write frame");
    w.finish().expect("finish capture");
}

/// An IPv6 datagram is identified by (src, dst, id): its later fragment names the
/// destination options header as next header (60), not UDP, and must still join the flow.
#[test]
fn ipv6_later_fragment_with_other_next_header_joins_its_flow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("v6-frag-dstopts.pcap");
    write_ipv6_capture(&pcap);
    let what = "replay of v6-frag-dstopts.pcap";
    let out = common::replay(&pcap, &["--no-detect"]);
    assert_eq!(common::exit_code(&out, what), 0, "{what}");
    let events = common::parse_lines(&out.stdout, what);
    let fl = flows(&events);
    assert_eq!(fl.len(), 1, "{what}: one flow expected: {fl:#?}");
    let f = fl[0];
    assert_eq!(
        (&f["proto"], &f["src_port"], &f["dest_port"]),
        (&Value::from("UDP"), &Value::from(4000), &Value::from(5000)),
        "{what}: {f}"
    );
    assert_eq!(
        (&f["flow"]["pkts_toserver"], &f["flow"]["fragments"]),
        (&Value::from(2), &Value::from(2)),
        "{what}: {f}"
    );
    let fc = &common::stats_of(&events, what)["fragments"];
    assert_eq!(
        (&fc["attributed"], &fc["unmatched"]),
        (&Value::from(1), &Value::from(0)),
        "{what}"
    );
}

fn flows(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == "flow")
        .collect()
}

#[test]
fn reordered_fragments_count_toward_their_datagrams_flow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("reversed-fragments.pcap");
    write_capture(&pcap);
    let mut outputs = Vec::new();
    for workers in ["0", "2"] {
        let what = format!("replay --workers {workers} of reversed-fragments.pcap");
        let out = common::replay(&pcap, &["--no-detect", "--workers", workers]);
        assert_eq!(common::exit_code(&out, &what), 0, "{what}");
        let events = common::parse_lines(&out.stdout, &what);
        let fl = flows(&events);
        assert_eq!(fl.len(), 2, "{what}: two flows expected: {fl:#?}");
        let udp = fl
            .iter()
            .find(|e| e["src_port"] == 9999)
            .unwrap_or_else(|| panic!("{what}: no flow from port 9999: {fl:#?}"));
        assert_eq!(udp["dest_port"], 7777, "{what}");
        let f = &udp["flow"];
        assert_eq!(
            (&f["pkts_toserver"], &f["pkts_toclient"], &f["fragments"]),
            (&Value::from(3), &Value::from(1), &Value::from(3)),
            "{what}: all three fragments in the datagram's flow: {udp}"
        );
        let orphan = fl
            .iter()
            .find(|e| e["src_port"] == 0)
            .unwrap_or_else(|| panic!("{what}: no port-0 flow for the orphan: {fl:#?}"));
        assert_eq!(orphan["flow"]["pkts_toserver"], 1, "{what}: {orphan}");
        let stats = common::stats_of(&events, &what);
        let fc = &stats["fragments"];
        let expect = serde_json::json!({
            "fragments": 4, "first": 1, "attributed": 2, "unmatched": 1, "held": 3, "evicted": 0
        });
        assert_eq!(fc, &expect, "{what}: fragment counters");
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.contains("\"event_type\":\"stats\""))
            .map(str::to_owned)
            .collect();
        outputs.push(lines);
    }
    assert_eq!(
        outputs[0], outputs[1],
        "events differ between 0 and 2 workers"
    );
}
