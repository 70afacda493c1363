//! The flow feature vector (design `detection.md` §2.3, features F1–F33), computed from
//! the monitored device's side of a [`FlowRecord`].
//!
//! Three kinds of features:
//! - F1–F25 and F31–F33 are pure functions of one record ([`flow_features`]);
//! - F26/F27 (service-port and peer familiarity) are lookups in [`FamiliarityTables`]
//!   learned from the training window only;
//! - F28–F30 (per-device fan-out) come from a [`DeviceContext`] of sliding-window
//!   counters updated as flows end.
//!
//! [`FeatureExtractor`] owns the tables and the per-device contexts and produces the whole
//! vector. `docs/features.md` defines every feature; this module is its implementation.
//! Every output is finite: undefined statistics are 0, never NaN or infinite.

mod context;
mod familiarity;
#[cfg(test)]
pub(crate) mod tests;

pub use context::{ContextConfig, ContextCounts, DeviceContext};
pub use familiarity::{peer_key, service_key, FamiliarityTables, PeerKey, ServiceKey, SitePeers};

use crate::device::DeviceClass;
use crate::flow::{ConnState, DirStats, FlowRecord};
use crate::packet::{proto, Addr};
use crate::time::Nanos;
use foldhash::HashMap;

/// Version of the feature schema: bumped whenever a feature's definition, order, unit or
/// transform changes, so a model trained on another schema is refused at load time.
pub const FEATURE_SCHEMA_VERSION: u32 = 1;

/// Number of features.
pub const N_FEATURES: usize = 33;

/// Feature names, F1 first (index i is feature F(i+1)).
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "duration",
    "pkts_out",
    "pkts_in",
    "bytes_out",
    "bytes_in",
    "out_byte_frac",
    "pl_mean_out",
    "pl_std_out",
    "pl_mean_in",
    "pl_std_in",
    "pl_max",
    "zero_pl_frac",
    "iat_mean",
    "iat_cv",
    "iat_max",
    "pkt_rate",
    "tcp_no_reply",
    "tcp_rejected",
    "syn_cnt",
    "rst_cnt",
    "fin_cnt",
    "psh_frac",
    "dev_initiated",
    "peer_public",
    "peer_mcast",
    "svc_port_fam",
    "peer_fam",
    "dev_fanout_60s",
    "dev_newflows_10s",
    "dev_dports_60s",
    "dns_qname_max",
    "dns_label_entropy",
    "modbus_write_frac",
];

/// Indices of the features by name (`idx::PEER_FAM` = 26 is F27).
pub mod idx {
    /// F1 `duration`.
    pub const DURATION: usize = 0;
    /// F2 `pkts_out`.
    pub const PKTS_OUT: usize = 1;
    /// F3 `pkts_in`.
    pub const PKTS_IN: usize = 2;
    /// F4 `bytes_out`.
    pub const BYTES_OUT: usize = 3;
    /// F5 `bytes_in`.
    pub const BYTES_IN: usize = 4;
    /// F6 `out_byte_frac`.
    pub const OUT_BYTE_FRAC: usize = 5;
    /// F7 `pl_mean_out`.
    pub const PL_MEAN_OUT: usize = 6;
    /// F8 `pl_std_out`.
    pub const PL_STD_OUT: usize = 7;
    /// F9 `pl_mean_in`.
    pub const PL_MEAN_IN: usize = 8;
    /// F10 `pl_std_in`.
    pub const PL_STD_IN: usize = 9;
    /// F11 `pl_max`.
    pub const PL_MAX: usize = 10;
    /// F12 `zero_pl_frac`.
    pub const ZERO_PL_FRAC: usize = 11;
    /// F13 `iat_mean`.
    pub const IAT_MEAN: usize = 12;
    /// F14 `iat_cv`.
    pub const IAT_CV: usize = 13;
    /// F15 `iat_max`.
    pub const IAT_MAX: usize = 14;
    /// F16 `pkt_rate`.
    pub const PKT_RATE: usize = 15;
    /// F17 `tcp_no_reply`.
    pub const TCP_NO_REPLY: usize = 16;
    /// F18 `tcp_rejected`.
    pub const TCP_REJECTED: usize = 17;
    /// F19 `syn_cnt`.
    pub const SYN_CNT: usize = 18;
    /// F20 `rst_cnt`.
    pub const RST_CNT: usize = 19;
    /// F21 `fin_cnt`.
    pub const FIN_CNT: usize = 20;
    /// F22 `psh_frac`.
    pub const PSH_FRAC: usize = 21;
    /// F23 `dev_initiated`.
    pub const DEV_INITIATED: usize = 22;
    /// F24 `peer_public`.
    pub const PEER_PUBLIC: usize = 23;
    /// F25 `peer_mcast`.
    pub const PEER_MCAST: usize = 24;
    /// F26 `svc_port_fam`.
    pub const SVC_PORT_FAM: usize = 25;
    /// F27 `peer_fam`.
    pub const PEER_FAM: usize = 26;
    /// F28 `dev_fanout_60s`.
    pub const DEV_FANOUT_60S: usize = 27;
    /// F29 `dev_newflows_10s`.
    pub const DEV_NEWFLOWS_10S: usize = 28;
    /// F30 `dev_dports_60s`.
    pub const DEV_DPORTS_60S: usize = 29;
    /// F31 `dns_qname_max`.
    pub const DNS_QNAME_MAX: usize = 30;
    /// F32 `dns_label_entropy`.
    pub const DNS_LABEL_ENTROPY: usize = 31;
    /// F33 `modbus_write_frac`.
    pub const MODBUS_WRITE_FRAC: usize = 32;
}

/// Cap of F14 `iat_cv`.
pub const IAT_CV_CAP: f64 = 10.0;

/// One flow's feature vector, in [`FEATURE_NAMES`] order. Every value is finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureVector(pub [f32; N_FEATURES]);

impl Default for FeatureVector {
    fn default() -> Self {
        FeatureVector([0.0; N_FEATURES])
    }
}

impl FeatureVector {
    /// The value of the feature named `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<f32> {
        FEATURE_NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| self.0[i])
    }

    /// The values as a slice.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
}

/// Which endpoint of a flow record is the monitored device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The originator (`FlowRecord::orig`) is the device: `out` = originator → responder.
    Orig,
    /// The responder (`FlowRecord::resp`) is the device: `out` = responder → originator.
    Resp,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Orig => Side::Resp,
            Side::Resp => Side::Orig,
        }
    }
}

/// The monitored device a flow is scored for: its id (inventory name, or the address
/// form used by [`crate::device`] for unlisted devices) and its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRef<'a> {
    /// Device id.
    pub id: &'a str,
    /// Device class (selects the class-level familiarity table).
    pub class: DeviceClass,
}

/// The record seen from `side`: (device → peer stats, peer → device stats, device
/// address, peer address).
#[inline]
pub fn oriented(rec: &FlowRecord, side: Side) -> (&DirStats, &DirStats, Addr, Addr) {
    match side {
        Side::Orig => (
            &rec.orig_stats,
            &rec.resp_stats,
            rec.orig.addr,
            rec.resp.addr,
        ),
        Side::Resp => (
            &rec.resp_stats,
            &rec.orig_stats,
            rec.resp.addr,
            rec.orig.addr,
        ),
    }
}

/// ln(1 + x) for x > 0, else 0 (negative, NaN: 0; +inf stays +inf and is clamped later).
#[inline]
fn l1p(x: f64) -> f64 {
    if x > 0.0 {
        ln_1p(x)
    } else {
        0.0
    }
}

/// Integers below this have their ln(1 + n) in [`LN_1P_TABLE`].
const LN_1P_TABLE_LEN: usize = 2048;

/// ln(1 + n) for n in 0..[`LN_1P_TABLE_LEN`], filled by `f64::ln_1p` itself, so a table
/// hit is bitwise the value `ln_1p` returns.
static LN_1P_TABLE: std::sync::LazyLock<Box<[f64; LN_1P_TABLE_LEN]>> =
    std::sync::LazyLock::new(|| {
        let mut t = Box::new([0.0; LN_1P_TABLE_LEN]);
        for (n, v) in t.iter_mut().enumerate() {
            *v = (n as f64).ln_1p();
        }
        t
    });

/// `x.ln_1p()`, bitwise, taken from a table when `x` is a small non-negative integer.
/// Most features are logs of counts (packets, bytes, flags, peers), so about 20 calls a
/// scored flow side skip libm's `log1p`.
#[inline]
pub(crate) fn ln_1p(x: f64) -> f64 {
    let n = x as usize; // saturating; NaN -> 0 (and -0.0 fails the bit test below)
    if n < LN_1P_TABLE_LEN && (n as f64).to_bits() == x.to_bits() {
        LN_1P_TABLE[n]
    } else {
        x.ln_1p()
    }
}

/// `num / den`, 0 when the denominator is not positive.
#[inline]
fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

/// To f32, NaN → 0, ±inf and out-of-range → ±f32::MAX.
#[inline]
fn fin(x: f64) -> f32 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(-(f32::MAX as f64), f32::MAX as f64) as f32
    }
}

/// True for IPv4/IPv6 multicast, the limited broadcast 255.255.255.255 and a non-public
/// IPv4 address ending in `.255` (taken as a /24 directed broadcast: the sensor does not
/// know subnet masks; documented heuristic).
pub fn is_multicast_or_broadcast(a: &Addr) -> bool {
    let b = &a.0;
    if a.is_v4() {
        let o = [b[12], b[13], b[14], b[15]];
        (o[0] & 0xf0) == 224 || o == [255, 255, 255, 255] || (o[3] == 255 && is_private_v4(o))
    } else {
        b[0] == 0xff
    }
}

fn is_private_v4(o: [u8; 4]) -> bool {
    o[0] == 10
        || (o[0] == 172 && (o[1] & 0xf0) == 16)
        || (o[0] == 192 && o[1] == 168)
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // RFC 6598 shared address space
        || (o[0] == 169 && o[1] == 254) // link-local
        || o[0] == 127 // loopback
        || o[0] == 0 // "this network"
}

/// True for a global unicast address: not RFC 1918, RFC 6598, RFC 4193 (fc00::/7),
/// link-local, loopback, unspecified/"this network", multicast or broadcast, and not in
/// 240.0.0.0/4. Documentation ranges (TEST-NET) count as public.
pub fn is_public(a: &Addr) -> bool {
    if is_multicast_or_broadcast(a) {
        return false;
    }
    let b = &a.0;
    if a.is_v4() {
        let o = [b[12], b[13], b[14], b[15]];
        !(is_private_v4(o) || o[0] >= 240)
    } else {
        let unspecified_or_loopback = b[..15].iter().all(|&x| x == 0);
        let ula = (b[0] & 0xfe) == 0xfc;
        let link_local = b[0] == 0xfe && (b[1] & 0xc0) == 0x80;
        !(unspecified_or_loopback || ula || link_local)
    }
}

/// The record-only features F1–F25 and F31–F33 seen from `side`; F26–F30 are left 0 (they
/// need the tables and the device context: see [`FeatureExtractor::extract`]).
pub fn flow_features(rec: &FlowRecord, side: Side) -> FeatureVector {
    let mut v = [0f64; N_FEATURES];
    let (out, inn, _dev, peer) = oriented(rec, side);
    let pkts = out.pkts.saturating_add(inn.pkts);
    let pkts_f = pkts as f64;
    let dur_ns = rec.duration().0.max(0) as f64;
    let dur_ms = dur_ns / 1e6;

    v[idx::DURATION] = l1p(dur_ms);
    v[idx::PKTS_OUT] = l1p(out.pkts as f64);
    v[idx::PKTS_IN] = l1p(inn.pkts as f64);
    v[idx::BYTES_OUT] = l1p(out.ip_bytes as f64);
    v[idx::BYTES_IN] = l1p(inn.ip_bytes as f64);
    v[idx::OUT_BYTE_FRAC] = ratio(
        out.ip_bytes as f64,
        out.ip_bytes as f64 + inn.ip_bytes as f64,
    );
    v[idx::PL_MEAN_OUT] = l1p(out.payload_mean());
    v[idx::PL_STD_OUT] = l1p(out.payload_std());
    v[idx::PL_MEAN_IN] = l1p(inn.payload_mean());
    v[idx::PL_STD_IN] = l1p(inn.payload_std());
    v[idx::PL_MAX] = l1p(f64::from(out.payload_max.max(inn.payload_max)));
    v[idx::ZERO_PL_FRAC] = ratio(
        out.zero_payload_pkts.saturating_add(inn.zero_payload_pkts) as f64,
        pkts_f,
    )
    .min(1.0);

    // Merged inter-arrivals: `rec.iat` is a Welford over pkts − 1 samples in µs.
    let (iat_mean_ms, iat_cv) = if pkts >= 2 {
        let mean_us = rec.iat.mean;
        let cv = if pkts >= 3 {
            ratio(rec.iat.std(pkts - 1), mean_us).min(IAT_CV_CAP)
        } else {
            0.0
        };
        (mean_us / 1e3, cv)
    } else {
        (0.0, 0.0)
    };
    v[idx::IAT_MEAN] = l1p(iat_mean_ms);
    v[idx::IAT_CV] = if iat_cv.is_finite() {
        iat_cv.max(0.0)
    } else {
        0.0
    };
    v[idx::IAT_MAX] = l1p(rec.iat_max_ns.max(0) as f64 / 1e6);
    v[idx::PKT_RATE] = l1p(pkts_f / (dur_ns / 1e9).max(0.001));

    let tcp = rec.proto == proto::TCP;
    if tcp {
        v[idx::TCP_NO_REPLY] = f64::from(u8::from(matches!(
            rec.conn_state,
            ConnState::S0 | ConnState::RSTOS0 | ConnState::SH
        )));
        v[idx::TCP_REJECTED] = f64::from(u8::from(rec.conn_state == ConnState::REJ));
        v[idx::PSH_FRAC] =
            ratio(f64::from(out.flags.psh) + f64::from(inn.flags.psh), pkts_f).min(1.0);
    }
    v[idx::SYN_CNT] = l1p(f64::from(out.flags.syn) + f64::from(inn.flags.syn));
    v[idx::RST_CNT] = l1p(f64::from(out.flags.rst) + f64::from(inn.flags.rst));
    v[idx::FIN_CNT] = l1p(f64::from(out.flags.fin) + f64::from(inn.flags.fin));
    v[idx::DEV_INITIATED] = f64::from(u8::from(side == Side::Orig));
    v[idx::PEER_PUBLIC] = f64::from(u8::from(is_public(&peer)));
    v[idx::PEER_MCAST] = f64::from(u8::from(is_multicast_or_broadcast(&rec.resp.addr)));

    v[idx::DNS_QNAME_MAX] = l1p(f64::from(rec.app.dns_qname_max));
    v[idx::DNS_LABEL_ENTROPY] = if rec.app.dns_qname_max > 0 {
        f64::from(rec.app.dns_label_entropy).max(0.0)
    } else {
        0.0
    };
    v[idx::MODBUS_WRITE_FRAC] = ratio(
        f64::from(rec.app.modbus_writes),
        f64::from(rec.app.modbus_requests),
    )
    .min(1.0);

    let mut fv = FeatureVector::default();
    for (o, x) in fv.0.iter_mut().zip(v) {
        *o = fin(x);
    }
    fv
}

/// Computes whole feature vectors: owns the learned [`FamiliarityTables`] (F26/F27) and one
/// [`DeviceContext`] per device (F28–F30).
///
/// Flows must be passed in the order the flow table emits them (end order). A flow
/// between two monitored devices is extracted once per side, each call with its own
/// device. After warm-up (each device seen once, its rings at their working size) a
/// call does not allocate.
#[derive(Debug, Clone, Default)]
pub struct FeatureExtractor {
    tables: FamiliarityTables,
    contexts: HashMap<String, DeviceContext>,
    cfg: ContextConfig,
    /// Contexts idle this long (ns) behind the newest record are dropped (None: never).
    retire_after: Option<i64>,
    /// Largest `last_ts` seen (ns).
    newest: i64,
    /// Next `newest` at which idle contexts are swept.
    next_sweep: i64,
}

impl FeatureExtractor {
    /// An extractor with the given learned tables and default context settings.
    pub fn new(tables: FamiliarityTables) -> Self {
        Self::with_config(tables, ContextConfig::default())
    }

    /// An extractor with explicit context settings.
    pub fn with_config(tables: FamiliarityTables, cfg: ContextConfig) -> Self {
        FeatureExtractor {
            tables,
            contexts: HashMap::default(),
            cfg,
            retire_after: None,
            newest: i64::MIN,
            next_sweep: i64::MIN,
        }
    }

    /// Bounds the memory of device contexts on a long run: once a minute of record time,
    /// contexts of devices whose last record is more than `max_record_lag` plus the long
    /// window behind the newest record are dropped. `max_record_lag` is how far behind
    /// the flow clock a record's `last_ts` can be when it is emitted (the largest idle
    /// timeout plus the TCP close linger). A later record of such a device finds every
    /// window entry expired either way, so the features are exactly the same as without
    /// retiring; only a capture whose time jumps backwards by more than that could differ.
    pub fn retire_idle_contexts(&mut self, max_record_lag: Nanos) {
        self.retire_after = Some(max_record_lag.0.saturating_add(self.cfg.long_window.0));
    }

    fn sweep(&mut self, t: i64) {
        let Some(after) = self.retire_after else {
            return;
        };
        if t > self.newest {
            self.newest = t;
        }
        if self.newest < self.next_sweep {
            return;
        }
        let cutoff = self.newest.saturating_sub(after);
        self.contexts
            .retain(|_, c| c.clock().is_some_and(|k| k >= cutoff));
        self.next_sweep = self.newest.saturating_add(Nanos::from_secs(60).0);
    }

    /// The familiarity tables in use.
    pub fn tables(&self) -> &FamiliarityTables {
        &self.tables
    }

    /// The context settings in use.
    pub fn config(&self) -> &ContextConfig {
        &self.cfg
    }

    /// Number of devices with a context.
    pub fn devices(&self) -> usize {
        self.contexts.len()
    }

    /// Forgets every device context (e.g. between the training and calibration passes).
    pub fn reset_contexts(&mut self) {
        self.contexts.clear();
    }

    /// The full feature vector of `rec` seen from `side`, which is `device`. Updates that
    /// device's context first (see [`DeviceContext::observe`]), so F28–F30 include this
    /// flow when the device initiated it.
    pub fn extract(
        &mut self,
        rec: &FlowRecord,
        side: Side,
        device: &DeviceRef<'_>,
    ) -> FeatureVector {
        self.sweep(rec.last_ts.0);
        let mut fv = flow_features(rec, side);
        fv.0[idx::SVC_PORT_FAM] = fin(self.tables.service_familiarity(device.class, rec));
        fv.0[idx::PEER_FAM] = fin(self
            .tables
            .peer_familiarity(device.class, device.id, rec, side));
        let ctx = match self.contexts.get_mut(device.id) {
            Some(c) => c,
            None => self
                .contexts
                .entry(device.id.to_owned())
                .or_insert_with(|| DeviceContext::new(self.cfg)),
        };
        let c = ctx.observe(rec, side);
        fv.0[idx::DEV_FANOUT_60S] = fin(l1p(f64::from(c.distinct_peers)));
        fv.0[idx::DEV_NEWFLOWS_10S] = fin(l1p(f64::from(c.new_flows)));
        fv.0[idx::DEV_DPORTS_60S] = fin(l1p(f64::from(c.distinct_ports)));
        fv
    }
}
