//! Unit tests of the flow table: keying, direction, teardown, timeouts, eviction, flush.

use super::*;
use crate::packet::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use crate::packet::{AppHint, FragInfo};

const T0: i64 = 1_700_000_000 * 1_000_000_000;

fn at(ms: i64) -> Timestamp {
    Timestamp(T0 + ms * 1_000_000)
}

fn ip(last: u8) -> Addr {
    Addr::v4([10, 0, 0, last])
}

#[allow(clippy::too_many_arguments)]
fn pkt(ms: i64, src: u8, sp: u16, dst: u8, dp: u16, p: u8, flags: u8, payload: u32) -> IpPacket {
    IpPacket {
        ts: at(ms),
        wire_len: 54 + payload,
        src_mac: Some([2, 0, 0, 0, 0, src]),
        dst_mac: Some([2, 0, 0, 0, 0, dst]),
        vlan: [0, 0],
        mpls_labels: 0,
        tunnel: Tunnel::None,
        src: ip(src),
        dst: ip(dst),
        proto: p,
        src_port: sp,
        dst_port: dp,
        icmp_id: 0,
        has_l4: true,
        ip_len: 40 + payload,
        payload_len: payload,
        ttl: 64,
        tcp_flags: flags,
        tcp_seq: 1000,
        tcp_ack: 0,
        tcp_window: 1000,
        frag: FragInfo::default(),
        app: AppHint::None,
    }
}

fn tcp(ms: i64, from_client: bool, flags: u8, payload: u32) -> IpPacket {
    if from_client {
        pkt(ms, 1, 40000, 2, 502, proto::TCP, flags, payload)
    } else {
        pkt(ms, 2, 502, 1, 40000, proto::TCP, flags, payload)
    }
}

fn run(cfg: FlowConfig, pkts: &[IpPacket]) -> (Vec<FlowRecord>, FlowTable) {
    let mut t = FlowTable::new(cfg);
    let mut out = Vec::new();
    for p in pkts {
        t.observe(p, &mut out);
    }
    t.flush(EndReason::EndOfInput, &mut out);
    (out, t)
}

#[test]
fn tcp_session_with_teardown_is_one_sf_flow() {
    let pkts = [
        tcp(0, true, SYN, 0),
        tcp(1, false, SYN | ACK, 0),
        tcp(2, true, ACK, 0),
        tcp(3, true, ACK | PSH, 12),
        tcp(4, false, ACK | PSH, 29),
        tcp(5, true, FIN | ACK, 0),
        tcp(6, false, FIN | ACK, 0),
        tcp(7, true, ACK, 0),
        // a later packet on another flow moves the clock past the linger
        pkt(5_000, 3, 1, 4, 2, proto::UDP, 0, 10),
    ];
    let (out, t) = run(FlowConfig::default(), &pkts);
    assert_eq!(out.len(), 2);
    let f = &out[0];
    assert_eq!(f.reason, EndReason::TcpFin);
    assert_eq!(f.conn_state, ConnState::SF);
    assert_eq!(f.orig.addr, ip(1));
    assert_eq!(f.orig.port, 40000);
    assert_eq!(f.resp.port, 502);
    assert_eq!((f.orig_stats.pkts, f.resp_stats.pkts), (5, 3));
    assert_eq!(f.orig_stats.payload_bytes, 12);
    assert_eq!(f.resp_stats.payload_bytes, 29);
    assert_eq!(f.history.as_str(), "ShADdFf");
    assert_eq!(f.first_ts, at(0));
    assert_eq!(f.last_ts, at(7));
    assert_eq!(f.orig.mac, Some([2, 0, 0, 0, 0, 1]));
    assert_eq!(t.counters().ended[EndReason::TcpFin as usize], 1);
    assert_eq!(out[1].reason, EndReason::EndOfInput);
}

#[test]
fn rst_ends_flow_after_linger_and_new_syn_reuses_tuple() {
    let pkts = [
        tcp(0, true, SYN, 0),
        tcp(1, false, RST | ACK, 0),
        // retransmitted SYN on the same tuple during the linger starts a new flow
        tcp(500, true, SYN, 0),
    ];
    let (out, _) = run(FlowConfig::default(), &pkts);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].reason, EndReason::TcpRst);
    assert_eq!(out[0].conn_state, ConnState::REJ);
    assert_eq!(out[1].conn_state, ConnState::S0);
    assert_eq!(out[1].pkts(), 1);
}

#[test]
fn udp_idle_timeout_splits_flows() {
    let a = pkt(0, 1, 5000, 2, 53, proto::UDP, 0, 30);
    let b = pkt(10, 2, 53, 1, 5000, proto::UDP, 0, 60);
    let c = pkt(70_011, 1, 5000, 2, 53, proto::UDP, 0, 30); // 70 s later: > 60 s idle
    let (out, _) = run(FlowConfig::default(), &[a, b, c]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].reason, EndReason::IdleTimeout);
    assert_eq!(out[0].pkts(), 2);
    assert_eq!(out[0].conn_state, ConnState::SF);
    assert_eq!(out[1].reason, EndReason::EndOfInput);
    assert_eq!(out[1].conn_state, ConnState::S0);
}

#[test]
fn syn_only_flows_use_short_timeout() {
    let (out, _) = run(
        FlowConfig::default(),
        &[
            tcp(0, true, SYN, 0),
            pkt(11_000, 3, 1, 4, 2, proto::UDP, 0, 1),
            tcp(11_001, true, SYN, 0),
        ],
    );
    assert_eq!(out[0].reason, EndReason::IdleTimeout);
    assert_eq!(out[0].conn_state, ConnState::S0);
    assert_eq!(out.len(), 3);
}

#[test]
fn established_tcp_survives_long_gap_below_idle() {
    let pkts = [
        tcp(0, true, SYN, 0),
        tcp(1, false, SYN | ACK, 0),
        tcp(2, true, ACK, 0),
        tcp(100_000, true, ACK | PSH, 5), // 100 s gap < 120 s
    ];
    let (out, _) = run(FlowConfig::default(), &pkts);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].conn_state, ConnState::S1);
}

#[test]
fn active_timeout_emits_interim_records() {
    let mut pkts = Vec::new();
    pkts.push(tcp(0, true, SYN, 0));
    pkts.push(tcp(1, false, SYN | ACK, 0));
    pkts.push(tcp(2, true, ACK, 0));
    for i in 1..=20 {
        pkts.push(tcp(i * 30_000, true, ACK | PSH, 12)); // every 30 s for 10 min
    }
    let (out, _) = run(FlowConfig::default(), &pkts);
    let interim: Vec<_> = out
        .iter()
        .filter(|r| r.reason == EndReason::ActiveTimeout)
        .collect();
    // Slices start at 0 s, 300 s and 600 s: two interim records, then the final one.
    assert_eq!(interim.len(), 2, "{out:?}");
    assert_eq!(interim[0].slice, 0);
    assert_eq!(interim[0].first_ts, at(0));
    assert_eq!(interim[1].first_ts, at(300_000));
    assert_eq!(out.last().map(|r| r.slice), Some(2));
    let total: u64 = out.iter().map(|r| r.pkts()).sum();
    assert_eq!(total, pkts.len() as u64);
    // Disabled active timeout: one record.
    let cfg = FlowConfig {
        active_timeout: None,
        ..FlowConfig::default()
    };
    let (out, _) = run(cfg, &pkts);
    assert_eq!(out.len(), 1);
}

#[test]
fn memory_cap_evicts_least_recently_active_and_counts_it() {
    let cfg = FlowConfig {
        max_flows: 2,
        ..FlowConfig::default()
    };
    let pkts = [
        pkt(0, 1, 1, 2, 2, proto::UDP, 0, 1),
        pkt(1, 1, 3, 2, 4, proto::UDP, 0, 1),
        pkt(2, 1, 1, 2, 2, proto::UDP, 0, 1), // flow A touched again
        pkt(3, 1, 5, 2, 6, proto::UDP, 0, 1), // evicts flow B (oldest idle)
    ];
    let (out, t) = run(cfg, &pkts);
    assert_eq!(out[0].reason, EndReason::Evicted);
    assert_eq!(out[0].orig.port, 3);
    assert_eq!(t.counters().ended[EndReason::Evicted as usize], 1);
    assert_eq!(out.len(), 3);
    assert_eq!(out.iter().map(|r| r.pkts()).sum::<u64>(), 4);
}

#[test]
fn flush_order_is_by_first_seen_then_key() {
    let pkts = [
        pkt(5, 9, 1, 2, 2, proto::UDP, 0, 1),
        pkt(5, 1, 1, 2, 2, proto::UDP, 0, 1),
        pkt(1, 7, 1, 2, 2, proto::UDP, 0, 1), // earlier timestamp (out of order)
    ];
    let (out, t) = run(FlowConfig::default(), &pkts);
    let srcs: Vec<Addr> = out.iter().map(|r| r.orig.addr).collect();
    assert_eq!(srcs, vec![ip(7), ip(1), ip(9)]);
    assert_eq!(t.counters().created, 3);
}

#[test]
fn synack_first_flips_originator() {
    let (out, _) = run(
        FlowConfig::default(),
        &[tcp(0, false, SYN | ACK, 0), tcp(1, true, ACK, 0)],
    );
    assert_eq!(out[0].orig.addr, ip(1));
    assert_eq!(out[0].orig_stats.pkts, 1);
    assert_eq!(out[0].resp_stats.pkts, 1);
    assert!(out[0].history.as_str().starts_with('^'));
}

#[test]
fn clock_advance_expires_quiet_flows() {
    let mut t = FlowTable::new(FlowConfig::default());
    let mut out = Vec::new();
    t.observe(&pkt(0, 1, 1, 2, 2, proto::UDP, 0, 1), &mut out);
    t.advance_clock(at(30_000), &mut out);
    assert!(out.is_empty());
    t.advance_clock(at(10_000), &mut out); // backwards: ignored
    assert_eq!(t.clock(), at(30_000));
    t.advance_clock(at(60_001), &mut out);
    assert_eq!(out.len(), 1);
    assert!(t.is_empty());
}

#[test]
fn dns_and_modbus_hints_are_summarised() {
    let mut q = pkt(0, 1, 5000, 2, 53, proto::UDP, 0, 40);
    q.app = AppHint::Dns {
        query: true,
        qname_len: 42,
        label_entropy: 4.5,
    };
    let mut m = tcp(1, true, ACK | PSH, 12);
    // One segment with a write behind a read (pipelined), one with a single read.
    m.app = AppHint::Modbus {
        request: true,
        adus: 2,
        writes: 1,
    };
    let mut m2 = tcp(2, true, ACK | PSH, 12);
    m2.app = AppHint::Modbus {
        request: true,
        adus: 1,
        writes: 0,
    };
    let (out, _) = run(FlowConfig::default(), &[q, m, m2]);
    let dns = out.iter().find(|r| r.proto == proto::UDP);
    assert_eq!(dns.map(|r| r.app.dns_qname_max), Some(42));
    let mb = out.iter().find(|r| r.proto == proto::TCP);
    assert_eq!(
        mb.map(|r| (r.app.modbus_requests, r.app.modbus_writes)),
        Some((3, 1))
    );
}

#[test]
fn many_flows_all_accounted() {
    let mut pkts = Vec::new();
    for i in 0..5000u32 {
        let sp = (i % 60000) as u16 + 1;
        pkts.push(pkt(i as i64, 1, sp, 2, 80, proto::UDP, 0, 10));
        pkts.push(pkt(i as i64, 2, 80, 1, sp, proto::UDP, 0, 10));
    }
    let cfg = FlowConfig {
        max_flows: 1000,
        ..FlowConfig::default()
    };
    let (out, t) = run(cfg, &pkts);
    assert_eq!(out.len(), 5000);
    assert_eq!(out.iter().map(|r| r.pkts()).sum::<u64>(), 10_000);
    assert_eq!(t.counters().created, 5000);
    assert_eq!(t.counters().ended[EndReason::Evicted as usize], 4000);
    assert!(t.is_empty());
}

/// Narrow slot counters carry into the side map: counts past 2^16 and 2^32 stay exact,
/// statistics match a two-pass computation, across an interim record.
#[test]
fn counters_past_their_slot_width_stay_exact() {
    let cfg = FlowConfig {
        active_timeout: Some(Nanos::from_secs(100)),
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(cfg);
    let mut out = Vec::new();
    let n = 70_000i64;
    let mut big = tcp(0, true, ACK | PSH, 1_000);
    big.wire_len = 3_000_000_000; // two of these wrap the u32 byte counter
    for i in 0..n {
        let mut p = if i < 2 {
            big
        } else {
            tcp(0, true, ACK, (i % 3) as u32)
        };
        p.ts = Timestamp(T0 + i * 1_000_000 + i % 7);
        t.observe(&p, &mut out);
    }
    // One more packet after the active timeout: interim record, then slice 1.
    let mut late = tcp(0, true, ACK, 5);
    late.ts = Timestamp(T0 + 150_000_000_000);
    t.observe(&late, &mut out);
    t.flush(EndReason::EndOfInput, &mut out);
    assert_eq!(out.len(), 2);
    let (r, r2) = (&out[0], &out[1]);
    assert_eq!(r.reason, EndReason::ActiveTimeout);
    let o = &r.orig_stats;
    assert_eq!(o.pkts, n as u64);
    assert_eq!(o.flags.ack, n as u32);
    assert_eq!(o.flags.psh, 2);
    let payloads: Vec<u64> = (0..n)
        .map(|i| if i < 2 { 1_000 } else { (i % 3) as u64 })
        .collect();
    let zero = payloads.iter().filter(|&&p| p == 0).count() as u64;
    assert_eq!(o.zero_payload_pkts, zero);
    assert_eq!(
        o.bytes,
        6_000_000_000 + (n as u64 - 2) * 54 + payloads[2..].iter().sum::<u64>()
    );
    let mean = payloads.iter().sum::<u64>() as f64 / n as f64;
    let m2: f64 = payloads.iter().map(|&p| (p as f64 - mean).powi(2)).sum();
    assert!((o.payload.mean - mean).abs() < 1e-9);
    assert!((o.payload.m2 - m2).abs() / m2 < 1e-9);
    assert_eq!(o.first_ts, Timestamp(T0));
    assert_eq!(o.last_ts, Timestamp(T0 + (n - 1) * 1_000_000 + (n - 1) % 7));
    assert_eq!(r.iat_max_ns, 1_000_001);
    // Slice 1 starts from scratch but keeps the flow's identity.
    assert_eq!((r2.slice, r2.flow_start, r2.pkts()), (1, Timestamp(T0), 1));
    assert_eq!(r2.first_ts, late.ts);
    assert_eq!(r2.orig_stats.payload_bytes, 5);
}

#[test]
fn narrow_flag_counters_and_jumbo_payload_squares_stay_exact() {
    use crate::packet::tcp_flags::URG;
    let mut t = FlowTable::new(FlowConfig::default());
    let mut out = Vec::new();
    // 300 URG packets wrap the u8 URG counter; a 70,000-byte payload (a jumbogram) has a
    // square above 2^32, carried apart from the low 32 bits of the sum of squares.
    let n = 300i64;
    for i in 0..n {
        let payload = if i == 0 { 70_000 } else { 0 };
        let mut p = tcp(i, true, ACK | URG, payload);
        p.ts = Timestamp(T0 + i * 1_000_000);
        t.observe(&p, &mut out);
    }
    t.flush(EndReason::EndOfInput, &mut out);
    assert_eq!(out.len(), 1);
    let o = &out[0].orig_stats;
    assert_eq!((o.flags.urg, o.flags.ack, o.flags.psh), (300, 300, 0));
    assert_eq!(o.payload_bytes, 70_000);
    let mean = 70_000.0 / n as f64;
    let m2 = (70_000.0 - mean) * (70_000.0 - mean) + (n - 1) as f64 * mean * mean;
    assert!((o.payload.mean - mean).abs() < 1e-9);
    assert!(
        (o.payload.m2 - m2).abs() / m2 < 1e-12,
        "{} vs {m2}",
        o.payload.m2
    );
}

mod batched {
    //! `observe_batch` (with its look-ahead prefetching) must account packets exactly as a
    //! loop of `observe_at` does, also when flows are created, closed, expired, evicted or
    //! reopened by earlier packets of the same batch.
    use super::*;
    use proptest::prelude::*;

    /// Source and destination host (0-3), UDP or TCP, TCP flags, payload length.
    type Spec = (u8, u8, bool, u8, u32);

    /// One generated item (`None` is a non-IP item the batch must skip), the time gap
    /// before it and the clock lead.
    fn item() -> impl Strategy<Value = (Option<Spec>, i64, i64)> {
        (
            proptest::option::weighted(
                0.9,
                (0u8..4, 0u8..4, any::<bool>(), any::<u8>(), 0u32..1500),
            ),
            // Packet time gap (ms): mostly small, sometimes past the idle timeouts.
            prop_oneof![8 => 0i64..50, 1 => 2_000i64..30_000],
            // Global clock lead over the packet time (ms), as a sharded table sees it.
            prop_oneof![6 => Just(0i64), 1 => 0i64..3_000],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn observe_batch_equals_observe_at(
            items in proptest::collection::vec(item(), 1..400),
            cut in 1usize..64,
            max_flows in 1usize..6,
        ) {
            let cfg = FlowConfig {
                tcp_idle: Nanos::from_secs(5),
                tcp_syn_idle: Nanos::from_secs(2),
                udp_idle: Nanos::from_secs(3),
                other_idle: Nanos::from_secs(4),
                active_timeout: Some(Nanos::from_secs(20)),
                tcp_close_linger: Nanos::from_secs(1),
                max_flows,
            };
            let mut ms = 0i64;
            let mut batch: Vec<Option<(IpPacket, Timestamp)>> = Vec::new();
            for (spec, gap, lead) in items {
                ms += gap;
                batch.push(spec.map(|(a, b, udp, flags, payload)| {
                    let p = if udp { proto::UDP } else { proto::TCP };
                    let flags = if udp { 0 } else { flags & (SYN | FIN | RST | ACK | PSH) };
                    let pk = pkt(ms, 1 + a, 40000 + u16::from(a), 1 + b, 502, p, flags, payload);
                    (pk, at(ms + lead))
                }));
            }
            let mut one = FlowTable::new(cfg);
            let mut want = Vec::new();
            for (p, c) in batch.iter().flatten() {
                one.observe_at(p, *c, &mut want);
            }
            let mut many = FlowTable::new(cfg);
            let mut got = Vec::new();
            for chunk in batch.chunks(cut) {
                many.observe_batch(chunk, |x| x.as_ref().map(|(p, c)| (p, *c)), &mut got);
            }
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(many.counters(), one.counters());
            one.flush(EndReason::EndOfInput, &mut want);
            many.flush(EndReason::EndOfInput, &mut got);
            prop_assert_eq!(got, want);
        }
    }
}

#[test]
fn a_second_source_mac_marks_the_record_it_appears_in() {
    let cfg = FlowConfig {
        active_timeout: Some(Nanos::from_secs(10)),
        ..FlowConfig::default()
    };
    let relayed = |ms| {
        let mut p = pkt(ms, 1, 5000, 2, 6000, proto::UDP, 0, 100);
        p.src_mac = Some([2, 0, 0, 0, 0, 0x42]);
        p
    };
    let direct = |ms| pkt(ms, 1, 5000, 2, 6000, proto::UDP, 0, 100);
    let reply = |ms| pkt(ms, 2, 6000, 1, 5000, proto::UDP, 0, 100);
    // Slice 1: direct, reply, then the same packet relayed by another MAC; slice 2 (after
    // the 10 s active timeout): direct only; a packet without a MAC changes nothing.
    let mut no_mac = direct(12_000);
    no_mac.src_mac = None;
    let (recs, _) = run(
        cfg,
        &[
            direct(0),
            reply(1),
            relayed(2),
            direct(11_000),
            no_mac,
            reply(13_000),
        ],
    );
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(recs[0].mac_changed);
    assert_eq!(recs[0].orig.mac, Some([2, 0, 0, 0, 0, 1]), "first MAC kept");
    assert!(!recs[1].mac_changed, "the next slice starts clean");
    // Both directions keep their own first MAC: replies never count as a change.
    let (recs, _) = run(cfg, &[direct(0), reply(1), direct(2), reply(3)]);
    assert!(!recs[0].mac_changed);
}

#[test]
fn slot_is_four_cache_lines() {
    // The batch prefetches every line of a slot: growing it past 256 bytes adds a line
    // (a fifth) to every packet's lookup.
    assert_eq!(std::mem::size_of::<Slot>(), 256);
    assert_eq!(std::mem::align_of::<Slot>(), 64);
}

#[test]
fn ipv6_and_mixed_flows_keep_their_addresses() {
    // IPv6 keys keep their addresses in the side store; a flow between an IPv4-mapped
    // and an IPv6 address too. Each direction must find the flow, and the record must
    // give the addresses back, after the store's entries are reused.
    let v6 = |last: u8| {
        let mut b = [0u8; 16];
        b[0] = 0xfe;
        b[1] = 0x80;
        b[15] = last;
        Addr::v6(b)
    };
    let mut t = FlowTable::new(FlowConfig::default());
    let mut out = Vec::new();
    for round in 0..3u8 {
        let mut a = pkt(i64::from(round) * 10, 1, 1000, 2, 53, proto::UDP, 0, 10);
        a.src = v6(1 + round);
        a.dst = v6(2);
        let mut b = pkt(i64::from(round) * 10 + 1, 2, 53, 1, 1000, proto::UDP, 0, 20);
        b.src = v6(2);
        b.dst = v6(1 + round);
        let mut m = pkt(i64::from(round) * 10 + 2, 3, 7, 4, 8, proto::UDP, 0, 5);
        m.dst = v6(9);
        for p in [a, b, b, m] {
            t.observe(&p, &mut out);
        }
        t.flush(EndReason::EndOfInput, &mut out);
    }
    assert_eq!(out.len(), 6);
    for (round, pair) in out.chunks(2).enumerate() {
        let r = pair
            .iter()
            .find(|r| r.resp.port == 53)
            .expect("the IPv6 flow");
        assert_eq!(r.orig.addr, v6(1 + round as u8));
        assert_eq!(r.resp.addr, v6(2));
        assert_eq!((r.orig_stats.pkts, r.resp_stats.pkts), (1, 2));
        let m = pair
            .iter()
            .find(|r| r.resp.port == 8)
            .expect("the mixed flow");
        assert_eq!((m.orig.addr, m.resp.addr), (ip(3), v6(9)));
    }
}
