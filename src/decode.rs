//! Decoding: a borrowed [`Frame`] → [`PacketSummary`] in place, no heap allocation.
//! Owns link-type dispatch, VLAN/QinQ/MPLS, IPv4/IPv6 (+ extension headers), TCP/UDP/SCTP/ICMP
//! header reading, GRE/VXLAN decapsulation, ARP, and the small DNS/Modbus payload hints.
//! Does not own flows, time policy or fragment attribution (see `fragment`).
//!
//! The decoder is a single forward pass over the captured bytes written by hand (no
//! etherparse on this path): every read goes through [`Option`]-returning helpers, so no
//! input can make it panic, and it never allocates. Checksums are not verified.
//!
//! # Behaviour the flow stage relies on
//!
//! * **Lengths.** `ip_len` is the IPv4 total length (IPv6: 40 + payload length) from the
//!   header, capped at what the wire carried after the link headers
//!   (`orig_len − link header length`), so a bogus length field cannot inflate byte
//!   counts. A length field below the IPv4 header length is [`DecodeError::BadIpHeader`].
//!   `payload_len` = `ip_len` − IP header (with IPv4 options / IPv6 extension headers) −
//!   transport header (TCP data offset × 4, UDP 8, SCTP common header 12, ICMP/ICMPv6 8),
//!   saturating at 0. SCTP flows are keyed by their ports like UDP's. For
//!   a non-first fragment everything after the IP header counts as payload.
//! * **Transport region.** The transport header and payload are read only from bytes that
//!   are both captured and inside `ip_len` (Ethernet padding is never read as payload).
//! * **Snaplen truncation.** A frame that ends inside a link header is
//!   [`DecodeError::TruncatedLink`]; inside the IP header (IPv4 options and IPv6 extension
//!   headers included) [`DecodeError::TruncatedIp`]. A frame that ends inside the transport
//!   header is still `Ok` with `has_l4 = false`: ports are filled when their 4 bytes were
//!   captured (0 otherwise), and TCP seq/ack/flags/window each only when their bytes were
//!   captured (0 otherwise). A TCP header cut after its flags byte (14 bytes captured)
//!   has `has_l4 = true` and `payload_len` from its data offset, so its flags count and
//!   drive the connection state; a window not captured reads `u16::MAX` (unknown, not a
//!   zero window). The same partial read applies to a first fragment whose fragment is
//!   too short for the full transport header.
//! * **Malformed transport.** TCP data offset < 5 is [`DecodeError::BadTransportHeader`],
//!   as is a complete (not truncated, not fragmented) IP packet whose length leaves no room
//!   for the fixed TCP (20), UDP (8), SCTP (12) or ICMP (8) header.
//! * **Fragments.** IPv4 flags/offset/id or the IPv6 fragment header fill `frag`. A first
//!   fragment has its transport header read from the fragment payload (so `has_l4` is true
//!   when the whole fixed header is there); non-first fragments carry no transport header
//!   (`has_l4 = false`, ports 0 until `fragment::FragmentTable` fills them). Fragments are
//!   never decapsulated (GRE/VXLAN), only summarised as the outer packet.
//! * **IPv6 extension headers.** Hop-by-hop, routing, fragment, destination options and AH
//!   are skipped; after [`MAX_IPV6_EXT_HEADERS`] of them the walk stops and the packet is
//!   returned with `proto` = the next-header value reached and no transport header.
//! * **VLANs.** `vlan` holds the first two 802.1Q/802.1ad/0x9100 tags in frame order: the
//!   outer frame's tags first, then (if slots are left) tags of an inner Ethernet header of
//!   a tunnel. More tags are skipped. MACs come from the innermost Ethernet header.
//! * **MPLS.** Labels are popped to bottom-of-stack and counted; the payload is IPv4/IPv6
//!   by its first nibble, or (nibble 0) a pseudowire control word followed by Ethernet,
//!   which is decoded like an inner Ethernet frame. Anything else is [`DecodeError::NotIp`].
//! * **Tunnels.** GRE version 0 (checksum/key/sequence fields; payload IPv4, IPv6, ARP,
//!   MPLS, VLAN, Ethernet 0x6558, or the mirrored frame of ERSPAN type I and II (0x88be)
//!   and III (0x22eb: frame type 0 Ethernet or 2 IP; other frame types stay GRE), whose
//!   session id is not kept) and VXLAN (UDP destination port 4789, I flag set) are
//!   decapsulated and the inner packet is returned with `tunnel` set to the innermost
//!   encapsulation; `wire_len` stays the outer frame length. A GRE header that is
//!   malformed (routing bit set) or ends before its last byte is
//!   [`DecodeError::BadTunnel`], as is GRE nesting deeper than [`MAX_TUNNEL_DEPTH`]. GRE
//!   with a version other than 0 (e.g. PPTP) or an inner protocol that is not IP/ARP
//!   returns the *outer* packet (a GRE flow); errors of a packet decoded inside GRE
//!   (e.g. a truncated inner IP header) are returned as is. UDP port 4789 is only a
//!   convention, so a datagram to it that is not VXLAN (short header, I flag clear), is
//!   nested too deep, or whose inner frame is not IP/ARP or does not decode, is returned
//!   as the *outer* UDP packet, in its UDP flow.
//! * **ARP.** Only Ethernet/IPv4 ARP (htype 1, ptype 0x0800, 6/4 address lengths) gives
//!   [`PacketSummary::Arp`]; other ARP is [`DecodeError::UnsupportedArp`]; an ARP packet
//!   cut short by the capture is [`DecodeError::TruncatedLink`].
//! * **Link types.** NULL reads the 4-byte address family in either byte order (values
//!   2 = IPv4; 10, 24, 28, 30 = IPv6); LOOP reads it in network order. SLL/SLL2 give no
//!   MAC addresses (they only record one side's link address).

pub mod hint;
#[cfg(test)]
mod tests;

use crate::packet::{
    proto, Addr, AppHint, ArpPacket, DecodeError, FragInfo, Frame, IpPacket, LinkType,
    PacketSummary, Tunnel,
};

/// Maximum number of nested decapsulations (GRE, VXLAN, MPLS pseudowire) in one frame;
/// deeper GRE nesting is [`DecodeError::BadTunnel`] (VXLAN: the outer UDP packet; MPLS
/// pseudowire: [`DecodeError::NotIp`]).
pub const MAX_TUNNEL_DEPTH: u8 = 4;

/// Maximum number of IPv6 extension headers walked before giving up on the transport header.
pub const MAX_IPV6_EXT_HEADERS: u8 = 16;

/// UDP destination port of VXLAN (IANA).
pub const VXLAN_PORT: u16 = 4789;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const ETHERTYPE_MPLS_UC: u16 = 0x8847;
const ETHERTYPE_MPLS_MC: u16 = 0x8848;
const ETHERTYPE_TEB: u16 = 0x6558;
/// GRE protocol of ERSPAN type II (with the sequence bit and an 8-byte ERSPAN header)
/// and type I (neither).
const ETHERTYPE_ERSPAN_2: u16 = 0x88be;
/// GRE protocol of ERSPAN type III (12-byte header, plus 8 when its O flag is set).
const ETHERTYPE_ERSPAN_3: u16 = 0x22eb;

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;

const LEN_ETHERNET: usize = 14;
const LEN_SLL: usize = 16;
const LEN_SLL2: usize = 20;
const LEN_NULL: usize = 4;

/// `N` bytes at `at`, if all were captured.
#[inline(always)]
fn arr<const N: usize>(d: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    d.get(at..end)?.try_into().ok()
}

/// Big-endian u16 at `at`.
#[inline(always)]
fn be16(d: &[u8], at: usize) -> Option<u16> {
    arr(d, at).map(u16::from_be_bytes)
}

/// Big-endian u32 at `at`.
#[inline(always)]
fn be32(d: &[u8], at: usize) -> Option<u32> {
    arr(d, at).map(u32::from_be_bytes)
}

/// One byte at `at`.
#[inline(always)]
fn byte(d: &[u8], at: usize) -> Option<u8> {
    d.get(at).copied()
}

/// Link-layer facts gathered on the way down to the IP header.
#[derive(Debug, Clone, Copy, Default)]
struct Link {
    src_mac: Option<[u8; 6]>,
    dst_mac: Option<[u8; 6]>,
    vlan: [u16; 2],
    vlans_seen: u8,
    mpls: u8,
    tunnel: Tunnel,
    depth: u8,
}

impl Link {
    #[inline(always)]
    fn push_vlan(&mut self, id: u16) {
        if let Some(slot) = self.vlan.get_mut(usize::from(self.vlans_seen)) {
            *slot = id;
        }
        self.vlans_seen = self.vlans_seen.saturating_add(1);
    }
}

/// Decodes one frame into its summary, or says why it was skipped (see the module docs
/// for every truncation, tunnel and length rule).
pub fn decode(frame: &Frame<'_>) -> Result<PacketSummary, DecodeError> {
    let d = frame.data;
    let mut link = Link::default();
    match frame.link {
        LinkType::Ethernet => ethernet(frame, 0, &mut link),
        LinkType::LinuxSll => {
            if d.len() < LEN_SLL {
                return Err(DecodeError::TruncatedLink);
            }
            let et = be16(d, 14).ok_or(DecodeError::TruncatedLink)?;
            ethertype(frame, LEN_SLL, et, &mut link)
        }
        LinkType::LinuxSll2 => {
            if d.len() < LEN_SLL2 {
                return Err(DecodeError::TruncatedLink);
            }
            let et = be16(d, 0).ok_or(DecodeError::TruncatedLink)?;
            ethertype(frame, LEN_SLL2, et, &mut link)
        }
        LinkType::Null | LinkType::Loop => {
            let raw: [u8; 4] = arr(d, 0).ok_or(DecodeError::TruncatedLink)?;
            let af = if frame.link == LinkType::Loop {
                u32::from_be_bytes(raw)
            } else {
                // Host byte order of the capturing machine: the family is a small number,
                // so whichever reading fits in 16 bits is the right one.
                let le = u32::from_le_bytes(raw);
                if le <= 0xffff {
                    le
                } else {
                    u32::from_be_bytes(raw)
                }
            };
            match af {
                2 => ipv4(frame, LEN_NULL, &link),
                10 | 24 | 28 | 30 => ipv6(frame, LEN_NULL, &link),
                _ => Err(DecodeError::NotIp),
            }
        }
        LinkType::Raw => match byte(d, 0).map(|b| b >> 4) {
            Some(4) => ipv4(frame, 0, &link),
            Some(6) => ipv6(frame, 0, &link),
            Some(_) => Err(DecodeError::BadIpHeader),
            None => Err(DecodeError::TruncatedIp),
        },
        LinkType::Ipv4 => ipv4(frame, 0, &link),
        LinkType::Ipv6 => ipv6(frame, 0, &link),
        LinkType::Other(_) => Err(DecodeError::UnsupportedLinkType),
    }
}

/// Ethernet II header at `off`, then the ethertype chain.
fn ethernet(frame: &Frame<'_>, off: usize, link: &mut Link) -> Result<PacketSummary, DecodeError> {
    let hdr: [u8; LEN_ETHERNET] = arr(frame.data, off).ok_or(DecodeError::TruncatedLink)?;
    let [d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5, t0, t1] = hdr;
    link.dst_mac = Some([d0, d1, d2, d3, d4, d5]);
    link.src_mac = Some([s0, s1, s2, s3, s4, s5]);
    ethertype(
        frame,
        off + LEN_ETHERNET,
        u16::from_be_bytes([t0, t1]),
        link,
    )
}

/// Payload at `off` of ethertype `et`: VLAN tags are skipped (and recorded) first.
fn ethertype(
    frame: &Frame<'_>,
    mut off: usize,
    mut et: u16,
    link: &mut Link,
) -> Result<PacketSummary, DecodeError> {
    let d = frame.data;
    while matches!(et, ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD) {
        let tag: [u8; 4] = arr(d, off).ok_or(DecodeError::TruncatedLink)?;
        let [c0, c1, t0, t1] = tag;
        link.push_vlan(u16::from_be_bytes([c0, c1]) & 0x0fff);
        et = u16::from_be_bytes([t0, t1]);
        off += 4;
    }
    match et {
        ETHERTYPE_IPV4 => ipv4(frame, off, link),
        ETHERTYPE_IPV6 => ipv6(frame, off, link),
        ETHERTYPE_ARP => arp(frame, off, link),
        ETHERTYPE_MPLS_UC | ETHERTYPE_MPLS_MC => mpls(frame, off, link),
        _ => Err(DecodeError::NotIp),
    }
}

/// MPLS label stack at `off`.
fn mpls(frame: &Frame<'_>, mut off: usize, link: &mut Link) -> Result<PacketSummary, DecodeError> {
    let d = frame.data;
    loop {
        let entry = be32(d, off).ok_or(DecodeError::TruncatedLink)?;
        link.mpls = link.mpls.saturating_add(1);
        off += 4;
        if entry & 0x100 != 0 {
            break;
        }
    }
    match byte(d, off).map(|b| b >> 4) {
        Some(4) => ipv4(frame, off, link),
        Some(6) => ipv6(frame, off, link),
        Some(0) => {
            // Pseudowire control word (RFC 4385), then an Ethernet frame.
            if link.depth >= MAX_TUNNEL_DEPTH {
                return Err(DecodeError::NotIp);
            }
            link.depth += 1;
            ethernet(frame, off + 4, link)
        }
        Some(_) => Err(DecodeError::NotIp),
        None => Err(DecodeError::TruncatedLink),
    }
}

/// ARP at `off` (Ethernet/IPv4 only).
fn arp(frame: &Frame<'_>, off: usize, link: &Link) -> Result<PacketSummary, DecodeError> {
    let d = frame.data;
    let fixed: [u8; 8] = arr(d, off).ok_or(DecodeError::TruncatedLink)?;
    let [h0, h1, p0, p1, hlen, plen, o0, o1] = fixed;
    if u16::from_be_bytes([h0, h1]) != 1
        || u16::from_be_bytes([p0, p1]) != ETHERTYPE_IPV4
        || hlen != 6
        || plen != 4
    {
        return Err(DecodeError::UnsupportedArp);
    }
    let addrs: [u8; 20] = arr(d, off + 8).ok_or(DecodeError::TruncatedLink)?;
    let [a0, a1, a2, a3, a4, a5, b0, b1, b2, b3, c0, c1, c2, c3, c4, c5, e0, e1, e2, e3] = addrs;
    Ok(PacketSummary::Arp(ArpPacket {
        ts: frame.ts,
        wire_len: frame.orig_len,
        vlan: link.vlan,
        opcode: u16::from_be_bytes([o0, o1]),
        sender_mac: [a0, a1, a2, a3, a4, a5],
        sender_ip: [b0, b1, b2, b3],
        target_mac: [c0, c1, c2, c3, c4, c5],
        target_ip: [e0, e1, e2, e3],
    }))
}

/// The network-layer facts handed from the IP header readers to [`transport`].
#[derive(Debug, Clone, Copy)]
struct Ip {
    /// Offset of the IP header in the frame.
    start: usize,
    /// IP header length including options / extension headers.
    hdr_len: usize,
    /// Header length field result, capped at the wire length (see module docs).
    ip_len: usize,
    src: Addr,
    dst: Addr,
    proto: u8,
    ttl: u8,
    frag: FragInfo,
    /// False when the IPv6 extension header walk was cut off: no transport header read.
    l4_known: bool,
}

/// Bytes the wire carried from `off` on (orig_len, or the captured length if a broken
/// capture file claims less).
#[inline(always)]
fn wire_avail(frame: &Frame<'_>, off: usize) -> usize {
    (frame.orig_len as usize)
        .max(frame.data.len())
        .saturating_sub(off)
}

/// IPv4 header at `off`.
fn ipv4(frame: &Frame<'_>, off: usize, link: &Link) -> Result<PacketSummary, DecodeError> {
    let d = frame.data;
    let b0 = byte(d, off).ok_or(DecodeError::TruncatedIp)?;
    if b0 >> 4 != 4 {
        return Err(DecodeError::BadIpHeader);
    }
    let ihl = usize::from(b0 & 0x0f) * 4;
    if ihl < 20 {
        return Err(DecodeError::BadIpHeader);
    }
    let hdr: [u8; 20] = arr(d, off).ok_or(DecodeError::TruncatedIp)?;
    if d.len() < off + ihl {
        return Err(DecodeError::TruncatedIp);
    }
    let [_, _, l0, l1, i0, i1, f0, f1, ttl, proto, _, _, s0, s1, s2, s3, t0, t1, t2, t3] = hdr;
    let total = usize::from(u16::from_be_bytes([l0, l1]));
    if total < ihl {
        return Err(DecodeError::BadIpHeader);
    }
    let flags_off = u16::from_be_bytes([f0, f1]);
    let offset = flags_off & 0x1fff;
    let more = flags_off & 0x2000 != 0;
    let ip = Ip {
        start: off,
        hdr_len: ihl,
        ip_len: total.min(wire_avail(frame, off)),
        src: Addr::v4([s0, s1, s2, s3]),
        dst: Addr::v4([t0, t1, t2, t3]),
        proto,
        ttl,
        frag: FragInfo {
            is_fragment: offset > 0 || more,
            offset,
            more,
            id: u32::from(u16::from_be_bytes([i0, i1])),
        },
        l4_known: true,
    };
    transport(frame, link, &ip)
}

/// IPv6 header and extension headers at `off`.
fn ipv6(frame: &Frame<'_>, off: usize, link: &Link) -> Result<PacketSummary, DecodeError> {
    let d = frame.data;
    let b0 = byte(d, off).ok_or(DecodeError::TruncatedIp)?;
    if b0 >> 4 != 6 {
        return Err(DecodeError::BadIpHeader);
    }
    let fixed: [u8; 8] = arr(d, off).ok_or(DecodeError::TruncatedIp)?;
    let src: [u8; 16] = arr(d, off + 8).ok_or(DecodeError::TruncatedIp)?;
    let dst: [u8; 16] = arr(d, off + 24).ok_or(DecodeError::TruncatedIp)?;
    let [_, _, _, _, l0, l1, mut next, hop] = fixed;
    let total = 40 + usize::from(u16::from_be_bytes([l0, l1]));

    let mut pos = off + 40;
    let mut frag = FragInfo::default();
    let mut l4_known = false;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_AH => {
                let [nh, len] = arr(d, pos).ok_or(DecodeError::TruncatedIp)?;
                let ext_len = if next == IPV6_AH {
                    (usize::from(len) + 2) * 4
                } else {
                    (usize::from(len) + 1) * 8
                };
                pos += ext_len;
                if pos > d.len() {
                    return Err(DecodeError::TruncatedIp);
                }
                next = nh;
            }
            IPV6_FRAGMENT => {
                let fh: [u8; 8] = arr(d, pos).ok_or(DecodeError::TruncatedIp)?;
                let [nh, _, o0, o1, i0, i1, i2, i3] = fh;
                let fo = u16::from_be_bytes([o0, o1]);
                let offset = fo >> 3;
                let more = fo & 1 != 0;
                frag = FragInfo {
                    is_fragment: offset > 0 || more,
                    offset,
                    more,
                    id: u32::from_be_bytes([i0, i1, i2, i3]),
                };
                pos += 8;
                next = nh;
                if offset > 0 {
                    // The rest is fragment payload: no further headers to read here.
                    l4_known = true;
                    break;
                }
            }
            _ => {
                l4_known = true;
                break;
            }
        }
    }
    let ip = Ip {
        start: off,
        hdr_len: pos - off,
        ip_len: total.min(wire_avail(frame, off)),
        src: Addr::v6(src),
        dst: Addr::v6(dst),
        proto: next,
        ttl: hop,
        frag,
        l4_known,
    };
    transport(frame, link, &ip)
}

/// Reads the transport header (and payload hints, and tunnels) after the IP header.
fn transport(frame: &Frame<'_>, link: &Link, ip: &Ip) -> Result<PacketSummary, DecodeError> {
    let d = frame.data;
    let ip_end = ip.start + ip.ip_len;
    let cap_end = ip_end.min(d.len());
    let complete = ip_end <= d.len();
    let l4_start = ip.start + ip.hdr_len;
    let l4: &[u8] = d.get(l4_start..cap_end).unwrap_or(&[]);
    let ip_payload = ip.ip_len.saturating_sub(ip.hdr_len);

    let mut pkt = IpPacket {
        ts: frame.ts,
        wire_len: frame.orig_len,
        src_mac: link.src_mac,
        dst_mac: link.dst_mac,
        vlan: link.vlan,
        mpls_labels: link.mpls,
        tunnel: link.tunnel,
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        src_port: 0,
        dst_port: 0,
        icmp_id: 0,
        has_l4: false,
        ip_len: ip.ip_len as u32,
        payload_len: ip_payload as u32,
        ttl: ip.ttl,
        tcp_flags: 0,
        tcp_seq: 0,
        tcp_ack: 0,
        tcp_window: 0,
        frag: ip.frag,
        app: AppHint::None,
    };
    if ip.frag.is_non_first() || !ip.l4_known {
        return Ok(PacketSummary::Ip(pkt));
    }
    // A short transport header is malformed only when the whole (unfragmented) IP packet
    // was captured; otherwise the capture or the fragmentation cut it.
    let short_is_bad = complete && !ip.frag.is_fragment;
    let l4_hdr_len = match ip.proto {
        proto::TCP => {
            if let Some(h) = arr::<20>(l4, 0) {
                let [p0, p1, p2, p3, s0, s1, s2, s3, a0, a1, a2, a3, off, flags, w0, w1, ..] = h;
                let doff = usize::from(off >> 4) * 4;
                if doff < 20 {
                    return Err(DecodeError::BadTransportHeader);
                }
                pkt.src_port = u16::from_be_bytes([p0, p1]);
                pkt.dst_port = u16::from_be_bytes([p2, p3]);
                pkt.tcp_seq = u32::from_be_bytes([s0, s1, s2, s3]);
                pkt.tcp_ack = u32::from_be_bytes([a0, a1, a2, a3]);
                pkt.tcp_flags = flags;
                pkt.tcp_window = u16::from_be_bytes([w0, w1]);
                pkt.has_l4 = true;
                doff
            } else if short_is_bad {
                return Err(DecodeError::BadTransportHeader);
            } else {
                partial_l4(&mut pkt, l4);
                // Cut by the snapshot length after the flags byte (a 48-byte capture of
                // a SYN, say): the data offset gives the payload length and the flags
                // drive the TCP state, so the handshake is not lost. A window not
                // captured is unknown, not zero (no `W`).
                if let Some(off) = byte(l4, 12) {
                    let doff = usize::from(off >> 4) * 4;
                    if doff >= 20 && l4.len() >= 14 {
                        pkt.has_l4 = true;
                        pkt.payload_len = ip_payload.saturating_sub(doff) as u32;
                        if l4.len() < 16 {
                            pkt.tcp_window = u16::MAX;
                        }
                    }
                }
                return Ok(PacketSummary::Ip(pkt));
            }
        }
        proto::UDP | proto::SCTP => {
            // Ports first in both; the header is UDP's 8 bytes or SCTP's 12-byte common
            // header (ports, verification tag, checksum: its chunks count as payload).
            let hdr = if ip.proto == proto::UDP { 8 } else { 12 };
            match arr::<4>(l4, 0).filter(|_| l4.len() >= hdr) {
                Some([p0, p1, p2, p3]) => {
                    pkt.src_port = u16::from_be_bytes([p0, p1]);
                    pkt.dst_port = u16::from_be_bytes([p2, p3]);
                    pkt.has_l4 = true;
                    hdr
                }
                None if short_is_bad => return Err(DecodeError::BadTransportHeader),
                None => {
                    partial_l4(&mut pkt, l4);
                    return Ok(PacketSummary::Ip(pkt));
                }
            }
        }
        proto::ICMP | proto::ICMPV6 => {
            if let Some([ty, code, _, _, i0, i1, ..]) = arr::<8>(l4, 0) {
                pkt.src_port = u16::from(ty);
                pkt.dst_port = u16::from(code);
                if is_echo(ip.proto, ty) {
                    pkt.icmp_id = u16::from_be_bytes([i0, i1]);
                }
                pkt.has_l4 = true;
                8
            } else if short_is_bad {
                return Err(DecodeError::BadTransportHeader);
            } else {
                partial_l4(&mut pkt, l4);
                return Ok(PacketSummary::Ip(pkt));
            }
        }
        proto::GRE if !ip.frag.is_fragment => return gre(frame, link, l4_start, pkt),
        _ => return Ok(PacketSummary::Ip(pkt)),
    };
    pkt.payload_len = ip_payload.saturating_sub(l4_hdr_len) as u32;
    let payload = d.get(l4_start + l4_hdr_len..cap_end).unwrap_or(&[]);
    if ip.proto == proto::UDP && pkt.dst_port == VXLAN_PORT && !ip.frag.is_fragment {
        return vxlan(frame, link, l4_start + 8, pkt);
    }
    pkt.app = hint::detect(pkt.proto, pkt.src_port, pkt.dst_port, payload);
    Ok(PacketSummary::Ip(pkt))
}

/// ICMP/ICMPv6 types that carry an echo identifier.
#[inline(always)]
fn is_echo(ip_proto: u8, ty: u8) -> bool {
    if ip_proto == proto::ICMP {
        matches!(ty, 0 | 8 | 13 | 14)
    } else {
        matches!(ty, 128 | 129)
    }
}

/// Reads whatever transport fields were captured of a header that is cut short (by the
/// snaplen or by fragmentation); `has_l4` stays false.
fn partial_l4(pkt: &mut IpPacket, l4: &[u8]) {
    match pkt.proto {
        proto::TCP | proto::UDP | proto::SCTP => {
            if let Some([p0, p1, p2, p3]) = arr(l4, 0) {
                pkt.src_port = u16::from_be_bytes([p0, p1]);
                pkt.dst_port = u16::from_be_bytes([p2, p3]);
            }
            if pkt.proto == proto::TCP {
                pkt.tcp_seq = be32(l4, 4).unwrap_or(0);
                pkt.tcp_ack = be32(l4, 8).unwrap_or(0);
                pkt.tcp_flags = byte(l4, 13).unwrap_or(0);
                pkt.tcp_window = be16(l4, 14).unwrap_or(0);
            }
        }
        proto::ICMP | proto::ICMPV6 => {
            if let Some([ty, code]) = arr(l4, 0) {
                pkt.src_port = u16::from(ty);
                pkt.dst_port = u16::from(code);
                if is_echo(pkt.proto, ty) {
                    pkt.icmp_id = be16(l4, 4).unwrap_or(0);
                }
            }
        }
        _ => {}
    }
}

/// The link context for a packet found inside a tunnel of kind `tunnel`.
fn inner_link(link: &Link, tunnel: Tunnel) -> Result<Link, DecodeError> {
    if link.depth >= MAX_TUNNEL_DEPTH {
        return Err(DecodeError::BadTunnel);
    }
    Ok(Link {
        tunnel,
        depth: link.depth + 1,
        ..*link
    })
}

/// GRE header at `off`; `outer` is returned when the payload is not decapsulated.
fn gre(
    frame: &Frame<'_>,
    link: &Link,
    off: usize,
    outer: IpPacket,
) -> Result<PacketSummary, DecodeError> {
    let d = frame.data;
    let [f0, f1, p0, p1] = arr(d, off).ok_or(DecodeError::BadTunnel)?;
    if f1 & 0x07 != 0 {
        // Version 1 (PPTP enhanced GRE) or unknown: a plain GRE flow.
        return Ok(PacketSummary::Ip(outer));
    }
    if f0 & 0x40 != 0 {
        // Routing present (RFC 1701 source routing, deprecated by RFC 2784).
        return Err(DecodeError::BadTunnel);
    }
    let has_csum = f0 & 0x80 != 0;
    let has_key = f0 & 0x20 != 0;
    let has_seq = f0 & 0x10 != 0;
    let key_at = off + 4 + if has_csum { 4 } else { 0 };
    let key = if has_key {
        be32(d, key_at).ok_or(DecodeError::BadTunnel)?
    } else {
        0
    };
    let hdr_len = 4 + 4 * (usize::from(has_csum) + usize::from(has_key) + usize::from(has_seq));
    let inner_off = off + hdr_len;
    if inner_off > d.len() {
        return Err(DecodeError::BadTunnel);
    }
    let mut inner = inner_link(link, Tunnel::Gre { key })?;
    let et = u16::from_be_bytes([p0, p1]);
    let res = match et {
        ETHERTYPE_TEB => ethernet(frame, inner_off, &mut inner),
        // ERSPAN (remote SPAN): the mirrored frame after the ERSPAN header. Type III
        // says what it carries (frame type: 0 Ethernet, 2 IP packet; others are not
        // decoded and the packet stays in its GRE flow, as tshark does).
        ETHERTYPE_ERSPAN_2 | ETHERTYPE_ERSPAN_3 => {
            let (erspan_len, frame_type) = if et == ETHERTYPE_ERSPAN_3 {
                let [_, _, _, _, _, _, _, _, _, _, w10, w11] =
                    arr::<12>(d, inner_off).ok_or(DecodeError::BadTunnel)?;
                (12 + if w11 & 0x01 != 0 { 8 } else { 0 }, (w10 >> 2) & 0x1f)
            } else if has_seq {
                (8, 0)
            } else {
                (0, 0)
            };
            let frame_at = inner_off + erspan_len;
            if frame_at > d.len() {
                return Err(DecodeError::BadTunnel);
            }
            match frame_type {
                0 => ethernet(frame, frame_at, &mut inner),
                2 => match byte(d, frame_at).map(|b| b >> 4) {
                    Some(6) => ethertype(frame, frame_at, ETHERTYPE_IPV6, &mut inner),
                    _ => ethertype(frame, frame_at, ETHERTYPE_IPV4, &mut inner),
                },
                _ => Err(DecodeError::NotIp),
            }
        }
        _ => ethertype(frame, inner_off, et, &mut inner),
    };
    match res {
        Err(DecodeError::NotIp) => Ok(PacketSummary::Ip(outer)),
        other => other,
    }
}

/// VXLAN header at `off`. UDP port 4789 is only a convention: when the payload is not
/// VXLAN (short, I flag clear) or its inner frame does not decode to IP or ARP, `outer`
/// is returned, so the datagram still counts in its UDP flow (a DNS query from source
/// port 4789 and its reply stay one flow) instead of being skipped as a bad tunnel.
fn vxlan(
    frame: &Frame<'_>,
    link: &Link,
    off: usize,
    outer: IpPacket,
) -> Result<PacketSummary, DecodeError> {
    let Some([flags, _, _, _, v0, v1, v2, _]) = arr(frame.data, off) else {
        return Ok(PacketSummary::Ip(outer));
    };
    if flags & 0x08 == 0 {
        return Ok(PacketSummary::Ip(outer));
    }
    let vni = u32::from_be_bytes([0, v0, v1, v2]);
    let Ok(mut inner) = inner_link(link, Tunnel::Vxlan { vni }) else {
        return Ok(PacketSummary::Ip(outer));
    };
    match ethernet(frame, off + 8, &mut inner) {
        Err(_) => Ok(PacketSummary::Ip(outer)),
        other => other,
    }
}
