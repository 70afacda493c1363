//! Steady-state allocation proof (issue 2, "no heap allocation per packet"): a counting
//! global allocator shows that once the flows exist and the flow and fragment tables are
//! at their peak, pushing many more packets of those flows through `Engine::on_frame`
//! (decode + fragment attribution + flow table) performs no heap allocation at all; and
//! that the whole replay path, native capture reader included, stays allocation-free while
//! a realistic capture (`benchgen`) is replayed a second time over a warmed-up engine.
//!
//! The tests in this file share one allocation counter, so they run one at a time (a
//! mutex), and the counter counts every thread's allocations: the measured windows contain
//! no other work.

use flowsentry::capture::NativeReader;
use flowsentry::flow::{EndReason, FlowConfig};
use flowsentry::packet::{Frame, LinkType};
use flowsentry::pipeline::Engine;
use flowsentry::time::{Nanos, Timestamp};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counts alloc, alloc_zeroed and realloc calls of every thread.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

// SAFETY: every operation is forwarded to `System`; we only count.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.load(Ordering::SeqCst)
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn counter_counts() {
    let _g = serial();
    let before = allocs();
    let v: Vec<u64> = std::hint::black_box(Vec::with_capacity(16));
    let mid = allocs();
    let mut v = v;
    v.extend(0..1000u64);
    std::hint::black_box(&v);
    let after = allocs();
    assert!(
        mid > before,
        "the counting allocator did not see an allocation"
    );
    assert!(
        after > mid,
        "the counting allocator did not see a reallocation"
    );
}

// ---- a small frame builder (no checksums: the decoder does not verify them) ----

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn eth(out: &mut Vec<u8>, to_server: bool, vlan: Option<u16>, ethertype: u16) {
    let (s, d) = if to_server {
        (CLIENT_MAC, SERVER_MAC)
    } else {
        (SERVER_MAC, CLIENT_MAC)
    };
    out.extend_from_slice(&d);
    out.extend_from_slice(&s);
    if let Some(v) = vlan {
        out.extend_from_slice(&0x8100u16.to_be_bytes());
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&ethertype.to_be_bytes());
}

fn ipv4(out: &mut Vec<u8>, proto: u8, src: [u8; 4], dst: [u8; 4], l4_len: usize, frag: u16) {
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]); // id, patched per round for fragments
    out.extend_from_slice(&frag.to_be_bytes());
    out.extend_from_slice(&[64, proto, 0, 0]);
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
}

fn ipv6(out: &mut Vec<u8>, proto: u8, src: [u8; 16], dst: [u8; 16], l4_len: usize) {
    out.extend_from_slice(&0x6000_0000u32.to_be_bytes());
    out.extend_from_slice(&(l4_len as u16).to_be_bytes());
    out.extend_from_slice(&[proto, 64]);
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
}

fn tcp(out: &mut Vec<u8>, sp: u16, dp: u16, flags: u8, payload: &[u8]) {
    out.extend_from_slice(&sp.to_be_bytes());
    out.extend_from_slice(&dp.to_be_bytes());
    out.extend_from_slice(&[0; 8]); // seq, ack (seq patched per round)
    out.extend_from_slice(&[5 << 4, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

fn udp(out: &mut Vec<u8>, sp: u16, dp: u16, payload: &[u8]) {
    out.extend_from_slice(&sp.to_be_bytes());
    out.extend_from_slice(&dp.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
}

const DNS_QUERY: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07sensor1\x05plant\x07example\x00\x00\x01\x00\x01";
const MODBUS_READ: &[u8] = &[0, 1, 0, 0, 0, 6, 1, 3, 0, 10, 0, 4];

/// One prebuilt frame and where its per-round fields live.
struct Proto {
    bytes: Vec<u8>,
    /// Offset of a TCP sequence number to advance by `seq_step` each round.
    seq_at: Option<usize>,
    seq_step: u32,
    /// Offset of an IPv4 identification to change each round (fragments).
    id_at: Option<usize>,
}

/// Frames of one flow: the opening (sent once) and one round of traffic (sent repeatedly).
struct FlowFrames {
    open: Vec<Proto>,
    round: Vec<Proto>,
}

fn v4(i: u32, server: bool) -> [u8; 4] {
    if server {
        [192, 168, 1, (i % 200) as u8 + 1]
    } else {
        let b = i.to_be_bytes();
        [10, b[1], b[2], b[3]]
    }
}

fn v6(i: u32, server: bool) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[1] = u8::from(server);
    a[12..].copy_from_slice(&i.to_be_bytes());
    a
}

fn proto(bytes: Vec<u8>) -> Proto {
    Proto {
        bytes,
        seq_at: None,
        seq_step: 0,
        id_at: None,
    }
}

/// TCP flow `i` (IPv4 or IPv6, optional VLAN): handshake, then request/response/ACK.
fn tcp_flow(i: u32, six: bool, vlan: Option<u16>, port: u16, req: &[u8]) -> FlowFrames {
    let cport = 10_000 + (i % 50_000) as u16;
    let seg = |to_server: bool, flags: u8, payload: &[u8]| -> Proto {
        let mut b = Vec::new();
        eth(&mut b, to_server, vlan, if six { 0x86dd } else { 0x0800 });
        let l4 = 20 + payload.len();
        if six {
            let (s, d) = (v6(i, !to_server), v6(i, to_server));
            ipv6(&mut b, 6, s, d, l4);
        } else {
            let (s, d) = (v4(i, !to_server), v4(i, to_server));
            ipv4(&mut b, 6, s, d, l4, 0x4000);
        }
        let at = b.len() + 4;
        let (sp, dp) = if to_server {
            (cport, port)
        } else {
            (port, cport)
        };
        tcp(&mut b, sp, dp, flags, payload);
        Proto {
            bytes: b,
            seq_at: Some(at),
            seq_step: payload.len() as u32,
            id_at: None,
        }
    };
    FlowFrames {
        open: vec![
            seg(true, 0x02, &[]),
            seg(false, 0x12, &[]),
            seg(true, 0x10, &[]),
        ],
        round: vec![
            seg(true, 0x18, req),
            seg(false, 0x18, &[0x55; 40]),
            seg(true, 0x10, &[]),
        ],
    }
}

fn udp_flow(i: u32, six: bool, port: u16, req: &[u8]) -> FlowFrames {
    let cport = 10_000 + (i % 50_000) as u16;
    let dgram = |to_server: bool, payload: &[u8]| -> Proto {
        let mut b = Vec::new();
        eth(&mut b, to_server, None, if six { 0x86dd } else { 0x0800 });
        if six {
            ipv6(
                &mut b,
                17,
                v6(i, !to_server),
                v6(i, to_server),
                8 + payload.len(),
            );
        } else {
            ipv4(
                &mut b,
                17,
                v4(i, !to_server),
                v4(i, to_server),
                8 + payload.len(),
                0,
            );
        }
        let (sp, dp) = if to_server {
            (cport, port)
        } else {
            (port, cport)
        };
        udp(&mut b, sp, dp, payload);
        proto(b)
    };
    FlowFrames {
        open: Vec::new(),
        round: vec![dgram(true, req), dgram(false, &[0x33; 48])],
    }
}

fn icmp_flow(i: u32) -> FlowFrames {
    let echo = |to_server: bool| -> Proto {
        let mut b = Vec::new();
        eth(&mut b, to_server, Some(7), 0x0800);
        ipv4(&mut b, 1, v4(i, !to_server), v4(i, to_server), 40, 0);
        b.extend_from_slice(&[if to_server { 8 } else { 0 }, 0, 0, 0]);
        b.extend_from_slice(&(i as u16).to_be_bytes());
        b.extend_from_slice(&[0, 1]);
        b.extend_from_slice(&[0xab; 32]);
        proto(b)
    };
    FlowFrames {
        open: Vec::new(),
        round: vec![echo(true), echo(false)],
    }
}

/// UDP over fragmented IPv4: first fragment (UDP header, more-fragments) and a last
/// fragment, with a new IP id every round, then an unfragmented reply.
fn frag_flow(i: u32) -> FlowFrames {
    let cport = 10_000 + (i % 50_000) as u16;
    let (c, s) = (v4(i, false), v4(i, true));
    let mut first = Vec::new();
    eth(&mut first, true, None, 0x0800);
    let id_at = first.len() + 4;
    ipv4(&mut first, 17, c, s, 8 + 64, 0x2000);
    udp(&mut first, cport, 7000, &[0x11; 64]);
    let mut last = Vec::new();
    eth(&mut last, true, None, 0x0800);
    let id_at2 = last.len() + 4;
    ipv4(&mut last, 17, c, s, 40, 9); // offset 9 * 8 = 72 bytes
    last.extend_from_slice(&[0x22; 40]);
    let mut reply = Vec::new();
    eth(&mut reply, false, None, 0x0800);
    ipv4(&mut reply, 17, s, c, 8 + 16, 0);
    udp(&mut reply, 7000, cport, &[0x44; 16]);
    FlowFrames {
        open: Vec::new(),
        round: vec![
            Proto {
                bytes: first,
                seq_at: None,
                seq_step: 0,
                id_at: Some(id_at),
            },
            Proto {
                bytes: last,
                seq_at: None,
                seq_step: 0,
                id_at: Some(id_at2),
            },
            proto(reply),
        ],
    }
}

fn build_flows(n: u32) -> Vec<FlowFrames> {
    (0..n)
        .map(|i| match i % 8 {
            0 => tcp_flow(i, false, None, 443, &[0x17; 60]),
            1 => tcp_flow(i, false, Some(100), 1883, &[0x30; 24]),
            2 => udp_flow(i, false, 53, DNS_QUERY),
            3 => udp_flow(i, true, 5683, &[0x40; 20]),
            4 => icmp_flow(i),
            5 => tcp_flow(i, true, None, 502, MODBUS_READ),
            6 => frag_flow(i),
            _ => tcp_flow(i, false, Some(200), 80, &[0x47; 90]),
        })
        .collect()
}

/// Sends every flow's round `rounds` times (round-robin over flows), one microsecond of
/// packet time per frame; returns frames sent.
fn send_rounds(
    eng: &mut Engine,
    flows: &mut [FlowFrames],
    rounds: u32,
    round0: u32,
    ts: &mut i64,
    records: &mut u64,
) -> u64 {
    let mut n = 0u64;
    for r in round0..round0 + rounds {
        for f in flows.iter_mut() {
            for p in f.round.iter_mut() {
                if let Some(at) = p.seq_at {
                    let seq = 1000u32.wrapping_add(r.wrapping_mul(p.seq_step));
                    p.bytes[at..at + 4].copy_from_slice(&seq.to_be_bytes());
                }
                if let Some(at) = p.id_at {
                    p.bytes[at..at + 2].copy_from_slice(&(r as u16).to_be_bytes());
                }
                *ts += 1_000;
                let frame = Frame {
                    ts: Timestamp(*ts),
                    link: LinkType::Ethernet,
                    orig_len: p.bytes.len() as u32,
                    data: &p.bytes,
                };
                eng.on_frame(&frame);
                n += 1;
            }
        }
        *records += eng.drain_finished().count() as u64;
    }
    n
}

#[test]
fn existing_flows_allocate_nothing() {
    let _g = serial();
    const FLOWS: u32 = 16_384;
    let mut flows = build_flows(FLOWS);
    // A small fragment table, so that it is full (and evicting) in the measured phase.
    let mut eng = Engine::new(FlowConfig::default(), 1_024, Nanos::from_secs(30));
    let mut ts: i64 = 1_700_000_000_000_000_000;
    let mut records = 0u64;
    // Warm-up: open every flow, then a few rounds so every structure reaches its peak.
    for f in &flows {
        for p in &f.open {
            ts += 1_000;
            eng.on_frame(&Frame {
                ts: Timestamp(ts),
                link: LinkType::Ethernet,
                orig_len: p.bytes.len() as u32,
                data: &p.bytes,
            });
        }
    }
    send_rounds(&mut eng, &mut flows, 4, 0, &mut ts, &mut records);
    assert_eq!(eng.flows().len(), FLOWS as usize, "every flow is open");
    assert_eq!(records, 0, "no flow ended during warm-up");
    let frames_before = eng.stats().frames;

    let a0 = allocs();
    let sent = send_rounds(&mut eng, &mut flows, 20, 4, &mut ts, &mut records);
    let a1 = allocs();

    assert!(sent > 500_000, "measured {sent} frames");
    assert_eq!(eng.stats().frames - frames_before, sent);
    assert_eq!(eng.stats().decode_errors_total(), 0);
    assert_eq!(eng.flows().len(), FLOWS as usize, "flows stayed open");
    assert_eq!(records, 0);
    let fc = eng.stats().fragments;
    assert!(fc.attributed > 40_000, "fragments were attributed: {fc:?}");
    eng.sync_counters();
    assert!(
        eng.stats().fragments.evicted > 0,
        "the fragment table was full"
    );
    assert_eq!(
        a1 - a0,
        0,
        "{} heap allocations while processing {sent} packets of existing flows",
        a1 - a0
    );
    // The records are all still there at the end.
    eng.flush(EndReason::EndOfInput);
    assert_eq!(eng.drain_finished().count(), FLOWS as usize);
}

/// The whole read path: a realistic capture (flows starting, ending by FIN and timeouts)
/// read from memory by the native reader into a warmed-up engine. The second replay,
/// shifted in time so every flow of the first one has expired, reaches the same table
/// sizes, so reading and processing it must not allocate.
#[test]
fn second_replay_of_a_capture_allocates_nothing() {
    let _g = serial();
    let mut pcap = Vec::new();
    let summary = flowsentry::benchgen::generate(&mut pcap, 300_000, 6_000, 42).expect("generate");
    let shift = Nanos::from_secs(3_600 + summary.duration_us / 1_000_000);
    let mut eng = Engine::new(FlowConfig::default(), 65_536, Nanos::from_secs(30));
    let mut records = 0u64;
    let pass = |eng: &mut Engine, offset: Nanos, measure: bool| -> (u64, u64, u64) {
        let mut rd = NativeReader::from_reader(
            "bench.pcap".into(),
            Box::new(std::io::Cursor::new(pcap.clone())),
            None,
        )
        .expect("open");
        let (mut a, mut ended) = (0u64, 0u64);
        loop {
            let a0 = allocs();
            let got = rd
                .dispatch(4096, |f| {
                    let mut f = *f;
                    f.ts = f.ts.plus(offset);
                    eng.on_frame(&f);
                })
                .expect("read");
            ended += eng.drain_finished().count() as u64;
            if measure {
                a += allocs() - a0;
            }
            if got == 0 {
                break;
            }
        }
        (rd.counters().frames, a, ended)
    };
    let (n1, _, ended) = pass(&mut eng, Nanos(0), false);
    records += ended;
    // End the first replay's flows so the table is empty but at its peak size.
    eng.flush(EndReason::EndOfInput);
    records += eng.drain_finished().count() as u64;
    let (n2, a, _) = pass(&mut eng, shift, true);
    assert_eq!((n1, n2), (300_000, 300_000));
    assert_eq!(eng.stats().decode_errors_total(), 0);
    assert!(
        records >= 6_000,
        "the first replay's flows ended ({records})"
    );
    assert_eq!(
        a, 0,
        "{a} heap allocations while reading and processing {n2} frames of a second replay"
    );
}
