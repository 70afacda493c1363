//! TCP connection summary in Zeek's vocabulary: per-endpoint states, the `conn_state`
//! verdict (S0, S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH, SH, SHR, OTH) and the
//! `history` string (upper case = originator, lower case = responder).
//!
//! The state logic follows `base/protocols/conn/main.zeek` (`conn_state`) over the endpoint
//! states of Zeek's TCP analyzer; see `docs/events.md` for where it differs.

use crate::packet::tcp_flags::{ACK, FIN, RST, SYN};
use serde::Serialize;

/// State of one TCP endpoint, as in Zeek's `TCP_Endpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointState {
    /// Nothing sent yet.
    #[default]
    Inactive,
    /// Sent a SYN without ACK.
    SynSent,
    /// Sent a SYN with ACK.
    SynAckSent,
    /// Sent traffic without having been seen opening (mid-stream).
    Partial,
    /// Handshake completed.
    Established,
    /// Sent a FIN.
    Closed,
    /// Sent a RST.
    Reset,
}

/// Zeek `conn_state` values (plus their meaning in `docs/events.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[allow(clippy::upper_case_acronyms)]
pub enum ConnState {
    /// Connection attempt seen, no reply.
    S0,
    /// Established, not terminated.
    S1,
    /// Normal establishment and termination.
    SF,
    /// Connection attempt rejected.
    REJ,
    /// Established, originator closed, no reply FIN.
    S2,
    /// Established, responder closed, no reply FIN.
    S3,
    /// Established, originator aborted (RST).
    RSTO,
    /// Responder sent a RST.
    RSTR,
    /// Originator sent SYN then RST, no SYN-ACK seen.
    RSTOS0,
    /// Responder sent SYN-ACK then RST, no SYN seen from the originator.
    RSTRH,
    /// Originator sent SYN then FIN, no SYN-ACK seen ("half open").
    SH,
    /// Responder sent SYN-ACK then FIN, no SYN seen from the originator.
    SHR,
    /// No SYN seen, just mid-stream traffic (and every non-TCP/UDP flow).
    #[default]
    OTH,
}

impl ConnState {
    /// The Zeek spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::S0 => "S0",
            ConnState::S1 => "S1",
            ConnState::SF => "SF",
            ConnState::REJ => "REJ",
            ConnState::S2 => "S2",
            ConnState::S3 => "S3",
            ConnState::RSTO => "RSTO",
            ConnState::RSTR => "RSTR",
            ConnState::RSTOS0 => "RSTOS0",
            ConnState::RSTRH => "RSTRH",
            ConnState::SH => "SH",
            ConnState::SHR => "SHR",
            ConnState::OTH => "OTH",
        }
    }
}

/// Maximum history letters kept (each letter is recorded once per direction).
pub const HISTORY_CAP: usize = 22;

/// Zeek-style history: the first occurrence of each event letter, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    buf: [u8; HISTORY_CAP],
    len: u8,
    seen_orig: u16,
    seen_resp: u16,
}

impl Default for History {
    fn default() -> Self {
        History {
            buf: [0; HISTORY_CAP],
            len: 0,
            seen_orig: 0,
            seen_resp: 0,
        }
    }
}

/// The letters we record, in bit order for the seen-sets.
const LETTERS: &[u8; 11] = b"SHADFRTWQI^";

impl History {
    /// Records `letter` (upper case form) for the originator (`orig`) or responder.
    pub fn push(&mut self, letter: u8, orig: bool) {
        let Some(bit) = LETTERS.iter().position(|&l| l == letter) else {
            return;
        };
        let seen = if orig {
            &mut self.seen_orig
        } else {
            &mut self.seen_resp
        };
        if *seen & (1 << bit) != 0 {
            return;
        }
        *seen |= 1 << bit;
        let ch = if orig || letter == b'^' {
            letter
        } else {
            letter.to_ascii_lowercase()
        };
        if let Some(slot) = self.buf.get_mut(self.len as usize) {
            *slot = ch;
            self.len += 1;
        }
    }

    /// The history as a string slice (ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.buf.get(..self.len as usize).unwrap_or(&[])).unwrap_or("")
    }
}

/// Per-flow TCP tracking: both endpoint states plus the data needed for `T`
/// (retransmission) detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpTrack {
    /// Originator endpoint state.
    pub orig: EndpointState,
    /// Responder endpoint state.
    pub resp: EndpointState,
    /// Next expected sequence number per direction (orig, resp); valid once `seq_init` says so.
    next_seq: [u32; 2],
    seq_init: [bool; 2],
}

impl TcpTrack {
    /// Updates endpoint states and history for one packet from the originator (`from_orig`)
    /// or responder. `payload_len` is the TCP payload length, `seq` the sequence number.
    pub fn observe(
        &mut self,
        flags: u8,
        payload_len: u32,
        seq: u32,
        window: u16,
        from_orig: bool,
        history: &mut History,
    ) {
        let syn = flags & SYN != 0;
        let ack = flags & ACK != 0;
        let fin = flags & FIN != 0;
        let rst = flags & RST != 0;
        // History letters as Zeek's `update_history`: a packet with more than one of
        // SYN, FIN, RST is `I` when it has FIN and RST ("inconsistent"), else `Q`
        // (multi-flag: SYN+FIN or SYN+RST), and gets no S/H/F/R letter.
        if u8::from(syn) + u8::from(fin) + u8::from(rst) > 1 {
            history.push(if fin && rst { b'I' } else { b'Q' }, from_orig);
        } else if syn {
            history.push(if ack { b'H' } else { b'S' }, from_orig);
        } else if fin {
            history.push(b'F', from_orig);
        } else if rst {
            history.push(b'R', from_orig);
        }
        let d = usize::from(!from_orig);
        if payload_len > 0 {
            // Retransmission: payload entirely below the highest sequence already seen.
            let end = seq.wrapping_add(payload_len);
            if self.seq_init[d] && seq_le(end, self.next_seq[d]) {
                history.push(b'T', from_orig);
            } else {
                history.push(b'D', from_orig);
            }
        } else if ack && !syn && !fin && !rst {
            history.push(b'A', from_orig);
        }
        if window == 0 && !rst && !syn {
            history.push(b'W', from_orig);
        }
        let seg_end = seq
            .wrapping_add(payload_len)
            .wrapping_add(u32::from(syn) + u32::from(fin));
        if !self.seq_init[d] || seq_lt(self.next_seq[d], seg_end) {
            self.next_seq[d] = seg_end;
            self.seq_init[d] = true;
        }

        // Endpoint state machine.
        let (me, peer) = if from_orig {
            (&mut self.orig, &mut self.resp)
        } else {
            (&mut self.resp, &mut self.orig)
        };
        if rst {
            *me = EndpointState::Reset;
        } else if fin {
            *me = EndpointState::Closed;
        } else if syn && !ack {
            if *me == EndpointState::Inactive {
                *me = EndpointState::SynSent;
            }
        } else if syn && ack {
            if matches!(*me, EndpointState::Inactive | EndpointState::SynSent) {
                *me = EndpointState::SynAckSent;
            }
        } else {
            match *me {
                EndpointState::Inactive => *me = EndpointState::Partial,
                EndpointState::SynSent | EndpointState::SynAckSent
                    if matches!(
                        *peer,
                        EndpointState::SynSent
                            | EndpointState::SynAckSent
                            | EndpointState::Established
                    ) =>
                {
                    *me = EndpointState::Established;
                    if matches!(*peer, EndpointState::SynSent | EndpointState::SynAckSent) {
                        *peer = EndpointState::Established;
                    }
                }
                _ => {}
            }
        }
    }

    /// True once the responder has answered a SYN or the connection is past the handshake
    /// (used to pick the short "never past SYN" idle timeout).
    pub fn past_syn(&self) -> bool {
        !(self.resp == EndpointState::Inactive
            && matches!(self.orig, EndpointState::SynSent | EndpointState::Inactive))
    }

    /// True when the connection is over: both sides sent FIN, or either sent RST.
    pub fn is_terminated(&self) -> bool {
        self.orig == EndpointState::Reset
            || self.resp == EndpointState::Reset
            || (self.orig == EndpointState::Closed && self.resp == EndpointState::Closed)
    }

    /// Zeek's `conn_state` for a TCP connection, given the payload bytes each side sent.
    pub fn conn_state(&self, orig_payload: u64, resp_payload: u64) -> ConnState {
        use EndpointState as E;
        let os = self.orig;
        let rs = self.resp;
        let o_inactive = matches!(os, E::Inactive | E::Partial);
        let r_inactive = matches!(rs, E::Inactive | E::Partial);
        if rs == E::Reset {
            if matches!(os, E::SynSent | E::SynAckSent)
                || (os == E::Reset && orig_payload == 0 && resp_payload == 0)
            {
                ConnState::REJ
            } else if o_inactive {
                ConnState::RSTRH
            } else {
                ConnState::RSTR
            }
        } else if os == E::Reset {
            if r_inactive {
                ConnState::RSTOS0
            } else {
                ConnState::RSTO
            }
        } else if rs == E::Closed && os == E::Closed {
            ConnState::SF
        } else if os == E::Closed {
            if r_inactive {
                ConnState::SH
            } else {
                ConnState::S2
            }
        } else if rs == E::Closed {
            if o_inactive {
                ConnState::SHR
            } else {
                ConnState::S3
            }
        } else if os == E::SynSent && rs == E::Inactive {
            ConnState::S0
        } else if os == E::Established && rs == E::Established {
            ConnState::S1
        } else {
            ConnState::OTH
        }
    }
}

/// `a < b` in 32-bit sequence space.
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a <= b` in 32-bit sequence space.
fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tcp_flags::PSH;

    fn run(pkts: &[(bool, u8, u32, u32)]) -> (ConnState, String) {
        let mut t = TcpTrack::default();
        let mut h = History::default();
        let (mut op, mut rp) = (0u64, 0u64);
        for &(from_orig, flags, seq, len) in pkts {
            t.observe(flags, len, seq, 1000, from_orig, &mut h);
            if from_orig {
                op += len as u64
            } else {
                rp += len as u64
            }
        }
        (t.conn_state(op, rp), h.as_str().to_string())
    }

    #[test]
    fn normal_connection_is_sf() {
        let (s, h) = run(&[
            (true, SYN, 100, 0),
            (false, SYN | ACK, 500, 0),
            (true, ACK, 101, 0),
            (true, ACK | PSH, 101, 10),
            (false, ACK | PSH, 501, 20),
            (true, FIN | ACK, 111, 0),
            (false, FIN | ACK, 521, 0),
            (true, ACK, 112, 0),
        ]);
        assert_eq!(s, ConnState::SF);
        assert_eq!(h, "ShADdFf");
    }

    #[test]
    fn attempt_states() {
        assert_eq!(run(&[(true, SYN, 1, 0)]).0, ConnState::S0);
        assert_eq!(
            run(&[(true, SYN, 1, 0), (false, RST | ACK, 0, 0)]).0,
            ConnState::REJ
        );
        assert_eq!(
            run(&[(true, SYN, 1, 0), (true, RST, 2, 0)]).0,
            ConnState::RSTOS0
        );
        assert_eq!(
            run(&[(true, SYN, 1, 0), (true, FIN, 2, 0)]).0,
            ConnState::SH
        );
        // nmap half-open scan of an open port: SYN, SYN-ACK, RST from the scanner.
        let (s, h) = run(&[
            (true, SYN, 1, 0),
            (false, SYN | ACK, 9, 0),
            (true, RST, 2, 0),
        ]);
        assert_eq!(s, ConnState::RSTO);
        assert_eq!(h, "ShR");
    }

    #[test]
    fn established_and_half_closed() {
        let hs = [
            (true, SYN, 1, 0),
            (false, SYN | ACK, 9, 0),
            (true, ACK, 2, 0),
        ];
        assert_eq!(run(&hs).0, ConnState::S1);
        let mut v = hs.to_vec();
        v.push((true, FIN | ACK, 2, 0));
        assert_eq!(run(&v).0, ConnState::S2);
        let mut v = hs.to_vec();
        v.push((false, FIN | ACK, 10, 0));
        assert_eq!(run(&v).0, ConnState::S3);
        let mut v = hs.to_vec();
        v.push((false, RST, 10, 0));
        assert_eq!(run(&v).0, ConnState::RSTR);
    }

    #[test]
    fn midstream_is_oth_and_retransmission_is_t() {
        let (s, h) = run(&[(true, ACK | PSH, 100, 10), (true, ACK | PSH, 100, 10)]);
        assert_eq!(s, ConnState::OTH);
        assert_eq!(h, "DT");
    }

    /// Zeek's letters for packets with several of SYN, FIN, RST: `Q` for SYN+FIN and
    /// SYN+RST, `I` for FIN+RST (and SYN+FIN+RST), and no S/F/R letter for them.
    #[test]
    fn multi_flag_packets_are_q_and_fin_rst_is_i() {
        assert_eq!(run(&[(true, SYN | FIN, 1, 0)]).1, "Q");
        assert_eq!(run(&[(true, SYN, 1, 0), (false, SYN | RST, 9, 0)]).1, "Sq");
        assert_eq!(run(&[(true, ACK | FIN | RST, 1, 0)]).1, "I");
        assert_eq!(run(&[(true, SYN | FIN | RST, 1, 0)]).1, "I");
        assert_eq!(run(&[(true, FIN | ACK, 1, 0), (true, RST, 2, 0)]).1, "FR");
    }

    #[test]
    fn history_letters_recorded_once() {
        let mut h = History::default();
        for _ in 0..5 {
            h.push(b'D', true);
            h.push(b'D', false);
        }
        assert_eq!(h.as_str(), "Dd");
    }
}
