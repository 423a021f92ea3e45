//! The finalize call with its retries: the only place that loops.
//!
//! Each turn sends one request through [`HighLevel::send`] and decides from
//! [`retry::verdict`] whether to stop, re-authenticate once, or wait and retry — always within
//! the [`Budget`]. How to re-authenticate after a 401 is the caller's business (re-reading or
//! refreshing a token), handed in as a closure, so this module knows nothing of token sources.

use std::future::Future;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderValue;
use tokio::time::Instant;

use super::client::{Exchange, FinalizeCall, HighLevel};
use super::outcome::{CallFacts, Outcome};
use super::retry::{self, Verdict, DEFAULT_RETRY_AFTER};
use crate::error::{BoxError, Error};
use crate::random::random_u64;
use crate::request::deadline::Budget;
use crate::upstream::UpstreamReply;

/// Sends `call` with `bearer` through `highlevel` until HighLevel accepts it, refuses it, or
/// the budget or `max_attempts` runs out. After a first 401, `reauthenticate` is called once
/// for a new bearer header, and the retry with it does not count against `max_attempts`.
pub(crate) async fn finalize<R, Fut>(
    highlevel: &HighLevel,
    call: &FinalizeCall,
    mut bearer: HeaderValue,
    budget: &Budget,
    max_attempts: u32,
    reauthenticate: R,
) -> Outcome
where
    R: FnOnce() -> Fut,
    Fut: Future<Output = Result<HeaderValue, Error>>,
{
    let deadline = budget.deadline();
    let mut reauthenticate = Some(reauthenticate);
    let mut sent = 0u32; // every request put on the wire
    let mut counted = 0u32; // those that count against MAX_ATTEMPTS
    let mut free_attempt = false; // the one retry after a re-authentication
    let mut upstream_wait = None; // HighLevel's last Retry-After
    let mut call_facts = CallFacts::default();
    let result = loop {
        if let Some(left) = highlevel.pauses().remaining(&call.location) {
            // The location's rate-limit window is spent: wait it out, or, when it does not
            // fit the budget, say when to come back without spending an attempt.
            if !fits(left, deadline) {
                upstream_wait = Some(left);
                break Err(unavailable(None, Some(left), None));
            }
            tracing::info!(url = %call.url, wait_ms = left.as_millis() as u64, "HighLevel's rate-limit window for this location is spent; waiting it out");
            tokio::time::sleep(left).await;
        }
        if Instant::now() >= deadline {
            break Err(Error::UpstreamTimeout);
        }
        sent += 1;
        if !std::mem::take(&mut free_attempt) {
            counted += 1;
        }
        let headers = highlevel.headers(bearer.clone());
        let sent_at = Instant::now();
        let exchange = highlevel.send(call, headers, deadline).await;
        call_facts.latency += sent_at.elapsed();
        if let Exchange::Answered {
            reply,
            rate_limit,
            retry_after,
        } = &exchange
        {
            call_facts.last_status = Some(reply.status);
            call_facts.rate_limit = *rate_limit;
            // HighLevel's own Retry-After says when to come back; a spent window is the
            // location's pause only when it sent none.
            let pause = rate_limit.pause().filter(|_| retry_after.is_none());
            if let Some(until) = pause.and_then(|p| Instant::now().checked_add(p)) {
                highlevel.pauses().pause(&call.location, until);
            }
        }
        let (last, retry_after) = match exchange {
            Exchange::TimedOut => break Err(Error::UpstreamTimeout),
            Exchange::Broken(source) => break Err(unavailable(None, None, Some(source))),
            Exchange::NotDelivered(source) => (Retryable::NotDelivered(source), None),
            Exchange::Answered {
                reply,
                retry_after,
                rate_limit,
            } => match retry::verdict(reply.status) {
                Verdict::Success => break Ok(reply),
                Verdict::Reauthenticate => match reauthenticate.take() {
                    Some(reauthenticate) => {
                        tracing::warn!(url = %call.url, "HighLevel answered 401; re-reading the token once");
                        match reauthenticate().await {
                            Ok(fresh) => bearer = fresh,
                            Err(error) => break Err(error),
                        }
                        free_attempt = true;
                        continue;
                    }
                    None => break Err(Error::UpstreamAuthFailed(reply)),
                },
                Verdict::Forbidden => break Err(Error::UpstreamAuthFailed(reply)),
                Verdict::Rejected => break Err(Error::UpstreamRejected(reply)),
                Verdict::ServerError => break Err(unavailable(Some(reply), None, None)),
                Verdict::Retry => {
                    let delay = retry_after
                        .as_deref()
                        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()))
                        .or_else(|| rate_limit.pause());
                    upstream_wait = delay;
                    (Retryable::Answered(reply), delay)
                }
            },
        };
        let give_up =
            |delay: Option<Duration>| Err(last.into_error(delay.unwrap_or(DEFAULT_RETRY_AFTER)));
        if counted >= max_attempts {
            break give_up(retry_after);
        }
        let wait = retry_after.unwrap_or_else(|| retry::backoff(counted, random_u64()));
        if !fits(wait, deadline) {
            break give_up(retry_after);
        }
        tracing::info!(url = %call.url, attempt = sent, wait_ms = wait.as_millis() as u64, "retrying HighLevel");
        tokio::time::sleep(wait).await;
    };
    match result {
        Ok(reply) => Outcome::Finalized {
            reply,
            attempts: sent,
            call: call_facts,
        },
        Err(error) => Outcome::Failed {
            error,
            attempts: sent,
            upstream_wait,
            call: call_facts,
        },
    }
}

/// Least budget an attempt needs after a wait: a wait that leaves less is not waited, so no
/// attempt goes out with milliseconds left to time out in (a 504 that "may have been
/// applied") when a 503 could say when to come back.
pub(crate) const MIN_ATTEMPT_BUDGET: Duration = Duration::from_secs(1);

/// Whether waiting `wait` from now leaves an attempt [`MIN_ATTEMPT_BUDGET`] before `deadline`.
fn fits(wait: Duration, deadline: Instant) -> bool {
    Instant::now()
        .checked_add(wait)
        .and_then(|resume| resume.checked_add(MIN_ATTEMPT_BUDGET))
        .is_some_and(|end| end <= deadline)
}

fn unavailable(
    reply: Option<UpstreamReply>,
    retry_after: Option<Duration>,
    source: Option<BoxError>,
) -> Error {
    Error::UpstreamUnavailable {
        reply,
        retry_after,
        source,
    }
}

/// The last retryable exchange, kept to explain a give-up.
enum Retryable {
    Answered(UpstreamReply),
    NotDelivered(BoxError),
}

impl Retryable {
    fn into_error(self, retry_after: Duration) -> Error {
        match self {
            Retryable::Answered(reply) => unavailable(Some(reply), Some(retry_after), None),
            Retryable::NotDelivered(source) => unavailable(None, Some(retry_after), Some(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_fits_only_if_it_leaves_a_second_for_the_attempt_after_it() {
        let deadline = Instant::now() + Duration::from_secs(3);
        assert!(fits(Duration::from_millis(500), deadline));
        assert!(!fits(Duration::from_millis(2500), deadline), "500 ms left");
        assert!(!fits(Duration::from_secs(3), deadline));
        assert!(!fits(Duration::MAX, deadline), "an absurd wait never fits");
    }
}
