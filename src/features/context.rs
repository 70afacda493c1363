//! F28–F30: per-device sliding-window counters of the flows the device initiated.
//!
//! When a flow is counted (see also `docs/features.md`):
//! - a record is counted for its device when the device is the originator
//!   ([`Side::Orig`]) and the record is the flow's first (`slice == 0`; the interim
//!   continuations of a long flow are not new flows);
//! - it is counted at the moment it is passed to [`DeviceContext::observe`], i.e. when the
//!   flow ends, at the device's *context time*: the largest `last_ts` of any record seen
//!   for this device so far (records arrive in end order, but an idle-timed-out flow's
//!   `last_ts` is earlier than a FIN-closed one emitted before it; clamping keeps the
//!   windows monotonic and the result deterministic);
//! - the windows are half-open `(now − W, now]` with W = 60 s for F28/F30 and 10 s for
//!   F29, and the current record is included before the counts are read.
//!
//! Memory per device is bounded: at most `max_entries` flows are remembered per window
//! (older ones are dropped first, so counts saturate at `max_entries`).

use super::{service_key, ServiceKey, Side};
use crate::flow::FlowRecord;
use crate::time::Nanos;
use foldhash::HashMap;
use std::collections::VecDeque;

/// Window lengths and the per-device memory cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextConfig {
    /// Window of F28 (distinct peers) and F30 (distinct destination services). 60 s.
    pub long_window: Nanos,
    /// Window of F29 (new flows). 10 s.
    pub short_window: Nanos,
    /// Flows remembered per device and window at most. 1024.
    pub max_entries: usize,
}

impl Default for ContextConfig {
    fn default() -> Self {
        ContextConfig {
            long_window: Nanos::from_secs(60),
            short_window: Nanos::from_secs(10),
            max_entries: 1024,
        }
    }
}

/// The counters read for one flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContextCounts {
    /// F28 before ln1p: distinct peer addresses (exact) initiated to in the long window.
    pub distinct_peers: u32,
    /// F29 before ln1p: flows initiated in the short window.
    pub new_flows: u32,
    /// F30 before ln1p: distinct (transport, destination port) initiated to in the long
    /// window (ICMP: the type).
    pub distinct_ports: u32,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    t: i64,
    peer: [u8; 16],
    svc: ServiceKey,
}

/// One device's sliding windows.
#[derive(Debug, Clone)]
pub struct DeviceContext {
    cfg: ContextConfig,
    clock: Option<i64>,
    long: VecDeque<Entry>,
    short: VecDeque<i64>,
    peers: HashMap<[u8; 16], u32>,
    svcs: HashMap<ServiceKey, u32>,
}

fn dec<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u32>, k: &K) {
    if let Some(c) = m.get_mut(k) {
        *c -= 1;
        if *c == 0 {
            m.remove(k);
        }
    }
}

impl DeviceContext {
    /// An empty context.
    pub fn new(cfg: ContextConfig) -> Self {
        DeviceContext {
            cfg,
            clock: None,
            long: VecDeque::new(),
            short: VecDeque::new(),
            peers: HashMap::default(),
            svcs: HashMap::default(),
        }
    }

    /// The context time (largest `last_ts` seen, ns), if any record was seen.
    pub fn clock(&self) -> Option<i64> {
        self.clock
    }

    fn pop_long(&mut self) {
        if let Some(e) = self.long.pop_front() {
            dec(&mut self.peers, &e.peer);
            dec(&mut self.svcs, &e.svc);
        }
    }

    /// Accounts one record of this device (seen from `side`) and returns the window
    /// counts including it (see the module docs for the exact rule).
    pub fn observe(&mut self, rec: &FlowRecord, side: Side) -> ContextCounts {
        let now = self.clock.map_or(rec.last_ts.0, |c| c.max(rec.last_ts.0));
        self.clock = Some(now);
        let cap = self.cfg.max_entries.max(1);
        if side == Side::Orig && rec.slice == 0 {
            if self.long.len() >= cap {
                self.pop_long();
            }
            let e = Entry {
                t: now,
                peer: rec.resp.addr.0,
                svc: service_key(rec),
            };
            *self.peers.entry(e.peer).or_insert(0) += 1;
            *self.svcs.entry(e.svc).or_insert(0) += 1;
            self.long.push_back(e);
            if self.short.len() >= cap {
                self.short.pop_front();
            }
            self.short.push_back(now);
        }
        let long_start = now.saturating_sub(self.cfg.long_window.0);
        while self.long.front().is_some_and(|e| e.t <= long_start) {
            self.pop_long();
        }
        let short_start = now.saturating_sub(self.cfg.short_window.0);
        while self.short.front().is_some_and(|&t| t <= short_start) {
            self.short.pop_front();
        }
        ContextCounts {
            distinct_peers: self.peers.len() as u32,
            new_flows: self.short.len() as u32,
            distinct_ports: self.svcs.len() as u32,
        }
    }
}
