//! IP camera: RTSP control from the NVR (OPTIONS, DESCRIBE, SETUP, PLAY, then
//! GET_PARAMETER keepalives), H.264 over RTP to the NVR with I-frame bursts, RTCP SR/RR,
//! a persistent TLS heartbeat to the vendor cloud (reconnect every 6 h), DNS, NTP,
//! WS-Discovery Hello at boot, and motion events (higher bitrate + HTTPS snapshot upload).

use super::common::{self, HttpsShape, HttpsStream, NtpStream, Ports, Schedule, TlsSession};
use crate::sim::engine::{Mitm, Out, Stream, Tag};
use crate::sim::net::Link;
use crate::sim::proto::{ntp, rtp, rtsp, ssdp};
use crate::sim::rng::SimRng;
use crate::sim::site::{self, inet, Ctx, Device, Site, Streams, MS, SEC};
use crate::sim::tcp::{TcpConn, CLIENT, SERVER};
use crate::sim::wire;
use std::net::Ipv4Addr;

/// Camera parameters (defaults from the simulator spec §6.2).
#[derive(Debug, Clone)]
pub struct CameraParams {
    /// Frames per second.
    pub fps: u32,
    /// Frames per group of pictures (I-frame interval).
    pub gop: u32,
    /// Share of a GOP's bytes in its I-frame.
    pub iframe_share: f64,
    /// Maximum RTP payload.
    pub rtp_mtu: usize,
    /// I-frame burst duration cap, µs.
    pub iframe_burst_us: u64,
    /// Day bitrate, kbit/s (night = 1/4; the spec's default is 2000).
    pub day_kbps: u32,
    /// Night hours (start, end).
    pub night: (f64, f64),
    /// Bitrate factor during motion.
    pub motion_factor: f64,
    /// RTSP keepalive period and jitter.
    pub keepalive: (u64, f64),
    /// RTCP SR/RR period.
    pub rtcp_period: u64,
    /// Cloud heartbeat period and jitter.
    pub cloud_heartbeat: (u64, f64),
    /// Cloud reconnect interval.
    pub cloud_reconnect: u64,
    /// DNS refresh period (TTL).
    pub dns_period: u64,
    /// NTP period and jitter.
    pub ntp: (u64, f64),
    /// Motion events per hour at peak activity.
    pub motion_per_hour: f64,
    /// Motion duration range, µs.
    pub motion_len: (u64, u64),
    /// Snapshot upload size range.
    pub snapshot: (usize, usize),
    /// Force one motion event this long after boot (fixtures), if set.
    pub first_motion: Option<u64>,
}

impl CameraParams {
    /// The spec defaults with the given day bitrate.
    pub fn with_kbps(day_kbps: u32) -> Self {
        CameraParams {
            fps: 25,
            gop: 50,
            iframe_share: 0.3,
            rtp_mtu: 1400,
            iframe_burst_us: 20 * MS,
            day_kbps,
            night: (20.0, 6.0),
            motion_factor: 1.5,
            keepalive: (30 * SEC, 0.02),
            rtcp_period: 5 * SEC,
            cloud_heartbeat: (60 * SEC, 0.05),
            cloud_reconnect: 6 * 3600 * SEC,
            dns_period: 300 * SEC,
            ntp: (1024 * SEC, 0.10),
            motion_per_hour: 2.0,
            motion_len: (10 * SEC, 30 * SEC),
            snapshot: (50_000, 200_000),
            first_motion: None,
        }
    }
}

/// A motion window.
#[derive(Debug, Clone, Copy)]
pub struct Motion {
    /// Start, µs.
    pub start: u64,
    /// End, µs.
    pub end: u64,
}

/// RTSP session + RTP/RTCP media between the NVR and one camera.
#[derive(Debug)]
pub struct CamVideo {
    rng: SimRng,
    p: CameraParams,
    ctrl: TcpConn,
    media: Link,
    url: String,
    session: u64,
    cseq: u32,
    ssrc: u32,
    rtp_seq: u16,
    rtp_ts0: u32,
    frame_no: u64,
    pkts_sent: u32,
    octets_sent: u32,
    motions: Vec<Motion>,
    boot: u64,
    started: bool,
    next_frame: u64,
    next_keepalive: u64,
    next_sr: u64,
    next_rr: u64,
    filler: Vec<u8>,
}

const CAM_RTP: u16 = 5000;
const NVR_RTP: u16 = 50000;

impl CamVideo {
    fn kbps_at(&self, t: u64) -> f64 {
        let h = site::hour_of_day(t);
        let night = if self.p.night.0 > self.p.night.1 {
            h >= self.p.night.0 || h < self.p.night.1
        } else {
            h >= self.p.night.0 && h < self.p.night.1
        };
        let mut k = f64::from(self.p.day_kbps) * if night { 0.25 } else { 1.0 };
        if self.motions.iter().any(|m| t >= m.start && t < m.end) {
            k *= self.p.motion_factor;
        }
        k
    }

    #[allow(clippy::too_many_arguments)]
    fn rtsp_exchange(
        &mut self,
        out: &mut Out,
        t: u64,
        method: &str,
        url: &str,
        extra: Vec<(&str, String)>,
        resp: Vec<(&str, String)>,
        body: &str,
    ) -> u64 {
        self.cseq += 1;
        let req = rtsp::request(method, url, self.cseq, &extra);
        let t = self.ctrl.send(out, CLIENT, t, &req);
        let think = self.rng.range(500, 4 * MS);
        let t = self.ctrl.send(
            out,
            SERVER,
            t + self.ctrl.lat[SERVER] + think,
            &rtsp::response(self.cseq, &resp, body),
        );
        t + self.ctrl.lat[CLIENT] + self.rng.range(200, MS)
    }

    fn setup(&mut self, out: &mut Out) -> u64 {
        let t = self.ctrl.connect(out, self.boot);
        let url = self.url.clone();
        let date = "Date: Mon, Jan 05 2026 00:00:00 GMT";
        let _ = date;
        let t = self.rtsp_exchange(
            out,
            t + 200,
            "OPTIONS",
            &url,
            vec![],
            vec![(
                "Public",
                "OPTIONS, DESCRIBE, PLAY, PAUSE, SETUP, TEARDOWN, SET_PARAMETER, GET_PARAMETER"
                    .into(),
            )],
            "",
        );
        let sdp = rtsp::sdp(self.ctrl.link.b.ip, self.session, &url);
        let t = self.rtsp_exchange(
            out,
            t,
            "DESCRIBE",
            &url,
            vec![("Accept", "application/sdp".into())],
            vec![
                ("Content-Type", "application/sdp".into()),
                ("Content-Base", format!("{url}/")),
            ],
            &sdp,
        );
        let track = format!("{url}/trackID=1");
        let t = self.rtsp_exchange(
            out,
            t,
            "SETUP",
            &track,
            vec![("Transport", format!("RTP/AVP;unicast;client_port={}-{}", NVR_RTP, NVR_RTP + 1))],
            vec![
                ("Session", format!("{};timeout=60", self.session)),
                ("Transport", format!("RTP/AVP;unicast;client_port={}-{};server_port={}-{};ssrc={:08X};mode=\"play\"", NVR_RTP, NVR_RTP + 1, CAM_RTP, CAM_RTP + 1, self.ssrc)),
            ],
            "",
        );
        let t = self.rtsp_exchange(
            out,
            t,
            "PLAY",
            &url,
            vec![
                ("Session", self.session.to_string()),
                ("Range", "npt=0.000-".into()),
            ],
            vec![
                ("Session", self.session.to_string()),
                (
                    "RTP-Info",
                    format!("url={track};seq={};rtptime={}", self.rtp_seq, self.rtp_ts0),
                ),
            ],
            "",
        );
        self.ctrl.settle(out);
        t
    }

    fn frame(&mut self, out: &mut Out, t: u64) {
        let gop = u64::from(self.p.gop);
        let idr = self.frame_no % gop == 0;
        let gop_bytes = self.kbps_at(t) * 1000.0 / 8.0 * (gop as f64 / f64::from(self.p.fps));
        let size = if idr {
            gop_bytes * self.p.iframe_share
        } else {
            gop_bytes * (1.0 - self.p.iframe_share) / (gop as f64 - 1.0)
        };
        let size = (size * self.rng.uniform(0.7, 1.3)).max(40.0) as usize;
        let start = self.rng.index(self.filler.len());
        self.filler.rotate_left(start);
        let nals = rtp::h264_frame(size, self.p.rtp_mtu, idr, &self.filler);
        let n = nals.len() as u64;
        let gap = if idr {
            (self.p.iframe_burst_us / n.max(1)).max(60)
        } else {
            80
        };
        let ts = self
            .rtp_ts0
            .wrapping_add((self.frame_no * 90_000 / u64::from(self.p.fps)) as u32);
        let mut tt = t;
        for (k, nal) in nals.iter().enumerate() {
            let pkt = rtp::rtp(96, k as u64 + 1 == n, self.rtp_seq, ts, self.ssrc, nal);
            self.rtp_seq = self.rtp_seq.wrapping_add(1);
            self.pkts_sent = self.pkts_sent.wrapping_add(1);
            self.octets_sent = self.octets_sent.wrapping_add(nal.len() as u32);
            self.media.udp(out, true, tt, CAM_RTP, NVR_RTP, &pkt);
            tt += gap + self.rng.range(0, 20);
        }
        self.frame_no += 1;
    }
}

impl Stream for CamVideo {
    fn next_time(&self) -> Option<u64> {
        if !self.started {
            return Some(self.boot);
        }
        Some(
            self.next_frame
                .min(self.next_keepalive)
                .min(self.next_sr)
                .min(self.next_rr),
        )
    }
    fn fire(&mut self, out: &mut Out) {
        let now = out.now;
        if !self.started {
            self.started = true;
            out.mark("rtsp_setup");
            let t = self.setup(out);
            self.next_frame = t + 5 * MS;
            self.next_keepalive = t + self.rng.jitter(self.p.keepalive.0, self.p.keepalive.1);
            self.next_sr = t + self.p.rtcp_period;
            self.next_rr = t + self.p.rtcp_period + self.rng.range(50 * MS, 900 * MS);
            return;
        }
        if now == self.next_frame {
            self.frame(out, now);
            let fp = SEC / u64::from(self.p.fps);
            self.next_frame = now + fp;
        } else if now == self.next_keepalive {
            out.mark("rtsp_keepalive");
            let url = format!("{}/", self.url);
            let s = self.session.to_string();
            self.rtsp_exchange(
                out,
                now,
                "GET_PARAMETER",
                &url,
                vec![("Session", s.clone())],
                vec![("Session", s)],
                "",
            );
            self.ctrl.settle(out);
            self.next_keepalive = now + self.rng.jitter(self.p.keepalive.0, self.p.keepalive.1);
        } else if now == self.next_sr {
            out.mark("rtcp_sr");
            let ts = self
                .rtp_ts0
                .wrapping_add((self.frame_no * 90_000 / u64::from(self.p.fps)) as u32);
            let sr = rtp::sender_report(
                self.ssrc,
                ntp::timestamp(now),
                ts,
                self.pkts_sent,
                self.octets_sent,
                "camera@ipc",
            );
            self.media
                .udp(out, true, now, CAM_RTP + 1, NVR_RTP + 1, &sr);
            self.next_sr = now + self.p.rtcp_period;
        } else {
            out.mark("rtcp_rr");
            let ntp_now = ntp::timestamp(now.saturating_sub(self.p.rtcp_period / 2));
            let lsr = u32::from_be_bytes([ntp_now[2], ntp_now[3], ntp_now[4], ntp_now[5]]);
            let rr = rtp::receiver_report(
                self.ssrc ^ 0x5a5a_5a5a,
                self.ssrc,
                u32::from(self.rtp_seq),
                self.rng.range(20, 400) as u32,
                lsr,
                0x0000_8000,
                "nvr@recorder",
            );
            self.media
                .udp(out, false, now, NVR_RTP + 1, CAM_RTP + 1, &rr);
            self.next_rr = now + self.p.rtcp_period;
        }
    }
}

/// WS-Discovery Hello at boot.
#[derive(Debug)]
pub struct WsdHello {
    rng: SimRng,
    link: Link,
    at: Option<u64>,
    xaddr: String,
}

impl Stream for WsdHello {
    fn next_time(&self) -> Option<u64> {
        self.at
    }
    fn fire(&mut self, out: &mut Out) {
        out.mark("wsd_hello");
        let uuid = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            self.rng.u32(),
            self.rng.u16(),
            self.rng.u16() & 0xfff,
            self.rng.u16() & 0xfff,
            self.rng.u64() & 0xffff_ffff_ffff
        );
        let msg = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            self.rng.u32(),
            self.rng.u16(),
            self.rng.u16() & 0xfff,
            self.rng.u16() & 0xfff,
            self.rng.u64() & 0xffff_ffff_ffff
        );
        let body = ssdp::wsd_hello(&uuid, &msg, &self.xaddr);
        let sport = self.rng.range(32768, 61000) as u16;
        let id = out.next_ipid();
        let l2 = wire::L2 {
            src: self.link.a.mac,
            dst: wire::multicast_mac_v4(Ipv4Addr::new(239, 255, 255, 250)),
            vlan: self.link.vlan,
        };
        let ip = wire::V4 {
            src: self.link.a.ip,
            dst: Ipv4Addr::new(239, 255, 255, 250),
            ttl: 1,
            id,
            df: false,
        };
        out.push(out.now, wire::udp_v4(&l2, &ip, sport, 3702, &body));
        self.at = None;
    }
}

/// Adds the streams of camera `dev`. `arp_windows` are the ARP-spoof windows that divert
/// its NVR traffic through the LAN attacker.
pub fn add(
    streams: &mut Streams,
    ctx: &Ctx,
    site: &Site,
    dev: &Device,
    p: &CameraParams,
    arp_windows: &[(u64, u64, u32)],
) {
    let h = &dev.host;
    let name = &h.name;
    let tag = Tag::benign(dev.id);
    let gw = site.gateway(h).clone();
    let mut brng = ctx.rng(&format!("{name}/boot"));
    let boot = ctx.start + brng.range(0, 5 * SEC);

    // Motion schedule shared by video and uploads.
    let mut mrng = ctx.rng(&format!("{name}/motion"));
    let mut starts = site::diurnal_poisson(&mut mrng, boot + 60 * SEC, ctx.end, p.motion_per_hour);
    if let Some(f) = p.first_motion {
        starts.insert(0, boot + f);
    }
    let motions: Vec<Motion> = starts
        .iter()
        .map(|&s| Motion {
            start: s,
            end: s + mrng.range(p.motion_len.0, p.motion_len.1),
        })
        .collect();

    // Video.
    let vname = format!("{name}/video");
    let mut rng = ctx.rng(&vname);
    let nvr = &site.infra.nvr;
    let ctrl_link = Link {
        a: nvr.ep(),
        b: h.ep(),
        vlan: h.vlan,
    };
    let mut nports = Ports::linux(&mut rng);
    let cport = nports.take(&mut rng);
    let ctrl = {
        let lat = [rng.range(100, 300), rng.range(300, 1500)];
        common::new_conn(&mut rng, ctrl_link, cport, 554, lat)
    };
    let filler = rng.bytes(4096);
    let video = CamVideo {
        p: p.clone(),
        ctrl,
        media: h.link(nvr.ep()),
        url: format!("rtsp://{}:554/Streaming/Channels/101", h.ip),
        session: rng.range(10_000_000, 99_999_999),
        cseq: 0,
        ssrc: rng.u32(),
        rtp_seq: rng.u16(),
        rtp_ts0: rng.u32(),
        frame_no: 0,
        pkts_sent: 0,
        octets_sent: 0,
        motions: motions.clone(),
        boot: boot + 2 * SEC,
        started: false,
        next_frame: 0,
        next_keepalive: 0,
        next_sr: 0,
        next_rr: 0,
        filler,
        rng,
    };
    let ipid = brng.u16();
    let out = streams.add(&vname, "camera", tag, ipid, video);
    if !arp_windows.is_empty() {
        out.mitm = Some(Mitm {
            a: h.mac,
            b: nvr.mac,
            attacker: site.infra.lan_attacker.mac,
            windows: arp_windows.to_vec(),
            delay_us: 120,
        });
    }

    // WS-Discovery at boot.
    let wname = format!("{name}/wsd");
    let wsd = WsdHello {
        rng: ctx.rng(&wname),
        link: h.link(gw.ep()),
        at: Some(boot + 500 * MS),
        xaddr: format!("http://{}/onvif/device_service", h.ip),
    };
    streams.add(&wname, "camera", tag, brng.u16(), wsd);

    // Cloud TLS session.
    let cname = format!("{name}/cloud");
    let mut rng = ctx.rng(&cname);
    let cloud = site.inet(h, inet::CAM_CLOUD, 64, 12);
    let mut reconnects = Vec::new();
    let mut r = boot + p.cloud_reconnect;
    while r < ctx.end {
        reconnects.push(r + rng.range(0, 30 * SEC));
        r += p.cloud_reconnect;
    }
    let session = TlsSession {
        dns: h.link(gw.ep()),
        link: h.link(cloud),
        name: "device.camcloud.example.com".into(),
        port: 443,
        lat: common::inet_lat(&mut rng, (20, 45)),
        period: p.cloud_heartbeat.0,
        jitter: p.cloud_heartbeat.1,
        hb_up: (180, 230),
        hb_down: (130, 170),
        cert: (4000, 5500),
        reconnects,
        extras: Vec::new(),
        ports: Ports::linux(&mut rng),
        conn: None,
        next_hb: u64::MAX,
        boot: boot + 3 * SEC,
        mark: "cloud_heartbeat",
        rng,
    };
    streams.add(&cname, "camera", tag, brng.u16(), session);

    // DNS refresh every TTL.
    let dname = format!("{name}/dns");
    let mut rng = ctx.rng(&dname);
    let first = boot + p.dns_period + rng.range(0, 5 * SEC);
    let dns = common::DnsStream {
        link: h.link(gw.ep()),
        name: "device.camcloud.example.com".into(),
        answer: inet::CAM_CLOUD,
        next: first,
        period: p.dns_period,
        jitter: 0.02,
        ports: Ports::linux(&mut rng),
        rng,
    };
    streams.add(&dname, "camera", tag, brng.u16(), dns);

    // NTP.
    let nname = format!("{name}/ntp");
    let mut rng = ctx.rng(&nname);
    let ntp_s = NtpStream {
        link: h.link(site.inet(h, inet::NTP_POOL, 64, 9)),
        next: boot + rng.range(SEC, 3 * SEC),
        period: p.ntp.0,
        jitter: p.ntp.1,
        rtt: rng.range(15 * MS, 40 * MS),
        rng,
    };
    streams.add(&nname, "camera", tag, brng.u16(), ntp_s);

    // Motion uploads.
    if !motions.is_empty() {
        let uname = format!("{name}/upload");
        let mut rng = ctx.rng(&uname);
        let times: Vec<u64> = motions.iter().map(|m| m.start + 2 * SEC).collect();
        let first = times[0];
        let https = HttpsStream {
            dns: Some(h.link(gw.ep())),
            dns_every_time: true,
            link: h.link(cloud),
            name: "upload.camcloud.example.com".into(),
            port: 443,
            lat: common::inet_lat(&mut rng, (20, 45)),
            shape: HttpsShape {
                up: p.snapshot,
                down: (300, 600),
                cert: (4000, 5000),
                think: (20 * MS, 80 * MS),
                seg_gap: 400,
            },
            big_every: 0,
            big_down: (0, 0),
            schedule: Schedule::At(times[1..].to_vec()),
            next: first,
            until: ctx.end,
            ports: Ports::linux(&mut rng),
            count: 0,
            mark: "motion_upload",
            rng,
        };
        streams.add(&uname, "camera", tag, brng.u16(), https);
    }
}
