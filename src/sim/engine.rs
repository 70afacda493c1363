//! The deterministic scheduler. Traffic comes from [`Stream`]s (one per device pattern or
//! attack, each with its own PRNG); a priority queue fires the stream with the earliest
//! next event (ties: lowest stream index). Firing may emit packets at or after the event
//! time into the stream's [`Out`]; they go to an output heap ordered by
//! `(timestamp, stream index, per-stream sequence)`. Packets older than the next event
//! time are final and are handed to the [`Sink`] in that total order, so the output is
//! byte-identical for the same seed and parameters.

use super::wire::{self, Mac};
use super::SimError;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Ground-truth label of a packet (and of the flow that contains it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Label {
    /// Normal traffic.
    Benign,
    /// Mirai telnet SYN scan.
    MiraiScan,
    /// Telnet credential brute force.
    TelnetBruteforce,
    /// Mirai command-and-control session.
    MiraiC2,
    /// SYN flood.
    SynFlood,
    /// UDP flood.
    UdpFlood,
    /// ACK flood.
    AckFlood,
    /// HTTP GET flood.
    HttpFlood,
    /// Vertical port scan (many ports, one host).
    PortScanVertical,
    /// Horizontal port scan (one port, many hosts).
    PortScanHorizontal,
    /// Bulk upload to an unseen host.
    Exfiltration,
    /// Periodic HTTPS beaconing with jitter.
    C2Beacon,
    /// Data over DNS queries.
    DnsTunnel,
    /// Modbus writes from an unexpected master.
    ModbusWrite,
    /// ARP cache poisoning and the traffic it diverts.
    ArpSpoof,
}

impl Label {
    /// All attack labels, in a fixed order.
    pub const ATTACKS: [Label; 14] = [
        Label::MiraiScan,
        Label::TelnetBruteforce,
        Label::MiraiC2,
        Label::SynFlood,
        Label::UdpFlood,
        Label::AckFlood,
        Label::HttpFlood,
        Label::PortScanVertical,
        Label::PortScanHorizontal,
        Label::Exfiltration,
        Label::C2Beacon,
        Label::DnsTunnel,
        Label::ModbusWrite,
        Label::ArpSpoof,
    ];

    /// The snake_case name used in labels.jsonl and episodes.jsonl.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Benign => "benign",
            Label::MiraiScan => "mirai_scan",
            Label::TelnetBruteforce => "telnet_bruteforce",
            Label::MiraiC2 => "mirai_c2",
            Label::SynFlood => "syn_flood",
            Label::UdpFlood => "udp_flood",
            Label::AckFlood => "ack_flood",
            Label::HttpFlood => "http_flood",
            Label::PortScanVertical => "port_scan_vertical",
            Label::PortScanHorizontal => "port_scan_horizontal",
            Label::Exfiltration => "exfiltration",
            Label::C2Beacon => "c2_beacon",
            Label::DnsTunnel => "dns_tunnel",
            Label::ModbusWrite => "modbus_write",
            Label::ArpSpoof => "arp_spoof",
        }
    }
}

/// Attribution of a packet: the monitored device it is about, its label and episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// Index into the scenario's device table.
    pub device: u16,
    /// Ground-truth label.
    pub label: Label,
    /// Episode id (0 = none).
    pub episode: u32,
}

impl Tag {
    /// A benign packet of `device`.
    pub fn benign(device: u16) -> Self {
        Tag {
            device,
            label: Label::Benign,
            episode: 0,
        }
    }
}

/// One emitted frame waiting in the output heap.
#[derive(Debug)]
pub struct Pkt {
    /// Capture time, µs since the Unix epoch.
    pub ts: u64,
    /// Index of the emitting stream.
    pub stream: u32,
    /// Emission sequence number within the stream.
    pub seq: u64,
    /// Attribution.
    pub tag: Tag,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
}

impl Pkt {
    fn key(&self) -> (u64, u32, u64) {
        (self.ts, self.stream, self.seq)
    }
}
impl PartialEq for Pkt {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Pkt {}
impl PartialOrd for Pkt {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pkt {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// Fires of one stream at one microsecond before the scheduler moves it on (livelock guard).
const MAX_SAME_TIME_FIRES: u32 = 16;

/// A man-in-the-middle relay installed on a stream's output: frames between MACs `a` and
/// `b` inside one of `windows` are sent to `attacker` and forwarded by it (TTL − 1).
#[derive(Debug, Clone)]
pub struct Mitm {
    /// One victim's MAC.
    pub a: Mac,
    /// The other victim's MAC.
    pub b: Mac,
    /// The attacker's MAC.
    pub attacker: Mac,
    /// Active windows `(start, end, episode id)` in µs.
    pub windows: Vec<(u64, u64, u32)>,
    /// Forwarding delay of the attacker in µs.
    pub delay_us: u64,
}

/// Counts of one named pattern occurrence (for `--summary` periods).
#[derive(Debug, Clone)]
pub struct Mark {
    /// Pattern name.
    pub name: &'static str,
    /// Occurrences.
    pub count: u64,
    /// Time of the first occurrence.
    pub first: u64,
    /// Time of the last occurrence.
    pub last: u64,
}

/// The per-stream output buffer handed to [`Stream::fire`].
#[derive(Debug)]
pub struct Out {
    /// Time of the event being fired.
    pub now: u64,
    /// Attribution applied to pushed packets.
    pub tag: Tag,
    /// Optional man-in-the-middle relay.
    pub mitm: Option<Mitm>,
    stream: u32,
    seq: u64,
    ipid: u16,
    pkts: Vec<Pkt>,
    marks: Vec<Mark>,
}

impl Out {
    /// A fresh buffer for stream `stream` whose packets carry `tag` by default.
    pub fn new(stream: u32, tag: Tag, ipid: u16) -> Self {
        Out {
            now: 0,
            tag,
            mitm: None,
            stream,
            seq: 0,
            ipid,
            pkts: Vec::new(),
            marks: Vec::new(),
        }
    }

    /// The next IPv4 identification value of this stream.
    pub fn next_ipid(&mut self) -> u16 {
        self.ipid = self.ipid.wrapping_add(1);
        self.ipid
    }

    /// Records one occurrence of pattern `name` at the current event time.
    pub fn mark(&mut self, name: &'static str) {
        let now = self.now;
        if let Some(m) = self.marks.iter_mut().find(|m| m.name == name) {
            m.count += 1;
            m.last = now;
        } else {
            self.marks.push(Mark {
                name,
                count: 1,
                first: now,
                last: now,
            });
        }
    }

    /// Packets emitted and not yet collected by the scheduler.
    pub fn pending(&self) -> &[Pkt] {
        &self.pkts
    }

    /// Pattern occurrence counts recorded so far.
    pub fn marks(&self) -> &[Mark] {
        &self.marks
    }

    /// Emits `frame` at `ts` with the current tag (through the relay if one applies).
    pub fn push(&mut self, ts: u64, frame: Vec<u8>) {
        let tag = self.tag;
        self.push_tagged(ts, frame, tag);
    }

    /// Emits `frame` at `ts` with an explicit tag.
    pub fn push_tagged(&mut self, ts: u64, mut frame: Vec<u8>, tag: Tag) {
        if let Some(m) = &self.mitm {
            if frame.len() >= 12 {
                let dst: Mac = [frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]];
                let src: Mac = [frame[6], frame[7], frame[8], frame[9], frame[10], frame[11]];
                let between = (src == m.a && dst == m.b) || (src == m.b && dst == m.a);
                if let Some(&(_, _, ep)) =
                    m.windows.iter().find(|w| between && ts >= w.0 && ts < w.1)
                {
                    let attacker = m.attacker;
                    let delay = m.delay_us;
                    let t2 = Tag {
                        label: Label::ArpSpoof,
                        episode: ep,
                        ..tag
                    };
                    let mut fwd = frame.clone();
                    frame[0..6].copy_from_slice(&attacker);
                    wire::rewrite_forwarded(&mut fwd, attacker, dst, 1);
                    self.raw_push(ts, frame, t2);
                    self.raw_push(ts + delay, fwd, t2);
                    return;
                }
            }
        }
        self.raw_push(ts, frame, tag);
    }

    fn raw_push(&mut self, ts: u64, frame: Vec<u8>, tag: Tag) {
        self.seq += 1;
        self.pkts.push(Pkt {
            ts,
            stream: self.stream,
            seq: self.seq,
            tag,
            frame,
        });
    }
}

/// A source of traffic driven by the scheduler.
pub trait Stream {
    /// Time of the next event, or `None` when the stream is finished.
    fn next_time(&self) -> Option<u64>;
    /// Handles the event at `out.now` (emitting packets at or after it) and advances.
    fn fire(&mut self, out: &mut Out);
}

/// Receives the merged packets in their final order.
pub trait Sink {
    /// One packet.
    fn packet(&mut self, pkt: &Pkt) -> Result<(), SimError>;
}

/// A stream together with its output buffer and display name.
pub struct Slot {
    /// Stream name (also its PRNG id).
    pub name: String,
    /// Device class or attack name the stream belongs to (for the summary).
    pub group: String,
    /// The stream.
    pub stream: Box<dyn Stream>,
    /// Its output buffer.
    pub out: Out,
}

/// Runs all streams from their first event until `end_us` (exclusive) or until `limit`
/// packets were delivered, delivering packets to `sink`. Returns packets delivered.
pub fn run(
    slots: &mut [Slot],
    end_us: u64,
    limit: Option<u64>,
    sink: &mut dyn Sink,
) -> Result<u64, SimError> {
    let mut queue: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();
    for (i, s) in slots.iter().enumerate() {
        if let Some(t) = s.stream.next_time() {
            if t < end_us {
                queue.push(Reverse((t, i as u32)));
            }
        }
    }
    let mut heap: BinaryHeap<Reverse<Pkt>> = BinaryHeap::new();
    let mut delivered = 0u64;
    let limit = limit.unwrap_or(u64::MAX);
    // (stream, time, fires at that time) of the stream last fired again at the same time.
    let mut same_time: (u32, u64, u32) = (u32::MAX, 0, 0);
    while let Some(Reverse((t, i))) = queue.pop() {
        while heap.peek().is_some_and(|p| p.0.ts < t) {
            if let Some(Reverse(p)) = heap.pop() {
                if p.ts < end_us {
                    sink.packet(&p)?;
                    delivered += 1;
                    if delivered >= limit {
                        return Ok(delivered);
                    }
                }
            }
        }
        let slot = &mut slots[i as usize];
        slot.out.now = t;
        slot.stream.fire(&mut slot.out);
        for p in slot.out.pkts.drain(..) {
            heap.push(Reverse(p));
        }
        if let Some(nt) = slot.stream.next_time() {
            // Two deadlines of one stream can fall on the same microsecond (a video frame
            // and an RTSP keepalive, say): the stream is fired again at the same time for
            // the second one. A stream must still make progress, so after
            // `MAX_SAME_TIME_FIRES` fires at one time it is moved on by a microsecond.
            let nt = if nt <= t {
                if same_time.0 == i && same_time.1 == t {
                    same_time.2 += 1;
                } else {
                    same_time = (i, t, 1);
                }
                if same_time.2 < MAX_SAME_TIME_FIRES {
                    t
                } else {
                    t + 1
                }
            } else {
                nt
            };
            if nt < end_us {
                queue.push(Reverse((nt, i)));
            }
        }
    }
    while let Some(Reverse(p)) = heap.pop() {
        if p.ts < end_us {
            sink.packet(&p)?;
            delivered += 1;
            if delivered >= limit {
                break;
            }
        }
    }
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// Two deadlines that can fall on the same microsecond, handled one per fire with
    /// `==` tests (the camera's video stream does this).
    struct TwoClocks {
        a: u64,
        b: u64,
        fired: Rc<Cell<(u32, u32)>>,
    }

    impl Stream for TwoClocks {
        fn next_time(&self) -> Option<u64> {
            Some(self.a.min(self.b))
        }
        fn fire(&mut self, out: &mut Out) {
            let now = out.now;
            let (fa, fb) = self.fired.get();
            if now == self.a {
                self.fired.set((fa + 1, fb));
                self.a = now + 1_000;
            } else if now == self.b {
                self.fired.set((fa, fb + 1));
                self.b = now + 1_000;
            }
            out.push(now, vec![0u8; 14]);
        }
    }

    struct Count(u64);
    impl Sink for Count {
        fn packet(&mut self, _: &Pkt) -> Result<(), SimError> {
            self.0 += 1;
            Ok(())
        }
    }

    /// A stream whose next time never advances.
    struct Stuck;
    impl Stream for Stuck {
        fn next_time(&self) -> Option<u64> {
            Some(5)
        }
        fn fire(&mut self, out: &mut Out) {
            out.push(out.now, vec![0u8; 14]);
        }
    }

    fn slot(stream: Box<dyn Stream>) -> Vec<Slot> {
        vec![Slot {
            name: "test".into(),
            group: "test".into(),
            stream,
            out: Out::new(0, Tag::benign(0), 0),
        }]
    }

    #[test]
    fn coinciding_deadlines_both_fire_without_spinning() {
        let fired = Rc::new(Cell::new((0, 0)));
        let mut slots = slot(Box::new(TwoClocks {
            a: 10,
            b: 10,
            fired: fired.clone(),
        }));
        let mut c = Count(0);
        let n = run(&mut slots, 10_010, None, &mut c).unwrap_or_default();
        // Ten deadlines of each clock in [10, 10 010): both fire every time, and there is
        // one fire (one packet) per deadline, not one per microsecond.
        assert_eq!(fired.get(), (10, 10));
        assert_eq!(n, 20);
        assert_eq!(c.0, 20);
    }

    #[test]
    fn a_stuck_stream_is_moved_on() {
        let mut slots = slot(Box::new(Stuck));
        let mut c = Count(0);
        let n = run(&mut slots, 100, None, &mut c).unwrap_or_default();
        // From t = 5 to 99: at most MAX_SAME_TIME_FIRES fires at each microsecond.
        assert!(n <= 95 * u64::from(MAX_SAME_TIME_FIRES), "{n}");
        assert!(n >= 95, "{n}");
    }
}
