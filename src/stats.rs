//! Counters of everything the sensor saw, skipped or produced, by bounded reason, in one
//! place: frames, bytes, decode errors by kind, fragments, ARP, tunnels, flows by end
//! reason, evictions, events, inputs and their errors. Rendered as the `stats` event.

use crate::flow::{EndReason, FlowCounters};
use crate::packet::DecodeError;
use serde::Serialize;
use std::collections::BTreeMap;

/// Fragment-attribution counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FragmentCounters {
    /// Fragments seen (first and later).
    pub fragments: u64,
    /// First fragments whose ports were remembered.
    pub first: u64,
    /// Later fragments attributed to their flow.
    pub attributed: u64,
    /// Later fragments whose first fragment was not seen (kept in a port-less flow).
    pub unmatched: u64,
    /// Later fragments that arrived before their first fragment and were held back until
    /// it came (then also counted in `attributed`) or timed out (then in `unmatched`).
    pub held: u64,
    /// Remembered datagrams dropped because the table was full.
    pub evicted: u64,
}

/// One input file's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InputStats {
    /// Path or `<stdin>`.
    pub path: String,
    /// Frames read from it.
    pub frames: u64,
    /// Frames rejected by the BPF filter.
    pub filtered: u64,
    /// Malformed pcapng blocks of kinds flowsentry does not use, skipped by their length
    /// (present when not 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped_blocks: u64,
    /// The error that stopped reading it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Counters of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Frames read.
    pub frames: u64,
    /// Wire bytes of those frames.
    pub bytes: u64,
    /// Frames that decoded to an IP packet.
    pub ip_packets: u64,
    /// ARP packets.
    pub arp_packets: u64,
    /// IP packets found inside a GRE or VXLAN tunnel.
    pub tunnelled: u64,
    /// IP packets whose timestamp is earlier than that of a frame read before them (in
    /// this run's read order: across the inputs of a replay, per capture handle live; a
    /// live clock advanced by the timer does not count).
    pub ts_backwards: u64,
    /// Frames skipped, by decode error kind (indexed by `DecodeError::index`).
    pub decode_errors: [u64; 8],
    /// Fragment handling.
    pub fragments: FragmentCounters,
    /// Inputs read.
    pub inputs: Vec<InputStats>,
    /// Events written.
    pub events: u64,
    /// Live capture: packets dropped because a worker queue was full, per worker queue.
    pub queue_full: Vec<u64>,
    /// Live capture: libpcap's kernel counters (summed over capture handles).
    pub pcap: Option<crate::capture::PcapStats>,
}

impl Stats {
    /// Counts a skipped frame.
    #[inline]
    pub fn decode_error(&mut self, e: DecodeError) {
        if let Some(c) = self.decode_errors.get_mut(e.index()) {
            *c += 1;
        }
    }

    /// Adds another capture thread's counters into these.
    pub fn absorb(&mut self, o: &Stats) {
        self.frames += o.frames;
        self.bytes += o.bytes;
        self.ip_packets += o.ip_packets;
        self.arp_packets += o.arp_packets;
        self.tunnelled += o.tunnelled;
        self.ts_backwards += o.ts_backwards;
        for (a, b) in self.decode_errors.iter_mut().zip(o.decode_errors.iter()) {
            *a += b;
        }
        let (f, g) = (&mut self.fragments, &o.fragments);
        f.fragments += g.fragments;
        f.first += g.first;
        f.attributed += g.attributed;
        f.unmatched += g.unmatched;
        f.held += g.held;
        f.evicted += g.evicted;
        self.inputs.extend(o.inputs.iter().cloned());
        self.events += o.events;
        // One count per worker queue; capture threads that share the workers add up.
        if self.queue_full.len() < o.queue_full.len() {
            self.queue_full.resize(o.queue_full.len(), 0);
        }
        for (a, b) in self.queue_full.iter_mut().zip(o.queue_full.iter()) {
            *a += b;
        }
        if let Some(p) = o.pcap {
            let q = self.pcap.get_or_insert_with(Default::default);
            q.received += p.received;
            q.dropped += p.dropped;
            q.if_dropped += p.if_dropped;
        }
    }

    /// Total frames skipped by the decoder.
    pub fn decode_errors_total(&self) -> u64 {
        self.decode_errors.iter().sum()
    }
}

/// JSON body of the `stats` event.
#[derive(Debug, Serialize)]
pub struct StatsJson<'a> {
    /// Frames read.
    pub frames: u64,
    /// Wire bytes read.
    pub bytes: u64,
    /// IP packets decoded.
    pub ip_packets: u64,
    /// ARP packets.
    pub arp_packets: u64,
    /// IP packets decapsulated from tunnels.
    pub tunnelled: u64,
    /// Skipped frames by kind (every kind listed, zero included).
    pub decode_errors: BTreeMap<&'static str, u64>,
    /// Sum of `decode_errors`.
    pub decode_errors_total: u64,
    /// Fragment counters.
    pub fragments: FragmentCounters,
    /// Flow counters.
    pub flows: FlowsJson,
    /// Events written before this one.
    pub events: u64,
    /// Inputs and their outcomes.
    pub inputs: &'a [InputStats],
    /// Live: packets dropped because a worker queue was full, per queue (never in replay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_full: Option<&'a [u64]>,
    /// Live: libpcap kernel counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<crate::capture::PcapStats>,
    /// Live: latency percentiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyJson>,
    /// Wall-clock seconds of the run.
    pub wall_time_s: f64,
    /// Frames per wall-clock second.
    pub packets_per_sec: f64,
}

/// Flow part of the `stats` event.
#[derive(Debug, Serialize)]
pub struct FlowsJson {
    /// Flows created.
    pub created: u64,
    /// Records emitted by end reason (every reason listed).
    pub ended: BTreeMap<&'static str, u64>,
    /// Flows ended early by the memory cap.
    pub evicted: u64,
    /// Flows still held when the stats were taken.
    pub active: u64,
    /// Largest number held at once.
    pub peak_active: u64,
    /// IP packets with a timestamp earlier than an earlier frame's (counted normally).
    pub ts_backwards: u64,
}

impl Stats {
    /// Builds the `stats` event body.
    pub fn to_json<'a>(&'a self, flows: &FlowCounters, active: u64, wall_s: f64) -> StatsJson<'a> {
        let decode_errors = DecodeError::ALL
            .iter()
            .map(|e| (e.name(), self.decode_errors[e.index()]))
            .collect();
        let ended = EndReason::ALL
            .iter()
            .map(|r| (r.as_str(), flows.ended[*r as usize]))
            .collect();
        StatsJson {
            frames: self.frames,
            bytes: self.bytes,
            ip_packets: self.ip_packets,
            arp_packets: self.arp_packets,
            tunnelled: self.tunnelled,
            decode_errors,
            decode_errors_total: self.decode_errors_total(),
            fragments: self.fragments,
            flows: FlowsJson {
                created: flows.created,
                ended,
                evicted: flows.ended[EndReason::Evicted as usize],
                active,
                peak_active: flows.peak_active,
                ts_backwards: self.ts_backwards,
            },
            events: self.events,
            inputs: &self.inputs,
            queue_full: (!self.queue_full.is_empty()).then_some(self.queue_full.as_slice()),
            capture: self.pcap,
            latency: None,
            wall_time_s: wall_s,
            packets_per_sec: if wall_s > 0.0 {
                self.frames as f64 / wall_s
            } else {
                0.0
            },
        }
    }
}

/// Percentiles of one latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
}

impl Percentiles {
    /// Reads the percentiles of an hdrhistogram.
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Latency section of the live `stats` event.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencyJson {
    /// From the moment a flow record was due (its `emit_ts`, packet/wall time) to its event
    /// being handed to the output, µs.
    pub packet_to_event_us: Percentiles,
    /// Time a worker spent on one batch of packets, µs.
    pub worker_batch_us: Percentiles,
}
