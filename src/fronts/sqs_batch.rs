//! Queue mode's worker front: an SQS event from Lambda's event source mapping (with
//! `ReportBatchItemFailures`) to [`Delivery::work`], and the batch answer back.
//!
//! A message to come back later has its visibility set to the delay delivery asks for and is
//! reported in `batchItemFailures`, so SQS keeps it (and, after `maxReceiveCount` receives, moves
//! it to the dead-letter queue). An event that does not read as SQS messages reports every
//! message id it can find: nothing is deleted that was not handled.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use futures_util::future::join_all;
use lambda_http::lambda_runtime::Context;
use serde_json::Value;

use crate::delivery::Delivery;
use crate::error::chain;
use crate::observe::Observer;
use crate::queue::{Disposition, ReceivedMessage};
use crate::request::Invocation;

/// Whether a Lambda event is an SQS batch (`Records[0].eventSource == "aws:sqs"`).
pub fn is_sqs_event(event: &Value) -> bool {
    event
        .pointer("/Records/0/eventSource")
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

/// Works one SQS event, writing each message's audit line through `observer`; never fails.
pub(crate) async fn work_event(
    delivery: &Delivery,
    observer: &Observer,
    event: Value,
    context: &Context,
) -> SqsBatchResponse {
    let invocation = Invocation::of(Some(context));
    let mut answer = SqsBatchResponse::default();
    let event: SqsEvent = match serde_json::from_value(event.clone()) {
        Ok(parsed) => parsed,
        Err(problem) => {
            tracing::error!(request_id = %invocation.request_id, %problem, "an SQS event that does not read; every message comes back");
            for id in message_ids(&event) {
                answer.add_failure(id);
            }
            return answer;
        }
    };
    let received: Vec<ReceivedMessage> = event
        .records
        .iter()
        .map(|message| ReceivedMessage {
            message_id: message.message_id.clone().unwrap_or_default(),
            body: message.body.clone().unwrap_or_default(),
            receives: message
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|count| count.parse().ok())
                .unwrap_or(1),
        })
        .collect();
    let dispositions = super::work_batch(delivery, observer, &received, &invocation).await;
    let later = event
        .records
        .iter()
        .zip(&received)
        .zip(dispositions)
        .filter_map(|((message, received), disposition)| match disposition {
            Disposition::Done => None,
            Disposition::Later(delay) => Some((
                message.receipt_handle.as_deref(),
                received.message_id.as_str(),
                delay,
            )),
        });
    let delays = later.map(|(receipt, message_id, delay)| async move {
        if let (Some(queue), Some(receipt)) = (delivery.queue(), receipt) {
            if let Err(error) = queue.delay(receipt, delay).await {
                // It comes back after the queue's own visibility timeout instead.
                tracing::warn!(message_id, cause = %chain(&error), "could not set a message's visibility");
            }
        }
        message_id.to_owned()
    });
    for message_id in join_all(delays).await {
        answer.add_failure(message_id);
    }
    answer
}

/// Every `Records[].messageId` in an event, however malformed the rest.
fn message_ids(event: &Value) -> Vec<String> {
    event
        .get("Records")
        .and_then(Value::as_array)
        .map(|records| {
            records
                .iter()
                .filter_map(|r| {
                    r.get("messageId")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recognises_an_sqs_event_by_its_first_records_source() {
        assert!(is_sqs_event(
            &json!({"Records": [{"eventSource": "aws:sqs"}]})
        ));
        for other in [
            json!({"Records": [{"eventSource": "aws:s3"}]}),
            json!({"Records": []}),
            json!({"requestContext": {}}),
            json!("x"),
        ] {
            assert!(!is_sqs_event(&other), "{other}");
        }
    }

    #[test]
    fn finds_every_message_id_in_a_malformed_event() {
        let event =
            json!({"Records": [{"messageId": "a", "body": 7}, {"messageId": "b"}, {"x": 1}]});
        assert_eq!(message_ids(&event), ["a", "b"]);
    }
}
