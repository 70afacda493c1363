//! The records that cross the capture → decode → flow boundaries: [`Frame`] (a frame
//! borrowed from the capture buffer for one read) and [`PacketSummary`] (the small `Copy`
//! summary that decoding produces in place, with no heap allocation). Also the link types
//! the decoder understands and the closed set of decode error kinds that `stats` counts.

use crate::time::Timestamp;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Link-layer header types (LINKTYPE_* numbers from the pcap specification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_NULL (0): BSD loopback, 4-byte host-order address family.
    Null,
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_RAW (101) and DLT_RAW (12 / 14): raw IPv4 or IPv6, version from the first nibble.
    Raw,
    /// LINKTYPE_LOOP (108): OpenBSD loopback, 4-byte network-order address family.
    Loop,
    /// LINKTYPE_LINUX_SLL (113): Linux cooked capture v1.
    LinuxSll,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// LINKTYPE_LINUX_SLL2 (276): Linux cooked capture v2.
    LinuxSll2,
    /// Anything else; frames of this link type are counted and skipped.
    Other(u32),
}

impl LinkType {
    /// Maps a LINKTYPE/DLT number from a capture file header or interface block.
    pub fn from_number(n: u32) -> Self {
        match n {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }

    /// Whether the decoder can read frames of this link type.
    pub fn is_supported(self) -> bool {
        !matches!(self, LinkType::Other(_))
    }
}

/// One captured frame, borrowed from the capture buffer. The borrow lasts for one read:
/// whoever holds it must finish with it before the next frame is read.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Capture timestamp.
    pub ts: Timestamp,
    /// Link type of the interface the frame was captured on.
    pub link: LinkType,
    /// Original length of the frame on the wire (may exceed `data.len()` when truncated by snaplen).
    pub orig_len: u32,
    /// The captured bytes.
    pub data: &'a [u8],
}

/// An IPv4 or IPv6 address stored in 16 bytes (IPv4 as an IPv4-mapped IPv6 address), so
/// flow keys have one fixed size and compare as plain bytes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Addr(pub [u8; 16]);

/// Byte order (lexicographic, as a derived `Ord` of the array would give), computed as one
/// big-endian 128-bit comparison: flow keys are ordered on every packet.
impl Ord for Addr {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        u128::from_be_bytes(self.0).cmp(&u128::from_be_bytes(other.0))
    }
}

impl PartialOrd for Addr {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Addr {
    /// The IPv4 address `a.b.c.d` in mapped form.
    pub fn v4(octets: [u8; 4]) -> Self {
        let mut b = [0u8; 16];
        b[10] = 0xff;
        b[11] = 0xff;
        b[12..].copy_from_slice(&octets);
        Addr(b)
    }
    /// An IPv6 address.
    pub fn v6(octets: [u8; 16]) -> Self {
        Addr(octets)
    }
    /// Whether this is an IPv4(-mapped) address: the first 96 bits are `::ffff` (one
    /// 128-bit compare; the flow table asks this of every packet's key).
    #[inline]
    pub fn is_v4(&self) -> bool {
        u128::from_be_bytes(self.0) >> 32 == 0xffff
    }
    /// The IPv4 octets, for an IPv4(-mapped) address.
    #[inline]
    pub fn as_v4(&self) -> Option<[u8; 4]> {
        self.is_v4()
            .then(|| [self.0[12], self.0[13], self.0[14], self.0[15]])
    }
    /// The standard library form.
    pub fn to_ip(&self) -> IpAddr {
        if self.is_v4() {
            IpAddr::V4(Ipv4Addr::new(
                self.0[12], self.0[13], self.0[14], self.0[15],
            ))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.0))
        }
    }
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Addr::v4(a.octets()),
            IpAddr::V6(a) => Addr::v6(a.octets()),
        }
    }
}

/// IP protocol numbers the flow stage treats specially.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// GRE.
    pub const GRE: u8 = 47;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP (its common header carries ports like UDP's).
    pub const SCTP: u8 = 132;
}

/// TCP flag bits as they appear in the TCP header's flags byte.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// The encapsulation the inner packet was found in; noted on the flow record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tunnel {
    /// Not tunnelled.
    #[default]
    None,
    /// GRE (IP protocol 47), with the GRE key if present (0 otherwise).
    Gre {
        /// GRE key field, 0 when absent.
        key: u32,
    },
    /// VXLAN (UDP 4789) with its 24-bit network identifier.
    Vxlan {
        /// VXLAN network identifier.
        vni: u32,
    },
}

/// Fragmentation facts of an IP packet (IPv4 header or IPv6 fragment extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FragInfo {
    /// True if the packet is a fragment (offset > 0 or more-fragments set).
    pub is_fragment: bool,
    /// Fragment offset in 8-byte units.
    pub offset: u16,
    /// More-fragments flag.
    pub more: bool,
    /// IP identification (IPv4: 16 bits; IPv6 fragment header: 32 bits).
    pub id: u32,
}

impl FragInfo {
    /// A fragment that is not the first one: it carries no transport header.
    pub fn is_non_first(&self) -> bool {
        self.is_fragment && self.offset > 0
    }
}

/// A small application-layer hint extracted during decoding from the first bytes of the
/// transport payload, without allocation. Features F31-F33 are built from these.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum AppHint {
    /// Nothing recognised.
    #[default]
    None,
    /// A DNS message (UDP or TCP port 53, or mDNS 5353).
    Dns {
        /// True for a query (QR bit 0).
        query: bool,
        /// Length in characters of the first question's QNAME in dotted form (0 if
        /// unparsable, and 0 in a response: only queries' names are read).
        qname_len: u16,
        /// Shannon entropy (bits per character) of the longest label of that QNAME (0 in
        /// a response).
        label_entropy: f32,
    },
    /// Modbus/TCP ADUs (TCP port 502) with valid MBAP headers (protocol id 0): a
    /// segment may carry several (pipelined requests).
    Modbus {
        /// True if sent to port 502 (requests from a master).
        request: bool,
        /// ADUs whose MBAP header and function code are in the segment (at least 1).
        adus: u16,
        /// Of those, writes: function codes 5, 6, 15, 16, 21, 22, 23
        /// ([`crate::decode::hint::is_modbus_write`]).
        writes: u16,
    },
}

/// An IP packet summarised for the flow stage. `Copy`, no heap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IpPacket {
    /// Capture timestamp.
    pub ts: Timestamp,
    /// Frame length on the wire (what tshark and Suricata count as bytes).
    pub wire_len: u32,
    /// Source MAC of the innermost Ethernet header, if the link has one.
    pub src_mac: Option<[u8; 6]>,
    /// Destination MAC of the innermost Ethernet header, if the link has one.
    pub dst_mac: Option<[u8; 6]>,
    /// VLAN IDs, outer first; 0 = no tag at that position.
    pub vlan: [u16; 2],
    /// Number of MPLS labels that were skipped.
    pub mpls_labels: u8,
    /// Encapsulation this packet was carried in.
    pub tunnel: Tunnel,
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// IP protocol number of the transport (after IPv6 extension headers).
    pub proto: u8,
    /// Source port (TCP/UDP); ICMP: the ICMP type; 0 otherwise or when unknown.
    pub src_port: u16,
    /// Destination port (TCP/UDP); ICMP: the ICMP code; 0 otherwise or when unknown.
    pub dst_port: u16,
    /// ICMP/ICMPv6 echo identifier (0 for other types and protocols).
    pub icmp_id: u16,
    /// True if the transport header was present and read (false for non-first fragments
    /// and truncated frames).
    pub has_l4: bool,
    /// IP total length from the header (IPv6: 40 + payload length), not the captured length.
    pub ip_len: u32,
    /// Transport payload length in bytes, from the IP length (not the captured length).
    pub payload_len: u32,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// TCP flags byte (0 for non-TCP).
    pub tcp_flags: u8,
    /// TCP sequence number (0 for non-TCP).
    pub tcp_seq: u32,
    /// TCP acknowledgement number (0 for non-TCP).
    pub tcp_ack: u32,
    /// TCP window (0 for non-TCP).
    pub tcp_window: u16,
    /// Fragmentation facts.
    pub frag: FragInfo,
    /// Application-layer hint.
    pub app: AppHint,
}

/// An ARP packet (Ethernet/IPv4 ARP only), kept for the ARP binding rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket {
    /// Capture timestamp.
    pub ts: Timestamp,
    /// Frame length on the wire.
    pub wire_len: u32,
    /// VLAN IDs, outer first; 0 = no tag.
    pub vlan: [u16; 2],
    /// 1 = request, 2 = reply.
    pub opcode: u16,
    /// Sender hardware address.
    pub sender_mac: [u8; 6],
    /// Sender protocol address.
    pub sender_ip: [u8; 4],
    /// Target hardware address.
    pub target_mac: [u8; 6],
    /// Target protocol address.
    pub target_ip: [u8; 4],
}

/// What decoding one frame produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PacketSummary {
    /// An IPv4/IPv6 packet (possibly decapsulated from a tunnel).
    Ip(IpPacket),
    /// An ARP packet.
    Arp(ArpPacket),
}

/// Why a frame was skipped by the decoder. A closed set, counted per kind in `stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeError {
    /// The capture's link type is not one the decoder reads.
    UnsupportedLinkType,
    /// The frame ended inside the link-layer header (Ethernet, SLL, SLL2, NULL/LOOP, VLAN, MPLS).
    TruncatedLink,
    /// The frame ended inside the IP header.
    TruncatedIp,
    /// An IP header was malformed (bad version, header length, total length below header).
    BadIpHeader,
    /// The transport header was malformed (e.g. TCP data offset < 5).
    BadTransportHeader,
    /// The ethertype / address family is neither IP nor ARP (counted, not an error on the wire).
    NotIp,
    /// An ARP packet that is not Ethernet/IPv4.
    UnsupportedArp,
    /// A tunnel header (GRE, VXLAN) was malformed or too short.
    BadTunnel,
}

impl DecodeError {
    /// All kinds, in the order they are reported.
    pub const ALL: [DecodeError; 8] = [
        DecodeError::UnsupportedLinkType,
        DecodeError::TruncatedLink,
        DecodeError::TruncatedIp,
        DecodeError::BadIpHeader,
        DecodeError::BadTransportHeader,
        DecodeError::NotIp,
        DecodeError::UnsupportedArp,
        DecodeError::BadTunnel,
    ];

    /// The snake_case name used in `stats` events.
    pub fn name(self) -> &'static str {
        match self {
            DecodeError::UnsupportedLinkType => "unsupported_link_type",
            DecodeError::TruncatedLink => "truncated_link",
            DecodeError::TruncatedIp => "truncated_ip",
            DecodeError::BadIpHeader => "bad_ip_header",
            DecodeError::BadTransportHeader => "bad_transport_header",
            DecodeError::NotIp => "not_ip",
            DecodeError::UnsupportedArp => "unsupported_arp",
            DecodeError::BadTunnel => "bad_tunnel",
        }
    }

    /// Index into a per-kind counter array.
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_roundtrip() {
        let a: Addr = "192.168.10.5"
            .parse::<IpAddr>()
            .map(Addr::from)
            .unwrap_or_default();
        assert!(a.is_v4());
        assert_eq!(a.to_ip().to_string(), "192.168.10.5");
        let b: Addr = "fe80::1"
            .parse::<IpAddr>()
            .map(Addr::from)
            .unwrap_or_default();
        assert!(!b.is_v4());
        assert_eq!(b.to_ip().to_string(), "fe80::1");
    }

    proptest::proptest! {
        #[test]
        fn addr_order_is_byte_order(a: [u8; 16], b: [u8; 16], common in 0usize..16) {
            // Also pairs that share a prefix, where byte order is decided late.
            let mut b2 = b;
            b2[..common].copy_from_slice(&a[..common]);
            for b in [b, b2, a] {
                proptest::prop_assert_eq!(Addr(a).cmp(&Addr(b)), a.cmp(&b));
                proptest::prop_assert_eq!(Addr(a).partial_cmp(&Addr(b)), Some(a.cmp(&b)));
            }
        }

        #[test]
        fn is_v4_is_the_mapped_prefix(v4: [u8; 4], other: [u8; 16], flip in 0usize..12) {
            // Mapped addresses, mapped but for one prefix byte, and arbitrary ones, against
            // the byte-wise definition (`::ffff:a.b.c.d`).
            let mut near = Addr::v4(v4);
            near.0[flip] ^= 0x01;
            for a in [Addr::v4(v4), near, Addr(other)] {
                let bytewise = a.0[..10].iter().all(|&b| b == 0) && a.0[10..12] == [0xff, 0xff];
                proptest::prop_assert_eq!(a.is_v4(), bytewise);
                proptest::prop_assert_eq!(a.as_v4(), bytewise.then(|| [a.0[12], a.0[13], a.0[14], a.0[15]]));
            }
        }
    }

    #[test]
    fn summary_is_small() {
        // The summary crosses thread boundaries in batches later; keep it compact.
        assert!(
            std::mem::size_of::<PacketSummary>() <= 128,
            "{}",
            std::mem::size_of::<PacketSummary>()
        );
    }
}
