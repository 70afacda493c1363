//! A one-line progress display on stderr for long replays: bytes read of the total and
//! packets per second. Only when stderr is a terminal; never on a pipe or in a log.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Progress state (wall clock is used here only, never in flow logic).
pub struct Progress {
    enabled: bool,
    start: Instant,
    last: Instant,
    total_bytes: Option<u64>,
    done_bytes: u64,
    shown: bool,
}

impl Progress {
    /// Enabled only if `want` and stderr is a terminal.
    pub fn new(want: bool, total_bytes: Option<u64>) -> Progress {
        let now = Instant::now();
        Progress {
            enabled: want && std::io::stderr().is_terminal(),
            start: now,
            last: now,
            total_bytes,
            done_bytes: 0,
            shown: false,
        }
    }

    /// Marks the bytes of finished inputs (so the bar spans several files).
    pub fn finish_input(&mut self, bytes: u64) {
        self.done_bytes += bytes;
    }

    /// Redraws at most 4 times a second.
    pub fn update(&mut self, name: &str, offset: u64, frames: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.last) < Duration::from_millis(250) {
            return;
        }
        self.last = now;
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-9);
        let done = self.done_bytes + offset;
        let pct = self
            .total_bytes
            .filter(|&t| t > 0)
            .map(|t| format!("{:5.1}% ", 100.0 * done as f64 / t as f64))
            .unwrap_or_default();
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r{pct}{:.1} MB  {:.2} Mpps  {}\x1b[K",
            done as f64 / 1e6,
            frames as f64 / secs / 1e6,
            name
        );
        self.shown = true;
    }

    /// Clears the line.
    pub fn clear(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
            self.shown = false;
        }
    }
}
