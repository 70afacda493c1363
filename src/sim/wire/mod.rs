//! Wire-format builders: Ethernet (optionally 802.1Q-tagged), IPv4, IPv6, TCP, UDP and
//! ARP frames with correct lengths and checksums.

pub mod checksum;
pub mod frame;

pub use frame::*;
