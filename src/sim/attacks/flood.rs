//! Mirai floods (`attack_tcp.c`, `attack_udp.c`, `attack_app.c`):
//! - `syn`: 60-byte packets (20 B options: MSS 1400+rand(0..15), SACK-permitted,
//!   timestamp with random TSval and TSecr 0, NOP, window scale 6), DF, TTL 64, random IP
//!   id, source port and sequence per packet; the victim answers SYN/ACK and the bot's
//!   kernel resets. Source ports are not re-used toward the victim within 15 s, so
//!   every SYN is its own flow.
//! - `udp`: 512 B random payload (IP total 540 B), random ports, TTL 64, DF clear; the
//!   victim stays silent (ICMP unreachable suppressed).
//! - `ack`: ACK only, 512 B random payload, random seq/ack/ports/window; the victim
//!   answers each with a RST.
//! - `http`: keep-alive connections repeating `GET /` with one of Mirai's five
//!   User-Agents, answered by the device's web server.

use super::EpisodeSpec;
use crate::sim::devices::common::{self, Ports};
use crate::sim::engine::{Label, Out, Stream};
use crate::sim::net::Link;
use crate::sim::proto::http;
use crate::sim::rng::SimRng;
use crate::sim::site::{MS, SEC};
use crate::sim::tcp::{self, TcpConn, CLIENT, SERVER};
use crate::sim::wire::{self, Tcp};

const TICK: u64 = 10 * MS;

/// Port ranges random-port floods draw from: the real bot uses 0..65535, but random
/// payload on a port with a registered Wireshark dissector is reported as malformed, so
/// the simulator only uses ranges without a default dissector (from `tshark -G decodes`,
/// Wireshark 4.0) and outside the site's own ports.
const FLOOD_RANGES: [(u16, u16); 5] = [
    (32513, 34961),
    (34981, 37007),
    (37009, 41169),
    (41171, 44320),
    (50002, 54327),
];

/// A random port from [`FLOOD_RANGES`].
fn flood_port(rng: &mut SimRng) -> u16 {
    let total: u64 = FLOOD_RANGES.iter().map(|r| u64::from(r.1 - r.0) + 1).sum();
    let mut x = rng.range(0, total);
    for (lo, hi) in FLOOD_RANGES {
        let n = u64::from(hi - lo) + 1;
        if x < n {
            return lo + x as u16;
        }
        x -= n;
    }
    FLOOD_RANGES[0].0
}
const PORT_REUSE: u64 = 15 * SEC;

/// A packet flood (SYN, UDP or ACK) from the attacker (`link.b`) to the victim
/// (`link.a`).
#[derive(Debug)]
pub struct Flood {
    rng: SimRng,
    kind: Label,
    link: Link,
    dport: u16,
    pps: f64,
    next: u64,
    end: u64,
    carry: f64,
    port_used: Vec<u64>,
}

impl Flood {
    /// A flood of `ep.kind` (SynFlood, UdpFlood or AckFlood) at `ep.rate` pps.
    pub fn new(rng: SimRng, link: Link, dport: u16, ep: &EpisodeSpec) -> Self {
        let pps = if ep.rate > 0.0 { ep.rate } else { 2000.0 };
        Flood {
            rng,
            kind: ep.kind,
            link,
            dport,
            pps,
            next: ep.start,
            end: ep.start + ep.duration,
            carry: 0.0,
            port_used: vec![0; 65536],
        }
    }

    fn free_port(&mut self, t: u64) -> u16 {
        for _ in 0..64 {
            let p = self.rng.range(1024, 65536) as u16;
            let last = self.port_used[usize::from(p)];
            if last == 0 || last + PORT_REUSE < t {
                self.port_used[usize::from(p)] = t;
                return p;
            }
        }
        let p = self.rng.range(1024, 65536) as u16;
        self.port_used[usize::from(p)] = t;
        p
    }

    fn one(&mut self, out: &mut Out, t: u64) {
        let link = self.link;
        match self.kind {
            Label::SynFlood => {
                let sport = self.free_port(t);
                let seq = self.rng.u32();
                let mss = 1400 + self.rng.range(0, 16) as u16;
                let tsval = self.rng.u32().to_be_bytes();
                let m = mss.to_be_bytes();
                let opts = [
                    2, 4, m[0], m[1], 4, 2, 8, 10, tsval[0], tsval[1], tsval[2], tsval[3], 0, 0, 0,
                    0, 1, 3, 3, 6,
                ];
                let syn = Tcp {
                    sport,
                    dport: self.dport,
                    seq,
                    ack: 0,
                    flags: wire::SYN,
                    window: self.rng.u16(),
                    options: &opts,
                };
                let id = self.rng.u16();
                tcp::raw_segment(out, &link, false, t, id, true, &syn, &[]);
                let t2 = t + self.rng.range(50, 400);
                let isn = self.rng.u32();
                let sa = Tcp {
                    sport: self.dport,
                    dport: sport,
                    seq: isn,
                    ack: seq.wrapping_add(1),
                    flags: wire::SYN | wire::ACK,
                    window: 64240,
                    options: &tcp::SYN_OPTIONS,
                };
                let id2 = out.next_ipid();
                tcp::raw_segment(out, &link, true, t2, id2, true, &sa, &[]);
                let rst = Tcp {
                    sport,
                    dport: self.dport,
                    seq: seq.wrapping_add(1),
                    ack: 0,
                    flags: wire::RST,
                    window: 0,
                    options: &[],
                };
                tcp::raw_segment(
                    out,
                    &link,
                    false,
                    t2 + self.rng.range(60 * MS, 120 * MS),
                    0,
                    true,
                    &rst,
                    &[],
                );
            }
            Label::UdpFlood => {
                let sport = flood_port(&mut self.rng);
                let dport = flood_port(&mut self.rng);
                let mut payload = self.rng.bytes(512);
                // version bits != 2 so RTP/RTCP heuristics do not claim the random data
                payload[0] &= 0x3f;
                payload[1] &= 0xbf; // never a COTP UD TPDU code (0x4_) for the COTP-over-UDP heuristic
                let ip = link.v4(false, self.rng.u16(), false);
                out.push(
                    t,
                    wire::udp_v4(&link.l2(false), &ip, sport, dport, &payload),
                );
            }
            _ => {
                let sport = flood_port(&mut self.rng);
                let dport = flood_port(&mut self.rng);
                let ack = self.rng.u32();
                let mut payload = self.rng.bytes(512);
                payload[0] &= 0x3f;
                payload[1] &= 0xbf; // never a COTP UD TPDU code (0x4_) for the COTP-over-UDP heuristic
                let seg = Tcp {
                    sport,
                    dport,
                    seq: self.rng.u32(),
                    ack,
                    flags: wire::ACK,
                    window: self.rng.u16(),
                    options: &[],
                };
                let id = self.rng.u16();
                tcp::raw_segment(out, &link, false, t, id, false, &seg, &payload);
                let rst = Tcp {
                    sport: dport,
                    dport: sport,
                    seq: ack,
                    ack: 0,
                    flags: wire::RST,
                    window: 0,
                    options: &[],
                };
                let id2 = out.next_ipid();
                tcp::raw_segment(
                    out,
                    &link,
                    true,
                    t + self.rng.range(30, 300),
                    id2,
                    true,
                    &rst,
                    &[],
                );
            }
        }
    }
}

impl Stream for Flood {
    fn next_time(&self) -> Option<u64> {
        (self.next < self.end).then_some(self.next)
    }
    fn fire(&mut self, out: &mut Out) {
        out.mark("flood_tick");
        let want = self.pps * (TICK as f64 / SEC as f64) + self.carry;
        let n = want.floor() as u64;
        self.carry = want - n as f64;
        let mut times: Vec<u64> = (0..n).map(|_| out.now + self.rng.range(0, TICK)).collect();
        times.sort_unstable();
        for t in times {
            self.one(out, t);
        }
        self.next = out.now + TICK;
    }
}

/// Mirai `http` flood: `conns` keep-alive connections, `rate` requests/s in total.
#[derive(Debug)]
pub struct HttpFlood {
    rng: SimRng,
    conns: Vec<(TcpConn, usize, u64)>,
    host: String,
    pending: Vec<(u64, usize)>,
    link: Link,
    ports: Ports,
    n: usize,
    interval: u64,
    end: u64,
    started: bool,
    start: u64,
}

impl HttpFlood {
    /// A flood against `link.b`:80 from attacker `link.a`.
    pub fn new(mut rng: SimRng, link: Link, conns: usize, ep: &EpisodeSpec) -> Self {
        let rate = if ep.rate > 0.0 { ep.rate } else { 200.0 };
        let interval = (conns as f64 / rate * SEC as f64) as u64;
        let ports = Ports::linux(&mut rng);
        HttpFlood {
            rng,
            conns: Vec::new(),
            host: link.b.ip.to_string(),
            pending: Vec::new(),
            link,
            ports,
            n: conns,
            interval,
            end: ep.start + ep.duration,
            started: false,
            start: ep.start,
        }
    }
}

impl Stream for HttpFlood {
    fn next_time(&self) -> Option<u64> {
        if !self.started {
            return Some(self.start);
        }
        self.pending.first().map(|p| p.0)
    }
    fn fire(&mut self, out: &mut Out) {
        let now = out.now;
        if !self.started {
            self.started = true;
            for i in 0..self.n {
                let rng = &mut self.rng;
                let cport = self.ports.take(rng);
                let mut c = {
                    let lat = [rng.range(50 * MS, 90 * MS), rng.range(300, 2 * MS)];
                    common::new_conn(rng, self.link, cport, 80, lat)
                };
                let t = c.connect(out, now + i as u64 * rng.range(200, 3 * MS));
                let ua = rng.index(http::MIRAI_USER_AGENTS.len());
                self.conns.push((c, ua, t));
                self.pending.push((t + rng.range(100, MS), i));
            }
            self.pending.sort_unstable();
            return;
        }
        if self.pending.is_empty() {
            return;
        }
        let (_, i) = self.pending.remove(0);
        let rng = &mut self.rng;
        let Some((c, ua, _)) = self.conns.get_mut(i) else {
            return;
        };
        if now >= self.end {
            c.settle(out);
            let tc = now.max(c.last_time() + 1);
            c.close(out, CLIENT, tc);
            return;
        }
        out.mark("http_request");
        let t = c.send(
            out,
            CLIENT,
            now,
            &http::get(&self.host, "/", http::MIRAI_USER_AGENTS[*ua]),
        );
        let body = rng.range(300, 1200) as usize;
        let t = c.send(
            out,
            SERVER,
            t + c.lat[SERVER] + rng.range(500, 3 * MS),
            &http::ok_html(body),
        );
        // the bot re-requests as soon as the reply arrived, paced to the target rate
        let next =
            (t + c.lat[CLIENT]).max(now + self.interval + rng.range(0, self.interval / 4 + 1));
        let pos = self.pending.partition_point(|p| p.0 <= next);
        self.pending.insert(pos, (next, i));
    }
}
