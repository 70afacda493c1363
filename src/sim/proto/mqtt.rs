//! MQTT 3.1.1 control packets (OASIS standard, §3): CONNECT/CONNACK, PUBLISH QoS 1 and
//! PUBACK, SUBSCRIBE/SUBACK, PINGREQ/PINGRESP, DISCONNECT.

fn remaining_length(buf: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        buf.push(b);
        if n == 0 {
            break;
        }
    }
}

fn utf8(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u16).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    remaining_length(&mut v, body.len());
    v.extend_from_slice(body);
    v
}

/// CONNECT with clean session, the given client id and keepalive (seconds).
pub fn connect(client_id: &str, keepalive_s: u16) -> Vec<u8> {
    let mut b = Vec::new();
    utf8(&mut b, "MQTT");
    b.push(4); // protocol level 3.1.1
    b.push(0x02); // clean session
    b.extend_from_slice(&keepalive_s.to_be_bytes());
    utf8(&mut b, client_id);
    packet(0x10, &b)
}

/// CONNACK, session not present, return code 0.
pub fn connack() -> Vec<u8> {
    vec![0x20, 0x02, 0x00, 0x00]
}

/// PUBLISH QoS 1 with packet identifier `pid`.
pub fn publish_qos1(topic: &str, pid: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    utf8(&mut b, topic);
    b.extend_from_slice(&pid.to_be_bytes());
    b.extend_from_slice(payload);
    packet(0x32, &b)
}

/// PUBACK for `pid` (4 bytes).
pub fn puback(pid: u16) -> Vec<u8> {
    let p = pid.to_be_bytes();
    vec![0x40, 0x02, p[0], p[1]]
}

/// SUBSCRIBE to one topic filter at QoS 1.
pub fn subscribe(pid: u16, filter: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&pid.to_be_bytes());
    utf8(&mut b, filter);
    b.push(1);
    packet(0x82, &b)
}

/// SUBACK granting QoS 1.
pub fn suback(pid: u16) -> Vec<u8> {
    let p = pid.to_be_bytes();
    vec![0x90, 0x03, p[0], p[1], 0x01]
}

/// PINGREQ.
pub fn pingreq() -> Vec<u8> {
    vec![0xc0, 0x00]
}

/// PINGRESP.
pub fn pingresp() -> Vec<u8> {
    vec![0xd0, 0x00]
}

/// DISCONNECT.
pub fn disconnect() -> Vec<u8> {
    vec![0xe0, 0x00]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_bytes() {
        let c = connect("t1", 60);
        assert_eq!(
            c,
            vec![0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b't', b'1']
        );
    }

    #[test]
    fn publish_and_long_remaining_length() {
        let p = publish_qos1("a/b", 7, b"{}");
        assert_eq!(p, vec![0x32, 9, 0, 3, b'a', b'/', b'b', 0, 7, b'{', b'}']);
        let big = publish_qos1("t", 1, &[0u8; 200]);
        assert_eq!(&big[..3], &[0x32, 205 - 128 + 0x80, 1]);
        assert_eq!(puback(7), vec![0x40, 2, 0, 7]);
    }
}
