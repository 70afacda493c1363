//! Community ID v1 (corelight/community-id-spec): a hash of the flow tuple that Zeek,
//! Suricata and others emit, so flowsentry events join with their logs.

use crate::flow::key::{icmp_canonical_type, is_icmp};
use crate::packet::{proto, Addr};

/// Computes `1:<base64(sha1(...))>` for a flow from `src` to `dst` with seed 0.
/// For ICMP/ICMPv6 the ports are the type and code (mapped per the spec). Protocols
/// other than TCP, UDP, SCTP, ICMP and ICMPv6 have no ports in the hash (IGMP, GRE,
/// ESP, OSPF, ...): the spec leaves the two port fields out, and the tuple is ordered
/// by address alone.
pub fn community_id_v1(src: Addr, sport: u16, dst: Addr, dport: u16, proto: u8) -> String {
    let (mut sport, mut dport, mut one_way) = (sport, dport, false);
    if is_icmp(proto) {
        let ty = sport as u8;
        let code = dport;
        match icmp_canonical_type(proto, ty) {
            Some((req, rep)) => {
                let other = if ty == req { rep } else { req };
                sport = u16::from(ty);
                dport = u16::from(other);
            }
            None => {
                sport = u16::from(ty);
                dport = code;
                one_way = true;
            }
        }
    }
    let has_ports = matches!(
        proto,
        proto::ICMP | proto::TCP | proto::UDP | proto::ICMPV6 | proto::SCTP
    );
    if !has_ports {
        (sport, dport) = (0, 0);
    }
    let (s_ip, d_ip) = (addr_bytes(&src), addr_bytes(&dst));
    let swap = !(one_way || s_ip < d_ip || (s_ip == d_ip && sport < dport));
    let (a, ap, b, bp) = if swap {
        (d_ip, dport, s_ip, sport)
    } else {
        (s_ip, sport, d_ip, dport)
    };
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(0u16.to_be_bytes());
    h.update(a);
    h.update(b);
    h.update([proto, 0]);
    if has_ports {
        h.update(ap.to_be_bytes());
        h.update(bp.to_be_bytes());
    }
    let digest: [u8; 20] = h.finalize().into();
    let mut out = String::with_capacity(30);
    out.push_str("1:");
    base64_into(&digest, &mut out);
    out
}

fn addr_bytes(a: &Addr) -> &[u8] {
    if a.is_v4() {
        &a.0[12..]
    } else {
        &a.0[..]
    }
}

/// Standard base64 with padding.
fn base64_into(data: &[u8], out: &mut String) {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn a(s: &str) -> Addr {
        s.parse::<IpAddr>().map(Addr::from).unwrap_or_default()
    }

    /// Vectors from the Community ID specification's baseline (seed 0).
    #[test]
    fn spec_vectors() {
        assert_eq!(
            community_id_v1(a("128.232.110.120"), 34855, a("66.35.250.204"), 80, 6),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        // Same flow seen from the other side hashes the same.
        assert_eq!(
            community_id_v1(a("66.35.250.204"), 80, a("128.232.110.120"), 34855, 6),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        assert_eq!(
            community_id_v1(a("192.168.1.52"), 54585, a("8.8.8.8"), 53, 17),
            "1:d/FP5EW3wiY1vCndhwleRRKHowQ="
        );
        // ICMP echo request 8/0 and its reply hash the same.
        let req = community_id_v1(a("192.168.0.89"), 8, a("192.168.0.1"), 0, 1);
        let rep = community_id_v1(a("192.168.0.1"), 0, a("192.168.0.89"), 0, 1);
        assert_eq!(req, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=");
        assert_eq!(req, rep);
    }

    /// A protocol without ports hashes no port fields (value from tshark 4's
    /// `communityid` dissector on an IGMP report of `iot/smarthome/mdns.pcap`).
    #[test]
    fn portless_protocols_hash_addresses_and_protocol_only() {
        let want = "1:bhV5jBknfiwgmwQMv9FbTVdk0ik=";
        assert_eq!(
            community_id_v1(a("10.0.2.7"), 0, a("224.0.0.22"), 0, 2),
            want
        );
        assert_eq!(
            community_id_v1(a("224.0.0.22"), 0, a("10.0.2.7"), 0, 2),
            want
        );
    }

    #[test]
    fn base64_padding() {
        let mut s = String::new();
        base64_into(b"ab", &mut s);
        assert_eq!(s, "YWI=");
        s.clear();
        base64_into(b"abc", &mut s);
        assert_eq!(s, "YWJj");
        s.clear();
        base64_into(b"a", &mut s);
        assert_eq!(s, "YQ==");
    }
}
