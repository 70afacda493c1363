//! Application-layer hints read from the first captured bytes of a transport payload:
//! the first DNS question name (length and label entropy) and the Modbus/TCP requests
//! and writes of a segment. No allocation; only captured bytes inside the IP length are looked at.

use crate::packet::{proto, AppHint};

/// Modbus/TCP port.
const MODBUS_PORT: u16 = 502;
/// DNS and mDNS ports.
const DNS_PORT: u16 = 53;
const MDNS_PORT: u16 = 5353;
/// Longest DNS name in wire form (RFC 1035 §3.1).
const MAX_NAME_WIRE_LEN: usize = 255;

/// The hint for a transport payload given the transport protocol and ports.
#[inline]
pub(super) fn detect(ip_proto: u8, src_port: u16, dst_port: u16, payload: &[u8]) -> AppHint {
    match ip_proto {
        proto::UDP
            if matches!(src_port, DNS_PORT | MDNS_PORT)
                || matches!(dst_port, DNS_PORT | MDNS_PORT) =>
        {
            dns(payload)
        }
        proto::TCP if src_port == DNS_PORT || dst_port == DNS_PORT => {
            // DNS over TCP: a 2-byte message length comes first.
            dns(payload.get(2..).unwrap_or(&[]))
        }
        proto::TCP if src_port == MODBUS_PORT || dst_port == MODBUS_PORT => {
            modbus(payload, dst_port == MODBUS_PORT)
        }
        _ => AppHint::None,
    }
}

/// DNS header (12 bytes) with at least one question; the first QNAME's labels are read up
/// to the root, a compression pointer, a bad label length, or the end of the captured bytes.
fn dns(msg: &[u8]) -> AppHint {
    let Some([_, _, flags, _, q0, q1, ..]) =
        msg.get(..12).and_then(|h| <[u8; 12]>::try_from(h).ok())
    else {
        return AppHint::None;
    };
    if u16::from_be_bytes([q0, q1]) == 0 {
        return AppHint::None;
    }
    if flags & 0x80 != 0 {
        // A response: only queries are accounted (`AppSummary`), so its name is not read.
        return AppHint::Dns {
            query: false,
            qname_len: 0,
            label_entropy: 0.0,
        };
    }
    let mut pos = 12usize;
    let mut chars = 0usize;
    let mut labels = 0usize;
    let mut longest: &[u8] = &[];
    while let Some(&len) = msg.get(pos) {
        let len = usize::from(len);
        // 0 = root; 0xC0 = compression pointer; 0x40/0x80 = reserved: stop on all.
        if len == 0 || len > 63 || pos - 12 + 1 + len > MAX_NAME_WIRE_LEN {
            break;
        }
        let Some(label) = msg.get(pos + 1..pos + 1 + len) else {
            break;
        };
        labels += 1;
        chars += len;
        if len > longest.len() {
            longest = label;
        }
        pos += 1 + len;
    }
    let qname_len = chars + labels.saturating_sub(1);
    AppHint::Dns {
        query: true,
        qname_len: u16::try_from(qname_len).unwrap_or(u16::MAX),
        label_entropy: shannon_entropy(longest),
    }
}

/// Shannon entropy in bits per character of `label`, ASCII case folded (DNS names are
/// case-insensitive). 0 for an empty label.
pub(super) fn shannon_entropy(label: &[u8]) -> f32 {
    let n = label.len();
    if n == 0 {
        return 0.0;
    }
    let mut h = 0.0f64;
    if n < TERM_N {
        // A DNS label (at most 63 bytes): sort its case-folded bytes, so the runs give
        // the count of each distinct byte in ascending byte order, and take the terms
        // from a table computed once with the same operations. The sum is bitwise the
        // one of the general path below (same terms, same order).
        let mut bytes = [0u8; TERM_N];
        for (o, b) in bytes.iter_mut().zip(label) {
            *o = b.to_ascii_lowercase();
        }
        let bytes = &mut bytes[..n];
        bytes.sort_unstable();
        let terms = &entropy_terms()[n];
        for run in bytes.chunk_by(|a, b| a == b) {
            h -= terms[run.len()];
        }
        return h as f32;
    }
    let mut counts = [0u8; 256];
    for &b in label {
        let c = &mut counts[usize::from(b.to_ascii_lowercase())];
        *c = c.saturating_add(1);
    }
    for &c in counts.iter().filter(|&&c| c > 0) {
        h -= entropy_term(c, n);
    }
    h as f32
}

/// Label lengths (and counts) covered by the entropy table.
const TERM_N: usize = 64;

/// `p log2 p` for `p = c / n`, as [`shannon_entropy`] computes it.
#[inline]
fn entropy_term(c: u8, n: usize) -> f64 {
    let p = f64::from(c) / n as f64;
    p * p.log2()
}

/// `entropy_term(c, n)` for every `n, c < 64`, computed on first use (one allocation per
/// process; DNS packets are a large share of IoT traffic and each needs ~10 logarithms).
fn entropy_terms() -> &'static [[f64; TERM_N]] {
    static TERMS: std::sync::OnceLock<Vec<[f64; TERM_N]>> = std::sync::OnceLock::new();
    TERMS.get_or_init(|| {
        (0..TERM_N)
            .map(|n| {
                let mut row = [0.0f64; TERM_N];
                if n > 0 {
                    for (c, t) in row.iter_mut().enumerate().take(n + 1).skip(1) {
                        *t = entropy_term(c as u8, n);
                    }
                }
                row
            })
            .collect()
    })
}

/// Whether a Modbus function code writes to the device: write single coil (5), single
/// register (6), multiple coils (15), multiple registers (16), file record (21), mask
/// write register (22), read/write multiple registers (23).
pub fn is_modbus_write(function: u8) -> bool {
    matches!(function, 5 | 6 | 15 | 16 | 21 | 22 | 23)
}

/// Modbus/TCP: a segment of ADUs, each an MBAP header (transaction id, protocol id 0,
/// length 2..=254, unit id) with the function code at its byte 7. The first ADU decides
/// whether the segment is Modbus; the following ones are counted while whole headers
/// with protocol id 0 follow (pipelined requests: a write behind a read is still seen).
/// The last ADU may be cut by the segment's end or the snapshot length.
fn modbus(payload: &[u8], request: bool) -> AppHint {
    let (mut adus, mut writes) = (0u16, 0u16);
    let mut at = 0usize;
    while let Some([_, _, p0, p1, l0, l1, _unit, function]) = payload
        .get(at..at + 8)
        .and_then(|h| <[u8; 8]>::try_from(h).ok())
    {
        let len = u16::from_be_bytes([l0, l1]);
        if u16::from_be_bytes([p0, p1]) != 0 || !(2..=254).contains(&len) || adus == u16::MAX {
            break;
        }
        adus += 1;
        writes += u16::from(is_modbus_write(function));
        at += 6 + usize::from(len);
    }
    if adus == 0 {
        return AppHint::None;
    }
    AppHint::Modbus {
        request,
        adus,
        writes,
    }
}
