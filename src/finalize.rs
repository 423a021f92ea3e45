//! The finalize call end to end: token, budget, attempts, retries, one re-read on 401.
//!
//! This is the only place that loops. Each turn sends one attempt through [`HighLevel::send`]
//! and decides from [`retry::verdict`] whether to stop, re-read the token, or wait and retry —
//! always within one deadline: `UPSTREAM_TIMEOUT_MS` from the first attempt, never later than
//! the Lambda invocation's deadline minus [`LAMBDA_MARGIN`].

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::error::Error;
use crate::inbound::FinalizeRequest;
use crate::retry::{self, Verdict, DEFAULT_RETRY_AFTER};
use crate::token::{LeasedToken, TokenSource};
use crate::upstream::{
    finalize_body, finalize_url, Answer, Attempt, FinalizeCall, HighLevel, UpstreamReply,
};

/// Time kept back from the Lambda deadline so the function always answers before being killed.
pub const LAMBDA_MARGIN: Duration = Duration::from_millis(500);

/// A finalized import.
#[derive(Debug)]
pub struct Finalized {
    /// HighLevel's answer.
    pub reply: UpstreamReply,
    /// Finalize requests sent, retries included.
    pub attempts: u32,
}

/// A failed finalize, with the number of requests that reached the wire.
#[derive(Debug)]
pub struct Failed {
    /// What went wrong.
    pub error: Error,
    /// Finalize requests sent.
    pub attempts: u32,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Failed { error, attempts: 0 }
    }
}

/// The settings and clients the call needs, borrowed from the app.
pub struct Finalizer<'a> {
    /// Token source.
    pub tokens: &'a TokenSource,
    /// HTTP client.
    pub highlevel: &'a HighLevel,
    /// Base URL.
    pub base_url: &'a url::Url,
    /// `MAX_ATTEMPTS`.
    pub max_attempts: u32,
}

/// The time allowed for calling HighLevel (token endpoint and finalize, retries included).
///
/// The clock starts at the first call to HighLevel, so reading a secret does not eat into it,
/// but it never reaches past the Lambda deadline minus [`LAMBDA_MARGIN`].
#[derive(Debug)]
pub struct Budget {
    limit: Duration,
    hard_deadline: Option<Instant>,
    started: OnceLock<Instant>,
}

impl Budget {
    /// `limit` from the first call on, and never past `lambda_remaining` (less the margin) from now.
    pub fn new(limit: Duration, lambda_remaining: Option<Duration>) -> Self {
        let now = Instant::now();
        Self {
            limit,
            hard_deadline: lambda_remaining
                .map(|remaining| now + remaining.saturating_sub(LAMBDA_MARGIN)),
            started: OnceLock::new(),
        }
    }

    /// The Lambda deadline less the margin, when the invocation has one: secret reads stop there.
    pub fn lambda_deadline(&self) -> Option<Instant> {
        self.hard_deadline
    }

    /// The instant by which every HighLevel call must be over; fixed by the first call.
    pub fn deadline(&self) -> Instant {
        let soft = *self.started.get_or_init(Instant::now) + self.limit;
        match self.hard_deadline {
            Some(hard) => soft.min(hard),
            None => soft,
        }
    }
}

/// Everything needed to call HighLevel, before the call.
#[derive(Debug)]
pub struct Prepared {
    /// The token to send.
    pub token: LeasedToken,
    /// URL and body.
    pub call: FinalizeCall,
}

impl Finalizer<'_> {
    /// Reads the token and builds the request, without sending it.
    pub async fn prepare(
        &self,
        request: &FinalizeRequest,
        budget: &Budget,
    ) -> Result<Prepared, Failed> {
        let token = self.tokens.token(&request.location_id, budget).await?;
        let url = finalize_url(self.base_url, &request.location_id, &request.csv_id)
            .map_err(|e| Error::config("cannot build the HighLevel URL", Some(Box::new(e) as _)))?;
        let call = FinalizeCall {
            url,
            body: finalize_body(request.user_id.as_ref()),
        };
        Ok(Prepared { token, call })
    }

    /// Finalizes the import named by `request`.
    pub async fn run(
        &self,
        request: &FinalizeRequest,
        budget: &Budget,
    ) -> Result<Finalized, Failed> {
        let location = &request.location_id;
        let Prepared { mut token, call } = self.prepare(request, budget).await?;
        let deadline = budget.deadline();

        let mut sent = 0u32; // every request put on the wire
        let mut counted = 0u32; // those that count against MAX_ATTEMPTS
        let mut reauthenticated = false;
        let mut free_attempt = false; // the one retry after a token re-read
        loop {
            let fail = |error: Error| Failed {
                error,
                attempts: sent,
            };
            if Instant::now() >= deadline {
                return Err(fail(Error::UpstreamTimeout));
            }
            let headers = self.highlevel.headers(&token.token).map_err(fail)?;
            sent += 1;
            if !std::mem::take(&mut free_attempt) {
                counted += 1;
            }
            let fail = |error: Error| Failed {
                error,
                attempts: sent,
            };
            let (last, retry_after) = match self.highlevel.send(&call, headers, deadline).await {
                Attempt::TimedOut => return Err(fail(Error::UpstreamTimeout)),
                Attempt::Broken(source) => {
                    return Err(fail(Error::UpstreamUnavailable {
                        reply: None,
                        retry_after: None,
                        source: Some(source),
                    }))
                }
                Attempt::NotDelivered(source) => (Retryable::NotDelivered(source), None),
                Attempt::Answered(Answer { reply, retry_after }) => {
                    match retry::verdict(reply.status) {
                        Verdict::Success => {
                            return Ok(Finalized {
                                reply,
                                attempts: sent,
                            })
                        }
                        Verdict::Reauthenticate if !reauthenticated => {
                            reauthenticated = true;
                            free_attempt = true;
                            tracing::warn!(location_id = %location, "HighLevel answered 401; re-reading the token once");
                            token = self
                                .tokens
                                .reload(location, &token, budget)
                                .await
                                .map_err(fail)?;
                            continue;
                        }
                        Verdict::Reauthenticate | Verdict::Forbidden => {
                            return Err(fail(Error::UpstreamAuthFailed(reply)))
                        }
                        Verdict::Rejected => return Err(fail(Error::UpstreamRejected(reply))),
                        Verdict::Failed => {
                            return Err(fail(Error::UpstreamUnavailable {
                                reply: Some(reply),
                                retry_after: None,
                                source: None,
                            }))
                        }
                        Verdict::Retry => {
                            let delay = retry_after
                                .as_deref()
                                .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
                            (Retryable::Answered(reply), delay)
                        }
                    }
                }
            };
            let give_up = |delay: Option<Duration>| {
                fail(last.into_error(delay.unwrap_or(DEFAULT_RETRY_AFTER)))
            };
            if counted >= self.max_attempts {
                return Err(give_up(retry_after));
            }
            let wait = retry_after.unwrap_or_else(|| retry::backoff(counted, retry::random_u64()));
            if Instant::now() + wait >= deadline {
                return Err(give_up(retry_after));
            }
            tracing::info!(location_id = %location, attempt = sent, wait_ms = wait.as_millis() as u64, "retrying HighLevel");
            tokio::time::sleep(wait).await;
        }
    }
}

/// The last retryable outcome, kept to explain a give-up.
enum Retryable {
    Answered(UpstreamReply),
    NotDelivered(crate::error::BoxError),
}

impl Retryable {
    fn into_error(self, retry_after: Duration) -> Error {
        match self {
            Retryable::Answered(reply) => Error::UpstreamUnavailable {
                reply: Some(reply),
                retry_after: Some(retry_after),
                source: None,
            },
            Retryable::NotDelivered(source) => Error::UpstreamUnavailable {
                reply: None,
                retry_after: Some(retry_after),
                source: Some(source),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_the_budget_when_lambda_has_time() {
        let budget = Budget::new(Duration::from_secs(10), Some(Duration::from_secs(30)));
        let start = Instant::now();
        let deadline = budget.deadline();
        assert!(deadline >= start + Duration::from_secs(10));
        assert!(deadline <= Instant::now() + Duration::from_secs(10));
        assert_eq!(budget.deadline(), deadline, "fixed by the first call");
    }

    #[test]
    fn the_deadline_stops_short_of_the_lambda_deadline() {
        let before = Instant::now();
        let budget = Budget::new(Duration::from_secs(10), Some(Duration::from_secs(3)));
        let deadline = budget.deadline();
        assert!(deadline <= Instant::now() + Duration::from_millis(2500));
        assert!(deadline >= before + Duration::from_millis(2500));
        let none_left = Budget::new(Duration::from_secs(10), Some(Duration::from_millis(200)));
        assert!(none_left.deadline() <= Instant::now());
    }

    #[test]
    fn the_clock_starts_at_the_first_call() {
        let budget = Budget::new(Duration::from_millis(50), None);
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            budget.deadline() > Instant::now(),
            "time before the first call does not count"
        );
    }
}
