//! The real programs a test starts on loopback, each owned by its handle.
//!
//! - [`influxd`]: a real `influxd`, onboarded and ready (2.7.12 unless a test asks for another).
//! - [`moto`]: moto server for the AWS APIs.
//! - [`receiver`]: the HTTP endpoint a notification rule posts to, recording what it gets.
//! - [`fault_proxy`]: our only server: it sits in front of a real one to inject faults.
//! - [`process`]: a child process that dies with its handle; [`ports`]: free loopback ports.

pub mod fault_proxy;
pub mod influxd;
pub mod moto;
pub mod ports;
pub mod process;
pub mod receiver;
