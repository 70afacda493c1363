//! The JSON Lines contract: one event per line, EVE-style top-level names
//! (`timestamp`, `event_type`, `src_ip`, `src_port`, `dest_ip`, `dest_port`, `proto`,
//! `vlan`, `flow{...}`), and the writer that puts them on stdout or a file. Every field is
//! documented in `docs/events.md`. Does not decide what is anomalous.

use crate::community_id::community_id_v1;
use crate::error::OutputError;
use crate::flow::key::is_icmp;
use crate::flow::{DirStats, FlowRecord};
use crate::packet::{proto, Tunnel};
use crate::sink::file::FileSink;
use crate::sink::{EventKind, EventLine, Sink, SinkStats};
use crate::time::Timestamp;
use serde::Serialize;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::Write;
use std::net::IpAddr;

mod flow_line;
pub use flow_line::write_flow_body;

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

/// A packet time serialised as an EVE timestamp string, formatted on the stack.
#[derive(Debug, Clone, Copy)]
struct EveTime(Timestamp);

impl Serialize for EveTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.eve_digits() {
            Some(b) => s.serialize_str(std::str::from_utf8(&b).unwrap_or_default()),
            None => s.serialize_str(&self.0.to_eve_string()),
        }
    }
}

/// The two lower-case hex digits of a byte.
fn hex2(b: u8) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]
}

/// A byte serialised as two lower-case hex digits (TCP flags).
#[derive(Debug, Clone, Copy)]
struct Hex8(u8);

impl Serialize for Hex8 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = hex2(self.0);
        s.serialize_str(std::str::from_utf8(&b).unwrap_or_default())
    }
}

/// A MAC address serialised as `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy)]
struct MacJson([u8; 6]);

/// `aa:bb:cc:dd:ee:ff`.
fn mac_text(mac: [u8; 6]) -> [u8; 17] {
    let mut b = [b':'; 17];
    for (i, &byte) in mac.iter().enumerate() {
        b[3 * i..3 * i + 2].copy_from_slice(&hex2(byte));
    }
    b
}

impl Serialize for MacJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(std::str::from_utf8(&mac_text(self.0)).unwrap_or_default())
    }
}

#[derive(Serialize)]
struct FlowJson<'a> {
    pkts_toserver: u64,
    pkts_toclient: u64,
    bytes_toserver: u64,
    bytes_toclient: u64,
    ip_bytes_toserver: u64,
    ip_bytes_toclient: u64,
    payload_bytes_toserver: u64,
    payload_bytes_toclient: u64,
    start: EveTime,
    end: EveTime,
    age: i64,
    duration: f64,
    state: &'static str,
    reason: &'static str,
    history: &'a str,
    slice: u32,
    #[serde(rename = "final")]
    is_final: bool,
    fragments: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_mac: Option<MacJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_mac: Option<MacJson>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    mac_changed: bool,
    toserver: DirJson,
    toclient: DirJson,
}

#[derive(Serialize)]
struct TcpJson {
    tcp_flags: Hex8,
    tcp_flags_ts: Hex8,
    tcp_flags_tc: Hex8,
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

/// A record's VLAN ids as the event lists them: the non-zero ones, outer first (an
/// empty list is left out of the event).
#[derive(Clone, Copy)]
struct VlanJson([u16; 2]);

impl VlanJson {
    fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter().copied().filter(|&v| v != 0)
    }

    fn is_empty(&self) -> bool {
        self.ids().next().is_none()
    }
}

impl Serialize for VlanJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.ids())
    }
}

/// The EVE-style body shared by `flow` and `anomaly` events (see `docs/events.md`): every
/// value either renderer writes is derived here, once ([`flow_json`]); serde_json renders
/// it inside `anomaly` events, [`write_flow_body`] renders it for `flow` events.
#[derive(Serialize)]
pub struct FlowEventJson<'a> {
    timestamp: EveTime,
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
    #[serde(skip_serializing_if = "VlanJson::is_empty")]
    vlan: VlanJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel: Option<TunnelJson>,
    community_id: String,
    flow: FlowJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp: Option<TcpJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<AppJson>,
}

/// Whether `rec` is ICMP, and its two "ports" as events and the Community ID see them:
/// the transport ports, or for ICMP the originator's first (type, code).
fn event_ports(rec: &FlowRecord) -> (bool, u16, u16) {
    if is_icmp(rec.proto) {
        let (t, c) = rec.icmp.unwrap_or((0, 0));
        (true, u16::from(t), u16::from(c))
    } else {
        (false, rec.orig.port, rec.resp.port)
    }
}

/// The Community ID v1 of a record.
fn record_community_id(rec: &FlowRecord) -> String {
    let (_, sport, dport) = event_ports(rec);
    community_id_v1(rec.orig.addr, sport, rec.resp.addr, dport, rec.proto)
}

/// Builds the EVE-style body of a flow record with the given `event_type`.
pub fn flow_json<'a>(rec: &'a FlowRecord, event_type: &'static str) -> FlowEventJson<'a> {
    let (icmp, sport, dport) = event_ports(rec);
    let community_id = record_community_id(rec);
    let (os, rs) = (&rec.orig_stats, &rec.resp_stats);
    let tcp = (rec.proto == proto::TCP).then(|| TcpJson {
        tcp_flags: Hex8(os.flags_or | rs.flags_or),
        tcp_flags_ts: Hex8(os.flags_or),
        tcp_flags_tc: Hex8(rs.flags_or),
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
        timestamp: EveTime(rec.last_ts),
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
        vlan: VlanJson(rec.key.vlan),
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
            start: EveTime(rec.first_ts),
            end: EveTime(rec.last_ts),
            age: dur.0.div_euclid(1_000_000_000),
            duration: round3(dur.as_secs_f64() * 1000.0) / 1000.0,
            state: rec.conn_state.as_str(),
            reason: rec.reason.as_str(),
            history: rec.history.as_str(),
            slice: rec.slice,
            is_final: rec.reason != crate::flow::EndReason::ActiveTimeout,
            fragments: rec.fragments,
            src_mac: rec.orig.mac.map(MacJson),
            dest_mac: rec.resp.mac.map(MacJson),
            mac_changed: rec.mac_changed,
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

/// The partition key of an event, before the `<sensor_id>/` prefix.
#[derive(Debug, Clone, Copy)]
pub enum EventKey<'a> {
    /// A flow event: its originator address.
    Ip(IpAddr),
    /// An event about one device: its id.
    Device(&'a str),
    /// An event about the sensor itself (`stats`, `error`).
    Sensor,
}

/// A `Write` into a shared in-memory buffer, so the events a detector writes can be read
/// back (evaluation, tests): clones share the buffer.
#[derive(Clone, Default)]
pub struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuf {
    /// Takes out everything written so far (empty if a writer panicked while holding it).
    pub fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut v) => {
                v.extend_from_slice(b);
                Ok(b.len())
            }
            Err(_) => Err(std::io::Error::other("event buffer poisoned")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serialises events as JSON Lines, stamps each with `sensor_id` and a `seq` (1, 2, ...
/// per run, or continuing a seq file across runs), and hands the line to the primary output (`--out`: stdout or a file,
/// rotated, reopened on SIGHUP, fsynced on rotation, reopen and close) and to every
/// configured [`Sink`].
pub struct EventWriter {
    primary: Option<FileSink>,
    sinks: Vec<Box<dyn Sink>>,
    line: Vec<u8>,
    key: String,
    written: u64,
    /// `seq` of the last event before this run (from the seq file; 0 without one).
    seq_base: u64,
    seq_file: Option<crate::sink::seqfile::SeqFile>,
    sensor_id: String,
    /// `"sensor_id":"<id>","seq":` with the id JSON-escaped.
    stamp: Vec<u8>,
    drain: std::time::Duration,
    final_stats: Option<Vec<SinkStats>>,
}

/// An `error` event about the sensor itself (a refused model, its outputs, its link).
#[derive(Serialize)]
struct NoticeEvent<'a> {
    timestamp: String,
    event_type: &'static str,
    error: &'a str,
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
    fn with_primary(primary: Option<FileSink>) -> EventWriter {
        let mut w = EventWriter {
            primary,
            sinks: Vec::new(),
            line: Vec::with_capacity(1024),
            key: String::with_capacity(64),
            written: 0,
            seq_base: 0,
            seq_file: None,
            sensor_id: String::new(),
            stamp: Vec::new(),
            drain: std::time::Duration::from_secs(10),
            final_stats: None,
        };
        w.set_sensor_id(&crate::sink::default_sensor_id());
        w
    }

    /// Wraps a byte sink; `name` is used in error messages (a path or "stdout").
    pub fn new(out: Box<dyn Write + Send>, name: &str) -> EventWriter {
        EventWriter::with_primary(Some(FileSink::stream(out, name)))
    }

    /// A writer with no primary output: events go only to the sinks added later.
    pub fn sinks_only() -> EventWriter {
        EventWriter::with_primary(None)
    }

    /// Opens `path` for writing (`-` = stdout). Files are created or truncated.
    pub fn open(path: &str) -> Result<EventWriter, OutputError> {
        Ok(EventWriter::with_primary(Some(FileSink::create(path)?)))
    }

    /// Opens `path` for appending, with rotation (the live sensor's file output).
    pub fn open_rotating(
        path: &std::path::Path,
        rotation: Rotation,
    ) -> Result<EventWriter, OutputError> {
        Ok(EventWriter::with_primary(Some(FileSink::append(
            path, rotation,
        )?)))
    }

    /// Sets the `sensor_id` stamped on every event (default: the host name).
    pub fn set_sensor_id(&mut self, id: &str) {
        self.sensor_id = id.to_string();
        self.stamp.clear();
        self.stamp.extend_from_slice(b"\"sensor_id\":");
        // Serialising a &str cannot fail.
        let _ = serde_json::to_writer(&mut self.stamp, id);
        self.stamp.extend_from_slice(b",\"seq\":");
    }

    /// Continues `seq` after the value persisted in `path` and keeps it there (see
    /// [`crate::sink::seqfile`]); call before the first event.
    pub fn set_seq_file(&mut self, path: &std::path::Path) -> Result<(), OutputError> {
        let (f, last) = crate::sink::seqfile::SeqFile::open(path).map_err(OutputError::Sequence)?;
        self.seq_base = last;
        self.seq_file = Some(f);
        Ok(())
    }

    /// Files and directories the sinks keep state in (spill directories, the seq file),
    /// for handing them to the `--user` of a privilege drop.
    pub fn state_paths(&self) -> Vec<std::path::PathBuf> {
        let mut v: Vec<std::path::PathBuf> =
            self.sinks.iter().filter_map(|s| s.state_path()).collect();
        if let Some(p) = self.primary.as_ref().and_then(|p| p.path()) {
            v.push(p.to_path_buf());
        }
        if let Some(f) = &self.seq_file {
            v.push(f.path().to_path_buf());
        }
        v
    }

    /// After a run stopped on an output error: records the last `seq` handed out in the
    /// seq file, so the next run continues right after it instead of after the reserved
    /// block (a crash still leaves that gap; `seq` values are never reused either way).
    pub fn record_last_seq(&mut self) -> Result<(), OutputError> {
        self.close_seq()
    }

    /// The `seq` of the last event written (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.seq_base + self.written
    }

    fn close_seq(&mut self) -> Result<(), OutputError> {
        let last = self.last_seq();
        match self.seq_file.as_mut() {
            Some(f) => f.close(last).map_err(OutputError::Sequence),
            None => Ok(()),
        }
    }

    /// The sensor id.
    pub fn sensor_id(&self) -> &str {
        &self.sensor_id
    }

    /// Adds a sink; every later event goes to it too.
    pub fn add_sink(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }

    /// Time [`EventWriter::drain_sinks`] waits for the sinks to deliver.
    pub fn set_drain(&mut self, d: std::time::Duration) {
        self.drain = d;
    }

    /// Whether any sink besides the primary output is configured.
    pub fn has_sinks(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// Files rotated so far (primary output).
    pub fn rotations(&self) -> u64 {
        self.primary.as_ref().map_or(0, |p| p.rotations())
    }

    /// Flushes and fsyncs a file output, then opens its path again (after logrotate moved
    /// it); the same for `file:` sinks. Streams are only flushed.
    pub fn reopen(&mut self) -> Result<(), OutputError> {
        if let Some(p) = self.primary.as_mut() {
            p.reopen()?;
        }
        for s in &mut self.sinks {
            s.reopen()?;
        }
        self.report_notices()
    }

    /// The notices of the primary output and every sink, taken.
    fn take_notices(&mut self) -> Vec<String> {
        let mut notices = self
            .primary
            .as_mut()
            .map(|p| p.take_notices())
            .unwrap_or_default();
        for s in &mut self.sinks {
            notices.extend(s.take_notices());
        }
        notices
    }

    /// Writes what the file outputs recovered from (a reopen or rotation that failed and
    /// kept the current file, a torn last line repaired) as `error` events, stamped with
    /// the wall clock, and on stderr for the service log. Called after a reopen or
    /// rotation check, and by the pipeline before it counts the events for a `stats`
    /// event (so the count includes them).
    pub fn report_notices(&mut self) -> Result<(), OutputError> {
        for msg in self.take_notices() {
            self.write_error_event(&msg)?;
        }
        Ok(())
    }

    /// Writes an `error` event about the sensor itself (its outputs, its interface),
    /// stamped with the wall clock, and the message on stderr for the service log.
    pub fn write_error_event(&mut self, msg: &str) -> Result<(), OutputError> {
        eprintln!("flowsentry: {msg}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        self.emit(
            &NoticeEvent {
                timestamp: Timestamp::from_micros(now).to_eve_string(),
                event_type: "error",
                error: msg,
            },
            EventKey::Sensor,
        )
    }

    /// Flushes and fsyncs (files) everything written; call before exiting. Network sinks
    /// are closed by [`EventWriter::close_sinks`].
    pub fn close(&mut self) -> Result<(), OutputError> {
        self.flush()?;
        if let Some(p) = self.primary.as_mut() {
            p.close(std::time::Instant::now())?;
        }
        self.close_seq()
    }

    /// Events written so far in this run.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn emit<T: Serialize>(&mut self, v: &T, key: EventKey<'_>) -> Result<(), OutputError> {
        self.line.clear();
        self.serialise_onto_line(v)?;
        let kind = EventKind::of_line(&self.line);
        self.emit_line(key, kind)
    }

    /// Stamps the JSON object in `self.line` with `sensor_id` and `seq` and hands it on.
    fn emit_line(&mut self, key: EventKey<'_>, kind: EventKind) -> Result<(), OutputError> {
        // `{...}` -> `{...,"sensor_id":"id","seq":N}`
        if self.line.last() == Some(&b'}') {
            self.line.pop();
        }
        if self.line.len() > 1 {
            self.line.push(b',');
        }
        let seq = self.seq_base + self.written + 1;
        if let Some(f) = self.seq_file.as_mut() {
            f.cover(seq).map_err(OutputError::Sequence)?;
        }
        self.line.extend_from_slice(&self.stamp);
        flow_line::put_int(&mut self.line, seq);
        self.line.push(b'}');
        self.key.clear();
        self.key.push_str(&self.sensor_id);
        self.key.push('/');
        match key {
            EventKey::Ip(ip) => {
                let mut text = std::mem::take(&mut self.key).into_bytes();
                flow_line::push_ip_text(&mut text, ip);
                // Only ASCII was appended to a valid string.
                self.key = String::from_utf8(text).unwrap_or_default();
            }
            EventKey::Device(d) => self.key.push_str(d),
            EventKey::Sensor => self.key.push_str("sensor"),
        }
        let ev = EventLine::new(&self.line, &self.key, seq, kind);
        if let Some(p) = self.primary.as_mut() {
            p.offer(&ev)?;
        }
        for s in &mut self.sinks {
            s.offer(&ev)?;
        }
        self.written += 1;
        Ok(())
    }

    /// Writes one `flow` event, keyed by the `device` it belongs to when the detector
    /// knows it, else by its originator address.
    pub fn write_flow(
        &mut self,
        rec: &FlowRecord,
        device: Option<&str>,
    ) -> Result<(), OutputError> {
        self.line.clear();
        write_flow_body(&flow_json(rec, "flow"), &mut self.line);
        let key = match device {
            Some(d) => EventKey::Device(d),
            None => EventKey::Ip(rec.orig.addr.to_ip()),
        };
        self.emit_line(key, EventKind::Flow)
    }

    /// Writes a `stats` event stamped with packet time `ts`.
    pub fn write_stats<T: Serialize>(
        &mut self,
        ts: Timestamp,
        stats: &T,
    ) -> Result<(), OutputError> {
        self.emit(
            &StatsEvent {
                timestamp: ts.to_eve_string(),
                event_type: "stats",
                schema_version: EVENT_SCHEMA_VERSION,
                stats,
            },
            EventKey::Sensor,
        )
    }

    /// Writes any pre-built event value about the sensor itself (e.g. `error`).
    pub fn write_value<T: Serialize>(&mut self, v: &T) -> Result<(), OutputError> {
        self.emit(v, EventKey::Sensor)
    }

    /// Writes a pre-built event about one device (anomaly, incident), keyed by its id so
    /// a device's events share a Kafka partition.
    pub fn write_keyed<T: Serialize>(&mut self, device: &str, v: &T) -> Result<(), OutputError> {
        self.emit(v, EventKey::Device(device))
    }

    /// Appends `v` as JSON to the line being built.
    fn serialise_onto_line<T: Serialize>(&mut self, v: &T) -> Result<(), OutputError> {
        serde_json::to_writer(&mut self.line, v).map_err(|e| OutputError::Write {
            path: "event".into(),
            events: self.written,
            pending: 1,
            source: std::io::Error::other(e),
        })
    }

    /// Writes an event keyed by `device` whose fields are those of `flow` followed by
    /// those of `rest` (an object): the same line as serialising a struct with `flow`
    /// flattened before `rest`'s fields, with the flow part written by the fast path of
    /// flow events ([`write_flow_body`]) instead of serde's flattening.
    pub fn write_with_flow<T: Serialize>(
        &mut self,
        device: &str,
        flow: &FlowEventJson<'_>,
        rest: &T,
    ) -> Result<(), OutputError> {
        self.line.clear();
        write_flow_body(flow, &mut self.line);
        let body = self.line.len();
        self.serialise_onto_line(rest)?;
        // `{flow}{rest}` -> `{flow,rest}` (`{flow}` when `rest` has no field).
        if self.line.get(body..) == Some(b"{}".as_slice()) {
            self.line.truncate(body);
        } else if body >= 1 && self.line.get(body) == Some(&b'{') {
            self.line[body - 1] = b',';
            self.line.remove(body);
        }
        let kind = EventKind::of_line(&self.line);
        self.emit_line(EventKey::Device(device), kind)
    }

    /// Flushes buffered events to the outputs.
    pub fn flush(&mut self) -> Result<(), OutputError> {
        if let Some(p) = self.primary.as_mut() {
            p.flush()?;
        }
        for s in &mut self.sinks {
            s.flush()?;
        }
        Ok(())
    }

    /// Rotates a time-rotated file whose age is due even when no event arrives.
    pub fn rotate_if_due(&mut self) -> Result<(), OutputError> {
        if let Some(p) = self.primary.as_mut() {
            p.rotate_if_due()?;
        }
        for s in &mut self.sinks {
            s.rotate_if_due()?;
        }
        self.report_notices()
    }

    /// Counters of every sink (not the primary output), in configuration order.
    pub fn sink_stats(&self) -> Vec<SinkStats> {
        match &self.final_stats {
            Some(f) => f.clone(),
            None => self.sinks.iter().map(|s| s.stats()).collect(),
        }
    }

    /// Waits, at most the drain time in total, until the sinks have delivered everything
    /// written so far (end of a run, before the final `stats` event).
    pub fn drain_sinks(&mut self) -> Result<(), OutputError> {
        let deadline = std::time::Instant::now() + self.drain;
        for s in &mut self.sinks {
            s.drain(deadline)?;
        }
        Ok(())
    }

    /// Closes every sink: a last short delivery attempt (at most two seconds, or the drain
    /// time if shorter), then what is left is kept in each sink's spill directory.
    /// Returns the final counters (also returned by [`EventWriter::sink_stats`] from now on).
    pub fn close_sinks(&mut self) -> Result<Vec<SinkStats>, OutputError> {
        let deadline =
            std::time::Instant::now() + self.drain.min(std::time::Duration::from_secs(2));
        let mut first_err = None;
        for s in &mut self.sinks {
            if let Err(e) = s.close(deadline) {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = self.close_seq() {
            first_err.get_or_insert(e);
        }
        // Problems raised by writing the final stats event (a rotation it triggered) have
        // no event left to go in: stderr only.
        for msg in self.take_notices() {
            eprintln!("flowsentry: {msg}");
        }
        let stats: Vec<SinkStats> = self.sinks.iter().map(|s| s.stats()).collect();
        self.final_stats = Some(stats.clone());
        match first_err {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }
}
