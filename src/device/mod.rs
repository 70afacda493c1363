//! Device classes: the inventory file, automatic class inference for unlisted devices, and
//! the rule that decides which endpoints of a flow are monitored devices.
//!
//! The rule ([`DeviceResolver::monitored`], see `docs/devices.md`), per endpoint:
//! 1. a multicast, broadcast or unspecified address is never a device;
//! 2. an inventory hit (exact MAC, else exact IP, else longest CIDR) is a device of the
//!    listed class (`class_source = inventory`, confidence 1); its id is the entry's
//!    `name`, or `name@ip` when only a CIDR rule matched (each host of a range is its own
//!    device);
//! 3. any other non-public (local) address is an unlisted device, id = its IP address: a
//!    [`DeviceProfile`] is accumulated for it and, once it has enough traffic, its class
//!    is inferred once and kept (`inferred` with the vote share, or `unknown` when the
//!    model abstains or there is no model);
//! 4. public addresses not in the inventory are peers, never devices.
//!
//! An endpoint is monitored (its side of the flow is scored) when it is a device whose
//! class is an IoT class, or whose class is `unknown` and [`ResolverConfig::score_unknown`]
//! is set (the pooled model). A flow between two monitored devices is scored once per side.

mod infer;
mod inventory;
mod profile;
#[cfg(test)]
mod tests;

pub use infer::{
    ClassInference, FlatNode, FlatTree, InferenceConfig, Prediction, INFERENCE_FORMAT_VERSION,
};
pub use inventory::{format_mac, parse_mac, Cidr, Inventory, InventoryEntry};
pub use profile::{
    profile_feature_names, DeviceProfile, N_PROFILE_FEATURES, PROFILE_FEATURE_NAMES, PROFILE_PORTS,
    PROFILE_SET_CAP,
};

use crate::features::{is_multicast_or_broadcast, is_public, Side};
use crate::flow::{Endpoint, FlowRecord};
use crate::packet::Addr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Device classes, each with its own model; `Unknown` is scored by the pooled model.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    /// IP camera / NVR.
    Camera,
    /// Thermostat / HVAC controller.
    Thermostat,
    /// PLC / OT controller.
    Plc,
    /// Smart plug / switch.
    Plug,
    /// Smart-home hub / gateway.
    Hub,
    /// Not known (abstained inference, no model, or listed as unknown).
    #[default]
    Unknown,
}

impl DeviceClass {
    /// All classes, in code order.
    pub const ALL: [DeviceClass; 6] = [
        DeviceClass::Camera,
        DeviceClass::Thermostat,
        DeviceClass::Plc,
        DeviceClass::Plug,
        DeviceClass::Hub,
        DeviceClass::Unknown,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Camera => "camera",
            DeviceClass::Thermostat => "thermostat",
            DeviceClass::Plc => "plc",
            DeviceClass::Plug => "plug",
            DeviceClass::Hub => "hub",
            DeviceClass::Unknown => "unknown",
        }
    }

    /// Small stable code (index in [`DeviceClass::ALL`]).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The class of a code.
    pub fn from_code(c: u8) -> Option<DeviceClass> {
        DeviceClass::ALL.get(usize::from(c)).copied()
    }

    /// True for every class except `Unknown`.
    pub fn is_iot(self) -> bool {
        self != DeviceClass::Unknown
    }
}

impl std::fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DeviceClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DeviceClass::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown class '{s}' (expected one of camera, thermostat, plc, plug, hub, unknown)"
                )
            })
    }
}

/// Where a device's class came from (events' `class_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassSource {
    /// Listed in the inventory file.
    Inventory,
    /// Inferred from traffic with a vote share at or above the threshold.
    Inferred,
    /// Not listed and not (yet) inferred.
    Unknown,
}

impl ClassSource {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClassSource::Inventory => "inventory",
            ClassSource::Inferred => "inferred",
            ClassSource::Unknown => "unknown",
        }
    }
}

/// A device's class with its source and confidence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassAssignment {
    /// The class used for scoring.
    pub class: DeviceClass,
    /// Where it came from.
    pub source: ClassSource,
    /// 1 for inventory; the winning class probability for inferred and abstained inference; 0
    /// before inference ran.
    pub confidence: f32,
}

/// A resolved device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// Device id (inventory name, `name@ip` for a CIDR hit, or the IP address).
    pub id: Arc<str>,
    /// Its class assignment.
    pub assignment: ClassAssignment,
}

/// Errors of the device module; each names the file and entry where there is one.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The inventory could not be read.
    #[error("{path}: cannot read inventory: {source}")]
    Read {
        /// Inventory path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Invalid TOML or an unknown key.
    #[error("{path}: invalid inventory: {detail}")]
    Parse {
        /// Inventory path.
        path: String,
        /// The parser's message (names the key and line).
        detail: String,
    },
    /// A `[[device]]` entry is invalid.
    #[error("{path}: [[device]] entry #{index} (name '{name}'): {detail}")]
    Entry {
        /// Inventory path.
        path: String,
        /// 1-based entry number.
        index: usize,
        /// The entry's name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// Class-inference training or model validation failed.
    #[error("class inference: {detail}")]
    Inference {
        /// What failed.
        detail: String,
    },
}

/// Settings of the resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Score devices whose class is `unknown` (with the pooled model). Default true.
    pub score_unknown: bool,
    /// Unlisted devices profiled at most (memory cap); later ones stay `unknown`
    /// without a profile. Default 65,536.
    pub max_profiles: usize,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            score_unknown: true,
            max_profiles: 65_536,
        }
    }
}

#[derive(Debug, Clone)]
struct Unlisted {
    id: Arc<str>,
    profile: DeviceProfile,
    locked: Option<ClassAssignment>,
}

/// How one side of a record stands after [`DeviceResolver::observe_side`].
enum Observed<'a> {
    /// Not a device address, or a public one that no inventory entry names:
    /// [`DeviceResolver::resolve`] gives `None`.
    NotDevice,
    /// Listed in the inventory, or unlisted with the profile map full: no profile was
    /// touched, resolve it with [`DeviceResolver::resolve`].
    Other,
    /// An unlisted device, its profile updated.
    Unlisted(&'a Unlisted),
}

/// Multicast, broadcast and unspecified addresses are never devices.
fn is_device_addr(a: &Addr) -> bool {
    let unspecified = a.0 == [0; 16] || *a == Addr::v4([0, 0, 0, 0]);
    !(unspecified || is_multicast_or_broadcast(a))
}

const NOT_YET: ClassAssignment = ClassAssignment {
    class: DeviceClass::Unknown,
    source: ClassSource::Unknown,
    confidence: 0.0,
};

/// Resolves flow endpoints to devices (inventory, then inference) and keeps the profiles
/// of unlisted devices. Deterministic: depends only on the records passed, in order.
#[derive(Debug, Clone)]
pub struct DeviceResolver {
    inventory: Inventory,
    inference: Option<ClassInference>,
    cfg: ResolverConfig,
    listed: BTreeMap<(Option<[u8; 6]>, Addr), Arc<str>>,
    /// Hashed (looked up once per record side); never iterated in an order that
    /// reaches output ([`DeviceResolver::profiles`] sorts).
    unlisted: foldhash::HashMap<Addr, Unlisted>,
}

impl DeviceResolver {
    /// A resolver over an inventory and an optional inference model.
    pub fn new(
        inventory: Inventory,
        inference: Option<ClassInference>,
        cfg: ResolverConfig,
    ) -> Self {
        DeviceResolver {
            inventory,
            inference,
            cfg,
            listed: BTreeMap::new(),
            unlisted: Default::default(),
        }
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The profile of an unlisted device whose class is not locked yet (inference drops
    /// a profile once it has locked the device's class from it).
    pub fn profile(&self, addr: &Addr) -> Option<&DeviceProfile> {
        self.unlisted
            .get(addr)
            .filter(|u| u.locked.is_none())
            .map(|u| &u.profile)
    }

    /// Profiles of the unlisted devices whose class is not locked, by address.
    pub fn profiles(&self) -> impl Iterator<Item = (&Addr, &DeviceProfile)> {
        let mut all: Vec<(&Addr, &DeviceProfile)> = self
            .unlisted
            .iter()
            .filter(|(_, u)| u.locked.is_none())
            .map(|(a, u)| (a, &u.profile))
            .collect();
        all.sort_unstable_by_key(|(a, _)| **a);
        all.into_iter()
    }

    /// Resolves one endpoint without updating any profile (see the module rule).
    pub fn resolve(&mut self, ep: &Endpoint) -> Option<DeviceInfo> {
        if !is_device_addr(&ep.addr) {
            return None;
        }
        if let Some(e) = self.inventory.lookup(ep.mac, ep.addr) {
            let exact = ep.mac.is_some_and(|m| e.mac == Some(m)) || e.ip == Some(ep.addr);
            let key = (if exact { ep.mac } else { None }, ep.addr);
            let id = match self.listed.get(&key) {
                Some(id) => id.clone(),
                None => {
                    let id: Arc<str> = if exact {
                        Arc::from(e.name.as_str())
                    } else {
                        Arc::from(format!("{}@{}", e.name, ep.addr.to_ip()))
                    };
                    // A wide CIDR entry can match any number of addresses: the cache of
                    // ids stays bounded (beyond it an id is built for each lookup).
                    if self.listed.len() < self.cfg.max_profiles {
                        self.listed.insert(key, id.clone());
                    }
                    id
                }
            };
            return Some(DeviceInfo {
                id,
                assignment: ClassAssignment {
                    class: e.class,
                    source: ClassSource::Inventory,
                    confidence: 1.0,
                },
            });
        }
        if is_public(&ep.addr) {
            return None;
        }
        match self.unlisted.get(&ep.addr) {
            Some(u) => Some(DeviceInfo {
                id: u.id.clone(),
                assignment: u.locked.unwrap_or(NOT_YET),
            }),
            None => Some(DeviceInfo {
                id: Arc::from(ep.addr.to_ip().to_string()),
                assignment: NOT_YET,
            }),
        }
    }

    /// Accounts a record in the profiles of its unlisted local endpoints and, for a
    /// device whose profile just became large enough (inference `min_flows` and
    /// `min_span_secs`), runs the inference once and locks the result.
    pub fn observe(&mut self, rec: &FlowRecord) {
        for (side, ep) in [(Side::Orig, &rec.orig), (Side::Resp, &rec.resp)] {
            self.observe_side(rec, side, ep);
        }
    }

    /// Observes one side of `rec` (the body of [`DeviceResolver::observe`]) and says
    /// how that side resolves afterwards.
    fn observe_side(&mut self, rec: &FlowRecord, side: Side, ep: &Endpoint) -> Observed<'_> {
        let a = ep.addr;
        if !is_device_addr(&a) {
            return Observed::NotDevice;
        }
        if self.inventory.lookup(ep.mac, a).is_some() {
            return Observed::Other;
        }
        if is_public(&a) {
            return Observed::NotDevice;
        }
        let full = self.unlisted.len() >= self.cfg.max_profiles;
        let u = match self.unlisted.entry(a) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(_) if full => return Observed::Other,
            std::collections::hash_map::Entry::Vacant(v) => v.insert(Unlisted {
                id: Arc::from(a.to_ip().to_string()),
                profile: DeviceProfile::new(),
                locked: None,
            }),
        };
        // The class is locked once: from then on the profile would only feed a
        // decision already made, so it is no longer kept up (a third of the
        // detector's per-record device work on a busy network).
        if u.locked.is_none() {
            u.profile.observe(rec, side);
            if let Some(m) = &self.inference {
                if u.profile.flows >= m.config.min_flows
                    && u.profile.span_secs() >= m.config.min_span_secs
                {
                    let (class, confidence) = m.predict(&u.profile);
                    u.locked = Some(ClassAssignment {
                        class,
                        source: if class.is_iot() {
                            ClassSource::Inferred
                        } else {
                            ClassSource::Unknown
                        },
                        confidence,
                    });
                    // Its only use is over: free its peer and service sets (up to
                    // ~7 KB per device).
                    u.profile = DeviceProfile::default();
                }
            }
        }
        Observed::Unlisted(u)
    }

    /// Observes the record ([`DeviceResolver::observe`]) and returns its monitored sides,
    /// originator first (see the module rule).
    pub fn monitored(&mut self, rec: &FlowRecord) -> [Option<(Side, DeviceInfo)>; 2] {
        if rec.orig.addr == rec.resp.addr {
            // Both sides are one device: both must see the profile after both updates.
            self.observe(rec);
            return [(Side::Orig, rec.orig), (Side::Resp, rec.resp)]
                .map(|(side, ep)| self.monitored_side(side, &ep));
        }
        // Distinct addresses: each side's update touches only its own entry, so a side
        // is observed and resolved in one pass (one inventory and one map lookup instead
        // of two each), with the same result as `observe` then `resolve`.
        [(Side::Orig, rec.orig), (Side::Resp, rec.resp)].map(|(side, ep)| {
            let d = match self.observe_side(rec, side, &ep) {
                Observed::NotDevice => return None,
                Observed::Other => return self.monitored_side(side, &ep),
                Observed::Unlisted(u) => DeviceInfo {
                    id: u.id.clone(),
                    assignment: u.locked.unwrap_or(NOT_YET),
                },
            };
            (d.assignment.class.is_iot() || self.cfg.score_unknown).then_some((side, d))
        })
    }

    /// [`DeviceResolver::resolve`] of one side, kept when the device is scored.
    fn monitored_side(&mut self, side: Side, ep: &Endpoint) -> Option<(Side, DeviceInfo)> {
        self.resolve(ep)
            .filter(|d| d.assignment.class.is_iot() || self.cfg.score_unknown)
            .map(|d| (side, d))
    }
}
