//! Unit tests of the decoder on hand-written frames (Suricata style: one commented row per
//! header field group). Checksums are left 0: the decoder does not verify them.

use super::*;
use crate::packet::tcp_flags;
use crate::time::Timestamp;

// ---------------------------------------------------------------- building blocks

/// Ethernet II, ethertype IPv4.
const ETH_V4: [u8; 14] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, // dst MAC 00:11:22:33:44:55
    0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, // src MAC 66:77:88:99:aa:bb
    0x08, 0x00, // ethertype IPv4
];

/// Ethernet II, ethertype IPv6.
const ETH_V6: [u8; 14] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, // dst MAC
    0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, // src MAC
    0x86, 0xdd, // ethertype IPv6
];

/// IPv4 192.168.1.10 -> 192.168.1.20, TCP, total length 44 (20 IP + 20 TCP + 4 data).
const IPV4_TCP_44: [u8; 20] = [
    0x45, 0x00, 0x00, 0x2c, // version 4, IHL 5, TOS 0, total length 44
    0xab, 0xcd, 0x40, 0x00, // id 0xabcd, DF, offset 0
    0x40, 0x06, 0x00, 0x00, // TTL 64, proto TCP, checksum (unchecked)
    0xc0, 0xa8, 0x01, 0x0a, // src 192.168.1.10
    0xc0, 0xa8, 0x01, 0x14, // dst 192.168.1.20
];

/// TCP 49152 -> 80, SYN|ACK, data offset 5.
const TCP_SYNACK: [u8; 20] = [
    0xc0, 0x00, 0x00, 0x50, // src port 49152, dst port 80
    0x00, 0x00, 0x10, 0x00, // seq 4096
    0x00, 0x00, 0x20, 0x00, // ack 8192
    0x50, 0x12, 0xfa, 0xf0, // data offset 5, flags SYN|ACK, window 64240
    0x00, 0x00, 0x00, 0x00, // checksum, urgent pointer
];

/// Four bytes of application data.
const DATA4: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

/// UDP 40000 -> 9999, length 12 (8 header + 4 data).
const UDP_9999: [u8; 8] = [
    0x9c, 0x40, 0x27, 0x0f, // src port 40000, dst port 9999
    0x00, 0x0c, 0x00, 0x00, // length 12, checksum
];

/// IPv4 10.0.0.1 -> 10.0.0.2, UDP, total length 32 (20 + 8 + 4).
const IPV4_UDP_32: [u8; 20] = [
    0x45, 0x00, 0x00, 0x20, // version 4, IHL 5, total length 32
    0x00, 0x01, 0x00, 0x00, // id 1, no flags
    0x80, 0x11, 0x00, 0x00, // TTL 128, proto UDP
    0x0a, 0x00, 0x00, 0x01, // src 10.0.0.1
    0x0a, 0x00, 0x00, 0x02, // dst 10.0.0.2
];

/// IPv6 2001:db8::1 -> 2001:db8::2, next header UDP, payload length 12, hop limit 255.
const IPV6_UDP_12: [u8; 40] = [
    0x60, 0x00, 0x00, 0x00, // version 6, traffic class, flow label
    0x00, 0x0c, 0x11, 0xff, // payload length 12, next header UDP, hop limit 255
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // src 2001:db8::
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //     ...1
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // dst 2001:db8::
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //     ...2
];

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn frame(link: LinkType, data: &[u8]) -> Frame<'_> {
    Frame {
        ts: Timestamp(42),
        link,
        orig_len: data.len() as u32,
        data,
    }
}

fn ip_of(link: LinkType, data: &[u8]) -> IpPacket {
    match decode(&frame(link, data)) {
        Ok(PacketSummary::Ip(p)) => p,
        other => panic!("expected an IP packet, got {other:?}"),
    }
}

fn err_of(link: LinkType, data: &[u8]) -> DecodeError {
    match decode(&frame(link, data)) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> Addr {
    Addr::v4([a, b, c, d])
}

fn v6_db8(last: u8) -> Addr {
    let mut o = [0u8; 16];
    o[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    o[15] = last;
    Addr::v6(o)
}

// ---------------------------------------------------------------- link types

#[test]
fn ethernet_ipv4_tcp_all_fields() {
    let f = cat(&[&ETH_V4, &IPV4_TCP_44, &TCP_SYNACK, &DATA4]);
    let p = ip_of(LinkType::Ethernet, &f);
    assert_eq!(p.ts, Timestamp(42));
    assert_eq!(p.wire_len, 58);
    assert_eq!(p.dst_mac, Some([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]));
    assert_eq!(p.src_mac, Some([0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb]));
    assert_eq!((p.src, p.dst), (v4(192, 168, 1, 10), v4(192, 168, 1, 20)));
    assert_eq!((p.proto, p.src_port, p.dst_port), (proto::TCP, 49152, 80));
    assert!(p.has_l4);
    assert_eq!((p.ip_len, p.payload_len, p.ttl), (44, 4, 64));
    assert_eq!(p.tcp_flags, tcp_flags::SYN | tcp_flags::ACK);
    assert_eq!((p.tcp_seq, p.tcp_ack, p.tcp_window), (4096, 8192, 64240));
    assert_eq!(
        p.frag,
        FragInfo {
            is_fragment: false,
            offset: 0,
            more: false,
            id: 0xabcd
        }
    );
    assert_eq!(
        (p.vlan, p.mpls_labels, p.tunnel, p.icmp_id),
        ([0, 0], 0, Tunnel::None, 0)
    );
    assert_eq!(p.app, AppHint::None);
}

#[test]
fn ethernet_padding_is_not_payload() {
    // 40-byte IP packet (no data) padded to the 60-byte Ethernet minimum.
    let ip40: [u8; 20] = [
        0x45, 0x00, 0x00, 0x28, // total length 40
        0x00, 0x00, 0x40, 0x00, // id 0, DF
        0x40, 0x06, 0x00, 0x00, // TTL 64, TCP
        0xc0, 0xa8, 0x01, 0x0a, // src
        0xc0, 0xa8, 0x01, 0x14, // dst
    ];
    let f = cat(&[&ETH_V4, &ip40, &TCP_SYNACK, &[0u8; 6]]);
    let p = ip_of(LinkType::Ethernet, &f);
    assert_eq!((p.wire_len, p.ip_len, p.payload_len), (60, 40, 0));
}

#[test]
fn linux_sll_v1() {
    let sll: [u8; 16] = [
        0x00, 0x00, // packet type: to us
        0x00, 0x01, // ARPHRD_ETHER
        0x00, 0x06, // address length 6
        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0x00, 0x00, // link address + padding
        0x08, 0x00, // protocol IPv4
    ];
    let f = cat(&[&sll, &IPV4_UDP_32, &UDP_9999, &DATA4]);
    let p = ip_of(LinkType::LinuxSll, &f);
    assert_eq!((p.src, p.dst), (v4(10, 0, 0, 1), v4(10, 0, 0, 2)));
    assert_eq!(
        (p.proto, p.src_port, p.dst_port, p.payload_len),
        (proto::UDP, 40000, 9999, 4)
    );
    assert_eq!((p.src_mac, p.dst_mac), (None, None));
    assert_eq!(
        err_of(LinkType::LinuxSll, &sll[..15]),
        DecodeError::TruncatedLink
    );
}

#[test]
fn linux_sll2() {
    let sll2: [u8; 20] = [
        0x86, 0xdd, 0x00, 0x00, // protocol IPv6, reserved
        0x00, 0x00, 0x00, 0x02, // interface index 2
        0x00, 0x01, 0x04, 0x06, // ARPHRD_ETHER, packet type outgoing, address length 6
        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0x00, 0x00, // link address + padding
    ];
    let f = cat(&[&sll2, &IPV6_UDP_12, &UDP_9999, &DATA4]);
    let p = ip_of(LinkType::LinuxSll2, &f);
    assert_eq!((p.src, p.dst), (v6_db8(1), v6_db8(2)));
    assert_eq!((p.proto, p.src_port, p.dst_port), (proto::UDP, 40000, 9999));
    assert_eq!((p.ip_len, p.payload_len, p.ttl), (52, 4, 255));
    assert_eq!(
        err_of(LinkType::LinuxSll2, &sll2[..19]),
        DecodeError::TruncatedLink
    );
}

#[test]
fn raw_ipv4_and_ipv6_links() {
    let f4 = cat(&[&IPV4_UDP_32, &UDP_9999, &DATA4]);
    let f6 = cat(&[&IPV6_UDP_12, &UDP_9999, &DATA4]);
    assert_eq!(ip_of(LinkType::Raw, &f4).src, v4(10, 0, 0, 1));
    assert_eq!(ip_of(LinkType::Raw, &f6).src, v6_db8(1));
    assert_eq!(ip_of(LinkType::Ipv4, &f4).dst_port, 9999);
    assert_eq!(ip_of(LinkType::Ipv6, &f6).dst_port, 9999);
    // The fixed-version link types check the version nibble.
    assert_eq!(err_of(LinkType::Ipv4, &f6), DecodeError::BadIpHeader);
    assert_eq!(err_of(LinkType::Ipv6, &f4), DecodeError::BadIpHeader);
    assert_eq!(
        err_of(LinkType::Raw, &[0x50, 0, 0, 0]),
        DecodeError::BadIpHeader
    );
    assert_eq!(err_of(LinkType::Raw, &[]), DecodeError::TruncatedIp);
}

#[test]
fn null_loopback_both_byte_orders_and_loop() {
    let f4 = cat(&[&IPV4_UDP_32, &UDP_9999, &DATA4]);
    let f6 = cat(&[&IPV6_UDP_12, &UDP_9999, &DATA4]);
    // AF_INET = 2, little-endian host.
    let le_inet = cat(&[&[0x02, 0x00, 0x00, 0x00], &f4]);
    assert_eq!(ip_of(LinkType::Null, &le_inet).src, v4(10, 0, 0, 1));
    // AF_INET = 2, big-endian host.
    let be_inet = cat(&[&[0x00, 0x00, 0x00, 0x02], &f4]);
    assert_eq!(ip_of(LinkType::Null, &be_inet).src, v4(10, 0, 0, 1));
    // AF_INET6: 10 (Linux), 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS), either order.
    for af in [10u8, 24, 28, 30] {
        let le = cat(&[&[af, 0, 0, 0], &f6]);
        let be = cat(&[&[0, 0, 0, af], &f6]);
        assert_eq!(ip_of(LinkType::Null, &le).src, v6_db8(1), "AF {af} LE");
        assert_eq!(ip_of(LinkType::Null, &be).src, v6_db8(1), "AF {af} BE");
    }
    // LOOP is always network order.
    let loop_inet = cat(&[&[0x00, 0x00, 0x00, 0x02], &f4]);
    assert_eq!(ip_of(LinkType::Loop, &loop_inet).src, v4(10, 0, 0, 1));
    let loop_le = cat(&[&[0x02, 0x00, 0x00, 0x00], &f4]);
    assert_eq!(err_of(LinkType::Loop, &loop_le), DecodeError::NotIp);
    // Unknown family (AF_IPX = 23 on Linux... use 7) and a short header.
    assert_eq!(
        err_of(LinkType::Null, &cat(&[&[7, 0, 0, 0], &f4])),
        DecodeError::NotIp
    );
    assert_eq!(
        err_of(LinkType::Null, &[2, 0, 0]),
        DecodeError::TruncatedLink
    );
    assert_eq!((ip_of(LinkType::Null, &le_inet).src_mac), None);
}

#[test]
fn unsupported_link_type() {
    let f = cat(&[&ETH_V4, &IPV4_TCP_44, &TCP_SYNACK, &DATA4]);
    assert_eq!(
        err_of(LinkType::Other(160), &f),
        DecodeError::UnsupportedLinkType
    );
}

// ---------------------------------------------------------------- VLAN, MPLS

#[test]
fn vlan_8021q() {
    let eth: [u8; 18] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, // dst MAC
        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, // src MAC
        0x81, 0x00, 0x20, 0x64, // 802.1Q, PCP 1, VID 100
        0x08, 0x00, // IPv4
    ];
    let p = ip_of(
        LinkType::Ethernet,
        &cat(&[&eth, &IPV4_UDP_32, &UDP_9999, &DATA4]),
    );
    assert_eq!(p.vlan, [100, 0]);
    assert_eq!(p.dst_port, 9999);
}

#[test]
fn qinq_88a8_and_9100() {
    let ad: [u8; 22] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, // dst MAC
        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, // src MAC
        0x88, 0xa8, 0x00, 0x0a, // 802.1ad S-tag, VID 10
        0x81, 0x00, 0x0f, 0xff, // 802.1Q C-tag, VID 4095
        0x08, 0x00, // IPv4
    ];
    let p = ip_of(
        LinkType::Ethernet,
        &cat(&[&ad, &IPV4_UDP_32, &UDP_9999, &DATA4]),
    );
    assert_eq!(p.vlan, [10, 4095]);
    let old: [u8; 22] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, // dst MAC
        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, // src MAC
        0x91, 0x00, 0x00, 0x14, // 0x9100 outer tag, VID 20
        0x81, 0x00, 0x00, 0x1e, // 802.1Q inner tag, VID 30
        0x86, 0xdd, // IPv6
    ];
    let p = ip_of(
        LinkType::Ethernet,
        &cat(&[&old, &IPV6_UDP_12, &UDP_9999, &DATA4]),
    );
    assert_eq!(p.vlan, [20, 30]);
    assert_eq!(p.src, v6_db8(1));
}

#[test]
fn three_tags_keep_the_outer_two() {
    let eth: [u8; 26] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, // dst MAC
        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, // src MAC
        0x88, 0xa8, 0x00, 0x01, // VID 1
        0x81, 0x00, 0x00, 0x02, // VID 2
        0x81, 0x00, 0x00, 0x03, // VID 3 (dropped)
        0x08, 0x00, // IPv4
    ];
    let p = ip_of(
        LinkType::Ethernet,
        &cat(&[&eth, &IPV4_UDP_32, &UDP_9999, &DATA4]),
    );
    assert_eq!(p.vlan, [1, 2]);
    assert_eq!(
        err_of(LinkType::Ethernet, &eth[..22]),
        DecodeError::TruncatedLink
    );
}

#[test]
fn mpls_two_labels_ipv4() {
    let eth: [u8; 22] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, // dst MAC
        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, // src MAC
        0x88, 0x47, // MPLS unicast
        0x00, 0x01, 0x00, 0x40, // label 16, TC 0, S 0, TTL 64
        0x00, 0x01, 0x11, 0x40, // label 17, TC 0, S 1, TTL 64
    ];
    let p = ip_of(
        LinkType::Ethernet,
        &cat(&[&eth, &IPV4_UDP_32, &UDP_9999, &DATA4]),
    );
    assert_eq!(p.mpls_labels, 2);
    assert_eq!((p.src, p.dst_port), (v4(10, 0, 0, 1), 9999));
    // Label stack cut before bottom of stack.
    assert_eq!(
        err_of(LinkType::Ethernet, &eth[..18]),
        DecodeError::TruncatedLink
    );
}

#[test]
fn mpls_multicast_ipv6_and_pseudowire_ethernet() {
    let eth: [u8; 18] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, // dst MAC
        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, // src MAC
        0x88, 0x48, // MPLS multicast
        0x00, 0x01, 0x01, 0x40, // label 16, S 1
    ];
    let p = ip_of(
        LinkType::Ethernet,
        &cat(&[&eth, &IPV6_UDP_12, &UDP_9999, &DATA4]),
    );
    assert_eq!((p.mpls_labels, p.src), (1, v6_db8(1)));

    let pw: [u8; 36] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, // outer dst MAC
        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, // outer src MAC
        0x88, 0x47, // MPLS unicast
        0x00, 0x01, 0x01, 0x40, // label 16, S 1
        0x00, 0x00, 0x00, 0x00, // pseudowire control word
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // inner dst MAC
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // inner src MAC
        0x08, 0x00, // IPv4
    ];
    let p = ip_of(
        LinkType::Ethernet,
        &cat(&[&pw, &IPV4_UDP_32, &UDP_9999, &DATA4]),
    );
    assert_eq!(p.mpls_labels, 1);
    assert_eq!(p.src_mac, Some([0x02, 0, 0, 0, 0, 0x02]));
    assert_eq!(p.dst_port, 9999);
    // Some other payload nibble is not IP.
    let mut odd = cat(&[&eth, &IPV4_UDP_32]);
    odd[18] = 0x70;
    assert_eq!(err_of(LinkType::Ethernet, &odd), DecodeError::NotIp);
}

// ---------------------------------------------------------------- IPv4, IPv6

#[test]
fn ipv4_with_options() {
    let ip: [u8; 24] = [
        0x46, 0x00, 0x00, 0x30, // version 4, IHL 6 (24 bytes), total length 48
        0x00, 0x02, 0x00, 0x00, // id 2
        0x01, 0x06, 0x00, 0x00, // TTL 1, TCP
        0xc0, 0xa8, 0x01, 0x0a, // src 192.168.1.10
        0xc0, 0xa8, 0x01, 0x14, // dst 192.168.1.20
        0x94, 0x04, 0x00, 0x00, // Router Alert option
    ];
    let f = cat(&[&ETH_V4, &ip, &TCP_SYNACK, &DATA4]);
    let p = ip_of(LinkType::Ethernet, &f);
    assert_eq!((p.src_port, p.dst_port, p.ttl), (49152, 80, 1));
    assert_eq!((p.ip_len, p.payload_len), (48, 4));
    // Cut inside the options.
    assert_eq!(
        err_of(LinkType::Ethernet, &f[..14 + 22]),
        DecodeError::TruncatedIp
    );
}

#[test]
fn ipv6_extension_chain_with_first_fragment() {
    let ip6: [u8; 40] = [
        0x60, 0x00, 0x00, 0x00, // version 6
        0x00, 0x38, 0x00, 0x40, // payload length 56, next header hop-by-hop, hop limit 64
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // src 2001:db8::1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // dst 2001:db8::2
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
    ];
    let exts: [u8; 36] = [
        0x2b, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00,
        0x00, // hop-by-hop: next routing, len 0, PadN
        0x3c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, // routing: next dest opts, len 0, type 0
        0x33, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, // dest opts: next AH, len 0, PadN
        0x2c, 0x01, 0x00, 0x00, // AH: next fragment, len 1 = (1 + 2) * 4 = 12 bytes, reserved
        0x00, 0x00, 0x10, 0x00, // AH: SPI 4096
        0x00, 0x00, 0x00, 0x01, // AH: sequence number 1 (no ICV)
    ];
    let frag: [u8; 8] = [
        0x11, 0x00, 0x00, 0x01, // fragment: next UDP, reserved, offset 0, M = 1
        0xde, 0xad, 0xbe, 0xef, // identification 0xdeadbeef
    ];
    let f = cat(&[&ETH_V6, &ip6, &exts, &frag, &UDP_9999, &DATA4]);
    let p = ip_of(LinkType::Ethernet, &f);
    assert_eq!((p.proto, p.src_port, p.dst_port), (proto::UDP, 40000, 9999));
    assert!(p.has_l4, "first fragment has its UDP header read");
    assert_eq!(
        p.frag,
        FragInfo {
            is_fragment: true,
            offset: 0,
            more: true,
            id: 0xdead_beef
        }
    );
    // 40 + 56 payload; headers 40 + 36 + 8; UDP 8: 96 - 84 - 8 = 4.
    assert_eq!((p.ip_len, p.payload_len), (96, 4));
    // Cut inside the extension chain.
    assert_eq!(
        err_of(LinkType::Ethernet, &f[..14 + 40 + 20]),
        DecodeError::TruncatedIp
    );
}

#[test]
fn ipv6_non_first_fragment() {
    let ip6: [u8; 40] = [
        0x60, 0x00, 0x00, 0x00, // version 6
        0x00, 0x14, 0x2c, 0x40, // payload length 20, next header fragment, hop limit 64
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // src 2001:db8::1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // dst 2001:db8::2
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
    ];
    let frag: [u8; 8] = [
        0x06, 0x00, 0x05, 0xa8, // next TCP, offset 181 (1448 bytes), M = 0
        0x00, 0x00, 0x00, 0x07, // identification 7
    ];
    let p = ip_of(
        LinkType::Ethernet,
        &cat(&[&ETH_V6, &ip6, &frag, &[0xaa; 12]]),
    );
    assert_eq!(
        p.frag,
        FragInfo {
            is_fragment: true,
            offset: 181,
            more: false,
            id: 7
        }
    );
    assert_eq!(
        (p.proto, p.src_port, p.dst_port, p.has_l4),
        (proto::TCP, 0, 0, false)
    );
    assert_eq!((p.ip_len, p.payload_len), (60, 12));
}

/// IPv4 first fragment: 10.0.0.1 -> 10.0.0.2, UDP, MF set, offset 0, total length 36.
const IPV4_FIRST_FRAG: [u8; 20] = [
    0x45, 0x00, 0x00, 0x24, // total length 36
    0x12, 0x34, 0x20, 0x00, // id 0x1234, MF, offset 0
    0x40, 0x11, 0x00, 0x00, // TTL 64, UDP
    0x0a, 0x00, 0x00, 0x01, // src 10.0.0.1
    0x0a, 0x00, 0x00, 0x02, // dst 10.0.0.2
];

#[test]
fn ipv4_first_and_later_fragments() {
    let udp: [u8; 16] = [
        0x13, 0x88, 0x00, 0x35, // src port 5000, dst port 53
        0x05, 0xdc, 0x00, 0x00, // UDP length 1500 (whole datagram), checksum
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // first 8 payload bytes
    ];
    let p = ip_of(LinkType::Ethernet, &cat(&[&ETH_V4, &IPV4_FIRST_FRAG, &udp]));
    assert_eq!(
        p.frag,
        FragInfo {
            is_fragment: true,
            offset: 0,
            more: true,
            id: 0x1234
        }
    );
    assert_eq!(
        (p.src_port, p.dst_port, p.has_l4, p.payload_len),
        (5000, 53, true, 8)
    );

    let later: [u8; 20] = [
        0x45, 0x00, 0x00, 0x24, // total length 36
        0x12, 0x34, 0x00, 0x02, // id 0x1234, no MF, offset 2 (16 bytes)
        0x40, 0x11, 0x00, 0x00, // TTL 64, UDP
        0x0a, 0x00, 0x00, 0x01, // src
        0x0a, 0x00, 0x00, 0x02, // dst
    ];
    // Payload bytes that would look like ports must not be read as ports.
    let p = ip_of(LinkType::Ethernet, &cat(&[&ETH_V4, &later, &udp]));
    assert_eq!(
        p.frag,
        FragInfo {
            is_fragment: true,
            offset: 2,
            more: false,
            id: 0x1234
        }
    );
    assert_eq!(
        (p.src_port, p.dst_port, p.has_l4, p.payload_len),
        (0, 0, false, 16)
    );
    assert!(p.frag.is_non_first());
}

/// SCTP: ports from the common header, the chunks as payload; a complete packet too
/// short for the common header is malformed.
#[test]
fn sctp_ports_and_payload() {
    let ip: [u8; 20] = [
        0x45, 0x00, 0x00, 0x30, // total length 48 = 20 + 12 common header + 16 chunk
        0x00, 0x00, 0x00, 0x00, // id 0
        0x40, 0x84, 0x00, 0x00, // TTL 64, SCTP
        0x0a, 0x00, 0x00, 0x01, // src
        0x0a, 0x00, 0x00, 0x02, // dst
    ];
    let sctp: [u8; 28] = [
        0x0b, 0x59, 0x0b, 0x59, // ports 2905 -> 2905 (M3UA)
        0x00, 0x00, 0x00, 0x00, // verification tag 0 (INIT)
        0x00, 0x00, 0x00, 0x00, // checksum
        0x01, 0x00, 0x00, 0x10, // INIT chunk, length 16
        0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
    ];
    let p = ip_of(LinkType::Ethernet, &cat(&[&ETH_V4, &ip, &sctp]));
    assert_eq!(
        (p.proto, p.src_port, p.dst_port, p.has_l4, p.payload_len),
        (proto::SCTP, 2905, 2905, true, 16)
    );
    let mut short = ip;
    short[3] = 20 + 8; // total length leaves 8 bytes for a 12-byte header
    assert_eq!(
        err_of(LinkType::Ethernet, &cat(&[&ETH_V4, &short, &sctp[..8]])),
        DecodeError::BadTransportHeader
    );
}

#[test]
fn tiny_tcp_first_fragment_reads_ports_and_flags() {
    let ip: [u8; 20] = [
        0x45, 0x00, 0x00, 0x24, // total length 36: only 16 TCP bytes
        0x00, 0x09, 0x20, 0x00, // id 9, MF, offset 0
        0x40, 0x06, 0x00, 0x00, // TTL 64, TCP
        0x0a, 0x00, 0x00, 0x01, // src
        0x0a, 0x00, 0x00, 0x02, // dst
    ];
    let p = ip_of(LinkType::Ethernet, &cat(&[&ETH_V4, &ip, &TCP_SYNACK[..16]]));
    // Data offset and flags are in the fragment: the flags count for the TCP state;
    // the header's last 4 bytes (checksum, urgent pointer) are in the next fragment.
    assert_eq!(
        (p.src_port, p.dst_port, p.has_l4, p.payload_len),
        (49152, 80, true, 0)
    );
    assert_eq!((p.tcp_flags, p.tcp_seq, p.tcp_window), (0x12, 4096, 64240));
}

#[test]
fn ip_length_capped_at_wire_length() {
    let ip: [u8; 20] = [
        0x45, 0x00, 0x05, 0xdc, // total length 1500 (a lie)
        0x00, 0x00, 0x00, 0x00, // id 0
        0x40, 0x11, 0x00, 0x00, // UDP
        0x0a, 0x00, 0x00, 0x01, // src
        0x0a, 0x00, 0x00, 0x02, // dst
    ];
    let f = cat(&[&ETH_V4, &ip, &UDP_9999, &[0u8; 18]]);
    let p = ip_of(LinkType::Ethernet, &f);
    assert_eq!((p.wire_len, p.ip_len, p.payload_len), (60, 46, 18));
}

#[test]
fn snaplen_truncated_frame_keeps_five_tuple() {
    let full = cat(&[&ETH_V4, &IPV4_TCP_44, &TCP_SYNACK, &DATA4]);
    // Captured up to the TCP ports only (snaplen 38 of 58).
    let fr = Frame {
        ts: Timestamp(1),
        link: LinkType::Ethernet,
        orig_len: 58,
        data: &full[..38],
    };
    let Ok(PacketSummary::Ip(p)) = decode(&fr) else {
        panic!("truncated frame lost")
    };
    assert_eq!((p.src, p.dst), (v4(192, 168, 1, 10), v4(192, 168, 1, 20)));
    assert_eq!((p.proto, p.src_port, p.dst_port), (proto::TCP, 49152, 80));
    assert!(!p.has_l4);
    assert_eq!((p.tcp_flags, p.wire_len, p.ip_len), (0, 58, 44));
    // Up to the flags byte: flags and data offset are read, so the packet counts for the
    // TCP state with its real payload length; the window is unknown (not zero).
    let fr = Frame {
        data: &full[..14 + 20 + 14],
        ..fr
    };
    let Ok(PacketSummary::Ip(p)) = decode(&fr) else {
        panic!("truncated frame lost")
    };
    assert_eq!(
        (p.tcp_flags, p.has_l4, p.payload_len, p.tcp_window),
        (0x12, true, 4, u16::MAX)
    );
    // One byte short of the flags: header incomplete, no flags.
    let fr = Frame {
        data: &full[..14 + 20 + 13],
        ..fr
    };
    let Ok(PacketSummary::Ip(p)) = decode(&fr) else {
        panic!("truncated frame lost")
    };
    assert_eq!((p.tcp_flags, p.has_l4, p.payload_len), (0, false, 24));
    // Whole header but no data: has_l4, payload from the IP length.
    let fr = Frame {
        data: &full[..54],
        ..fr
    };
    let Ok(PacketSummary::Ip(p)) = decode(&fr) else {
        panic!("truncated frame lost")
    };
    assert_eq!((p.has_l4, p.payload_len), (true, 4));
    // Cut inside the IP header and inside Ethernet.
    let fr = Frame {
        data: &full[..30],
        ..fr
    };
    assert_eq!(decode(&fr), Err(DecodeError::TruncatedIp));
    let fr = Frame {
        data: &full[..13],
        ..fr
    };
    assert_eq!(decode(&fr), Err(DecodeError::TruncatedLink));
}

// ---------------------------------------------------------------- ICMP

#[test]
fn icmp_echo_and_unreachable() {
    let ip: [u8; 20] = [
        0x45, 0x00, 0x00, 0x1c, // total length 28
        0x00, 0x00, 0x00, 0x00, // id 0
        0x40, 0x01, 0x00, 0x00, // TTL 64, ICMP
        0x0a, 0x00, 0x00, 0x01, // src
        0x0a, 0x00, 0x00, 0x02, // dst
    ];
    let echo: [u8; 8] = [
        0x08, 0x00, 0x00, 0x00, // type 8 echo request, code 0, checksum
        0x12, 0x34, 0x00, 0x01, // identifier 0x1234, sequence 1
    ];
    let p = ip_of(LinkType::Ethernet, &cat(&[&ETH_V4, &ip, &echo]));
    assert_eq!(
        (p.proto, p.src_port, p.dst_port, p.icmp_id),
        (proto::ICMP, 8, 0, 0x1234)
    );
    assert_eq!((p.has_l4, p.payload_len), (true, 0));
    let unreach: [u8; 8] = [
        0x03, 0x03, 0x00, 0x00, // type 3, code 3 port unreachable
        0x12, 0x34, 0x00, 0x01, // unused (not an identifier)
    ];
    let p = ip_of(LinkType::Ethernet, &cat(&[&ETH_V4, &ip, &unreach]));
    assert_eq!((p.src_port, p.dst_port, p.icmp_id), (3, 3, 0));
}

#[test]
fn icmpv6_echo() {
    let ip6: [u8; 40] = [
        0x60, 0x00, 0x00, 0x00, // version 6
        0x00, 0x08, 0x3a, 0x40, // payload length 8, ICMPv6, hop limit 64
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // src 2001:db8::1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // dst 2001:db8::2
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
    ];
    let echo: [u8; 8] = [
        0x81, 0x00, 0x00, 0x00, // type 129 echo reply, code 0
        0xbe, 0xef, 0x00, 0x02, // identifier 0xbeef, sequence 2
    ];
    let p = ip_of(LinkType::Ethernet, &cat(&[&ETH_V6, &ip6, &echo]));
    assert_eq!(
        (p.proto, p.src_port, p.dst_port, p.icmp_id),
        (proto::ICMPV6, 129, 0, 0xbeef)
    );
}

// ---------------------------------------------------------------- tunnels

#[test]
fn gre_with_key_ipv4() {
    let outer: [u8; 20] = [
        0x45, 0x00, 0x00, 0x3c, // total length 60 = 20 + 8 GRE + 32 inner
        0x00, 0x00, 0x00, 0x00, // id 0
        0x40, 0x2f, 0x00, 0x00, // TTL 64, GRE
        0xac, 0x10, 0x00, 0x01, // src 172.16.0.1
        0xac, 0x10, 0x00, 0x02, // dst 172.16.0.2
    ];
    let gre: [u8; 8] = [
        0x20, 0x00, 0x08, 0x00, // flags K, version 0, protocol IPv4
        0x12, 0x34, 0x56, 0x78, // key 0x12345678
    ];
    let f = cat(&[&ETH_V4, &outer, &gre, &IPV4_UDP_32, &UDP_9999, &DATA4]);
    let p = ip_of(LinkType::Ethernet, &f);
    assert_eq!(p.tunnel, Tunnel::Gre { key: 0x1234_5678 });
    assert_eq!(
        (p.src, p.dst, p.dst_port),
        (v4(10, 0, 0, 1), v4(10, 0, 0, 2), 9999)
    );
    assert_eq!((p.wire_len, p.ip_len), (74, 32));
    assert_eq!(p.src_mac, Some([0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb]));
    // GRE header cut before the key: malformed tunnel.
    assert_eq!(
        err_of(LinkType::Ethernet, &f[..14 + 20 + 6]),
        DecodeError::BadTunnel
    );
}

#[test]
fn gre_checksum_key_seq_transparent_ethernet() {
    let outer: [u8; 20] = [
        0x45, 0x00, 0x00, 0x5a, // total length 90 = 20 + 16 GRE + 14 + 40 inner
        0x00, 0x00, 0x00, 0x00, // id 0
        0x40, 0x2f, 0x00, 0x00, // TTL 64, GRE
        0xac, 0x10, 0x00, 0x01, // src
        0xac, 0x10, 0x00, 0x02, // dst
    ];
    let gre: [u8; 16] = [
        0xb0, 0x00, 0x65, 0x58, // flags C|K|S, version 0, protocol 0x6558 (Ethernet)
        0x00, 0x00, 0x00, 0x00, // checksum, reserved
        0x00, 0x00, 0x00, 0x2a, // key 42
        0x00, 0x00, 0x00, 0x01, // sequence 1
    ];
    let inner_eth: [u8; 14] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // inner dst MAC
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // inner src MAC
        0x08, 0x00, // IPv4
    ];
    let f = cat(&[
        &ETH_V4,
        &outer,
        &gre,
        &inner_eth,
        &IPV4_TCP_44,
        &TCP_SYNACK,
        &DATA4,
    ]);
    let p = ip_of(LinkType::Ethernet, &f);
    assert_eq!(p.tunnel, Tunnel::Gre { key: 42 });
    assert_eq!(p.src_mac, Some([0x02, 0, 0, 0, 0, 0x02]));
    assert_eq!((p.src_port, p.dst_port, p.payload_len), (49152, 80, 4));
}

/// ERSPAN type II (GRE S bit, 8-byte header), type I (no header) and type III (12
/// bytes, +8 with the O flag): the mirrored frame is decoded.
#[test]
fn erspan_types_one_two_and_three_are_decapsulated() {
    let inner_eth: [u8; 14] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // inner dst MAC
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // inner src MAC
        0x08, 0x00, // IPv4
    ];
    let mirrored = cat(&[&inner_eth, &IPV4_TCP_44, &TCP_SYNACK, &DATA4]);
    let frame = |gre: &[u8], erspan: &[u8]| {
        let total = (20 + gre.len() + erspan.len() + mirrored.len()) as u16;
        let mut outer: [u8; 20] = [
            0x45, 0x00, 0x00, 0x00, // total length set below
            0x00, 0x00, 0x00, 0x00, // id 0
            0x40, 0x2f, 0x00, 0x00, // TTL 64, GRE
            0xac, 0x10, 0x00, 0x01, // src
            0xac, 0x10, 0x00, 0x02, // dst
        ];
        outer[2..4].copy_from_slice(&total.to_be_bytes());
        cat(&[&ETH_V4, &outer, gre, erspan, &mirrored])
    };
    let inner_of = |f: &[u8]| {
        let p = ip_of(LinkType::Ethernet, f);
        (p.src_mac, p.src_port, p.dst_port, p.payload_len, p.tunnel)
    };
    let want = (
        Some([0x02, 0, 0, 0, 0, 0x02]),
        49152,
        80,
        4,
        Tunnel::Gre { key: 0 },
    );
    let gre_seq: [u8; 8] = [0x10, 0x00, 0x88, 0xbe, 0x00, 0x00, 0x00, 0x07];
    let erspan2: [u8; 8] = [0x10, 0x64, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x00]; // ver 1, VLAN 100
    assert_eq!(inner_of(&frame(&gre_seq, &erspan2)), want, "type II");
    let gre_plain: [u8; 4] = [0x00, 0x00, 0x88, 0xbe];
    assert_eq!(inner_of(&frame(&gre_plain, &[])), want, "type I");
    let gre3: [u8; 8] = [0x10, 0x00, 0x22, 0xeb, 0x00, 0x00, 0x00, 0x07];
    let mut erspan3 = [0u8; 12];
    erspan3[0] = 0x20; // ver 2
    assert_eq!(inner_of(&frame(&gre3, &erspan3)), want, "type III");
    erspan3[11] = 0x01; // O flag: an 8-byte platform-specific subheader follows
    let with_sub = [&erspan3[..], &[0u8; 8]].concat();
    assert_eq!(
        inner_of(&frame(&gre3, &with_sub)),
        want,
        "type III with subheader"
    );
    // Type III frame type 2: an IP packet without Ethernet header.
    let mut erspan3_ip = [0u8; 12];
    erspan3_ip[0] = 0x20;
    erspan3_ip[10] = 2 << 2;
    let ip_only = cat(&[&IPV4_TCP_44, &TCP_SYNACK, &DATA4]);
    let f = {
        let total = (20 + 8 + 12 + ip_only.len()) as u16;
        let mut outer: [u8; 20] = [
            0x45, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x2f, 0x00, 0x00, 0xac, 0x10,
            0x00, 0x01, 0xac, 0x10, 0x00, 0x02,
        ];
        outer[2..4].copy_from_slice(&total.to_be_bytes());
        cat(&[&ETH_V4, &outer, &gre3, &erspan3_ip, &ip_only])
    };
    let p = ip_of(LinkType::Ethernet, &f);
    assert_eq!(
        (p.src_port, p.dst_port, p.payload_len, p.tunnel),
        (49152, 80, 4, Tunnel::Gre { key: 0 })
    );
    // Another frame type (7): not decoded, the packet stays in its GRE flow.
    erspan3_ip[10] = 7 << 2;
    let f7 = frame(&gre3, &erspan3_ip);
    let p = ip_of(LinkType::Ethernet, &f7);
    assert_eq!((p.proto, p.tunnel), (proto::GRE, Tunnel::None));
    // A type III header cut before its flags: malformed tunnel.
    let f = frame(&gre3, &erspan3);
    assert_eq!(
        err_of(LinkType::Ethernet, &f[..14 + 20 + 8 + 6]),
        DecodeError::BadTunnel
    );
}

#[test]
fn gre_not_decapsulated_returns_outer() {
    let outer: [u8; 20] = [
        0x45, 0x00, 0x00, 0x2c, // total length 44
        0x00, 0x00, 0x00, 0x00, // id 0
        0x40, 0x2f, 0x00, 0x00, // TTL 64, GRE
        0xac, 0x10, 0x00, 0x01, // src 172.16.0.1
        0xac, 0x10, 0x00, 0x02, // dst 172.16.0.2
    ];
    let pptp: [u8; 8] = [
        0x30, 0x81, 0x88, 0x0b, // K|S, version 1 (PPTP), protocol PPP
        0x00, 0x10, 0x00, 0x01, // payload length, call id
    ];
    let p = ip_of(
        LinkType::Ethernet,
        &cat(&[&ETH_V4, &outer, &pptp, &[0u8; 16]]),
    );
    assert_eq!(
        (p.proto, p.src, p.tunnel, p.has_l4),
        (proto::GRE, v4(172, 16, 0, 1), Tunnel::None, false)
    );
    let erspan: [u8; 8] = [
        0x10, 0x00, 0x88, 0xbe, // S, version 0, protocol ERSPAN II (decapsulated)
        0x00, 0x00, 0x00, 0x01, // sequence 1
    ];
    // 8 bytes of ERSPAN header and an 8-byte "mirrored frame": the inner Ethernet
    // header is cut, an error of the inner packet as for any GRE payload.
    assert_eq!(
        err_of(
            LinkType::Ethernet,
            &cat(&[&ETH_V4, &outer, &erspan, &[0u8; 16]])
        ),
        DecodeError::TruncatedLink
    );
    let routing: [u8; 8] = [
        0x40, 0x00, 0x08, 0x00, // R bit set: deprecated source routing
        0x00, 0x00, 0x00, 0x00, // offset
    ];
    assert_eq!(
        err_of(
            LinkType::Ethernet,
            &cat(&[&ETH_V4, &outer, &routing, &[0u8; 16]])
        ),
        DecodeError::BadTunnel
    );
}

/// Outer Ethernet/IPv4/UDP to 4789 for a VXLAN frame with `inner_len` bytes after VXLAN.
fn vxlan_outer(inner_len: u16) -> Vec<u8> {
    let total = 20 + 8 + 8 + inner_len;
    let udp_len = 8 + 8 + inner_len;
    let ip: [u8; 20] = [
        0x45,
        0x00,
        (total >> 8) as u8,
        total as u8, // total length
        0x00,
        0x00,
        0x40,
        0x00, // DF
        0x40,
        0x11,
        0x00,
        0x00, // TTL 64, UDP
        0xc0,
        0x00,
        0x02,
        0x01, // src 192.0.2.1 (VTEP)
        0xc0,
        0x00,
        0x02,
        0x02, // dst 192.0.2.2 (VTEP)
    ];
    let udp: [u8; 8] = [
        0xd4,
        0x31,
        0x12,
        0xb5, // src port 54321, dst port 4789
        (udp_len >> 8) as u8,
        udp_len as u8,
        0x00,
        0x00, // length, checksum
    ];
    cat(&[&ETH_V4, &ip, &udp])
}

#[test]
fn vxlan_inner_ethernet_with_vlan() {
    let vx: [u8; 8] = [
        0x08, 0x00, 0x00, 0x00, // flags I, reserved
        0x00, 0xab, 0xcd, 0x00, // VNI 0x00abcd, reserved
    ];
    let inner_eth: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // inner dst MAC
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // inner src MAC
        0x81, 0x00, 0x00, 0x64, // 802.1Q VID 100
        0x08, 0x00, // IPv4
    ];
    let inner = cat(&[&inner_eth, &IPV4_TCP_44, &TCP_SYNACK, &DATA4]);
    let f = cat(&[&vxlan_outer(inner.len() as u16), &vx, &inner]);
    let p = ip_of(LinkType::Ethernet, &f);
    assert_eq!(p.tunnel, Tunnel::Vxlan { vni: 0xabcd });
    assert_eq!((p.src, p.dst_port), (v4(192, 168, 1, 10), 80));
    assert_eq!(p.src_mac, Some([0x02, 0, 0, 0, 0, 0x02]));
    assert_eq!(
        p.vlan,
        [100, 0],
        "untagged outer: the inner tag fills the first slot"
    );
    assert_eq!(p.wire_len, f.len() as u32);

    // Not VXLAN after all (I flag clear, header cut short, inner frame cut inside its
    // IP header): port 4789 is a convention, so the datagram stays in its UDP flow.
    let outer_udp = |frame: &[u8]| {
        let p = ip_of(LinkType::Ethernet, frame);
        (p.proto, p.dst_port, p.tunnel, p.src)
    };
    let want = (proto::UDP, 4789, Tunnel::None, v4(192, 0, 2, 1));
    let bad = cat(&[&vxlan_outer(inner.len() as u16), &[0u8; 8], &inner]);
    assert_eq!(outer_udp(&bad), want, "I flag clear");
    assert_eq!(outer_udp(&f[..14 + 20 + 8 + 5]), want, "VXLAN header cut");
    assert_eq!(
        outer_udp(&f[..14 + 20 + 8 + 8 + 14 + 4 + 10]),
        want,
        "inner IP cut"
    );
    // Inner frame not IP: the outer UDP packet is returned.
    let lldp: [u8; 14] = [
        0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e, // dst MAC
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // src MAC
        0x88, 0xcc, // LLDP
    ];
    let f = cat(&[&vxlan_outer(14), &vx, &lldp]);
    let p = ip_of(LinkType::Ethernet, &f);
    assert_eq!(
        (p.dst_port, p.tunnel, p.src),
        (4789, Tunnel::None, v4(192, 0, 2, 1))
    );
}

#[test]
fn tunnel_nesting_is_bounded() {
    // VXLAN inside VXLAN inside ... : 4 levels decode, the 5th is rejected.
    let vx: [u8; 8] = [0x08, 0, 0, 0, 0, 0, 0x07, 0]; // I flag, VNI 7
    let mut inner = cat(&[&ETH_V4, &IPV4_UDP_32, &UDP_9999, &DATA4]);
    for _ in 0..4 {
        let outer = vxlan_outer(inner.len() as u16);
        inner = cat(&[&outer, &vx, &inner]);
    }
    assert_eq!(ip_of(LinkType::Ethernet, &inner).dst_port, 9999);
    // The 5th level is not decapsulated: its outer UDP datagram (inside the 4th
    // tunnel) is the packet.
    let outer = vxlan_outer(inner.len() as u16);
    let too_deep = cat(&[&outer, &vx, &inner]);
    let p = ip_of(LinkType::Ethernet, &too_deep);
    assert_eq!((p.dst_port, p.tunnel), (4789, Tunnel::Vxlan { vni: 7 }));
}

// ---------------------------------------------------------------- ARP

/// ARP request 192.168.1.10 (66:77:88:99:aa:bb) asks for 192.168.1.20.
const ARP_REQ: [u8; 28] = [
    0x00, 0x01, 0x08, 0x00, // htype Ethernet, ptype IPv4
    0x06, 0x04, 0x00, 0x01, // hlen 6, plen 4, opcode request
    0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, // sender MAC
    0xc0, 0xa8, 0x01, 0x0a, // sender IP
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC
    0xc0, 0xa8, 0x01, 0x14, // target IP
];

#[test]
fn arp_request() {
    let eth: [u8; 18] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // broadcast
        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, // src MAC
        0x81, 0x00, 0x00, 0x05, // VLAN 5
        0x08, 0x06, // ARP
    ];
    let f = cat(&[&eth, &ARP_REQ]);
    let Ok(PacketSummary::Arp(a)) = decode(&frame(LinkType::Ethernet, &f)) else {
        panic!("not ARP")
    };
    assert_eq!((a.opcode, a.vlan, a.wire_len), (1, [5, 0], 46));
    assert_eq!(a.sender_mac, [0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb]);
    assert_eq!(
        (a.sender_ip, a.target_ip),
        ([192, 168, 1, 10], [192, 168, 1, 20])
    );
    assert_eq!(a.target_mac, [0; 6]);
    assert_eq!(
        err_of(LinkType::Ethernet, &f[..eth.len() + 20]),
        DecodeError::TruncatedLink
    );
    let mut ieee802 = f.clone();
    ieee802[eth.len() + 1] = 6; // htype IEEE 802
    assert_eq!(
        err_of(LinkType::Ethernet, &ieee802),
        DecodeError::UnsupportedArp
    );
}

// ---------------------------------------------------------------- application hints

/// IPv4 + UDP headers for a DNS message of `dns_len` bytes, `sport` -> `dport`.
fn udp_dns(sport: u16, dport: u16, dns_len: u16) -> Vec<u8> {
    let total = 28 + dns_len;
    let ip: [u8; 20] = [
        0x45,
        0x00,
        (total >> 8) as u8,
        total as u8, // total length
        0x00,
        0x00,
        0x00,
        0x00, // id 0
        0x40,
        0x11,
        0x00,
        0x00, // TTL 64, UDP
        0x0a,
        0x00,
        0x00,
        0x01, // src
        0x0a,
        0x00,
        0x00,
        0x35, // dst 10.0.0.53
    ];
    let udp: [u8; 8] = [
        (sport >> 8) as u8,
        sport as u8,
        (dport >> 8) as u8,
        dport as u8, // ports
        0x00,
        (8 + dns_len) as u8,
        0x00,
        0x00, // length, checksum
    ];
    cat(&[&ETH_V4, &ip, &udp])
}

/// DNS query for www.example.com A IN.
const DNS_QUERY: [u8; 33] = [
    0x1a, 0x2b, 0x01, 0x00, // id, flags: QR 0, RD
    0x00, 0x01, 0x00, 0x00, // QDCOUNT 1, ANCOUNT 0
    0x00, 0x00, 0x00, 0x00, // NSCOUNT 0, ARCOUNT 0
    0x03, b'w', b'w', b'w', // "www"
    0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', // "example"
    0x03, b'c', b'o', b'm', 0x00, // "com", root
    0x00, 0x01, 0x00, 0x01, // QTYPE A, QCLASS IN
];

/// The application hint of the DNS message `msg` in a UDP datagram `sport` -> `dport`.
fn dns_hint(sport: u16, dport: u16, msg: &[u8]) -> AppHint {
    let f = cat(&[&udp_dns(sport, dport, msg.len() as u16), msg]);
    ip_of(LinkType::Ethernet, &f).app
}

/// `(query, qname_len, label_entropy)` of the DNS hint of `msg` (panics for any other hint).
fn query_hint(sport: u16, dport: u16, msg: &[u8]) -> (bool, u16, f32) {
    match dns_hint(sport, dport, msg) {
        AppHint::Dns {
            query,
            qname_len,
            label_entropy,
        } => (query, qname_len, label_entropy),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dns_hint_qname_length_and_entropy() {
    let (query, qname_len, label_entropy) = query_hint(5000, 53, &DNS_QUERY);
    assert!(query);
    assert_eq!(qname_len, 15); // "www.example.com"
                               // "example": e twice, x a m p l once each, over 7 characters.
    let expect =
        -(2.0f64 / 7.0 * (2.0f64 / 7.0).log2() + 5.0 * (1.0f64 / 7.0 * (1.0f64 / 7.0).log2()));
    assert!(
        (f64::from(label_entropy) - expect).abs() < 1e-5,
        "{label_entropy} vs {expect}"
    );
    assert!((label_entropy - 2.521_641).abs() < 1e-5);

    // Upper case folds to the same entropy (an mDNS query from port 5353).
    let mut upper = DNS_QUERY;
    upper[17] = b'E';
    assert_eq!(query_hint(5353, 5353, &upper), (true, 15, label_entropy));

    // A response (QR bit set): only queries are accounted, so its name is not read.
    let mut resp = DNS_QUERY;
    resp[2] = 0x84;
    assert_eq!(query_hint(5353, 5353, &resp), (false, 0, 0.0));
}

#[test]
fn dns_hint_edge_cases() {
    // QDCOUNT 0: no hint.
    let mut no_q = DNS_QUERY;
    no_q[5] = 0;
    assert_eq!(dns_hint(5000, 53, &no_q), AppHint::None);
    // A compression pointer first: parsable header, QNAME length 0.
    let ptr: [u8; 14] = [
        0x00, 0x01, 0x01, 0x00, // id, flags
        0x00, 0x01, 0x00, 0x00, // QDCOUNT 1
        0x00, 0x00, 0x00, 0x00, // NS, AR
        0xc0, 0x0c, // pointer to offset 12
    ];
    assert_eq!(query_hint(5000, 53, &ptr), (true, 0, 0.0));
    // Captured bytes end inside "example": only "www" counts; entropy of "www" is 0.
    let f = cat(&[&udp_dns(5000, 53, DNS_QUERY.len() as u16), &DNS_QUERY]);
    let fr = Frame {
        ts: Timestamp(0),
        link: LinkType::Ethernet,
        orig_len: f.len() as u32,
        data: &f[..f.len() - 12],
    };
    let Ok(PacketSummary::Ip(p)) = decode(&fr) else {
        panic!()
    };
    assert_eq!(
        p.app,
        AppHint::Dns {
            query: true,
            qname_len: 3,
            label_entropy: 0.0
        }
    );
    // Header shorter than 12 bytes: no hint.
    assert_eq!(dns_hint(5000, 53, &DNS_QUERY[..8]), AppHint::None);
}

#[test]
fn dns_over_tcp_skips_length_prefix() {
    let ip: [u8; 20] = [
        0x45, 0x00, 0x00, 0x4b, // total length 75 = 20 + 20 + 2 + 33
        0x00, 0x00, 0x00, 0x00, // id 0
        0x40, 0x06, 0x00, 0x00, // TTL 64, TCP
        0x0a, 0x00, 0x00, 0x01, // src
        0x0a, 0x00, 0x00, 0x35, // dst
    ];
    let tcp: [u8; 20] = [
        0xc0, 0x00, 0x00, 0x35, // src port 49152, dst port 53
        0x00, 0x00, 0x00, 0x01, // seq 1
        0x00, 0x00, 0x00, 0x01, // ack 1
        0x50, 0x18, 0x01, 0x00, // data offset 5, PSH|ACK, window 256
        0x00, 0x00, 0x00, 0x00, // checksum, urgent
    ];
    let f = cat(&[&ETH_V4, &ip, &tcp, &[0x00, 0x21], &DNS_QUERY]);
    let p = ip_of(LinkType::Ethernet, &f);
    assert!(
        matches!(
            p.app,
            AppHint::Dns {
                query: true,
                qname_len: 15,
                ..
            }
        ),
        "{:?}",
        p.app
    );
    assert_eq!(p.payload_len, 35);
}

/// IPv4 + TCP headers for a 12-byte Modbus ADU, `sport` -> `dport`.
fn tcp_modbus(sport: u16, dport: u16) -> Vec<u8> {
    let ip: [u8; 20] = [
        0x45, 0x00, 0x00, 0x34, // total length 52 = 20 + 20 + 12
        0x00, 0x00, 0x00, 0x00, // id 0
        0x40, 0x06, 0x00, 0x00, // TTL 64, TCP
        0x0a, 0x00, 0x00, 0x0a, // src 10.0.0.10 (HMI)
        0x0a, 0x00, 0x00, 0x14, // dst 10.0.0.20 (PLC)
    ];
    let tcp: [u8; 20] = [
        (sport >> 8) as u8,
        sport as u8,
        (dport >> 8) as u8,
        dport as u8, // ports
        0x00,
        0x00,
        0x00,
        0x01, // seq
        0x00,
        0x00,
        0x00,
        0x01, // ack
        0x50,
        0x18,
        0x01,
        0x00, // data offset 5, PSH|ACK
        0x00,
        0x00,
        0x00,
        0x00, // checksum, urgent
    ];
    cat(&[&ETH_V4, &ip, &tcp])
}

/// Modbus/TCP Read Holding Registers request.
const MODBUS_READ: [u8; 12] = [
    0x00, 0x01, 0x00, 0x00, // transaction id 1, protocol id 0
    0x00, 0x06, 0x01, 0x03, // length 6, unit 1, function 3
    0x00, 0x00, 0x00, 0x0a, // start address 0, quantity 10
];

#[test]
fn modbus_hint() {
    let p = ip_of(
        LinkType::Ethernet,
        &cat(&[&tcp_modbus(50000, 502), &MODBUS_READ]),
    );
    assert_eq!(
        p.app,
        AppHint::Modbus {
            request: true,
            adus: 1,
            writes: 0
        }
    );
    let p = ip_of(
        LinkType::Ethernet,
        &cat(&[&tcp_modbus(502, 50000), &MODBUS_READ]),
    );
    assert_eq!(
        p.app,
        AppHint::Modbus {
            request: false,
            adus: 1,
            writes: 0
        }
    );
    let mut bad = MODBUS_READ;
    bad[3] = 1; // protocol id 1
    let p = ip_of(LinkType::Ethernet, &cat(&[&tcp_modbus(50000, 502), &bad]));
    assert_eq!(p.app, AppHint::None);
    let mut bad = MODBUS_READ;
    bad[5] = 0xff; // length 255: too long
    let p = ip_of(LinkType::Ethernet, &cat(&[&tcp_modbus(50000, 502), &bad]));
    assert_eq!(p.app, AppHint::None);
}

/// Every ADU of a segment counts, and 21, 22 and 23 are writes too.
#[test]
fn modbus_pipelined_adus_and_every_write_code() {
    let adu = |function: u8| {
        let mut a = MODBUS_READ;
        a[7] = function;
        a
    };
    let segment = |adus: &[[u8; 12]]| {
        let payload: Vec<u8> = adus.concat();
        let mut frame = cat(&[&tcp_modbus(50000, 502), &payload]);
        let total = (40 + payload.len()) as u16;
        frame[14 + 2..14 + 4].copy_from_slice(&total.to_be_bytes());
        ip_of(LinkType::Ethernet, &frame).app
    };
    let hint = |adus: u16, writes: u16| AppHint::Modbus {
        request: true,
        adus,
        writes,
    };
    for fc in [5, 6, 15, 16, 21, 22, 23] {
        assert_eq!(segment(&[adu(fc)]), hint(1, 1), "function {fc}");
    }
    for fc in [1, 2, 3, 4, 7, 8, 17, 20, 24, 43] {
        assert_eq!(segment(&[adu(fc)]), hint(1, 0), "function {fc}");
    }
    // A write behind a read in one segment, and a third ADU cut after its header.
    assert_eq!(segment(&[adu(3), adu(16)]), hint(2, 1));
    let mut cut = [adu(3), adu(23)].concat();
    cut.extend_from_slice(&adu(6)[..8]);
    let mut frame = cat(&[&tcp_modbus(50000, 502), &cut]);
    let total = (40 + cut.len()) as u16;
    frame[14 + 2..14 + 4].copy_from_slice(&total.to_be_bytes());
    assert_eq!(ip_of(LinkType::Ethernet, &frame).app, hint(3, 2));
    // Counting stops at the first header that is not Modbus.
    let mut junk = adu(16);
    junk[3] = 9;
    assert_eq!(segment(&[adu(16), junk, adu(16)]), hint(1, 1));
}

// ---------------------------------------------------------------- every error kind

#[test]
fn every_error_kind() {
    use DecodeError::*;
    let good = cat(&[&ETH_V4, &IPV4_UDP_32, &UDP_9999, &DATA4]);
    assert_eq!(err_of(LinkType::Other(147), &good), UnsupportedLinkType);
    assert_eq!(err_of(LinkType::Ethernet, &good[..10]), TruncatedLink);
    assert_eq!(err_of(LinkType::Ethernet, &good[..14 + 19]), TruncatedIp);
    assert_eq!(err_of(LinkType::Ethernet, &good[..14]), TruncatedIp);

    let mut bad_version = good.clone();
    bad_version[14] = 0x75;
    assert_eq!(err_of(LinkType::Ethernet, &bad_version), BadIpHeader);
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    assert_eq!(err_of(LinkType::Ethernet, &bad_ihl), BadIpHeader);
    let mut short_total = good.clone();
    short_total[17] = 19; // total length 19 < 20
    assert_eq!(err_of(LinkType::Ethernet, &short_total), BadIpHeader);

    let mut doff = cat(&[&ETH_V4, &IPV4_TCP_44, &TCP_SYNACK, &DATA4]);
    doff[14 + 20 + 12] = 0x20; // data offset 2
    assert_eq!(err_of(LinkType::Ethernet, &doff), BadTransportHeader);
    let mut short_udp = good.clone();
    short_udp[17] = 24; // total length 24: 4 bytes for an 8-byte UDP header
    assert_eq!(err_of(LinkType::Ethernet, &short_udp), BadTransportHeader);

    let mut lldp = good.clone();
    lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
    assert_eq!(err_of(LinkType::Ethernet, &lldp), NotIp);
    let mut llc = good.clone();
    llc[12..14].copy_from_slice(&[0x00, 0x2e]); // 802.3 length field
    assert_eq!(err_of(LinkType::Ethernet, &llc), NotIp);

    let mut arp = cat(&[&ETH_V4, &ARP_REQ]);
    arp[13] = 0x06;
    arp[14 + 2] = 0x86; // ptype 0x86dd
    arp[14 + 3] = 0xdd;
    assert_eq!(err_of(LinkType::Ethernet, &arp), UnsupportedArp);

    let mut gre_cut = cat(&[&ETH_V4, &IPV4_UDP_32]);
    gre_cut[14 + 9] = 47; // GRE, with only 2 bytes of its header
    gre_cut.extend_from_slice(&[0x20, 0x00]);
    assert_eq!(err_of(LinkType::Ethernet, &gre_cut), BadTunnel);
    // All kinds are covered above.
    assert_eq!(DecodeError::ALL.len(), 8);
}

#[test]
fn ipv6_extension_walk_is_bounded() {
    // 20 destination-options headers in a row: the walk stops after 16.
    let n = 20usize;
    let payload_len = (n * 8 + 8) as u16;
    let mut ip6 = IPV6_UDP_12;
    ip6[4] = (payload_len >> 8) as u8;
    ip6[5] = payload_len as u8;
    ip6[6] = 60; // destination options
    let mut f = cat(&[&ETH_V6, &ip6]);
    for i in 0..n {
        let next = if i + 1 == n { 17 } else { 60 };
        f.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]); // next, len 0, PadN
    }
    f.extend_from_slice(&UDP_9999);
    let p = ip_of(LinkType::Ethernet, &f);
    assert_eq!((p.proto, p.has_l4, p.src_port), (60, false, 0));
}

/// The entropy of the DNS hint, computed the direct way (one logarithm per distinct byte).
fn entropy_reference(label: &[u8]) -> f32 {
    if label.is_empty() {
        return 0.0;
    }
    let mut counts = [0u8; 256];
    for &b in label {
        let c = &mut counts[usize::from(b.to_ascii_lowercase())];
        *c = c.saturating_add(1);
    }
    let n = label.len() as f64;
    let mut h = 0.0f64;
    for &c in counts.iter().filter(|&&c| c > 0) {
        let p = f64::from(c) / n;
        h -= p * p.log2();
    }
    h as f32
}

#[test]
fn dns_entropy_table_is_bitwise_the_direct_sum() {
    // Every length up to past the table, with few and many distinct bytes, mixed case.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for n in 0..=300usize {
        for alphabet in [1u64, 2, 3, 7, 26, 36, 64, 256] {
            let label: Vec<u8> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let v = (x % alphabet) as u8;
                    if alphabet <= 36 {
                        b"aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"[usize::from(v)]
                    } else {
                        v
                    }
                })
                .collect();
            let (got, want) = (hint::shannon_entropy(&label), entropy_reference(&label));
            assert_eq!(got.to_bits(), want.to_bits(), "n {n}, alphabet {alphabet}");
        }
    }
}
