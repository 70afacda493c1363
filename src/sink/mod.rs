//! Event sinks: where the serialised event lines go. The [`crate::event::EventWriter`]
//! stamps every event with `sensor_id` and `seq` and hands the same line to every
//! configured [`Sink`]:
//!
//! - [`file::FileSink`]: `--out` and `file:PATH` (buffered, rotation, written on the writer
//!   thread);
//! - [`queued::QueuedSink`] around a network [`queued::Transport`]: `kafka://`
//!   ([`kafka`]), `redis://` ([`redis`]), `syslog+tcp://` and `syslog+udp://` ([`syslog`]).
//!   Each runs on its own thread behind a bounded in-memory queue; when the queue is full
//!   or the receiver is down, events go to a size-capped spill directory on disk
//!   ([`spill`]) and are sent from there, in order, when the receiver returns. The writer
//!   never waits for a network receiver.
//!
//! Every sink counts what happened to its events ([`SinkStats`], the `sinks` list of the
//! `stats` event); nothing is dropped without a counted reason. Owns sink URLs and options,
//! the delivery machinery and the accounting; does not decide what an event contains.

pub mod file;
pub mod kafka;
pub mod queued;
pub mod redis;
pub mod seqfile;
pub mod spill;
pub mod syslog;
pub mod tail;

use crate::error::{ConfigError, OutputError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The kind of an event, read from its `event_type` (syslog severity and MSGID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `flow`.
    Flow,
    /// `anomaly`.
    Anomaly,
    /// `incident`.
    Incident,
    /// `stats`.
    Stats,
    /// `error`.
    Error,
    /// Anything else.
    Other,
}

impl EventKind {
    /// Finds `"event_type":"..."` in a serialised event (it is near the start of every
    /// event, after `timestamp`).
    pub fn of_line(line: &[u8]) -> EventKind {
        const TAG: &[u8] = b"\"event_type\":\"";
        let Some(at) = line.windows(TAG.len()).position(|w| w == TAG) else {
            return EventKind::Other;
        };
        let rest = &line[at + TAG.len()..];
        let end = rest.iter().position(|&b| b == b'"').unwrap_or(0);
        match &rest[..end] {
            b"flow" => EventKind::Flow,
            b"anomaly" => EventKind::Anomaly,
            b"incident" => EventKind::Incident,
            b"stats" => EventKind::Stats,
            b"error" => EventKind::Error,
            _ => EventKind::Other,
        }
    }

    /// The `event_type` text.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Flow => "flow",
            EventKind::Anomaly => "anomaly",
            EventKind::Incident => "incident",
            EventKind::Stats => "stats",
            EventKind::Error => "error",
            EventKind::Other => "event",
        }
    }

    /// Stable one-byte code (spill records).
    pub fn code(self) -> u8 {
        match self {
            EventKind::Flow => 1,
            EventKind::Anomaly => 2,
            EventKind::Incident => 3,
            EventKind::Stats => 4,
            EventKind::Error => 5,
            EventKind::Other => 0,
        }
    }

    /// Inverse of [`EventKind::code`].
    pub fn from_code(c: u8) -> EventKind {
        match c {
            1 => EventKind::Flow,
            2 => EventKind::Anomaly,
            3 => EventKind::Incident,
            4 => EventKind::Stats,
            5 => EventKind::Error,
            _ => EventKind::Other,
        }
    }
}

/// One serialised event, owned, shared by every queued sink (one allocation per event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The event's `seq`.
    pub seq: u64,
    /// Its kind.
    pub kind: EventKind,
    /// Partition key (`<sensor_id>/<device id or src_ip>`).
    pub key: Box<str>,
    /// The JSON object, without the trailing newline.
    pub line: Box<[u8]>,
}

/// One event as the writer hands it to each sink: borrowed, with the owned [`Record`]
/// built on first use and then shared.
pub struct EventLine<'a> {
    /// The JSON object, without the trailing newline.
    pub line: &'a [u8],
    /// Partition key.
    pub key: &'a str,
    /// The event's `seq`.
    pub seq: u64,
    /// Its kind.
    pub kind: EventKind,
    shared: std::cell::OnceCell<Arc<Record>>,
}

impl<'a> EventLine<'a> {
    /// A borrowed event line.
    pub fn new(line: &'a [u8], key: &'a str, seq: u64, kind: EventKind) -> EventLine<'a> {
        EventLine {
            line,
            key,
            seq,
            kind,
            shared: std::cell::OnceCell::new(),
        }
    }

    /// The owned record (built once per event, then shared between sinks).
    pub fn record(&self) -> Arc<Record> {
        self.shared
            .get_or_init(|| {
                Arc::new(Record {
                    seq: self.seq,
                    kind: self.kind,
                    key: self.key.into(),
                    line: self.line.into(),
                })
            })
            .clone()
    }
}

/// A destination for event lines. Called only from the writer thread; an implementation
/// must never block on a network receiver.
pub trait Sink: Send {
    /// The sink's name in messages and in `stats` (its URL without credentials).
    fn name(&self) -> &str;
    /// Takes one event. Network sinks queue or spill it and return at once; an error
    /// stops the run (a file that cannot be written).
    fn offer(&mut self, ev: &EventLine<'_>) -> Result<(), OutputError>;
    /// Pushes buffered events on (periodically and at the end).
    fn flush(&mut self) -> Result<(), OutputError>;
    /// SIGHUP: reopen a file output.
    fn reopen(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
    /// Rotates a time-rotated file when due.
    fn rotate_if_due(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
    /// The counters now.
    fn stats(&self) -> SinkStats;
    /// Waits (at most until `deadline`) until everything offered so far was delivered or
    /// given up on for this run. Never loses anything: what is not delivered stays queued.
    fn drain(&mut self, deadline: Instant) -> Result<(), OutputError>;
    /// A file or directory this sink writes that must stay writable after the privilege
    /// drop (its output file, its spill directory), if any.
    fn state_path(&self) -> Option<PathBuf> {
        None
    }
    /// Problems recovered from since the last call (a file output's failed reopen or
    /// rotation), one message each, reported as `error` events.
    fn take_notices(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Stops the sink: delivers what it can until `deadline`, then writes whatever is left
    /// to its spill directory (sent first by the next run) and stops its thread.
    fn close(&mut self, deadline: Instant) -> Result<(), OutputError>;
}

/// What one sink did with its events: the `sinks` entries of the `stats` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SinkStats {
    /// The sink (URL without credentials, or the file path).
    pub sink: String,
    /// `file`, `kafka`, `redis`, `syslog+tcp`, `syslog+udp`.
    pub kind: &'static str,
    /// Events the receiver acknowledged: Kafka delivery reports, Redis XADD replies,
    /// successful TCP writes (syslog), flushed writes (file). Each event counts once.
    pub delivered: u64,
    /// syslog+udp only: datagrams sent; UDP gives no acknowledgement, so these are not
    /// known to have arrived.
    pub sent_unconfirmed: u64,
    /// Delivery attempts that the receiver or the connection reported as failed (an event
    /// that failed twice counts twice); every failed event is retried or kept.
    pub failed: u64,
    /// Events sent again after a failed attempt (or, for syslog+tcp, re-sent after a
    /// broken connection because their arrival was not certain).
    pub retried: u64,
    /// Events written to the spill directory (queue full or receiver down).
    pub spilled: u64,
    /// Events lost, by reason (`spill_full`: the spill cap was reached; `spill_error`: the
    /// spill could not be written). Every reason is listed.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Sum of `dropped`.
    pub dropped_total: u64,
    /// Events waiting in the in-memory queue now.
    pub queued: u64,
    /// Events in flight (sent, acknowledgement pending, or waiting for a retry).
    pub in_flight: u64,
    /// Events waiting in the spill directory now.
    pub spill_events: u64,
    /// Bytes of the spill directory now.
    pub spill_bytes: u64,
    /// Events recovered from a previous run's spill at start (sent before new ones).
    pub recovered: u64,
    /// Whether the receiver is connected now.
    pub connected: bool,
    /// Whether `delivered` means acknowledged by the receiver (false for UDP).
    pub confirms: bool,
    /// File sinks: events written but not yet flushed.
    #[serde(skip_serializing_if = "is_zero")]
    pub buffered: u64,
    /// File sinks: rotations.
    #[serde(skip_serializing_if = "is_zero")]
    pub rotations: u64,
    /// The last delivery or connection error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The last problem of the spill directory (write, read, checksum), if any: the cause
    /// of `dropped.spill_error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_spill_error: Option<String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl SinkStats {
    /// Events not yet delivered: queued, in flight or spilled.
    pub fn undelivered(&self) -> u64 {
        self.queued + self.in_flight + self.spill_events
    }

    /// One line for stderr.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "sink {}: {} delivered",
            self.sink,
            if self.confirms {
                self.delivered
            } else {
                self.sent_unconfirmed
            }
        );
        if !self.confirms {
            s.push_str(" (sent over UDP, arrival not confirmed)");
        }
        s.push_str(&format!(
            ", {} failed attempts, {} retried, {} spilled, {} dropped",
            self.failed, self.retried, self.spilled, self.dropped_total
        ));
        let reasons: Vec<String> = self
            .dropped
            .iter()
            .filter(|(_, &v)| v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !reasons.is_empty() {
            s.push_str(&format!(" ({})", reasons.join(", ")));
        }
        if self.undelivered() > 0 {
            s.push_str(&format!(
                ", {} not delivered yet, kept in the spill directory (sent first by the next run)",
                self.undelivered()
            ));
        }
        if let Some(e) = &self.last_error {
            s.push_str(&format!("; last error: {e}"));
        }
        if let Some(e) = self
            .last_spill_error
            .as_ref()
            .filter(|e| Some(*e) != self.last_error.as_ref())
        {
            s.push_str(&format!("; last spill error: {e}"));
        }
        s
    }
}

/// Drop reasons, all listed in `stats` even when zero.
pub const DROP_REASONS: [&str; 2] = ["spill_full", "spill_error"];

/// Errors of sink URLs and options.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The URL cannot be parsed or names an unknown scheme.
    #[error("invalid sink URL '{url}': {reason}")]
    Url {
        /// The URL (credentials removed).
        url: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// An option does not fit the sink or is out of range.
    #[error("sink {url}: option {key} = {value}: {reason}")]
    Option {
        /// The sink URL (credentials removed).
        url: String,
        /// The option.
        key: String,
        /// The value given.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The spill directory cannot be used.
    #[error("sink {url}: spill directory {dir}: {detail}")]
    Spill {
        /// The sink URL.
        url: String,
        /// The directory.
        dir: String,
        /// What failed and what to do.
        detail: String,
    },
    /// The client could not be created.
    #[error("sink {url}: {detail}")]
    Client {
        /// The sink URL.
        url: String,
        /// What failed.
        detail: String,
    },
}

impl From<SinkError> for ConfigError {
    fn from(e: SinkError) -> ConfigError {
        ConfigError::Sink(e.to_string())
    }
}

/// `[sinks]`: settings shared by every sink (each `[[sink]]` may override the first three).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SinksSection {
    /// Events held in memory per network sink before spilling to disk. Default 16384
    /// (about 16 MiB of flow events).
    pub queue_events: usize,
    /// Cap of each network sink's spill directory in bytes; beyond it new events are
    /// dropped and counted (`dropped.spill_full`). Default 1 GiB.
    pub spill_max_bytes: u64,
    /// Events sent per request (Kafka batch awaited, Redis pipeline, syslog write).
    /// Default 5000 for Kafka (each batch waits for its delivery reports, so bigger
    /// batches amortise the wait), 1000 for the others.
    pub batch: Option<usize>,
    /// Directory holding one spill subdirectory per sink (`<sensor_id>.<kind>-<hash>`).
    /// Default `<temp dir>/flowsentry-spill`; set it to persistent storage for a sensor.
    pub spill_dir: Option<PathBuf>,
    /// Seconds to wait at the end of a run for sinks to deliver what is queued; what is
    /// left stays in the spill directory. Default 10.
    pub drain_secs: f64,
}

impl Default for SinksSection {
    fn default() -> Self {
        SinksSection {
            queue_events: 16_384,
            spill_max_bytes: 1 << 30,
            batch: None,
            spill_dir: None,
            drain_secs: 10.0,
        }
    }
}

/// `[[sink]]`: one destination, by URL, with options (the same names work as URL query
/// parameters, `kafka://h:9092/t?compression=zstd`; a table key wins over the query).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkTable {
    /// `file:PATH`, `kafka://HOST:PORT[,HOST:PORT...]/TOPIC`, `redis://[USER:PASS@]HOST:PORT/STREAM`,
    /// `syslog+tcp://HOST:PORT`, `syslog+udp://HOST:PORT`.
    pub url: String,
    /// Overrides `sinks.queue_events`.
    pub queue_events: Option<usize>,
    /// Overrides `sinks.spill_max_bytes`.
    pub spill_max_bytes: Option<u64>,
    /// Overrides `sinks.batch`.
    pub batch: Option<usize>,
    /// file: rotate at this size (MiB).
    pub rotate_mb: Option<u64>,
    /// file: rotate at this age (seconds).
    pub rotate_secs: Option<u64>,
    /// kafka: `lz4` (default), `gzip`, `snappy` or `none`.
    pub compression: Option<String>,
    /// kafka: `all` (default, every in-sync replica) or `1` (the leader).
    pub acks: Option<String>,
    /// kafka: how long librdkafka tries one message before reporting it failed. Default 5000.
    pub message_timeout_ms: Option<u64>,
    /// kafka: batching delay. Default 5.
    pub linger_ms: Option<u64>,
    /// redis: approximate stream length cap (`MAXLEN ~`); 0 disables trimming. Default 1000000.
    pub maxlen: Option<u64>,
    /// syslog: facility name (`local0`..`local7`, `user`, `daemon`, ...) or number. Default local0.
    pub facility: Option<String>,
    /// syslog+tcp: events re-sent after a broken connection (their arrival is uncertain).
    /// Default 4096.
    pub resend_window: Option<usize>,
}

/// What kind of destination a sink is, with its address.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A file, appended to, rotated.
    File {
        /// The path.
        path: PathBuf,
        /// Rotation.
        rotation: crate::event::Rotation,
    },
    /// A Kafka topic.
    Kafka {
        /// `host:port[,host:port]`.
        brokers: String,
        /// The topic.
        topic: String,
        /// Producer options.
        opts: kafka::KafkaOptions,
    },
    /// A Redis stream.
    Redis {
        /// The connection URL for the client (`redis://[user:pass@]host:port/`).
        client_url: String,
        /// The stream key.
        stream: String,
        /// `MAXLEN ~` (0 = none).
        maxlen: u64,
    },
    /// syslog over TCP (RFC 5424 with RFC 6587 octet counting).
    SyslogTcp {
        /// `host:port`.
        addr: String,
        /// Facility number.
        facility: u8,
        /// Events re-sent after a broken connection.
        resend_window: usize,
    },
    /// syslog over UDP (RFC 5424, one message per datagram; no acknowledgement).
    SyslogUdp {
        /// `host:port`.
        addr: String,
        /// Facility number.
        facility: u8,
    },
}

impl Target {
    /// Short kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::File { .. } => "file",
            Target::Kafka { .. } => "kafka",
            Target::Redis { .. } => "redis",
            Target::SyslogTcp { .. } => "syslog+tcp",
            Target::SyslogUdp { .. } => "syslog+udp",
        }
    }
}

/// A checked sink: its target and the delivery limits.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    /// The URL without credentials (name in messages and stats).
    pub name: String,
    /// Where events go.
    pub target: Target,
    /// In-memory queue capacity (events).
    pub queue_events: usize,
    /// Spill directory cap (bytes).
    pub spill_max_bytes: u64,
    /// Events per request.
    pub batch: usize,
}

/// Removes `user:password@` from a URL.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (auth, tail) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((_, host)) = auth.rsplit_once('@') {
            return format!("{scheme}://***@{host}{tail}");
        }
    }
    url.to_string()
}

fn opt_err(url: &str, key: &str, value: &str, reason: &str) -> SinkError {
    SinkError::Option {
        url: redact(url),
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn url_err(url: &str, reason: &str) -> SinkError {
    SinkError::Url {
        url: redact(url),
        reason: reason.to_string(),
    }
}

/// Parses the query of a sink URL into the table's option fields.
fn apply_query(table: &mut SinkTable, url: &str, query: &str) -> Result<(), SinkError> {
    fn num<T: std::str::FromStr>(url: &str, k: &str, v: &str) -> Result<T, SinkError> {
        v.parse()
            .map_err(|_| opt_err(url, k, v, "must be a non-negative integer"))
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        // A table key set explicitly wins over the query.
        match k {
            "queue_events" => {
                table.queue_events = table.queue_events.or(Some(num(url, k, v)?));
            }
            "spill_max_bytes" => {
                table.spill_max_bytes = table.spill_max_bytes.or(Some(num(url, k, v)?));
            }
            "batch" => table.batch = table.batch.or(Some(num(url, k, v)?)),
            "rotate_mb" => table.rotate_mb = table.rotate_mb.or(Some(num(url, k, v)?)),
            "rotate_secs" => table.rotate_secs = table.rotate_secs.or(Some(num(url, k, v)?)),
            "compression" => {
                table.compression = table.compression.clone().or(Some(v.to_string()));
            }
            "acks" => table.acks = table.acks.clone().or(Some(v.to_string())),
            "message_timeout_ms" => {
                table.message_timeout_ms = table.message_timeout_ms.or(Some(num(url, k, v)?));
            }
            "linger_ms" => table.linger_ms = table.linger_ms.or(Some(num(url, k, v)?)),
            "maxlen" => table.maxlen = table.maxlen.or(Some(num(url, k, v)?)),
            "facility" => table.facility = table.facility.clone().or(Some(v.to_string())),
            "resend_window" => {
                table.resend_window = table.resend_window.or(Some(num(url, k, v)?));
            }
            _ => return Err(opt_err(url, k, v, "unknown sink option")),
        }
    }
    Ok(())
}

/// Splits `host:port` and checks both parts.
fn host_port(url: &str, s: &str) -> Result<String, SinkError> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| url_err(url, "expected HOST:PORT"))?;
    if host.is_empty() {
        return Err(url_err(url, "the host is empty"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("{host}:{p}")),
        _ => Err(url_err(url, &format!("invalid port '{port}'"))),
    }
}

/// Facility names of RFC 5424 §6.2.1.
fn facility(url: &str, v: &str) -> Result<u8, SinkError> {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2",
        "local3", "local4", "local5", "local6", "local7",
    ];
    if let Some(i) = NAMES.iter().position(|n| *n == v) {
        return Ok(i as u8);
    }
    match v.parse::<u8>() {
        Ok(n) if n < 24 => Ok(n),
        _ => Err(opt_err(
            url,
            "facility",
            v,
            "must be a facility name (local0..local7, user, daemon, ...) or 0..23",
        )),
    }
}

impl SinkSpec {
    /// Checks one `[[sink]]` table (or a `--sink URL`) against the shared defaults.
    pub fn parse(table: &SinkTable, defaults: &SinksSection) -> Result<SinkSpec, SinkError> {
        let raw = table.url.trim();
        let mut t = table.clone();
        let (base, query) = match raw.split_once('?') {
            Some((b, q)) => (b, q),
            None => (raw, ""),
        };
        apply_query(&mut t, raw, query)?;
        let name = redact(base);
        let (scheme, rest) = if let Some(p) = base.strip_prefix("file:") {
            ("file", p.strip_prefix("//").unwrap_or(p))
        } else {
            base.split_once("://").ok_or_else(|| {
                url_err(
                    raw,
                    "expected file:PATH, kafka://HOST:PORT/TOPIC, redis://HOST:PORT/STREAM, syslog+tcp://HOST:PORT or syslog+udp://HOST:PORT",
                )
            })?
        };
        let only = |allowed: &[&str]| -> Result<(), SinkError> {
            let set: [(&str, bool); 10] = [
                ("rotate_mb", t.rotate_mb.is_some()),
                ("rotate_secs", t.rotate_secs.is_some()),
                ("compression", t.compression.is_some()),
                ("acks", t.acks.is_some()),
                ("message_timeout_ms", t.message_timeout_ms.is_some()),
                ("linger_ms", t.linger_ms.is_some()),
                ("maxlen", t.maxlen.is_some()),
                ("facility", t.facility.is_some()),
                ("resend_window", t.resend_window.is_some()),
                ("queue_events", false),
            ];
            for (k, present) in set {
                if present && !allowed.contains(&k) {
                    return Err(opt_err(
                        raw,
                        k,
                        "(set)",
                        &format!("not an option of {scheme} sinks"),
                    ));
                }
            }
            Ok(())
        };
        let target = match scheme {
            "file" => {
                only(&["rotate_mb", "rotate_secs"])?;
                if rest.is_empty() {
                    return Err(url_err(
                        raw,
                        "file: needs a path (file:/var/log/events.jsonl)",
                    ));
                }
                if t.rotate_mb == Some(0) || t.rotate_secs == Some(0) {
                    return Err(opt_err(
                        raw,
                        "rotate_mb / rotate_secs",
                        "0",
                        "must be at least 1",
                    ));
                }
                Target::File {
                    path: PathBuf::from(rest),
                    rotation: crate::event::Rotation {
                        max_bytes: t.rotate_mb.map(|m| m.saturating_mul(1 << 20)),
                        max_secs: t.rotate_secs,
                    },
                }
            }
            "kafka" => {
                only(&["compression", "acks", "message_timeout_ms", "linger_ms"])?;
                let (hosts, topic) = rest
                    .split_once('/')
                    .ok_or_else(|| url_err(raw, "expected kafka://HOST:PORT/TOPIC"))?;
                let brokers = hosts
                    .split(',')
                    .map(|h| host_port(raw, h))
                    .collect::<Result<Vec<_>, _>>()?
                    .join(",");
                let valid_topic = !topic.is_empty()
                    && topic.len() <= 249
                    && topic
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
                if !valid_topic {
                    return Err(url_err(
                        raw,
                        "the topic must be 1-249 characters of [a-zA-Z0-9._-]",
                    ));
                }
                Target::Kafka {
                    brokers,
                    topic: topic.to_string(),
                    opts: kafka::KafkaOptions::from_table(&t, raw)?,
                }
            }
            "redis" => {
                only(&["maxlen"])?;
                let (auth_host, stream) = rest
                    .split_once('/')
                    .ok_or_else(|| url_err(raw, "expected redis://HOST:PORT/STREAM"))?;
                if stream.is_empty() {
                    return Err(url_err(raw, "the stream name is empty"));
                }
                let host = auth_host.rsplit_once('@').map_or(auth_host, |(_, h)| h);
                host_port(raw, host)?;
                Target::Redis {
                    client_url: format!("redis://{auth_host}/"),
                    stream: stream.to_string(),
                    maxlen: t.maxlen.unwrap_or(1_000_000),
                }
            }
            "syslog+tcp" | "syslog+udp" => {
                only(&["facility", "resend_window"])?;
                let addr = host_port(raw, rest.trim_end_matches('/'))?;
                let facility = match &t.facility {
                    Some(f) => facility(raw, f)?,
                    None => 16,
                };
                if scheme == "syslog+tcp" {
                    Target::SyslogTcp {
                        addr,
                        facility,
                        resend_window: t.resend_window.unwrap_or(4096),
                    }
                } else {
                    if t.resend_window.is_some() {
                        return Err(opt_err(
                            raw,
                            "resend_window",
                            "(set)",
                            "only for syslog+tcp",
                        ));
                    }
                    Target::SyslogUdp { addr, facility }
                }
            }
            other => {
                return Err(url_err(
                    raw,
                    &format!(
                        "unknown scheme '{other}' (file, kafka, redis, syslog+tcp, syslog+udp)"
                    ),
                ))
            }
        };
        let queue_events = t.queue_events.unwrap_or(defaults.queue_events);
        if queue_events == 0 || queue_events > 10_000_000 {
            return Err(opt_err(
                raw,
                "queue_events",
                &queue_events.to_string(),
                "must be between 1 and 10000000",
            ));
        }
        let kind_default = if matches!(target, Target::Kafka { .. }) {
            5000
        } else {
            1000
        };
        let batch = t.batch.or(defaults.batch).unwrap_or(kind_default);
        if batch == 0 || batch > 100_000 {
            return Err(opt_err(
                raw,
                "batch",
                &batch.to_string(),
                "must be between 1 and 100000",
            ));
        }
        Ok(SinkSpec {
            name,
            target,
            queue_events,
            spill_max_bytes: t.spill_max_bytes.unwrap_or(defaults.spill_max_bytes),
            batch,
        })
    }

    /// The spill subdirectory of this sink for `sensor_id`: stable across runs as long as
    /// the sensor id and URL stay the same.
    pub fn spill_subdir(&self, sensor_id: &str) -> String {
        let clean = file_safe(sensor_id);
        let h = format!(
            "{:x}",
            <sha1::Sha1 as sha1::Digest>::digest(self.name.as_bytes())
        );
        format!(
            "{clean}.{}-{}",
            self.target.kind().replace('+', "-"),
            &h[..10]
        )
    }
}

/// Everything needed to open the sinks of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSettings {
    /// The sensor id stamped on every event.
    pub sensor_id: String,
    /// The checked sinks, in order.
    pub specs: Vec<SinkSpec>,
    /// Parent of the per-sink spill directories.
    pub spill_dir: PathBuf,
    /// Time allowed at the end of a run to deliver what is queued.
    pub drain: Duration,
}

impl SinkSettings {
    /// Checks the `[sinks]` defaults and every sink.
    pub fn new(
        sensor_id: String,
        section: &SinksSection,
        tables: &[SinkTable],
    ) -> Result<SinkSettings, SinkError> {
        if !(section.drain_secs.is_finite()
            && section.drain_secs >= 0.0
            && section.drain_secs <= 86_400.0)
        {
            return Err(SinkError::Option {
                url: "[sinks]".into(),
                key: "drain_secs".into(),
                value: section.drain_secs.to_string(),
                reason: "must be between 0 and 86400 seconds".into(),
            });
        }
        let specs = tables
            .iter()
            .map(|t| SinkSpec::parse(t, section))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::BTreeSet::new();
        for s in &specs {
            if !seen.insert(s.name.clone()) {
                return Err(url_err(&s.name, "the same sink is configured twice"));
            }
        }
        Ok(SinkSettings {
            sensor_id,
            specs,
            spill_dir: section
                .spill_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("flowsentry-spill")),
            drain: Duration::from_secs_f64(section.drain_secs),
        })
    }

    /// Opens every sink (network sinks start their threads and recover their spill).
    pub fn open(&self) -> Result<Vec<Box<dyn Sink>>, SinkError> {
        let mut out: Vec<Box<dyn Sink>> = Vec::with_capacity(self.specs.len());
        for spec in &self.specs {
            let sink: Box<dyn Sink> = match &spec.target {
                Target::File { path, rotation } => {
                    Box::new(file::FileSink::append(path, *rotation).map_err(|e| {
                        SinkError::Client {
                            url: spec.name.clone(),
                            detail: e.to_string(),
                        }
                    })?)
                }
                Target::Kafka {
                    brokers,
                    topic,
                    opts,
                } => {
                    let t = kafka::KafkaTransport::new(brokers, topic, opts, &self.sensor_id)
                        .map_err(|detail| SinkError::Client {
                            url: spec.name.clone(),
                            detail,
                        })?;
                    Box::new(queued::QueuedSink::start(
                        spec,
                        &self.spill_dir,
                        &self.sensor_id,
                        t,
                    )?)
                }
                Target::Redis {
                    client_url,
                    stream,
                    maxlen,
                } => {
                    let t = redis::RedisTransport::new(client_url, stream, *maxlen).map_err(
                        |detail| SinkError::Client {
                            url: spec.name.clone(),
                            detail,
                        },
                    )?;
                    Box::new(queued::QueuedSink::start(
                        spec,
                        &self.spill_dir,
                        &self.sensor_id,
                        t,
                    )?)
                }
                Target::SyslogTcp {
                    addr,
                    facility,
                    resend_window,
                } => {
                    let t =
                        syslog::SyslogTcp::new(addr, *facility, &self.sensor_id, *resend_window);
                    Box::new(queued::QueuedSink::start(
                        spec,
                        &self.spill_dir,
                        &self.sensor_id,
                        t,
                    )?)
                }
                Target::SyslogUdp { addr, facility } => {
                    let t = syslog::SyslogUdp::new(addr, *facility, &self.sensor_id);
                    Box::new(queued::QueuedSink::start(
                        spec,
                        &self.spill_dir,
                        &self.sensor_id,
                        t,
                    )?)
                }
            };
            out.push(sink);
        }
        Ok(out)
    }
}

/// A sensor id as a file name part: `[A-Za-z0-9._-]` kept, anything else `_`, at most 64.
pub fn file_safe(sensor_id: &str) -> String {
    sensor_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// The host name, the default `sensor_id` (`"unknown-host"` if it cannot be read).
pub fn default_sensor_id() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// Checks a sensor id: 1-255 printable characters without spaces (it becomes the syslog
/// HOSTNAME and part of spill directory names and Kafka keys).
pub fn check_sensor_id(id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| (33..=126).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: "sensor.id",
            value: id.to_string(),
            reason: "must be 1-255 printable ASCII characters without spaces",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> Result<SinkSpec, SinkError> {
        SinkSpec::parse(
            &SinkTable {
                url: url.into(),
                ..SinkTable::default()
            },
            &SinksSection::default(),
        )
    }

    #[test]
    fn urls_parse_into_targets() {
        let k = spec("kafka://127.0.0.1:9092,127.0.0.1:9093/flowsentry-events?compression=gzip")
            .map(|s| s.target);
        match k {
            Ok(Target::Kafka {
                brokers,
                topic,
                opts,
            }) => {
                assert_eq!(brokers, "127.0.0.1:9092,127.0.0.1:9093");
                assert_eq!(topic, "flowsentry-events");
                assert_eq!(opts.compression, "gzip");
            }
            other => panic!("{other:?}"),
        }
        let r = spec("redis://user:secret@127.0.0.1:6379/events?maxlen=10");
        let r = r.ok();
        assert_eq!(
            r.as_ref().map(|s| s.name.as_str()),
            Some("redis://***@127.0.0.1:6379/events")
        );
        assert!(matches!(
            r.map(|s| s.target),
            Some(Target::Redis { stream, maxlen: 10, client_url }) if stream == "events" && client_url == "redis://user:secret@127.0.0.1:6379/"
        ));
        assert!(matches!(
            spec("syslog+tcp://127.0.0.1:514?facility=local3").map(|s| s.target),
            Ok(Target::SyslogTcp { facility: 19, .. })
        ));
        assert!(matches!(
            spec("file:/tmp/x.jsonl?rotate_mb=5").map(|s| s.target),
            Ok(Target::File { rotation, .. }) if rotation.max_bytes == Some(5 << 20)
        ));
    }

    #[test]
    fn bad_urls_and_options_are_named() {
        for (url, needle) in [
            ("kafka://127.0.0.1/topic", "HOST:PORT"),
            ("kafka://127.0.0.1:9092/", "topic"),
            ("redis://127.0.0.1:6379/s?compression=lz4", "compression"),
            ("nats://x:1/y", "unknown scheme"),
            ("syslog+udp://h:0", "invalid port"),
            ("syslog+tcp://h:514?facility=nope", "facility"),
            ("kafka://h:1/t?bogus=1", "unknown sink option"),
            ("kafka://h:1/t?queue_events=0", "queue_events"),
        ] {
            let e = spec(url).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(needle), "{url}: {e}");
        }
    }

    #[test]
    fn event_kind_is_read_from_the_line() {
        let l = br#"{"timestamp":"x","event_type":"anomaly","a":1}"#;
        assert_eq!(EventKind::of_line(l), EventKind::Anomaly);
        assert_eq!(EventKind::of_line(b"{}"), EventKind::Other);
        for k in [
            EventKind::Flow,
            EventKind::Stats,
            EventKind::Other,
            EventKind::Error,
        ] {
            assert_eq!(EventKind::from_code(k.code()), k);
        }
    }

    #[test]
    fn spill_subdirs_differ_by_sensor_and_url() {
        let a = spec("redis://127.0.0.1:1/s")
            .ok()
            .map(|s| s.spill_subdir("site-a"));
        let b = spec("redis://127.0.0.1:1/s")
            .ok()
            .map(|s| s.spill_subdir("site-b"));
        let c = spec("redis://127.0.0.1:1/t")
            .ok()
            .map(|s| s.spill_subdir("site-a"));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(a.is_some_and(|d| d.starts_with("site-a.redis-")));
    }
}
