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

use crate::capture::{Backend, Input, LiveOptions, LiveSource, Source};
use crate::error::OutputError;
use crate::flow::{EndReason, FlowConfig, FlowCounters, FlowKey, FlowRecord, FlowTable};
use crate::fragment::{FragOutcome, FragmentTable};
use crate::order::Item;
use crate::order::Reorder;
use crate::output::Output;
use crate::packet::{ArpPacket, Frame, IpPacket, LinkType, PacketSummary, Tunnel};
use crate::progress::Progress;
use crate::stats::{InputStats, Stats};
use crate::time::{Nanos, Timestamp};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Largest frame timestamp so far (the clock without the live timer's advances).
    frame_max: Timestamp,
    /// Frame-level counters.
    pub stats: Stats,
    /// The link type of the last frame skipped as unsupported (for the input's warning).
    unsupported_link: Option<u32>,
    /// Notes for the user about inputs that were read but partly skipped.
    pub warnings: Vec<String>,
    /// Held-back fragments the fragment table released, to hand on after the frame's own
    /// packet ([`Front::take_released`]).
    released: Vec<(Pkt, Timestamp)>,
}

/// A decoded packet handed downstream from the front half.
#[derive(Debug, Clone, Copy)]
pub enum Pkt {
    /// An IP packet for the flow table.
    Ip(IpPacket),
    /// An ARP packet for the ARP rule, with its sequence number.
    Arp(ArpPacket, u64),
}

impl Front {
    /// A fresh front half.
    pub fn new(frag_capacity: usize, frag_timeout: Nanos) -> Front {
        Front {
            frags: FragmentTable::new(frag_capacity, frag_timeout.0),
            clock: Timestamp(i64::MIN),
            clock_set: false,
            frame_max: Timestamp(i64::MIN),
            stats: Stats::default(),
            unsupported_link: None,
            warnings: Vec::new(),
            released: Vec::new(),
        }
    }

    /// Decodes one frame; returns the packet to hand on and the global clock after it.
    #[inline]
    pub fn on_frame(&mut self, frame: &Frame<'_>) -> Option<(Pkt, Timestamp)> {
        self.stats.frames += 1;
        self.stats.bytes += u64::from(frame.orig_len);
        let backwards = frame.ts < self.frame_max;
        if frame.ts > self.frame_max {
            self.frame_max = frame.ts;
        }
        if !self.clock_set || frame.ts > self.clock {
            self.clock = frame.ts;
            self.clock_set = true;
        }
        match crate::decode::decode(frame) {
            Err(e) => {
                if let LinkType::Other(n) = frame.link {
                    self.unsupported_link = Some(n);
                }
                self.stats.decode_error(e);
                None
            }
            Ok(PacketSummary::Arp(a)) => {
                let seq = self.stats.arp_packets;
                self.stats.arp_packets += 1;
                Some((Pkt::Arp(a, seq), self.clock))
            }
            Ok(PacketSummary::Ip(mut p)) => {
                self.stats.ip_packets += 1;
                self.stats.ts_backwards += u64::from(backwards);
                if p.tunnel != Tunnel::None {
                    self.stats.tunnelled += 1;
                }
                if p.frag.is_fragment {
                    let fc = &mut self.stats.fragments;
                    fc.fragments += 1;
                    let outcome = self.frags.attribute(&mut p, self.clock);
                    match outcome {
                        FragOutcome::First => fc.first += 1,
                        FragOutcome::Attributed => fc.attributed += 1,
                        FragOutcome::Unmatched => fc.unmatched += 1,
                        FragOutcome::Held => fc.held += 1,
                        FragOutcome::NotFragment => {}
                    }
                    if self.frags.has_released() {
                        self.collect_released();
                    }
                    if outcome == FragOutcome::Held {
                        return None;
                    }
                }
                Some((Pkt::Ip(p), self.clock))
            }
        }
    }

    /// Moves what the fragment table released into [`Front::take_released`], counted.
    #[cold]
    fn collect_released(&mut self) {
        let fc = &mut self.stats.fragments;
        for (p, outcome) in self.frags.take_released() {
            match outcome {
                FragOutcome::Attributed => fc.attributed += 1,
                _ => fc.unmatched += 1,
            }
            self.released.push((Pkt::Ip(p), self.clock));
        }
    }

    /// Whether held-back fragments wait to be handed on (after the frame's own packet).
    #[inline]
    pub fn has_released(&self) -> bool {
        !self.released.is_empty()
    }

    /// The held-back fragments released by the last frames or sweep, in order, with the
    /// clock to hand them on with.
    pub fn take_released(&mut self) -> std::vec::Drain<'_, (Pkt, Timestamp)> {
        self.released.drain(..)
    }

    /// Releases the held fragments that waited longer than the fragment timeout (call
    /// once per dispatch round: fragments may stop arriving).
    pub fn sweep_fragments(&mut self) {
        if self.frags.holding() > 0 {
            self.frags.expire(self.clock);
            self.collect_released();
        }
    }

    /// Releases every held fragment unmatched (end of input, shutdown).
    pub fn release_held(&mut self) {
        self.frags.release_all();
        self.collect_released();
    }

    /// The global flow clock (largest frame timestamp so far).
    pub fn clock(&self) -> Timestamp {
        self.clock
    }

    /// Moves the clock forward to `t` (never backwards). The live sensor calls this from a
    /// timer when no packet arrives, so flows still expire on a quiet link; replay never
    /// does.
    pub fn advance_to(&mut self, t: Timestamp) {
        if !self.clock_set || t > self.clock {
            self.clock = t;
            self.clock_set = true;
        }
    }

    /// Copies fragment-table counters into the stats.
    pub fn sync_counters(&mut self) {
        self.stats.fragments.evicted = self.frags.evicted();
    }
}

/// The whole single-threaded path as one value (decode, fragments, flow table) for
/// embedding, benchmarks and tests: frames in, finished flow records out.
pub struct Engine {
    front: Front,
    table: FlowTable,
    /// Decoded packets not yet accounted (see [`FlowTable::observe_batch`]).
    pending: Pending,
    finished: Vec<FlowRecord>,
}

/// Packets gathered before one [`FlowTable::observe_batch`] call on the single-threaded
/// paths (the workers' batches come from the capture thread).
const TABLE_BATCH: usize = 256;

/// IP packets gathered for one [`FlowTable::observe_batch`] call on the single-threaded
/// paths, accounted when [`TABLE_BATCH`] are there or when the caller needs the table.
struct Pending(Vec<(IpPacket, Timestamp)>);

impl Pending {
    fn new() -> Pending {
        Pending(Vec::with_capacity(TABLE_BATCH))
    }

    /// Adds a packet, accounting the batch once it is full.
    #[inline]
    fn push(
        &mut self,
        p: IpPacket,
        clock: Timestamp,
        table: &mut FlowTable,
        out: &mut Vec<FlowRecord>,
    ) {
        self.0.push((p, clock));
        if self.0.len() >= TABLE_BATCH {
            self.account(table, out);
        }
    }

    /// Accounts every gathered packet in `table` (batched, with prefetching).
    fn account(&mut self, table: &mut FlowTable, out: &mut Vec<FlowRecord>) {
        table.observe_batch(&self.0, |(p, c)| Some((p, *c)), out);
        self.0.clear();
    }
}

impl Engine {
    /// A fresh engine.
    pub fn new(flow: FlowConfig, frag_capacity: usize, frag_timeout: Nanos) -> Engine {
        Engine {
            front: Front::new(frag_capacity, frag_timeout),
            table: FlowTable::new(flow),
            pending: Pending::new(),
            finished: Vec::with_capacity(1024),
        }
    }

    /// Accounts one frame; finished records accumulate until [`Engine::drain_finished`].
    /// Packets are accounted in batches, so the table may lag a few hundred frames behind
    /// until [`Engine::drain_finished`], [`Engine::flush`] or [`Engine::flows`].
    #[inline]
    pub fn on_frame(&mut self, frame: &Frame<'_>) {
        if let Some((Pkt::Ip(p), clock)) = self.front.on_frame(frame) {
            self.pending
                .push(p, clock, &mut self.table, &mut self.finished);
        }
        if self.front.has_released() {
            self.account_released();
        }
    }

    /// Accounts the held-back fragments the front released.
    #[cold]
    fn account_released(&mut self) {
        for (p, clock) in self.front.take_released() {
            if let Pkt::Ip(p) = p {
                self.pending
                    .push(p, clock, &mut self.table, &mut self.finished);
            }
        }
    }

    /// Accounts the packets gathered so far.
    fn catch_up(&mut self) {
        self.pending.account(&mut self.table, &mut self.finished);
    }

    /// Takes the finished records accumulated so far (after accounting every frame given).
    pub fn drain_finished(&mut self) -> std::vec::Drain<'_, FlowRecord> {
        self.catch_up();
        self.finished.drain(..)
    }

    /// Ends every open flow with `reason` (deterministic order).
    pub fn flush(&mut self, reason: EndReason) {
        self.front.release_held();
        self.account_released();
        self.catch_up();
        self.table
            .advance_clock(self.front.clock(), &mut self.finished);
        self.table.flush(reason, &mut self.finished);
    }

    /// The flow table, with every frame given so far accounted.
    pub fn flows(&mut self) -> &FlowTable {
        self.catch_up();
        &self.table
    }

    /// Frame-level counters.
    pub fn stats(&self) -> &Stats {
        &self.front.stats
    }

    /// Copies fragment-table counters into the stats.
    pub fn sync_counters(&mut self) {
        self.front.sync_counters();
    }
}

/// What a replay produced besides the events.
#[derive(Debug, Default)]
pub struct ReplayOutcome {
    /// One message per input that could not be read completely.
    pub input_errors: Vec<String>,
    /// Notes about inputs read completely but partly skipped (unsupported link types).
    pub input_warnings: Vec<String>,
    /// Flow events written.
    pub flow_events: u64,
    /// Frames read.
    pub frames: u64,
}

/// Where the front half hands decoded packets: the inline flow table, or the shard
/// router of the threaded pipeline.
trait Downstream {
    /// One decoded packet with the global clock after it.
    fn packet(&mut self, p: Pkt, clock: Timestamp);
    /// Called after every dispatch round; returns false to stop reading.
    fn round_end(&mut self, front: &Front) -> bool;
}

/// Hands on the held-back fragments `front` released (after the frame's own packet).
#[inline]
fn pass_released<D: Downstream>(front: &mut Front, down: &mut D) {
    if front.has_released() {
        for (p, c) in front.take_released() {
            down.packet(p, c);
        }
    }
}

/// Reads every input in order through `front` into `down`; at the end, releases the
/// fragments still held back and hands them on.
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
        let unsupported = |f: &Front| {
            f.stats.decode_errors[crate::packet::DecodeError::UnsupportedLinkType.index()]
        };
        let unsupported_before = unsupported(front);
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
                        pass_released(front, down);
                    });
                    front.sweep_fragments();
                    pass_released(front, down);
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
                istats.skipped_blocks = c.skipped_blocks;
                progress.finish_input(c.offset);
            }
        }
        if istats.skipped_blocks > 0 {
            front.warnings.push(format!(
                "{name}: {} malformed pcapng block(s) of kinds flowsentry does not use \
                 (name resolution, statistics, ...) were skipped by their length; counted \
                 in stats.inputs[].skipped_blocks",
                istats.skipped_blocks
            ));
        }
        front.stats.inputs.push(istats);
        let skipped = unsupported(front) - unsupported_before;
        if skipped > 0 {
            let link = front.unsupported_link.take().unwrap_or_default();
            front.warnings.push(format!(
                "{name}: {skipped} frames have link type {link}, which flowsentry does not \
                 decode (it reads Ethernet, Linux SLL/SLL2, raw IPv4/IPv6 and BSD loopback); \
                 they were skipped and counted as decode_errors.unsupported_link_type"
            ));
        }
        if stop {
            break;
        }
    }
    progress.clear();
    front.release_held();
    if front.has_released() {
        pass_released(front, down);
        down.round_end(front);
    }
    errors
}

/// Items the reorder buffer released, held until enough flow records are together to be
/// written (and scored) as one batch ([`Output::on_items`]): the detector's forests are
/// then read once per batch instead of once per few records. Order is unchanged.
#[derive(Default)]
struct WriteBatch {
    items: Vec<Item>,
    flows: usize,
    /// Due times (µs) of the batch's flows, when latency is measured.
    due_us: Vec<i64>,
}

impl WriteBatch {
    /// Flow records a batch collects before it is written (unless flushed earlier).
    const FLOWS: usize = 1024;

    /// Moves every ready item of `ord` into the batch.
    fn fill(&mut self, ord: &mut Reorder, timed: bool) {
        while let Some(item) = ord.pop_ready() {
            if let Item::Flow(rec) = &item {
                self.flows += 1;
                if timed && rec.emit_ts.0 != i64::MAX {
                    self.due_us.push(rec.emit_ts.as_micros());
                }
            }
            self.items.push(item);
        }
    }

    /// Writes the batch if it is full or `flush` is set; returns the flow records written.
    /// Their packet-to-event latency goes into `latency`.
    fn write(
        &mut self,
        w: &mut Output,
        flush: bool,
        latency: Option<&mut hdrhistogram::Histogram<u64>>,
    ) -> Result<u64, OutputError> {
        if self.items.is_empty() || (!flush && self.flows < Self::FLOWS) {
            return Ok(0);
        }
        let flows = self.flows as u64;
        self.flows = 0;
        let written = w.on_items(&mut self.items);
        if let Some(lat) = latency {
            let now_us = wall_now().as_micros();
            for &due in &self.due_us {
                let _ = lat.record((now_us - due).max(1) as u64);
            }
        }
        self.due_us.clear();
        written.map(|()| flows)
    }
}

fn finish(
    mut front: Front,
    counters: &FlowCounters,
    active: u64,
    wall: Instant,
    writer: &mut Output,
    mut outcome: ReplayOutcome,
) -> Result<ReplayOutcome, OutputError> {
    front.sync_counters();
    let ts = if front.clock_set {
        front.clock
    } else {
        Timestamp(0)
    };
    writer.finish(ts)?;
    writer.drain_sinks()?;
    writer.writer.report_notices()?;
    front.stats.events = writer.written();
    outcome.frames = front.stats.frames;
    let json = front
        .stats
        .to_json(counters, active, wall.elapsed().as_secs_f64());
    writer.write_stats(ts, &json)?;
    writer.flush()?;
    writer.close_sinks()?;
    Ok(outcome)
}

/// Replays the inputs in order into `writer`. A damaged input is reported in the outcome
/// (and in the `stats` event) and reading continues with the next one; flows seen before
/// the damage are kept. Only output failures are returned as errors.
pub fn replay(opts: &ReplayOptions, writer: &mut Output) -> Result<ReplayOutcome, OutputError> {
    if opts.workers == 0 {
        replay_inline(opts, writer)
    } else {
        replay_threaded(opts, writer)
    }
}

/// The single-threaded downstream: one flow table, the merge buffer and the writer.
struct Inline<'w> {
    table: FlowTable,
    /// IP packets of this dispatch round, accounted at its end (batched, see
    /// [`FlowTable::observe_batch`]).
    pending: Pending,
    recs: Vec<FlowRecord>,
    ord: Reorder,
    batch: WriteBatch,
    writer: &'w mut Output,
    written: u64,
    failure: Option<OutputError>,
}

impl Downstream for Inline<'_> {
    #[inline]
    fn packet(&mut self, p: Pkt, clock: Timestamp) {
        match p {
            Pkt::Ip(p) => self.pending.push(p, clock, &mut self.table, &mut self.recs),
            Pkt::Arp(a, seq) => self.ord.push_item(Item::Arp(a, clock, seq)),
        }
    }

    fn round_end(&mut self, front: &Front) -> bool {
        self.pending.account(&mut self.table, &mut self.recs);
        self.table.advance_clock(front.clock(), &mut self.recs);
        for r in self.recs.drain(..) {
            self.ord.push(r);
        }
        self.ord
            .set_watermark(0, Reorder::running(self.table.clock()));
        if self.failure.is_none() {
            self.batch.fill(&mut self.ord, false);
            match self.batch.write(self.writer, false, None) {
                Ok(n) => self.written += n,
                Err(e) => self.failure = Some(e),
            }
        }
        self.failure.is_none()
    }
}

fn replay_inline(opts: &ReplayOptions, writer: &mut Output) -> Result<ReplayOutcome, OutputError> {
    let wall = Instant::now();
    let mut front = Front::new(opts.frag_capacity, opts.frag_timeout);
    let mut down = Inline {
        table: FlowTable::new(opts.flow),
        pending: Pending::new(),
        recs: Vec::with_capacity(1024),
        ord: Reorder::new(1),
        batch: WriteBatch::default(),
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
        mut batch,
        writer,
        written,
        ..
    } = down;
    let mut outcome = ReplayOutcome {
        input_errors: errors,
        input_warnings: std::mem::take(&mut front.warnings),
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
    ord.set_watermark(0, Reorder::DONE);
    batch.fill(&mut ord, false);
    outcome.flow_events += batch.write(writer, true, None)?;
    let counters = *table.counters();
    finish(front, &counters, table.len() as u64, wall, writer, outcome)
}

/// Run-time controls set from signal handlers (plain flags; the handlers do nothing else).
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Stop capturing, flush every flow (reason `shutdown`), write final stats.
    pub stop: Arc<AtomicBool>,
    /// Reopen the output file (logrotate) at the next opportunity.
    pub reopen: Arc<AtomicBool>,
}

/// Settings of the live sensor.
#[derive(Debug, Clone)]
pub struct LiveRunOptions {
    /// The capture handle settings.
    pub capture: LiveOptions,
    /// Capture threads (each a handle in one PACKET_FANOUT group when more than one).
    pub capture_threads: usize,
    /// Flow-table workers per capture thread (all capture threads feed all workers).
    pub workers: usize,
    /// Flow-table settings (the memory cap is split across all workers).
    pub flow: FlowConfig,
    /// Fragment table capacity (per capture thread).
    pub frag_capacity: usize,
    /// Fragment table timeout.
    pub frag_timeout: Nanos,
    /// Interval between `stats` events.
    pub stats_interval: Duration,
    /// Drop root to this user once the capture handles are open.
    pub user: Option<String>,
}

/// Messages to a flow-table worker.
enum ToWorker {
    /// Packets with the global clock after each; then the clock every shard has reached.
    Batch(Batch, Timestamp),
    /// End every open flow with this reason, report, and stop.
    Flush(EndReason, Timestamp),
}

/// Messages from a worker to the merging thread.
enum FromWorker {
    /// Finished records, the worker's watermark, its batch time (ns) and counters.
    Records {
        id: usize,
        recs: Vec<Item>,
        watermark: Timestamp,
        batch_ns: u64,
        counters: FlowCounters,
        active: u64,
    },
    /// The worker has flushed and stops.
    Done,
}

/// One flow-table worker: takes batches from `producers` capture threads (every one of
/// them routes to every worker by the flow hash), and flushes when the last of them has
/// sent its `Flush`.
fn worker_loop(
    id: usize,
    cfg: FlowConfig,
    producers: usize,
    rx: Receiver<ToWorker>,
    tx: Sender<FromWorker>,
    free: Sender<Batch>,
) {
    let mut producers = producers.max(1);
    let mut table = FlowTable::new(cfg);
    let mut out: Vec<FlowRecord> = Vec::new();
    let mut arps: Vec<Item> = Vec::new();
    for msg in rx.iter() {
        match msg {
            ToWorker::Batch(mut pkts, clock) => {
                let t0 = Instant::now();
                table.observe_batch(
                    &pkts,
                    |(p, c)| match p {
                        Pkt::Ip(p) => Some((p, *c)),
                        Pkt::Arp(..) => None,
                    },
                    &mut out,
                );
                for (p, c) in pkts.drain(..) {
                    if let Pkt::Arp(a, seq) = p {
                        arps.push(Item::Arp(a, c, seq));
                    }
                }
                table.advance_clock(clock, &mut out);
                let batch_ns = t0.elapsed().as_nanos() as u64;
                let mut items: Vec<Item> = std::mem::take(&mut arps);
                items.extend(out.drain(..).map(Item::Flow));
                let msg = records(id, &table, items, Reorder::running(table.clock()), batch_ns);
                if tx.send(msg).is_err() {
                    return;
                }
                let _ = free.try_send(pkts);
            }
            ToWorker::Flush(reason, clock) => {
                table.advance_clock(clock, &mut out);
                producers -= 1;
                if producers > 0 {
                    // Another capture thread still sends: what the clock ended goes on.
                    let recs = out.drain(..).map(Item::Flow).collect();
                    let msg = records(id, &table, recs, Reorder::running(table.clock()), 0);
                    if tx.send(msg).is_err() {
                        return;
                    }
                    continue;
                }
                flush_worker(id, &mut table, reason, &mut out, &tx);
                return;
            }
        }
    }
    // Every sender is gone but not every capture thread said `Flush`: one of them died.
    // Flush what is open rather than lose it, and tell the merger this worker is done.
    flush_worker(id, &mut table, EndReason::Shutdown, &mut out, &tx);
}

/// The message reporting `recs` and the state of worker `id`'s table after them.
fn records(
    id: usize,
    table: &FlowTable,
    recs: Vec<Item>,
    watermark: Timestamp,
    batch_ns: u64,
) -> FromWorker {
    FromWorker::Records {
        id,
        recs,
        watermark,
        batch_ns,
        counters: *table.counters(),
        active: table.len() as u64,
    }
}

/// Ends every open flow of worker `id` with `reason`, reports them with the final
/// watermark, then `Done`.
fn flush_worker(
    id: usize,
    table: &mut FlowTable,
    reason: EndReason,
    out: &mut Vec<FlowRecord>,
    tx: &Sender<FromWorker>,
) {
    table.flush(reason, out);
    let recs = out.drain(..).map(Item::Flow).collect();
    let _ = tx.send(records(id, table, recs, Reorder::DONE, 0));
    let _ = tx.send(FromWorker::Done);
}

/// Batches of one packet-and-clock pair per shard.
type Batch = Vec<(Pkt, Timestamp)>;

/// The threaded downstream: routes packets by the symmetric flow-key hash into per-worker
/// batches and publishes the clock to every worker after each dispatch round. In replay
/// it blocks when a queue is full; live, it never blocks libpcap: a batch that does not
/// fit is dropped and its packets counted in `queue_full`.
struct Router {
    batches: Vec<Batch>,
    to_workers: Vec<Sender<ToWorker>>,
    free: Receiver<Batch>,
    hasher: foldhash::fast::FixedState,
    alive: bool,
    blocking: bool,
    queue_full: Vec<u64>,
    /// Clock last sent to each worker (live: an empty batch is only sent when the clock
    /// moved by at least [`LIVE_CLOCK_STEP`] since).
    last_sent: Vec<Timestamp>,
}

/// Live: smallest clock advance worth an otherwise empty batch to a worker.
const LIVE_CLOCK_STEP: i64 = 1_000_000;

impl Router {
    fn fresh(&self) -> Batch {
        self.free
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_PKTS))
    }

    fn send(&mut self, s: usize, pkts: Batch, clock: Timestamp) {
        if let Some(l) = self.last_sent.get_mut(s) {
            *l = clock;
        }
        if self.blocking {
            if self.to_workers[s]
                .send(ToWorker::Batch(pkts, clock))
                .is_err()
            {
                self.alive = false;
            }
            return;
        }
        match self.to_workers[s].try_send(ToWorker::Batch(pkts, clock)) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Full(ToWorker::Batch(mut lost, _))) => {
                self.queue_full[s] += lost.len() as u64;
                lost.clear();
                // Keep the buffer for reuse.
                if self.batches[s].capacity() == 0 {
                    self.batches[s] = lost;
                }
            }
            Err(crossbeam_channel::TrySendError::Full(ToWorker::Flush(..))) => {}
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => self.alive = false,
        }
    }

    fn flush_workers(&self, reason: EndReason, clock: Timestamp) {
        for tx in &self.to_workers {
            let _ = tx.send(ToWorker::Flush(reason, clock));
        }
    }
}

impl Downstream for Router {
    #[inline]
    fn packet(&mut self, p: Pkt, clock: Timestamp) {
        let n = self.batches.len() as u64;
        // ARP packets all go to worker 0, which passes them through in order; with one
        // worker every packet does, and its flow key is not computed twice.
        let s = match &p {
            Pkt::Ip(ip) if n > 1 => (FlowKey::of(ip).0.hash_with(&self.hasher) % n) as usize,
            Pkt::Ip(_) | Pkt::Arp(..) => 0,
        };
        self.batches[s].push((p, clock));
        if self.batches[s].len() >= BATCH_PKTS {
            let fresh = self.fresh();
            let full = std::mem::replace(&mut self.batches[s], fresh);
            self.send(s, full, clock);
        }
    }

    fn round_end(&mut self, front: &Front) -> bool {
        let clock = front.clock();
        for s in 0..self.batches.len() {
            if !self.blocking
                && self.batches[s].is_empty()
                && clock.0.saturating_sub(self.last_sent[s].0) < LIVE_CLOCK_STEP
            {
                // Live, nothing to hand on and the clock hardly moved: with several
                // capture threads feeding every worker, sending it anyway multiplies
                // the messages by their number.
                continue;
            }
            let fresh = self.fresh();
            let pkts = std::mem::replace(&mut self.batches[s], fresh);
            self.send(s, pkts, clock);
        }
        self.alive
    }
}

/// The flow-table workers, started: their queues and the pool of emptied batches.
struct WorkerSet {
    to_workers: Vec<Sender<ToWorker>>,
    free: Receiver<Batch>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl WorkerSet {
    /// A router into every worker, for one capture thread.
    fn router(&self, blocking: bool) -> Router {
        let n = self.to_workers.len();
        Router {
            batches: (0..n).map(|_| Vec::with_capacity(BATCH_PKTS)).collect(),
            to_workers: self.to_workers.clone(),
            free: self.free.clone(),
            hasher: foldhash::fast::FixedState::with_seed(0x5a4d_f10e),
            alive: true,
            blocking,
            queue_full: vec![0; n],
            last_sent: vec![Timestamp(i64::MIN); n],
        }
    }
}

/// Starts `n` workers fed by `producers` capture threads.
fn spawn_workers(
    n: usize,
    producers: usize,
    cfg: FlowConfig,
    out_tx: &Sender<FromWorker>,
) -> Result<WorkerSet, OutputError> {
    let (free_tx, free_rx) = bounded::<Batch>(n * (QUEUE_BATCHES + 2) * producers.max(1));
    let mut to_workers = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for id in 0..n {
        // Each capture thread gets as much queue as one alone had.
        let (tx, rx) = bounded::<ToWorker>(QUEUE_BATCHES * producers.max(1));
        to_workers.push(tx);
        let (otx, ftx) = (out_tx.clone(), free_tx.clone());
        let h = std::thread::Builder::new()
            .name(format!("flow-worker-{id}"))
            .spawn(move || worker_loop(id, cfg, producers, rx, otx, ftx))
            .map_err(|e| thread_error("flow worker", e))?;
        handles.push(h);
    }
    Ok(WorkerSet {
        to_workers,
        free: free_rx,
        handles,
    })
}

fn thread_error(what: &str, e: std::io::Error) -> OutputError {
    OutputError::Thread {
        what: format!("{what} thread"),
        detail: format!("cannot start: {e}"),
    }
}

/// What a capture thread hands back when it ends.
struct CaptureResult {
    front: Front,
    errors: Vec<String>,
}

/// The merging thread's state: reorder buffer, per-worker counters, latency histograms.
struct Merger {
    ord: Reorder,
    counters: Vec<(FlowCounters, u64)>,
    done: usize,
    latency: Option<(hdrhistogram::Histogram<u64>, hdrhistogram::Histogram<u64>)>,
    flow_events: u64,
    /// Ready items not written yet.
    batch: WriteBatch,
}

impl Merger {
    fn new(workers: usize, live: bool) -> Merger {
        let hist = || hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok();
        Merger {
            ord: Reorder::new(workers),
            counters: vec![(FlowCounters::default(), 0); workers],
            done: 0,
            latency: if live { hist().zip(hist()) } else { None },
            flow_events: 0,
            batch: WriteBatch::default(),
        }
    }

    /// Takes in one worker message; `flush`: write what is ready even if the batch is
    /// not full (set when no other message is waiting).
    fn on_message(
        &mut self,
        msg: FromWorker,
        writer: &mut Output,
        flush: bool,
    ) -> Result<(), OutputError> {
        match msg {
            FromWorker::Records {
                id,
                recs,
                watermark,
                batch_ns,
                counters,
                active,
            } => {
                for r in recs {
                    self.ord.push_item(r);
                }
                self.ord.set_watermark(id, watermark);
                if let Some(c) = self.counters.get_mut(id) {
                    *c = (counters, active);
                }
                if let Some((_, batch)) = self.latency.as_mut() {
                    if batch_ns > 0 {
                        let _ = batch.record((batch_ns / 1_000).max(1));
                    }
                }
                self.write_ready(writer, flush)
            }
            FromWorker::Done => {
                self.done += 1;
                self.write_ready(writer, flush)
            }
        }
    }

    /// Writes the ready items once a batch is full, or now when `flush` is set.
    fn write_ready(&mut self, writer: &mut Output, flush: bool) -> Result<(), OutputError> {
        self.batch.fill(&mut self.ord, self.latency.is_some());
        let lat = self.latency.as_mut().map(|(l, _)| l);
        self.flow_events += self.batch.write(writer, flush, lat)?;
        Ok(())
    }

    /// The error to report when the workers' channel closed with fewer than `total`
    /// of them done: the others died without flushing their flows.
    fn workers_lost(&self, total: usize) -> Option<OutputError> {
        (self.done < total).then(|| OutputError::Thread {
            what: "flow worker thread".into(),
            detail: format!(
                "{} of {total} workers stopped without flushing their flows",
                total - self.done
            ),
        })
    }

    fn flow_totals(&self) -> (FlowCounters, u64) {
        let mut total = FlowCounters::default();
        let mut active = 0;
        for (c, a) in &self.counters {
            total.created += c.created;
            for (t, v) in total.ended.iter_mut().zip(c.ended.iter()) {
                *t += v;
            }
            total.peak_active += c.peak_active;
            active += a;
        }
        (total, active)
    }

    fn latency_json(&self) -> Option<crate::stats::LatencyJson> {
        self.latency
            .as_ref()
            .map(|(l, b)| crate::stats::LatencyJson {
                packet_to_event_us: crate::stats::Percentiles::of(l),
                worker_batch_us: crate::stats::Percentiles::of(b),
            })
    }
}

/// The wall clock as a timestamp (live only: never used by flow logic in replay).
fn wall_now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_secs_nanos(d.as_secs() as i64, i64::from(d.subsec_nanos()))
}

fn write_stats_event(
    stats: &Stats,
    merger: &Merger,
    writer: &mut Output,
    wall: Instant,
    ts: Timestamp,
) -> Result<(), OutputError> {
    let (counters, active) = merger.flow_totals();
    let mut s = stats.clone();
    // Output problems are reported before the count, so the stats event counts them.
    writer.writer.report_notices()?;
    s.events = writer.written();
    let mut json = s.to_json(&counters, active, wall.elapsed().as_secs_f64());
    json.latency = merger.latency_json();
    writer.write_stats(ts, &json)
}

fn replay_threaded(
    opts: &ReplayOptions,
    writer: &mut Output,
) -> Result<ReplayOutcome, OutputError> {
    let wall = Instant::now();
    // The merging thread writes the events of one run of records while the detector's
    // helper thread analyses and scores the next.
    writer.start_prepare_ahead()?;
    let n = opts.workers.max(1);
    let mut wcfg = opts.flow;
    wcfg.max_flows = (opts.flow.max_flows / n).max(1);
    let (out_tx, out_rx) = bounded::<FromWorker>(n * QUEUE_BATCHES);
    let workers = spawn_workers(n, 1, wcfg, &out_tx)?;
    let mut router = workers.router(true);
    let handles = workers.handles;
    drop(out_tx);
    let copts = opts.clone();
    let capture = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            let mut front = Front::new(copts.frag_capacity, copts.frag_timeout);
            let errors = read_inputs(&copts, &mut front, &mut router);
            router.flush_workers(EndReason::EndOfInput, front.clock());
            CaptureResult { front, errors }
        })
        .map_err(|e| thread_error("capture", e))?;

    let mut merger = Merger::new(n, false);
    let mut failure: Option<OutputError> = None;
    for msg in out_rx.iter() {
        // Replay has no latency to keep: full batches only (flushed at the end).
        if let Err(e) = merger.on_message(msg, writer, false) {
            failure = Some(e);
            break;
        }
        if merger.done == n {
            break;
        }
    }
    if failure.is_none() {
        // The channel closed before every worker said `Done`: one died unflushed.
        failure = merger.workers_lost(n);
    }
    if failure.is_none() {
        failure = merger.write_ready(writer, true).err();
    }
    drop(out_rx);
    let joined = capture.join();
    for h in handles {
        let _ = h.join();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let CaptureResult { mut front, errors } = joined.map_err(|_| OutputError::Thread {
        what: "capture thread".into(),
        detail: "stopped unexpectedly".into(),
    })?;
    let outcome = ReplayOutcome {
        input_errors: errors,
        input_warnings: std::mem::take(&mut front.warnings),
        flow_events: merger.flow_events,
        frames: 0,
    };
    let (counters, active) = merger.flow_totals();
    finish(front, &counters, active, wall, writer, outcome)
}

/// What the live sensor reports when it stops.
#[derive(Debug, Default)]
pub struct LiveOutcome {
    /// Capture errors that ended a capture thread early.
    pub capture_errors: Vec<String>,
    /// Flow events written.
    pub flow_events: u64,
    /// Frames captured.
    pub frames: u64,
    /// Packets dropped because a worker queue was full.
    pub queue_full: u64,
    /// libpcap kernel drops.
    pub pcap_dropped: u64,
}

/// Opens the live capture handles (before any privilege drop).
pub fn open_live(opts: &LiveRunOptions) -> Result<Vec<LiveSource>, crate::error::CaptureError> {
    let k = opts.capture_threads.max(1);
    let mut sources = Vec::with_capacity(k);
    for _ in 0..k {
        let mut o = opts.capture.clone();
        if k > 1 && o.fanout_group.is_none() {
            o.fanout_group = Some((std::process::id() & 0xffff) as u16);
        }
        sources.push(LiveSource::open(&o)?);
    }
    Ok(sources)
}

fn live_capture(
    mut src: LiveSource,
    mut front: Front,
    mut router: Router,
    control: Control,
    snapshot: Arc<Mutex<Stats>>,
) -> CaptureResult {
    let mut errors = Vec::new();
    let mut last_snap = Instant::now();
    let publish = |front: &Front, router: &Router, src: &mut LiveSource| {
        let mut s = front.stats.clone();
        s.queue_full = router.queue_full.clone();
        s.pcap = src.pcap_stats();
        if let Ok(mut g) = snapshot.lock() {
            *g = s;
        }
    };
    while !control.stop.load(AtomicOrdering::Relaxed) {
        match src.dispatch(DISPATCH, |f| {
            if let Some((p, c)) = front.on_frame(f) {
                router.packet(p, c);
            }
            pass_released(&mut front, &mut router);
        }) {
            Ok(0) => front.advance_to(wall_now()),
            Ok(_) => {}
            Err(e) => {
                errors.push(e.to_string());
                break;
            }
        }
        front.sweep_fragments();
        pass_released(&mut front, &mut router);
        if !router.round_end(&front) {
            if !control.stop.load(AtomicOrdering::Relaxed) {
                errors.push("the flow workers stopped unexpectedly; capture ended".into());
            }
            break;
        }
        if last_snap.elapsed() >= Duration::from_millis(100) {
            publish(&front, &router, &mut src);
            last_snap = Instant::now();
        }
    }
    front.advance_to(wall_now());
    publish(&front, &router, &mut src);
    // Shutdown: every open flow is flushed, scored and written; blocking sends are fine
    // now that capture has stopped.
    router.blocking = true;
    front.release_held();
    pass_released(&mut front, &mut router);
    let clock = front.clock();
    router.round_end(&front);
    router.flush_workers(EndReason::Shutdown, clock);
    front.stats.queue_full = router.queue_full.clone();
    front.stats.pcap = src.pcap_stats();
    CaptureResult { front, errors }
}

/// Runs the live sensor on already-opened handles until `control.stop` is set, writing
/// events and periodic `stats` to `writer`.
pub fn live(
    opts: &LiveRunOptions,
    sources: Vec<LiveSource>,
    writer: &mut Output,
    control: &Control,
) -> Result<LiveOutcome, OutputError> {
    let wall = Instant::now();
    writer.start_prepare_ahead()?;
    let k = sources.len().max(1);
    let per = opts.workers.max(1);
    let total = k * per;
    let mut wcfg = opts.flow;
    wcfg.max_flows = (opts.flow.max_flows / total).max(1);
    let (out_tx, out_rx) = bounded::<FromWorker>(total * QUEUE_BATCHES);
    let mut captures = Vec::with_capacity(k);
    let mut snapshots = Vec::with_capacity(k);
    // Every capture thread routes to every worker by flowsentry's own flow hash: the
    // kernel's fanout hash splits some flows over handles (it leaves out the ports of IP
    // fragments and hashes VXLAN's outer header), and they must still meet in one table.
    let workers = spawn_workers(total, k, wcfg, &out_tx)?;
    for (i, src) in sources.into_iter().enumerate() {
        let router = workers.router(false);
        let snap = Arc::new(Mutex::new(Stats::default()));
        snapshots.push(snap.clone());
        let front = Front::new(opts.frag_capacity, opts.frag_timeout);
        let ctl = control.clone();
        let h = std::thread::Builder::new()
            .name(format!("capture-{i}"))
            .spawn(move || live_capture(src, front, router, ctl, snap))
            .map_err(|e| thread_error("capture", e))?;
        captures.push(h);
    }
    let worker_handles = workers.handles;
    drop(workers.to_workers);
    drop(out_tx);

    let mut merger = Merger::new(total, true);
    let mut failure: Option<OutputError> = None;
    let mut last_stats = Instant::now();
    let mut last_flush = Instant::now();
    let mut link = crate::capture::LinkWatch::new(&opts.capture.iface);
    let snapshot_sum = |snaps: &[Arc<Mutex<Stats>>]| {
        let mut sum = Stats::default();
        for s in snaps {
            if let Ok(g) = s.lock() {
                sum.absorb(&g);
            }
        }
        sum
    };
    loop {
        match out_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(msg) => {
                if let Err(e) = merger.on_message(msg, writer, out_rx.is_empty()) {
                    failure = Some(e);
                    break;
                }
                if merger.done == total {
                    break;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                // A worker that died without flushing lost its open flows: say so.
                failure = merger.workers_lost(total);
                break;
            }
        }
        let io = (|| -> Result<(), OutputError> {
            if control.reopen.swap(false, AtomicOrdering::Relaxed) {
                // What is ready before the signal goes to the old file, scored by the
                // old model.
                merger.write_ready(writer, true)?;
                writer.reopen()?;
                writer.reload_model()?;
            }
            writer.rotate_if_due()?;
            if let Some(msg) = link.poll() {
                writer.writer.write_error_event(&msg)?;
            }
            if last_stats.elapsed() >= opts.stats_interval {
                let sum = snapshot_sum(&snapshots);
                write_stats_event(&sum, &merger, writer, wall, wall_now())?;
                last_stats = Instant::now();
            }
            if last_flush.elapsed() >= Duration::from_millis(200) {
                writer.flush()?;
                last_flush = Instant::now();
            }
            Ok(())
        })();
        if let Err(e) = io {
            failure = Some(e);
            break;
        }
    }
    if failure.is_none() {
        failure = merger.write_ready(writer, true).err();
    }
    if failure.is_some() {
        // Output is gone: stop capturing; what was already written stays written.
        control.stop.store(true, AtomicOrdering::Relaxed);
        for msg in out_rx.iter() {
            if let FromWorker::Done = msg {
                merger.done += 1;
                if merger.done == total {
                    break;
                }
            }
        }
    }
    drop(out_rx);
    let mut stats = Stats::default();
    let mut outcome = LiveOutcome::default();
    for (i, h) in captures.into_iter().enumerate() {
        match h.join() {
            Ok(r) => {
                stats.absorb(&r.front.stats);
                outcome.capture_errors.extend(r.errors);
            }
            Err(_) => outcome.capture_errors.push(format!(
                "capture thread {i} stopped unexpectedly; the flows it had handed on were flushed"
            )),
        }
    }
    for h in worker_handles {
        let _ = h.join();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    outcome.flow_events = merger.flow_events;
    outcome.frames = stats.frames;
    outcome.queue_full = stats.queue_full.iter().sum();
    outcome.pcap_dropped = stats.pcap.map(|p| p.dropped + p.if_dropped).unwrap_or(0);
    writer.finish(wall_now())?;
    writer.drain_sinks()?;
    write_stats_event(&stats, &merger, writer, wall, wall_now())?;
    writer.close()?;
    writer.close_sinks()?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw IPv4/UDP datagram 10.0.0.1:1000 -> 10.0.0.2:53 without payload.
    const UDP: [u8; 28] = [
        0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x03, 0xe8, 0, 53, 0,
        8, 0, 0,
    ];

    /// [`UDP`] captured at `secs`.
    fn udp_frame(secs: i64) -> Frame<'static> {
        Frame {
            ts: Timestamp::from_secs_nanos(secs, 0),
            link: crate::packet::LinkType::Raw,
            orig_len: UDP.len() as u32,
            data: &UDP,
        }
    }

    fn feed(front: &mut Front, secs: i64) {
        assert!(matches!(
            front.on_frame(&udp_frame(secs)),
            Some((Pkt::Ip(_), _))
        ));
    }

    /// A worker fed by two capture threads flushes only after both said `Flush`, and
    /// still flushes (and says `Done`) when the second one dies without saying it.
    #[test]
    fn a_shared_worker_flushes_after_its_last_producer_or_when_one_died() {
        let mut front = Front::new(16, Nanos(1_000_000_000));
        let Some(pkt) = front.on_frame(&udp_frame(1)) else {
            panic!("the test datagram did not decode");
        };
        for second_flushes in [true, false] {
            let (tx, rx) = bounded::<ToWorker>(8);
            let (otx, orx) = bounded::<FromWorker>(64);
            let (ftx, _frx) = bounded::<Batch>(8);
            let h = std::thread::spawn(move || {
                worker_loop(0, FlowConfig::default(), 2, rx, otx, ftx);
            });
            let second = tx.clone();
            let t = Timestamp::from_secs_nanos(2, 0);
            tx.send(ToWorker::Batch(vec![pkt], t)).expect("send");
            tx.send(ToWorker::Flush(EndReason::Shutdown, t))
                .expect("send");
            drop(tx);
            if second_flushes {
                second
                    .send(ToWorker::Flush(EndReason::Shutdown, t))
                    .expect("send");
            }
            drop(second);
            h.join().expect("worker");
            let msgs: Vec<FromWorker> = orx.try_iter().collect();
            let flows: usize = msgs
                .iter()
                .map(|m| match m {
                    FromWorker::Records { recs, .. } => recs.len(),
                    FromWorker::Done => 0,
                })
                .sum();
            assert_eq!(flows, 1, "the open flow was flushed once");
            assert!(matches!(msgs.last(), Some(FromWorker::Done)), "Done last");
            // Before the last producer's `Flush`, nothing was flushed: the first
            // `Flush` only moved the watermark.
            let done_marks = msgs
                .iter()
                .filter(|m| {
                    matches!(m, FromWorker::Records { watermark, .. } if *watermark == Reorder::DONE)
                })
                .count();
            assert_eq!(done_marks, 1);
        }
    }

    #[test]
    fn ts_backwards_counts_frames_before_an_earlier_frame_not_the_timer_clock() {
        let mut front = Front::new(16, Nanos(1_000_000_000));
        feed(&mut front, 5);
        feed(&mut front, 9);
        feed(&mut front, 7); // earlier than the frame before it
        assert_eq!(front.stats.ts_backwards, 1);
        // The live timer moves the clock past the next frame's time: not backwards.
        front.advance_to(Timestamp::from_secs_nanos(100, 0));
        feed(&mut front, 50);
        assert_eq!(front.stats.ts_backwards, 1);
        assert_eq!(front.clock(), Timestamp::from_secs_nanos(100, 0));
        feed(&mut front, 8); // earlier than the frame at 50
        assert_eq!(front.stats.ts_backwards, 2);
    }
}
