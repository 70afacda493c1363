//! Hub: mDNS over IPv4 and IPv6 (boot announcements 1 s apart, then service queries
//! every 60–120 s answered by the plugs), SSDP NOTIFY bursts every ~900 s and M-SEARCH
//! every 300 s answered by plugs and cameras, a persistent TLS WebSocket to its cloud
//! (keepalive 45 s), DNS before connecting, NTP from the gateway. It also polls its
//! plugs (see `plug.rs`).

use super::common::{self, NtpStream, Ports, TlsSession};
use crate::sim::engine::{Out, Stream, Tag};
use crate::sim::net::Host;
use crate::sim::proto::{dns, ssdp};
use crate::sim::rng::SimRng;
use crate::sim::site::{inet, Ctx, Device, Site, Streams, MS, SEC};
use crate::sim::wire;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Hub parameters (defaults from the simulator spec §6.2).
#[derive(Debug, Clone)]
pub struct HubParams {
    /// mDNS boot announcements.
    pub announcements: u32,
    /// mDNS query interval range.
    pub mdns_query: (u64, u64),
    /// SSDP NOTIFY interval and jitter.
    pub notify: (u64, f64),
    /// SSDP M-SEARCH interval and jitter.
    pub msearch: (u64, f64),
    /// Cloud WebSocket keepalive period and jitter.
    pub ws_keepalive: (u64, f64),
    /// NTP period and jitter.
    pub ntp: (u64, f64),
}

impl Default for HubParams {
    fn default() -> Self {
        HubParams {
            announcements: 3,
            mdns_query: (60 * SEC, 120 * SEC),
            notify: (900 * SEC, 0.05),
            msearch: (300 * SEC, 0.05),
            ws_keepalive: (45 * SEC, 0.03),
            ntp: (1024 * SEC, 0.10),
        }
    }
}

const MDNS_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
const SSDP_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);

fn mdns_v6() -> Ipv6Addr {
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb)
}

/// A responder of mDNS/SSDP queries (a plug or a camera).
#[derive(Debug, Clone)]
pub struct Responder {
    /// The device.
    pub host: Host,
    /// Its device index.
    pub device: u16,
    /// Whether it answers `_hap._tcp` mDNS queries.
    pub mdns: bool,
}

fn mdns_v4(out: &mut Out, h: &Host, t: u64, payload: &[u8], tag: Tag) {
    let l2 = wire::L2 {
        src: h.mac,
        dst: wire::multicast_mac_v4(MDNS_V4),
        vlan: h.vlan,
    };
    let ip = wire::V4 {
        src: h.ip,
        dst: MDNS_V4,
        ttl: 255,
        id: 0,
        df: true,
    };
    out.push_tagged(t, wire::udp_v4(&l2, &ip, 5353, 5353, payload), tag);
}

fn mdns_6(out: &mut Out, h: &Host, t: u64, payload: &[u8], tag: Tag) {
    let l2 = wire::L2 {
        src: h.mac,
        dst: wire::multicast_mac_v6(mdns_v6()),
        vlan: h.vlan,
    };
    out.push_tagged(
        t,
        wire::udp_v6(&l2, h.ip6_link_local(), mdns_v6(), 255, 5353, 5353, payload),
        tag,
    );
}

fn announcement(h: &Host) -> Vec<u8> {
    let inst = format!("{} Bridge._hap._tcp.local", h.name);
    let target = format!("{}.local", h.name);
    let rrs = vec![
        dns::Rr {
            owner: dns::Owner::Name("_hap._tcp.local".into()),
            rtype: dns::PTR,
            class: dns::IN,
            ttl: 4500,
            rdata: dns::name_rdata(&inst),
        },
        dns::Rr {
            owner: dns::Owner::Name(inst.clone()),
            rtype: dns::SRV,
            class: dns::IN | dns::CACHE_FLUSH,
            ttl: 120,
            rdata: dns::srv_rdata(0, 0, 51827, &target),
        },
        dns::Rr {
            owner: dns::Owner::Name(inst),
            rtype: dns::TXT,
            class: dns::IN | dns::CACHE_FLUSH,
            ttl: 4500,
            rdata: dns::txt_rdata(&[
                b"c#=4",
                b"ff=0",
                b"id=2A:1B:3C:4D:5E:6F",
                b"md=Bridge",
                b"pv=1.1",
                b"s#=1",
                b"sf=0",
                b"ci=2",
            ]),
        },
        dns::Rr {
            owner: dns::Owner::Name(target),
            rtype: dns::A,
            class: dns::IN | dns::CACHE_FLUSH,
            ttl: 120,
            rdata: h.ip.octets().to_vec(),
        },
    ];
    dns::message(0, 0x8400, &[], &rrs)
}

fn plug_answer(h: &Host) -> Vec<u8> {
    let inst = format!("{}._hap._tcp.local", h.name);
    let target = format!("{}.local", h.name);
    let rrs = vec![
        dns::Rr {
            owner: dns::Owner::Name("_hap._tcp.local".into()),
            rtype: dns::PTR,
            class: dns::IN,
            ttl: 4500,
            rdata: dns::name_rdata(&inst),
        },
        dns::Rr {
            owner: dns::Owner::Name(inst.clone()),
            rtype: dns::SRV,
            class: dns::IN | dns::CACHE_FLUSH,
            ttl: 120,
            rdata: dns::srv_rdata(0, 0, 8080, &target),
        },
        dns::Rr {
            owner: dns::Owner::Name(inst),
            rtype: dns::TXT,
            class: dns::IN | dns::CACHE_FLUSH,
            ttl: 4500,
            rdata: dns::txt_rdata(&[
                b"c#=2",
                b"ff=2",
                b"md=HS103",
                b"pv=1.1",
                b"s#=1",
                b"sf=1",
                b"ci=7",
            ]),
        },
        dns::Rr {
            owner: dns::Owner::Name(target),
            rtype: dns::A,
            class: dns::IN | dns::CACHE_FLUSH,
            ttl: 120,
            rdata: h.ip.octets().to_vec(),
        },
    ];
    dns::message(0, 0x8400, &[], &rrs)
}

/// mDNS announcements and queries.
#[derive(Debug)]
pub struct Mdns {
    rng: SimRng,
    p: HubParams,
    host: Host,
    tag: Tag,
    responders: Vec<Responder>,
    announced: u32,
    next: u64,
}

impl Stream for Mdns {
    fn next_time(&self) -> Option<u64> {
        Some(self.next)
    }
    fn fire(&mut self, out: &mut Out) {
        let now = out.now;
        if self.announced < self.p.announcements {
            out.mark("mdns_announce");
            let a = announcement(&self.host);
            mdns_v4(out, &self.host, now, &a, self.tag);
            mdns_6(out, &self.host, now + 150, &a, self.tag);
            self.announced += 1;
            self.next = if self.announced < self.p.announcements {
                now + SEC
            } else {
                now + self.rng.range(self.p.mdns_query.0, self.p.mdns_query.1)
            };
            return;
        }
        out.mark("mdns_query");
        let q = dns::message(
            0,
            0,
            &[
                ("_hap._tcp.local", dns::PTR, dns::IN),
                ("_googlecast._tcp.local", dns::PTR, dns::IN),
                ("_hue._tcp.local", dns::PTR, dns::IN),
            ],
            &[],
        );
        mdns_v4(out, &self.host, now, &q, self.tag);
        mdns_6(out, &self.host, now + 120, &q, self.tag);
        for r in &self.responders {
            if r.mdns {
                let t = now + self.rng.range(20 * MS, 120 * MS);
                mdns_v4(
                    out,
                    &r.host,
                    t,
                    &plug_answer(&r.host),
                    Tag::benign(r.device),
                );
            }
        }
        self.next = now + self.rng.range(self.p.mdns_query.0, self.p.mdns_query.1);
    }
}

/// SSDP NOTIFY bursts and M-SEARCH with unicast answers.
#[derive(Debug)]
pub struct Ssdp {
    rng: SimRng,
    p: HubParams,
    host: Host,
    uuid: String,
    responders: Vec<Responder>,
    next_notify: u64,
    next_search: u64,
    ports: Ports,
}

impl Ssdp {
    fn send(&self, out: &mut Out, t: u64, sport: u16, payload: &[u8]) {
        let l2 = wire::L2 {
            src: self.host.mac,
            dst: wire::multicast_mac_v4(SSDP_V4),
            vlan: self.host.vlan,
        };
        let ip = wire::V4 {
            src: self.host.ip,
            dst: SSDP_V4,
            ttl: 2,
            id: 0,
            df: true,
        };
        out.push(t, wire::udp_v4(&l2, &ip, sport, 1900, payload));
    }
}

impl Stream for Ssdp {
    fn next_time(&self) -> Option<u64> {
        Some(self.next_notify.min(self.next_search))
    }
    fn fire(&mut self, out: &mut Out) {
        let now = out.now;
        let loc = format!("http://{}:49152/description.xml", self.host.ip);
        let server = "Linux/4.14 UPnP/1.1 HubOS/3.2";
        if now == self.next_notify {
            out.mark("ssdp_notify");
            let nts = [
                format!("uuid:{}", self.uuid),
                "upnp:rootdevice".to_string(),
                "urn:schemas-upnp-org:device:Basic:1".to_string(),
            ];
            let repeats = self.rng.range(2, 4);
            let mut t = now;
            for _ in 0..repeats {
                for nt in &nts {
                    let n = ssdp::notify(&loc, nt, &self.uuid, server, 1800);
                    self.send(out, t, 1900, &n);
                    t += self.rng.range(100, 2 * MS);
                }
                t += self.rng.range(50 * MS, 200 * MS);
            }
            self.next_notify = now + self.rng.jitter(self.p.notify.0, self.p.notify.1);
        } else {
            out.mark("ssdp_msearch");
            let sport = self.ports.take(&mut self.rng);
            self.send(out, now, sport, &ssdp::msearch("ssdp:all", 2));
            for r in &self.responders {
                let t = now + self.rng.range(10 * MS, 2 * SEC);
                let l2 = wire::L2 {
                    src: r.host.mac,
                    dst: self.host.mac,
                    vlan: r.host.vlan,
                };
                let ip = wire::V4 {
                    src: r.host.ip,
                    dst: self.host.ip,
                    ttl: 64,
                    id: self.rng.u16(),
                    df: true,
                };
                let loc = format!("http://{}:80/upnp/desc.xml", r.host.ip);
                let uuid = format!(
                    "5f9ec1b3-ed59-79bc-4530-{:012x}",
                    u64::from(r.host.mac[5]) | 0x7453_0000_0000
                );
                let body = ssdp::search_response(
                    &loc,
                    "upnp:rootdevice",
                    &uuid,
                    "Linux/3.10 UPnP/1.0 IoT/1.0",
                    1800,
                    "Mon, 05 Jan 2026 00:00:00 GMT",
                );
                out.push_tagged(
                    t,
                    wire::udp_v4(&l2, &ip, 1900, sport, &body),
                    Tag::benign(r.device),
                );
            }
            self.next_search = now + self.rng.jitter(self.p.msearch.0, self.p.msearch.1);
        }
    }
}

/// Adds the streams of hub `dev`; `responders` answer its discovery.
pub fn add(
    streams: &mut Streams,
    ctx: &Ctx,
    site: &Site,
    dev: &Device,
    p: &HubParams,
    responders: Vec<Responder>,
) {
    let h = &dev.host;
    let name = &h.name;
    let tag = Tag::benign(dev.id);
    let gw = site.gateway(h).clone();
    let mut brng = ctx.rng(&format!("{name}/boot"));
    let boot = ctx.start + brng.range(0, 5 * SEC);

    let mname = format!("{name}/mdns");
    let rng = ctx.rng(&mname);
    let s = Mdns {
        p: p.clone(),
        host: h.clone(),
        tag,
        responders: responders.iter().filter(|r| r.mdns).cloned().collect(),
        announced: 0,
        next: boot + SEC,
        rng,
    };
    streams.add(&mname, "hub", tag, brng.u16(), s);

    let sname = format!("{name}/ssdp");
    let mut rng = ctx.rng(&sname);
    let uuid = format!(
        "2f402f80-da50-11e1-9b23-{:012x}",
        rng.u64() & 0xffff_ffff_ffff
    );
    let s = Ssdp {
        p: p.clone(),
        host: h.clone(),
        uuid,
        responders,
        next_notify: boot + 3 * SEC,
        next_search: boot + rng.range(10 * SEC, 40 * SEC),
        ports: Ports::linux(&mut rng),
        rng,
    };
    streams.add(&sname, "hub", tag, brng.u16(), s);

    let cname = format!("{name}/cloud");
    let mut rng = ctx.rng(&cname);
    let s = TlsSession {
        dns: h.link(gw.ep()),
        link: h.link(site.inet(h, inet::HUB_CLOUD, 64, 10)),
        name: "ws.hubcloud.example.org".into(),
        port: 443,
        lat: common::inet_lat(&mut rng, (20, 50)),
        period: p.ws_keepalive.0,
        jitter: p.ws_keepalive.1,
        hb_up: (60, 100),
        hb_down: (60, 90),
        cert: (3000, 4200),
        reconnects: Vec::new(),
        extras: Vec::new(),
        ports: Ports::linux(&mut rng),
        conn: None,
        next_hb: u64::MAX,
        boot: boot + 4 * SEC,
        mark: "ws_keepalive",
        rng,
    };
    streams.add(&cname, "hub", tag, brng.u16(), s);

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
    streams.add(&nname, "hub", tag, brng.u16(), s);
}
