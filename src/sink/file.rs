//! The file sink: JSON Lines to stdout or a file, buffered, with rotation by size or age,
//! reopen on SIGHUP (logrotate) and fsync on rotation, reopen and close. It writes on the
//! writer thread (a local disk is the baseline every other sink is measured against), and a
//! write error stops the run with the count of events confirmed written: spilling to the
//! disk that just failed would not help. A reopen or rotation that cannot open or rename
//! a file is not a write error: the sink keeps writing to the file it has open and reports
//! the problem as a notice ([`Sink::take_notices`]). Owns the `--out` output and every
//! `file:` sink; does not serialise events (that is [`crate::event`]).

use super::{EventLine, Sink, SinkStats};
use crate::error::OutputError;
use crate::event::Rotation;
use crate::time::Timestamp;
use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

enum Out {
    Stream(std::io::BufWriter<Box<dyn Write + Send>>),
    File {
        w: std::io::BufWriter<std::fs::File>,
        path: PathBuf,
        rotation: Rotation,
        bytes: u64,
        /// When the open file was started (its age for `max_secs`).
        opened: Instant,
    },
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// When the open file `f` was started, as an [`Instant`]: its birth time where the file
/// system records one, else now.
fn started(f: &std::fs::File) -> Instant {
    f.metadata()
        .ok()
        .and_then(|m| m.created().ok())
        .and_then(|born| SystemTime::now().duration_since(born).ok())
        .and_then(|age| Instant::now().checked_sub(age))
        .unwrap_or_else(Instant::now)
}

/// Whether two stats describe the same file (device and inode).
fn same_file(a: std::io::Result<std::fs::Metadata>, b: std::io::Result<std::fs::Metadata>) -> bool {
    a.ok()
        .zip(b.ok())
        .is_some_and(|(a, b)| (a.dev(), a.ino()) == (b.dev(), b.ino()))
}

/// Opens `path` for appending; a non-empty file whose last byte is not a newline (an
/// earlier run stopped in the middle of a line, e.g. on a full disk) gets one first, so the
/// new events start on lines of their own. Returns the file, its length and a notice when
/// a newline was added.
fn open_for_lines(path: &Path) -> std::io::Result<(std::fs::File, u64, Option<String>)> {
    let mut f = open_append(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok((f, 0, None));
    }
    // The last line's start, looked for in the last 64 KiB (an event line is shorter).
    let tail_len = len.min(1 << 16);
    let mut tail = vec![0u8; tail_len as usize];
    std::fs::File::open(path).and_then(|mut r| {
        r.seek(SeekFrom::Start(len - tail_len))?;
        r.read_exact(&mut tail)
    })?;
    if tail.last() == Some(&b'\n') {
        return Ok((f, len, None));
    }
    let line_start = match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => len - tail_len + i as u64 + 1,
        None => len - tail_len,
    };
    f.write_all(b"\n")?;
    let note = format!(
        "{}: the file ended in an incomplete line (bytes {line_start}..{len}, no newline: an \
         earlier run stopped while writing it); a newline was added so the new events start \
         on lines of their own",
        path.display()
    );
    Ok((f, len + 1, Some(note)))
}

/// Byte offsets, within the sink's output, at which recent events end: those at or below
/// the bytes that reached the file are confirmed written.
#[derive(Default)]
struct Ends {
    /// Bytes handed to the output so far (file or stream, this run).
    offered: u64,
    /// End offsets of the events not yet known to be out of the buffer.
    ends: VecDeque<u64>,
}

/// JSON Lines to a stream or a (rotating) file.
pub struct FileSink {
    out: Out,
    name: String,
    written: u64,
    /// Events known to have reached the output: every event at a successful flush, and
    /// those the buffer wrote out by itself when full.
    durable: u64,
    ends: Ends,
    rotations: u64,
    /// Problems recovered from (reopen or rotation failures, a repaired torn line).
    notices: Vec<String>,
}

impl FileSink {
    /// Wraps a byte stream; `name` is used in error messages (a path or "stdout").
    pub fn stream(out: Box<dyn Write + Send>, name: &str) -> FileSink {
        FileSink {
            out: Out::Stream(std::io::BufWriter::with_capacity(1 << 16, out)),
            name: name.to_string(),
            written: 0,
            durable: 0,
            ends: Ends::default(),
            rotations: 0,
            notices: Vec::new(),
        }
    }

    /// Opens `path` for writing (`-` = stdout). Files are created or truncated.
    pub fn create(path: &str) -> Result<FileSink, OutputError> {
        if path == "-" {
            return Ok(FileSink::stream(Box::new(std::io::stdout()), "stdout"));
        }
        let f = std::fs::File::create(path).map_err(|source| OutputError::Open {
            path: path.to_string(),
            source,
        })?;
        Ok(FileSink::stream(Box::new(f), path))
    }

    /// Opens `path` for appending, with rotation (the live sensor's file output and every
    /// `file:` sink).
    /// A file that is appended to keeps its age: time rotation counts from when the file
    /// was started (its birth time, where the file system records one).
    /// A path that is not a regular file (`/dev/null`, a FIFO) is written as a stream:
    /// never renamed, reopened or fsynced.
    pub fn append(path: &Path, rotation: Rotation) -> Result<FileSink, OutputError> {
        let name = path.display().to_string();
        let open_err = |source| OutputError::Open {
            path: name.clone(),
            source,
        };
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            let f = open_append(path).map_err(open_err)?;
            let mut s = FileSink::stream(Box::new(f), &name);
            if rotation != Rotation::default() {
                s.notices.push(format!(
                    "{name}: not a regular file, so it is never rotated, reopened or fsynced"
                ));
            }
            return Ok(s);
        }
        let (f, bytes, note) = open_for_lines(path).map_err(open_err)?;
        let opened = started(&f);
        Ok(FileSink {
            out: Out::File {
                w: std::io::BufWriter::with_capacity(1 << 16, f),
                path: path.to_path_buf(),
                rotation,
                bytes,
                opened,
            },
            name,
            written: 0,
            durable: 0,
            ends: Ends::default(),
            rotations: 0,
            notices: note.into_iter().collect(),
        })
    }

    /// Files rotated so far.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// The file written to (None for a stream).
    pub fn path(&self) -> Option<&Path> {
        match &self.out {
            Out::File { path, .. } => Some(path),
            Out::Stream(_) => None,
        }
    }

    /// Bytes still in the write buffer (not yet handed to the file or stream).
    fn buffered_bytes(&self) -> u64 {
        match &self.out {
            Out::Stream(w) => w.buffer().len() as u64,
            Out::File { w, .. } => w.buffer().len() as u64,
        }
    }

    /// Counts as durable the events whose bytes have all left the buffer.
    fn confirm_out_of_buffer(&mut self) {
        let out = self.ends.offered.saturating_sub(self.buffered_bytes());
        while self.ends.ends.front().is_some_and(|&e| e <= out) {
            self.ends.ends.pop_front();
            self.durable += 1;
        }
    }

    /// Events written so far (buffered or flushed).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The error for a failed write; `failed` events (0 or 1) were being written and are
    /// not counted in `written` yet.
    fn write_error(&mut self, source: std::io::Error, failed: u64) -> OutputError {
        if source.kind() == std::io::ErrorKind::BrokenPipe {
            return OutputError::BrokenPipe;
        }
        // The buffer keeps exactly the bytes it could not write out.
        self.confirm_out_of_buffer();
        OutputError::Write {
            path: self.name.clone(),
            events: self.durable,
            pending: (self.written + failed).saturating_sub(self.durable),
            source,
        }
    }

    /// Renames the current file to `<path>.<UTC time>[.<n>]` and starts a new one. A
    /// file someone else already moved or removed is not renamed; a rename or open that
    /// fails leaves the current file in use (a notice says so) and the next attempt a
    /// whole period or size later.
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
            let base = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("events")
                .to_string();
            let mut target = path.with_file_name(format!("{base}.{stamp}"));
            let mut k = 1;
            while target.exists() {
                target = path.with_file_name(format!("{base}.{stamp}.{k}"));
                k += 1;
            }
            // Only the file we have open is renamed: if the path now names another file
            // or none (moved or removed by hand), the events are in the moved file.
            let ours = same_file(std::fs::metadata(&*path), w.get_ref().metadata());
            let renamed = if ours {
                std::fs::rename(&*path, &target)
            } else {
                Ok(())
            };
            let opened_new = renamed.and_then(|()| open_for_lines(path));
            match opened_new {
                Ok((f, len, note)) => {
                    *w = std::io::BufWriter::with_capacity(1 << 16, f);
                    *bytes = len;
                    *opened = Instant::now();
                    self.rotations += 1;
                    self.notices.extend(note);
                }
                Err(e) => {
                    *bytes = 0;
                    *opened = Instant::now();
                    self.notices.push(format!(
                        "{name}: cannot rotate the output file ({e}); still writing to the \
                         file already open, next attempt after another rotation period or size"
                    ));
                }
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), OutputError> {
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
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn offer(&mut self, ev: &EventLine<'_>) -> Result<(), OutputError> {
        let len = ev.line.len() as u64;
        // The line and its newline are two writes: either can make the buffer write out
        // and fail, and the bytes of a line taken into the buffer count as offered.
        let line_then_newline = |w: &mut dyn Write, offered: &mut u64| {
            w.write_all(ev.line)?;
            *offered += len;
            w.write_all(b"\n")?;
            *offered += 1;
            Ok::<(), std::io::Error>(())
        };
        let res = match &mut self.out {
            Out::Stream(w) => line_then_newline(w, &mut self.ends.offered),
            Out::File { w, bytes, .. } => {
                *bytes += len + 1;
                line_then_newline(w, &mut self.ends.offered)
            }
        };
        if let Err(e) = res {
            return Err(self.write_error(e, 1));
        }
        self.written += 1;
        self.ends.ends.push_back(self.ends.offered);
        if self.ends.ends.len() >= 4096 {
            // Keep the list short when nothing flushes for long: the buffer holds 64 KiB.
            self.confirm_out_of_buffer();
        }
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

    fn flush(&mut self) -> Result<(), OutputError> {
        let r = match &mut self.out {
            Out::Stream(w) => w.flush(),
            Out::File { w, .. } => w.flush(),
        };
        if let Err(e) = r {
            return Err(self.write_error(e, 0));
        }
        self.durable = self.written;
        self.ends.ends.clear();
        Ok(())
    }

    /// Flushes and fsyncs a file output, then opens its path again (after logrotate moved
    /// it). Streams are only flushed. The same file reopened keeps its age; a path that
    /// cannot be opened leaves the current file in use, with a notice.
    fn reopen(&mut self) -> Result<(), OutputError> {
        self.flush()?;
        let sync = self.sync();
        if let Out::File {
            w,
            path,
            bytes,
            opened,
            ..
        } = &mut self.out
        {
            match open_for_lines(path) {
                Ok((f, len, note)) => {
                    if !same_file(f.metadata(), w.get_ref().metadata()) {
                        *opened = started(&f);
                    }
                    *bytes = len;
                    *w = std::io::BufWriter::with_capacity(1 << 16, f);
                    self.notices.extend(note);
                }
                Err(e) => self.notices.push(format!(
                    "{}: cannot reopen the output file after SIGHUP ({e}); still writing to \
                     the file opened before (under its new name if it was moved)",
                    path.display()
                )),
            }
        }
        sync
    }

    fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    fn state_path(&self) -> Option<PathBuf> {
        self.path().map(Path::to_path_buf)
    }

    fn rotate_if_due(&mut self) -> Result<(), OutputError> {
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

    fn stats(&self) -> SinkStats {
        SinkStats {
            sink: self.name.clone(),
            kind: "file",
            delivered: self.durable,
            buffered: self.written - self.durable,
            rotations: self.rotations,
            connected: true,
            confirms: true,
            ..SinkStats::default()
        }
    }

    fn drain(&mut self, _deadline: std::time::Instant) -> Result<(), OutputError> {
        self.flush()
    }

    fn close(&mut self, _deadline: std::time::Instant) -> Result<(), OutputError> {
        self.flush()?;
        self.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::EventKind;

    fn offer(s: &mut FileSink, text: &str) -> Result<(), OutputError> {
        s.offer(&EventLine::new(text.as_bytes(), "k", 0, EventKind::Flow))
    }

    fn lines_in(dir: &Path) -> Vec<String> {
        let mut all = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{} does not end in a newline",
                f.display()
            );
            all.extend(text.lines().map(str::to_owned));
        }
        all.sort();
        all
    }

    #[test]
    fn rotation_of_a_file_moved_away_opens_a_new_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ev.jsonl");
        let rot = Rotation {
            max_bytes: Some(30),
            max_secs: None,
        };
        let mut s = FileSink::append(&path, rot).expect("open");
        offer(&mut s, "{\"n\":1}").expect("write 1");
        // logrotate's rename, before its SIGHUP (or a person's `mv`).
        std::fs::rename(&path, dir.path().join("moved.jsonl")).expect("mv");
        for n in 2..=9 {
            offer(&mut s, &format!("{{\"n\":{n}}}")).expect("write after the move");
        }
        s.flush().expect("flush");
        assert!(s.rotations() >= 1);
        assert!(s.take_notices().is_empty());
        let got = lines_in(dir.path());
        let want: Vec<String> = (1..=9).map(|n| format!("{{\"n\":{n}}}")).collect();
        let mut want = want;
        want.sort();
        assert_eq!(
            got, want,
            "every event once, across the moved and the new files"
        );
    }

    #[test]
    fn a_failed_reopen_keeps_writing_to_the_open_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sub = dir.path().join("logs");
        std::fs::create_dir(&sub).expect("mkdir");
        let mut s = FileSink::append(&sub.join("ev.jsonl"), Rotation::default()).expect("open");
        offer(&mut s, "{\"n\":1}").expect("write 1");
        // The directory goes away under the sensor: the path cannot be opened again.
        let gone = dir.path().join("logs.old");
        std::fs::rename(&sub, &gone).expect("mv dir");
        s.reopen().expect("a failed reopen is not a write error");
        let notes = s.take_notices();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("cannot reopen"), "{notes:?}");
        offer(&mut s, "{\"n\":2}").expect("write 2");
        s.close(Instant::now()).expect("close");
        let text = std::fs::read_to_string(gone.join("ev.jsonl")).expect("read");
        assert_eq!(text, "{\"n\":1}\n{\"n\":2}\n");
    }

    #[test]
    fn reopening_the_same_file_keeps_its_age() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ev.jsonl");
        let rot = Rotation {
            max_bytes: None,
            max_secs: Some(3600),
        };
        let mut s = FileSink::append(&path, rot).expect("open");
        offer(&mut s, "{}").expect("write");
        let Out::File { opened, .. } = &mut s.out else {
            panic!("a file sink")
        };
        // Pretend the file was started 50 minutes ago.
        let Some(earlier) = Instant::now().checked_sub(std::time::Duration::from_secs(3000)) else {
            return; // a machine up for less than 50 minutes
        };
        *opened = earlier;
        s.reopen().expect("reopen");
        let Out::File { opened, .. } = &s.out else {
            panic!("a file sink")
        };
        assert!(
            opened.elapsed().as_secs() >= 3000,
            "SIGHUP without a move restarted the rotation clock"
        );
        // Moved away first: the new file starts a new period.
        std::fs::rename(&path, dir.path().join("old")).expect("mv");
        s.reopen().expect("reopen");
        let Out::File { opened, .. } = &s.out else {
            panic!("a file sink")
        };
        assert!(opened.elapsed().as_secs() < 60);
    }

    #[test]
    fn a_torn_last_line_is_ended_before_new_events() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ev.jsonl");
        std::fs::write(&path, "{\"n\":1}\n{\"n\":2,\"cut").expect("write torn file");
        let mut s = FileSink::append(&path, Rotation::default()).expect("open");
        let notes = s.take_notices();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("bytes 8..19"), "{notes:?}");
        offer(&mut s, "{\"n\":3}").expect("write");
        s.close(Instant::now()).expect("close");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "{\"n\":1}\n{\"n\":2,\"cut\n{\"n\":3}\n");
        // A file that ends properly is left alone.
        let mut again = FileSink::append(&path, Rotation::default()).expect("reopen");
        assert!(again.take_notices().is_empty());
    }

    /// `/dev/null` (or a FIFO) as the output is a stream: rotation must never rename it.
    #[test]
    fn a_device_as_output_is_never_rotated() {
        let rot = Rotation {
            max_bytes: Some(1),
            max_secs: Some(1),
        };
        let mut s = FileSink::append(Path::new("/dev/null"), rot).expect("open /dev/null");
        for _ in 0..5 {
            offer(&mut s, "{}").expect("write");
        }
        s.rotate_if_due().expect("rotate check");
        s.reopen().expect("reopen");
        s.close(Instant::now())
            .expect("close: no fsync of a device");
        assert_eq!(s.rotations(), 0);
        assert!(
            s.path().is_none(),
            "a device is not handed to --user either"
        );
        let notes = s.take_notices();
        assert!(
            notes.iter().any(|n| n.contains("not a regular file")),
            "{notes:?}"
        );
        let meta = std::fs::metadata("/dev/null").expect("/dev/null");
        assert!(!meta.is_file(), "/dev/null was replaced by a regular file");
    }

    /// Accepts `room` bytes, then fails like a full disk.
    struct FullAfter {
        room: usize,
    }

    impl Write for FullAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A line that exactly fills the buffer is taken without a write; the newline after
    /// it makes the buffer write out and fail: the first event did reach the disk.
    #[test]
    fn a_full_disk_on_the_newline_still_counts_what_reached_it() {
        let mut s = FileSink::stream(Box::new(FullAfter { room: 50_000 }), "disk");
        let first = "a".repeat(40_000);
        offer(&mut s, &first).expect("buffered");
        let second = "b".repeat((1 << 16) - 40_001);
        match offer(&mut s, &second) {
            Err(OutputError::Write {
                events, pending, ..
            }) => assert_eq!((events, pending), (1, 1)),
            other => panic!("expected a write error, got {other:?}"),
        }
    }

    #[test]
    fn a_full_disk_reports_the_events_that_reached_it() {
        // 1,000-byte lines; room for 200.5 of them; the 64 KiB buffer writes out by itself.
        let mut s = FileSink::stream(Box::new(FullAfter { room: 200_500 }), "disk");
        let line = format!("{{\"pad\":\"{}\"}}", "x".repeat(999 - 10));
        assert_eq!(line.len(), 999);
        let mut offered = 0u64;
        let err = loop {
            match offer(&mut s, &line) {
                Ok(()) => offered += 1,
                Err(e) => break e,
            }
            assert!(offered < 1_000, "the writer never failed");
        };
        match err {
            OutputError::Write {
                events, pending, ..
            } => {
                assert_eq!(events, 200, "events wholly written before the failure");
                assert_eq!(events + pending, offered + 1, "every event accounted");
                assert!(
                    pending * 1_000 <= (1 << 16) + 1_000,
                    "at most one buffer pending"
                );
            }
            other => panic!("expected a write error, got {other}"),
        }
    }
}
