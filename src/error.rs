//! Library error types. Each message says what failed, where (file, packet number, byte
//! offset) and, where there is one, what the user can do. Per-packet decode problems are
//! not errors: they are counted by kind (see [`crate::packet::DecodeError`]).

use std::path::PathBuf;

/// Errors while opening or reading a capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be opened or read.
    #[error("{path}: cannot open capture: {source}")]
    Open {
        /// The capture path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("{path}: the file is empty (0 bytes): not a capture")]
    Empty {
        /// The capture path.
        path: String,
    },
    /// The header is neither pcap nor pcapng.
    #[error("{path}: not a pcap or pcapng file (first bytes {magic}){hint}")]
    NotACapture {
        /// The capture path.
        path: String,
        /// First bytes in hex.
        magic: String,
        /// A hint such as "gzip-compressed: decompress it first".
        hint: String,
    },
    /// The file ends inside a record.
    #[error("{path}: capture is truncated: {} is incomplete (the file ends early; the flows before it were kept)", record_at(*.packet, *.offset))]
    Truncated {
        /// The capture path.
        path: String,
        /// 1-based number of the packet that could not be read (0: the file header).
        packet: u64,
        /// Byte offset of its record in the file; `None` where the reader cannot know it
        /// (libpcap reading pcapng).
        offset: Option<u64>,
    },
    /// A record is malformed.
    #[error("{path}: corrupt capture: {}: {detail} (the flows before it were kept)", record_at(*.packet, *.offset))]
    Corrupt {
        /// The capture path.
        path: String,
        /// 1-based number of the packet that could not be read (0: the file header).
        packet: u64,
        /// Byte offset of its record in the file; `None` where the reader cannot know it
        /// (libpcap reading pcapng).
        offset: Option<u64>,
        /// What was wrong.
        detail: String,
    },
    /// A read failed part-way.
    #[error("{path}: read error at byte offset {offset}: {source}")]
    Read {
        /// The capture path.
        path: String,
        /// Byte offset reached.
        offset: u64,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The BPF expression did not compile.
    #[error("invalid BPF filter '{expr}': {detail}")]
    Bpf {
        /// The expression.
        expr: String,
        /// libpcap's message.
        detail: String,
    },
    /// The BPF expression compiled for the input's first link type but not for the link
    /// type of a later frame (a pcapng file mixing interfaces of several link types).
    #[error("{path}: {}: the BPF filter '{expr}' does not compile for its link type {link} ({detail}); reading stopped there, the flows before it were kept (in a file mixing link types, use a filter valid for each, e.g. 'ip or ip6' rather than one naming Ethernet fields)", record_at(*.packet, *.offset))]
    BpfAt {
        /// The capture path.
        path: String,
        /// 1-based number of the frame whose link type failed.
        packet: u64,
        /// Byte offset of its record; `None` where the reader cannot know it.
        offset: Option<u64>,
        /// The link type's name.
        link: String,
        /// The expression.
        expr: String,
        /// libpcap's message.
        detail: String,
    },
    /// The requested reader cannot read this input.
    #[error("{path}: {detail}")]
    Unsupported {
        /// The capture path.
        path: String,
        /// What is not supported and what to do instead.
        detail: String,
    },
    /// A live interface could not be opened or read.
    #[error("interface {iface}: {detail}")]
    Live {
        /// Interface name.
        iface: String,
        /// libpcap's message and a hint.
        detail: String,
    },
}

/// Why a libpcap read of pcapng has no byte offset, and how to get one.
const NO_OFFSET: &str =
    "libpcap does not report byte offsets for pcapng files; replay without --reader libpcap \
     to get it";

/// Where a damaged record is: "packet N at byte offset X", or "the file header" for
/// packet 0, with why the offset is not known where it is not.
fn record_at(packet: u64, offset: Option<u64>) -> String {
    match (packet, offset) {
        (0, _) => "the file header".to_string(),
        (p, Some(o)) => format!("packet {p} at byte offset {o}"),
        (p, None) => format!("packet {p} ({NO_OFFSET})"),
    }
}

/// Errors of configuration files and options.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config: {source}")]
    Read {
        /// Config path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown keys.
    #[error("{path}: invalid config: {detail}")]
    Parse {
        /// Config path.
        path: PathBuf,
        /// The parser's message (names the key and line).
        detail: String,
    },
    /// A value is out of range.
    #[error("invalid setting {key} = {value}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A sink URL or sink option is invalid (the message names the sink and option).
    #[error("{0}")]
    Sink(String),
}

/// Errors writing events.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The output could not be opened.
    #[error("{path}: cannot open output: {source}")]
    Open {
        /// Output path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The model file, decoded while the run started, is unusable (its message names
    /// the file and what is wrong with it).
    #[error("{0}")]
    Model(String),
    /// A pipeline thread could not be started or died.
    #[error("{what}: {detail}")]
    Thread {
        /// Which thread.
        what: String,
        /// What happened.
        detail: String,
    },
    /// The persisted `seq` counter could not be read or written.
    #[error("{0}")]
    Sequence(String),
    /// The reader of our output went away (closed pipe): not an error for the user.
    #[error("output closed by the reader")]
    BrokenPipe,
    /// Writing failed (e.g. disk full).
    #[error("{path}: cannot write events: {source} ({events} events were confirmed written; the events after them, up to {pending} already produced, may be lost; free space or fix the path and run again)")]
    Write {
        /// Output path or "stdout".
        path: String,
        /// Events confirmed written (flushed) before the failure.
        events: u64,
        /// Events produced after those (buffered or in the failed write).
        pending: u64,
        /// The I/O error.
        source: std::io::Error,
    },
}
