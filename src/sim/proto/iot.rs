//! Vendor IoT protocols: the TP-Link Kasa local protocol on TCP 9999 (4-byte length +
//! XOR "autokey" cipher with initial key 171) and a Tuya-style LAN discovery broadcast
//! (UDP 6667, `000055aa` … CRC … `0000aa55` framing with an encrypted body).

use crate::sim::rng::SimRng;

/// Kasa autokey encryption of `plain` (key starts at 171, becomes the cipher byte).
pub fn kasa_encrypt(plain: &[u8]) -> Vec<u8> {
    let mut key = 171u8;
    let mut v = Vec::with_capacity(4 + plain.len());
    v.extend_from_slice(&(plain.len() as u32).to_be_bytes());
    for &b in plain {
        let c = b ^ key;
        key = c;
        v.push(c);
    }
    v
}

/// The Kasa status poll (`{"system":{"get_sysinfo":{}}}`).
pub fn kasa_poll() -> Vec<u8> {
    kasa_encrypt(br#"{"system":{"get_sysinfo":{}}}"#)
}

/// A Kasa sysinfo reply of about `size` bytes for a plug that is `on`.
pub fn kasa_sysinfo(size: usize, on: bool, mac: &str, rssi: i32, on_time: u64) -> Vec<u8> {
    let mut s = format!(
        "{{\"system\":{{\"get_sysinfo\":{{\"sw_ver\":\"1.0.12 Build 230220 Rel.150612\",\"hw_ver\":\"5.0\",\
\"model\":\"HS103(EU)\",\"deviceId\":\"8006E1A2B3C4D5E6F708192A3B4C5D6E7F80\",\"oemId\":\"211C91F4C6A5E8B3\",\
\"hwId\":\"B25E1C97D2A4F8E0C3B1\",\"rssi\":{rssi},\"latitude_i\":0,\"longitude_i\":0,\"alias\":\"Plug\",\
\"status\":\"new\",\"mic_type\":\"IOT.SMARTPLUGSWITCH\",\"feature\":\"TIM\",\"mac\":\"{mac}\",\"updating\":0,\
\"led_off\":0,\"relay_state\":{},\"on_time\":{on_time},\"icon_hash\":\"\",\"dev_name\":\"Smart Wi-Fi Plug Mini\",\
\"active_mode\":\"none\",\"next_action\":{{\"type\":-1}},\"ntc_state\":0,\"err_code\":0",
        u8::from(on)
    );
    while s.len() + 4 < size {
        s.push(' ');
    }
    s.push_str("}}}");
    kasa_encrypt(s.as_bytes())
}

/// A Tuya-style discovery broadcast of `size` bytes (header, sequence, command 0x13,
/// length, encrypted body, CRC32, footer).
pub fn tuya_discovery(rng: &mut SimRng, seq: u32, size: usize) -> Vec<u8> {
    let body_len = size.saturating_sub(16 + 8).max(16);
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(&[0x00, 0x00, 0x55, 0xaa]);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&0x13u32.to_be_bytes());
    v.extend_from_slice(&((body_len + 8) as u32).to_be_bytes());
    v.extend_from_slice(&rng.bytes(body_len));
    let crc = crc32(&v);
    v.extend_from_slice(&crc.to_be_bytes());
    v.extend_from_slice(&[0x00, 0x00, 0xaa, 0x55]);
    v
}

/// CRC-32 (IEEE 802.3, reflected, init and xorout 0xffffffff).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kasa_known_prefix() {
        // '{' (0x7b) ^ 171 (0xab) = 0xd0; '"' (0x22) ^ 0xd0 = 0xf2.
        let p = kasa_poll();
        assert_eq!(&p[..6], &[0, 0, 0, 29, 0xd0, 0xf2]);
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn tuya_size() {
        let mut r = SimRng::for_stream(1, 0, "t");
        let t = tuya_discovery(&mut r, 1, 180);
        assert_eq!(t.len(), 180);
        assert_eq!(&t[176..], &[0, 0, 0xaa, 0x55]);
    }
}
