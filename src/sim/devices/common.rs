//! Building blocks shared by the device classes: ephemeral ports, DNS and NTP
//! exchanges, TLS session set-up, and generic streams (periodic NTP, periodic DNS,
//! HTTPS request/response over a fresh connection, persistent TLS session with
//! heartbeats).

use crate::sim::engine::{Out, Stream};
use crate::sim::net::{Ep, Host, Link};
use crate::sim::proto::{dns, ntp, tls};
use crate::sim::rng::SimRng;
use crate::sim::site::{MS, SEC};
use crate::sim::tcp::{TcpConn, CLIENT, SERVER};
use std::net::Ipv4Addr;

/// Sequential ephemeral ports from a random start within `[lo, hi)`.
#[derive(Debug, Clone)]
pub struct Ports {
    next: u16,
    lo: u16,
    hi: u16,
}

impl Ports {
    /// Linux's default range 32768..60999 with a random start.
    pub fn linux(rng: &mut SimRng) -> Self {
        Self::range(rng, 32768, 61000)
    }
    /// Windows' default range 49152..65535 with a random start.
    pub fn windows(rng: &mut SimRng) -> Self {
        Self::range(rng, 49152, 65535)
    }
    /// A custom range with a random start.
    pub fn range(rng: &mut SimRng, lo: u16, hi: u16) -> Self {
        Ports {
            next: rng.range(u64::from(lo), u64::from(hi)) as u16,
            lo,
            hi,
        }
    }
    /// The next port (skipping 1..=7 ports, as concurrent sockets elsewhere would).
    pub fn take(&mut self, rng: &mut SimRng) -> u16 {
        let p = self.next;
        let step = rng.range(1, 8) as u16;
        self.next = if u32::from(self.next) + u32::from(step) >= u32::from(self.hi) {
            self.lo + step
        } else {
            self.next + step
        };
        p
    }
}

/// A DNS A lookup from `link.a` to the resolver `link.b` (UDP 53) at `t`; returns the
/// time of the answer.
#[allow(clippy::too_many_arguments)]
pub fn dns_lookup(
    out: &mut Out,
    rng: &mut SimRng,
    link: &Link,
    t: u64,
    sport: u16,
    name: &str,
    answer: Ipv4Addr,
    ttl: u32,
) -> u64 {
    let id = rng.u16();
    link.udp(out, true, t, sport, 53, &dns::query(id, name, dns::A));
    let delay = if rng.chance(0.7) {
        rng.range(300, 2 * MS)
    } else {
        rng.range(12 * MS, 45 * MS)
    };
    let ta = t + delay;
    link.udp(
        out,
        false,
        ta,
        53,
        sport,
        &dns::answer_a(id, name, &[answer], ttl),
    );
    ta
}

/// An NTP client/server exchange on UDP 123↔123 at `t`; returns the reply time.
pub fn ntp_exchange(
    out: &mut Out,
    rng: &mut SimRng,
    link: &Link,
    t: u64,
    rtt: u64,
    refid: [u8; 4],
) -> u64 {
    let req = ntp::client(t);
    link.udp(out, true, t, 123, 123, &req);
    let tr = t + rtt + rng.range(50, 400);
    let srv = ntp::server(&req, tr - rtt / 2, tr - rtt / 2 + 30, 2, refid);
    link.udp(out, false, tr, 123, 123, &srv);
    tr
}

/// A new client TCP connection with a PRNG ISN.
pub fn new_conn(rng: &mut SimRng, link: Link, cport: u16, sport: u16, lat: [u64; 2]) -> TcpConn {
    TcpConn::new(link, cport, sport, [rng.u32(), rng.u32()], lat)
}

/// Handshake + TLS 1.3 ClientHello / server flight (`cert` bytes encrypted) / client
/// Finished on `conn` starting at `t`; returns the time the client finished.
pub fn tls_open(
    out: &mut Out,
    rng: &mut SimRng,
    conn: &mut TcpConn,
    t: u64,
    sni: &str,
    cert: usize,
) -> u64 {
    let t = conn.connect(out, t);
    let t = conn.send(
        out,
        CLIENT,
        t + rng.range(100, 400),
        &tls::client_hello(rng, sni),
    );
    let t = conn.send(
        out,
        SERVER,
        t + conn.lat[SERVER] + rng.range(200, 2 * MS),
        &tls::server_flight(rng, cert),
    );
    conn.send(
        out,
        CLIENT,
        t + conn.lat[CLIENT] + rng.range(500, 3 * MS),
        &tls::client_finished(rng),
    )
}

/// A request of `up` bytes and a response of `down` bytes (TLS records) after `think`;
/// returns the time of the response's last segment.
pub fn tls_roundtrip(
    out: &mut Out,
    rng: &mut SimRng,
    conn: &mut TcpConn,
    t: u64,
    up: usize,
    down: usize,
    think: u64,
) -> u64 {
    let t = conn.send(out, CLIENT, t, &tls::app_data(rng, up));
    if down == 0 {
        return t;
    }
    conn.send(
        out,
        SERVER,
        t + conn.lat[SERVER] + think,
        &tls::app_data(rng, down),
    )
}

/// Periodic NTP (`period × (1 ± jitter)`), first exchange at `first`.
#[derive(Debug)]
pub struct NtpStream {
    /// PRNG.
    pub rng: SimRng,
    /// Device → server path.
    pub link: Link,
    /// Next exchange.
    pub next: u64,
    /// Mean period, µs.
    pub period: u64,
    /// Relative jitter.
    pub jitter: f64,
    /// Round-trip time, µs.
    pub rtt: u64,
}

impl Stream for NtpStream {
    fn next_time(&self) -> Option<u64> {
        Some(self.next)
    }
    fn fire(&mut self, out: &mut Out) {
        out.mark("ntp");
        let refid = [192, 0, 2, 1];
        ntp_exchange(out, &mut self.rng, &self.link, out.now, self.rtt, refid);
        self.next = out.now + self.rng.jitter(self.period, self.jitter);
    }
}

/// Periodic DNS lookups of one name.
#[derive(Debug)]
pub struct DnsStream {
    /// PRNG.
    pub rng: SimRng,
    /// Device → resolver path.
    pub link: Link,
    /// Name looked up.
    pub name: String,
    /// Address answered.
    pub answer: Ipv4Addr,
    /// Next lookup.
    pub next: u64,
    /// Mean period, µs.
    pub period: u64,
    /// Relative jitter.
    pub jitter: f64,
    /// Source ports.
    pub ports: Ports,
}

impl Stream for DnsStream {
    fn next_time(&self) -> Option<u64> {
        Some(self.next)
    }
    fn fire(&mut self, out: &mut Out) {
        out.mark("dns");
        let p = self.ports.take(&mut self.rng);
        dns_lookup(
            out,
            &mut self.rng,
            &self.link,
            out.now,
            p,
            &self.name,
            self.answer,
            (self.period / SEC) as u32,
        );
        self.next = out.now + self.rng.jitter(self.period, self.jitter);
    }
}

/// Parameters of one HTTPS exchange on a fresh connection.
#[derive(Debug, Clone, Copy)]
pub struct HttpsShape {
    /// Request bytes (TLS records), inclusive range.
    pub up: (usize, usize),
    /// Response bytes, inclusive range.
    pub down: (usize, usize),
    /// Encrypted server handshake bytes (certificate chain), inclusive range.
    pub cert: (usize, usize),
    /// Server think time range, µs.
    pub think: (u64, u64),
    /// Gap between segments of large bodies, µs (pacing).
    pub seg_gap: u64,
}

/// How [`HttpsStream`] schedules its exchanges.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// `period × (1 ± jitter)`.
    Periodic {
        /// Mean period, µs.
        period: u64,
        /// Relative jitter.
        jitter: f64,
    },
    /// `sleep × (1 − U(0, jitter))` (malware-style jitter that only shortens).
    Beacon {
        /// Base sleep, µs.
        sleep: u64,
        /// Maximum relative shortening.
        jitter: f64,
    },
    /// Fixed instants (consumed in order).
    At(Vec<u64>),
}

/// One HTTPS exchange per event on a new TCP+TLS connection, optionally preceded by a
/// DNS lookup; the client closes the connection.
#[derive(Debug)]
pub struct HttpsStream {
    /// PRNG.
    pub rng: SimRng,
    /// Device → resolver path (`None`: no DNS).
    pub dns: Option<Link>,
    /// Whether to look the name up before every connection (else only before the first).
    pub dns_every_time: bool,
    /// Device → server path.
    pub link: Link,
    /// Server name (SNI and DNS).
    pub name: String,
    /// Server port.
    pub port: u16,
    /// Latencies `[client, server]`.
    pub lat: [u64; 2],
    /// Exchange shape.
    pub shape: HttpsShape,
    /// Every `big_every`-th exchange (if > 0) gets a response in `big_down` instead.
    pub big_every: u64,
    /// Big-response range.
    pub big_down: (usize, usize),
    /// Schedule.
    pub schedule: Schedule,
    /// Next event (u64::MAX when done).
    pub next: u64,
    /// Last event allowed (exclusive).
    pub until: u64,
    /// Client ports.
    pub ports: Ports,
    /// Exchanges so far.
    pub count: u64,
    /// Pattern name for the summary.
    pub mark: &'static str,
}

impl HttpsStream {
    fn advance(&mut self, now: u64) {
        self.next = match &mut self.schedule {
            Schedule::Periodic { period, jitter } => now + self.rng.jitter(*period, *jitter),
            Schedule::Beacon { sleep, jitter } => {
                let f = 1.0 - self.rng.uniform(0.0, *jitter);
                now + (*sleep as f64 * f) as u64
            }
            Schedule::At(v) => {
                if v.is_empty() {
                    u64::MAX
                } else {
                    v.remove(0)
                }
            }
        };
        if self.next >= self.until {
            self.next = u64::MAX;
        }
    }
}

impl Stream for HttpsStream {
    fn next_time(&self) -> Option<u64> {
        if self.next == u64::MAX {
            None
        } else {
            Some(self.next)
        }
    }
    fn fire(&mut self, out: &mut Out) {
        out.mark(self.mark);
        let rng = &mut self.rng;
        let mut t = out.now;
        if let Some(d) = &self.dns {
            if self.dns_every_time || self.count == 0 {
                let p = self.ports.take(rng);
                t = dns_lookup(out, rng, d, t, p, &self.name, self.link.b.ip, 300)
                    + rng.range(200, 2 * MS);
            }
        }
        let cport = self.ports.take(rng);
        let mut conn = new_conn(rng, self.link, cport, self.port, self.lat);
        conn.seg_gap = self.shape.seg_gap;
        let cert = rng.range(self.shape.cert.0 as u64, self.shape.cert.1 as u64 + 1) as usize;
        let t1 = tls_open(out, rng, &mut conn, t, &self.name, cert);
        let up = rng.range(self.shape.up.0 as u64, self.shape.up.1 as u64 + 1) as usize;
        self.count += 1;
        let down = if self.big_every > 0 && self.count % self.big_every == 0 {
            rng.range(self.big_down.0 as u64, self.big_down.1 as u64 + 1) as usize
        } else {
            rng.range(self.shape.down.0 as u64, self.shape.down.1 as u64 + 1) as usize
        };
        let think = rng.range(self.shape.think.0, self.shape.think.1 + 1);
        let t1 = t1 + rng.range(100, MS);
        let t2 = tls_roundtrip(out, rng, &mut conn, t1, up, down, think);
        conn.settle(out);
        let tc = t2.max(conn.last_time()) + rng.range(5 * MS, 50 * MS);
        conn.close(out, CLIENT, tc);
        let now = out.now;
        self.advance(now);
    }
}

/// A persistent TLS session with periodic heartbeats, optional extra messages at given
/// instants (state reports, events) and periodic reconnects (full handshake, DNS first).
#[derive(Debug)]
pub struct TlsSession {
    /// PRNG.
    pub rng: SimRng,
    /// Device → resolver path.
    pub dns: Link,
    /// Device → cloud path.
    pub link: Link,
    /// Cloud name.
    pub name: String,
    /// Cloud port.
    pub port: u16,
    /// Latencies `[client, server]`.
    pub lat: [u64; 2],
    /// Heartbeat period, µs.
    pub period: u64,
    /// Relative jitter of the period.
    pub jitter: f64,
    /// Heartbeat request/response sizes (inclusive ranges).
    pub hb_up: (usize, usize),
    /// Heartbeat response size.
    pub hb_down: (usize, usize),
    /// Certificate bytes of a full handshake.
    pub cert: (usize, usize),
    /// Reconnect instants (sorted).
    pub reconnects: Vec<u64>,
    /// Extra message instants (sorted) with their upload size.
    pub extras: Vec<(u64, usize)>,
    /// Client ports.
    pub ports: Ports,
    /// Current connection.
    pub conn: Option<TcpConn>,
    /// Next heartbeat.
    pub next_hb: u64,
    /// Boot time (first connect).
    pub boot: u64,
    /// Pattern name of heartbeats for the summary.
    pub mark: &'static str,
}

impl TlsSession {
    fn connect(&mut self, out: &mut Out, t: u64) -> u64 {
        let rng = &mut self.rng;
        let p = self.ports.take(rng);
        let t = dns_lookup(out, rng, &self.dns, t, p, &self.name, self.link.b.ip, 300)
            + rng.range(200, 2 * MS);
        let cport = self.ports.take(rng);
        let mut c = new_conn(rng, self.link, cport, self.port, self.lat);
        let cert = rng.range(self.cert.0 as u64, self.cert.1 as u64 + 1) as usize;
        let t = tls_open(out, rng, &mut c, t, &self.name, cert);
        // session set-up message (device registration)
        let (t, up, down) = (
            t + rng.range(100, MS),
            rng.range(300, 600) as usize,
            rng.range(200, 400) as usize,
        );
        let t = tls_roundtrip(out, rng, &mut c, t, up, down, 5 * MS);
        c.settle(out);
        self.conn = Some(c);
        t
    }
}

impl Stream for TlsSession {
    fn next_time(&self) -> Option<u64> {
        let mut t = self.next_hb;
        if self.conn.is_none() {
            t = t.min(self.boot);
        }
        if let Some(&r) = self.reconnects.first() {
            t = t.min(r);
        }
        if let Some(&(e, _)) = self.extras.first() {
            t = t.min(e);
        }
        Some(t)
    }
    fn fire(&mut self, out: &mut Out) {
        let now = out.now;
        if self.conn.is_none() {
            out.mark("tls_connect");
            let t = self.connect(out, now);
            self.next_hb = t + self.rng.jitter(self.period, self.jitter);
            return;
        }
        if self.reconnects.first() == Some(&now) {
            self.reconnects.remove(0);
            out.mark("tls_reconnect");
            if let Some(mut c) = self.conn.take() {
                c.close(out, CLIENT, now);
            }
            let at = now + self.rng.range(200 * MS, 2 * SEC);
            let t = self.connect(out, at);
            self.next_hb = t + self.rng.jitter(self.period, self.jitter);
            return;
        }
        let extra = self.extras.first().copied().filter(|e| e.0 == now);
        let (up, down) = match extra {
            Some((_, up)) => {
                self.extras.remove(0);
                out.mark("tls_event");
                (up, self.rng.range(60, 120) as usize)
            }
            None => {
                out.mark(self.mark);
                (
                    self.rng.range(self.hb_up.0 as u64, self.hb_up.1 as u64 + 1) as usize,
                    self.rng
                        .range(self.hb_down.0 as u64, self.hb_down.1 as u64 + 1)
                        as usize,
                )
            }
        };
        let rng = &mut self.rng;
        if let Some(c) = self.conn.as_mut() {
            let think = rng.range(MS, 10 * MS);
            tls_roundtrip(out, rng, c, now, up, down, think);
            c.settle(out);
        }
        if extra.is_none() {
            self.next_hb = now + self.rng.jitter(self.period, self.jitter);
        }
    }
}

/// A host's link to an Internet peer with an RTT, as latencies `[device, peer]`.
pub fn inet_lat(rng: &mut SimRng, rtt_ms: (u64, u64)) -> [u64; 2] {
    [rng.range(80, 300), rng.range(rtt_ms.0 * MS, rtt_ms.1 * MS)]
}

/// Latencies `[client, server]` for two LAN hosts.
pub fn lan_lat(rng: &mut SimRng) -> [u64; 2] {
    [rng.range(80, 300), rng.range(200, 900)]
}

/// The device → resolver link of a host (its gateway).
pub fn resolver_link(dev: &Host, gw: &Host) -> Link {
    dev.link(gw.ep())
}

/// Shorthand for an [`Ep`] of a LAN host.
pub fn ep(h: &Host) -> Ep {
    h.ep()
}
