//! Capture: opening pcap/pcapng files (or stdin) and handing out each frame borrowed from
//! the reader's buffer for one callback. Owns link types, timestamp precision (micro- and
//! nanosecond pcap, pcapng `if_tsresol`/`if_tsoffset`), BPF filtering, and the byte
//! offsets and packet numbers used in error messages. No parsing beyond record headers.
//!
//! Two interchangeable file readers give identical frames:
//! - [`Backend::Native`]: the pure-Rust `pcap-parser` streaming reader (default; several
//!   times faster than libpcap for read + parse, see `docs/benchmarks.md`);
//! - [`Backend::Libpcap`]: libpcap's own reader, used whenever a BPF filter is given so the
//!   filter has exactly libpcap's semantics.

use crate::error::CaptureError;
use crate::packet::{Frame, LinkType};
use crate::time::Timestamp;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A pcap or pcapng file.
    File(PathBuf),
    /// Standard input (`-`).
    Stdin,
}

impl Input {
    /// Parses a command-line argument (`-` = stdin).
    pub fn from_arg(s: &str) -> Input {
        if s == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(s))
        }
    }

    /// A name for messages.
    pub fn display_name(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "<stdin>".to_string(),
        }
    }

    /// Size in bytes, if known (for progress).
    pub fn size(&self) -> Option<u64> {
        match self {
            Input::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Input::Stdin => None,
        }
    }
}

/// Which file reader to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// pcap-parser (pure Rust, fastest).
    #[default]
    Native,
    /// libpcap's reader (files only).
    Libpcap,
}

/// Counters of one opened source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounters {
    /// Frames handed out.
    pub frames: u64,
    /// Frames the BPF filter rejected.
    pub filtered: u64,
    /// Bytes of the file consumed so far.
    pub offset: u64,
    /// Malformed pcapng blocks of kinds flowsentry does not use (name resolution,
    /// statistics, ...) that were skipped by their length instead of ending the file.
    pub skipped_blocks: u64,
}

impl SourceCounters {
    /// Hands `fr` to `f` and counts it when the filter kept it (returns 1), or counts it
    /// as filtered (returns 0).
    #[inline(always)]
    fn deliver<F: FnMut(&Frame<'_>)>(&mut self, keep: bool, fr: &Frame<'_>, f: &mut F) -> usize {
        if keep {
            f(fr);
            self.frames += 1;
            1
        } else {
            self.filtered += 1;
            0
        }
    }
}

/// Initial read buffer of the native reader.
const NATIVE_BUFFER: usize = 1 << 20;
/// Largest record the native reader accepts (libpcap accepts up to 256 KiB by default;
/// we allow larger jumbo/TSO captures but never an absurd length from a corrupt header).
const MAX_RECORD: usize = 64 << 20;

struct NgInterface {
    link: LinkType,
    /// Timestamp units per second.
    resolution: u64,
    /// Seconds added to every timestamp.
    offset_secs: i64,
}

/// Timestamp units per second of a pcapng `if_tsresol` byte: 10^n, or 2^n when the top
/// bit is set, as libpcap reads it (n up to 19 and 63). pcap-parser 0.17's
/// `ts_resolution` compares the whole byte, top bit included, with 63, so it rejects
/// every power-of-2 resolution.
fn ts_units_per_second(tsresol: u8) -> Option<u64> {
    let n = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n)
    }
}

impl NgInterface {
    /// The time of a packet block's 64-bit timestamp (high and low words) on this
    /// interface: units of `1 / resolution` s, plus the interface's offset.
    fn timestamp(&self, high: u32, low: u32) -> Timestamp {
        let raw = (u64::from(high) << 32) | u64::from(low);
        let secs = (raw / self.resolution) as i64;
        let frac = u128::from(raw % self.resolution) * 1_000_000_000 / u128::from(self.resolution);
        Timestamp::from_secs_nanos(secs.saturating_add(self.offset_secs), frac as i64)
    }
}

/// A damaged file header (reported as packet 0 at offset 0: "the file header").
fn header_error(name: &str, detail: String) -> CaptureError {
    CaptureError::Corrupt {
        path: name.to_string(),
        packet: 0,
        offset: Some(0),
        detail,
    }
}

/// A filter that does not compile for the link type of the next record (`link`) but does
/// for another (an earlier one of the file, or Ethernet), placed in the file. A filter
/// that compiles for none of them (a bad expression) and other errors pass through.
fn bpf_at(
    name: &str,
    c: &SourceCounters,
    offset: Option<u64>,
    link: LinkType,
    filter: Option<&BpfFilter>,
    e: CaptureError,
) -> CaptureError {
    let link_specific = filter.is_some_and(|f| {
        !f.programs.is_empty() || (link != LinkType::Ethernet && compile_bpf(&f.expr, 1).is_ok())
    });
    if !link_specific {
        return e;
    }
    match e {
        CaptureError::Bpf { expr, detail } => CaptureError::BpfAt {
            path: name.to_string(),
            packet: c.frames + c.filtered + 1,
            offset,
            link: format!("{link:?}"),
            expr,
            detail,
        },
        other => other,
    }
}

fn corrupt_at(name: &str, c: &SourceCounters, detail: String) -> CaptureError {
    CaptureError::Corrupt {
        path: name.to_string(),
        packet: c.frames + c.filtered + 1,
        offset: Some(c.offset),
        detail,
    }
}

/// The pure-Rust streaming reader (pcap and pcapng, either byte order).
pub struct NativeReader {
    name: String,
    rd: Box<dyn PcapReaderIterator + Send>,
    legacy_link: LinkType,
    legacy_nanos: bool,
    /// Byte order of a standard (not "modified") legacy pcap's record headers, once its
    /// file header has been read: records are then parsed in place (see
    /// [`NativeReader::dispatch_legacy`]).
    legacy_fast: Option<Endian>,
    /// Tests: read every record through pcap-parser (the fast path's reference).
    #[cfg(test)]
    no_fast_path: bool,
    ng: Vec<NgInterface>,
    /// Byte order of the current pcapng section (None before a section header).
    ng_endian: Option<Endian>,
    last_ts: Timestamp,
    bpf: Option<BpfFilter>,
    counters: SourceCounters,
    buffer_size: usize,
    done: bool,
}

/// A BPF program compiled by libpcap per link type, applied to the frames a file reader
/// reads (native or libpcap), so that the reader sees, counts and numbers every record,
/// the ones the filter rejects included.
struct BpfFilter {
    expr: String,
    programs: Vec<(LinkType, u32, pcap::BpfProgram)>,
}

impl BpfFilter {
    /// A filter for `expr`; programs are compiled per link type on first use.
    fn new(expr: &str) -> BpfFilter {
        BpfFilter {
            expr: expr.to_string(),
            programs: Vec::new(),
        }
    }

    /// Whether the filter passes frame `fr`.
    fn keeps(&mut self, fr: &Frame<'_>) -> Result<bool, CaptureError> {
        let link_num = link_number(fr.link);
        self.matches(fr.link, link_num, fr.data, fr.orig_len)
    }

    fn matches(
        &mut self,
        link: LinkType,
        link_num: u32,
        data: &[u8],
        orig_len: u32,
    ) -> Result<bool, CaptureError> {
        let prog = self.program_for(link, link_num)?;
        Ok(offline_filter::matches(prog, data, orig_len))
    }

    /// The program for `link`, compiled on first use.
    fn program_for(
        &mut self,
        link: LinkType,
        link_num: u32,
    ) -> Result<&pcap::BpfProgram, CaptureError> {
        let at = match self.programs.iter().position(|(l, _, _)| *l == link) {
            Some(i) => i,
            None => {
                let prog = compile_bpf(&self.expr, link_num)?;
                self.programs.push((link, link_num, prog));
                self.programs.len() - 1
            }
        };
        Ok(&self.programs[at].2)
    }
}

/// libpcap's `pcap_offline_filter`, given a frame's real captured and original lengths,
/// which is what libpcap's own file reader does. The `pcap` crate's
/// `BpfProgram::filter` passes the captured length as both, so on a frame cut by the
/// snapshot length `len`, `greater` and `less` would test the captured size instead.
#[allow(unsafe_code)]
mod offline_filter {
    use std::os::raw::{c_int, c_uint, c_void};

    /// `struct bpf_program` of `<pcap/bpf.h>`.
    #[repr(C)]
    struct Program {
        bf_len: c_uint,
        bf_insns: *const c_void,
    }

    /// `struct pcap_pkthdr` of `<pcap/pcap.h>`.
    #[repr(C)]
    struct PacketHeader {
        ts: libc::timeval,
        caplen: u32,
        len: u32,
    }

    #[link(name = "pcap")]
    unsafe extern "C" {
        fn pcap_offline_filter(fp: *const Program, h: *const PacketHeader, pkt: *const u8)
            -> c_int;
    }

    /// Whether `prog` accepts a frame of captured bytes `data` and wire length
    /// `orig_len`.
    pub(super) fn matches(prog: &pcap::BpfProgram, data: &[u8], orig_len: u32) -> bool {
        let insns = prog.get_instructions();
        let p = Program {
            // libpcap made the program, so its length fits libpcap's `u_int`.
            bf_len: c_uint::try_from(insns.len()).unwrap_or(c_uint::MAX),
            bf_insns: insns.as_ptr().cast(),
        };
        let h = PacketHeader {
            ts: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            caplen: u32::try_from(data.len()).unwrap_or(u32::MAX),
            len: orig_len,
        };
        // SAFETY: `p` points at the instruction array of the live program `prog`, which
        // libpcap's compiler produced and checked (`pcap_compile` runs `bpf_validate`, so
        // every jump lands inside the array and the program ends in a return); the
        // slice is borrowed for this call, and `pcap::BpfInstruction` wraps libpcap's
        // `struct bpf_insn` transparently. `h` and `data` are valid for the call, and
        // `h.caplen` is `data.len()` (frames are far below 4 GiB; the file readers cap a
        // record at 64 MiB): the interpreter bounds every packet load by `caplen`, so it
        // reads only inside `data`. libpcap keeps no pointer after returning.
        unsafe { pcap_offline_filter(&p, &h, data.as_ptr()) != 0 }
    }
}

/// Checks that `expr` compiles for the link type a live capture on `iface` will have
/// (`config check`): Linux cooked capture for `any`, else Ethernet, a mirror port's (a
/// capture compiles it again for its real link type).
pub fn check_bpf(expr: &str, iface: Option<&str>) -> Result<(), CaptureError> {
    let link = if iface == Some("any") { 113 } else { 1 };
    compile_bpf(expr, link).map(|_| ())
}

fn compile_bpf(expr: &str, link_num: u32) -> Result<pcap::BpfProgram, CaptureError> {
    let bpf_err = |e: pcap::Error| CaptureError::Bpf {
        expr: expr.to_string(),
        detail: e.to_string(),
    };
    let dead = pcap::Capture::dead(pcap::Linktype(link_num as i32)).map_err(bpf_err)?;
    dead.compile(expr, true).map_err(bpf_err)
}

/// libpcap's `DLT_` value of a link type, which `pcap_open_dead` (and so the BPF
/// compiler) takes. It equals the file's `LINKTYPE_` value except for 100-103, which
/// libpcap's own reader maps (`linktype_to_dlt`): raw IP is `LINKTYPE_RAW` 101 in files
/// and `DLT_RAW` 12 here (Linux and most systems; 14 on OpenBSD).
fn link_number(l: LinkType) -> u32 {
    match l {
        LinkType::Null => 0,
        LinkType::Ethernet => 1,
        LinkType::Raw => {
            if cfg!(target_os = "openbsd") {
                14
            } else {
                12
            }
        }
        LinkType::Other(100) => 11, // LINKTYPE_ATM_RFC1483 -> DLT_ATM_RFC1483
        LinkType::Other(102) => 15, // LINKTYPE_SLIP_BSDOS -> DLT_SLIP_BSDOS
        LinkType::Other(103) => 16, // LINKTYPE_PPP_BSDOS -> DLT_PPP_BSDOS
        LinkType::Loop => 108,
        LinkType::LinuxSll => 113,
        LinkType::Ipv4 => 228,
        LinkType::Ipv6 => 229,
        LinkType::LinuxSll2 => 276,
        LinkType::Other(n) => n,
    }
}

/// Describes the first bytes of a file that is not a capture, with a hint.
fn not_a_capture(name: &str, head: &[u8]) -> CaptureError {
    let magic: String = head.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let hint = if head.starts_with(&[0x1f, 0x8b]) {
        ": it is gzip-compressed; decompress it first (gunzip)"
    } else if head.starts_with(b"snoop") {
        ": it is a Solaris snoop file; convert it with `editcap -F pcap`"
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        ": it is zstd-compressed; decompress it first"
    } else {
        ""
    };
    CaptureError::NotACapture {
        path: name.to_string(),
        magic,
        hint: hint.to_string(),
    }
}

/// Reads the whole head of `r` into a probe buffer so that an empty or foreign file is
/// reported with its first bytes.
struct PeekReader<R> {
    head: Vec<u8>,
    pos: usize,
    inner: R,
}

impl<R: Read> Read for PeekReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos < self.head.len() {
            let n = (self.head.len() - self.pos).min(buf.len());
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

impl NativeReader {
    /// Opens `input` with the native reader; `bpf` is an optional filter expression.
    pub fn open(input: &Input, bpf: Option<&str>) -> Result<NativeReader, CaptureError> {
        let name = input.display_name();
        let reader: Box<dyn Read + Send> = match input {
            Input::File(p) => Box::new(File::open(p).map_err(|source| CaptureError::Open {
                path: name.clone(),
                source,
            })?),
            Input::Stdin => Box::new(std::io::stdin()),
        };
        Self::from_reader(name, reader, bpf)
    }

    /// Wraps any byte stream (used for stdin and tests).
    pub fn from_reader(
        name: String,
        mut reader: Box<dyn Read + Send>,
        bpf: Option<&str>,
    ) -> Result<NativeReader, CaptureError> {
        // Read a generous head so that pcap-parser's format probe (one read) sees a
        // whole pcapng section header block, options included.
        let mut head = vec![0u8; 1 << 16];
        let mut got = 0;
        while got < head.len() {
            match reader.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CaptureError::Read {
                        path: name,
                        offset: got as u64,
                        source,
                    })
                }
            }
        }
        head.truncate(got);
        if got == 0 {
            return Err(CaptureError::Empty { path: name });
        }
        let known = matches!(
            head.get(..4),
            Some([0xd4, 0xc3, 0xb2, 0xa1])
                | Some([0xa1, 0xb2, 0xc3, 0xd4])
                | Some([0x4d, 0x3c, 0xb2, 0xa1])
                | Some([0xa1, 0xb2, 0x3c, 0x4d])
                | Some([0xa1, 0xb2, 0xcd, 0x34])
                | Some([0x34, 0xcd, 0xb2, 0xa1])
                | Some([0x0a, 0x0d, 0x0d, 0x0a])
        );
        if !known {
            return Err(not_a_capture(&name, &head));
        }
        let peek = PeekReader {
            head: head.clone(),
            pos: 0,
            inner: reader,
        };
        let rd = pcap_parser::create_reader(NATIVE_BUFFER, peek).map_err(|e| match e {
            PcapError::Eof | PcapError::Incomplete(_) | PcapError::UnexpectedEof => {
                CaptureError::Truncated {
                    path: name.clone(),
                    packet: 0,
                    offset: Some(0),
                }
            }
            _ => not_a_capture(&name, &head),
        })?;
        Ok(NativeReader {
            name,
            rd,
            legacy_link: LinkType::Ethernet,
            legacy_nanos: false,
            legacy_fast: None,
            #[cfg(test)]
            no_fast_path: false,
            ng: Vec::new(),
            ng_endian: None,
            last_ts: Timestamp(0),
            bpf: bpf.map(BpfFilter::new),
            counters: SourceCounters::default(),
            buffer_size: NATIVE_BUFFER,
            done: false,
        })
    }

    fn corrupt(&self, detail: String) -> CaptureError {
        corrupt_at(&self.name, &self.counters, detail)
    }

    /// After pcap-parser failed on the pcapng block at the front of the buffer: if it is
    /// whole in the buffer (its trailing length equal to its leading one) and of a kind
    /// flowsentry does not read (anything but section header, interface description and
    /// packet blocks), consumes it, counts it in `skipped_blocks` and returns true. Such
    /// a block (a name-resolution record with a bad length, say) does not end the file:
    /// libpcap, which ignores these blocks' content, reads on as well.
    fn skip_unused_block(&mut self) -> bool {
        const USED: [u32; 5] = [0x0a0d_0d0a, 1, 2, 3, 6];
        let Some(endian) = self.ng_endian else {
            return false;
        };
        let data = self.rd.data();
        let word = |i: usize| endian.u32_at(data, i);
        let (Some(kind), Some(len)) = (word(0), word(4)) else {
            return false;
        };
        let len = len as usize;
        if USED.contains(&kind) || len < 12 || len % 4 != 0 || len > MAX_RECORD {
            return false;
        }
        if word(len - 4) != Some(len as u32) {
            return false;
        }
        self.rd.consume_noshift(len);
        self.counters.offset += len as u64;
        self.counters.skipped_blocks += 1;
        true
    }

    /// The length of the pcapng block at the front of the buffer when all of it is there
    /// and its two length fields agree (so a parser's "incomplete" is about its inside).
    fn whole_block_len(&self) -> Option<usize> {
        let endian = self.ng_endian?;
        let data = self.rd.data();
        let len = endian.u32_at(data, 4)? as usize;
        (len >= 12 && len % 4 == 0 && endian.u32_at(data, len - 4) == Some(len as u32))
            .then_some(len)
    }

    /// Reads up to `max` frames, calling `f` for each; returns how many were handed out
    /// (0 at the end of the input).
    pub fn dispatch<F: FnMut(&Frame<'_>)>(
        &mut self,
        max: usize,
        mut f: F,
    ) -> Result<usize, CaptureError> {
        let mut n = 0;
        while n < max && !self.done {
            if let Some(endian) = self.legacy_fast {
                n += self.dispatch_legacy(endian, max - n, &mut f)?;
                if n >= max {
                    break;
                }
            }
            let mut failure: Option<CaptureError> = None;
            let mut need_refill = false;
            let mut grow = false;
            let mut incomplete = false;
            let mut at_end = false;
            let mut malformed: Option<String> = None;
            match self.rd.next() {
                Ok((consumed, block)) => {
                    let mut frame: Option<Frame<'_>> = None;
                    match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            // libpcap reads versions 2.0-2.4 only (and 543.0 of DG/UX);
                            // reject the others the same way so both readers agree.
                            let (major, minor) = (h.version_major, h.version_minor);
                            if !((major == 2 && minor <= 4) || (major == 543 && minor == 0)) {
                                failure = Some(header_error(&self.name, format!(
                                    "unsupported pcap version {major}.{minor} (readable: 2.0 to 2.4)"
                                )));
                            }
                            // The upper bits of the link-type field carry FCS information
                            // (LT_FCS_*); libpcap masks them off the same way.
                            self.legacy_link = LinkType::from_number(h.network.0 as u32 & 0xffff);
                            self.legacy_nanos = h.is_nanosecond_precision();
                            #[cfg(test)]
                            let no_fast = self.no_fast_path;
                            #[cfg(not(test))]
                            let no_fast = false;
                            self.legacy_fast =
                                (failure.is_none() && !h.is_modified_format() && !no_fast)
                                    .then_some(if h.is_bigendian() {
                                        Endian::Big
                                    } else {
                                        Endian::Little
                                    });
                        }
                        PcapBlockOwned::Legacy(b) => {
                            frame = Some(legacy_frame(
                                self.legacy_link,
                                self.legacy_nanos,
                                [b.ts_sec, b.ts_usec, b.origlen],
                                b.data,
                            ));
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                            self.ng.clear();
                            self.ng_endian = Some(if shb.big_endian() {
                                Endian::Big
                            } else {
                                Endian::Little
                            });
                            // As libpcap: pcapng 1.0 and 1.2 only.
                            let (major, minor) = (shb.major_version, shb.minor_version);
                            if !(major == 1 && (minor == 0 || minor == 2)) {
                                let detail = format!(
                                    "unsupported pcapng version {major}.{minor} (readable: 1.0, 1.2)"
                                );
                                // The first section header is the file header; a later one
                                // starts a section among the packets.
                                failure = Some(if self.counters.offset == 0 {
                                    header_error(&self.name, detail)
                                } else {
                                    corrupt_at(&self.name, &self.counters, detail)
                                });
                            }
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            match ts_units_per_second(idb.if_tsresol) {
                                Some(res) if res > 0 => self.ng.push(NgInterface {
                                    link: LinkType::from_number(idb.linktype.0 as u32),
                                    resolution: res,
                                    // pcap-parser 0.17 reads the option little-endian in
                                    // every section: swapped back in a big-endian one.
                                    offset_secs: match self.ng_endian {
                                        Some(Endian::Big) => idb.ts_offset().swap_bytes(),
                                        _ => idb.ts_offset(),
                                    },
                                }),
                                _ => {
                                    failure = Some(corrupt_at(&self.name, &self.counters, format!(
                                        "interface {} has an invalid timestamp resolution (if_tsresol = {})",
                                        self.ng.len(),
                                        idb.if_tsresol
                                    )))
                                }
                            }
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            match self.ng.get(epb.if_id as usize) {
                                Some(iface) => {
                                    let ts = iface.timestamp(epb.ts_high, epb.ts_low);
                                    self.last_ts = ts;
                                    frame = Some(Frame {
                                        ts,
                                        link: iface.link,
                                        orig_len: epb.origlen,
                                        data: epb.data.get(..epb.caplen as usize).unwrap_or(epb.data),
                                    });
                                }
                                None => {
                                    failure = Some(corrupt_at(&self.name, &self.counters, format!(
                                        "packet refers to interface {} but only {} interface(s) are described",
                                        epb.if_id,
                                        self.ng.len()
                                    )))
                                }
                            }
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => match self.ng.first() {
                            // Simple packet blocks carry no timestamp: use the last one seen.
                            Some(iface) => {
                                frame = Some(Frame {
                                    ts: self.last_ts,
                                    link: iface.link,
                                    orig_len: spb.origlen,
                                    data: spb.data.get(..spb.origlen as usize).unwrap_or(spb.data),
                                })
                            }
                            None => {
                                failure = Some(corrupt_at(
                                    &self.name,
                                    &self.counters,
                                    "simple packet block before any interface".into(),
                                ))
                            }
                        },
                        // An obsolete packet block (type 2, before pcapng 1.0 final), which
                        // libpcap reads as a packet: interface id (u16), drop count (u16),
                        // timestamp high and low, captured and original length, data.
                        // (pcap-parser reads an unknown block's type little-endian.)
                        PcapBlockOwned::NG(Block::Unknown(u))
                            if u.block_type
                                == match self.ng_endian {
                                    Some(Endian::Big) => 2u32.swap_bytes(),
                                    _ => 2,
                                } =>
                        {
                            let endian = self.ng_endian.unwrap_or(Endian::Little);
                            let word = |i: usize| endian.u32_at(u.data, i);
                            let head = (word(0), word(4), word(8), word(12), word(16));
                            let parsed = match head {
                                (Some(ids), Some(hi), Some(lo), Some(caplen), Some(orig)) => {
                                    let id = match endian {
                                        Endian::Little => ids & 0xffff,
                                        Endian::Big => ids >> 16,
                                    };
                                    u.data
                                        .get(20..20 + caplen as usize)
                                        .map(|data| (id, hi, lo, orig, data))
                                }
                                _ => None,
                            };
                            match parsed {
                                Some((id, hi, lo, orig_len, data)) => {
                                    match self.ng.get(id as usize) {
                                        Some(iface) => {
                                            let ts = iface.timestamp(hi, lo);
                                            self.last_ts = ts;
                                            frame = Some(Frame {
                                                ts,
                                                link: iface.link,
                                                orig_len,
                                                data,
                                            });
                                        }
                                        None => {
                                            failure = Some(corrupt_at(&self.name, &self.counters, format!(
                                                "packet refers to interface {id} but only {} interface(s) are described",
                                                self.ng.len()
                                            )))
                                        }
                                    }
                                }
                                None => {
                                    failure = Some(corrupt_at(
                                        &self.name,
                                        &self.counters,
                                        "obsolete packet block shorter than its captured length"
                                            .into(),
                                    ))
                                }
                            }
                        }
                        PcapBlockOwned::NG(_) => {}
                    }
                    if let Some(fr) = frame {
                        let keep = match self.bpf.as_mut().map_or(Ok(true), |b| b.keeps(&fr)) {
                            Ok(k) => k,
                            Err(e) => {
                                let (at, b) = (Some(self.counters.offset), self.bpf.as_ref());
                                let e = bpf_at(&self.name, &self.counters, at, fr.link, b, e);
                                failure = Some(e);
                                false
                            }
                        };
                        if keep {
                            f(&fr);
                            self.counters.frames += 1;
                            n += 1;
                        } else if failure.is_none() {
                            self.counters.filtered += 1;
                        }
                    }
                    if failure.is_none() {
                        // No shift here: `consume` moves the unread half of the 1 MiB
                        // buffer to its front every time half of it has been read (a
                        // memmove of about one byte per byte of the file). `refill`
                        // shifts anyway, when only a partial record is left to move.
                        self.rd.consume_noshift(consumed);
                        self.counters.offset += consumed as u64;
                    }
                }
                Err(PcapError::Eof) => at_end = true,
                Err(PcapError::Incomplete(_)) => incomplete = true,
                Err(PcapError::UnexpectedEof) => {
                    failure = Some(CaptureError::Truncated {
                        path: self.name.clone(),
                        packet: self.counters.frames + self.counters.filtered + 1,
                        offset: Some(self.counters.offset),
                    })
                }
                Err(PcapError::BufferTooSmall) => grow = true,
                Err(PcapError::ReadError) => {
                    failure = Some(CaptureError::Read {
                        path: self.name.clone(),
                        offset: self.counters.offset,
                        source: std::io::Error::other("read failed"),
                    })
                }
                Err(e) => {
                    let detail = match e {
                        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
                            format!("malformed record header ({kind:?})")
                        }
                        PcapError::HeaderNotRecognized => "unrecognised block".to_string(),
                        other => format!("{other:?}"),
                    };
                    malformed = Some(detail);
                }
            }
            if at_end {
                self.done = true;
                // A filter is compiled at its first frame: with none (an input without
                // packets), it is compiled now for the input's link type, so that a bad
                // expression is an error however short the input.
                if let Some(b) = self.bpf.as_mut() {
                    let link = self.ng.first().map_or(self.legacy_link, |i| i.link);
                    if let Err(e) = b.program_for(link, link_number(link)) {
                        // No frame was read, so no program compiled: a bad expression.
                        failure = Some(e);
                    }
                }
            }
            // A block whole in the buffer yet "incomplete" claims more inside than its
            // length: like one that fails to parse, it is skipped when we do not use it.
            if incomplete && !self.skip_unused_block() {
                match self.whole_block_len() {
                    // The whole block is in the buffer: its inside, not the file, is short.
                    Some(len) => {
                        failure = Some(self.corrupt(format!(
                            "a block of {len} bytes claims more data than it holds \
                             (corrupt captured-length or option field)"
                        )))
                    }
                    None => need_refill = true,
                }
            }
            if let Some(detail) = malformed {
                if !self.skip_unused_block() {
                    failure = Some(self.corrupt(detail));
                }
            }
            if grow {
                let next = self.buffer_size * 2;
                if next > MAX_RECORD || !self.rd.grow(next) {
                    failure = Some(self.corrupt(format!(
                        "record longer than {} bytes (corrupt length field?)",
                        MAX_RECORD
                    )));
                } else {
                    self.buffer_size = next;
                }
            }
            if need_refill {
                if let Err(e) = self.rd.refill() {
                    let msg = format!("{e:?}");
                    failure = Some(CaptureError::Read {
                        path: self.name.clone(),
                        offset: self.counters.offset,
                        source: std::io::Error::other(msg),
                    });
                }
            }
            if let Some(e) = failure {
                self.done = true;
                return Err(e);
            }
        }
        Ok(n)
    }

    /// The fast path of [`NativeReader::dispatch`] for a standard legacy pcap whose
    /// record headers are in byte order `endian`: hands out
    /// up to `max` of the records that lie whole in the read buffer, parsed in place
    /// (the 16-byte record header read directly; pcap-parser's `next` reads the same
    /// fields from the same bytes, through the boxed reader and a `PcapBlockOwned` per
    /// record). Stops at the first record not whole in the buffer, leaving refills, the
    /// end of the input and every error to the general path. Returns the frames handed
    /// out.
    fn dispatch_legacy<F: FnMut(&Frame<'_>)>(
        &mut self,
        endian: Endian,
        max: usize,
        f: &mut F,
    ) -> Result<usize, CaptureError> {
        let (link, nanos) = (self.legacy_link, self.legacy_nanos);
        let data = self.rd.data();
        let mut pos = 0usize;
        let mut n = 0usize;
        let mut failure = None;
        while n < max {
            let Some(hdr) = data
                .get(pos..pos + 16)
                .and_then(|h| <[u8; 16]>::try_from(h).ok())
            else {
                break;
            };
            let field = |i: usize| endian.u32([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
            let caplen = field(8) as usize;
            let Some(body) = data.get(pos + 16..(pos + 16).saturating_add(caplen)) else {
                break;
            };
            let fr = legacy_frame(link, nanos, [field(0), field(4), field(12)], body);
            let keep = match self.bpf.as_mut().map_or(Ok(true), |b| b.keeps(&fr)) {
                Ok(k) => k,
                Err(e) => {
                    let (at, b) = (Some(self.counters.offset), self.bpf.as_ref());
                    failure = Some(bpf_at(&self.name, &self.counters, at, link, b, e));
                    break;
                }
            };
            n += self.counters.deliver(keep, &fr, f);
            pos += 16 + caplen;
            self.counters.offset += (16 + caplen) as u64;
        }
        self.rd.consume_noshift(pos);
        if let Some(e) = failure {
            self.done = true;
            return Err(e);
        }
        Ok(n)
    }

    /// Counters so far.
    pub fn counters(&self) -> SourceCounters {
        self.counters
    }
}

/// Byte order of a legacy pcap file's or a pcapng section's fields.
#[derive(Debug, Clone, Copy)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    /// `b` as a 32-bit value in this byte order.
    #[inline(always)]
    fn u32(self, b: [u8; 4]) -> u32 {
        match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        }
    }

    /// The 32-bit value at byte `i` of `data`, if `data` holds it.
    fn u32_at(self, data: &[u8], i: usize) -> Option<u32> {
        let b: [u8; 4] = data.get(i..i.checked_add(4)?)?.try_into().ok()?;
        Some(self.u32(b))
    }
}

/// The frame of a legacy pcap record, from its `[ts_sec, ts_frac, orig_len]` as read.
#[inline(always)]
fn legacy_frame(
    link: LinkType,
    nanos: bool,
    [secs, frac, orig_len]: [u32; 3],
    data: &[u8],
) -> Frame<'_> {
    // libpcap reads the sub-second field as a signed 32-bit value; do the same so an
    // out-of-range field (>= 2^31) gives the same timestamp with both readers.
    let sub = i64::from(frac as i32);
    let frac_ns = if nanos { sub } else { sub * 1_000 };
    Frame {
        ts: Timestamp::from_secs_nanos(i64::from(secs), frac_ns),
        link,
        orig_len,
        data,
    }
}

/// libpcap's file reader. An optional BPF filter is applied to the frames it hands out
/// (not installed in libpcap, which would skip rejected records without telling us: they
/// are counted, and packet numbers and offsets count them).
pub struct LibpcapReader {
    name: String,
    cap: pcap::Capture<pcap::Offline>,
    link: LinkType,
    counters: SourceCounters,
    pcapng: bool,
    /// Bytes of a record header in this (legacy pcap) file: 16, or 24 in the "modified"
    /// format.
    record_header: u64,
    bpf: Option<BpfFilter>,
    done: bool,
}

impl LibpcapReader {
    /// Opens a file with libpcap at nanosecond precision.
    pub fn open(input: &Input, bpf: Option<&str>) -> Result<LibpcapReader, CaptureError> {
        let Input::File(path) = input else {
            return Err(CaptureError::Unsupported {
                path: input.display_name(),
                detail: "the libpcap reader cannot read standard input; use --reader native".into(),
            });
        };
        let name = path.display().to_string();
        let head = read_head(path).map_err(|source| CaptureError::Open {
            path: name.clone(),
            source,
        })?;
        if head.is_empty() {
            return Err(CaptureError::Empty { path: name });
        }
        let cap =
            pcap::Capture::from_file_with_precision(path, pcap::Precision::Nano).map_err(|e| {
                match e {
                    pcap::Error::PcapError(m) if m.contains("unknown file format") => {
                        not_a_capture(&name, &head)
                    }
                    other => header_error(&name, other.to_string()),
                }
            })?;
        let link_num = cap.get_datalink().0 as u32;
        let link = LinkType::from_number(link_num);
        let bpf = match bpf {
            Some(expr) => {
                // Compiled now, so a bad expression is an error before any frame.
                let mut f = BpfFilter::new(expr);
                f.program_for(link, link_num)?;
                Some(f)
            }
            None => None,
        };
        let modified = head.starts_with(&[0x34, 0xcd, 0xb2, 0xa1])
            || head.starts_with(&[0xa1, 0xb2, 0xcd, 0x34]);
        Ok(LibpcapReader {
            name,
            cap,
            link,
            counters: SourceCounters {
                offset: 24,
                ..SourceCounters::default()
            },
            pcapng: head.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]),
            record_header: if modified { 24 } else { 16 },
            bpf,
            done: false,
        })
    }

    /// The seconds of a record's timestamp. A legacy pcap record stores them in 32 bits,
    /// unsigned by the format's definition (and for the native reader and Wireshark);
    /// libpcap reads them as signed and sign-extends, which dates a record after
    /// 2038-01-19 to before 1970: the 32 bits are taken back as unsigned. pcapng
    /// timestamps are 64-bit and kept as libpcap gives them.
    fn seconds(pcapng: bool, tv_sec: libc::time_t) -> i64 {
        if pcapng {
            tv_sec
        } else {
            i64::from(tv_sec as i32 as u32)
        }
    }

    /// Reads up to `max` frames, calling `f` for each; 0 at the end.
    pub fn dispatch<F: FnMut(&Frame<'_>)>(
        &mut self,
        max: usize,
        mut f: F,
    ) -> Result<usize, CaptureError> {
        let mut n = 0;
        let pcapng = self.pcapng;
        while n < max && !self.done {
            match self.cap.next_packet() {
                Ok(p) => {
                    let h = p.header;
                    let fr = Frame {
                        ts: Timestamp::from_secs_nanos(
                            Self::seconds(pcapng, h.ts.tv_sec),
                            h.ts.tv_usec,
                        ),
                        link: self.link,
                        orig_len: h.len,
                        data: p.data,
                    };
                    let keep = match self.bpf.as_mut().map_or(Ok(true), |b| b.keeps(&fr)) {
                        Ok(k) => k,
                        Err(e) => {
                            self.done = true;
                            let at = (!self.pcapng).then_some(self.counters.offset);
                            let b = self.bpf.as_ref();
                            return Err(bpf_at(&self.name, &self.counters, at, self.link, b, e));
                        }
                    };
                    n += self.counters.deliver(keep, &fr, &mut f);
                    self.counters.offset += self.record_header + u64::from(h.caplen);
                }
                Err(pcap::Error::NoMorePackets) => self.done = true,
                Err(e) => {
                    self.done = true;
                    let msg = e.to_string();
                    let packet = self.counters.frames + self.counters.filtered + 1;
                    // libpcap does not report where a pcapng block starts.
                    let offset = (!self.pcapng).then_some(self.counters.offset);
                    return Err(if msg.contains("truncated") {
                        CaptureError::Truncated {
                            path: self.name.clone(),
                            packet,
                            offset,
                        }
                    } else {
                        CaptureError::Corrupt {
                            path: self.name.clone(),
                            packet,
                            offset,
                            detail: msg,
                        }
                    });
                }
            }
        }
        Ok(n)
    }

    /// Counters so far.
    pub fn counters(&self) -> SourceCounters {
        self.counters
    }
}

/// True for a classic pcap header of version 2.0-2.3: those versions may store the
/// captured and original lengths in the opposite order (libpcap swaps them, always before
/// 2.3 and when caplen > len in 2.3). pcap-parser does not, so such files go to libpcap.
fn swapped_length_fields(head: &[u8]) -> bool {
    let version = match head.get(..8) {
        Some([0xd4, 0xc3, 0xb2, 0xa1, a, b, c, d]) | Some([0x4d, 0x3c, 0xb2, 0xa1, a, b, c, d]) => {
            (u16::from_le_bytes([*a, *b]), u16::from_le_bytes([*c, *d]))
        }
        Some([0xa1, 0xb2, 0xc3, 0xd4, a, b, c, d]) | Some([0xa1, 0xb2, 0x3c, 0x4d, a, b, c, d]) => {
            (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))
        }
        _ => return false,
    };
    version.0 == 2 && version.1 <= 3
}

fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut head = vec![0u8; 64];
    let mut got = 0;
    while got < head.len() {
        let n = f.read(&mut head[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    head.truncate(got);
    Ok(head)
}

/// Settings of a live capture handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveOptions {
    /// Interface name.
    pub iface: String,
    /// BPF filter.
    pub bpf: Option<String>,
    /// Bytes captured per frame (headers only need ~256; DNS/Modbus hints want more).
    pub snaplen: i32,
    /// Kernel ring buffer size in MiB.
    pub buffer_mb: i32,
    /// Promiscuous mode (a SPAN port usually needs it).
    pub promisc: bool,
    /// Read timeout in milliseconds: how often a quiet link returns control (to advance
    /// the flow clock and check for signals), and libpcap's TPACKET_V3 block timeout, so
    /// the longest a captured frame waits in a part-filled ring block before the sensor
    /// sees it. Immediate mode is not used: it makes libpcap fall back from TPACKET_V3 to
    /// V2. Default 10 (docs/operations.md: latency against wake-ups).
    pub timeout_ms: i32,
    /// Join this PACKET_FANOUT hash group (several capture handles on one interface).
    pub fanout_group: Option<u16>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            iface: String::new(),
            bpf: None,
            snaplen: 1518,
            buffer_mb: 64,
            promisc: false,
            timeout_ms: 10,
            fanout_group: None,
        }
    }
}

/// libpcap's kernel counters of a live handle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PcapStats {
    /// Packets the kernel handed to the socket (on `lo` outgoing copies count twice).
    pub received: u64,
    /// Packets dropped because the ring buffer was full.
    pub dropped: u64,
    /// Packets dropped by the interface/driver.
    pub if_dropped: u64,
}

/// Watches a live interface's link state (`/sys/class/net/<iface>/operstate` on Linux), so
/// that a mirror port that goes down is reported instead of looking like a quiet link.
pub struct LinkWatch {
    iface: String,
    last_check: Option<std::time::Instant>,
    /// When the link was first seen down (None: up, or not known).
    down_since: Option<std::time::Instant>,
}

impl LinkWatch {
    /// How often the state is read.
    const EVERY: std::time::Duration = std::time::Duration::from_secs(1);

    /// A watch on `iface` (`any` and interfaces without a state file are never reported).
    pub fn new(iface: &str) -> LinkWatch {
        LinkWatch {
            iface: iface.to_string(),
            last_check: None,
            down_since: None,
        }
    }

    /// Whether the link is down now, from `operstate` ("down" or "lowerlayerdown"); None
    /// when there is no state to read.
    fn is_down(&self) -> Option<bool> {
        if self.iface == "any" || self.iface.contains('/') {
            return None;
        }
        let state =
            std::fs::read_to_string(format!("/sys/class/net/{}/operstate", self.iface)).ok()?;
        Some(matches!(state.trim(), "down" | "lowerlayerdown"))
    }

    /// Reads the state at most once a second; returns a message when the link went down
    /// or came back up since the last read.
    pub fn poll(&mut self) -> Option<String> {
        let now = std::time::Instant::now();
        if self
            .last_check
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            return None;
        }
        self.last_check = Some(now);
        match (self.is_down()?, self.down_since) {
            (true, None) => {
                self.down_since = Some(now);
                Some(format!(
                    "interface {}: link is down; no traffic is seen until it is up again",
                    self.iface
                ))
            }
            (false, Some(since)) => {
                self.down_since = None;
                Some(format!(
                    "interface {}: link is up again after {:.0} s down; traffic in that \
                     time was not seen",
                    self.iface,
                    now.duration_since(since).as_secs_f64()
                ))
            }
            _ => None,
        }
    }
}

/// A live capture handle read with `pcap_dispatch` (zero-copy from the TPACKET_V3 ring).
pub struct LiveSource {
    cap: pcap::Capture<pcap::Active>,
    link: LinkType,
    iface: String,
    counters: SourceCounters,
    timeout_ms: i32,
}

impl LiveSource {
    /// Opens and activates the interface.
    pub fn open(o: &LiveOptions) -> Result<LiveSource, CaptureError> {
        let err = |detail: String| CaptureError::Live {
            iface: o.iface.clone(),
            detail,
        };
        let inactive = pcap::Capture::from_device(o.iface.as_str())
            .map_err(|e| err(e.to_string()))?
            .snaplen(o.snaplen)
            .buffer_size(o.buffer_mb.saturating_mul(1 << 20))
            .promisc(o.promisc)
            .timeout(o.timeout_ms)
            .immediate_mode(false)
            .precision(pcap::Precision::Nano);
        let mut cap = inactive.open().map_err(|e| {
            err(format!(
                "{e} (capturing needs root or CAP_NET_RAW; check the interface name with `ip link`)"
            ))
        })?;
        if let Some(expr) = &o.bpf {
            cap.filter(expr, true).map_err(|e| CaptureError::Bpf {
                expr: expr.clone(),
                detail: e.to_string(),
            })?;
        }
        if let Some(group) = o.fanout_group {
            join_fanout(&cap, group).map_err(|e| err(format!("PACKET_FANOUT: {e}")))?;
        }
        let link = LinkType::from_number(cap.get_datalink().0 as u32);
        // Non-blocking reads plus our own poll() with the timeout: libpcap's read timeout
        // does not return on a link that stays quiet, and the sensor must wake up to
        // advance the flow clock and notice signals.
        let cap = cap.setnonblock().map_err(|e| err(e.to_string()))?;
        Ok(LiveSource {
            cap,
            link,
            iface: o.iface.clone(),
            counters: SourceCounters::default(),
            timeout_ms: o.timeout_ms,
        })
    }

    /// Reads what the kernel has; on a quiet link waits at most the read timeout and
    /// returns 0.
    pub fn dispatch<F: FnMut(&Frame<'_>)>(
        &mut self,
        max: usize,
        mut f: F,
    ) -> Result<usize, CaptureError> {
        let first = self.dispatch_now(max, &mut f)?;
        if first > 0 {
            return Ok(first);
        }
        wait_readable(&self.cap, self.timeout_ms);
        self.dispatch_now(max, &mut f)
    }

    fn dispatch_now<F: FnMut(&Frame<'_>)>(
        &mut self,
        max: usize,
        f: &mut F,
    ) -> Result<usize, CaptureError> {
        let link = self.link;
        let mut n = 0u64;
        let r = self.cap.dispatch(Some(max), |p| {
            let h = p.header;
            f(&Frame {
                ts: Timestamp::from_secs_nanos(h.ts.tv_sec, h.ts.tv_usec),
                link,
                orig_len: h.len,
                data: p.data,
            });
            n += 1;
        });
        self.counters.frames += n;
        match r {
            Ok(k) => Ok(k),
            Err(pcap::Error::TimeoutExpired) => Ok(0),
            Err(e) => Err(CaptureError::Live {
                iface: self.iface.clone(),
                detail: e.to_string(),
            }),
        }
    }

    /// libpcap's kernel counters.
    pub fn pcap_stats(&mut self) -> Option<PcapStats> {
        self.cap.stats().ok().map(|s| PcapStats {
            received: u64::from(s.received),
            dropped: u64::from(s.dropped),
            if_dropped: u64::from(s.if_dropped),
        })
    }

    /// A handle that makes a blocked `dispatch` return (e.g. on shutdown).
    pub fn breakloop_handle(&mut self) -> pcap::BreakLoop {
        self.cap.breakloop_handle()
    }

    /// Counters so far.
    pub fn counters(&self) -> SourceCounters {
        self.counters
    }
}

/// Waits until the capture socket is readable or `timeout_ms` passes.
#[allow(unsafe_code)]
fn wait_readable(cap: &pcap::Capture<pcap::Active>, timeout_ms: i32) {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: cap.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid, initialised pollfd for the socket owned by `cap`, and the
    // count passed is exactly one; poll() only writes `revents`.
    let _ = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
}

/// Joins the socket behind `cap` to PACKET_FANOUT group `group` in hash mode, so the
/// kernel spreads flows (both directions of one flow to the same socket) over handles.
#[allow(unsafe_code)]
fn join_fanout(cap: &pcap::Capture<pcap::Active>, group: u16) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const PACKET_FANOUT: libc::c_int = 18;
    const PACKET_FANOUT_HASH: u32 = 0;
    let fd = cap.as_raw_fd();
    let arg: u32 = u32::from(group) | (PACKET_FANOUT_HASH << 16);
    // SAFETY: `fd` is the open packet socket owned by `cap` for the duration of this call;
    // the option value is a valid, initialised u32 whose size is passed exactly.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_FANOUT,
            (&arg as *const u32).cast::<libc::c_void>(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// An opened capture of either file backend, or a live interface.
pub enum Source {
    /// The pure-Rust reader.
    Native(NativeReader),
    /// libpcap's reader.
    Libpcap(LibpcapReader),
    /// A live interface.
    Live(LiveSource),
}

impl Source {
    /// Opens `input`: libpcap when asked for (and for the pcap versions whose length
    /// fields libpcap swaps), the native reader otherwise. Either applies a BPF filter
    /// compiled by libpcap to each record, with libpcap's semantics.
    pub fn open(
        input: &Input,
        backend: Backend,
        bpf: Option<&str>,
    ) -> Result<Source, CaptureError> {
        if let Input::File(p) = input {
            if p.is_dir() {
                return Err(CaptureError::Unsupported {
                    path: input.display_name(),
                    detail: "is a directory, not a pcap or pcapng file".into(),
                });
            }
        }
        let use_libpcap = match input {
            Input::Stdin => false,
            Input::File(p) => {
                backend == Backend::Libpcap || read_head(p).is_ok_and(|h| swapped_length_fields(&h))
            }
        };
        if use_libpcap {
            LibpcapReader::open(input, bpf).map(Source::Libpcap)
        } else {
            NativeReader::open(input, bpf).map(Source::Native)
        }
    }

    /// Reads up to `max` frames into `f`; returns the count (0 at the end).
    pub fn dispatch<F: FnMut(&Frame<'_>)>(
        &mut self,
        max: usize,
        f: F,
    ) -> Result<usize, CaptureError> {
        match self {
            Source::Native(r) => r.dispatch(max, f),
            Source::Libpcap(r) => r.dispatch(max, f),
            Source::Live(r) => r.dispatch(max, f),
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> SourceCounters {
        match self {
            Source::Native(r) => r.counters(),
            Source::Libpcap(r) => r.counters(),
            Source::Live(r) => r.counters(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic little-endian microsecond pcap with `frames` (ts_sec, ts_usec, data).
    pub(crate) fn pcap_bytes(link: u32, nanos: bool, frames: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        v.extend_from_slice(&magic.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        v.extend_from_slice(&0i32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&link.to_le_bytes());
        for (s, u, d) in frames {
            v.extend_from_slice(&s.to_le_bytes());
            v.extend_from_slice(&u.to_le_bytes());
            v.extend_from_slice(&(d.len() as u32).to_le_bytes());
            v.extend_from_slice(&(d.len() as u32 + 4).to_le_bytes());
            v.extend_from_slice(d);
        }
        v
    }

    type Collected = (Vec<(Timestamp, u32, usize)>, Result<(), String>);

    /// A legacy pcap in either byte order whose records are `(ts_sec, ts_frac, orig_len,
    /// data)`.
    fn pcap_bytes_in(be: bool, nanos: bool, frames: &[(u32, u32, u32, Vec<u8>)]) -> Vec<u8> {
        let w32 = |v: &mut Vec<u8>, x: u32| {
            v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() })
        };
        let mut v = Vec::new();
        w32(&mut v, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
        for x in [2u16, 4] {
            v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() });
        }
        for x in [0, 0, 65535, 1] {
            w32(&mut v, x);
        }
        for (s, u, orig, d) in frames {
            for x in [*s, *u, d.len() as u32, *orig] {
                w32(&mut v, x);
            }
            v.extend_from_slice(d);
        }
        v
    }

    /// Every frame (timestamp, link, original length, bytes) and the outcome, read in
    /// batches of `batch` with or without the in-place legacy path.
    #[allow(clippy::type_complexity)]
    fn collect_frames(
        bytes: Vec<u8>,
        batch: usize,
        fast: bool,
    ) -> (
        Vec<(Timestamp, LinkType, u32, Vec<u8>)>,
        Result<(), String>,
        u64,
    ) {
        let mut out = Vec::new();
        let r =
            NativeReader::from_reader("t.pcap".into(), Box::new(std::io::Cursor::new(bytes)), None);
        let mut rd = match r {
            Ok(r) => r,
            Err(e) => return (out, Err(e.to_string()), 0),
        };
        rd.no_fast_path = !fast;
        loop {
            match rd.dispatch(batch, |f| {
                out.push((f.ts, f.link, f.orig_len, f.data.to_vec()))
            }) {
                Ok(0) => return (out, Ok(()), rd.counters().offset),
                Ok(_) => {}
                Err(e) => return (out, Err(e.to_string()), rd.counters().offset),
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// The in-place legacy path hands out the same frames, offsets and errors as
        /// pcap-parser's records, across buffer refills (files up to ~2.5 MiB against the
        /// 1 MiB buffer), in both byte orders, with any batch size and truncation.
        #[test]
        fn legacy_fast_path_equals_pcap_parser(
            be: bool,
            nanos: bool,
            sizes in proptest::collection::vec(0usize..5000, 0..600),
            seed: u64,
            batch in 1usize..400,
            cut in proptest::option::of(0.0f64..1.0),
        ) {
            let frames: Vec<(u32, u32, u32, Vec<u8>)> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let x = seed.wrapping_mul(i as u64 + 1);
                    let data = (0..n).map(|j| (x >> (j % 57)) as u8).collect();
                    (x as u32, (x >> 32) as u32, (n as u32).wrapping_add(x as u32 % 3), data)
                })
                .collect();
            let mut bytes = pcap_bytes_in(be, nanos, &frames);
            if let Some(c) = cut {
                bytes.truncate(24 + ((bytes.len() - 24) as f64 * c) as usize);
            }
            let fast = collect_frames(bytes.clone(), batch, true);
            let slow = collect_frames(bytes, batch, false);
            proptest::prop_assert_eq!(fast.0.len(), slow.0.len());
            proptest::prop_assert!(fast.0 == slow.0, "frames differ");
            proptest::prop_assert_eq!(&fast.1, &slow.1);
            proptest::prop_assert_eq!(fast.2, slow.2);
            if cut.is_none() {
                proptest::prop_assert_eq!(fast.0.len(), frames.len());
            }
        }
    }

    fn collect(bytes: Vec<u8>) -> Collected {
        let mut out = Vec::new();
        let r =
            NativeReader::from_reader("t.pcap".into(), Box::new(std::io::Cursor::new(bytes)), None);
        let mut rd = match r {
            Ok(r) => r,
            Err(e) => return (out, Err(e.to_string())),
        };
        loop {
            match rd.dispatch(2, |f| out.push((f.ts, f.orig_len, f.data.len()))) {
                Ok(0) => return (out, Ok(())),
                Ok(_) => {}
                Err(e) => return (out, Err(e.to_string())),
            }
        }
    }

    #[test]
    fn reads_micro_and_nano_pcap() {
        let d: &[u8] = &[1, 2, 3];
        let (v, r) = collect(pcap_bytes(1, false, &[(10, 5, d), (11, 6, d), (12, 7, d)]));
        assert!(r.is_ok());
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], (Timestamp(10_000_005_000), 7, 3));
        let (v, _) = collect(pcap_bytes(1, true, &[(10, 5, d)]));
        assert_eq!(v[0].0, Timestamp(10_000_000_005));
    }

    #[test]
    fn truncated_file_keeps_earlier_frames_and_names_packet() {
        let d: &[u8] = &[9; 40];
        let mut b = pcap_bytes(1, false, &[(1, 0, d), (2, 0, d)]);
        b.truncate(b.len() - 10);
        let (v, r) = collect(b);
        assert_eq!(v.len(), 1);
        let msg = r.err().unwrap_or_default();
        assert!(
            msg.contains("truncated") && msg.contains("packet 2") && msg.contains("offset 80"),
            "{msg}"
        );
    }

    #[test]
    fn foreign_and_empty_files_are_named() {
        let (_, r) = collect(vec![0x1f, 0x8b, 8, 0, 0, 0]);
        let msg = r.err().unwrap_or_default();
        assert!(msg.contains("gzip"), "{msg}");
        let (_, r) = collect(Vec::new());
        assert!(r.err().unwrap_or_default().contains("empty"));
    }

    #[test]
    fn unsupported_pcap_and_pcapng_versions_are_rejected_like_libpcap() {
        let d: &[u8] = &[1, 2, 3];
        for (major, minor, ok) in [
            (2u16, 4u16, true),
            (2, 5, false),
            (1, 4, false),
            (3, 0, false),
        ] {
            let mut b = pcap_bytes(1, false, &[(10, 5, d)]);
            b[4..6].copy_from_slice(&major.to_le_bytes());
            b[6..8].copy_from_slice(&minor.to_le_bytes());
            let (v, r) = collect(b);
            assert_eq!(r.is_ok(), ok, "pcap {major}.{minor}: {r:?}");
            if !ok {
                assert!(v.is_empty());
                let msg = r.err().unwrap_or_default();
                assert!(
                    msg.contains(&format!("unsupported pcap version {major}.{minor}")),
                    "{msg}"
                );
            }
        }
        // pcapng section header block, little-endian, version 0.1, no options.
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x0a0d_0d0au32.to_le_bytes());
        shb.extend_from_slice(&28u32.to_le_bytes());
        shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        shb.extend_from_slice(&28u32.to_le_bytes());
        let (_, r) = collect(shb);
        let msg = r.err().unwrap_or_default();
        assert!(msg.contains("unsupported pcapng version 0.1"), "{msg}");
    }

    #[test]
    fn subsecond_field_is_signed_like_libpcap() {
        let d: &[u8] = &[1, 2, 3];
        // timestamp_invalid_nano.pcap: ts_nsec 0x80000000 on a nanosecond file.
        let (v, _) = collect(pcap_bytes(1, true, &[(10, 0x8000_0000, d)]));
        assert_eq!(v[0].0, Timestamp(10_000_000_000 - 2_147_483_648));
        let (v, _) = collect(pcap_bytes(1, true, &[(10, 999_999_999, d)]));
        assert_eq!(v[0].0, Timestamp(10_999_999_999));
    }

    #[test]
    fn old_pcap_versions_with_swapped_lengths_go_to_libpcap() {
        let mut b = pcap_bytes(1, true, &[]);
        assert!(!swapped_length_fields(&b)); // 2.4
        b[6..8].copy_from_slice(&3u16.to_le_bytes());
        assert!(swapped_length_fields(&b)); // 2.3
        b[6..8].copy_from_slice(&0u16.to_le_bytes());
        assert!(swapped_length_fields(&b)); // 2.0
        assert!(!swapped_length_fields(&[
            0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0
        ]));
    }

    /// `bytes` written to a temporary file (kept while the handle lives).
    fn temp_capture(bytes: &[u8]) -> tempfile::NamedTempFile {
        let file = match tempfile::NamedTempFile::new() {
            Ok(f) => f,
            Err(e) => panic!("temp file: {e}"),
        };
        if let Err(e) = std::fs::write(file.path(), bytes) {
            panic!("write temp file: {e}");
        }
        file
    }

    /// What reading a file to its end gave: frames (time, wire length, bytes), the
    /// reader's counters, and `Err(message)` if opening or reading failed.
    struct ReadAll {
        frames: Vec<(Timestamp, u32, Vec<u8>)>,
        counters: SourceCounters,
        outcome: Result<(), String>,
    }

    /// Reads the file at `path` to its end with `backend` and filter `bpf`.
    fn read_all(path: &Path, backend: Backend, bpf: Option<&str>) -> ReadAll {
        let mut frames = Vec::new();
        let mut rd = match Source::open(&Input::File(path.to_path_buf()), backend, bpf) {
            Ok(r) => r,
            Err(e) => {
                return ReadAll {
                    frames,
                    counters: SourceCounters::default(),
                    outcome: Err(e.to_string()),
                }
            }
        };
        let outcome = loop {
            match rd.dispatch(7, |f| frames.push((f.ts, f.orig_len, f.data.to_vec()))) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e.to_string()),
            }
        };
        ReadAll {
            frames,
            counters: rd.counters(),
            outcome,
        }
    }

    /// Frames handed out, frames filtered and the outcome (the file's name replaced by
    /// FILE) of reading `bytes` to its end with each file reader.
    fn read_file(bytes: &[u8], bpf: Option<&str>, libpcap: bool) -> (u64, u64, String) {
        let file = temp_capture(bytes);
        let backend = if libpcap {
            Backend::Libpcap
        } else {
            Backend::Native
        };
        let r = read_all(file.path(), backend, bpf);
        let name = file.path().display().to_string();
        let outcome = match r.outcome {
            Ok(()) => "end".to_string(),
            Err(e) => e.replace(&name, "FILE"),
        };
        (r.frames.len() as u64, r.counters.filtered, outcome)
    }

    #[test]
    fn a_filter_counts_and_numbers_every_record_with_both_readers() {
        // Six 60-byte frames, the odd ones starting with byte 2; the last one cut short.
        let frames: Vec<Vec<u8>> = (0..6u8).map(|i| vec![1 + i % 2; 60]).collect();
        let refs: Vec<(u32, u32, &[u8])> = frames.iter().map(|d| (1, 0, d.as_slice())).collect();
        let mut b = pcap_bytes(1, false, &refs);
        b.truncate(b.len() - 10);
        for libpcap in [false, true] {
            let (all, none, plain) = read_file(&b, None, libpcap);
            let (kept, filtered, with) = read_file(&b, Some("ether[0] = 2"), libpcap);
            assert_eq!(
                (all, none, kept, filtered),
                (5, 0, 2, 3),
                "libpcap {libpcap}"
            );
            // Packet 6, at 24 + 5 * (16 + 60), with the filter as without (libpcap's own
            // filter skips records unseen: packet 3 at 176).
            assert!(
                plain.contains("truncated: packet 6 at byte offset 404 is incomplete"),
                "libpcap {libpcap}: {plain}"
            );
            assert_eq!(with, plain, "libpcap {libpcap}");
        }
    }

    #[test]
    fn a_bad_filter_is_an_error_on_an_input_without_packets() {
        let header_only = pcap_bytes(1, false, &[]);
        for libpcap in [false, true] {
            let (_, _, bad) = read_file(&header_only, Some("tcp["), libpcap);
            assert!(
                bad.contains("invalid BPF filter 'tcp['"),
                "libpcap {libpcap}: {bad}"
            );
            let (_, _, good) = read_file(&header_only, Some("tcp"), libpcap);
            assert_eq!(good, "end", "libpcap {libpcap}");
        }
    }

    #[test]
    fn a_filter_tests_the_wire_length_of_a_cut_frame_like_libpcap() {
        // 60 captured bytes each; on the wire 200 (cut by the snapshot length) or 60.
        let d = [1u8; 60];
        let mut b = pcap_bytes(1, false, &[]);
        for (i, orig) in [200u32, 60, 200, 60, 60].into_iter().enumerate() {
            for x in [1, i as u32, 60, orig] {
                b.extend_from_slice(&x.to_le_bytes());
            }
            b.extend_from_slice(&d);
        }
        let file = temp_capture(&b);
        let libpcap_own = |expr: &str| {
            let mut cap = match pcap::Capture::from_file(file.path()) {
                Ok(c) => c,
                Err(e) => panic!("libpcap: {e}"),
            };
            if let Err(e) = cap.filter(expr, true) {
                panic!("filter: {e}");
            }
            let mut n = 0u64;
            while cap.next_packet().is_ok() {
                n += 1;
            }
            n
        };
        for (expr, want) in [("greater 100", 2), ("less 100", 3), ("len = 200", 2)] {
            assert_eq!(libpcap_own(expr), want, "{expr}: libpcap's own filter");
            for libpcap in [false, true] {
                let (kept, filtered, end) = read_file(&b, Some(expr), libpcap);
                assert_eq!(
                    (kept, filtered, end.as_str()),
                    (want, 5 - want, "end"),
                    "{expr}"
                );
            }
        }
    }

    #[test]
    fn seconds_after_2038_read_alike_with_both_readers() {
        let d = [1u8; 60];
        // 2^31 - 1 (the last second before the sign bit), 2^31 (2038-01-19T03:14:08Z)
        // and u32::MAX (2106-02-07).
        let secs = [0x7fff_ffffu32, 0x8000_0000, u32::MAX];
        let refs: Vec<(u32, u32, &[u8])> = secs.iter().map(|&s| (s, 5, &d[..])).collect();
        let file = temp_capture(&pcap_bytes(1, false, &refs));
        for backend in [Backend::Native, Backend::Libpcap] {
            let ts: Vec<Timestamp> = read_all(file.path(), backend, None)
                .frames
                .iter()
                .map(|f| f.0)
                .collect();
            let want: Vec<Timestamp> = secs
                .iter()
                .map(|&s| Timestamp::from_secs_nanos(i64::from(s), 5_000))
                .collect();
            assert_eq!(ts, want, "{backend:?}");
        }
    }

    #[test]
    fn libpcap_on_pcapng_says_the_offset_is_not_known() {
        let w = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
        let mut b = Vec::new();
        // Section header (version 1.0), interface (Ethernet), then three 60-byte packets.
        for x in [0x0a0d_0d0a, 28, 0x1a2b_3c4d, 1, u32::MAX, u32::MAX, 28] {
            w(&mut b, x);
        }
        for x in [1, 20, 1, 65535, 20] {
            w(&mut b, x);
        }
        for i in 0..3u32 {
            for x in [6, 92, 0, 0, i, 60, 60] {
                w(&mut b, x);
            }
            b.extend_from_slice(&[7; 60]);
            w(&mut b, 92);
        }
        b.truncate(b.len() - 10);
        for bpf in [None, Some("ether[0] = 7")] {
            let (frames, _, msg) = read_file(&b, bpf, true);
            assert_eq!(frames, 2);
            assert!(
                msg.contains("truncated: packet 3 (libpcap does not report byte offsets"),
                "{bpf:?}: {msg}"
            );
            let (_, _, native) = read_file(&b, bpf, false);
            assert!(
                native.contains("truncated: packet 3 at byte offset"),
                "{bpf:?}: {native}"
            );
        }
    }

    /// A pcapng block of `kind` with `body` (padded to 4 bytes), in byte order `be`.
    fn ng_block(be: bool, kind: u32, body: &[u8]) -> Vec<u8> {
        let w = |v: &mut Vec<u8>, x: u32| {
            v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() })
        };
        let pad = (4 - body.len() % 4) % 4;
        let len = (12 + body.len() + pad) as u32;
        let mut v = Vec::new();
        w(&mut v, kind);
        w(&mut v, len);
        v.extend_from_slice(body);
        v.extend(std::iter::repeat_n(0u8, pad));
        w(&mut v, len);
        v
    }

    /// Section header, Ethernet interface, then `middle` between two 60-byte packets.
    fn ng_capture(be: bool, middle: &[u8]) -> Vec<u8> {
        let word = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let half = |x: u16| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let mut shb = word(0x1a2b_3c4d).to_vec();
        shb.extend_from_slice(&half(1));
        shb.extend_from_slice(&half(0));
        shb.extend_from_slice(&[0xff; 8]);
        let mut idb = half(1).to_vec();
        idb.extend_from_slice(&half(0));
        idb.extend_from_slice(&word(65535));
        let epb = |i: u32| {
            let mut b = Vec::new();
            for x in [0, 0, i, 60, 60] {
                b.extend_from_slice(&word(x));
            }
            b.extend_from_slice(&[7; 60]);
            ng_block(be, 6, &b)
        };
        let mut v = ng_block(be, 0x0a0d_0d0a, &shb);
        v.extend(ng_block(be, 1, &idb));
        v.extend(epb(1));
        v.extend_from_slice(middle);
        v.extend(epb(2));
        v
    }

    /// A packet block whose captured length runs past its own end, with a valid block
    /// after it, is corrupt, not a file that ends early (both byte orders).
    #[test]
    fn a_packet_block_claiming_more_than_it_holds_is_corrupt_not_truncated() {
        for be in [false, true] {
            let word = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
            let mut b = Vec::new();
            for x in [0, 0, 9, 500, 500] {
                b.extend_from_slice(&word(x));
            }
            b.extend_from_slice(&[7; 60]);
            let bad = ng_block(be, 6, &b);
            let (frames, _, outcome) = native_read(ng_capture(be, &bad));
            let e = outcome.expect_err("an error");
            assert_eq!(frames, 1, "be {be}");
            assert!(
                e.contains("corrupt capture: packet 2 at byte offset 140") // 28 + 20 + 92
                    && e.contains("claims more data than it holds"),
                "be {be}: {e}"
            );
        }
    }

    /// Frames, skipped blocks and the outcome of reading `bytes` natively.
    fn native_read(bytes: Vec<u8>) -> (u64, u64, Result<(), String>) {
        let mut rd = match NativeReader::from_reader(
            "t.pcapng".into(),
            Box::new(std::io::Cursor::new(bytes)),
            None,
        ) {
            Ok(r) => r,
            Err(e) => return (0, 0, Err(e.to_string())),
        };
        loop {
            match rd.dispatch(8, |_| {}) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    let c = rd.counters();
                    return (c.frames, c.skipped_blocks, Err(e.to_string()));
                }
            }
        }
        let c = rd.counters();
        (c.frames, c.skipped_blocks, Ok(()))
    }

    #[test]
    fn a_malformed_block_we_do_not_use_is_skipped_and_counted() {
        for be in [false, true] {
            let half = |x: u16| if be { x.to_be_bytes() } else { x.to_le_bytes() };
            // Name resolution: an IPv4 record (127.0.0.1 "localhost"), then an end record
            // whose length says 0x8000 bytes follow: its content overruns the block.
            let mut nrb = half(1).to_vec();
            nrb.extend_from_slice(&half(14));
            nrb.extend_from_slice(&[127, 0, 0, 1]);
            nrb.extend_from_slice(b"localhost\0\0\0");
            nrb.extend_from_slice(&half(0));
            nrb.extend_from_slice(&half(0x8000));
            let bad = ng_block(be, 4, &nrb);
            assert_eq!(native_read(ng_capture(be, &bad)), (2, 1, Ok(())), "be {be}");
            // Well-formed, it is read and not counted.
            let n = nrb.len();
            nrb[n - 2..].copy_from_slice(&half(0));
            let good = ng_block(be, 4, &nrb);
            assert_eq!(
                native_read(ng_capture(be, &good)),
                (2, 0, Ok(())),
                "be {be}"
            );
            // A block whose trailing length disagrees is not skipped: the file is damaged.
            let mut torn = bad.clone();
            let t = torn.len();
            torn[t - 1] ^= 0x40;
            torn[t - 4] ^= 0x40;
            let (frames, skipped, r) = native_read(ng_capture(be, &torn));
            assert_eq!((frames, skipped), (1, 0), "be {be}");
            let msg = r.err().unwrap_or_default();
            assert!(msg.contains("packet 2 at byte offset"), "be {be}: {msg}");
        }
    }

    #[test]
    fn obsolete_packet_blocks_are_packets_with_both_readers() {
        for be in [false, true] {
            let word = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
            let half = |x: u16| if be { x.to_be_bytes() } else { x.to_le_bytes() };
            // Two obsolete packet blocks (interface 0, 3 drops, µs timestamps), the
            // second cut by the snapshot length (40 of 90 bytes).
            let mut opbs = Vec::new();
            for (i, (cap, orig)) in [(52u32, 52u32), (40, 90)].into_iter().enumerate() {
                let mut b = half(0).to_vec();
                b.extend_from_slice(&half(3));
                for x in [0, 1_700_000_000 + i as u32, cap, orig] {
                    b.extend_from_slice(&word(x));
                }
                b.extend((0..cap).map(|j| j as u8 ^ i as u8));
                opbs.extend(ng_block(be, 2, &b));
            }
            let file = temp_capture(&ng_capture(be, &opbs));
            let mut seen = Vec::new();
            for backend in [Backend::Native, Backend::Libpcap] {
                let r = read_all(file.path(), backend, None);
                assert_eq!(r.outcome, Ok(()), "{backend:?}, be {be}");
                seen.push(r.frames);
            }
            assert_eq!(seen[0].len(), 4, "be {be}: EPB, 2 OPBs, EPB");
            assert_eq!(
                seen[0][2].0,
                Timestamp::from_secs_nanos(1700, 1_000),
                "be {be}"
            );
            assert_eq!((seen[0][2].1, seen[0][2].2.len()), (90, 40), "be {be}");
            assert_eq!(seen[0], seen[1], "be {be}: native against libpcap");
        }
    }

    /// Frames (time, wire length, bytes) and outcome of reading the file at `path` with
    /// `backend`; the error text only says whether it was a truncation.
    #[allow(clippy::type_complexity)]
    fn frames_of(
        path: &Path,
        backend: Backend,
    ) -> (Vec<(Timestamp, u32, Vec<u8>)>, Result<(), bool>) {
        let r = read_all(path, backend, None);
        (r.frames, r.outcome.map_err(|e| e.contains("truncated")))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(40))]
        /// The native reader and libpcap read the same frames from any legacy pcap (µs or
        /// ns, either byte order, any 32-bit seconds, cut anywhere), and stop the same
        /// way.
        #[test]
        fn native_and_libpcap_read_the_same_frames(
            be: bool,
            nanos: bool,
            records in proptest::collection::vec(
                (proptest::prelude::any::<u32>(), 0u32..1_000_000, 0usize..300, 0u32..400),
                0..40,
            ),
            cut in proptest::option::of(0.0f64..1.0),
        ) {
            let frames: Vec<(u32, u32, u32, Vec<u8>)> = records
                .iter()
                .map(|&(s, frac, n, extra)| {
                    let frac = if nanos { frac * 1000 } else { frac };
                    (s, frac, n as u32 + extra, (0..n).map(|j| (j as u32 ^ s) as u8).collect())
                })
                .collect();
            let mut bytes = pcap_bytes_in(be, nanos, &frames);
            if let Some(c) = cut {
                bytes.truncate(24 + ((bytes.len() - 24) as f64 * c) as usize);
            }
            let file = temp_capture(&bytes);
            let native = frames_of(file.path(), Backend::Native);
            let libpcap = frames_of(file.path(), Backend::Libpcap);
            proptest::prop_assert_eq!(native.0.len(), libpcap.0.len());
            proptest::prop_assert!(native.0 == libpcap.0, "frames differ");
            proptest::prop_assert_eq!(native.1, libpcap.1);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(40))]
        /// The same for pcapng: one interface with a random `if_tsresol` (a power of 10
        /// or of 2) and `if_tsoffset`, enhanced packets with any 64-bit timestamp.
        #[test]
        fn native_and_libpcap_read_the_same_pcapng_frames(
            be: bool,
            pow2: bool,
            exp in 0u8..20,
            tsoffset in proptest::option::of(-100_000i64..100_000),
            packets in proptest::collection::vec(
                (
                    0u64..4_000_000_000,
                    proptest::prelude::any::<u64>(),
                    0usize..200,
                    0u32..300,
                ),
                0..30,
            ),
        ) {
            // Timestamps of up to 4e9 s (year 2096) in the interface's units, so that
            // both readers' nanosecond times fit an i64 (beyond, both saturate or wrap
            // differently, and no capture is dated there).
            let res = ts_units_per_second(if pow2 { 0x80 | exp } else { exp }).unwrap_or(1);
            let max_secs = (u64::MAX / res).max(1);
            let word = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
            let half = |x: u16| if be { x.to_be_bytes() } else { x.to_le_bytes() };
            let mut idb = half(1).to_vec();
            idb.extend_from_slice(&half(0));
            idb.extend_from_slice(&word(65535));
            // if_tsresol (code 9, 1 byte), if_tsoffset (code 14, 8 bytes), end of options.
            idb.extend_from_slice(&half(9));
            idb.extend_from_slice(&half(1));
            idb.extend_from_slice(&[if pow2 { 0x80 | exp } else { exp }, 0, 0, 0]);
            if let Some(off) = tsoffset {
                idb.extend_from_slice(&half(14));
                idb.extend_from_slice(&half(8));
                idb.extend_from_slice(&if be { off.to_be_bytes() } else { off.to_le_bytes() });
            }
            idb.extend_from_slice(&[0; 4]);
            let mut shb = word(0x1a2b_3c4d).to_vec();
            shb.extend_from_slice(&half(1));
            shb.extend_from_slice(&half(0));
            shb.extend_from_slice(&[0xff; 8]);
            let mut bytes = ng_block(be, 0x0a0d_0d0a, &shb);
            bytes.extend(ng_block(be, 1, &idb));
            for &(secs, frac, n, extra) in &packets {
                let ts = (secs % max_secs) * res + frac % res;
                let mut b = Vec::new();
                for x in [0, (ts >> 32) as u32, ts as u32, n as u32, n as u32 + extra] {
                    b.extend_from_slice(&word(x));
                }
                b.extend((0..n).map(|j| (j as u64 ^ ts) as u8));
                bytes.extend(ng_block(be, 6, &b));
            }
            let file = temp_capture(&bytes);
            let native = frames_of(file.path(), Backend::Native);
            let libpcap = frames_of(file.path(), Backend::Libpcap);
            proptest::prop_assert_eq!(native.0.len(), libpcap.0.len());
            for (a, b) in native.0.iter().zip(&libpcap.0) {
                proptest::prop_assert_eq!(a, b);
            }
            proptest::prop_assert_eq!(native.1, libpcap.1);
        }
    }

    #[test]
    fn absurd_record_length_is_corrupt_not_oom() {
        let mut b = pcap_bytes(1, false, &[]);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
        b.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
        b.extend_from_slice(&[0u8; 100]);
        let (v, r) = collect(b);
        assert!(v.is_empty());
        assert!(r.is_err());
    }
}
