//! The spill directory of one network sink: an append-only, size-capped queue of event
//! records on disk, in segment files read in order and deleted once delivered. It holds
//! the events that did not fit the in-memory queue or arrived while the receiver was
//! down, and what was still undelivered when the process stopped (the next run sends it
//! first). Owns the on-disk format, recovery after a crash and the size cap; does not
//! know about receivers or the in-memory queue.
//!
//! Layout: `<dir>/lock` (held with `flock` while a process uses the directory),
//! `<dir>/<20-digit id>.seg` segments, `<dir>/cursor` (the read position in the first
//! segment, written at close). A segment starts with the 8-byte magic `FSSPILL2`, then
//! records: `u32` LE payload length, `u32` LE CRC-32 (IEEE) of the payload, then the
//! payload: `u64` LE `seq`, `u8` event kind, `u16` LE key length, the key, the JSON line.
//! A torn record at the end of a segment (a crash mid-write) is cut off on recovery; a
//! record whose checksum fails (the disk changed it) is skipped when read and reported by
//! [`Spill::take_loss`], never sent. Segments of the first format (`FSSPILL1`, the same
//! without the checksum) left by an older version are still read.
//!
//! Appends are buffered (64 KiB) together with their record count. When writing them out
//! fails (a full disk), the segment is cut back to its last complete record, the records
//! that did not reach the disk are taken off the spill and reported by
//! [`Spill::take_loss`] (the caller counts them as dropped), and the next append starts a
//! new segment: the spill never holds a record it cannot give back, nor a torn one.

use super::{EventKind, Record};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"FSSPILL2";
/// The first format, without checksums: still read.
const MAGIC_V1: &[u8; 8] = b"FSSPILL1";
/// The first segment id; leaves room below for segments prepended at close.
const BASE_ID: u64 = 1 << 40;
/// Largest payload accepted when reading back (an event line is far smaller); anything
/// bigger means the segment is damaged.
const MAX_PAYLOAD: u32 = 64 << 20;
/// Bytes of the fixed part of a record (length, checksum, seq, kind, key length).
const FIXED: u64 = 4 + 4 + 8 + 1 + 2;
/// Buffered appends are written out at this size.
const WRITE_BUF: usize = 1 << 16;

/// The open tail segment: its file and the appends not yet written to it.
struct Tail {
    file: File,
    buf: Vec<u8>,
    /// Records in `buf`.
    records: u64,
    /// Bytes of the file on disk (everything before `buf`).
    durable: u64,
}

#[derive(Debug, Clone, Copy)]
struct Seg {
    id: u64,
    /// The segment has per-record checksums (`FSSPILL2`).
    crc: bool,
    /// Bytes of the file including buffered, unflushed appends.
    bytes: u64,
}

/// A position in the spill just after one record, returned with each record read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    id: u64,
    off: u64,
    /// Records read since open, this one included.
    n: u64,
}

struct Reader {
    id: u64,
    crc: bool,
    off: u64,
    file: BufReader<File>,
}

/// Why an append did not store the record.
#[derive(Debug)]
pub enum AppendError {
    /// The cap would be exceeded.
    Full,
    /// The disk write failed.
    Io(std::io::Error),
}

/// What recovery found in a directory left by an earlier run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Records waiting to be sent.
    pub records: u64,
    /// Bytes cut off damaged segments (torn writes).
    pub damaged_bytes: u64,
    /// Records among `records` whose checksum fails: they are skipped when read (and
    /// reported by [`Spill::take_loss`]).
    pub corrupt_records: u64,
}

/// One sink's spill directory (see the module docs).
pub struct Spill {
    dir: PathBuf,
    cap: u64,
    seg_target: u64,
    _lock: nix::fcntl::Flock<File>,
    segs: VecDeque<Seg>,
    tail: Option<Tail>,
    reader: Option<Reader>,
    /// Committed position: everything up to here was delivered.
    commit_id: u64,
    commit_off: u64,
    committed_n: u64,
    read_n: u64,
    /// Records stored and not committed.
    pending: u64,
    /// Records stored and not yet read.
    unread: u64,
    total: u64,
    /// The recovered cursor: (segment id, offset) where reading that segment resumes.
    resume: Option<(u64, u64)>,
    /// Records lost to failed writes since the last [`Spill::take_loss`], and why.
    lost: u64,
    lost_error: Option<String>,
}

/// What a scan of one segment found.
struct Scan {
    valid: u64,
    start: u64,
    records: u64,
    damaged: u64,
    crc: bool,
    corrupt: u64,
}

/// What reading at a record boundary found.
enum Next {
    /// A clean end of the segment.
    End,
    /// A record and its size on disk.
    Record(Record, u64),
    /// A whole record whose checksum fails, and its size on disk (skip it).
    Corrupt(u64),
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Reads one record from `r` (with its checksum when `crc`); `Err` on a torn or damaged
/// record.
fn read_record<R: Read>(r: &mut R, crc: bool) -> std::io::Result<Next> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(Next::End),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len);
    if !(11..=MAX_PAYLOAD).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("record length {len} out of range"),
        ));
    }
    let mut sum = [0u8; 4];
    if crc {
        r.read_exact(&mut sum)?;
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    let size = 4 + u64::from(len) + if crc { 4 } else { 0 };
    if crc && crc32fast::hash(&buf) != u32::from_le_bytes(sum) {
        return Ok(Next::Corrupt(size));
    }
    let seq = u64::from_le_bytes(buf[0..8].try_into().unwrap_or([0; 8]));
    let kind = EventKind::from_code(buf[8]);
    let klen = u16::from_le_bytes([buf[9], buf[10]]) as usize;
    if 11 + klen > buf.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "key length past the record",
        ));
    }
    let key = String::from_utf8_lossy(&buf[11..11 + klen]).into_owned();
    let line = buf[11 + klen..].to_vec();
    Ok(Next::Record(
        Record {
            seq,
            kind,
            key: key.into(),
            line: line.into(),
        },
        size,
    ))
}

fn encode(rec: &Record, out: &mut Vec<u8>) {
    let key = &rec.key.as_bytes()[..rec.key.len().min(u16::MAX as usize)];
    let payload = 8 + 1 + 2 + key.len() + rec.line.len();
    out.extend_from_slice(&(payload as u32).to_le_bytes());
    let sum_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let start = out.len();
    out.extend_from_slice(&rec.seq.to_le_bytes());
    out.push(rec.kind.code());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&rec.line);
    let sum = crc32fast::hash(&out[start..]);
    out[sum_at..start].copy_from_slice(&sum.to_le_bytes());
}

impl Spill {
    /// Opens (creating) the directory, takes its lock and recovers what an earlier run
    /// left. Fails when another process holds the lock.
    pub fn open(dir: &Path, cap: u64) -> Result<(Spill, Recovered), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create it: {e}"))?;
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(|e| format!("cannot open its lock file: {e}"))?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| {
                format!("in use by another flowsentry process ({e}); give each sensor its own --sensor-id or --spill-dir")
            })?;
        let mut ids: Vec<u64> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot list it: {e}"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse::<u64>().ok()
            })
            .collect();
        ids.sort_unstable();
        let cursor = std::fs::read_to_string(dir.join("cursor"))
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace();
                Some((
                    it.next()?.parse::<u64>().ok()?,
                    it.next()?.parse::<u64>().ok()?,
                ))
            });
        let mut rec = Recovered::default();
        let mut segs = VecDeque::new();
        let (mut commit_id, mut commit_off) = (0, 0);
        let mut resume = None;
        for id in ids {
            let path = seg_path(dir, id);
            let sc = Self::scan(&path, cursor.filter(|c| c.0 == id).map(|c| c.1))
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            rec.damaged_bytes += sc.damaged;
            rec.corrupt_records += sc.corrupt;
            if sc.records == 0 {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if sc.damaged > 0 {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| format!("cannot repair {}: {e}", path.display()))?;
                f.set_len(sc.valid)
                    .map_err(|e| format!("cannot repair {}: {e}", path.display()))?;
            }
            if sc.start > 8 {
                resume = Some((id, sc.start));
            }
            if segs.is_empty() {
                commit_id = id;
                commit_off = sc.start;
            }
            rec.records += sc.records;
            segs.push_back(Seg {
                id,
                crc: sc.crc,
                bytes: sc.valid,
            });
        }
        let total = segs.iter().map(|s| s.bytes).sum();
        let spill = Spill {
            dir: dir.to_path_buf(),
            cap,
            seg_target: (cap / 8).clamp(4096, 64 << 20),
            _lock: lock,
            segs,
            tail: None,
            reader: None,
            commit_id,
            commit_off,
            committed_n: 0,
            read_n: 0,
            pending: rec.records,
            unread: rec.records,
            total,
            resume,
            lost: 0,
            lost_error: None,
        };
        Ok((spill, rec))
    }

    /// Scans a segment: its valid length, the offset to resume from (the cursor when it
    /// falls on a record boundary, else the first record), the records from there, and
    /// the bytes after the last intact record (a torn write).
    fn scan(path: &Path, cursor: Option<u64>) -> std::io::Result<Scan> {
        let f = File::open(path)?;
        let len = f.metadata()?.len();
        let mut r = BufReader::with_capacity(1 << 16, f);
        let mut magic = [0u8; 8];
        let crc = if len < 8 || r.read_exact(&mut magic).is_err() {
            None
        } else if &magic == MAGIC {
            Some(true)
        } else if &magic == MAGIC_V1 {
            Some(false)
        } else {
            None
        };
        let Some(crc) = crc else {
            return Ok(Scan {
                valid: 0,
                start: 8,
                records: 0,
                damaged: len,
                crc: true,
                corrupt: 0,
            });
        };
        // Records and checksum failures so far, and both as they were at the cursor.
        let (mut off, mut count, mut corrupt, mut before) = (8u64, 0u64, 0u64, None);
        let mut damaged = 0;
        loop {
            if cursor == Some(off) {
                before = Some((count, corrupt));
            }
            match read_record(&mut r, crc) {
                Ok(Next::Record(_, n)) => {
                    off += n;
                    count += 1;
                }
                Ok(Next::Corrupt(n)) => {
                    off += n;
                    count += 1;
                    corrupt += 1;
                }
                Ok(Next::End) => break,
                Err(_) => {
                    damaged = len - off;
                    break;
                }
            }
        }
        if cursor == Some(off) {
            before = Some((count, corrupt));
        }
        let (start, (first, corrupt_first)) = match (before, cursor) {
            (Some(b), Some(c)) => (c, b),
            _ => (8, (0, 0)),
        };
        Ok(Scan {
            valid: off,
            start,
            records: count - first,
            damaged,
            crc,
            corrupt: corrupt - corrupt_first,
        })
    }

    /// Where reading a segment starts: the recovered cursor for its segment, else after
    /// the magic.
    fn start_off(&self, id: u64) -> u64 {
        match self.resume {
            Some((rid, off)) if rid == id => off,
            _ => 8,
        }
    }

    /// Records waiting (stored, not yet delivered).
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Records stored and not yet read back.
    pub fn unread(&self) -> u64 {
        self.unread
    }

    /// Bytes on disk (with buffered appends).
    pub fn bytes(&self) -> u64 {
        self.total
    }

    /// Appends one record at the end. `Ok` means the spill holds it (possibly still in
    /// the write buffer: a later failed write takes it off again and reports it through
    /// [`Spill::take_loss`]); an error means it was not stored.
    pub fn append(&mut self, rec: &Record) -> Result<(), AppendError> {
        let mut buf = Vec::with_capacity(rec.line.len() + rec.key.len() + FIXED as usize);
        encode(rec, &mut buf);
        let need = buf.len() as u64;
        let roll = self.tail.is_none()
            || self
                .segs
                .back()
                .is_none_or(|s| s.bytes + need > self.seg_target && s.bytes > 8);
        let extra = if roll { 8 } else { 0 };
        if self.total + need + extra > self.cap {
            return Err(AppendError::Full);
        }
        if roll {
            self.roll().map_err(AppendError::Io)?;
        }
        let (Some(t), Some(seg)) = (self.tail.as_mut(), self.segs.back_mut()) else {
            return Err(AppendError::Io(std::io::Error::other("no open segment")));
        };
        t.buf.extend_from_slice(&buf);
        t.records += 1;
        seg.bytes += need;
        self.total += need;
        self.pending += 1;
        self.unread += 1;
        if t.buf.len() >= WRITE_BUF {
            // A failure is accounted (take_loss); this record was stored and is lost now.
            let _ = self.write_tail();
        }
        Ok(())
    }

    /// Writes the buffered appends to the tail segment. On failure the segment is cut
    /// back to its last complete record, the buffered records are taken off the spill
    /// and added to the loss, and the segment is closed (the next append rolls a new one).
    fn write_tail(&mut self) -> std::io::Result<()> {
        let Some(t) = self.tail.as_mut() else {
            return Ok(());
        };
        if t.buf.is_empty() {
            return Ok(());
        }
        match t.file.write_all(&t.buf) {
            Ok(()) => {
                t.durable += t.buf.len() as u64;
                t.buf.clear();
                t.records = 0;
                Ok(())
            }
            Err(e) => {
                // Cut off whatever part of the buffer reached the disk. If even that fails
                // the torn bytes stay past `seg.bytes`: never read now, cut on recovery.
                let _ = t.file.set_len(t.durable);
                let (bytes, n) = (t.buf.len() as u64, t.records);
                let durable = t.durable;
                self.tail = None;
                if let Some(seg) = self.segs.back_mut() {
                    seg.bytes = durable;
                }
                self.total = self.total.saturating_sub(bytes);
                self.pending = self.pending.saturating_sub(n);
                self.unread = self.unread.saturating_sub(n);
                let msg = format!(
                    "cannot write the spill directory {}: {e}",
                    self.dir.display()
                );
                self.note_loss(n, msg);
                Err(e)
            }
        }
    }

    /// Adds `n` records to the loss reported by [`Spill::take_loss`].
    fn note_loss(&mut self, n: u64, why: String) {
        self.lost += n;
        self.lost_error = Some(why);
    }

    /// Records lost to failed writes since the last call, with the last error; the
    /// caller counts them as dropped.
    pub fn take_loss(&mut self) -> Option<(u64, String)> {
        if self.lost == 0 {
            return None;
        }
        let n = std::mem::take(&mut self.lost);
        Some((n, self.lost_error.take().unwrap_or_default()))
    }

    /// Starts a new tail segment.
    fn roll(&mut self) -> std::io::Result<()> {
        // The old tail's buffered records are written (or accounted as lost) first.
        let _ = self.write_tail();
        self.tail = None;
        let id = self.segs.back().map_or(BASE_ID, |s| s.id + 1);
        let path = seg_path(&self.dir, id);
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        if let Err(e) = f.write_all(MAGIC) {
            // Leave no half-made segment behind (the next roll reuses the id).
            drop(f);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        if self.segs.is_empty() {
            self.commit_id = id;
            self.commit_off = 8;
        }
        self.segs.push_back(Seg {
            id,
            crc: true,
            bytes: 8,
        });
        self.total += 8;
        self.tail = Some(Tail {
            file: f,
            buf: Vec::with_capacity(WRITE_BUF + 4096),
            records: 0,
            durable: 8,
        });
        Ok(())
    }

    /// Writes buffered appends to the file (on failure they are lost, see
    /// [`Spill::take_loss`]).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.write_tail()
    }

    /// Flushes and fsyncs, and records the read position (close).
    pub fn sync(&mut self) -> std::io::Result<()> {
        let tail = self.write_tail().and_then(|()| match self.tail.as_ref() {
            Some(t) => t.file.sync_all(),
            None => Ok(()),
        });
        // The cursor is written even when the tail was not: the delivered records it
        // marks are durable already, and leaving the old cursor would make the next run
        // send them again. The first error is returned.
        let tmp = self.dir.join("cursor.tmp");
        let cursor = std::fs::write(&tmp, format!("{} {}\n", self.commit_id, self.commit_off))
            .and_then(|()| std::fs::rename(&tmp, self.dir.join("cursor")));
        tail.and(cursor)
    }

    /// Reads up to `max` records after the last one read (not yet committed).
    pub fn read(&mut self, max: usize, out: &mut Vec<(Arc<Record>, Pos)>) -> std::io::Result<()> {
        while out.len() < max && self.unread > 0 {
            if self.reader.is_none() {
                let Some(id) = self.segs.front().map(|s| s.id) else {
                    return Ok(());
                };
                self.open_reader(id, self.start_off(id))?;
            }
            let Some(rd) = self.reader.as_ref() else {
                return Ok(());
            };
            let seg = self.segs.iter().position(|s| s.id == rd.id);
            let Some(si) = seg else {
                self.reader = None;
                continue;
            };
            if rd.off >= self.segs[si].bytes {
                // End of this segment: on to the next one, if any.
                match self.segs.get(si + 1).map(|s| s.id) {
                    Some(next) => {
                        self.open_reader(next, self.start_off(next))?;
                        continue;
                    }
                    None => return Ok(()),
                }
            }
            if si + 1 == self.segs.len() && self.tail.is_some() {
                // The tail segment: make buffered appends visible to the reader. If that
                // fails they are lost (accounted by take_loss) and the segment now ends
                // at its last durable record.
                if self.write_tail().is_err() {
                    continue;
                }
            }
            let Some(rd) = self.reader.as_mut() else {
                return Ok(());
            };
            match read_record(&mut rd.file, rd.crc)? {
                Next::Corrupt(n) => {
                    // Skipped, never sent; it was counted in `pending` and `unread`.
                    rd.off += n;
                    self.unread = self.unread.saturating_sub(1);
                    self.pending = self.pending.saturating_sub(1);
                    let msg = format!(
                        "spill {}: a record in segment {} fails its checksum (the disk changed it); skipped",
                        self.dir.display(),
                        rd.id
                    );
                    self.note_loss(1, msg);
                }
                Next::Record(rec, n) => {
                    rd.off += n;
                    self.read_n += 1;
                    self.unread = self.unread.saturating_sub(1);
                    out.push((
                        Arc::new(rec),
                        Pos {
                            id: rd.id,
                            off: rd.off,
                            n: self.read_n,
                        },
                    ));
                }
                Next::End => return Ok(()),
            }
        }
        Ok(())
    }

    fn open_reader(&mut self, id: u64, off: u64) -> std::io::Result<()> {
        let mut f = File::open(seg_path(&self.dir, id))?;
        f.seek(SeekFrom::Start(off))?;
        let crc = self.segs.iter().find(|s| s.id == id).is_none_or(|s| s.crc);
        self.reader = Some(Reader {
            id,
            crc,
            off,
            file: BufReader::with_capacity(1 << 16, f),
        });
        Ok(())
    }

    /// Everything up to and including the record that ended at `pos` was delivered:
    /// advances the committed position and deletes fully delivered segments.
    pub fn commit(&mut self, pos: Pos) {
        if pos.n <= self.committed_n {
            return;
        }
        self.pending = self.pending.saturating_sub(pos.n - self.committed_n);
        self.committed_n = pos.n;
        self.commit_id = pos.id;
        self.commit_off = pos.off;
        let tail = self.segs.back().map(|s| s.id);
        while let Some(first) = self.segs.front().copied() {
            let done = first.id < pos.id
                || (first.id == pos.id && pos.off >= first.bytes && Some(first.id) != tail);
            if !done {
                break;
            }
            self.segs.pop_front();
            self.total = self.total.saturating_sub(first.bytes);
            let _ = std::fs::remove_file(seg_path(&self.dir, first.id));
        }
        if self.pending == 0 {
            self.reset();
        }
    }

    /// Gives up on everything stored (an unreadable spill); returns how many records were
    /// lost, for the drop counter.
    pub fn discard(&mut self) -> u64 {
        let n = self.pending;
        self.reset();
        n
    }

    /// Deletes every segment (nothing is pending).
    fn reset(&mut self) {
        self.tail = None;
        self.reader = None;
        for s in self.segs.drain(..) {
            let _ = std::fs::remove_file(seg_path(&self.dir, s.id));
        }
        let _ = std::fs::remove_file(self.dir.join("cursor"));
        self.total = 0;
        self.unread = 0;
        self.pending = 0;
        self.commit_id = 0;
        self.commit_off = 0;
        self.resume = None;
    }

    /// Writes `records` (older than everything stored) into a new first segment, so the
    /// next run sends them first. Used at close for events still in memory. Ignores the
    /// cap: these events were accepted before and are not dropped now.
    pub fn prepend(&mut self, records: &[Arc<Record>]) -> std::io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let id = match self.segs.front() {
            Some(s) => s.id - 1,
            None => BASE_ID,
        };
        let mut buf = Vec::with_capacity(records.len() * 1024);
        buf.extend_from_slice(MAGIC);
        for r in records {
            encode(r, &mut buf);
        }
        let path = seg_path(&self.dir, id);
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        if self.segs.is_empty() {
            self.commit_id = id;
            self.commit_off = 8;
        }
        self.segs.push_front(Seg {
            id,
            crc: true,
            bytes: buf.len() as u64,
        });
        self.total += buf.len() as u64;
        self.pending += records.len() as u64;
        self.unread += records.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64) -> Record {
        Record {
            seq,
            kind: EventKind::Flow,
            key: format!("s/10.0.0.{}", seq % 7).into(),
            line: format!(
                "{{\"event_type\":\"flow\",\"seq\":{seq},\"pad\":\"{}\"}}",
                "x".repeat(200)
            )
            .into_bytes()
            .into(),
        }
    }

    fn drain(s: &mut Spill) -> Vec<u64> {
        let mut seqs = Vec::new();
        loop {
            let mut b = Vec::new();
            s.read(7, &mut b).expect("read");
            if b.is_empty() {
                break;
            }
            seqs.extend(b.iter().map(|(r, _)| r.seq));
            if let Some((_, p)) = b.last() {
                s.commit(*p);
            }
        }
        seqs
    }

    #[test]
    fn records_come_back_in_order_and_segments_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, r) = Spill::open(dir.path(), 1 << 20).expect("open");
        assert_eq!(r.records, 0);
        for i in 1..=500 {
            s.append(&rec(i)).expect("append");
        }
        assert!(s.segs.len() > 1, "several segments");
        let got = drain(&mut s);
        assert_eq!(got, (1..=500).collect::<Vec<_>>());
        assert_eq!(s.pending(), 0);
        assert_eq!(s.bytes(), 0);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
            .collect();
        assert!(left.is_empty(), "segments left: {left:?}");
    }

    #[test]
    fn cap_refuses_and_interleaved_reads_keep_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _) = Spill::open(dir.path(), 8192).expect("open");
        let mut stored = Vec::new();
        let mut full = 0;
        for i in 1..=100 {
            match s.append(&rec(i)) {
                Ok(()) => stored.push(i),
                Err(AppendError::Full) => full += 1,
                Err(AppendError::Io(e)) => panic!("{e}"),
            }
            if i % 40 == 0 {
                let mut b = Vec::new();
                s.read(5, &mut b).expect("read");
                if let Some((_, p)) = b.last() {
                    s.commit(*p);
                }
                let mut got: Vec<u64> = b.iter().map(|(r, _)| r.seq).collect();
                stored.retain(|x| !got.contains(x));
                got.clear();
            }
        }
        assert!(full > 0, "the cap was reached");
        assert!(s.bytes() <= 8192);
        assert_eq!(drain(&mut s), stored);
    }

    #[test]
    fn reopen_recovers_uncommitted_records_and_prepended_ones_come_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut s, _) = Spill::open(dir.path(), 1 << 20).expect("open");
            for i in 10..=60 {
                s.append(&rec(i)).expect("append");
            }
            let mut b = Vec::new();
            s.read(5, &mut b).expect("read");
            s.commit(b[4].1); // 10..=14 delivered
            let older: Vec<Arc<Record>> = (1..=3).map(|i| Arc::new(rec(i))).collect();
            s.prepend(&older).expect("prepend");
            s.sync().expect("sync");
            // A second process cannot use the directory meanwhile.
            assert!(Spill::open(dir.path(), 1 << 20).is_err());
        }
        let (mut s, r) = Spill::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(r.records, 3 + 46);
        let want: Vec<u64> = (1..=3).chain(15..=60).collect();
        assert_eq!(drain(&mut s), want);
    }

    #[test]
    fn a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut s, _) = Spill::open(dir.path(), 1 << 20).expect("open");
            for i in 1..=5 {
                s.append(&rec(i)).expect("append");
            }
            s.sync().expect("sync");
        }
        let seg = std::fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "seg"))
            .expect("a segment");
        let len = std::fs::metadata(&seg).expect("meta").len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .expect("open")
            .set_len(len - 10)
            .expect("truncate");
        let (mut s, r) = Spill::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(r.records, 4);
        assert!(r.damaged_bytes > 0);
        assert_eq!(drain(&mut s), vec![1, 2, 3, 4]);
    }

    #[test]
    fn segments_of_the_first_format_are_still_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut data = MAGIC_V1.to_vec();
        for i in 1..=3u64 {
            let r = rec(i);
            let key = r.key.as_bytes();
            let payload = 8 + 1 + 2 + key.len() + r.line.len();
            data.extend_from_slice(&(payload as u32).to_le_bytes());
            data.extend_from_slice(&r.seq.to_le_bytes());
            data.push(r.kind.code());
            data.extend_from_slice(&(key.len() as u16).to_le_bytes());
            data.extend_from_slice(key);
            data.extend_from_slice(&r.line);
        }
        std::fs::write(seg_path(dir.path(), BASE_ID), &data).expect("write v1 segment");
        let (mut s, r) = Spill::open(dir.path(), 1 << 20).expect("open");
        assert_eq!(r.records, 3);
        assert_eq!(r.damaged_bytes, 0);
        // New appends go to a new (checksummed) segment after the old one.
        s.append(&rec(4)).expect("append");
        assert_eq!(drain(&mut s), vec![1, 2, 3, 4]);
    }
}
