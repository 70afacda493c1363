//! The body of a `flow` event written straight into the output line: byte for byte what
//! serde_json writes for [`super::flow_json`] (the tests below compare the two over the
//! project's fixtures and over random records), without building the intermediate struct,
//! its strings and its `Vec`, and without serde_json's per-byte escaping of field names
//! that never need escaping. One flow event is written for every flow, so this is the
//! output stage's hot path; `anomaly` events, which embed the same body next to fields of
//! their own, keep the serde path.
//!
//! Numbers are formatted as serde_json formats them: integers with `itoa`, floats through
//! serde_json itself (shortest round-trip form, `null` for NaN and infinities). Strings
//! are copied as they are when they hold nothing JSON must escape, else handed to
//! serde_json.

use super::{
    event_ports, flow_id, hex2, mac_text, proto_name, record_community_id, round3, DirJson,
};
use crate::flow::{DirStats, EndReason, FlowRecord};
use crate::packet::{proto, Tunnel};
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

/// A direction's statistics, with the values (and their rounding) of [`DirJson::of`].
fn put_dir(out: &mut Vec<u8>, d: &DirStats) {
    let j = DirJson::of(d);
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

/// Appends the JSON object `serde_json::to_writer(out, &flow_json(rec, event_type))`
/// would write, byte for byte.
pub fn write_flow_body(rec: &FlowRecord, event_type: &'static str, out: &mut Vec<u8>) {
    let (icmp, sport, dport) = event_ports(rec);
    // `timestamp` and `flow.end` are both the last packet time: formatted once.
    let last = EveText::of(rec.last_ts);
    out.extend_from_slice(b"{\"timestamp\":");
    put_time(out, rec.last_ts, last);
    out.extend_from_slice(b",\"event_type\":");
    put_str(out, event_type.as_bytes());
    out.extend_from_slice(b",\"flow_id\":");
    put_int(out, flow_id(rec));
    out.extend_from_slice(b",\"src_ip\":");
    put_ip(out, rec.orig.addr.to_ip());
    if !icmp {
        out.extend_from_slice(b",\"src_port\":");
        put_int(out, rec.orig.port);
    }
    out.extend_from_slice(b",\"dest_ip\":");
    put_ip(out, rec.resp.addr.to_ip());
    if !icmp {
        out.extend_from_slice(b",\"dest_port\":");
        put_int(out, rec.resp.port);
    }
    out.extend_from_slice(b",\"proto\":");
    put_str(out, proto_name(rec.proto).as_bytes());
    if icmp {
        out.extend_from_slice(b",\"icmp_type\":");
        put_int(out, sport as u8);
        out.extend_from_slice(b",\"icmp_code\":");
        put_int(out, dport as u8);
        if rec.key.icmp_id != 0 {
            out.extend_from_slice(b",\"icmp_id\":");
            put_int(out, rec.key.icmp_id);
        }
    }
    let mut vlans = rec.key.vlan.iter().copied().filter(|&v| v != 0).peekable();
    if vlans.peek().is_some() {
        out.extend_from_slice(b",\"vlan\":[");
        for (i, v) in vlans.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            put_int(out, v);
        }
        out.push(b']');
    }
    match rec.tunnel {
        Tunnel::None => {}
        Tunnel::Gre { key } => {
            out.extend_from_slice(b",\"tunnel\":{\"type\":\"gre\"");
            if key != 0 {
                out.extend_from_slice(b",\"key\":");
                put_int(out, key);
            }
            out.push(b'}');
        }
        Tunnel::Vxlan { vni } => {
            out.extend_from_slice(b",\"tunnel\":{\"type\":\"vxlan\",\"vni\":");
            put_int(out, vni);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"community_id\":");
    put_str(out, record_community_id(rec).as_bytes());

    let (os, rs) = (&rec.orig_stats, &rec.resp_stats);
    let dur = rec.duration();
    out.extend_from_slice(b",\"flow\":{\"pkts_toserver\":");
    put_int(out, os.pkts);
    out.extend_from_slice(b",\"pkts_toclient\":");
    put_int(out, rs.pkts);
    out.extend_from_slice(b",\"bytes_toserver\":");
    put_int(out, os.bytes);
    out.extend_from_slice(b",\"bytes_toclient\":");
    put_int(out, rs.bytes);
    out.extend_from_slice(b",\"ip_bytes_toserver\":");
    put_int(out, os.ip_bytes);
    out.extend_from_slice(b",\"ip_bytes_toclient\":");
    put_int(out, rs.ip_bytes);
    out.extend_from_slice(b",\"payload_bytes_toserver\":");
    put_int(out, os.payload_bytes);
    out.extend_from_slice(b",\"payload_bytes_toclient\":");
    put_int(out, rs.payload_bytes);
    out.extend_from_slice(b",\"start\":");
    put_time(out, rec.first_ts, None);
    out.extend_from_slice(b",\"end\":");
    put_time(out, rec.last_ts, last);
    out.extend_from_slice(b",\"age\":");
    put_int(out, dur.0.div_euclid(1_000_000_000));
    out.extend_from_slice(b",\"duration\":");
    put_f64(out, round3(dur.as_secs_f64() * 1000.0) / 1000.0);
    out.extend_from_slice(b",\"state\":");
    put_str(out, rec.conn_state.as_str().as_bytes());
    out.extend_from_slice(b",\"reason\":");
    put_str(out, rec.reason.as_str().as_bytes());
    out.extend_from_slice(b",\"history\":");
    put_str(out, rec.history.as_str().as_bytes());
    out.extend_from_slice(b",\"slice\":");
    put_int(out, rec.slice);
    out.extend_from_slice(if rec.reason != EndReason::ActiveTimeout {
        b",\"final\":true"
    } else {
        b",\"final\":false"
    });
    out.extend_from_slice(b",\"fragments\":");
    put_int(out, rec.fragments);
    if let Some(m) = rec.orig.mac {
        out.extend_from_slice(b",\"src_mac\":");
        put_mac(out, m);
    }
    if let Some(m) = rec.resp.mac {
        out.extend_from_slice(b",\"dest_mac\":");
        put_mac(out, m);
    }
    out.extend_from_slice(b",\"toserver\":");
    put_dir(out, os);
    out.extend_from_slice(b",\"toclient\":");
    put_dir(out, rs);
    out.push(b'}');

    if rec.proto == proto::TCP {
        let counts = [
            (&b",\"syn\":"[..], os.flags.syn + rs.flags.syn),
            (b",\"fin\":", os.flags.fin + rs.flags.fin),
            (b",\"rst\":", os.flags.rst + rs.flags.rst),
            (b",\"psh\":", os.flags.psh + rs.flags.psh),
            (b",\"ack\":", os.flags.ack + rs.flags.ack),
            (b",\"urg\":", os.flags.urg + rs.flags.urg),
        ];
        out.extend_from_slice(b",\"tcp\":{\"tcp_flags\":");
        put_str(out, &hex2(os.flags_or | rs.flags_or));
        out.extend_from_slice(b",\"tcp_flags_ts\":");
        put_str(out, &hex2(os.flags_or));
        out.extend_from_slice(b",\"tcp_flags_tc\":");
        put_str(out, &hex2(rs.flags_or));
        for (name, n) in counts {
            out.extend_from_slice(name);
            put_int(out, n);
        }
        out.push(b'}');
    }
    let a = &rec.app;
    if a.dns_queries > 0 || a.modbus_requests > 0 {
        out.extend_from_slice(b",\"app\":{");
        if a.dns_queries > 0 {
            out.extend_from_slice(b"\"dns\":{\"queries\":");
            put_int(out, a.dns_queries);
            out.extend_from_slice(b",\"qname_max\":");
            put_int(out, a.dns_qname_max);
            out.extend_from_slice(b",\"label_entropy\":");
            put_f64(out, round3(f64::from(a.dns_label_entropy)));
            out.push(b'}');
        }
        if a.modbus_requests > 0 {
            if a.dns_queries > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"\"modbus\":{\"requests\":");
            put_int(out, a.modbus_requests);
            out.extend_from_slice(b",\"writes\":");
            put_int(out, a.modbus_writes);
            out.push(b'}');
        }
        out.push(b'}');
    }
    out.push(b'}');
}
