//! The file sink: JSON Lines to stdout or a file, buffered, with rotation by size or age,
//! reopen on SIGHUP (logrotate) and fsync on rotation, reopen and close. It writes on the
//! writer thread (a local disk is the baseline every other sink is measured against), and a
//! write error stops the run with the count of events confirmed written: spilling to the
//! disk that just failed would not help. Owns the `--out` output and every `file:` sink;
//! does not serialise events (that is [`crate::event`]).

use super::{EventLine, Sink, SinkStats};
use crate::error::OutputError;
use crate::event::Rotation;
use crate::time::Timestamp;
use std::io::Write;
use std::path::{Path, PathBuf};

enum Out {
    Stream(std::io::BufWriter<Box<dyn Write + Send>>),
    File {
        w: std::io::BufWriter<std::fs::File>,
        path: PathBuf,
        rotation: Rotation,
        bytes: u64,
        opened: std::time::Instant,
    },
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// JSON Lines to a stream or a (rotating) file.
pub struct FileSink {
    out: Out,
    name: String,
    written: u64,
    /// Events known to have reached the output (counted at each successful flush).
    durable: u64,
    rotations: u64,
}

impl FileSink {
    /// Wraps a byte stream; `name` is used in error messages (a path or "stdout").
    pub fn stream(out: Box<dyn Write + Send>, name: &str) -> FileSink {
        FileSink {
            out: Out::Stream(std::io::BufWriter::with_capacity(1 << 16, out)),
            name: name.to_string(),
            written: 0,
            durable: 0,
            rotations: 0,
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
    pub fn append(path: &Path, rotation: Rotation) -> Result<FileSink, OutputError> {
        let name = path.display().to_string();
        let f = open_append(path).map_err(|source| OutputError::Open {
            path: name.clone(),
            source,
        })?;
        let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(FileSink {
            out: Out::File {
                w: std::io::BufWriter::with_capacity(1 << 16, f),
                path: path.to_path_buf(),
                rotation,
                bytes,
                opened: std::time::Instant::now(),
            },
            name,
            written: 0,
            durable: 0,
            rotations: 0,
        })
    }

    /// Files rotated so far.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// Events written so far (buffered or flushed).
    pub fn written(&self) -> u64 {
        self.written
    }

    fn write_error(&self, source: std::io::Error, pending: u64) -> OutputError {
        if source.kind() == std::io::ErrorKind::BrokenPipe {
            OutputError::BrokenPipe
        } else {
            OutputError::Write {
                path: self.name.clone(),
                events: self.durable,
                pending,
                source,
            }
        }
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
            std::fs::rename(&*path, &target).map_err(werr)?;
            let f = open_append(path).map_err(werr)?;
            *w = std::io::BufWriter::with_capacity(1 << 16, f);
            *bytes = 0;
            *opened = std::time::Instant::now();
            self.rotations += 1;
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
        let res = match &mut self.out {
            Out::Stream(w) => w.write_all(ev.line).and_then(|()| w.write_all(b"\n")),
            Out::File { w, bytes, .. } => {
                *bytes += ev.line.len() as u64 + 1;
                w.write_all(ev.line).and_then(|()| w.write_all(b"\n"))
            }
        };
        if let Err(e) = res {
            let pending = (self.written + 1).saturating_sub(self.durable);
            return Err(self.write_error(e, pending));
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

    fn flush(&mut self) -> Result<(), OutputError> {
        let r = match &mut self.out {
            Out::Stream(w) => w.flush(),
            Out::File { w, .. } => w.flush(),
        };
        if let Err(e) = r {
            let pending = self.written.saturating_sub(self.durable);
            return Err(self.write_error(e, pending));
        }
        self.durable = self.written;
        Ok(())
    }

    /// Flushes and fsyncs a file output, then opens its path again (after logrotate moved
    /// it). Streams are only flushed.
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
            let f = open_append(path).map_err(|source| OutputError::Open {
                path: path.display().to_string(),
                source,
            })?;
            *bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
            *w = std::io::BufWriter::with_capacity(1 << 16, f);
            *opened = std::time::Instant::now();
        }
        sync
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
