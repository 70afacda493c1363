//! Deterministic synthetic capture for the replay benchmark and the steady-state
//! allocation test: many small frames over many bidirectional flows with a realistic
//! IoT/OT mix, written as a classic little-endian microsecond pcap (Ethernet).
//!
//! The mix (per flow, drawn from a seeded ChaCha8 generator so the file is byte-identical
//! for the same `(frames, flows, seed)`):
//!
//! | share | kind |
//! |------:|------|
//! | 45 % | IPv4 TCP (ports 80, 443, 1883, 8883): handshake, request/response/ACK data, FIN both ways |
//! | 12 % | IPv4 Modbus/TCP (port 502): same shape, valid MBAP read/write requests and responses |
//! | 12 % | IPv4 UDP DNS (port 53): query / response pairs with a real question section |
//! | 10 % | IPv4 UDP other (NTP 123, SNMP 161, CoAP 5683): request / response |
//! |  5 % | IPv4 ICMP echo request / reply |
//! |  8 % | IPv6 TCP (as above) |
//! |  6 % | IPv6 UDP (DNS and other) |
//! |  2 % | ICMPv6 echo request / reply |
//!
//! Independently, 15 % of flows carry an 802.1Q VLAN tag. Every flow has its own 5-tuple;
//! frames per flow vary (0.3x to 3.1x the mean) and sum exactly to `frames`. A fixed number
//! of flows (up to 8,192) are in progress at once and each frame is taken from a random one of
//! them, so flows interleave as on a real link; timestamps advance 0-200 µs per frame
//! (about 10,000 frames/s of packet time), so idle timeouts expire UDP and ICMP flows during
//! the capture and TCP flows end by FIN. Frames are small (60-250 bytes; short frames are
//! padded to the 60-byte Ethernet minimum) and carry correct IPv4, TCP, UDP and ICMP
//! checksums.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Frames of the standard benchmark capture.
pub const BENCH_FRAMES: u64 = 2_000_000;
/// Flows of the standard benchmark capture.
pub const BENCH_FLOWS: u32 = 50_000;
/// Seed of the standard benchmark capture.
pub const BENCH_SEED: u64 = 0x5eed_2026;
/// Version of the generator; part of the parameter stamp so a changed generator
/// regenerates stale files.
const GEN_VERSION: u32 = 1;

/// Flows in progress at once (at most).
const LANES: usize = 8_192;
/// First timestamp of the capture (2023-11-14T22:13:20Z).
const START_US: i64 = 1_700_000_000_000_000;

/// What a generated capture contains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenSummary {
    /// Frames written.
    pub frames: u64,
    /// Flows written.
    pub flows: u32,
    /// File size in bytes.
    pub file_bytes: u64,
    /// TCP flows (IPv4 and IPv6, Modbus included).
    pub tcp_flows: u32,
    /// UDP flows.
    pub udp_flows: u32,
    /// ICMP and ICMPv6 flows.
    pub icmp_flows: u32,
    /// Flows over IPv6.
    pub ipv6_flows: u32,
    /// Flows with an 802.1Q tag.
    pub vlan_flows: u32,
    /// Packet time covered, in microseconds.
    pub duration_us: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Modbus,
    Dns,
    Udp,
    Icmp,
}

/// Static description of one flow.
#[derive(Debug, Clone, Copy)]
struct FlowSpec {
    kind: Kind,
    v6: bool,
    vlan: u16,
    client_ip: [u8; 16],
    server_ip: [u8; 16],
    client_mac: [u8; 6],
    client_port: u16,
    server_port: u16,
    packets: u32,
}

/// Progress of one flow being written.
#[derive(Debug, Clone, Copy)]
struct Lane {
    flow: u32,
    k: u32,
    /// Next sequence number of client and server.
    seq: [u32; 2],
    ip_id: [u16; 2],
    /// Last Modbus function / DNS question index requested (for the response).
    last_req: u8,
}

const ROUTER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xff, 0x00, 0x01];

/// The parameter stamp stored next to a generated capture.
fn stamp(frames: u64, flows: u32, seed: u64) -> String {
    format!("flowsentry benchgen v{GEN_VERSION} frames={frames} flows={flows} seed={seed}\n")
}

fn stamp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".params");
    PathBuf::from(s)
}

/// Makes sure `path` holds the capture for `(frames, flows, seed)`: generates it when the
/// file is missing or was made with other parameters (or another generator version).
/// Returns `true` if it was (re)generated.
pub fn ensure_bench_pcap(path: &Path, frames: u64, flows: u32, seed: u64) -> io::Result<bool> {
    let want = stamp(frames, flows, seed);
    let have = std::fs::read_to_string(stamp_path(path)).unwrap_or_default();
    if path.is_file() && have == want {
        return Ok(false);
    }
    write_bench_pcap(path, frames, flows, seed)?;
    Ok(true)
}

/// Writes the synthetic capture of `frames` frames over `flows` flows (`frames >= flows
/// >= 1`) to `path` (through a temporary file renamed at the end, so an interrupted run
/// never leaves a partial capture under `path`), and a parameter stamp to `path.params`.
pub fn write_bench_pcap(path: &Path, frames: u64, flows: u32, seed: u64) -> io::Result<GenSummary> {
    if flows == 0 || frames < u64::from(flows) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("benchgen needs frames >= flows >= 1 (got {frames} frames, {flows} flows)"),
        ));
    }
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = File::create(&tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut summary = generate(&mut w, frames, flows, seed)?;
    w.flush()?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    summary.file_bytes = file.metadata()?.len();
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::write(stamp_path(path), stamp(frames, flows, seed))?;
    Ok(summary)
}

/// Writes the capture to any byte sink (see [`write_bench_pcap`]); `file_bytes` of the
/// summary counts the bytes written.
pub fn generate<W: Write>(w: &mut W, frames: u64, flows: u32, seed: u64) -> io::Result<GenSummary> {
    if flows == 0 || frames < u64::from(flows) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("benchgen needs frames >= flows >= 1 (got {frames} frames, {flows} flows)"),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let specs = plan_flows(&mut rng, frames, flows);
    let mut s = GenSummary {
        frames,
        flows,
        ..GenSummary::default()
    };
    for f in &specs {
        match f.kind {
            Kind::Tcp | Kind::Modbus => s.tcp_flows += 1,
            Kind::Dns | Kind::Udp => s.udp_flows += 1,
            Kind::Icmp => s.icmp_flows += 1,
        }
        s.ipv6_flows += u32::from(f.v6);
        s.vlan_flows += u32::from(f.vlan != 0);
    }

    // Global header: LE microsecond pcap, snaplen 65535, Ethernet.
    let mut hdr = Vec::with_capacity(24);
    hdr.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    hdr.extend_from_slice(&2u16.to_le_bytes());
    hdr.extend_from_slice(&4u16.to_le_bytes());
    hdr.extend_from_slice(&0i32.to_le_bytes());
    hdr.extend_from_slice(&0u32.to_le_bytes());
    hdr.extend_from_slice(&65_535u32.to_le_bytes());
    hdr.extend_from_slice(&1u32.to_le_bytes());
    w.write_all(&hdr)?;
    let mut written = hdr.len() as u64;

    let mut lanes: Vec<Lane> = Vec::with_capacity(LANES.min(flows as usize));
    let mut next_flow: u32 = 0;
    while lanes.len() < LANES && next_flow < flows {
        lanes.push(new_lane(&mut rng, next_flow));
        next_flow += 1;
    }
    let mut now_us = START_US;
    let mut frame = Vec::with_capacity(512);
    let mut rec = Vec::with_capacity(512);
    let mut emitted: u64 = 0;
    while !lanes.is_empty() {
        let li = rng.random_range(0..lanes.len());
        let lane = &mut lanes[li];
        let spec = &specs[lane.flow as usize];
        frame.clear();
        build_frame(&mut frame, spec, lane, &mut rng);
        lane.k += 1;
        now_us += rng.random_range(0..=200);
        rec.clear();
        rec.extend_from_slice(&((now_us / 1_000_000) as u32).to_le_bytes());
        rec.extend_from_slice(&((now_us % 1_000_000) as u32).to_le_bytes());
        rec.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        rec.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        rec.extend_from_slice(&frame);
        w.write_all(&rec)?;
        written += rec.len() as u64;
        emitted += 1;
        if lane.k >= spec.packets {
            if next_flow < flows {
                *lane = new_lane(&mut rng, next_flow);
                next_flow += 1;
            } else {
                lanes.swap_remove(li);
            }
        }
    }
    debug_assert_eq!(emitted, frames);
    s.frames = emitted;
    s.file_bytes = written;
    s.duration_us = now_us - START_US;
    Ok(s)
}

fn new_lane(rng: &mut ChaCha8Rng, flow: u32) -> Lane {
    Lane {
        flow,
        k: 0,
        seq: [rng.random(), rng.random()],
        ip_id: [rng.random(), rng.random()],
        last_req: 0,
    }
}

/// Draws every flow's kind, addresses and packet count; counts sum to `frames`.
fn plan_flows(rng: &mut ChaCha8Rng, frames: u64, flows: u32) -> Vec<FlowSpec> {
    let mut weights = Vec::with_capacity(flows as usize);
    let mut specs = Vec::with_capacity(flows as usize);
    for i in 0..flows {
        let r: f64 = rng.random();
        weights.push(0.3 + r * r * 2.8);
        let pick: u32 = rng.random_range(0..100);
        let (kind, v6) = match pick {
            0..45 => (Kind::Tcp, false),
            45..57 => (Kind::Modbus, false),
            57..69 => (Kind::Dns, false),
            69..79 => (Kind::Udp, false),
            79..84 => (Kind::Icmp, false),
            84..92 => (Kind::Tcp, true),
            92..95 => (Kind::Dns, true),
            95..98 => (Kind::Udp, true),
            _ => (Kind::Icmp, true),
        };
        let vlan = if rng.random_range(0..100) < 15 {
            rng.random_range(10..=20)
        } else {
            0
        };
        // Unique 5-tuples: client port = 10000 + i % 50000, the block i / 50000 goes into
        // the client address; the device (host) part is random among 2,000 devices.
        let block = ((i / 50_000) % 256) as u8;
        let host: u16 = rng.random_range(1..2_000);
        let server: u16 = rng.random_range(1..300);
        let (client_ip, server_ip) = if v6 {
            let mut c = [0u8; 16];
            c[0] = 0xfd;
            c[13] = block;
            c[14..].copy_from_slice(&host.to_be_bytes());
            let mut s = [0u8; 16];
            s[0] = 0xfd;
            s[1] = 0x01;
            s[14..].copy_from_slice(&server.to_be_bytes());
            (c, s)
        } else {
            let h = host.to_be_bytes();
            let sv = server.to_be_bytes();
            (
                mapped([10, block, h[0], h[1]]),
                mapped([192, 168, sv[0], sv[1]]),
            )
        };
        let server_port = match kind {
            Kind::Tcp => [80, 443, 1883, 8883][rng.random_range(0..4)],
            Kind::Modbus => 502,
            Kind::Dns => 53,
            Kind::Udp => [123, 161, 5683][rng.random_range(0..3)],
            Kind::Icmp => 0,
        };
        let hb = host.to_be_bytes();
        specs.push(FlowSpec {
            kind,
            v6,
            vlan,
            client_ip,
            server_ip,
            client_mac: [0x02, 0x00, 0x00, 0x00, hb[0], hb[1]],
            client_port: 10_000 + (i % 50_000) as u16,
            server_port,
            packets: 1,
        });
    }
    // Counts: 1 each, the rest shared in proportion to the weights, remainder in order.
    let spare = frames - u64::from(flows);
    let total: f64 = weights.iter().sum();
    let mut given = 0u64;
    for (s, w) in specs.iter_mut().zip(&weights) {
        let extra = ((w / total) * spare as f64).floor() as u64;
        s.packets += extra as u32;
        given += extra;
    }
    let mut left = spare - given;
    let n = specs.len();
    let mut i = 0;
    while left > 0 {
        specs[i % n].packets += 1;
        left -= 1;
        i += 1;
    }
    specs
}

fn mapped(v4: [u8; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[10] = 0xff;
    b[11] = 0xff;
    b[12..].copy_from_slice(&v4);
    b
}

mod tcpf {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// One frame's transport content.
struct L4 {
    /// 0 = client to server, 1 = server to client.
    dir: usize,
    proto: u8,
    /// Transport header + payload.
    bytes: [u8; 256],
    len: usize,
}

/// Appends the whole Ethernet frame of `lane`'s next packet to `out`.
fn build_frame(out: &mut Vec<u8>, spec: &FlowSpec, lane: &mut Lane, rng: &mut ChaCha8Rng) {
    let l4 = match spec.kind {
        Kind::Tcp | Kind::Modbus => tcp_segment(spec, lane, rng),
        Kind::Dns => dns_datagram(spec, lane, rng),
        Kind::Udp => udp_datagram(spec, lane, rng),
        Kind::Icmp => icmp_echo(spec, lane, rng),
    };
    let (src_ip, dst_ip) = if l4.dir == 0 {
        (&spec.client_ip, &spec.server_ip)
    } else {
        (&spec.server_ip, &spec.client_ip)
    };
    let (src_mac, dst_mac) = if l4.dir == 0 {
        (spec.client_mac, ROUTER_MAC)
    } else {
        (ROUTER_MAC, spec.client_mac)
    };
    out.extend_from_slice(&dst_mac);
    out.extend_from_slice(&src_mac);
    if spec.vlan != 0 {
        out.extend_from_slice(&0x8100u16.to_be_bytes());
        out.extend_from_slice(&spec.vlan.to_be_bytes());
    }
    let mut seg = l4.bytes;
    let seg = &mut seg[..l4.len];
    if spec.v6 {
        out.extend_from_slice(&0x86ddu16.to_be_bytes());
        out.extend_from_slice(&0x6000_0000u32.to_be_bytes());
        out.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        out.push(l4.proto);
        out.push(64);
        out.extend_from_slice(src_ip);
        out.extend_from_slice(dst_ip);
        l4_checksum(seg, l4.proto, src_ip, dst_ip, true);
    } else {
        out.extend_from_slice(&0x0800u16.to_be_bytes());
        let start = out.len();
        let total = (20 + seg.len()) as u16;
        let id = lane.ip_id[l4.dir];
        lane.ip_id[l4.dir] = id.wrapping_add(1);
        out.extend_from_slice(&[0x45, 0]);
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&0x4000u16.to_be_bytes());
        out.push(64);
        out.push(l4.proto);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&src_ip[12..]);
        out.extend_from_slice(&dst_ip[12..]);
        let c = !fold(sum16(&out[start..start + 20], 0));
        out[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
        l4_checksum(seg, l4.proto, src_ip, dst_ip, false);
    }
    out.extend_from_slice(seg);
    if out.len() < 60 {
        out.resize(60, 0);
    }
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Fills the transport checksum of `seg` (TCP, UDP, ICMP, ICMPv6).
fn l4_checksum(seg: &mut [u8], proto: u8, src: &[u8; 16], dst: &[u8; 16], v6: bool) {
    let off = match proto {
        6 => 16,
        17 => 6,
        _ => 2,
    };
    seg[off] = 0;
    seg[off + 1] = 0;
    let mut acc = 0u32;
    if proto != 1 {
        // Pseudo-header (ICMPv4 has none).
        if v6 {
            acc = sum16(src, acc);
            acc = sum16(dst, acc);
        } else {
            acc = sum16(&src[12..], acc);
            acc = sum16(&dst[12..], acc);
        }
        acc += u32::from(proto) + seg.len() as u32;
    }
    acc = sum16(seg, acc);
    let mut c = !fold(acc);
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    seg[off..off + 2].copy_from_slice(&c.to_be_bytes());
}

fn ports(spec: &FlowSpec, dir: usize) -> (u16, u16) {
    if dir == 0 {
        (spec.client_port, spec.server_port)
    } else {
        (spec.server_port, spec.client_port)
    }
}

fn tcp_segment(spec: &FlowSpec, lane: &mut Lane, rng: &mut ChaCha8Rng) -> L4 {
    use tcpf::*;
    let n = spec.packets;
    let k = lane.k;
    let teardown = if n >= 7 { n - 4 } else { n };
    let mut payload = [0u8; 200];
    let mut plen = 0usize;
    let (dir, flags) = if k == 0 {
        (0, SYN)
    } else if k == 1 {
        (1, SYN | ACK)
    } else if k == 2 {
        (0, ACK)
    } else if k >= teardown {
        match k - teardown {
            0 => (0, FIN | ACK),
            1 => (1, ACK),
            2 => (1, FIN | ACK),
            _ => (0, ACK),
        }
    } else {
        match (k - 3) % 3 {
            0 => {
                plen = if spec.kind == Kind::Modbus {
                    modbus_request(&mut payload, lane, rng)
                } else {
                    fill(&mut payload, rng.random_range(20..=100), k)
                };
                (0, PSH | ACK)
            }
            1 => {
                plen = if spec.kind == Kind::Modbus {
                    modbus_response(&mut payload, lane)
                } else {
                    fill(&mut payload, rng.random_range(40..=180), k)
                };
                (1, PSH | ACK)
            }
            _ => (0, ACK),
        }
    };
    let (sp, dp) = ports(spec, dir);
    let seq = lane.seq[dir];
    let ack = if flags & ACK != 0 {
        lane.seq[1 - dir]
    } else {
        0
    };
    let consumed = plen as u32 + u32::from(flags & (SYN | FIN) != 0);
    lane.seq[dir] = seq.wrapping_add(consumed);
    let mut l4 = L4 {
        dir,
        proto: 6,
        bytes: [0; 256],
        len: 20 + plen,
    };
    let b = &mut l4.bytes;
    b[0..2].copy_from_slice(&sp.to_be_bytes());
    b[2..4].copy_from_slice(&dp.to_be_bytes());
    b[4..8].copy_from_slice(&seq.to_be_bytes());
    b[8..12].copy_from_slice(&ack.to_be_bytes());
    b[12] = 5 << 4;
    b[13] = flags;
    b[14..16].copy_from_slice(&64_240u16.to_be_bytes());
    b[20..20 + plen].copy_from_slice(&payload[..plen]);
    l4
}

/// Deterministic filler bytes.
fn fill(buf: &mut [u8], len: usize, salt: u32) -> usize {
    for (i, b) in buf[..len].iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(31).wrapping_add(salt) as u8;
    }
    len
}

fn modbus_request(buf: &mut [u8], lane: &mut Lane, rng: &mut ChaCha8Rng) -> usize {
    let tid = (lane.k / 3) as u16;
    let func: u8 = match rng.random_range(0..10) {
        0 => 6,
        1 => 16,
        2 => 4,
        _ => 3,
    };
    lane.last_req = func;
    let addr: u16 = rng.random_range(0..1000);
    buf[0..2].copy_from_slice(&tid.to_be_bytes());
    buf[2..4].copy_from_slice(&0u16.to_be_bytes());
    buf[6] = 1;
    buf[7] = func;
    buf[8..10].copy_from_slice(&addr.to_be_bytes());
    let len = if func == 16 {
        // Write 2 registers: count, byte count, 4 data bytes.
        buf[10..12].copy_from_slice(&2u16.to_be_bytes());
        buf[12] = 4;
        buf[13..17].copy_from_slice(&[0, 1, 0, 2]);
        17
    } else {
        buf[10..12].copy_from_slice(&(if func == 6 { 42u16 } else { 8 }).to_be_bytes());
        12
    };
    buf[4..6].copy_from_slice(&((len - 6) as u16).to_be_bytes());
    len
}

fn modbus_response(buf: &mut [u8], lane: &Lane) -> usize {
    let tid = (lane.k / 3) as u16;
    let func = lane.last_req.max(3);
    buf[0..2].copy_from_slice(&tid.to_be_bytes());
    buf[2..4].copy_from_slice(&0u16.to_be_bytes());
    buf[6] = 1;
    buf[7] = func;
    let len = match func {
        3 | 4 => {
            buf[8] = 16;
            for (i, b) in buf[9..25].iter_mut().enumerate() {
                *b = i as u8;
            }
            25
        }
        _ => {
            // Echo of address and value/count.
            buf[8..12].copy_from_slice(&[0, 7, 0, 2]);
            12
        }
    };
    buf[4..6].copy_from_slice(&((len - 6) as u16).to_be_bytes());
    len
}

const DNS_NAMES: [&[u8]; 6] = [
    b"\x07sensor1\x05plant\x07example\x00",
    b"\x03plc\x04line\x014\x07factory\x05local\x00",
    b"\x04time\x07example\x03org\x00",
    b"\x06camera\x03lab\x07example\x00",
    b"\x04mqtt\x06broker\x07example\x03com\x00",
    b"\x0bupdate-01a2\x06vendor\x03net\x00",
];

fn udp_header(b: &mut [u8; 256], sp: u16, dp: u16, len: usize) {
    b[0..2].copy_from_slice(&sp.to_be_bytes());
    b[2..4].copy_from_slice(&dp.to_be_bytes());
    b[4..6].copy_from_slice(&(len as u16).to_be_bytes());
}

fn dns_datagram(spec: &FlowSpec, lane: &mut Lane, rng: &mut ChaCha8Rng) -> L4 {
    let dir = (lane.k % 2) as usize;
    if dir == 0 {
        lane.last_req = rng.random_range(0..DNS_NAMES.len() as u8);
    }
    let name = DNS_NAMES[lane.last_req as usize];
    let (sp, dp) = ports(spec, dir);
    let mut l4 = L4 {
        dir,
        proto: 17,
        bytes: [0; 256],
        len: 0,
    };
    let b = &mut l4.bytes;
    let p = &mut b[8..];
    p[0..2].copy_from_slice(&((lane.k / 2) as u16).to_be_bytes());
    p[2..4].copy_from_slice(&(if dir == 0 { 0x0100u16 } else { 0x8180 }).to_be_bytes());
    p[4..6].copy_from_slice(&1u16.to_be_bytes());
    p[6..8].copy_from_slice(&u16::from(dir == 1).to_be_bytes());
    let mut at = 12;
    p[at..at + name.len()].copy_from_slice(name);
    at += name.len();
    let qtype: u16 = if spec.v6 { 28 } else { 1 };
    p[at..at + 4].copy_from_slice(&[0, qtype as u8, 0, 1]);
    at += 4;
    if dir == 1 {
        // Answer: pointer to the question name, type, class, TTL, address.
        p[at..at + 2].copy_from_slice(&0xc00cu16.to_be_bytes());
        p[at + 2..at + 4].copy_from_slice(&qtype.to_be_bytes());
        p[at + 4..at + 6].copy_from_slice(&1u16.to_be_bytes());
        p[at + 6..at + 10].copy_from_slice(&300u32.to_be_bytes());
        let alen: usize = if spec.v6 { 16 } else { 4 };
        p[at + 10..at + 12].copy_from_slice(&(alen as u16).to_be_bytes());
        at += 12;
        for (i, x) in p[at..at + alen].iter_mut().enumerate() {
            *x = 10 + i as u8;
        }
        at += alen;
    }
    l4.len = 8 + at;
    udp_header(&mut l4.bytes, sp, dp, l4.len);
    l4
}

fn udp_datagram(spec: &FlowSpec, lane: &mut Lane, rng: &mut ChaCha8Rng) -> L4 {
    let dir = (lane.k % 2) as usize;
    let (sp, dp) = ports(spec, dir);
    let plen = match spec.server_port {
        123 => 48,
        161 => rng.random_range(40..=90),
        _ => rng.random_range(16..=120),
    };
    let mut l4 = L4 {
        dir,
        proto: 17,
        bytes: [0; 256],
        len: 8 + plen,
    };
    fill(&mut l4.bytes[8..], plen, lane.k);
    udp_header(&mut l4.bytes, sp, dp, l4.len);
    l4
}

fn icmp_echo(spec: &FlowSpec, lane: &mut Lane, rng: &mut ChaCha8Rng) -> L4 {
    let dir = (lane.k % 2) as usize;
    let ty = match (spec.v6, dir) {
        (false, 0) => 8,
        (false, _) => 0,
        (true, 0) => 128,
        (true, _) => 129,
    };
    if dir == 0 {
        lane.last_req = rng.random_range(32..=56);
    }
    let plen = usize::from(lane.last_req);
    let mut l4 = L4 {
        dir,
        proto: if spec.v6 { 58 } else { 1 },
        bytes: [0; 256],
        len: 8 + plen,
    };
    let b = &mut l4.bytes;
    b[0] = ty;
    b[4..6].copy_from_slice(&spec.client_port.to_be_bytes());
    b[6..8].copy_from_slice(&((lane.k / 2) as u16).to_be_bytes());
    fill(&mut b[8..], plen, lane.flow);
    l4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_exact_counts() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let sa = generate(&mut a, 5_000, 200, 7).expect("generate");
        let sb = generate(&mut b, 5_000, 200, 7).expect("generate");
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert_eq!(sa.frames, 5_000);
        assert_eq!(sa.file_bytes, a.len() as u64);
        assert_eq!(sa.tcp_flows + sa.udp_flows + sa.icmp_flows, 200);
        let mut c = Vec::new();
        generate(&mut c, 5_000, 200, 8).expect("generate");
        assert_ne!(a, c);
    }

    #[test]
    fn rejects_too_few_frames() {
        assert!(generate(&mut Vec::new(), 10, 20, 1).is_err());
        assert!(generate(&mut Vec::new(), 10, 0, 1).is_err());
    }
}
