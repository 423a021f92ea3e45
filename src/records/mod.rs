//! Finalization records: one per finalize, shared by every instance, so a finalize happens once
//! however often it is delivered, and an operator can look up what became of it.
//!
//! - [`record`]: the record, its id and the pure rules (what a record found means).
//! - [`dynamodb`]: the table (`IDEMPOTENCY_TABLE`), written with conditional writes.
//! - [`memory`]: the same in memory, for the local tools.
//!
//! [`Records`] builds the three moves every front needs on four conditional primitives (create
//! unless live, replace a version, write as the owner, read), so both stores behave alike.

pub mod dynamodb;
pub mod memory;
pub mod record;
#[cfg(test)]
pub(crate) mod sim;

pub use record::{
    CallbackState, CallbackStatus, FinalizationId, Found, Record, RecordedError, Status,
};

use std::time::Duration;

use crate::error::{BoxError, Error};
use crate::highlevel::Import;
use crate::request::deadline::Deadline;
use crate::request::FinalizeRequest;

/// First pause before a result write is tried again.
const FINISH_FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause between tries of a result write.
const FINISH_LAST_PAUSE: Duration = Duration::from_secs(1);
/// How long a result write is tried without a deadline.
const FINISH_WITHOUT_DEADLINE: Duration = Duration::from_secs(5);

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Unreachable, throttling or failing: retry later.
    #[error("the finalization records are unavailable for now")]
    Unavailable(#[source] BoxError),
    /// Access denied, a missing table, an item that does not read: the operator must fix it.
    #[error("the finalization records cannot be used: {0}")]
    Config(String),
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Error::StoreUnavailable(Box::new(error)),
            StoreError::Config(_) => Error::config(
                "the finalization records cannot be used",
                Some(Box::new(error) as _),
            ),
        }
    }
}

/// `fresh` in place of `existing`. When it `continues` the same finalize (not one past its
/// expiry), it keeps what that finalize has learnt so far: when it was first asked for, the
/// PATCHes sent, the CSV's status before the first, and its callback (where it goes, unless
/// the fresh request names its own, and how it went).
fn taken_over(fresh: Record, existing: &Record, continues: bool) -> Record {
    let version = existing.version + 1;
    if !continues {
        return Record { version, ..fresh };
    }
    Record {
        created_at_ms: existing.created_at_ms,
        attempts: existing.attempts,
        csv_status_before: existing.csv_status_before.clone(),
        callback_url: fresh.callback_url.or_else(|| existing.callback_url.clone()),
        callback: existing.callback.clone(),
        version,
        ..fresh
    }
}

/// Where records live.
pub enum Records {
    /// A DynamoDB table.
    DynamoDb(dynamodb::DynamoRecords),
    /// This process's memory (local tools).
    Memory(memory::MemoryRecords),
    /// Memory behind the delivery simulation's faults (tests).
    #[cfg(test)]
    Sim(sim::SimRecords),
}

/// What starting a finalize under a record came to.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // short-lived; boxing the common case buys nothing
pub enum Begun {
    /// This request now holds the record (written as given).
    Started(Record),
    /// Another record stands in the way: what it means.
    Found(Found, Option<Record>),
}

/// What a worker's claim on a queued record came to.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // short-lived; boxing the common case buys nothing
pub enum Claimed {
    /// This worker now holds the record.
    Held(Record),
    /// Already finalized: the message is done.
    Finalized,
    /// Held by another live invocation until this time (Unix ms): come back later.
    Busy(u64),
    /// The live record under this id is another finalize's (the field named differs): the
    /// message is a stale one of an earlier record under the same key, and ends unrun.
    Stale(&'static str),
}

impl Records {
    /// Where the records live, for the start-up log line.
    pub fn describe(&self) -> &'static str {
        match self {
            Records::DynamoDb(_) => "dynamodb",
            Records::Memory(_) => "memory",
            #[cfg(test)]
            Records::Sim(_) => "simulated",
        }
    }

    /// Writes `fresh` for `request` unless a live record has its id: then says what that one
    /// means, or takes it over when it failed or its holder's invocation is over.
    pub async fn begin(
        &self,
        fresh: Record,
        request: &FinalizeRequest,
        now_ms: u64,
    ) -> Result<Begun, StoreError> {
        let Some(existing) = self.create(&fresh, now_ms).await? else {
            return Ok(Begun::Started(fresh));
        };
        if existing.is_copy_of(&fresh) {
            // Our own write, sent again by the client after its answer was lost, and refused
            // because the first copy was applied: it is ours.
            return Ok(Begun::Started(fresh));
        }
        match existing.judge(request, now_ms) {
            found @ (Found::TakeOver | Found::Absent) => {
                let taken = taken_over(fresh, &existing, found == Found::TakeOver);
                if self.replace(&taken, existing.version).await? || self.holds(&taken).await? {
                    Ok(Begun::Started(taken))
                } else {
                    // Someone else took it over a moment ago.
                    Ok(Begun::Found(Found::Pending, None))
                }
            }
            found => Ok(Begun::Found(found, Some(existing))),
        }
    }

    /// Writes what became of a record this request holds (its owner unchanged).
    pub async fn finish(&self, record: &Record) -> Result<(), StoreError> {
        let record = Record {
            version: record.version + 1,
            ..record.clone()
        };
        if !self.write_owned(&record).await? {
            tracing::warn!(finalization_id = %record.id, "the record was taken over before its result was written");
        }
        Ok(())
    }

    /// Writes what became of a record this request holds, trying again while the store is
    /// unavailable, until `deadline` (its lock lasts beyond it, so a write in time is never
    /// raced by a takeover). The last error when it never went through.
    pub(crate) async fn finish_within(
        &self,
        record: &Record,
        deadline: Deadline,
    ) -> Result<(), StoreError> {
        let now = tokio::time::Instant::now();
        let end = deadline.instant().unwrap_or(now + FINISH_WITHOUT_DEADLINE);
        let mut pause = FINISH_FIRST_PAUSE;
        loop {
            match self.finish(record).await {
                Err(StoreError::Unavailable(cause))
                    if tokio::time::Instant::now() + pause < end =>
                {
                    tracing::warn!(finalization_id = %record.id, cause = %crate::error::chain(&*cause), "a record could not be written; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(FINISH_LAST_PAUSE);
                }
                other => return other,
            }
        }
    }

    /// A worker's claim on the record of a queued message: created from the message when it is
    /// gone (expired while queued), refused while another live invocation holds it.
    pub async fn claim(&self, fresh: Record, now_ms: u64) -> Result<Claimed, StoreError> {
        let Some(existing) = self.get(&fresh.id).await? else {
            return Ok(match self.create(&fresh, now_ms).await? {
                None => Claimed::Held(fresh),
                Some(own) if own.is_copy_of(&fresh) => Claimed::Held(fresh),
                Some(other) => Claimed::Busy(other.lock_until_ms.unwrap_or(now_ms)),
            });
        };
        let expired = existing.expires_at.saturating_mul(1000) <= now_ms;
        if let Some(field) = existing.differs_from(&fresh.request()).filter(|_| !expired) {
            return Ok(Claimed::Stale(field));
        }
        let locked = existing.status == Status::InProgress
            && existing.lock_until_ms.is_some_and(|until| until > now_ms);
        if existing.status == Status::Finalized && !expired {
            return Ok(Claimed::Finalized);
        }
        if locked && !expired {
            return Ok(Claimed::Busy(existing.lock_until_ms.unwrap_or(now_ms)));
        }
        let held = taken_over(fresh, &existing, !expired);
        Ok(
            if self.replace(&held, existing.version).await? || self.holds(&held).await? {
                Claimed::Held(held)
            } else {
                Claimed::Busy(now_ms)
            },
        )
    }

    /// Marks the record with `id` `failed` with `error`, unless it is final already: what a
    /// queued message's last receive does when something (a busy record, a store fault, a
    /// failed write) kept it from a final outcome, so a message in the dead-letter queue has a
    /// record that says `failed`. The owner and its lock are kept: a live holder's own result
    /// still lands over this mark. True once the record says `failed` or `finalized`.
    pub async fn mark_failed(
        &self,
        id: &FinalizationId,
        error: RecordedError,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let Some(existing) = self.get(id).await? else {
            return Ok(false);
        };
        if matches!(existing.status, Status::Finalized | Status::Failed) {
            return Ok(true);
        }
        let failed = Record {
            status: Status::Failed,
            error: Some(error),
            updated_at_ms: now_ms,
            version: existing.version + 1,
            ..existing.clone()
        };
        self.replace(&failed, existing.version).await
    }

    /// Keeps `import` on `record` (as read, at its version): the record as written, or `None`
    /// when it changed meanwhile.
    pub async fn keep_import(
        &self,
        record: &Record,
        import: Import,
    ) -> Result<Option<Record>, StoreError> {
        let kept = Record {
            import: Some(import),
            version: record.version + 1,
            ..record.clone()
        };
        Ok(self.replace(&kept, record.version).await?.then_some(kept))
    }

    /// Changes the record with `id` by `change` (given the record as stored; `None` leaves it as
    /// it is), trying again when another write came between the read and this one: the record
    /// as written, or `None` when there is none or `change` left it.
    pub async fn update(
        &self,
        id: &FinalizationId,
        change: impl Fn(&Record) -> Option<Record>,
    ) -> Result<Option<Record>, StoreError> {
        const TRIES: usize = 5;
        for _ in 0..TRIES {
            let Some(stored) = self.get(id).await? else {
                return Ok(None);
            };
            let Some(changed) = change(&stored) else {
                return Ok(None);
            };
            let changed = Record {
                version: stored.version + 1,
                ..changed
            };
            if self.replace(&changed, stored.version).await? {
                return Ok(Some(changed));
            }
        }
        Err(StoreError::Unavailable(
            "the record kept changing while it was being updated".into(),
        ))
    }

    /// Whether the stored record is `ours` as written: a conditional write refused because the
    /// client's first copy of it was applied (its answer lost, the write sent again).
    async fn holds(&self, ours: &Record) -> Result<bool, StoreError> {
        Ok(self
            .get(&ours.id)
            .await?
            .is_some_and(|stored| stored.is_copy_of(ours)))
    }

    /// The record with `id`, if there is one (expired or not).
    pub async fn get(&self, id: &FinalizationId) -> Result<Option<Record>, StoreError> {
        match self {
            Records::DynamoDb(table) => table.get(id).await,
            Records::Memory(memory) => Ok(memory.get(id)),
            #[cfg(test)]
            Records::Sim(sim) => sim.get(id).await,
        }
    }

    /// Creates `record` unless a live one has its id; `Some(existing)` when one does.
    async fn create(&self, record: &Record, now_ms: u64) -> Result<Option<Record>, StoreError> {
        match self {
            Records::DynamoDb(table) => table.create(record, now_ms).await,
            Records::Memory(memory) => Ok(memory.create(record, now_ms)),
            #[cfg(test)]
            Records::Sim(sim) => sim.create(record, now_ms).await,
        }
    }

    /// Replaces the record whose version is `seen`; false if it changed meanwhile.
    async fn replace(&self, record: &Record, seen: u64) -> Result<bool, StoreError> {
        match self {
            Records::DynamoDb(table) => table.replace(record, seen).await,
            Records::Memory(memory) => Ok(memory.replace(record, seen)),
            #[cfg(test)]
            Records::Sim(sim) => sim.replace(record, seen).await,
        }
    }

    /// Writes the record if `record.owner` still holds it; false if not.
    async fn write_owned(&self, record: &Record) -> Result<bool, StoreError> {
        match self {
            Records::DynamoDb(table) => table.write_owned(record).await,
            Records::Memory(memory) => Ok(memory.write_owned(record)),
            #[cfg(test)]
            Records::Sim(sim) => sim.write_owned(record).await,
        }
    }
}
