//! PLC (Modbus/TCP server on 502): polled by the HMI over one persistent connection
//! (FC 3 every 100 ms, FC 1 every second; the Windows HMI's 200 ms delayed ACK means its
//! next request carries the ACK), engineering-workstation write sessions (FC 6) once or
//! twice per 8-hour shift, NTP from the OT gateway. No Internet traffic.

use super::common::{self, NtpStream, Ports};
use crate::sim::engine::{Out, Stream, Tag};
use crate::sim::proto::modbus;
use crate::sim::rng::SimRng;
use crate::sim::site::{Ctx, Device, Site, Streams, MS, SEC};
use crate::sim::tcp::{TcpConn, CLIENT, SERVER};

/// PLC parameters (defaults from the simulator spec §6.2).
#[derive(Debug, Clone)]
pub struct PlcParams {
    /// Poll period and absolute jitter, µs.
    pub poll: (u64, u64),
    /// FC 1 every n-th poll.
    pub coils_every: u64,
    /// Holding registers read per poll.
    pub registers: u16,
    /// Coils read.
    pub coils: u16,
    /// PLC response time range, µs.
    pub response: (u64, u64),
    /// Engineering sessions per 8-hour shift (inclusive range).
    pub ews_sessions: (u64, u64),
    /// Writes per engineering session (inclusive range).
    pub ews_writes: (u64, u64),
    /// NTP period and jitter.
    pub ntp: (u64, f64),
    /// Modbus unit id.
    pub unit: u8,
}

impl Default for PlcParams {
    fn default() -> Self {
        PlcParams {
            poll: (100 * MS, 5 * MS),
            coils_every: 10,
            registers: 10,
            coils: 16,
            response: (800, 4 * MS),
            ews_sessions: (1, 2),
            ews_writes: (3, 5),
            ntp: (1024 * SEC, 0.10),
            unit: 1,
        }
    }
}

/// The HMI's polling session.
#[derive(Debug)]
pub struct HmiPoll {
    rng: SimRng,
    p: PlcParams,
    conn: TcpConn,
    tid: u16,
    polls: u64,
    regs: Vec<u16>,
    coils: [u8; 2],
    connected: bool,
    next: u64,
}

impl HmiPoll {
    fn exchange(&mut self, out: &mut Out, t: u64, req: &[u8], resp: &[u8]) -> u64 {
        self.tid = self.tid.wrapping_add(1);
        let t = self
            .conn
            .send(out, CLIENT, t, &modbus::adu(self.tid, self.p.unit, req));
        let dt = self.rng.range(self.p.response.0, self.p.response.1);
        self.conn.send(
            out,
            SERVER,
            t + dt,
            &modbus::adu(self.tid, self.p.unit, resp),
        )
    }
}

impl Stream for HmiPoll {
    fn next_time(&self) -> Option<u64> {
        Some(self.next)
    }
    fn fire(&mut self, out: &mut Out) {
        let now = out.now;
        if !self.connected {
            self.connected = true;
            out.mark("modbus_connect");
            let t = self.conn.connect(out, now);
            self.next = t + self.rng.range(5 * MS, 20 * MS);
            return;
        }
        out.mark("modbus_poll");
        for r in self.regs.iter_mut() {
            if self.rng.chance(0.2) {
                *r = r.wrapping_add(self.rng.range(0, 3) as u16).wrapping_sub(1);
            }
        }
        let regs = self.regs.clone();
        let mut t = self.exchange(
            out,
            now,
            &modbus::read_holding(0, self.p.registers),
            &modbus::read_holding_resp(&regs),
        );
        self.polls += 1;
        if self.polls % self.p.coils_every == 0 {
            out.mark("modbus_coils");
            if self.rng.chance(0.05) {
                self.coils[0] ^= 1 << self.rng.range(0, 8);
            }
            let c = self.coils;
            t = self.exchange(
                out,
                t + self.conn.lat[CLIENT] + 300,
                &modbus::read_coils(0, self.p.coils),
                &modbus::read_coils_resp(&c),
            );
        }
        let _ = t;
        let (per, j) = self.p.poll;
        self.next = now + per - j + self.rng.range(0, 2 * j + 1);
    }
}

/// Engineering-workstation write sessions.
#[derive(Debug)]
pub struct EwsSessions {
    rng: SimRng,
    p: PlcParams,
    link: crate::sim::net::Link,
    ports: Ports,
    times: Vec<u64>,
    tid: u16,
}

impl Stream for EwsSessions {
    fn next_time(&self) -> Option<u64> {
        self.times.first().copied()
    }
    fn fire(&mut self, out: &mut Out) {
        self.times.remove(0);
        out.mark("ews_session");
        let rng = &mut self.rng;
        let cport = self.ports.take(rng);
        let mut conn = {
            let lat = [rng.range(150, 400), rng.range(800, 3000)];
            common::new_conn(rng, self.link, cport, 502, lat)
        };
        conn.ack_delay = [200 * MS, 40 * MS];
        let mut t = conn.connect(out, out.now);
        let n = rng.range(self.p.ews_writes.0, self.p.ews_writes.1 + 1);
        // Read current values first.
        self.tid = self.tid.wrapping_add(1);
        t = conn.send(
            out,
            CLIENT,
            t + rng.range(20 * MS, 200 * MS),
            &modbus::adu(
                self.tid,
                self.p.unit,
                &modbus::read_holding(0, self.p.registers),
            ),
        );
        let vals: Vec<u16> = (0..self.p.registers)
            .map(|_| rng.range(0, 1000) as u16)
            .collect();
        t = conn.send(
            out,
            SERVER,
            t + rng.range(800, 3000),
            &modbus::adu(self.tid, self.p.unit, &modbus::read_holding_resp(&vals)),
        );
        for _ in 0..n {
            self.tid = self.tid.wrapping_add(1);
            let pdu = modbus::write_register(
                rng.range(0, u64::from(self.p.registers)) as u16,
                rng.range(0, 1000) as u16,
            );
            t = conn.send(
                out,
                CLIENT,
                t + rng.range(SEC, 5 * SEC),
                &modbus::adu(self.tid, self.p.unit, &pdu),
            );
            t = conn.send(
                out,
                SERVER,
                t + rng.range(800, 3000),
                &modbus::adu(self.tid, self.p.unit, &pdu),
            );
        }
        conn.settle(out);
        let tc = conn.last_time() + rng.range(SEC, 10 * SEC);
        conn.close(out, CLIENT, tc);
    }
}

/// Adds the streams of PLC `dev`.
pub fn add(streams: &mut Streams, ctx: &Ctx, site: &Site, dev: &Device, p: &PlcParams) {
    let h = &dev.host;
    let name = &h.name;
    let tag = Tag::benign(dev.id);
    let gw = site.gateway(h).clone();
    let mut brng = ctx.rng(&format!("{name}/boot"));
    let boot = ctx.start + brng.range(0, 5 * SEC);

    let pname = format!("{name}/poll");
    let mut rng = ctx.rng(&pname);
    let hmi = &site.infra.hmi;
    let link = crate::sim::net::Link {
        a: hmi.ep(),
        b: h.ep(),
        vlan: h.vlan,
    };
    let mut ports = Ports::windows(&mut rng);
    let cport = ports.take(&mut rng);
    let mut conn = {
        let lat = [rng.range(100, 300), rng.range(500, 1500)];
        common::new_conn(&mut rng, link, cport, 502, lat)
    };
    conn.ack_delay = [200 * MS, 40 * MS];
    let regs: Vec<u16> = (0..p.registers)
        .map(|_| rng.range(0, 1000) as u16)
        .collect();
    let coils = [rng.u16() as u8, rng.u16() as u8];
    let s = HmiPoll {
        p: p.clone(),
        conn,
        tid: rng.u16(),
        polls: 0,
        regs,
        coils,
        connected: false,
        next: boot + SEC,
        rng,
    };
    streams.add(&pname, "plc", tag, brng.u16(), s);

    let ename = format!("{name}/ews");
    let mut rng = ctx.rng(&ename);
    let shift = 8 * 3600 * SEC;
    let mut times = Vec::new();
    let mut s0 = ctx.start;
    while s0 < ctx.end {
        let len = shift.min(ctx.end - s0);
        let n = rng.range(p.ews_sessions.0, p.ews_sessions.1 + 1);
        let mut ts: Vec<u64> = (0..n)
            .map(|_| s0 + rng.range(len / 10, len * 8 / 10))
            .collect();
        ts.sort_unstable();
        times.extend(ts);
        s0 += shift;
    }
    let ews = &site.infra.ews;
    let s = EwsSessions {
        p: p.clone(),
        link: crate::sim::net::Link {
            a: ews.ep(),
            b: h.ep(),
            vlan: h.vlan,
        },
        ports: Ports::windows(&mut rng),
        times,
        tid: 0,
        rng,
    };
    streams.add(&ename, "plc", tag, brng.u16(), s);

    let nname = format!("{name}/ntp");
    let mut rng = ctx.rng(&nname);
    let s = NtpStream {
        link: h.link(gw.ep()),
        next: boot + rng.range(SEC, 3 * SEC),
        period: p.ntp.0,
        jitter: p.ntp.1,
        rtt: rng.range(300, 1500),
        rng,
    };
    streams.add(&nname, "plc", tag, brng.u16(), s);
}
