//! Deterministic event order across flow-table shards: a watermark merge. Every
//! [`FlowRecord`] carries the logical packet time at which it was due (`emit_ts`); records
//! are released in (`emit_ts`, `first_ts`, key, slice) order once every shard has promised
//! that it will never produce an earlier one (its watermark). The result is the same byte
//! stream for one table or any number of shards.

use crate::flow::{FlowKey, FlowRecord};
use crate::packet::ArpPacket;
use crate::time::Timestamp;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// What the output stage receives, in order.
// Flow records dominate the stream; boxing them would cost an allocation per record to
// shrink the rare ARP variant.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A finished (or interim) flow record.
    Flow(FlowRecord),
    /// An ARP packet (for the ARP binding rule), with the global clock when it was read
    /// and its sequence number among ARP packets.
    Arp(ArpPacket, Timestamp, u64),
}

impl Item {
    /// The logical time the item is due.
    pub fn emit_ts(&self) -> Timestamp {
        match self {
            Item::Flow(r) => r.emit_ts,
            Item::Arp(_, c, _) => *c,
        }
    }
}

/// An item with its sort key: (due time, ARP before flows, then first packet time, key,
/// slice for flows / sequence for ARP).
struct Entry(Item);

type SortKey = (Timestamp, u8, Timestamp, FlowKey, u64);

impl Entry {
    fn key(&self) -> SortKey {
        match &self.0 {
            Item::Flow(r) => (r.emit_ts, 1, r.first_ts, r.key, u64::from(r.slice)),
            Item::Arp(_, c, seq) => (*c, 0, *c, FlowKey::default(), *seq),
        }
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// The merge buffer for `n` sources (shards).
pub struct Reorder {
    heap: BinaryHeap<Reverse<Entry>>,
    watermarks: Vec<Timestamp>,
}

impl Reorder {
    /// A merge over `sources` shards, all starting with the lowest watermark.
    pub fn new(sources: usize) -> Reorder {
        Reorder {
            heap: BinaryHeap::new(),
            watermarks: vec![Timestamp(i64::MIN); sources.max(1)],
        }
    }

    /// Adds a record produced by any shard.
    pub fn push(&mut self, rec: FlowRecord) {
        self.heap.push(Reverse(Entry(Item::Flow(rec))));
    }

    /// Adds any item.
    pub fn push_item(&mut self, item: Item) {
        self.heap.push(Reverse(Entry(item)));
    }

    /// The watermark of a source that has ended: it will produce nothing more.
    pub const DONE: Timestamp = Timestamp(i64::MAX);

    /// The watermark of a running source whose clock is `clock`: the clock, kept below
    /// [`Reorder::DONE`]. Packet times saturate at `i64::MAX` ns (in 2262), and a
    /// running source at that clock taken for ended let records out in arrival order,
    /// which made the output depend on the worker count and thread timing.
    pub fn running(clock: Timestamp) -> Timestamp {
        Timestamp(clock.0.min(i64::MAX - 1))
    }

    /// Source `src` will produce no record with `emit_ts` below `w` from now on
    /// ([`Reorder::DONE`]: nothing at all).
    pub fn set_watermark(&mut self, src: usize, w: Timestamp) {
        if let Some(slot) = self.watermarks.get_mut(src) {
            if w > *slot {
                *slot = w;
            }
        }
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The next item whose position is final, if any.
    pub fn pop_ready(&mut self) -> Option<Item> {
        let low = self
            .watermarks
            .iter()
            .copied()
            .min()
            .unwrap_or(Timestamp(i64::MIN));
        match self.heap.peek() {
            Some(Reverse(e)) if e.0.emit_ts() < low || low == Self::DONE => {
                self.heap.pop().map(|Reverse(e)| e.0)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{EndReason, FlowConfig, FlowTable};
    use crate::packet::{Addr, AppHint, FragInfo, IpPacket, Tunnel};

    fn pkt(ms: i64, sport: u16) -> IpPacket {
        IpPacket {
            ts: Timestamp(ms * 1_000_000),
            wire_len: 60,
            src_mac: None,
            dst_mac: None,
            vlan: [0, 0],
            mpls_labels: 0,
            tunnel: Tunnel::None,
            src: Addr::v4([10, 0, 0, 1]),
            dst: Addr::v4([10, 0, 0, 2]),
            proto: 17,
            src_port: sport,
            dst_port: 53,
            icmp_id: 0,
            has_l4: true,
            ip_len: 40,
            payload_len: 12,
            ttl: 64,
            tcp_flags: 0,
            tcp_seq: 0,
            tcp_ack: 0,
            tcp_window: 0,
            frag: FragInfo::default(),
            app: AppHint::None,
        }
    }

    /// The same packets through 1 table or 3 shards give the same record order.
    #[test]
    fn sharded_order_equals_single_table_order() {
        let pkts: Vec<IpPacket> = (0..300)
            .map(|i| pkt(i * 3000 + (i * 997 % 5000), (i % 37) as u16 + 1000))
            .collect();
        let run = |shards: usize| -> Vec<(i64, u16, u64)> {
            let mut tables: Vec<FlowTable> = (0..shards)
                .map(|_| FlowTable::new(FlowConfig::default()))
                .collect();
            let mut ord = Reorder::new(shards);
            let mut out = Vec::new();
            let mut clock = Timestamp(i64::MIN);
            let mut result = Vec::new();
            for (n, p) in pkts.iter().enumerate() {
                clock = clock.max(p.ts);
                let s = (p.src_port as usize) % shards;
                tables[s].observe_at(p, clock, &mut out);
                for r in out.drain(..) {
                    ord.push(r);
                }
                if n % 17 == 0 {
                    for (i, t) in tables.iter_mut().enumerate() {
                        t.advance_clock(clock, &mut out);
                        for r in out.drain(..) {
                            ord.push(r);
                        }
                        ord.set_watermark(i, clock);
                    }
                    while let Some(Item::Flow(r)) = ord.pop_ready() {
                        result.push((r.emit_ts.0, r.orig.port, r.pkts()));
                    }
                }
            }
            for (i, t) in tables.iter_mut().enumerate() {
                // Every shard sees the final clock before the flush, as one table would.
                t.advance_clock(clock, &mut out);
                t.flush(EndReason::EndOfInput, &mut out);
                for r in out.drain(..) {
                    ord.push(r);
                }
                ord.set_watermark(i, Timestamp(i64::MAX));
            }
            while let Some(Item::Flow(r)) = ord.pop_ready() {
                result.push((r.emit_ts.0, r.orig.port, r.pkts()));
            }
            result
        };
        let one = run(1);
        assert!(one.len() > 37, "{}", one.len());
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }
}
