//! Running the app under the Lambda runtime.
//!
//! `lambda_http` turns each event into an `http::Request`. One guard is added in front: an
//! event whose body claims to be base64 but is not would make that conversion panic, so such a
//! body is dropped and marked with [`INVALID_BASE64_HEADER`], and the handler answers 400.

use std::task::{Context, Poll};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use lambda_http::http::HeaderValue;
use lambda_http::lambda_runtime::LambdaEvent;
use lambda_http::request::LambdaRequest;
use lambda_http::{service_fn, Adapter, Request, Service};

use crate::app::App;

/// Marks an event whose base64 body could not be decoded.
pub const INVALID_BASE64_HEADER: &str = "x-ghl-csv-finalize-invalid-base64";

/// Serves Lambda invocations with `app` until the runtime stops.
pub async fn run(app: &App) -> Result<(), lambda_http::Error> {
    let handler = service_fn(move |request: Request| async move {
        Ok::<_, std::convert::Infallible>(app.handle(request).await)
    });
    lambda_http::lambda_runtime::run(GuardBase64 {
        inner: Adapter::from(handler),
    })
    .await
}

/// Drops undecodable base64 bodies before `lambda_http` converts the event.
struct GuardBase64<S> {
    inner: S,
}

impl<S> Service<LambdaEvent<LambdaRequest>> for GuardBase64<S>
where
    S: Service<LambdaEvent<LambdaRequest>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut event: LambdaEvent<LambdaRequest>) -> Self::Future {
        guard_base64(&mut event.payload);
        self.inner.call(event)
    }
}

/// Clears a body flagged as base64 that does not decode, and marks the request.
pub fn guard_base64(request: &mut LambdaRequest) {
    let (encoded, body, headers) = match request {
        LambdaRequest::ApiGatewayV1(r) => (&mut r.is_base64_encoded, &mut r.body, &mut r.headers),
        LambdaRequest::ApiGatewayV2(r) => (&mut r.is_base64_encoded, &mut r.body, &mut r.headers),
        LambdaRequest::Alb(r) => (&mut r.is_base64_encoded, &mut r.body, &mut r.headers),
        _ => return,
    };
    if *encoded && body.as_deref().is_some_and(|b| BASE64.decode(b).is_err()) {
        *encoded = false;
        *body = None;
        headers.insert(INVALID_BASE64_HEADER, HeaderValue::from_static("1"));
    }
}
