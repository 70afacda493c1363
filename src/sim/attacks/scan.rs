//! nmap-style SYN port scans from the LAN attacker: vertical (the top TCP ports of one
//! device at 100–1 000 pps; closed ports answer RST/ACK, open ones SYN/ACK followed by
//! the scanner's RST) and horizontal (one port across the device range after an ARP
//! sweep; hosts that answer ARP get a SYN).

use super::EpisodeSpec;
use crate::sim::engine::{Out, Stream, Tag};
use crate::sim::net::{Host, Link};
use crate::sim::rng::SimRng;
use crate::sim::site::{MS, SEC};
use crate::sim::tcp;
use crate::sim::wire::{self, Tcp};
use std::net::Ipv4Addr;

/// nmap's most frequent TCP ports (head of `nmap-services` by frequency); the list is
/// completed to `n` ports with the remaining ports 1–1024 and common high ports.
pub fn top_ports(n: usize) -> Vec<u16> {
    let head: [u16; 100] = [
        80, 23, 443, 21, 22, 25, 3389, 110, 445, 139, 143, 53, 135, 3306, 8080, 1723, 111, 995,
        993, 5900, 1025, 587, 8888, 199, 1720, 465, 548, 113, 81, 6001, 10000, 514, 5060, 179,
        1026, 2000, 8443, 8000, 32768, 554, 26, 1433, 49152, 2001, 515, 8008, 49154, 1027, 5666,
        646, 5000, 5631, 631, 49153, 8081, 2049, 88, 79, 5800, 106, 2121, 1110, 49155, 6000, 513,
        990, 5357, 427, 49156, 543, 544, 5101, 144, 7, 389, 8009, 3128, 444, 9999, 5009, 7070,
        5190, 3000, 5432, 1900, 3986, 13, 1029, 9, 5051, 6646, 49157, 1028, 873, 1755, 2717, 4899,
        9100, 119, 37,
    ];
    let mut v: Vec<u16> = Vec::with_capacity(n);
    for p in head.iter().copied().chain(1..=1024).chain([
        1883, 8883, 502, 5353, 49158, 49159, 49160, 50000, 50001, 51827, 60000,
    ]) {
        if v.len() >= n {
            break;
        }
        if !v.contains(&p) {
            v.push(p);
        }
    }
    v
}

/// One probe target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The host.
    pub host: Host,
    /// Its device index.
    pub device: u16,
    /// Open TCP ports.
    pub open: Vec<u16>,
}

/// A SYN scan of (port, target) probes.
#[derive(Debug)]
pub struct SynScan {
    rng: SimRng,
    scanner: Host,
    targets: Vec<Target>,
    probes: Vec<(usize, u16)>,
    sport: u16,
    ttl: u8,
    gap: u64,
    next: u64,
    i: usize,
    arp_first: bool,
    tag: Tag,
}

impl SynScan {
    /// Vertical scan of `ports` on one target.
    pub fn vertical(
        mut rng: SimRng,
        scanner: Host,
        target: Target,
        ports: Vec<u16>,
        ep: &EpisodeSpec,
        tag: Tag,
    ) -> Self {
        let pps = if ep.rate > 0.0 { ep.rate } else { 500.0 };
        let mut probes: Vec<(usize, u16)> = ports.into_iter().map(|p| (0, p)).collect();
        for i in (1..probes.len()).rev() {
            let j = rng.index(i + 1);
            probes.swap(i, j);
        }
        let sport = rng.range(32768, 65000) as u16;
        let ttl = rng.range(37, 60) as u8;
        SynScan {
            rng,
            scanner,
            targets: vec![target],
            probes,
            sport,
            ttl,
            gap: (SEC as f64 / pps) as u64,
            next: ep.start,
            i: 0,
            arp_first: false,
            tag,
        }
    }

    /// Horizontal scan of `port` across `targets` (ARP sweep first).
    pub fn horizontal(
        mut rng: SimRng,
        scanner: Host,
        targets: Vec<Target>,
        port: u16,
        ep: &EpisodeSpec,
        tag: Tag,
    ) -> Self {
        let pps = if ep.rate > 0.0 { ep.rate } else { 200.0 };
        let probes = (0..targets.len()).map(|i| (i, port)).collect();
        let sport = rng.range(32768, 65000) as u16;
        let ttl = rng.range(37, 60) as u8;
        SynScan {
            rng,
            scanner,
            targets,
            probes,
            sport,
            ttl,
            gap: (SEC as f64 / pps) as u64,
            next: ep.start,
            i: 0,
            arp_first: true,
            tag,
        }
    }
}

impl Stream for SynScan {
    fn next_time(&self) -> Option<u64> {
        (self.i < self.probes.len()).then_some(self.next)
    }
    fn fire(&mut self, out: &mut Out) {
        let now = out.now;
        let (ti, port) = self.probes[self.i];
        self.i += 1;
        let Some(tg) = self.targets.get(ti).cloned() else {
            return;
        };
        let tag = Tag {
            device: tg.device,
            ..self.tag
        };
        out.tag = tag;
        let mut t = now;
        if self.arp_first {
            out.mark("arp_probe");
            let l2 = wire::L2 {
                src: self.scanner.mac,
                dst: wire::BROADCAST,
                vlan: self.scanner.vlan,
            };
            out.push(
                t,
                wire::arp(
                    &l2,
                    1,
                    self.scanner.mac,
                    self.scanner.ip,
                    [0; 6],
                    tg.host.ip,
                ),
            );
            let l2r = wire::L2 {
                src: tg.host.mac,
                dst: self.scanner.mac,
                vlan: self.scanner.vlan,
            };
            t += self.rng.range(200, 2 * MS);
            out.push(
                t,
                wire::arp(
                    &l2r,
                    2,
                    tg.host.mac,
                    tg.host.ip,
                    self.scanner.mac,
                    self.scanner.ip,
                ),
            );
            t += self.rng.range(100, 500);
        }
        out.mark("syn_probe");
        let link = Link {
            a: self.scanner.ep(),
            b: tg.host.ep(),
            vlan: self.scanner.vlan,
        };
        let seq = self.rng.u32();
        let syn = Tcp {
            sport: self.sport,
            dport: port,
            seq,
            ack: 0,
            flags: wire::SYN,
            window: 1024,
            options: &[2, 4, 0x05, 0xb4],
        };
        let mut ip = link.v4(true, self.rng.u16(), false);
        ip.ttl = self.ttl;
        out.push(t, wire::tcp_v4(&link.l2(true), &ip, &syn, &[]));
        let tr = t + self.rng.range(150, 900);
        let id = out.next_ipid();
        if tg.open.contains(&port) {
            let isn = self.rng.u32();
            let sa = Tcp {
                sport: port,
                dport: self.sport,
                seq: isn,
                ack: seq.wrapping_add(1),
                flags: wire::SYN | wire::ACK,
                window: 64240,
                options: &tcp::SYN_OPTIONS,
            };
            tcp::raw_segment(out, &link, false, tr, id, true, &sa, &[]);
            let rst = Tcp {
                sport: self.sport,
                dport: port,
                seq: seq.wrapping_add(1),
                ack: 0,
                flags: wire::RST,
                window: 0,
                options: &[],
            };
            let mut ip = link.v4(true, self.rng.u16(), false);
            ip.ttl = self.ttl;
            out.push(
                tr + self.rng.range(50, 300),
                wire::tcp_v4(&link.l2(true), &ip, &rst, &[]),
            );
        } else {
            let ra = Tcp {
                sport: port,
                dport: self.sport,
                seq: 0,
                ack: seq.wrapping_add(1),
                flags: wire::RST | wire::ACK,
                window: 0,
                options: &[],
            };
            tcp::raw_segment(out, &link, false, tr, id, true, &ra, &[]);
        }
        self.next = now + self.gap + self.rng.range(0, self.gap / 5 + 1);
    }
}

/// Unused helper kept for callers that need a neutral address.
pub fn unspecified() -> Ipv4Addr {
    Ipv4Addr::UNSPECIFIED
}
