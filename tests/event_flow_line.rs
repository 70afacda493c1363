//! The flow-event fast path (`event::write_flow_body`) writes exactly what serde_json
//! writes for `event::flow_json`: on every record of the project's fixtures and of the
//! shared captures, and on random records (any counters, timestamps, addresses of both
//! families, VLANs, tunnels, ICMP, MACs, DNS/Modbus summaries, every state and reason).

mod common;

use flowsentry::event::{flow_json, write_flow_body};
use flowsentry::flow::{
    AppSummary, ConnState, DirStats, EndReason, Endpoint, FlagCounts, FlowKey, FlowRecord, History,
    Welford,
};
use flowsentry::packet::{Addr, Tunnel};
use flowsentry::time::Timestamp;
use proptest::prelude::*;

/// The first record whose two renderings differ, with both.
fn first_difference(recs: &[FlowRecord]) -> Option<(usize, String, String)> {
    let mut fast = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        for et in ["flow", "anomaly"] {
            fast.clear();
            write_flow_body(&flow_json(r, et), &mut fast);
            let serde = serde_json::to_vec(&flow_json(r, et)).expect("serialise");
            if fast != serde {
                return Some((
                    i,
                    String::from_utf8_lossy(&fast).into_owned(),
                    String::from_utf8_lossy(&serde).into_owned(),
                ));
            }
        }
    }
    None
}

#[test]
fn fast_path_equals_serde_on_fixtures() {
    let files = common::fixture_pcaps();
    let mut n = 0;
    for f in &files {
        let recs = common::flow_records(f);
        n += recs.len();
        if let Some((i, fast, serde)) = first_difference(&recs) {
            panic!(
                "{}: record {i}:\nfast:  {fast}\nserde: {serde}",
                f.display()
            );
        }
    }
    assert!(n > 1000, "only {n} records in the fixtures");
}

#[test]
fn fast_path_equals_serde_on_shared_pcaps() {
    let Some(root) = common::pcaps_root() else {
        return;
    };
    for f in &common::capture_files(&root) {
        let recs = common::flow_records(f);
        if let Some((i, fast, serde)) = first_difference(&recs) {
            panic!(
                "{}: record {i}:\nfast:  {fast}\nserde: {serde}",
                common::rel(f)
            );
        }
    }
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
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
        // Halves, so that the two directions' flag counts add up without overflow.
        (prop::array::uniform6(0..=u32::MAX / 2), any::<u8>()),
    )
        .prop_map(
            |(
                (pkts, bytes, ip_bytes, payload_bytes, zero),
                (f, l, pw, pmax, iw, imax),
                (fl, for_),
            )| {
                DirStats {
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
                }
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

const REASONS: [EndReason; 7] = [
    EndReason::TcpFin,
    EndReason::TcpRst,
    EndReason::IdleTimeout,
    EndReason::ActiveTimeout,
    EndReason::Evicted,
    EndReason::EndOfInput,
    EndReason::Shutdown,
];

fn addr() -> impl Strategy<Value = Addr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(Addr::v4),
        any::<[u8; 16]>().prop_map(Addr),
    ]
}

fn tunnel() -> impl Strategy<Value = Tunnel> {
    prop_oneof![
        Just(Tunnel::None),
        prop_oneof![Just(0u32), any::<u32>()].prop_map(|key| Tunnel::Gre { key }),
        (0u32..1 << 24).prop_map(|vni| Tunnel::Vxlan { vni }),
    ]
}

fn mac() -> impl Strategy<Value = Option<[u8; 6]>> {
    prop::option::of(any::<[u8; 6]>())
}

fn record() -> impl Strategy<Value = FlowRecord> {
    (
        (dirstats(), dirstats(), welford(), any::<i64>()),
        (
            any::<i64>(),
            any::<i64>(),
            prop_oneof![
                Just(6u8),
                Just(17u8),
                Just(1u8),
                Just(58u8),
                Just(47u8),
                any::<u8>()
            ],
            0usize..13,
            addr(),
            addr(),
        ),
        (
            any::<u16>(),
            any::<u16>(),
            prop_oneof![Just(0u32), any::<u32>()],
            any::<u16>(),
            any::<f32>(),
            prop_oneof![Just(0u32), any::<u32>()],
            any::<u32>(),
        ),
        (
            any::<[u16; 2]>(),
            prop_oneof![Just(0u16), any::<u16>()],
            tunnel(),
            mac(),
            mac(),
            0usize..7,
            any::<u32>(),
            any::<u32>(),
            "[SHADFRTWQI^]{0,12}",
            prop::collection::vec(any::<bool>(), 12),
        ),
    )
        .prop_map(
            |(
                (o, r, iat, imax),
                (t0, t1, proto, st, a, b),
                (p0, p1, q, qlen, ent, mreq, mw),
                (vlan, icmp_id, tunnel, m0, m1, reason, slice, frags, letters, dirs),
            )| {
                let mut history = History::default();
                for (l, orig) in letters.bytes().zip(dirs) {
                    history.push(l, orig);
                }
                FlowRecord {
                    key: FlowKey {
                        vlan,
                        proto,
                        addr_lo: a.min(b),
                        addr_hi: a.max(b),
                        port_lo: p0,
                        port_hi: p1,
                        icmp_id,
                        tunnel_id: 0,
                        tunnel_kind: 0,
                    },
                    orig: Endpoint {
                        addr: a,
                        port: p0,
                        mac: m0,
                    },
                    resp: Endpoint {
                        addr: b,
                        port: p1,
                        mac: m1,
                    },
                    proto,
                    icmp: Some((p0 as u8, p1 as u8)),
                    tunnel,
                    flow_start: Timestamp(t0),
                    first_ts: Timestamp(t0),
                    last_ts: Timestamp(t1),
                    orig_stats: o,
                    resp_stats: r,
                    iat,
                    iat_max_ns: imax,
                    conn_state: STATES[st],
                    history,
                    reason: REASONS[reason],
                    emit_ts: Timestamp(0),
                    slice,
                    app: AppSummary {
                        dns_queries: q,
                        dns_qname_max: qlen,
                        dns_label_entropy: ent,
                        modbus_requests: mreq,
                        modbus_writes: mw,
                    },
                    fragments: frags,
                    // Both values, without another strategy in the (full) tuple.
                    mac_changed: frags % 2 == 1,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn fast_path_equals_serde_on_random_records(rec in record()) {
        if let Some((_, fast, serde)) = first_difference(&[rec]) {
            prop_assert_eq!(fast, serde);
        }
    }
}

/// A `Write` whose bytes the test can read back.
#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(serde::Serialize)]
struct Rest<'a> {
    detector: &'static str,
    score: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    detectors: Vec<&'a str>,
}

#[derive(serde::Serialize)]
struct Whole<'a> {
    #[serde(flatten)]
    flow: flowsentry::event::FlowEventJson<'a>,
    #[serde(flatten)]
    rest: &'a Rest<'a>,
}

#[derive(serde::Serialize)]
struct Nothing {}

/// `EventWriter::write_with_flow` (the flow part by the fast path, the rest by serde)
/// writes the same lines as serde's flattening of both, with the same envelope fields,
/// for the first 300 records of every fixture, a rest with and without optional fields,
/// and an empty rest.
#[test]
fn event_with_flow_equals_serde_flatten() {
    use flowsentry::event::EventWriter;
    let files = common::fixture_pcaps();
    let (a, b) = (Shared::default(), Shared::default());
    let mut wa = EventWriter::new(Box::new(a.clone()), "a");
    let mut wb = EventWriter::new(Box::new(b.clone()), "b");
    let rests = [
        Rest {
            detector: "iforest",
            score: Some(0.731_234_5),
            detectors: vec!["iforest", "envelope"],
        },
        Rest {
            detector: "envelope",
            score: None,
            detectors: Vec::new(),
        },
    ];
    let mut n = 0;
    for f in &files {
        for r in common::flow_records(f).iter().take(300) {
            for rest in &rests {
                wa.write_keyed(
                    "dev",
                    &Whole {
                        flow: flow_json(r, "anomaly"),
                        rest,
                    },
                )
                .expect("serde");
                wb.write_with_flow("dev", &flow_json(r, "anomaly"), rest)
                    .expect("fast");
                n += 1;
            }
            wa.write_keyed(
                "dev",
                &Whole2 {
                    flow: flow_json(r, "anomaly"),
                },
            )
            .expect("serde");
            wb.write_with_flow("dev", &flow_json(r, "anomaly"), &Nothing {})
                .expect("fast");
        }
    }
    wa.flush().expect("flush");
    wb.flush().expect("flush");
    drop((wa, wb));
    let (a, b) = (
        a.0.lock().expect("a").clone(),
        b.0.lock().expect("b").clone(),
    );
    assert!(n > 1000, "only {n} events");
    for (i, (x, y)) in a
        .split(|&c| c == b'\n')
        .zip(b.split(|&c| c == b'\n'))
        .enumerate()
    {
        assert_eq!(
            String::from_utf8_lossy(x),
            String::from_utf8_lossy(y),
            "event {i}"
        );
    }
    assert_eq!(a.len(), b.len());
}

#[derive(serde::Serialize)]
struct Whole2<'a> {
    #[serde(flatten)]
    flow: flowsentry::event::FlowEventJson<'a>,
}
