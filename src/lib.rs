//! flowsentry: a passive network sensor for IoT/OT networks.
//!
//! ```text
//! capture (pcap/pcapng file or live interface; each frame borrowed for one read)
//!   -> decode    (Frame -> PacketSummary, Copy, no heap)
//!   -> fragment  (later IP fragments get the ports of their first fragment)
//!   -> flow      (bidirectional flow table, packet-time expiry -> FlowRecord)
//!   -> features  (FlowRecord -> fixed-length vector)            [detection]
//!   -> model     (per-device-class isolation forest -> score)   [detection]
//!   -> event     (JSON Lines: flow, anomaly, stats; stamped with sensor_id and seq)
//!   -> sink      (--out file/stdout, file:, kafka://, redis://, syslog+tcp://, syslog+udp://)
//! ```
//!
//! `pipeline` wires the stages; `main.rs` only parses the command line. See
//! `docs/ARCHITECTURE.md` for the boundary types and the time model.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod benchgen;
pub mod capture;
pub mod community_id;
pub mod config;
pub mod decode;
pub mod detect;
pub mod device;
pub mod error;
pub mod eval;
pub mod event;
pub mod features;
pub mod flow;
pub mod forest;
pub mod fragment;
pub mod model;
pub mod order;
pub mod output;
pub mod packet;
pub mod pipeline;
pub mod privilege;
pub mod progress;
pub mod sim;
pub mod sink;
pub mod stats;
pub mod time;
pub mod train;
