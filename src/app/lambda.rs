//! The Lambda runtime loop over the app: each invocation's event to its front, and the answer
//! back.
//!
//! Events arrive as raw JSON, so no event, however malformed, fails before a front sees it: an
//! SQS batch ([`sqs_batch::is_sqs_event`]) goes to the queue worker's front, anything else is read
//! leniently as an HTTP event ([`event::into_request`]) and answered from the contract's table.

use std::convert::Infallible;
use std::sync::Arc;

use aws_lambda_events::sqs::SqsBatchResponse;
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{service_fn, RequestExt};
use serde::Serialize;
use serde_json::Value;

use super::App;
use crate::fronts::http::event::{self, EventResponse};
use crate::fronts::sqs_batch;

/// What an invocation answers: an HTTP response event, or an SQS batch's failures. Made once
/// per invocation and serialized at once, so the size of the larger variant costs nothing.
#[derive(Serialize)]
#[allow(clippy::large_enum_variant)]
#[serde(untagged)]
enum Answer {
    Http(EventResponse),
    Sqs(SqsBatchResponse),
}

/// Serves Lambda invocations with `app` until the runtime stops: one at a time, as classic
/// Lambda hands them out; with `AWS_LAMBDA_MAX_CONCURRENCY` above 1 (Lambda Managed
/// Instances), that many at once, each on its own `/next` loop, sharing the app's caches,
/// locks and single flights (`lambda_runtime` reads the variable, and runs the sequential loop
/// when it is unset or 1).
pub async fn run(app: Arc<App>) -> Result<(), lambda_http::Error> {
    let handler = service_fn(move |invocation: LambdaEvent<Value>| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Infallible>(answer(&app, invocation).await) }
    });
    lambda_runtime::run_concurrent(handler).await
}

/// One invocation's answer: an SQS batch to the worker's front, anything else to the HTTP
/// front.
async fn answer(app: &App, invocation: LambdaEvent<Value>) -> Answer {
    if sqs_batch::is_sqs_event(&invocation.payload) {
        let batch = Box::pin(app.work_sqs(invocation.payload, &invocation.context)).await;
        return Answer::Sqs(batch);
    }
    let (request, origin) = event::into_request(invocation.payload);
    // Boxed: the handler's future is deep, and the runtime's loop nests it further.
    let response = Box::pin(app.respond(request.with_lambda_context(invocation.context))).await;
    Answer::Http(event::into_event_response(origin, response))
}
