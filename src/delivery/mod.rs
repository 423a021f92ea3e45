//! Delivery: how a finalize request becomes exactly one finalize, around the one
//! [`FinalizeService`].
//!
//! Without records, a request simply runs. With records (`IDEMPOTENCY_TABLE`, or memory for the
//! local tools), each request first takes its record: a duplicate is answered from the record
//! and calls nothing. In queue mode (`QUEUE_URL`) the receiver only takes the record and sends
//! one message; the worker ([`worker`]) finalizes it later.
//!
//! Fronts call [`Delivery::submit`] (a finalize request), [`Delivery::lookup`] (the status
//! route) and [`Delivery::work`] (a batch of queued messages), and render what comes back.

pub mod worker;

use std::time::Duration;

use tokio::time::Instant;

use crate::deadline::{unix_now, LAMBDA_MARGIN};
use crate::error::{chain, Error};
use crate::ids::LocationId;
use crate::observe::Observer;
use crate::queue::{Message, Queue};
use crate::records::{Begun, FinalizationId, Found, Record, RecordedError, Records, Status};
use crate::service::{FinalizeRequest, FinalizeService, Invocation, Outcome};

/// How long a record stays locked by a request with no Lambda deadline (the local tools),
/// beyond the HighLevel budget: long enough for the secret reads and the record writes.
const LOCAL_LOCK_EXTRA: Duration = Duration::from_secs(30);

/// The service, and how its requests are delivered.
pub(crate) struct Delivery {
    service: FinalizeService,
    records: Option<Records>,
    queue: Option<Queue>,
    record_ttl: Duration,
    max_receives: u32,
    observer: Observer,
}

/// What became of a finalize request.
#[derive(Debug)]
pub(crate) struct Submitted {
    /// Its record's id, when records are kept.
    pub finalization_id: Option<FinalizationId>,
    /// What happened.
    pub result: Submission,
}

/// What happened to a finalize request.
#[derive(Debug)]
pub(crate) enum Submission {
    /// It ran now: the service's outcome.
    Ran(Outcome),
    /// It was finalized before: the record holds the answer to give again.
    Replayed(Record),
    /// Queue mode: accepted now, its message sent.
    Accepted,
    /// Queue mode: already waiting (the record's status).
    Queued(Status),
    /// Refused by its record or the record store (409, 422, 503, 500).
    Refused(Error),
}

impl Submitted {
    fn unrecorded(result: Submission) -> Self {
        Self {
            finalization_id: None,
            result,
        }
    }

    /// Finalize requests this request sent to HighLevel.
    pub(crate) fn attempts(&self) -> u32 {
        match &self.result {
            Submission::Ran(outcome) => outcome.attempts(),
            _ => 0,
        }
    }

    /// Why it failed, if it did.
    pub(crate) fn error(&self) -> Option<&Error> {
        match &self.result {
            Submission::Ran(outcome) => outcome.error(),
            Submission::Refused(error) => Some(error),
            Submission::Replayed(_) | Submission::Accepted | Submission::Queued(_) => None,
        }
    }
}

/// Records and queue settings.
pub(crate) struct DeliverySettings {
    /// `IDEMPOTENCY_TTL_SECS`.
    pub record_ttl: Duration,
    /// `QUEUE_MAX_RECEIVES`.
    pub max_receives: u32,
    /// Where each request's and message's audit line and metrics go.
    pub observer: Observer,
}

impl Delivery {
    /// Delivery through `service`, keeping `records` and queueing on `queue` when given.
    pub(crate) fn new(
        service: FinalizeService,
        records: Option<Records>,
        queue: Option<Queue>,
        settings: DeliverySettings,
    ) -> Self {
        Self {
            service,
            records,
            queue,
            record_ttl: settings.record_ttl,
            max_receives: settings.max_receives,
            observer: settings.observer,
        }
    }

    /// Whether requests take a record (and so need a key). A dry run never does: it changes
    /// nothing.
    pub(crate) fn keeps_records(&self) -> bool {
        self.records.is_some() && !self.service.dry_run()
    }

    /// Writes each request's and message's audit line and metrics.
    pub(crate) fn observer(&self) -> &Observer {
        &self.observer
    }

    /// The token source's refreshes and unwritten pairs, for the metrics.
    pub(crate) fn token_stats(&self) -> crate::tokens::TokenStats {
        self.service.token_stats()
    }

    /// Whether accepted requests are queued (queue mode) rather than run.
    pub(crate) fn queues(&self) -> bool {
        self.queue.is_some() && self.keeps_records()
    }

    /// The queue, in queue mode.
    pub(crate) fn queue(&self) -> Option<&Queue> {
        self.queue.as_ref()
    }

    /// Handles one finalize request whose record id is `key` (from
    /// [`crate::records::key_for`]; `None` when no records are kept).
    pub(crate) async fn submit(
        &self,
        request: &FinalizeRequest,
        key: Option<FinalizationId>,
        invocation: &Invocation,
    ) -> Submitted {
        let (Some(records), Some(id), false) = (&self.records, key, self.service.dry_run()) else {
            return Submitted::unrecorded(Submission::Ran(
                self.service.finalize(request, invocation).await,
            ));
        };
        let result = match &self.queue {
            None => self.run_once(records, &id, request, invocation).await,
            Some(queue) => self.enqueue(records, queue, &id, request, invocation).await,
        };
        Submitted {
            finalization_id: Some(id),
            result,
        }
    }

    /// Synchronous mode with records: take the record, finalize, write what came of it.
    async fn run_once(
        &self,
        records: &Records,
        id: &FinalizationId,
        request: &FinalizeRequest,
        invocation: &Invocation,
    ) -> Submission {
        let now = now_ms();
        let fresh = self.fresh(id, request, Status::InProgress, invocation, now);
        let record = match records.begin(fresh, request, now).await {
            Ok(Begun::Started(record)) => record,
            Ok(Begun::Found(found, existing)) => return answer_found(found, existing, false),
            Err(error) => return Submission::Refused(error.into()),
        };
        let outcome = self.service.finalize(request, invocation).await;
        let settled = settle(record, &outcome, false, self.record_ttl, now_ms());
        if let Err(error) = records.finish(&settled).await {
            // The finalize happened (or failed) all the same: answer with it.
            tracing::error!(finalization_id = %id, cause = %chain(&error), "the record of a finalize could not be written");
        }
        Submission::Ran(outcome)
    }

    /// Queue mode's receiver: take the record as `queued`, send one message, and confirm the
    /// send on the record (until then, a request after the lock ends sends it again).
    async fn enqueue(
        &self,
        records: &Records,
        queue: &Queue,
        id: &FinalizationId,
        request: &FinalizeRequest,
        invocation: &Invocation,
    ) -> Submission {
        let now = now_ms();
        let fresh = self.fresh(id, request, Status::Queued, invocation, now);
        let record = match records.begin(fresh, request, now).await {
            Ok(Begun::Started(record)) => record,
            Ok(Begun::Found(found, existing)) => return answer_found(found, existing, true),
            Err(error) => return Submission::Refused(error.into()),
        };
        let message = Message {
            finalization_id: id.clone(),
            request: request.clone(),
            accepted_at_ms: now,
            request_id: invocation.request_id.clone(),
        };
        match queue.send(&message).await {
            Ok(()) => {
                let sent = Record {
                    lock_until_ms: None,
                    updated_at_ms: now_ms(),
                    ..record
                };
                if let Err(error) = records.finish(&sent).await {
                    tracing::warn!(finalization_id = %id, cause = %chain(&error), "the message was sent but its record could not say so; a duplicate request may send it again (the worker finalizes once)");
                }
                Submission::Accepted
            }
            Err(error) => {
                let error = Error::from(error);
                let failed = Record {
                    status: Status::Failed,
                    lock_until_ms: None,
                    updated_at_ms: now_ms(),
                    error: Some(recorded(&error)),
                    ..record
                };
                if let Err(store) = records.finish(&failed).await {
                    tracing::error!(finalization_id = %id, cause = %chain(&store), "a record could not be marked failed after the queue refused its message; it unblocks when its lock ends");
                }
                Submission::Refused(error)
            }
        }
    }

    /// The record with `id`, when `may_see` its location and it has not expired: the status
    /// route. Anything else is 404, so a caller learns nothing of other locations' records.
    pub(crate) async fn lookup(
        &self,
        id: &FinalizationId,
        may_see: impl Fn(&LocationId) -> bool,
    ) -> Result<Record, Error> {
        let Some(records) = &self.records else {
            return Err(Error::NotFound);
        };
        let record = records.get(id).await?.ok_or(Error::NotFound)?;
        let live = record.expires_at.saturating_mul(1000) > now_ms();
        if live && may_see(&record.location_id) {
            Ok(record)
        } else {
            Err(Error::NotFound)
        }
    }

    /// A new record for `request`, held by this invocation until its deadline.
    fn fresh(
        &self,
        id: &FinalizationId,
        request: &FinalizeRequest,
        status: Status,
        invocation: &Invocation,
        now: u64,
    ) -> Record {
        Record {
            id: id.clone(),
            location_id: request.location_id.clone(),
            csv_id: request.csv_id.clone(),
            user_id: request.user_id.clone(),
            status,
            attempts: 0,
            created_at_ms: now,
            updated_at_ms: now,
            owner: Some(invocation.request_id.clone()),
            lock_until_ms: Some(
                now.saturating_add(self.lock_length(invocation).as_millis() as u64),
            ),
            expires_at: (now / 1000).saturating_add(self.record_ttl.as_secs()),
            upstream: None,
            error: None,
            version: 1,
        }
    }

    /// How long this invocation may hold a record: until Lambda's own deadline, when it ends
    /// the invocation for good.
    fn lock_length(&self, invocation: &Invocation) -> Duration {
        match invocation.deadline.instant() {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()) + LAMBDA_MARGIN,
            None => self.service.upstream_timeout() + LOCAL_LOCK_EXTRA,
        }
    }
}

/// The answer a record found for a request gives: the stored success, 409 or the record's 202
/// while it is being handled, 422 for a key used for another finalize.
fn answer_found(found: Found, existing: Option<Record>, queued: bool) -> Submission {
    match (found, existing) {
        (Found::Finalized, Some(record)) => Submission::Replayed(record),
        (Found::KeyReused(field), _) => Submission::Refused(Error::IdempotencyKeyReused(field)),
        (_, Some(record)) if queued => Submission::Queued(record.status),
        (_, None) if queued => Submission::Queued(Status::Queued),
        _ => Submission::Refused(Error::RequestInProgress),
    }
}

/// The record after `outcome`: `finalized` with HighLevel's answer (kept for the TTL from now),
/// else `failed` — or `retrying` when `retrying` (a queued finalize that comes back) — with the
/// error the caller saw. Attempts add up over every try.
fn settle(record: Record, outcome: &Outcome, retrying: bool, ttl: Duration, now: u64) -> Record {
    let attempts = record.attempts.saturating_add(outcome.attempts());
    let base = Record {
        attempts,
        updated_at_ms: now,
        lock_until_ms: None,
        ..record
    };
    match outcome {
        Outcome::Finalized { reply, .. } => Record {
            status: Status::Finalized,
            upstream: Some(reply.to_json()),
            error: None,
            expires_at: (now / 1000).saturating_add(ttl.as_secs()),
            ..base
        },
        Outcome::Failed { error, .. } => Record {
            status: if retrying {
                Status::Retrying
            } else {
                Status::Failed
            },
            upstream: error.upstream().map(|reply| reply.to_json()),
            error: Some(recorded(error)),
            ..base
        },
        // Dry runs take no record; should one reach here, it changes nothing.
        Outcome::DryRun { .. } => base,
    }
}

/// The error as a record keeps it: the code and the message the caller was given.
fn recorded(error: &Error) -> RecordedError {
    RecordedError {
        code: error.code().to_owned(),
        message: error.public_message(),
    }
}

/// Now, in Unix milliseconds.
fn now_ms() -> u64 {
    u64::try_from(unix_now().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CsvId;
    use crate::upstream::UpstreamReply;
    use serde_json::json;

    fn record(status: Status) -> Record {
        Record {
            id: FinalizationId::parse("fz_0123456789abcdef0123456789abcdef").unwrap(),
            location_id: LocationId::parse("L1").unwrap(),
            csv_id: CsvId::parse("C1").unwrap(),
            user_id: None,
            status,
            attempts: 2,
            created_at_ms: 1_000,
            updated_at_ms: 1_000,
            owner: Some("req-1".into()),
            lock_until_ms: Some(9_000),
            expires_at: 100,
            upstream: None,
            error: None,
            version: 3,
        }
    }

    #[test]
    fn a_finalized_outcome_keeps_highlevels_answer_for_the_ttl_from_now() {
        let outcome = Outcome::Finalized {
            reply: UpstreamReply::new(200, json!({"success": true}), false),
            attempts: 1,
            call: Default::default(),
        };
        let done = settle(
            record(Status::InProgress),
            &outcome,
            false,
            Duration::from_secs(60),
            50_000,
        );
        assert_eq!(done.status, Status::Finalized);
        assert_eq!(done.attempts, 3, "attempts add up over tries");
        assert_eq!(
            done.upstream,
            Some(json!({"status": 200, "body": {"success": true}}))
        );
        assert_eq!(
            (done.expires_at, done.lock_until_ms, done.updated_at_ms),
            (110, None, 50_000)
        );
        assert_eq!(done.owner.as_deref(), Some("req-1"), "the owner writes it");
    }

    #[test]
    fn a_failure_is_failed_or_retrying_with_the_callers_error() {
        let outcome = Outcome::Failed {
            error: Error::UpstreamTimeout,
            attempts: 1,
            upstream_wait: None,
            call: Default::default(),
        };
        let failed = settle(
            record(Status::InProgress),
            &outcome,
            false,
            Duration::from_secs(60),
            5,
        );
        assert_eq!(failed.status, Status::Failed);
        assert_eq!(failed.error.as_ref().unwrap().code, "upstream_timeout");
        assert_eq!(failed.expires_at, 100, "a failure keeps its expiry");
        let retrying = settle(
            record(Status::InProgress),
            &outcome,
            true,
            Duration::from_secs(60),
            5,
        );
        assert_eq!(retrying.status, Status::Retrying);
    }

    #[test]
    fn a_record_found_answers_by_what_it_means_and_the_mode() {
        let replayed = answer_found(Found::Finalized, Some(record(Status::Finalized)), false);
        assert!(matches!(replayed, Submission::Replayed(_)));
        let reused = answer_found(
            Found::KeyReused("csvId"),
            Some(record(Status::Queued)),
            true,
        );
        assert!(matches!(
            reused,
            Submission::Refused(Error::IdempotencyKeyReused("csvId"))
        ));
        let busy = answer_found(Found::Pending, Some(record(Status::InProgress)), false);
        assert!(matches!(
            busy,
            Submission::Refused(Error::RequestInProgress)
        ));
        let waiting = answer_found(Found::Pending, Some(record(Status::Retrying)), true);
        assert!(matches!(waiting, Submission::Queued(Status::Retrying)));
        let raced = answer_found(Found::Pending, None, false);
        assert!(matches!(
            raced,
            Submission::Refused(Error::RequestInProgress)
        ));
    }
}
