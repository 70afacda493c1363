//! NTPv4 client/server packets (RFC 5905), 48 bytes without extensions.

/// Seconds between 1900-01-01 (NTP era 0) and 1970-01-01.
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// NTP 64-bit timestamp of a Unix time in µs.
pub fn timestamp(unix_us: u64) -> [u8; 8] {
    let secs = (unix_us / 1_000_000 + NTP_UNIX_OFFSET) as u32;
    let frac = (((unix_us % 1_000_000) << 32) / 1_000_000) as u32;
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&secs.to_be_bytes());
    b[4..].copy_from_slice(&frac.to_be_bytes());
    b
}

/// A client request (LI 0, VN 4, mode 3) with only the transmit timestamp set.
pub fn client(tx_us: u64) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = 0x23;
    p[2] = 6; // poll 2^6
    p[3] = 0xec; // precision
    p[40..48].copy_from_slice(&timestamp(tx_us));
    p
}

/// A stratum-`stratum` server reply (mode 4) to `request`, received at `rx_us` and
/// sent at `tx_us`, with reference id `refid`.
pub fn server(request: &[u8; 48], rx_us: u64, tx_us: u64, stratum: u8, refid: [u8; 4]) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = 0x24;
    p[1] = stratum;
    p[2] = request[2];
    p[3] = 0xe9;
    p[4..8].copy_from_slice(&[0, 0, 0x01, 0x20]); // root delay
    p[8..12].copy_from_slice(&[0, 0, 0x00, 0x60]); // root dispersion
    p[12..16].copy_from_slice(&refid);
    p[16..24].copy_from_slice(&timestamp(rx_us.saturating_sub(37_000_000)));
    p[24..32].copy_from_slice(&request[40..48]);
    p[32..40].copy_from_slice(&timestamp(rx_us));
    p[40..48].copy_from_slice(&timestamp(tx_us));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_header_and_timestamp() {
        // 2026-01-05T00:00:00.5Z = Unix 1767571200.5 -> NTP seconds 3976559999+1.
        let p = client(1_767_571_200_500_000);
        assert_eq!(p[0], 0x23);
        let secs = u32::from_be_bytes([p[40], p[41], p[42], p[43]]);
        assert_eq!(u64::from(secs), 1_767_571_200 + NTP_UNIX_OFFSET);
        assert_eq!(&p[44..48], &[0x80, 0, 0, 0]);
    }

    #[test]
    fn server_copies_origin() {
        let c = client(5_000_000);
        let s = server(&c, 5_010_000, 5_010_050, 2, [192, 0, 2, 123]);
        assert_eq!(s[0], 0x24);
        assert_eq!(&s[24..32], &c[40..48]);
        assert_eq!(s.len(), 48);
    }
}
