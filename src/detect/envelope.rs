//! The training-envelope guard: how far a flow's feature vector lies outside the range its
//! class covered in training. An isolation forest scores a value 10× beyond the training
//! maximum like the maximum itself, and never splits on a feature that was constant in
//! training (a camera that never had an unanswered SYN), so the flows that differ most
//! from training — scans, floods, tunnels — can score like ordinary rare flows (design
//! §1.3, §2.4 "volume far beyond training max"). The guard measures exactly that distance;
//! its threshold is calibrated on benign calibration traffic like the forest's.
//!
//! Excess of feature i with training range `[lo, hi]`:
//! `max(0, lo − x, x − hi) / max(hi − lo, 1)`; the envelope score is the sum over the
//! guarded features. Features are log-scaled counts or fractions, so a unit of scale is
//! an e-fold (or the whole [0, 1] range). The familiarity features F26/F27 are left to the
//! forest and the new-public-peer rule: a new local peer is ordinary (a device joins the
//! site), so "outside the training range" there is not evidence on its own.
//!
//! The context counters F28-F30 (peers, new flows and services the device initiated in
//! the last 10 or 60 s) are guarded from above only. The attacks they reveal (scans,
//! floods, worm spread, a hijacked device's new connections) all raise them; a value below
//! the training minimum means the device started fewer flows than it ever did in training,
//! which is the case of every later slice of a long session on an otherwise quiet device
//! (a slice after the active timeout is not a new flow, so it is not counted: see
//! docs/features.md, "Context counters"). Guarding them from below alerted on such slices.
//!
//! A class's envelope guards the devices whose class comes from the inventory: it
//! describes that class's devices, and an inferred class can be wrong in exactly the way
//! that matters here (the NVR receiving a camera's video looks like a camera to the
//! inference, and far outside a camera's envelope). Every other device is guarded by the
//! pooled envelope of all training devices (`Detector::guard_model`). Calibration follows
//! the same rule: a class's guard threshold from its listed devices, the pooled one from
//! all calibration traffic.

use crate::features::{idx, N_FEATURES};

/// Features the guard ignores (F26 service-port and F27 peer familiarity).
pub const UNGUARDED: [usize; 2] = [idx::SVC_PORT_FAM, idx::PEER_FAM];

/// Features guarded from above only (the context counters F28-F30: being below the
/// training minimum is less activity, not an attack).
pub const UPPER_ONLY: [usize; 3] = [
    idx::DEV_FANOUT_60S,
    idx::DEV_NEWFLOWS_10S,
    idx::DEV_DPORTS_60S,
];

/// Smallest range used as a feature's scale (one e-fold of a log-scaled count).
const MIN_SCALE: f64 = 1.0;

/// Lowest threshold training sets: a flow must lie at least a quarter of a feature's
/// training range (or of an e-fold) outside it. The calibration quantile alone is often 0
/// (no calibration flow leaves the envelope), which would alert on any excess at all, e.g.
/// a camera answering one more SSDP search than it ever did in training.
pub const MIN_THRESHOLD: f64 = 0.25;

/// Whether feature `i` is guarded.
pub fn guarded(i: usize) -> bool {
    !UNGUARDED.contains(&i)
}

/// The envelope score of `x` against the per-feature training `ranges`; each guarded
/// feature's excess is written to `excess` (0 inside the range).
pub fn score(x: &[f32; N_FEATURES], ranges: &[(f32, f32)], excess: &mut [f64; N_FEATURES]) -> f64 {
    let mut total = 0.0;
    for (i, e) in excess.iter_mut().enumerate() {
        *e = 0.0;
        if !guarded(i) {
            continue;
        }
        let Some(&(lo, hi)) = ranges.get(i) else {
            continue;
        };
        let (v, lo, hi) = (f64::from(x[i]), f64::from(lo), f64::from(hi));
        let below = if UPPER_ONLY.contains(&i) { 0.0 } else { lo - v };
        let d = below.max(v - hi).max(0.0);
        if d > 0.0 {
            *e = d / (hi - lo).max(MIN_SCALE);
            total += *e;
        }
    }
    total
}

/// The envelope score only.
pub fn score_only(x: &[f32; N_FEATURES], ranges: &[(f32, f32)]) -> f64 {
    let mut scratch = [0f64; N_FEATURES];
    score(x, ranges, &mut scratch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_the_range_scores_zero_and_outside_scales_by_the_range() {
        let ranges = vec![(0.0f32, 4.0f32); N_FEATURES];
        let mut x = [2.0f32; N_FEATURES];
        assert_eq!(score_only(&x, &ranges), 0.0);
        x[idx::PKTS_OUT] = 6.0; // 2 beyond a range of 4
        let mut e = [0.0; N_FEATURES];
        let s = score(&x, &ranges, &mut e);
        assert!((s - 0.5).abs() < 1e-12);
        assert!((e[idx::PKTS_OUT] - 0.5).abs() < 1e-12);
        // Below the minimum counts too.
        x[idx::PKTS_IN] = -1.0;
        assert!((score_only(&x, &ranges) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn constant_features_use_the_minimum_scale_and_familiarity_is_ignored() {
        let mut ranges = vec![(0.0f32, 4.0f32); N_FEATURES];
        ranges[idx::TCP_NO_REPLY] = (0.0, 0.0);
        let mut x = [1.0f32; N_FEATURES];
        x[idx::TCP_NO_REPLY] = 1.0;
        assert!((score_only(&x, &ranges) - 1.0).abs() < 1e-12);
        x[idx::TCP_NO_REPLY] = 0.0;
        x[idx::PEER_FAM] = 100.0;
        x[idx::SVC_PORT_FAM] = -100.0;
        assert_eq!(score_only(&x, &ranges), 0.0);
    }

    #[test]
    fn context_counters_count_only_above_the_training_maximum() {
        let mut ranges = vec![(0.0f32, 4.0f32); N_FEATURES];
        let mut x = [1.0f32; N_FEATURES];
        for i in UPPER_ONLY {
            ranges[i] = (0.693, 1.792);
            x[i] = 0.0; // a later slice on a quiet device: below the minimum
        }
        assert_eq!(score_only(&x, &ranges), 0.0);
        x[idx::DEV_FANOUT_60S] = 3.0; // a fan-out beyond training still counts
        let expect = (3.0 - 1.792) / (1.792 - 0.693);
        assert!((score_only(&x, &ranges) - expect).abs() < 1e-6);
        // Other features keep both sides.
        x[idx::DEV_FANOUT_60S] = 1.0;
        x[idx::PKTS_OUT] = -1.0;
        assert!((score_only(&x, &ranges) - 0.25).abs() < 1e-12);
    }
}
