//! A TCP connection as seen at the capture point: three-way handshake with MSS/SACK/
//! window-scale options, sequence and acknowledgement numbers that advance with the data,
//! MSS segmentation, delayed ACKs (every second segment, or after `ack_delay`, unless
//! data in the other direction carries the ACK first), FIN/ACK teardown and RST.
//!
//! Times are capture times. `lat[side]` is how long after a packet of the other side is
//! captured that `side` reacts to it (tiny for a local device, the RTT for an Internet
//! peer seen from the LAN).

use super::engine::Out;
use super::net::Link;
use super::wire::{self, Tcp, ACK, FIN, PSH, RST, SYN};

/// SYN options of a Linux stack without timestamps: MSS 1460, NOP, NOP, SACK-permitted,
/// NOP, window scale 7.
pub const SYN_OPTIONS: [u8; 12] = [2, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7];

/// Client side index.
pub const CLIENT: usize = 0;
/// Server side index.
pub const SERVER: usize = 1;

/// State of one TCP connection between `link.a` (client, side 0) and `link.b` (server,
/// side 1).
#[derive(Debug, Clone)]
pub struct TcpConn {
    /// The path; `a` is the client.
    pub link: Link,
    /// Ports `[client, server]`.
    pub port: [u16; 2],
    /// Next sequence number each side sends.
    nxt: [u32; 2],
    /// Next sequence number each side expects (the ACK value it sends).
    rcv: [u32; 2],
    /// Received, not yet acknowledged segments per side.
    pend: [u32; 2],
    /// Capture time of the first unacknowledged segment per side.
    pend_t: [u64; 2],
    /// Reaction latency per side, µs.
    pub lat: [u64; 2],
    /// Last emission time per side.
    last: [u64; 2],
    /// Window field after the handshake (scaled by 2^7).
    win: [u16; 2],
    /// Maximum segment payload.
    pub mss: usize,
    /// Delayed-ACK timeout per side, µs (40 ms Linux, 200 ms Windows).
    pub ack_delay: [u64; 2],
    /// Gap between back-to-back segments of one send, µs.
    pub seg_gap: u64,
    /// Whether the connection finished (FIN exchange or RST).
    pub closed: bool,
}

impl TcpConn {
    /// A connection that has not yet sent its SYN.
    pub fn new(link: Link, cport: u16, sport: u16, isn: [u32; 2], lat: [u64; 2]) -> Self {
        TcpConn {
            link,
            port: [cport, sport],
            nxt: isn,
            rcv: [0, 0],
            pend: [0, 0],
            pend_t: [0, 0],
            lat,
            last: [0, 0],
            win: [502, 509],
            mss: 1460,
            ack_delay: [40_000, 40_000],
            seg_gap: 30,
            closed: false,
        }
    }

    /// Emits one segment from `side` at (not before) `t`; returns the emission time.
    fn emit(
        &mut self,
        out: &mut Out,
        side: usize,
        t: u64,
        flags: u8,
        data: &[u8],
        opts: &[u8],
    ) -> u64 {
        let t = t.max(self.last[side] + 1);
        let o = 1 - side;
        let window = if flags & SYN != 0 {
            64240
        } else {
            self.win[side]
        };
        let seg = Tcp {
            sport: self.port[side],
            dport: self.port[o],
            seq: self.nxt[side],
            ack: if flags & ACK != 0 { self.rcv[side] } else { 0 },
            flags,
            window,
            options: opts,
        };
        let from_a = side == CLIENT;
        let id = out.next_ipid();
        let f = wire::tcp_v4(
            &self.link.l2(from_a),
            &self.link.v4(from_a, id, true),
            &seg,
            data,
        );
        out.push(t, f);
        let adv = data.len() as u32 + u32::from(flags & (SYN | FIN) != 0);
        self.nxt[side] = self.nxt[side].wrapping_add(adv);
        self.last[side] = t;
        if flags & ACK != 0 {
            self.pend[side] = 0;
        }
        t
    }

    /// Sends a pure ACK from `side` if its delayed ACK falls due at or before `t`.
    fn overdue(&mut self, out: &mut Out, side: usize, t: u64) {
        if self.pend[side] > 0 {
            let due = self.pend_t[side] + self.lat[side] + self.ack_delay[side];
            if due <= t {
                self.emit(out, side, due, ACK, &[], &[]);
            }
        }
    }

    /// Three-way handshake starting at `t`; returns the time of the client's ACK.
    pub fn connect(&mut self, out: &mut Out, t: u64) -> u64 {
        let t1 = self.emit(out, CLIENT, t, SYN, &[], &SYN_OPTIONS);
        self.rcv[SERVER] = self.nxt[CLIENT];
        let t2 = self.emit(
            out,
            SERVER,
            t1 + self.lat[SERVER],
            SYN | ACK,
            &[],
            &SYN_OPTIONS,
        );
        self.rcv[CLIENT] = self.nxt[SERVER];
        self.emit(out, CLIENT, t2 + self.lat[CLIENT], ACK, &[], &[])
    }

    /// Sends `data` from `side` starting at `t`, split into MSS segments `seg_gap` apart;
    /// the receiver ACKs every second segment. Returns the time of the last segment.
    pub fn send(&mut self, out: &mut Out, side: usize, t: u64, data: &[u8]) -> u64 {
        let gap = self.seg_gap;
        self.send_paced(out, side, t, data, gap)
    }

    /// Like [`TcpConn::send`] with an explicit gap between segments.
    pub fn send_paced(&mut self, out: &mut Out, side: usize, t: u64, data: &[u8], gap: u64) -> u64 {
        let o = 1 - side;
        let mut ts = t;
        let n = data.len().div_ceil(self.mss);
        for (i, chunk) in data.chunks(self.mss).enumerate() {
            if i > 0 {
                ts += gap;
            }
            self.overdue(out, side, ts);
            self.overdue(out, o, ts);
            let flags = if i + 1 == n { ACK | PSH } else { ACK };
            ts = self.emit(out, side, ts, flags, chunk, &[]);
            self.rcv[o] = self.nxt[side];
            self.pend[o] += 1;
            if self.pend[o] == 1 {
                self.pend_t[o] = ts;
            }
            if self.pend[o] >= 2 {
                let at = ts + self.lat[o];
                self.emit(out, o, at, ACK, &[], &[]);
            }
        }
        ts
    }

    /// The earliest time `side` can react to the other side's last packet.
    pub fn react(&self, side: usize) -> u64 {
        self.last[1 - side] + self.lat[side]
    }

    /// Time of the last packet emitted on this connection.
    pub fn last_time(&self) -> u64 {
        self.last[0].max(self.last[1])
    }

    /// Sends the pending delayed ACKs (call when no more data follows within the delay).
    pub fn settle(&mut self, out: &mut Out) -> u64 {
        for side in [CLIENT, SERVER] {
            if self.pend[side] > 0 {
                let due = self.pend_t[side] + self.lat[side] + self.ack_delay[side];
                self.emit(out, side, due, ACK, &[], &[]);
            }
        }
        self.last_time()
    }

    /// FIN/ACK from `side` at `t`, FIN/ACK from the other side, final ACK. Returns the
    /// time of the final ACK.
    pub fn close(&mut self, out: &mut Out, side: usize, t: u64) -> u64 {
        let o = 1 - side;
        self.overdue(out, side, t);
        self.overdue(out, o, t);
        let t1 = self.emit(out, side, t, FIN | ACK, &[], &[]);
        self.rcv[o] = self.nxt[side];
        let t2 = self.emit(out, o, t1 + self.lat[o], FIN | ACK, &[], &[]);
        self.rcv[side] = self.nxt[o];
        self.closed = true;
        self.emit(out, side, t2 + self.lat[side], ACK, &[], &[])
    }

    /// RST/ACK from `side` at `t` (ends the flow).
    pub fn reset(&mut self, out: &mut Out, side: usize, t: u64) -> u64 {
        self.closed = true;
        self.emit(out, side, t, RST | ACK, &[], &[])
    }
}

/// Emits a stand-alone TCP segment (raw sockets of scanners and floods).
#[allow(clippy::too_many_arguments)]
pub fn raw_segment(
    out: &mut Out,
    link: &Link,
    from_a: bool,
    t: u64,
    ip_id: u16,
    df: bool,
    tcp: &Tcp<'_>,
    data: &[u8],
) {
    let f = wire::tcp_v4(&link.l2(from_a), &link.v4(from_a, ip_id, df), tcp, data);
    out.push(t, f);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::engine::Tag;
    use crate::sim::net::Ep;
    use std::net::Ipv4Addr;

    fn conn() -> TcpConn {
        let link = Link {
            a: Ep {
                mac: [2, 0, 0, 0, 0, 1],
                ip: Ipv4Addr::new(10, 0, 0, 1),
                ttl: 64,
            },
            b: Ep {
                mac: [2, 0, 0, 0, 0, 2],
                ip: Ipv4Addr::new(10, 0, 0, 2),
                ttl: 64,
            },
            vlan: None,
        };
        TcpConn::new(link, 40000, 502, [1000, 5000], [100, 1000])
    }

    fn seg(f: &[u8]) -> (u32, u32, u8, usize) {
        let t = &f[34..];
        let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
        let ip_len = u16::from_be_bytes([f[16], f[17]]) as usize;
        let hl = usize::from(t[12] >> 4) * 4;
        (seq, ack, t[13], ip_len - 20 - hl)
    }

    #[test]
    fn handshake_request_response_close() {
        let mut c = conn();
        let mut out = Out::new(0, Tag::benign(0), 0);
        let t = c.connect(&mut out, 1_000);
        let t = c.send(&mut out, CLIENT, t + 10, &[0u8; 12]);
        let t = c.send(&mut out, SERVER, t + c.lat[SERVER], &[0u8; 29]);
        c.settle(&mut out);
        c.close(&mut out, CLIENT, t + 100_000);
        let v: Vec<_> = out.pending().iter().map(|p| seg(&p.frame)).collect();
        assert_eq!(v[0], (1000, 0, SYN, 0));
        assert_eq!(v[1], (5000, 1001, SYN | ACK, 0));
        assert_eq!(v[2], (1001, 5001, ACK, 0));
        assert_eq!(v[3], (1001, 5001, ACK | PSH, 12));
        assert_eq!(v[4], (5001, 1013, ACK | PSH, 29));
        assert_eq!(v[5], (1013, 5030, ACK, 0)); // delayed ACK of the response
        assert_eq!(v[6], (1013, 5030, FIN | ACK, 0));
        assert_eq!(v[7], (5030, 1014, FIN | ACK, 0));
        assert_eq!(v[8], (1014, 5031, ACK, 0));
        // delayed ACK 40 ms after the response (+ client latency)
        assert_eq!(out.pending()[5].ts - out.pending()[4].ts, 40_000 + 100);
    }

    #[test]
    fn bulk_send_acks_every_second_segment() {
        let mut c = conn();
        let mut out = Out::new(0, Tag::benign(0), 0);
        let t = c.connect(&mut out, 0);
        c.send(&mut out, CLIENT, t + 10, &vec![0u8; 1460 * 4]);
        c.settle(&mut out);
        let acks: Vec<_> = out.pending()[3..]
            .iter()
            .map(|p| seg(&p.frame))
            .filter(|s| s.3 == 0)
            .map(|s| s.1)
            .collect();
        assert_eq!(acks, vec![1001 + 2920, 1001 + 5840]);
    }
}
