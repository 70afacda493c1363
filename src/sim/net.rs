//! Hosts, endpoints and links as they appear at the capture point (a mirror of the
//! site's switch ports, frames tagged with their VLAN). An Internet peer appears with
//! the gateway's MAC and a TTL reduced by its hop count.

use super::engine::Out;
use super::wire::{self, Mac, L2, V4};
use std::net::{Ipv4Addr, Ipv6Addr};

/// How one end of a conversation looks on the wire at the capture point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ep {
    /// MAC on the local segment (the gateway's for Internet peers).
    pub mac: Mac,
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// TTL of its packets as captured.
    pub ttl: u8,
}

/// A conversation path between a local endpoint `a` and a peer `b` on one VLAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The local side.
    pub a: Ep,
    /// The peer.
    pub b: Ep,
    /// VLAN tag of the segment, if any.
    pub vlan: Option<u16>,
}

impl Link {
    /// Layer-2 addressing of a frame sent by `a` (`from_a`) or by `b`.
    pub fn l2(&self, from_a: bool) -> L2 {
        if from_a {
            L2 {
                src: self.a.mac,
                dst: self.b.mac,
                vlan: self.vlan,
            }
        } else {
            L2 {
                src: self.b.mac,
                dst: self.a.mac,
                vlan: self.vlan,
            }
        }
    }
    /// IPv4 header fields of a packet sent by `a` (`from_a`) or by `b`.
    pub fn v4(&self, from_a: bool, id: u16, df: bool) -> V4 {
        let (s, d) = if from_a {
            (self.a, self.b)
        } else {
            (self.b, self.a)
        };
        V4 {
            src: s.ip,
            dst: d.ip,
            ttl: s.ttl,
            id,
            df,
        }
    }
    /// The same path seen from the other side.
    pub fn reversed(&self) -> Link {
        Link {
            a: self.b,
            b: self.a,
            vlan: self.vlan,
        }
    }
    /// Emits one UDP datagram (DF set, IP id from the stream counter).
    #[allow(clippy::too_many_arguments)]
    pub fn udp(&self, out: &mut Out, from_a: bool, t: u64, sport: u16, dport: u16, data: &[u8]) {
        let id = out.next_ipid();
        let f = wire::udp_v4(
            &self.l2(from_a),
            &self.v4(from_a, id, true),
            sport,
            dport,
            data,
        );
        out.push(t, f);
    }
}

/// A host on a local segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Name (device id for monitored devices).
    pub name: String,
    /// MAC address.
    pub mac: Mac,
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// Initial TTL of its packets (64 Linux, 128 Windows).
    pub ttl: u8,
    /// VLAN of its access port.
    pub vlan: Option<u16>,
}

impl Host {
    /// The host as an endpoint.
    pub fn ep(&self) -> Ep {
        Ep {
            mac: self.mac,
            ip: self.ip,
            ttl: self.ttl,
        }
    }
    /// A link from this host to `peer` on this host's VLAN.
    pub fn link(&self, peer: Ep) -> Link {
        Link {
            a: self.ep(),
            b: peer,
            vlan: self.vlan,
        }
    }
    /// The IPv6 link-local address derived from the MAC (modified EUI-64).
    pub fn ip6_link_local(&self) -> Ipv6Addr {
        let m = self.mac;
        Ipv6Addr::from([
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            m[0] ^ 0x02,
            m[1],
            m[2],
            0xff,
            0xfe,
            m[3],
            m[4],
            m[5],
        ])
    }
}

/// The deterministic MAC of a host: `02:00:5e:<segment>:00:<last octet>`.
pub fn mac_for(segment: u8, last_octet: u8) -> Mac {
    [0x02, 0x00, 0x5e, segment, 0x00, last_octet]
}
