//! The pipeline: wires capture → decode → fragment attribution → flow table → events for
//! a replay of one or more capture files (in order, one flow table across them), the
//! end-of-input flush in deterministic order and the closing `stats` event.
//!
//! The per-frame work lives in [`Engine`] so that the same code serves replay now and the
//! threaded live sensor later (capture thread + sharded workers).

use crate::capture::{Backend, Input, Source};
use crate::error::OutputError;
use crate::event::EventWriter;
use crate::flow::{EndReason, FlowConfig, FlowRecord, FlowTable};
use crate::fragment::{FragOutcome, FragmentTable};
use crate::packet::{Frame, PacketSummary, Tunnel};
use crate::progress::Progress;
use crate::stats::{InputStats, Stats};
use crate::time::Nanos;
use std::time::Instant;

/// Frames read per dispatch call before finished flows are written.
const BATCH: usize = 4096;

/// Settings of a replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Inputs, read in order.
    pub inputs: Vec<Input>,
    /// File reader.
    pub backend: Backend,
    /// Optional BPF filter.
    pub bpf: Option<String>,
    /// Flow-table settings.
    pub flow: FlowConfig,
    /// Fragment table capacity.
    pub frag_capacity: usize,
    /// Fragment table timeout.
    pub frag_timeout: Nanos,
    /// Show a progress line on a terminal.
    pub progress: bool,
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
        }
    }
}

/// Decode + fragments + flow table for one stream of frames.
pub struct Engine {
    frags: FragmentTable,
    flows: FlowTable,
    /// Counters of the run.
    pub stats: Stats,
    finished: Vec<FlowRecord>,
}

impl Engine {
    /// A fresh engine.
    pub fn new(flow: FlowConfig, frag_capacity: usize, frag_timeout: Nanos) -> Engine {
        Engine {
            frags: FragmentTable::new(frag_capacity, frag_timeout.0),
            flows: FlowTable::new(flow),
            stats: Stats::default(),
            finished: Vec::with_capacity(1024),
        }
    }

    /// Accounts one frame: decode, attribute fragments, update the flow table. Finished
    /// flow records accumulate until [`Engine::drain_finished`].
    #[inline]
    pub fn on_frame(&mut self, frame: &Frame<'_>) {
        self.stats.frames += 1;
        self.stats.bytes += u64::from(frame.orig_len);
        match crate::decode::decode(frame) {
            Err(e) => self.stats.decode_error(e),
            Ok(PacketSummary::Arp(_)) => self.stats.arp_packets += 1,
            Ok(PacketSummary::Ip(mut p)) => {
                self.stats.ip_packets += 1;
                if p.tunnel != Tunnel::None {
                    self.stats.tunnelled += 1;
                }
                if p.frag.is_fragment {
                    let fc = &mut self.stats.fragments;
                    fc.fragments += 1;
                    // The flow clock only moves in `observe` below: include this packet's
                    // time, or a first fragment that follows a quiet spell longer than the
                    // fragment timeout (or starts the input) would be remembered as already
                    // expired and its later fragments left unattributed.
                    let now = self.flows.clock().max(p.ts);
                    match self.frags.attribute(&mut p, now) {
                        FragOutcome::First => fc.first += 1,
                        FragOutcome::Attributed => fc.attributed += 1,
                        FragOutcome::Unmatched => fc.unmatched += 1,
                        FragOutcome::NotFragment => {}
                    }
                }
                self.flows.observe(&p, &mut self.finished);
            }
        }
    }

    /// Takes the finished records accumulated so far.
    pub fn drain_finished(&mut self) -> std::vec::Drain<'_, FlowRecord> {
        self.finished.drain(..)
    }

    /// Ends every open flow with `reason` (deterministic order).
    pub fn flush(&mut self, reason: EndReason) {
        self.flows.flush(reason, &mut self.finished);
    }

    /// The flow table (counters, clock, memory).
    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// Fragment evictions so far (copied into stats at the end).
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

fn write_finished(
    engine: &mut Engine,
    w: &mut EventWriter,
    n: &mut u64,
) -> Result<(), OutputError> {
    for rec in engine.finished.drain(..) {
        w.write_flow(&rec)?;
        *n += 1;
    }
    Ok(())
}

/// Replays the inputs in order into `writer`. A damaged input is reported in the outcome
/// (and in the `stats` event) and reading continues with the next one; flows seen before
/// the damage are kept. Only output failures are returned as errors.
pub fn replay(
    opts: &ReplayOptions,
    writer: &mut EventWriter,
) -> Result<ReplayOutcome, OutputError> {
    let wall = Instant::now();
    let mut engine = Engine::new(opts.flow, opts.frag_capacity, opts.frag_timeout);
    let mut outcome = ReplayOutcome::default();
    let total: Option<u64> = opts.inputs.iter().map(|i| i.size()).sum();
    let mut progress = Progress::new(opts.progress, total);
    for input in &opts.inputs {
        let name = input.display_name();
        let mut istats = InputStats {
            path: name.clone(),
            ..InputStats::default()
        };
        match Source::open(input, opts.backend, opts.bpf.as_deref()) {
            Err(e) => {
                istats.error = Some(e.to_string());
                outcome.input_errors.push(e.to_string());
            }
            Ok(mut src) => {
                loop {
                    let r = src.dispatch(BATCH, |f| engine.on_frame(f));
                    write_finished(&mut engine, writer, &mut outcome.flow_events)?;
                    let c = src.counters();
                    progress.update(&name, c.offset, engine.stats.frames);
                    match r {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => {
                            istats.error = Some(e.to_string());
                            outcome.input_errors.push(e.to_string());
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
        engine.stats.inputs.push(istats);
    }
    progress.clear();
    engine.flush(EndReason::EndOfInput);
    write_finished(&mut engine, writer, &mut outcome.flow_events)?;
    engine.sync_counters();
    engine.stats.events = writer.written();
    outcome.frames = engine.stats.frames;
    let wall_s = wall.elapsed().as_secs_f64();
    let flows = engine.flows();
    let json = engine
        .stats
        .to_json(flows.counters(), flows.len() as u64, wall_s);
    writer.write_stats(flows.clock(), &json)?;
    writer.flush()?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::LinkType;
    use crate::time::Timestamp;

    /// Ethernet + IPv4 10.0.0.1 -> 10.0.0.2 UDP fragment of datagram `id`.
    fn v4_frag(id: u16, offset_units: u16, more: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![
            0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
        ];
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + payload.len()) as u16;
        let flags_off = offset_units | if more { 0x2000 } else { 0 };
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&flags_off.to_be_bytes());
        f.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(payload);
        f
    }

    fn on(engine: &mut Engine, secs: i64, data: &[u8]) {
        engine.on_frame(&Frame {
            ts: Timestamp(secs * 1_000_000_000),
            link: LinkType::Ethernet,
            orig_len: data.len() as u32,
            data,
        });
    }

    /// Regression: the fragment table was given the flow clock *before* the packet, so a
    /// first fragment at the start of the input, or after more than the fragment timeout
    /// of silence, was stored as already expired and its later fragments became
    /// port-0 flows (seen on `robustness/ipv6-frag/ip6_fragments.pcap`).
    #[test]
    fn later_fragments_attributed_after_a_quiet_spell_and_at_input_start() {
        let mut e = Engine::new(FlowConfig::default(), 64, Nanos::from_secs(30));
        // UDP 5000 -> 53, length 24, then 8 payload bytes; the rest in the later fragment.
        let first: [u8; 16] = [0x13, 0x88, 0, 53, 0, 24, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let later = [9u8; 8];
        on(&mut e, 1_000, &v4_frag(7, 0, true, &first));
        on(&mut e, 1_000, &v4_frag(7, 2, false, &later));
        // One hour later (longer than every timeout), another datagram.
        on(&mut e, 4_600, &v4_frag(8, 0, true, &first));
        on(&mut e, 4_600, &v4_frag(8, 2, false, &later));
        assert_eq!(e.stats.fragments.unmatched, 0, "{:?}", e.stats.fragments);
        assert_eq!(e.stats.fragments.attributed, 2);
        e.flush(EndReason::EndOfInput);
        let recs: Vec<FlowRecord> = e.drain_finished().collect();
        assert!(recs
            .iter()
            .all(|r| r.orig.port == 5000 && r.resp.port == 53));
        assert_eq!(recs.iter().map(|r| r.pkts()).sum::<u64>(), 4);
    }
}
