//! The flow table: canonical bidirectional keys, per-direction accumulators, TCP state
//! summary, packet-time expiry (TCP teardown with linger, idle and active timeouts),
//! a hard memory cap with accounted eviction, and the deterministic end-of-input flush.
//!
//! Owns: [`FlowKey`], [`FlowTable`], [`FlowRecord`], [`EndReason`]. Does not own feature
//! math beyond running sums, nor output. Time is packet time only: the table's clock is
//! the largest packet timestamp seen (it never moves backwards), advanced by packets or by
//! [`FlowTable::advance_clock`].
//!
//! Layout: flows live in a slab (`Vec<Slot>`), a `hashbrown::HashTable<u32>` maps key
//! hashes to slab indices (keys are stored once), and each flow sits on one of five
//! intrusive lists ordered by last activity (TCP never past SYN, other TCP, UDP, other,
//! TCP closing). Every list has one timeout, so the expired flows are always at the list
//! heads: expiry and eviction are O(1) per flow, with no periodic full-table scan.

pub mod accum;
pub mod key;
pub mod tcp;

pub use accum::{DirStats, FlagCounts, Welford};
pub use key::FlowKey;
pub use tcp::{ConnState, History, TcpTrack};

use crate::packet::{proto, Addr, AppHint, IpPacket, Tunnel};
use crate::time::{Nanos, Timestamp};
use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

/// Why a flow record was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// TCP: both sides sent FIN (after the close linger).
    TcpFin,
    /// TCP: a RST was sent (after the close linger).
    TcpRst,
    /// No packet for the idle timeout of the flow's kind.
    IdleTimeout,
    /// Interim record of a long-lived flow; the flow continues.
    ActiveTimeout,
    /// Ended early because the table was full (memory cap).
    Evicted,
    /// The input ended (replay).
    EndOfInput,
    /// The sensor was stopped (live).
    Shutdown,
}

impl EndReason {
    /// All reasons in reporting order.
    pub const ALL: [EndReason; 7] = [
        EndReason::TcpFin,
        EndReason::TcpRst,
        EndReason::IdleTimeout,
        EndReason::ActiveTimeout,
        EndReason::Evicted,
        EndReason::EndOfInput,
        EndReason::Shutdown,
    ];

    /// snake_case name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::TcpFin => "tcp_fin",
            EndReason::TcpRst => "tcp_rst",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::ActiveTimeout => "active_timeout",
            EndReason::Evicted => "evicted",
            EndReason::EndOfInput => "end_of_input",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// Flow-table settings. All durations are packet time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowConfig {
    /// Idle timeout of an established (or mid-stream) TCP flow. Default 120 s.
    pub tcp_idle: Nanos,
    /// Idle timeout of a TCP flow that never got past its SYN. Default 10 s.
    pub tcp_syn_idle: Nanos,
    /// Idle timeout of a UDP flow. Default 60 s.
    pub udp_idle: Nanos,
    /// Idle timeout of ICMP and every other protocol. Default 30 s.
    pub other_idle: Nanos,
    /// Active timeout: a flow older than this emits an interim record and continues.
    /// `None` disables interim records. Default 300 s.
    pub active_timeout: Option<Nanos>,
    /// Time a terminated TCP flow stays in the table to collect the final ACK. Default 1 s.
    pub tcp_close_linger: Nanos,
    /// Maximum number of flows held; when full the least recently active flow is ended
    /// with reason `evicted`. Default 1,000,000.
    pub max_flows: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            tcp_idle: Nanos::from_secs(120),
            tcp_syn_idle: Nanos::from_secs(10),
            udp_idle: Nanos::from_secs(60),
            other_idle: Nanos::from_secs(30),
            active_timeout: Some(Nanos::from_secs(300)),
            tcp_close_linger: Nanos::from_secs(1),
            max_flows: 1_000_000,
        }
    }
}

/// One side of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// IP address.
    pub addr: Addr,
    /// Port (ICMP: see [`FlowRecord::icmp`]).
    pub port: u16,
    /// MAC address seen as this side's source, if the link had one.
    pub mac: Option<[u8; 6]>,
}

/// Application-layer facts accumulated over a flow from the decoder's [`AppHint`]s.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AppSummary {
    /// DNS queries seen.
    pub dns_queries: u32,
    /// Longest QNAME (characters) among the queries.
    pub dns_qname_max: u16,
    /// Entropy (bits/char) of the longest label of that longest QNAME.
    pub dns_label_entropy: f32,
    /// Modbus/TCP requests seen (to port 502).
    pub modbus_requests: u32,
    /// Of those, writes (function codes 5, 6, 15, 16).
    pub modbus_writes: u32,
}

impl AppSummary {
    fn push(&mut self, hint: AppHint) {
        match hint {
            AppHint::None => {}
            AppHint::Dns {
                query,
                qname_len,
                label_entropy,
            } => {
                if query {
                    self.dns_queries += 1;
                    if qname_len > self.dns_qname_max {
                        self.dns_qname_max = qname_len;
                        self.dns_label_entropy = label_entropy;
                    }
                }
            }
            AppHint::Modbus { request, function } => {
                if request {
                    self.modbus_requests += 1;
                    if matches!(function, 5 | 6 | 15 | 16) {
                        self.modbus_writes += 1;
                    }
                }
            }
        }
    }
}

/// A finished (or interim) flow: what the flow stage hands to features and events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowRecord {
    /// Canonical key.
    pub key: FlowKey,
    /// Originator (sender of the first packet; for TCP the SYN sender when seen).
    pub orig: Endpoint,
    /// Responder.
    pub resp: Endpoint,
    /// IP protocol number.
    pub proto: u8,
    /// ICMP (type, code) of the originator's first packet, for ICMP flows.
    pub icmp: Option<(u8, u8)>,
    /// Tunnel the flow was carried in.
    pub tunnel: Tunnel,
    /// First packet time of the whole flow (same for every slice; with the key it
    /// identifies the flow across interim records).
    pub flow_start: Timestamp,
    /// First packet time of this record (slice).
    pub first_ts: Timestamp,
    /// Last packet time of this record (slice).
    pub last_ts: Timestamp,
    /// Originator → responder statistics.
    pub orig_stats: DirStats,
    /// Responder → originator statistics.
    pub resp_stats: DirStats,
    /// Inter-arrival statistics over both directions merged in time order (µs), over
    /// `pkts - 1` samples.
    pub iat: Welford,
    /// Largest merged inter-arrival in nanoseconds.
    pub iat_max_ns: i64,
    /// Zeek conn_state.
    pub conn_state: ConnState,
    /// Zeek-style history.
    pub history: History,
    /// Why this record was emitted.
    pub reason: EndReason,
    /// Logical packet time at which the record was due: the idle deadline (last activity
    /// plus the timeout), the end of the close linger, the packet time that triggered an
    /// interim record or an eviction, or `Timestamp(i64::MAX)` for the end-of-input flush.
    /// Records are written in (`emit_ts`, `first_ts`, key, slice) order, which does not
    /// depend on how flows are sharded across workers.
    pub emit_ts: Timestamp,
    /// 0 for the first record of a flow; n for the n-th interim continuation.
    pub slice: u32,
    /// Application-layer summary (DNS, Modbus).
    pub app: AppSummary,
    /// IP fragments counted in this flow.
    pub fragments: u32,
}

impl FlowRecord {
    /// Packets in both directions.
    pub fn pkts(&self) -> u64 {
        self.orig_stats.pkts + self.resp_stats.pkts
    }
    /// Duration of this record.
    pub fn duration(&self) -> Nanos {
        self.last_ts.since(self.first_ts)
    }
}

/// Counters kept by the flow table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowCounters {
    /// Flows created.
    pub created: u64,
    /// Records emitted per [`EndReason`] (indexed by `EndReason as usize`).
    pub ended: [u64; 7],
    /// Largest number of flows held at once.
    pub peak_active: u64,
    /// Packets whose timestamp was earlier than the table clock (counted, not dropped).
    pub ts_backwards: u64,
}

const NIL: u32 = u32::MAX;
const L_SYN: u8 = 0;
const L_TCP: u8 = 1;
const L_UDP: u8 = 2;
const L_OTHER: u8 = 3;
const L_CLOSING: u8 = 4;
const N_LISTS: usize = 5;

#[derive(Debug, Clone, Copy, Default)]
struct List {
    head: u32,
    tail: u32,
}

/// One flow's state in the slab.
#[derive(Debug, Clone)]
struct Slot {
    key: FlowKey,
    /// True if the originator is the key's low endpoint.
    orig_is_lo: bool,
    flow_start: Timestamp,
    /// First packet time of the current slice (the record's `first_ts`).
    slice_start: Timestamp,
    last_ts: Timestamp,
    /// Table clock at the last packet (list order) or at close (closing list).
    touched: Timestamp,
    dir: [DirStats; 2],
    iat: Welford,
    iat_max_ns: i64,
    tcp: TcpTrack,
    history: History,
    app: AppSummary,
    macs: [Option<[u8; 6]>; 2],
    icmp: Option<(u8, u8)>,
    fragments: u32,
    slice: u32,
    prev: u32,
    next: u32,
    list: u8,
    live: bool,
}

impl Slot {
    fn vacant() -> Slot {
        Slot {
            key: FlowKey {
                vlan: [0; 2],
                proto: 0,
                addr_lo: Addr::default(),
                addr_hi: Addr::default(),
                port_lo: 0,
                port_hi: 0,
                icmp_id: 0,
                tunnel_id: 0,
                tunnel_kind: 0,
            },
            orig_is_lo: true,
            flow_start: Timestamp(0),
            last_ts: Timestamp(0),
            slice_start: Timestamp(0),
            touched: Timestamp(0),
            dir: [DirStats::default(); 2],
            iat: Welford::default(),
            iat_max_ns: 0,
            tcp: TcpTrack::default(),
            history: History::default(),
            app: AppSummary::default(),
            macs: [None; 2],
            icmp: None,
            fragments: 0,
            slice: 0,
            prev: NIL,
            next: NIL,
            list: L_OTHER,
            live: false,
        }
    }

    fn pkts(&self) -> u64 {
        self.dir[0].pkts + self.dir[1].pkts
    }

    fn record(&self, reason: EndReason, emit_ts: Timestamp) -> FlowRecord {
        let (lo, hi) = (
            (self.key.addr_lo, self.key.port_lo),
            (self.key.addr_hi, self.key.port_hi),
        );
        let (o, r) = if self.orig_is_lo { (lo, hi) } else { (hi, lo) };
        let icmp_flow = key::is_icmp(self.key.proto);
        let conn_state = match self.key.proto {
            proto::TCP => self
                .tcp
                .conn_state(self.dir[0].payload_bytes, self.dir[1].payload_bytes),
            proto::UDP => {
                if self.dir[1].pkts > 0 {
                    ConnState::SF
                } else {
                    ConnState::S0
                }
            }
            _ => ConnState::OTH,
        };
        FlowRecord {
            key: self.key,
            orig: Endpoint {
                addr: o.0,
                port: if icmp_flow { 0 } else { o.1 },
                mac: self.macs[0],
            },
            resp: Endpoint {
                addr: r.0,
                port: if icmp_flow { 0 } else { r.1 },
                mac: self.macs[1],
            },
            proto: self.key.proto,
            icmp: self.icmp,
            // The key holds the tunnel the flow's packets came in (see `FlowKey::of`).
            tunnel: match self.key.tunnel_kind {
                1 => Tunnel::Gre {
                    key: self.key.tunnel_id,
                },
                2 => Tunnel::Vxlan {
                    vni: self.key.tunnel_id,
                },
                _ => Tunnel::None,
            },
            flow_start: self.flow_start,
            first_ts: self.slice_start,
            last_ts: self.last_ts,
            orig_stats: self.dir[0],
            resp_stats: self.dir[1],
            iat: self.iat,
            iat_max_ns: self.iat_max_ns,
            conn_state,
            history: self.history,
            reason,
            emit_ts,
            slice: self.slice,
            app: self.app,
            fragments: self.fragments,
        }
    }

    /// Starts a new slice after an interim record: counters reset, TCP state kept.
    fn reset_slice(&mut self, ts: Timestamp) {
        self.dir = [DirStats::default(); 2];
        self.iat = Welford::default();
        self.iat_max_ns = 0;
        self.history = History::default();
        self.app = AppSummary::default();
        self.fragments = 0;
        self.last_ts = ts;
        self.slice_start = ts;
        self.slice += 1;
    }
}

/// The bidirectional flow table (one per worker shard).
pub struct FlowTable {
    cfg: FlowConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    lists: [List; N_LISTS],
    clock: Timestamp,
    clock_set: bool,
    /// No list head's idle deadline is earlier than this (see `expire`).
    next_deadline: Timestamp,
    live: usize,
    counters: FlowCounters,
}

impl FlowTable {
    /// An empty table.
    pub fn new(cfg: FlowConfig) -> Self {
        FlowTable {
            cfg,
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed_f10e),
            lists: [List {
                head: NIL,
                tail: NIL,
            }; N_LISTS],
            clock: Timestamp(0),
            clock_set: false,
            next_deadline: Timestamp(i64::MIN),
            live: 0,
            counters: FlowCounters::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &FlowConfig {
        &self.cfg
    }

    /// Flows currently held.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no flow is held.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Counters so far.
    pub fn counters(&self) -> &FlowCounters {
        &self.counters
    }

    /// The table clock (largest packet time seen or advanced to).
    pub fn clock(&self) -> Timestamp {
        self.clock
    }

    /// Bytes of memory held by the table's structures (slab, free list, hash index),
    /// for the per-flow state figure in benchmarks.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.free.capacity() * 4
            + self.index.allocation_size()
    }

    /// Size of one flow's state in the slab.
    pub fn slot_bytes() -> usize {
        std::mem::size_of::<Slot>()
    }

    /// Moves the clock forward to `now` (never backwards) and ends every flow whose idle
    /// timeout or close linger has passed. Used by live capture when the link is quiet.
    pub fn advance_clock(&mut self, now: Timestamp, out: &mut Vec<FlowRecord>) {
        if !self.clock_set || now > self.clock {
            self.clock = now;
            self.clock_set = true;
        }
        self.expire(out);
    }

    /// Accounts one IP packet; records of flows that end (expiry, teardown, eviction,
    /// interim) are appended to `out`.
    pub fn observe(&mut self, pkt: &IpPacket, out: &mut Vec<FlowRecord>) {
        self.observe_at(pkt, pkt.ts, out);
    }

    /// Like [`FlowTable::observe`], for a table that holds one shard of the flows: `clock`
    /// is the global flow clock after this packet (the largest timestamp seen by the
    /// capture stage), so every shard sees the same time as a single table would.
    pub fn observe_at(&mut self, pkt: &IpPacket, clock: Timestamp, out: &mut Vec<FlowRecord>) {
        let now = if clock > pkt.ts { clock } else { pkt.ts };
        if !self.clock_set || now > self.clock {
            self.clock = now;
            self.clock_set = true;
        }
        if pkt.ts < self.clock {
            self.counters.ts_backwards += 1;
        }
        self.expire(out);

        let (key, src_is_lo) = FlowKey::of(pkt);
        let hash = key.hash_with(&self.hasher);
        let slots = &self.slots;
        let found = self
            .index
            .find(hash, |&i| {
                slots.get(i as usize).is_some_and(|s| s.key == key)
            })
            .copied();
        let syn_only = pkt.proto == proto::TCP
            && pkt.tcp_flags & crate::packet::tcp_flags::SYN != 0
            && pkt.tcp_flags & crate::packet::tcp_flags::ACK == 0;
        let idx = match found {
            Some(i) if self.slots[i as usize].list == L_CLOSING && syn_only => {
                // A new connection reuses the 5-tuple of one that just closed.
                let reason = self.close_reason(i);
                let now = self.clock;
                self.end(i, reason, now, out);
                self.create(key, hash, src_is_lo, pkt, out)
            }
            Some(i) => i,
            None => self.create(key, hash, src_is_lo, pkt, out),
        };
        self.update(idx, pkt, src_is_lo, out);
    }

    /// Ends every flow (reason `reason`, normally `end_of_input` or `shutdown`) in a
    /// deterministic order: by first packet time, then key.
    pub fn flush(&mut self, reason: EndReason, out: &mut Vec<FlowRecord>) {
        let mut live: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| self.slots[i as usize].live)
            .collect();
        live.sort_by(|&a, &b| {
            let (sa, sb) = (&self.slots[a as usize], &self.slots[b as usize]);
            (sa.slice_start, sa.key).cmp(&(sb.slice_start, sb.key))
        });
        for i in live {
            let r = if self.slots[i as usize].list == L_CLOSING {
                self.close_reason(i)
            } else {
                reason
            };
            self.end(i, r, Timestamp(i64::MAX), out);
        }
    }

    fn close_reason(&self, i: u32) -> EndReason {
        let t = &self.slots[i as usize].tcp;
        if t.orig == tcp::EndpointState::Reset || t.resp == tcp::EndpointState::Reset {
            EndReason::TcpRst
        } else {
            EndReason::TcpFin
        }
    }

    fn timeout_of(&self, list: u8) -> Nanos {
        match list {
            L_SYN => self.cfg.tcp_syn_idle,
            L_TCP => self.cfg.tcp_idle,
            L_UDP => self.cfg.udp_idle,
            L_CLOSING => self.cfg.tcp_close_linger,
            _ => self.cfg.other_idle,
        }
    }

    /// Ends expired flows at the list heads, earliest deadline first.
    ///
    /// `next_deadline` is a lower bound of every list head's deadline, so most packets
    /// return at once without looking at the lists. It stays a lower bound because lists
    /// are ordered by `touched` (a head leaving makes the next head's deadline no
    /// earlier) and `relink` lowers it when a flow becomes the head of an empty list.
    fn expire(&mut self, out: &mut Vec<FlowRecord>) {
        if self.clock <= self.next_deadline {
            return;
        }
        loop {
            let mut best: Option<(Timestamp, u8)> = None;
            let mut earliest = Timestamp(i64::MAX);
            for l in 0..N_LISTS as u8 {
                let h = self.lists[l as usize].head;
                if h == NIL {
                    continue;
                }
                let deadline = self.slots[h as usize].touched.plus(self.timeout_of(l));
                earliest = earliest.min(deadline);
                if self.clock > deadline && best.is_none_or(|(d, _)| deadline < d) {
                    best = Some((deadline, l));
                }
            }
            let Some((deadline, l)) = best else {
                self.next_deadline = earliest;
                return;
            };
            let i = self.lists[l as usize].head;
            let reason = if l == L_CLOSING {
                self.close_reason(i)
            } else {
                EndReason::IdleTimeout
            };
            self.end(i, reason, deadline, out);
        }
    }

    fn create(
        &mut self,
        key: FlowKey,
        hash: u64,
        src_is_lo: bool,
        pkt: &IpPacket,
        out: &mut Vec<FlowRecord>,
    ) -> u32 {
        if self.live >= self.cfg.max_flows.max(1) {
            self.evict_one(out);
        }
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                if self.slots.len() == self.slots.capacity() {
                    // Grow the slab by a quarter (at least 256 slots) rather than doubling
                    // it: slots are large, and doubling leaves up to half of the slab
                    // unused at the peak. Still amortised O(1) per flow.
                    let more = (self.slots.len() / 4).max(256);
                    self.slots.reserve_exact(more);
                }
                self.slots.push(Slot::vacant());
                (self.slots.len() - 1) as u32
            }
        };
        // Originator: sender of the first packet, except that a first SYN-ACK means its
        // receiver opened the connection (Zeek flips such flows and notes '^').
        let synack = pkt.proto == proto::TCP
            && pkt.tcp_flags & crate::packet::tcp_flags::SYN != 0
            && pkt.tcp_flags & crate::packet::tcp_flags::ACK != 0;
        let orig_is_lo = if synack { !src_is_lo } else { src_is_lo };
        let s = &mut self.slots[idx as usize];
        *s = Slot::vacant();
        s.key = key;
        s.orig_is_lo = orig_is_lo;
        s.flow_start = pkt.ts;
        s.last_ts = pkt.ts;
        s.slice_start = pkt.ts;
        s.live = true;
        if synack {
            s.history.push(b'^', true);
        }
        if key::is_icmp(pkt.proto) {
            s.icmp = Some((pkt.src_port as u8, pkt.dst_port as u8));
        }
        // Slots keep no hash: the (rare) rehash on growth recomputes it from the key.
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(hash, idx, |&i| slots[i as usize].key.hash_with(hasher));
        self.live += 1;
        self.counters.created += 1;
        self.counters.peak_active = self.counters.peak_active.max(self.live as u64);
        // Placed on a list by `update`.
        self.slots[idx as usize].list = N_LISTS as u8;
        idx
    }

    fn evict_one(&mut self, out: &mut Vec<FlowRecord>) {
        let mut best: Option<(Timestamp, u32)> = None;
        for l in 0..N_LISTS {
            let h = self.lists[l].head;
            if h != NIL {
                let t = self.slots[h as usize].touched;
                if best.is_none_or(|(bt, _)| t < bt) {
                    best = Some((t, h));
                }
            }
        }
        if let Some((_, i)) = best {
            let now = self.clock;
            self.end(i, EndReason::Evicted, now, out);
        }
    }

    fn update(&mut self, idx: u32, pkt: &IpPacket, src_is_lo: bool, out: &mut Vec<FlowRecord>) {
        let clock = self.clock;
        // Active timeout: emit an interim record and continue in a new slice.
        if let Some(active) = self.cfg.active_timeout {
            let s = &self.slots[idx as usize];
            if s.pkts() > 0 && pkt.ts.since(s.slice_start) >= active {
                out.push(s.record(EndReason::ActiveTimeout, clock));
                self.counters.ended[EndReason::ActiveTimeout as usize] += 1;
                self.slots[idx as usize].reset_slice(pkt.ts);
            }
        }
        let s = &mut self.slots[idx as usize];
        let from_orig = src_is_lo == s.orig_is_lo;
        let d = usize::from(!from_orig);
        if s.pkts() > 0 {
            let gap = pkt.ts.since(s.last_ts).0.max(0);
            s.iat.push(gap as f64 / 1_000.0, s.pkts());
            s.iat_max_ns = s.iat_max_ns.max(gap);
        }
        if pkt.ts > s.last_ts {
            s.last_ts = pkt.ts;
        }
        s.dir[d].push(
            pkt.ts,
            pkt.wire_len,
            pkt.ip_len,
            pkt.payload_len,
            pkt.tcp_flags,
        );
        if s.macs[d].is_none() {
            s.macs[d] = pkt.src_mac;
        }
        if pkt.frag.is_fragment {
            s.fragments += 1;
        }
        s.app.push(pkt.app);
        let mut list = match pkt.proto {
            proto::TCP => L_TCP,
            proto::UDP => L_UDP,
            _ => L_OTHER,
        };
        if pkt.proto == proto::TCP {
            if pkt.has_l4 {
                s.tcp.observe(
                    pkt.tcp_flags,
                    pkt.payload_len,
                    pkt.tcp_seq,
                    pkt.tcp_window,
                    from_orig,
                    &mut s.history,
                );
            }
            if s.list == L_CLOSING {
                // Lingering after teardown: count the packet, keep the close deadline.
                return;
            }
            if s.tcp.is_terminated() {
                list = L_CLOSING;
            } else if !s.tcp.past_syn() {
                list = L_SYN;
            }
        } else {
            s.history.push(b'D', from_orig);
        }
        s.touched = clock;
        self.relink(idx, list);
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next, list) = {
            let s = &self.slots[idx as usize];
            (s.prev, s.next, s.list)
        };
        if (list as usize) >= N_LISTS {
            return;
        }
        let l = list as usize;
        if prev == NIL {
            self.lists[l].head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[l].tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        let s = &mut self.slots[idx as usize];
        s.prev = NIL;
        s.next = NIL;
        s.list = N_LISTS as u8;
    }

    /// Moves `idx` to the tail of list `list` (most recently active).
    fn relink(&mut self, idx: u32, list: u8) {
        {
            let s = &self.slots[idx as usize];
            if s.list == list && s.next == NIL {
                return; // already the tail
            }
        }
        self.unlink(idx);
        let l = list as usize;
        let tail = self.lists[l].tail;
        {
            let s = &mut self.slots[idx as usize];
            s.list = list;
            s.prev = tail;
            s.next = NIL;
        }
        if tail == NIL {
            self.lists[l].head = idx;
            let deadline = self.slots[idx as usize].touched.plus(self.timeout_of(list));
            self.next_deadline = self.next_deadline.min(deadline);
        } else {
            self.slots[tail as usize].next = idx;
        }
        self.lists[l].tail = idx;
    }

    fn end(&mut self, idx: u32, reason: EndReason, emit_ts: Timestamp, out: &mut Vec<FlowRecord>) {
        self.unlink(idx);
        let s = &self.slots[idx as usize];
        out.push(s.record(reason, emit_ts));
        let hash = s.key.hash_with(&self.hasher);
        if let Ok(e) = self.index.find_entry(hash, |&i| i == idx) {
            e.remove();
        }
        self.slots[idx as usize].live = false;
        self.free.push(idx);
        self.live -= 1;
        self.counters.ended[reason as usize] += 1;
    }
}

#[cfg(test)]
mod tests;
