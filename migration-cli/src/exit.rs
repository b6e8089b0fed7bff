//! Exit codes scripts can trust.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failure: something went wrong; the message says what and what to run next |
//! | 2 | usage: the command line is wrong (clap's own code) |
//! | 3 | verification found a difference between source and destination |
//! | 4 | refused: a precondition does not hold (e.g. `cutover` while the destination writer is throttled) |

/// How the program ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    Failure,
    Usage,
    Differences,
    Refused,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Differences => 3,
            Exit::Refused => 4,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}
