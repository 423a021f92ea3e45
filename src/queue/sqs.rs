//! The SQS queue (`QUEUE_URL`): the receiver sends, the worker's messages come back after the
//! visibility it sets. Lambda's event source mapping receives and deletes; a message received
//! `QUEUE_MAX_RECEIVES` times goes to the dead-letter queue by the redrive policy.

use std::time::Duration;

use aws_sdk_sqs::error::SdkError;

use super::{Message, QueueError, MAX_VISIBILITY};

/// The longest SQS delays a message it is sent (`DelaySeconds`).
const MAX_SEND_DELAY: Duration = Duration::from_secs(900);
use crate::aws::{classify, Fault, SqsClient};

/// The queue, through one SDK client built once per instance.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: SqsClient,
    url: String,
}

impl SqsQueue {
    /// The queue at `url` through `client`.
    pub fn new(client: SqsClient, url: String) -> Self {
        Self { client, url }
    }

    /// Sends one message.
    pub async fn send(&self, message: &Message) -> Result<(), QueueError> {
        self.client
            .get()
            .send_message()
            .queue_url(&self.url)
            .message_body(message.to_json())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| fault(e, &self.url))
    }

    /// Sends a body received no sooner than `delay` later (at most 15 minutes).
    pub async fn send_delayed(&self, body: String, delay: Duration) -> Result<(), QueueError> {
        let seconds = delay.min(MAX_SEND_DELAY).as_secs();
        self.client
            .get()
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(i32::try_from(seconds).unwrap_or(0))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| fault(e, &self.url))
    }

    /// Makes a received message visible again after `delay` (at most 12 hours).
    pub async fn delay(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        let seconds = delay.min(MAX_VISIBILITY).as_secs();
        self.client
            .get()
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(seconds).unwrap_or(i32::MAX))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| fault(e, &self.url))
    }
}

fn fault<E>(error: SdkError<E>, url: &str) -> QueueError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match classify(error) {
        Fault::Passing(source) => QueueError::Unavailable(source),
        Fault::Missing => QueueError::Config(format!("queue {url} does not exist")),
        Fault::Lasting(problem) => QueueError::Config(format!("queue {url}: {problem}")),
    }
}
