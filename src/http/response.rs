//! The contract's JSON envelope, for every answer the HTTP front gives.

use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde_json::{json, Map, Value};

use crate::error::Error;
use crate::highlevel::retry::retry_after_header;
use crate::service::{FinalizeRequest, Outcome};

/// `200 {"ok":true,"requestId":…}` for `GET …/healthz`.
pub fn health(request_id: &str) -> Response<Body> {
    respond(StatusCode::OK, json!({"ok": true, "requestId": request_id}))
}

/// The answer to a finalize request that reached the service.
pub fn outcome(request: &FinalizeRequest, outcome: &Outcome, request_id: &str) -> Response<Body> {
    match outcome {
        Outcome::Finalized { reply, attempts } => respond(
            StatusCode::OK,
            json!({
                "ok": true,
                "locationId": request.location_id.as_str(),
                "csvId": request.csv_id.as_str(),
                "attempts": attempts,
                "upstream": reply.to_json(),
                "requestId": request_id,
            }),
        ),
        Outcome::DryRun { would_send } => respond(
            StatusCode::OK,
            json!({
                "ok": true,
                "dryRun": true,
                "locationId": request.location_id.as_str(),
                "csvId": request.csv_id.as_str(),
                "attempts": 0,
                "request": would_send,
                "requestId": request_id,
            }),
        ),
        Outcome::Failed { error: e, attempts } => error(e, *attempts, request_id),
    }
}

/// `{"ok":false,"error":{…}}` with the status, code and headers the error calls for.
/// `attempts` is included once a request has been sent to HighLevel.
pub fn error(error: &Error, attempts: u32, request_id: &str) -> Response<Body> {
    let mut detail = Map::new();
    detail.insert("code".into(), json!(error.code()));
    detail.insert("message".into(), json!(error.public_message()));
    if let Some(field) = error.field() {
        detail.insert("field".into(), json!(field));
    }
    let mut body = Map::new();
    body.insert("ok".into(), json!(false));
    body.insert("error".into(), Value::Object(detail));
    if let Some(reply) = error.upstream() {
        body.insert("upstream".into(), reply.to_json());
    }
    if attempts > 0 {
        body.insert("attempts".into(), json!(attempts));
    }
    body.insert("requestId".into(), json!(request_id));
    let mut response = respond(error.status(), Value::Object(body));
    let headers = response.headers_mut();
    if let Some(delay) = error.retry_after() {
        headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_header(delay)));
    }
    if matches!(error, Error::MethodNotAllowed) {
        headers.insert(ALLOW, HeaderValue::from_static("POST, GET"));
    }
    response
}

fn respond(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::UpstreamReply;
    use std::time::Duration;

    fn body_of(response: &Response<Body>) -> Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    #[test]
    fn renders_a_field_error() {
        let response = error(
            &Error::invalid_field("csvId", "csvId is required"),
            0,
            "req-1",
        );
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(
            body_of(&response),
            json!({"ok": false, "error": {"code": "invalid_request", "message": "csvId is required", "field": "csvId"}, "requestId": "req-1"})
        );
    }

    #[test]
    fn renders_retry_after_and_upstream_for_an_overloaded_upstream() {
        let overloaded = Error::UpstreamUnavailable {
            reply: Some(UpstreamReply::new(
                429,
                json!({"message": "slow down"}),
                false,
            )),
            retry_after: Some(Duration::from_secs(7)),
            source: None,
        };
        let response = error(&overloaded, 3, "req-2");
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "7");
        let body = body_of(&response);
        assert_eq!(
            body["upstream"],
            json!({"status": 429, "body": {"message": "slow down"}})
        );
        assert_eq!(body["attempts"], 3);
    }

    fn request() -> FinalizeRequest {
        FinalizeRequest {
            location_id: crate::ids::LocationId::parse("L1").unwrap(),
            csv_id: crate::ids::CsvId::parse("C1").unwrap(),
            user_id: None,
        }
    }

    #[test]
    fn renders_a_finalized_import_with_highlevels_answer() {
        let outcome = Outcome::Finalized {
            reply: UpstreamReply::new(200, json!({"success": true}), false),
            attempts: 2,
        };
        let response = outcome_response(&outcome);
        assert_eq!(response.status(), 200);
        assert_eq!(
            body_of(&response),
            json!({"ok": true, "locationId": "L1", "csvId": "C1", "attempts": 2,
                   "upstream": {"status": 200, "body": {"success": true}}, "requestId": "r"})
        );
    }

    #[test]
    fn renders_a_dry_run_and_a_failure_after_attempts() {
        let dry = outcome_response(&Outcome::DryRun {
            would_send: json!({"method": "PATCH"}),
        });
        assert_eq!(body_of(&dry)["dryRun"], true);
        assert_eq!(body_of(&dry)["request"], json!({"method": "PATCH"}));
        let failed = outcome_response(&Outcome::Failed {
            error: Error::UpstreamTimeout,
            attempts: 1,
        });
        assert_eq!(failed.status(), 504);
        assert_eq!(body_of(&failed)["attempts"], 1);
    }

    fn outcome_response(result: &Outcome) -> Response<Body> {
        outcome(&request(), result, "r")
    }

    #[test]
    fn renders_the_allow_header_on_405() {
        let response = error(&Error::MethodNotAllowed, 0, "r");
        assert_eq!(response.headers()["allow"], "POST, GET");
    }
}
