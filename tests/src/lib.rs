//! The test bed: the real servers the product talks to, started on loopback for one test.
//!
//! Everything here starts a real program that `tests/testbed/install.sh` installed (or that
//! cargo built): `influxd` 2.7.12 (and 2.9.1 for the version matrix), the `influx` CLI 2.7.5,
//! `moto_server` for the AWS APIs, and the Lambda runtime API of `cargo lambda watch`. Nothing is
//! faked. The only server of our own is the [`fault_proxy`], which sits *in front of* a real
//! server to inject latency, 503s, resets and stalls.
//!
//! | folder | what it holds |
//! |---|---|
//! | [`servers`] | the real programs a test starts on loopback: influxd, moto, a notification receiver, the fault proxy, and the process and port handling they share |
//! | [`stack`] | the local stack: the live path deployed as on AWS (moto, `infra/deploy.sh`), the functions behind the Lambda runtime API, event source mappings, the API gateway, the logs |
//! | [`scenario`] | the demo's live migration on the local stack: the dataset, client traffic, scheduled work, probe points and the report |
//! | [`bed`], [`flux`], [`reads`], [`bench_run`] | where the test bed is installed; reading Flux answers and comparing points; reads as a client makes them; the benchmarks' options |
//!
//! Every handle owns its process group and temporary directory: dropping it kills the process by
//! its PID (SIGKILL to the group) and removes the directory, so a panicking test leaves nothing
//! running. When the test bed is not installed, the first call panics with the command to run;
//! tests never skip silently.

pub mod bed;
pub mod bench_run;
pub mod flux;
pub mod reads;
pub mod scenario;
pub mod servers;
pub mod stack;

pub use bed::TestBed;
pub use servers::fault_proxy::FaultProxy;
pub use servers::influxd::{Influxd, InfluxdVersion};
pub use servers::moto::Moto;
pub use stack::lambda::LambdaRuntime;
