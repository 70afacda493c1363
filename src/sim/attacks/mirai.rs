//! Mirai: telnet SYN scanner (`scanner.c`), telnet brute forcer (`scanner.c` state
//! machine and credential table) and the bot's C2 session (`main.c`: connect to the CNC on
//! port 23, `00 00 00 01` + id length, two-byte zero heartbeat every 6th 10-s select
//! timeout, echoed by the CNC).

use super::EpisodeSpec;
use crate::sim::devices::common::{self, Ports};
use crate::sim::engine::{Out, Stream};
use crate::sim::net::{Ep, Link};
use crate::sim::proto::telnet;
use crate::sim::rng::SimRng;
use crate::sim::site::{inet, MS, SEC};
use crate::sim::tcp::{self, TcpConn, CLIENT, SERVER};
use crate::sim::wire::{self, Tcp};
use std::net::Ipv4Addr;

/// Mirai's `get_random_ip`: a random IPv4 address outside the excluded ranges.
pub fn random_target(rng: &mut SimRng) -> Ipv4Addr {
    loop {
        let ip = rng.u32();
        let o = ip.to_be_bytes();
        let (o1, o2) = (o[0], o[1]);
        let excluded = o1 == 127
            || o1 == 0
            || o1 == 3
            || o1 == 15
            || o1 == 16
            || o1 == 56
            || o1 == 10
            || (o1 == 192 && o2 == 168)
            || (o1 == 172 && (16..32).contains(&o2))
            || (o1 == 100 && (64..127).contains(&o2))
            || (o1 == 169 && o2 > 254)
            || (o1 == 198 && (18..20).contains(&o2))
            || o1 >= 224
            || matches!(
                o1,
                6 | 7 | 11 | 21 | 22 | 26 | 28 | 29 | 30 | 33 | 55 | 214 | 215
            );
        if !excluded {
            return Ipv4Addr::from(o);
        }
    }
}

/// The telnet SYN scanner running on an infected device.
#[derive(Debug)]
pub struct Scanner {
    rng: SimRng,
    dev: Ep,
    gw_mac: [u8; 6],
    vlan: Option<u16>,
    sport: u16,
    per_second: u32,
    responder_share: f64,
    next: u64,
    end: u64,
    count: u64,
    responders: u64,
}

impl Scanner {
    /// A scanner on `dev` (seen through gateway `gw_mac`) from `start` to `end`.
    pub fn new(
        mut rng: SimRng,
        dev: Ep,
        gw_mac: [u8; 6],
        vlan: Option<u16>,
        ep: &EpisodeSpec,
    ) -> Self {
        let sport = rng.range(1024, 65536) as u16;
        let per_second = if ep.rate > 0.0 { ep.rate as u32 } else { 160 };
        let rng_start = rng.range(0, 150);
        Scanner {
            rng,
            dev,
            gw_mac,
            vlan,
            sport,
            per_second,
            responder_share: 0.02,
            next: ep.start,
            end: ep.start + ep.duration,
            count: 0,
            responders: rng_start,
        }
    }
}

impl Stream for Scanner {
    fn next_time(&self) -> Option<u64> {
        (self.next < self.end).then_some(self.next)
    }
    fn fire(&mut self, out: &mut Out) {
        out.mark("scan_burst");
        let mut t = out.now;
        for _ in 0..self.per_second {
            self.count += 1;
            let responder = self.rng.chance(self.responder_share);
            let dst = if responder {
                // honeypots cycle through 203.0.113.100-249 so a 5-tuple is not reused for ~45 s
                self.responders += 1;
                Ipv4Addr::new(203, 0, 113, 100 + (self.responders % 150) as u8)
            } else {
                random_target(&mut self.rng)
            };
            let dport = if self.count % 10 == 0 { 2323 } else { 23 };
            let link = Link {
                a: self.dev,
                b: Ep {
                    mac: self.gw_mac,
                    ip: dst,
                    ttl: 50,
                },
                vlan: self.vlan,
            };
            let seq = u32::from(dst);
            let syn = Tcp {
                sport: self.sport,
                dport,
                seq,
                ack: 0,
                flags: wire::SYN,
                window: self.rng.u16(),
                options: &[],
            };
            let id = self.rng.u16();
            tcp::raw_segment(out, &link, true, t, id, false, &syn, &[]);
            if responder {
                let tr = t + self.rng.range(40 * MS, 160 * MS);
                let isn = self.rng.u32();
                let sa = Tcp {
                    sport: dport,
                    dport: self.sport,
                    seq: isn,
                    ack: seq.wrapping_add(1),
                    flags: wire::SYN | wire::ACK,
                    window: 29200,
                    options: &tcp::SYN_OPTIONS[..4],
                };
                let id2 = self.rng.u16();
                tcp::raw_segment(out, &link, false, tr, id2, true, &sa, &[]);
                // the scanner's kernel has no socket for it and resets
                let rst = Tcp {
                    sport: self.sport,
                    dport,
                    seq: seq.wrapping_add(1),
                    ack: 0,
                    flags: wire::RST,
                    window: 0,
                    options: &[],
                };
                tcp::raw_segment(
                    out,
                    &link,
                    true,
                    tr + self.rng.range(30, 200),
                    0,
                    true,
                    &rst,
                    &[],
                );
            }
            t += self.rng.range(20, 250);
        }
        self.next = out.now + SEC;
    }
}

/// Telnet brute force against one device (one credential pair per connection).
#[derive(Debug)]
pub struct BruteForce {
    rng: SimRng,
    link: Link,
    ports: Ports,
    times: Vec<u64>,
    tries: usize,
    success: bool,
    done: usize,
}

impl BruteForce {
    /// Up to 10 tries spread over the episode; the last succeeds if `ep.success`.
    pub fn new(mut rng: SimRng, link: Link, ep: &EpisodeSpec) -> Self {
        let tries = rng.range(6, 11) as usize;
        let step = ep.duration / tries as u64;
        let times = (0..tries as u64)
            .map(|i| ep.start + i * step + rng.range(0, step / 3 + 1))
            .collect();
        let ports = Ports::linux(&mut rng);
        BruteForce {
            rng,
            link,
            ports,
            times,
            tries,
            success: ep.success,
            done: 0,
        }
    }
}

impl Stream for BruteForce {
    fn next_time(&self) -> Option<u64> {
        self.times.get(self.done).copied()
    }
    fn fire(&mut self, out: &mut Out) {
        out.mark("telnet_attempt");
        let rng = &mut self.rng;
        self.done += 1;
        let last = self.done == self.tries;
        let cport = self.ports.take(rng);
        // client = attacker (reacts after the WAN RTT), server = the device
        let mut c: TcpConn = {
            let lat = [rng.range(60 * MS, 120 * MS), rng.range(MS, 3 * MS)];
            common::new_conn(rng, self.link, cport, 23, lat)
        };
        let mut t = c.connect(out, out.now);
        let srv = |c: &mut TcpConn, out: &mut Out, t: u64, d: &[u8], rng: &mut SimRng| {
            c.send(out, SERVER, t + c.lat[SERVER] + rng.range(200, 2 * MS), d)
        };
        let cli = |c: &mut TcpConn, out: &mut Out, t: u64, d: &[u8], rng: &mut SimRng| {
            c.send(out, CLIENT, t + c.lat[CLIENT] + rng.range(100, MS), d)
        };
        t = srv(&mut c, out, t, &telnet::server_negotiation(), rng);
        t = cli(&mut c, out, t, &telnet::mirai_negotiation_reply(), rng);
        t = srv(&mut c, out, t, b"\r\nIPCamera login: ", rng);
        let weights: Vec<u32> = telnet::MIRAI_CREDENTIALS.iter().map(|c| c.2).collect();
        let (user, pass, _) = telnet::MIRAI_CREDENTIALS[rng.weighted(&weights)];
        t = cli(&mut c, out, t, format!("{user}\r\n").as_bytes(), rng);
        t = srv(&mut c, out, t, b"Password: ", rng);
        t = cli(&mut c, out, t, format!("{pass}\r\n").as_bytes(), rng);
        if last && self.success {
            t = srv(&mut c, out, t + 300 * MS, b"\r\n\r\nBusyBox v1.19.4 (2016-03-22 18:15:23 CST) built-in shell (ash)\r\nEnter 'help' for a list of built-in commands.\r\n\r\n# ", rng);
            for cmd in telnet::MIRAI_POST_LOGIN {
                t = cli(&mut c, out, t, format!("{cmd}\r\n").as_bytes(), rng);
                let reply = if cmd.contains("MIRAI") {
                    "MIRAI: applet not found\r\n# ".to_string()
                } else {
                    format!("-sh: {cmd}: not found\r\n# ")
                };
                t = srv(&mut c, out, t, reply.as_bytes(), rng);
            }
        } else {
            t = srv(
                &mut c,
                out,
                t + rng.range(500 * MS, 1500 * MS),
                b"\r\nLogin incorrect\r\nIPCamera login: ",
                rng,
            );
        }
        c.settle(out);
        let tc = t.max(c.last_time()) + c.lat[CLIENT];
        c.close(out, CLIENT, tc);
    }
}

/// The bot's C2 session.
#[derive(Debug)]
pub struct C2Session {
    rng: SimRng,
    dns: Link,
    link: Link,
    conn: Option<TcpConn>,
    cport: u16,
    next: u64,
    end: u64,
    closed: bool,
}

impl C2Session {
    /// A session from `ep.start` to the end of the episode.
    pub fn new(mut rng: SimRng, dns: Link, link: Link, ep: &EpisodeSpec) -> Self {
        let cport = rng.range(32768, 61000) as u16;
        C2Session {
            rng,
            dns,
            link,
            conn: None,
            cport,
            next: ep.start,
            end: ep.start + ep.duration,
            closed: false,
        }
    }
}

impl Stream for C2Session {
    fn next_time(&self) -> Option<u64> {
        (!self.closed).then_some(self.next)
    }
    fn fire(&mut self, out: &mut Out) {
        let now = out.now;
        let rng = &mut self.rng;
        match self.conn.as_mut() {
            None => {
                out.mark("c2_connect");
                let dport = rng.range(32768, 61000) as u16;
                let t = common::dns_lookup(
                    out,
                    rng,
                    &self.dns,
                    now,
                    dport,
                    "cnc.changeme.com",
                    inet::MIRAI_CNC,
                    60,
                );
                let mut c = {
                    let lat = [rng.range(100, 300), rng.range(60 * MS, 120 * MS)];
                    common::new_conn(rng, self.link, self.cport, 23, lat)
                };
                let t = c.connect(out, t + rng.range(100, MS));
                let t = c.send(out, CLIENT, t + 200, &[0, 0, 0, 1]);
                c.send(out, CLIENT, t + 150, &[0]);
                c.settle(out);
                self.conn = Some(c);
                self.next = now + 60 * SEC + rng.range(0, 200 * MS);
            }
            Some(c) if now >= self.end => {
                c.close(out, CLIENT, now);
                self.closed = true;
            }
            Some(c) => {
                out.mark("c2_heartbeat");
                let t = c.send(out, CLIENT, now, &[0, 0]);
                c.send(out, SERVER, t + c.lat[SERVER] + rng.range(100, MS), &[0, 0]);
                c.settle(out);
                // six 10-s select timeouts, each a little late
                self.next = (now + 60 * SEC + rng.range(0, 300 * MS)).min(self.end.max(now + 1));
            }
        }
    }
}
