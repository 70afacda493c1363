//! DNS / mDNS messages (RFC 1035, RFC 6762): questions, A/TXT/NULL/PTR/SRV records.
//! Answer names use a compression pointer to the question (0xc00c) when they repeat it.

use std::net::Ipv4Addr;

/// QTYPE A.
pub const A: u16 = 1;
/// QTYPE NULL.
pub const NULL: u16 = 10;
/// QTYPE PTR.
pub const PTR: u16 = 12;
/// QTYPE TXT.
pub const TXT: u16 = 16;
/// QTYPE AAAA.
pub const AAAA: u16 = 28;
/// QTYPE SRV.
pub const SRV: u16 = 33;
/// Class IN.
pub const IN: u16 = 1;
/// mDNS cache-flush bit on a record class.
pub const CACHE_FLUSH: u16 = 0x8000;

/// Encodes a dotted name as length-prefixed labels ending with the root label.
pub fn encode_name(buf: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let b = label.as_bytes();
        let n = b.len().min(63);
        buf.push(n as u8);
        buf.extend_from_slice(&b[..n]);
    }
    buf.push(0);
}

/// Owner name of a record: a dotted name or a pointer to the first question (0xc00c).
#[derive(Debug, Clone)]
pub enum Owner {
    /// The first question's name.
    Question,
    /// An explicit name.
    Name(String),
}

/// A resource record.
#[derive(Debug, Clone)]
pub struct Rr {
    /// Owner name.
    pub owner: Owner,
    /// Type.
    pub rtype: u16,
    /// Class (with [`CACHE_FLUSH`] for unique mDNS records).
    pub class: u16,
    /// TTL in seconds.
    pub ttl: u32,
    /// RDATA.
    pub rdata: Vec<u8>,
}

/// A complete message with the given questions `(name, qtype, qclass)` and answers.
pub fn message(id: u16, flags: u16, questions: &[(&str, u16, u16)], answers: &[Rr]) -> Vec<u8> {
    let mut b = Vec::with_capacity(128);
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&(questions.len() as u16).to_be_bytes());
    b.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    for (name, qt, qc) in questions {
        encode_name(&mut b, name);
        b.extend_from_slice(&qt.to_be_bytes());
        b.extend_from_slice(&qc.to_be_bytes());
    }
    for rr in answers {
        match &rr.owner {
            Owner::Question => b.extend_from_slice(&[0xc0, 0x0c]),
            Owner::Name(n) => encode_name(&mut b, n),
        }
        b.extend_from_slice(&rr.rtype.to_be_bytes());
        b.extend_from_slice(&rr.class.to_be_bytes());
        b.extend_from_slice(&rr.ttl.to_be_bytes());
        b.extend_from_slice(&(rr.rdata.len() as u16).to_be_bytes());
        b.extend_from_slice(&rr.rdata);
    }
    b
}

/// A standard recursive query (flags 0x0100).
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    message(id, 0x0100, &[(name, qtype, IN)], &[])
}

/// A response to [`query`] with A records (flags 0x8180).
pub fn answer_a(id: u16, name: &str, addrs: &[Ipv4Addr], ttl: u32) -> Vec<u8> {
    let rrs: Vec<Rr> = addrs
        .iter()
        .map(|a| Rr {
            owner: Owner::Question,
            rtype: A,
            class: IN,
            ttl,
            rdata: a.octets().to_vec(),
        })
        .collect();
    message(id, 0x8180, &[(name, A, IN)], &rrs)
}

/// TXT RDATA: each string length-prefixed (split at 255 bytes).
pub fn txt_rdata(strings: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for s in strings {
        for part in s.chunks(255) {
            v.push(part.len() as u8);
            v.extend_from_slice(part);
        }
        if s.is_empty() {
            v.push(0);
        }
    }
    v
}

/// A response with one record of `qtype` (TXT or NULL) carrying `rdata`.
pub fn answer_raw(id: u16, name: &str, qtype: u16, rdata: Vec<u8>, ttl: u32) -> Vec<u8> {
    message(
        id,
        0x8180,
        &[(name, qtype, IN)],
        &[Rr {
            owner: Owner::Question,
            rtype: qtype,
            class: IN,
            ttl,
            rdata,
        }],
    )
}

/// Name RDATA (PTR target), uncompressed.
pub fn name_rdata(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    encode_name(&mut v, name);
    v
}

/// SRV RDATA.
pub fn srv_rdata(priority: u16, weight: u16, port: u16, target: &str) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&priority.to_be_bytes());
    v.extend_from_slice(&weight.to_be_bytes());
    v.extend_from_slice(&port.to_be_bytes());
    encode_name(&mut v, target);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bytes() {
        let q = query(0x1234, "a.bc", A);
        assert_eq!(
            q,
            vec![
                0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // header
                1, b'a', 2, b'b', b'c', 0, // qname
                0, 1, 0, 1, // A IN
            ]
        );
    }

    #[test]
    fn answer_uses_pointer() {
        let r = answer_a(1, "a.bc", &[Ipv4Addr::new(192, 0, 2, 7)], 300);
        assert_eq!(&r[6..8], &[0, 1]); // ANCOUNT
        assert_eq!(
            &r[22..],
            &[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 192, 0, 2, 7]
        );
    }

    #[test]
    fn txt_rdata_splits_long_strings() {
        let long = vec![b'x'; 300];
        let r = txt_rdata(&[&long]);
        assert_eq!(r.len(), 302);
        assert_eq!(r[0], 255);
        assert_eq!(r[256], 45);
    }
}
