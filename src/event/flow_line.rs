//! The body of a `flow` event written straight into the output line: byte for byte what
//! serde_json writes for the same [`FlowEventJson`] (`tests/event_flow_line.rs` compares
//! the two over the project's fixtures, the shared captures and random records), without
//! serde_json's per-byte escaping of field names that never need escaping. The values
//! come from [`super::flow_json`], the one place that derives them from a record; this
//! file only renders. One flow event is written for every flow, so this is the output
//! stage's hot path; `anomaly` events, which embed the same body next to fields of their
//! own, keep the serde path.
//!
//! Numbers are formatted as serde_json formats them: integers with `itoa`, floats through
//! serde_json itself (shortest round-trip form, `null` for NaN and infinities). Strings
//! are copied as they are when they hold nothing JSON must escape, else handed to
//! serde_json.

use super::{hex2, mac_text, DirJson, FlowEventJson};
use std::net::IpAddr;

/// Appends `"s"`, escaped exactly as serde_json escapes it.
fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    if s.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    } else {
        // Non-ASCII-safe text is rare (a pathological history or proto never is); the
        // serde path escapes it. A `str` always serialises.
        let text = String::from_utf8_lossy(s);
        let _ = serde_json::to_writer(&mut *out, &*text);
    }
}

/// Appends an integer as serde_json does (`itoa`).
#[inline]
pub(crate) fn put_int<I: itoa::Integer>(out: &mut Vec<u8>, n: I) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends a float as serde_json does (it is serde_json that formats it).
#[inline]
fn put_f64(out: &mut Vec<u8>, x: f64) {
    // Serialising an f64 into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &x);
}

/// Appends an IP address in its `Display` form, quoted (serde's human-readable form).
pub(crate) fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    out.push(b'"');
    push_ip_text(out, ip);
    out.push(b'"');
}

/// Appends the `Display` text of an address: IPv4 digit by digit, IPv6 through `fmt`.
pub(crate) fn push_ip_text(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                put_int(out, o);
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// An EVE timestamp string, quoted: digits and `-:.+T` need no escaping.
#[derive(Clone, Copy)]
struct EveText([u8; 33]);

impl EveText {
    fn of(t: crate::time::Timestamp) -> Option<EveText> {
        let digits = t.eve_digits()?;
        let mut b = [b'"'; 33];
        b[1..32].copy_from_slice(&digits);
        Some(EveText(b))
    }
}

/// Appends an EVE timestamp string (`text`: its quoted digits, when already formatted).
fn put_time(out: &mut Vec<u8>, t: crate::time::Timestamp, text: Option<EveText>) {
    match text.or_else(|| EveText::of(t)) {
        Some(b) => out.extend_from_slice(&b.0),
        None => put_str(out, t.to_eve_string().as_bytes()),
    }
}

fn put_mac(out: &mut Vec<u8>, mac: [u8; 6]) {
    put_str(out, &mac_text(mac));
}

/// A direction's statistics.
fn put_dir(out: &mut Vec<u8>, j: &DirJson) {
    out.extend_from_slice(b"{\"pkt_size_mean\":");
    put_f64(out, j.pkt_size_mean);
    out.extend_from_slice(b",\"pkt_size_std\":");
    put_f64(out, j.pkt_size_std);
    out.extend_from_slice(b",\"payload_max\":");
    put_int(out, j.payload_max);
    out.extend_from_slice(b",\"iat_mean_us\":");
    put_f64(out, j.iat_mean_us);
    out.extend_from_slice(b",\"iat_std_us\":");
    put_f64(out, j.iat_std_us);
    out.extend_from_slice(b",\"iat_max_us\":");
    put_f64(out, j.iat_max_us);
    out.push(b'}');
}

/// Appends `"name":n` for an optional integer field that serde skips when `None`.
fn put_opt_int<I: itoa::Integer>(out: &mut Vec<u8>, name: &[u8], n: Option<I>) {
    if let Some(n) = n {
        out.extend_from_slice(name);
        put_int(out, n);
    }
}

/// Appends the JSON object `serde_json::to_writer(out, j)` would write, byte for byte.
pub fn write_flow_body(j: &FlowEventJson<'_>, out: &mut Vec<u8>) {
    // `timestamp` and `flow.end` are both the last packet time: formatted once.
    let last = EveText::of(j.timestamp.0);
    out.extend_from_slice(b"{\"timestamp\":");
    put_time(out, j.timestamp.0, last);
    out.extend_from_slice(b",\"event_type\":");
    put_str(out, j.event_type.as_bytes());
    out.extend_from_slice(b",\"flow_id\":");
    put_int(out, j.flow_id);
    out.extend_from_slice(b",\"src_ip\":");
    put_ip(out, j.src_ip);
    put_opt_int(out, b",\"src_port\":", j.src_port);
    out.extend_from_slice(b",\"dest_ip\":");
    put_ip(out, j.dest_ip);
    put_opt_int(out, b",\"dest_port\":", j.dest_port);
    out.extend_from_slice(b",\"proto\":");
    put_str(out, j.proto.as_bytes());
    put_opt_int(out, b",\"icmp_type\":", j.icmp_type);
    put_opt_int(out, b",\"icmp_code\":", j.icmp_code);
    put_opt_int(out, b",\"icmp_id\":", j.icmp_id);
    if !j.vlan.is_empty() {
        out.extend_from_slice(b",\"vlan\":[");
        for (i, v) in j.vlan.ids().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            put_int(out, v);
        }
        out.push(b']');
    }
    if let Some(t) = &j.tunnel {
        out.extend_from_slice(b",\"tunnel\":{\"type\":");
        put_str(out, t.kind.as_bytes());
        put_opt_int(out, b",\"vni\":", t.vni);
        put_opt_int(out, b",\"key\":", t.key);
        out.push(b'}');
    }
    out.extend_from_slice(b",\"community_id\":");
    put_str(out, j.community_id.as_bytes());

    let f = &j.flow;
    out.extend_from_slice(b",\"flow\":{\"pkts_toserver\":");
    put_int(out, f.pkts_toserver);
    out.extend_from_slice(b",\"pkts_toclient\":");
    put_int(out, f.pkts_toclient);
    out.extend_from_slice(b",\"bytes_toserver\":");
    put_int(out, f.bytes_toserver);
    out.extend_from_slice(b",\"bytes_toclient\":");
    put_int(out, f.bytes_toclient);
    out.extend_from_slice(b",\"ip_bytes_toserver\":");
    put_int(out, f.ip_bytes_toserver);
    out.extend_from_slice(b",\"ip_bytes_toclient\":");
    put_int(out, f.ip_bytes_toclient);
    out.extend_from_slice(b",\"payload_bytes_toserver\":");
    put_int(out, f.payload_bytes_toserver);
    out.extend_from_slice(b",\"payload_bytes_toclient\":");
    put_int(out, f.payload_bytes_toclient);
    out.extend_from_slice(b",\"start\":");
    put_time(out, f.start.0, None);
    out.extend_from_slice(b",\"end\":");
    put_time(out, f.end.0, last.filter(|_| f.end.0 == j.timestamp.0));
    out.extend_from_slice(b",\"age\":");
    put_int(out, f.age);
    out.extend_from_slice(b",\"duration\":");
    put_f64(out, f.duration);
    out.extend_from_slice(b",\"state\":");
    put_str(out, f.state.as_bytes());
    out.extend_from_slice(b",\"reason\":");
    put_str(out, f.reason.as_bytes());
    out.extend_from_slice(b",\"history\":");
    put_str(out, f.history.as_bytes());
    out.extend_from_slice(b",\"slice\":");
    put_int(out, f.slice);
    out.extend_from_slice(if f.is_final {
        b",\"final\":true"
    } else {
        b",\"final\":false"
    });
    out.extend_from_slice(b",\"fragments\":");
    put_int(out, f.fragments);
    if let Some(m) = f.src_mac {
        out.extend_from_slice(b",\"src_mac\":");
        put_mac(out, m.0);
    }
    if let Some(m) = f.dest_mac {
        out.extend_from_slice(b",\"dest_mac\":");
        put_mac(out, m.0);
    }
    if f.mac_changed {
        out.extend_from_slice(b",\"mac_changed\":true");
    }
    out.extend_from_slice(b",\"toserver\":");
    put_dir(out, &f.toserver);
    out.extend_from_slice(b",\"toclient\":");
    put_dir(out, &f.toclient);
    out.push(b'}');

    if let Some(t) = &j.tcp {
        out.extend_from_slice(b",\"tcp\":{\"tcp_flags\":");
        put_str(out, &hex2(t.tcp_flags.0));
        out.extend_from_slice(b",\"tcp_flags_ts\":");
        put_str(out, &hex2(t.tcp_flags_ts.0));
        out.extend_from_slice(b",\"tcp_flags_tc\":");
        put_str(out, &hex2(t.tcp_flags_tc.0));
        for (name, n) in [
            (&b",\"syn\":"[..], t.syn),
            (b",\"fin\":", t.fin),
            (b",\"rst\":", t.rst),
            (b",\"psh\":", t.psh),
            (b",\"ack\":", t.ack),
            (b",\"urg\":", t.urg),
        ] {
            out.extend_from_slice(name);
            put_int(out, n);
        }
        out.push(b'}');
    }
    if let Some(a) = &j.app {
        out.extend_from_slice(b",\"app\":{");
        if let Some(d) = &a.dns {
            out.extend_from_slice(b"\"dns\":{\"queries\":");
            put_int(out, d.queries);
            out.extend_from_slice(b",\"qname_max\":");
            put_int(out, d.qname_max);
            out.extend_from_slice(b",\"label_entropy\":");
            put_f64(out, d.label_entropy);
            out.push(b'}');
        }
        if let Some(m) = &a.modbus {
            if a.dns.is_some() {
                out.push(b',');
            }
            out.extend_from_slice(b"\"modbus\":{\"requests\":");
            put_int(out, m.requests);
            out.extend_from_slice(b",\"writes\":");
            put_int(out, m.writes);
            out.push(b'}');
        }
        out.push(b'}');
    }
    out.push(b'}');
}
