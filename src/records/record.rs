//! A finalization record and the pure rules around it: its id, what a record found for a
//! request means, and how it reads as JSON.
//!
//! Every finalize has one record, shared by every instance, under an id derived from its
//! [`IdempotencyKey`] (the `webhook-id` header, else `Idempotency-Key`, else the csvId), always
//! scoped to the location.

use aws_lc_rs::digest;
use serde_json::{json, Value};

use crate::highlevel::Import;
use crate::request::callback::{CallbackKind, CallbackUrl};
use crate::request::deadline::rfc3339;
use crate::request::ids::{CsvId, LocationId, UserId};
use crate::request::key::IdempotencyKey;
use crate::request::FinalizeRequest;

/// Where a record is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Accepted in queue mode, waiting for the worker.
    Queued,
    /// Being finalized now, by the holder of its lock.
    InProgress,
    /// Failed for a passing cause; the queue brings it back.
    Retrying,
    /// HighLevel accepted it; later requests get the stored answer.
    Finalized,
    /// Failed; a retry runs again.
    Failed,
}

impl Status {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::InProgress => "in_progress",
            Status::Retrying => "retrying",
            Status::Finalized => "finalized",
            Status::Failed => "failed",
        }
    }

    /// From its stored form.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => Status::Queued,
            "in_progress" => Status::InProgress,
            "retrying" => Status::Retrying,
            "finalized" => Status::Finalized,
            "failed" => Status::Failed,
            _ => return None,
        })
    }
}

/// A record's id: `fz_` and 32 hex digits, derived from the location and the key. Safe in a
/// URL path; holds no part of the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FinalizationId(String);

impl FinalizationId {
    /// Parses an id as it comes in a status route.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix("fz_")?;
        (hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(text.to_owned()))
    }

    /// The id of the record for `key` at `location`.
    pub fn of(location: &LocationId, key: &IdempotencyKey) -> Self {
        Self::derive(location, key.kind().as_str(), key.as_str())
    }

    /// The id of the key `kind:key` for `location`.
    fn derive(location: &LocationId, kind: &str, key: &str) -> Self {
        let mut context = digest::Context::new(&digest::SHA256);
        for part in ["finalization-v1", location.as_str(), kind, key] {
            context.update(part.as_bytes());
            context.update(b"\n");
        }
        let hex: String = context.finish().as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self(format!("fz_{hex}"))
    }

    /// As a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for FinalizationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The error a failed or retrying record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedError {
    /// The contract's code.
    pub code: String,
    /// The message the caller was given.
    pub message: String,
}

/// Where a completion callback is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackStatus {
    /// Not yet answered with a 2xx; tried again later.
    Pending,
    /// Answered with a 2xx.
    Delivered,
    /// Given up: never answered with a 2xx within 24 hours.
    Failed,
}

impl CallbackStatus {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// From its stored form.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// A record's completion callback: what it reports, and how its delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackState {
    /// What it reports.
    pub kind: CallbackKind,
    /// Where its delivery is.
    pub status: CallbackStatus,
    /// Deliveries tried.
    pub attempts: u32,
    /// The HTTP status of the last answer, if one came.
    pub last_status: Option<u16>,
}

impl CallbackState {
    /// As the status route shows it and the table stores it.
    pub fn to_json(&self) -> Value {
        let mut shown = json!({
            "type": self.kind.as_str(),
            "status": self.status.as_str(),
            "attempts": self.attempts,
        });
        if let Some(status) = self.last_status {
            shown["lastStatus"] = json!(status);
        }
        shown
    }

    /// From its stored form.
    pub fn from_json(value: &Value) -> Option<Self> {
        Some(Self {
            kind: CallbackKind::parse(value.get("type")?.as_str()?)?,
            status: CallbackStatus::parse(value.get("status")?.as_str()?)?,
            attempts: u32::try_from(value.get("attempts")?.as_u64()?).ok()?,
            last_status: value
                .get("lastStatus")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok()),
        })
    }
}

/// One finalization record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its id (the table's partition key).
    pub id: FinalizationId,
    /// The location.
    pub location_id: LocationId,
    /// The CSV import.
    pub csv_id: CsvId,
    /// The user, if one was named.
    pub user_id: Option<UserId>,
    /// Where it is in its life.
    pub status: Status,
    /// Finalize requests sent to HighLevel, over every try.
    pub attempts: u32,
    /// When it was first written (Unix milliseconds).
    pub created_at_ms: u64,
    /// When it last changed (Unix milliseconds).
    pub updated_at_ms: u64,
    /// The request (Lambda request id) holding it while it runs, or that queued it.
    pub owner: Option<String>,
    /// Until when the owner's lock holds (Unix milliseconds): its invocation's deadline.
    pub lock_until_ms: Option<u64>,
    /// When it stops counting (Unix seconds; the table's TTL attribute).
    pub expires_at: u64,
    /// HighLevel's last answer (`{"status", "body"}`), if one came: once finalized, what a
    /// replay answers with.
    pub upstream: Option<Value>,
    /// Why it failed, while failed or retrying.
    pub error: Option<RecordedError>,
    /// HighLevel's status of the CSV read before the first PATCH (`csvStatusBefore`): what a
    /// later read is compared with when a PATCH may have been applied unseen.
    pub csv_status_before: Option<String>,
    /// How the finalize was known to have happened when its answer was lost (`csv_status`).
    pub confirmed_by: Option<String>,
    /// The `attempts` of the answer a replay gives again (`attempts` counts every try).
    pub answer_attempts: Option<u32>,
    /// The import as HighLevel last showed it, once read after the finalize.
    pub import: Option<Import>,
    /// Where its completion callback goes, if it has one (never shown: the caller's URL may
    /// carry the caller's own secret).
    pub callback_url: Option<CallbackUrl>,
    /// Its completion callback, once one was due.
    pub callback: Option<CallbackState>,
    /// Bumped on every write: a takeover is conditional on the version it saw.
    pub version: u64,
}

/// What a record found for a request means.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// None, or one past its expiry: the request goes ahead.
    Absent,
    /// The same key with another csvId or userId (the field named): 422.
    KeyReused(&'static str),
    /// Already finalized: answer again what the record holds.
    Finalized,
    /// Being handled (running under a live lock, queued or retrying): 409 for a synchronous
    /// caller, the record's 202 for a queued one.
    Pending,
    /// Failed, or held under a lock whose invocation is over: take it over.
    TakeOver,
}

impl Record {
    /// Whether this stored record is `written` as its writer wrote it: same owner, same
    /// version. Owners are request ids, unique per invocation, so no one else's write matches.
    pub fn is_copy_of(&self, written: &Record) -> bool {
        self.owner.is_some() && self.owner == written.owner && self.version == written.version
    }

    /// The finalize this record is for.
    pub fn request(&self) -> FinalizeRequest {
        FinalizeRequest {
            location_id: self.location_id.clone(),
            csv_id: self.csv_id.clone(),
            user_id: self.user_id.clone(),
        }
    }

    /// The first field in which `request` differs from this record's finalize, if any.
    pub fn differs_from(&self, request: &FinalizeRequest) -> Option<&'static str> {
        if self.location_id != request.location_id {
            Some(LocationId::FIELD)
        } else if self.csv_id != request.csv_id {
            Some(CsvId::FIELD)
        } else if self.user_id != request.user_id {
            Some(UserId::FIELD)
        } else {
            None
        }
    }

    /// What this record means for `request` at `now_ms`.
    pub fn judge(&self, request: &FinalizeRequest, now_ms: u64) -> Found {
        if self.expires_at.saturating_mul(1000) <= now_ms {
            return Found::Absent;
        }
        if let Some(field) = self.differs_from(request) {
            return Found::KeyReused(field);
        }
        match self.status {
            Status::Finalized => Found::Finalized,
            Status::InProgress | Status::Queued
                if self.lock_until_ms.is_some_and(|until| until <= now_ms) =>
            {
                // Its holder's invocation ended before it finished (or, for `queued`, before
                // it confirmed the message was sent).
                Found::TakeOver
            }
            Status::InProgress if self.lock_until_ms.is_none() => Found::TakeOver,
            Status::InProgress | Status::Queued | Status::Retrying => Found::Pending,
            Status::Failed => Found::TakeOver,
        }
    }

    /// The record as the status route shows it.
    pub fn to_json(&self) -> Value {
        let mut shown = json!({
            "finalizationId": self.id.as_str(),
            "status": self.status.as_str(),
            "locationId": self.location_id.as_str(),
            "csvId": self.csv_id.as_str(),
            "attempts": self.attempts,
            "createdAt": rfc3339(self.created_at_ms),
            "updatedAt": rfc3339(self.updated_at_ms),
        });
        if let Some(upstream) = &self.upstream {
            shown["upstream"] = upstream.clone();
        }
        if let Some(error) = &self.error {
            shown["error"] = json!({"code": error.code, "message": error.message});
        }
        if let Some(confirmed_by) = &self.confirmed_by {
            shown["confirmedBy"] = json!(confirmed_by);
        }
        if let Some(import) = &self.import {
            shown["import"] = import.to_json();
        }
        if let Some(callback) = &self.callback {
            shown["callback"] = callback.to_json();
        }
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::key::KeyKind;

    fn request(csv: &str, user: Option<&str>) -> FinalizeRequest {
        FinalizeRequest {
            location_id: LocationId::parse("L1").unwrap(),
            csv_id: CsvId::parse(csv).unwrap(),
            user_id: user.map(|u| UserId::parse(u).unwrap()),
        }
    }

    fn record(status: Status) -> Record {
        let r = request("C1", None);
        Record {
            id: FinalizationId::derive(&r.location_id, "csv", "C1"),
            location_id: r.location_id,
            csv_id: r.csv_id,
            user_id: None,
            status,
            attempts: 1,
            created_at_ms: 1_000,
            updated_at_ms: 2_000,
            owner: Some("req-1".into()),
            lock_until_ms: Some(10_000),
            expires_at: 100,
            upstream: None,
            error: None,
            csv_status_before: None,
            confirmed_by: None,
            answer_attempts: None,
            import: None,
            callback_url: None,
            callback: None,
            version: 1,
        }
    }

    #[test]
    fn ids_differ_by_key_kind_and_location_and_are_decided_by_the_key() {
        let (l1, l2) = (
            LocationId::parse("L1").unwrap(),
            LocationId::parse("L2").unwrap(),
        );
        let key = |kind, text| IdempotencyKey::parse(kind, text).unwrap();
        let by_csv = FinalizationId::of(&l1, &IdempotencyKey::csv(&CsvId::parse("k-1").unwrap()));
        let by_key = FinalizationId::of(&l1, &key(KeyKind::IdempotencyKey, "k-1"));
        let by_webhook = FinalizationId::of(&l1, &key(KeyKind::WebhookId, "k-1"));
        assert!(by_csv != by_key && by_key != by_webhook && by_csv != by_webhook);
        assert_eq!(
            by_webhook,
            FinalizationId::of(&l1, &key(KeyKind::WebhookId, "k-1")),
            "the key decides"
        );
        assert_ne!(
            FinalizationId::of(&l2, &key(KeyKind::WebhookId, "k-1")),
            by_webhook,
            "scoped to the location"
        );
        assert!(FinalizationId::parse(by_csv.as_str()).is_some());
        assert_eq!(
            by_csv,
            FinalizationId::derive(&l1, "csv", "k-1"),
            "ids stored before the key type keep their meaning"
        );
    }

    #[test]
    fn a_callback_state_reads_back_as_stored_and_hides_the_url() {
        let state = CallbackState {
            kind: CallbackKind::ImportFailed,
            status: CallbackStatus::Pending,
            attempts: 3,
            last_status: Some(503),
        };
        assert_eq!(
            CallbackState::from_json(&state.to_json()),
            Some(state.clone())
        );
        let shown = Record {
            callback_url: CallbackUrl::stored("https://hooks.example.com/cb?token=mine"),
            callback: Some(state),
            ..record(Status::Finalized)
        }
        .to_json();
        assert_eq!(shown["callback"]["lastStatus"], 503);
        assert!(!shown.to_string().contains("hooks.example.com"));
    }

    #[test]
    fn parses_only_well_formed_ids() {
        assert!(FinalizationId::parse("fz_0123456789abcdef0123456789abcdef").is_some());
        for bad in [
            "",
            "fz_",
            "fz_0123",
            "xx_0123456789abcdef0123456789abcdef",
            "fz_0123456789ABCDEF0123456789abcdef",
            "fz_../../../etc/passwd00000000000",
        ] {
            assert!(FinalizationId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_record_is_a_copy_only_of_its_own_owners_write_at_its_version() {
        let written = record(Status::InProgress);
        assert!(written.clone().is_copy_of(&written));
        let other_owner = Record {
            owner: Some("req-2".into()),
            ..written.clone()
        };
        assert!(!other_owner.is_copy_of(&written));
        let later = Record {
            version: 2,
            ..written.clone()
        };
        assert!(!later.is_copy_of(&written));
        let unowned = Record {
            owner: None,
            ..written.clone()
        };
        assert!(!unowned.is_copy_of(&unowned));
    }

    #[test]
    fn judges_a_record_by_its_status_lock_and_expiry() {
        let r = request("C1", None);
        assert_eq!(record(Status::Finalized).judge(&r, 5_000), Found::Finalized);
        assert_eq!(record(Status::InProgress).judge(&r, 5_000), Found::Pending);
        assert_eq!(
            record(Status::InProgress).judge(&r, 10_000),
            Found::TakeOver,
            "the lock ended"
        );
        assert_eq!(record(Status::Failed).judge(&r, 5_000), Found::TakeOver);
        assert_eq!(
            record(Status::Queued).judge(&r, 5_000),
            Found::Pending,
            "being sent"
        );
        assert_eq!(
            record(Status::Queued).judge(&r, 10_000),
            Found::TakeOver,
            "never confirmed sent"
        );
        let sent = Record {
            lock_until_ms: None,
            ..record(Status::Queued)
        };
        assert_eq!(
            sent.judge(&r, 50_000),
            Found::Pending,
            "sent, waiting for the worker"
        );
        assert_eq!(record(Status::Retrying).judge(&r, 50_000), Found::Pending);
        assert_eq!(
            record(Status::Finalized).judge(&r, 100_000),
            Found::Absent,
            "expired"
        );
        assert_eq!(
            record(Status::Finalized).judge(&request("C1", Some("U1")), 5_000),
            Found::KeyReused("userId")
        );
        assert_eq!(
            record(Status::Failed).judge(&request("C2", None), 5_000),
            Found::KeyReused("csvId")
        );
    }
}
