//! The pipeline: capture → decode → fragment attribution → flow table → ordered records
//! → events, for a replay of one or more capture files (in order, one flow space across
//! them), with the end-of-input flush and the closing `stats` event.
//!
//! Two shapes run the same stages and write byte-identical output:
//! - inline (`workers = 0`): one thread, one [`FlowTable`];
//! - threaded (`workers = N`): a capture thread decodes each frame in place, attributes
//!   fragments, stamps the global flow clock and routes the `Copy` packet summary by the
//!   symmetric flow-key hash, in batches over bounded `crossbeam-channel` queues, to N
//!   worker threads that each own one shard of the flow table; the calling thread merges
//!   their records in deterministic order ([`Reorder`]) and writes events. No lock is
//!   taken on the per-packet path; replay never drops (a full queue blocks the reader).
//!
//! Output is the same for any worker count as long as the memory cap is not reached (the
//! cap is split evenly across shards, so eviction choices can differ).

use crate::capture::{Backend, Input, Source};
use crate::error::OutputError;
use crate::event::EventWriter;
use crate::flow::{EndReason, FlowConfig, FlowCounters, FlowKey, FlowRecord, FlowTable};
use crate::fragment::{FragOutcome, FragmentTable};
use crate::order::Reorder;
use crate::packet::{Frame, IpPacket, PacketSummary, Tunnel};
use crate::progress::Progress;
use crate::stats::{InputStats, Stats};
use crate::time::{Nanos, Timestamp};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::time::Instant;

/// Frames read per dispatch call; after each call every shard learns the clock.
const DISPATCH: usize = 4096;
/// Packets per batch sent to a worker.
const BATCH_PKTS: usize = 256;
/// Batches queued per worker.
const QUEUE_BATCHES: usize = 64;

/// Settings of a replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Inputs, read in order.
    pub inputs: Vec<Input>,
    /// File reader.
    pub backend: Backend,
    /// Optional BPF filter.
    pub bpf: Option<String>,
    /// Flow-table settings (the memory cap is split across workers).
    pub flow: FlowConfig,
    /// Fragment table capacity.
    pub frag_capacity: usize,
    /// Fragment table timeout.
    pub frag_timeout: Nanos,
    /// Show a progress line on a terminal.
    pub progress: bool,
    /// Flow-table worker threads; 0 runs everything on the calling thread.
    pub workers: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            inputs: Vec::new(),
            backend: Backend::Native,
            bpf: None,
            flow: FlowConfig::default(),
            frag_capacity: 65_536,
            frag_timeout: Nanos::from_secs(30),
            progress: false,
            workers: 0,
        }
    }
}

/// Default worker count: one per core beyond the capture thread, at least one.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

/// The per-frame front half that runs where frames are read: decode, fragment
/// attribution, the global flow clock, frame counters.
pub struct Front {
    frags: FragmentTable,
    clock: Timestamp,
    clock_set: bool,
    /// Frame-level counters.
    pub stats: Stats,
}

impl Front {
    /// A fresh front half.
    pub fn new(frag_capacity: usize, frag_timeout: Nanos) -> Front {
        Front {
            frags: FragmentTable::new(frag_capacity, frag_timeout.0),
            clock: Timestamp(i64::MIN),
            clock_set: false,
            stats: Stats::default(),
        }
    }

    /// Decodes one frame; returns the IP packet to account and the global clock after it.
    #[inline]
    pub fn on_frame(&mut self, frame: &Frame<'_>) -> Option<(IpPacket, Timestamp)> {
        self.stats.frames += 1;
        self.stats.bytes += u64::from(frame.orig_len);
        if !self.clock_set || frame.ts > self.clock {
            self.clock = frame.ts;
            self.clock_set = true;
        }
        match crate::decode::decode(frame) {
            Err(e) => {
                self.stats.decode_error(e);
                None
            }
            Ok(PacketSummary::Arp(_)) => {
                self.stats.arp_packets += 1;
                None
            }
            Ok(PacketSummary::Ip(mut p)) => {
                self.stats.ip_packets += 1;
                if p.tunnel != Tunnel::None {
                    self.stats.tunnelled += 1;
                }
                if p.frag.is_fragment {
                    let fc = &mut self.stats.fragments;
                    fc.fragments += 1;
                    match self.frags.attribute(&mut p, self.clock) {
                        FragOutcome::First => fc.first += 1,
                        FragOutcome::Attributed => fc.attributed += 1,
                        FragOutcome::Unmatched => fc.unmatched += 1,
                        FragOutcome::NotFragment => {}
                    }
                }
                Some((p, self.clock))
            }
        }
    }

    /// The global flow clock (largest frame timestamp so far).
    pub fn clock(&self) -> Timestamp {
        self.clock
    }

    /// Copies fragment-table counters into the stats.
    pub fn sync_counters(&mut self) {
        self.stats.fragments.evicted = self.frags.evicted();
    }
}

/// What a replay produced besides the events.
#[derive(Debug, Default)]
pub struct ReplayOutcome {
    /// One message per input that could not be read completely.
    pub input_errors: Vec<String>,
    /// Flow events written.
    pub flow_events: u64,
    /// Frames read.
    pub frames: u64,
}

/// Where the front half hands decoded packets: the inline flow table, or the shard
/// router of the threaded pipeline.
trait Downstream {
    /// One decoded IP packet with the global clock after it.
    fn packet(&mut self, p: IpPacket, clock: Timestamp);
    /// Called after every dispatch round; returns false to stop reading.
    fn round_end(&mut self, front: &Front) -> bool;
}

/// Reads every input in order through `front` into `down`.
fn read_inputs<D: Downstream>(
    opts: &ReplayOptions,
    front: &mut Front,
    down: &mut D,
) -> Vec<String> {
    let mut errors = Vec::new();
    let total: Option<u64> = opts.inputs.iter().map(|i| i.size()).sum();
    let mut progress = Progress::new(opts.progress, total);
    for input in &opts.inputs {
        let name = input.display_name();
        let mut istats = InputStats {
            path: name.clone(),
            ..InputStats::default()
        };
        let mut stop = false;
        match Source::open(input, opts.backend, opts.bpf.as_deref()) {
            Err(e) => {
                istats.error = Some(e.to_string());
                errors.push(e.to_string());
            }
            Ok(mut src) => {
                loop {
                    let r = src.dispatch(DISPATCH, |f| {
                        if let Some((p, c)) = front.on_frame(f) {
                            down.packet(p, c);
                        }
                    });
                    stop = !down.round_end(front);
                    progress.update(&name, src.counters().offset, front.stats.frames);
                    match r {
                        Ok(0) => break,
                        Ok(_) if stop => break,
                        Ok(_) => {}
                        Err(e) => {
                            istats.error = Some(e.to_string());
                            errors.push(e.to_string());
                            break;
                        }
                    }
                }
                let c = src.counters();
                istats.frames = c.frames;
                istats.filtered = c.filtered;
                progress.finish_input(c.offset);
            }
        }
        front.stats.inputs.push(istats);
        if stop {
            break;
        }
    }
    progress.clear();
    errors
}

fn write_ready(ord: &mut Reorder, w: &mut EventWriter, n: &mut u64) -> Result<(), OutputError> {
    while let Some(rec) = ord.pop_ready() {
        w.write_flow(&rec)?;
        *n += 1;
    }
    Ok(())
}

fn finish(
    mut front: Front,
    counters: &FlowCounters,
    active: u64,
    wall: Instant,
    writer: &mut EventWriter,
    mut outcome: ReplayOutcome,
) -> Result<ReplayOutcome, OutputError> {
    front.sync_counters();
    front.stats.events = writer.written();
    outcome.frames = front.stats.frames;
    let json = front
        .stats
        .to_json(counters, active, wall.elapsed().as_secs_f64());
    let ts = if front.clock_set {
        front.clock
    } else {
        Timestamp(0)
    };
    writer.write_stats(ts, &json)?;
    writer.flush()?;
    Ok(outcome)
}

/// Replays the inputs in order into `writer`. A damaged input is reported in the outcome
/// (and in the `stats` event) and reading continues with the next one; flows seen before
/// the damage are kept. Only output failures are returned as errors.
pub fn replay(
    opts: &ReplayOptions,
    writer: &mut EventWriter,
) -> Result<ReplayOutcome, OutputError> {
    if opts.workers == 0 {
        replay_inline(opts, writer)
    } else {
        replay_threaded(opts, writer)
    }
}

/// The single-threaded downstream: one flow table, the merge buffer and the writer.
struct Inline<'w> {
    table: FlowTable,
    recs: Vec<FlowRecord>,
    ord: Reorder,
    writer: &'w mut EventWriter,
    written: u64,
    failure: Option<OutputError>,
}

impl Downstream for Inline<'_> {
    #[inline]
    fn packet(&mut self, p: IpPacket, clock: Timestamp) {
        self.table.observe_at(&p, clock, &mut self.recs);
    }

    fn round_end(&mut self, front: &Front) -> bool {
        self.table.advance_clock(front.clock(), &mut self.recs);
        for r in self.recs.drain(..) {
            self.ord.push(r);
        }
        self.ord.set_watermark(0, self.table.clock());
        if self.failure.is_none() {
            if let Err(e) = write_ready(&mut self.ord, self.writer, &mut self.written) {
                self.failure = Some(e);
            }
        }
        self.failure.is_none()
    }
}

fn replay_inline(
    opts: &ReplayOptions,
    writer: &mut EventWriter,
) -> Result<ReplayOutcome, OutputError> {
    let wall = Instant::now();
    let mut front = Front::new(opts.frag_capacity, opts.frag_timeout);
    let mut down = Inline {
        table: FlowTable::new(opts.flow),
        recs: Vec::with_capacity(1024),
        ord: Reorder::new(1),
        writer,
        written: 0,
        failure: None,
    };
    let errors = read_inputs(opts, &mut front, &mut down);
    if let Some(e) = down.failure.take() {
        return Err(e);
    }
    let Inline {
        mut table,
        mut recs,
        mut ord,
        writer,
        written,
        ..
    } = down;
    let mut outcome = ReplayOutcome {
        input_errors: errors,
        flow_events: written,
        frames: 0,
    };
    if front.clock_set {
        table.advance_clock(front.clock(), &mut recs);
    }
    table.flush(EndReason::EndOfInput, &mut recs);
    for r in recs.drain(..) {
        ord.push(r);
    }
    ord.set_watermark(0, Timestamp(i64::MAX));
    write_ready(&mut ord, writer, &mut outcome.flow_events)?;
    let counters = *table.counters();
    finish(front, &counters, table.len() as u64, wall, writer, outcome)
}

/// Messages to a flow-table worker.
enum ToWorker {
    /// Packets with the global clock after each; then the clock every shard has reached.
    Batch(Vec<(IpPacket, Timestamp)>, Timestamp),
    /// End every open flow with this reason, report, and stop.
    Flush(EndReason, Timestamp),
}

/// Messages from a worker to the merging thread.
enum FromWorker {
    /// Finished records and the worker's watermark.
    Records(usize, Vec<FlowRecord>, Timestamp),
    /// The worker's final counters and open-flow count.
    Done(FlowCounters, u64),
}

fn worker_loop(
    id: usize,
    cfg: FlowConfig,
    rx: Receiver<ToWorker>,
    tx: Sender<FromWorker>,
    free: Sender<Batch>,
) {
    let mut table = FlowTable::new(cfg);
    let mut out: Vec<FlowRecord> = Vec::new();
    for msg in rx.iter() {
        match msg {
            ToWorker::Batch(mut pkts, clock) => {
                for (p, c) in pkts.drain(..) {
                    table.observe_at(&p, c, &mut out);
                }
                table.advance_clock(clock, &mut out);
                let w = table.clock();
                if tx
                    .send(FromWorker::Records(id, std::mem::take(&mut out), w))
                    .is_err()
                {
                    return;
                }
                let _ = free.try_send(pkts);
            }
            ToWorker::Flush(reason, clock) => {
                table.advance_clock(clock, &mut out);
                table.flush(reason, &mut out);
                let _ = tx.send(FromWorker::Records(
                    id,
                    std::mem::take(&mut out),
                    Timestamp(i64::MAX),
                ));
                let _ = tx.send(FromWorker::Done(*table.counters(), table.len() as u64));
                return;
            }
        }
    }
}

/// Batches of one packet-and-clock pair per shard.
type Batch = Vec<(IpPacket, Timestamp)>;

/// The threaded downstream: routes packets by the symmetric flow-key hash into per-worker
/// batches and publishes the clock to every worker after each dispatch round.
struct Router {
    batches: Vec<Batch>,
    to_workers: Vec<Sender<ToWorker>>,
    free: Receiver<Batch>,
    hasher: foldhash::fast::FixedState,
    alive: bool,
}

impl Router {
    fn fresh(&self) -> Batch {
        self.free
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_PKTS))
    }
}

impl Downstream for Router {
    #[inline]
    fn packet(&mut self, p: IpPacket, clock: Timestamp) {
        let n = self.batches.len() as u64;
        let (key, _) = FlowKey::of(&p);
        let s = (key.hash_with(&self.hasher) % n) as usize;
        self.batches[s].push((p, clock));
        if self.batches[s].len() >= BATCH_PKTS {
            let fresh = self.fresh();
            let full = std::mem::replace(&mut self.batches[s], fresh);
            if self.to_workers[s]
                .send(ToWorker::Batch(full, clock))
                .is_err()
            {
                self.alive = false;
            }
        }
    }

    fn round_end(&mut self, front: &Front) -> bool {
        let clock = front.clock();
        for s in 0..self.batches.len() {
            let fresh = self.fresh();
            let pkts = std::mem::replace(&mut self.batches[s], fresh);
            if self.to_workers[s]
                .send(ToWorker::Batch(pkts, clock))
                .is_err()
            {
                self.alive = false;
            }
        }
        self.alive
    }
}

fn replay_threaded(
    opts: &ReplayOptions,
    writer: &mut EventWriter,
) -> Result<ReplayOutcome, OutputError> {
    let wall = Instant::now();
    let n = opts.workers.max(1);
    let mut wcfg = opts.flow;
    wcfg.max_flows = (opts.flow.max_flows / n).max(1);
    let (out_tx, out_rx) = bounded::<FromWorker>(n * QUEUE_BATCHES);
    let (free_tx, free_rx) = bounded::<Batch>(n * (QUEUE_BATCHES + 2));
    let mut to_workers = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for id in 0..n {
        let (tx, rx) = bounded::<ToWorker>(QUEUE_BATCHES);
        to_workers.push(tx);
        let (otx, ftx) = (out_tx.clone(), free_tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("flow-worker-{id}"))
            .spawn(move || worker_loop(id, wcfg, rx, otx, ftx));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                return Err(OutputError::Write {
                    path: "worker thread".into(),
                    events: 0,
                    source: e,
                })
            }
        }
    }
    drop(out_tx);
    drop(free_tx);

    let copts = opts.clone();
    let capture = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            let mut front = Front::new(copts.frag_capacity, copts.frag_timeout);
            let n = to_workers.len();
            let mut router = Router {
                batches: (0..n).map(|_| Vec::with_capacity(BATCH_PKTS)).collect(),
                to_workers,
                free: free_rx,
                hasher: foldhash::fast::FixedState::with_seed(0x5a4d_f10e),
                alive: true,
            };
            let errors = read_inputs(&copts, &mut front, &mut router);
            let to_workers = router.to_workers;
            let clock = front.clock();
            for tx in &to_workers {
                let _ = tx.send(ToWorker::Flush(EndReason::EndOfInput, clock));
            }
            (front, errors)
        });
    let capture = match capture {
        Ok(h) => h,
        Err(e) => {
            return Err(OutputError::Write {
                path: "capture thread".into(),
                events: 0,
                source: e,
            })
        }
    };

    let mut ord = Reorder::new(n);
    let mut outcome = ReplayOutcome::default();
    let mut counters = FlowCounters::default();
    let mut active = 0u64;
    let mut done = 0usize;
    let mut failure: Option<OutputError> = None;
    for msg in out_rx.iter() {
        match msg {
            FromWorker::Records(id, recs, w) => {
                for r in recs {
                    ord.push(r);
                }
                ord.set_watermark(id, w);
                if failure.is_none() {
                    if let Err(e) = write_ready(&mut ord, writer, &mut outcome.flow_events) {
                        failure = Some(e);
                        break;
                    }
                }
            }
            FromWorker::Done(c, a) => {
                counters.created += c.created;
                for (t, v) in counters.ended.iter_mut().zip(c.ended.iter()) {
                    *t += v;
                }
                counters.peak_active += c.peak_active;
                counters.ts_backwards += c.ts_backwards;
                active += a;
                done += 1;
                if done == n {
                    break;
                }
            }
        }
    }
    drop(out_rx);
    let joined = capture.join();
    for h in handles {
        let _ = h.join();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let (front, errors) = joined.map_err(|_| OutputError::Write {
        path: "capture thread".into(),
        events: writer.written(),
        source: std::io::Error::other("the capture thread panicked"),
    })?;
    outcome.input_errors = errors;
    finish(front, &counters, active, wall, writer, outcome)
}
