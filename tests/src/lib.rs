//! The test bed: the real servers the product talks to, started on loopback for one test.
//!
//! Everything here starts a real program that `tests/testbed/install.sh` installed (or that
//! cargo built): `influxd` 2.7.12 (and 2.9.1 for the version matrix), the `influx` CLI 2.7.5,
//! `moto_server` for the AWS APIs, and the Lambda runtime API of `cargo lambda watch`. Nothing is
//! faked. The only server of our own is the [`fault_proxy`], which sits *in front of* a real
//! server to inject latency, 503s, resets and stalls.
//!
//! Every handle owns its process group and temporary directory: dropping it kills the process by
//! its PID (SIGKILL to the group) and removes the directory, so a panicking test leaves nothing
//! running. When the test bed is not installed, the first call panics with the command to run;
//! tests never skip silently.

pub mod bed;
pub mod bench_run;
pub mod dataset;
pub mod esm;
pub mod events;
pub mod fault_proxy;
pub mod flux;
pub mod gateway;
pub mod influxd;
pub mod lambda;
pub mod logs;
pub mod moto;
pub mod poller;
pub mod ports;
pub mod probe;
pub mod process;
pub mod reads;
pub mod receiver;
pub mod report;
pub mod scenario;
pub mod scheduled;
pub mod stack;
pub mod template;
pub mod traffic;

pub use bed::TestBed;
pub use fault_proxy::FaultProxy;
pub use influxd::{Influxd, InfluxdVersion};
pub use lambda::LambdaRuntime;
pub use moto::Moto;
