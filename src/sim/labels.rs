//! The label accumulator: an independent re-implementation of the flow table's cutting
//! rules, fed with every emitted frame (it parses the bytes, it does not trust the
//! generator's intent), producing one label record per flow.
//!
//! Rules (the flow engine's, with the active timeout disabled):
//! - key = (VLAN ids, IP protocol, unordered pair of (address, port) endpoints); ICMP is
//!   keyed by type/code and echo id (echo request and reply share a flow);
//! - originator = sender of the first packet;
//! - a TCP flow ends at a RST (the RST is counted) or once both sides sent FIN, plus a
//!   [`LINGER_US`] linger in which packets (the final ACK) are still counted;
//! - idle timeouts on packet time: TCP 120 s, TCP that never got past SYN 10 s, UDP 60 s,
//!   ICMP and other protocols 30 s; a gap strictly longer starts a new flow.
//!
//! A flow is labelled with the first attack label among its packets (benign otherwise)
//! and with the device of its first packet.

use super::engine::{Label, Tag};
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Idle timeout of an established TCP flow.
pub const TCP_IDLE_US: u64 = 120_000_000;
/// Idle timeout of a TCP flow that only saw SYNs.
pub const TCP_SYN_IDLE_US: u64 = 10_000_000;
/// Idle timeout of a UDP flow.
pub const UDP_IDLE_US: u64 = 60_000_000;
/// Idle timeout of ICMP and other flows.
pub const OTHER_IDLE_US: u64 = 30_000_000;
/// Linger after both FINs.
pub const LINGER_US: u64 = 1_000_000;

/// The parsed facts of one frame the accumulator needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// VLAN ids, outer first, 0 = absent.
    pub vlan: [u16; 2],
    /// IP protocol.
    pub proto: u8,
    /// Source address (IPv4 mapped into 16 bytes).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port (ICMP: type, ICMPv6 likewise).
    pub sport: u16,
    /// Destination port (ICMP: code).
    pub dport: u16,
    /// ICMP echo identifier (0 otherwise).
    pub icmp_id: u16,
    /// TCP flags (0 otherwise).
    pub flags: u8,
    /// IP total length (IPv6: 40 + payload length).
    pub ip_len: u32,
}

fn v4_mapped(b: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[10] = 0xff;
    a[11] = 0xff;
    a[12..].copy_from_slice(&b[..4]);
    a
}

/// Parses an Ethernet frame (up to two VLAN tags, IPv4 or IPv6 without extension
/// headers); `None` for ARP and anything that is not an IP packet.
pub fn parse(frame: &[u8]) -> Option<Parsed> {
    let mut off = 12;
    let mut vlan = [0u16; 2];
    let mut nv = 0;
    let mut et = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    while et == 0x8100 || et == 0x88a8 {
        let tci = u16::from_be_bytes([*frame.get(off + 2)?, *frame.get(off + 3)?]);
        if nv < 2 {
            vlan[nv] = tci & 0x0fff;
            nv += 1;
        }
        off += 4;
        et = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    }
    off += 2;
    let ip = frame.get(off..)?;
    let (proto, src, dst, l4, ip_len) = match et {
        0x0800 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            (
                ip.get(9).copied()?,
                v4_mapped(ip.get(12..16)?),
                v4_mapped(ip.get(16..20)?),
                ip.get(ihl..total)?,
                total as u32,
            )
        }
        0x86dd => {
            let plen = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(ip.get(8..24)?);
            d.copy_from_slice(ip.get(24..40)?);
            (
                ip.get(6).copied()?,
                s,
                d,
                ip.get(40..40 + plen)?,
                (40 + plen) as u32,
            )
        }
        _ => return None,
    };
    let mut p = Parsed {
        vlan,
        proto,
        src,
        dst,
        sport: 0,
        dport: 0,
        icmp_id: 0,
        flags: 0,
        ip_len,
    };
    match proto {
        6 | 17 => {
            p.sport = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
            p.dport = u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]);
            if proto == 6 {
                p.flags = *l4.get(13)?;
            }
        }
        1 | 58 => {
            let ty = *l4.first()?;
            p.sport = u16::from(ty);
            p.dport = u16::from(*l4.get(1)?);
            let echo = matches!((proto, ty), (1, 0) | (1, 8) | (58, 128) | (58, 129));
            if echo {
                p.icmp_id = u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]);
                // request and reply share a flow: key on the request type
                p.sport = match (proto, ty) {
                    (1, 0) => 8,
                    (58, 129) => 128,
                    _ => p.sport,
                };
            }
        }
        _ => {}
    }
    Some(p)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    vlan: [u16; 2],
    proto: u8,
    lo: ([u8; 16], u16),
    hi: ([u8; 16], u16),
    icmp: (u16, u16, u16),
}

fn key_of(p: &Parsed) -> Key {
    if p.proto == 1 || p.proto == 58 {
        let (lo, hi) = if p.src <= p.dst {
            (p.src, p.dst)
        } else {
            (p.dst, p.src)
        };
        return Key {
            vlan: p.vlan,
            proto: p.proto,
            lo: (lo, 0),
            hi: (hi, 0),
            icmp: (p.sport, p.dport, p.icmp_id),
        };
    }
    let a = (p.src, p.sport);
    let b = (p.dst, p.dport);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    Key {
        vlan: p.vlan,
        proto: p.proto,
        lo,
        hi,
        icmp: (0, 0, 0),
    }
}

/// One flow as the flow table will cut it.
#[derive(Debug, Clone)]
pub struct FlowLabel {
    /// Originator address.
    pub src: [u8; 16],
    /// Originator port (ICMP: type).
    pub sport: u16,
    /// Responder address.
    pub dst: [u8; 16],
    /// Responder port (ICMP: code).
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// VLAN ids (0 = absent).
    pub vlan: [u16; 2],
    /// First packet time.
    pub start_us: u64,
    /// Last packet time.
    pub end_us: u64,
    /// Packets.
    pub pkts: u64,
    /// IP bytes (not serialised; for the summary).
    pub bytes: u64,
    /// Attribution (device of the first packet, first attack label).
    pub tag: Tag,
    /// Global index of the first packet (tie-break of the output order).
    pub first_index: u64,
}

#[derive(Debug)]
struct Active {
    rec: FlowLabel,
    syn_only: bool,
    fin_orig: bool,
    fin_resp: bool,
    closed_at: Option<u64>,
}

impl Active {
    fn expired(&self, ts: u64) -> bool {
        if let Some(c) = self.closed_at {
            if ts > c + LINGER_US {
                return true;
            }
        }
        let idle = match self.rec.proto {
            6 if self.syn_only => TCP_SYN_IDLE_US,
            6 => TCP_IDLE_US,
            17 => UDP_IDLE_US,
            _ => OTHER_IDLE_US,
        };
        ts - self.rec.end_us > idle
    }
}

/// The accumulator.
#[derive(Debug, Default)]
pub struct Labeller {
    active: HashMap<Key, Active>,
    done: Vec<FlowLabel>,
    index: u64,
}

impl Labeller {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one frame; non-IP frames are ignored.
    pub fn packet(&mut self, ts: u64, frame: &[u8], tag: Tag) {
        let idx = self.index;
        self.index += 1;
        if idx % 65_536 == 65_535 {
            self.sweep(ts);
        }
        let Some(p) = parse(frame) else { return };
        let key = key_of(&p);
        if let Some(a) = self.active.get(&key) {
            if a.expired(ts) {
                if let Some(a) = self.active.remove(&key) {
                    self.done.push(a.rec);
                }
            }
        }
        let a = self.active.entry(key).or_insert_with(|| Active {
            rec: FlowLabel {
                src: p.src,
                sport: p.sport,
                dst: p.dst,
                dport: p.dport,
                proto: p.proto,
                vlan: p.vlan,
                start_us: ts,
                end_us: ts,
                pkts: 0,
                bytes: 0,
                tag,
                first_index: idx,
            },
            syn_only: p.proto == 6 && p.flags & 0x12 == 0x02,
            fin_orig: false,
            fin_resp: false,
            closed_at: None,
        });
        a.rec.pkts += 1;
        a.rec.bytes += u64::from(p.ip_len);
        a.rec.end_us = ts;
        if a.rec.tag.label == Label::Benign && tag.label != Label::Benign {
            a.rec.tag.label = tag.label;
            a.rec.tag.episode = tag.episode;
        }
        if p.proto == 6 {
            if p.flags & 0x12 != 0x02 {
                a.syn_only = false;
            }
            if p.flags & 0x01 != 0 {
                if p.src == a.rec.src && p.sport == a.rec.sport {
                    a.fin_orig = true;
                } else {
                    a.fin_resp = true;
                }
                if a.fin_orig && a.fin_resp && a.closed_at.is_none() {
                    a.closed_at = Some(ts);
                }
            }
            if p.flags & 0x04 != 0 {
                if let Some(a) = self.active.remove(&key) {
                    self.done.push(a.rec);
                }
            }
        }
    }

    /// Finalises flows that no later packet can extend (idle or lingered out at `ts`).
    pub fn sweep(&mut self, ts: u64) {
        let mut gone: Vec<Key> = self
            .active
            .iter()
            .filter(|(_, a)| a.expired(ts))
            .map(|(k, _)| *k)
            .collect();
        gone.sort_by_key(|k| self.active.get(k).map(|a| a.rec.first_index));
        for k in gone {
            if let Some(a) = self.active.remove(&k) {
                self.done.push(a.rec);
            }
        }
    }

    /// Finalises everything and returns the flows ordered by (start time, first packet).
    pub fn finish(mut self) -> Vec<FlowLabel> {
        let rest: Vec<FlowLabel> = self.active.drain().map(|(_, a)| a.rec).collect();
        self.done.extend(rest);
        self.done.sort_by_key(|f| (f.start_us, f.first_index));
        self.done
    }
}

/// Text form of a 16-byte address (IPv4-mapped shown as dotted quad).
pub fn addr_string(a: &[u8; 16]) -> String {
    if a[..10].iter().all(|&b| b == 0) && a[10] == 0xff && a[11] == 0xff {
        IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15])).to_string()
    } else {
        IpAddr::V6(Ipv6Addr::from(*a)).to_string()
    }
}

/// Protocol name used in label records.
pub fn proto_name(p: u8) -> String {
    match p {
        6 => "TCP".into(),
        17 => "UDP".into(),
        1 => "ICMP".into(),
        58 => "IPv6-ICMP".into(),
        n => n.to_string(),
    }
}

/// One line of labels.jsonl (field order is the file format).
#[derive(Debug, Serialize)]
pub struct LabelRecord<'a> {
    /// Originator address.
    pub src_ip: String,
    /// Originator port.
    pub src_port: u16,
    /// Responder address.
    pub dest_ip: String,
    /// Responder port.
    pub dest_port: u16,
    /// "TCP", "UDP", "ICMP", "IPv6-ICMP" or the number.
    pub proto: String,
    /// VLAN ids, outer first.
    pub vlan: Vec<u16>,
    /// First packet, µs since the Unix epoch.
    pub start_us: u64,
    /// Last packet, µs since the Unix epoch.
    pub end_us: u64,
    /// Packets.
    pub pkts: u64,
    /// Monitored device id.
    pub device_id: &'a str,
    /// Its class.
    pub device_class: &'a str,
    /// "benign" or the attack type.
    pub label: &'static str,
    /// Episode id, null for benign.
    pub episode_id: Option<u32>,
}

impl FlowLabel {
    /// The serialisable record, given the device's id and class.
    pub fn record<'a>(&self, device_id: &'a str, device_class: &'a str) -> LabelRecord<'a> {
        LabelRecord {
            src_ip: addr_string(&self.src),
            src_port: self.sport,
            dest_ip: addr_string(&self.dst),
            dest_port: self.dport,
            proto: proto_name(self.proto),
            vlan: self.vlan.iter().copied().filter(|&v| v != 0).collect(),
            start_us: self.start_us,
            end_us: self.end_us,
            pkts: self.pkts,
            device_id,
            device_class,
            label: self.tag.label.as_str(),
            episode_id: if self.tag.episode == 0 {
                None
            } else {
                Some(self.tag.episode)
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::wire::{self, Tcp, L2, V4};

    const S: u64 = 1_000_000;

    fn l2() -> L2 {
        L2 {
            src: [2, 0, 0, 0, 0, 1],
            dst: [2, 0, 0, 0, 0, 2],
            vlan: Some(10),
        }
    }
    fn ip(fwd: bool) -> V4 {
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let (src, dst) = if fwd { (a, b) } else { (b, a) };
        V4 {
            src,
            dst,
            ttl: 64,
            id: 0,
            df: true,
        }
    }
    fn udp(fwd: bool) -> Vec<u8> {
        if fwd {
            wire::udp_v4(&l2(), &ip(true), 123, 123, &[0; 48])
        } else {
            wire::udp_v4(&l2(), &ip(false), 123, 123, &[0; 48])
        }
    }
    fn tcp(fwd: bool, flags: u8) -> Vec<u8> {
        let (sport, dport) = if fwd { (40000, 80) } else { (80, 40000) };
        let t = Tcp {
            sport,
            dport,
            seq: 1,
            ack: 1,
            flags,
            window: 100,
            options: &[],
        };
        wire::tcp_v4(&l2(), &ip(fwd), &t, &[])
    }
    fn tag() -> Tag {
        Tag::benign(0)
    }

    #[test]
    fn udp_idle_timeout_splits_flows() {
        let mut l = Labeller::new();
        l.packet(0, &udp(true), tag());
        l.packet(10_000, &udp(false), tag());
        l.packet(60 * S + 10_000, &udp(true), tag()); // gap exactly 60 s: same flow
        l.packet(1024 * S, &udp(true), tag()); // new exchange
        let f = l.finish();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].pkts, 3);
        assert_eq!(f[0].vlan, [10, 0]);
        assert_eq!(f[1].start_us, 1024 * S);
    }

    #[test]
    fn tcp_fin_linger_and_rst() {
        let mut l = Labeller::new();
        l.packet(0, &tcp(true, wire::SYN), tag());
        l.packet(1_000, &tcp(false, wire::SYN | wire::ACK), tag());
        l.packet(2_000, &tcp(true, wire::ACK), tag());
        l.packet(3_000, &tcp(true, wire::FIN | wire::ACK), tag());
        l.packet(4_000, &tcp(false, wire::FIN | wire::ACK), tag());
        l.packet(5_000, &tcp(true, wire::ACK), tag()); // within linger: counted
        l.packet(2 * S, &tcp(true, wire::SYN), tag()); // after linger: new flow
        l.packet(2 * S + 1_000, &tcp(false, wire::RST | wire::ACK), tag());
        l.packet(2 * S + 2_000, &tcp(true, wire::SYN), tag()); // after RST: new flow
        let f = l.finish();
        assert_eq!(f.iter().map(|f| f.pkts).collect::<Vec<_>>(), vec![6, 2, 1]);
        assert_eq!(f[0].sport, 40000);
    }

    #[test]
    fn syn_only_timeout_is_ten_seconds() {
        let mut l = Labeller::new();
        l.packet(0, &tcp(true, wire::SYN), tag());
        l.packet(11 * S, &tcp(true, wire::SYN), tag());
        l.packet(12 * S, &tcp(false, wire::SYN | wire::ACK), tag());
        l.packet(100 * S, &tcp(true, wire::ACK), tag()); // established: 120 s
        assert_eq!(l.finish().len(), 2);
    }

    #[test]
    fn attack_packet_labels_the_flow() {
        let mut l = Labeller::new();
        l.packet(0, &udp(true), tag());
        let attack = Tag {
            device: 0,
            label: Label::ArpSpoof,
            episode: 3,
        };
        l.packet(1_000, &udp(false), attack);
        let f = l.finish();
        let r = f[0].record("cam-01", "camera");
        assert_eq!(r.label, "arp_spoof");
        assert_eq!(r.episode_id, Some(3));
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert!(json.starts_with("{\"src_ip\":\"10.0.0.1\",\"src_port\":123,\"dest_ip\""));
        assert!(json.contains("\"vlan\":[10]"));
    }

    #[test]
    fn arp_is_ignored() {
        let f = wire::arp(
            &l2(),
            1,
            [2; 6],
            Ipv4Addr::new(10, 0, 0, 1),
            [0; 6],
            Ipv4Addr::new(10, 0, 0, 2),
        );
        assert!(parse(&f).is_none());
    }
}
