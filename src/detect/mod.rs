//! Detection: for each ordered flow record, resolve its monitored devices (inventory,
//! else inference, else `unknown`), compute each device's feature vector, score it with
//! the isolation forest of the device's class, and raise an `anomaly` event with an
//! explanation when the score passes the class's calibrated threshold; run the rule
//! detectors beside it; group alerts into `incident` events.
//!
//! Everything here runs on packet time in record order, so the same input gives the same
//! events whatever the worker count.

pub mod envelope;
pub mod incident;
pub mod rules;

use crate::device::{DeviceClass, DeviceInfo, DeviceResolver, Inventory, ResolverConfig};
use crate::error::OutputError;
use crate::event::{flow_id, flow_json, EventWriter};
use crate::features::{
    FeatureExtractor, FeatureVector, Side, SitePeers, FEATURE_NAMES, N_FEATURES,
};
use crate::flow::{Endpoint, FlowRecord};
use crate::model::{ModelBundle, Transport};
use crate::output::FlowObserver;
use crate::packet::{Addr, ArpPacket};
use crate::time::{Nanos, Timestamp};
use incident::{AlertRef, Incident, IncidentTracker};
use rules::{ArpWatcher, ModbusWriteRule};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Detector tag of the isolation-forest alerts.
pub const DETECTOR_IFOREST: &str = "iforest";
/// Detector tag of the Modbus write rule.
pub const DETECTOR_MODBUS: &str = "modbus_write_unknown_master";
/// Detector tag of the ARP rule.
pub const DETECTOR_ARP: &str = "arp_binding_change";
/// Detector tag of the training-envelope guard.
pub const DETECTOR_ENVELOPE: &str = "envelope";
/// Detector tag of the new-public-peer rule.
pub const DETECTOR_NEW_PEER: &str = "new_public_peer";
/// Detector tag of the intercepted-flow rule: a flow relayed through a second MAC while
/// one of its addresses was claimed by ARP spoofing.
pub const DETECTOR_ARP_FLOW: &str = "arp_intercepted_flow";
/// Detector tag of the ARP cross-claim rule: one MAC claims two hosts' addresses, each
/// to the other.
pub const DETECTOR_ARP_CROSS: &str = "arp_cross_claim";
/// The rule detectors: one of their alerts is evidence enough for an incident.
pub const RULE_DETECTORS: [&str; 5] = [
    DETECTOR_ARP,
    DETECTOR_MODBUS,
    DETECTOR_NEW_PEER,
    DETECTOR_ARP_FLOW,
    DETECTOR_ARP_CROSS,
];
/// The rules on ARP packets (their alerts have no flow).
pub const ARP_DETECTORS: [&str; 2] = [DETECTOR_ARP, DETECTOR_ARP_CROSS];

/// Detector settings.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// Alerts of one device less than this apart form one incident. Default 300 s.
    pub incident_window: Nanos,
    /// Score-based alerts (forest, envelope) a group needs to become an incident; one
    /// rule alert is always enough. Default 2.
    pub incident_min_alerts: u64,
    /// Features listed in an explanation. Default 5.
    pub top_features: usize,
    /// Device resolution.
    pub resolver: ResolverConfig,
    /// Score every device with the pooled model (one global forest trained on all classes,
    /// with its own threshold) instead of its class's forest: the evaluation baseline.
    pub global_model: bool,
    /// Alert when a device talks to a public network (/24, /48) it never talked to in
    /// training (its class's when the device itself was not in training; any device's
    /// when its class is unknown). Default on.
    pub new_public_peer: bool,
    /// The forest alone: no envelope guard and no rules (an evaluation ablation).
    pub forest_only: bool,
    /// How far behind the flow clock a record can end (largest idle timeout plus TCP
    /// close linger): with it, device contexts idle longer than that plus the window are
    /// dropped, so memory stays bounded on a long run without changing any feature
    /// ([`FeatureExtractor::retire_idle_contexts`]). `None` keeps every context.
    pub max_record_lag: Option<Nanos>,
    /// Compute every verdict's exact forest score (evaluation: it ranks flows by their
    /// margins). Off by default: a side that no other detector alerts on stops scoring
    /// once its forest cannot reach the threshold, and keeps an upper bound below it
    /// ([`IsolationForest::score_batch_until`](crate::forest::IsolationForest::score_batch_until));
    /// every written event is the same either way.
    pub exact_scores: bool,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            incident_window: Nanos::from_secs(300),
            incident_min_alerts: 2,
            top_features: 5,
            resolver: ResolverConfig::default(),
            global_model: false,
            new_public_peer: true,
            forest_only: false,
            max_record_lag: None,
            exact_scores: false,
        }
    }
}

/// One scored (device side of a) flow.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Which endpoint is the device.
    pub side: Side,
    /// The device.
    pub device: DeviceInfo,
    /// The class whose model scored it (the pooled model for `unknown`).
    pub model_class: DeviceClass,
    /// The per-transport forest of that class that scored it (`None`: the class-wide
    /// forest).
    pub transport: Option<Transport>,
    /// Isolation-forest score in (0, 1]. Exact when above the threshold, when another
    /// detector alerts on the side, or with [`DetectorConfig::exact_scores`]; otherwise
    /// possibly an upper bound that is still below the threshold.
    pub score: f64,
    /// The class threshold.
    pub threshold: f64,
    /// The feature vector.
    pub features: FeatureVector,
    /// Per-feature attribution (sums to 1); computed only when the forest alerted (`None`
    /// otherwise: most verdicts, which are copied through the scoring queue, stay small).
    pub contributions: Option<Box<[f64; N_FEATURES]>>,
    /// Envelope guard score (distance outside the class's training range).
    pub envelope: f64,
    /// The class's envelope threshold.
    pub envelope_threshold: f64,
    /// The peer is a public network the device (or its class; for a device of unknown
    /// class, any device) never met in training.
    pub new_public_peer: bool,
}

impl Verdict {
    /// The forest's score is above its threshold.
    pub fn forest_alert(&self) -> bool {
        self.score > self.threshold
    }

    /// The envelope guard is above its threshold.
    pub fn envelope_alert(&self) -> bool {
        self.envelope > self.envelope_threshold
    }

    /// Forest or envelope guard above threshold.
    pub fn anomalous(&self) -> bool {
        self.forest_alert() || self.envelope_alert()
    }

    /// One number that is positive exactly when [`Verdict::anomalous`]: the larger of the
    /// forest's margin (score − threshold, in (−1, 1)) and the guard's margin mapped into
    /// (−0.5, 0.5). Used to rank flows for ROC/PR curves.
    pub fn margin(&self) -> f64 {
        let d = self.envelope - self.envelope_threshold;
        let env = 0.5 * d / (1.0 + d.abs());
        (self.score - self.threshold).max(env)
    }
}

/// Counters of the detector, in the `stats` event under `detection`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DetectCounters {
    /// Flow sides scored.
    pub scored: u64,
    /// Scored per model class.
    pub scored_by_class: BTreeMap<&'static str, u64>,
    /// Alerts per detector.
    pub alerts: BTreeMap<&'static str, u64>,
    /// Incidents written.
    pub incidents: u64,
    /// Alert groups closed without enough evidence to be written as incidents.
    pub incidents_below_evidence: u64,
    /// Monitored devices by class source.
    pub devices: BTreeMap<&'static str, u64>,
    /// New-public-peer alerts not written because the same device met the same network
    /// less than an incident window before (one alert per device and network per window).
    pub suppressed: u64,
}

#[derive(Serialize)]
struct DeviceJson {
    id: String,
    class: &'static str,
    class_source: &'static str,
    confidence: f64,
    role: &'static str,
    ip: std::net::IpAddr,
}

/// A flow record relayed through an ARP spoofer (see [`Detector::interception`]).
#[derive(Debug, Clone, Copy)]
struct Interception {
    /// The endpoint whose address was claimed.
    side: Side,
    /// The MAC that address is bound to, when one is known.
    known_mac: Option<[u8; 6]>,
    /// The MAC claiming it.
    new_mac: [u8; 6],
}

/// The `device.role` of a flow side.
fn role_name(side: Side) -> &'static str {
    match side {
        Side::Orig => "src",
        Side::Resp => "dest",
    }
}

impl DeviceJson {
    /// An address no device resolves to (class unknown, confidence 0).
    fn unknown(id: &str, side: Side, ip: Addr) -> DeviceJson {
        DeviceJson {
            id: id.to_string(),
            class: "unknown",
            class_source: "unknown",
            confidence: 0.0,
            role: role_name(side),
            ip: ip.to_ip(),
        }
    }
}

#[derive(Serialize)]
struct FeatureJson {
    name: &'static str,
    value: f64,
    contribution: f64,
    train_min: f64,
    train_max: f64,
    outside_training_range: bool,
}

#[derive(Serialize)]
struct ModelJson<'a> {
    id: &'a str,
    class: &'static str,
    /// The per-transport forest that scored the flow (absent: the class-wide forest).
    #[serde(skip_serializing_if = "Option::is_none")]
    transport: Option<&'static str>,
    calibration_fpr: f64,
}

#[derive(Serialize)]
struct EnvelopeJson {
    score: f64,
    threshold: f64,
}

/// The fields of an `anomaly` event after those of its flow (written together by
/// [`EventWriter::write_with_flow`]).
#[derive(Serialize)]
struct AnomalyEvent<'a> {
    detector: &'static str,
    /// Every detector that fired on this flow side (`detector` is the first of them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    detectors: Vec<&'static str>,
    detected_at: String,
    device: DeviceJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    envelope: Option<EnvelopeJson>,
    model: ModelJson<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    explanation: Vec<FeatureJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<RuleJson>,
}

#[derive(Serialize)]
struct RuleJson {
    name: &'static str,
    detail: String,
}

#[derive(Serialize)]
struct ArpEvent<'a> {
    timestamp: String,
    event_type: &'static str,
    detector: &'static str,
    src_ip: String,
    src_mac: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    vlan: Vec<u16>,
    arp: ArpJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<DeviceJson>,
    model: ModelJson<'a>,
    rule: RuleJson,
}

#[derive(Serialize)]
struct ArpJson {
    ip: String,
    /// Binding changes: the MAC the address was bound to, and where that came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    known_mac: Option<String>,
    new_mac: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    known_from: Option<&'static str>,
    /// Cross claims: the other address the MAC claims (to the owner of `ip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    also_claims: Option<String>,
    opcode: u16,
}

#[derive(Serialize)]
struct IncidentEvent<'a> {
    timestamp: String,
    event_type: &'static str,
    #[serde(flatten)]
    incident: &'a Incident,
    model_id: &'a str,
}

/// Distinct devices tracked one by one in the `devices` counter and the per-device
/// summary; beyond it (e.g. a flood from spoofed local sources on a long run) those two
/// stop growing: memory stays bounded, and the summary says how much it left out.
pub const DEVICE_TRACK_CAP: usize = 65_536;

/// Per-device summary for the human report of `--fail-on`.
#[derive(Debug, Clone, Default)]
pub struct DeviceSummary {
    /// Device class.
    pub class: &'static str,
    /// Alerts.
    pub alerts: u64,
    /// Incidents.
    pub incidents: u64,
    /// Highest score.
    pub max_score: f64,
}

fn mac_str(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn source_name(d: &DeviceInfo) -> &'static str {
    d.assignment.source.as_str()
}

/// A Modbus write the rule flagged, with the PLC resolved when the record was analysed.
#[derive(Debug, Clone)]
struct ModbusHit {
    plc: Addr,
    master: Addr,
    side: Side,
    device: Option<DeviceInfo>,
}

/// Enough of a record to check that `on_flow` gets the record `prepare` queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordIdent {
    first_ts: Timestamp,
    last_ts: Timestamp,
    emit_ts: Timestamp,
    ports: (u16, u16),
    pkts: u64,
}

impl RecordIdent {
    fn of(rec: &FlowRecord) -> RecordIdent {
        RecordIdent {
            first_ts: rec.first_ts,
            last_ts: rec.last_ts,
            emit_ts: rec.emit_ts,
            ports: (rec.orig.port, rec.resp.port),
            pkts: rec.pkts(),
        }
    }
}

/// One record analysed ahead of its `on_flow`.
#[derive(Debug)]
struct Queued {
    ident: RecordIdent,
    sides: usize,
    modbus: Option<ModbusHit>,
    /// How both endpoints resolved once the record's run was analysed, for a record the
    /// intercepted-flow rule looks at (`mac_changed`); `None` otherwise.
    ends: Option<[Option<DeviceInfo>; 2]>,
}

/// A run of records analysed and scored ahead of their events: per record its
/// [`Queued`] entry, and all their verdicts in order.
#[derive(Debug, Default)]
struct PreparedRun {
    queued: Vec<Queued>,
    verdicts: Vec<Verdict>,
}

/// The model that scores a device of `class` (the pooled one in global mode).
fn model_of<'m>(
    bundle: &'m ModelBundle,
    cfg: &DetectorConfig,
    class: DeviceClass,
) -> &'m crate::model::ClassModel {
    if cfg.global_model {
        &bundle.pooled
    } else {
        bundle.model_for(class)
    }
}

/// The model whose training envelope guards `dev`, or none in the forest-only
/// ablation. A device whose class the operator listed is compared with its class's
/// envelope; any other device (class inferred or unknown) with the pooled envelope of
/// all training devices, since a class envelope only describes a device known to be of
/// that class (an inferred "camera" may be the NVR receiving the video), while every
/// device of the site is inside the pooled one.
fn guard_model<'m>(
    bundle: &'m ModelBundle,
    cfg: &DetectorConfig,
    dev: &DeviceInfo,
) -> Option<&'m crate::model::ClassModel> {
    if cfg.forest_only {
        None
    } else if dev.assignment.source == crate::device::ClassSource::Inventory {
        Some(model_of(bundle, cfg, dev.assignment.class))
    } else {
        Some(&bundle.pooled)
    }
}

/// The order-dependent analysis of flow records (device resolution and profiles,
/// per-device feature contexts, the Modbus rule's PLC lookup) and the forest scoring of
/// their verdicts: the part of the detector that can run ahead of event writing, on a
/// helper thread in the threaded pipeline ([`FlowObserver::start_prepare_ahead`]). It
/// sees the records in the same order either way, so its results are the same.
struct Preparer {
    bundle: Arc<ModelBundle>,
    cfg: DetectorConfig,
    resolver: DeviceResolver,
    extractor: FeatureExtractor,
    /// Every peer of the training window, for the new-public-peer rule on devices whose
    /// class is unknown.
    site_peers: SitePeers,
    modbus: ModbusWriteRule,
    /// Reused buffers of the batch scorer.
    batch_rows: Vec<f32>,
    batch_scores: Vec<f64>,
    /// The `stats` counters of the flow sides analysed.
    counts: SideCounts,
}

/// The detector's `stats` counters of analysed flow sides (the rest of
/// [`DetectCounters`] is counted where events are written).
#[derive(Debug, Default)]
struct SideCounts {
    scored: u64,
    scored_by_class: BTreeMap<&'static str, u64>,
    devices: BTreeMap<&'static str, u64>,
    /// Each device counted in `devices`, with the class source it is counted under.
    seen_devices: foldhash::HashMap<Arc<str>, &'static str>,
}

impl SideCounts {
    fn count(&mut self, v: &Verdict) {
        self.scored += 1;
        *self
            .scored_by_class
            .entry(v.model_class.as_str())
            .or_insert(0) += 1;
        // A device is counted once, under its latest class source: an address first seen
        // as `unknown` moves to `inferred` once the inference has enough of its traffic.
        let src = source_name(&v.device);
        let room = self.seen_devices.len() < DEVICE_TRACK_CAP;
        match self.seen_devices.get_mut(&v.device.id) {
            Some(prev) if *prev != src => {
                let old = std::mem::replace(prev, src);
                if let Some(n) = self.devices.get_mut(old) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.devices.remove(old);
                    }
                }
                *self.devices.entry(src).or_insert(0) += 1;
            }
            Some(_) => {}
            None if room => {
                self.seen_devices.insert(v.device.id.clone(), src);
                *self.devices.entry(src).or_insert(0) += 1;
            }
            None => {}
        }
    }
}

/// The preparer shared by the detector and its helper thread. The lock is taken once per
/// run of records (by the helper, or by the detector itself when it prepares
/// synchronously) and, outside runs, for ARP alerts and model reloads, when the helper
/// is idle: never per packet.
type SharedPreparer = Arc<std::sync::Mutex<Preparer>>;

fn lock(p: &SharedPreparer) -> std::sync::MutexGuard<'_, Preparer> {
    // A panic while holding the lock leaves the preparer as it was after its last
    // complete step; the detector keeps using it.
    p.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The helper thread of [`FlowObserver::start_prepare_ahead`]: runs go to it in order and
/// come back prepared in the same order.
struct Ahead {
    tx: Option<crossbeam_channel::Sender<Vec<FlowRecord>>>,
    rx: crossbeam_channel::Receiver<(Vec<FlowRecord>, PreparedRun)>,
    /// Runs handed over and not collected yet.
    in_flight: usize,
    /// Record buffers back from the helper, for the next runs.
    spare: Vec<Vec<FlowRecord>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        // Closing the channel ends the helper's loop.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn helper_stopped() -> OutputError {
    OutputError::Thread {
        what: "detector helper thread".into(),
        detail: "stopped unexpectedly".into(),
    }
}

/// The detector stage.
pub struct Detector {
    bundle: Arc<ModelBundle>,
    model_id: String,
    /// Analysis and scoring (see [`Preparer`]).
    prep: SharedPreparer,
    /// The helper thread that prepares runs ahead, once started.
    ahead: Option<Ahead>,
    arp: ArpWatcher,
    incidents: IncidentTracker,
    cfg: DetectorConfig,
    /// Counters of the events written (alerts, incidents, suppressed); the counters of
    /// analysed sides are the preparer's: [`Detector::counters`] has both.
    counters: DetectCounters,
    /// Per-device summary (alerts, incidents, max score).
    pub summary: BTreeMap<String, DeviceSummary>,
    /// Alerts and incidents of devices beyond [`DEVICE_TRACK_CAP`] in `summary`.
    untracked: DeviceSummary,
    verdicts: Vec<Verdict>,
    /// Records analysed ahead by [`FlowObserver::prepare`], oldest first, and their
    /// verdicts (`sides` of them per record, in the same order).
    queued: std::collections::VecDeque<Queued>,
    queued_verdicts: std::collections::VecDeque<Verdict>,
    pending: Vec<Incident>,
    /// Last new-public-peer alert per (device, network), for suppression.
    peer_alerts: BTreeMap<(String, crate::features::PeerKey), Timestamp>,
    clock: Timestamp,
    next_expiry: Timestamp,
}

impl Preparer {
    fn new(bundle: Arc<ModelBundle>, inventory: Inventory, cfg: DetectorConfig) -> Preparer {
        Preparer {
            resolver: DeviceResolver::new(inventory, bundle.inference.clone(), cfg.resolver),
            extractor: Self::extractor(&bundle, &cfg),
            site_peers: SitePeers::of(&bundle.familiarity),
            modbus: ModbusWriteRule::new(&bundle.modbus_write_masters),
            bundle,
            cfg,
            batch_rows: Vec::new(),
            batch_scores: Vec::new(),
            counts: SideCounts::default(),
        }
    }

    /// A fresh feature extractor over the bundle's familiarity tables.
    fn extractor(bundle: &ModelBundle, cfg: &DetectorConfig) -> FeatureExtractor {
        let mut extractor = FeatureExtractor::new(bundle.familiarity.clone());
        if let Some(lag) = cfg.max_record_lag {
            extractor.retire_idle_contexts(lag);
        }
        extractor
    }

    /// Everything of one record that depends on record order: updates the device
    /// profiles and per-device feature contexts, pushes one verdict per monitored side
    /// onto `out` with its features, envelope and rule flags (its forest score still
    /// `NaN`: [`Preparer::score_forests`] fills it in), and runs the Modbus rule (whose
    /// PLC is resolved now, so it sees the device state of this point in the order).
    fn analyse(&mut self, rec: &FlowRecord, out: &mut Vec<Verdict>) -> Option<ModbusHit> {
        let sides = self.resolver.monitored(rec);
        for (side, dev) in sides.into_iter().flatten() {
            let class = dev.assignment.class;
            let fv = self.extractor.extract(
                rec,
                side,
                &crate::features::DeviceRef { id: &dev.id, class },
            );
            let m = model_of(&self.bundle, &self.cfg, class);
            let scorer = m.scorer(rec.proto, dev.assignment.source);
            let guard = guard_model(&self.bundle, &self.cfg, &dev);
            let env = guard.map_or(0.0, |g| {
                envelope::score_only(&fv.0, g.forest.feature_ranges())
            });
            let envelope_threshold = guard.map_or(f64::INFINITY, |g| g.envelope_threshold);
            // New to the device (to its class when it was not in training; to the whole
            // site when its class is unknown, as it has no class table).
            let new_public_peer = self.cfg.new_public_peer
                && !self.cfg.forest_only
                && fv.0[crate::features::idx::PEER_PUBLIC] >= 1.0
                && fv.0[crate::features::idx::PEER_FAM] <= 0.0
                && (class != DeviceClass::Unknown || !self.site_peers.knows(rec, side));
            let verdict = Verdict {
                side,
                model_class: m.class,
                transport: scorer.transport,
                score: f64::NAN,
                threshold: scorer.threshold,
                features: fv,
                contributions: None,
                envelope: env,
                envelope_threshold,
                new_public_peer,
                device: dev,
            };
            self.counts.count(&verdict);
            out.push(verdict);
        }
        if self.cfg.forest_only {
            return None;
        }
        let (plc, master) = self.modbus.check(rec)?;
        // The PLC is the device; resolve it (it may not be scored by the forest).
        let (plc_ep, side) = if rec.resp.addr == plc {
            (rec.resp, Side::Resp)
        } else {
            (rec.orig, Side::Orig)
        };
        Some(ModbusHit {
            plc,
            master,
            side,
            device: self.resolver.resolve(&plc_ep),
        })
    }

    /// Fills in the forest score of every verdict, model by model, in batches: one pass
    /// over a forest's trees for all rows it scores (a forest is ~1.6 MB, so scoring row
    /// by row between flow-table work misses the cache on most nodes). Same bits as one
    /// [`IsolationForest::score`](crate::forest::IsolationForest::score) per row. Flows
    /// above the threshold get their attribution (`score_explained`, same score).
    fn score_forests(&mut self, vs: &mut [Verdict]) {
        let mut rows = std::mem::take(&mut self.batch_rows);
        let mut scores = std::mem::take(&mut self.batch_scores);
        let exact_all = self.cfg.exact_scores;
        // A side some other detector alerts on gets its exact score (its event shows
        // it); the others only need to know whether the forest alerts.
        let needs_exact = |v: &Verdict| exact_all || v.envelope_alert() || v.new_public_peer;
        // (class, transport, exact) batches: a handful at most.
        let mut done: Vec<(DeviceClass, Option<Transport>, bool)> = Vec::new();
        for i in 0..vs.len() {
            let key = (vs[i].model_class, vs[i].transport, needs_exact(&vs[i]));
            if done.contains(&key) {
                continue;
            }
            done.push(key);
            let of_key = |v: &Verdict| (v.model_class, v.transport, needs_exact(v)) == key;
            rows.clear();
            for v in vs[i..].iter().filter(|v| of_key(v)) {
                rows.extend_from_slice(&v.features.0);
            }
            let m = model_of(&self.bundle, &self.cfg, key.0).scorer_of(key.1);
            scores.clear();
            scores.resize(rows.len() / N_FEATURES.max(1), f64::NAN);
            let batch = if key.2 {
                m.forest.score_batch(&rows, &mut scores)
            } else {
                m.forest.score_batch_until(&rows, &mut scores, m.threshold)
            };
            for (v, &s) in vs[i..].iter_mut().filter(|v| of_key(v)).zip(&scores) {
                v.score = match batch {
                    Ok(()) => s,
                    // Unreachable for a validated bundle (its schema has N_FEATURES).
                    Err(_) => m.forest.score(&v.features.0),
                };
                // The attribution (a few logarithms per split) only for the rare flows
                // above the threshold, which need an explanation.
                if v.score > m.threshold {
                    let mut contrib = Box::new([0f64; N_FEATURES]);
                    v.score = m.forest.score_explained(&v.features.0, &mut contrib[..]);
                    v.contributions = Some(contrib);
                }
            }
        }
        self.batch_rows = rows;
        self.batch_scores = scores;
    }

    /// Analyses a run of consecutive flow records in order, then scores all their
    /// verdicts' forests in one batch. The endpoints of the records the intercepted-flow
    /// rule looks at are resolved once the whole run is analysed: what the rule saw when
    /// it resolved them while writing the run's events.
    fn prepare_run(&mut self, recs: &mut dyn Iterator<Item = &FlowRecord>) -> PreparedRun {
        let mut run = PreparedRun::default();
        let mut relayed: Vec<(usize, Endpoint, Endpoint)> = Vec::new();
        for rec in recs {
            let before = run.verdicts.len();
            let modbus = self.analyse(rec, &mut run.verdicts);
            // The records the intercepted-flow rule looks at.
            if rec.mac_changed && !self.cfg.forest_only {
                relayed.push((run.queued.len(), rec.orig, rec.resp));
            }
            run.queued.push(Queued {
                ident: RecordIdent::of(rec),
                sides: run.verdicts.len() - before,
                modbus,
                ends: None,
            });
        }
        self.score_forests(&mut run.verdicts);
        for (i, orig, resp) in relayed {
            let ends = [self.resolver.resolve(&orig), self.resolver.resolve(&resp)];
            if let Some(q) = run.queued.get_mut(i) {
                q.ends = Some(ends);
            }
        }
        run
    }
}

impl Detector {
    /// A detector over a loaded bundle (`model_id` = its short hash) and inventory.
    pub fn new(
        bundle: Arc<ModelBundle>,
        model_id: String,
        inventory: Inventory,
        cfg: DetectorConfig,
    ) -> Detector {
        let prep = Preparer::new(bundle.clone(), inventory, cfg.clone());
        Detector {
            bundle,
            model_id,
            prep: Arc::new(std::sync::Mutex::new(prep)),
            ahead: None,
            arp: ArpWatcher::default(),
            incidents: IncidentTracker::with_evidence(
                cfg.incident_window,
                cfg.incident_min_alerts,
                &RULE_DETECTORS,
            ),
            cfg,
            counters: DetectCounters::default(),
            summary: BTreeMap::new(),
            untracked: DeviceSummary::default(),
            verdicts: Vec::new(),
            queued: Default::default(),
            queued_verdicts: Default::default(),
            pending: Vec::new(),
            peer_alerts: BTreeMap::new(),
            clock: Timestamp(i64::MIN),
            next_expiry: Timestamp(i64::MIN),
        }
    }

    /// The model id.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Scores every monitored side of `rec` (no events written). Used by evaluation.
    pub fn score(&mut self, rec: &FlowRecord) -> &[Verdict] {
        let mut vs = std::mem::take(&mut self.verdicts);
        vs.clear();
        {
            let mut p = lock(&self.prep);
            p.analyse(rec, &mut vs);
            p.score_forests(&mut vs);
        }
        self.verdicts = vs;
        &self.verdicts
    }

    /// The `stats` counters: those of the analysed sides (kept by the preparer) and of
    /// the events written.
    pub fn counters(&self) -> DetectCounters {
        let mut c = self.counters.clone();
        let p = lock(&self.prep);
        c.scored = p.counts.scored;
        c.scored_by_class = p.counts.scored_by_class.clone();
        c.devices = p.counts.devices.clone();
        c
    }

    /// Queues a prepared run's verdicts for the `on_flow` calls of its records.
    fn enqueue(&mut self, run: PreparedRun) {
        self.queued.extend(run.queued);
        self.queued_verdicts.extend(run.verdicts);
    }

    /// Analyses and scores a run of consecutive flow records (no ARP packet between
    /// them) ahead of their [`FlowObserver::on_flow`] calls, so their forests are scored
    /// in one batch; `on_flow` then takes the queued verdicts in the same order. Only
    /// `on_flow` (incidents, alerts) depends on what is written, never the analysis, so
    /// the events are the same as without it.
    fn prepare_run(&mut self, recs: &mut dyn Iterator<Item = &FlowRecord>) {
        let run = lock(&self.prep).prepare_run(recs);
        self.enqueue(run);
    }

    /// The verdicts of the last record handed to [`Detector::score`] or
    /// [`FlowObserver::on_flow`] (one per monitored side).
    pub fn last_verdicts(&self) -> &[Verdict] {
        &self.verdicts
    }

    /// The ARP-spoofing interception `rec` shows, if any: packets of it came from a
    /// second source MAC (`mac_changed`) while one of its IPv4 endpoints was claimed by a
    /// MAC other than its own (see [`ArpWatcher::claimed_during`]). Returns that endpoint
    /// and the (known, claiming) MACs; when both endpoints were claimed (a poisoner sits
    /// between two hosts), the one listed in the inventory, else the originator. ARP
    /// packets reach the detector in packet-time order with the records, so every claim
    /// up to the record's emission has been seen.
    ///
    /// `ends` are the endpoints' devices as resolved when the record's run was analysed
    /// ([`Queued::ends`]); `None` for a record the rule does not look at.
    fn interception(
        &mut self,
        rec: &FlowRecord,
        ends: Option<[Option<DeviceInfo>; 2]>,
    ) -> Option<(Interception, Option<DeviceInfo>)> {
        if !rec.mac_changed || self.cfg.forest_only {
            return None;
        }
        let [orig_dev, resp_dev] = ends?;
        let mut best: Option<(Interception, Option<DeviceInfo>, bool)> = None;
        for (side, ep, dev) in [
            (Side::Orig, rec.orig, orig_dev),
            (Side::Resp, rec.resp, resp_dev),
        ] {
            let Some(ip) = ep.addr.as_v4() else { continue };
            let Some(claim) = self.arp.claimed_during(ip, rec.first_ts, rec.last_ts) else {
                continue;
            };
            let listed = dev
                .as_ref()
                .is_some_and(|d| d.assignment.source == crate::device::ClassSource::Inventory);
            if best.as_ref().is_none_or(|(_, _, b)| listed && !b) {
                let hit = Interception {
                    side,
                    known_mac: claim.known_mac,
                    new_mac: claim.new_mac,
                };
                best = Some((hit, dev, listed));
            }
        }
        best.map(|(hit, dev, _)| (hit, dev))
    }

    /// Writes the `arp_intercepted_flow` alert of `rec` (on `dev`, the device of the
    /// claimed endpoint `side`) and notes it for incidents.
    fn alert_interception(
        &mut self,
        rec: &FlowRecord,
        hit: Interception,
        dev: Option<DeviceInfo>,
        detected_at: &str,
        w: &mut EventWriter,
    ) -> Result<(), OutputError> {
        let Interception {
            side,
            known_mac,
            new_mac,
        } = hit;
        let (ep, peer) = match side {
            Side::Orig => (rec.orig, rec.resp),
            Side::Resp => (rec.resp, rec.orig),
        };
        let id = dev
            .as_ref()
            .map(|d| d.id.to_string())
            .unwrap_or_else(|| ep.addr.to_ip().to_string());
        let class = dev
            .as_ref()
            .map(|d| d.assignment.class.as_str())
            .unwrap_or("unknown");
        let ev = AnomalyEvent {
            detector: DETECTOR_ARP_FLOW,
            detectors: Vec::new(),
            detected_at: detected_at.to_string(),
            device: dev
                .as_ref()
                .map(|d| Self::device_json(d, side, ep.addr))
                .unwrap_or_else(|| DeviceJson::unknown(&id, side, ep.addr)),
            score: None,
            threshold: None,
            envelope: None,
            model: ModelJson {
                id: &self.model_id,
                class,
                transport: None,
                calibration_fpr: 0.0,
            },
            explanation: Vec::new(),
            rule: Some(RuleJson {
                name: DETECTOR_ARP_FLOW,
                detail: format!(
                    "packets of this flow came through a second MAC while {} was claimed by {} ({}): likely intercepted by ARP spoofing",
                    ep.addr.to_ip(),
                    mac_str(new_mac),
                    match known_mac {
                        Some(m) => format!("bound to {}", mac_str(m)),
                        None => "in replies that cross-claim two hosts".to_string(),
                    }
                ),
            }),
        };
        w.write_with_flow(&id, &flow_json(rec, "anomaly"), &ev)?;
        let alert = AlertRef {
            device_id: &id,
            class,
            class_source: dev.as_ref().map(source_name).unwrap_or("unknown"),
            ts: rec.last_ts,
            detector: DETECTOR_ARP_FLOW,
            score: 1.0,
            peer: peer.addr.to_ip().to_string(),
            flow_id: flow_id(rec),
            top_feature: None,
        };
        self.note_alert(&alert, w)
    }

    /// Writes an ARP rule's `anomaly` event (`detector` and its `arp` object), on the
    /// device of address `ip` (or the address when no device has it), and notes it for
    /// incidents.
    fn alert_arp(
        &mut self,
        arp: &ArpPacket,
        ip: [u8; 4],
        detector: &'static str,
        json: ArpJson,
        detail: String,
        w: &mut EventWriter,
    ) -> Result<(), OutputError> {
        let ip = Addr::v4(ip);
        let ep = crate::flow::Endpoint {
            addr: ip,
            port: 0,
            mac: None,
        };
        let dev = lock(&self.prep).resolver.resolve(&ep);
        let class = dev
            .as_ref()
            .map(|d| d.assignment.class.as_str())
            .unwrap_or("unknown");
        let peer = json.new_mac.clone();
        let ev = ArpEvent {
            timestamp: arp.ts.to_eve_string(),
            event_type: "anomaly",
            detector,
            src_ip: json.ip.clone(),
            src_mac: json.new_mac.clone(),
            vlan: arp.vlan.iter().copied().filter(|&v| v != 0).collect(),
            arp: json,
            device: dev.as_ref().map(|d| Self::device_json(d, Side::Orig, ip)),
            model: ModelJson {
                id: &self.model_id,
                class,
                transport: None,
                calibration_fpr: 0.0,
            },
            rule: RuleJson {
                name: detector,
                detail,
            },
        };
        let id = dev
            .as_ref()
            .map(|d| d.id.to_string())
            .unwrap_or_else(|| ip.to_ip().to_string());
        w.write_keyed(&id, &ev)?;
        let alert = AlertRef {
            device_id: &id,
            class,
            class_source: dev.as_ref().map(source_name).unwrap_or("unknown"),
            ts: arp.ts,
            detector,
            score: 1.0,
            peer,
            flow_id: 0,
            top_feature: None,
        };
        self.note_alert(&alert, w)
    }

    fn device_json(dev: &DeviceInfo, side: Side, ip: Addr) -> DeviceJson {
        DeviceJson {
            id: dev.id.to_string(),
            class: dev.assignment.class.as_str(),
            class_source: source_name(dev),
            confidence: (f64::from(dev.assignment.confidence) * 1000.0).round() / 1000.0,
            role: role_name(side),
            ip: ip.to_ip(),
        }
    }

    /// The model whose training envelope guards `dev` (see [`envelope`] and
    /// [`guard_model`]).
    fn guard_model(&self, dev: &DeviceInfo) -> Option<&crate::model::ClassModel> {
        guard_model(&self.bundle, &self.cfg, dev)
    }

    /// The per-feature excess behind `v.envelope`, recomputed from its features with the
    /// guarding model (the same inputs as in [`Preparer::analyse`], so the same values;
    /// kept out of the verdict because only alerts need it).
    fn excess(&self, v: &Verdict) -> [f64; N_FEATURES] {
        let mut excess = [0f64; N_FEATURES];
        if let Some(g) = self.guard_model(&v.device) {
            envelope::score(&v.features.0, g.forest.feature_ranges(), &mut excess);
        }
        excess
    }

    /// The explaining features: the forest's attribution when the forest alerted, else the
    /// envelope excess shares.
    fn weights(&self, v: &Verdict) -> [f64; N_FEATURES] {
        if v.forest_alert() {
            return v
                .contributions
                .as_deref()
                .copied()
                .unwrap_or([0f64; N_FEATURES]);
        }
        let excess = self.excess(v);
        let total: f64 = excess.iter().sum();
        let mut w = [0f64; N_FEATURES];
        if total > 0.0 {
            for (o, e) in w.iter_mut().zip(&excess) {
                *o = e / total;
            }
        }
        w
    }

    fn explanation(&self, v: &Verdict) -> Vec<FeatureJson> {
        // The training ranges of what explains the alert: the scoring forest's, or the
        // guarding envelope's when the guard alone alerted.
        let m = match self.guard_model(&v.device) {
            Some(g) if !v.forest_alert() => g,
            _ => self.bundle.model_for(v.model_class),
        };
        let ranges = m.forest.feature_ranges();
        let weights = self.weights(v);
        let mut idx: Vec<usize> = (0..N_FEATURES).filter(|&i| weights[i] > 0.0).collect();
        idx.sort_by(|&a, &b| {
            weights[b]
                .partial_cmp(&weights[a])
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(&b))
        });
        idx.truncate(self.cfg.top_features);
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        idx.into_iter()
            .map(|i| {
                let (lo, hi) = ranges.get(i).copied().unwrap_or((0.0, 0.0));
                let val = v.features.0[i];
                FeatureJson {
                    name: FEATURE_NAMES[i],
                    value: r3(f64::from(val)),
                    contribution: r3(weights[i]),
                    train_min: r3(f64::from(lo)),
                    train_max: r3(f64::from(hi)),
                    outside_training_range: val < lo || val > hi,
                }
            })
            .collect()
    }

    fn top_feature(&self, v: &Verdict) -> Option<&'static str> {
        let mut best: Option<(usize, f64)> = None;
        for (i, &c) in self.weights(v).iter().enumerate() {
            if c > 0.0 && best.is_none_or(|(_, b)| c > b) {
                best = Some((i, c));
            }
        }
        best.map(|(i, _)| FEATURE_NAMES[i])
    }

    fn note_alert(&mut self, alert: &AlertRef<'_>, w: &mut EventWriter) -> Result<(), OutputError> {
        *self.counters.alerts.entry(alert.detector).or_insert(0) += 1;
        let s = Self::summary_of(&mut self.summary, &mut self.untracked, alert.device_id);
        s.class = alert.class;
        s.alerts += 1;
        if alert.score > s.max_score {
            s.max_score = alert.score;
        }
        if let Some(inc) = self.incidents.add(alert) {
            self.write_incident(&inc, w)?;
        }
        Ok(())
    }

    fn write_incident(&mut self, inc: &Incident, w: &mut EventWriter) -> Result<(), OutputError> {
        self.counters.incidents += 1;
        Self::summary_of(&mut self.summary, &mut self.untracked, &inc.device_id).incidents += 1;
        w.write_keyed(
            &inc.device_id,
            &IncidentEvent {
                timestamp: inc.closed_at.to_eve_string(),
                event_type: "incident",
                incident: inc,
                model_id: &self.model_id,
            },
        )
    }

    fn advance(&mut self, now: Timestamp, w: &mut EventWriter) -> Result<(), OutputError> {
        if now > self.clock {
            self.clock = now;
        }
        // Incidents close on a 300 s gap: checking once per second of packet time is
        // exact to the second and keeps the per-flow cost constant.
        if self.clock < self.next_expiry {
            return Ok(());
        }
        self.next_expiry = self.clock.plus(Nanos::from_secs(1));
        let (clock, window) = (self.clock, self.cfg.incident_window);
        self.peer_alerts.retain(|_, t| clock.since(*t) < window);
        self.incidents.expire(self.clock, &mut self.pending);
        let pending = std::mem::take(&mut self.pending);
        for inc in &pending {
            self.write_incident(inc, w)?;
        }
        Ok(())
    }

    /// The summary entry of a device, or the shared one of untracked devices once
    /// [`DEVICE_TRACK_CAP`] devices have one.
    fn summary_of<'s>(
        summary: &'s mut BTreeMap<String, DeviceSummary>,
        untracked: &'s mut DeviceSummary,
        id: &str,
    ) -> &'s mut DeviceSummary {
        if summary.contains_key(id) || summary.len() < DEVICE_TRACK_CAP {
            summary.entry(id.to_string()).or_default()
        } else {
            untracked
        }
    }

    /// Human summary (devices with alerts, by class, top scores) for stderr.
    pub fn human_summary(&self) -> String {
        let mut s = String::new();
        let alerts: u64 = self.counters.alerts.values().sum();
        s.push_str(&format!(
            "flowsentry: {} flow sides scored, {} alerts, {} incidents (model {})\n",
            lock(&self.prep).counts.scored,
            alerts,
            self.counters.incidents,
            self.model_id
        ));
        let mut devs: Vec<(&String, &DeviceSummary)> = self.summary.iter().collect();
        devs.sort_by(|a, b| {
            b.1.max_score
                .partial_cmp(&a.1.max_score)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.0.cmp(b.0))
        });
        for (id, d) in devs.iter().take(20) {
            s.push_str(&format!(
                "  {:<24} {:<10} alerts {:>6}  incidents {:>4}  max score {:.3}\n",
                id, d.class, d.alerts, d.incidents, d.max_score
            ));
        }
        if self.untracked.alerts + self.untracked.incidents > 0 {
            s.push_str(&format!(
                "  (more than {DEVICE_TRACK_CAP} devices alerted: {} alerts and {} incidents of the others are not listed)\n",
                self.untracked.alerts, self.untracked.incidents
            ));
        }
        s
    }
}

impl FlowObserver for Detector {
    fn prepare(&mut self, recs: &mut dyn Iterator<Item = &FlowRecord>) {
        self.prepare_run(recs);
    }

    fn on_flow(&mut self, rec: &FlowRecord, w: &mut EventWriter) -> Result<(), OutputError> {
        let now = if rec.emit_ts.0 == i64::MAX {
            rec.last_ts
        } else {
            rec.emit_ts
        };
        self.advance(now, w)?;
        let detected_at = now.to_eve_string();
        let mut verdicts = std::mem::take(&mut self.verdicts);
        verdicts.clear();
        let prepared = self
            .queued
            .front()
            .is_some_and(|q| q.ident == RecordIdent::of(rec));
        if !prepared {
            // Not prepared (or the caller skipped records it prepared: never the case
            // for `Output`, which hands on every prepared record in order): a run of one.
            debug_assert!(self.queued.is_empty(), "on_flow out of prepared order");
            self.queued.clear();
            self.queued_verdicts.clear();
            self.prepare_run(&mut std::iter::once(rec));
        }
        let (modbus, ends) = match self.queued.pop_front() {
            Some(q) => {
                let n = q.sides.min(self.queued_verdicts.len());
                verdicts.extend(self.queued_verdicts.drain(..n));
                (q.modbus, q.ends)
            }
            None => (None, None),
        };
        for v in &verdicts {
            let peer = match v.side {
                Side::Orig => rec.resp.addr,
                Side::Resp => rec.orig.addr,
            };
            let mut detectors: Vec<&'static str> = Vec::new();
            if v.forest_alert() {
                detectors.push(DETECTOR_IFOREST);
            }
            if v.envelope_alert() {
                detectors.push(DETECTOR_ENVELOPE);
            }
            if v.new_public_peer {
                let key = (v.device.id.to_string(), crate::features::peer_key(&peer));
                let recent = self
                    .peer_alerts
                    .get(&key)
                    .is_some_and(|&t| rec.last_ts.since(t) < self.cfg.incident_window);
                if detectors.is_empty() && recent {
                    self.counters.suppressed += 1;
                } else {
                    detectors.push(DETECTOR_NEW_PEER);
                    self.peer_alerts.insert(key, rec.last_ts);
                }
            }
            let Some(&detector) = detectors.first() else {
                continue;
            };
            let ip = match v.side {
                Side::Orig => rec.orig.addr,
                Side::Resp => rec.resp.addr,
            };
            let m = if self.cfg.global_model {
                &self.bundle.pooled
            } else {
                self.bundle.model_for(v.model_class)
            };
            let rule = (detector == DETECTOR_NEW_PEER).then(|| RuleJson {
                name: DETECTOR_NEW_PEER,
                detail: format!(
                    "{} talks to {}, in a public network {} in the training window",
                    ip.to_ip(),
                    peer.to_ip(),
                    if v.device.assignment.class == DeviceClass::Unknown {
                        "no device talked to"
                    } else {
                        "it never talked to"
                    }
                ),
            });
            let ev = AnomalyEvent {
                detector,
                detectors: detectors.clone(),
                detected_at: detected_at.clone(),
                device: Self::device_json(&v.device, v.side, ip),
                score: Some((v.score * 1e6).round() / 1e6),
                threshold: Some((v.threshold * 1e6).round() / 1e6),
                envelope: Some(EnvelopeJson {
                    score: (v.envelope * 1e6).round() / 1e6,
                    threshold: (v.envelope_threshold * 1e6).round() / 1e6,
                }),
                model: ModelJson {
                    id: &self.model_id,
                    class: m.class.as_str(),
                    transport: v.transport.map(Transport::as_str),
                    calibration_fpr: m.scorer_of(v.transport).calibration_fpr,
                },
                explanation: if v.anomalous() {
                    self.explanation(v)
                } else {
                    Vec::new()
                },
                rule,
            };
            w.write_with_flow(&v.device.id, &flow_json(rec, "anomaly"), &ev)?;
            let alert = AlertRef {
                device_id: &v.device.id,
                class: v.device.assignment.class.as_str(),
                class_source: source_name(&v.device),
                ts: rec.last_ts,
                detector,
                score: if v.anomalous() { v.score } else { 1.0 },
                peer: peer.to_ip().to_string(),
                flow_id: flow_id(rec),
                top_feature: if v.anomalous() {
                    self.top_feature(v)
                } else {
                    None
                },
            };
            self.note_alert(&alert, w)?;
        }
        if let Some(ModbusHit {
            plc,
            master,
            side,
            device: Some(dev),
        }) = modbus
        {
            let ev = AnomalyEvent {
                    detector: DETECTOR_MODBUS,
                    detectors: Vec::new(),
                    detected_at: detected_at.clone(),
                    device: Self::device_json(&dev, side, plc),
                    score: None,
                    threshold: None,
                    envelope: None,
                    model: ModelJson {
                        id: &self.model_id,
                        class: dev.assignment.class.as_str(),
                        transport: None,
                        calibration_fpr: 0.0,
                    },
                    explanation: Vec::new(),
                    rule: Some(RuleJson {
                        name: DETECTOR_MODBUS,
                        detail: format!(
                            "{} Modbus write request(s) from {} to {}: this master never wrote to this PLC in the training window",
                            rec.app.modbus_writes,
                            master.to_ip(),
                            plc.to_ip()
                        ),
                    }),
                };
            w.write_with_flow(&dev.id, &flow_json(rec, "anomaly"), &ev)?;
            let alert = AlertRef {
                device_id: &dev.id,
                class: dev.assignment.class.as_str(),
                class_source: source_name(&dev),
                ts: rec.last_ts,
                detector: DETECTOR_MODBUS,
                score: 1.0,
                peer: master.to_ip().to_string(),
                flow_id: flow_id(rec),
                top_feature: None,
            };
            self.note_alert(&alert, w)?;
        }
        if let Some((hit, dev)) = self.interception(rec, ends) {
            self.alert_interception(rec, hit, dev, &detected_at, w)?;
        }
        self.verdicts = verdicts;
        Ok(())
    }

    fn on_arp(&mut self, arp: &ArpPacket, w: &mut EventWriter) -> Result<(), OutputError> {
        self.advance(arp.ts, w)?;
        if self.cfg.forest_only {
            return Ok(());
        }
        let observed = self
            .arp
            .observe(arp, Some(lock(&self.prep).resolver.inventory()));
        if let Some(c) = observed {
            let json = ArpJson {
                ip: Addr::v4(c.ip).to_ip().to_string(),
                known_mac: Some(mac_str(c.known_mac)),
                new_mac: mac_str(c.new_mac),
                known_from: Some(if c.from_inventory {
                    "inventory"
                } else {
                    "first_seen"
                }),
                also_claims: None,
                opcode: c.opcode,
            };
            let detail = format!(
                "{} is claimed by {} but was bound to {}",
                json.ip,
                json.new_mac,
                mac_str(c.known_mac)
            );
            self.alert_arp(arp, c.ip, DETECTOR_ARP, json, detail, w)?;
        }
        if let Some(c) = self.arp.observe_cross(arp) {
            let peer = Addr::v4(c.peer).to_ip().to_string();
            let json = ArpJson {
                ip: Addr::v4(c.ip).to_ip().to_string(),
                known_mac: None,
                new_mac: mac_str(c.mac),
                known_from: None,
                also_claims: Some(peer.clone()),
                opcode: arp.opcode,
            };
            let detail = format!(
                "{} tells {peer} it is {} and tells {} it is {peer}: both directions of a man in the middle",
                json.new_mac, json.ip, json.ip
            );
            // On the device of either address (the inventory one first), as the
            // poisoning targets both.
            let ip = [c.ip, c.peer]
                .into_iter()
                .find(|&ip| {
                    lock(&self.prep)
                        .resolver
                        .inventory()
                        .lookup(None, Addr::v4(ip))
                        .is_some()
                })
                .unwrap_or(c.ip);
            self.alert_arp(arp, ip, DETECTOR_ARP_CROSS, json, detail, w)?;
        }
        Ok(())
    }

    fn finish(&mut self, ts: Timestamp, w: &mut EventWriter) -> Result<(), OutputError> {
        let now = if ts > self.clock { ts } else { self.clock };
        let mut out = Vec::new();
        self.incidents.finish(now, &mut out);
        for inc in &out {
            self.write_incident(inc, w)?;
        }
        Ok(())
    }

    fn stats(&self) -> serde_json::Value {
        let mut c = self.counters();
        c.incidents_below_evidence = self.incidents.below_evidence;
        serde_json::to_value(&c).unwrap_or(serde_json::Value::Null)
    }

    fn alert_counts(&self) -> (u64, u64) {
        (self.counters.alerts.values().sum(), self.counters.incidents)
    }

    fn flow_key(&self) -> Option<&str> {
        self.verdicts.first().map(|v| &*v.device.id)
    }

    fn human_summary(&self) -> String {
        Detector::human_summary(self)
    }

    fn start_prepare_ahead(&mut self) -> Result<bool, OutputError> {
        if self.ahead.is_some() {
            return Ok(true);
        }
        let (tx, to_helper) = crossbeam_channel::unbounded::<Vec<FlowRecord>>();
        let (from_helper, rx) = crossbeam_channel::unbounded();
        let prep = self.prep.clone();
        let thread = std::thread::Builder::new()
            .name("detect-prepare".into())
            .spawn(move || {
                for recs in to_helper.iter() {
                    let run = lock(&prep).prepare_run(&mut recs.iter());
                    if from_helper.send((recs, run)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| OutputError::Thread {
                what: "detector helper thread".into(),
                detail: e.to_string(),
            })?;
        self.ahead = Some(Ahead {
            tx: Some(tx),
            rx,
            in_flight: 0,
            spare: Vec::new(),
            thread: Some(thread),
        });
        Ok(true)
    }

    fn submit(&mut self, recs: &mut dyn Iterator<Item = &FlowRecord>) -> Result<(), OutputError> {
        let Some(a) = self.ahead.as_mut() else {
            self.prepare_run(recs);
            return Ok(());
        };
        let mut buf = a.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend(recs.copied());
        let tx = a.tx.as_ref().ok_or_else(helper_stopped)?;
        tx.send(buf).map_err(|_| helper_stopped())?;
        a.in_flight += 1;
        Ok(())
    }

    fn collect(&mut self) -> Result<(), OutputError> {
        let Some(a) = self.ahead.as_mut() else {
            return Ok(());
        };
        if a.in_flight == 0 {
            return Ok(());
        }
        let (buf, run) = a.rx.recv().map_err(|_| helper_stopped())?;
        a.in_flight -= 1;
        // A few buffers are enough: at most a write batch's runs are out at once.
        if a.spare.len() < 8 {
            a.spare.push(buf);
        }
        self.enqueue(run);
        Ok(())
    }

    fn replace_model(&mut self, bundle: Arc<ModelBundle>, id: String) {
        self.queued.clear();
        self.queued_verdicts.clear();
        {
            let mut p = lock(&self.prep);
            let inventory = p.resolver.inventory().clone();
            let counts = std::mem::take(&mut p.counts);
            *p = Preparer::new(bundle.clone(), inventory, self.cfg.clone());
            p.counts = counts;
        }
        self.bundle = bundle;
        self.model_id = id;
    }
}
