//! Device-level traffic statistics for class inference: a [`DeviceProfile`] accumulates
//! what the flow records of one device carry (ports served and used, protocol mix,
//! volumes and packet sizes, periodicity, peer scope, multicast use, DNS) and turns it
//! into a fixed-length vector ([`PROFILE_FEATURE_NAMES`]).
//!
//! Flow records carry no DHCP options, mDNS/SSDP service names or OUI lookups, so those
//! tokens of the design (§3.2) are represented only by the use of their ports
//! (67/68, 5353, 1900, 3702).

use crate::features::{is_multicast_or_broadcast, is_public, oriented, service_key, Side};
use crate::flow::FlowRecord;
use crate::packet::proto;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Service ports with their own served/used share in the profile vector.
pub const PROFILE_PORTS: [u16; 24] = [
    23, 53, 67, 80, 102, 123, 443, 502, 554, 1883, 1900, 3702, 5353, 5683, 6668, 8080, 8443, 8554,
    8883, 9999, 20000, 44818, 47808, 49152,
];

/// Distinct peers / served services remembered per profile at most.
pub const PROFILE_SET_CAP: usize = 256;

/// Number of values in a profile vector.
pub const N_PROFILE_FEATURES: usize = 20 + 2 * (PROFILE_PORTS.len() + 1);

/// Names of the profile vector's values, in order.
pub fn profile_feature_names() -> Vec<String> {
    let mut v: Vec<String> = PROFILE_FEATURE_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    for p in PROFILE_PORTS {
        v.push(format!("served_{p}"));
    }
    v.push("served_other".into());
    for p in PROFILE_PORTS {
        v.push(format!("used_{p}"));
    }
    v.push("used_other".into());
    v
}

/// Names of the first 20 (non-port) profile values.
pub const PROFILE_FEATURE_NAMES: [&str; 20] = [
    "flows_per_hour_ln",
    "initiated_frac",
    "tcp_frac",
    "udp_frac",
    "icmp_frac",
    "bytes_out_per_hour_ln",
    "bytes_in_per_hour_ln",
    "out_byte_frac",
    "pl_mean_out_ln",
    "pl_mean_in_ln",
    "pkts_per_flow_ln",
    "flow_duration_mean_ln",
    "periodic_frac",
    "iat_cv_mean",
    "public_peer_frac",
    "mcast_frac",
    "distinct_peers_ln",
    "distinct_served_ln",
    "dns_frac",
    "tcp_fail_frac",
];

/// Accumulated traffic statistics of one device (all counters; no floats except sums).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeviceProfile {
    /// Records seen.
    pub flows: u64,
    /// Records the device originated.
    pub initiated: u64,
    /// TCP records.
    pub tcp: u64,
    /// UDP records.
    pub udp: u64,
    /// ICMP/ICMPv6 records.
    pub icmp: u64,
    /// IP bytes sent by the device.
    pub bytes_out: u64,
    /// IP bytes received by the device.
    pub bytes_in: u64,
    /// Packets sent.
    pub pkts_out: u64,
    /// Packets received.
    pub pkts_in: u64,
    /// Payload bytes sent.
    pub payload_out: u64,
    /// Payload bytes received.
    pub payload_in: u64,
    /// Sum of record durations (ns).
    pub duration_ns_sum: u64,
    /// Records with ≥ 3 packets.
    pub multi_pkt: u64,
    /// Of those, with inter-arrival cv < 0.2 (periodic).
    pub periodic: u64,
    /// Sum of inter-arrival cv over `multi_pkt` records (capped at 10 each).
    pub iat_cv_sum: f64,
    /// Records with a public peer.
    pub public_peer: u64,
    /// Records to a multicast/broadcast destination.
    pub mcast: u64,
    /// Records with DNS queries.
    pub dns: u64,
    /// TCP records the device originated that failed (no reply or rejected).
    pub tcp_fail: u64,
    /// Records per served port ([`PROFILE_PORTS`] order, then "other").
    pub served: Vec<u64>,
    /// Records per used (destination) port, same order.
    pub used: Vec<u64>,
    /// Distinct peers (exact addresses), at most [`PROFILE_SET_CAP`]. Hashed, not
    /// ordered: one probe per record instead of a tree descent (about half of a
    /// profile update was cache misses in a `BTreeSet`); only its size is used.
    pub peers: std::collections::HashSet<[u8; 16], foldhash::fast::FixedState>,
    /// Distinct served (proto, port), at most [`PROFILE_SET_CAP`].
    pub served_set: BTreeSet<(u8, u16)>,
    /// First packet time seen (ns).
    pub first_ns: Option<i64>,
    /// Last packet time seen (ns).
    pub last_ns: Option<i64>,
    /// First MAC seen for the device.
    pub mac: Option<[u8; 6]>,
}

fn port_slot(p: u16) -> usize {
    PROFILE_PORTS
        .iter()
        .position(|&q| q == p)
        .unwrap_or(PROFILE_PORTS.len())
}

fn l1p(x: f64) -> f64 {
    if x > 0.0 && x.is_finite() {
        crate::features::ln_1p(x)
    } else {
        0.0
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

impl DeviceProfile {
    /// An empty profile.
    pub fn new() -> Self {
        DeviceProfile {
            served: vec![0; PROFILE_PORTS.len() + 1],
            used: vec![0; PROFILE_PORTS.len() + 1],
            ..Default::default()
        }
    }

    /// Observation span in seconds (first to last packet seen).
    pub fn span_secs(&self) -> f64 {
        match (self.first_ns, self.last_ns) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
            _ => 0.0,
        }
    }

    /// Accounts one record in which the device is `side`.
    pub fn observe(&mut self, rec: &FlowRecord, side: Side) {
        if self.served.len() != PROFILE_PORTS.len() + 1 {
            self.served.resize(PROFILE_PORTS.len() + 1, 0);
        }
        if self.used.len() != PROFILE_PORTS.len() + 1 {
            self.used.resize(PROFILE_PORTS.len() + 1, 0);
        }
        let (out, inn, _, peer) = oriented(rec, side);
        self.flows += 1;
        match rec.proto {
            proto::TCP => self.tcp += 1,
            proto::UDP => self.udp += 1,
            proto::ICMP | proto::ICMPV6 => self.icmp += 1,
            _ => {}
        }
        self.bytes_out = self.bytes_out.saturating_add(out.ip_bytes);
        self.bytes_in = self.bytes_in.saturating_add(inn.ip_bytes);
        self.pkts_out = self.pkts_out.saturating_add(out.pkts);
        self.pkts_in = self.pkts_in.saturating_add(inn.pkts);
        self.payload_out = self.payload_out.saturating_add(out.payload_bytes);
        self.payload_in = self.payload_in.saturating_add(inn.payload_bytes);
        self.duration_ns_sum = self
            .duration_ns_sum
            .saturating_add(rec.duration().0.max(0) as u64);
        let pkts = rec.pkts();
        if pkts >= 3 {
            self.multi_pkt += 1;
            let cv = if rec.iat.mean > 0.0 {
                (rec.iat.std(pkts - 1) / rec.iat.mean).min(10.0)
            } else {
                0.0
            };
            if cv.is_finite() {
                self.iat_cv_sum += cv;
                if cv < 0.2 {
                    self.periodic += 1;
                }
            }
        }
        if is_public(&peer) {
            self.public_peer += 1;
        }
        if is_multicast_or_broadcast(&rec.resp.addr) {
            self.mcast += 1;
        }
        if rec.app.dns_queries > 0 {
            self.dns += 1;
        }
        let svc = service_key(rec);
        match side {
            Side::Orig => {
                self.initiated += 1;
                self.used[port_slot(svc.port)] += 1;
                if rec.proto == proto::TCP
                    && matches!(
                        rec.conn_state,
                        crate::flow::ConnState::S0
                            | crate::flow::ConnState::REJ
                            | crate::flow::ConnState::RSTOS0
                            | crate::flow::ConnState::SH
                    )
                {
                    self.tcp_fail += 1;
                }
            }
            Side::Resp => {
                self.served[port_slot(svc.port)] += 1;
                if self.served_set.len() < PROFILE_SET_CAP {
                    self.served_set.insert((svc.proto, svc.port));
                }
            }
        }
        if self.peers.len() < PROFILE_SET_CAP {
            self.peers.insert(peer.0);
        }
        let (f, l) = (rec.first_ts.0, rec.last_ts.0);
        self.first_ns = Some(self.first_ns.map_or(f, |x| x.min(f)));
        self.last_ns = Some(self.last_ns.map_or(l, |x| x.max(l)));
        if self.mac.is_none() {
            self.mac = match side {
                Side::Orig => rec.orig.mac,
                Side::Resp => rec.resp.mac,
            };
        }
    }

    /// The profile vector ([`profile_feature_names`] order); every value finite.
    pub fn vector(&self) -> Vec<f64> {
        let n = self.flows as f64;
        let hours = (self.span_secs() / 3600.0).max(1.0 / 60.0);
        let mut v = Vec::with_capacity(N_PROFILE_FEATURES);
        v.push(l1p(n / hours));
        v.push(ratio(self.initiated as f64, n));
        v.push(ratio(self.tcp as f64, n));
        v.push(ratio(self.udp as f64, n));
        v.push(ratio(self.icmp as f64, n));
        v.push(l1p(self.bytes_out as f64 / hours));
        v.push(l1p(self.bytes_in as f64 / hours));
        v.push(ratio(
            self.bytes_out as f64,
            self.bytes_out as f64 + self.bytes_in as f64,
        ));
        v.push(l1p(
            self.payload_out as f64 / (self.pkts_out as f64).max(1.0)
        ));
        v.push(l1p(self.payload_in as f64 / (self.pkts_in as f64).max(1.0)));
        v.push(l1p((self.pkts_out + self.pkts_in) as f64 / n.max(1.0)));
        v.push(l1p(self.duration_ns_sum as f64 / 1e6 / n.max(1.0)));
        v.push(ratio(self.periodic as f64, self.multi_pkt as f64));
        let cv = self.iat_cv_sum / (self.multi_pkt as f64).max(1.0);
        v.push(if cv.is_finite() {
            cv.clamp(0.0, 10.0)
        } else {
            0.0
        });
        v.push(ratio(self.public_peer as f64, n));
        v.push(ratio(self.mcast as f64, n));
        v.push(l1p(self.peers.len() as f64));
        v.push(l1p(self.served_set.len() as f64));
        v.push(ratio(self.dns as f64, n));
        v.push(ratio(self.tcp_fail as f64, self.initiated as f64));
        for i in 0..=PROFILE_PORTS.len() {
            v.push(ratio(self.served.get(i).copied().unwrap_or(0) as f64, n));
        }
        for i in 0..=PROFILE_PORTS.len() {
            v.push(ratio(self.used.get(i).copied().unwrap_or(0) as f64, n));
        }
        v
    }
}
