//! RTP (RFC 3550) with H.264 payloads (RFC 6184: single NAL units and FU-A fragments)
//! and RTCP sender/receiver reports with an SDES CNAME chunk (compound packets).

/// RTP fixed header (version 2, no padding/extension/CSRC) followed by `payload`.
pub fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + payload.len());
    v.push(0x80);
    v.push(pt | if marker { 0x80 } else { 0 });
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// H.264 payloads of one frame of `size` bytes: a single NAL unit if it fits in `mtu`,
/// otherwise FU-A fragments of at most `mtu` bytes. `idr` selects NAL type 5 (else 1).
/// The slice bytes after the NAL header are `filler`, cycled.
pub fn h264_frame(size: usize, mtu: usize, idr: bool, filler: &[u8]) -> Vec<Vec<u8>> {
    let (nri, ty) = if idr { (0x60u8, 5u8) } else { (0x40u8, 1u8) };
    // First slice bytes: first_mb_in_slice 0, slice type, pps 0, frame_num...
    let head: &[u8] = if idr {
        &[0x88, 0x84, 0x00, 0x33]
    } else {
        &[0x9a, 0x02, 0x04, 0x11]
    };
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head);
    let mut i = 0;
    while body.len() < size.max(8) {
        let b = filler.get(i % filler.len().max(1)).copied().unwrap_or(0x5a);
        // avoid start-code emulation patterns 00 00 0x
        body.push(if b == 0 { 0x21 } else { b });
        i += 1;
    }
    if body.len() < mtu {
        let mut p = vec![nri | ty];
        p.extend_from_slice(&body);
        return vec![p];
    }
    let chunk = mtu - 2;
    let n = body.len().div_ceil(chunk);
    body.chunks(chunk)
        .enumerate()
        .map(|(k, c)| {
            let mut p = Vec::with_capacity(c.len() + 2);
            p.push(nri | 28);
            let mut h = ty;
            if k == 0 {
                h |= 0x80;
            }
            if k + 1 == n {
                h |= 0x40;
            }
            p.push(h);
            p.extend_from_slice(c);
            p
        })
        .collect()
}

fn sdes_cname(ssrc: u32, cname: &str) -> Vec<u8> {
    let mut chunk = Vec::new();
    chunk.extend_from_slice(&ssrc.to_be_bytes());
    chunk.push(1);
    chunk.push(cname.len() as u8);
    chunk.extend_from_slice(cname.as_bytes());
    chunk.push(0);
    while chunk.len() % 4 != 0 {
        chunk.push(0);
    }
    let mut v = vec![0x81, 202];
    v.extend_from_slice(&((chunk.len() / 4) as u16).to_be_bytes());
    v.extend_from_slice(&chunk);
    v
}

/// RTCP compound packet: SR (no report blocks) + SDES CNAME.
pub fn sender_report(
    ssrc: u32,
    ntp: [u8; 8],
    rtp_ts: u32,
    packets: u32,
    octets: u32,
    cname: &str,
) -> Vec<u8> {
    let mut v = vec![0x80, 200, 0, 6];
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(&ntp);
    v.extend_from_slice(&rtp_ts.to_be_bytes());
    v.extend_from_slice(&packets.to_be_bytes());
    v.extend_from_slice(&octets.to_be_bytes());
    v.extend_from_slice(&sdes_cname(ssrc, cname));
    v
}

/// RTCP compound packet: RR with one report block about `source` + SDES CNAME.
pub fn receiver_report(
    ssrc: u32,
    source: u32,
    highest_seq: u32,
    jitter: u32,
    lsr: u32,
    dlsr: u32,
    cname: &str,
) -> Vec<u8> {
    let mut v = vec![0x81, 201, 0, 7];
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(&source.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]); // fraction lost 0, cumulative lost 0
    v.extend_from_slice(&highest_seq.to_be_bytes());
    v.extend_from_slice(&jitter.to_be_bytes());
    v.extend_from_slice(&lsr.to_be_bytes());
    v.extend_from_slice(&dlsr.to_be_bytes());
    v.extend_from_slice(&sdes_cname(ssrc, cname));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_header() {
        let p = rtp(96, true, 0x0102, 0x03040506, 0x0a0b0c0d, &[0x41]);
        assert_eq!(
            p,
            vec![0x80, 0xe0, 1, 2, 3, 4, 5, 6, 0x0a, 0x0b, 0x0c, 0x0d, 0x41]
        );
    }

    #[test]
    fn fu_a_fragmentation() {
        let frags = h264_frame(3000, 1400, true, &[1, 2, 3]);
        assert_eq!(frags.len(), 3);
        assert_eq!(frags[0][..2], [0x7c, 0x85]);
        assert_eq!(frags[1][..2], [0x7c, 0x05]);
        assert_eq!(frags[2][..2], [0x7c, 0x45]);
        let small = h264_frame(100, 1400, false, &[1]);
        assert_eq!(small.len(), 1);
        assert_eq!(small[0][0], 0x41);
    }

    #[test]
    fn rtcp_lengths() {
        let sr = sender_report(1, [0; 8], 0, 0, 0, "cam");
        assert_eq!(sr.len(), 28 + 16);
        assert_eq!(u16::from_be_bytes([sr[30], sr[31]]) as usize, (16 - 4) / 4);
        let rr = receiver_report(2, 1, 0, 0, 0, 0, "nvr");
        assert_eq!(rr.len(), 32 + 16);
    }
}
