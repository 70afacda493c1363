//! Application-protocol payload encoders. Each returns the bytes that go into a UDP
//! datagram or a TCP stream; lengths and fixed fields follow the protocol specs.

pub mod dns;
pub mod http;
pub mod iot;
pub mod modbus;
pub mod mqtt;
pub mod ntp;
pub mod rtp;
pub mod rtsp;
pub mod ssdp;
pub mod telnet;
pub mod tls;
