//! Batched scoring changes nothing: a detector that analyses runs of records ahead
//! (`FlowObserver::prepare`, then `on_flow` for each, as `Output::on_items` does) writes
//! byte-identical events to one that scores record by record, for any run length, on the
//! project's fixtures with and without their inventories (inventory classes, the pooled
//! model for unknown devices, the envelope guard, the Modbus and new-peer rules).

mod common;

use flowsentry::detect::{Detector, DetectorConfig};
use flowsentry::device::Inventory;
use flowsentry::event::{EventWriter, SharedBuf};
use flowsentry::flow::FlowRecord;
use flowsentry::model::{ModelBundle, BUILTIN_MODEL};
use flowsentry::output::FlowObserver;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/pcaps")
        .join(name)
}

/// The events a detector writes for `recs`, handed over in runs of `run` records
/// (`None`: no `prepare` at all).
fn events(recs: &[FlowRecord], inventory: &Inventory, run: Option<usize>) -> String {
    let bundle = ModelBundle::from_bytes(BUILTIN_MODEL, "built-in").expect("built-in model");
    let mut det = Detector::new(
        Arc::new(bundle),
        "test".into(),
        inventory.clone(),
        DetectorConfig::default(),
    );
    let buf = SharedBuf::default();
    let mut w = EventWriter::new(Box::new(buf.clone()), "mem");
    match run {
        None => {
            for r in recs {
                det.on_flow(r, &mut w).expect("on_flow");
            }
        }
        Some(n) => {
            for chunk in recs.chunks(n) {
                det.prepare(&mut chunk.iter());
                for r in chunk {
                    det.on_flow(r, &mut w).expect("on_flow");
                }
            }
        }
    }
    let end = recs.last().map(|r| r.last_ts).unwrap_or_default();
    det.finish(end, &mut w).expect("finish");
    w.flush().expect("flush");
    drop(w);
    String::from_utf8(buf.take()).expect("utf-8 events")
}

#[test]
fn prepared_runs_write_the_same_events() {
    let cases = [
        ("fixture-mirai.pcap", Some("fixture-mirai.inventory.toml")),
        ("fixture-mirai.pcap", None),
        (
            "fixture-modbus-write.pcap",
            Some("fixture-modbus-write.inventory.toml"),
        ),
        ("fixture-exfil-beacon.pcap", None),
        ("fixture-benign-hub.pcap", None),
    ];
    for (pcap, inv) in cases {
        let recs = common::flow_records(&fixture(pcap));
        assert!(!recs.is_empty(), "{pcap}: no flow records");
        let inventory = match inv {
            Some(f) => Inventory::load(&fixture(f)).expect("inventory"),
            None => Inventory::empty(),
        };
        let want = events(&recs, &inventory, None);
        for run in [1, 2, 7, 64, 256, 5000] {
            let got = events(&recs, &inventory, Some(run));
            if got != want {
                let first = got
                    .lines()
                    .zip(want.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.lines().count().min(want.lines().count()));
                panic!(
                    "{pcap} (inventory {inv:?}), runs of {run}: events differ from line {}",
                    first + 1
                );
            }
        }
        if inv.is_some() {
            assert!(
                want.contains("\"event_type\":\"anomaly\""),
                "{pcap}: the fixture raises alerts, so the comparison covers them"
            );
        }
    }
}
