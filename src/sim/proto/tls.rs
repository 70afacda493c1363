//! TLS-looking records (RFC 8446 framing): a real ClientHello/ServerHello pair for new
//! connections, ChangeCipherSpec, and opaque application-data records
//! (`17 03 03 len` + random bytes) for everything encrypted.

use crate::sim::rng::SimRng;

/// Largest plaintext per record.
pub const MAX_RECORD: usize = 16_384;

fn record(ct: u8, version: [u8; 2], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + body.len());
    v.push(ct);
    v.extend_from_slice(&version);
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn ext(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    buf.extend_from_slice(&ty.to_be_bytes());
    buf.extend_from_slice(&(data.len() as u16).to_be_bytes());
    buf.extend_from_slice(data);
}

fn handshake(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![ty];
    let n = body.len() as u32;
    v.extend_from_slice(&n.to_be_bytes()[1..]);
    v.extend_from_slice(body);
    v
}

/// A TLS 1.3 ClientHello record with SNI `server_name`.
pub fn client_hello(rng: &mut SimRng, server_name: &str) -> Vec<u8> {
    let mut b = vec![0x03, 0x03];
    b.extend_from_slice(&rng.bytes(32));
    b.push(32);
    b.extend_from_slice(&rng.bytes(32));
    let suites: [u16; 9] = [
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8,
    ];
    b.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        b.extend_from_slice(&s.to_be_bytes());
    }
    b.extend_from_slice(&[1, 0]);
    let mut e = Vec::new();
    let name = server_name.as_bytes();
    let mut sni = Vec::new();
    sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    ext(&mut e, 0x0000, &sni);
    ext(&mut e, 0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17]);
    ext(&mut e, 0x000b, &[1, 0]);
    ext(
        &mut e,
        0x000d,
        &[0, 8, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03],
    );
    ext(&mut e, 0x002b, &[4, 0x03, 0x04, 0x03, 0x03]);
    let mut ks = vec![0, 36, 0x00, 0x1d, 0, 32];
    ks.extend_from_slice(&rng.bytes(32));
    ext(&mut e, 0x0033, &ks);
    ext(&mut e, 0x002d, &[1, 1]);
    b.extend_from_slice(&(e.len() as u16).to_be_bytes());
    b.extend_from_slice(&e);
    record(0x16, [0x03, 0x01], &handshake(1, &b))
}

/// The server's first flight: ServerHello (TLS 1.3, X25519), ChangeCipherSpec and
/// `encrypted` bytes of encrypted handshake (certificate chain etc.) as application-data
/// records.
pub fn server_flight(rng: &mut SimRng, encrypted: usize) -> Vec<u8> {
    let mut b = vec![0x03, 0x03];
    b.extend_from_slice(&rng.bytes(32));
    b.push(32);
    b.extend_from_slice(&rng.bytes(32));
    b.extend_from_slice(&[0x13, 0x01, 0x00]);
    let mut e = Vec::new();
    ext(&mut e, 0x002b, &[0x03, 0x04]);
    let mut ks = vec![0x00, 0x1d, 0, 32];
    ks.extend_from_slice(&rng.bytes(32));
    ext(&mut e, 0x0033, &ks);
    b.extend_from_slice(&(e.len() as u16).to_be_bytes());
    b.extend_from_slice(&e);
    let mut v = record(0x16, [0x03, 0x03], &handshake(2, &b));
    v.extend_from_slice(&change_cipher_spec());
    v.extend_from_slice(&app_data(rng, encrypted));
    v
}

/// The client's second flight: ChangeCipherSpec + encrypted Finished (53 bytes).
pub fn client_finished(rng: &mut SimRng) -> Vec<u8> {
    let mut v = change_cipher_spec();
    v.extend_from_slice(&app_data(rng, 53));
    v
}

/// A ChangeCipherSpec record.
pub fn change_cipher_spec() -> Vec<u8> {
    vec![0x14, 0x03, 0x03, 0x00, 0x01, 0x01]
}

/// `total` bytes of wire data as application-data records of random content (record
/// headers included in `total`; at least one 22-byte record).
pub fn app_data(rng: &mut SimRng, total: usize) -> Vec<u8> {
    let mut left = total.max(22);
    let mut v = Vec::with_capacity(left);
    while left > 0 {
        let body = (left - 5).min(MAX_RECORD + 17);
        let body = if left - 5 - body > 0 && left - 5 - body < 22 {
            body - 22
        } else {
            body
        };
        v.extend_from_slice(&record(0x17, [0x03, 0x03], &rng.bytes(body)));
        left -= body + 5;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(v: &[u8]) -> Vec<(u8, usize)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i + 5 <= v.len() {
            let n = usize::from(u16::from_be_bytes([v[i + 3], v[i + 4]]));
            out.push((v[i], n));
            i += 5 + n;
        }
        assert_eq!(i, v.len());
        out
    }

    #[test]
    fn client_hello_lengths_consistent() {
        let mut r = SimRng::for_stream(1, 0, "t");
        let ch = client_hello(&mut r, "api.example.com");
        assert_eq!(&ch[..3], &[0x16, 0x03, 0x01]);
        let rec_len = usize::from(u16::from_be_bytes([ch[3], ch[4]]));
        assert_eq!(rec_len + 5, ch.len());
        let hs_len = (usize::from(ch[6]) << 16) | (usize::from(ch[7]) << 8) | usize::from(ch[8]);
        assert_eq!(hs_len + 4, rec_len);
        assert_eq!(ch[5], 1);
    }

    #[test]
    fn app_data_exact_total_and_record_limits() {
        let mut r = SimRng::for_stream(1, 0, "t");
        for total in [22, 100, 16_406, 16_410, 40_000, 100_003] {
            let v = app_data(&mut r, total);
            assert_eq!(v.len(), total);
            for (ct, n) in walk(&v) {
                assert_eq!(ct, 0x17);
                assert!((17..=MAX_RECORD + 17).contains(&n));
            }
        }
        let f = server_flight(&mut r, 4000);
        let recs = walk(&f);
        assert_eq!(recs[0].0, 0x16);
        assert_eq!(recs[1], (0x14, 1));
    }
}
