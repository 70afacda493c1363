//! Incidents: a device's alerts grouped in time, so the triage queue gets one item per
//! burst of suspicious activity rather than one per flow. An incident stays open while
//! alerts for the same device keep arriving less than the window apart (packet time) and
//! is written when the gap passes or the input ends.
//!
//! A group is written as an incident only with enough evidence: at least `min_alerts`
//! alerts, or one alert of a rule detector (ARP binding change, Modbus write from an
//! unknown master, new public peer), whose alerts are certain by construction. A single
//! score-based alert stays an `anomaly` event for search and forensics but does not open
//! a triage item; the groups left out are counted.

use crate::time::{Nanos, Timestamp};
use serde::Serialize;
use std::collections::BTreeMap;

/// Most distinct peers / detectors / features listed per incident.
const TOP: usize = 5;

/// One alert fed to the tracker.
#[derive(Debug, Clone)]
pub struct AlertRef<'a> {
    /// Device id.
    pub device_id: &'a str,
    /// Device class name.
    pub class: &'static str,
    /// Class source name.
    pub class_source: &'static str,
    /// Packet time of the alert.
    pub ts: Timestamp,
    /// Detector tag.
    pub detector: &'static str,
    /// Score (rules use 1.0).
    pub score: f64,
    /// Peer address text.
    pub peer: String,
    /// Flow id of the alerting flow (0 for ARP).
    pub flow_id: u64,
    /// Top feature of the explanation, if any.
    pub top_feature: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct Open {
    class: &'static str,
    class_source: &'static str,
    start: Timestamp,
    end: Timestamp,
    alerts: u64,
    max_score: f64,
    first_flow_id: u64,
    detectors: BTreeMap<&'static str, u64>,
    peers: BTreeMap<String, u64>,
    features: BTreeMap<&'static str, u64>,
}

/// A closed incident, ready to be written.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Incident {
    /// Stable id: device and start time.
    pub incident_id: String,
    /// Device id.
    pub device_id: String,
    /// Device class.
    pub class: &'static str,
    /// Class source.
    pub class_source: &'static str,
    /// First alert time.
    pub start: String,
    /// Last alert time.
    pub end: String,
    /// Packet time the incident closed (end + window, or end of input).
    #[serde(skip)]
    pub closed_at: Timestamp,
    /// Alerts grouped.
    pub alerts: u64,
    /// Alerts by detector.
    pub detectors: BTreeMap<&'static str, u64>,
    /// Highest forest score among its alerts (1.0 for rule-only incidents).
    pub max_score: f64,
    /// Most frequent peers (address, alerts), at most 5.
    pub top_peers: Vec<(String, u64)>,
    /// Most frequent top explaining features (name, alerts), at most 5.
    pub top_features: Vec<(&'static str, u64)>,
    /// Flow id of the first alerting flow.
    pub first_flow_id: u64,
}

fn top<K: Clone + Ord>(m: &BTreeMap<K, u64>) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = m.iter().map(|(k, c)| (k.clone(), *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(TOP);
    v
}

/// Groups alerts per device.
#[derive(Debug)]
pub struct IncidentTracker {
    window: Nanos,
    min_alerts: u64,
    certain: &'static [&'static str],
    open: BTreeMap<String, Open>,
    /// Incidents written so far.
    pub closed: u64,
    /// Alert groups closed without enough evidence for an incident.
    pub below_evidence: u64,
}

impl IncidentTracker {
    /// A tracker grouping alerts less than `window` apart; every group is an incident.
    pub fn new(window: Nanos) -> Self {
        Self::with_evidence(window, 1, &[])
    }

    /// A tracker that writes a group as an incident only when it holds `min_alerts`
    /// alerts or one alert of a detector in `certain`.
    pub fn with_evidence(window: Nanos, min_alerts: u64, certain: &'static [&'static str]) -> Self {
        IncidentTracker {
            window,
            min_alerts: min_alerts.max(1),
            certain,
            open: BTreeMap::new(),
            closed: 0,
            below_evidence: 0,
        }
    }

    fn close(&mut self, id: &str, o: Open, at: Timestamp) -> Option<Incident> {
        let enough =
            o.alerts >= self.min_alerts || o.detectors.keys().any(|d| self.certain.contains(d));
        if !enough {
            self.below_evidence += 1;
            return None;
        }
        self.closed += 1;
        Some(Incident {
            incident_id: format!("{}@{}", id, o.start.as_micros()),
            device_id: id.to_string(),
            class: o.class,
            class_source: o.class_source,
            start: o.start.to_eve_string(),
            end: o.end.to_eve_string(),
            closed_at: at,
            alerts: o.alerts,
            detectors: o.detectors,
            max_score: o.max_score,
            top_peers: top(&o.peers),
            top_features: top(&o.features),
            first_flow_id: o.first_flow_id,
        })
    }

    /// Adds an alert; returns an incident of the same device that it closed (a gap longer
    /// than the window).
    pub fn add(&mut self, a: &AlertRef<'_>) -> Option<Incident> {
        let mut closed = None;
        if let Some(o) = self.open.get(a.device_id) {
            if a.ts.since(o.end) > self.window {
                if let Some(o) = self.open.remove(a.device_id) {
                    let at = o.end.plus(self.window);
                    closed = self.close(a.device_id, o, at);
                }
            }
        }
        let o = self
            .open
            .entry(a.device_id.to_string())
            .or_insert_with(|| Open {
                class: a.class,
                class_source: a.class_source,
                start: a.ts,
                end: a.ts,
                alerts: 0,
                max_score: 0.0,
                first_flow_id: a.flow_id,
                detectors: BTreeMap::new(),
                peers: BTreeMap::new(),
                features: BTreeMap::new(),
            });
        if a.ts > o.end {
            o.end = a.ts;
        }
        if a.ts < o.start {
            o.start = a.ts;
        }
        o.alerts += 1;
        // ARP alerts have no flow (id 0): the first flow alert's id stands in.
        if o.first_flow_id == 0 {
            o.first_flow_id = a.flow_id;
        }
        if a.score > o.max_score {
            o.max_score = a.score;
        }
        *o.detectors.entry(a.detector).or_insert(0) += 1;
        if o.peers.len() < 1024 || o.peers.contains_key(&a.peer) {
            *o.peers.entry(a.peer.clone()).or_insert(0) += 1;
        }
        if let Some(f) = a.top_feature {
            *o.features.entry(f).or_insert(0) += 1;
        }
        closed
    }

    /// Closes every incident whose last alert is more than the window before `now`.
    pub fn expire(&mut self, now: Timestamp, out: &mut Vec<Incident>) {
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| now.since(o.end) > self.window)
            .map(|(k, _)| k.clone())
            .collect();
        for id in due {
            if let Some(o) = self.open.remove(&id) {
                let at = o.end.plus(self.window);
                out.extend(self.close(&id, o, at));
            }
        }
    }

    /// Closes everything (end of input / shutdown), ordered by start time then device.
    pub fn finish(&mut self, now: Timestamp, out: &mut Vec<Incident>) {
        let mut all: Vec<(String, Open)> = std::mem::take(&mut self.open).into_iter().collect();
        all.sort_by(|a, b| a.1.start.cmp(&b.1.start).then_with(|| a.0.cmp(&b.0)));
        for (id, o) in all {
            out.extend(self.close(&id, o, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(dev: &str, secs: i64) -> AlertRef<'_> {
        AlertRef {
            device_id: dev,
            class: "camera",
            class_source: "inventory",
            ts: Timestamp::from_secs_nanos(secs, 0),
            detector: "iforest",
            score: 0.7,
            peer: "203.0.113.5".into(),
            flow_id: 1,
            top_feature: Some("peer_fam"),
        }
    }

    #[test]
    fn alerts_within_window_group_and_gaps_split() {
        let mut t = IncidentTracker::new(Nanos::from_secs(300));
        assert!(t.add(&alert("cam", 0)).is_none());
        assert!(t.add(&alert("cam", 200)).is_none());
        assert!(t.add(&alert("plc", 250)).is_none());
        let closed = t.add(&alert("cam", 600));
        assert_eq!(closed.as_ref().map(|i| i.alerts), Some(2));
        let mut out = Vec::new();
        t.expire(Timestamp::from_secs_nanos(551, 0), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].device_id, "plc");
        t.finish(Timestamp::from_secs_nanos(700, 0), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(t.closed, 3);
    }

    #[test]
    fn single_score_alerts_need_company_but_rule_alerts_do_not() {
        let mut t = IncidentTracker::with_evidence(Nanos::from_secs(300), 2, &["arp"]);
        t.add(&alert("cam", 0));
        t.add(&alert("plc", 0));
        t.add(&alert("plc", 10));
        let mut rule = alert("hub", 5);
        rule.detector = "arp";
        t.add(&rule);
        let mut out = Vec::new();
        t.finish(Timestamp::from_secs_nanos(1000, 0), &mut out);
        let ids: Vec<&str> = out.iter().map(|i| i.device_id.as_str()).collect();
        assert_eq!(ids, ["plc", "hub"]);
        assert_eq!(t.below_evidence, 1);
        assert_eq!(t.closed, 2);
    }

    #[test]
    fn first_flow_id_is_the_first_flow_alerts_when_an_arp_alert_opened_it() {
        let mut t = IncidentTracker::new(Nanos::from_secs(300));
        let mut arp = alert("cam", 0);
        arp.detector = "arp_cross_claim";
        arp.flow_id = 0;
        t.add(&arp);
        let mut flow = alert("cam", 10);
        flow.flow_id = 42;
        t.add(&flow);
        let mut later = alert("cam", 20);
        later.flow_id = 43;
        t.add(&later);
        let mut out = Vec::new();
        t.finish(Timestamp::from_secs_nanos(1000, 0), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].first_flow_id, 42);
    }
}
