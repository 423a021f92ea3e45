//! Queue mode: finalize requests carried as messages, so nothing is lost while HighLevel is
//! down or a burst outruns its rate limit.
//!
//! - [`Message`]: what the receiver sends and the worker reads (pure); [`ReceivedMessage`]
//!   and its [`Disposition`]: a message as a queue hands it over, and what becomes of it.
//! - [`sqs`]: the SQS queue (`QUEUE_URL`), with its dead-letter queue behind it.
//! - [`memory`]: a queue in this process's memory, for `serve --queue` and `demo --queue`.

pub mod memory;
#[cfg(test)]
pub(crate) mod sim;
pub mod sqs;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{BoxError, Error};
use crate::records::FinalizationId;
use crate::request::callback::{CallbackKind, CallbackUrl};
use crate::request::ids::{CsvId, LocationId, UserId};
use crate::request::FinalizeRequest;

/// Longest a message may stay invisible (SQS: 12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// One message as a queue hands it over (an SQS record, or the in-memory queue's).
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// The queue's id for it (SQS `messageId`), for the batch answer and the log.
    pub message_id: String,
    /// Its body.
    pub body: String,
    /// How many times it has been received, this time included.
    pub receives: u32,
}

/// What to do with a received message once it was worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Delete it: finalized, failed for good, or not a message at all.
    Done,
    /// Leave it on the queue, visible again after this long.
    Later(Duration),
}

/// One queued finalize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its record.
    pub finalization_id: FinalizationId,
    /// What to finalize.
    pub request: FinalizeRequest,
    /// When the receiver accepted it (Unix milliseconds).
    pub accepted_at_ms: u64,
    /// The request that queued it.
    pub request_id: String,
    /// Where its completion callback goes, if it has one.
    pub callback_url: Option<CallbackUrl>,
}

impl Message {
    /// The message body.
    pub fn to_json(&self) -> String {
        let mut body = request_json(&self.finalization_id, &self.request);
        body["acceptedAtMs"] = json!(self.accepted_at_ms);
        body["requestId"] = json!(self.request_id);
        if let Some(url) = &self.callback_url {
            body["callbackUrl"] = json!(url.as_str());
        }
        body.to_string()
    }

    /// Reads a finalize message's body; every id is checked again, as anything from outside
    /// is.
    pub fn parse(body: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(body).map_err(|_| "the message is not JSON".to_owned())?;
        Self::from_value(&value)
    }

    fn from_value(value: &Value) -> Result<Self, String> {
        let (finalization_id, request) = request_of(value)?;
        Ok(Self {
            finalization_id,
            request,
            accepted_at_ms: value
                .get("acceptedAtMs")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            request_id: value
                .get("requestId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            callback_url: match value.get("callbackUrl") {
                None | Some(Value::Null) => None,
                Some(url) => Some(
                    url.as_str()
                        .and_then(CallbackUrl::stored)
                        .ok_or_else(|| "the message's callbackUrl is not valid".to_owned())?,
                ),
            },
        })
    }
}

/// What a queued message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    /// A finalize.
    Finalize(Message),
    /// A check of a finalized import.
    Follow(FollowUp),
    /// A completion callback to deliver again.
    Callback(CallbackDue),
}

impl Queued {
    /// Reads a message body: a follow-up says so (`"kind":"follow"`), anything else is read as
    /// a finalize.
    pub fn parse(body: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(body).map_err(|_| "the message is not JSON".to_owned())?;
        match value.get("kind").and_then(Value::as_str) {
            Some(FollowUp::KIND) => FollowUp::from_value(&value).map(Queued::Follow),
            Some(CallbackDue::KIND) => CallbackDue::from_value(&value).map(Queued::Callback),
            _ => Message::from_value(&value).map(Queued::Finalize),
        }
    }
}

/// A check of an import after its finalize: sent delayed, and each check's successor sent
/// anew, so following a long import never spends the finalize message's receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    /// The finalize's record.
    pub finalization_id: FinalizationId,
    /// What was finalized.
    pub request: FinalizeRequest,
    /// When it was finalized (Unix milliseconds): the import is followed until its timeout.
    pub finalized_at_ms: u64,
    /// The wait before this check; the next one waits twice as long, within the cap.
    pub interval: Duration,
}

impl FollowUp {
    const KIND: &'static str = "follow";

    /// The message body.
    pub fn to_json(&self) -> String {
        let mut body = request_json(&self.finalization_id, &self.request);
        body["kind"] = json!(Self::KIND);
        body["finalizedAtMs"] = json!(self.finalized_at_ms);
        body["intervalSecs"] = json!(self.interval.as_secs());
        body.to_string()
    }

    fn from_value(value: &Value) -> Result<Self, String> {
        let (finalization_id, request) = request_of(value)?;
        let number = |key: &str| number(value, "follow-up", key);
        Ok(Self {
            finalization_id,
            request,
            finalized_at_ms: number("finalizedAtMs")?,
            interval: Duration::from_secs(number("intervalSecs")?),
        })
    }
}

/// A completion callback that was not answered with a 2xx, sent delayed to be tried again.
/// The callback's URL and what it reports are read from the record each time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackDue {
    /// The finalize's record.
    pub finalization_id: FinalizationId,
    /// What was finalized.
    pub request: FinalizeRequest,
    /// What the callback reports.
    pub kind: CallbackKind,
    /// When what it reports happened (Unix ms): the callback's `timestamp`.
    pub occurred_at_ms: u64,
    /// When it was first tried (Unix ms): it is tried for 24 hours from then.
    pub first_tried_at_ms: u64,
    /// The wait before this try; the next one waits twice as long, within the cap.
    pub delay: Duration,
}

impl CallbackDue {
    const KIND: &'static str = "callback";

    /// The message body.
    pub fn to_json(&self) -> String {
        let mut body = request_json(&self.finalization_id, &self.request);
        body["kind"] = json!(Self::KIND);
        body["type"] = json!(self.kind.as_str());
        body["occurredAtMs"] = json!(self.occurred_at_ms);
        body["firstTriedAtMs"] = json!(self.first_tried_at_ms);
        body["delaySecs"] = json!(self.delay.as_secs());
        body.to_string()
    }

    fn from_value(value: &Value) -> Result<Self, String> {
        let (finalization_id, request) = request_of(value)?;
        let number = |key: &str| number(value, "callback", key);
        Ok(Self {
            finalization_id,
            request,
            kind: value
                .get("type")
                .and_then(Value::as_str)
                .and_then(CallbackKind::parse)
                .ok_or_else(|| "the callback's type is missing or not valid".to_owned())?,
            occurred_at_ms: number("occurredAtMs")?,
            first_tried_at_ms: number("firstTriedAtMs")?,
            delay: Duration::from_secs(number("delaySecs")?),
        })
    }
}

/// The whole number `key` of a `what` message, or why not.
fn number(value: &Value, what: &str, key: &str) -> Result<u64, String> {
    value
        .get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("the {what}'s {key} is missing or not valid"))
}

/// The record id and the ids of a finalize, as a message carries them.
fn request_json(id: &FinalizationId, request: &FinalizeRequest) -> Value {
    let mut body = json!({
        "finalizationId": id.as_str(),
        "locationId": request.location_id.as_str(),
        "csvId": request.csv_id.as_str(),
    });
    if let Some(user) = &request.user_id {
        body["userId"] = json!(user.as_str());
    }
    body
}

/// The record id and the finalize a message names; every id is checked again, as anything
/// from outside is.
fn request_of(value: &Value) -> Result<(FinalizationId, FinalizeRequest), String> {
    let text = |key: &str| value.get(key).and_then(Value::as_str);
    let bad = |key: &str| format!("the message's {key} is missing or not valid");
    Ok((
        text("finalizationId")
            .and_then(FinalizationId::parse)
            .ok_or_else(|| bad("finalizationId"))?,
        FinalizeRequest {
            location_id: text("locationId")
                .and_then(|v| LocationId::parse(v).ok())
                .ok_or_else(|| bad("locationId"))?,
            csv_id: text("csvId")
                .and_then(|v| CsvId::parse(v).ok())
                .ok_or_else(|| bad("csvId"))?,
            user_id: match value.get("userId") {
                None | Some(Value::Null) => None,
                Some(user) => Some(
                    user.as_str()
                        .and_then(|v| UserId::parse(v).ok())
                        .ok_or_else(|| bad("userId"))?,
                ),
            },
        },
    ))
}

/// Why the queue could not take a message or change one.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Unreachable, throttling or failing: retry later.
    #[error("the queue is unavailable for now")]
    Unavailable(#[source] BoxError),
    /// Access denied, a missing queue: the operator must fix it.
    #[error("the queue cannot be used: {0}")]
    Config(String),
}

impl From<QueueError> for Error {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::Unavailable(_) => Error::QueueUnavailable(Box::new(error)),
            QueueError::Config(_) => {
                Error::config("the queue cannot be used", Some(Box::new(error) as _))
            }
        }
    }
}

/// Where queued finalizes wait.
pub enum Queue {
    /// An SQS queue.
    Sqs(sqs::SqsQueue),
    /// This process's memory (local tools), shared with the local worker that drains it.
    Memory(Arc<memory::MemoryQueue>),
    /// Behind the delivery simulation's faults (tests).
    #[cfg(test)]
    Sim(Arc<sim::SimQueue>),
}

impl Queue {
    /// Sends one message.
    pub async fn send(&self, message: &Message) -> Result<(), QueueError> {
        match self {
            Queue::Sqs(queue) => queue.send(message).await,
            Queue::Memory(queue) => {
                queue.send(message.to_json());
                Ok(())
            }
            #[cfg(test)]
            Queue::Sim(queue) => queue.send(message).await,
        }
    }

    /// Sends a follow-up, received no sooner than its interval (SQS's `DelaySeconds`, at most
    /// 15 minutes).
    pub async fn send_follow_up(&self, follow_up: &FollowUp) -> Result<(), QueueError> {
        self.send_delayed(follow_up.to_json(), follow_up.interval)
            .await
    }

    /// Sends a callback's next try, received no sooner than its delay (at most 15 minutes).
    pub async fn send_callback(&self, due: &CallbackDue) -> Result<(), QueueError> {
        self.send_delayed(due.to_json(), due.delay).await
    }

    async fn send_delayed(&self, body: String, delay: Duration) -> Result<(), QueueError> {
        match self {
            Queue::Sqs(queue) => queue.send_delayed(body, delay).await,
            Queue::Memory(queue) => {
                queue.send_delayed(body, delay);
                Ok(())
            }
            #[cfg(test)]
            Queue::Sim(queue) => queue.send_body(body).await,
        }
    }

    /// Makes a received SQS message (by its receipt handle) visible again after `delay`. The
    /// in-memory queue's worker puts its messages back itself.
    pub async fn delay(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        match self {
            Queue::Sqs(queue) => queue.delay(receipt_handle, delay).await,
            Queue::Memory(_) => Ok(()),
            #[cfg(test)]
            Queue::Sim(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(user: Option<&str>) -> Message {
        Message {
            finalization_id: FinalizationId::parse("fz_0123456789abcdef0123456789abcdef").unwrap(),
            request: FinalizeRequest {
                location_id: LocationId::parse("L1").unwrap(),
                csv_id: CsvId::parse("C1").unwrap(),
                user_id: user.map(|u| UserId::parse(u).unwrap()),
            },
            accepted_at_ms: 1_796_202_903_123,
            request_id: "req-1".into(),
            callback_url: user.and_then(|_| CallbackUrl::stored("https://hooks.example.com/cb")),
        }
    }

    #[test]
    fn a_message_reads_back_as_it_was_sent() {
        for user in [None, Some("U1")] {
            let sent = message(user);
            assert_eq!(Message::parse(&sent.to_json()).unwrap(), sent);
        }
    }

    #[test]
    fn refuses_a_message_with_an_unsafe_or_missing_id() {
        let sent: Value = serde_json::from_str(&message(None).to_json()).unwrap();
        for (key, value) in [
            ("csvId", json!("../x")),
            ("locationId", Value::Null),
            ("finalizationId", json!("fz_short")),
            ("userId", json!(7)),
        ] {
            let mut body = sent.clone();
            body[key] = value;
            assert!(Message::parse(&body.to_string()).is_err(), "{key}");
        }
        assert!(Message::parse("not json").is_err());
    }

    #[test]
    fn a_follow_up_round_trips_and_an_old_body_is_a_finalize() {
        let follow_up = FollowUp {
            finalization_id: FinalizationId::parse("fz_0123456789abcdef0123456789abcdef").unwrap(),
            request: FinalizeRequest {
                location_id: LocationId::parse("L1").unwrap(),
                csv_id: CsvId::parse("C1").unwrap(),
                user_id: Some(UserId::parse("U1").unwrap()),
            },
            finalized_at_ms: 1_700_000_000_000,
            interval: Duration::from_secs(60),
        };
        assert_eq!(
            Queued::parse(&follow_up.to_json()),
            Ok(Queued::Follow(follow_up.clone()))
        );
        let finalize = Message {
            finalization_id: follow_up.finalization_id.clone(),
            request: follow_up.request.clone(),
            accepted_at_ms: 5,
            request_id: "r".into(),
            callback_url: None,
        };
        assert_eq!(
            Queued::parse(&finalize.to_json()),
            Ok(Queued::Finalize(finalize))
        );
        let mut broken: Value = serde_json::from_str(&follow_up.to_json()).unwrap();
        broken["intervalSecs"] = json!("soon");
        assert!(Queued::parse(&broken.to_string()).is_err());
    }

    #[test]
    fn a_callback_due_round_trips_and_refuses_an_unknown_type() {
        let due = CallbackDue {
            finalization_id: FinalizationId::parse("fz_0123456789abcdef0123456789abcdef").unwrap(),
            request: message(None).request,
            kind: CallbackKind::ImportTimedOut,
            occurred_at_ms: 7,
            first_tried_at_ms: 8,
            delay: Duration::from_secs(120),
        };
        assert_eq!(
            Queued::parse(&due.to_json()),
            Ok(Queued::Callback(due.clone()))
        );
        let mut broken: Value = serde_json::from_str(&due.to_json()).unwrap();
        broken["type"] = json!("csv.import.done");
        assert!(Queued::parse(&broken.to_string()).is_err());
        let mut sent: Value = serde_json::from_str(&message(None).to_json()).unwrap();
        sent["callbackUrl"] = json!("ftp://x");
        assert!(Message::parse(&sent.to_string()).is_err());
    }
}
