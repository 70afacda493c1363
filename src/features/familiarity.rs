//! F26/F27: service-port and peer familiarity, lookup tables of flow counts learned from
//! the training window only (building them on test-time data is leakage). Everything is
//! kept in `BTreeMap`s and serialised as sorted sequences of pairs, so the serialised
//! form is deterministic and independent of insertion order.

use super::{is_public, oriented, Side};
use crate::device::DeviceClass;
use crate::flow::key::is_icmp as key_is_icmp;
use crate::flow::FlowRecord;
use crate::packet::Addr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// The service a flow uses: (IP protocol, service port). The service port is the
/// responder's port for TCP/UDP, the originator's first ICMP type for ICMP/ICMPv6, and 0
/// for other protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceKey {
    /// IP protocol number.
    pub proto: u8,
    /// Service port (or ICMP type).
    pub port: u16,
}

/// The service key of a record.
pub fn service_key(rec: &FlowRecord) -> ServiceKey {
    let port = if key_is_icmp(rec.proto) {
        rec.icmp.map_or(0, |(ty, _)| u16::from(ty))
    } else {
        rec.resp.port
    };
    ServiceKey {
        proto: rec.proto,
        port,
    }
}

/// A peer as F27 counts it: the exact address for a local (non-public) peer, the /24
/// (IPv4) or /48 (IPv6) network for a public one. `prefix` is in the 128-bit mapped
/// address space (IPv4 /24 = 120, exact = 128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerKey {
    /// Address with the host bits beyond `prefix` cleared.
    pub net: [u8; 16],
    /// Prefix length in the 128-bit address space.
    pub prefix: u8,
}

/// The peer key of an address.
pub fn peer_key(a: &Addr) -> PeerKey {
    let mut net = a.0;
    if !is_public(a) {
        return PeerKey { net, prefix: 128 };
    }
    if a.is_v4() {
        net[15] = 0;
        PeerKey { net, prefix: 120 }
    } else {
        for b in &mut net[6..] {
            *b = 0;
        }
        PeerKey { net, prefix: 48 }
    }
}

/// A count table serialised as a sorted sequence of `(key, count)` pairs (works with
/// non-string keys in every format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts<K: Ord>(pub BTreeMap<K, u64>);

impl<K: Ord> Default for Counts<K> {
    fn default() -> Self {
        Counts(BTreeMap::new())
    }
}

impl<K: Ord + Serialize> Serialize for Counts<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de, K: Ord + Deserialize<'de>> Deserialize<'de> for Counts<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<(K, u64)> = Vec::deserialize(d)?;
        Ok(Counts(v.into_iter().collect()))
    }
}

impl<K: Ord> Counts<K> {
    fn add(&mut self, k: K) {
        let c = self.0.entry(k).or_insert(0);
        *c = c.saturating_add(1);
    }
    fn get(&self, k: &K) -> u64 {
        self.0.get(k).copied().unwrap_or(0)
    }
}

/// Flow counts of the training window: per class and service (F26), per device and peer
/// and per class and peer (F27). Unseen ⇒ count 0 ⇒ feature 0.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FamiliarityTables {
    /// Per class: flows per (transport, service port).
    pub services: BTreeMap<DeviceClass, Counts<ServiceKey>>,
    /// Per device id: flows per peer.
    pub device_peers: BTreeMap<String, Counts<PeerKey>>,
    /// Per class: flows per peer (fallback for devices without their own table).
    pub class_peers: BTreeMap<DeviceClass, Counts<PeerKey>>,
    /// Flows learned.
    pub flows: u64,
}

impl FamiliarityTables {
    /// Empty tables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one training-window flow of `device_id` (class `class`) seen from `side`.
    pub fn learn(&mut self, class: DeviceClass, device_id: &str, rec: &FlowRecord, side: Side) {
        let (_, _, _, peer) = oriented(rec, side);
        let pk = peer_key(&peer);
        self.services
            .entry(class)
            .or_default()
            .add(service_key(rec));
        match self.device_peers.get_mut(device_id) {
            Some(t) => t.add(pk),
            None => {
                let mut t = Counts::default();
                t.add(pk);
                self.device_peers.insert(device_id.to_owned(), t);
            }
        }
        self.class_peers.entry(class).or_default().add(pk);
        self.flows = self.flows.saturating_add(1);
    }

    /// Training flows of `class` with the record's service key.
    pub fn service_count(&self, class: DeviceClass, rec: &FlowRecord) -> u64 {
        self.services
            .get(&class)
            .map_or(0, |t| t.get(&service_key(rec)))
    }

    /// Training flows of the device with the record's peer; if the device has no table of
    /// its own (not seen in training), the class's count.
    pub fn peer_count(
        &self,
        class: DeviceClass,
        device_id: &str,
        rec: &FlowRecord,
        side: Side,
    ) -> u64 {
        let (_, _, _, peer) = oriented(rec, side);
        let pk = peer_key(&peer);
        match self.device_peers.get(device_id) {
            Some(t) => t.get(&pk),
            None => self.class_peers.get(&class).map_or(0, |t| t.get(&pk)),
        }
    }

    /// F26 = ln(1 + [`FamiliarityTables::service_count`]).
    pub fn service_familiarity(&self, class: DeviceClass, rec: &FlowRecord) -> f64 {
        super::ln_1p(self.service_count(class, rec) as f64)
    }

    /// F27 = ln(1 + [`FamiliarityTables::peer_count`]).
    pub fn peer_familiarity(
        &self,
        class: DeviceClass,
        device_id: &str,
        rec: &FlowRecord,
        side: Side,
    ) -> f64 {
        super::ln_1p(self.peer_count(class, device_id, rec, side) as f64)
    }
}

/// The peers (networks, as [`PeerKey`]s) any device of the training window talked to:
/// the union of [`FamiliarityTables::class_peers`], indexed once. The new-public-peer
/// rule asks it for a device whose class is unknown, which has no class table of its own.
#[derive(Debug, Clone, Default)]
pub struct SitePeers(foldhash::HashSet<PeerKey>);

impl SitePeers {
    /// The site's peers in `t`.
    pub fn of(t: &FamiliarityTables) -> SitePeers {
        SitePeers(
            t.class_peers
                .values()
                .flat_map(|c| c.0.iter().filter(|&(_, &n)| n > 0).map(|(k, _)| *k))
                .collect(),
        )
    }

    /// Whether the record's peer (seen from `side`) is one of them.
    pub fn knows(&self, rec: &FlowRecord, side: Side) -> bool {
        let (_, _, _, peer) = oriented(rec, side);
        self.0.contains(&peer_key(&peer))
    }
}
