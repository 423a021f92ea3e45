//! Queue mode's worker: finalizes a batch of queued messages concurrently, each under its
//! record's lock, and says for each whether it is done or should come back later.
//!
//! The fronts (the SQS event in [`crate::lambda`], the in-memory queue of the local tools) turn
//! [`Settled::Later`] into a visibility change and a batch item failure; everything else here is
//! the same for both.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::{now_ms, settle, Delivery};
use crate::error::chain;
use crate::highlevel::retry::random_u64;
use crate::observe::{Audit, Measures, Mode};
use crate::queue::{Message, MAX_VISIBILITY};
use crate::records::{Claimed, Status};
use crate::service::{Invocation, Outcome};

/// First retry delay of a transient failure, without a `Retry-After` from HighLevel.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(30);
/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(15 * 60);
/// Extra wait beyond another invocation's lock, so the message comes back after it ends.
const BUSY_GRACE: Duration = Duration::from_secs(1);

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    /// The queue's id for it (SQS `messageId`), for the batch answer and the log.
    pub message_id: String,
    /// Its body.
    pub body: String,
    /// How many times it has been received, this time included.
    pub receives: u32,
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Delete it: finalized, failed for good, or not a message at all.
    Done,
    /// Leave it on the queue, visible again after this long.
    Later(Duration),
}

impl Delivery {
    /// Finalizes `batch` concurrently within the invocation's deadline; one answer per message,
    /// in order.
    pub(crate) async fn work(&self, batch: &[Received], invocation: &Invocation) -> Vec<Settled> {
        join_all(
            batch
                .iter()
                .map(|received| self.work_one(received, invocation)),
        )
        .await
    }

    async fn work_one(&self, received: &Received, invocation: &Invocation) -> Settled {
        let started = Instant::now();
        let mut audit = Audit {
            request_id: invocation.request_id.clone(),
            mode: Some(Mode::Worker),
            credential: "none".into(),
            ..Audit::default()
        };
        let mut measures = Measures::default();
        let settled = self
            .settle_message(received, invocation, &mut audit, &mut measures)
            .await;
        audit.duration_ms = started.elapsed().as_millis() as u64;
        self.observer
            .record(&audit, measures, self.service.token_stats());
        settled
    }

    /// Works one message, filling in its audit line and metrics as it goes.
    async fn settle_message(
        &self,
        received: &Received,
        invocation: &Invocation,
        audit: &mut Audit,
        measures: &mut Measures,
    ) -> Settled {
        let message_id = received.message_id.as_str();
        let request_id = invocation.request_id.as_str();
        let message = match Message::parse(&received.body) {
            Ok(message) => message,
            Err(problem) => {
                // A retry cannot make it parse; keeping it would only fill the dead-letter queue.
                tracing::error!(
                    request_id,
                    message_id,
                    problem,
                    "a queued message does not parse; it is dropped"
                );
                (audit.status, audit.code) = (400, Some("invalid_request"));
                return Settled::Done;
            }
        };
        audit.finalization_id = Some(message.finalization_id.as_str().to_owned());
        audit.location_id = Some(message.request.location_id.as_str().to_owned());
        audit.csv_id = Some(message.request.csv_id.as_str().to_owned());
        measures.queue_age_ms = Some(now_ms().saturating_sub(message.accepted_at_ms));
        let Some(records) = &self.records else {
            tracing::error!(
                request_id,
                message_id,
                "queue mode needs finalization records; the message comes back"
            );
            (audit.status, audit.code) = (500, Some("config_error"));
            return Settled::Later(self.backoff(received.receives));
        };
        let now = now_ms();
        let fresh = self.fresh(
            &message.finalization_id,
            &message.request,
            Status::InProgress,
            invocation,
            now,
        );
        let record = match records.claim(fresh, now).await {
            Ok(Claimed::Held(record)) => record,
            Ok(Claimed::Finalized) => {
                // A duplicate delivery: the record already holds the answer.
                (audit.status, audit.replayed) = (200, true);
                return Settled::Done;
            }
            Ok(Claimed::Busy(until_ms)) => {
                let wait = Duration::from_millis(until_ms.saturating_sub(now)) + BUSY_GRACE;
                (audit.status, audit.code) = (409, Some("request_in_progress"));
                return Settled::Later(wait.min(MAX_VISIBILITY));
            }
            Err(error) => {
                let error = crate::error::Error::from(error);
                tracing::warn!(request_id, message_id, cause = %chain(&error), "the record could not be claimed; the message comes back");
                (audit.status, audit.code) = (error.status().as_u16(), Some(error.code()));
                return Settled::Later(self.backoff(received.receives));
            }
        };
        let outcome = self.service.finalize(&message.request, invocation).await;
        let last_receive = received.receives >= self.max_receives;
        let transient = outcome.error().is_some_and(|e| e.is_transient());
        let settled_record = settle(
            record,
            &outcome,
            transient && !last_receive,
            self.record_ttl,
            now_ms(),
        );
        if let Err(error) = records.finish(&settled_record).await {
            tracing::error!(request_id, message_id, cause = %chain(&error), "the record of a queued finalize could not be written");
        }
        audit.attempts = outcome.attempts();
        audit.upstream_status = outcome.call().last_status;
        *measures = Measures {
            queue_age_ms: measures.queue_age_ms,
            ..Measures::of(&outcome)
        };
        match &outcome {
            Outcome::Failed {
                error,
                upstream_wait,
                ..
            } => {
                (audit.status, audit.code) = (error.status().as_u16(), Some(error.code()));
                if !transient {
                    tracing::error!(request_id, message_id, code = error.code(), cause = %chain(error), "finalize failed for good; a retry cannot help");
                    return Settled::Done;
                }
                if last_receive {
                    tracing::error!(request_id, message_id, code = error.code(), cause = %chain(error), "the last receive failed; the message goes to the dead-letter queue");
                    // Visible at once, so SQS moves it to the dead-letter queue on the next receive.
                    return Settled::Later(Duration::ZERO);
                }
                let wait = upstream_wait.map_or_else(
                    || self.backoff(received.receives),
                    |w| w.min(MAX_VISIBILITY),
                );
                tracing::warn!(request_id, message_id, code = error.code(), wait_ms = wait.as_millis() as u64, cause = %chain(error), "finalize failed for now; the message comes back");
                Settled::Later(wait)
            }
            Outcome::Finalized { .. } | Outcome::DryRun { .. } => {
                audit.status = 200;
                Settled::Done
            }
        }
    }

    fn backoff(&self, receives: u32) -> Duration {
        backoff(receives, random_u64())
    }
}

/// The visibility delay after the `receives`-th receive failed without a `Retry-After`:
/// exponential from [`BACKOFF_FIRST`], jittered upwards by up to a quarter, within
/// [`BACKOFF_CAP`] (where the jitter reaches down instead, so capped delays still spread).
pub fn backoff(receives: u32, random: u64) -> Duration {
    let doublings = receives.saturating_sub(1).min(16);
    let base = BACKOFF_FIRST.saturating_mul(1 << doublings);
    let low = base.min(BACKOFF_CAP * 4 / 5);
    let high = (base + base / 4).min(BACKOFF_CAP);
    let span_ms = (high - low).as_millis() as u64;
    low + Duration::from_millis(random % (span_ms + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_from_thirty_seconds_doubling_to_fifteen_minutes_with_jitter() {
        assert_eq!(backoff(1, 0), Duration::from_secs(30));
        assert_eq!(
            backoff(1, u64::MAX),
            Duration::from_millis(30_000 + u64::MAX % 7_501)
        );
        assert!(backoff(1, 7_500) <= Duration::from_millis(37_500));
        assert_eq!(backoff(2, 0), Duration::from_secs(60));
        assert_eq!(backoff(5, 0), Duration::from_secs(480));
        for receives in [6, 10, 1000, u32::MAX] {
            for random in [0, 1, 123_456_789, u64::MAX] {
                let delay = backoff(receives, random);
                assert!(
                    delay >= Duration::from_secs(720) && delay <= BACKOFF_CAP,
                    "{receives} {random}: {delay:?}"
                );
            }
        }
        assert_ne!(
            backoff(8, 1),
            backoff(8, 99_999),
            "capped delays still spread"
        );
    }
}
