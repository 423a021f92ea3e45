//! The pure rules of delivery: what a record found for a request answers, what a record holds
//! after an outcome, and how long a failed queued message waits before it comes back.

use std::time::Duration;

use super::Delivered;
use crate::error::Error;
use crate::highlevel::{Import, Outcome};
use crate::observe::Measures;
use crate::queue::MAX_VISIBILITY;
use crate::records::{CallbackState, CallbackStatus, Found, Record, RecordedError, Status};
use crate::request::callback::CallbackKind;

/// A record's `confirmedBy` when HighLevel's CSV status showed the finalize applied.
pub const CONFIRMED_BY_CSV_STATUS: &str = "csv_status";
/// HighLevel's CSV status of an import that no longer exists.
pub const DELETED: &str = "deleted";

/// What HighLevel's CSV status `now` says of a PATCH that may have been applied unseen, the
/// import having shown `before` before the first PATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// The status changed: HighLevel applied the finalize; no PATCH.
    Applied,
    /// The import is gone: a permanent failure.
    Deleted,
    /// Unchanged: not applied; PATCH as usual.
    NotApplied,
}

/// Judges a CSV status read after a PATCH that may have been applied unseen. Nothing else
/// about the statuses' order is assumed.
pub fn judge_csv_status(before: &str, now: &str) -> Judged {
    if now == before {
        Judged::NotApplied
    } else if now == DELETED {
        Judged::Deleted
    } else {
        Judged::Applied
    }
}

/// An import followed past `FOLLOW_TIMEOUT_SECS` at `now_ms`: what was last seen of it (if
/// anything), its status `timed_out`.
pub(crate) fn timed_out(seen: Option<Import>, now_ms: u64) -> Import {
    let seen = seen.unwrap_or(Import {
        status: String::new(),
        posts: 0,
        failed_posts: 0,
        errors: Vec::new(),
        checked_at_ms: now_ms,
        completed_at_ms: None,
    });
    Import {
        status: TIMED_OUT.to_owned(),
        checked_at_ms: now_ms,
        ..seen
    }
}

/// An import's status when it was followed until its timeout without ending.
pub const TIMED_OUT: &str = "timed_out";

/// The metrics of a followed import's end: completed or failed, its failed posts, and how
/// long after the finalize (`finalized_at_ms`) it ended.
pub(crate) fn import_measures(import: &Import, finalized_at_ms: u64) -> Measures {
    Measures {
        imports_completed: u64::from(import.status == "completed"),
        imports_failed: u64::from(import.status == "failed"),
        posts_failed: import.failed_posts,
        import_duration_ms: import
            .completed_at_ms
            .map(|at| at.saturating_sub(finalized_at_ms)),
        ..Measures::default()
    }
}

/// First redelivery delay of a transient failure, without a `Retry-After` from HighLevel.
pub const REDELIVERY_FIRST: Duration = Duration::from_secs(30);
/// Longest redelivery delay.
pub const REDELIVERY_CAP: Duration = Duration::from_secs(15 * 60);

/// The answer a record found for a request gives: the stored success, 409 or the record's 202
/// while it is being handled, 422 for a key used for another finalize.
pub(crate) fn answer_found(found: Found, existing: Option<Record>, queued: bool) -> Delivered {
    match (found, existing) {
        (Found::Finalized, Some(record)) => Delivered::Replayed(Box::new(record)),
        (Found::KeyReused(field), _) => Delivered::Refused(Error::IdempotencyKeyReused(field)),
        // A 202 promises a message that exists: not while its receiver has yet to confirm the
        // send (the record `queued` and still locked), nor when who holds it is unknown.
        (_, Some(record))
            if queued && !(record.status == Status::Queued && record.lock_until_ms.is_some()) =>
        {
            Delivered::Queued(record.status)
        }
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
        Outcome::Finalized {
            reply,
            attempts: answered,
            ..
        } => Record {
            status: Status::Finalized,
            upstream: Some(reply.to_json()),
            error: None,
            answer_attempts: Some(*answered),
            expires_at: (now / 1000).saturating_add(ttl.as_secs()),
            ..base
        },
        Outcome::Confirmed { attempts: answered } => Record {
            status: Status::Finalized,
            upstream: None,
            error: None,
            confirmed_by: Some(CONFIRMED_BY_CSV_STATUS.to_owned()),
            answer_attempts: Some(*answered),
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

/// Where a queued next try of `kind`'s callback stands on `record`, when it is still to be
/// tried: pending with `kind`. `None` (delivered, given up, superseded by what a later event
/// reports, or no callback at all) ends the try without a call.
///
/// A record with a callback URL but no state: the try that queued this one could not keep its
/// state (the next try is queued before the state is written, so a store fault in between
/// leaves it so). This try carries on, as the first try's successor, rather than losing the
/// callback.
pub fn callback_to_try(record: &Record, kind: CallbackKind) -> Option<CallbackState> {
    match &record.callback {
        Some(state) => {
            Some(state.clone()).filter(|s| s.kind == kind && s.status == CallbackStatus::Pending)
        }
        None => record.callback_url.as_ref().map(|_| CallbackState {
            kind,
            status: CallbackStatus::Pending,
            attempts: 1,
            last_status: None,
        }),
    }
}

/// The error as a record keeps it: the code and the message the caller was given.
pub(crate) fn recorded(error: &Error) -> RecordedError {
    RecordedError {
        code: error.code().to_owned(),
        message: error.public_message(),
    }
}

/// How long a message whose `receives`-th receive failed for now stays invisible: a random
/// value from half to all of [`REDELIVERY_FIRST`] × 2^(receives − 1), capped at
/// [`REDELIVERY_CAP`]; at least HighLevel's own wait (`upstream_wait`: its `Retry-After` or a
/// spent rate-limit window), never less, so an outage answering `Retry-After: 1` cannot spend
/// every receive in half a minute; and never more than SQS accepts, 12 hours from the receive,
/// less the part of it already `spent`. With ten receives the minimum delays add up to over an
/// hour.
pub fn redelivery_delay(
    receives: u32,
    upstream_wait: Option<Duration>,
    spent: Duration,
    random: u64,
) -> Duration {
    let doublings = receives.saturating_sub(1).min(16);
    let full = REDELIVERY_FIRST.saturating_mul(1 << doublings);
    let half = full / 2;
    let span_ms = u64::try_from((full - half).as_millis()).unwrap_or(u64::MAX);
    let backoff = half + Duration::from_millis(random % span_ms.saturating_add(1));
    backoff
        .min(REDELIVERY_CAP)
        .max(upstream_wait.unwrap_or_default())
        .min(MAX_VISIBILITY.saturating_sub(spent))
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
            csv_status_before: None,
            confirmed_by: None,
            answer_attempts: None,
            import: None,
            callback_url: None,
            callback: None,
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
    fn a_queued_duplicate_gets_202_only_once_its_message_is_confirmed_sent() {
        let sending = record(Status::Queued); // still locked: its receiver has not confirmed
        assert!(matches!(
            answer_found(Found::Pending, Some(sending), true),
            Delivered::Refused(Error::RequestInProgress)
        ));
        let sent = Record {
            lock_until_ms: None,
            ..record(Status::Queued)
        };
        assert!(matches!(
            answer_found(Found::Pending, Some(sent), true),
            Delivered::Queued(Status::Queued)
        ));
        assert!(
            matches!(
                answer_found(Found::Pending, None, true),
                Delivered::Refused(Error::RequestInProgress)
            ),
            "taken over a moment ago by someone unknown: no promise"
        );
    }

    #[test]
    fn redelivers_after_half_to_all_of_thirty_seconds_doubling_capped_at_fifteen_minutes() {
        let delay = |receives, random| redelivery_delay(receives, None, Duration::ZERO, random);
        assert_eq!(delay(1, 0), Duration::from_secs(15));
        assert_eq!(delay(1, 15_000), Duration::from_secs(30));
        assert_eq!(
            delay(1, u64::MAX),
            Duration::from_millis(15_000 + u64::MAX % 15_001)
        );
        assert_eq!(delay(2, 0), Duration::from_secs(30));
        assert_eq!(delay(5, 0), Duration::from_secs(240));
        assert_eq!(delay(6, 0), Duration::from_secs(480));
        for receives in [7, 10, 1000, u32::MAX] {
            for random in [0, 1, 123_456_789, u64::MAX] {
                assert_eq!(
                    delay(receives, random),
                    REDELIVERY_CAP,
                    "{receives} {random}"
                );
            }
        }
        assert_ne!(delay(3, 1), delay(3, 99_999), "jittered");
    }

    #[test]
    fn the_receives_before_the_dead_letter_queue_span_over_an_hour() {
        // QUEUE_MAX_RECEIVES = 10: nine delays before the last receive, each at its least.
        let least: Duration = (1..=9)
            .map(|receives| redelivery_delay(receives, None, Duration::ZERO, 0))
            .sum();
        assert!(least >= Duration::from_secs(3600), "{least:?}");
    }

    #[test]
    fn highlevels_wait_is_a_floor_never_a_ceiling() {
        let second = Some(Duration::from_secs(1));
        for receives in 1..=10 {
            assert!(
                redelivery_delay(receives, second, Duration::ZERO, 0) >= Duration::from_secs(15),
                "Retry-After: 1 does not shorten the backoff"
            );
        }
        let two_hours = Duration::from_secs(7200);
        assert_eq!(
            redelivery_delay(1, Some(two_hours), Duration::ZERO, 0),
            two_hours
        );
    }

    #[test]
    fn never_asks_sqs_for_more_than_twelve_hours_from_the_receive() {
        let day = Some(Duration::from_secs(86_400));
        assert_eq!(redelivery_delay(3, day, Duration::ZERO, 0), MAX_VISIBILITY);
        let spent = Duration::from_secs(20);
        assert_eq!(
            redelivery_delay(3, day, spent, 0),
            MAX_VISIBILITY - spent,
            "less the time already spent in this receive"
        );
        assert_eq!(
            redelivery_delay(1, None, MAX_VISIBILITY + spent, 0),
            Duration::ZERO
        );
    }

    #[test]
    fn a_changed_csv_status_means_applied_unless_the_import_is_gone() {
        assert_eq!(judge_csv_status("pending", "importing"), Judged::Applied);
        assert_eq!(judge_csv_status("pending", "completed"), Judged::Applied);
        assert_eq!(judge_csv_status("pending", "failed"), Judged::Applied);
        assert_eq!(judge_csv_status("pending", "pending"), Judged::NotApplied);
        assert_eq!(judge_csv_status("pending", "deleted"), Judged::Deleted);
        assert_eq!(
            judge_csv_status("deleted", "deleted"),
            Judged::NotApplied,
            "unchanged: HighLevel answers the PATCH itself"
        );
    }

    #[test]
    fn a_confirmed_outcome_is_finalized_by_csv_status_with_the_patches_so_far() {
        let done = after_outcome(
            record(Status::InProgress),
            &Outcome::Confirmed { attempts: 2 },
            false,
            Duration::from_secs(60),
            50_000,
        );
        assert_eq!(done.status, Status::Finalized);
        assert_eq!(done.confirmed_by.as_deref(), Some("csv_status"));
        assert_eq!(done.answer_attempts, Some(2));
        assert_eq!(done.attempts, 2, "no PATCH sent now");
        assert_eq!(done.expires_at, 110);
    }

    #[test]
    fn an_import_followed_past_its_timeout_keeps_what_was_seen_as_timed_out() {
        let seen = Import {
            status: "importing".into(),
            posts: 40,
            failed_posts: 1,
            errors: Vec::new(),
            checked_at_ms: 5,
            completed_at_ms: None,
        };
        let ended = timed_out(Some(seen), 9);
        assert_eq!(
            (ended.status.as_str(), ended.posts, ended.checked_at_ms),
            ("timed_out", 40, 9)
        );
        assert_eq!(timed_out(None, 9).posts, 0);
    }

    #[test]
    fn a_followed_import_measures_its_end() {
        let import = Import {
            status: "failed".into(),
            posts: 40,
            failed_posts: 3,
            errors: Vec::new(),
            checked_at_ms: 70_000,
            completed_at_ms: Some(70_000),
        };
        let measures = import_measures(&import, 10_000);
        assert_eq!(
            (
                measures.imports_completed,
                measures.imports_failed,
                measures.posts_failed,
                measures.import_duration_ms
            ),
            (0, 1, 3, Some(60_000))
        );
    }

    #[test]
    fn a_queued_callback_try_carries_on_only_while_its_kind_is_pending() {
        use crate::request::callback::{CallbackUrl, Reach};
        let url = CallbackUrl::parse("https://hooks.example.com/done", Reach::default()).unwrap();
        let completed = CallbackKind::ImportCompleted;
        let state = |kind, status| CallbackState {
            kind,
            status,
            attempts: 3,
            last_status: Some(503),
        };
        let with = |callback| Record {
            callback_url: Some(url.clone()),
            callback,
            ..record(Status::Finalized)
        };
        let pending = state(completed, CallbackStatus::Pending);
        assert_eq!(
            callback_to_try(&with(Some(pending.clone())), completed),
            Some(pending)
        );
        for ended in [CallbackStatus::Delivered, CallbackStatus::Failed] {
            assert_eq!(
                callback_to_try(&with(Some(state(completed, ended))), completed),
                None
            );
        }
        // Superseded: the record reports something else now.
        let other = state(CallbackKind::ImportFailed, CallbackStatus::Pending);
        assert_eq!(callback_to_try(&with(Some(other)), completed), None);
        // The first try's state was never kept: this try is its successor.
        assert_eq!(
            callback_to_try(&with(None), completed),
            Some(CallbackState {
                kind: completed,
                status: CallbackStatus::Pending,
                attempts: 1,
                last_status: None,
            })
        );
        // No callback at all: nothing to try.
        assert_eq!(callback_to_try(&record(Status::Finalized), completed), None);
    }
}
