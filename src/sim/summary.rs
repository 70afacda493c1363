//! `--summary`: per-class statistics of a generated scenario — flows per device per day,
//! bytes per flow, and the measured period of every periodic pattern — for comparison
//! with the spec's numbers (see `docs/simulator.md`).

use super::engine::{Label, Slot};
use super::labels::FlowLabel;
use super::scenario::Plan;
use super::site::{Class, Site, SEC};
use super::RunStats;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Renders the summary as text.
pub fn render(
    plan: &Plan,
    site: &Site,
    slots: &[Slot],
    flows: &[FlowLabel],
    stats: &RunStats,
) -> String {
    let mut s = String::new();
    let days = plan.duration as f64 / (86_400.0 * SEC as f64);
    let _ = writeln!(
        s,
        "scenario {}: {:.3} simulated days, {} packets, {} pcap bytes, {} flows, {:.2} s",
        plan.name, days, stats.packets, stats.pcap_bytes, stats.flows, stats.seconds
    );
    let _ = writeln!(
        s,
        "\n{:<11} {:>4} {:>15} {:>15} {:>15}",
        "class", "devs", "flows/dev/day", "mean B/flow", "median B/flow"
    );
    for c in Class::ALL {
        let n = site.of(c).len();
        if n == 0 {
            continue;
        }
        let mut bytes: Vec<u64> = flows
            .iter()
            .filter(|f| {
                f.tag.label == Label::Benign
                    && site
                        .devices
                        .get(usize::from(f.tag.device))
                        .is_some_and(|d| d.class == c)
            })
            .map(|f| f.bytes)
            .collect();
        bytes.sort_unstable();
        let cnt = bytes.len();
        let mean = if cnt > 0 {
            bytes.iter().sum::<u64>() as f64 / cnt as f64
        } else {
            0.0
        };
        let median = bytes.get(cnt / 2).copied().unwrap_or(0);
        let _ = writeln!(
            s,
            "{:<11} {:>4} {:>15.1} {:>15.0} {:>15}",
            c.as_str(),
            n,
            cnt as f64 / n as f64 / days,
            mean,
            median
        );
    }
    // Flows by service per class.
    let _ = writeln!(
        s,
        "\nbenign flows per device per day by service (proto/lower port of the flow):"
    );
    let mut svc: BTreeMap<(&str, String), u64> = BTreeMap::new();
    for f in flows.iter().filter(|f| f.tag.label == Label::Benign) {
        let Some(d) = site.devices.get(usize::from(f.tag.device)) else {
            continue;
        };
        let p = match f.proto {
            6 => "tcp",
            17 => "udp",
            _ => "other",
        };
        *svc.entry((d.class.as_str(), format!("{p}/{}", f.sport.min(f.dport))))
            .or_default() += 1;
    }
    for ((c, k), v) in &svc {
        let n = site
            .devices
            .iter()
            .filter(|d| d.class.as_str() == *c)
            .count()
            .max(1);
        let _ = writeln!(
            s,
            "  {:<11} {:<10} {:>12.1}",
            c,
            k,
            *v as f64 / n as f64 / days
        );
    }
    // Periods of marked patterns.
    let _ = writeln!(
        s,
        "\nmeasured pattern periods (mean interval between occurrences, per stream, averaged):"
    );
    let mut per: BTreeMap<(String, &'static str), (u64, f64, u64)> = BTreeMap::new();
    for sl in slots {
        for m in sl.out.marks() {
            let e = per.entry((sl.group.clone(), m.name)).or_insert((0, 0.0, 0));
            e.0 += m.count;
            if m.count > 1 {
                e.1 += (m.last - m.first) as f64 / (m.count - 1) as f64;
                e.2 += 1;
            }
        }
    }
    let _ = writeln!(
        s,
        "  {:<22} {:<20} {:>10} {:>14}",
        "group", "pattern", "count", "period (s)"
    );
    for ((g, name), (count, sum, n)) in &per {
        let period = if *n > 0 {
            format!("{:.3}", sum / *n as f64 / SEC as f64)
        } else {
            "-".into()
        };
        let _ = writeln!(s, "  {:<22} {:<20} {:>10} {:>14}", g, name, count, period);
    }
    // Attack flows.
    let mut atk: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for f in flows.iter().filter(|f| f.tag.label != Label::Benign) {
        let e = atk.entry(f.tag.label.as_str()).or_default();
        e.0 += 1;
        e.1 += f.pkts;
    }
    if !atk.is_empty() {
        let _ = writeln!(s, "\nattack flows: label, flows, packets");
        for (k, (f, p)) in atk {
            let _ = writeln!(s, "  {:<22} {:>10} {:>10}", k, f, p);
        }
    }
    s
}
