//! Known-answer tests of every feature on hand-built and flow-table-built records.

use super::*;
use crate::flow::{EndReason, FlowConfig, FlowKey, FlowTable, History, Welford};
use crate::packet::{tcp_flags, AppHint, FragInfo, IpPacket, Tunnel};
use crate::time::Timestamp;

pub(crate) fn v4(a: u8, b: u8, c: u8, d: u8) -> Addr {
    Addr::v4([a, b, c, d])
}

/// An empty record between `orig` and `resp`.
pub(crate) fn rec(protocol: u8, orig: (Addr, u16), resp: (Addr, u16)) -> FlowRecord {
    let ep = |(addr, port): (Addr, u16)| crate::flow::Endpoint {
        addr,
        port,
        mac: None,
    };
    FlowRecord {
        key: FlowKey {
            vlan: [0; 2],
            proto: protocol,
            addr_lo: orig.0.min(resp.0),
            addr_hi: orig.0.max(resp.0),
            port_lo: 0,
            port_hi: 0,
            icmp_id: 0,
            tunnel_id: 0,
            tunnel_kind: 0,
        },
        orig: ep(orig),
        resp: ep(resp),
        proto: protocol,
        icmp: None,
        tunnel: Tunnel::None,
        flow_start: Timestamp(0),
        first_ts: Timestamp(0),
        last_ts: Timestamp(0),
        orig_stats: DirStats::default(),
        resp_stats: DirStats::default(),
        iat: Welford::default(),
        iat_max_ns: 0,
        conn_state: ConnState::OTH,
        history: History::default(),
        reason: EndReason::IdleTimeout,
        emit_ts: Timestamp(0),
        slice: 0,
        app: Default::default(),
        fragments: 0,
        mac_changed: false,
    }
}

/// Adds a packet to a hand-built record the way the flow table does.
pub(crate) fn push(
    r: &mut FlowRecord,
    from_orig: bool,
    ts_ms: f64,
    ip_len: u32,
    payload: u32,
    flags: u8,
) {
    let ts = Timestamp((ts_ms * 1e6).round() as i64);
    let n = r.pkts();
    if n == 0 {
        r.flow_start = ts;
        r.first_ts = ts;
        r.last_ts = ts;
    } else {
        let gap = ts.since(r.last_ts).0.max(0);
        r.iat.push(gap as f64 / 1_000.0, n);
        r.iat_max_ns = r.iat_max_ns.max(gap);
        if ts > r.last_ts {
            r.last_ts = ts;
        }
    }
    let d = if from_orig {
        &mut r.orig_stats
    } else {
        &mut r.resp_stats
    };
    d.push(ts, ip_len + 14, ip_len, payload, flags);
}

fn close(a: f32, b: f64) -> bool {
    (f64::from(a) - b).abs() < 1e-4 * (1.0 + b.abs())
}

fn assert_all_finite(v: &FeatureVector) {
    for (i, x) in v.0.iter().enumerate() {
        assert!(x.is_finite(), "{} = {x}", FEATURE_NAMES[i]);
    }
}

fn table_pkt(
    ts_ms: i64,
    src: (Addr, u16),
    dst: (Addr, u16),
    flags: u8,
    ip_len: u32,
    payload: u32,
) -> IpPacket {
    IpPacket {
        ts: Timestamp(ts_ms * 1_000_000),
        wire_len: ip_len + 14,
        src_mac: None,
        dst_mac: None,
        vlan: [0; 2],
        mpls_labels: 0,
        tunnel: Tunnel::None,
        src: src.0,
        dst: dst.0,
        proto: proto::TCP,
        src_port: src.1,
        dst_port: dst.1,
        icmp_id: 0,
        has_l4: true,
        ip_len,
        payload_len: payload,
        ttl: 64,
        tcp_flags: flags,
        tcp_seq: 1000,
        tcp_ack: 0,
        tcp_window: 1024,
        frag: FragInfo::default(),
        app: AppHint::None,
    }
}

fn run_table(pkts: &[IpPacket]) -> Vec<FlowRecord> {
    let mut t = FlowTable::new(FlowConfig::default());
    let mut out = Vec::new();
    for p in pkts {
        t.observe(p, &mut out);
    }
    t.flush(EndReason::EndOfInput, &mut out);
    out
}

#[test]
fn names_are_unique_snake_case_and_indexed() {
    let mut seen = std::collections::BTreeSet::new();
    for n in FEATURE_NAMES {
        assert!(n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert!(seen.insert(n));
    }
    assert_eq!(FEATURE_NAMES[idx::PEER_FAM], "peer_fam");
    assert_eq!(FEATURE_NAMES[idx::MODBUS_WRITE_FRAC], "modbus_write_frac");
    assert_eq!(FEATURE_NAMES[idx::DEV_DPORTS_60S], "dev_dports_60s");
}

#[test]
fn rejected_tcp_flow_from_both_sides() {
    let dev = (v4(192, 168, 10, 21), 40000);
    let peer = (v4(192, 168, 10, 5), 23);
    let recs = run_table(&[
        table_pkt(1000, dev, peer, tcp_flags::SYN, 60, 0),
        table_pkt(1001, peer, dev, tcp_flags::RST | tcp_flags::ACK, 40, 0),
    ]);
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.conn_state, ConnState::REJ);
    let f = flow_features(r, Side::Orig).0;
    assert!(close(f[idx::DURATION], 1f64.ln_1p()));
    assert!(close(f[idx::PKTS_OUT], 1f64.ln_1p()));
    assert!(close(f[idx::PKTS_IN], 1f64.ln_1p()));
    assert!(close(f[idx::BYTES_OUT], 60f64.ln_1p()));
    assert!(close(f[idx::BYTES_IN], 40f64.ln_1p()));
    assert!(close(f[idx::OUT_BYTE_FRAC], 0.6));
    assert_eq!(f[idx::PL_MEAN_OUT], 0.0);
    assert_eq!(f[idx::PL_MAX], 0.0);
    assert_eq!(f[idx::ZERO_PL_FRAC], 1.0);
    assert!(close(f[idx::IAT_MEAN], 1f64.ln_1p()));
    assert_eq!(f[idx::IAT_CV], 0.0, "fewer than 3 packets");
    assert!(close(f[idx::IAT_MAX], 1f64.ln_1p()));
    assert!(close(f[idx::PKT_RATE], 2000f64.ln_1p()));
    assert_eq!(f[idx::TCP_NO_REPLY], 0.0);
    assert_eq!(f[idx::TCP_REJECTED], 1.0);
    assert!(close(f[idx::SYN_CNT], 1f64.ln_1p()));
    assert!(close(f[idx::RST_CNT], 1f64.ln_1p()));
    assert_eq!(f[idx::FIN_CNT], 0.0);
    assert_eq!(f[idx::PSH_FRAC], 0.0);
    assert_eq!(f[idx::DEV_INITIATED], 1.0);
    assert_eq!(f[idx::PEER_PUBLIC], 0.0);
    assert_eq!(f[idx::PEER_MCAST], 0.0);
    // Seen from the responder: directions swap, the outcome does not.
    let g = flow_features(r, Side::Resp).0;
    assert!(close(g[idx::BYTES_OUT], 40f64.ln_1p()));
    assert!(close(g[idx::OUT_BYTE_FRAC], 0.4));
    assert_eq!(g[idx::DEV_INITIATED], 0.0);
    assert_eq!(g[idx::TCP_REJECTED], 1.0);
}

#[test]
fn unanswered_syn_is_no_reply() {
    let dev = (v4(192, 168, 10, 21), 40001);
    let peer = (v4(192, 168, 10, 6), 22);
    let recs = run_table(&[
        table_pkt(0, dev, peer, tcp_flags::SYN, 60, 0),
        table_pkt(1000, dev, peer, tcp_flags::SYN, 60, 0),
    ]);
    let f = flow_features(&recs[0], Side::Orig).0;
    assert_eq!(recs[0].conn_state, ConnState::S0);
    assert_eq!(f[idx::TCP_NO_REPLY], 1.0);
    assert_eq!(f[idx::TCP_REJECTED], 0.0);
    assert!(close(f[idx::SYN_CNT], 2f64.ln_1p()));
}

#[test]
fn periodic_udp_beacon() {
    let mut r = rec(
        proto::UDP,
        (v4(192, 168, 10, 30), 5000),
        (v4(8, 8, 8, 8), 9999),
    );
    for i in 0..10 {
        push(&mut r, true, 1000.0 * f64::from(i), 76, 48, 0);
    }
    let f = flow_features(&r, Side::Orig).0;
    assert!(close(f[idx::DURATION], 9000f64.ln_1p()));
    assert!(close(f[idx::PKTS_OUT], 10f64.ln_1p()));
    assert_eq!(f[idx::PKTS_IN], 0.0);
    assert!(close(f[idx::BYTES_OUT], 760f64.ln_1p()));
    assert_eq!(f[idx::OUT_BYTE_FRAC], 1.0);
    assert!(close(f[idx::PL_MEAN_OUT], 48f64.ln_1p()));
    assert_eq!(f[idx::PL_STD_OUT], 0.0);
    assert_eq!(f[idx::PL_MEAN_IN], 0.0);
    assert!(close(f[idx::PL_MAX], 48f64.ln_1p()));
    assert_eq!(f[idx::ZERO_PL_FRAC], 0.0);
    assert!(close(f[idx::IAT_MEAN], 1000f64.ln_1p()));
    assert!(f[idx::IAT_CV].abs() < 1e-6, "periodic: cv ≈ 0");
    assert!(close(f[idx::IAT_MAX], 1000f64.ln_1p()));
    assert!(close(f[idx::PKT_RATE], (10.0f64 / 9.0).ln_1p()));
    assert_eq!(f[idx::TCP_NO_REPLY], 0.0, "UDP never sets TCP flags");
    assert_eq!(f[idx::PEER_PUBLIC], 1.0);
    assert_eq!(f[idx::PEER_MCAST], 0.0);
}

#[test]
fn bursty_flow_has_high_cv_capped() {
    let mut r = rec(proto::UDP, (v4(10, 0, 0, 2), 1), (v4(10, 0, 0, 3), 2));
    // Gaps 1, 1, 1, 1000 ms: mean 250.75, population std ≈ 432.1, cv ≈ 1.72.
    for t in [0.0, 1.0, 2.0, 3.0, 1003.0] {
        push(&mut r, true, t, 40, 12, 0);
    }
    let gaps = [1.0f64, 1.0, 1.0, 1000.0];
    let mean = gaps.iter().sum::<f64>() / 4.0;
    let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
    let f = flow_features(&r, Side::Orig).0;
    assert!(close(f[idx::IAT_CV], sd / mean));
    // A single huge outlier among many tiny gaps is capped at 10.
    let mut r = rec(proto::UDP, (v4(10, 0, 0, 2), 1), (v4(10, 0, 0, 3), 2));
    for i in 0..500 {
        push(&mut r, true, f64::from(i) * 0.001, 40, 12, 0);
    }
    push(&mut r, true, 1e7, 40, 12, 0);
    assert_eq!(
        flow_features(&r, Side::Orig).0[idx::IAT_CV],
        IAT_CV_CAP as f32
    );
}

#[test]
fn payload_stats_and_psh_share() {
    let mut r = rec(
        proto::TCP,
        (v4(192, 168, 1, 2), 50000),
        (v4(192, 168, 1, 9), 80),
    );
    r.conn_state = ConnState::SF;
    push(&mut r, true, 0.0, 60, 0, tcp_flags::SYN);
    push(&mut r, false, 1.0, 60, 0, tcp_flags::SYN | tcp_flags::ACK);
    push(&mut r, true, 2.0, 140, 100, tcp_flags::ACK | tcp_flags::PSH);
    push(
        &mut r,
        false,
        3.0,
        340,
        300,
        tcp_flags::ACK | tcp_flags::PSH,
    );
    push(&mut r, true, 4.0, 40, 0, tcp_flags::FIN | tcp_flags::ACK);
    push(&mut r, false, 5.0, 40, 0, tcp_flags::FIN | tcp_flags::ACK);
    let f = flow_features(&r, Side::Orig).0;
    // out payloads 0, 100, 0: mean 33.33, std 47.14; in payloads 0, 300, 0.
    assert!(close(f[idx::PL_MEAN_OUT], (100.0f64 / 3.0).ln_1p()));
    let sd_out = ((2.0 * (100.0f64 / 3.0).powi(2) + (200.0f64 / 3.0).powi(2)) / 3.0).sqrt();
    assert!(close(f[idx::PL_STD_OUT], sd_out.ln_1p()));
    assert!(close(f[idx::PL_MEAN_IN], 100f64.ln_1p()));
    assert!(close(f[idx::PL_MAX], 300f64.ln_1p()));
    assert!(close(f[idx::ZERO_PL_FRAC], 4.0 / 6.0));
    assert!(close(f[idx::PSH_FRAC], 2.0 / 6.0));
    assert!(close(f[idx::SYN_CNT], 2f64.ln_1p()));
    assert!(close(f[idx::FIN_CNT], 2f64.ln_1p()));
    assert_eq!(f[idx::TCP_NO_REPLY] + f[idx::TCP_REJECTED], 0.0);
}

#[test]
fn dns_tunnel_like_qname() {
    let mut r = rec(
        proto::UDP,
        (v4(192, 168, 10, 40), 33333),
        (v4(192, 168, 10, 1), 53),
    );
    push(&mut r, true, 0.0, 180, 152, 0);
    push(&mut r, false, 2.0, 200, 172, 0);
    r.app.dns_queries = 1;
    r.app.dns_qname_max = 120;
    r.app.dns_label_entropy = 4.7;
    let f = flow_features(&r, Side::Orig).0;
    assert!(close(f[idx::DNS_QNAME_MAX], 120f64.ln_1p()));
    assert!(close(f[idx::DNS_LABEL_ENTROPY], 4.7));
    assert_eq!(f[idx::MODBUS_WRITE_FRAC], 0.0);
    // Not DNS: both 0.
    let r2 = rec(
        proto::UDP,
        (v4(192, 168, 10, 40), 1),
        (v4(192, 168, 10, 1), 2),
    );
    let g = flow_features(&r2, Side::Orig).0;
    assert_eq!(
        (g[idx::DNS_QNAME_MAX], g[idx::DNS_LABEL_ENTROPY]),
        (0.0, 0.0)
    );
}

#[test]
fn dns_hints_through_the_flow_table() {
    let dev = (v4(192, 168, 10, 40), 33333);
    let dns = (v4(192, 168, 10, 1), 53);
    let mut q = table_pkt(0, dev, dns, 0, 80, 52);
    q.proto = proto::UDP;
    q.app = AppHint::Dns {
        query: true,
        qname_len: 63,
        label_entropy: 3.5,
    };
    let mut a = table_pkt(1, dns, dev, 0, 96, 68);
    a.proto = proto::UDP;
    a.app = AppHint::Dns {
        query: false,
        qname_len: 63,
        label_entropy: 3.5,
    };
    let recs = run_table(&[q, a]);
    let f = flow_features(&recs[0], Side::Orig).0;
    assert!(close(f[idx::DNS_QNAME_MAX], 63f64.ln_1p()));
    assert!(close(f[idx::DNS_LABEL_ENTROPY], 3.5));
}

#[test]
fn modbus_write_share() {
    let hmi = (v4(10, 1, 0, 10), 49152);
    let plc = (v4(10, 1, 0, 20), 502);
    let mut pkts = vec![
        table_pkt(0, hmi, plc, tcp_flags::SYN, 60, 0),
        table_pkt(1, plc, hmi, tcp_flags::SYN | tcp_flags::ACK, 60, 0),
        table_pkt(2, hmi, plc, tcp_flags::ACK, 52, 0),
    ];
    for (i, fc) in [6u8, 6, 16, 3].into_iter().enumerate() {
        let mut p = table_pkt(
            10 + 10 * i as i64,
            hmi,
            plc,
            tcp_flags::ACK | tcp_flags::PSH,
            64,
            12,
        );
        p.app = AppHint::Modbus {
            request: true,
            adus: 1,
            writes: u16::from(crate::decode::hint::is_modbus_write(fc)),
        };
        pkts.push(p);
        let mut resp = table_pkt(
            15 + 10 * i as i64,
            plc,
            hmi,
            tcp_flags::ACK | tcp_flags::PSH,
            64,
            12,
        );
        resp.app = AppHint::Modbus {
            request: false,
            adus: 1,
            writes: u16::from(crate::decode::hint::is_modbus_write(fc)),
        };
        pkts.push(resp);
    }
    let recs = run_table(&pkts);
    assert_eq!(recs.len(), 1);
    // Same value from both sides: a property of the conversation.
    for side in [Side::Orig, Side::Resp] {
        let f = flow_features(&recs[0], side).0;
        assert!(close(f[idx::MODBUS_WRITE_FRAC], 0.75));
    }
}

#[test]
fn multicast_and_broadcast_destinations() {
    let dev = v4(192, 168, 10, 50);
    for (dst, mc) in [
        (v4(239, 255, 255, 250), true),
        (v4(224, 0, 0, 251), true),
        (v4(255, 255, 255, 255), true),
        (v4(192, 168, 10, 255), true),
        (v4(192, 168, 10, 1), false),
        (v4(203, 0, 113, 255), false),
    ] {
        let r = rec(proto::UDP, (dev, 1900), (dst, 1900));
        let f = flow_features(&r, Side::Orig).0;
        assert_eq!(
            f[idx::PEER_MCAST],
            f32::from(u8::from(mc)),
            "{:?}",
            dst.to_ip()
        );
        if mc {
            assert_eq!(f[idx::PEER_PUBLIC], 0.0);
        }
    }
    let v6mc = Addr::v6([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfb]);
    assert!(is_multicast_or_broadcast(&v6mc));
}

#[test]
fn public_address_scopes() {
    let p = |s: &str| {
        is_public(&Addr::from(
            s.parse::<std::net::IpAddr>()
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        ))
    };
    for s in [
        "8.8.8.8",
        "203.0.113.7",
        "198.51.100.1",
        "2001:db8::1",
        "2a00:1450::1",
    ] {
        assert!(p(s), "{s} public");
    }
    for s in [
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.1",
        "192.168.0.1",
        "100.64.0.1",
        "169.254.1.1",
        "127.0.0.1",
        "0.0.0.0",
        "fd00::1",
        "fe80::1",
        "::1",
        "::",
        "ff02::1",
        "240.0.0.1",
    ] {
        assert!(!p(s), "{s} not public");
    }
    assert!(p("172.32.0.1"));
}

#[test]
fn empty_and_degenerate_records_are_finite_and_zero() {
    let r = rec(proto::TCP, (v4(10, 0, 0, 1), 1), (v4(10, 0, 0, 2), 2));
    let f = flow_features(&r, Side::Orig);
    assert_all_finite(&f);
    // Only dev_initiated is non-zero for an empty record.
    for (i, x) in f.0.iter().enumerate() {
        if i != idx::DEV_INITIATED {
            assert_eq!(*x, 0.0, "{}", FEATURE_NAMES[i]);
        }
    }
    // Single packet, timestamps backwards, absurd Welford state.
    let mut r = rec(proto::UDP, (v4(10, 0, 0, 1), 1), (v4(10, 0, 0, 2), 2));
    push(&mut r, true, 5.0, 40, 12, 0);
    r.last_ts = Timestamp(-5);
    r.iat = Welford {
        mean: f64::NAN,
        m2: f64::INFINITY,
    };
    r.orig_stats.payload.mean = f64::INFINITY;
    r.app.dns_label_entropy = f32::NAN;
    r.app.dns_qname_max = 3;
    let f = flow_features(&r, Side::Orig);
    assert_all_finite(&f);
    assert_eq!(f.0[idx::DURATION], 0.0);
    assert_eq!(f.0[idx::IAT_MEAN], 0.0, "one packet: no inter-arrival");
}

#[test]
fn familiarity_tables_count_and_look_up() {
    let cam = v4(192, 168, 10, 21);
    let mut t = FamiliarityTables::new();
    let mk = |peer: Addr, port: u16| rec(proto::TCP, (cam, 40000), (peer, port));
    for _ in 0..3 {
        t.learn(
            DeviceClass::Camera,
            "cam-01",
            &mk(v4(52, 1, 2, 3), 443),
            Side::Orig,
        );
    }
    t.learn(
        DeviceClass::Camera,
        "cam-01",
        &mk(v4(192, 168, 10, 1), 53),
        Side::Orig,
    );
    // NVR pulling RTSP from the camera: the camera is the responder; service 554.
    let rtsp = rec(proto::TCP, (v4(192, 168, 10, 2), 51000), (cam, 554));
    t.learn(DeviceClass::Camera, "cam-01", &rtsp, Side::Resp);
    assert_eq!(t.flows, 5);
    // F26: class-level, responder's port.
    assert_eq!(
        t.service_count(DeviceClass::Camera, &mk(v4(1, 1, 1, 1), 443)),
        3
    );
    assert_eq!(t.service_count(DeviceClass::Camera, &rtsp), 1);
    assert_eq!(
        t.service_count(DeviceClass::Plug, &mk(v4(1, 1, 1, 1), 443)),
        0
    );
    assert_eq!(
        t.service_count(DeviceClass::Camera, &mk(v4(1, 1, 1, 1), 23)),
        0
    );
    // F27: public peers by /24, local peers exact.
    assert_eq!(
        t.peer_count(
            DeviceClass::Camera,
            "cam-01",
            &mk(v4(52, 1, 2, 200), 443),
            Side::Orig
        ),
        3
    );
    assert_eq!(
        t.peer_count(
            DeviceClass::Camera,
            "cam-01",
            &mk(v4(52, 1, 3, 3), 443),
            Side::Orig
        ),
        0
    );
    assert_eq!(
        t.peer_count(
            DeviceClass::Camera,
            "cam-01",
            &mk(v4(192, 168, 10, 3), 53),
            Side::Orig
        ),
        0
    );
    // A device unseen in training falls back to its class's table.
    let other = rec(
        proto::TCP,
        (v4(192, 168, 10, 22), 40000),
        (v4(52, 1, 2, 9), 443),
    );
    assert_eq!(
        t.peer_count(DeviceClass::Camera, "cam-02", &other, Side::Orig),
        3
    );
    assert_eq!(
        t.peer_count(DeviceClass::Plug, "plug-09", &other, Side::Orig),
        0
    );
    assert!(close(
        t.peer_familiarity(DeviceClass::Camera, "cam-02", &other, Side::Orig) as f32,
        4f64.ln()
    ));
    // IPv6 public peers by /48.
    let a = Addr::v6([0x2a, 0, 0x14, 0x50, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
    let b = Addr::v6([0x2a, 0, 0x14, 0x50, 0, 1, 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 9]);
    assert_eq!(peer_key(&a), peer_key(&b));
    assert_eq!(peer_key(&a).prefix, 48);
}

#[test]
fn familiarity_serialisation_is_order_independent() {
    let cam = v4(192, 168, 10, 21);
    let flows: Vec<(DeviceClass, &str, FlowRecord)> = vec![
        (
            DeviceClass::Camera,
            "cam-01",
            rec(proto::TCP, (cam, 1), (v4(52, 1, 2, 3), 443)),
        ),
        (
            DeviceClass::Plug,
            "plug-01",
            rec(
                proto::UDP,
                (v4(192, 168, 10, 60), 1),
                (v4(192, 168, 10, 1), 53),
            ),
        ),
        (
            DeviceClass::Camera,
            "cam-02",
            rec(
                proto::UDP,
                (v4(192, 168, 10, 22), 1),
                (v4(192, 168, 10, 1), 123),
            ),
        ),
    ];
    let mut a = FamiliarityTables::new();
    for (c, d, r) in &flows {
        a.learn(*c, d, r, Side::Orig);
    }
    let mut b = FamiliarityTables::new();
    for (c, d, r) in flows.iter().rev() {
        b.learn(*c, d, r, Side::Orig);
    }
    let ja = serde_json::to_string(&a).unwrap_or_default();
    let jb = serde_json::to_string(&b).unwrap_or_default();
    assert!(!ja.is_empty());
    assert_eq!(ja, jb);
    let back: FamiliarityTables = serde_json::from_str(&ja).unwrap_or_default();
    assert_eq!(back, a);
}

fn at(mut r: FlowRecord, t_s: f64) -> FlowRecord {
    let t = Timestamp((t_s * 1e9) as i64);
    r.first_ts = t;
    r.flow_start = t;
    r.last_ts = t;
    r
}

#[test]
fn device_context_windows() {
    let dev = v4(192, 168, 10, 21);
    let mut ctx = DeviceContext::new(ContextConfig::default());
    // Five peers, two ports, one flow per second.
    for i in 0..5u8 {
        let port = if i % 2 == 0 { 23 } else { 2323 };
        let r = at(
            rec(proto::TCP, (dev, 40000), (v4(192, 168, 10, 100 + i), port)),
            f64::from(i),
        );
        let c = ctx.observe(&r, Side::Orig);
        assert_eq!(c.distinct_peers, u32::from(i) + 1);
        assert_eq!(c.new_flows, u32::from(i) + 1);
        assert_eq!(c.distinct_ports, if i == 0 { 1 } else { 2 });
    }
    // A flow the device answered is not counted, but it moves the clock.
    let inbound = at(
        rec(proto::TCP, (v4(192, 168, 10, 2), 5000), (dev, 554)),
        12.0,
    );
    let c = ctx.observe(&inbound, Side::Resp);
    // t = 12: flows at 0..4 are older than 10 s except none (12 - 10 = 2 → 3, 4 remain).
    assert_eq!(c.new_flows, 2);
    assert_eq!(c.distinct_peers, 5);
    // An interim continuation does not count as a new flow.
    let mut cont = at(
        rec(proto::TCP, (dev, 40000), (v4(192, 168, 10, 250), 80)),
        13.0,
    );
    cont.slice = 1;
    assert_eq!(ctx.observe(&cont, Side::Orig).distinct_peers, 5);
    // A late record (earlier last_ts) is counted at the context time, not before it.
    let late = at(rec(proto::UDP, (dev, 1), (v4(192, 168, 10, 251), 53)), 1.0);
    let c = ctx.observe(&late, Side::Orig);
    assert_eq!(c.distinct_peers, 6);
    assert_eq!(ctx.clock(), Some(13_000_000_000));
    // 60 s later everything has left the long window but the current flow.
    let r = at(
        rec(proto::TCP, (dev, 40000), (v4(192, 168, 10, 100), 23)),
        74.0,
    );
    let c = ctx.observe(&r, Side::Orig);
    assert_eq!((c.distinct_peers, c.new_flows, c.distinct_ports), (1, 1, 1));
}

#[test]
fn device_context_memory_is_capped() {
    let dev = v4(10, 0, 0, 1);
    let cfg = ContextConfig {
        max_entries: 16,
        ..ContextConfig::default()
    };
    let mut ctx = DeviceContext::new(cfg);
    let mut last = ContextCounts::default();
    for i in 0..1000u32 {
        let peer = Addr::v4([10, 1, (i >> 8) as u8, i as u8]);
        let r = at(
            rec(proto::UDP, (dev, 1), (peer, (i % 5000) as u16)),
            f64::from(i) * 0.001,
        );
        last = ctx.observe(&r, Side::Orig);
    }
    assert_eq!(last.distinct_peers, 16);
    assert_eq!(last.new_flows, 16);
    assert_eq!(last.distinct_ports, 16);
}

#[test]
fn extractor_fills_every_feature_group() {
    let cam = v4(192, 168, 10, 21);
    let mut tables = FamiliarityTables::new();
    let train = rec(proto::TCP, (cam, 40000), (v4(52, 1, 2, 3), 443));
    for _ in 0..7 {
        tables.learn(DeviceClass::Camera, "cam-01", &train, Side::Orig);
    }
    let mut ex = FeatureExtractor::new(tables);
    let device = DeviceRef {
        id: "cam-01",
        class: DeviceClass::Camera,
    };
    let mut r = at(
        rec(proto::TCP, (cam, 40001), (v4(52, 1, 2, 99), 443)),
        100.0,
    );
    push(&mut r, true, 100_000.0, 60, 0, tcp_flags::SYN);
    let f = ex.extract(&r, Side::Orig, &device).0;
    assert!(close(f[idx::SVC_PORT_FAM], 8f64.ln()));
    assert!(close(f[idx::PEER_FAM], 8f64.ln()));
    assert!(close(f[idx::DEV_FANOUT_60S], 2f64.ln()));
    assert!(close(f[idx::DEV_NEWFLOWS_10S], 2f64.ln()));
    assert!(close(f[idx::DEV_DPORTS_60S], 2f64.ln()));
    // A never-seen service and peer: the isolated extreme 0.
    let novel = at(
        rec(proto::TCP, (cam, 40002), (v4(45, 9, 9, 9), 6667)),
        101.0,
    );
    let g = ex.extract(&novel, Side::Orig, &device).0;
    assert_eq!((g[idx::SVC_PORT_FAM], g[idx::PEER_FAM]), (0.0, 0.0));
    assert!(close(g[idx::DEV_FANOUT_60S], 3f64.ln()));
    assert_eq!(ex.devices(), 1);
    assert_eq!(flow_features(&r, Side::Orig).0[idx::PL_MAX], f[idx::PL_MAX]);
}

/// Retiring idle contexts bounds their number on a long run (a new spoofed-looking local
/// source every second for two hours) and changes no feature, also for devices that come
/// back after being retired and for records that end up to `lag` behind the newest.
#[test]
fn retiring_idle_contexts_bounds_memory_and_changes_no_feature() {
    let lag = Nanos::from_secs(121);
    let mut kept = FeatureExtractor::new(FamiliarityTables::new());
    let mut retired = FeatureExtractor::new(FamiliarityTables::new());
    retired.retire_idle_contexts(lag);
    let mut peak = 0;
    for i in 0..7200u32 {
        // A returning device (every 5 minutes), a device that talks every second, and a
        // new one-off device each second.
        let t = f64::from(i);
        let mut recs = vec![
            (
                format!("10.9.{}.{}", (i >> 8) & 255, i & 255),
                Addr::v4([10, 9, (i >> 8) as u8, i as u8]),
                t,
            ),
            ("busy".to_string(), v4(192, 168, 1, 2), t),
        ];
        if i % 300 == 0 {
            recs.push(("returning".to_string(), v4(192, 168, 1, 3), t));
        }
        // A record that ended `lag` minus a second ago (an idle-timed-out flow).
        if i % 97 == 0 && t > 121.0 {
            recs.push(("busy".to_string(), v4(192, 168, 1, 2), t - 120.0));
        }
        for (id, addr, ts) in recs {
            let r = at(
                rec(
                    proto::UDP,
                    (addr, 4000),
                    (v4(192, 168, 1, 200), (i % 7) as u16 + 1),
                ),
                ts,
            );
            let device = DeviceRef {
                id: &id,
                class: DeviceClass::Plug,
            };
            let a = kept.extract(&r, Side::Orig, &device).0;
            let b = retired.extract(&r, Side::Orig, &device).0;
            assert_eq!(a, b, "record {i} of {id}");
        }
        peak = peak.max(retired.devices());
    }
    assert_eq!(kept.devices(), 7200 + 2);
    // 181 s of retention plus up to a minute between sweeps, one new device a second.
    assert!(peak <= 181 + 60 + 3, "peak {peak} contexts");
}

/// The table-backed `ln_1p` is bitwise `f64::ln_1p`: on every table entry, just past it,
/// on signed zeros, fractions, huge, infinite and NaN inputs, and on random bit patterns.
#[test]
fn table_ln_1p_is_bitwise_libm() {
    let same = |x: f64| {
        let (a, b) = (super::ln_1p(x), x.ln_1p());
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "ln_1p({x:e}) = {a:e}, libm {b:e}"
        );
    };
    for n in 0..5000u32 {
        same(f64::from(n));
        same(f64::from(n) + 0.5);
        same(-f64::from(n));
    }
    for x in [
        -0.0,
        0.0,
        1e-300,
        2047.999,
        2048.0,
        1e300,
        f64::INFINITY,
        f64::NAN,
    ] {
        same(x);
    }
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..100_000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        same(f64::from_bits(s));
    }
}
