//! A network sink: a bounded in-memory queue, a spill directory behind it, and one thread
//! that moves events to the receiver through a [`Transport`] and counts the receiver's
//! answers. Owns ordering, retries, the spill hand-over and the delivery accounting; the
//! wire protocols are the transports' (`kafka`, `redis`, `syslog`).
//!
//! Order: the writer puts each event into the queue with `try_send`; when the queue is
//! full it switches to *spilling* and appends every later event to the spill directory
//! until the sink thread has sent the queue, then the spill, and found both empty; only
//! then does it switch back (under the spill lock, so no event overtakes another). Events
//! left in a previous run's spill are sent before anything new. The writer never waits
//! for the receiver: the worst it does is one local disk append.
//!
//! Delivery: the thread sends batches and keeps every event that was not acknowledged,
//! retrying it (with backoff while the receiver is unreachable) before anything newer.
//! Spilled events are removed from the spill only once acknowledged, so a crash re-sends
//! rather than loses them. At close, whatever is still in memory is written to the front
//! of the spill for the next run.

use super::spill::{AppendError, Pos, Spill};
use super::{Record, Sink, SinkError, SinkSpec, SinkStats, DROP_REASONS};
use crate::error::OutputError;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// First wait after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// How often an idle sink thread looks at its queue and its stop flag.
const IDLE_POLL: Duration = Duration::from_millis(20);

/// The wire side of a network sink, driven by its thread.
pub trait Transport: Send + 'static {
    /// `kafka`, `redis`, `syslog+tcp`, `syslog+udp`.
    fn kind(&self) -> &'static str;
    /// Connects (or checks the receiver); called whenever [`Transport::is_connected`] is
    /// false and there is something to send.
    fn connect(&mut self) -> Result<(), String>;
    /// Whether the last operation left a usable connection.
    fn is_connected(&self) -> bool;
    /// Sends `batch` in order and sets `acked[i]` for each event the receiver
    /// acknowledged (`acked` has the batch's length, all false). Returns the error when
    /// any event was not acknowledged. Must return by about `deadline`.
    fn send(
        &mut self,
        batch: &[Arc<Record>],
        acked: &mut [bool],
        deadline: Instant,
    ) -> Result<(), String>;
    /// Whether an acknowledgement means the receiver has the event (false for UDP).
    fn confirms(&self) -> bool {
        true
    }
    /// Events re-sent since the last call because their arrival was uncertain (syslog
    /// over TCP after a broken connection).
    fn take_resent(&mut self) -> u64 {
        0
    }
    /// Longest time one [`Transport::send`] normally takes before giving up.
    fn send_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
    /// At shutdown: events counted as delivered whose arrival is uncertain because the
    /// connection broke after them and was not made again (syslog over TCP's resend
    /// window), oldest first. They are kept in the spill for the next run.
    fn take_uncertain(&mut self) -> Vec<Arc<Record>> {
        Vec::new()
    }
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    sent_unconfirmed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    spilled: AtomicU64,
    dropped_full: AtomicU64,
    dropped_error: AtomicU64,
    in_flight: AtomicU64,
    recovered: AtomicU64,
    connected: AtomicBool,
}

struct SpillState {
    spill: Spill,
    /// New events go to the spill (not the queue) until the thread has caught up.
    active: bool,
}

#[derive(Default)]
struct Ctl {
    /// Offers the thread has seen fully handled (delivered or dropped).
    idle_mark: u64,
    /// Stop by this time (close).
    stop_at: Option<Instant>,
}

struct Shared {
    spill: Mutex<SpillState>,
    spilling: AtomicBool,
    counters: Counters,
    offered: AtomicU64,
    ctl: Mutex<Ctl>,
    cv: Condvar,
    last_error: Mutex<Option<String>>,
    last_spill_error: Mutex<Option<String>>,
}

impl Shared {
    fn set_error(&self, e: String) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(e);
        }
    }

    /// A problem of the spill directory (events may be lost): kept apart from delivery
    /// errors so a later "connection refused" does not hide it.
    fn set_spill_error(&self, e: String) {
        if let Ok(mut g) = self.last_spill_error.lock() {
            *g = Some(e.clone());
        }
        self.set_error(e);
    }

    /// Counts the spilled records that a failed disk write took off the spill as dropped
    /// (`spill_error`).
    fn account_loss(&self, spill: &mut Spill) {
        if let Some((n, msg)) = spill.take_loss() {
            self.counters.dropped_error.fetch_add(n, Ordering::Relaxed);
            self.set_spill_error(format!("{msg}; {n} spilled events lost"));
        }
    }
}

/// A network sink (see the module docs).
pub struct QueuedSink {
    name: String,
    dir: std::path::PathBuf,
    kind: &'static str,
    confirms: bool,
    tx: Sender<Arc<Record>>,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl QueuedSink {
    /// Opens the sink's spill directory under `spill_root` (recovering what an earlier run
    /// left) and starts its thread.
    pub fn start<T: Transport>(
        spec: &SinkSpec,
        spill_root: &std::path::Path,
        sensor_id: &str,
        transport: T,
    ) -> Result<QueuedSink, SinkError> {
        let dir = spill_root.join(spec.spill_subdir(sensor_id));
        let (spill, recovered) =
            Spill::open(&dir, spec.spill_max_bytes).map_err(|detail| SinkError::Spill {
                url: spec.name.clone(),
                dir: dir.display().to_string(),
                detail,
            })?;
        let active = spill.pending() > 0;
        let shared = Arc::new(Shared {
            spill: Mutex::new(SpillState { spill, active }),
            spilling: AtomicBool::new(active),
            counters: Counters::default(),
            offered: AtomicU64::new(0),
            ctl: Mutex::new(Ctl::default()),
            cv: Condvar::new(),
            last_error: Mutex::new(None),
            last_spill_error: Mutex::new(None),
        });
        shared
            .counters
            .recovered
            .store(recovered.records, Ordering::Relaxed);
        if recovered.corrupt_records > 0 {
            shared.set_spill_error(format!(
                "spill {}: {} records fail their checksum; they are skipped and counted as dropped",
                dir.display(),
                recovered.corrupt_records
            ));
        }
        if recovered.damaged_bytes > 0 {
            shared.set_spill_error(format!(
                "spill {}: {} damaged bytes cut off (a torn write from a crash)",
                dir.display(),
                recovered.damaged_bytes
            ));
        }
        let (tx, rx) = bounded::<Arc<Record>>(spec.queue_events);
        let kind = transport.kind();
        let confirms = transport.confirms();
        let sh = shared.clone();
        let batch = spec.batch;
        let thread = std::thread::Builder::new()
            .name(format!("sink-{kind}"))
            .spawn(move || Worker::new(transport, rx, sh, batch).run())
            .map_err(|e| SinkError::Client {
                url: spec.name.clone(),
                detail: format!("cannot start the sink thread: {e}"),
            })?;
        Ok(QueuedSink {
            name: spec.name.clone(),
            dir,
            kind,
            confirms,
            tx,
            shared,
            thread: Some(thread),
        })
    }

    /// Appends to the spill (`queue_full`: the queue just refused it).
    fn spill(&self, rec: Arc<Record>, queue_full: bool) {
        let c = &self.shared.counters;
        let Ok(mut st) = self.shared.spill.lock() else {
            c.dropped_error.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut rec = rec;
        if !st.active && !queue_full {
            // The thread caught up meanwhile: the queue is the right place again.
            match self.tx.try_send(rec) {
                Ok(()) => return,
                Err(TrySendError::Full(r)) | Err(TrySendError::Disconnected(r)) => rec = r,
            }
        }
        st.active = true;
        self.shared.spilling.store(true, Ordering::Release);
        let res = st.spill.append(&rec);
        self.shared.account_loss(&mut st.spill);
        match res {
            Ok(()) => {
                c.spilled.fetch_add(1, Ordering::Relaxed);
            }
            Err(AppendError::Full) => {
                c.dropped_full.fetch_add(1, Ordering::Relaxed);
            }
            Err(AppendError::Io(e)) => {
                c.dropped_error.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .set_spill_error(format!("cannot write the spill directory: {e}"));
            }
        }
    }
}

impl Sink for QueuedSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn offer(&mut self, ev: &super::EventLine<'_>) -> Result<(), OutputError> {
        let rec = ev.record();
        if self.shared.spilling.load(Ordering::Acquire) {
            self.spill(rec, false);
        } else {
            match self.tx.try_send(rec) {
                Ok(()) => {}
                Err(TrySendError::Full(r)) | Err(TrySendError::Disconnected(r)) => {
                    self.spill(r, true)
                }
            }
        }
        // After the event is in the queue or the spill (see `Worker::idle`).
        self.shared.offered.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn state_path(&self) -> Option<std::path::PathBuf> {
        Some(self.dir.clone())
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        if self.shared.spilling.load(Ordering::Acquire) {
            if let Ok(mut st) = self.shared.spill.lock() {
                if st.spill.flush().is_err() {
                    self.shared.account_loss(&mut st.spill);
                }
            }
        }
        Ok(())
    }

    fn stats(&self) -> SinkStats {
        let c = &self.shared.counters;
        let (spill_events, spill_bytes) = self
            .shared
            .spill
            .lock()
            .map(|st| (st.spill.pending(), st.spill.bytes()))
            .unwrap_or((0, 0));
        let full = c.dropped_full.load(Ordering::Relaxed);
        let err = c.dropped_error.load(Ordering::Relaxed);
        let mut dropped = std::collections::BTreeMap::new();
        for r in DROP_REASONS {
            dropped.insert(r, 0);
        }
        dropped.insert("spill_full", full);
        dropped.insert("spill_error", err);
        SinkStats {
            sink: self.name.clone(),
            kind: self.kind,
            delivered: c.delivered.load(Ordering::Relaxed),
            sent_unconfirmed: c.sent_unconfirmed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            spilled: c.spilled.load(Ordering::Relaxed),
            dropped,
            dropped_total: full + err,
            queued: self.tx.len() as u64,
            in_flight: c.in_flight.load(Ordering::Relaxed),
            spill_events,
            spill_bytes,
            recovered: c.recovered.load(Ordering::Relaxed),
            connected: c.connected.load(Ordering::Relaxed),
            confirms: self.confirms,
            buffered: 0,
            rotations: 0,
            last_error: self.shared.last_error.lock().ok().and_then(|g| g.clone()),
            last_spill_error: self
                .shared
                .last_spill_error
                .lock()
                .ok()
                .and_then(|g| g.clone()),
        }
    }

    fn drain(&mut self, deadline: Instant) -> Result<(), OutputError> {
        self.flush()?;
        let want = self.shared.offered.load(Ordering::Acquire);
        let Ok(mut g) = self.shared.ctl.lock() else {
            return Ok(());
        };
        while g.idle_mark < want {
            let now = Instant::now();
            if now >= deadline || self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                break;
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            g = match self.shared.cv.wait_timeout(g, wait) {
                Ok((g, _)) => g,
                Err(_) => return Ok(()),
            };
        }
        Ok(())
    }

    fn close(&mut self, deadline: Instant) -> Result<(), OutputError> {
        self.flush()?;
        if let Ok(mut g) = self.shared.ctl.lock() {
            g.stop_at = Some(deadline);
        }
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                return Err(OutputError::Thread {
                    what: format!("sink {} thread", self.name),
                    detail: "stopped unexpectedly; its spill directory keeps what it had stored"
                        .into(),
                });
            }
        }
        Ok(())
    }
}

impl Drop for QueuedSink {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // Not closed explicitly (an error path): keep what is queued, wait briefly.
            let _ = self.close(Instant::now() + Duration::from_millis(500));
        }
    }
}

/// An event taken from the queue or the spill and not yet acknowledged.
struct Item {
    rec: Arc<Record>,
    attempts: u32,
    /// Where it ends in the spill, when it came from there.
    pos: Option<Pos>,
}

struct Worker<T: Transport> {
    t: T,
    rx: Receiver<Arc<Record>>,
    sh: Arc<Shared>,
    batch: usize,
    pending: VecDeque<Item>,
    backoff: Duration,
    next_try: Instant,
}

impl<T: Transport> Worker<T> {
    fn new(t: T, rx: Receiver<Arc<Record>>, sh: Arc<Shared>, batch: usize) -> Worker<T> {
        Worker {
            t,
            rx,
            sh,
            batch,
            pending: VecDeque::new(),
            backoff: MIN_BACKOFF,
            next_try: Instant::now(),
        }
    }

    fn stop_at(&self) -> Option<Instant> {
        self.sh.ctl.lock().ok().and_then(|g| g.stop_at)
    }

    /// Nothing queued, spilled or pending: everything offered up to `mark` is handled.
    fn idle(&self, mark: u64) {
        if let Ok(mut g) = self.sh.ctl.lock() {
            g.idle_mark = g.idle_mark.max(mark);
        }
        self.sh.cv.notify_all();
    }

    /// Takes the next events to send: the queue first, then the spill. Returns false when
    /// there is nothing at all (after waiting a little for the queue).
    fn refill(&mut self) -> bool {
        while self.pending.len() < self.batch {
            match self.rx.try_recv() {
                Ok(rec) => self.pending.push_back(Item {
                    rec,
                    attempts: 0,
                    pos: None,
                }),
                Err(_) => break,
            }
        }
        if !self.pending.is_empty() {
            return true;
        }
        // Read `offered` before looking: every offer counted in it is already stored.
        let mark = self.sh.offered.load(Ordering::Acquire);
        let mut buf = Vec::new();
        {
            let Ok(mut st) = self.sh.spill.lock() else {
                return false;
            };
            if st.spill.unread() > 0 {
                let res = st.spill.read(self.batch, &mut buf);
                self.sh.account_loss(&mut st.spill);
                if let Err(e) = res {
                    // Unreadable records: counted as dropped, never silently skipped.
                    let lost = st.spill.discard();
                    self.sh
                        .counters
                        .dropped_error
                        .fetch_add(lost, Ordering::Relaxed);
                    self.sh.set_spill_error(format!(
                        "cannot read the spill directory: {e}; {lost} events lost"
                    ));
                }
            } else if st.spill.pending() == 0 && self.rx.is_empty() && st.active {
                st.active = false;
                self.sh.spilling.store(false, Ordering::Release);
            }
            if buf.is_empty() && !st.active && self.rx.is_empty() {
                drop(st);
                self.idle(mark);
            }
        }
        if buf.is_empty() {
            match self.rx.recv_timeout(IDLE_POLL) {
                Ok(rec) => self.pending.push_back(Item {
                    rec,
                    attempts: 0,
                    pos: None,
                }),
                Err(_) => return false,
            }
        } else {
            for (rec, pos) in buf {
                self.pending.push_back(Item {
                    rec,
                    attempts: 0,
                    pos: Some(pos),
                });
            }
        }
        true
    }

    fn fail_connect(&mut self, e: String) {
        self.sh.counters.connected.store(false, Ordering::Relaxed);
        self.sh.set_error(e);
        self.next_try = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn publish_in_flight(&self) {
        let n = self.pending.iter().filter(|i| i.pos.is_none()).count();
        self.sh
            .counters
            .in_flight
            .store(n as u64, Ordering::Relaxed);
    }

    fn run(mut self) {
        let mut acked: Vec<bool> = Vec::new();
        loop {
            let stop_at = self.stop_at();
            let now = Instant::now();
            if let Some(at) = stop_at {
                let nothing = self.pending.is_empty()
                    && self.rx.is_empty()
                    && self
                        .sh
                        .spill
                        .lock()
                        .map(|s| s.spill.pending() == 0)
                        .unwrap_or(true);
                if now >= at || nothing {
                    break;
                }
            }
            if self.pending.is_empty() && !self.refill() {
                continue;
            }
            self.publish_in_flight();
            if now < self.next_try {
                // Backing off after a failure (connection or refused events).
                std::thread::sleep((self.next_try - now).min(IDLE_POLL));
                continue;
            }
            if !self.t.is_connected() {
                match self.t.connect() {
                    Ok(()) => {
                        self.sh.counters.connected.store(true, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.fail_connect(e);
                        continue;
                    }
                }
            }
            let n = self.pending.len().min(self.batch);
            let batch: Vec<Arc<Record>> =
                self.pending.iter().take(n).map(|i| i.rec.clone()).collect();
            let c = &self.sh.counters;
            let again = self
                .pending
                .iter()
                .take(n)
                .filter(|i| i.attempts > 0)
                .count();
            c.retried.fetch_add(again as u64, Ordering::Relaxed);
            acked.clear();
            acked.resize(n, false);
            let mut deadline = Instant::now() + self.t.send_timeout();
            if let Some(at) = stop_at {
                deadline = deadline.min(at.max(Instant::now() + Duration::from_millis(200)));
            }
            let res = self.t.send(&batch, &mut acked, deadline);
            c.retried.fetch_add(self.t.take_resent(), Ordering::Relaxed);
            let ok = acked.iter().filter(|&&a| a).count() as u64;
            if self.t.confirms() {
                c.delivered.fetch_add(ok, Ordering::Relaxed);
            } else {
                c.sent_unconfirmed.fetch_add(ok, Ordering::Relaxed);
            }
            c.failed.fetch_add(n as u64 - ok, Ordering::Relaxed);
            // The spill may drop what was acknowledged in an unbroken run from the front.
            let mut commit = None;
            for (i, a) in acked.iter().enumerate() {
                if !a {
                    break;
                }
                commit = self.pending.get(i).and_then(|it| it.pos).or(commit);
            }
            let mut keep = VecDeque::with_capacity(self.pending.len());
            for (i, mut item) in self.pending.drain(..).enumerate() {
                if i < n && acked[i] {
                    continue;
                }
                if i < n {
                    item.attempts += 1;
                }
                keep.push_back(item);
            }
            self.pending = keep;
            if let Some(p) = commit {
                if let Ok(mut st) = self.sh.spill.lock() {
                    st.spill.commit(p);
                }
            }
            self.publish_in_flight();
            match res {
                Ok(()) => {
                    self.backoff = MIN_BACKOFF;
                    c.connected.store(self.t.is_connected(), Ordering::Relaxed);
                }
                Err(e) => self.fail_connect(e),
            }
        }
        self.shutdown();
    }

    /// Keeps everything not delivered for the next run: events taken from the queue (and
    /// the rest of the queue) go to the front of the spill; events read from the spill
    /// are still in it (not committed).
    fn shutdown(&mut self) {
        // The oldest first: events sent before a break that was never repaired, then the
        // queue's.
        let mut front = self.t.take_uncertain();
        let uncertain = front.len() as u64;
        front.extend(
            self.pending
                .iter()
                .filter(|i| i.pos.is_none())
                .map(|i| i.rec.clone()),
        );
        while let Ok(r) = self.rx.try_recv() {
            front.push(r);
        }
        let c = &self.sh.counters;
        // Counted as delivered when the kernel took them; now spilled (or dropped).
        let _ = c
            .delivered
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(uncertain))
            });
        if let Ok(mut st) = self.sh.spill.lock() {
            match st.spill.prepend(&front) {
                Ok(()) => {
                    c.spilled.fetch_add(front.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    c.dropped_error
                        .fetch_add(front.len() as u64, Ordering::Relaxed);
                    self.sh.set_spill_error(format!(
                        "cannot keep {} undelivered events in the spill directory: {e}",
                        front.len()
                    ));
                }
            }
            if let Err(e) = st.spill.sync() {
                self.sh.account_loss(&mut st.spill);
                self.sh
                    .set_spill_error(format!("cannot sync the spill directory: {e}"));
            }
        }
        c.in_flight.store(0, Ordering::Relaxed);
        self.idle(self.sh.offered.load(Ordering::Acquire));
    }
}
