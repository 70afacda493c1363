//! Property tests: every feature is finite, whatever the record's statistics.

use flowsentry::device::DeviceClass;
use flowsentry::features::{
    flow_features, DeviceRef, FamiliarityTables, FeatureExtractor, Side, N_FEATURES,
};
use flowsentry::flow::{
    ConnState, DirStats, EndReason, Endpoint, FlagCounts, FlowKey, FlowRecord, History, Welford,
};
use flowsentry::packet::{Addr, Tunnel};
use flowsentry::time::Timestamp;
use proptest::prelude::*;

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        -1e12..1e12f64,
    ]
}

fn welford() -> impl Strategy<Value = Welford> {
    (any_f64(), any_f64()).prop_map(|(mean, m2)| Welford { mean, m2 })
}

fn dirstats() -> impl Strategy<Value = DirStats> {
    (
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            any::<i64>(),
            any::<i64>(),
            welford(),
            any::<u32>(),
            welford(),
            any::<i64>(),
        ),
        (any::<[u32; 6]>(), any::<u8>()),
    )
        .prop_map(
            |(
                (pkts, bytes, ip_bytes, payload_bytes, zero),
                (f, l, pw, pmax, iw, imax),
                (fl, for_),
            )| DirStats {
                pkts,
                bytes,
                ip_bytes,
                payload_bytes,
                zero_payload_pkts: zero,
                first_ts: Timestamp(f),
                last_ts: Timestamp(l),
                payload: pw,
                payload_max: pmax,
                iat: iw,
                iat_max_ns: imax,
                flags: FlagCounts {
                    syn: fl[0],
                    fin: fl[1],
                    rst: fl[2],
                    psh: fl[3],
                    ack: fl[4],
                    urg: fl[5],
                },
                flags_or: for_,
            },
        )
}

const STATES: [ConnState; 13] = [
    ConnState::S0,
    ConnState::S1,
    ConnState::SF,
    ConnState::REJ,
    ConnState::S2,
    ConnState::S3,
    ConnState::RSTO,
    ConnState::RSTR,
    ConnState::RSTOS0,
    ConnState::RSTRH,
    ConnState::SH,
    ConnState::SHR,
    ConnState::OTH,
];

fn record() -> impl Strategy<Value = FlowRecord> {
    (
        (dirstats(), dirstats(), welford(), any::<i64>()),
        (
            any::<i64>(),
            any::<i64>(),
            any::<u8>(),
            0usize..13,
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
        ),
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u16>(),
            any::<f32>(),
            any::<u32>(),
            any::<u32>(),
        ),
    )
        .prop_map(
            |((o, r, iat, imax), (t0, t1, proto, st, a, b), (p0, p1, q, qlen, ent, mreq, mw))| {
                let (a, b) = (Addr(a), Addr(b));
                FlowRecord {
                    key: FlowKey {
                        vlan: [0; 2],
                        proto,
                        addr_lo: a.min(b),
                        addr_hi: a.max(b),
                        port_lo: p0,
                        port_hi: p1,
                        icmp_id: 0,
                        tunnel_id: 0,
                        tunnel_kind: 0,
                    },
                    orig: Endpoint {
                        addr: a,
                        port: p0,
                        mac: None,
                    },
                    resp: Endpoint {
                        addr: b,
                        port: p1,
                        mac: None,
                    },
                    proto,
                    icmp: Some((p0 as u8, p1 as u8)),
                    tunnel: Tunnel::None,
                    flow_start: Timestamp(t0),
                    first_ts: Timestamp(t0),
                    last_ts: Timestamp(t1),
                    orig_stats: o,
                    resp_stats: r,
                    iat,
                    iat_max_ns: imax,
                    conn_state: STATES[st],
                    history: History::default(),
                    reason: EndReason::IdleTimeout,
                    emit_ts: Timestamp(0),
                    slice: 0,
                    app: flowsentry::flow::AppSummary {
                        dns_queries: q,
                        dns_qname_max: qlen,
                        dns_label_entropy: ent,
                        modbus_requests: mreq,
                        modbus_writes: mw,
                    },
                    fragments: 0,
                    mac_changed: false,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_feature_is_finite(rec in record(), orig in any::<bool>()) {
        let side = if orig { Side::Orig } else { Side::Resp };
        let f = flow_features(&rec, side);
        for (i, x) in f.0.iter().enumerate() {
            prop_assert!(x.is_finite(), "feature {} = {}", i, x);
        }
        // Fractions stay in [0, 1], the cv in [0, 10].
        for i in [5usize, 11, 21, 32] {
            prop_assert!((0.0..=1.0).contains(&f.0[i]), "feature {} = {}", i, f.0[i]);
        }
        prop_assert!((0.0..=10.0).contains(&f.0[13]));
        let mut tables = FamiliarityTables::new();
        tables.learn(DeviceClass::Plc, "d", &rec, side);
        let mut ex = FeatureExtractor::new(tables);
        let g = ex.extract(&rec, side, &DeviceRef { id: "d", class: DeviceClass::Plc });
        prop_assert_eq!(g.0.len(), N_FEATURES);
        prop_assert!(g.0.iter().all(|x| x.is_finite()));
    }
}
