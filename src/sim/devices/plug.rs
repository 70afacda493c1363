//! Smart plug: persistent TLS to its cloud (heartbeat every 30 s, state reports on
//! on/off switches, reconnect once a day), Tuya-style discovery broadcast every 5 s,
//! DNS and NTP hourly. Its local control poll (TCP 9999 every 30 s, new connection per
//! poll) comes from the hub that owns it, or from the controller when there is no hub.

use super::common::{self, NtpStream, Ports, TlsSession};
use crate::sim::engine::{Out, Stream, Tag};
use crate::sim::net::{Host, Link};
use crate::sim::proto::iot;
use crate::sim::rng::SimRng;
use crate::sim::site::{self, inet, Ctx, Device, Site, Streams, MS, SEC};
use crate::sim::wire;
use std::net::Ipv4Addr;

/// Plug parameters (defaults from the simulator spec §6.2).
#[derive(Debug, Clone)]
pub struct PlugParams {
    /// Cloud heartbeat period and relative jitter (30 s ± 2 s).
    pub heartbeat: (u64, f64),
    /// Switch events per day (peak-rate Poisson, diurnal).
    pub switches_per_day: f64,
    /// Local poll period and jitter.
    pub poll: (u64, f64),
    /// Poll reply size.
    pub poll_reply: usize,
    /// Discovery broadcast period.
    pub discovery: u64,
    /// Discovery datagram size.
    pub discovery_size: usize,
    /// DNS period.
    pub dns: u64,
    /// NTP period.
    pub ntp: u64,
}

impl Default for PlugParams {
    fn default() -> Self {
        PlugParams {
            heartbeat: (30 * SEC, 0.066),
            switches_per_day: 6.0,
            poll: (30 * SEC, 0.02),
            poll_reply: 600,
            discovery: 5 * SEC,
            discovery_size: 180,
            dns: 3600 * SEC,
            ntp: 3600 * SEC,
        }
    }
}

/// Discovery broadcasts.
#[derive(Debug)]
pub struct Discovery {
    rng: SimRng,
    host: Host,
    sport: u16,
    seq: u32,
    size: usize,
    period: u64,
    next: u64,
}

impl Stream for Discovery {
    fn next_time(&self) -> Option<u64> {
        Some(self.next)
    }
    fn fire(&mut self, out: &mut Out) {
        out.mark("discovery");
        self.seq = self.seq.wrapping_add(1);
        let body = iot::tuya_discovery(&mut self.rng, self.seq, self.size);
        let l2 = wire::L2 {
            src: self.host.mac,
            dst: wire::BROADCAST,
            vlan: self.host.vlan,
        };
        let ip = wire::V4 {
            src: self.host.ip,
            dst: Ipv4Addr::BROADCAST,
            ttl: 64,
            id: out.next_ipid(),
            df: false,
        };
        out.push(out.now, wire::udp_v4(&l2, &ip, self.sport, 6667, &body));
        self.next = out.now + self.rng.jitter(self.period, 0.01);
    }
}

/// The poller's local control polls of one plug.
#[derive(Debug)]
pub struct LocalPoll {
    rng: SimRng,
    link: Link,
    ports: Ports,
    period: (u64, f64),
    reply: usize,
    mac: String,
    on: bool,
    next: u64,
    boot: u64,
}

impl Stream for LocalPoll {
    fn next_time(&self) -> Option<u64> {
        Some(self.next)
    }
    fn fire(&mut self, out: &mut Out) {
        out.mark("local_poll");
        let rng = &mut self.rng;
        let cport = self.ports.take(rng);
        let mut c = {
            let lat = [rng.range(100, 300), rng.range(MS, 4 * MS)];
            common::new_conn(rng, self.link, cport, 9999, lat)
        };
        let t = c.connect(out, out.now);
        let t = c.send(out, 0, t + rng.range(100, 400), &iot::kasa_poll());
        if rng.chance(0.02) {
            self.on = !self.on;
        }
        let on_time = (out.now - self.boot) / SEC;
        let rssi = -(rng.range(45, 70) as i32);
        let reply = iot::kasa_sysinfo(self.reply, self.on, &self.mac, rssi, on_time);
        let t = c.send(out, 1, t + c.lat[1] + rng.range(2 * MS, 8 * MS), &reply);
        // the poller closes right after reading the reply
        c.close(out, 0, t + c.lat[0] + rng.range(200, 800));
        self.next = out.now + self.rng.jitter(self.period.0, self.period.1);
    }
}

/// Adds the streams of plug `dev`; `poller` is the hub (or controller) that polls it.
pub fn add(
    streams: &mut Streams,
    ctx: &Ctx,
    site: &Site,
    dev: &Device,
    p: &PlugParams,
    poller: &Host,
) {
    let h = &dev.host;
    let name = &h.name;
    let tag = Tag::benign(dev.id);
    let gw = site.gateway(h).clone();
    let mut brng = ctx.rng(&format!("{name}/boot"));
    let boot = ctx.start + brng.range(0, 5 * SEC);

    let cname = format!("{name}/cloud");
    let mut rng = ctx.rng(&cname);
    let mut reconnects = Vec::new();
    let mut d = boot + rng.range(3600 * SEC, site::DAY);
    while d < ctx.end {
        reconnects.push(d);
        d += site::DAY;
    }
    let extras: Vec<(u64, usize)> = site::diurnal_poisson(
        &mut rng,
        boot + 30 * SEC,
        ctx.end,
        p.switches_per_day / 24.0 * 1.67,
    )
    .into_iter()
    .map(|t| (t, 150))
    .collect();
    let s = TlsSession {
        dns: h.link(gw.ep()),
        link: h.link(site.inet(h, inet::PLUG_CLOUD, 64, 13)),
        name: "a2.plugcloud.example.com".into(),
        port: 443,
        lat: common::inet_lat(&mut rng, (30, 70)),
        period: p.heartbeat.0,
        jitter: p.heartbeat.1,
        hb_up: (85, 95),
        hb_down: (65, 75),
        cert: (2800, 3600),
        reconnects,
        extras,
        ports: Ports::linux(&mut rng),
        conn: None,
        next_hb: u64::MAX,
        boot: boot + 2 * SEC,
        mark: "cloud_heartbeat",
        rng,
    };
    streams.add(&cname, "plug", tag, brng.u16(), s);

    let dname = format!("{name}/discovery");
    let mut rng = ctx.rng(&dname);
    let s = Discovery {
        host: h.clone(),
        sport: rng.range(49152, 65535) as u16,
        seq: 0,
        size: p.discovery_size,
        period: p.discovery,
        next: boot + rng.range(SEC, 5 * SEC),
        rng,
    };
    streams.add(&dname, "plug", tag, brng.u16(), s);

    let qname = format!("{name}/dns");
    let mut rng = ctx.rng(&qname);
    let s = common::DnsStream {
        link: h.link(gw.ep()),
        name: "a2.plugcloud.example.com".into(),
        answer: inet::PLUG_CLOUD,
        next: boot + p.dns + rng.range(0, 60 * SEC),
        period: p.dns,
        jitter: 0.02,
        ports: Ports::linux(&mut rng),
        rng,
    };
    streams.add(&qname, "plug", tag, brng.u16(), s);

    let nname = format!("{name}/ntp");
    let mut rng = ctx.rng(&nname);
    let s = NtpStream {
        link: h.link(site.inet(h, inet::NTP_POOL, 64, 9)),
        next: boot + rng.range(SEC, 3 * SEC),
        period: p.ntp,
        jitter: 0.02,
        rtt: rng.range(15 * MS, 40 * MS),
        rng,
    };
    streams.add(&nname, "plug", tag, brng.u16(), s);

    let pname = format!("{name}/localpoll");
    let mut rng = ctx.rng(&pname);
    let m = h.mac;
    let s = LocalPoll {
        link: Link {
            a: poller.ep(),
            b: h.ep(),
            vlan: h.vlan,
        },
        ports: Ports::linux(&mut rng),
        period: p.poll,
        reply: p.poll_reply,
        mac: format!(
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        ),
        on: rng.chance(0.5),
        next: boot + rng.range(5 * SEC, 30 * SEC),
        boot,
        rng,
    };
    streams.add(&pname, "plug", tag, brng.u16(), s);
}
