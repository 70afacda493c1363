//! Device classes. Each module documents its behaviour, exposes a parameter struct with
//! the spec's defaults, and an `add` function that registers the device's streams.

pub mod camera;
pub mod common;
pub mod hub;
pub mod plc;
pub mod plug;
pub mod thermostat;
