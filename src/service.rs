//! The finalize service: the one finalize, whoever asked for it.
//!
//! Delivery hands [`FinalizeService::finalize`] a [`FinalizeRequest`] with its
//! [`Invocation`]'s facts — from a caller now (sync mode) or from a queued message (the worker)
//! — and gets back one [`Outcome`]. The service reads the token, calls HighLevel with the
//! contract's retries, and knows nothing of HTTP events, records, response bodies or log
//! lines.

use std::time::Duration;

use crate::highlevel::{self, attempts, HighLevel, Outcome};
use crate::request::deadline::Budget;
use crate::request::{FinalizeRequest, Invocation};
use crate::tokens::TokenSource;

/// The settings and clients a finalize needs, built once per instance.
pub(crate) struct FinalizeService {
    tokens: TokenSource,
    highlevel: HighLevel,
    upstream_timeout: Duration,
    max_attempts: u32,
    dry_run: bool,
}

impl FinalizeService {
    /// A service over these clients: each finalize may take `upstream_timeout`
    /// (`UPSTREAM_TIMEOUT_MS`) once HighLevel is called, and `max_attempts` (`MAX_ATTEMPTS`);
    /// a `dry_run` stops short of calling HighLevel.
    pub(crate) fn new(
        tokens: TokenSource,
        highlevel: HighLevel,
        upstream_timeout: Duration,
        max_attempts: u32,
        dry_run: bool,
    ) -> Self {
        Self {
            tokens,
            highlevel,
            upstream_timeout,
            max_attempts,
            dry_run,
        }
    }

    /// `UPSTREAM_TIMEOUT_MS`: how long a finalize may take once HighLevel is called.
    pub(crate) fn upstream_timeout(&self) -> Duration {
        self.upstream_timeout
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
        attempts::finalize(
            &self.highlevel,
            &call,
            token.token.bearer(),
            &budget,
            self.max_attempts,
            reauthenticate,
        )
        .await
    }
}
