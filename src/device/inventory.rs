//! The device inventory file (TOML): which addresses are which devices of which class.
//!
//! ```toml
//! [[device]]
//! name = "cam-01"            # device id
//! class = "camera"
//! mac = "02:00:5e:10:00:15"  # optional
//! ip = "192.168.10.21"       # optional
//! cidr = "192.168.10.0/24"   # optional (a rule for a range)
//! ```
//!
//! Lookup precedence: exact MAC, then exact IP, then the longest CIDR prefix.

use super::{DeviceClass, DeviceError};
use crate::packet::Addr;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    device: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    class: String,
    mac: Option<String>,
    ip: Option<String>,
    cidr: Option<String>,
}

/// An IP network: address with host bits clear and prefix length in the 128-bit mapped
/// address space (IPv4 /24 = 120).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// Network address.
    pub net: Addr,
    /// Prefix length, 0..=128 (IPv4 prefixes are stored + 96).
    pub prefix: u8,
}

impl Cidr {
    /// Whether `a` is inside this network.
    pub fn contains(&self, a: &Addr) -> bool {
        mask(a, self.prefix) == self.net
    }

    /// Parses `a.b.c.d/n` or `x::y/n`; host bits must be clear.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("CIDR '{s}' has no '/prefix'"))?;
        let ip: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("CIDR '{s}': '{ip}' is not an IP address"))?;
        let len: u8 = len
            .trim()
            .parse()
            .map_err(|_| format!("CIDR '{s}': prefix '{len}' is not a number"))?;
        let (max, off) = if ip.is_ipv4() { (32, 96) } else { (128, 0) };
        if len > max {
            return Err(format!("CIDR '{s}': prefix /{len} is longer than /{max}"));
        }
        let addr = Addr::from(ip);
        let prefix = len + off;
        let net = mask(&addr, prefix);
        if net != addr {
            return Err(format!(
                "CIDR '{s}' has host bits set (did you mean {}/{len}?)",
                net.to_ip()
            ));
        }
        Ok(Cidr { net, prefix })
    }
}

fn mask(a: &Addr, prefix: u8) -> Addr {
    let mut out = a.0;
    for (i, b) in out.iter_mut().enumerate() {
        let bit = (i as u32) * 8;
        let p = u32::from(prefix);
        if p >= bit + 8 {
            continue;
        }
        if p <= bit {
            *b = 0;
        } else {
            *b &= 0xffu8 << (8 - (p - bit));
        }
    }
    Addr(out)
}

/// Parses a MAC address `aa:bb:cc:dd:ee:ff` (or with `-` separators).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.trim().split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(format!("MAC '{s}' does not have 6 octets"));
    }
    let mut m = [0u8; 6];
    for (o, p) in m.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return Err(format!("MAC '{s}': octet '{p}' is not two hex digits"));
        }
        *o = u8::from_str_radix(p, 16)
            .map_err(|_| format!("MAC '{s}': octet '{p}' is not two hex digits"))?;
    }
    Ok(m)
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// One `[[device]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryEntry {
    /// Device id.
    pub name: String,
    /// Device class.
    pub class: DeviceClass,
    /// Exact MAC, if given.
    pub mac: Option<[u8; 6]>,
    /// Exact IP, if given.
    pub ip: Option<Addr>,
    /// Range rule, if given.
    pub cidr: Option<Cidr>,
}

/// A loaded inventory with its lookup indexes.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    entries: Vec<InventoryEntry>,
    by_mac: BTreeMap<[u8; 6], usize>,
    by_ip: BTreeMap<Addr, usize>,
    /// (prefix, index), longest prefix first, then file order.
    cidrs: Vec<(u8, usize)>,
}

impl Inventory {
    /// An empty inventory (every device is unlisted).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Reads and validates an inventory file.
    pub fn load(path: &Path) -> Result<Inventory, DeviceError> {
        let text = std::fs::read_to_string(path).map_err(|source| DeviceError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses inventory text; `path` names the source in errors.
    pub fn parse(text: &str, path: &str) -> Result<Inventory, DeviceError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| DeviceError::Parse {
            path: path.to_owned(),
            detail: e.to_string().trim().to_owned(),
        })?;
        let mut inv = Inventory::default();
        for (i, r) in raw.device.into_iter().enumerate() {
            let err = |detail: String| DeviceError::Entry {
                path: path.to_owned(),
                index: i + 1,
                name: r.name.clone(),
                detail,
            };
            if r.name.trim().is_empty() {
                return Err(err("name is empty".into()));
            }
            let class: DeviceClass = r.class.parse().map_err(&err)?;
            let mac = r.mac.as_deref().map(parse_mac).transpose().map_err(&err)?;
            let ip =
                r.ip.as_deref()
                    .map(|s| {
                        s.trim()
                            .parse::<IpAddr>()
                            .map(Addr::from)
                            .map_err(|_| format!("ip '{s}' is not an IP address"))
                    })
                    .transpose()
                    .map_err(&err)?;
            let cidr = r
                .cidr
                .as_deref()
                .map(Cidr::parse)
                .transpose()
                .map_err(&err)?;
            if mac.is_none() && ip.is_none() && cidr.is_none() {
                return Err(err("needs at least one of mac, ip, cidr".into()));
            }
            let idx = inv.entries.len();
            if let Some(m) = mac {
                if let Some(&j) = inv.by_mac.get(&m) {
                    return Err(err(format!(
                        "mac {} is already given to entry #{} '{}'",
                        format_mac(&m),
                        j + 1,
                        inv.entries[j].name
                    )));
                }
                inv.by_mac.insert(m, idx);
            }
            if let Some(a) = ip {
                if let Some(&j) = inv.by_ip.get(&a) {
                    return Err(err(format!(
                        "ip {} is already given to entry #{} '{}'",
                        a.to_ip(),
                        j + 1,
                        inv.entries[j].name
                    )));
                }
                inv.by_ip.insert(a, idx);
            }
            if let Some(c) = cidr {
                if let Some(&(_, j)) = inv
                    .cidrs
                    .iter()
                    .find(|(_, j)| inv.entries[*j].cidr == Some(c))
                {
                    return Err(err(format!(
                        "cidr {}/{} is already given to entry #{} '{}'",
                        c.net.to_ip(),
                        if c.net.is_v4() {
                            c.prefix - 96
                        } else {
                            c.prefix
                        },
                        j + 1,
                        inv.entries[j].name
                    )));
                }
                inv.cidrs.push((c.prefix, idx));
            }
            inv.entries.push(InventoryEntry {
                name: r.name,
                class,
                mac,
                ip,
                cidr,
            });
        }
        // Longest prefix first; stable, so file order breaks ties (ties are disjoint or
        // identical networks, and identical ones were rejected above).
        inv.cidrs.sort_by_key(|c| std::cmp::Reverse(c.0));
        Ok(inv)
    }

    /// Entries in file order.
    pub fn entries(&self) -> &[InventoryEntry] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for an endpoint: exact MAC beats exact IP beats the longest CIDR prefix.
    pub fn lookup(&self, mac: Option<[u8; 6]>, ip: Addr) -> Option<&InventoryEntry> {
        if let Some(&i) = mac.and_then(|m| self.by_mac.get(&m)) {
            return self.entries.get(i);
        }
        if let Some(&i) = self.by_ip.get(&ip) {
            return self.entries.get(i);
        }
        self.cidrs
            .iter()
            .map(|&(_, i)| i)
            .find(|&i| self.entries[i].cidr.is_some_and(|c| c.contains(&ip)))
            .and_then(|i| self.entries.get(i))
    }
}
