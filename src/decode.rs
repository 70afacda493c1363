//! Decoding: a borrowed [`Frame`] → [`PacketSummary`] in place, no heap allocation.
//! Owns link-type dispatch, VLAN/QinQ/MPLS, IPv4/IPv6 (+ extension headers), TCP/UDP/ICMP
//! header reading, GRE/VXLAN decapsulation, ARP, and the small DNS/Modbus payload hints.
//! Does not own flows, time policy or fragment attribution (see `fragment`).

use crate::packet::{DecodeError, Frame, PacketSummary};

/// Decodes one frame into its summary, or says why it was skipped.
pub fn decode(frame: &Frame<'_>) -> Result<PacketSummary, DecodeError> {
    let _ = frame;
    Err(DecodeError::UnsupportedLinkType)
}
