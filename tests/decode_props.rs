//! Property tests of `decode`: it never panics on arbitrary bytes for any link type, nor on
//! any truncation or byte mutation of valid frames; truncations that keep the whole IP
//! header and the first 4 transport bytes keep the 5-tuple; and frames built by etherparse's
//! `PacketBuilder` decode to the values they were built from.

use etherparse::{PacketBuilder, VlanId};
use flowsentry::decode::decode;
use flowsentry::packet::{proto, Addr, DecodeError, Frame, LinkType, PacketSummary, Tunnel};
use flowsentry::time::Timestamp;
use proptest::prelude::*;

// ---------------------------------------------------------------- frame builders

fn ipv4(proto: u8, options: &[u8], l4: &[u8]) -> Vec<u8> {
    let ihl = 20 + options.len();
    assert_eq!(ihl % 4, 0);
    let total = (ihl + l4.len()) as u16;
    let mut v = vec![0x40 | (ihl / 4) as u8, 0];
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, proto, 0, 0]);
    v.extend_from_slice(&[10, 1, 2, 3, 10, 4, 5, 6]);
    v.extend_from_slice(options);
    v.extend_from_slice(l4);
    v
}

fn ipv6(next: u8, exts: &[u8], l4: &[u8]) -> Vec<u8> {
    let plen = (exts.len() + l4.len()) as u16;
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&plen.to_be_bytes());
    v.extend_from_slice(&[next, 64]);
    v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    v.extend_from_slice(exts);
    v.extend_from_slice(l4);
    v
}

fn tcp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0x60, 0x18, 0x10, 0x00, 0, 0, 0, 0]);
    v.extend_from_slice(&[2, 4, 0x05, 0xb4]); // MSS option (data offset 6)
    v.extend_from_slice(payload);
    v
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

fn eth(ethertype: u16, tags: &[(u16, u16)], payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    for &(tpid, vid) in tags {
        v.extend_from_slice(&tpid.to_be_bytes());
        v.extend_from_slice(&vid.to_be_bytes());
    }
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A valid frame, where its (innermost) transport header starts, and the expected tuple.
struct Valid {
    name: &'static str,
    link: LinkType,
    data: Vec<u8>,
    l4_off: usize,
    tuple: (Addr, Addr, u8, u16, u16),
}

const DNS_PAYLOAD: [u8; 21] = [
    0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 1, 0, 1,
];

fn valid_frames() -> Vec<Valid> {
    let a4 = Addr::v4([10, 1, 2, 3]);
    let b4 = Addr::v4([10, 4, 5, 6]);
    let mut a6 = [0u8; 16];
    a6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    let mut b6 = a6;
    a6[15] = 1;
    b6[15] = 2;
    let (a6, b6) = (Addr::v6(a6), Addr::v6(b6));
    let t4 = (a4, b4, proto::TCP, 1234, 502);
    let u4 = (a4, b4, proto::UDP, 5353, 53);
    let u6 = (a6, b6, proto::UDP, 5353, 53);
    let modbus = [0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 10];
    let tcp4 = ipv4(proto::TCP, &[], &tcp(1234, 502, &modbus));
    let udp4 = ipv4(proto::UDP, &[], &udp(5353, 53, &DNS_PAYLOAD));
    let udp6 = ipv6(proto::UDP, &[], &udp(5353, 53, &DNS_PAYLOAD));
    let mut v = vec![
        Valid {
            name: "eth/ipv4/tcp",
            link: LinkType::Ethernet,
            data: eth(0x0800, &[], &tcp4),
            l4_off: 34,
            tuple: t4,
        },
        Valid {
            name: "eth/ipv6/udp",
            link: LinkType::Ethernet,
            data: eth(0x86dd, &[], &udp6),
            l4_off: 54,
            tuple: u6,
        },
        Valid {
            name: "eth/qinq/ipv4/udp",
            link: LinkType::Ethernet,
            data: eth(0x0800, &[(0x88a8, 10), (0x8100, 20)], &udp4),
            l4_off: 42,
            tuple: u4,
        },
        Valid {
            name: "eth/ipv4 options/tcp",
            link: LinkType::Ethernet,
            data: eth(
                0x0800,
                &[],
                &ipv4(proto::TCP, &[0x94, 4, 0, 0], &tcp(1234, 502, &modbus)),
            ),
            l4_off: 38,
            tuple: t4,
        },
        Valid {
            name: "eth/ipv6 hbh+frag(first)/udp",
            link: LinkType::Ethernet,
            data: eth(
                0x86dd,
                &[],
                &ipv6(
                    0,
                    &[44, 0, 1, 4, 0, 0, 0, 0, 17, 0, 0, 1, 0, 0, 0, 9],
                    &udp(5353, 53, &DNS_PAYLOAD),
                ),
            ),
            l4_off: 70,
            tuple: u6,
        },
        Valid {
            name: "raw/ipv4/udp",
            link: LinkType::Raw,
            data: udp4.clone(),
            l4_off: 20,
            tuple: u4,
        },
        Valid {
            name: "ipv6 link/udp",
            link: LinkType::Ipv6,
            data: udp6.clone(),
            l4_off: 40,
            tuple: u6,
        },
        Valid {
            name: "null/ipv4/tcp",
            link: LinkType::Null,
            data: [&[2u8, 0, 0, 0][..], &tcp4].concat(),
            l4_off: 24,
            tuple: t4,
        },
        Valid {
            name: "sll/ipv4/udp",
            link: LinkType::LinuxSll,
            data: [
                &[0u8, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00][..],
                &udp4,
            ]
            .concat(),
            l4_off: 36,
            tuple: u4,
        },
        Valid {
            name: "sll2/ipv6/udp",
            link: LinkType::LinuxSll2,
            data: [
                &[
                    0x86u8, 0xdd, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
                ][..],
                &udp6,
            ]
            .concat(),
            l4_off: 60,
            tuple: u6,
        },
    ];
    // MPLS (2 labels) carrying IPv4/TCP.
    let mpls = [&[0u8, 1, 0, 64, 0, 1, 1, 64][..], &tcp4].concat();
    v.push(Valid {
        name: "eth/mpls/ipv4/tcp",
        link: LinkType::Ethernet,
        data: eth(0x8847, &[], &mpls),
        l4_off: 42,
        tuple: t4,
    });
    // GRE with key carrying IPv4/UDP.
    let gre = [&[0x20u8, 0, 0x08, 0x00, 0, 0, 0, 7][..], &udp4].concat();
    let outer = ipv4(proto::GRE, &[], &gre);
    v.push(Valid {
        name: "eth/ipv4/gre/ipv4/udp",
        link: LinkType::Ethernet,
        data: eth(0x0800, &[], &outer),
        l4_off: 62,
        tuple: u4,
    });
    // VXLAN carrying Ethernet/IPv4/TCP.
    let inner = eth(0x0800, &[], &tcp4);
    let vx = [&[0x08u8, 0, 0, 0, 0, 0, 42, 0][..], &inner].concat();
    let outer = ipv4(proto::UDP, &[], &udp(40000, 4789, &vx));
    v.push(Valid {
        name: "eth/ipv4/udp/vxlan/eth/ipv4/tcp",
        link: LinkType::Ethernet,
        data: eth(0x0800, &[], &outer),
        l4_off: 84,
        tuple: t4,
    });
    v
}

fn frame(link: LinkType, data: &[u8], orig_len: u32) -> Frame<'_> {
    Frame {
        ts: Timestamp(0),
        link,
        orig_len,
        data,
    }
}

fn tuple_of(s: &PacketSummary) -> Option<(Addr, Addr, u8, u16, u16)> {
    match s {
        PacketSummary::Ip(p) => Some((p.src, p.dst, p.proto, p.src_port, p.dst_port)),
        PacketSummary::Arp(_) => None,
    }
}

// ---------------------------------------------------------------- deterministic sweeps

#[test]
fn valid_frames_decode_to_their_tuple() {
    for f in valid_frames() {
        let s = decode(&frame(f.link, &f.data, f.data.len() as u32));
        let s = s.unwrap_or_else(|e| panic!("{}: {e:?}", f.name));
        assert_eq!(tuple_of(&s), Some(f.tuple), "{}", f.name);
        if let PacketSummary::Ip(p) = s {
            assert!(p.has_l4, "{}", f.name);
            assert_eq!(p.wire_len as usize, f.data.len(), "{}", f.name);
            if f.name.contains("vxlan") {
                assert_eq!(p.tunnel, Tunnel::Vxlan { vni: 42 }, "{}", f.name);
            }
        }
    }
}

#[test]
fn every_truncation_never_panics_and_keeps_the_tuple_once_ports_are_in() {
    for f in valid_frames() {
        let orig = f.data.len() as u32;
        for cut in 0..=f.data.len() {
            let r = decode(&frame(f.link, &f.data[..cut], orig));
            if cut >= f.l4_off + 4 {
                let s = r.unwrap_or_else(|e| panic!("{} cut at {cut}: {e:?}", f.name));
                assert_eq!(tuple_of(&s), Some(f.tuple), "{} cut at {cut}", f.name);
                if let PacketSummary::Ip(p) = s {
                    assert_eq!(p.wire_len, orig, "{} cut at {cut}", f.name);
                }
            } else if let Ok(PacketSummary::Ip(p)) = r {
                // Before the ports are complete, any IP result must not invent ports.
                let tunnelled = !matches!(p.tunnel, Tunnel::None);
                if !tunnelled && (p.src, p.dst, p.proto) == (f.tuple.0, f.tuple.1, f.tuple.2) {
                    assert_eq!(
                        (p.src_port, p.dst_port, p.has_l4),
                        (0, 0, false),
                        "{} cut at {cut}",
                        f.name
                    );
                }
            }
            // The same prefix also claiming to be the whole frame must not panic.
            let _ = decode(&frame(f.link, &f.data[..cut], cut as u32));
        }
    }
}

// ---------------------------------------------------------------- proptest

fn any_link() -> impl Strategy<Value = LinkType> {
    prop_oneof![
        Just(LinkType::Null),
        Just(LinkType::Ethernet),
        Just(LinkType::Raw),
        Just(LinkType::Loop),
        Just(LinkType::LinuxSll),
        Just(LinkType::Ipv4),
        Just(LinkType::Ipv6),
        Just(LinkType::LinuxSll2),
        any::<u32>().prop_map(LinkType::Other),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(
        link in any_link(),
        data in proptest::collection::vec(any::<u8>(), 0..256),
        orig_extra in prop_oneof![Just(0u32), 0u32..70_000, Just(u32::MAX)],
    ) {
        let orig = (data.len() as u32).saturating_add(orig_extra);
        let _ = decode(&frame(link, &data, orig));
        // A capture file may also claim less than it captured.
        let _ = decode(&frame(link, &data, orig_extra.min(data.len() as u32)));
    }

    #[test]
    fn never_panics_on_mutated_valid_frames(
        which in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let frames = valid_frames();
        let f = which.get(&frames);
        let mut data = f.data.clone();
        for (at, val) in flips {
            let i = at.index(data.len());
            data[i] = val;
        }
        let n = cut.index(data.len() + 1);
        let _ = decode(&frame(f.link, &data, f.data.len() as u32));
        let _ = decode(&frame(f.link, &data[..n], f.data.len() as u32));
    }

    #[test]
    fn etherparse_built_frames_decode_to_their_fields(
        src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
        src6 in any::<[u8; 16]>(), dst6 in any::<[u8; 16]>(),
        v6 in any::<bool>(), is_tcp in any::<bool>(),
        vlans in proptest::collection::vec(0u16..4096, 0..3),
        sport in any::<u16>(), dport in any::<u16>(),
        seq in any::<u32>(), window in any::<u16>(), ttl in any::<u8>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        cut in any::<prop::sample::Index>(),
    ) {
        // Keep clear of ports with hints/tunnels so only the builder's fields matter.
        prop_assume!(![53, 502, 5353, 4789].contains(&dport) && ![53, 502, 5353].contains(&sport));
        let b = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]);
        let b = match vlans.as_slice() {
            [] => None,
            [a] => Some(b.single_vlan(VlanId::try_new(*a).unwrap())),
            [a, c, ..] => Some(b.double_vlan(VlanId::try_new(*a).unwrap(), VlanId::try_new(*c).unwrap())),
        };
        let mut out = Vec::new();
        macro_rules! finish {
            ($ip:expr) => {
                if is_tcp {
                    $ip.tcp(sport, dport, seq, window).syn().write(&mut out, &payload).unwrap()
                } else {
                    $ip.udp(sport, dport).write(&mut out, &payload).unwrap()
                }
            };
        }
        match (b, v6) {
            (None, false) => finish!(PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]).ipv4(src, dst, ttl)),
            (None, true) => finish!(PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]).ipv6(src6, dst6, ttl)),
            (Some(b), false) => finish!(b.ipv4(src, dst, ttl)),
            (Some(b), true) => finish!(b.ipv6(src6, dst6, ttl)),
        }
        let s = decode(&frame(LinkType::Ethernet, &out, out.len() as u32));
        let Ok(PacketSummary::Ip(p)) = s else { panic!("{s:?}") };
        let (esrc, edst) = if v6 { (Addr::v6(src6), Addr::v6(dst6)) } else { (Addr::v4(src), Addr::v4(dst)) };
        prop_assert_eq!((p.src, p.dst), (esrc, edst));
        prop_assert_eq!((p.src_port, p.dst_port, p.ttl, p.has_l4), (sport, dport, ttl, true));
        prop_assert_eq!(p.proto, if is_tcp { proto::TCP } else { proto::UDP });
        prop_assert_eq!(p.payload_len as usize, payload.len());
        prop_assert_eq!(p.src_mac, Some([1, 2, 3, 4, 5, 6]));
        let mut ev = [0u16; 2];
        for (slot, v) in ev.iter_mut().zip(&vlans) { *slot = *v; }
        prop_assert_eq!(p.vlan, ev);
        if is_tcp {
            prop_assert_eq!((p.tcp_seq, p.tcp_window, p.tcp_flags), (seq, window, 0x02));
        }
        // Snaplen truncation anywhere after the ports keeps the tuple.
        let l4_off = 14 + 4 * vlans.len().min(2) + if v6 { 40 } else { 20 };
        let n = cut.index(out.len() + 1);
        let t = decode(&frame(LinkType::Ethernet, &out[..n], out.len() as u32));
        if n >= l4_off + 4 {
            let Ok(PacketSummary::Ip(q)) = t else { panic!("cut {n}: {t:?}") };
            prop_assert_eq!((q.src, q.dst, q.src_port, q.dst_port), (esrc, edst, sport, dport));
        } else if n < l4_off - if v6 { 40 } else { 20 } {
            prop_assert_eq!(t, Err(DecodeError::TruncatedLink));
        }
    }
}
