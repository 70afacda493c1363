//! The canonical bidirectional flow key: both directions of a conversation map to the
//! same key, so one table entry (and one worker shard) sees the whole flow.

use crate::packet::{proto, Addr, IpPacket, Tunnel};
use std::hash::BuildHasher;

/// Canonical bidirectional key: VLAN ids, tunnel, protocol, and the address/port pair
/// ordered so that (`addr_lo`, `port_lo`) <= (`addr_hi`, `port_hi`). ICMP flows are keyed
/// by (request type, code or 0, echo id) so an echo request and its reply share a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FlowKey {
    /// VLAN ids, outer first (0 = none).
    pub vlan: [u16; 2],
    /// IP protocol number.
    pub proto: u8,
    /// The lower (address, port) endpoint's address.
    pub addr_lo: Addr,
    /// The higher endpoint's address.
    pub addr_hi: Addr,
    /// The lower endpoint's port (ICMP: canonical type).
    pub port_lo: u16,
    /// The higher endpoint's port (ICMP: code for non-echo types, else 0).
    pub port_hi: u16,
    /// ICMP echo identifier (0 otherwise).
    pub icmp_id: u16,
    /// Tunnel id the flow was carried in (VXLAN VNI or GRE key); 0 = none.
    pub tunnel_id: u32,
    /// Tunnel kind: 0 none, 1 GRE, 2 VXLAN.
    pub tunnel_kind: u8,
}

/// ICMP message types that come in request/reply pairs: (request, reply).
/// ICMPv4 echo, timestamp, information, address mask; ICMPv6 echo, MLD, RS/RA, NS/NA.
const ICMP4_PAIRS: [(u8, u8); 5] = [(8, 0), (13, 14), (15, 16), (17, 18), (10, 9)];
const ICMP6_PAIRS: [(u8, u8); 5] = [(128, 129), (130, 131), (133, 134), (135, 136), (144, 145)];

/// For an ICMP type, the canonical request type and whether it is part of a pair.
pub fn icmp_canonical_type(proto_num: u8, ty: u8) -> Option<(u8, u8)> {
    let pairs: &[(u8, u8)] = if proto_num == proto::ICMPV6 {
        &ICMP6_PAIRS
    } else {
        &ICMP4_PAIRS
    };
    pairs
        .iter()
        .find(|(req, rep)| *req == ty || *rep == ty)
        .copied()
}

/// Whether `proto` is ICMP or ICMPv6.
pub fn is_icmp(proto_num: u8) -> bool {
    proto_num == proto::ICMP || proto_num == proto::ICMPV6
}

impl FlowKey {
    /// Builds the canonical key of a packet and says whether the packet's source is the
    /// key's low endpoint.
    pub fn of(pkt: &IpPacket) -> (FlowKey, bool) {
        let (tunnel_kind, tunnel_id) = match pkt.tunnel {
            Tunnel::None => (0, 0),
            Tunnel::Gre { key } => (1, key),
            Tunnel::Vxlan { vni } => (2, vni),
        };
        if is_icmp(pkt.proto) {
            // ICMP: ports carry type/code. Paired types share one key; direction is decided
            // by address order only.
            let ty = pkt.src_port as u8;
            let (port_lo, port_hi, id) = match icmp_canonical_type(pkt.proto, ty) {
                Some((req, _)) => (req as u16, 0, pkt.icmp_id),
                None => (ty as u16, pkt.dst_port, 0),
            };
            let src_is_lo = pkt.src <= pkt.dst;
            let (addr_lo, addr_hi) = if src_is_lo {
                (pkt.src, pkt.dst)
            } else {
                (pkt.dst, pkt.src)
            };
            return (
                FlowKey {
                    vlan: pkt.vlan,
                    proto: pkt.proto,
                    addr_lo,
                    addr_hi,
                    port_lo,
                    port_hi,
                    icmp_id: id,
                    tunnel_id,
                    tunnel_kind,
                },
                src_is_lo,
            );
        }
        let src_is_lo = (pkt.src, pkt.src_port) <= (pkt.dst, pkt.dst_port);
        let (addr_lo, port_lo, addr_hi, port_hi) = if src_is_lo {
            (pkt.src, pkt.src_port, pkt.dst, pkt.dst_port)
        } else {
            (pkt.dst, pkt.dst_port, pkt.src, pkt.src_port)
        };
        (
            FlowKey {
                vlan: pkt.vlan,
                proto: pkt.proto,
                addr_lo,
                addr_hi,
                port_lo,
                port_hi,
                icmp_id: 0,
                tunnel_id,
                tunnel_kind,
            },
            src_is_lo,
        )
    }

    /// A hash of the key that is the same for both directions (the key is canonical);
    /// used for the table and for sharding flows across workers.
    ///
    /// The key is fed as six 64-bit words (every field once, no length prefixes), which
    /// is several times cheaper than the derived field-by-field `Hash`; the derived `Hash`
    /// stays for other uses (the event flow id).
    #[inline]
    pub fn hash_with(&self, state: &foldhash::fast::FixedState) -> u64 {
        use std::hash::Hasher;
        let word = |b: &[u8; 16], i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_ne_bytes(w)
        };
        let mut h = state.build_hasher();
        h.write_u64(word(&self.addr_lo.0, 0));
        h.write_u64(word(&self.addr_lo.0, 8));
        h.write_u64(word(&self.addr_hi.0, 0));
        h.write_u64(word(&self.addr_hi.0, 8));
        h.write_u64(
            u64::from(self.vlan[0])
                | u64::from(self.vlan[1]) << 16
                | u64::from(self.port_lo) << 32
                | u64::from(self.port_hi) << 48,
        );
        h.write_u64(
            u64::from(self.icmp_id)
                | u64::from(self.proto) << 16
                | u64::from(self.tunnel_kind) << 24
                | u64::from(self.tunnel_id) << 32,
        );
        h.finish()
    }
}

/// Bit of a [`PackedKey`]'s tunnel-kind byte (in `w[2]`) that marks a key whose addresses
/// live in the table's IPv6 side store (its `w[0]` is then the store index).
const PACKED_V6: u8 = 0x80;

/// The form a [`FlowKey`] takes in the flow table's slot: 24 bytes instead of 48. When
/// both addresses are IPv4(-mapped), their last four bytes are kept inline; otherwise the
/// address pair is kept once in the table's IPv6 side store ([`V6Store`]) and the slot
/// keeps its index. Every other field is kept as is, so the packed key identifies the
/// flow exactly (see [`PackedKey::matches`]). Packed into three words so a lookup compares
/// it in three integer compares:
///
/// * `w[0]`: IPv4: low address | high address << 32 (the last four bytes of the mapped
///   form, in memory order); IPv6: the store index;
/// * `w[1]`: outer VLAN | inner VLAN << 16 | low port << 32 | high port << 48;
/// * `w[2]`: ICMP id | protocol << 16 | tunnel kind (with [`PACKED_V6`]) << 24 |
///   tunnel id << 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct PackedKey {
    w: [u64; 3],
}

/// The last four bytes of an address, in memory order, when it is IPv4(-mapped).
#[inline(always)]
fn v4_word(a: &Addr) -> Option<u32> {
    a.as_v4().map(u32::from_ne_bytes)
}

impl PackedKey {
    /// The packed form of `k` to look it up with: complete for an IPv4 key; for an IPv6
    /// key the addresses are left out (`w[0]` is 0) and [`PACKED_V6`] is set.
    #[inline(always)]
    pub(super) fn probe(k: &FlowKey) -> PackedKey {
        let (w0, v6) = match (v4_word(&k.addr_lo), v4_word(&k.addr_hi)) {
            (Some(lo), Some(hi)) => (u64::from(lo) | u64::from(hi) << 32, 0),
            _ => (0, PACKED_V6),
        };
        PackedKey {
            w: [
                w0,
                u64::from(k.vlan[0])
                    | u64::from(k.vlan[1]) << 16
                    | u64::from(k.port_lo) << 32
                    | u64::from(k.port_hi) << 48,
                u64::from(k.icmp_id)
                    | u64::from(k.proto) << 16
                    | u64::from(k.tunnel_kind | v6) << 24
                    | u64::from(k.tunnel_id) << 32,
            ],
        }
    }

    /// Whether the key's addresses are in the IPv6 side store.
    #[inline(always)]
    pub(super) fn is_v6(&self) -> bool {
        (self.w[2] >> 24) as u8 & PACKED_V6 != 0
    }

    /// The side-store index of an IPv6 key.
    #[inline(always)]
    pub(super) fn v6_index(&self) -> u32 {
        self.w[0] as u32
    }

    /// `probe` with the side-store index `i` filled in (for an IPv6 key being stored).
    pub(super) fn with_v6_index(mut self, i: u32) -> PackedKey {
        self.w[0] = u64::from(i);
        self
    }

    /// Whether this stored key is `full`, whose probe is `probe`.
    #[inline(always)]
    pub(super) fn matches(&self, probe: &PackedKey, full: &FlowKey, store: &V6Store) -> bool {
        if self.w[1] != probe.w[1] || self.w[2] != probe.w[2] {
            return false;
        }
        if !probe.is_v6() {
            return self.w[0] == probe.w[0];
        }
        store.get(self.v6_index()) == Some([full.addr_lo, full.addr_hi])
    }

    /// The full key (the addresses of an IPv6 key from `store`).
    pub(super) fn unpack(&self, store: &V6Store) -> FlowKey {
        let (addr_lo, addr_hi) = if self.is_v6() {
            let [lo, hi] = store.get(self.v6_index()).unwrap_or_default();
            (lo, hi)
        } else {
            let v4 = |w: u32| Addr::v4(w.to_ne_bytes());
            (v4(self.w[0] as u32), v4((self.w[0] >> 32) as u32))
        };
        let [_, a, b] = self.w;
        FlowKey {
            vlan: [a as u16, (a >> 16) as u16],
            proto: (b >> 16) as u8,
            addr_lo,
            addr_hi,
            port_lo: (a >> 32) as u16,
            port_hi: (a >> 48) as u16,
            icmp_id: b as u16,
            tunnel_id: (b >> 32) as u32,
            tunnel_kind: (b >> 24) as u8 & !PACKED_V6,
        }
    }
}

/// The address pairs of the table's IPv6 flows (and of flows with one IPv4 and one IPv6
/// address), so that slots keep a 24-byte [`PackedKey`]. Entries are reused through a
/// free list.
#[derive(Debug, Default)]
pub(super) struct V6Store {
    pairs: Vec<[Addr; 2]>,
    free: Vec<u32>,
}

impl V6Store {
    /// Stores the address pair of `k`; returns its index.
    pub(super) fn insert(&mut self, k: &FlowKey) -> u32 {
        let pair = [k.addr_lo, k.addr_hi];
        match self.free.pop() {
            Some(i) => {
                if let Some(p) = self.pairs.get_mut(i as usize) {
                    *p = pair;
                }
                i
            }
            None => {
                self.pairs.push(pair);
                (self.pairs.len() - 1) as u32
            }
        }
    }

    /// The address pair at `i`.
    #[inline(always)]
    pub(super) fn get(&self, i: u32) -> Option<[Addr; 2]> {
        self.pairs.get(i as usize).copied()
    }

    /// Frees entry `i` for reuse.
    pub(super) fn remove(&mut self, i: u32) {
        self.free.push(i);
    }

    /// Bytes of memory held.
    pub(super) fn allocation_size(&self) -> usize {
        self.pairs.capacity() * std::mem::size_of::<[Addr; 2]>() + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{AppHint, FragInfo};
    use crate::time::Timestamp;

    pub(crate) fn pkt(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, proto_num: u8) -> IpPacket {
        IpPacket {
            ts: Timestamp(0),
            wire_len: 60,
            src_mac: None,
            dst_mac: None,
            vlan: [0, 0],
            mpls_labels: 0,
            tunnel: Tunnel::None,
            src: Addr::v4(src),
            dst: Addr::v4(dst),
            proto: proto_num,
            src_port: sp,
            dst_port: dp,
            icmp_id: 0,
            has_l4: true,
            ip_len: 40,
            payload_len: 0,
            ttl: 64,
            tcp_flags: 0,
            tcp_seq: 0,
            tcp_ack: 0,
            tcp_window: 0,
            frag: FragInfo::default(),
            app: AppHint::None,
        }
    }

    #[test]
    fn both_directions_same_key() {
        let a = pkt([10, 0, 0, 1], 40000, [10, 0, 0, 2], 502, proto::TCP);
        let b = pkt([10, 0, 0, 2], 502, [10, 0, 0, 1], 40000, proto::TCP);
        let (ka, a_lo) = FlowKey::of(&a);
        let (kb, b_lo) = FlowKey::of(&b);
        assert_eq!(ka, kb);
        assert_ne!(a_lo, b_lo);
    }

    #[test]
    fn icmp_echo_pair_same_key_other_types_distinct() {
        let mut req = pkt([10, 0, 0, 1], 8, [10, 0, 0, 2], 0, proto::ICMP);
        req.icmp_id = 77;
        let mut rep = pkt([10, 0, 0, 2], 0, [10, 0, 0, 1], 0, proto::ICMP);
        rep.icmp_id = 77;
        assert_eq!(FlowKey::of(&req).0, FlowKey::of(&rep).0);
        let mut other_id = req;
        other_id.icmp_id = 78;
        assert_ne!(FlowKey::of(&req).0, FlowKey::of(&other_id).0);
        let unreach = pkt([10, 0, 0, 2], 3, [10, 0, 0, 1], 3, proto::ICMP);
        assert_ne!(FlowKey::of(&req).0, FlowKey::of(&unreach).0);
    }

    #[test]
    fn vlan_separates_flows() {
        let a = pkt([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, proto::UDP);
        let mut b = a;
        b.vlan = [10, 0];
        assert_ne!(FlowKey::of(&a).0, FlowKey::of(&b).0);
    }

    /// An address that is IPv4-mapped, IPv6, or IPv4-mapped but for one prefix byte.
    fn addr_strategy() -> impl proptest::strategy::Strategy<Value = Addr> {
        use proptest::prelude::*;
        (0u8..3, any::<[u8; 16]>(), any::<[u8; 4]>(), 0usize..12).prop_map(|(kind, v6, v4, at)| {
            match kind {
                0 => Addr::v4(v4),
                1 => Addr::v6(v6),
                _ => {
                    let mut a = Addr::v4(v4);
                    a.0[at] ^= 0x01;
                    a
                }
            }
        })
    }

    fn key_strategy() -> impl proptest::strategy::Strategy<Value = FlowKey> {
        use proptest::prelude::*;
        (
            (
                any::<[u16; 2]>(),
                any::<u8>(),
                addr_strategy(),
                addr_strategy(),
            ),
            (
                any::<u16>(),
                any::<u16>(),
                any::<u16>(),
                any::<u32>(),
                0u8..3,
            ),
        )
            .prop_map(
                |((vlan, proto, addr_lo, addr_hi), (port_lo, port_hi, icmp_id, tid, tk))| FlowKey {
                    vlan,
                    proto,
                    addr_lo,
                    addr_hi,
                    port_lo,
                    port_hi,
                    icmp_id,
                    tunnel_id: tid,
                    tunnel_kind: tk,
                },
            )
    }

    proptest::proptest! {
        /// A stored packed key gives its key back and matches exactly that key.
        #[test]
        fn packed_key_is_exact(a in key_strategy(), b in key_strategy(), relation in 0u8..3) {
            // b: independent of a, or a with b's addresses, or b with a's addresses
            // (keys that differ only in the addresses, or only outside them).
            let b = match relation {
                0 => b,
                1 => FlowKey { addr_lo: b.addr_lo, addr_hi: b.addr_hi, ..a },
                _ => FlowKey { addr_lo: a.addr_lo, addr_hi: a.addr_hi, ..b },
            };
            let mut store = V6Store::default();
            let _other = store.insert(&b);
            let probe = PackedKey::probe(&a);
            let stored = if probe.is_v6() {
                probe.with_v6_index(store.insert(&a))
            } else {
                probe
            };
            proptest::prop_assert_eq!(stored.unpack(&store), a);
            proptest::prop_assert!(stored.matches(&probe, &a, &store));
            proptest::prop_assert_eq!(
                stored.matches(&PackedKey::probe(&b), &b, &store),
                a == b
            );
        }
    }
}
