//! Per-direction flow accumulators: counts, bytes, payload-size and inter-arrival running
//! statistics (Welford), TCP flag counts. Pure arithmetic, no allocation.

use crate::packet::tcp_flags;
use crate::time::Timestamp;
use serde::Serialize;

/// Welford running mean and variance; the sample count is kept by the owner.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Welford {
    /// Running mean.
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Welford {
    /// Adds sample `x`, the `n`-th (1-based).
    #[inline]
    pub fn push(&mut self, x: f64, n: u64) {
        let delta = x - self.mean;
        self.mean += delta / n as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Population standard deviation over `n` samples (0 when `n` < 2).
    pub fn std(&self, n: u64) -> f64 {
        if n < 2 {
            0.0
        } else {
            (self.m2 / n as f64).max(0.0).sqrt()
        }
    }
}

/// Counts of packets carrying each TCP flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct FlagCounts {
    /// Packets with SYN.
    pub syn: u32,
    /// Packets with FIN.
    pub fin: u32,
    /// Packets with RST.
    pub rst: u32,
    /// Packets with PSH.
    pub psh: u32,
    /// Packets with ACK.
    pub ack: u32,
    /// Packets with URG.
    pub urg: u32,
}

/// Statistics of one direction of a flow (originator → responder or back).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DirStats {
    /// Packets.
    pub pkts: u64,
    /// Frame bytes on the wire (what tshark/Suricata count).
    pub bytes: u64,
    /// IP bytes (sum of IP total lengths).
    pub ip_bytes: u64,
    /// Transport payload bytes.
    pub payload_bytes: u64,
    /// Packets without transport payload.
    pub zero_payload_pkts: u64,
    /// Time of the first packet in this direction (0 if none).
    pub first_ts: Timestamp,
    /// Time of the last packet in this direction (0 if none).
    pub last_ts: Timestamp,
    /// Payload-size statistics over `pkts` samples.
    pub payload: Welford,
    /// Largest payload.
    pub payload_max: u32,
    /// Inter-arrival statistics in microseconds over `pkts - 1` samples.
    pub iat: Welford,
    /// Largest inter-arrival in nanoseconds.
    pub iat_max_ns: i64,
    /// TCP flag counts.
    pub flags: FlagCounts,
    /// OR of all TCP flags seen.
    pub flags_or: u8,
}

impl DirStats {
    /// Adds one packet.
    #[inline]
    pub fn push(&mut self, ts: Timestamp, wire_len: u32, ip_len: u32, payload_len: u32, flags: u8) {
        if self.pkts > 0 {
            let gap = ts.since(self.last_ts).0.max(0);
            self.iat.push(gap as f64 / 1_000.0, self.pkts);
            self.iat_max_ns = self.iat_max_ns.max(gap);
            if ts > self.last_ts {
                self.last_ts = ts;
            }
        } else {
            self.first_ts = ts;
            self.last_ts = ts;
        }
        self.pkts += 1;
        self.bytes += u64::from(wire_len);
        self.ip_bytes += u64::from(ip_len);
        self.payload_bytes += u64::from(payload_len);
        if payload_len == 0 {
            self.zero_payload_pkts += 1;
        }
        self.payload.push(f64::from(payload_len), self.pkts);
        self.payload_max = self.payload_max.max(payload_len);
        if flags != 0 {
            self.flags_or |= flags;
            let f = &mut self.flags;
            f.syn += u32::from(flags & tcp_flags::SYN != 0);
            f.fin += u32::from(flags & tcp_flags::FIN != 0);
            f.rst += u32::from(flags & tcp_flags::RST != 0);
            f.psh += u32::from(flags & tcp_flags::PSH != 0);
            f.ack += u32::from(flags & tcp_flags::ACK != 0);
            f.urg += u32::from(flags & tcp_flags::URG != 0);
        }
    }

    /// Mean payload size (0 if no packets).
    pub fn payload_mean(&self) -> f64 {
        if self.pkts == 0 {
            0.0
        } else {
            self.payload.mean
        }
    }

    /// Population std of payload sizes (0 with fewer than 2 packets).
    pub fn payload_std(&self) -> f64 {
        self.payload.std(self.pkts)
    }

    /// Mean inter-arrival in microseconds (0 with fewer than 2 packets).
    pub fn iat_mean_us(&self) -> f64 {
        if self.pkts < 2 {
            0.0
        } else {
            self.iat.mean
        }
    }

    /// Population std of inter-arrivals in microseconds (0 with fewer than 3 packets).
    pub fn iat_std_us(&self) -> f64 {
        if self.pkts < 3 {
            0.0
        } else {
            self.iat.std(self.pkts - 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_matches_two_pass() {
        let xs = [3.0, 7.0, 7.0, 19.0, 24.0];
        let mut w = Welford::default();
        for (i, &x) in xs.iter().enumerate() {
            w.push(x, i as u64 + 1);
        }
        let mean = xs.iter().sum::<f64>() / 5.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 5.0;
        assert!((w.mean - mean).abs() < 1e-12);
        assert!((w.std(5) - var.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn dirstats_counts_and_iat() {
        let mut d = DirStats::default();
        d.push(Timestamp(1_000_000_000), 60, 40, 0, tcp_flags::SYN);
        d.push(
            Timestamp(1_002_000_000),
            100,
            80,
            40,
            tcp_flags::ACK | tcp_flags::PSH,
        );
        d.push(Timestamp(1_006_000_000), 100, 80, 40, tcp_flags::ACK);
        assert_eq!(
            (d.pkts, d.bytes, d.ip_bytes, d.payload_bytes),
            (3, 260, 200, 80)
        );
        assert_eq!(d.zero_payload_pkts, 1);
        assert_eq!(d.flags.syn, 1);
        assert_eq!(d.flags.ack, 2);
        assert_eq!(d.iat_max_ns, 4_000_000);
        assert!((d.iat_mean_us() - 3_000.0).abs() < 1e-9);
        assert!((d.iat_std_us() - 1_000.0).abs() < 1e-9);
        assert_eq!(d.first_ts, Timestamp(1_000_000_000));
        assert_eq!(d.last_ts, Timestamp(1_006_000_000));
    }
}
