//! Training: replays benign captures into flow records, learns the familiarity tables,
//! builds each monitored device's feature vectors, fits one isolation forest per device
//! class plus a pooled one, trains the device-class inference on the inventory devices'
//! traffic, collects the Modbus write allow-list, and calibrates every threshold as the
//! (1 − target FPR) quantile of scores on later benign captures. Deterministic: the same
//! inputs, inventory and seed give a byte-identical model file.

use crate::capture::{Backend, Input};
use crate::detect::envelope;
use crate::detect::rules::ModbusWriteRule;
use crate::device::{
    ClassInference, DeviceClass, DeviceProfile, DeviceResolver, Inventory, ResolverConfig,
};
use crate::event::EventWriter;
use crate::features::{DeviceRef, FamiliarityTables, FeatureExtractor, FEATURE_NAMES, N_FEATURES};
use crate::flow::{FlowConfig, FlowRecord};
use crate::forest::{ForestParams, IsolationForest};
use crate::model::{ClassModel, ModelBundle, TrainingMeta, Transport, TransportModel};
use crate::output::Output;
use crate::pipeline::ReplayOptions;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Rows a class needs for a forest of its own (fewer: scored by the pooled model).
pub const MIN_CLASS_ROWS: usize = 64;
/// Rows of one transport a class needs, in training and again in calibration, for a
/// per-transport forest (fewer: its class-wide forest scores that transport). Below
/// 2,000 calibration rows the (1 − 0.05 %) quantile of the default target FPR is the
/// largest calibration score, a conservative threshold (the shipped model's camera/tcp,
/// thermostat/tcp and thermostat/udp forests have 1,124-1,706).
pub const MIN_TRANSPORT_ROWS: usize = 1_000;
/// Length of one device-profile window for the inference training set (6 h).
const PROFILE_WINDOW_US: i64 = 6 * 3600 * 1_000_000;

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A capture could not be read completely.
    #[error("{0}")]
    Input(String),
    /// The inventory is invalid.
    #[error("{0}")]
    Inventory(#[from] crate::device::DeviceError),
    /// Not enough data.
    #[error("training data: {0}")]
    Data(String),
    /// A forest could not be fitted.
    #[error("fitting the {class} forest: {source}")]
    Forest {
        /// Class.
        class: &'static str,
        /// The forest error.
        source: crate::forest::ForestError,
    },
    /// Output failure while collecting flows.
    #[error("{0}")]
    Output(#[from] crate::error::OutputError),
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Benign training captures (in time order).
    pub pcaps: Vec<PathBuf>,
    /// Later benign captures for threshold calibration.
    pub calibrate: Vec<PathBuf>,
    /// Device inventory.
    pub inventory: Option<PathBuf>,
    /// Target false-positive rate per class.
    pub target_fpr: f64,
    /// When set, each threshold is the smallest calibration order statistic whose true
    /// exceedance rate is at most its share of the target with this confidence.
    pub calibration_confidence: Option<f64>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Trees per forest.
    pub n_trees: usize,
    /// Subsample size per tree.
    pub max_samples: usize,
    /// Flow-table settings (use the sensor's).
    pub flow: FlowConfig,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            pcaps: Vec::new(),
            calibrate: Vec::new(),
            inventory: None,
            target_fpr: 0.001,
            calibration_confidence: None,
            seed: 1,
            n_trees: 200,
            max_samples: 256,
            flow: FlowConfig::default(),
        }
    }
}

/// One line of the training report: a class-wide (or the pooled) forest, or a
/// per-transport forest of a class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassReport {
    /// Class (`unknown` = the pooled model).
    pub class: DeviceClass,
    /// The transport of a per-transport forest (`None`: the class-wide forest).
    pub transport: Option<Transport>,
    /// Training rows.
    pub n_train: u64,
    /// Calibration rows.
    pub n_calibration: u64,
    /// Threshold.
    pub threshold: f64,
    /// Achieved calibration FPR of the forest.
    pub calibration_fpr: f64,
    /// The class's envelope guard, on a class-wide or pooled line only: a class has one
    /// guard, whose figures cover its per-transport forests too.
    pub guard: Option<GuardReport>,
}

/// The envelope guard of a class, as calibrated by `train`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardReport {
    /// Envelope guard threshold.
    pub threshold: f64,
    /// Achieved calibration FPR of forest or guard (a flow alerted by either; each flow
    /// by the forest that scores it).
    pub union_fpr: f64,
}

/// Share of `v` above `t`.
fn share_above(v: &[f64], t: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().filter(|&&x| x > t).count() as f64 / v.len() as f64
}

/// Share of calibration rows the forest (`forest_alerts`, one per row) or the guard
/// (`e > ethr`) alerts.
fn union_fpr(forest_alerts: impl Iterator<Item = bool>, e: &[f64], ethr: f64) -> f64 {
    if e.is_empty() {
        return 0.0;
    }
    let n = forest_alerts
        .zip(e)
        .filter(|&(f, &b)| f || b > ethr)
        .count();
    n as f64 / e.len() as f64
}

/// Replays captures (single-threaded, in order) and returns their flow records.
pub fn collect_records(paths: &[PathBuf], flow: FlowConfig) -> Result<Vec<FlowRecord>, TrainError> {
    let opts = ReplayOptions {
        inputs: paths.iter().map(|p| Input::File(p.clone())).collect(),
        backend: Backend::Native,
        flow,
        workers: 0,
        ..ReplayOptions::default()
    };
    let mut out = Output::flows_only(EventWriter::new(Box::new(std::io::sink()), "sink"));
    out.emit_flows = false;
    out.collected = Some(Vec::new());
    let outcome = crate::pipeline::replay(&opts, &mut out)?;
    if let Some(e) = outcome.input_errors.first() {
        return Err(TrainError::Input(e.clone()));
    }
    Ok(out.collected.unwrap_or_default())
}

fn window_us(recs: &[FlowRecord]) -> (i64, i64) {
    let lo = recs
        .iter()
        .map(|r| r.first_ts.as_micros())
        .min()
        .unwrap_or(0);
    let hi = recs
        .iter()
        .map(|r| r.last_ts.as_micros())
        .max()
        .unwrap_or(0);
    (lo, hi)
}

fn class_seed(seed: u64, class: DeviceClass) -> u64 {
    seed ^ (u64::from(class.code()) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn transport_seed(seed: u64, class: DeviceClass, t: Transport) -> u64 {
    class_seed(seed, class) ^ (t as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// The (1 − fpr) quantile (nearest rank) and the share of scores above it. With a
/// `confidence` c, the order statistic with the most scores above it (k) such that
/// P(Binomial(n, fpr) ≤ k) ≤ 1 − c: then the threshold's true exceedance rate is at most
/// `fpr` with probability at least c (distribution-free; the largest score when even
/// k = 0 cannot give that).
pub fn quantile_threshold(scores: &mut [f64], fpr: f64, confidence: Option<f64>) -> (f64, f64) {
    if scores.is_empty() {
        return (1.0, 0.0);
    }
    scores.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = scores.len();
    let rank = match confidence {
        None => ((1.0 - fpr) * n as f64).ceil() as usize,
        Some(c) => n - binomial_exceedances(n, fpr, 1.0 - c),
    };
    let thr = scores[rank.clamp(1, n) - 1];
    let above = scores.iter().filter(|&&s| s > thr).count();
    (thr, above as f64 / n as f64)
}

/// The largest k with P(Binomial(n, p) ≤ k) ≤ `tail` (0 when none), at most n − 1.
fn binomial_exceedances(n: usize, p: f64, tail: f64) -> usize {
    if !(p > 0.0 && p < 1.0) {
        return 0;
    }
    let nf = n as f64;
    let mut pmf = (nf * (1.0 - p).ln()).exp();
    let mut cdf = pmf;
    let mut k = 0usize;
    while k + 1 < n {
        pmf *= (nf - k as f64) / (k as f64 + 1.0) * p / (1.0 - p);
        if cdf + pmf > tail {
            break;
        }
        cdf += pmf;
        k += 1;
    }
    k
}

/// Trains a model bundle. Returns it with a per-class report (pooled model last).
pub fn train(o: &TrainOptions) -> Result<(ModelBundle, Vec<ClassReport>), TrainError> {
    if o.pcaps.is_empty() {
        return Err(TrainError::Data("no training capture given".into()));
    }
    let inventory = match &o.inventory {
        Some(p) => Inventory::load(p)?,
        None => Inventory::default(),
    };
    let recs = collect_records(&o.pcaps, o.flow)?;
    if recs.is_empty() {
        return Err(TrainError::Data(
            "the training captures hold no IP flow".into(),
        ));
    }

    // Pass 1: familiarity tables, Modbus write masters, inventory-device profiles.
    let mut resolver = DeviceResolver::new(inventory.clone(), None, ResolverConfig::default());
    let mut tables = FamiliarityTables::default();
    let mut masters: BTreeSet<(crate::packet::Addr, crate::packet::Addr)> = BTreeSet::new();
    let mut profiles: BTreeMap<(String, i64), (DeviceProfile, DeviceClass)> = BTreeMap::new();
    for rec in &recs {
        if let Some(p) = ModbusWriteRule::write_pair(rec) {
            masters.insert(p);
        }
        for (side, dev) in resolver.monitored(rec).into_iter().flatten() {
            tables.learn(dev.assignment.class, &dev.id, rec, side);
            if dev.assignment.source == crate::device::ClassSource::Inventory {
                let w = rec.first_ts.as_micros().div_euclid(PROFILE_WINDOW_US);
                profiles
                    .entry((dev.id.to_string(), w))
                    .or_insert_with(|| (DeviceProfile::new(), dev.assignment.class))
                    .0
                    .observe(rec, side);
            }
        }
    }

    // Pass 2: feature rows per class and pooled.
    let mut resolver = DeviceResolver::new(inventory.clone(), None, ResolverConfig::default());
    let mut extractor = FeatureExtractor::new(tables.clone());
    let mut rows: BTreeMap<DeviceClass, Vec<f32>> = BTreeMap::new();
    let mut trows: BTreeMap<(DeviceClass, Transport), Vec<f32>> = BTreeMap::new();
    let mut pooled: Vec<f32> = Vec::new();
    for rec in &recs {
        for (side, dev) in resolver.monitored(rec).into_iter().flatten() {
            let class = dev.assignment.class;
            let fv = extractor.extract(rec, side, &DeviceRef { id: &dev.id, class });
            if class.is_iot() {
                rows.entry(class).or_default().extend_from_slice(&fv.0);
                if let Some(t) = Transport::of(rec.proto) {
                    trows
                        .entry((class, t))
                        .or_default()
                        .extend_from_slice(&fv.0);
                }
            }
            pooled.extend_from_slice(&fv.0);
        }
    }
    if pooled.is_empty() {
        return Err(TrainError::Data(
            "no monitored device in the training flows".into(),
        ));
    }

    let fit =
        |class: DeviceClass, seed: u64, data: &[f32]| -> Result<IsolationForest, TrainError> {
            let params = ForestParams {
                n_trees: o.n_trees,
                max_samples: o.max_samples,
                seed,
            };
            IsolationForest::fit(data, N_FEATURES, &params).map_err(|source| TrainError::Forest {
                class: class.as_str(),
                source,
            })
        };
    let mut classes = Vec::new();
    for (class, data) in &rows {
        let n = data.len() / N_FEATURES;
        if n < MIN_CLASS_ROWS {
            continue;
        }
        let mut transports = Vec::new();
        for t in [Transport::Tcp, Transport::Udp] {
            let Some(data) = trows.get(&(*class, t)) else {
                continue;
            };
            let nt = data.len() / N_FEATURES;
            if nt >= MIN_TRANSPORT_ROWS {
                transports.push(TransportModel {
                    transport: t,
                    forest: fit(*class, transport_seed(o.seed, *class, t), data)?,
                    threshold: 1.0,
                    calibration_fpr: 0.0,
                    n_train: nt as u64,
                    n_calibration: 0,
                });
            }
        }
        classes.push(ClassModel {
            class: *class,
            forest: fit(*class, class_seed(o.seed, *class), data)?,
            threshold: 1.0,
            calibration_fpr: 0.0,
            n_train: n as u64,
            n_calibration: 0,
            envelope_threshold: 0.0,
            envelope_calibration_fpr: 0.0,
            transports,
        });
    }
    // The pooled model is one forest over every class and transport: it is also the
    // design's global baseline.
    let mut pooled_model = ClassModel {
        class: DeviceClass::Unknown,
        forest: fit(
            DeviceClass::Unknown,
            class_seed(o.seed, DeviceClass::Unknown),
            &pooled,
        )?,
        threshold: 1.0,
        calibration_fpr: 0.0,
        n_train: (pooled.len() / N_FEATURES) as u64,
        n_calibration: 0,
        envelope_threshold: 0.0,
        envelope_calibration_fpr: 0.0,
        transports: Vec::new(),
    };

    // Device-class inference from the inventory devices' traffic windows.
    let (plist, labels): (Vec<DeviceProfile>, Vec<DeviceClass>) = profiles
        .into_values()
        .filter(|(p, c)| p.flows >= 5 && c.is_iot())
        .unzip();
    let distinct: BTreeSet<DeviceClass> = labels.iter().copied().collect();
    let inference = if distinct.len() >= 2 {
        ClassInference::train(&plist, &labels, o.seed).ok()
    } else {
        None
    };

    // Calibration on later benign traffic (the training traffic when none is given).
    let cal_recs = if o.calibrate.is_empty() {
        None
    } else {
        Some(collect_records(&o.calibrate, o.flow)?)
    };
    let calib: &[FlowRecord] = cal_recs.as_deref().unwrap_or(&recs);
    let mut resolver = DeviceResolver::new(inventory, inference.clone(), ResolverConfig::default());
    let mut extractor = FeatureExtractor::new(tables.clone());
    let mut scores: BTreeMap<DeviceClass, Vec<f64>> = BTreeMap::new();
    let mut env_scores: BTreeMap<DeviceClass, Vec<f64>> = BTreeMap::new();
    // Per class, per calibration row: its transport forest and that forest's score.
    let mut tscores: BTreeMap<DeviceClass, Vec<(Option<Transport>, f64)>> = BTreeMap::new();
    let mut pooled_scores: Vec<f64> = Vec::new();
    let mut pooled_env: Vec<f64> = Vec::new();
    // The forest and the envelope guard each get half of the target FPR, so a flow is
    // alerted by either at most at the target rate.
    let half = o.target_fpr / 2.0;
    let calibrate = |scores: &mut [f64]| quantile_threshold(scores, half, o.calibration_confidence);
    for rec in calib {
        for (side, dev) in resolver.monitored(rec).into_iter().flatten() {
            let class = dev.assignment.class;
            let fv = extractor.extract(rec, side, &DeviceRef { id: &dev.id, class });
            // Devices without a class model are scored by the pooled model, whose
            // threshold is calibrated below on all calibration traffic.
            if let Some(m) = classes.iter().find(|m| m.class == class) {
                scores.entry(class).or_default().push(m.forest.score(&fv.0));
                let sub = m.scorer(rec.proto, dev.assignment.source);
                let ts = match sub.transport {
                    Some(_) => sub.forest.score(&fv.0),
                    None => f64::NAN,
                };
                tscores.entry(class).or_default().push((sub.transport, ts));
                // A class's guard covers its operator-listed devices only; the others are
                // guarded by the pooled envelope, calibrated below (see detect::envelope).
                let e = if dev.assignment.source == crate::device::ClassSource::Inventory {
                    envelope::score_only(&fv.0, m.forest.feature_ranges())
                } else {
                    0.0
                };
                env_scores.entry(class).or_default().push(e);
            }
        }
    }
    let mut report = Vec::new();
    for m in classes.iter_mut() {
        let s0 = scores.remove(&m.class).unwrap_or_default();
        let e0 = env_scores.remove(&m.class).unwrap_or_default();
        let t0 = tscores.remove(&m.class).unwrap_or_default();
        m.n_calibration = s0.len() as u64;
        let (thr, fpr) = calibrate(&mut s0.clone());
        m.threshold = thr;
        m.calibration_fpr = fpr;
        let (ethr, _) = calibrate(&mut e0.clone());
        let ethr = ethr.max(envelope::MIN_THRESHOLD);
        let efpr = share_above(&e0, ethr);
        m.envelope_threshold = ethr;
        m.envelope_calibration_fpr = efpr;
        // Per-transport thresholds on that transport's calibration rows; a transport
        // with too few of them is left to the class-wide forest.
        let mut sub_reports = Vec::new();
        m.transports.retain_mut(|tm| {
            let mut st: Vec<f64> = t0
                .iter()
                .filter(|(t, _)| *t == Some(tm.transport))
                .map(|&(_, s)| s)
                .collect();
            if st.len() < MIN_TRANSPORT_ROWS {
                return false;
            }
            tm.n_calibration = st.len() as u64;
            let (t_thr, t_fpr) = calibrate(&mut st);
            tm.threshold = t_thr;
            tm.calibration_fpr = t_fpr;
            sub_reports.push(ClassReport {
                class: m.class,
                transport: Some(tm.transport),
                n_train: tm.n_train,
                n_calibration: tm.n_calibration,
                threshold: t_thr,
                calibration_fpr: t_fpr,
                guard: None,
            });
            true
        });
        // What the detector will alert on: each row's own forest (its transport's, or
        // the class-wide one) or the guard.
        let forest_alerts = s0.iter().zip(&t0).map(|(&s, &(t, ts))| {
            match m.transports.iter().find(|tm| Some(tm.transport) == t) {
                Some(tm) => ts > tm.threshold,
                None => s > thr,
            }
        });
        let ufpr = union_fpr(forest_alerts, &e0, ethr);
        report.push(ClassReport {
            class: m.class,
            transport: None,
            n_train: m.n_train,
            n_calibration: m.n_calibration,
            threshold: thr,
            calibration_fpr: fpr,
            guard: Some(GuardReport {
                threshold: ethr,
                union_fpr: ufpr,
            }),
        });
        report.extend(sub_reports);
    }
    // The pooled model's threshold: calibrated on everything it scores, and on the whole
    // calibration traffic so it also serves as the global baseline.
    {
        let mut resolver =
            DeviceResolver::new(Inventory::default(), None, ResolverConfig::default());
        let mut extractor = FeatureExtractor::new(tables.clone());
        for rec in calib {
            for (side, dev) in resolver.monitored(rec).into_iter().flatten() {
                let fv = extractor.extract(
                    rec,
                    side,
                    &DeviceRef {
                        id: &dev.id,
                        class: dev.assignment.class,
                    },
                );
                pooled_scores.push(pooled_model.forest.score(&fv.0));
                pooled_env.push(envelope::score_only(
                    &fv.0,
                    pooled_model.forest.feature_ranges(),
                ));
            }
        }
        pooled_model.n_calibration = pooled_scores.len() as u64;
        let (thr, fpr) = calibrate(&mut pooled_scores.clone());
        pooled_model.threshold = thr;
        pooled_model.calibration_fpr = fpr;
        let (ethr, _) = calibrate(&mut pooled_env.clone());
        let ethr = ethr.max(envelope::MIN_THRESHOLD);
        let efpr = share_above(&pooled_env, ethr);
        let ufpr = union_fpr(pooled_scores.iter().map(|&s| s > thr), &pooled_env, ethr);
        pooled_model.envelope_threshold = ethr;
        pooled_model.envelope_calibration_fpr = efpr;
        report.push(ClassReport {
            class: DeviceClass::Unknown,
            transport: None,
            n_train: pooled_model.n_train,
            n_calibration: pooled_model.n_calibration,
            threshold: thr,
            calibration_fpr: fpr,
            guard: Some(GuardReport {
                threshold: ethr,
                union_fpr: ufpr,
            }),
        });
    }

    let name = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let bundle = ModelBundle {
        feature_names: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
        classes,
        pooled: pooled_model,
        familiarity: tables,
        inference,
        modbus_write_masters: masters.into_iter().collect(),
        meta: TrainingMeta {
            seed: o.seed,
            n_trees: o.n_trees as u64,
            max_samples: o.max_samples as u64,
            target_fpr: o.target_fpr,
            calibration_confidence: o.calibration_confidence,
            training_inputs: o.pcaps.iter().map(name).collect(),
            calibration_inputs: o.calibrate.iter().map(name).collect(),
            training_window_us: window_us(&recs),
            calibration_window_us: window_us(calib),
            flowsentry_version: env!("CARGO_PKG_VERSION").to_string(),
        },
    };
    Ok((bundle, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn binomial_exceedances_follow_the_binomial_tail() {
        // n p = 6.19 (the shipped hub/udp forest): P(X <= 1) = 0.015, P(X <= 2) = 0.054.
        assert_eq!(binomial_exceedances(12_387, 0.0005, 0.05), 1);
        assert_eq!(binomial_exceedances(12_387, 0.0005, 0.06), 2);
        // (1 - p)^n above the tail: no order statistic below the maximum is safe.
        assert_eq!(binomial_exceedances(1_000, 0.0005, 0.05), 0);
        assert_eq!(binomial_exceedances(10, 0.0, 0.05), 0);
    }

    #[test]
    fn a_confident_threshold_exceeds_its_rate_in_at_most_one_minus_c_of_samples() {
        // Uniform scores: a threshold t has true exceedance rate 1 - t. Over many
        // calibration samples, the plain quantile's rate exceeds p about half the time;
        // the confident one in at most 1 - c of them (plus sampling noise).
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (n, p, c, trials) = (5_000, 0.002, 0.9, 2_000);
        let (mut plain, mut confident) = (0, 0);
        for _ in 0..trials {
            let s: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
            let (t, _) = quantile_threshold(&mut s.clone(), p, None);
            plain += usize::from(1.0 - t > p);
            let (t, rate) = quantile_threshold(&mut s.clone(), p, Some(c));
            confident += usize::from(1.0 - t > p);
            assert!(rate < p, "calibration rate {rate}");
        }
        let share = |k: usize| k as f64 / trials as f64;
        assert!(share(plain) > 0.35, "plain quantile: {}", share(plain));
        assert!(share(confident) <= 0.12, "confident: {}", share(confident));
    }
}
