//! Delivery: how a finalize request becomes exactly one finalize, around the one
//! [`FinalizeService`].
//!
//! Without records, a request simply runs. With records (`IDEMPOTENCY_TABLE`, or memory for the
//! local tools), each request first takes its record: a duplicate is answered from the record
//! and calls nothing. In queue mode (`QUEUE_URL`) the receiver only takes the record and sends
//! one message; the worker ([`Delivery::work`]) finalizes it later, under the same record.
//!
//! The fronts call [`Delivery::submit`] (a finalize request), [`Delivery::lookup`] (the status
//! route) and [`Delivery::work`] (a batch of queued messages), render what comes back, and
//! write its audit line. The pure rules — what a record found answers, the record after an
//! outcome, the redelivery delay — are in [`rules`].

pub mod rules;
#[cfg(test)]
mod sim;

use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use crate::auth::Credential;
use crate::callback::Callbacks;
use crate::error::{chain, Error};
use crate::highlevel::Import;
use crate::highlevel::Outcome;
use crate::observe::{Audit, Measures, Mode};
use crate::queue::{
    CallbackDue, Disposition, FollowUp, Message, Queue, Queued, ReceivedMessage, MAX_VISIBILITY,
};
use crate::random::random_u64;
use crate::records::{
    Begun, CallbackState, CallbackStatus, Claimed, FinalizationId, Record, RecordedError, Records,
    Status,
};
use crate::request::callback::{CallbackKind, CallbackUrl};
use crate::request::deadline::{unix_ms, Deadline, LAMBDA_MARGIN};
use crate::request::ids::LocationId;
use crate::request::key::IdempotencyKey;
use crate::request::{FinalizeRequest, Invocation};
use crate::service::{FinalizeService, Finalizer};
use crate::upstream::UpstreamReply;
use rules::{after_outcome, answer_found, judge_csv_status, recorded, redelivery_delay, Judged};

/// How long a lock outlasts its holder's deadline: a margin covering the holder's last write
/// (one DynamoDB call, at most its 6 s operation timeout), so a holder still writing is never
/// taken over.
const LOCK_MARGIN: Duration = Duration::from_secs(10);
/// The deadline of an invocation without one from Lambda (the local tools) while it holds a
/// record, beyond the HighLevel budget: its work is bounded by its lock as Lambda's is.
const LOCAL_DEADLINE_EXTRA: Duration = Duration::from_secs(20);
/// The status route reads an import from HighLevel at most this often per record.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// Extra wait beyond another invocation's lock, so the message comes back after it ends.
const BUSY_GRACE: Duration = Duration::from_secs(1);

/// How queue mode follows an import after its finalize: a check `interval` after it, each
/// next one twice as long after the last (at most [`FOLLOW_INTERVAL_CAP`]), until the import
/// is over or `timeout` after the finalize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Follow {
    /// `FOLLOW_INTERVAL_SECS`.
    pub interval: Duration,
    /// `FOLLOW_TIMEOUT_SECS`.
    pub timeout: Duration,
}

/// The longest wait between two checks of an import.
pub const FOLLOW_INTERVAL_CAP: Duration = Duration::from_secs(300);

/// The wait before a callback that was not delivered is tried again; each next wait is twice
/// as long, at most [`CALLBACK_DELAY_CAP`].
pub const CALLBACK_FIRST_DELAY: Duration = Duration::from_secs(30);
/// The longest wait between two tries of a callback (SQS's longest message delay).
pub const CALLBACK_DELAY_CAP: Duration = Duration::from_secs(15 * 60);
/// How long a callback is tried before it is given up.
pub const CALLBACK_GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The service, and how its requests are delivered. Generic over the [`Finalizer`] only so
/// that the delivery simulation (`sim`, tests) can run this very code against a simulated
/// HighLevel.
pub(crate) struct Delivery<S = FinalizeService> {
    service: S,
    records: Option<Records>,
    queue: Option<Queue>,
    record_ttl: Duration,
    max_receives: u32,
    follow: Option<Follow>,
    callbacks: Option<Callbacks>,
}

/// What became of a finalize request: its record's id and what happened.
#[derive(Debug)]
pub(crate) struct Receipt {
    /// Its record's id, when records are kept.
    pub finalization_id: Option<FinalizationId>,
    /// What happened.
    pub result: Delivered,
    /// The finalize ran, but what came of it could not be written to its record.
    pub unrecorded: bool,
}

/// What happened to a finalize request.
#[derive(Debug)]
pub(crate) enum Delivered {
    /// It ran now: the service's outcome.
    Ran(Outcome),
    /// It was finalized before: the record holds the answer to give again.
    Replayed(Box<Record>),
    /// Queue mode: accepted now, its message sent.
    Accepted,
    /// Queue mode: already waiting (the record's status).
    Queued(Status),
    /// Refused by its record or the record store (409, 422, 503, 500).
    Refused(Error),
}

impl Receipt {
    fn unrecorded(result: Delivered) -> Self {
        Self {
            finalization_id: None,
            result,
            unrecorded: false,
        }
    }

    fn recorded(id: FinalizationId, result: Delivered) -> Self {
        Self {
            finalization_id: Some(id),
            result,
            unrecorded: false,
        }
    }

    /// Finalize requests this request sent to HighLevel.
    pub(crate) fn attempts(&self) -> u32 {
        match &self.result {
            Delivered::Ran(outcome) => outcome.attempts(),
            _ => 0,
        }
    }

    /// Why it failed, if it did.
    pub(crate) fn error(&self) -> Option<&Error> {
        match &self.result {
            Delivered::Ran(outcome) => outcome.error(),
            Delivered::Refused(error) => Some(error),
            Delivered::Replayed(_) | Delivered::Accepted | Delivered::Queued(_) => None,
        }
    }
}

/// One queued message worked: what the queue should do with it, and its audit line and
/// metrics, which the front writes.
#[derive(Debug)]
pub(crate) struct Worked {
    /// Delete it, or let it come back later.
    pub disposition: Disposition,
    /// Its audit line.
    pub audit: Audit,
    /// Its metrics.
    pub measures: Measures,
}

impl<S: Finalizer> Delivery<S> {
    /// Delivery through `service`, keeping `records` (for `record_ttl`,
    /// `IDEMPOTENCY_TTL_SECS`) and queueing on `queue` (dead-lettering after `max_receives`,
    /// `QUEUE_MAX_RECEIVES`) when given.
    pub(crate) fn new(
        service: S,
        records: Option<Records>,
        queue: Option<Queue>,
        record_ttl: Duration,
        max_receives: u32,
    ) -> Self {
        Self {
            service,
            records,
            queue,
            record_ttl,
            max_receives,
            follow: None,
            callbacks: None,
        }
    }

    /// Follows each import after its finalize, as `follow` says (queue mode), reporting its
    /// end through `callbacks`.
    pub(crate) fn following(self, follow: Option<Follow>, callbacks: Option<Callbacks>) -> Self {
        let callbacks = callbacks.filter(|_| follow.is_some());
        Self {
            follow,
            callbacks,
            ..self
        }
    }

    /// The completion callback of a finalize request that names `requested` (or none), for
    /// `credential` ([`Callbacks::admit`]). Only queue mode following imports calls back: a
    /// callback URL is a 400 anywhere else.
    pub(crate) async fn admit_callback(
        &self,
        requested: Option<&str>,
        credential: &Credential,
        deadline: crate::request::deadline::Deadline,
    ) -> Result<Option<CallbackUrl>, Error> {
        match (&self.callbacks, requested) {
            (Some(callbacks), _) if self.queues() => {
                Box::pin(callbacks.admit(requested, credential, deadline)).await
            }
            (_, None) => Ok(None),
            (_, Some(_)) => Err(Error::invalid_field(
                CallbackUrl::FIELD,
                "callbacks need queue mode (QUEUE_URL) with FOLLOW_IMPORTS: nothing here follows an import to its end",
            )),
        }
    }

    /// Whether requests take a record (and so need a key). A dry run never does: it changes
    /// nothing.
    pub(crate) fn keeps_records(&self) -> bool {
        self.records.is_some() && !self.service.dry_run()
    }

    /// Whether accepted requests are queued (queue mode) rather than run.
    pub(crate) fn queues(&self) -> bool {
        self.queue.is_some() && self.keeps_records()
    }

    /// The queue, in queue mode.
    pub(crate) fn queue(&self) -> Option<&Queue> {
        self.queue.as_ref()
    }

    /// The app was uninstalled at `location` (at `when`, RFC 3339): its token ends (HighLevel's
    /// `UNINSTALL` webhook). True when a token was ended.
    pub(crate) async fn uninstall(&self, location: &LocationId, when: &str) -> Result<bool, Error> {
        self.service.uninstall(location, when).await
    }

    /// Stores the pair an install brought (the install callback); `None` when there is nowhere
    /// for it.
    pub(crate) async fn install(
        &self,
        pair: &crate::install::InstalledPair,
    ) -> Result<Option<()>, Error> {
        self.service.install(pair).await
    }

    /// Handles one finalize request whose idempotency key is `key` (`None` when no records
    /// are kept).
    pub(crate) async fn submit(
        &self,
        request: &FinalizeRequest,
        key: Option<&IdempotencyKey>,
        callback: Option<CallbackUrl>,
        invocation: &Invocation,
    ) -> Receipt {
        let (Some(records), Some(key), false) = (&self.records, key, self.service.dry_run()) else {
            return Receipt::unrecorded(Delivered::Ran(
                self.service.finalize(request, invocation).await,
            ));
        };
        let id = FinalizationId::of(&request.location_id, key);
        let invocation = &self.bounded(invocation);
        match &self.queue {
            None => self.run_once(records, id, request, invocation).await,
            Some(queue) => Receipt {
                result: self
                    .enqueue(records, queue, &id, request, callback, invocation)
                    .await,
                finalization_id: Some(id),
                unrecorded: false,
            },
        }
    }

    /// Synchronous mode with records: take the record, finalize, write what came of it.
    async fn run_once(
        &self,
        records: &Records,
        id: FinalizationId,
        request: &FinalizeRequest,
        invocation: &Invocation,
    ) -> Receipt {
        let now = unix_ms();
        let fresh = self.fresh(&id, request, None, Status::InProgress, invocation, now);
        let record = match records.begin(fresh, request, now).await {
            Ok(Begun::Started(record)) => record,
            Ok(Begun::Found(found, existing)) => {
                return Receipt::recorded(id, answer_found(found, existing, false))
            }
            Err(error) => return Receipt::recorded(id, Delivered::Refused(error.into())),
        };
        let (record, outcome) = self
            .finalize_held(records, record, request, invocation)
            .await;
        let done = after_outcome(record, &outcome, false, self.record_ttl, unix_ms());
        // The finalize happened (or failed) all the same: answer with it.
        let unrecorded = !record_result(records, &done, invocation).await;
        Receipt {
            finalization_id: Some(id),
            result: Delivered::Ran(outcome),
            unrecorded,
        }
    }

    /// Queue mode's receiver: take the record as `queued`, send one message, and confirm the
    /// send on the record (until then, a request after the lock ends sends it again).
    async fn enqueue(
        &self,
        records: &Records,
        queue: &Queue,
        id: &FinalizationId,
        request: &FinalizeRequest,
        callback_url: Option<CallbackUrl>,
        invocation: &Invocation,
    ) -> Delivered {
        let now = unix_ms();
        let fresh = self.fresh(
            id,
            request,
            callback_url.clone(),
            Status::Queued,
            invocation,
            now,
        );
        let record = match records.begin(fresh, request, now).await {
            Ok(Begun::Started(record)) => record,
            Ok(Begun::Found(found, existing)) => return answer_found(found, existing, true),
            Err(error) => return Delivered::Refused(error.into()),
        };
        let message = Message {
            finalization_id: id.clone(),
            request: request.clone(),
            accepted_at_ms: now,
            request_id: invocation.request_id.clone(),
            // The record's: a takeover keeps the earlier request's callback when this one
            // names none.
            callback_url: record.callback_url.clone(),
        };
        match queue.send(&message).await {
            Ok(()) => {
                let sent = Record {
                    lock_until_ms: None,
                    updated_at_ms: unix_ms(),
                    ..record
                };
                if let Err(error) = records.finish(&sent).await {
                    tracing::warn!(finalization_id = %id, cause = %chain(&error), "the message was sent but its record could not say so; a duplicate request may send it again (the worker finalizes once)");
                }
                Delivered::Accepted
            }
            Err(error) => {
                let error = Error::from(error);
                let failed = Record {
                    status: Status::Failed,
                    lock_until_ms: None,
                    updated_at_ms: unix_ms(),
                    error: Some(recorded(&error)),
                    ..record
                };
                if let Err(store) = records.finish(&failed).await {
                    tracing::error!(finalization_id = %id, cause = %chain(&store), "a record could not be marked failed after the queue refused its message; it unblocks when its lock ends");
                }
                Delivered::Refused(error)
            }
        }
    }

    /// Finalizes `request` under `record`, which this invocation holds, letting HighLevel's
    /// CSV status settle what the function cannot know: the status is read before the first
    /// PATCH and kept on the record, before the PATCH is sent. Once kept, a PATCH may have been
    /// applied unseen by any earlier holder (one that died after it, an attempt that timed out,
    /// a result that could not be written — and a record may pass through other hands in
    /// between), so every later holder reads it again first: a changed status means applied
    /// (no PATCH), `deleted` a permanent failure. A first read that fails never stops a
    /// finalize; a status that cannot be kept does (a PATCH without it could never be
    /// confirmed). Every read counts against the finalize's budget; none is an attempt. The
    /// record comes back as last written.
    async fn finalize_held(
        &self,
        records: &Records,
        mut record: Record,
        request: &FinalizeRequest,
        invocation: &Invocation,
    ) -> (Record, Outcome) {
        let budget = self.service.budget(invocation);
        match record.csv_status_before.clone() {
            None => {
                if let Some(status) = self.service.csv_status(request, &budget).await {
                    record.csv_status_before = Some(status);
                    // Kept before the PATCH, so whoever takes over from a holder that dies
                    // after it can tell whether it was applied.
                    match records.finish(&record).await {
                        Ok(()) => record.version += 1,
                        Err(error) => {
                            // Without it kept, a PATCH whose answer is lost could never be
                            // confirmed, and a takeover would send it again: no PATCH now.
                            tracing::warn!(finalization_id = %record.id, cause = %chain(&error), "the CSV's status could not be kept on the record; no PATCH without it");
                            record.csv_status_before = None;
                            return (record, Outcome::not_sent(error.into()));
                        }
                    }
                }
            }
            Some(before) => {
                if let Some(now) = self.service.csv_status(request, &budget).await {
                    match judge_csv_status(&before, &now) {
                        Judged::Applied => {
                            tracing::info!(finalization_id = %record.id, before, now, "HighLevel's CSV status shows the finalize applied; no PATCH");
                            let attempts = record.attempts.max(1);
                            return (record, Outcome::Confirmed { attempts });
                        }
                        Judged::Deleted => {
                            let error = Error::UpstreamRejected(deleted_import());
                            return (record, Outcome::not_sent(error));
                        }
                        Judged::NotApplied => {}
                    }
                }
            }
        }
        let outcome = self.service.finalize_within(request, &budget).await;
        (record, outcome)
    }

    /// The record with `id`, when `may_see` its location and it has not expired: the status
    /// route. Anything else is 404, so a caller learns nothing of other locations' records.
    /// With `refresh` (sync mode, a finalized record) the import is read from HighLevel now —
    /// at most once per [`REFRESH_EVERY`] per record; more often, the record answers — and
    /// what was seen is kept on the record.
    pub(crate) async fn lookup(
        &self,
        id: &FinalizationId,
        may_see: impl Fn(&LocationId) -> bool,
        refresh: Option<&Invocation>,
    ) -> Result<Record, Error> {
        let Some(records) = &self.records else {
            return Err(Error::NotFound);
        };
        let record = records.get(id).await?.ok_or(Error::NotFound)?;
        let live = record.expires_at.saturating_mul(1000) > unix_ms();
        if !live || !may_see(&record.location_id) {
            return Err(Error::NotFound);
        }
        let Some(invocation) = refresh.filter(|_| !self.queues()) else {
            return Ok(record);
        };
        let checked_lately = record.import.as_ref().is_some_and(|import| {
            unix_ms().saturating_sub(import.checked_at_ms) < REFRESH_EVERY.as_millis() as u64
        });
        if record.status != Status::Finalized || checked_lately {
            return Ok(record);
        }
        let budget = self.service.budget(invocation);
        let Some(import) = self
            .service
            .read_import(&record.request(), &budget, record.import.as_ref())
            .await
        else {
            return Ok(record);
        };
        match records.keep_import(&record, import.clone()).await {
            Ok(Some(kept)) => Ok(kept),
            // Changed meanwhile, or not written: the caller still sees what was read.
            Ok(None) | Err(_) => Ok(Record {
                import: Some(import),
                ..record
            }),
        }
    }

    /// A new record for `request`, held by this invocation until its deadline.
    fn fresh(
        &self,
        id: &FinalizationId,
        request: &FinalizeRequest,
        callback_url: Option<CallbackUrl>,
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
            csv_status_before: None,
            confirmed_by: None,
            answer_attempts: None,
            import: None,
            callback_url,
            callback: None,
            version: 1,
        }
    }

    /// How long this invocation holds a record: until Lambda's own deadline (when it ends the
    /// invocation for good) and [`LOCK_MARGIN`] more. `invocation` is [`Delivery::bounded`].
    fn lock_length(&self, invocation: &Invocation) -> Duration {
        let left = invocation
            .deadline
            .instant()
            .map_or(Duration::ZERO, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
        left + LAMBDA_MARGIN + LOCK_MARGIN
    }

    /// `invocation` with a deadline: Lambda's, or for the local tools the HighLevel budget and
    /// [`LOCAL_DEADLINE_EXTRA`] from now, so whatever a record's holder does ends before its
    /// lock does.
    fn bounded(&self, invocation: &Invocation) -> Invocation {
        if invocation.deadline.instant().is_some() {
            return invocation.clone();
        }
        Invocation {
            deadline: Deadline::after(self.service.upstream_timeout() + LOCAL_DEADLINE_EXTRA),
            ..invocation.clone()
        }
    }

    /// Queue mode's worker: finalizes `batch` concurrently within the invocation's deadline,
    /// each message under its record's lock; one answer per message, in order, with its audit
    /// line and metrics for the front to write.
    pub(crate) async fn work(
        &self,
        batch: &[ReceivedMessage],
        invocation: &Invocation,
    ) -> Vec<Worked> {
        join_all(
            batch
                .iter()
                .map(|received| self.work_one(received, invocation)),
        )
        .await
    }

    async fn work_one(&self, received: &ReceivedMessage, invocation: &Invocation) -> Worked {
        let started = Instant::now();
        let mut audit = Audit {
            request_id: invocation.request_id.clone(),
            mode: Some(Mode::Worker),
            credential: "none".into(),
            ..Audit::default()
        };
        let mut measures = Measures::default();
        let invocation = &self.bounded(invocation);
        // Boxed: a message's work (finalize, import check, callback) is a deep future, and one
        // per message of a batch.
        let disposition =
            Box::pin(self.work_message(received, invocation, started, &mut audit, &mut measures))
                .await;
        if received.receives >= self.max_receives && disposition != Disposition::Done {
            self.mark_dead_lettered(&audit, invocation, &mut measures)
                .await;
        }
        audit.duration_ms = started.elapsed().as_millis() as u64;
        Worked {
            disposition,
            audit,
            measures,
        }
    }

    /// After a queued finalize: its import's first check, sent to come back after the follow
    /// interval (queue mode with `FOLLOW_IMPORTS`). A check that cannot be sent leaves the import
    /// unfollowed, never the finalize undone.
    async fn start_following(&self, message: &Message, request_id: &str) {
        let (Some(follow), Some(queue)) = (self.follow, &self.queue) else {
            return;
        };
        let follow_up = FollowUp {
            finalization_id: message.finalization_id.clone(),
            request: message.request.clone(),
            finalized_at_ms: unix_ms(),
            interval: follow.interval,
        };
        if let Err(error) = queue.send_follow_up(&follow_up).await {
            tracing::error!(request_id, finalization_id = %message.finalization_id, cause = %chain(&error), "the import's first check could not be queued; it will not be followed");
        }
    }

    /// One check of an import after its finalize: HighLevel's CSV read and kept on the record.
    /// Over (`completed`, `failed`, `deleted`) or past `FOLLOW_TIMEOUT_SECS` (`timed_out`), the
    /// following ends and its metrics are written; else the next check is sent, twice the
    /// interval later (a read refused with 429 or 5xx only delays it). Each check is a message
    /// of its own: following spends no finalize message's receives.
    async fn follow_import(
        &self,
        follow_up: FollowUp,
        received: &ReceivedMessage,
        invocation: &Invocation,
        started: Instant,
        audit: &mut Audit,
        measures: &mut Measures,
    ) -> Disposition {
        name_in(audit, &follow_up.finalization_id, &follow_up.request);
        audit.status = 200;
        let (Some(records), Some(follow), Some(queue)) = (&self.records, self.follow, &self.queue)
        else {
            return Disposition::Done;
        };
        let record = match records.get(&follow_up.finalization_id).await {
            Ok(Some(record)) if record.request() == follow_up.request => record,
            // Gone, or the key reused for another finalize: nothing left to follow.
            Ok(_) => return Disposition::Done,
            Err(error) => {
                let error = Error::from(error);
                (audit.status, audit.code) = (error.status().as_u16(), Some(error.code()));
                return later(received, None, started);
            }
        };
        if let Some(import) = record.import.as_ref().filter(|i| i.is_final()) {
            // Ended before, but its callback may not have been handed on (a check that died
            // between the two): report it now, once.
            return self
                .report_import(
                    records, &record, import, received, invocation, started, measures,
                )
                .await;
        }
        let now = unix_ms();
        let budget = self.service.budget(invocation);
        let seen = self
            .service
            .read_import(&follow_up.request, &budget, record.import.as_ref())
            .await;
        let timed_out = now.saturating_sub(follow_up.finalized_at_ms)
            >= u64::try_from(follow.timeout.as_millis()).unwrap_or(u64::MAX);
        let import = match seen {
            Some(import) if import.is_final() => Some(import),
            seen if timed_out => Some(rules::timed_out(seen.or(record.import.clone()), now)),
            seen => seen,
        };
        let mut kept = None;
        if let Some(import) = &import {
            kept = records
                .keep_import(&record, import.clone())
                .await
                .ok()
                .flatten();
            if kept.is_none() {
                tracing::warn!(request_id = %invocation.request_id, finalization_id = %record.id, "what an import check saw could not be kept on the record");
            }
        }
        if let Some(import) = import.as_ref().filter(|i| i.is_final() || timed_out) {
            *measures = Measures {
                queue_age_ms: measures.queue_age_ms,
                ..rules::import_measures(import, follow_up.finalized_at_ms)
            };
            let record = kept.unwrap_or(record);
            return self
                .report_import(
                    records, &record, import, received, invocation, started, measures,
                )
                .await;
        }
        let next = FollowUp {
            interval: follow_up
                .interval
                .saturating_mul(2)
                .min(FOLLOW_INTERVAL_CAP),
            ..follow_up
        };
        match queue.send_follow_up(&next).await {
            Ok(()) => Disposition::Done,
            // This check comes back instead of its successor.
            Err(_) => later(received, None, started),
        }
    }

    /// Reports the end of `import` (as kept on `record`) to the record's callback: the check
    /// is done once the callback was delivered or its next try queued; else it comes back.
    #[allow(clippy::too_many_arguments)] // one message's context, as `follow_import` has it
    async fn report_import(
        &self,
        records: &Records,
        record: &Record,
        import: &Import,
        received: &ReceivedMessage,
        invocation: &Invocation,
        started: Instant,
        measures: &mut Measures,
    ) -> Disposition {
        let Some(kind) = CallbackKind::of_import(&import.status) else {
            return Disposition::Done;
        };
        let occurred_at_ms = import.completed_at_ms.unwrap_or(import.checked_at_ms);
        if self
            .call_back(records, record, kind, occurred_at_ms, invocation, measures)
            .await
        {
            Disposition::Done
        } else {
            later(received, None, started)
        }
    }

    /// Reports `kind` of `record` (which happened at `occurred_at_ms`) to its callback, when it
    /// has one and has not reported `kind` yet: tried once now; if not delivered, its next try
    /// is queued [`CALLBACK_FIRST_DELAY`] later. The record says how it went, and is kept until
    /// the callback ends. False when a try that failed could not be queued (nothing written:
    /// whoever comes back to it tries again).
    async fn call_back(
        &self,
        records: &Records,
        record: &Record,
        kind: CallbackKind,
        occurred_at_ms: u64,
        invocation: &Invocation,
        measures: &mut Measures,
    ) -> bool {
        let (Some(callbacks), Some(queue), Some(_)) =
            (&self.callbacks, &self.queue, &record.callback_url)
        else {
            return true;
        };
        if record.callback.as_ref().is_some_and(|c| c.kind == kind) {
            return true;
        }
        let now = unix_ms();
        let sent = callbacks
            .send(record, kind, occurred_at_ms, invocation.deadline)
            .await;
        let (status, last_status) = sent.state();
        if status == CallbackStatus::Pending {
            let due = CallbackDue {
                finalization_id: record.id.clone(),
                request: record.request(),
                kind,
                occurred_at_ms,
                first_tried_at_ms: now,
                delay: CALLBACK_FIRST_DELAY,
            };
            if let Err(error) = queue.send_callback(&due).await {
                tracing::warn!(request_id = %invocation.request_id, finalization_id = %record.id, cause = %chain(&error), "a callback's next try could not be queued");
                return false;
            }
        }
        measures.callbacks_delivered = u64::from(status == CallbackStatus::Delivered);
        let state = CallbackState {
            kind,
            status,
            attempts: 1,
            last_status,
        };
        self.keep_callback(records, &record.id, state, now, invocation)
            .await;
        true
    }

    /// One more try of a callback that was not delivered: done once delivered, given up 24
    /// hours after its first try, else tried again twice as long after this one (at most
    /// [`CALLBACK_DELAY_CAP`]). Each try is a message of its own, like an import check.
    async fn work_callback(
        &self,
        due: CallbackDue,
        received: &ReceivedMessage,
        invocation: &Invocation,
        started: Instant,
        audit: &mut Audit,
        measures: &mut Measures,
    ) -> Disposition {
        name_in(audit, &due.finalization_id, &due.request);
        audit.status = 200;
        let (Some(records), Some(callbacks), Some(queue)) =
            (&self.records, &self.callbacks, &self.queue)
        else {
            return Disposition::Done;
        };
        let record = match records.get(&due.finalization_id).await {
            Ok(Some(record)) if record.request() == due.request => record,
            Ok(_) => return Disposition::Done,
            Err(_) => return later(received, None, started),
        };
        let Some(state) = rules::callback_to_try(&record, due.kind) else {
            return Disposition::Done;
        };
        let sent = callbacks
            .send(&record, due.kind, due.occurred_at_ms, invocation.deadline)
            .await;
        let now = unix_ms();
        let (mut status, last_status) = sent.state();
        let tried_for = Duration::from_millis(now.saturating_sub(due.first_tried_at_ms));
        if status == CallbackStatus::Pending && tried_for >= CALLBACK_GIVE_UP_AFTER {
            tracing::error!(request_id = %invocation.request_id, finalization_id = %record.id, attempts = state.attempts + 1, "a callback was never delivered in 24 hours; it is given up");
            status = CallbackStatus::Failed;
        }
        if status == CallbackStatus::Pending {
            let next = CallbackDue {
                delay: due.delay.saturating_mul(2).min(CALLBACK_DELAY_CAP),
                ..due
            };
            if queue.send_callback(&next).await.is_err() {
                // This try comes back instead of its successor.
                return later(received, None, started);
            }
        }
        measures.callbacks_delivered = u64::from(status == CallbackStatus::Delivered);
        measures.callbacks_failed = u64::from(status == CallbackStatus::Failed);
        let state = CallbackState {
            status,
            attempts: state.attempts + 1,
            last_status: last_status.or(state.last_status),
            ..state
        };
        self.keep_callback(records, &record.id, state, now, invocation)
            .await;
        Disposition::Done
    }

    /// Writes a callback's `state` on its record, and keeps the record while the callback is
    /// still being tried (its expiry past the last try).
    async fn keep_callback(
        &self,
        records: &Records,
        id: &FinalizationId,
        state: CallbackState,
        now_ms: u64,
        invocation: &Invocation,
    ) {
        let keep_until = (now_ms / 1000).saturating_add(CALLBACK_GIVE_UP_AFTER.as_secs() + 3600);
        let written = records
            .update(id, |stored| {
                Some(Record {
                    callback: Some(state.clone()),
                    expires_at: stored.expires_at.max(keep_until),
                    ..stored.clone()
                })
            })
            .await;
        if !matches!(written, Ok(Some(_))) {
            tracing::warn!(request_id = %invocation.request_id, finalization_id = %id, "how a callback went could not be kept on its record");
        }
    }

    /// The message's last receive ended without a final outcome, and SQS moves it to the
    /// dead-letter queue: its record says `failed` (with why), if the store lets it.
    async fn mark_dead_lettered(
        &self,
        audit: &Audit,
        invocation: &Invocation,
        measures: &mut Measures,
    ) {
        let (Some(records), Some(id)) = (
            &self.records,
            audit
                .finalization_id
                .as_deref()
                .and_then(FinalizationId::parse),
        ) else {
            return;
        };
        let error = RecordedError {
            code: audit.code.unwrap_or("upstream_unavailable").to_owned(),
            message: "the last receive ended without a final outcome; the message went to the dead-letter queue".to_owned(),
        };
        match records.mark_failed(&id, error, unix_ms()).await {
            Ok(true) => {
                self.report_failure(records, &id, invocation, measures)
                    .await
            }
            Ok(false) => {
                tracing::error!(request_id = %invocation.request_id, finalization_id = %id, "a dead-lettered message's record could not be marked failed (changed meanwhile)");
            }
            Err(error) => {
                tracing::error!(request_id = %invocation.request_id, finalization_id = %id, cause = %chain(&error), "a dead-lettered message's record could not be marked failed");
            }
        }
    }

    /// Reports a finalize that failed for good (its record `failed`) to its callback
    /// (`csv.finalize.failed`).
    async fn report_failure(
        &self,
        records: &Records,
        id: &FinalizationId,
        invocation: &Invocation,
        measures: &mut Measures,
    ) {
        if self.callbacks.is_none() {
            return;
        }
        match records.get(id).await {
            Ok(Some(record)) if record.status == Status::Failed => {
                let kind = CallbackKind::FinalizeFailed;
                let at = record.updated_at_ms;
                if !self
                    .call_back(records, &record, kind, at, invocation, measures)
                    .await
                {
                    tracing::error!(request_id = %invocation.request_id, finalization_id = %id, "a failed finalize's callback could not be sent or queued; it is not reported");
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(request_id = %invocation.request_id, finalization_id = %id, cause = %chain(&error), "a failed finalize's record could not be read; its callback is not sent");
            }
        }
    }

    /// Works one message, filling in its audit line and metrics as it goes.
    async fn work_message(
        &self,
        received: &ReceivedMessage,
        invocation: &Invocation,
        started: Instant,
        audit: &mut Audit,
        measures: &mut Measures,
    ) -> Disposition {
        let message_id = received.message_id.as_str();
        let request_id = invocation.request_id.as_str();
        let message = match Queued::parse(&received.body) {
            Ok(Queued::Finalize(message)) => message,
            Ok(Queued::Follow(follow_up)) => {
                return self
                    .follow_import(follow_up, received, invocation, started, audit, measures)
                    .await;
            }
            Ok(Queued::Callback(due)) => {
                return self
                    .work_callback(due, received, invocation, started, audit, measures)
                    .await;
            }
            Err(problem) => {
                // A retry cannot make it parse; keeping it would only fill the dead-letter queue.
                tracing::error!(
                    request_id,
                    message_id,
                    problem,
                    "a queued message does not parse; it is dropped"
                );
                (audit.status, audit.code) = (400, Some("invalid_request"));
                return Disposition::Done;
            }
        };
        name_in(audit, &message.finalization_id, &message.request);
        measures.queue_age_ms = Some(unix_ms().saturating_sub(message.accepted_at_ms));
        let Some(records) = &self.records else {
            tracing::error!(
                request_id,
                message_id,
                "queue mode needs finalization records; the message comes back"
            );
            (audit.status, audit.code) = (500, Some("config_error"));
            return later(received, None, started);
        };
        let now = unix_ms();
        let fresh = Record {
            // One invocation works a whole batch: each message holds its record as its own
            // owner, so two copies of one message in a batch never take each other's write
            // for their own.
            owner: Some(format!("{}/{message_id}", invocation.request_id)),
            ..self.fresh(
                &message.finalization_id,
                &message.request,
                message.callback_url.clone(),
                Status::InProgress,
                invocation,
                now,
            )
        };
        let record = match records.claim(fresh, now).await {
            Ok(Claimed::Held(record)) => record,
            Ok(Claimed::Finalized) => {
                // A duplicate delivery: the record already holds the answer.
                (audit.status, audit.replayed) = (200, true);
                return Disposition::Done;
            }
            Ok(Claimed::Stale(field)) => {
                tracing::warn!(request_id, message_id, field, "the message's finalize is not its record's (a stale message of an earlier record under the same key); it ends without a call");
                (audit.status, audit.code) = (422, Some("idempotency_key_reused"));
                return Disposition::Done;
            }
            Ok(Claimed::Busy(until_ms)) => {
                let wait = Duration::from_millis(until_ms.saturating_sub(now)) + BUSY_GRACE;
                (audit.status, audit.code) = (409, Some("request_in_progress"));
                return Disposition::Later(
                    wait.min(MAX_VISIBILITY.saturating_sub(started.elapsed())),
                );
            }
            Err(error) => {
                let error = crate::error::Error::from(error);
                tracing::warn!(request_id, message_id, cause = %chain(&error), "the record could not be claimed; the message comes back");
                (audit.status, audit.code) = (error.status().as_u16(), Some(error.code()));
                return later(received, None, started);
            }
        };
        let (record, outcome) = self
            .finalize_held(records, record, &message.request, invocation)
            .await;
        let last_receive = received.receives >= self.max_receives;
        let transient = outcome.error().is_some_and(|e| e.is_transient());
        let done = after_outcome(
            record,
            &outcome,
            transient && !last_receive,
            self.record_ttl,
            unix_ms(),
        );
        let recorded = record_result(records, &done, invocation).await;
        measures.unrecorded_results = u64::from(!recorded);
        audit.attempts = outcome.attempts();
        audit.upstream_status = outcome.call().last_status;
        *measures = Measures {
            queue_age_ms: measures.queue_age_ms,
            unrecorded_results: measures.unrecorded_results,
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
                    // Only once the record says so does the message end.
                    if !recorded {
                        return later(received, None, started);
                    }
                    self.report_failure(records, &done.id, invocation, measures)
                        .await;
                    return Disposition::Done;
                }
                if last_receive {
                    tracing::error!(request_id, message_id, code = error.code(), cause = %chain(error), "the last receive failed; the message goes to the dead-letter queue");
                    // Visible at once, so SQS moves it to the dead-letter queue on the next receive.
                    return Disposition::Later(Duration::ZERO);
                }
                let later = later(received, *upstream_wait, started);
                tracing::warn!(request_id, message_id, code = error.code(), later = ?later, cause = %chain(error), "finalize failed for now; the message comes back");
                later
            }
            Outcome::Finalized { .. } | Outcome::Confirmed { .. } | Outcome::DryRun { .. } => {
                audit.status = 200;
                if recorded {
                    self.start_following(&message, request_id).await;
                    Disposition::Done
                } else {
                    // A message ends only once its record is final: this one comes back, finds
                    // the record in progress past its lock, and confirms with the CSV's status.
                    later(received, None, started)
                }
            }
        }
    }
}

/// Names the record and the finalize a message is about in its audit line.
fn name_in(audit: &mut Audit, id: &FinalizationId, request: &FinalizeRequest) {
    audit.finalization_id = Some(id.as_str().to_owned());
    audit.location_id = Some(request.location_id.as_str().to_owned());
    audit.csv_id = Some(request.csv_id.as_str().to_owned());
}

/// A message that failed for now comes back after its redelivery delay
/// ([`redelivery_delay`]): at least `upstream_wait`, within what SQS accepts for a receive that
/// began at `started`.
fn later(
    received: &ReceivedMessage,
    upstream_wait: Option<Duration>,
    started: Instant,
) -> Disposition {
    Disposition::Later(redelivery_delay(
        received.receives,
        upstream_wait,
        started.elapsed(),
        random_u64(),
    ))
}

/// Writes the record of a finalize that ran, trying again until the holder's deadline; false
/// (and an error in the log) when it never went through: the record stays `in_progress`, and
/// whoever takes it over after its lock confirms with HighLevel before any PATCH.
async fn record_result(records: &Records, done: &Record, invocation: &Invocation) -> bool {
    match records.finish_within(done, invocation.deadline).await {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(request_id = %invocation.request_id, finalization_id = %done.id, cause = %chain(&error), "the result of a finalize could not be written to its record");
            false
        }
    }
}

/// What the caller is shown when HighLevel's CSV status says the import was deleted.
fn deleted_import() -> UpstreamReply {
    UpstreamReply::new(
        422,
        serde_json::json!({
            "statusCode": 422,
            "message": "HighLevel's CSV status is deleted: the import no longer exists",
        }),
        false,
    )
}
