//! Where both stream writers have replayed the stream: proven by a barrier both passed
//! ([`ReplayBound::proven`], `cutover` and `verify --barrier`), or estimated from their lag
//! readings.
//!
//! The estimate: a lag reading is the age of the last record of the last batch a writer
//! finished, so points up to "reading time − age" are applied, less a margin for the time
//! between a point's stamp and its record reaching the stream. `verify` and `repair` end their
//! window there when no `--stop` is given.

use std::time::Duration;

use time::OffsetDateTime;

use crate::aws::lag::{AnyLag, LagReading, LagSource};

/// Points stamped up to this long before they reach the stream: the gateway stamps a line at
/// receive time and puts it moments later; clients' own timestamps come from their clocks.
pub const REPLAY_MARGIN: Duration = Duration::from_secs(5);

/// Where the stream writers have replayed the stream up to, from their lag readings.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayBound {
    /// Points up to this time have been applied at both ends.
    pub until: OffsetDateTime,
    /// Which readings gave it, for the operator.
    pub because: String,
    /// A barrier proved it (exact, to the nanosecond); otherwise a lag estimate.
    pub exact: bool,
}

impl ReplayBound {
    /// The bound a barrier proved: every write acknowledged before `until` is in both databases.
    pub fn proven(until: OffsetDateTime, because: String) -> ReplayBound {
        ReplayBound { until, because, exact: true }
    }

    /// The bound the readings give: the earliest of their [`LagReading::applied_until`] less
    /// [`REPLAY_MARGIN`]. `None` unless the destination writer's lag is known; an unknown
    /// source writer's lag is left out (its gaps show as differences, never as a pass).
    pub fn from_readings(destination: &LagReading, source: Option<&LagReading>) -> Option<ReplayBound> {
        let mut until = destination.applied_until()?;
        let mut because = vec![format!("destination writer {}", destination.describe())];
        if let Some(s) = source
            && let Some(t) = s.applied_until()
        {
            until = until.min(t);
            because.push(format!("source writer {}", s.describe()));
        }
        Some(ReplayBound {
            until: until - REPLAY_MARGIN,
            because: format!("{}; less {} s margin", because.join("; "), REPLAY_MARGIN.as_secs()),
            exact: false,
        })
    }
}

/// Reads both writers' lag and the bound they give (see [`ReplayBound::from_readings`]).
pub async fn replay_bound(
    lag: &AnyLag,
    destination_function: &str,
    source_function: Option<&str>,
) -> Option<ReplayBound> {
    let destination = lag.read(destination_function).await.ok()?;
    let source = match source_function {
        Some(f) => lag.read(f).await.ok(),
        None => None,
    };
    ReplayBound::from_readings(&destination, source.as_ref())
}
