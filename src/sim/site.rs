//! The simulated site: monitored devices per class, infrastructure peers, Internet
//! hosts, the simulated clock's epoch and the diurnal load profile.
//!
//! Addressing: IoT VLAN 10 = 192.168.10.0/24 (gateway/DNS/NTP .1, MQTT broker .2, plug
//! controller .3, NVR .5, cameras .21+, thermostats .31+, plugs .41+, hubs .51+); OT VLAN
//! 20 = 10.20.0.0/24 (gateway/NTP .1, HMI .10, engineering workstation .20, PLCs .31+).
//! MACs are `02:00:5e:<10|20>:00:<last octet>`. Internet peers live in the documentation
//! ranges 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24 and appear on the wire with
//! the gateway's MAC.

use super::engine::{Out, Slot, Stream, Tag};
use super::net::{mac_for, Ep, Host};
use super::rng::SimRng;
use std::net::Ipv4Addr;

/// 2026-01-05T00:00:00Z (a Monday) in µs since the Unix epoch: the start of day 0.
pub const EPOCH_US: u64 = 1_767_571_200_000_000;
/// One second in µs.
pub const SEC: u64 = 1_000_000;
/// One millisecond in µs.
pub const MS: u64 = 1_000;
/// One day in µs.
pub const DAY: u64 = 86_400 * SEC;

/// IoT VLAN id.
pub const IOT_VLAN: u16 = 10;
/// OT VLAN id.
pub const OT_VLAN: u16 = 20;

/// Device classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// IP camera.
    Camera,
    /// Thermostat / environmental sensor.
    Thermostat,
    /// Programmable logic controller.
    Plc,
    /// Smart plug.
    Plug,
    /// Home/building automation hub.
    Hub,
}

impl Class {
    /// All classes in inventory order.
    pub const ALL: [Class; 5] = [
        Class::Camera,
        Class::Thermostat,
        Class::Plc,
        Class::Plug,
        Class::Hub,
    ];

    /// Inventory name of the class.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Camera => "camera",
            Class::Thermostat => "thermostat",
            Class::Plc => "plc",
            Class::Plug => "plug",
            Class::Hub => "hub",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Class::Camera => "cam",
            Class::Thermostat => "thermo",
            Class::Plc => "plc",
            Class::Plug => "plug",
            Class::Hub => "hub",
        }
    }

    fn base_octet(self) -> u8 {
        match self {
            Class::Camera => 21,
            Class::Thermostat => 31,
            Class::Plc => 31,
            Class::Plug => 41,
            Class::Hub => 51,
        }
    }
}

/// A monitored device.
#[derive(Debug, Clone)]
pub struct Device {
    /// Index in the device table (used in packet tags).
    pub id: u16,
    /// Class.
    pub class: Class,
    /// The host (name = device id).
    pub host: Host,
}

/// Infrastructure and Internet peers.
#[derive(Debug, Clone)]
pub struct Infra {
    /// IoT gateway (DNS, NTP) 192.168.10.1.
    pub iot_gw: Host,
    /// OT gateway (NTP) 10.20.0.1.
    pub ot_gw: Host,
    /// MQTT broker 192.168.10.2.
    pub broker: Host,
    /// Plug controller 192.168.10.3 (polls plugs when no hub exists).
    pub controller: Host,
    /// NVR 192.168.10.5.
    pub nvr: Host,
    /// HMI 10.20.0.10 (Windows, TTL 128).
    pub hmi: Host,
    /// Engineering workstation 10.20.0.20 (Windows, TTL 128).
    pub ews: Host,
    /// LAN attacker 192.168.10.66.
    pub lan_attacker: Host,
    /// OT attacker 10.20.0.66.
    pub ot_attacker: Host,
}

fn host(name: &str, seg: u8, net: [u8; 3], last: u8, ttl: u8, vlan: Option<u16>) -> Host {
    Host {
        name: name.to_string(),
        mac: mac_for(seg, last),
        ip: Ipv4Addr::new(net[0], net[1], net[2], last),
        ttl,
        vlan,
    }
}

/// The whole site.
#[derive(Debug, Clone)]
pub struct Site {
    /// Monitored devices, in inventory order.
    pub devices: Vec<Device>,
    /// Infrastructure peers.
    pub infra: Infra,
    /// Whether frames carry 802.1Q tags.
    pub vlans: bool,
}

/// Well-known Internet peers.
pub mod inet {
    use std::net::Ipv4Addr;
    /// Camera vendor cloud.
    pub const CAM_CLOUD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    /// Thermostat vendor cloud.
    pub const THERMO_CLOUD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
    /// Plug vendor cloud.
    pub const PLUG_CLOUD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 30);
    /// Hub vendor cloud.
    pub const HUB_CLOUD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 40);
    /// Public NTP pool server.
    pub const NTP_POOL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 123);
    /// Mirai C2 server.
    pub const MIRAI_CNC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    /// Public resolver Mirai uses.
    pub const GOOGLE_DNS: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);
    /// Beaconing C2 host.
    pub const BEACON_C2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);
    /// Exfiltration drop host.
    pub const EXFIL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);
    /// External botnet member (brute force, floods).
    pub const BOT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 99);
}

impl Site {
    /// A site with `counts[c]` devices of each class in [`Class::ALL`] order.
    pub fn new(counts: [usize; 5], vlans: bool) -> Self {
        let iot = if vlans { Some(IOT_VLAN) } else { None };
        let ot = if vlans { Some(OT_VLAN) } else { None };
        let mut devices = Vec::new();
        for (ci, class) in Class::ALL.iter().enumerate() {
            for i in 0..counts[ci].min(9) {
                let last = class.base_octet() + i as u8;
                let name = format!("{}-{:02}", class.prefix(), i + 1);
                let h = if *class == Class::Plc {
                    host(&name, 0x20, [10, 20, 0], last, 64, ot)
                } else {
                    host(&name, 0x10, [192, 168, 10], last, 64, iot)
                };
                devices.push(Device {
                    id: devices.len() as u16,
                    class: *class,
                    host: h,
                });
            }
        }
        let infra = Infra {
            iot_gw: host("gw-iot", 0x10, [192, 168, 10], 1, 64, iot),
            ot_gw: host("gw-ot", 0x20, [10, 20, 0], 1, 64, ot),
            broker: host("broker", 0x10, [192, 168, 10], 2, 64, iot),
            controller: host("controller", 0x10, [192, 168, 10], 3, 64, iot),
            nvr: host("nvr", 0x10, [192, 168, 10], 5, 64, iot),
            hmi: host("hmi", 0x20, [10, 20, 0], 10, 128, ot),
            ews: host("ews", 0x20, [10, 20, 0], 20, 128, ot),
            lan_attacker: host("attacker", 0x10, [192, 168, 10], 66, 64, iot),
            ot_attacker: host("ot-attacker", 0x20, [10, 20, 0], 66, 128, ot),
        };
        Site {
            devices,
            infra,
            vlans,
        }
    }

    /// Devices of one class.
    pub fn of(&self, class: Class) -> Vec<&Device> {
        self.devices.iter().filter(|d| d.class == class).collect()
    }

    /// The gateway of `local`'s segment.
    pub fn gateway(&self, local: &Host) -> &Host {
        if local.ip.octets()[0] == 10 {
            &self.infra.ot_gw
        } else {
            &self.infra.iot_gw
        }
    }

    /// An Internet host as seen from `local`'s segment (`hops` routers away, initial TTL
    /// `ttl0`).
    pub fn inet(&self, local: &Host, ip: Ipv4Addr, ttl0: u8, hops: u8) -> Ep {
        Ep {
            mac: self.gateway(local).mac,
            ip,
            ttl: ttl0.saturating_sub(hops),
        }
    }

    /// A device by name.
    pub fn device(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.host.name == name)
    }
}

/// Time-of-day facts of a simulated instant.
pub fn hour_of_day(t_us: u64) -> f64 {
    ((t_us % DAY) as f64) / (3600.0 * SEC as f64)
}

/// Diurnal activity factor in [0.2, 1.0]: lowest at 04:00, highest at 16:00.
pub fn diurnal(t_us: u64) -> f64 {
    let h = hour_of_day(t_us);
    0.6 - 0.4 * (2.0 * std::f64::consts::PI * (h - 4.0) / 24.0).cos()
}

/// Poisson arrivals in `[start, end)` with peak rate `per_hour`, thinned by the diurnal
/// profile.
pub fn diurnal_poisson(rng: &mut SimRng, start: u64, end: u64, per_hour: f64) -> Vec<u64> {
    let mut v = Vec::new();
    if per_hour <= 0.0 {
        return v;
    }
    let mean = 3600.0 * SEC as f64 / per_hour;
    let mut t = start;
    loop {
        t += rng.exp(mean);
        if t >= end {
            break;
        }
        if rng.chance(diurnal(t)) {
            v.push(t);
        }
    }
    v
}

/// Run parameters shared by every stream.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Global seed.
    pub seed: u64,
    /// Salt mixed into every stream seed (the scenario's first simulated day), so later
    /// days with the same seed do not replay earlier days' randomness.
    pub salt: u64,
    /// First instant, µs since the Unix epoch.
    pub start: u64,
    /// End of the capture (exclusive).
    pub end: u64,
    /// Camera main-stream bitrate by day, kbit/s (night = 1/4).
    pub video_kbps: u32,
}

impl Ctx {
    /// The PRNG of stream `id`.
    pub fn rng(&self, id: &str) -> SimRng {
        SimRng::for_stream(self.seed, self.salt, id)
    }
}

/// Collects the streams of a scenario.
pub struct Streams {
    /// The slots, in creation order (= stream index = tie-break order).
    pub slots: Vec<Slot>,
}

impl Streams {
    /// No streams yet.
    pub fn new() -> Self {
        Streams { slots: Vec::new() }
    }

    /// Adds stream `s` named `name` (group = class or attack for the summary); returns
    /// its output buffer for further configuration.
    pub fn add(
        &mut self,
        name: &str,
        group: &str,
        tag: Tag,
        ipid: u16,
        s: impl Stream + 'static,
    ) -> &mut Out {
        let idx = self.slots.len() as u32;
        self.slots.push(Slot {
            name: name.to_string(),
            group: group.to_string(),
            stream: Box::new(s),
            out: Out::new(idx, tag, ipid),
        });
        let last = self.slots.len() - 1;
        &mut self.slots[last].out
    }
}

impl Default for Streams {
    fn default() -> Self {
        Self::new()
    }
}
