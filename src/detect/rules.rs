//! Rule detectors for what an isolation forest cannot see (detection design §2.4): ARP
//! binding changes (ARP spoofing is not an IP flow) and Modbus/TCP writes from masters that
//! never wrote to that PLC in the training window (write function codes absent from
//! training make the Modbus feature constant, and the forest ignores constant features).

use crate::device::Inventory;
use crate::flow::FlowRecord;
use crate::packet::{Addr, ArpPacket};
use std::collections::{BTreeMap, BTreeSet};

/// Most IP→MAC bindings remembered (oldest-first bindings are kept; new IPs beyond the
/// cap are not tracked and counted).
pub const MAX_ARP_BINDINGS: usize = 65_536;
/// Most (IP, MAC) conflicts remembered for de-duplicating alerts.
pub const MAX_ARP_ALERTS: usize = 65_536;

/// An ARP binding conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpConflict {
    /// The IPv4 address claimed.
    pub ip: [u8; 4],
    /// The MAC it was bound to (first seen, or from the inventory).
    pub known_mac: [u8; 6],
    /// The MAC now claiming it.
    pub new_mac: [u8; 6],
    /// True when the known binding comes from the inventory.
    pub from_inventory: bool,
    /// ARP opcode of the claiming packet (1 request, 2 reply).
    pub opcode: u16,
}

/// Watches ARP sender bindings: the first MAC seen for an IP (or the inventory's MAC for
/// it) is the binding; another MAC claiming that IP raises one alert per (IP, MAC) pair.
#[derive(Debug, Default)]
pub struct ArpWatcher {
    bindings: BTreeMap<[u8; 4], [u8; 6]>,
    alerted: BTreeSet<([u8; 4], [u8; 6])>,
    /// IPs not tracked because the table was full.
    pub untracked: u64,
}

impl ArpWatcher {
    /// Checks one ARP packet; returns a conflict the first time a new MAC claims a bound IP.
    pub fn observe(
        &mut self,
        arp: &ArpPacket,
        inventory: Option<&Inventory>,
    ) -> Option<ArpConflict> {
        let ip = arp.sender_ip;
        let mac = arp.sender_mac;
        if ip == [0, 0, 0, 0] || mac == [0; 6] {
            return None; // ARP probes carry no binding
        }
        let inv_mac = inventory
            .and_then(|inv| inv.lookup(None, Addr::v4(ip)))
            .and_then(|e| e.mac.filter(|_| e.ip == Some(Addr::v4(ip))));
        let (known, from_inventory) = match (inv_mac, self.bindings.get(&ip)) {
            (Some(m), _) => (Some(m), true),
            (None, Some(m)) => (Some(*m), false),
            (None, None) => (None, false),
        };
        match known {
            None => {
                if self.bindings.len() < MAX_ARP_BINDINGS {
                    self.bindings.insert(ip, mac);
                } else {
                    self.untracked += 1;
                }
                None
            }
            Some(k) if k == mac => None,
            Some(k) => {
                if self.alerted.contains(&(ip, mac)) || self.alerted.len() >= MAX_ARP_ALERTS {
                    return None;
                }
                self.alerted.insert((ip, mac));
                Some(ArpConflict {
                    ip,
                    known_mac: k,
                    new_mac: mac,
                    from_inventory,
                    opcode: arp.opcode,
                })
            }
        }
    }
}

/// The Modbus write allow-list: (PLC, master) pairs seen writing in training.
#[derive(Debug, Default, Clone)]
pub struct ModbusWriteRule {
    allowed: BTreeSet<(Addr, Addr)>,
}

impl ModbusWriteRule {
    /// From the model bundle's list.
    pub fn new(pairs: &[(Addr, Addr)]) -> Self {
        ModbusWriteRule {
            allowed: pairs.iter().copied().collect(),
        }
    }

    /// The (PLC, master) pair of a flow carrying Modbus writes, if any: the PLC is the
    /// endpoint on port 502.
    pub fn write_pair(rec: &FlowRecord) -> Option<(Addr, Addr)> {
        if rec.app.modbus_writes == 0 {
            return None;
        }
        if rec.resp.port == 502 {
            Some((rec.resp.addr, rec.orig.addr))
        } else if rec.orig.port == 502 {
            Some((rec.orig.addr, rec.resp.addr))
        } else {
            None
        }
    }

    /// A (PLC, master) pair for a flow whose writes come from a master not allowed for
    /// that PLC.
    pub fn check(&self, rec: &FlowRecord) -> Option<(Addr, Addr)> {
        Self::write_pair(rec).filter(|p| !self.allowed.contains(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn arp(ip: [u8; 4], mac: u8) -> ArpPacket {
        ArpPacket {
            ts: Timestamp(0),
            wire_len: 42,
            vlan: [0, 0],
            opcode: 2,
            sender_mac: [2, 0, 0, 0, 0, mac],
            sender_ip: ip,
            target_mac: [0; 6],
            target_ip: [0; 4],
        }
    }

    #[test]
    fn binding_change_alerts_once_per_pair() {
        let mut w = ArpWatcher::default();
        assert!(w.observe(&arp([10, 0, 0, 1], 1), None).is_none());
        assert!(w.observe(&arp([10, 0, 0, 1], 1), None).is_none());
        let c = w.observe(&arp([10, 0, 0, 1], 9), None);
        assert_eq!(c.map(|c| (c.known_mac[5], c.new_mac[5])), Some((1, 9)));
        assert!(w.observe(&arp([10, 0, 0, 1], 9), None).is_none());
        assert!(w.observe(&arp([0, 0, 0, 0], 7), None).is_none());
    }
}
