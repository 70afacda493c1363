//! The flow table: canonical bidirectional keys, per-direction accumulators, TCP state
//! summary, packet-time expiry (TCP teardown with linger, idle and active timeouts),
//! a hard memory cap with accounted eviction, and the deterministic end-of-input flush.
//!
//! Owns: [`FlowKey`], [`FlowTable`], [`FlowRecord`], [`EndReason`]. Does not own feature
//! math beyond running sums, nor output. Time is packet time only: the table's clock is
//! the largest packet timestamp seen (it never moves backwards), advanced by packets or by
//! [`FlowTable::advance_clock`].
//!
//! Layout: flows live in a slab of fixed-size chunks (`slab::Slab<Slot>`), a hash index
//! (`index::FlowIndex`, open addressing) maps key hashes to slab indices (keys are stored
//! once), and each flow sits on one of five doubly-linked lists (links in a dense array
//! beside the slab) ordered by last activity (TCP never past SYN, other TCP, UDP, other,
//! TCP closing). Every list has one timeout, so the expired flows are always at the list
//! heads: expiry and eviction are O(1) per flow, with no periodic full-table scan.
//!
//! A slot is compact (see `Slot`): counters are `u32`/`u16` whose wrap-arounds are carried
//! exactly into a side map (`Rare`, which also holds the flow start and slice number of
//! later slices), per-direction times are nanosecond offsets from the slice start, and the
//! Welford statistics of a [`FlowRecord`] are rebuilt when the record is made: payload
//! mean and M2 from exact integer sums, inter-arrival means from the first and last packet
//! times (the gaps telescope), inter-arrival M2 from a running sum updated with those
//! exact means. Records therefore carry the correctly rounded mean, where a plain f64
//! Welford could be off in the last bit.

pub mod accum;
mod index;
pub mod key;
mod prefetch;
mod slab;
pub mod tcp;

pub use accum::{DirStats, FlagCounts, Welford};
pub use key::FlowKey;
pub use tcp::{ConnState, History, TcpTrack};

use crate::packet::{proto, Addr, AppHint, IpPacket, Tunnel};
use crate::time::{Nanos, Timestamp};
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

impl FlowConfig {
    /// How far behind the flow clock the last packet of a record can be when the record
    /// is emitted: the largest idle timeout plus the TCP close linger (an open flow is
    /// never older than its idle timeout; a closed one waits out the linger).
    pub fn max_record_lag(&self) -> Nanos {
        let idle = self
            .tcp_idle
            .0
            .max(self.tcp_syn_idle.0)
            .max(self.udp_idle.0)
            .max(self.other_idle.0);
        Nanos(idle.saturating_add(self.tcp_close_linger.0))
    }
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
    /// Of those, writes (function codes 5, 6, 15, 16, 21, 22, 23).
    pub modbus_writes: u32,
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
    /// A packet of this record came from a source MAC other than the first one of its
    /// direction (`orig.mac` / `resp.mac`): relayed by another host (ARP-spoofing
    /// interception, a gateway or NIC change, a capture seeing both sides of a router).
    pub mac_changed: bool,
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

/// A flow's neighbours on its list (by slot index; [`NIL`] at the ends). Kept apart from
/// the slots in a dense array: moving a flow to its list's tail rewrites both
/// neighbours' links, and 8-byte links of every flow stay in cache where 280-byte slots
/// do not.
#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
};

/// An inter-arrival time in nanoseconds, stored in 48 bits (three `u16`s, so it packs
/// without padding): exact up to 2^47 ns (39 hours). A larger gap inside one record
/// (possible only with the active timeout disabled or above 39 hours) is clamped to it.
type T48 = [u16; 3];

const T48_MAX: i64 = (1 << 47) - 1;

#[inline]
fn t48(off: i64) -> T48 {
    let u = off.clamp(-T48_MAX, T48_MAX) as u64;
    [u as u16, (u >> 16) as u16, (u >> 32) as u16]
}

#[inline]
fn t48_get(t: T48) -> i64 {
    let u = u64::from(t[0]) | u64::from(t[1]) << 16 | u64::from(t[2]) << 32;
    ((u << 16) as i64) >> 16
}

/// Ids of the narrow counters whose carries (wrap-arounds) are kept in [`Rare::hi`]:
/// per direction `D_*` at `d * D_N`, then the flow-level ones.
const D_PKTS: usize = 0;
const D_BYTES: usize = 1;
const D_IP: usize = 2;
const D_PAYLOAD: usize = 3;
const D_ZERO: usize = 4;
const D_FLAG0: usize = 5; // syn, fin, rst, psh, ack, urg
const D_PSQ: usize = 11;
const D_N: usize = 12;
const C_FRAG: usize = 2 * D_N;
const C_DNS_Q: usize = C_FRAG + 1;
const C_MB_REQ: usize = C_FRAG + 2;
const C_MB_WR: usize = C_FRAG + 3;
const C_N: usize = C_FRAG + 4;

/// State of a flow that is rarely needed: the high parts of narrow counters that
/// wrapped around, and the flow's first packet time and slice number once it has had an
/// interim record. Kept in a side map, only for the flows that need it.
#[derive(Debug, Clone)]
struct Rare {
    /// Wrap-arounds per counter id (units of 2^32 for `u32` counters, 2^16 for `u16`).
    hi: [u64; C_N],
    flow_start: Timestamp,
    slice: u32,
}

/// Hot per-direction statistics of a flow. Counters are narrow (`u32`/`u16`) and exact:
/// a wrap-around is carried into [`Rare::hi`]. Payload-size statistics are exact integer
/// sums; inter-arrival statistics keep only the sum of squared deviations (`iat_m2`), as
/// the mean follows exactly from the first and last packet times.
#[derive(Debug, Clone, Copy, Default)]
struct Dir {
    /// Sum of squared payload sizes, low 32 bits (carries in [`Rare::hi`]: a bulk flow of
    /// full-size segments wraps it about every 2,000 packets).
    psq: u32,
    /// Welford M2 of the inter-arrivals in µs² (mean recomputed exactly on each update).
    iat_m2: f64,
    /// First and last packet time, ns after the slice start (negative when timestamps
    /// went backwards).
    first: i64,
    last: i64,
    pkts: u32,
    bytes: u32,
    ip_bytes: u32,
    payload_bytes: u32,
    iat_max: T48,
    zero: u16,
    /// Packets with SYN, FIN, RST, URG: `u8`, as these counts are small in all but
    /// abnormal flows (a wrap-around is carried like the others).
    flags_rare: [u8; 4],
    /// Packets with PSH, ACK.
    flags_common: [u16; 2],
    payload_max: u16,
    flags_or: u8,
}

const M_LIVE: u8 = 1;
const M_ORIG_IS_LO: u8 = 2;
const M_MAC0: u8 = 4;
const M_MAC1: u8 = 8;
const M_ICMP: u8 = 16;
const M_RARE: u8 = 32;
/// A packet counter of this slice wrapped around (its low part may read 0).
const M_PKTS_WRAPPED: u8 = 64;
/// A packet of this slice came from a source MAC other than its direction's first one.
const M_MAC_CHANGED: u8 = 128;

/// One flow's state in the slab: the lookup key first, then what every packet updates.
#[derive(Debug, Clone)]
#[repr(align(64))]
struct Slot {
    key: key::PackedKey,
    /// Table clock at the last packet (list order) or at close (closing list).
    touched: Timestamp,
    /// First packet time of the current slice (the record's `first_ts`).
    slice_start: Timestamp,
    /// Merged inter-arrival M2 (µs²).
    iat_m2: f64,
    iat_max: T48,
    list: u8,
    meta: u8,
    tcp: TcpTrack,
    dir: [Dir; 2],
    history: History,
    macs: [[u8; 6]; 2],
    icmp: [u8; 2],
    fragments: u16,
    dns_queries: u16,
    dns_qname_max: u16,
    modbus_requests: u16,
    modbus_writes: u16,
    dns_label_entropy: f32,
}

/// Adds `v` to a narrow counter; sets bit `id` of `ovf` when it wraps around.
#[inline(always)]
fn add32(x: &mut u32, v: u32, id: usize, ovf: &mut u32) {
    let (n, c) = x.overflowing_add(v);
    *x = n;
    *ovf |= u32::from(c) << id;
}

#[inline(always)]
fn inc8(x: &mut u8, id: usize, ovf: &mut u32) {
    let (n, c) = x.overflowing_add(1);
    *x = n;
    *ovf |= u32::from(c) << id;
}

#[inline(always)]
fn inc16(x: &mut u16, id: usize, ovf: &mut u32) {
    add16(x, 1, id, ovf);
}

#[inline(always)]
fn add16(x: &mut u16, v: u16, id: usize, ovf: &mut u32) {
    let (n, c) = x.overflowing_add(v);
    *x = n;
    *ovf |= u32::from(c) << id;
}

/// One Welford step for a sample `x` (µs) given the exact means before and after it.
#[inline(always)]
fn m2_step(m2: &mut f64, x: f64, sum_old_ns: i64, gap_ns: i64, n: u64) {
    let mean_old = if n > 1 {
        sum_old_ns as f64 / ((n - 1) as f64 * 1_000.0)
    } else {
        0.0
    };
    let mean_new = (sum_old_ns + gap_ns) as f64 / (n as f64 * 1_000.0);
    *m2 += (x - mean_old) * (x - mean_new);
}

/// Welford-equivalent (mean, M2) of `n` samples from their exact integer sums.
fn exact_welford(n: u64, sum: u64, sum_sq: u64) -> Welford {
    if n == 0 {
        return Welford::default();
    }
    let (n128, s) = (u128::from(n), u128::from(sum));
    let num = (n128 * u128::from(sum_sq)).saturating_sub(s * s);
    Welford {
        mean: sum as f64 / n as f64,
        m2: num as f64 / n as f64,
    }
}

impl Slot {
    fn vacant() -> Slot {
        Slot {
            key: key::PackedKey::default(),
            touched: Timestamp(0),
            slice_start: Timestamp(0),
            iat_m2: 0.0,
            iat_max: [0; 3],
            list: L_OTHER,
            meta: 0,
            tcp: TcpTrack::default(),
            dir: [Dir::default(); 2],
            history: History::default(),
            macs: [[0; 6]; 2],
            icmp: [0; 2],
            fragments: 0,
            dns_queries: 0,
            dns_qname_max: 0,
            modbus_requests: 0,
            modbus_writes: 0,
            dns_label_entropy: 0.0,
        }
    }

    #[inline]
    fn live(&self) -> bool {
        self.meta & M_LIVE != 0
    }

    #[inline]
    fn orig_is_lo(&self) -> bool {
        self.meta & M_ORIG_IS_LO != 0
    }

    /// True once the slice has a packet.
    #[inline]
    fn any_pkts(&self) -> bool {
        self.dir[0].pkts != 0 || self.dir[1].pkts != 0 || self.meta & M_PKTS_WRAPPED != 0
    }

    /// The slot's record; `key` is its full key (see [`key::PackedKey::unpack`]).
    fn record(
        &self,
        key: FlowKey,
        rare: Option<&Rare>,
        reason: EndReason,
        emit_ts: Timestamp,
    ) -> FlowRecord {
        let hi = |id: usize, bits: u32| rare.map_or(0, |r| r.hi[id] << bits);
        let base = self.slice_start;
        let mut stats = [DirStats::default(); 2];
        let mut last_off = 0i64;
        for (d, (h, st)) in self.dir.iter().zip(stats.iter_mut()).enumerate() {
            let b = d * D_N;
            let pkts = u64::from(h.pkts) + hi(b + D_PKTS, 32);
            let payload_bytes = u64::from(h.payload_bytes) + hi(b + D_PAYLOAD, 32);
            // Flag counter `i` (syn, fin, rst, psh, ack, urg) with its carries.
            let f = |i: usize| {
                let (lo, bits) = match i {
                    0..=2 => (u64::from(h.flags_rare[i]), 8),
                    3 | 4 => (u64::from(h.flags_common[i - 3]), 16),
                    _ => (u64::from(h.flags_rare[3]), 8),
                };
                u32::try_from(lo + hi(b + D_FLAG0 + i, bits))
            };
            let psq = u64::from(h.psq) + hi(b + D_PSQ, 32);
            let flag = |i: usize| f(i).unwrap_or(u32::MAX);
            let (first, last) = (h.first, h.last);
            if pkts > 0 {
                last_off = last_off.max(last);
            }
            *st = DirStats {
                pkts,
                bytes: u64::from(h.bytes) + hi(b + D_BYTES, 32),
                ip_bytes: u64::from(h.ip_bytes) + hi(b + D_IP, 32),
                payload_bytes,
                zero_payload_pkts: u64::from(h.zero) + hi(b + D_ZERO, 16),
                first_ts: if pkts > 0 {
                    base.plus(Nanos(first))
                } else {
                    Timestamp(0)
                },
                last_ts: if pkts > 0 {
                    base.plus(Nanos(last))
                } else {
                    Timestamp(0)
                },
                payload: exact_welford(pkts, payload_bytes, psq),
                payload_max: u32::from(h.payload_max),
                iat: Welford {
                    mean: if pkts >= 2 {
                        (last - first) as f64 / ((pkts - 1) as f64 * 1_000.0)
                    } else {
                        0.0
                    },
                    m2: h.iat_m2,
                },
                iat_max_ns: t48_get(h.iat_max),
                flags: FlagCounts {
                    syn: flag(0),
                    fin: flag(1),
                    rst: flag(2),
                    psh: flag(3),
                    ack: flag(4),
                    urg: flag(5),
                },
                flags_or: h.flags_or,
            };
        }
        let pkts = stats[0].pkts + stats[1].pkts;
        let orig_is_lo = self.orig_is_lo();
        let (lo, hi_ep) = ((key.addr_lo, key.port_lo), (key.addr_hi, key.port_hi));
        let (o, r) = if orig_is_lo { (lo, hi_ep) } else { (hi_ep, lo) };
        let icmp_flow = key::is_icmp(key.proto);
        let conn_state = match key.proto {
            proto::TCP => self
                .tcp
                .conn_state(stats[0].payload_bytes, stats[1].payload_bytes),
            proto::UDP => {
                if stats[1].pkts > 0 {
                    ConnState::SF
                } else {
                    ConnState::S0
                }
            }
            _ => ConnState::OTH,
        };
        let c32 =
            |lo: u16, id: usize| u32::try_from(u64::from(lo) + hi(id, 16)).unwrap_or(u32::MAX);
        FlowRecord {
            key,
            orig: Endpoint {
                addr: o.0,
                port: if icmp_flow { 0 } else { o.1 },
                mac: (self.meta & M_MAC0 != 0).then_some(self.macs[0]),
            },
            resp: Endpoint {
                addr: r.0,
                port: if icmp_flow { 0 } else { r.1 },
                mac: (self.meta & M_MAC1 != 0).then_some(self.macs[1]),
            },
            proto: key.proto,
            icmp: (self.meta & M_ICMP != 0).then_some((self.icmp[0], self.icmp[1])),
            // The key holds the tunnel the flow's packets came in (see `FlowKey::of`).
            tunnel: match key.tunnel_kind {
                1 => Tunnel::Gre { key: key.tunnel_id },
                2 => Tunnel::Vxlan { vni: key.tunnel_id },
                _ => Tunnel::None,
            },
            flow_start: rare.map_or(self.slice_start, |r| r.flow_start),
            first_ts: self.slice_start,
            last_ts: base.plus(Nanos(last_off)),
            orig_stats: stats[0],
            resp_stats: stats[1],
            iat: Welford {
                mean: if pkts >= 2 {
                    last_off as f64 / ((pkts - 1) as f64 * 1_000.0)
                } else {
                    0.0
                },
                m2: self.iat_m2,
            },
            iat_max_ns: t48_get(self.iat_max),
            conn_state,
            history: self.history,
            reason,
            emit_ts,
            slice: rare.map_or(0, |r| r.slice),
            app: AppSummary {
                dns_queries: c32(self.dns_queries, C_DNS_Q),
                dns_qname_max: self.dns_qname_max,
                dns_label_entropy: self.dns_label_entropy,
                modbus_requests: c32(self.modbus_requests, C_MB_REQ),
                modbus_writes: c32(self.modbus_writes, C_MB_WR),
            },
            fragments: c32(self.fragments, C_FRAG),
            mac_changed: self.meta & M_MAC_CHANGED != 0,
        }
    }

    /// Starts a new slice after an interim record: counters reset, TCP state kept.
    fn reset_slice(&mut self, ts: Timestamp) {
        self.dir = [Dir::default(); 2];
        self.iat_m2 = 0.0;
        self.iat_max = [0; 3];
        self.history = History::default();
        self.fragments = 0;
        self.dns_queries = 0;
        self.dns_qname_max = 0;
        self.dns_label_entropy = 0.0;
        self.modbus_requests = 0;
        self.modbus_writes = 0;
        self.slice_start = ts;
    }
}

/// The bidirectional flow table (one per worker shard).
pub struct FlowTable {
    cfg: FlowConfig,
    slots: slab::Slab<Slot>,
    /// List links, by slot index.
    links: Vec<Link>,
    free: Vec<u32>,
    index: index::FlowIndex,
    /// Address pairs of the IPv6 flows (see [`key::PackedKey`]).
    v6: key::V6Store,
    hasher: foldhash::fast::FixedState,
    /// Rarely needed per-flow state (counter carries, flow start of later slices), by slot.
    rare: hashbrown::HashMap<u32, Rare, foldhash::fast::FixedState>,
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
            slots: slab::Slab::new(),
            links: Vec::new(),
            free: Vec::new(),
            index: index::FlowIndex::new(),
            v6: key::V6Store::default(),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed_f10e),
            rare: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x4a4e)),
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

    /// Bytes of memory held by the table's structures (slab, list links, free list, hash
    /// index, side map of rarely needed state), for the per-flow state figure in benchmarks.
    pub fn memory_bytes(&self) -> usize {
        self.slots.allocation_size()
            + self.links.capacity() * std::mem::size_of::<Link>()
            + self.free.capacity() * 4
            + self.index.allocation_size()
            + self.v6.allocation_size()
            + self.rare.allocation_size()
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
        let (key, src_is_lo) = FlowKey::of(pkt);
        let hash = key.hash_with(&self.hasher);
        self.observe_keyed(pkt, clock, key, src_is_lo, hash, None, out);
    }

    /// Accounts a batch of packets in order, exactly like [`FlowTable::observe_at`] on each
    /// packet for which `ip` returns one (with its global clock); other items are skipped.
    ///
    /// Faster than a loop of `observe_at`: a few packets ahead of the one being accounted
    /// it prefetches each packet's hash-index bucket, then (once the bucket is in cache)
    /// finds the packet's candidate slot and prefetches it and its list neighbours' links,
    /// so the cache misses of several packets overlap instead of stalling one after
    /// another. The prefetches are hints only: lookups are repeated when the packet's turn
    /// comes, so flows created or ended by earlier packets of the batch are seen exactly as
    /// in the unbatched loop.
    pub fn observe_batch<T>(
        &mut self,
        items: &[T],
        ip: impl Fn(&T) -> Option<(&IpPacket, Timestamp)>,
        out: &mut Vec<FlowRecord>,
    ) {
        // Packets ahead at which a packet's key is hashed and its index bucket
        // prefetched, its candidate slot found and prefetched, and its neighbours' links
        // prefetched.
        const BUCKET_AHEAD: usize = 8;
        const SLOT_AHEAD: usize = 4;
        const LINKS_AHEAD: usize = 2;
        const RING: usize = 16;
        #[derive(Clone, Copy, Default)]
        struct Ahead {
            key: FlowKey,
            hash: u64,
            src_is_lo: bool,
            ip: bool,
            slot: Option<u32>,
        }
        let mut ring = [Ahead::default(); RING];
        let prepare = |table: &Self, item: &T, e: &mut Ahead| {
            *e = match ip(item) {
                Some((pkt, _)) => {
                    let (key, src_is_lo) = FlowKey::of(pkt);
                    let hash = key.hash_with(&table.hasher);
                    table.index.prefetch(hash);
                    Ahead {
                        key,
                        hash,
                        src_is_lo,
                        ip: true,
                        slot: None,
                    }
                }
                None => Ahead::default(),
            };
        };
        for (j, item) in items.iter().enumerate().take(BUCKET_AHEAD) {
            prepare(self, item, &mut ring[j % RING]);
        }
        for (i, item) in items.iter().enumerate() {
            if let Some(next) = items.get(i + BUCKET_AHEAD) {
                prepare(self, next, &mut ring[(i + BUCKET_AHEAD) % RING]);
            }
            if i + SLOT_AHEAD < items.len() {
                let e = &mut ring[(i + SLOT_AHEAD) % RING];
                if e.ip {
                    // The first candidate of the right tag, without comparing keys:
                    // reading the slot's key here would stall on the very miss being
                    // hidden. A wrong candidate only costs a useless prefetch.
                    e.slot = self.index.find(e.hash, |_| true);
                    if let Some(slot) = e.slot.and_then(|s| self.slots.get(s as usize)) {
                        prefetch::lines_of(slot);
                    }
                }
            }
            // Moving a flow to its list's tail rewrites its neighbours' links: prefetch
            // those two links.
            if i + LINKS_AHEAD < items.len() {
                if let Some(s) = ring[(i + LINKS_AHEAD) % RING].slot {
                    if let Some(l) = self.links.get(s as usize) {
                        for n in [l.prev, l.next] {
                            if let Some(p) = self.links.get(n as usize) {
                                prefetch::line(p);
                            }
                        }
                    }
                }
            }
            if let Some((pkt, clock)) = ip(item) {
                let e = ring[i % RING];
                self.observe_keyed(pkt, clock, e.key, e.src_is_lo, e.hash, e.slot, out);
            }
        }
    }

    /// [`FlowTable::observe_at`] with the packet's key and its hash already computed.
    /// `candidate` is a slot that may hold the flow (the prefetched one): it is used when
    /// it is live with this key (keys of live slots are unique, so it is then the slot
    /// the index would find), and the index is searched otherwise.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn observe_keyed(
        &mut self,
        pkt: &IpPacket,
        clock: Timestamp,
        key: FlowKey,
        src_is_lo: bool,
        hash: u64,
        candidate: Option<u32>,
        out: &mut Vec<FlowRecord>,
    ) {
        let now = if clock > pkt.ts { clock } else { pkt.ts };
        if !self.clock_set || now > self.clock {
            self.clock = now;
            self.clock_set = true;
        }
        self.expire(out);

        let probe = key::PackedKey::probe(&key);
        let (slots, v6) = (&self.slots, &self.v6);
        let is_flow = |i: u32| {
            slots
                .get(i as usize)
                .is_some_and(|s| s.key.matches(&probe, &key, v6) && s.live())
        };
        let found = match candidate {
            Some(c) if is_flow(c) => Some(c),
            _ => self.index.find(hash, |i| {
                slots
                    .get(i as usize)
                    .is_some_and(|s| s.key.matches(&probe, &key, v6))
            }),
        };
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
        let mut live: Vec<(Timestamp, FlowKey, u32)> = (0..self.slots.len() as u32)
            .filter_map(|i| {
                let s = &self.slots[i as usize];
                s.live().then(|| (s.slice_start, s.key.unpack(&self.v6), i))
            })
            .collect();
        live.sort_unstable();
        for (_, _, i) in live {
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
    #[inline(always)]
    fn expire(&mut self, out: &mut Vec<FlowRecord>) {
        if self.clock > self.next_deadline {
            self.expire_due(out);
        }
    }

    /// [`FlowTable::expire`] once a list head may be due.
    #[inline(never)]
    fn expire_due(&mut self, out: &mut Vec<FlowRecord>) {
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
                self.slots.push(Slot::vacant());
                if self.links.len() == self.links.capacity() {
                    // Grow by a quarter rather than doubling (amortised O(1) per flow).
                    self.links
                        .reserve_exact((self.links.len() / 4).max(slab::CHUNK));
                }
                self.links.push(UNLINKED);
                (self.slots.len() - 1) as u32
            }
        };
        // Originator: sender of the first packet, except that a first SYN-ACK means its
        // receiver opened the connection (Zeek flips such flows and notes '^').
        let synack = pkt.proto == proto::TCP
            && pkt.tcp_flags & crate::packet::tcp_flags::SYN != 0
            && pkt.tcp_flags & crate::packet::tcp_flags::ACK != 0;
        let orig_is_lo = if synack { !src_is_lo } else { src_is_lo };
        let mut packed = key::PackedKey::probe(&key);
        if packed.is_v6() {
            packed = packed.with_v6_index(self.v6.insert(&key));
        }
        let s = &mut self.slots[idx as usize];
        *s = Slot::vacant();
        s.key = packed;
        s.meta = M_LIVE | if orig_is_lo { M_ORIG_IS_LO } else { 0 };
        s.slice_start = pkt.ts;
        if synack {
            s.history.push(b'^', true);
        }
        if key::is_icmp(pkt.proto) {
            s.icmp = [pkt.src_port as u8, pkt.dst_port as u8];
            s.meta |= M_ICMP;
        }
        self.index.insert(hash, idx);
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
            if s.any_pkts() && pkt.ts.since(s.slice_start) >= active {
                self.interim(idx, pkt.ts, clock, out);
            }
        }
        let s = &mut self.slots[idx as usize];
        let mut ovf = 0u32;
        let from_orig = src_is_lo == s.orig_is_lo();
        let d = usize::from(!from_orig);
        let off = pkt.ts.since(s.slice_start).0;
        if s.any_pkts() {
            // Merged inter-arrivals. The slice's last time is the later of the directions'
            // last times (an empty direction reads 0, the offset of the slice's first
            // packet, which is never later than the slice's last time).
            let last = s.dir[0].last.max(s.dir[1].last);
            let mut n = u64::from(s.dir[0].pkts) + u64::from(s.dir[1].pkts);
            if s.meta & M_PKTS_WRAPPED != 0 {
                n = self
                    .rare
                    .get(&idx)
                    .map_or(n, |r| n + ((r.hi[D_PKTS] + r.hi[D_N + D_PKTS]) << 32));
            }
            let gap = off.saturating_sub(last).max(0);
            m2_step(&mut s.iat_m2, gap as f64 / 1_000.0, last, gap, n);
            if gap > t48_get(s.iat_max) {
                s.iat_max = t48(gap);
            }
        }
        let h = &mut s.dir[d];
        if h.pkts != 0 || s.meta & M_PKTS_WRAPPED != 0 {
            let (first, last) = (h.first, h.last);
            let gap = off.saturating_sub(last).max(0);
            let mut n = u64::from(h.pkts);
            if s.meta & M_PKTS_WRAPPED != 0 {
                n = self
                    .rare
                    .get(&idx)
                    .map_or(n, |r| n + (r.hi[d * D_N + D_PKTS] << 32));
            }
            m2_step(&mut h.iat_m2, gap as f64 / 1_000.0, last - first, gap, n);
            if gap > t48_get(h.iat_max) {
                h.iat_max = t48(gap);
            }
            if off > last {
                h.last = off;
            }
        } else {
            h.first = off;
            h.last = off;
        }
        let b = d * D_N;
        add32(&mut h.pkts, 1, b + D_PKTS, &mut ovf);
        add32(&mut h.bytes, pkt.wire_len, b + D_BYTES, &mut ovf);
        add32(&mut h.ip_bytes, pkt.ip_len, b + D_IP, &mut ovf);
        add32(
            &mut h.payload_bytes,
            pkt.payload_len,
            b + D_PAYLOAD,
            &mut ovf,
        );
        // An IP payload is at most 65,535 bytes, so its square fits the 32 bits and one
        // packet wraps the low part at most once; a larger one (a jumbogram) carries the
        // square's high part separately, so the sum stays exact.
        let sq = u64::from(pkt.payload_len) * u64::from(pkt.payload_len);
        add32(&mut h.psq, sq as u32, b + D_PSQ, &mut ovf);
        let psq_high = sq >> 32;
        if pkt.payload_len == 0 {
            inc16(&mut h.zero, b + D_ZERO, &mut ovf);
        }
        // Payloads are at most 65,535 bytes (IP length fields are 16 bits).
        h.payload_max = h
            .payload_max
            .max(u16::try_from(pkt.payload_len).unwrap_or(u16::MAX));
        let flags = pkt.tcp_flags;
        if flags != 0 {
            use crate::packet::tcp_flags as tf;
            h.flags_or |= flags;
            // Most packets carry only ACK (and PSH): test the rare flags together first.
            if flags & (tf::SYN | tf::FIN | tf::RST | tf::URG) != 0 {
                for (j, (bit, i)) in [(tf::SYN, 0), (tf::FIN, 1), (tf::RST, 2), (tf::URG, 5)]
                    .into_iter()
                    .enumerate()
                {
                    if flags & bit != 0 {
                        inc8(&mut h.flags_rare[j], b + D_FLAG0 + i, &mut ovf);
                    }
                }
            }
            for (j, (bit, i)) in [(tf::PSH, 3), (tf::ACK, 4)].into_iter().enumerate() {
                if flags & bit != 0 {
                    inc16(&mut h.flags_common[j], b + D_FLAG0 + i, &mut ovf);
                }
            }
        }
        if let Some(m) = pkt.src_mac {
            if s.meta & (M_MAC0 << d) == 0 {
                s.macs[d] = m;
                s.meta |= M_MAC0 << d;
            } else if m != s.macs[d] {
                s.meta |= M_MAC_CHANGED;
            }
        }
        if pkt.frag.is_fragment {
            inc16(&mut s.fragments, C_FRAG, &mut ovf);
        }
        match pkt.app {
            AppHint::None => {}
            AppHint::Dns {
                query,
                qname_len,
                label_entropy,
            } => {
                if query {
                    inc16(&mut s.dns_queries, C_DNS_Q, &mut ovf);
                    if qname_len > s.dns_qname_max {
                        s.dns_qname_max = qname_len;
                        s.dns_label_entropy = label_entropy;
                    }
                }
            }
            AppHint::Modbus {
                request,
                adus,
                writes,
            } => {
                if request {
                    add16(&mut s.modbus_requests, adus, C_MB_REQ, &mut ovf);
                    add16(&mut s.modbus_writes, writes, C_MB_WR, &mut ovf);
                }
            }
        }
        let mut list = match pkt.proto {
            proto::TCP => L_TCP,
            proto::UDP => L_UDP,
            _ => L_OTHER,
        };
        let mut closing_linger = false;
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
                closing_linger = true;
            } else if s.tcp.is_terminated() {
                list = L_CLOSING;
            } else if !s.tcp.past_syn() {
                list = L_SYN;
            }
        } else {
            s.history.push(b'D', from_orig);
        }
        if psq_high != 0 {
            self.carry_units(idx, b + D_PSQ, psq_high);
        }
        if ovf != 0 {
            self.carry(idx, ovf);
        }
        if closing_linger {
            return;
        }
        self.slots[idx as usize].touched = clock;
        self.relink(idx, list);
    }

    /// The slot `idx` and its side-map entry, created (and flagged in the slot) if it has
    /// none yet.
    fn slot_and_rare(&mut self, idx: u32) -> (&mut Slot, &mut Rare) {
        let s = &mut self.slots[idx as usize];
        let r = self.rare.entry(idx).or_insert_with(|| Rare {
            hi: [0; C_N],
            flow_start: s.slice_start,
            slice: 0,
        });
        s.meta |= M_RARE;
        (s, r)
    }

    /// Adds `n` wrap-arounds to counter `id` (a square of a payload above 64 KiB).
    #[cold]
    fn carry_units(&mut self, idx: u32, id: usize, n: u64) {
        self.slot_and_rare(idx).1.hi[id] += n;
    }

    /// Adds one wrap-around to each counter whose bit is set in `ovf`.
    #[cold]
    fn carry(&mut self, idx: u32, ovf: u32) {
        let (s, r) = self.slot_and_rare(idx);
        for id in 0..C_N {
            if ovf & (1 << id) != 0 {
                r.hi[id] += 1;
                if id % D_N == D_PKTS && id < C_FRAG {
                    s.meta |= M_PKTS_WRAPPED;
                }
            }
        }
    }

    /// Emits the interim record of `idx` and starts its next slice at `ts`.
    #[cold]
    fn interim(&mut self, idx: u32, ts: Timestamp, clock: Timestamp, out: &mut Vec<FlowRecord>) {
        let full = self.slots[idx as usize].key.unpack(&self.v6);
        let (s, r) = self.slot_and_rare(idx);
        out.push(s.record(full, Some(r), EndReason::ActiveTimeout, clock));
        r.hi = [0; C_N];
        r.slice += 1;
        s.meta &= !(M_PKTS_WRAPPED | M_MAC_CHANGED);
        s.reset_slice(ts);
        self.counters.ended[EndReason::ActiveTimeout as usize] += 1;
    }

    fn unlink(&mut self, idx: u32) {
        let list = self.slots[idx as usize].list;
        if (list as usize) >= N_LISTS {
            return;
        }
        let Link { prev, next } = self.links[idx as usize];
        let l = list as usize;
        if prev == NIL {
            self.lists[l].head = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[l].tail = prev;
        } else {
            self.links[next as usize].prev = prev;
        }
        self.links[idx as usize] = UNLINKED;
        self.slots[idx as usize].list = N_LISTS as u8;
    }

    /// Moves `idx` to the tail of list `list` (most recently active).
    fn relink(&mut self, idx: u32, list: u8) {
        if self.slots[idx as usize].list == list && self.links[idx as usize].next == NIL {
            return; // already the tail
        }
        self.unlink(idx);
        let l = list as usize;
        let tail = self.lists[l].tail;
        self.slots[idx as usize].list = list;
        self.links[idx as usize] = Link {
            prev: tail,
            next: NIL,
        };
        if tail == NIL {
            self.lists[l].head = idx;
            let deadline = self.slots[idx as usize].touched.plus(self.timeout_of(list));
            self.next_deadline = self.next_deadline.min(deadline);
        } else {
            self.links[tail as usize].next = idx;
        }
        self.lists[l].tail = idx;
    }

    fn end(&mut self, idx: u32, reason: EndReason, emit_ts: Timestamp, out: &mut Vec<FlowRecord>) {
        self.unlink(idx);
        let s = &self.slots[idx as usize];
        let rare = if s.meta & M_RARE != 0 {
            self.rare.remove(&idx)
        } else {
            None
        };
        let full = s.key.unpack(&self.v6);
        out.push(s.record(full, rare.as_ref(), reason, emit_ts));
        if s.key.is_v6() {
            self.v6.remove(s.key.v6_index());
        }
        let hash = full.hash_with(&self.hasher);
        self.index.remove(hash, idx);
        self.slots[idx as usize].meta = 0;
        self.free.push(idx);
        self.live -= 1;
        self.counters.ended[reason as usize] += 1;
    }
}

#[cfg(test)]
mod tests;
