//! The new-public-peer rule's reference: a device's own training peers, else its class's,
//! and for a device of unknown class (no class table) the peers of every device of the
//! training window. Checked on every monitored side of the project's fixtures, with the
//! built-in model, replayed with their inventories (classes known) and without them
//! (devices unknown until their class is inferred).

mod common;

use flowsentry::detect::{Detector, DetectorConfig};
use flowsentry::device::{DeviceClass, Inventory};
use flowsentry::features::{idx, FamiliarityTables, Side, SitePeers};
use flowsentry::flow::FlowRecord;
use flowsentry::model::{ModelBundle, BUILTIN_MODEL};
use std::sync::Arc;

/// The peer of `side`, and whether any class table of `t` holds its network.
fn site_knows(t: &FamiliarityTables, rec: &FlowRecord, side: Side) -> bool {
    let peer = match side {
        Side::Orig => rec.resp.addr,
        Side::Resp => rec.orig.addr,
    };
    let pk = flowsentry::features::peer_key(&peer);
    t.class_peers
        .values()
        .any(|c| c.0.get(&pk).is_some_and(|&n| n > 0))
}

#[test]
fn unknown_devices_are_checked_against_every_training_peer() {
    let bundle =
        Arc::new(ModelBundle::from_bytes(BUILTIN_MODEL, "built-in").expect("built-in model"));
    let site = SitePeers::of(&bundle.familiarity);
    let names = common::fixture_pcaps();
    // (unknown class: alerted, known to the site and so not alerted; class known: alerted)
    let mut seen = [0u64; 3];
    let runs = names.iter().flat_map(|p| {
        let inv = p.with_extension("inventory.toml");
        let listed = inv
            .is_file()
            .then(|| Inventory::load(&inv).expect("fixture inventory"));
        [Some(Inventory::empty()), listed]
            .into_iter()
            .flatten()
            .map(move |i| (p.clone(), i))
    });
    for (pcap, inventory) in runs {
        let mut det = Detector::new(
            bundle.clone(),
            "test".into(),
            inventory,
            DetectorConfig::default(),
        );
        for rec in common::flow_records(&pcap) {
            for v in det.score(&rec) {
                let public = v.features.0[idx::PEER_PUBLIC] >= 1.0;
                let unfamiliar = v.features.0[idx::PEER_FAM] <= 0.0;
                let what = format!("{}: flow {:?} side {:?}", pcap.display(), rec.key, v.side);
                if v.device.assignment.class == DeviceClass::Unknown {
                    let known = site_knows(&bundle.familiarity, &rec, v.side);
                    assert_eq!(site.knows(&rec, v.side), known, "{what}");
                    assert_eq!(v.new_public_peer, public && unfamiliar && !known, "{what}");
                    if public && unfamiliar {
                        seen[usize::from(known)] += 1;
                    }
                } else {
                    assert_eq!(v.new_public_peer, public && unfamiliar, "{what}");
                    seen[2] += u64::from(v.new_public_peer);
                }
            }
        }
    }
    // Every branch is exercised by the fixtures.
    assert!(seen.iter().all(|&n| n > 0), "branches seen: {seen:?}");
}
