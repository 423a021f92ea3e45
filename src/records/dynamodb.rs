//! Finalization records in a DynamoDB table (`IDEMPOTENCY_TABLE`: partition key `pk`, a String;
//! TTL attribute `expires_at`, Unix seconds).
//!
//! Every write is conditional, so two instances racing on one key cannot both hold it: a new
//! record is created only where none is live (one round trip; when one is, DynamoDB hands it
//! back with the refusal, so a replay costs that one round trip and nothing else), a takeover
//! replaces only the version it saw, and a result is written only by the record's owner.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use serde_json::Value;

use super::record::{CallbackState, FinalizationId, Record, RecordedError, Status};
use super::StoreError;
use crate::aws::{classify, Fault};
use crate::highlevel::Import;
use crate::request::callback::CallbackUrl;
use crate::request::ids::{CsvId, LocationId, UserId};

type Item = HashMap<String, AttributeValue>;

/// The table, through one SDK client built once per instance.
#[derive(Debug, Clone)]
pub struct DynamoRecords {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoRecords {
    /// Records in `table` through `client`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self { client, table }
    }

    pub(super) async fn get(&self, id: &FinalizationId) -> Result<Option<Record>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(id.as_str().to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| fault(e, &self.table))?;
        output.item.as_ref().map(from_item).transpose()
    }

    pub(super) async fn create(
        &self,
        record: &Record,
        now_ms: u64,
    ) -> Result<Option<Record>, StoreError> {
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(record)))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", number(now_ms / 1000))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(None),
            Err(SdkError::ServiceError(context))
                if context.err().is_conditional_check_failed_exception() =>
            {
                let existing = match context.into_err() {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(e) => e.item,
                    _ => None,
                };
                match existing {
                    Some(item) => from_item(&item).map(Some),
                    // Refused without the item (an older table or API): read it.
                    None => self.get(&record.id).await,
                }
            }
            Err(error) => Err(fault(error, &self.table)),
        }
    }

    pub(super) async fn replace(&self, record: &Record, seen: u64) -> Result<bool, StoreError> {
        self.put_if(
            record,
            "#v = :seen",
            [("#v", "version")],
            [(":seen", number(seen))],
        )
        .await
    }

    pub(super) async fn write_owned(&self, record: &Record) -> Result<bool, StoreError> {
        let owner = AttributeValue::S(record.owner.clone().unwrap_or_default());
        self.put_if(
            record,
            "#o = :owner",
            [("#o", "owner")],
            [(":owner", owner)],
        )
        .await
    }

    /// Puts the whole record if `condition` holds; false if it does not.
    async fn put_if(
        &self,
        record: &Record,
        condition: &str,
        names: [(&str, &str); 1],
        values: [(&str, AttributeValue); 1],
    ) -> Result<bool, StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(record)))
            .condition_expression(condition);
        for (name, attribute) in names {
            put = put.expression_attribute_names(name, attribute);
        }
        for (name, value) in values {
            put = put.expression_attribute_values(name, value);
        }
        match put.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(context))
                if context.err().is_conditional_check_failed_exception() =>
            {
                Ok(false)
            }
            Err(error) => Err(fault(error, &self.table)),
        }
    }
}

/// Creates a table with the records' schema — partition key `pk` (String), on-demand billing,
/// TTL on `expires_at` — as the SAM template does (for the tests, the benchmarks, and an
/// operator bringing their own table).
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), aws_sdk_dynamodb::Error> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        TimeToLiveSpecification,
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .send()
        .await?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()?,
        )
        .send()
        .await?;
    Ok(())
}

/// The contract's reading of a DynamoDB failure: passing faults are 503 `store_unavailable`, a
/// missing table or denied access is the operator's to fix.
fn fault<E>(error: SdkError<E>, table: &str) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match classify(error) {
        Fault::Passing(source) => StoreError::Unavailable(source),
        Fault::Missing => StoreError::Config(format!("table {table} does not exist")),
        Fault::Lasting(problem) => StoreError::Config(format!("table {table}: {problem}")),
    }
}

fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn text(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// The record as an item.
fn to_item(record: &Record) -> Item {
    let mut item = Item::new();
    item.insert("pk".into(), text(record.id.as_str()));
    item.insert("location_id".into(), text(record.location_id.as_str()));
    item.insert("csv_id".into(), text(record.csv_id.as_str()));
    if let Some(user) = &record.user_id {
        item.insert("user_id".into(), text(user.as_str()));
    }
    item.insert("status".into(), text(record.status.as_str()));
    item.insert("attempts".into(), number(record.attempts.into()));
    item.insert("created_at_ms".into(), number(record.created_at_ms));
    item.insert("updated_at_ms".into(), number(record.updated_at_ms));
    if let Some(owner) = &record.owner {
        item.insert("owner".into(), text(owner));
    }
    if let Some(until) = record.lock_until_ms {
        item.insert("lock_until_ms".into(), number(until));
    }
    item.insert("expires_at".into(), number(record.expires_at));
    if let Some(upstream) = &record.upstream {
        item.insert("upstream".into(), text(&upstream.to_string()));
    }
    if let Some(error) = &record.error {
        item.insert("error_code".into(), text(&error.code));
        item.insert("error_message".into(), text(&error.message));
    }
    if let Some(status) = &record.csv_status_before {
        item.insert("csv_status_before".into(), text(status));
    }
    if let Some(confirmed_by) = &record.confirmed_by {
        item.insert("confirmed_by".into(), text(confirmed_by));
    }
    if let Some(attempts) = record.answer_attempts {
        item.insert("answer_attempts".into(), number(attempts.into()));
    }
    if let Some(import) = &record.import {
        item.insert("import".into(), text(&import.to_stored().to_string()));
    }
    if let Some(url) = &record.callback_url {
        item.insert("callback_url".into(), text(url.as_str()));
    }
    if let Some(callback) = &record.callback {
        item.insert("callback".into(), text(&callback.to_json().to_string()));
    }
    item.insert("version".into(), number(record.version));
    item
}

/// An item as a record; one that does not read (edited by hand, another program's) is the
/// operator's to fix.
fn from_item(item: &Item) -> Result<Record, StoreError> {
    let bad = |what: &str| StoreError::Config(format!("a record's {what} does not read"));
    let s = |key: &str| {
        item.get(key)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    };
    let n = |key: &str| {
        item.get(key)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let json = |key: &str| s(key).and_then(|text| serde_json::from_str::<Value>(text).ok());
    Ok(Record {
        id: s("pk")
            .and_then(FinalizationId::parse)
            .ok_or_else(|| bad("pk"))?,
        location_id: s("location_id")
            .and_then(|v| LocationId::parse(v).ok())
            .ok_or_else(|| bad("location_id"))?,
        csv_id: s("csv_id")
            .and_then(|v| CsvId::parse(v).ok())
            .ok_or_else(|| bad("csv_id"))?,
        user_id: match s("user_id") {
            Some(user) => Some(UserId::parse(user).map_err(|_| bad("user_id"))?),
            None => None,
        },
        status: s("status")
            .and_then(Status::parse)
            .ok_or_else(|| bad("status"))?,
        attempts: n("attempts")
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(0),
        created_at_ms: n("created_at_ms").unwrap_or(0),
        updated_at_ms: n("updated_at_ms").unwrap_or(0),
        owner: s("owner").map(str::to_owned),
        lock_until_ms: n("lock_until_ms"),
        expires_at: n("expires_at").ok_or_else(|| bad("expires_at"))?,
        upstream: json("upstream"),
        error: match (s("error_code"), s("error_message")) {
            (Some(code), Some(message)) => Some(RecordedError {
                code: code.to_owned(),
                message: message.to_owned(),
            }),
            _ => None,
        },
        csv_status_before: s("csv_status_before").map(str::to_owned),
        confirmed_by: s("confirmed_by").map(str::to_owned),
        answer_attempts: n("answer_attempts").and_then(|a| u32::try_from(a).ok()),
        import: json("import").as_ref().and_then(Import::from_stored),
        callback_url: match s("callback_url") {
            Some(url) => Some(CallbackUrl::stored(url).ok_or_else(|| bad("callback_url"))?),
            None => None,
        },
        callback: json("callback").as_ref().and_then(CallbackState::from_json),
        version: n("version").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let record = Record {
            id: FinalizationId::parse("fz_0123456789abcdef0123456789abcdef").unwrap(),
            location_id: LocationId::parse("L1").unwrap(),
            csv_id: CsvId::parse("C1").unwrap(),
            user_id: Some(UserId::parse("U1").unwrap()),
            status: Status::Finalized,
            attempts: 2,
            created_at_ms: 1,
            updated_at_ms: 2,
            owner: Some("req-1".into()),
            lock_until_ms: Some(3),
            expires_at: 4,
            upstream: Some(json!({"status": 200, "body": {"success": true}})),
            error: Some(RecordedError {
                code: "upstream_unavailable".into(),
                message: "m".into(),
            }),
            csv_status_before: Some("pending".into()),
            confirmed_by: Some("csv_status".into()),
            answer_attempts: Some(1),
            import: crate::highlevel::Import::from_stored(&json!({
                "status": "completed", "posts": 2, "failedPosts": 1,
                "errors": [{"index": 1, "message": "media refused"}],
                "checkedAtMs": 5, "completedAtMs": 5,
            })),
            callback_url: CallbackUrl::stored("https://hooks.example.com/cb?x=1"),
            callback: CallbackState::from_json(&json!({
                "type": "csv.import.completed", "status": "pending", "attempts": 2, "lastStatus": 502,
            })),
            version: 7,
        };
        assert_eq!(from_item(&to_item(&record)).unwrap(), record);
    }

    #[test]
    fn an_item_that_does_not_read_is_a_configuration_fault() {
        let mut item = to_item(&Record {
            id: FinalizationId::parse("fz_0123456789abcdef0123456789abcdef").unwrap(),
            location_id: LocationId::parse("L1").unwrap(),
            csv_id: CsvId::parse("C1").unwrap(),
            user_id: None,
            status: Status::Queued,
            attempts: 0,
            created_at_ms: 1,
            updated_at_ms: 1,
            owner: None,
            lock_until_ms: None,
            expires_at: 9,
            upstream: None,
            error: None,
            csv_status_before: None,
            confirmed_by: None,
            answer_attempts: None,
            import: None,
            callback_url: None,
            callback: None,
            version: 1,
        });
        item.insert("status".into(), text("lost"));
        assert!(matches!(from_item(&item), Err(StoreError::Config(_))));
    }
}
