//! What became of a finalize: HighLevel's acceptance (answered, or confirmed by the CSV's
//! status), a dry run's would-be request, or the error that ended the attempts — with what the
//! calls showed, for the audit line and metrics.

use std::time::Duration;

use serde_json::Value;

use super::ratelimit::RateLimit;
use crate::error::Error;
use crate::upstream::UpstreamReply;

/// What became of one finalize request.
#[derive(Debug)]
pub enum Outcome {
    /// HighLevel accepted the finalize.
    Finalized {
        /// HighLevel's answer.
        reply: UpstreamReply,
        /// Finalize requests sent, retries included.
        attempts: u32,
        /// What the calls showed (latency, rate-limit headers).
        call: CallFacts,
    },
    /// HighLevel's CSV status shows an earlier PATCH applied, whose answer was lost: finalized,
    /// and no PATCH sent now.
    Confirmed {
        /// The PATCHes sent for the finalize so far, by every try (at least 1).
        attempts: u32,
    },
    /// `--dry-run`: everything but the call; what would have been sent, token redacted.
    DryRun {
        /// Method, URL, headers and body.
        would_send: Value,
    },
    /// The finalize did not happen (or may not have: a timeout).
    Failed {
        /// Why.
        error: Error,
        /// Finalize requests that reached the wire.
        attempts: u32,
        /// HighLevel's own word on when to come back, if it gave one.
        upstream_wait: Option<Duration>,
        /// What the calls showed, if any was made.
        call: CallFacts,
    },
}

impl Outcome {
    /// A failure before anything was sent to HighLevel.
    pub(crate) fn not_sent(error: Error) -> Self {
        Outcome::Failed {
            error,
            attempts: 0,
            upstream_wait: None,
            call: CallFacts::default(),
        }
    }

    /// Why it failed, if it did.
    pub fn error(&self) -> Option<&Error> {
        match self {
            Outcome::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// What the calls to HighLevel showed (none for a dry run).
    pub fn call(&self) -> CallFacts {
        match self {
            Outcome::Finalized { call, .. } | Outcome::Failed { call, .. } => *call,
            Outcome::Confirmed { .. } | Outcome::DryRun { .. } => CallFacts::default(),
        }
    }

    /// Finalize requests sent to HighLevel now (none for a confirmation or a dry run).
    pub fn attempts(&self) -> u32 {
        match self {
            Outcome::Finalized { attempts, .. } | Outcome::Failed { attempts, .. } => *attempts,
            Outcome::Confirmed { .. } | Outcome::DryRun { .. } => 0,
        }
    }
}

/// What the finalize calls to HighLevel showed: for the audit line and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallFacts {
    /// The status of HighLevel's last answer, if one came.
    pub last_status: Option<u16>,
    /// The rate-limit headers of that answer.
    pub rate_limit: RateLimit,
    /// Time spent waiting for HighLevel's answers, every attempt together.
    pub latency: Duration,
}
