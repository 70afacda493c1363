//! Exactness against tshark: for every capture in `../shared/pcaps`, the TCP and UDP flows
//! of `flowsentry replay` (timeouts disabled) must match tshark's conversation tables
//! (`-z conv,tcp -z conv,udp`) flow by flow, packets and bytes (frame lengths) per
//! direction. Every principled difference is modelled here explicitly and documented in
//! `docs/events.md` ("Exactness against tshark"); nothing is skipped wholesale.
//!
//! How: one tshark run per file prints per-frame fields (`-T fields`: frame length, the
//! protocol stack, every IP/IPv6/TCP/UDP layer's addresses, ports and `tcp.stream` /
//! `udp.stream`, IP fragment fields) *and* the conversation tables. The conversation
//! tables print bytes rounded ("71 kB"), so the exact per-direction bytes come from the
//! per-frame fields, grouped by stream exactly as tshark's conversation tap does; that
//! per-frame table is first checked against the printed tables (same conversations, same
//! frame counts, bytes within the printed rounding), then adjusted by the documented rules
//! and compared with our flow events.
//!
//! tshark options: `-n` (no name resolution: addresses as printed by us),
//! `-o ip.defragment:FALSE -o ipv6.defragment:FALSE` (tshark then counts every frame in
//! which it dissects a transport header, i.e. the first fragment of a fragmented datagram,
//! at its own frame length, like us; with reassembly on it would count the datagram once,
//! at the frame that completes it).

mod common;

use common::{capture_files, par_map, rel, PCAPS};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Fields printed per frame, in this order.
const FIELDS: [&str; 27] = [
    "frame.number",
    "frame.len",
    "frame.time_relative",
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.id",
    "ip.flags.mf",
    "ip.frag_offset",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.fraghdr.nxt",
    "ipv6.fraghdr.ident",
    "ipv6.fraghdr.offset",
    "ipv6.fraghdr.more",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.stream",
    "udp.srcport",
    "udp.dstport",
    "udp.stream",
    "vlan.id",
    "tcp.hdr_len",
    "frame.cap_len",
    "ip.len",
    "ip.hdr_len",
];

/// Seconds a first fragment's ports are remembered (flowsentry's default
/// `fragments.timeout_secs`).
const FRAG_TIMEOUT_S: f64 = 30.0;

/// Link and encapsulation layers (tshark protocol names) that flowsentry decodes on the way
/// to an IP header.
const SUPPORTED_LINK: [&str; 10] = [
    "eth",
    "ethertype",
    "vlan",
    "mpls",
    "sll",
    "null",
    "raw",
    "pwethcw",
    "pwethheuristic",
    "pwethnocw",
];

/// Captures that flowsentry deliberately rejects while tshark reads them, with the reason
/// (the libpcap reader rejects them too, so both readers agree).
const WE_REJECT: [(&str, &str); 1] = [(
    "robustness/formats/pcap-invalid-version-2.pcap",
    "pcap version 2.5: libpcap rejects unknown minor versions and flowsentry follows it",
)];

/// Captures given to flowsentry in another form than to tshark, which reads them natively.
fn converted_input(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(".gz") {
        Some("gzip: replayed from `gzip -dc FILE | flowsentry replay -`")
    } else if name.ends_with(".snoop") {
        Some("snoop: replayed after `editcap -F pcap` (flowsentry reads pcap/pcapng only)")
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------
// tshark side
// ---------------------------------------------------------------------------------------

/// One IP or IPv6 header of a frame.
#[derive(Debug, Clone, Default)]
struct IpLayer {
    src: String,
    dst: String,
    /// Transport protocol (IPv4 protocol or the IPv6 fragment header's next header).
    proto: u8,
    /// IPv4 id or IPv6 fragment identification.
    id: u32,
    /// A fragment (more-fragments set or offset non-zero).
    fragment: bool,
    /// A fragment with offset > 0.
    non_first: bool,
    /// IPv4 total length minus header length.
    payload_len: Option<u32>,
}

/// One TCP or UDP layer of a frame.
#[derive(Debug, Clone)]
struct TransportLayer {
    proto: &'static str,
    /// Index of the layer in the protocol stack.
    pos: usize,
    sport: Option<u16>,
    dport: Option<u16>,
    /// tcp.stream / udp.stream: present when tshark's conversation tap counted the layer.
    stream: Option<u64>,
    /// The IP header the layer sits on.
    ip: Option<IpLayer>,
    /// Inside an ICMP/ICMPv6 error payload (tshark's taps ignore these).
    in_icmp: bool,
    /// TCP header length (data offset × 4), when dissected.
    tcp_hdr_len: Option<u32>,
}

/// One frame as tshark dissected it.
#[derive(Debug, Clone)]
struct TsFrame {
    len: u64,
    rel: f64,
    /// Captured length below the wire length.
    snaplen_cut: bool,
    layers: Vec<String>,
    ips: Vec<(usize, IpLayer)>,
    transports: Vec<TransportLayer>,
    vlans: String,
}

impl TsFrame {
    /// Transport layers that tshark's conversation tables count.
    fn tapped(&self) -> impl Iterator<Item = &TransportLayer> {
        self.transports
            .iter()
            .filter(|t| t.stream.is_some() && !t.in_icmp)
    }
}

fn list(s: &str) -> Vec<&str> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(',').collect()
    }
}

fn num<T: std::str::FromStr>(s: Option<&&str>) -> Option<T> {
    s.and_then(|v| v.parse().ok())
}

/// An integer printed in decimal or as `0x…` hex.
fn int(s: Option<&&str>) -> Option<u32> {
    let v = s?;
    match v.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

fn boolean(s: Option<&&str>) -> bool {
    matches!(s.copied(), Some("1") | Some("True") | Some("true"))
}

fn parse_frame(line: &str) -> Result<TsFrame, String> {
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() != FIELDS.len() {
        return Err(format!("expected {} fields: {line:?}", FIELDS.len()));
    }
    let col = |i: usize| list(f[i]);
    let (ip_src, ip_dst, ip_proto, ip_id, ip_mf, ip_off) =
        (col(4), col(5), col(6), col(7), col(8), col(9));
    let (v6_src, v6_dst, fh_nxt, fh_id, fh_off, fh_more) =
        (col(10), col(11), col(12), col(13), col(14), col(15));
    let (tcp_sp, tcp_dp, tcp_st, udp_sp, udp_dp, udp_st) =
        (col(16), col(17), col(18), col(19), col(20), col(21));
    let tcp_hl = col(23);
    let (ip_len, ip_hl) = (col(25), col(26));
    let layers: Vec<String> = f[3].split(':').map(str::to_string).collect();
    let (mut i4, mut i6, mut ifh, mut itcp, mut iudp) = (0, 0, 0, 0, 0);
    let mut ips: Vec<(usize, IpLayer)> = Vec::new();
    let mut transports = Vec::new();
    let mut cur: Option<usize> = None; // index into ips
    let mut in_icmp = false;
    for (pos, name) in layers.iter().enumerate() {
        match name.as_str() {
            "ip" => {
                let off: u32 = num(ip_off.get(i4)).unwrap_or(0);
                ips.push((
                    pos,
                    IpLayer {
                        src: ip_src.get(i4).unwrap_or(&"").to_string(),
                        dst: ip_dst.get(i4).unwrap_or(&"").to_string(),
                        proto: num(ip_proto.get(i4)).unwrap_or(0),
                        id: int(ip_id.get(i4)).unwrap_or(0),
                        fragment: boolean(ip_mf.get(i4)) || off != 0,
                        non_first: off != 0,
                        payload_len: num::<u32>(ip_len.get(i4))
                            .zip(num::<u32>(ip_hl.get(i4)))
                            .map(|(l, h)| l.saturating_sub(h)),
                    },
                ));
                cur = Some(ips.len() - 1);
                i4 += 1;
            }
            "ipv6" => {
                ips.push((
                    pos,
                    IpLayer {
                        src: v6_src.get(i6).unwrap_or(&"").to_string(),
                        dst: v6_dst.get(i6).unwrap_or(&"").to_string(),
                        ..IpLayer::default()
                    },
                ));
                cur = Some(ips.len() - 1);
                i6 += 1;
            }
            "ipv6.fraghdr" => {
                if let Some(c) = cur {
                    let ip = &mut ips[c].1;
                    let off: u32 = num(fh_off.get(ifh)).unwrap_or(0);
                    ip.proto = num(fh_nxt.get(ifh)).unwrap_or(0);
                    ip.id = int(fh_id.get(ifh)).unwrap_or(0);
                    ip.fragment = boolean(fh_more.get(ifh)) || off != 0;
                    ip.non_first = off != 0;
                }
                ifh += 1;
            }
            "icmp" | "icmpv6" => in_icmp = true,
            "tcp" | "udp" => {
                let tcp = name == "tcp";
                // tshark numbers a TCP stream before it checks the header length, and
                // does not count a header shorter than 20 bytes (nor do we).
                let hdr_len: Option<u32> = if tcp { num(tcp_hl.get(itcp)) } else { None };
                // In a first fragment too short for the TCP header (options included)
                // tshark stops before its tap as well.
                let short_frag = cur.is_some_and(|c| {
                    let ip = &ips[c].1;
                    ip.fragment && hdr_len.zip(ip.payload_len).is_some_and(|(h, p)| p < h)
                });
                let bogus = tcp && (hdr_len.is_none_or(|h| h < 20) || short_frag);
                let (k, sp, dp, st) = if tcp {
                    (&mut itcp, &tcp_sp, &tcp_dp, &tcp_st)
                } else {
                    (&mut iudp, &udp_sp, &udp_dp, &udp_st)
                };
                let ip = cur.map(|c| ips[c].1.clone());
                transports.push(TransportLayer {
                    proto: if tcp { "TCP" } else { "UDP" },
                    pos,
                    sport: num(sp.get(*k)),
                    dport: num(dp.get(*k)),
                    stream: if bogus { None } else { num(st.get(*k)) },
                    tcp_hdr_len: hdr_len,
                    ip,
                    in_icmp,
                });
                *k += 1;
            }
            _ => {}
        }
    }
    f[0].parse::<u64>()
        .map_err(|_| format!("bad frame number: {line:?}"))?;
    Ok(TsFrame {
        len: f[1]
            .parse()
            .map_err(|_| format!("bad frame.len: {line:?}"))?,
        rel: f[2].parse().unwrap_or(0.0),
        snaplen_cut: num::<u64>(f.get(24)) < f[1].parse().ok(),
        layers,
        ips,
        transports,
        vlans: f[22].to_string(),
    })
}

/// One row of a printed conversation table. Bytes are a range because tshark rounds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ConvRow {
    proto: &'static str,
    a: String,
    b: String,
    frames_ab: u64,
    frames_ba: u64,
    start: String,
    bytes_ab: (u64, u64),
    bytes_ba: (u64, u64),
}

/// Parses "468 kB" into the byte range tshark's `format_size` (SI, truncating) printed.
fn byte_range(n: &str, unit: &str) -> Option<(u64, u64)> {
    let n: u64 = n.parse().ok()?;
    let scale: u64 = match unit {
        "bytes" => 1,
        "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    Some((n * scale, n * scale + scale - 1))
}

fn parse_conv_row(proto: &'static str, line: &str) -> Option<ConvRow> {
    let t: Vec<&str> = line.split_whitespace().collect();
    if t.len() != 14 || t[1] != "<->" {
        return None;
    }
    Some(ConvRow {
        proto,
        a: t[0].to_string(),
        b: t[2].to_string(),
        frames_ba: t[3].parse().ok()?,
        bytes_ba: byte_range(t[4], t[5])?,
        frames_ab: t[6].parse().ok()?,
        bytes_ab: byte_range(t[7], t[8])?,
        start: t[12].to_string(),
    })
}

/// What tshark printed for one file.
struct TsharkRun {
    frames: Vec<TsFrame>,
    rows: Vec<ConvRow>,
    ok: bool,
    stderr: String,
}

fn run_tshark(path: &Path) -> Result<TsharkRun, String> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(path).args([
        "-o",
        "ip.defragment:FALSE",
        "-o",
        "ipv6.defragment:FALSE",
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    cmd.args(["-z", "conv,tcp", "-z", "conv,udp"]);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run tshark: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut frames = Vec::new();
    let mut rows = Vec::new();
    let mut table: Option<&'static str> = None;
    for line in text.lines() {
        if line.starts_with("TCP Conversations") {
            table = Some("TCP");
        } else if line.starts_with("UDP Conversations") {
            table = Some("UDP");
        } else if let Some(p) = table {
            if let Some(r) = parse_conv_row(p, line) {
                rows.push(r);
            }
        } else if line.starts_with(|c: char| c.is_ascii_digit()) && line.contains('\t') {
            frames.push(parse_frame(line)?);
        }
    }
    let stderr: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("Running as user"))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(TsharkRun {
        frames,
        rows,
        ok: out.status.success(),
        stderr,
    })
}

/// Joins an address and port the way tshark's conversation table prints them.
fn ep(addr: &str, port: u16) -> String {
    format!("{addr}:{port}")
}

/// The conversation table prints the relative start computed in floating point
/// ("132075355.415713996" for the frame time 132075355.415714000): equal within rounding.
fn same_start(table: &str, frame: f64) -> bool {
    table
        .parse::<f64>()
        .is_ok_and(|a| (a - frame).abs() <= 1e-6 + 1e-12 * frame.abs())
}

/// Per-frame conversations grouped like tshark's tap (by protocol and stream), checked
/// against the printed tables.
fn check_against_tables(run: &TsharkRun) -> Result<(), String> {
    struct Acc {
        a: String,
        b: String,
        /// Earliest frame time (the table prints the minimum, timestamps may go back).
        start: f64,
        f: [u64; 2],
        by: [u64; 2],
    }
    // The tap's key: addresses, ports and stream (a stream can span address pairs, e.g.
    // RTP conversations set up by SDP).
    let mut convs: BTreeMap<(&'static str, u64, String, String), Acc> = BTreeMap::new();
    for fr in &run.frames {
        for t in fr.tapped() {
            let (Some(ip), Some(sp), Some(dp), Some(st)) = (&t.ip, t.sport, t.dport, t.stream)
            else {
                continue;
            };
            let (s, d) = (ep(&ip.src, sp), ep(&ip.dst, dp));
            let pair = if s <= d {
                (s.clone(), d.clone())
            } else {
                (d.clone(), s.clone())
            };
            let acc = convs
                .entry((t.proto, st, pair.0, pair.1))
                .or_insert_with(|| Acc {
                    a: s.clone(),
                    b: d.clone(),
                    start: fr.rel,
                    f: [0; 2],
                    by: [0; 2],
                });
            acc.start = acc.start.min(fr.rel);
            let dir = usize::from(!(acc.a == s && acc.b == d));
            acc.f[dir] += 1;
            acc.by[dir] += fr.len;
        }
    }
    let mut pending: Vec<&ConvRow> = run.rows.iter().collect();
    for ((proto, stream, _, _), acc) in &convs {
        let pos = pending.iter().position(|r| {
            r.proto == *proto
                && r.a == acc.a
                && r.b == acc.b
                && r.frames_ab == acc.f[0]
                && r.frames_ba == acc.f[1]
                && same_start(&r.start, acc.start)
                && (r.bytes_ab.0..=r.bytes_ab.1).contains(&acc.by[0])
                && (r.bytes_ba.0..=r.bytes_ba.1).contains(&acc.by[1])
        });
        match pos {
            Some(p) => {
                pending.swap_remove(p);
            }
            None => {
                return Err(format!(
                    "reading tshark: the per-frame {proto} stream {stream} ({} <-> {}, \
                     frames {}/{}, bytes {}/{}, start {}) is not in tshark's conversation table",
                    acc.a, acc.b, acc.f[0], acc.f[1], acc.by[0], acc.by[1], acc.start
                ))
            }
        }
    }
    if let Some(r) = pending.first() {
        return Err(format!(
            "reading tshark: conversation-table row {r:?} has no per-frame counterpart"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The documented model of what flowsentry counts, applied to tshark's frames
// ---------------------------------------------------------------------------------------

/// Identity of a compared conversation: protocol and the two endpoints, low one first.
type GroupKey = (&'static str, String, String);

/// Counts of one conversation, by endpoint order (0 = low → high, 1 = high → low).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Counts {
    pkts: [u64; 2],
    bytes: [u64; 2],
}

impl Counts {
    fn add(&mut self, dir: usize, len: u64) {
        self.pkts[dir] += 1;
        self.bytes[dir] += len;
    }
    fn sum(&mut self, o: &Counts) {
        for d in 0..2 {
            self.pkts[d] += o.pkts[d];
            self.bytes[d] += o.bytes[d];
        }
    }
}

fn group_of(proto: &'static str, src: String, dst: String) -> (GroupKey, usize) {
    if src <= dst {
        ((proto, src, dst), 0)
    } else {
        ((proto, dst, src), 1)
    }
}

/// Sub-conversation inside a group: a tshark stream, or the synthetic bucket of later
/// fragments whose first fragment was not seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Sub {
    Stream(u64),
    Unmatched,
}

/// What the model expects flowsentry to count for one frame.
enum Ours {
    /// This transport layer of the frame (index into `transports`).
    Layer(usize),
    /// A later IP fragment of this IP header (index into `ips`).
    LaterFragment(usize),
    /// No TCP/UDP flow (ICMP, GRE, IP-in-IP, ARP, not decoded, ...); the reason explains
    /// why tshark's transport layers of the frame, if any, are not ours.
    Nothing(String),
}

/// Walks tshark's protocol stack the way flowsentry's decoder does (see `src/decode.rs`):
/// supported link layers down to the first IP header; a fragment is never decapsulated;
/// VXLAN (UDP destination 4789) and GRE (carrying IP, Ethernet, MPLS or VLAN) are
/// decapsulated; every other payload ends the walk.
fn our_layer(fr: &TsFrame) -> Ours {
    let layers = &fr.layers;
    let Some(first_ip) = layers.iter().position(|l| l == "ip" || l == "ipv6") else {
        return Ours::Nothing("no IP header".into());
    };
    if let Some(bad) = layers[..first_ip]
        .iter()
        .find(|l| !SUPPORTED_LINK.contains(&l.as_str()))
    {
        return Ours::Nothing(format!(
            "link/encapsulation not decoded by flowsentry: {bad}"
        ));
    }
    let mut pos = first_ip;
    loop {
        let Some(ip_idx) = fr.ips.iter().position(|(p, _)| *p == pos) else {
            return Ours::Nothing("IP header not dissected".into());
        };
        let ip = &fr.ips[ip_idx].1;
        if ip.non_first {
            return Ours::LaterFragment(ip_idx);
        }
        // Next layer after the IP header and its IPv6 extension headers.
        let mut n = pos + 1;
        while layers.get(n).is_some_and(|l| l.starts_with("ipv6.")) {
            n += 1;
        }
        let next = layers.get(n).map(String::as_str).unwrap_or("");
        let layer_at = |p: usize| fr.transports.iter().position(|t| t.pos == p);
        match next {
            "tcp" | "udp" => {
                let Some(ti) = layer_at(n) else {
                    return Ours::Nothing("transport layer not dissected".into());
                };
                let t = &fr.transports[ti];
                // flowsentry reads the data offset only when the 20-byte fixed header is
                // inside the fragment; a shorter first fragment keeps its ports (partial
                // header), whatever tshark reads past the fragment's end.
                let fixed_header_inside = !(ip.fragment && ip.payload_len.is_some_and(|p| p < 20));
                if fixed_header_inside && t.tcp_hdr_len.is_some_and(|h| h < 20) {
                    return Ours::Nothing("TCP data offset < 5 (both skip the packet)".into());
                }
                if t.stream.is_none() && !ip.fragment && !fr.snaplen_cut {
                    // A complete packet whose IP length leaves no room for the transport
                    // header: a decode error for flowsentry, a malformed packet for tshark.
                    return Ours::Nothing("transport header does not fit in the IP length".into());
                }
                let vxlan = next == "udp"
                    && layers.get(n + 1).is_some_and(|l| l == "vxlan")
                    && t.dport == Some(4789);
                if !vxlan {
                    return Ours::Layer(ti);
                }
                if ip.fragment {
                    return Ours::Layer(ti); // a fragment is never decapsulated
                }
                // VXLAN: inner Ethernet down to the next IP header.
                match next_ip(layers, n + 2) {
                    Ok(p) => pos = p,
                    // Inner frame not IP: flowsentry counts the outer UDP flow.
                    Err(_) => return Ours::Layer(ti),
                }
            }
            "gre" if !ip.fragment => match next_ip(layers, n + 1) {
                Ok(p) => pos = p,
                Err(why) => return Ours::Nothing(format!("GRE payload not decapsulated: {why}")),
            },
            "gre" => {
                return Ours::Nothing("tunnel inside an IP fragment (not decapsulated)".into())
            }
            "" => return Ours::Nothing("IP payload not dissected".into()),
            other if ip.fragment => {
                return Ours::Nothing(format!(
                    "first fragment of a {other} datagram (tunnels in fragments are not \
                     decapsulated)"
                ))
            }
            other => return Ours::Nothing(format!("IP payload {other} is not TCP/UDP")),
        }
    }
}

/// Position of the next IP header after link layers flowsentry decodes inside a tunnel.
fn next_ip(layers: &[String], from: usize) -> Result<usize, String> {
    for (p, l) in layers.iter().enumerate().skip(from) {
        match l.as_str() {
            "ip" | "ipv6" => return Ok(p),
            l if SUPPORTED_LINK.contains(&l) => {}
            other => return Err(other.to_string()),
        }
    }
    Err("no inner IP".into())
}

/// The expected flows: per group, per sub-conversation, counts; plus the frames excluded
/// by each documented rule.
#[derive(Default)]
struct Expected {
    groups: BTreeMap<GroupKey, BTreeMap<Sub, Counts>>,
    /// Documented rule → transport layers (tshark-counted) excluded, or frames added.
    notes: BTreeMap<String, u64>,
}

impl Expected {
    fn note(&mut self, what: String) {
        *self.notes.entry(what).or_default() += 1;
    }
}

/// First fragment memory of the model: (VLANs, src, dst, proto, id) → (group, sub, ports).
struct FragMemo {
    group: (&'static str, String, u16, String, u16),
    sub: Sub,
    created: f64,
}

/// A later fragment of the model that came before its first fragment (flowsentry holds
/// it back, `src/fragment.rs`).
struct HeldFrag {
    key: FragId,
    /// TCP or UDP by its own next header (None: not compared unless attributed).
    proto: Option<&'static str>,
    src: String,
    dst: String,
    len: u64,
    arrived: f64,
}

/// A datagram's identity: (VLANs, src, dst, proto, id); proto 0 for IPv6, whose
/// fragments are identified by (src, dst, id) alone (RFC 8200).
type FragId = (String, String, String, u8, u32);

fn frag_id(vlans: &str, ip: &IpLayer) -> FragId {
    let proto = if ip.src.contains(':') { 0 } else { ip.proto };
    (
        vlans.to_owned(),
        ip.src.clone(),
        ip.dst.clone(),
        proto,
        ip.id,
    )
}

fn expected_from(frames: &[TsFrame]) -> Expected {
    let mut exp = Expected::default();
    let mut frags: HashMap<FragId, FragMemo> = HashMap::new();
    let mut held: Vec<HeldFrag> = Vec::new();
    let mut clock = f64::NEG_INFINITY;
    for fr in frames {
        clock = clock.max(fr.rel);
        let ours = our_layer(fr);
        // tshark-counted layers that are not ours are excluded, by reason.
        for (ti, t) in fr.transports.iter().enumerate() {
            if t.stream.is_none() || t.in_icmp {
                continue;
            }
            match &ours {
                Ours::Layer(o) if *o == ti => {}
                Ours::Layer(o) if fr.transports[*o].pos < t.pos => {
                    exp.note(format!(
                        "excluded: {} layer inside a tunnel flowsentry does not decapsulate",
                        t.proto
                    ));
                }
                Ours::Layer(_) => exp.note(format!(
                    "excluded: outer {} layer of a decapsulated tunnel (VXLAN)",
                    t.proto
                )),
                Ours::LaterFragment(_) => exp.note(format!(
                    "excluded: {} layer inside a later IP fragment",
                    t.proto
                )),
                Ours::Nothing(why) => exp.note(format!("excluded: {} layer: {why}", t.proto)),
            }
        }
        match ours {
            Ours::Layer(ti) => {
                let t = &fr.transports[ti];
                let Some(ip) = &t.ip else { continue };
                let (sp, dp) = (t.sport.unwrap_or(0), t.dport.unwrap_or(0));
                let sub = match t.stream {
                    Some(s) if !t.in_icmp => Sub::Stream(s),
                    _ => {
                        exp.note(format!(
                            "added: {} header incomplete (tshark does not count it, flowsentry keeps the ports)",
                            t.proto
                        ));
                        Sub::Unmatched
                    }
                };
                let (g, dir) = group_of(t.proto, ep(&ip.src, sp), ep(&ip.dst, dp));
                exp.groups
                    .entry(g)
                    .or_default()
                    .entry(sub)
                    .or_default()
                    .add(dir, fr.len);
                if ip.fragment {
                    let key = frag_id(&fr.vlans, ip);
                    let group = (t.proto, ip.src.clone(), sp, ip.dst.clone(), dp);
                    match frags.get_mut(&key) {
                        Some(m) if clock - m.created <= FRAG_TIMEOUT_S => {
                            m.group = group.clone();
                            m.sub = sub;
                        }
                        _ => {
                            frags.insert(
                                key.clone(),
                                FragMemo {
                                    group: group.clone(),
                                    sub,
                                    created: clock,
                                },
                            );
                        }
                    }
                    // Later fragments of this datagram that came before it and are still
                    // held (within the fragment timeout) join its flow.
                    let (_, s, sp, d, dp) = &group;
                    let mut i = 0;
                    while i < held.len() {
                        let h = &held[i];
                        if h.key != key || clock - h.arrived > FRAG_TIMEOUT_S {
                            i += 1;
                            continue;
                        }
                        let h = held.remove(i);
                        exp.note(
                            "added: later IP fragment held until its first fragment came, \
                             attributed to its flow"
                                .into(),
                        );
                        let (g, dir) = group_of(t.proto, ep(s, *sp), ep(d, *dp));
                        exp.groups
                            .entry(g)
                            .or_default()
                            .entry(sub)
                            .or_default()
                            .add(dir, h.len);
                    }
                }
            }
            Ours::LaterFragment(ii) => {
                let ip = &fr.ips[ii].1;
                // Its own next header: an IPv6 fragment may name an extension header
                // that precedes the transport header in the first fragment.
                let proto = match ip.proto {
                    6 => Some("TCP"),
                    17 => Some("UDP"),
                    _ => None,
                };
                let key = frag_id(&fr.vlans, ip);
                let (proto, src, dst, sub) = match frags.get(&key) {
                    Some(m) if clock - m.created <= FRAG_TIMEOUT_S => {
                        exp.note(
                            "added: later IP fragment attributed to its first fragment's flow"
                                .into(),
                        );
                        let (p, s, sp, d, dp) = &m.group;
                        // Same direction as the first fragment (same src/dst by key).
                        (*p, ep(s, *sp), ep(d, *dp), m.sub)
                    }
                    _ => {
                        // Held back until its first fragment comes (or counted with
                        // ports 0 at the end if it never does in time).
                        held.push(HeldFrag {
                            key,
                            proto,
                            src: ip.src.clone(),
                            dst: ip.dst.clone(),
                            len: fr.len,
                            arrived: clock,
                        });
                        continue;
                    }
                };
                let (g, dir) = group_of(proto, src, dst);
                exp.groups
                    .entry(g)
                    .or_default()
                    .entry(sub)
                    .or_default()
                    .add(dir, fr.len);
            }
            Ours::Nothing(_) => {}
        }
    }
    for h in held {
        let Some(proto) = h.proto else { continue };
        exp.note("added: later IP fragment without its first fragment (ports 0)".into());
        let (g, dir) = group_of(proto, ep(&h.src, 0), ep(&h.dst, 0));
        exp.groups
            .entry(g)
            .or_default()
            .entry(Sub::Unmatched)
            .or_default()
            .add(dir, h.len);
    }
    exp
}

// ---------------------------------------------------------------------------------------
// Our side and the comparison
// ---------------------------------------------------------------------------------------

/// One of our TCP/UDP flow events.
#[derive(Debug, Clone)]
struct OurFlow {
    counts: Counts,
    vlan: String,
    tunnel: String,
}

fn our_flows(events: &[Value]) -> BTreeMap<GroupKey, Vec<OurFlow>> {
    let mut out: BTreeMap<GroupKey, Vec<OurFlow>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["event_type"] == "flow") {
        let proto = match e["proto"].as_str() {
            Some("TCP") => "TCP",
            Some("UDP") => "UDP",
            _ => continue,
        };
        let port = |k: &str| e[k].as_u64().unwrap_or(0) as u16;
        let addr = |k: &str| e[k].as_str().unwrap_or("").to_string();
        let (g, dir) = group_of(
            proto,
            ep(&addr("src_ip"), port("src_port")),
            ep(&addr("dest_ip"), port("dest_port")),
        );
        let f = &e["flow"];
        let n = |k: &str| f[k].as_u64().unwrap_or(0);
        let (ts, tc) = (
            (n("pkts_toserver"), n("bytes_toserver")),
            (n("pkts_toclient"), n("bytes_toclient")),
        );
        let (lh, hl) = if dir == 0 { (ts, tc) } else { (tc, ts) };
        out.entry(g).or_default().push(OurFlow {
            counts: Counts {
                pkts: [lh.0, hl.0],
                bytes: [lh.1, hl.1],
            },
            vlan: e["vlan"].to_string(),
            tunnel: e["tunnel"].to_string(),
        });
    }
    out
}

fn show(c: &Counts) -> String {
    format!(
        "low->high {} pkts / {} bytes, high->low {} pkts / {} bytes",
        c.pkts[0], c.bytes[0], c.pkts[1], c.bytes[1]
    )
}

/// Compares; returns notes of principled differences, or the first mismatch.
fn compare(
    exp: &Expected,
    ours: &BTreeMap<GroupKey, Vec<OurFlow>>,
    notes: &mut BTreeMap<String, u64>,
) -> Result<(), String> {
    for (g, subs) in &exp.groups {
        let name = format!("{} {} <-> {}", g.0, g.1, g.2);
        let Some(flows) = ours.get(g) else {
            let c = subs.values().fold(Counts::default(), |mut a, c| {
                a.sum(c);
                a
            });
            return Err(format!(
                "{name}: tshark has it ({}), flowsentry has no such flow",
                show(&c)
            ));
        };
        let mut t: Vec<Counts> = subs.values().copied().collect();
        let mut o: Vec<Counts> = flows.iter().map(|f| f.counts).collect();
        if t.len() == o.len() {
            t.sort();
            o.sort();
            if let Some(i) = (0..t.len()).find(|&i| t[i] != o[i]) {
                return Err(format!(
                    "{name}{}: tshark {} vs flowsentry {}",
                    if t.len() > 1 {
                        format!(" (one of {} flows with this 5-tuple)", t.len())
                    } else {
                        String::new()
                    },
                    show(&t[i]),
                    show(&o[i])
                ));
            }
            continue;
        }
        // Different splits of the same 5-tuple: compare the sums, and name the reason.
        let total = |v: &[Counts]| {
            v.iter().fold(Counts::default(), |mut a, c| {
                a.sum(c);
                a
            })
        };
        let (ts, os) = (total(&t), total(&o));
        if ts != os {
            return Err(format!(
                "{name}: tshark {} conversation(s) total {} vs flowsentry {} flow(s) total {}",
                t.len(),
                show(&ts),
                o.len(),
                show(&os)
            ));
        }
        let vlans: std::collections::BTreeSet<_> = flows.iter().map(|f| &f.vlan).collect();
        let tunnels: std::collections::BTreeSet<_> = flows.iter().map(|f| &f.tunnel).collect();
        let reason = if vlans.len() > 1 {
            "merged: flowsentry flows in different VLANs that tshark counts as one conversation"
        } else if tunnels.len() > 1 {
            "merged: flowsentry flows in different tunnels that tshark counts as one conversation"
        } else if g.0 == "TCP" {
            "merged: TCP 5-tuple reuse split differently (tshark tcp.stream vs flowsentry's new SYN after teardown)"
        } else if o.len() == 1 {
            "merged: UDP 5-tuple split by tshark into several udp.stream values (conversations created by application dissectors, e.g. SNMP)"
        } else {
            return Err(format!(
                "{name}: tshark has {} conversation(s), flowsentry {} flow(s) with the same \
                 VLAN and tunnel (totals agree: {})",
                t.len(),
                o.len(),
                show(&ts)
            ));
        };
        *notes.entry(reason.to_string()).or_default() += 1;
    }
    if let Some((g, f)) = ours.iter().find(|(g, _)| !exp.groups.contains_key(*g)) {
        return Err(format!(
            "{} {} <-> {}: flowsentry has {} flow(s) ({}), tshark has no such conversation",
            g.0,
            g.1,
            g.2,
            f.len(),
            show(&f[0].counts)
        ));
    }
    Ok(())
}

/// Our events for `path` (decompressed or converted when tshark reads a format we do not).
fn run_ours(path: &Path) -> Result<(Vec<Value>, i32, String), String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let out = if name.ends_with(".gz") {
        let raw = Command::new("gzip")
            .arg("-dc")
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run gzip: {e}"))?;
        let mut args = vec!["replay", "-", "--no-progress"];
        args.extend_from_slice(&common::NO_TIMEOUTS);
        common::run(&args, Some(&raw.stdout))
    } else if name.ends_with(".snoop") {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let conv = dir.path().join("converted.pcap");
        let st = Command::new("editcap")
            .args(["-F", "pcap"])
            .arg(path)
            .arg(&conv)
            .status()
            .map_err(|e| format!("cannot run editcap: {e}"))?;
        if !st.success() {
            return Err(format!("editcap -F pcap failed: {st}"));
        }
        common::replay(&conv, &common::NO_TIMEOUTS)
    } else {
        common::replay(path, &common::NO_TIMEOUTS)
    };
    let code = common::exit_code(&out, &rel(path));
    let events = common::parse_lines(&out.stdout, &rel(path));
    Ok((
        events,
        code,
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

/// Outcome of one file.
struct FileReport {
    file: String,
    result: Result<BTreeMap<String, u64>, String>,
    flows: usize,
}

fn check_file(path: &Path) -> FileReport {
    let file = rel(path);
    let mut flows = 0;
    let result = (|| {
        let mut notes = BTreeMap::new();
        let ts = run_tshark(path)?;
        let (events, code, stderr) = run_ours(path)?;
        if !matches!(code, 0 | 3) {
            return Err(format!("flowsentry exited {code}: {stderr}"));
        }
        if let Some(why) = converted_input(path) {
            notes.insert(format!("input converted for flowsentry: {why}"), 1);
        }
        if ts.frames.is_empty() && !ts.ok {
            // tshark cannot read the file at all: nothing to compare with.
            notes.insert(
                format!("not compared: tshark cannot read it: {}", ts.stderr),
                1,
            );
            return Ok(notes);
        }
        if let Some((_, why)) = WE_REJECT.iter().find(|(f, _)| *f == file) {
            if code != 3 {
                return Err(format!(
                    "expected flowsentry to reject it ({why}), exit {code}"
                ));
            }
            notes.insert(format!("not compared: flowsentry rejects it: {why}"), 1);
            return Ok(notes);
        }
        if !ts.ok {
            notes.insert(
                format!("compared up to the damage (tshark: {})", ts.stderr),
                1,
            );
        }
        check_against_tables(&ts)?;
        let exp = expected_from(&ts.frames);
        for (k, v) in &exp.notes {
            *notes.entry(k.clone()).or_default() += v;
        }
        let ours = our_flows(&events);
        flows = ours.values().map(Vec::len).sum();
        compare(&exp, &ours, &mut notes)?;
        Ok(notes)
    })();
    FileReport {
        file,
        result,
        flows,
    }
}

#[test]
fn flows_match_tshark_conversations() {
    let Some(root) = common::pcaps_root_with_tshark() else {
        return;
    };
    let t0 = std::time::Instant::now();
    let files = capture_files(&root);
    let reports = par_map(&files, common::threads(), |p| check_file(p));
    let mut failures = Vec::new();
    let mut summary: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
    let mut compared_flows = 0;
    for r in &reports {
        match &r.result {
            Ok(notes) => {
                compared_flows += r.flows;
                for (k, v) in notes {
                    let e = summary.entry(k.clone()).or_default();
                    e.0 += v;
                    e.1.push(r.file.clone());
                }
            }
            Err(e) => failures.push(format!("{}: {e}", r.file)),
        }
    }
    let mut text = String::new();
    for (k, (n, files)) in &summary {
        let _ = writeln!(
            text,
            "  {k}: {n} in {} file(s): {}",
            files.len(),
            files.join(", ")
        );
    }
    eprintln!(
        "tshark comparison: {} files, {} TCP/UDP flows matched, {:.1} s; principled differences:\n{text}",
        files.len(),
        compared_flows,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} files differ from tshark (under {PCAPS}); first: {}\nall:\n{}",
        failures.len(),
        files.len(),
        failures[0],
        failures.join("\n")
    );
}
