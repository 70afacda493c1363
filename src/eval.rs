//! Evaluation (`flowsentry eval`): replays a labelled capture through the detector exactly
//! as the sensor runs it, matches every flow record to its ground-truth label, and turns
//! the events the detector wrote (`anomaly`, `incident`) into the metrics of the design's
//! evaluation protocol: ROC-AUC and PR-AUC with the attack base rate, TPR at FPR 0.1 % and
//! 1 %, per-attack episode recall and alerts per episode, false incidents per device per
//! day, and time-to-detect. One replay feeds several detectors at once (the modes): the
//! per-class forests with the inventory, the same with inferred classes (no inventory),
//! and the single global forest (the pooled model for every device) as the baseline.
//!
//! Owns the label and episode files' reading, record↔label matching and the metric
//! arithmetic; it does not decide what is anomalous (that is `detect`).

use crate::capture::{Backend, Input};
use crate::detect::{Detector, DetectorConfig};
use crate::device::Inventory;
use crate::error::OutputError;
use crate::event::{EventWriter, SharedBuf};
use crate::flow::{FlowConfig, FlowRecord};
use crate::model::ModelBundle;
use crate::output::{FlowObserver, Output};
use crate::packet::{proto, ArpPacket};
use crate::pipeline::ReplayOptions;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An ARP binding-change alert counts for an ARP-spoofing episode when it falls in the
/// episode's window widened by this much at its end (the restoring ARP replies).
const ARP_SLACK_US: i64 = 60_000_000;
/// One day in microseconds.
const DAY_US: f64 = 86_400e6;

/// Errors of evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A label, episode or inventory file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of a label or episode file is not what the simulator writes.
    #[error("{path}:{line}: {msg} (expected the simulator's labels.jsonl / episodes.jsonl format, see docs/simulator.md)")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// The model or inventory is unusable.
    #[error("{0}")]
    Setup(String),
    /// A capture could not be read completely.
    #[error("{0}")]
    Input(String),
    /// Output failure (internal buffers).
    #[error("{0}")]
    Output(#[from] OutputError),
    /// Nothing to evaluate.
    #[error("evaluation data: {0}")]
    Data(String),
}

/// Which detectors one evaluation runs side by side (also the values of `--modes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Per-class forests, classes from the inventory (the product as configured).
    PerClass,
    /// Per-class forests, classes inferred from traffic (no inventory).
    Inferred,
    /// One global forest (the bundle's pooled model) for every device: the baseline.
    Global,
    /// Ablation: the per-class forests alone (no envelope guard, no rules).
    PerClassForest,
    /// Ablation: the global forest alone.
    GlobalForest,
}

impl Mode {
    /// The name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::PerClass => "per-class",
            Mode::Inferred => "inferred",
            Mode::Global => "global",
            Mode::PerClassForest => "per-class-forest",
            Mode::GlobalForest => "global-forest",
        }
    }
}

/// Evaluation settings.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Labelled captures, in time order.
    pub pcaps: Vec<PathBuf>,
    /// Flow labels (`labels.jsonl` of the simulator).
    pub labels: PathBuf,
    /// Attack episodes (`episodes.jsonl`).
    pub episodes: PathBuf,
    /// Device inventory (the per-class and global modes use it).
    pub inventory: Option<PathBuf>,
    /// The model bundle's bytes and a name for messages.
    pub model: (std::borrow::Cow<'static, [u8]>, String),
    /// Flow-table settings (the sensor's defaults unless overridden).
    pub flow: FlowConfig,
    /// Modes to run.
    pub modes: Vec<Mode>,
    /// Flow-table workers for the replay (output does not depend on it).
    pub workers: usize,
}

/// One line of `labels.jsonl`.
#[derive(Debug, Clone, Deserialize)]
struct LabelRow {
    src_ip: IpAddr,
    src_port: u16,
    dest_ip: IpAddr,
    dest_port: u16,
    proto: String,
    vlan: Vec<u16>,
    start_us: i64,
    end_us: i64,
    device_id: String,
    device_class: String,
    label: String,
    episode_id: Option<u32>,
}

/// One line of `episodes.jsonl`.
#[derive(Debug, Clone, Deserialize)]
struct EpisodeRow {
    episode_id: u32,
    #[serde(rename = "type")]
    kind: String,
    start_us: i64,
    end_us: i64,
    /// Devices the episode targets (names as in the labels' `device_id`).
    #[serde(default)]
    victims: Vec<String>,
}

/// Canonical, direction-free flow key of a label or a record: protocol, VLANs and the
/// ordered endpoint pair (ports are 0 for ICMP, whose "ports" are type/code).
type MatchKey = (u8, [u16; 2], (IpAddr, u16), (IpAddr, u16));

fn proto_number(name: &str) -> Option<u8> {
    match name {
        "TCP" => Some(proto::TCP),
        "UDP" => Some(proto::UDP),
        "ICMP" => Some(proto::ICMP),
        "IPv6-ICMP" | "ICMPv6" => Some(proto::ICMPV6),
        "GRE" => Some(proto::GRE),
        other => other.parse().ok(),
    }
}

fn match_key(p: u8, vlan: [u16; 2], a: (IpAddr, u16), b: (IpAddr, u16)) -> MatchKey {
    let (a, b) = if p == proto::ICMP || p == proto::ICMPV6 {
        ((a.0, 0), (b.0, 0))
    } else {
        (a, b)
    };
    if a <= b {
        (p, vlan, a, b)
    } else {
        (p, vlan, b, a)
    }
}

/// The labels of a capture, indexed for matching flow records.
#[derive(Debug, Default)]
pub struct LabelIndex {
    rows: Vec<LabelRow>,
    by_key: HashMap<MatchKey, Vec<u32>>,
}

impl LabelIndex {
    /// Reads `labels.jsonl`.
    pub fn load(path: &Path) -> Result<LabelIndex, EvalError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
            path: name.clone(),
            source,
        })?;
        let mut idx = LabelIndex::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row: LabelRow = serde_json::from_str(line).map_err(|e| EvalError::Parse {
                path: name.clone(),
                line: i + 1,
                msg: e.to_string(),
            })?;
            let p = proto_number(&row.proto).ok_or_else(|| EvalError::Parse {
                path: name.clone(),
                line: i + 1,
                msg: format!("unknown protocol {:?}", row.proto),
            })?;
            let mut vlan = [0u16; 2];
            for (slot, v) in vlan.iter_mut().zip(&row.vlan) {
                *slot = *v;
            }
            let k = match_key(
                p,
                vlan,
                (row.src_ip, row.src_port),
                (row.dest_ip, row.dest_port),
            );
            let n = idx.rows.len() as u32;
            idx.by_key.entry(k).or_default().push(n);
            idx.rows.push(row);
        }
        for v in idx.by_key.values_mut() {
            v.sort_by_key(|&i| idx.rows[i as usize].start_us);
        }
        Ok(idx)
    }

    /// The label whose flow contains this record (same key, record time span inside the
    /// label's). Records are slices of labelled flows (active timeout), so containment,
    /// not equality, is the rule. A record that no label contains but that spans several
    /// labelled flows of its key (a flood reusing a source port within the sensor's idle
    /// timeout: the simulator labels each connection attempt, the sensor sees one flow)
    /// gets the first of the overlapped labels that is an attack, else the first
    /// overlapped one: a record holding any attack packet is attack traffic.
    pub fn find(&self, rec: &FlowRecord) -> Option<u32> {
        let ip = |a: crate::packet::Addr| a.to_ip();
        let k = match_key(
            rec.proto,
            rec.key.vlan,
            (ip(rec.orig.addr), rec.orig.port),
            (ip(rec.resp.addr), rec.resp.port),
        );
        self.find_key(&k, rec.first_ts.as_micros(), rec.last_ts.as_micros())
    }

    /// [`LabelIndex::find`] for a record of key `k` spanning `first..=last` µs.
    fn find_key(&self, k: &MatchKey, first: i64, last: i64) -> Option<u32> {
        let list = self.by_key.get(k)?;
        let pos = list.partition_point(|&i| self.rows[i as usize].start_us <= first);
        let inside = list[..pos]
            .iter()
            .rev()
            .find(|&&i| self.rows[i as usize].end_us >= last)
            .copied();
        inside.or_else(|| {
            let end = list.partition_point(|&i| self.rows[i as usize].start_us <= last);
            let mut overlapped = list[..end]
                .iter()
                .copied()
                .filter(|&i| self.rows[i as usize].end_us >= first);
            let any = overlapped.clone().next();
            overlapped
                .find(|&i| self.rows[i as usize].label != "benign")
                .or(any)
        })
    }

    /// (label, device class, episode id) of label `i` (from [`LabelIndex::find`]).
    pub fn get(&self, i: u32) -> Option<(&str, &str, Option<u32>)> {
        self.rows
            .get(i as usize)
            .map(|r| (r.label.as_str(), r.device_class.as_str(), r.episode_id))
    }

    /// Labels read.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No labels.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

fn load_episodes(path: &Path) -> Result<Vec<EpisodeRow>, EvalError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
        path: name.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(line).map_err(|e| EvalError::Parse {
            path: name.clone(),
            line: i + 1,
            msg: e.to_string(),
        })?);
    }
    Ok(out)
}

/// Parses an EVE timestamp (`2026-01-05T00:00:03.746799+0000`, the form every event
/// uses) into microseconds since the Unix epoch.
pub fn parse_eve_us(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 26 || b[4] != b'-' || b[10] != b'T' || b[19] != b'.' {
        return None;
    }
    let num = |a: usize, z: usize| -> Option<i64> { s.get(a..z)?.parse::<i64>().ok() };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss, us) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 26)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + us)
}

// ---------------------------------------------------------------------------------------
// Metric arithmetic (pure functions).

/// ROC-AUC of scores `pos` (attacks) against `neg` (benign): the probability that a random
/// attack scores above a random benign flow, ties counted half (Mann–Whitney U).
pub fn roc_auc(pos: &[f64], neg: &[f64]) -> Option<f64> {
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the ranks of the positives, ties given their average rank.
    let mut rank_sum = 0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0.total_cmp(&all[i].0).is_eq() {
            j += 1;
        }
        let avg = (i + 1 + j) as f64 / 2.0;
        rank_sum += avg * all[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let (np, nn) = (pos.len() as f64, neg.len() as f64);
    Some((rank_sum - np * (np + 1.0) / 2.0) / (np * nn))
}

/// Average precision (the area under the precision-recall curve as scikit-learn's
/// `average_precision_score` computes it: Σ (Rₙ − Rₙ₋₁) Pₙ over descending thresholds,
/// tied scores taken together).
pub fn average_precision(pos: &[f64], neg: &[f64]) -> Option<f64> {
    if pos.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let np = pos.len() as f64;
    let (mut tp, mut fp, mut prev_recall, mut ap) = (0f64, 0f64, 0f64, 0f64);
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0.total_cmp(&all[i].0).is_eq() {
            if all[j].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            j += 1;
        }
        let recall = tp / np;
        let precision = tp / (tp + fp);
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j;
    }
    Some(ap)
}

/// TPR at a false-positive rate of at most `alpha`: the alert rule `score > t` with the
/// smallest `t` taken from the benign scores such that the share of benign scores above
/// it is ≤ `alpha`. Returns (TPR, realised FPR).
pub fn tpr_at_fpr(pos: &[f64], neg: &[f64], alpha: f64) -> Option<(f64, f64)> {
    tpr_at_benign_count(pos, neg, (alpha * neg.len() as f64).floor() as usize)
}

/// TPR and FPR at the threshold that lets at most `allowed` of the benign scores `neg`
/// pass; `None` when either side is empty.
fn tpr_at_benign_count(pos: &[f64], neg: &[f64], allowed: usize) -> Option<(f64, f64)> {
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut n: Vec<f64> = neg.to_vec();
    n.sort_by(|a, b| b.total_cmp(a));
    // Threshold = the (allowed+1)-th largest benign score: at most `allowed` benign scores
    // lie strictly above it (fewer with ties).
    let t = n[allowed.min(n.len() - 1)];
    let fp = n.iter().filter(|&&s| s > t).count();
    let tp = pos.iter().filter(|&&s| s > t).count();
    Some((tp as f64 / pos.len() as f64, fp as f64 / n.len() as f64))
}

/// Wilson score interval (95 %) of a proportion `k / n`.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n) + z * z / (4.0 * n * n)).sqrt() / denom;
    // At k = 0 (k = n) the bound is exactly 0 (1); the float expression leaves ~1e-17.
    let lo = if k == 0.0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let hi = if k == n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    (lo, hi)
}

/// The `q` quantile (0..=1) of `v` by the nearest-rank rule; `None` when empty.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = (q * s.len() as f64).ceil().max(1.0) as usize;
    Some(s[rank.min(s.len()) - 1])
}

// ---------------------------------------------------------------------------------------
// Collection: a FlowObserver that runs one detector per mode.

/// One alert as the detector wrote it.
#[derive(Debug, Clone)]
struct AlertObs {
    /// Emission (packet) time, µs.
    at_us: i64,
    /// The time incidents group the alert by (the flow's last packet; the ARP packet), µs.
    ts_us: i64,
    /// The alerting flow record's first packet, µs (the ARP packet for ARP alerts).
    first_us: i64,
    device_id: String,
    /// The device's class as the event gives it (`device.class`; empty for ARP alerts
    /// on an address no device claims).
    class: String,
    detector: String,
    /// The label of the alerting flow (none for ARP alerts).
    label: Option<u32>,
}

/// One incident as the detector wrote it.
#[derive(Debug, Clone)]
struct IncidentObs {
    device_id: String,
    class: String,
    start_us: i64,
    end_us: i64,
}

/// One flow record's outcome.
#[derive(Debug, Clone, Copy)]
struct FlowObs {
    label: Option<u32>,
    /// The record's first and last packet, µs.
    span_us: (i64, i64),
    /// max over the monitored sides of [`crate::detect::Verdict::margin`]; +1 when a rule
    /// alerted on the flow; −∞ when no side was scored.
    margin: f64,
    /// An alert (forest or rule) was written for the flow.
    alerted: bool,
}

struct ModeRun {
    mode: Mode,
    det: Detector,
    buf: SharedBuf,
    writer: EventWriter,
    flows: Vec<FlowObs>,
    alerts: Vec<AlertObs>,
    incidents: Vec<IncidentObs>,
    bad_events: u64,
}

impl ModeRun {
    /// Reads back the events written since the last call; `label` = the record being
    /// handled (for its anomaly events).
    fn drain(
        &mut self,
        label: Option<u32>,
        (first_us, last_us): (i64, i64),
    ) -> Result<(u32, bool), OutputError> {
        self.writer.flush()?;
        let bytes = self.buf.take();
        let (mut n_flow_alerts, mut rule) = (0u32, false);
        for line in bytes.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
                self.bad_events += 1;
                continue;
            };
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
            match s("event_type") {
                "anomaly" => {
                    let detector = s("detector").to_string();
                    // ARP alerts on an address no device claims are grouped by the address.
                    let device_id = v
                        .pointer("/device/id")
                        .and_then(|x| x.as_str())
                        .unwrap_or(s("src_ip"))
                        .to_string();
                    let class = v
                        .pointer("/device/class")
                        .and_then(|x| x.as_str())
                        .unwrap_or("")
                        .to_string();
                    let is_flow = !crate::detect::ARP_DETECTORS.contains(&detector.as_str());
                    let at = if !is_flow {
                        s("timestamp")
                    } else {
                        s("detected_at")
                    };
                    let Some(at_us) = parse_eve_us(at) else {
                        self.bad_events += 1;
                        continue;
                    };
                    if is_flow {
                        n_flow_alerts += 1;
                        // Rules have no score: a flow they alerted ranks above every score.
                        rule |= crate::detect::RULE_DETECTORS.contains(&detector.as_str());
                    }
                    self.alerts.push(AlertObs {
                        at_us,
                        ts_us: if is_flow { last_us } else { at_us },
                        first_us: if is_flow { first_us } else { at_us },
                        device_id,
                        class,
                        detector,
                        label: if is_flow { label } else { None },
                    });
                }
                "incident" => {
                    let (Some(a), Some(b)) = (parse_eve_us(s("start")), parse_eve_us(s("end")))
                    else {
                        self.bad_events += 1;
                        continue;
                    };
                    self.incidents.push(IncidentObs {
                        device_id: s("device_id").to_string(),
                        class: s("class").to_string(),
                        start_us: a,
                        end_us: b,
                    });
                }
                _ => {}
            }
        }
        Ok((n_flow_alerts, rule))
    }
}

/// What the collector hands back at the end of the replay: the mode runs and the records
/// that matched no label.
type Finished = Arc<Mutex<Option<(Vec<ModeRun>, u64)>>>;

struct Collector {
    labels: Arc<LabelIndex>,
    runs: Vec<ModeRun>,
    unmatched: u64,
    done: Finished,
}

impl FlowObserver for Collector {
    fn prepare(&mut self, recs: &mut dyn Iterator<Item = &FlowRecord>) {
        let recs: Vec<&FlowRecord> = recs.collect();
        for r in &mut self.runs {
            r.det.prepare(&mut recs.iter().copied());
        }
    }

    fn on_flow(&mut self, rec: &FlowRecord, _w: &mut EventWriter) -> Result<(), OutputError> {
        let label = self.labels.find(rec);
        if label.is_none() {
            self.unmatched += 1;
        }
        for r in &mut self.runs {
            r.det.on_flow(rec, &mut r.writer)?;
            let margin = r
                .det
                .last_verdicts()
                .iter()
                .map(|v| v.margin())
                .fold(f64::NEG_INFINITY, f64::max);
            // A new-public-peer match ranks as a rule alert even when its event was
            // suppressed as a repeat (suppression dedups output, it is not a verdict).
            let peer_rule = r.det.last_verdicts().iter().any(|v| v.new_public_peer);
            let span = (rec.first_ts.as_micros(), rec.last_ts.as_micros());
            let (n, rule) = r.drain(label, span)?;
            let rule = rule || peer_rule;
            r.flows.push(FlowObs {
                label,
                span_us: span,
                margin: if rule { 1.0 } else { margin },
                alerted: n > 0,
            });
        }
        Ok(())
    }

    fn on_arp(&mut self, arp: &ArpPacket, _w: &mut EventWriter) -> Result<(), OutputError> {
        for r in &mut self.runs {
            r.det.on_arp(arp, &mut r.writer)?;
            r.drain(None, (0, 0))?;
        }
        Ok(())
    }

    fn finish(&mut self, ts: Timestamp, _w: &mut EventWriter) -> Result<(), OutputError> {
        for r in &mut self.runs {
            r.det.finish(ts, &mut r.writer)?;
            r.drain(None, (0, 0))?;
        }
        if let Ok(mut d) = self.done.lock() {
            *d = Some((std::mem::take(&mut self.runs), self.unmatched));
        }
        Ok(())
    }

    fn stats(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    fn alert_counts(&self) -> (u64, u64) {
        (0, 0)
    }

    fn human_summary(&self) -> String {
        String::new()
    }

    fn replace_model(&mut self, _bundle: Arc<ModelBundle>, _id: String) {}
}

// ---------------------------------------------------------------------------------------
// Reports.

/// Flow-level detection figures of one population (pooled, a class, or an attack type).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlowMetrics {
    /// Benign flow records.
    pub benign: u64,
    /// Attack flow records.
    pub attack: u64,
    /// attack / (attack + benign).
    pub base_rate: f64,
    /// ROC-AUC of the alert statistic (score − threshold).
    pub roc_auc: Option<f64>,
    /// Average precision (PR-AUC); compare with `base_rate`.
    pub pr_auc: Option<f64>,
    /// TPR at FPR ≤ 0.1 %.
    pub tpr_at_fpr_0_1pct: Option<f64>,
    /// TPR at FPR ≤ 1 %.
    pub tpr_at_fpr_1pct: Option<f64>,
    /// At the calibrated thresholds (what the sensor alerts on): benign flows alerted.
    pub fp: u64,
    /// FPR at the calibrated thresholds.
    pub fpr: f64,
    /// Wilson 95 % interval of `fpr`.
    pub fpr_ci95: (f64, f64),
    /// TPR (flow recall) at the calibrated thresholds: attack records with an alert
    /// event written.
    pub tpr: f64,
    /// Attack records the detector flagged (ranking statistic above 0: over a threshold,
    /// or a rule matched), counting rule matches whose alert was suppressed as a repeat;
    /// the same definition as the ranking and the matched operating point.
    pub tpr_flagged: f64,
    /// Benign records flagged, by the same definition.
    pub fp_flagged: u64,
}

fn flow_metrics(pos: &[(f64, bool)], neg: &[(f64, bool)]) -> FlowMetrics {
    let ps: Vec<f64> = pos.iter().map(|x| x.0).collect();
    let ns: Vec<f64> = neg.iter().map(|x| x.0).collect();
    let fp = neg.iter().filter(|x| x.1).count() as u64;
    let tp = pos.iter().filter(|x| x.1).count() as u64;
    let total = (pos.len() + neg.len()) as f64;
    FlowMetrics {
        benign: neg.len() as u64,
        attack: pos.len() as u64,
        base_rate: if total > 0.0 {
            pos.len() as f64 / total
        } else {
            0.0
        },
        roc_auc: roc_auc(&ps, &ns),
        pr_auc: average_precision(&ps, &ns),
        tpr_at_fpr_0_1pct: tpr_at_fpr(&ps, &ns, 0.001).map(|x| x.0),
        tpr_at_fpr_1pct: tpr_at_fpr(&ps, &ns, 0.01).map(|x| x.0),
        fp,
        fpr: if neg.is_empty() {
            0.0
        } else {
            fp as f64 / neg.len() as f64
        },
        fpr_ci95: wilson(fp, neg.len() as u64),
        tpr: if pos.is_empty() {
            0.0
        } else {
            tp as f64 / pos.len() as f64
        },
        tpr_flagged: if pos.is_empty() {
            0.0
        } else {
            pos.iter().filter(|x| x.0 > 0.0).count() as f64 / pos.len() as f64
        },
        fp_flagged: neg.iter().filter(|x| x.0 > 0.0).count() as u64,
    }
}

/// Episode-level figures of one attack type.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AttackReport {
    /// Episodes of this type in the capture.
    pub episodes: u64,
    /// Episodes with at least one alert.
    pub detected: u64,
    /// detected / episodes.
    pub episode_recall: f64,
    /// Alerts per episode (mean).
    pub alerts_per_episode: f64,
    /// Median time from episode start to the first alert's emission, seconds.
    pub ttd_median_s: Option<f64>,
    /// 95th percentile of the same.
    pub ttd_p95_s: Option<f64>,
    /// Flow-level figures: this type's flows against all benign flows.
    pub flows: FlowMetrics,
}

/// False alerts and incidents on benign traffic.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TriageReport {
    /// Monitored devices (distinct device ids of the labels).
    pub devices: u64,
    /// Days covered by the capture (label time span).
    pub days: f64,
    /// Incidents written.
    pub incidents: u64,
    /// Incidents none of whose alerts was on attack traffic.
    pub false_incidents: u64,
    /// false_incidents / (devices × days).
    pub false_incidents_per_device_day: f64,
    /// Alerts on benign flows / (devices × days).
    pub false_alerts_per_device_day: f64,
    /// False incidents by device class.
    pub false_incidents_by_class: BTreeMap<String, u64>,
    /// Alerts on benign traffic (false alerts), by the detector that wrote them (the
    /// first that fired).
    pub false_alerts_by_detector: BTreeMap<String, u64>,
    /// False alerts by the class the event gave the device.
    pub false_alerts_by_class: BTreeMap<String, u64>,
    /// False alert events on a device while an attack on it was under way (a benign
    /// flow of a victim, by the alerted device or the flow's labelled device, within
    /// an incident window of one of its episodes): the attack
    /// moved the device's own counters (fan-out, new flows) and the alert joins that
    /// attack's incident. The others add to the triage queue on their own.
    pub false_alerts_under_attack: u64,
    /// The false alert events not under attack, per device and day.
    pub false_alerts_outside_attacks_per_device_day: f64,
    /// Flow alerts on records that matched no label (truth unknown): in no false-alert
    /// count and no episode's detection.
    pub unlabelled_alerts: u64,
}

/// Everything measured for one mode.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModeReport {
    /// The mode.
    pub mode: Mode,
    /// All classes together.
    pub pooled: FlowMetrics,
    /// By the labelled device class.
    pub per_class: BTreeMap<String, FlowMetrics>,
    /// By attack type.
    pub per_attack: BTreeMap<String, AttackReport>,
    /// Lowest episode recall over the attack types.
    pub min_episode_recall: f64,
    /// False alerts and incidents.
    pub triage: TriageReport,
    /// Flow records with no monitored side (never scored): attack ones are misses.
    pub unscored: u64,
    /// Alerts written, by detector (`iforest`, `modbus_write_unknown_master`,
    /// `arp_binding_change`).
    pub alerts_by_detector: BTreeMap<String, u64>,
    /// This mode against its baseline at the baseline's false-alert rate (`None` for
    /// the baselines themselves, or when the baseline mode was not run).
    pub matched: Option<Matched>,
}

/// A mode and its baseline at the same benign flow alert rate: the mode's thresholds
/// all shifted by one margin so that at most as many benign flows pass as the
/// baseline alerts at its calibrated thresholds, and the attack flows that then pass.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Matched {
    /// The baseline mode.
    pub baseline: Mode,
    /// The baseline's benign flow alert rate at its calibrated thresholds.
    pub baseline_fpr: f64,
    /// The baseline's attack flow alert rate (TPR) at its calibrated thresholds.
    pub baseline_tpr: f64,
    /// The baseline's TPR with its own thresholds shifted by one margin to the most
    /// attack flows at the same benign count: what its ranking could reach with a
    /// better calibration.
    pub baseline_shifted_tpr: f64,
    /// This mode's benign flow alert rate at the shifted thresholds (≤ `baseline_fpr`).
    pub fpr: f64,
    /// This mode's TPR at the shifted thresholds: above `baseline_tpr` means it finds
    /// more attack flows for no more false alerts.
    pub tpr: f64,
}

/// The evaluation report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalReport {
    /// Model id (short hash).
    pub model_id: String,
    /// Captures evaluated.
    pub inputs: Vec<String>,
    /// Flow records replayed.
    pub records: u64,
    /// Records that matched a label (the rest are left out of every figure).
    pub matched: u64,
    /// Label records read.
    pub labels: u64,
    /// Episodes read.
    pub episodes: u64,
    /// Idle timeouts (TCP, TCP SYN-only, UDP, other) and active timeout in force, seconds.
    pub timeouts_s: BTreeMap<String, f64>,
    /// One report per mode.
    pub modes: Vec<ModeReport>,
}

/// Which flow records are attack traffic.
struct AttackTruth {
    /// Episode id -> its window (µs; ARP spoofing widened by [`ARP_SLACK_US`]).
    windows: HashMap<u32, (i64, i64)>,
    /// (attack type, victim device) -> the windows of that type's episodes on it.
    by_victim: HashMap<(String, String), Vec<(i64, i64)>>,
}

impl AttackTruth {
    fn new(episodes: &[EpisodeRow]) -> AttackTruth {
        let window = |e: &EpisodeRow| {
            let slack = if e.kind == "arp_spoof" {
                ARP_SLACK_US
            } else {
                0
            };
            (e.start_us, e.end_us + slack)
        };
        let windows = episodes.iter().map(|e| (e.episode_id, window(e))).collect();
        let mut by_victim: HashMap<(String, String), Vec<(i64, i64)>> = HashMap::new();
        for e in episodes {
            for v in &e.victims {
                by_victim
                    .entry((e.kind.clone(), v.clone()))
                    .or_default()
                    .push(window(e));
            }
        }
        AttackTruth { windows, by_victim }
    }

    /// A record spanning `(first, last)` µs, matched to label `row`, is attack traffic
    /// when the label is an attack and, for a label of an episode, the record overlaps
    /// the episode's window, or the window of another episode of the same type on the
    /// same device. The simulator labels a whole 5-tuple ("a flow containing any attack
    /// packet is attack"), with the first episode that touched it; the sensor cuts a
    /// long flow into 300 s records, and a day-long camera stream diverted for a few
    /// minutes (ARP spoofing) spans ~290 records, all but one or two of them before or
    /// after the episode: they hold no attack packet and are the camera's benign
    /// traffic. The same stream diverted again later in the day (a second ARP-spoofing
    /// episode on that camera) keeps its first episode's label, hence the second rule.
    fn is_attack(&self, row: &LabelRow, (first, last): (i64, i64)) -> bool {
        let overlaps = |&(s, e): &(i64, i64)| first <= e && last >= s;
        row.label != "benign"
            && row
                .episode_id
                .and_then(|e| self.windows.get(&e))
                .is_none_or(|w| {
                    overlaps(w)
                        || self
                            .by_victim
                            .get(&(row.label.clone(), row.device_id.clone()))
                            .is_some_and(|ws| ws.iter().any(overlaps))
                })
    }
}

fn report_mode(
    run: &ModeRun,
    labels: &LabelIndex,
    episodes: &[EpisodeRow],
    devices: u64,
    days: f64,
) -> (ModeReport, Ranked) {
    let rows = &labels.rows;
    let truth = AttackTruth::new(episodes);
    let is_attack = |l: u32, span: (i64, i64)| truth.is_attack(&rows[l as usize], span);
    let mut pooled_pos = Vec::new();
    let mut pooled_neg = Vec::new();
    let mut class_pos: BTreeMap<String, Vec<(f64, bool)>> = BTreeMap::new();
    let mut class_neg: BTreeMap<String, Vec<(f64, bool)>> = BTreeMap::new();
    let mut attack_pos: BTreeMap<String, Vec<(f64, bool)>> = BTreeMap::new();
    let mut unscored = 0;
    for f in &run.flows {
        let Some(l) = f.label else { continue };
        let row = &rows[l as usize];
        if f.margin == f64::NEG_INFINITY {
            unscored += 1;
        }
        let x = (f.margin, f.alerted);
        if is_attack(l, f.span_us) {
            pooled_pos.push(x);
            class_pos
                .entry(row.device_class.clone())
                .or_default()
                .push(x);
            attack_pos.entry(row.label.clone()).or_default().push(x);
        } else {
            pooled_neg.push(x);
            class_neg
                .entry(row.device_class.clone())
                .or_default()
                .push(x);
        }
    }
    let classes: BTreeSet<String> = class_pos.keys().chain(class_neg.keys()).cloned().collect();
    let per_class = classes
        .into_iter()
        .map(|c| {
            let m = flow_metrics(
                class_pos.get(&c).map(Vec::as_slice).unwrap_or(&[]),
                class_neg.get(&c).map(Vec::as_slice).unwrap_or(&[]),
            );
            (c, m)
        })
        .collect();

    // Episodes: first alert and alert count per episode.
    let mut first: BTreeMap<u32, i64> = BTreeMap::new();
    let mut count: BTreeMap<u32, u64> = BTreeMap::new();
    let mut note = |ep: u32, at: i64| {
        let e = first.entry(ep).or_insert(at);
        if at < *e {
            *e = at;
        }
        *count.entry(ep).or_insert(0) += 1;
    };
    // Per alert: attack traffic, benign traffic, or unknown (`None`: a flow alert on a
    // record that matched no label).
    let mut attack_alert: Vec<Option<bool>> = Vec::with_capacity(run.alerts.len());
    for a in &run.alerts {
        match a.label {
            Some(l) => {
                let row = &rows[l as usize];
                let att = is_attack(l, (a.first_us, a.ts_us));
                if let (true, Some(ep)) = (att, row.episode_id) {
                    note(ep, a.at_us);
                }
                attack_alert.push(Some(att));
            }
            None if !crate::detect::ARP_DETECTORS.contains(&a.detector.as_str()) => {
                // Its truth is unknown: not an episode's detection, not a false alert
                // (counted apart); for incidents it is not attack evidence.
                attack_alert.push(None);
            }
            None => {
                // ARP binding change: attack traffic when inside an ARP-spoofing episode
                // (the alert names the claimed address, which may be an infrastructure
                // host such as the NVR rather than a listed device).
                let ep = episodes.iter().find(|e| {
                    e.kind == "arp_spoof"
                        && a.at_us >= e.start_us
                        && a.at_us <= e.end_us + ARP_SLACK_US
                });
                if let Some(e) = ep {
                    note(e.episode_id, a.at_us);
                }
                attack_alert.push(Some(ep.is_some()));
            }
        }
    }
    let mut per_attack: BTreeMap<String, AttackReport> = BTreeMap::new();
    let kinds: BTreeSet<&str> = episodes
        .iter()
        .map(|e| e.kind.as_str())
        .chain(attack_pos.keys().map(String::as_str))
        .collect();
    for k in kinds {
        let eps: Vec<&EpisodeRow> = episodes.iter().filter(|e| e.kind == k).collect();
        let detected: Vec<&&EpisodeRow> = eps
            .iter()
            .filter(|e| first.contains_key(&e.episode_id))
            .collect();
        let ttd: Vec<f64> = detected
            .iter()
            .filter_map(|e| {
                first
                    .get(&e.episode_id)
                    .map(|&t| (t - e.start_us).max(0) as f64 / 1e6)
            })
            .collect();
        let alerts: u64 = eps
            .iter()
            .map(|e| count.get(&e.episode_id).copied().unwrap_or(0))
            .sum();
        let n = eps.len() as u64;
        per_attack.insert(
            k.to_string(),
            AttackReport {
                episodes: n,
                detected: detected.len() as u64,
                episode_recall: if n > 0 {
                    detected.len() as f64 / n as f64
                } else {
                    0.0
                },
                alerts_per_episode: if n > 0 { alerts as f64 / n as f64 } else { 0.0 },
                ttd_median_s: quantile(&ttd, 0.5),
                ttd_p95_s: quantile(&ttd, 0.95),
                flows: flow_metrics(
                    attack_pos.get(k).map(Vec::as_slice).unwrap_or(&[]),
                    &pooled_neg,
                ),
            },
        );
    }
    let min_episode_recall = per_attack
        .values()
        .filter(|a| a.episodes > 0)
        .map(|a| a.episode_recall)
        .fold(1.0, f64::min);

    // Incidents: false when no alert of the device inside it was on attack traffic.
    let mut by_device: BTreeMap<&str, Vec<(i64, bool)>> = BTreeMap::new();
    for (a, &att) in run.alerts.iter().zip(&attack_alert) {
        by_device
            .entry(a.device_id.as_str())
            .or_default()
            .push((a.ts_us, att == Some(true)));
    }
    let mut false_incidents = 0;
    let mut false_by_class: BTreeMap<String, u64> = BTreeMap::new();
    for inc in &run.incidents {
        // Incidents span their alerts' grouping times (flow last packet, ARP packet).
        let hit = by_device.get(inc.device_id.as_str()).is_some_and(|v| {
            v.iter()
                .any(|&(t, att)| att && t >= inc.start_us && t <= inc.end_us)
        });
        if !hit {
            false_incidents += 1;
            *false_by_class.entry(inc.class.clone()).or_insert(0) += 1;
        }
    }
    let mut false_by_detector: BTreeMap<String, u64> = BTreeMap::new();
    let mut false_alert_class: BTreeMap<String, u64> = BTreeMap::new();
    let (mut false_alerts, mut false_under_attack) = (0u64, 0u64);
    let unlabelled_alerts = attack_alert.iter().filter(|t| t.is_none()).count() as u64;
    let window_us = (DetectorConfig::default().incident_window.as_secs_f64() * 1e6) as i64;
    for (a, _) in run
        .alerts
        .iter()
        .zip(&attack_alert)
        .filter(|(_, &att)| att == Some(false))
    {
        false_alerts += 1;
        *false_by_detector.entry(a.detector.clone()).or_insert(0) += 1;
        *false_alert_class.entry(a.class.clone()).or_insert(0) += 1;
        // The alerted device, or the flow's labelled device (a device named by
        // inference, or the other end of a victim's flow).
        let labelled = a.label.map(|l| rows[l as usize].device_id.as_str());
        let span = (a.first_us, a.ts_us);
        if std::iter::once(a.device_id.as_str())
            .chain(labelled)
            .any(|d| under_attack(episodes, window_us, d, span))
        {
            false_under_attack += 1;
        }
    }
    let benign_alerts = pooled_neg.iter().filter(|x| x.1).count() as f64;
    let dd = (devices as f64 * days).max(f64::MIN_POSITIVE);
    let ranked = Ranked {
        pos: pooled_pos.iter().map(|x| x.0).collect(),
        neg: pooled_neg.iter().map(|x| x.0).collect(),
    };
    let report = ModeReport {
        mode: run.mode,
        pooled: flow_metrics(&pooled_pos, &pooled_neg),
        per_class,
        per_attack,
        min_episode_recall,
        triage: TriageReport {
            devices,
            days,
            incidents: run.incidents.len() as u64,
            false_incidents,
            false_incidents_per_device_day: false_incidents as f64 / dd,
            false_alerts_per_device_day: benign_alerts / dd,
            false_incidents_by_class: false_by_class,
            false_alerts_by_detector: false_by_detector,
            false_alerts_by_class: false_alert_class,
            false_alerts_under_attack: false_under_attack,
            unlabelled_alerts,
            false_alerts_outside_attacks_per_device_day: (false_alerts - false_under_attack) as f64
                / dd,
        },
        unscored,
        alerts_by_detector: run.alerts.iter().fold(BTreeMap::new(), |mut m, a| {
            *m.entry(a.detector.clone()).or_insert(0) += 1;
            m
        }),
        matched: None,
    };
    (report, ranked)
}

/// Whether `device` was a victim of an episode whose window, widened by `w` µs (the
/// incident window) on both sides, overlaps `(first, last)` µs.
fn under_attack(episodes: &[EpisodeRow], w: i64, device: &str, (first, last): (i64, i64)) -> bool {
    episodes.iter().any(|e| {
        first <= e.end_us + w && last >= e.start_us - w && e.victims.iter().any(|v| v == device)
    })
}

/// The pooled ranking statistics of one mode: attack flows, benign flows.
struct Ranked {
    pos: Vec<f64>,
    neg: Vec<f64>,
}

/// The mode a mode is compared with at a matched operating point: the global forest
/// for the per-class modes, the global forest alone for the per-class forests alone.
fn baseline_of(m: Mode) -> Option<Mode> {
    match m {
        Mode::PerClass | Mode::Inferred => Some(Mode::Global),
        Mode::PerClassForest => Some(Mode::GlobalForest),
        Mode::Global | Mode::GlobalForest => None,
    }
}

/// The matched operating point of `ranked` against a baseline that alerts on
/// `baseline.fp` of the same benign flows: the TPR `ranked` reaches with at most that
/// many benign flows above one common shift of its thresholds.
/// `baseline_ranked` is the baseline's own ranking, shifted the same way.
fn matched_point(
    baseline_mode: Mode,
    baseline: &FlowMetrics,
    baseline_ranked: &Ranked,
    ranked: &Ranked,
) -> Option<Matched> {
    if baseline.benign != ranked.neg.len() as u64 || baseline_ranked.neg.len() != ranked.neg.len() {
        return None;
    }
    let allowed = baseline.fp as usize;
    let (tpr, fpr) = tpr_at_benign_count(&ranked.pos, &ranked.neg, allowed)?;
    let (baseline_shifted_tpr, _) =
        tpr_at_benign_count(&baseline_ranked.pos, &baseline_ranked.neg, allowed)?;
    Some(Matched {
        baseline: baseline_mode,
        baseline_fpr: baseline.fpr,
        baseline_tpr: baseline.tpr,
        baseline_shifted_tpr,
        fpr,
        tpr,
    })
}

/// Runs the evaluation.
pub fn evaluate(o: &EvalOptions) -> Result<EvalReport, EvalError> {
    let labels = Arc::new(LabelIndex::load(&o.labels)?);
    if labels.is_empty() {
        return Err(EvalError::Data(format!(
            "{}: no label records",
            o.labels.display()
        )));
    }
    let episodes = load_episodes(&o.episodes)?;
    let bundle = Arc::new(
        ModelBundle::from_bytes(&o.model.0, &o.model.1)
            .map_err(|e| EvalError::Setup(e.to_string()))?,
    );
    let model_id = ModelBundle::id_of(&o.model.0);
    let inventory = match &o.inventory {
        Some(p) => Inventory::load(p).map_err(|e| EvalError::Setup(e.to_string()))?,
        None => Inventory::default(),
    };
    let mut runs = Vec::new();
    for &mode in &o.modes {
        let (inv, global, forest_only) = match mode {
            Mode::PerClass => (inventory.clone(), false, false),
            Mode::Inferred => (Inventory::default(), false, false),
            Mode::Global => (inventory.clone(), true, false),
            Mode::PerClassForest => (inventory.clone(), false, true),
            Mode::GlobalForest => (inventory.clone(), true, true),
        };
        let cfg = DetectorConfig {
            global_model: global,
            forest_only,
            // Flows are ranked by their margins, which need exact scores.
            exact_scores: true,
            ..DetectorConfig::default()
        };
        let buf = SharedBuf::default();
        runs.push(ModeRun {
            mode,
            det: Detector::new(bundle.clone(), model_id.clone(), inv, cfg),
            writer: EventWriter::new(Box::new(buf.clone()), "evaluation buffer"),
            buf,
            flows: Vec::new(),
            alerts: Vec::new(),
            incidents: Vec::new(),
            bad_events: 0,
        });
    }
    let done: Finished = Arc::new(Mutex::new(None));
    let collector = Collector {
        labels: labels.clone(),
        runs,
        unmatched: 0,
        done: done.clone(),
    };
    let mut out = Output::flows_only(EventWriter::new(Box::new(std::io::sink()), "sink"));
    out.emit_flows = false;
    out.observer = Some(Box::new(collector));
    let ropts = ReplayOptions {
        inputs: o.pcaps.iter().map(|p| Input::File(p.clone())).collect(),
        backend: Backend::Native,
        flow: o.flow,
        workers: o.workers,
        ..ReplayOptions::default()
    };
    let outcome = crate::pipeline::replay(&ropts, &mut out)?;
    if let Some(e) = outcome.input_errors.first() {
        return Err(EvalError::Input(e.clone()));
    }
    let (runs, unmatched) = done.lock().ok().and_then(|mut d| d.take()).ok_or_else(|| {
        EvalError::Data("the replay ended without finishing the detectors".into())
    })?;
    let records = runs.first().map(|r| r.flows.len() as u64).unwrap_or(0);
    if let Some(bad) = runs.iter().map(|r| r.bad_events).find(|&b| b > 0) {
        return Err(EvalError::Data(format!(
            "{bad} detector events could not be read back (internal error)"
        )));
    }

    // Devices and days from the labels.
    let devices: BTreeSet<&str> = labels.rows.iter().map(|r| r.device_id.as_str()).collect();
    let lo = labels.rows.iter().map(|r| r.start_us).min().unwrap_or(0);
    let hi = labels.rows.iter().map(|r| r.end_us).max().unwrap_or(0);
    let days = ((hi - lo) as f64 / DAY_US).max(1e-9);
    let (mut modes, ranked): (Vec<ModeReport>, Vec<Ranked>) = runs
        .iter()
        .map(|r| report_mode(r, &labels, &episodes, devices.len() as u64, days))
        .unzip();
    for i in 0..modes.len() {
        let Some(b) = baseline_of(modes[i].mode) else {
            continue;
        };
        if let Some(j) = modes.iter().position(|m| m.mode == b) {
            let point = matched_point(b, &modes[j].pooled, &ranked[j], &ranked[i]);
            modes[i].matched = point;
        }
    }
    let f = &o.flow;
    let secs = |n: crate::time::Nanos| n.as_secs_f64();
    let timeouts_s = BTreeMap::from([
        ("tcp_idle".to_string(), secs(f.tcp_idle)),
        ("tcp_syn_idle".to_string(), secs(f.tcp_syn_idle)),
        ("udp_idle".to_string(), secs(f.udp_idle)),
        ("other_idle".to_string(), secs(f.other_idle)),
        (
            "active".to_string(),
            f.active_timeout.map(secs).unwrap_or(0.0),
        ),
    ]);
    Ok(EvalReport {
        model_id,
        inputs: o.pcaps.iter().map(|p| p.display().to_string()).collect(),
        records,
        matched: records - unmatched,
        labels: labels.len() as u64,
        episodes: episodes.len() as u64,
        timeouts_s,
        modes,
    })
}

fn opt(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) => format!("{v:.digits$}"),
        None => "-".into(),
    }
}

/// `key n, key n, ...` of a count map.
fn join_counts(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report as tables for people.
pub fn render(r: &EvalReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "model {}; {} flow records ({} matched to {} labels), {} episodes; timeouts (s): {}\n",
        r.model_id,
        r.records,
        r.matched,
        r.labels,
        r.episodes,
        r.timeouts_s
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s.push_str("\nSummary (flow level; alert statistic = detector margin, > 0 = alert)\n");
    s.push_str(&format!(
        "{:<10} {:>8} {:>8} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>11} {:>11}\n",
        "mode",
        "ROC-AUC",
        "PR-AUC",
        "base rate",
        "TPR@.1%",
        "TPR@1%",
        "FPR(thr)",
        "min ep.rec",
        "incidents",
        "false inc.",
        "false/dev/d"
    ));
    for m in &r.modes {
        s.push_str(&format!(
            "{:<10} {:>8} {:>8} {:>9.4} {:>8} {:>10} {:>9.5} {:>9.3} {:>9} {:>11} {:>11.3}\n",
            m.mode.as_str(),
            opt(m.pooled.roc_auc, 4),
            opt(m.pooled.pr_auc, 4),
            m.pooled.base_rate,
            opt(m.pooled.tpr_at_fpr_0_1pct, 3),
            opt(m.pooled.tpr_at_fpr_1pct, 3),
            m.pooled.fpr,
            m.min_episode_recall,
            m.triage.incidents,
            m.triage.false_incidents,
            m.triage.false_incidents_per_device_day
        ));
    }
    for m in &r.modes {
        if let Some(x) = &m.matched {
            s.push_str(&format!(
                "{} against {} at its false-alert rate (FPR {:.5}): TPR {:.4} (FPR {:.5}) vs {:.4} at its thresholds, {:.4} with them shifted\n",
                m.mode.as_str(),
                x.baseline.as_str(),
                x.baseline_fpr,
                x.tpr,
                x.fpr,
                x.baseline_tpr,
                x.baseline_shifted_tpr,
            ));
        }
    }
    for m in &r.modes {
        s.push_str(&format!(
            "\n[{}] {} devices, {:.2} days, {:.3} false alerts/device/day ({} alerts on devices under attack, {:.3}/device/day outside attacks; {} alerts on unlabelled records); alerts by detector: {}; false alerts by detector: {}\n",
            m.mode.as_str(),
            m.triage.devices,
            m.triage.days,
            m.triage.false_alerts_per_device_day,
            m.triage.false_alerts_under_attack,
            m.triage.false_alerts_outside_attacks_per_device_day,
            m.triage.unlabelled_alerts,
            join_counts(&m.alerts_by_detector),
            join_counts(&m.triage.false_alerts_by_detector),
        ));
        s.push_str(&format!(
            "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>10}\n",
            "class",
            "benign",
            "attack",
            "ROC-AUC",
            "PR-AUC",
            "TPR@.1%",
            "TPR@1%",
            "FPR(thr)",
            "TPR(thr)",
            "false inc."
        ));
        for (c, f) in &m.per_class {
            s.push_str(&format!(
                "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9.5} {:>8.3} {:>10}\n",
                c,
                f.benign,
                f.attack,
                opt(f.roc_auc, 4),
                opt(f.pr_auc, 4),
                opt(f.tpr_at_fpr_0_1pct, 3),
                opt(f.tpr_at_fpr_1pct, 3),
                f.fpr,
                f.tpr,
                m.triage
                    .false_incidents_by_class
                    .get(c)
                    .copied()
                    .unwrap_or(0)
            ));
        }
        s.push_str(&format!(
            "{:<22} {:>5} {:>6} {:>8} {:>9} {:>9} {:>9} {:>8} {:>8}\n",
            "attack",
            "eps",
            "recall",
            "alerts/ep",
            "TTD med s",
            "TTD p95 s",
            "flows",
            "ROC-AUC",
            "TPR(thr)"
        ));
        for (k, a) in &m.per_attack {
            s.push_str(&format!(
                "{:<22} {:>5} {:>6.3} {:>8.1} {:>9} {:>9} {:>9} {:>8} {:>8.3}\n",
                k,
                a.episodes,
                a.episode_recall,
                a.alerts_per_episode,
                opt(a.ttd_median_s, 1),
                opt(a.ttd_p95_s, 1),
                a.flows.attack,
                opt(a.flows.roc_auc, 4),
                a.flows.tpr
            ));
        }
        if m.unscored > 0 {
            s.push_str(&format!(
                "({} labelled flow records had no monitored side and were never scored)\n",
                m.unscored
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_outside_their_episode_are_benign() {
        let ep = |id, kind: &str, start_us, end_us| EpisodeRow {
            episode_id: id,
            kind: kind.to_string(),
            start_us,
            end_us,
            victims: vec!["cam-02".to_string(), "nvr".to_string()],
        };
        let later = 1_000_000_000;
        let mut other_camera = ep(4, "arp_spoof", 3 * later, 3 * later + 1_000);
        other_camera.victims = vec!["cam-03".to_string(), "nvr".to_string()];
        let truth = AttackTruth::new(&[
            ep(1, "arp_spoof", 1_000, 2_000),
            ep(2, "syn_flood", 5_000, 6_000),
            ep(3, "arp_spoof", later, later + 1_000),
            other_camera,
        ]);
        let row = |label: &str, episode_id| LabelRow {
            src_ip: "192.168.10.22".parse().unwrap(),
            src_port: 5000,
            dest_ip: "192.168.10.5".parse().unwrap(),
            dest_port: 50000,
            proto: "UDP".into(),
            vlan: vec![10],
            start_us: 0,
            end_us: 100_000_000,
            device_id: "cam-02".into(),
            device_class: "camera".into(),
            label: label.into(),
            episode_id,
        };
        let arp = row("arp_spoof", Some(1));
        // Overlapping the window (either end, or inside it): attack.
        assert!(truth.is_attack(&arp, (500, 1_000)));
        assert!(truth.is_attack(&arp, (1_500, 1_600)));
        assert!(truth.is_attack(&arp, (0, 10_000_000)));
        // ARP spoofing keeps diverting traffic until the caches are restored.
        assert!(truth.is_attack(&arp, (2_000 + ARP_SLACK_US, 2_000 + ARP_SLACK_US + 5)));
        // Before the episode, or after its slack: the camera's own traffic.
        assert!(!truth.is_attack(&arp, (0, 999)));
        assert!(!truth.is_attack(&arp, (2_001 + ARP_SLACK_US, 3_000 + ARP_SLACK_US)));
        // The same stream diverted again by a later episode on the same camera (its
        // label keeps the first episode's id): attack in that window too, and not in
        // the window of an episode on another camera.
        assert!(truth.is_attack(&arp, (later + 500, later + 600)));
        assert!(!truth.is_attack(&arp, (later + 2_000 + ARP_SLACK_US, 2 * later)));
        assert!(!truth.is_attack(&arp, (3 * later, 3 * later + 10)));
        // Other attacks: no slack.
        let flood = row("syn_flood", Some(2));
        assert!(truth.is_attack(&flood, (5_500, 5_600)));
        assert!(!truth.is_attack(&flood, (6_001, 7_000)));
        // An attack label without a known episode stays attack; benign stays benign.
        assert!(truth.is_attack(&row("syn_flood", None), (0, 1)));
        assert!(truth.is_attack(&row("syn_flood", Some(9)), (0, 1)));
        assert!(!truth.is_attack(&row("benign", None), (1_500, 1_600)));
    }

    #[test]
    fn auc_matches_hand_computed_values() {
        // Perfect separation, inverse, and all ties.
        assert_eq!(roc_auc(&[3.0, 4.0], &[1.0, 2.0]), Some(1.0));
        assert_eq!(roc_auc(&[1.0, 2.0], &[3.0, 4.0]), Some(0.0));
        assert_eq!(roc_auc(&[1.0, 1.0], &[1.0]), Some(0.5));
        // sklearn: roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) = 0.75
        assert_eq!(roc_auc(&[0.35, 0.8], &[0.1, 0.4]), Some(0.75));
        assert_eq!(roc_auc(&[], &[1.0]), None);
    }

    #[test]
    fn average_precision_matches_sklearn() {
        // sklearn: average_precision_score([0,0,1,1], [0.1,0.4,0.35,0.8]) = 0.8333...
        let ap = average_precision(&[0.35, 0.8], &[0.1, 0.4]).unwrap_or(0.0);
        assert!((ap - 0.833_333_333_333_333_4).abs() < 1e-12, "{ap}");
        // Perfect ranking: 1.
        assert_eq!(average_precision(&[5.0, 6.0], &[1.0, 2.0, 3.0]), Some(1.0));
        // All tied: precision = base rate.
        let ap = average_precision(&[1.0], &[1.0, 1.0, 1.0]).unwrap_or(0.0);
        assert!((ap - 0.25).abs() < 1e-12);
    }

    #[test]
    fn tpr_at_fpr_respects_the_budget() {
        let neg: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let pos = vec![998.5, 999.5, 500.0, 2000.0];
        // 0.1 % of 1000 = 1 benign flow may be above the threshold (998): 998.5, 999.5,
        // 2000 are above it.
        let (tpr, fpr) = tpr_at_fpr(&pos, &neg, 0.001).unwrap_or((0.0, 1.0));
        assert!(fpr <= 0.001);
        assert_eq!(tpr, 0.75);
        // No benign flow may pass: the threshold is the benign maximum (999).
        let (tpr, fpr) = tpr_at_fpr(&pos, &neg, 0.0).unwrap_or((0.0, 1.0));
        assert_eq!(fpr, 0.0);
        assert_eq!(tpr, 0.5);
    }

    #[test]
    fn matched_point_allows_the_baselines_benign_count() {
        // The baseline alerts 2 of 1000 benign flows and a quarter of the attack flows.
        let neg: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let baseline = flow_metrics(
            &[(1.0, true), (0.0, false), (0.0, false), (0.0, false)],
            &(0..1000).map(|i| (0.0, i < 2)).collect::<Vec<_>>(),
        );
        assert_eq!((baseline.fp, baseline.tpr), (2, 0.25));
        // This mode: with at most 2 benign flows above it, the threshold is 997;
        // 998.5 and 2000 pass, 997 (a tie with the threshold) and 10 do not.
        let ranked = Ranked {
            pos: vec![998.5, 2000.0, 997.0, 10.0],
            neg,
        };
        // The baseline's own ranking, shifted to 2 benign flows: 1 of 2 attack flows.
        let baseline_ranked = Ranked {
            pos: vec![5.0, -1.0],
            neg: (0..1000).map(|i| if i < 2 { 10.0 } else { 0.0 }).collect(),
        };
        let m = matched_point(Mode::Global, &baseline, &baseline_ranked, &ranked);
        let m = m.unwrap_or_else(|| panic!("no matched point"));
        assert_eq!((m.tpr, m.fpr), (0.5, 0.002));
        assert_eq!((m.baseline_fpr, m.baseline_tpr), (0.002, 0.25));
        assert_eq!(m.baseline_shifted_tpr, 0.5);
        // A baseline over other benign flows is not comparable.
        let other = Ranked {
            pos: vec![1.0],
            neg: vec![0.0; 10],
        };
        assert!(matched_point(Mode::Global, &baseline, &baseline_ranked, &other).is_none());
        assert_eq!(baseline_of(Mode::PerClass), Some(Mode::Global));
        assert_eq!(baseline_of(Mode::PerClassForest), Some(Mode::GlobalForest));
        assert_eq!(baseline_of(Mode::Global), None);
    }

    #[test]
    fn under_attack_is_a_victim_inside_the_widened_window() {
        let e = EpisodeRow {
            episode_id: 1,
            kind: "mirai_scan".into(),
            start_us: 1_000_000_000,
            end_us: 2_000_000_000,
            victims: vec!["cam-02".into()],
        };
        let eps = [e];
        let w = 300_000_000;
        assert!(under_attack(
            &eps,
            w,
            "cam-02",
            (1_500_000_000, 1_600_000_000)
        ));
        // A flow ending just inside the incident window before the episode, or starting
        // just inside it after the episode.
        assert!(under_attack(&eps, w, "cam-02", (0, 1_000_000_000 - w)));
        assert!(under_attack(
            &eps,
            w,
            "cam-02",
            (2_000_000_000 + w, 3_000_000_000 + w)
        ));
        assert!(!under_attack(&eps, w, "cam-02", (0, 1_000_000_000 - w - 1)));
        assert!(!under_attack(
            &eps,
            w,
            "cam-02",
            (2_000_000_000 + w + 1, 3_000_000_000 + w)
        ));
        // Another device at the same time is not under attack.
        assert!(!under_attack(
            &eps,
            w,
            "cam-01",
            (1_500_000_000, 1_600_000_000)
        ));
    }

    #[test]
    fn wilson_interval_brackets_the_rate() {
        let (lo, hi) = wilson(5, 1000);
        assert!(lo < 0.005 && 0.005 < hi);
        assert!((lo - 0.002_137).abs() < 1e-4 && (hi - 0.011_65).abs() < 1e-4);
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        assert_eq!(wilson(0, 123_456).0, 0.0);
        assert_eq!(wilson(77, 77).1, 1.0);
    }

    #[test]
    fn eve_timestamps_parse() {
        assert_eq!(
            parse_eve_us("2026-01-05T00:00:03.746799+0000"),
            Some(1_767_571_203_746_799)
        );
        assert_eq!(parse_eve_us("1970-01-01T00:00:00.000000+0000"), Some(0));
        assert_eq!(parse_eve_us("garbage"), None);
        assert_eq!(parse_eve_us("2026-13-05T00:00:03.746799+0000"), None);
        let t = Timestamp::from_micros(1_767_603_603_036_354);
        assert_eq!(parse_eve_us(&t.to_eve_string()), Some(t.as_micros()));
    }

    #[test]
    fn quantiles_use_nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&v, 0.5), Some(3.0));
        assert_eq!(quantile(&v, 0.95), Some(5.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn a_record_spanning_several_labelled_flows_takes_the_attack_label() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("labels.jsonl");
        let row = |start: i64, end: i64, label: &str| {
            format!(
                "{{\"src_ip\":\"203.0.113.99\",\"src_port\":58031,\"dest_ip\":\"192.168.10.53\",\
                 \"dest_port\":80,\"proto\":\"TCP\",\"vlan\":[10],\"start_us\":{start},\
                 \"end_us\":{end},\"pkts\":1,\"device_id\":\"hub-03\",\"device_class\":\"hub\",\
                 \"label\":\"{label}\",\"episode_id\":null}}\n"
            )
        };
        // Two benign connections, then two flood attempts 100 ms apart on the same
        // 5-tuple (the sensor sees one flow for the last two).
        let text = [
            row(0, 10, "benign"),
            row(1_000, 2_000, "benign"),
            row(5_000_000, 5_000_000, "syn_flood"),
            row(5_100_000, 5_100_000, "syn_flood"),
        ]
        .concat();
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write: {e}"));
        let idx = LabelIndex::load(&path).unwrap_or_else(|e| panic!("load: {e}"));
        let a: IpAddr = IpAddr::from([203, 0, 113, 99]);
        let b: IpAddr = IpAddr::from([192, 168, 10, 53]);
        let k = match_key(6, [10, 0], (b, 80), (a, 58031));
        let label = |first, last| idx.find_key(&k, first, last).and_then(|i| idx.get(i));
        // Inside one labelled flow: that label.
        assert_eq!(label(1_200, 1_800).map(|x| x.0), Some("benign"));
        // Spanning both flood attempts: matched, as attack.
        assert_eq!(label(5_000_000, 5_100_000).map(|x| x.0), Some("syn_flood"));
        // Spanning a benign and an attack label: the attack one.
        assert_eq!(label(1_500, 5_000_000).map(|x| x.0), Some("syn_flood"));
        // Spanning the two benign ones: benign.
        assert_eq!(label(5, 1_500).map(|x| x.0), Some("benign"));
        // Overlapping no label: unmatched.
        assert_eq!(label(3_000, 4_000), None);
        assert_eq!(label(6_000_000, 7_000_000), None);
    }

    #[test]
    fn icmp_keys_ignore_ports_and_keys_ignore_direction() {
        let a: IpAddr = "10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "10.0.0.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(
            match_key(6, [10, 0], (a, 1000), (b, 80)),
            match_key(6, [10, 0], (b, 80), (a, 1000))
        );
        assert_eq!(
            match_key(1, [0, 0], (a, 8), (b, 0)),
            match_key(1, [0, 0], (b, 3), (a, 7))
        );
    }

    /// `tpr` counts alert events; `tpr_flagged` the detector's verdicts, which include a
    /// rule match whose alert was suppressed as a repeat (ranked 1.0, not alerted).
    #[test]
    fn flagged_and_alerted_rates_are_both_reported() {
        let pos = [(1.0, false), (0.2, true), (-0.1, false), (1.0, true)];
        let neg = [(-0.3, false), (0.05, true), (1.0, false)];
        let m = flow_metrics(&pos, &neg);
        assert_eq!((m.tpr, m.tpr_flagged), (0.5, 0.75));
        assert_eq!((m.fp, m.fp_flagged), (1, 2));
    }
}
