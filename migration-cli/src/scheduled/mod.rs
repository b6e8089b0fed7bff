//! Scheduled work (tasks, checks and notification rules) and which database runs it.
//!
//! - [`work`]: the items each database has, the held label that records who owns them, their
//!   runs, and the buckets a task's Flux reads and writes.
//! - [`bucket_scope`]: the work a migration of some buckets moves, and what it leaves.
//! - [`transfer`]: the handover from the database that owns the work to the other (held at the
//!   giver, missed runs replayed at the taker, derived data made whole, active at the taker).
//!
//! May use: [`crate::compare`] (the handover makes derived buckets match), [`crate::influx`],
//! [`crate::output`] and `shared`.

pub mod bucket_scope;
pub mod transfer;
pub mod work;
