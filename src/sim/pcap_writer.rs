//! A small classic-pcap writer: little-endian magic `0xa1b2c3d4` (microsecond
//! timestamps), version 2.4, snaplen 65535, LINKTYPE_ETHERNET, over any buffered writer.

use std::io::{self, Write};

/// The 24-byte global header this writer emits.
pub const GLOBAL_HEADER: [u8; 24] = [
    0xd4, 0xc3, 0xb2, 0xa1, // magic, microsecond resolution, little-endian
    0x02, 0x00, 0x04, 0x00, // version 2.4
    0x00, 0x00, 0x00, 0x00, // thiszone
    0x00, 0x00, 0x00, 0x00, // sigfigs
    0xff, 0xff, 0x00, 0x00, // snaplen 65535
    0x01, 0x00, 0x00, 0x00, // LINKTYPE_ETHERNET
];

/// Writes pcap records; counts packets and bytes written.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    w: W,
    /// Records written.
    pub packets: u64,
    /// Bytes written including headers.
    pub bytes: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header and returns the writer.
    pub fn new(mut w: W) -> io::Result<Self> {
        w.write_all(&GLOBAL_HEADER)?;
        Ok(PcapWriter {
            w,
            packets: 0,
            bytes: 24,
        })
    }

    /// Writes one frame captured at `ts_us` microseconds since the Unix epoch.
    pub fn write(&mut self, ts_us: u64, frame: &[u8]) -> io::Result<()> {
        let mut hdr = [0u8; 16];
        let secs = (ts_us / 1_000_000) as u32;
        let usec = (ts_us % 1_000_000) as u32;
        let len = frame.len() as u32;
        hdr[0..4].copy_from_slice(&secs.to_le_bytes());
        hdr[4..8].copy_from_slice(&usec.to_le_bytes());
        hdr[8..12].copy_from_slice(&len.to_le_bytes());
        hdr[12..16].copy_from_slice(&len.to_le_bytes());
        self.w.write_all(&hdr)?;
        self.w.write_all(frame)?;
        self.packets += 1;
        self.bytes += 16 + u64::from(len);
        Ok(())
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1_767_571_200_000_123, &[1, 2, 3]).unwrap();
        let v = w.finish().unwrap();
        assert_eq!(&v[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&v[20..24], &[1, 0, 0, 0]);
        assert_eq!(
            u32::from_le_bytes([v[24], v[25], v[26], v[27]]),
            1_767_571_200
        );
        assert_eq!(u32::from_le_bytes([v[28], v[29], v[30], v[31]]), 123);
        assert_eq!(u32::from_le_bytes([v[32], v[33], v[34], v[35]]), 3);
        assert_eq!(u32::from_le_bytes([v[36], v[37], v[38], v[39]]), 3);
        assert_eq!(&v[40..], &[1, 2, 3]);
    }
}
