//! The finalize service: one entry for every front.
//!
//! A front (Lambda HTTP events, the local server, later a queue worker) parses and
//! authenticates a request into a [`FinalizeRequest`], hands it to
//! [`FinalizeService::finalize`] with the [`Invocation`]'s facts, and gets back one
//! [`Outcome`]. The service reads the token, calls HighLevel with the contract's retries, and
//! knows nothing of HTTP events, response bodies or log lines.

use std::time::Duration;

use serde_json::Value;

use crate::deadline::{Budget, Deadline};
use crate::error::Error;
use crate::highlevel::{self, CallFacts, HighLevel};
use crate::ids::{CsvId, LocationId, UserId};
use crate::tokens::TokenSource;
use crate::upstream::UpstreamReply;

/// A validated finalize request: which CSV import of which sub-account, for which user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalizeRequest {
    /// The sub-account.
    pub location_id: LocationId,
    /// The CSV import.
    pub csv_id: CsvId,
    /// The user to attribute the posts to, if one is known.
    pub user_id: Option<UserId>,
}

/// The facts of one invocation that the work must respect.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    /// Lambda's request id (or a local one), for the response and the log.
    pub request_id: String,
    /// When the function must have answered.
    pub deadline: Deadline,
}

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
    fn not_sent(error: Error) -> Self {
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
            Outcome::DryRun { .. } => CallFacts::default(),
        }
    }

    /// Finalize requests sent to HighLevel.
    pub fn attempts(&self) -> u32 {
        match self {
            Outcome::Finalized { attempts, .. } | Outcome::Failed { attempts, .. } => *attempts,
            Outcome::DryRun { .. } => 0,
        }
    }
}

impl From<highlevel::Attempted> for Outcome {
    fn from(attempted: highlevel::Attempted) -> Self {
        let (attempts, call) = (attempted.attempts, attempted.call);
        match attempted.result {
            Ok(reply) => Outcome::Finalized {
                reply,
                attempts,
                call,
            },
            Err(error) => Outcome::Failed {
                error,
                attempts,
                upstream_wait: attempted.upstream_wait,
                call,
            },
        }
    }
}

/// The settings and clients a finalize needs, built once per instance.
pub(crate) struct FinalizeService {
    tokens: TokenSource,
    highlevel: HighLevel,
    upstream_timeout: Duration,
    max_attempts: u32,
    dry_run: bool,
}

/// How the service is configured.
pub(crate) struct Settings {
    /// `UPSTREAM_TIMEOUT_MS`.
    pub upstream_timeout: Duration,
    /// `MAX_ATTEMPTS`.
    pub max_attempts: u32,
    /// Stop short of calling HighLevel.
    pub dry_run: bool,
}

impl FinalizeService {
    /// A service over these clients.
    pub(crate) fn new(tokens: TokenSource, highlevel: HighLevel, settings: Settings) -> Self {
        Self {
            tokens,
            highlevel,
            upstream_timeout: settings.upstream_timeout,
            max_attempts: settings.max_attempts,
            dry_run: settings.dry_run,
        }
    }

    /// `UPSTREAM_TIMEOUT_MS`: how long a finalize may take once HighLevel is called.
    pub(crate) fn upstream_timeout(&self) -> Duration {
        self.upstream_timeout
    }

    /// The token source's refreshes and unwritten pairs, for the metrics.
    pub(crate) fn token_stats(&self) -> crate::tokens::TokenStats {
        self.tokens.stats()
    }

    /// Whether HighLevel is never called (`--dry-run`).
    pub(crate) fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Finalizes the import `request` names, within the invocation's deadline.
    pub(crate) async fn finalize(
        &self,
        request: &FinalizeRequest,
        invocation: &Invocation,
    ) -> Outcome {
        let budget = Budget::new(self.upstream_timeout, invocation.deadline);
        let location = &request.location_id;
        let token = match self.tokens.token(location, &budget).await {
            Ok(token) => token,
            Err(error) => return Outcome::not_sent(error),
        };
        let call =
            match self
                .highlevel
                .finalize_call(location, &request.csv_id, request.user_id.as_ref())
            {
                Ok(call) => call,
                Err(error) => return Outcome::not_sent(error),
            };
        if self.dry_run {
            let headers = self.highlevel.headers(token.token.bearer());
            return Outcome::DryRun {
                would_send: highlevel::describe(&call, &headers),
            };
        }
        let reauthenticate = || async {
            let fresh = self.tokens.reload(location, &token, &budget).await?;
            Ok(fresh.token.bearer())
        };
        self.highlevel
            .finalize(
                &call,
                token.token.bearer(),
                &budget,
                self.max_attempts,
                reauthenticate,
            )
            .await
            .into()
    }
}
