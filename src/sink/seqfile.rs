//! The persisted `seq` counter of a sensor: the file holds the highest `seq` this sensor
//! may have used, so a restarted sensor continues after it and `(sensor_id, seq)` stays
//! unique across restarts (the key a consumer de-duplicates at-least-once deliveries by).
//! Numbers are reserved in blocks so the file is written once per [`BLOCK`] events, not per
//! event; a clean stop records the exact last `seq`, a crash leaves a gap of less than one
//! block (never a repeat). The file is opened once (before a `--user` privilege drop) and
//! rewritten in place: 20 digits and a newline at offset 0, then `fdatasync`. Owns only
//! that file.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Numbers reserved per write of the file.
pub const BLOCK: u64 = 65_536;

/// A sensor's `seq` file.
#[derive(Debug)]
pub struct SeqFile {
    path: PathBuf,
    file: std::fs::File,
    reserved: u64,
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> String {
    format!("{}: cannot {what} the seq file: {e}", path.display())
}

impl SeqFile {
    /// Opens (or starts) the file; returns it and the last `seq` used before (0 if new).
    pub fn open(path: &Path) -> Result<(SeqFile, u64), String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io_err(path, "create the folder of", e))?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err(path, "open", e))?;
        let text = std::fs::read_to_string(path).map_err(|e| io_err(path, "read", e))?;
        let last = if text.trim().is_empty() {
            0
        } else {
            text.trim().parse::<u64>().map_err(|_| {
                format!(
                    "{}: the seq file does not hold a number ({:?}); fix or remove it",
                    path.display(),
                    text.trim()
                )
            })?
        };
        Ok((
            SeqFile {
                path: path.to_path_buf(),
                file,
                reserved: last,
            },
            last,
        ))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn store(&self, v: u64) -> Result<(), String> {
        self.file
            .write_all_at(format!("{v:020}\n").as_bytes(), 0)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_err(&self.path, "write", e))
    }

    /// Makes sure `seq` is covered by a reservation written to disk.
    #[inline]
    pub fn cover(&mut self, seq: u64) -> Result<(), String> {
        if seq <= self.reserved {
            return Ok(());
        }
        let upto = seq.saturating_add(BLOCK - 1);
        self.store(upto)?;
        self.reserved = upto;
        Ok(())
    }

    /// A clean stop: records the exact last `seq`.
    pub fn close(&mut self, last: u64) -> Result<(), String> {
        self.store(last)?;
        self.reserved = last;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_after_a_clean_stop_and_skips_a_block_after_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("s.seq");
        let (mut f, last) = SeqFile::open(&p).expect("open");
        assert_eq!(last, 0);
        for s in 1..=10 {
            f.cover(s).expect("cover");
        }
        f.close(10).expect("close");
        let (mut f, last) = SeqFile::open(&p).expect("reopen");
        assert_eq!(last, 10);
        f.cover(11).expect("cover");
        drop(f); // a crash: no close
        let (_, last) = SeqFile::open(&p).expect("reopen");
        assert_eq!(
            last,
            10 + BLOCK,
            "the reserved block is skipped, never reused"
        );
        std::fs::write(&p, "junk").expect("write");
        assert!(SeqFile::open(&p).is_err());
    }
}
