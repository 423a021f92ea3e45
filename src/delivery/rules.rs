//! The pure rules of delivery: what a record found for a request answers, what a record holds
//! after an outcome, and how long a failed queued message waits before it comes back.

use std::time::Duration;

use super::Delivered;
use crate::error::Error;
use crate::highlevel::Outcome;
use crate::records::{Found, Record, RecordedError, Status};

/// First redelivery delay of a transient failure, without a `Retry-After` from HighLevel.
pub const REDELIVERY_FIRST: Duration = Duration::from_secs(30);
/// Longest redelivery delay.
pub const REDELIVERY_CAP: Duration = Duration::from_secs(15 * 60);

/// The answer a record found for a request gives: the stored success, 409 or the record's 202
/// while it is being handled, 422 for a key used for another finalize.
pub(crate) fn answer_found(found: Found, existing: Option<Record>, queued: bool) -> Delivered {
    match (found, existing) {
        (Found::Finalized, Some(record)) => Delivered::Replayed(record),
        (Found::KeyReused(field), _) => Delivered::Refused(Error::IdempotencyKeyReused(field)),
        (_, Some(record)) if queued => Delivered::Queued(record.status),
        (_, None) if queued => Delivered::Queued(Status::Queued),
        _ => Delivered::Refused(Error::RequestInProgress),
    }
}

/// The record after `outcome`: `finalized` with HighLevel's answer (kept for the TTL from now),
/// else `failed` — or `retrying` when `retrying` (a queued finalize that comes back) — with the
/// error the caller saw. Attempts add up over every try.
pub(crate) fn after_outcome(
    record: Record,
    outcome: &Outcome,
    retrying: bool,
    ttl: Duration,
    now: u64,
) -> Record {
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
pub(crate) fn recorded(error: &Error) -> RecordedError {
    RecordedError {
        code: error.code().to_owned(),
        message: error.public_message(),
    }
}

/// The visibility delay after the `receives`-th receive failed without a `Retry-After`:
/// exponential from [`REDELIVERY_FIRST`], jittered upwards by up to a quarter, within
/// [`REDELIVERY_CAP`] (where the jitter reaches down instead, so capped delays still spread).
pub fn redelivery_delay(receives: u32, random: u64) -> Duration {
    let doublings = receives.saturating_sub(1).min(16);
    let base = REDELIVERY_FIRST.saturating_mul(1 << doublings);
    let low = base.min(REDELIVERY_CAP * 4 / 5);
    let high = (base + base / 4).min(REDELIVERY_CAP);
    let span_ms = (high - low).as_millis() as u64;
    low + Duration::from_millis(random % (span_ms + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::FinalizationId;
    use crate::request::ids::{CsvId, LocationId};
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
        let done = after_outcome(
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
        let failed = after_outcome(
            record(Status::InProgress),
            &outcome,
            false,
            Duration::from_secs(60),
            5,
        );
        assert_eq!(failed.status, Status::Failed);
        assert_eq!(failed.error.as_ref().unwrap().code, "upstream_timeout");
        assert_eq!(failed.expires_at, 100, "a failure keeps its expiry");
        let retrying = after_outcome(
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
        assert!(matches!(replayed, Delivered::Replayed(_)));
        let reused = answer_found(
            Found::KeyReused("csvId"),
            Some(record(Status::Queued)),
            true,
        );
        assert!(matches!(
            reused,
            Delivered::Refused(Error::IdempotencyKeyReused("csvId"))
        ));
        let busy = answer_found(Found::Pending, Some(record(Status::InProgress)), false);
        assert!(matches!(busy, Delivered::Refused(Error::RequestInProgress)));
        let waiting = answer_found(Found::Pending, Some(record(Status::Retrying)), true);
        assert!(matches!(waiting, Delivered::Queued(Status::Retrying)));
        let raced = answer_found(Found::Pending, None, false);
        assert!(matches!(
            raced,
            Delivered::Refused(Error::RequestInProgress)
        ));
    }

    #[test]
    fn redelivers_after_thirty_seconds_doubling_to_fifteen_minutes_with_jitter() {
        assert_eq!(redelivery_delay(1, 0), Duration::from_secs(30));
        assert_eq!(
            redelivery_delay(1, u64::MAX),
            Duration::from_millis(30_000 + u64::MAX % 7_501)
        );
        assert!(redelivery_delay(1, 7_500) <= Duration::from_millis(37_500));
        assert_eq!(redelivery_delay(2, 0), Duration::from_secs(60));
        assert_eq!(redelivery_delay(5, 0), Duration::from_secs(480));
        for receives in [6, 10, 1000, u32::MAX] {
            for random in [0, 1, 123_456_789, u64::MAX] {
                let delay = redelivery_delay(receives, random);
                assert!(
                    delay >= Duration::from_secs(720) && delay <= REDELIVERY_CAP,
                    "{receives} {random}: {delay:?}"
                );
            }
        }
        assert_ne!(
            redelivery_delay(8, 1),
            redelivery_delay(8, 99_999),
            "capped delays still spread"
        );
    }
}
