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
}

impl Message {
    /// The message body.
    pub fn to_json(&self) -> String {
        let mut body = json!({
            "finalizationId": self.finalization_id.as_str(),
            "locationId": self.request.location_id.as_str(),
            "csvId": self.request.csv_id.as_str(),
            "acceptedAtMs": self.accepted_at_ms,
            "requestId": self.request_id,
        });
        if let Some(user) = &self.request.user_id {
            body["userId"] = json!(user.as_str());
        }
        body.to_string()
    }

    /// Reads a message body; every id is checked again, as anything from outside is.
    pub fn parse(body: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(body).map_err(|_| "the message is not JSON".to_owned())?;
        let text = |key: &str| value.get(key).and_then(Value::as_str);
        let bad = |key: &str| format!("the message's {key} is missing or not valid");
        Ok(Self {
            finalization_id: text("finalizationId")
                .and_then(FinalizationId::parse)
                .ok_or_else(|| bad("finalizationId"))?,
            request: FinalizeRequest {
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
            accepted_at_ms: value
                .get("acceptedAtMs")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            request_id: text("requestId").unwrap_or("").to_owned(),
        })
    }
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
}
