//! DNS tunnelling, Modbus writes from an unexpected master, and ARP spoofing.

use super::EpisodeSpec;
use crate::sim::devices::common::{self, Ports};
use crate::sim::engine::{Out, Stream};
use crate::sim::net::{Host, Link};
use crate::sim::proto::{dns, modbus};
use crate::sim::rng::SimRng;
use crate::sim::site::{MS, SEC};
use crate::sim::tcp::{CLIENT, SERVER};
use crate::sim::wire;

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// DNS tunnel: queries for base32-encoded labels under one attacker domain through the
/// local resolver; bursts of 1–20 queries/s while transferring, one poll per 5 s idle;
/// TXT (or NULL) answers of 100–500 bytes.
#[derive(Debug)]
pub struct DnsTunnel {
    rng: SimRng,
    link: Link,
    ports: Ports,
    domain: String,
    qtype: u16,
    next: u64,
    end: u64,
    burst_end: u64,
    idle_end: u64,
    rate: f64,
}

impl DnsTunnel {
    /// A tunnel from `link.a` through resolver `link.b`.
    pub fn new(mut rng: SimRng, link: Link, ep: &EpisodeSpec) -> Self {
        let ports = Ports::linux(&mut rng);
        let qtype = if rng.chance(0.7) { dns::TXT } else { dns::NULL };
        let rate = if ep.rate > 0.0 {
            ep.rate
        } else {
            rng.uniform(1.0, 20.0)
        };
        DnsTunnel {
            rng,
            link,
            ports,
            domain: "t.cdn-telemetry.example.net".into(),
            qtype,
            next: ep.start,
            end: ep.start + ep.duration,
            burst_end: ep.start + 30 * SEC,
            idle_end: 0,
            rate,
        }
    }

    fn qname(&mut self) -> String {
        let total = self.rng.range(100, 190) as usize;
        let labels = self.rng.range(2, 5) as usize;
        let per = (total / labels).min(63);
        let mut parts: Vec<String> = Vec::new();
        for _ in 0..labels {
            let s: String = (0..per)
                .map(|_| BASE32[self.rng.index(32)] as char)
                .collect();
            parts.push(s);
        }
        parts.push(self.domain.clone());
        parts.join(".")
    }
}

impl Stream for DnsTunnel {
    fn next_time(&self) -> Option<u64> {
        (self.next < self.end).then_some(self.next)
    }
    fn fire(&mut self, out: &mut Out) {
        let now = out.now;
        out.mark("tunnel_query");
        let name = self.qname();
        let id = self.rng.u16();
        let sport = self.ports.take(&mut self.rng);
        self.link.udp(
            out,
            true,
            now,
            sport,
            53,
            &dns::query(id, &name, self.qtype),
        );
        let n = self.rng.range(100, 500) as usize;
        let data: Vec<u8> = (0..n).map(|_| BASE32[self.rng.index(32)]).collect();
        let rdata = if self.qtype == dns::TXT {
            dns::txt_rdata(&[&data])
        } else {
            data
        };
        let ta = now + self.rng.range(30 * MS, 120 * MS);
        self.link.udp(
            out,
            false,
            ta,
            53,
            sport,
            &dns::answer_raw(id, &name, self.qtype, rdata, 0),
        );
        if now < self.burst_end {
            self.next = now + self.rng.exp(SEC as f64 / self.rate);
        } else {
            if self.idle_end <= now {
                // idle phase after a burst, then a new burst
                self.idle_end = now + self.rng.range(30 * SEC, 120 * SEC);
            }
            self.next = now + self.rng.jitter(5 * SEC, 0.05);
            if self.next >= self.idle_end {
                self.burst_end = self.next + self.rng.range(20 * SEC, 60 * SEC);
            }
        }
    }
}

/// Modbus writes from an unexpected host: optional FC 43 / FC 8 reconnaissance, then 5–50
/// FC 5 / FC 16 writes over 1–10 s (echoed), then close.
#[derive(Debug)]
pub struct ModbusWrite {
    rng: SimRng,
    link: Link,
    at: Option<u64>,
    duration: u64,
}

impl ModbusWrite {
    /// Writes from `link.a` to PLC `link.b`.
    pub fn new(rng: SimRng, link: Link, ep: &EpisodeSpec) -> Self {
        ModbusWrite {
            rng,
            link,
            at: Some(ep.start),
            duration: ep.duration,
        }
    }
}

impl Stream for ModbusWrite {
    fn next_time(&self) -> Option<u64> {
        self.at
    }
    fn fire(&mut self, out: &mut Out) {
        self.at = None;
        out.mark("modbus_write_session");
        let rng = &mut self.rng;
        let cport = rng.range(49152, 65535) as u16;
        let mut c = {
            let lat = [rng.range(150, 400), rng.range(800, 3000)];
            common::new_conn(rng, self.link, cport, 502, lat)
        };
        let mut t = c.connect(out, out.now);
        let mut tid: u16 = 0;
        let mut ex = |c: &mut crate::sim::tcp::TcpConn,
                      out: &mut Out,
                      t: u64,
                      req: Vec<u8>,
                      resp: Vec<u8>,
                      rng: &mut SimRng| {
            tid = tid.wrapping_add(1);
            let t = c.send(out, CLIENT, t, &modbus::adu(tid, 1, &req));
            c.send(
                out,
                SERVER,
                t + rng.range(800, 3000),
                &modbus::adu(tid, 1, &resp),
            )
        };
        if rng.chance(0.7) {
            t = ex(
                &mut c,
                out,
                t + rng.range(5 * MS, 50 * MS),
                modbus::read_device_id(),
                modbus::read_device_id_resp("Schneider Electric", "BMX P34 2020", "v3.10"),
                rng,
            );
            let d = rng.u16();
            t = ex(
                &mut c,
                out,
                t + rng.range(20 * MS, 200 * MS),
                modbus::diagnostics_echo(d),
                modbus::diagnostics_echo(d),
                rng,
            );
        }
        let n = rng.range(5, 51);
        let gap = (self.duration.max(SEC) / n).max(5 * MS);
        for _ in 0..n {
            let t0 = t + rng.range(gap / 2, gap * 3 / 2);
            if rng.chance(0.5) {
                let w = modbus::write_coil(rng.range(0, 16) as u16, rng.chance(0.5));
                t = ex(&mut c, out, t0, w.clone(), w, rng);
            } else {
                let q = rng.range(1, 11) as usize;
                let start = rng.range(0, 100) as u16;
                let vals: Vec<u16> = (0..q).map(|_| rng.u16()).collect();
                t = ex(
                    &mut c,
                    out,
                    t0,
                    modbus::write_registers(start, &vals),
                    modbus::write_registers_resp(start, q as u16),
                    rng,
                );
            }
        }
        c.settle(out);
        let tc = c.last_time() + rng.range(10 * MS, 200 * MS);
        c.close(out, CLIENT, tc);
    }
}

/// ARP spoofing: unsolicited replies every 2 s to both victims claiming the other's IP
/// with the attacker's MAC; three corrective replies at the end. (Forwarding of the
/// diverted traffic is done by the victims' streams through [`crate::sim::engine::Mitm`].)
#[derive(Debug)]
pub struct ArpSpoof {
    rng: SimRng,
    attacker: Host,
    a: Host,
    b: Host,
    next: u64,
    end: u64,
    restored: u32,
}

impl ArpSpoof {
    /// Poisoning between `a` and `b`.
    pub fn new(rng: SimRng, attacker: Host, a: Host, b: Host, ep: &EpisodeSpec) -> Self {
        ArpSpoof {
            rng,
            attacker,
            a,
            b,
            next: ep.start,
            end: ep.start + ep.duration,
            restored: 0,
        }
    }
}

impl Stream for ArpSpoof {
    fn next_time(&self) -> Option<u64> {
        (self.restored < 3).then_some(self.next)
    }
    fn fire(&mut self, out: &mut Out) {
        let now = out.now;
        let m = self.attacker.mac;
        let vlan = self.attacker.vlan;
        if now < self.end {
            out.mark("arp_poison");
            let to_a = wire::L2 {
                src: m,
                dst: self.a.mac,
                vlan,
            };
            out.push(
                now,
                wire::arp(&to_a, 2, m, self.b.ip, self.a.mac, self.a.ip),
            );
            let to_b = wire::L2 {
                src: m,
                dst: self.b.mac,
                vlan,
            };
            out.push(
                now + self.rng.range(50, 500),
                wire::arp(&to_b, 2, m, self.a.ip, self.b.mac, self.b.ip),
            );
            self.next = now + self.rng.jitter(2 * SEC, 0.02);
        } else {
            out.mark("arp_restore");
            let to_a = wire::L2 {
                src: m,
                dst: self.a.mac,
                vlan,
            };
            out.push(
                now,
                wire::arp(&to_a, 2, self.b.mac, self.b.ip, self.a.mac, self.a.ip),
            );
            let to_b = wire::L2 {
                src: m,
                dst: self.b.mac,
                vlan,
            };
            out.push(
                now + self.rng.range(50, 500),
                wire::arp(&to_b, 2, self.a.mac, self.a.ip, self.b.mac, self.b.ip),
            );
            self.restored += 1;
            self.next = now + SEC;
        }
    }
}
