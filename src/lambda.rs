//! The Lambda runtime loop: each invocation's event to its front, and the answer back.
//!
//! Events arrive as raw JSON, so no event, however malformed, fails before the front sees it:
//! [`event::into_request`] reads it leniently and the front answers from the contract's table.

use std::convert::Infallible;

use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{service_fn, RequestExt};
use serde_json::Value;

use crate::app::App;
use crate::http::event;

/// Serves Lambda invocations with `app` until the runtime stops.
pub async fn run(app: &App) -> Result<(), lambda_http::Error> {
    lambda_runtime::run(service_fn(
        move |invocation: LambdaEvent<Value>| async move {
            let (request, origin) = event::into_request(invocation.payload);
            // Boxed: the handler's future is deep, and the runtime's loop nests it further.
            let response =
                Box::pin(app.handle(request.with_lambda_context(invocation.context))).await;
            Ok::<_, Infallible>(event::into_event_response(origin, response))
        },
    ))
    .await
}
