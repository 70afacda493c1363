//! The JSON Lines contract: one event per line, EVE-style top-level names
//! (`timestamp`, `event_type`, `src_ip`, `src_port`, `dest_ip`, `dest_port`, `proto`,
//! `vlan`, `flow{...}`), and the writer that puts them on stdout or a file. Every field is
//! documented in `docs/events.md`. Does not decide what is anomalous.

use crate::community_id::community_id_v1;
use crate::error::OutputError;
use crate::flow::key::is_icmp;
use crate::flow::{DirStats, FlowRecord};
use crate::packet::{proto, Tunnel};
use crate::time::Timestamp;
use serde::Serialize;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::Write;
use std::net::IpAddr;

/// Event schema version, carried by `stats` events; bumped on incompatible changes.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// The protocol name used in events (Suricata's spelling).
pub fn proto_name(p: u8) -> std::borrow::Cow<'static, str> {
    match p {
        proto::TCP => "TCP".into(),
        proto::UDP => "UDP".into(),
        proto::ICMP => "ICMP".into(),
        proto::ICMPV6 => "IPv6-ICMP".into(),
        proto::GRE => "GRE".into(),
        132 => "SCTP".into(),
        other => other.to_string().into(),
    }
}

fn mac_string(m: Option<[u8; 6]>) -> Option<String> {
    m.map(|m| {
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    })
}

/// Stable flow id: a hash of the canonical key and the flow's first packet time, the same
/// for every interim slice of one flow (positive, fits an i64 like Suricata's).
pub fn flow_id(rec: &FlowRecord) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0xf10e_1d00).build_hasher();
    rec.key.hash(&mut h);
    rec.flow_start.hash(&mut h);
    h.finish() & 0x7fff_ffff_ffff_ffff
}

#[derive(Serialize)]
struct TunnelJson {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    vni: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<u32>,
}

#[derive(Serialize)]
struct DirJson {
    pkt_size_mean: f64,
    pkt_size_std: f64,
    payload_max: u32,
    iat_mean_us: f64,
    iat_std_us: f64,
    iat_max_us: f64,
}

impl DirJson {
    fn of(d: &DirStats) -> DirJson {
        DirJson {
            pkt_size_mean: round3(d.payload_mean()),
            pkt_size_std: round3(d.payload_std()),
            payload_max: d.payload_max,
            iat_mean_us: round3(d.iat_mean_us()),
            iat_std_us: round3(d.iat_std_us()),
            iat_max_us: round3(d.iat_max_ns as f64 / 1_000.0),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Serialize)]
struct FlowJson {
    pkts_toserver: u64,
    pkts_toclient: u64,
    bytes_toserver: u64,
    bytes_toclient: u64,
    ip_bytes_toserver: u64,
    ip_bytes_toclient: u64,
    payload_bytes_toserver: u64,
    payload_bytes_toclient: u64,
    start: String,
    end: String,
    age: i64,
    duration: f64,
    state: &'static str,
    reason: &'static str,
    history: String,
    slice: u32,
    #[serde(rename = "final")]
    is_final: bool,
    fragments: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_mac: Option<String>,
    toserver: DirJson,
    toclient: DirJson,
}

#[derive(Serialize)]
struct TcpJson {
    tcp_flags: String,
    tcp_flags_ts: String,
    tcp_flags_tc: String,
    syn: u32,
    fin: u32,
    rst: u32,
    psh: u32,
    ack: u32,
    urg: u32,
}

#[derive(Serialize)]
struct AppJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<DnsJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    modbus: Option<ModbusJson>,
}

#[derive(Serialize)]
struct DnsJson {
    queries: u32,
    qname_max: u16,
    label_entropy: f64,
}

#[derive(Serialize)]
struct ModbusJson {
    requests: u32,
    writes: u32,
}

/// The EVE-style body shared by `flow` and `anomaly` events (see `docs/events.md`).
#[derive(Serialize)]
pub struct FlowEventJson {
    timestamp: String,
    event_type: &'static str,
    flow_id: u64,
    src_ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_port: Option<u16>,
    dest_ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_port: Option<u16>,
    proto: std::borrow::Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_id: Option<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    vlan: Vec<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel: Option<TunnelJson>,
    community_id: String,
    flow: FlowJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp: Option<TcpJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<AppJson>,
}

/// Builds the EVE-style body of a flow record with the given `event_type`.
pub fn flow_json(rec: &FlowRecord, event_type: &'static str) -> FlowEventJson {
    let icmp = is_icmp(rec.proto);
    let (sport, dport) = if icmp {
        let (t, c) = rec.icmp.unwrap_or((0, 0));
        (u16::from(t), u16::from(c))
    } else {
        (rec.orig.port, rec.resp.port)
    };
    let community_id = community_id_v1(rec.orig.addr, sport, rec.resp.addr, dport, rec.proto);
    let (os, rs) = (&rec.orig_stats, &rec.resp_stats);
    let tcp = (rec.proto == proto::TCP).then(|| TcpJson {
        tcp_flags: format!("{:02x}", os.flags_or | rs.flags_or),
        tcp_flags_ts: format!("{:02x}", os.flags_or),
        tcp_flags_tc: format!("{:02x}", rs.flags_or),
        syn: os.flags.syn + rs.flags.syn,
        fin: os.flags.fin + rs.flags.fin,
        rst: os.flags.rst + rs.flags.rst,
        psh: os.flags.psh + rs.flags.psh,
        ack: os.flags.ack + rs.flags.ack,
        urg: os.flags.urg + rs.flags.urg,
    });
    let a = &rec.app;
    let app = (a.dns_queries > 0 || a.modbus_requests > 0).then(|| AppJson {
        dns: (a.dns_queries > 0).then(|| DnsJson {
            queries: a.dns_queries,
            qname_max: a.dns_qname_max,
            label_entropy: round3(f64::from(a.dns_label_entropy)),
        }),
        modbus: (a.modbus_requests > 0).then_some(ModbusJson {
            requests: a.modbus_requests,
            writes: a.modbus_writes,
        }),
    });
    let dur = rec.duration();
    FlowEventJson {
        timestamp: rec.last_ts.to_eve_string(),
        event_type,
        flow_id: flow_id(rec),
        src_ip: rec.orig.addr.to_ip(),
        src_port: (!icmp).then_some(rec.orig.port),
        dest_ip: rec.resp.addr.to_ip(),
        dest_port: (!icmp).then_some(rec.resp.port),
        proto: proto_name(rec.proto),
        icmp_type: icmp.then_some(sport as u8),
        icmp_code: icmp.then_some(dport as u8),
        icmp_id: (icmp && rec.key.icmp_id != 0).then_some(rec.key.icmp_id),
        vlan: rec.key.vlan.iter().copied().filter(|&v| v != 0).collect(),
        tunnel: match rec.tunnel {
            Tunnel::None => None,
            Tunnel::Gre { key } => Some(TunnelJson {
                kind: "gre",
                vni: None,
                key: (key != 0).then_some(key),
            }),
            Tunnel::Vxlan { vni } => Some(TunnelJson {
                kind: "vxlan",
                vni: Some(vni),
                key: None,
            }),
        },
        community_id,
        flow: FlowJson {
            pkts_toserver: os.pkts,
            pkts_toclient: rs.pkts,
            bytes_toserver: os.bytes,
            bytes_toclient: rs.bytes,
            ip_bytes_toserver: os.ip_bytes,
            ip_bytes_toclient: rs.ip_bytes,
            payload_bytes_toserver: os.payload_bytes,
            payload_bytes_toclient: rs.payload_bytes,
            start: rec.first_ts.to_eve_string(),
            end: rec.last_ts.to_eve_string(),
            age: dur.0.div_euclid(1_000_000_000),
            duration: round3(dur.as_secs_f64() * 1000.0) / 1000.0,
            state: rec.conn_state.as_str(),
            reason: rec.reason.as_str(),
            history: rec.history.as_str().to_string(),
            slice: rec.slice,
            is_final: rec.reason != crate::flow::EndReason::ActiveTimeout,
            fragments: rec.fragments,
            src_mac: mac_string(rec.orig.mac),
            dest_mac: mac_string(rec.resp.mac),
            toserver: DirJson::of(os),
            toclient: DirJson::of(rs),
        },
        tcp,
        app,
    }
}

/// When the output file is rotated (renamed aside and reopened).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the file holds this many bytes.
    pub max_bytes: Option<u64>,
    /// Rotate once the file has been open this many seconds.
    pub max_secs: Option<u64>,
}

enum Out {
    Stream(std::io::BufWriter<Box<dyn Write + Send>>),
    File {
        w: std::io::BufWriter<std::fs::File>,
        path: std::path::PathBuf,
        rotation: Rotation,
        bytes: u64,
        opened: std::time::Instant,
    },
}

fn open_append(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Writes events as JSON Lines to a buffered output and counts them. A file output can be
/// rotated by size or age and reopened (SIGHUP, logrotate); it is fsynced on rotation,
/// reopen and [`EventWriter::close`].
pub struct EventWriter {
    out: Out,
    name: String,
    line: Vec<u8>,
    written: u64,
    /// Events known to have reached the output (counted at each successful flush).
    durable: u64,
    rotations: u64,
}

/// Envelope of the `stats` event.
#[derive(Serialize)]
struct StatsEvent<'a, T: Serialize> {
    timestamp: String,
    event_type: &'static str,
    schema_version: u32,
    stats: &'a T,
}

impl EventWriter {
    /// Wraps a byte sink; `name` is used in error messages (a path or "stdout").
    pub fn new(out: Box<dyn Write + Send>, name: &str) -> EventWriter {
        EventWriter {
            out: Out::Stream(std::io::BufWriter::with_capacity(1 << 16, out)),
            name: name.to_string(),
            line: Vec::with_capacity(1024),
            written: 0,
            durable: 0,
            rotations: 0,
        }
    }

    /// Opens `path` for writing (`-` = stdout). Files are created or truncated.
    pub fn open(path: &str) -> Result<EventWriter, OutputError> {
        if path == "-" {
            return Ok(EventWriter::new(Box::new(std::io::stdout()), "stdout"));
        }
        let f = std::fs::File::create(path).map_err(|source| OutputError::Open {
            path: path.to_string(),
            source,
        })?;
        Ok(EventWriter::new(Box::new(f), path))
    }

    /// Opens `path` for appending, with rotation (the live sensor's file output).
    pub fn open_rotating(
        path: &std::path::Path,
        rotation: Rotation,
    ) -> Result<EventWriter, OutputError> {
        let name = path.display().to_string();
        let f = open_append(path).map_err(|source| OutputError::Open {
            path: name.clone(),
            source,
        })?;
        let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(EventWriter {
            out: Out::File {
                w: std::io::BufWriter::with_capacity(1 << 16, f),
                path: path.to_path_buf(),
                rotation,
                bytes,
                opened: std::time::Instant::now(),
            },
            name,
            line: Vec::with_capacity(1024),
            written: 0,
            durable: 0,
            rotations: 0,
        })
    }

    /// Files rotated so far.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// Flushes and fsyncs a file output, then opens its path again (after logrotate moved
    /// it). Streams are only flushed.
    pub fn reopen(&mut self) -> Result<(), OutputError> {
        self.flush()?;
        if let Out::File {
            w,
            path,
            bytes,
            opened,
            ..
        } = &mut self.out
        {
            let sync = w.get_ref().sync_all();
            let f = open_append(path).map_err(|source| OutputError::Open {
                path: path.display().to_string(),
                source,
            })?;
            *bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
            *w = std::io::BufWriter::with_capacity(1 << 16, f);
            *opened = std::time::Instant::now();
            if let Err(source) = sync {
                return Err(OutputError::Write {
                    path: self.name.clone(),
                    events: self.durable,
                    pending: self.written.saturating_sub(self.durable),
                    source,
                });
            }
        }
        Ok(())
    }

    /// Renames the current file to `<path>.<UTC time>[.<n>]` and starts a new one.
    fn rotate(&mut self) -> Result<(), OutputError> {
        self.flush()?;
        let name = self.name.clone();
        let written = self.written;
        if let Out::File {
            w,
            path,
            bytes,
            opened,
            ..
        } = &mut self.out
        {
            // The flush above succeeded: everything written so far is durable.
            let werr = |source| OutputError::Write {
                path: name.clone(),
                events: written,
                pending: 0,
                source,
            };
            w.get_ref().sync_all().map_err(werr)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as i64)
                .unwrap_or(0);
            let stamp: String = Timestamp::from_micros(now)
                .to_eve_string()
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == 'T')
                .take(15)
                .collect();
            let mut target = path.with_file_name(format!(
                "{}.{}",
                path.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("events"),
                stamp
            ));
            let mut k = 1;
            while target.exists() {
                target = path.with_file_name(format!(
                    "{}.{}.{}",
                    path.file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("events"),
                    stamp,
                    k
                ));
                k += 1;
            }
            std::fs::rename(&*path, &target).map_err(werr)?;
            let f = open_append(path).map_err(werr)?;
            *w = std::io::BufWriter::with_capacity(1 << 16, f);
            *bytes = 0;
            *opened = std::time::Instant::now();
            self.rotations += 1;
        }
        Ok(())
    }

    /// Flushes and fsyncs (files) everything written; call before exiting.
    pub fn close(&mut self) -> Result<(), OutputError> {
        self.flush()?;
        if let Out::File { w, .. } = &mut self.out {
            if let Err(source) = w.get_ref().sync_all() {
                return Err(OutputError::Write {
                    path: self.name.clone(),
                    events: self.durable,
                    pending: self.written.saturating_sub(self.durable),
                    source,
                });
            }
        }
        Ok(())
    }

    /// Events written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn io_err(&self, e: std::io::Error) -> OutputError {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            OutputError::BrokenPipe
        } else {
            OutputError::Write {
                path: self.name.clone(),
                events: self.durable,
                pending: self.written + 1 - self.durable.min(self.written + 1),
                source: e,
            }
        }
    }

    fn emit<T: Serialize>(&mut self, v: &T) -> Result<(), OutputError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, v)
            .map_err(|e| self.io_err(std::io::Error::other(e)))?;
        self.line.push(b'\n');
        let res = match &mut self.out {
            Out::Stream(w) => w.write_all(&self.line),
            Out::File { w, bytes, .. } => {
                *bytes += self.line.len() as u64;
                w.write_all(&self.line)
            }
        };
        if let Err(e) = res {
            return Err(self.io_err(e));
        }
        self.written += 1;
        if let Out::File {
            rotation,
            bytes,
            opened,
            ..
        } = &self.out
        {
            let due = rotation.max_bytes.is_some_and(|m| *bytes >= m)
                || rotation
                    .max_secs
                    .is_some_and(|s| opened.elapsed().as_secs() >= s);
            if due {
                self.rotate()?;
            }
        }
        Ok(())
    }

    /// Writes one `flow` event.
    pub fn write_flow(&mut self, rec: &FlowRecord) -> Result<(), OutputError> {
        let ev = flow_json(rec, "flow");
        self.emit(&ev)
    }

    /// Writes a `stats` event stamped with packet time `ts`.
    pub fn write_stats<T: Serialize>(
        &mut self,
        ts: Timestamp,
        stats: &T,
    ) -> Result<(), OutputError> {
        self.emit(&StatsEvent {
            timestamp: ts.to_eve_string(),
            event_type: "stats",
            schema_version: EVENT_SCHEMA_VERSION,
            stats,
        })
    }

    /// Writes any pre-built event value (used by later stages: anomaly, incident).
    pub fn write_value<T: Serialize>(&mut self, v: &T) -> Result<(), OutputError> {
        self.emit(v)
    }

    /// Flushes buffered events to the sink.
    pub fn flush(&mut self) -> Result<(), OutputError> {
        let r = match &mut self.out {
            Out::Stream(w) => w.flush(),
            Out::File { w, .. } => w.flush(),
        };
        r.map_err(|e| self.io_err(e))?;
        self.durable = self.written;
        Ok(())
    }

    /// Rotates a time-rotated file whose age is due even when no event arrives.
    pub fn rotate_if_due(&mut self) -> Result<(), OutputError> {
        if let Out::File {
            rotation,
            opened,
            bytes,
            ..
        } = &self.out
        {
            if *bytes > 0
                && rotation
                    .max_secs
                    .is_some_and(|s| opened.elapsed().as_secs() >= s)
            {
                return self.rotate();
            }
        }
        Ok(())
    }
}
