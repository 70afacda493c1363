//! IPv4/IPv6 fragment attribution: remembers the transport ports of first fragments in a
//! bounded, timed table keyed by (VLANs, src, dst, proto, IP id) (IPv6: no proto) and fills them into later
//! fragments so every fragment counts toward its flow. Owns nothing else.
//!
//! Bounds: at most `capacity` datagrams; when full, the oldest entry is evicted (counted
//! by [`FragmentTable::evicted`]). Entries live for `timeout_ns` of packet time after their
//! first fragment was seen, then are dropped (counted by [`FragmentTable::expired`]); an
//! entry is *not* removed when the last fragment arrives, because later fragments may come
//! out of order among themselves or duplicated. A repeated first fragment refreshes the
//! remembered ports but keeps the entry's age.
//!
//! A later fragment that arrives *before* its first fragment (some stacks send a
//! datagram's fragments last first, and evasion tools reorder them) is held back, up to
//! [`HOLD_MAX`] packets and for at most `timeout_ns` of packet time. When its first
//! fragment comes it is released, attributed, right after it; otherwise it is released
//! `Unmatched` (ports 0) when it times out, when the hold is full (oldest first) or at
//! [`FragmentTable::release_all`] (end of input, shutdown). Released packets wait in
//! [`FragmentTable::take_released`] for the caller to hand them on. So no fragment is
//! lost, and a reordered datagram still counts toward one flow.
//!
//! The map and the age ring are allocated in [`FragmentTable::new`] (the map with room
//! for twice `capacity`, so that churn at capacity never reallocates it); the hold and its
//! release buffer grow only when fragments arrive out of order, never past [`HOLD_MAX`].

use crate::packet::{Addr, IpPacket};
use crate::time::Timestamp;
use hashbrown::HashMap;
use std::collections::VecDeque;

/// What the fragment table did with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragOutcome {
    /// Not a fragment: untouched.
    NotFragment,
    /// A first fragment: its ports were remembered.
    First,
    /// A later fragment: ports filled in from its first fragment.
    Attributed,
    /// A later fragment whose first fragment was not seen (or expired): ports stay 0.
    Unmatched,
    /// A later fragment that came before its first fragment: taken into the hold, to be
    /// released later through [`FragmentTable::take_released`]. Do not hand it on now.
    Held,
}

/// Later fragments held back at most, waiting for their first fragment.
pub const HOLD_MAX: usize = 1024;

/// A later fragment waiting for its first fragment.
#[derive(Debug, Clone, Copy)]
struct Held {
    key: FragKey,
    pkt: IpPacket,
    /// Flow-clock time it arrived.
    arrived: Timestamp,
}

/// Identity of one IP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    vlan: [u16; 2],
    src: Addr,
    dst: Addr,
    proto: u8,
    id: u32,
}

impl FragKey {
    /// IPv4 identifies a datagram by (src, dst, protocol, id) (RFC 791); IPv6 by (src,
    /// dst, id) only (RFC 8200): a later fragment's next header is the fragment header's,
    /// which differs from the first fragment's transport protocol when an extension header
    /// follows the fragment header, so the protocol is left out of IPv6 keys.
    fn of(pkt: &IpPacket) -> Self {
        FragKey {
            vlan: pkt.vlan,
            src: pkt.src,
            dst: pkt.dst,
            proto: if pkt.src.is_v4() { pkt.proto } else { 0 },
            id: pkt.frag.id,
        }
    }
}

/// What a first fragment left behind for its later fragments.
#[derive(Debug, Clone, Copy)]
struct FragEntry {
    /// The first fragment's transport protocol (an IPv6 later fragment may name another).
    proto: u8,
    src_port: u16,
    dst_port: u16,
    icmp_id: u16,
    /// Flow-clock time the entry was created (also stored in the age ring).
    created: Timestamp,
}

impl FragEntry {
    /// What first fragment `first` leaves for the datagram's later fragments.
    fn of(first: &IpPacket, created: Timestamp) -> FragEntry {
        FragEntry {
            proto: first.proto,
            src_port: first.src_port,
            dst_port: first.dst_port,
            icmp_id: first.icmp_id,
            created,
        }
    }

    /// Gives a later fragment its first fragment's protocol and ports.
    fn fill(&self, later: &mut IpPacket) {
        later.proto = self.proto;
        later.src_port = self.src_port;
        later.dst_port = self.dst_port;
        later.icmp_id = self.icmp_id;
    }
}

/// Bounded table of first-fragment ports.
#[derive(Debug, Default)]
pub struct FragmentTable {
    map: HashMap<FragKey, FragEntry, foldhash::fast::RandomState>,
    /// Keys in creation order, one per map entry, with their creation time.
    ages: VecDeque<(FragKey, Timestamp)>,
    capacity: usize,
    timeout_ns: i64,
    evicted: u64,
    expired: u64,
    attributed: u64,
    unmatched: u64,
    firsts: u64,
    /// Later fragments waiting for their first fragment, in arrival order.
    hold: VecDeque<Held>,
    /// Most packets the hold keeps (`min(capacity, HOLD_MAX)`).
    hold_max: usize,
    /// Held packets per datagram, so a first fragment looks through the hold only when
    /// some of its own fragments are there.
    hold_keys: HashMap<FragKey, u32, foldhash::fast::RandomState>,
    /// Later fragments that were ever held.
    held: u64,
    /// Held fragments released, each with its outcome (`Attributed` or `Unmatched`).
    released: Vec<(IpPacket, FragOutcome)>,
}

impl FragmentTable {
    /// A table holding at most `capacity` datagrams for at most `timeout_ns` of packet time.
    /// A capacity of 0 remembers nothing (every later fragment is [`FragOutcome::Unmatched`]).
    pub fn new(capacity: usize, timeout_ns: i64) -> Self {
        FragmentTable {
            // Twice the entries: removals leave tombstones, and hashbrown only rehashes in
            // place (no allocation) while the live entries fit in half its capacity;
            // otherwise it doubles the table (`no_growth_beyond_capacity` saw that in
            // about one run in six, depending on the random hash seed).
            map: HashMap::with_capacity_and_hasher(
                capacity.saturating_mul(2).saturating_add(2),
                foldhash::fast::RandomState::default(),
            ),
            ages: VecDeque::with_capacity(capacity),
            capacity,
            timeout_ns,
            hold_max: capacity.min(HOLD_MAX),
            ..FragmentTable::default()
        }
    }

    /// Attributes `pkt` (see [`FragOutcome`]); `now` is the flow clock.
    pub fn attribute(&mut self, pkt: &mut IpPacket, now: Timestamp) -> FragOutcome {
        if !pkt.frag.is_fragment {
            return FragOutcome::NotFragment;
        }
        self.expire(now);
        let key = FragKey::of(pkt);
        if pkt.frag.offset == 0 {
            self.firsts += 1;
            self.remember(key, pkt, now);
            if self.hold_keys.contains_key(&key) {
                self.release_waiting(key, FragEntry::of(pkt, now));
            }
            return FragOutcome::First;
        }
        match self.map.get(&key) {
            Some(e) if now.since(e.created).0 <= self.timeout_ns => {
                e.fill(pkt);
                self.attributed += 1;
                FragOutcome::Attributed
            }
            _ if self.hold_max > 0 => {
                if self.hold.len() >= self.hold_max {
                    self.release_oldest_held();
                }
                self.hold.push_back(Held {
                    key,
                    pkt: *pkt,
                    arrived: now,
                });
                *self.hold_keys.entry(key).or_insert(0) += 1;
                self.held += 1;
                FragOutcome::Held
            }
            _ => {
                self.unmatched += 1;
                FragOutcome::Unmatched
            }
        }
    }

    /// Releases the oldest held fragment `Unmatched`.
    fn release_oldest_held(&mut self) {
        if let Some(h) = self.hold.pop_front() {
            if let Some(n) = self.hold_keys.get_mut(&h.key) {
                *n -= 1;
                if *n == 0 {
                    self.hold_keys.remove(&h.key);
                }
            }
            self.release(h.pkt, FragOutcome::Unmatched);
        }
    }

    /// Releases, attributed to `first`'s ports, the held fragments of its datagram, in
    /// arrival order. They are looked for from the newest back (where a datagram's
    /// fragments usually are), and only until all of them are found.
    fn release_waiting(&mut self, key: FragKey, first: FragEntry) {
        let mut left = self.hold_keys.remove(&key).unwrap_or(0);
        let start = self.released.len();
        let mut i = self.hold.len();
        while left > 0 && i > 0 {
            i -= 1;
            if self.hold[i].key != key {
                continue;
            }
            if let Some(h) = self.hold.remove(i) {
                let mut p = h.pkt;
                first.fill(&mut p);
                self.release(p, FragOutcome::Attributed);
                left -= 1;
            }
        }
        self.released[start..].reverse();
    }

    fn release(&mut self, pkt: IpPacket, outcome: FragOutcome) {
        match outcome {
            FragOutcome::Attributed => self.attributed += 1,
            _ => self.unmatched += 1,
        }
        self.released.push((pkt, outcome));
    }

    /// Releases every held fragment `Unmatched` (end of input, shutdown).
    pub fn release_all(&mut self) {
        while !self.hold.is_empty() {
            self.release_oldest_held();
        }
    }

    /// Whether held fragments were released and wait for [`FragmentTable::take_released`].
    #[inline]
    pub fn has_released(&self) -> bool {
        !self.released.is_empty()
    }

    /// The released fragments, in release order, each with its outcome; the caller hands
    /// them on as packets.
    pub fn take_released(&mut self) -> std::vec::Drain<'_, (IpPacket, FragOutcome)> {
        self.released.drain(..)
    }

    /// Number of later fragments waiting for their first fragment.
    pub fn holding(&self) -> usize {
        self.hold.len()
    }

    /// Number of later fragments that were ever held back (each also counts as attributed
    /// or unmatched once released).
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Stores (or refreshes) the ports of a first fragment.
    fn remember(&mut self, key: FragKey, pkt: &IpPacket, now: Timestamp) {
        if let Some(e) = self.map.get_mut(&key) {
            *e = FragEntry::of(pkt, e.created);
            return;
        }
        if self.capacity == 0 {
            self.evicted += 1;
            return;
        }
        while self.map.len() >= self.capacity {
            match self.ages.pop_front() {
                Some((old, _)) => {
                    self.map.remove(&old);
                    self.evicted += 1;
                }
                None => break,
            }
        }
        self.map.insert(key, FragEntry::of(pkt, now));
        self.ages.push_back((key, now));
    }

    /// Drops entries created more than `timeout_ns` before `now`, oldest first, and
    /// releases `Unmatched` the held fragments that waited longer than that. Also called
    /// by [`FragmentTable::attribute`]; call it from the periodic sweep when fragments stop.
    pub fn expire(&mut self, now: Timestamp) {
        while let Some(h) = self.hold.front() {
            if now.since(h.arrived).0 <= self.timeout_ns {
                break;
            }
            self.release_oldest_held();
        }
        while let Some(&(key, created)) = self.ages.front() {
            if now.since(created).0 <= self.timeout_ns {
                break;
            }
            self.ages.pop_front();
            self.map.remove(&key);
            self.expired += 1;
        }
    }

    /// Number of datagrams currently remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no datagram is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Number of first-fragment entries dropped because the table was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Number of first-fragment entries dropped because they outlived the timeout.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// Number of later fragments that got their ports from a first fragment.
    pub fn attributed(&self) -> u64 {
        self.attributed
    }

    /// Number of later fragments with no (live) first fragment.
    pub fn unmatched(&self) -> u64 {
        self.unmatched
    }

    /// Number of first fragments seen (including repeats).
    pub fn first_fragments(&self) -> u64 {
        self.firsts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{proto, AppHint, FragInfo, Tunnel};

    fn frag(id: u32, offset: u16, more: bool, ports: (u16, u16)) -> IpPacket {
        IpPacket {
            ts: Timestamp(0),
            wire_len: 100,
            src_mac: None,
            dst_mac: None,
            vlan: [0, 0],
            mpls_labels: 0,
            tunnel: Tunnel::None,
            src: Addr::v4([10, 0, 0, 1]),
            dst: Addr::v4([10, 0, 0, 2]),
            proto: proto::UDP,
            src_port: ports.0,
            dst_port: ports.1,
            icmp_id: 0,
            has_l4: offset == 0,
            ip_len: 100,
            payload_len: 80,
            ttl: 64,
            tcp_flags: 0,
            tcp_seq: 0,
            tcp_ack: 0,
            tcp_window: 0,
            frag: FragInfo {
                is_fragment: offset > 0 || more,
                offset,
                more,
                id,
            },
            app: AppHint::None,
        }
    }

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn first_then_later_fragments_are_attributed() {
        let mut t = FragmentTable::new(8, 30 * SEC);
        let mut first = frag(7, 0, true, (5000, 53));
        assert_eq!(t.attribute(&mut first, Timestamp(0)), FragOutcome::First);
        let mut mid = frag(7, 185, true, (0, 0));
        assert_eq!(
            t.attribute(&mut mid, Timestamp(SEC)),
            FragOutcome::Attributed
        );
        assert_eq!((mid.src_port, mid.dst_port, mid.has_l4), (5000, 53, false));
        // The last fragment does not remove the entry: a duplicate still matches.
        let mut last = frag(7, 370, false, (0, 0));
        assert_eq!(
            t.attribute(&mut last, Timestamp(SEC)),
            FragOutcome::Attributed
        );
        let mut dup = frag(7, 370, false, (0, 0));
        assert_eq!(
            t.attribute(&mut dup, Timestamp(2 * SEC)),
            FragOutcome::Attributed
        );
        assert_eq!(dup.dst_port, 53);
        assert_eq!(
            (t.attributed(), t.unmatched(), t.first_fragments()),
            (3, 0, 1)
        );
    }

    #[test]
    fn not_fragments_untouched_and_unknown_unmatched() {
        let mut t = FragmentTable::new(8, 30 * SEC);
        let mut p = frag(1, 0, false, (1, 2));
        assert_eq!(t.attribute(&mut p, Timestamp(0)), FragOutcome::NotFragment);
        assert!(t.is_empty());
        let mut later = frag(99, 10, false, (0, 0));
        assert_eq!(t.attribute(&mut later, Timestamp(0)), FragOutcome::Held);
        assert_eq!(
            (t.holding(), t.unmatched(), t.has_released()),
            (1, 0, false)
        );
        t.release_all();
        let out: Vec<_> = t.take_released().collect();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, FragOutcome::Unmatched);
        assert_eq!((out[0].0.src_port, out[0].0.dst_port), (0, 0));
        assert_eq!((t.holding(), t.unmatched(), t.held()), (0, 1, 1));
    }

    #[test]
    fn key_includes_addresses_proto_and_vlan() {
        let mut t = FragmentTable::new(8, 30 * SEC);
        let mut first = frag(7, 0, true, (5000, 53));
        t.attribute(&mut first, Timestamp(0));
        let mut other_vlan = frag(7, 10, false, (0, 0));
        other_vlan.vlan = [5, 0];
        assert_eq!(
            t.attribute(&mut other_vlan, Timestamp(0)),
            FragOutcome::Held
        );
        let mut other_proto = frag(7, 10, false, (0, 0));
        other_proto.proto = proto::TCP;
        assert_eq!(
            t.attribute(&mut other_proto, Timestamp(0)),
            FragOutcome::Held
        );
        let mut reversed = frag(7, 10, false, (0, 0));
        std::mem::swap(&mut reversed.src, &mut reversed.dst);
        assert_eq!(t.attribute(&mut reversed, Timestamp(0)), FragOutcome::Held);
        // A repeated first fragment releases none of them: none is of its datagram.
        let mut again = frag(7, 0, true, (5000, 53));
        t.attribute(&mut again, Timestamp(0));
        assert!(!t.has_released());
        assert_eq!(t.holding(), 3);
    }

    #[test]
    fn full_table_evicts_oldest_first() {
        let mut t = FragmentTable::new(2, 30 * SEC);
        for id in 1..=3u32 {
            let mut f = frag(id, 0, true, (1000 + id as u16, 80));
            t.attribute(&mut f, Timestamp(i64::from(id)));
        }
        assert_eq!(t.len(), 2);
        assert_eq!(t.evicted(), 1);
        let mut of1 = frag(1, 5, false, (0, 0));
        assert_eq!(t.attribute(&mut of1, Timestamp(4)), FragOutcome::Held);
        let mut of3 = frag(3, 5, false, (0, 0));
        assert_eq!(t.attribute(&mut of3, Timestamp(4)), FragOutcome::Attributed);
        assert_eq!(of3.src_port, 1003);
    }

    #[test]
    fn entries_expire_on_packet_time() {
        let mut t = FragmentTable::new(8, 30 * SEC);
        let mut first = frag(7, 0, true, (5000, 53));
        t.attribute(&mut first, Timestamp(0));
        let mut in_time = frag(7, 10, true, (0, 0));
        assert_eq!(
            t.attribute(&mut in_time, Timestamp(30 * SEC)),
            FragOutcome::Attributed
        );
        let mut late = frag(7, 20, false, (0, 0));
        assert_eq!(
            t.attribute(&mut late, Timestamp(30 * SEC + 1)),
            FragOutcome::Held
        );
        assert_eq!((t.expired(), t.len()), (1, 0));
    }

    #[test]
    fn repeated_first_fragment_refreshes_ports_not_age() {
        let mut t = FragmentTable::new(8, 10 * SEC);
        let mut a = frag(7, 0, true, (1, 2));
        t.attribute(&mut a, Timestamp(0));
        let mut b = frag(7, 0, true, (3, 4));
        t.attribute(&mut b, Timestamp(5 * SEC));
        assert_eq!(t.len(), 1);
        let mut later = frag(7, 10, false, (0, 0));
        assert_eq!(
            t.attribute(&mut later, Timestamp(6 * SEC)),
            FragOutcome::Attributed
        );
        assert_eq!((later.src_port, later.dst_port), (3, 4));
        let mut after = frag(7, 10, false, (0, 0));
        assert_eq!(
            t.attribute(&mut after, Timestamp(11 * SEC)),
            FragOutcome::Held
        );
    }

    #[test]
    fn fragments_before_their_first_are_held_then_attributed() {
        let mut t = FragmentTable::new(8, 30 * SEC);
        // Last fragment first, then the middle one, then the first (reverse order).
        let mut last = frag(7, 370, false, (0, 0));
        assert_eq!(t.attribute(&mut last, Timestamp(0)), FragOutcome::Held);
        let mut other = frag(8, 370, false, (0, 0));
        assert_eq!(t.attribute(&mut other, Timestamp(1)), FragOutcome::Held);
        let mut mid = frag(7, 185, true, (0, 0));
        assert_eq!(t.attribute(&mut mid, Timestamp(2)), FragOutcome::Held);
        assert!(!t.has_released());
        let mut first = frag(7, 0, true, (5000, 53));
        assert_eq!(t.attribute(&mut first, Timestamp(3)), FragOutcome::First);
        let out: Vec<_> = t.take_released().collect();
        assert_eq!(
            out.len(),
            2,
            "both fragments of datagram 7, in arrival order"
        );
        assert_eq!(out[0].0.frag.offset, 370);
        assert_eq!(out[1].0.frag.offset, 185);
        for (p, o) in &out {
            assert_eq!(*o, FragOutcome::Attributed);
            assert_eq!((p.src_port, p.dst_port, p.has_l4), (5000, 53, false));
        }
        assert_eq!(t.holding(), 1, "datagram 8 still waits");
        assert_eq!((t.held(), t.attributed(), t.unmatched()), (3, 2, 0));
    }

    #[test]
    fn held_fragments_time_out_and_the_hold_is_bounded() {
        let mut t = FragmentTable::new(HOLD_MAX * 4, 10 * SEC);
        let mut early = frag(1, 10, false, (0, 0));
        assert_eq!(t.attribute(&mut early, Timestamp(0)), FragOutcome::Held);
        t.expire(Timestamp(10 * SEC));
        assert!(!t.has_released(), "not older than the timeout yet");
        t.expire(Timestamp(10 * SEC + 1));
        let out: Vec<_> = t.take_released().collect();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, FragOutcome::Unmatched);
        // Its first fragment now comes too late: nothing left to release.
        let mut first = frag(1, 0, true, (9, 9));
        t.attribute(&mut first, Timestamp(10 * SEC + 2));
        assert!(!t.has_released());
        // A flood of orphans: the hold keeps HOLD_MAX, releasing the oldest unmatched.
        let base = Timestamp(20 * SEC);
        for id in 0..(HOLD_MAX as u32 + 10) {
            let mut f = frag(1000 + id, 10, false, (0, 0));
            assert_eq!(t.attribute(&mut f, base), FragOutcome::Held);
        }
        assert_eq!(t.holding(), HOLD_MAX);
        let out: Vec<_> = t.take_released().collect();
        assert_eq!(out.len(), 10);
        assert_eq!(out[0].0.frag.id, 1000, "oldest released first");
        assert_eq!(t.unmatched(), 11);
        t.release_all();
        assert_eq!(t.take_released().count(), HOLD_MAX);
        assert_eq!(
            (t.holding(), t.held(), t.unmatched()),
            (0, HOLD_MAX as u64 + 11, HOLD_MAX as u64 + 11)
        );
    }

    #[test]
    fn ipv6_later_fragments_match_whatever_their_next_header() {
        let mut t = FragmentTable::new(8, 30 * SEC);
        let v6 = |p: &mut IpPacket| {
            p.src = Addr::v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            p.dst = Addr::v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        };
        let mut first = frag(5, 0, true, (4000, 5000));
        v6(&mut first);
        t.attribute(&mut first, Timestamp(0));
        // A destination options header after the fragment header: next header 60.
        let mut later = frag(5, 10, false, (0, 0));
        v6(&mut later);
        later.proto = 60;
        assert_eq!(
            t.attribute(&mut later, Timestamp(1)),
            FragOutcome::Attributed
        );
        assert_eq!(
            (later.proto, later.src_port, later.dst_port),
            (proto::UDP, 4000, 5000)
        );
        // Held before its first fragment, it gets the first fragment's protocol too.
        let mut early = frag(6, 10, false, (0, 0));
        v6(&mut early);
        early.proto = 60;
        assert_eq!(t.attribute(&mut early, Timestamp(2)), FragOutcome::Held);
        let mut first6 = frag(6, 0, true, (4001, 5001));
        v6(&mut first6);
        t.attribute(&mut first6, Timestamp(3));
        let out: Vec<_> = t.take_released().collect();
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0.proto, out[0].0.src_port), (proto::UDP, 4001));
        // IPv4 keeps the protocol in the key (RFC 791).
        let mut v4first = frag(9, 0, true, (1, 2));
        t.attribute(&mut v4first, Timestamp(4));
        let mut v4later = frag(9, 10, false, (0, 0));
        v4later.proto = proto::TCP;
        assert_eq!(t.attribute(&mut v4later, Timestamp(5)), FragOutcome::Held);
    }

    #[test]
    fn icmp_id_is_attributed() {
        let mut t = FragmentTable::new(8, 10 * SEC);
        let mut first = frag(9, 0, true, (8, 0));
        first.proto = proto::ICMP;
        first.icmp_id = 0x1234;
        t.attribute(&mut first, Timestamp(0));
        let mut later = frag(9, 185, false, (0, 0));
        later.proto = proto::ICMP;
        assert_eq!(
            t.attribute(&mut later, Timestamp(0)),
            FragOutcome::Attributed
        );
        assert_eq!(
            (later.src_port, later.dst_port, later.icmp_id),
            (8, 0, 0x1234)
        );
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut t = FragmentTable::new(0, 10 * SEC);
        let mut first = frag(9, 0, true, (8, 0));
        assert_eq!(t.attribute(&mut first, Timestamp(0)), FragOutcome::First);
        let mut later = frag(9, 185, false, (0, 0));
        assert_eq!(
            t.attribute(&mut later, Timestamp(0)),
            FragOutcome::Unmatched
        );
        assert_eq!(t.evicted(), 1);
    }

    #[test]
    fn no_growth_beyond_capacity() {
        let mut t = FragmentTable::new(64, 10 * SEC);
        let cap_map = t.map.allocation_size();
        let cap_ring = t.ages.capacity();
        for id in 0..10_000u32 {
            let mut f = frag(id, 0, true, (1, 2));
            t.attribute(&mut f, Timestamp(i64::from(id)));
        }
        assert_eq!(t.len(), 64);
        assert_eq!(t.map.allocation_size(), cap_map, "map reallocated");
        assert_eq!(t.ages.capacity(), cap_ring, "ring reallocated");
        assert_eq!(t.evicted(), 10_000 - 64);
    }

    /// At capacity every insert follows a removal; the removals leave tombstones that use
    /// up the map's spare slots, and then hashbrown rehashes. That must be in place (no
    /// allocation), which it only is while the map is at most half full.
    #[test]
    fn churn_at_capacity_never_reallocates() {
        let mut t = FragmentTable::new(1_024, 10 * SEC);
        let bytes = t.map.allocation_size();
        for id in 0..300_000u32 {
            let mut f = frag(id / 2_048, 0, true, (1, 2));
            f.src = Addr::v4((id % 2_048 + 0x0a00_0000).to_be_bytes());
            t.attribute(&mut f, Timestamp(i64::from(id)));
            assert_eq!(
                t.map.allocation_size(),
                bytes,
                "map reallocated at insert {id}"
            );
        }
        assert_eq!(t.len(), 1_024);
    }
}
