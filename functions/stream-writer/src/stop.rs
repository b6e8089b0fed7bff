//! Where a batch stopped: the checkpoint the handler answers with, and why.
//!
//! The replay ends a batch at its first record not durably written; the stall book records it;
//! the handler turns it into `batchItemFailures`.

use shared::stall::StallClass;

/// Where a batch stopped: the first record not durably written, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub at: usize,
    pub reason: String,
    /// Whether the cause needs an operator (configuration) or passes by itself.
    pub class: StallClass,
    /// The database's status, when it answered.
    pub status: Option<u16>,
}

impl Stop {
    /// A stop that is not the database's answer (storage, decoding, an internal error).
    pub fn other(at: usize, reason: impl Into<String>) -> Stop {
        Stop { at, reason: reason.into(), class: StallClass::Other, status: None }
    }
}
