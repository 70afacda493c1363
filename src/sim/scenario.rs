//! Scenario presets: which devices exist, when the capture starts and how long it runs,
//! which attack episodes happen, and the wiring of every device and attack stream.
//!
//! | preset | devices per class | start | duration | episodes |
//! | --- | --- | --- | --- | --- |
//! | `fixture-benign-<class>` | 1 of that class | day 0 09:00 | 600 s | none |
//! | `fixture-mirai` | camera | day 0 09:00 | 300 s | brute force → C2 → scan (30 s) |
//! | `fixture-floods` | camera | day 0 09:00 | 200 s | SYN, UDP, ACK (5 s, 200 pps), HTTP (5 s, 100 req/s) |
//! | `fixture-portscan` | camera, thermostat, plug, hub | day 0 09:00 | 120 s | vertical + horizontal |
//! | `fixture-exfil-beacon` | camera, thermostat | day 0 09:00 | 360 s | exfil (1 MB) + beacon |
//! | `fixture-dns-tunnel` | thermostat | day 0 09:00 | 300 s | tunnel |
//! | `fixture-modbus-write` | PLC | day 0 09:00 | 120 s | writes from 10.20.0.66 |
//! | `fixture-arp-spoof` | camera | day 0 09:00 | 180 s | camera ↔ NVR poisoning |
//! | `training` | K = 3 of each | day 0 00:00 | 2 days | none |
//! | `calibration` | K of each | day 2 00:00 | 1 day | none |
//! | `evaluation` | K + 1 of each (the extra one unseen) | day 3 00:00 | 1 day | 2–3 of every attack |
//! | `bench` | 3 of each | day 0 00:00 | until `--packets` | every attack, every day |

use super::attacks::{exfil, flood, mirai, misc, scan, EpisodeSpec};
use super::devices::camera::{self, CameraParams};
use super::devices::common::{self, HttpsShape, HttpsStream, Ports, Schedule};
use super::devices::hub::{self, HubParams, Responder};
use super::devices::plc::{self, PlcParams};
use super::devices::plug::{self, PlugParams};
use super::devices::thermostat::{self, ThermostatParams};
use super::engine::{Label, Tag};
use super::net::Link;
use super::rng::SimRng;
use super::site::{inet, Class, Ctx, Site, Streams, DAY, EPOCH_US, MS, SEC};
use super::SimError;

/// Every scenario name `flowsentry simulate` accepts.
pub const SCENARIOS: [&str; 16] = [
    "fixture-benign-camera",
    "fixture-benign-thermostat",
    "fixture-benign-plc",
    "fixture-benign-plug",
    "fixture-benign-hub",
    "fixture-mirai",
    "fixture-floods",
    "fixture-portscan",
    "fixture-exfil-beacon",
    "fixture-dns-tunnel",
    "fixture-modbus-write",
    "fixture-arp-spoof",
    "training",
    "calibration",
    "evaluation",
    "bench",
];

/// The fixture scenarios (committed under `fixtures/pcaps/`).
pub fn fixture_names() -> Vec<&'static str> {
    SCENARIOS
        .iter()
        .copied()
        .filter(|s| s.starts_with("fixture-"))
        .collect()
}

/// A resolved scenario: site, clock window, episodes and device parameters.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Scenario name.
    pub name: String,
    /// Devices per class in [`Class::ALL`] order.
    pub counts: [usize; 5],
    /// Devices per class that are "unseen" (the last ones of each class).
    pub unseen: usize,
    /// Capture start, µs since the Unix epoch.
    pub start: u64,
    /// Capture duration, µs.
    pub duration: u64,
    /// Camera parameters.
    pub camera: CameraParams,
    /// Thermostat parameters.
    pub thermostat: ThermostatParams,
    /// PLC parameters.
    pub plc: PlcParams,
    /// Plug parameters.
    pub plug: PlugParams,
    /// Hub parameters.
    pub hub: HubParams,
    /// Whether frames carry 802.1Q tags.
    pub vlans: bool,
    /// Attack episodes.
    pub episodes: Vec<EpisodeSpec>,
    /// Stop after this many packets.
    pub packet_limit: Option<u64>,
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Duration, µs.
    pub duration: Option<u64>,
    /// Devices per class.
    pub devices: Option<usize>,
    /// Camera day bitrate, kbit/s.
    pub video_kbps: Option<u32>,
    /// Packet limit (bench).
    pub packets: Option<u64>,
}

fn ep(
    id: u32,
    kind: Label,
    start: u64,
    duration: u64,
    attacker: std::net::Ipv4Addr,
    victims: &[&str],
) -> EpisodeSpec {
    EpisodeSpec {
        id,
        kind,
        start,
        duration,
        attacker,
        victims: victims.iter().map(|s| s.to_string()).collect(),
        rate: 0.0,
        bytes: 0,
        success: false,
    }
}

/// Resolves a scenario name and overrides into a plan.
pub fn plan(name: &str, seed: u64, o: &Overrides) -> Result<Plan, SimError> {
    if !SCENARIOS.contains(&name) {
        return Err(SimError::UnknownScenario {
            name: name.to_string(),
            known: SCENARIOS.join(", "),
        });
    }
    let fixture = name.starts_with("fixture-");
    let t0 = EPOCH_US + 9 * 3600 * SEC;
    let k = o.devices.unwrap_or(3).clamp(1, 8);
    let one = |c: Class| {
        let mut v = [0usize; 5];
        if let Some(i) = Class::ALL.iter().position(|x| *x == c) {
            v[i] = o.devices.unwrap_or(1).clamp(1, 9);
        }
        v
    };
    let (counts, start, duration, unseen) = match name {
        "fixture-benign-camera" | "fixture-mirai" | "fixture-floods" | "fixture-arp-spoof" => {
            (one(Class::Camera), t0, 0, 0)
        }
        "fixture-benign-thermostat" | "fixture-dns-tunnel" => (one(Class::Thermostat), t0, 0, 0),
        "fixture-benign-plc" | "fixture-modbus-write" => (one(Class::Plc), t0, 0, 0),
        "fixture-benign-plug" => (one(Class::Plug), t0, 0, 0),
        "fixture-benign-hub" => (one(Class::Hub), t0, 0, 0),
        "fixture-portscan" => ([1, 1, 0, 1, 1], t0, 0, 0),
        "fixture-exfil-beacon" => ([1, 1, 0, 0, 0], t0, 0, 0),
        "training" => ([k; 5], EPOCH_US, 2 * DAY, 0),
        "calibration" => ([k; 5], EPOCH_US + 2 * DAY, DAY, 0),
        "evaluation" => ([k + 1; 5], EPOCH_US + 3 * DAY, DAY, 1),
        _ => ([3; 5], EPOCH_US, 30 * DAY, 0),
    };
    let default_duration = match name {
        "fixture-mirai" | "fixture-dns-tunnel" => 300 * SEC,
        "fixture-floods" => 200 * SEC,
        "fixture-portscan" | "fixture-modbus-write" => 120 * SEC,
        "fixture-exfil-beacon" => 360 * SEC,
        "fixture-arp-spoof" => 180 * SEC,
        _ if fixture => 600 * SEC,
        _ => duration,
    };
    let duration = o.duration.unwrap_or(default_duration).max(SEC);
    let mut camera = CameraParams::with_kbps(if fixture {
        16
    } else if name == "bench" {
        512
    } else {
        64
    });
    if fixture {
        camera.fps = 10;
        camera.gop = 20;
        camera.first_motion = Some(120 * SEC);
    }
    if let Some(v) = o.video_kbps {
        camera.day_kbps = v.max(1);
    }
    let mut p = Plan {
        name: name.to_string(),
        counts,
        unseen,
        start,
        duration,
        camera,
        thermostat: ThermostatParams::default(),
        plc: PlcParams::default(),
        plug: PlugParams::default(),
        hub: HubParams::default(),
        vlans: true,
        episodes: Vec::new(),
        packet_limit: None,
    };
    let s = |x: u64| start + x * SEC;
    let cam = "cam-01";
    p.episodes = match name {
        "fixture-mirai" => {
            let mut b = ep(
                1,
                Label::TelnetBruteforce,
                s(20),
                60 * SEC,
                inet::BOT,
                &[cam],
            );
            b.success = true;
            vec![
                b,
                ep(
                    2,
                    Label::MiraiC2,
                    s(90),
                    duration.saturating_sub(95 * SEC),
                    inet::MIRAI_CNC,
                    &[cam],
                ),
                ep(
                    3,
                    Label::MiraiScan,
                    s(120),
                    30 * SEC,
                    std::net::Ipv4Addr::new(192, 168, 10, 21),
                    &[cam],
                ),
            ]
        }
        "fixture-floods" => {
            let mut v = vec![
                ep(1, Label::SynFlood, s(20), 5 * SEC, inet::BOT, &[cam]),
                ep(2, Label::UdpFlood, s(60), 5 * SEC, inet::BOT, &[cam]),
                ep(3, Label::AckFlood, s(100), 5 * SEC, inet::BOT, &[cam]),
                ep(4, Label::HttpFlood, s(140), 5 * SEC, inet::BOT, &[cam]),
            ];
            for e in v.iter_mut().take(3) {
                e.rate = 200.0;
            }
            v[3].rate = 100.0;
            v
        }
        "fixture-portscan" => vec![
            ep(
                1,
                Label::PortScanVertical,
                s(20),
                3 * SEC,
                std::net::Ipv4Addr::new(192, 168, 10, 66),
                &[cam],
            ),
            ep(
                2,
                Label::PortScanHorizontal,
                s(60),
                2 * SEC,
                std::net::Ipv4Addr::new(192, 168, 10, 66),
                &["cam-01", "thermo-01", "plug-01", "hub-01"],
            ),
        ],
        "fixture-exfil-beacon" => {
            let mut x = ep(
                1,
                Label::Exfiltration,
                s(30),
                120 * SEC,
                inet::EXFIL,
                &[cam],
            );
            x.bytes = 1_000_000;
            vec![
                x,
                ep(
                    2,
                    Label::C2Beacon,
                    s(20),
                    duration.saturating_sub(25 * SEC),
                    inet::BEACON_C2,
                    &["thermo-01"],
                ),
            ]
        }
        "fixture-dns-tunnel" => {
            let mut d = ep(
                1,
                Label::DnsTunnel,
                s(30),
                240 * SEC,
                std::net::Ipv4Addr::new(192, 168, 10, 31),
                &["thermo-01"],
            );
            d.rate = 5.0;
            vec![d]
        }
        "fixture-modbus-write" => vec![ep(
            1,
            Label::ModbusWrite,
            s(40),
            5 * SEC,
            std::net::Ipv4Addr::new(10, 20, 0, 66),
            &["plc-01"],
        )],
        "fixture-arp-spoof" => vec![ep(
            1,
            Label::ArpSpoof,
            s(30),
            90 * SEC,
            std::net::Ipv4Addr::new(192, 168, 10, 66),
            &[cam, "nvr"],
        )],
        "evaluation" => {
            let site = Site::new(counts, true);
            let mut rng = SimRng::for_stream(seed, start / DAY, "episodes");
            random_episodes(&mut rng, &site, start, duration, 1)
        }
        "bench" => {
            let site = Site::new(counts, true);
            let mut v = Vec::new();
            let mut day = 0;
            while day * DAY < duration && day < 60 {
                let mut rng = SimRng::for_stream(seed, day, "bench-episodes");
                let id0 = v.len() as u32 + 1;
                v.extend(random_episodes(
                    &mut rng,
                    &site,
                    start + day * DAY,
                    DAY.min(duration - day * DAY),
                    id0,
                ));
                day += 1;
            }
            v
        }
        _ => Vec::new(),
    };
    if name == "bench" {
        p.packet_limit = Some(o.packets.unwrap_or(1_000_000));
    } else {
        p.packet_limit = o.packets;
    }
    p.episodes.retain(|e| e.start < start + duration);
    Ok(p)
}

/// 2–3 episodes of every attack type at random times in `[start, start + duration)`.
pub fn random_episodes(
    rng: &mut SimRng,
    site: &Site,
    start: u64,
    duration: u64,
    first_id: u32,
) -> Vec<EpisodeSpec> {
    let mut kinds = Vec::new();
    for k in Label::ATTACKS {
        for _ in 0..rng.range(2, 4) {
            kinds.push(k);
        }
    }
    for i in (1..kinds.len()).rev() {
        let j = rng.index(i + 1);
        kinds.swap(i, j);
    }
    let slot = duration / kinds.len().max(1) as u64;
    let names = |c: Class| {
        site.of(c)
            .iter()
            .map(|d| d.host.name.clone())
            .collect::<Vec<_>>()
    };
    let pick = |rng: &mut SimRng, classes: &[Class]| -> Option<(String, std::net::Ipv4Addr)> {
        let mut all = Vec::new();
        for c in classes {
            for d in site.of(*c) {
                all.push((d.host.name.clone(), d.host.ip));
            }
        }
        rng.pick(&all).cloned()
    };
    let lan_attacker = site.infra.lan_attacker.ip;
    let mut out = Vec::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        let s0 = start + i as u64 * slot + rng.range(slot / 20, slot / 3 + 1);
        let id = first_id + out.len() as u32;
        let (victim_classes, attacker_of, dur): (&[Class], Option<std::net::Ipv4Addr>, u64) =
            match kind {
                Label::MiraiScan => (
                    &[Class::Camera, Class::Plug],
                    None,
                    rng.range(60, 301) * SEC,
                ),
                Label::TelnetBruteforce => {
                    (&[Class::Camera], Some(inet::BOT), rng.range(30, 121) * SEC)
                }
                Label::MiraiC2 => (
                    &[Class::Camera, Class::Plug],
                    Some(inet::MIRAI_CNC),
                    rng.range(600, 1801) * SEC,
                ),
                Label::SynFlood | Label::AckFlood => (
                    &[Class::Camera, Class::Hub],
                    Some(inet::BOT),
                    rng.range(10, 31) * SEC,
                ),
                Label::UdpFlood => (
                    &[Class::Camera, Class::Hub, Class::Plc],
                    Some(inet::BOT),
                    rng.range(10, 31) * SEC,
                ),
                Label::HttpFlood => (&[Class::Camera], Some(inet::BOT), rng.range(10, 31) * SEC),
                Label::PortScanVertical => (
                    &[Class::Camera, Class::Thermostat, Class::Plug, Class::Hub],
                    Some(lan_attacker),
                    10 * SEC,
                ),
                Label::PortScanHorizontal => (&[Class::Camera], Some(lan_attacker), 10 * SEC),
                Label::Exfiltration => (
                    &[Class::Camera],
                    Some(inet::EXFIL),
                    rng.range(300, 1801) * SEC,
                ),
                Label::C2Beacon => (
                    &[Class::Camera, Class::Thermostat, Class::Plug, Class::Hub],
                    Some(inet::BEACON_C2),
                    rng.range(1800, 5401) * SEC,
                ),
                Label::DnsTunnel => (
                    &[Class::Thermostat, Class::Plug, Class::Hub],
                    None,
                    rng.range(300, 901) * SEC,
                ),
                Label::ModbusWrite => (
                    &[Class::Plc],
                    Some(site.infra.ot_attacker.ip),
                    rng.range(1, 11) * SEC,
                ),
                Label::ArpSpoof => (
                    &[Class::Camera],
                    Some(lan_attacker),
                    rng.range(120, 601) * SEC,
                ),
                Label::Benign => (&[], None, 0),
            };
        let Some((victim, vip)) = pick(rng, victim_classes) else {
            continue;
        };
        let mut e = ep(id, kind, s0, dur, attacker_of.unwrap_or(vip), &[&victim]);
        match kind {
            Label::SynFlood | Label::AckFlood | Label::UdpFlood => {
                e.rate = rng.range(2000, 5001) as f64
            }
            Label::HttpFlood => e.rate = rng.range(50, 501) as f64,
            Label::PortScanVertical => e.rate = rng.range(100, 1001) as f64,
            Label::Exfiltration => e.bytes = rng.range(50_000_000, 150_000_001),
            Label::TelnetBruteforce => e.success = rng.chance(0.5),
            Label::PortScanHorizontal => {
                let mut v = Vec::new();
                for c in [Class::Camera, Class::Thermostat, Class::Plug, Class::Hub] {
                    v.extend(names(c));
                }
                e.victims = v;
                e.rate = 200.0;
            }
            Label::ArpSpoof => e.victims.push("nvr".into()),
            _ => {}
        }
        out.push(e);
    }
    out
}

/// Builds the site and all streams of a plan.
pub fn build(plan: &Plan, seed: u64) -> (Site, Streams, Ctx) {
    let site = Site::new(plan.counts, plan.vlans);
    let ctx = Ctx {
        seed,
        salt: plan.start / DAY,
        start: plan.start,
        end: plan.start + plan.duration,
        video_kbps: plan.camera.day_kbps,
    };
    let mut streams = Streams::new();
    let hubs = site.of(Class::Hub);
    let plugs = site.of(Class::Plug);
    let cams = site.of(Class::Camera);
    for d in &site.devices {
        match d.class {
            Class::Camera => {
                let windows: Vec<(u64, u64, u32)> = plan
                    .episodes
                    .iter()
                    .filter(|e| {
                        e.kind == Label::ArpSpoof && e.victims.first() == Some(&d.host.name)
                    })
                    // diverted from the first poisoning (+5 ms) until the restore
                    .map(|e| (e.start + 5 * MS, e.start + e.duration, e.id))
                    .collect();
                camera::add(&mut streams, &ctx, &site, d, &plan.camera, &windows);
            }
            Class::Thermostat => thermostat::add(&mut streams, &ctx, &site, d, &plan.thermostat),
            Class::Plc => plc::add(&mut streams, &ctx, &site, d, &plan.plc),
            Class::Plug => {
                let idx = plugs.iter().position(|p| p.id == d.id).unwrap_or(0);
                let poller = if hubs.is_empty() {
                    site.infra.controller.clone()
                } else {
                    hubs[idx % hubs.len()].host.clone()
                };
                plug::add(&mut streams, &ctx, &site, d, &plan.plug, &poller);
            }
            Class::Hub => {
                let mut responders: Vec<Responder> = plugs
                    .iter()
                    .map(|p| Responder {
                        host: p.host.clone(),
                        device: p.id,
                        mdns: true,
                    })
                    .collect();
                responders.extend(cams.iter().map(|c| Responder {
                    host: c.host.clone(),
                    device: c.id,
                    mdns: false,
                }));
                hub::add(&mut streams, &ctx, &site, d, &plan.hub, responders);
            }
        }
    }
    for e in &plan.episodes {
        add_attack(&mut streams, &ctx, &site, e);
    }
    (site, streams, ctx)
}

fn add_attack(streams: &mut Streams, ctx: &Ctx, site: &Site, e: &EpisodeSpec) {
    let Some(victim) = e.victims.first().and_then(|v| site.device(v)) else {
        return;
    };
    let vh = &victim.host;
    let name = format!("attack-{}/{}", e.id, e.kind.as_str());
    let mut rng = ctx.rng(&name);
    let tag = Tag {
        device: victim.id,
        label: e.kind,
        episode: e.id,
    };
    let group = e.kind.as_str();
    let gw = site.gateway(vh).clone();
    let ipid = rng.u16();
    match e.kind {
        Label::MiraiScan => {
            let s = mirai::Scanner::new(rng, vh.ep(), gw.mac, vh.vlan, e);
            streams.add(&name, group, tag, ipid, s);
        }
        Label::TelnetBruteforce => {
            let link = Link {
                a: site.inet(vh, e.attacker, 64, 17),
                b: vh.ep(),
                vlan: vh.vlan,
            };
            streams.add(
                &name,
                group,
                tag,
                ipid,
                mirai::BruteForce::new(rng, link, e),
            );
        }
        Label::MiraiC2 => {
            let dns = vh.link(site.inet(vh, inet::GOOGLE_DNS, 64, 8));
            let link = vh.link(site.inet(vh, e.attacker, 64, 15));
            streams.add(
                &name,
                group,
                tag,
                ipid,
                mirai::C2Session::new(rng, dns, link, e),
            );
        }
        Label::SynFlood | Label::UdpFlood | Label::AckFlood => {
            let link = vh.link(site.inet(vh, e.attacker, 64, 16));
            let dport = if victim.class == Class::Camera {
                if rng.chance(0.5) {
                    554
                } else {
                    80
                }
            } else {
                80
            };
            streams.add(
                &name,
                group,
                tag,
                ipid,
                flood::Flood::new(rng, link, dport, e),
            );
        }
        Label::HttpFlood => {
            let link = Link {
                a: site.inet(vh, e.attacker, 64, 16),
                b: vh.ep(),
                vlan: vh.vlan,
            };
            let conns = if e.rate < 150.0 {
                20
            } else {
                rng.range(20, 65) as usize
            };
            streams.add(
                &name,
                group,
                tag,
                ipid,
                flood::HttpFlood::new(rng, link, conns, e),
            );
        }
        Label::PortScanVertical => {
            let t = scan::Target {
                host: vh.clone(),
                device: victim.id,
                open: open_ports(victim.class),
            };
            let s = scan::SynScan::vertical(
                rng,
                site.infra.lan_attacker.clone(),
                t,
                scan::top_ports(1000),
                e,
                tag,
            );
            streams.add(&name, group, tag, ipid, s);
        }
        Label::PortScanHorizontal => {
            let targets: Vec<scan::Target> = e
                .victims
                .iter()
                .filter_map(|v| site.device(v))
                .filter(|d| d.class != Class::Plc)
                .map(|d| scan::Target {
                    host: d.host.clone(),
                    device: d.id,
                    open: open_ports(d.class),
                })
                .collect();
            let s = scan::SynScan::horizontal(
                rng,
                site.infra.lan_attacker.clone(),
                targets,
                23,
                e,
                tag,
            );
            streams.add(&name, group, tag, ipid, s);
        }
        Label::Exfiltration => {
            let port = if rng.chance(0.7) { 443 } else { 8443 };
            let link = vh.link(site.inet(vh, e.attacker, 64, 14));
            streams.add(
                &name,
                group,
                tag,
                ipid,
                exfil::Exfil::new(rng, link, port, e),
            );
        }
        Label::C2Beacon => {
            let https = HttpsStream {
                dns: Some(vh.link(gw.ep())),
                dns_every_time: false,
                link: vh.link(site.inet(vh, e.attacker, 64, 14)),
                name: "static.update-check.example.org".into(),
                port: 443,
                lat: common::inet_lat(&mut rng, (70, 150)),
                shape: HttpsShape {
                    up: (200, 400),
                    down: (100, 300),
                    cert: (2000, 3000),
                    think: (20 * MS, 100 * MS),
                    seg_gap: 60,
                },
                big_every: if ctx.end - ctx.start < 3600 * SEC {
                    3
                } else {
                    20
                },
                big_down: (2_000, 20_000),
                schedule: Schedule::Beacon {
                    sleep: 60 * SEC,
                    jitter: 0.2,
                },
                next: e.start,
                until: e.start + e.duration,
                ports: Ports::linux(&mut rng),
                count: 0,
                mark: "beacon",
                rng,
            };
            streams.add(&name, group, tag, ipid, https);
        }
        Label::DnsTunnel => {
            let link = vh.link(gw.ep());
            streams.add(&name, group, tag, ipid, misc::DnsTunnel::new(rng, link, e));
        }
        Label::ModbusWrite => {
            let link = Link {
                a: site.infra.ot_attacker.ep(),
                b: vh.ep(),
                vlan: vh.vlan,
            };
            streams.add(
                &name,
                group,
                tag,
                ipid,
                misc::ModbusWrite::new(rng, link, e),
            );
        }
        Label::ArpSpoof => {
            let s = misc::ArpSpoof::new(
                rng,
                site.infra.lan_attacker.clone(),
                vh.clone(),
                site.infra.nvr.clone(),
                e,
            );
            streams.add(&name, group, tag, ipid, s);
        }
        Label::Benign => {}
    }
}

/// TCP ports a device of `class` listens on.
pub fn open_ports(class: Class) -> Vec<u16> {
    match class {
        Class::Camera => vec![23, 80, 554, 8000],
        Class::Thermostat => vec![],
        Class::Plc => vec![502],
        Class::Plug => vec![9999],
        Class::Hub => vec![80, 443, 51827],
    }
}
