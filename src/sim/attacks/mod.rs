//! Attack generators, each with the packet-level shape of the simulator spec §6.3 (Mirai
//! numbers from the public Mirai source). Every attack stream tags its packets with the
//! attack label and episode id; the device attribution is the monitored device the
//! attack is about (victim, or the infected device for outbound attacks).

pub mod exfil;
pub mod flood;
pub mod mirai;
pub mod misc;
pub mod scan;

use crate::sim::engine::Label;
use std::net::Ipv4Addr;

/// One planned attack episode.
#[derive(Debug, Clone)]
pub struct EpisodeSpec {
    /// Episode id (1-based, unique within the scenario).
    pub id: u32,
    /// Attack type.
    pub kind: Label,
    /// Planned start, µs.
    pub start: u64,
    /// Planned duration, µs.
    pub duration: u64,
    /// Attacker address.
    pub attacker: Ipv4Addr,
    /// Victim device ids (for outbound attacks: the infected device).
    pub victims: Vec<String>,
    /// Intensity knob: packets/s, requests/s or queries/s depending on the attack
    /// (0 = attack default).
    pub rate: f64,
    /// Size knob: bytes for exfiltration (0 = default).
    pub bytes: u64,
    /// Whether the brute force ends with a successful login.
    pub success: bool,
}
