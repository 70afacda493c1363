//! Frame builders. Every builder returns a complete Ethernet frame (without FCS), padded
//! to the 60-byte minimum (64 with an 802.1Q tag), with IPv4 header checksum and
//! TCP/UDP checksums filled in.

use super::checksum;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A MAC address.
pub type Mac = [u8; 6];

/// The Ethernet broadcast address.
pub const BROADCAST: Mac = [0xff; 6];

/// EtherType IPv4.
pub const ETH_IPV4: u16 = 0x0800;
/// EtherType IPv6.
pub const ETH_IPV6: u16 = 0x86dd;
/// EtherType ARP.
pub const ETH_ARP: u16 = 0x0806;
/// EtherType 802.1Q.
pub const ETH_VLAN: u16 = 0x8100;

/// IP protocol TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol UDP.
pub const IPPROTO_UDP: u8 = 17;

/// TCP FIN flag.
pub const FIN: u8 = 0x01;
/// TCP SYN flag.
pub const SYN: u8 = 0x02;
/// TCP RST flag.
pub const RST: u8 = 0x04;
/// TCP PSH flag.
pub const PSH: u8 = 0x08;
/// TCP ACK flag.
pub const ACK: u8 = 0x10;

/// Layer-2 addressing of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2 {
    /// Source MAC.
    pub src: Mac,
    /// Destination MAC.
    pub dst: Mac,
    /// 802.1Q VLAN id, if tagged.
    pub vlan: Option<u16>,
}

/// IPv4 header fields a builder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V4 {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub id: u16,
    /// Don't-fragment flag.
    pub df: bool,
}

/// TCP header fields (data offset is derived from `options`, which must be a multiple
/// of 4 bytes long).
#[derive(Debug, Clone, Copy)]
pub struct Tcp<'a> {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (sent as 0 unless ACK is set by the caller).
    pub ack: u32,
    /// Flag byte (FIN/SYN/RST/PSH/ACK...).
    pub flags: u8,
    /// Window field.
    pub window: u16,
    /// Options, padded to a multiple of 4 bytes.
    pub options: &'a [u8],
}

/// Multicast MAC of an IPv4 group address (01:00:5e + low 23 bits).
pub fn multicast_mac_v4(group: Ipv4Addr) -> Mac {
    let o = group.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

/// Multicast MAC of an IPv6 group address (33:33 + low 32 bits).
pub fn multicast_mac_v6(group: Ipv6Addr) -> Mac {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

fn eth_header(buf: &mut Vec<u8>, l2: &L2, ethertype: u16) {
    buf.extend_from_slice(&l2.dst);
    buf.extend_from_slice(&l2.src);
    if let Some(v) = l2.vlan {
        buf.extend_from_slice(&ETH_VLAN.to_be_bytes());
        buf.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    buf.extend_from_slice(&ethertype.to_be_bytes());
}

fn pad(buf: &mut Vec<u8>, l2: &L2) {
    let min = if l2.vlan.is_some() { 64 } else { 60 };
    if buf.len() < min {
        buf.resize(min, 0);
    }
}

/// Length of the Ethernet (+ VLAN) header for `l2`.
pub fn l2_len(l2: &L2) -> usize {
    if l2.vlan.is_some() {
        18
    } else {
        14
    }
}

fn ipv4_header(buf: &mut Vec<u8>, ip: &V4, proto: u8, payload_len: usize) {
    let start = buf.len();
    let total = (20 + payload_len) as u16;
    buf.extend_from_slice(&[0x45, 0x00]);
    buf.extend_from_slice(&total.to_be_bytes());
    buf.extend_from_slice(&ip.id.to_be_bytes());
    buf.extend_from_slice(&(if ip.df { 0x4000u16 } else { 0 }).to_be_bytes());
    buf.push(ip.ttl);
    buf.push(proto);
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&ip.src.octets());
    buf.extend_from_slice(&ip.dst.octets());
    let c = checksum::internet_checksum(&buf[start..start + 20]);
    buf[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
}

fn tcp_segment(tcp: &Tcp<'_>, payload: &[u8]) -> Vec<u8> {
    let hlen = 20 + tcp.options.len();
    let mut seg = Vec::with_capacity(hlen + payload.len());
    seg.extend_from_slice(&tcp.sport.to_be_bytes());
    seg.extend_from_slice(&tcp.dport.to_be_bytes());
    seg.extend_from_slice(&tcp.seq.to_be_bytes());
    seg.extend_from_slice(&tcp.ack.to_be_bytes());
    seg.push(((hlen / 4) as u8) << 4);
    seg.push(tcp.flags);
    seg.extend_from_slice(&tcp.window.to_be_bytes());
    seg.extend_from_slice(&[0, 0, 0, 0]);
    seg.extend_from_slice(tcp.options);
    seg.extend_from_slice(payload);
    seg
}

fn udp_segment(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut seg = Vec::with_capacity(8 + payload.len());
    seg.extend_from_slice(&sport.to_be_bytes());
    seg.extend_from_slice(&dport.to_be_bytes());
    seg.extend_from_slice(&len.to_be_bytes());
    seg.extend_from_slice(&[0, 0]);
    seg.extend_from_slice(payload);
    seg
}

/// An Ethernet/IPv4/TCP frame.
pub fn tcp_v4(l2: &L2, ip: &V4, tcp: &Tcp<'_>, payload: &[u8]) -> Vec<u8> {
    let mut seg = tcp_segment(tcp, payload);
    let c = checksum::transport_v4(ip.src, ip.dst, IPPROTO_TCP, &seg);
    seg[16..18].copy_from_slice(&c.to_be_bytes());
    let mut buf = Vec::with_capacity(18 + 20 + seg.len());
    eth_header(&mut buf, l2, ETH_IPV4);
    ipv4_header(&mut buf, ip, IPPROTO_TCP, seg.len());
    buf.extend_from_slice(&seg);
    pad(&mut buf, l2);
    buf
}

/// An Ethernet/IPv4/UDP frame.
pub fn udp_v4(l2: &L2, ip: &V4, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut seg = udp_segment(sport, dport, payload);
    let c = checksum::udp_v4(ip.src, ip.dst, &seg);
    seg[6..8].copy_from_slice(&c.to_be_bytes());
    let mut buf = Vec::with_capacity(18 + 20 + seg.len());
    eth_header(&mut buf, l2, ETH_IPV4);
    ipv4_header(&mut buf, ip, IPPROTO_UDP, seg.len());
    buf.extend_from_slice(&seg);
    pad(&mut buf, l2);
    buf
}

/// An Ethernet/IPv6/UDP frame (no extension headers, flow label 0).
pub fn udp_v6(
    l2: &L2,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut seg = udp_segment(sport, dport, payload);
    let c = match checksum::transport_v6(src, dst, IPPROTO_UDP, &seg) {
        0 => 0xffff,
        c => c,
    };
    seg[6..8].copy_from_slice(&c.to_be_bytes());
    let mut buf = Vec::with_capacity(18 + 40 + seg.len());
    eth_header(&mut buf, l2, ETH_IPV6);
    buf.extend_from_slice(&[0x60, 0, 0, 0]);
    buf.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    buf.push(IPPROTO_UDP);
    buf.push(hop_limit);
    buf.extend_from_slice(&src.octets());
    buf.extend_from_slice(&dst.octets());
    buf.extend_from_slice(&seg);
    pad(&mut buf, l2);
    buf
}

/// An Ethernet/ARP frame for IPv4 over Ethernet (`op` 1 = request, 2 = reply).
pub fn arp(
    l2: &L2,
    op: u16,
    sender_mac: Mac,
    sender_ip: Ipv4Addr,
    target_mac: Mac,
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    eth_header(&mut buf, l2, ETH_ARP);
    buf.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4]);
    buf.extend_from_slice(&op.to_be_bytes());
    buf.extend_from_slice(&sender_mac);
    buf.extend_from_slice(&sender_ip.octets());
    buf.extend_from_slice(&target_mac);
    buf.extend_from_slice(&target_ip.octets());
    pad(&mut buf, l2);
    buf
}

/// Rewrites the MACs of an IPv4 frame and decrements its TTL by `ttl_dec`, fixing the
/// IPv4 header checksum (used to model a man-in-the-middle that forwards frames).
pub fn rewrite_forwarded(frame: &mut [u8], src: Mac, dst: Mac, ttl_dec: u8) {
    if frame.len() < 14 {
        return;
    }
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    let off = if frame[12] == 0x81 && frame[13] == 0x00 {
        18
    } else {
        14
    };
    if frame.len() < off + 20 || frame[off - 2..off] != ETH_IPV4.to_be_bytes() {
        return;
    }
    frame[off + 8] = frame[off + 8].saturating_sub(ttl_dec);
    frame[off + 10] = 0;
    frame[off + 11] = 0;
    let c = checksum::internet_checksum(&frame[off..off + 20]);
    frame[off + 10..off + 12].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l2(vlan: Option<u16>) -> L2 {
        L2 {
            src: [2, 0, 0, 0, 0, 1],
            dst: [2, 0, 0, 0, 0, 2],
            vlan,
        }
    }

    #[test]
    fn udp_frame_layout_and_checksums() {
        let ip = V4 {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            ttl: 64,
            id: 1,
            df: true,
        };
        let f = udp_v4(&l2(None), &ip, 1234, 80, b"hi");
        assert_eq!(f.len(), 60); // 14 + 20 + 10 = 44, padded
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(&f[16..18], &[0, 30]); // IP total length
        assert_eq!(checksum::internet_checksum(&f[14..34]), 0);
        assert_eq!(&f[40..42], &[0x7e, 0x4c]); // hand-computed in checksum tests
    }

    #[test]
    fn vlan_tag_and_tcp_checksum_verifies() {
        let ip = V4 {
            src: Ipv4Addr::new(192, 168, 10, 21),
            dst: Ipv4Addr::new(192, 168, 10, 5),
            ttl: 64,
            id: 7,
            df: true,
        };
        let tcp = Tcp {
            sport: 554,
            dport: 40000,
            seq: 1,
            ack: 2,
            flags: ACK | PSH,
            window: 501,
            options: &[],
        };
        let f = tcp_v4(&l2(Some(10)), &ip, &tcp, b"RTSP/1.0 200 OK\r\n");
        assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(&f[16..18], &[0x08, 0x00]);
        let seg = &f[38..];
        // Re-summing the segment including its checksum over the pseudo-header gives 0.
        assert_eq!(checksum::transport_v4(ip.src, ip.dst, 6, seg), 0);
        assert_eq!(seg[12], 0x50);
    }

    #[test]
    fn arp_reply_layout() {
        let f = arp(
            &l2(None),
            2,
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(10, 0, 0, 1),
            [2, 0, 0, 0, 0, 2],
            Ipv4Addr::new(10, 0, 0, 2),
        );
        assert_eq!(f.len(), 60);
        assert_eq!(&f[12..22], &[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
    }

    #[test]
    fn multicast_macs() {
        assert_eq!(
            multicast_mac_v4(Ipv4Addr::new(239, 255, 255, 250)),
            [1, 0, 0x5e, 0x7f, 0xff, 0xfa]
        );
        assert_eq!(
            multicast_mac_v6("ff02::fb".parse().unwrap()),
            [0x33, 0x33, 0, 0, 0, 0xfb]
        );
    }

    #[test]
    fn forwarded_rewrite_keeps_checksum_valid() {
        let ip = V4 {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            ttl: 64,
            id: 1,
            df: true,
        };
        let mut f = udp_v4(&l2(Some(10)), &ip, 1, 2, b"x");
        rewrite_forwarded(&mut f, [2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 2], 1);
        assert_eq!(f[18 + 8], 63);
        assert_eq!(checksum::internet_checksum(&f[18..38]), 0);
        assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 9]);
    }
}
