//! DynamoDB and SQS for the durable-delivery suites: tables and queues in moto through the real
//! SDK clients, SQS events built as Lambda's event source mapping builds them, and a fault
//! proxy in front of moto that fails chosen operations on demand.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use lambda_http::Context;
use serde_json::{json, Value};

use crate::helpers::*;

/// A DynamoDB client for `endpoint` with test credentials, as the function builds one.
pub fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::new()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .http_client(ghl_csv_finalize::aws::sdk_http_client(https_client()))
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .timeout_config(ghl_csv_finalize::aws::clients::timeouts())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// An SQS client for `endpoint` with test credentials, as the function builds one.
pub fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::config::Builder::new()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .http_client(ghl_csv_finalize::aws::sdk_http_client(https_client()))
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .timeout_config(ghl_csv_finalize::aws::clients::timeouts())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// Creates a records table with the contract's schema (partition key `pk`, TTL `expires_at`).
pub async fn create_table(name: &str) {
    ghl_csv_finalize::records::dynamodb::create_table(&dynamodb_client(moto_endpoint()), name)
        .await
        .expect("moto creates the table");
}

/// A queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct Queues {
    pub url: String,
    pub dlq_url: String,
    pub arn: String,
}

/// Creates a queue whose redrive policy moves a message to a new dead-letter queue after
/// `max_receives` receives, as the SAM template does.
pub async fn create_queues(name: &str, max_receives: u32) -> Queues {
    let admin = sqs_client(moto_endpoint());
    let dlq_url = admin
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("moto creates the dead-letter queue")
        .queue_url
        .unwrap();
    let dlq_arn = queue_arn(&dlq_url).await;
    let url = admin
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives.to_string()})
                .to_string(),
        )
        .attributes(QueueAttributeName::VisibilityTimeout, "60")
        .send()
        .await
        .expect("moto creates the queue")
        .queue_url
        .unwrap();
    let arn = queue_arn(&url).await;
    Queues { url, dlq_url, arn }
}

async fn queue_arn(url: &str) -> String {
    sqs_client(moto_endpoint())
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap()
}

/// A Lambda context whose deadline is `remaining` from now.
pub fn context(remaining: Duration) -> Context {
    let mut context = Context::default();
    context.request_id = unique("lambda-worker");
    context.deadline = (SystemTime::now() + remaining)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    context
}

impl TestApp {
    fn queue(&self) -> &Queues {
        self.queues.as_ref().expect("a queue-mode app")
    }

    /// Receives up to 10 visible messages as Lambda's event source mapping would, as its SQS
    /// event; `None` when none is visible.
    pub async fn receive_event(&self) -> Option<Value> {
        receive_event(&self.queue().url, &self.queue().arn).await
    }

    /// Works an SQS event through the function with 30 s to its deadline; the batch answer.
    pub async fn work(&self, event: &Value) -> Value {
        work_on(&self.app, event).await
    }

    /// The message ids in a batch answer's `batchItemFailures`.
    pub fn failures(answer: &Value) -> Vec<String> {
        answer["batchItemFailures"]
            .as_array()
            .expect("a batch answer")
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Makes a received message visible at once, as if its delay had passed.
    pub async fn make_visible(&self, event: &Value) {
        for record in event["Records"].as_array().unwrap() {
            sqs_client(moto_endpoint())
                .change_message_visibility()
                .queue_url(&self.queue().url)
                .receipt_handle(record["receiptHandle"].as_str().unwrap())
                .visibility_timeout(0)
                .send()
                .await
                .expect("moto changes the visibility");
        }
    }

    /// Messages waiting in the queue (visible or not) and in its dead-letter queue.
    pub async fn queue_depths(&self) -> (u64, u64) {
        (
            depth(&self.queue().url).await,
            depth(&self.queue().dlq_url).await,
        )
    }

    /// The status route's answer for `finalization_id`.
    pub async fn status_of(&self, finalization_id: &str) -> TestResponse {
        self.invoke(&status_event(finalization_id)).await
    }

    /// Sets a record's attribute directly in the table (as time or an operator would).
    pub async fn set_record_field(
        &self,
        finalization_id: &str,
        field: &str,
        value: AttributeValue,
    ) {
        dynamodb_client(moto_endpoint())
            .update_item()
            .table_name(self.table.as_deref().expect("records are kept"))
            .key("pk", AttributeValue::S(finalization_id.to_owned()))
            .update_expression("SET #f = :v")
            .expression_attribute_names("#f", field)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .expect("moto updates the record");
    }

    /// A record as stored, attribute by attribute.
    pub async fn stored_record(
        &self,
        finalization_id: &str,
    ) -> Option<HashMap<String, AttributeValue>> {
        dynamodb_client(moto_endpoint())
            .get_item()
            .table_name(self.table.as_deref().expect("records are kept"))
            .key("pk", AttributeValue::S(finalization_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .expect("moto reads the record")
            .item
    }
}

/// Works an SQS event through one instance, with 30 s to its deadline.
pub async fn work_on(app: &ghl_csv_finalize::App, event: &Value) -> Value {
    let answer = app
        .work_sqs(event.clone(), &context(Duration::from_secs(30)))
        .await;
    serde_json::to_value(answer).expect("the batch answer serializes")
}

async fn receive_event(url: &str, arn: &str) -> Option<Value> {
    let received = sqs_client(moto_endpoint())
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .expect("moto receives");
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return None;
    }
    let records: Vec<Value> = messages
        .into_iter()
        .map(|m| {
            let attributes: HashMap<String, String> = m
                .attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v))
                .collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    Some(json!({ "Records": records }))
}

async fn depth(url: &str) -> u64 {
    let attributes = sqs_client(moto_endpoint())
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|name| {
        attributes
            .get(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    })
    .sum()
}

/// The status route's sample event (`GET /finalizations/{finalizationId}` with the API key),
/// for `finalization_id`.
pub fn status_event(finalization_id: &str) -> String {
    EV_STATUS.replace(SAMPLE_FINALIZATION_ID, finalization_id)
}

/// The finalization id in the sample events.
pub const SAMPLE_FINALIZATION_ID: &str = "fz_c3407cf8081b2cdf7d0464c1617d0c31";

/// An app keeping records (and, with `queue`, in queue mode) whose DynamoDB and SQS calls go
/// through a new [`FaultProxy`].
pub async fn app_behind_fault_proxy(queue: bool) -> (TestApp, FaultProxy) {
    let proxy = FaultProxy::start().await;
    let t = spawn_app_with(Setup {
        records: true,
        queue,
        aws_endpoint: Some(proxy.url.clone()),
        ..Setup::default()
    })
    .await;
    (t, proxy)
}

/// One failure rule of a [`FaultProxy`]: operations whose `X-Amz-Target` ends with `target`
/// answer `status` with the AWS error type `error` — `times` more times — after passing the
/// operation on to moto when `apply` (an answer lost after the write was done).
#[derive(Debug, Clone)]
struct Rule {
    target: String,
    /// `None`: the operation goes through (only slowly).
    status: Option<u16>,
    error: String,
    times: usize,
    apply: bool,
    delay: Duration,
}

/// An AWS endpoint in front of moto that fails chosen operations while told to and forwards
/// everything else, counting the operations it sees.
#[derive(Clone)]
pub struct FaultProxy {
    pub url: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    pub async fn start() -> Self {
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let client = reqwest::Client::new();
        let (rules_in, seen_in) = (Arc::clone(&rules), Arc::clone(&seen));
        let handle = ghl_csv_finalize::local::server::serve_connections(
            listener,
            Default::default(),
            move |request: http::Request<hyper::body::Incoming>| {
                let (rules, seen, client) =
                    (Arc::clone(&rules_in), Arc::clone(&seen_in), client.clone());
                async move {
                    use http_body_util::BodyExt;
                    let (parts, body) = request.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    let target = parts
                        .headers
                        .get("x-amz-target")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    seen.lock().unwrap().push(target.clone());
                    let rule = {
                        let mut rules = rules.lock().unwrap();
                        let rule = rules
                            .iter_mut()
                            .find(|r| r.times > 0 && target.ends_with(&r.target));
                        rule.map(|r| {
                            r.times -= 1;
                            r.clone()
                        })
                    };
                    let full = |status: u16, body: bytes::Bytes| {
                        let mut response = http::Response::new(http_body_util::Full::new(body));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        response
                    };
                    let mut forward = client
                        .post(format!("{}{}", moto_endpoint(), parts.uri.path()))
                        .body(body);
                    for (name, value) in &parts.headers {
                        if name != http::header::HOST {
                            forward = forward.header(name, value);
                        }
                    }
                    if let Some(rule) = &rule {
                        tokio::time::sleep(rule.delay).await;
                    }
                    if let Some((rule, status)) = rule.and_then(|r| r.status.map(|s| (r, s))) {
                        if rule.apply {
                            forward.send().await.unwrap();
                        }
                        let body =
                            json!({"__type": rule.error, "message": "simulated"}).to_string();
                        let mut response = full(status, bytes::Bytes::from(body));
                        response.headers_mut().insert(
                            "x-amzn-query-error",
                            http::HeaderValue::from_static("Simulated;Sender"),
                        );
                        response.headers_mut().insert(
                            "content-type",
                            http::HeaderValue::from_static("application/x-amz-json-1.0"),
                        );
                        return Ok::<_, std::convert::Infallible>(response);
                    }
                    let answer = forward.send().await.unwrap();
                    let status = answer.status().as_u16();
                    let headers = answer.headers().clone();
                    let mut response = full(status, answer.bytes().await.unwrap());
                    *response.headers_mut() = headers;
                    Ok(response)
                }
            },
        );
        std::mem::forget(handle);
        Self { url, rules, seen }
    }

    /// Operations ending with `target` (`PutItem`, `SendMessage`, or `""` for all) fail with
    /// `status` and the AWS error type `error` until [`FaultProxy::heal`].
    pub fn fail(&self, target: &str, status: u16, error: &str) {
        self.fail_after(target, status, error, Duration::ZERO);
    }

    /// Like [`FaultProxy::fail`], each failure answered only after `delay`.
    pub fn fail_after(&self, target: &str, status: u16, error: &str, delay: Duration) {
        self.rules.lock().unwrap().push(Rule {
            target: target.to_owned(),
            status: Some(status),
            error: error.to_owned(),
            times: usize::MAX,
            apply: false,
            delay,
        });
    }

    /// Operations ending with `target` go through, each answered only after `delay`.
    pub fn slow(&self, target: &str, delay: Duration) {
        self.rules.lock().unwrap().push(Rule {
            target: target.to_owned(),
            status: None,
            error: String::new(),
            times: usize::MAX,
            apply: false,
            delay,
        });
    }

    /// The next operation ending with `target` is done at moto, but its answer is lost: the
    /// client gets a 500 `InternalServerError` (which the SDK sends again).
    pub fn lose_answer_once(&self, target: &str) {
        self.rules.lock().unwrap().push(Rule {
            target: target.to_owned(),
            status: Some(500),
            error: "InternalServerError".to_owned(),
            times: 1,
            apply: true,
            delay: Duration::ZERO,
        });
    }

    /// Every operation goes through again.
    pub fn heal(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// How many operations ending with `target` it has seen.
    pub fn calls(&self, target: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.ends_with(target))
            .count()
    }
}
