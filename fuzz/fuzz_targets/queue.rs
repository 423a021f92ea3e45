//! Queue mode's worker front: any bytes, read as an SQS event (raw JSON, or spliced into the
//! sample SQS event as a message body and receive count), worked by the real app with records
//! and a queue in memory (dry run: HighLevel is never called). Never panics, and only ever
//! reports message ids the event held.
#![no_main]

#[path = "common/world.rs"]
mod common;

use ghl_csv_finalize::app::config::DeliveryConfig;
use lambda_http::lambda_runtime::Context;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const SAMPLE: &str = include_str!("../../events/sqs-batch.json");

fn event(data: &[u8]) -> Value {
    let Some((&kind, rest)) = data.split_first() else {
        return Value::Null;
    };
    if kind % 2 == 0 {
        return serde_json::from_slice(rest).unwrap_or_else(|_| json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m", "body": String::from_utf8_lossy(rest)}]}));
    }
    let (count, body) = rest.split_at(rest.len().min(3));
    let mut event: Value = serde_json::from_str(SAMPLE).unwrap();
    event["Records"][0]["body"] = json!(String::from_utf8_lossy(body));
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] =
        json!(String::from_utf8_lossy(count));
    event
}

fn message_ids(event: &Value) -> Vec<String> {
    event["Records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .filter_map(|r| r["messageId"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let world = common::world(|config| config.delivery = DeliveryConfig::in_memory(true));
    let event = event(data);
    let known = message_ids(&event);
    let answer = world
        .runtime
        .block_on(world.app.work_sqs(event, &Context::default()));
    for failure in &answer.batch_item_failures {
        assert!(
            failure.item_identifier.is_empty() || known.contains(&failure.item_identifier),
            "reported a message the event did not hold: {}",
            failure.item_identifier
        );
    }
});
