//! The Lambda runtime loop over the app: each invocation's event to its front, and the answer
//! back.
//!
//! Events arrive as raw JSON, so no event, however malformed, fails before a front sees it: an
//! SQS batch ([`sqs_batch::is_sqs_event`]) goes to the queue worker's front, anything else is read
//! leniently as an HTTP event ([`event::into_request`]) and answered from the contract's table.

use std::convert::Infallible;

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

/// Serves Lambda invocations with `app` until the runtime stops.
pub async fn run(app: &App) -> Result<(), lambda_http::Error> {
    lambda_runtime::run(service_fn(
        move |invocation: LambdaEvent<Value>| async move {
            if sqs_batch::is_sqs_event(&invocation.payload) {
                let batch = Box::pin(app.work_sqs(invocation.payload, &invocation.context)).await;
                return Ok::<_, Infallible>(Answer::Sqs(batch));
            }
            let (request, origin) = event::into_request(invocation.payload);
            // Boxed: the handler's future is deep, and the runtime's loop nests it further.
            let response =
                Box::pin(app.respond(request.with_lambda_context(invocation.context))).await;
            Ok(Answer::Http(event::into_event_response(origin, response)))
        },
    ))
    .await
}
