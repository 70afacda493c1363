//! Thermostat / environmental sensor: persistent MQTT 3.1.1 session to the LAN broker
//! (CONNECT keepalive 60 s, SUBSCRIBE, PUBLISH QoS 1 every 30 s with PUBACK, PINGREQ only
//! when idle for a keepalive), cloud HTTPS every 300 s on a new connection (DNS first),
//! NTP from the gateway.

use super::common::{self, HttpsShape, HttpsStream, NtpStream, Ports, Schedule};
use crate::sim::engine::{Out, Stream, Tag};
use crate::sim::proto::mqtt;
use crate::sim::rng::SimRng;
use crate::sim::site::{self, inet, Ctx, Device, Site, Streams, MS, SEC};
use crate::sim::tcp::{TcpConn, CLIENT, SERVER};

/// Thermostat parameters (defaults from the simulator spec §6.2).
#[derive(Debug, Clone)]
pub struct ThermostatParams {
    /// MQTT keepalive, seconds.
    pub keepalive_s: u16,
    /// Publish period and absolute jitter, µs.
    pub publish: (u64, u64),
    /// Cloud HTTPS period and relative jitter.
    pub cloud: (u64, f64),
    /// Cloud request and response sizes.
    pub cloud_up: (usize, usize),
    /// Cloud response sizes.
    pub cloud_down: (usize, usize),
    /// NTP period and jitter.
    pub ntp: (u64, f64),
}

impl Default for ThermostatParams {
    fn default() -> Self {
        ThermostatParams {
            keepalive_s: 60,
            publish: (30 * SEC, SEC),
            cloud: (300 * SEC, 0.10),
            cloud_up: (900, 1100),
            cloud_down: (1800, 2200),
            ntp: (1024 * SEC, 0.10),
        }
    }
}

/// The MQTT session.
#[derive(Debug)]
pub struct MqttSession {
    rng: SimRng,
    p: ThermostatParams,
    conn: TcpConn,
    client_id: String,
    pid: u16,
    connected: bool,
    boot: u64,
    next_pub: u64,
    last_sent: u64,
    temp: f64,
}

impl MqttSession {
    fn payload(&mut self, t: u64) -> Vec<u8> {
        self.temp += self.rng.uniform(-0.05, 0.05) + (site::diurnal(t) - 0.6) * 0.01;
        let mut s = format!(
            "{{\"id\":\"{}\",\"t\":{:.2},\"rh\":{:.1},\"ts\":{}",
            self.client_id,
            self.temp,
            self.rng.uniform(35.0, 55.0),
            t / SEC
        );
        if self.rng.chance(0.5) {
            s.push_str(&format!(
                ",\"sp\":{:.1},\"hvac\":\"{}\"",
                21.0,
                if self.temp < 21.0 { "heat" } else { "idle" }
            ));
        }
        if self.rng.chance(0.3) {
            s.push_str(&format!(
                ",\"bat\":{},\"rssi\":{},\"fw\":\"2.4.1\"",
                self.rng.range(80, 100),
                -(self.rng.range(40, 75) as i64)
            ));
        }
        s.push('}');
        s.into_bytes()
    }
}

impl Stream for MqttSession {
    fn next_time(&self) -> Option<u64> {
        if !self.connected {
            return Some(self.boot);
        }
        let ping_at = self.last_sent + u64::from(self.p.keepalive_s) * SEC;
        Some(self.next_pub.min(ping_at))
    }
    fn fire(&mut self, out: &mut Out) {
        let now = out.now;
        let lat = self.conn.lat;
        if !self.connected {
            self.connected = true;
            out.mark("mqtt_connect");
            let t = self.conn.connect(out, now);
            let t = self.conn.send(
                out,
                CLIENT,
                t + 300,
                &mqtt::connect(&self.client_id, self.p.keepalive_s),
            );
            let t = self
                .conn
                .send(out, SERVER, t + lat[SERVER] + 300, &mqtt::connack());
            self.pid = self.pid.wrapping_add(1);
            let topic = format!("site/{}/cmd", self.client_id);
            let t = self.conn.send(
                out,
                CLIENT,
                t + lat[CLIENT] + 500,
                &mqtt::subscribe(self.pid, &topic),
            );
            let t = self
                .conn
                .send(out, SERVER, t + lat[SERVER] + 300, &mqtt::suback(self.pid));
            self.conn.settle(out);
            self.last_sent = t;
            self.next_pub = t + self.rng.range(2 * SEC, 5 * SEC);
            return;
        }
        if now == self.next_pub {
            out.mark("mqtt_publish");
            self.pid = if self.pid == u16::MAX {
                1
            } else {
                self.pid + 1
            };
            let topic = format!("site/{}/telemetry", self.client_id);
            let body = self.payload(now);
            let t = self.conn.send(
                out,
                CLIENT,
                now,
                &mqtt::publish_qos1(&topic, self.pid, &body),
            );
            self.conn.send(
                out,
                SERVER,
                t + lat[SERVER] + self.rng.range(100, 800),
                &mqtt::puback(self.pid),
            );
            self.conn.settle(out);
            self.last_sent = now;
            let (per, j) = self.p.publish;
            self.next_pub = now + per - j + self.rng.range(0, 2 * j + 1);
        } else {
            out.mark("mqtt_ping");
            let t = self.conn.send(out, CLIENT, now, &mqtt::pingreq());
            self.conn
                .send(out, SERVER, t + lat[SERVER] + 200, &mqtt::pingresp());
            self.conn.settle(out);
            self.last_sent = now;
        }
    }
}

/// Adds the streams of thermostat `dev`.
pub fn add(streams: &mut Streams, ctx: &Ctx, site: &Site, dev: &Device, p: &ThermostatParams) {
    let h = &dev.host;
    let name = &h.name;
    let tag = Tag::benign(dev.id);
    let gw = site.gateway(h).clone();
    let mut brng = ctx.rng(&format!("{name}/boot"));
    let boot = ctx.start + brng.range(0, 5 * SEC);

    let mname = format!("{name}/mqtt");
    let mut rng = ctx.rng(&mname);
    let mut ports = Ports::linux(&mut rng);
    let cport = ports.take(&mut rng);
    let lat = common::lan_lat(&mut rng);
    let conn = common::new_conn(&mut rng, h.link(site.infra.broker.ep()), cport, 1883, lat);
    let temp = rng.uniform(19.0, 23.0);
    let s = MqttSession {
        p: p.clone(),
        conn,
        client_id: name.clone(),
        pid: 0,
        connected: false,
        boot: boot + SEC,
        next_pub: 0,
        last_sent: 0,
        temp,
        rng,
    };
    streams.add(&mname, "thermostat", tag, brng.u16(), s);

    let cname = format!("{name}/cloud");
    let mut rng = ctx.rng(&cname);
    let first = boot + rng.range(10 * SEC, 60 * SEC);
    let https = HttpsStream {
        dns: Some(h.link(gw.ep())),
        dns_every_time: true,
        link: h.link(site.inet(h, inet::THERMO_CLOUD, 64, 11)),
        name: "api.thermocloud.example.net".into(),
        port: 443,
        lat: common::inet_lat(&mut rng, (25, 60)),
        shape: HttpsShape {
            up: p.cloud_up,
            down: p.cloud_down,
            cert: (2500, 3500),
            think: (10 * MS, 60 * MS),
            seg_gap: 40,
        },
        big_every: 0,
        big_down: (0, 0),
        schedule: Schedule::Periodic {
            period: p.cloud.0,
            jitter: p.cloud.1,
        },
        next: first,
        until: ctx.end,
        ports: Ports::linux(&mut rng),
        count: 0,
        mark: "cloud_https",
        rng,
    };
    streams.add(&cname, "thermostat", tag, brng.u16(), https);

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
    streams.add(&nname, "thermostat", tag, brng.u16(), s);
}
