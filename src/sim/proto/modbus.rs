//! Modbus/TCP application data units (Modbus Application Protocol v1.1b3 and the
//! Modbus Messaging on TCP/IP guide): a 7-byte MBAP header (transaction id, protocol id
//! 0, length = unit id + PDU, unit id) followed by the PDU.

/// Wraps `pdu` in an MBAP header.
pub fn adu(tid: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(7 + pdu.len());
    v.extend_from_slice(&tid.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
    v.push(unit);
    v.extend_from_slice(pdu);
    v
}

fn two(fc: u8, a: u16, b: u16) -> Vec<u8> {
    let mut v = vec![fc];
    v.extend_from_slice(&a.to_be_bytes());
    v.extend_from_slice(&b.to_be_bytes());
    v
}

/// FC 1 Read Coils request.
pub fn read_coils(start: u16, qty: u16) -> Vec<u8> {
    two(0x01, start, qty)
}

/// FC 1 response with packed coil bytes.
pub fn read_coils_resp(bits: &[u8]) -> Vec<u8> {
    let mut v = vec![0x01, bits.len() as u8];
    v.extend_from_slice(bits);
    v
}

/// FC 3 Read Holding Registers request.
pub fn read_holding(start: u16, qty: u16) -> Vec<u8> {
    two(0x03, start, qty)
}

/// FC 3 response with register values.
pub fn read_holding_resp(values: &[u16]) -> Vec<u8> {
    let mut v = vec![0x03, (values.len() * 2) as u8];
    for r in values {
        v.extend_from_slice(&r.to_be_bytes());
    }
    v
}

/// FC 5 Write Single Coil (request and echoed response).
pub fn write_coil(addr: u16, on: bool) -> Vec<u8> {
    two(0x05, addr, if on { 0xff00 } else { 0x0000 })
}

/// FC 6 Write Single Register (request and echoed response).
pub fn write_register(addr: u16, value: u16) -> Vec<u8> {
    two(0x06, addr, value)
}

/// FC 16 Write Multiple Registers request.
pub fn write_registers(start: u16, values: &[u16]) -> Vec<u8> {
    let mut v = two(0x10, start, values.len() as u16);
    v.push((values.len() * 2) as u8);
    for r in values {
        v.extend_from_slice(&r.to_be_bytes());
    }
    v
}

/// FC 16 response.
pub fn write_registers_resp(start: u16, qty: u16) -> Vec<u8> {
    two(0x10, start, qty)
}

/// FC 8 Diagnostics, sub-function 0 (Return Query Data); the response echoes it.
pub fn diagnostics_echo(data: u16) -> Vec<u8> {
    two(0x08, 0x0000, data)
}

/// FC 43 / MEI 14 Read Device Identification request (basic, from object 0).
pub fn read_device_id() -> Vec<u8> {
    vec![0x2b, 0x0e, 0x01, 0x00]
}

/// FC 43 / MEI 14 response with vendor, product code and revision.
pub fn read_device_id_resp(vendor: &str, product: &str, revision: &str) -> Vec<u8> {
    let mut v = vec![0x2b, 0x0e, 0x01, 0x01, 0x00, 0x00, 0x03];
    for (id, s) in [(0u8, vendor), (1, product), (2, revision)] {
        v.push(id);
        v.push(s.len() as u8);
        v.extend_from_slice(s.as_bytes());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fc3_request_and_response_sizes() {
        let req = adu(0x0102, 1, &read_holding(0, 10));
        assert_eq!(req, vec![0x01, 0x02, 0, 0, 0, 6, 1, 0x03, 0, 0, 0, 10]);
        let resp = adu(0x0102, 1, &read_holding_resp(&[7; 10]));
        assert_eq!(resp.len(), 29);
        assert_eq!(&resp[..9], &[0x01, 0x02, 0, 0, 0, 23, 1, 0x03, 20]);
    }

    #[test]
    fn coils_and_writes() {
        assert_eq!(adu(1, 1, &read_coils(0, 16)).len(), 12);
        assert_eq!(adu(1, 1, &read_coils_resp(&[0xaa, 0x55])).len(), 11);
        assert_eq!(write_coil(4, true), vec![0x05, 0, 4, 0xff, 0]);
        let w = adu(9, 1, &write_registers(100, &[1, 2, 3]));
        assert_eq!(w.len(), 13 + 6);
        assert_eq!(&w[7..13], &[0x10, 0, 100, 0, 3, 6]);
    }
}
