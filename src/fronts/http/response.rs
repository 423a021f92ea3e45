//! The contract's JSON envelope, for every answer the HTTP front gives.

use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde_json::{json, Map, Value};

use crate::delivery::{Delivered, Receipt};
use crate::error::Error;
use crate::highlevel::Outcome;
use crate::records::{Record, Status};
use crate::request::FinalizeRequest;

/// The header that marks an answer given again from a finalized record.
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// `200 {"ok":true,"requestId":…}` for `GET …/healthz`.
pub fn health(request_id: &str) -> Response<Body> {
    respond(StatusCode::OK, json!({"ok": true, "requestId": request_id}))
}

/// What an install route answers: a 302, or a small HTML page (never cached).
pub fn install(answer: &crate::install::Answer) -> Response<Body> {
    use crate::install::Answer;
    let (status, location, page) = match answer {
        Answer::Redirect(url) => (StatusCode::FOUND, Some(url.as_str()), String::new()),
        Answer::Page(status, page) => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            None,
            page.clone(),
        ),
    };
    let mut builder = Response::builder()
        .status(status)
        .header(http::header::CACHE_CONTROL, "no-store");
    builder = match location {
        Some(url) => builder.header(http::header::LOCATION, url),
        None => builder.header(http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
    };
    builder
        .body(Body::Text(page))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

/// `200 {"ok":true,"duplicate":…}` for an app webhook acted on (or acted on before).
pub fn app_event(duplicate: bool, request_id: &str) -> Response<Body> {
    respond(
        StatusCode::OK,
        json!({"ok": true, "duplicate": duplicate, "requestId": request_id}),
    )
}

/// `200 {"ok":true,"finalization":{…}}` for `GET …/finalizations/{id}`.
pub fn finalization(record: &Record, request_id: &str) -> Response<Body> {
    respond(
        StatusCode::OK,
        json!({"ok": true, "finalization": record.to_json(), "requestId": request_id}),
    )
}

/// The answer to a finalize request that reached delivery: the outcome, the stored answer
/// again, 202 for a queued one, or why its record refused it — with its `finalizationId`.
pub(crate) fn receipt(
    request: &FinalizeRequest,
    receipt: &Receipt,
    request_id: &str,
) -> Response<Body> {
    let id = receipt.finalization_id.as_ref().map(|id| id.as_str());
    match &receipt.result {
        Delivered::Ran(ran) => outcome(request, ran, id, request_id),
        Delivered::Replayed(record) => replayed(record, request_id),
        Delivered::Accepted => queued(request, Status::Queued, id, request_id),
        Delivered::Queued(status) => queued(request, *status, id, request_id),
        Delivered::Refused(refusal) => error(refusal, 0, id, request_id),
    }
}

/// The answer to a finalize request that ran.
pub fn outcome(
    request: &FinalizeRequest,
    outcome: &Outcome,
    finalization_id: Option<&str>,
    request_id: &str,
) -> Response<Body> {
    match outcome {
        Outcome::Finalized {
            reply, attempts, ..
        } => {
            let body = finalized_body(request, *attempts, Some(reply.to_json()), finalization_id);
            respond(StatusCode::OK, with_request_id(body, request_id))
        }
        Outcome::Confirmed { attempts } => {
            let mut body = finalized_body(request, *attempts, None, finalization_id);
            body.insert("confirmed".into(), json!(true));
            respond(StatusCode::OK, with_request_id(body, request_id))
        }
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
        Outcome::Failed {
            error: e, attempts, ..
        } => error(e, *attempts, finalization_id, request_id),
    }
}

/// The 200 a finalize answered with, as stored and replayed: HighLevel's `upstream` answer,
/// when one came (a finalize confirmed by the CSV's status has none).
fn finalized_body(
    request: &FinalizeRequest,
    attempts: u32,
    upstream: Option<Value>,
    finalization_id: Option<&str>,
) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("ok".into(), json!(true));
    body.insert("locationId".into(), json!(request.location_id.as_str()));
    body.insert("csvId".into(), json!(request.csv_id.as_str()));
    body.insert("attempts".into(), json!(attempts));
    if let Some(upstream) = upstream {
        body.insert("upstream".into(), upstream);
    }
    if let Some(id) = finalization_id {
        body.insert("finalizationId".into(), json!(id));
    }
    body
}

/// The stored success again: the same status and body, `"replayed": true`, the
/// `idempotent-replayed` header and this request's own `requestId`.
fn replayed(record: &Record, request_id: &str) -> Response<Body> {
    let mut body = finalized_body(
        &record.request(),
        record.answer_attempts.unwrap_or(record.attempts),
        record.upstream.clone(),
        Some(record.id.as_str()),
    );
    if record.confirmed_by.is_some() {
        body.insert("confirmed".into(), json!(true));
    }
    body.insert("replayed".into(), json!(true));
    let mut response = respond(StatusCode::OK, with_request_id(body, request_id));
    response
        .headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

/// `202 {"ok":true,"status":…}`: accepted in queue mode, or still being handled.
fn queued(
    request: &FinalizeRequest,
    status: Status,
    finalization_id: Option<&str>,
    request_id: &str,
) -> Response<Body> {
    respond(
        StatusCode::ACCEPTED,
        json!({
            "ok": true,
            "status": status.as_str(),
            "locationId": request.location_id.as_str(),
            "csvId": request.csv_id.as_str(),
            "finalizationId": finalization_id,
            "requestId": request_id,
        }),
    )
}

/// `{"ok":false,"error":{…}}` with the status, code and headers the error calls for.
/// `attempts` is included once a request has been sent to HighLevel.
pub fn error(
    error: &Error,
    attempts: u32,
    finalization_id: Option<&str>,
    request_id: &str,
) -> Response<Body> {
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
    if let Some(id) = finalization_id {
        body.insert("finalizationId".into(), json!(id));
    }
    let mut response = respond(error.status(), with_request_id(body, request_id));
    let headers = response.headers_mut();
    if let Some(delay) = error.retry_after() {
        headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_header(delay)));
    }
    if matches!(error, Error::MethodNotAllowed) {
        headers.insert(ALLOW, HeaderValue::from_static("POST, GET"));
    }
    response
}

fn with_request_id(mut body: Map<String, Value>, request_id: &str) -> Value {
    body.insert("requestId".into(), json!(request_id));
    Value::Object(body)
}

fn respond(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whole seconds for a `Retry-After` header we send: rounded up, at least 1.
fn retry_after_header(delay: std::time::Duration) -> u64 {
    let whole = delay
        .as_secs()
        .saturating_add(u64::from(delay.subsec_nanos() > 0));
    whole.max(1)
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
            None,
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
        let response = error(&overloaded, 3, None, "req-2");
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
            location_id: crate::request::ids::LocationId::parse("L1").unwrap(),
            csv_id: crate::request::ids::CsvId::parse("C1").unwrap(),
            user_id: None,
        }
    }

    #[test]
    fn renders_a_finalized_import_with_highlevels_answer() {
        let outcome = Outcome::Finalized {
            reply: UpstreamReply::new(200, json!({"success": true}), false),
            attempts: 2,
            call: Default::default(),
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
            upstream_wait: None,
            call: Default::default(),
        });
        assert_eq!(failed.status(), 504);
        assert_eq!(body_of(&failed)["attempts"], 1);
    }

    fn outcome_response(result: &Outcome) -> Response<Body> {
        outcome(&request(), result, None, "r")
    }

    fn record() -> Record {
        Record {
            id: crate::records::FinalizationId::parse("fz_0123456789abcdef0123456789abcdef")
                .unwrap(),
            location_id: crate::request::ids::LocationId::parse("L1").unwrap(),
            csv_id: crate::request::ids::CsvId::parse("C1").unwrap(),
            user_id: None,
            status: Status::Finalized,
            attempts: 1,
            created_at_ms: 0,
            updated_at_ms: 0,
            owner: None,
            lock_until_ms: None,
            expires_at: 1,
            upstream: Some(json!({"status": 200, "body": {"success": true}})),
            error: None,
            csv_status_before: None,
            confirmed_by: None,
            answer_attempts: None,
            import: None,
            callback_url: None,
            callback: None,
            version: 2,
        }
    }

    #[test]
    fn a_replay_gives_the_stored_answer_again_marked_as_such() {
        let first = Receipt {
            finalization_id: Some(record().id),
            result: Delivered::Ran(Outcome::Finalized {
                reply: UpstreamReply::new(200, json!({"success": true}), false),
                attempts: 1,
                call: Default::default(),
            }),
            unrecorded: false,
        };
        let first = body_of(&receipt(&request(), &first, "r1"));
        let again = receipt(
            &request(),
            &Receipt {
                finalization_id: Some(record().id),
                result: Delivered::Replayed(Box::new(record())),
                unrecorded: false,
            },
            "r2",
        );
        assert_eq!(again.status(), 200);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let mut again = body_of(&again);
        assert_eq!(
            (again["replayed"].take(), again["requestId"].take()),
            (json!(true), json!("r2"))
        );
        let mut first = first;
        first["requestId"].take();
        let (Value::Object(mut a), Value::Object(b)) = (again, first) else {
            unreachable!()
        };
        a.remove("replayed");
        assert_eq!(
            Value::Object(a),
            Value::Object(b),
            "the same body otherwise"
        );
    }

    #[test]
    fn a_queued_request_is_accepted_with_its_finalization_id() {
        let queued = Receipt {
            finalization_id: Some(record().id),
            result: Delivered::Queued(Status::Queued),
            unrecorded: false,
        };
        let response = receipt(&request(), &queued, "r");
        assert_eq!(response.status(), 202);
        assert_eq!(
            body_of(&response),
            json!({"ok": true, "status": "queued", "locationId": "L1", "csvId": "C1",
                   "finalizationId": "fz_0123456789abcdef0123456789abcdef", "requestId": "r"})
        );
        let refused = Receipt {
            finalization_id: Some(record().id),
            result: Delivered::Refused(Error::RequestInProgress),
            unrecorded: false,
        };
        let response = receipt(&request(), &refused, "r");
        assert_eq!(
            (
                response.status().as_u16(),
                &response.headers()["retry-after"]
            ),
            (409, &HeaderValue::from_static("1"))
        );
        assert_eq!(
            body_of(&response)["finalizationId"],
            "fz_0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn renders_the_allow_header_on_405() {
        let response = error(&Error::MethodNotAllowed, 0, None, "r");
        assert_eq!(response.headers()["allow"], "POST, GET");
    }

    #[test]
    fn rounds_our_retry_after_up_to_whole_seconds_however_long() {
        use std::time::Duration;
        assert_eq!(retry_after_header(Duration::ZERO), 1);
        assert_eq!(retry_after_header(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_header(Duration::from_secs(30)), 30);
        assert_eq!(
            retry_after_header(Duration::from_secs(u64::MAX)),
            u64::MAX,
            "an absurd wait stays merely long"
        );
        assert_eq!(retry_after_header(Duration::MAX), u64::MAX);
    }
}
