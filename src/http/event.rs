//! Lambda HTTP events in and out: an API Gateway (REST or HTTP API), Function URL or ALB event
//! becomes an `http::Request`, and the front's `http::Response` becomes the answer that event's
//! origin expects.
//!
//! One guard sits in the conversion: an event whose body claims to be base64 but is not would
//! make `lambda_http`'s conversion panic, so such a body is dropped and the request is marked
//! with the [`InvalidBase64Body`] extension, which the front answers with a 400. An extension
//! cannot be sent by a caller, as a header could.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use lambda_http::aws_lambda_events::alb::AlbTargetGroupResponse;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use lambda_http::http::header::SET_COOKIE;
use lambda_http::http::HeaderMap;
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request, Response};
use serde::Serialize;

/// Marks a request whose event body was flagged base64 but did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidBase64Body;

/// Which kind of event a request came in, which decides the shape of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// API Gateway REST API (payload 1.0).
    RestApi,
    /// API Gateway HTTP API or a Function URL (payload 2.0).
    HttpApi,
    /// An Application Load Balancer target group.
    Alb,
}

/// The answer to an event, in its origin's format.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum EventResponse {
    /// For [`Origin::RestApi`].
    RestApi(ApiGatewayProxyResponse),
    /// For [`Origin::HttpApi`].
    HttpApi(ApiGatewayV2httpResponse),
    /// For [`Origin::Alb`].
    Alb(AlbTargetGroupResponse),
}

/// The request an event carries, and its origin.
pub fn into_request(mut event: LambdaRequest) -> (Request, Origin) {
    let origin = match &event {
        LambdaRequest::ApiGatewayV1(_) => Origin::RestApi,
        LambdaRequest::Alb(_) => Origin::Alb,
        _ => Origin::HttpApi,
    };
    let invalid_base64 = drop_invalid_base64(&mut event);
    let mut request = Request::from(event);
    if invalid_base64 {
        request.extensions_mut().insert(InvalidBase64Body);
    }
    (request, origin)
}

/// Clears a body flagged as base64 that does not decode; true when it did so.
fn drop_invalid_base64(event: &mut LambdaRequest) -> bool {
    let (encoded, body) = match event {
        LambdaRequest::ApiGatewayV1(r) => (&mut r.is_base64_encoded, &mut r.body),
        LambdaRequest::ApiGatewayV2(r) => (&mut r.is_base64_encoded, &mut r.body),
        LambdaRequest::Alb(r) => (&mut r.is_base64_encoded, &mut r.body),
        _ => return false,
    };
    let invalid = *encoded && body.as_deref().is_some_and(|b| BASE64.decode(b).is_err());
    if invalid {
        *encoded = false;
        *body = None;
    }
    invalid
}

/// The front's response in the format `origin` expects.
pub(crate) fn into_event_response(origin: Origin, response: Response<Body>) -> EventResponse {
    let (parts, body) = response.into_parts();
    let (is_base64_encoded, body) = match body {
        Body::Empty => (false, None),
        text @ Body::Text(_) => (false, Some(text)),
        binary @ Body::Binary(_) => (true, Some(binary)),
        _ => (false, None),
    };
    let status_code = i64::from(parts.status.as_u16());
    let mut headers = parts.headers;
    match origin {
        Origin::RestApi => {
            let mut answer = ApiGatewayProxyResponse::default();
            answer.status_code = status_code;
            answer.body = body;
            answer.is_base64_encoded = is_base64_encoded;
            // API Gateway merges `headers` into `multiValueHeaders`: send them once.
            answer.multi_value_headers = headers;
            EventResponse::RestApi(answer)
        }
        Origin::HttpApi => {
            let mut answer = ApiGatewayV2httpResponse::default();
            // Payload 2.0 wants cookies apart from the headers.
            answer.cookies = headers
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_owned)
                .collect();
            headers.remove(SET_COOKIE);
            answer.status_code = status_code;
            answer.body = body;
            answer.is_base64_encoded = is_base64_encoded;
            answer.headers = headers;
            answer.multi_value_headers = HeaderMap::new();
            EventResponse::HttpApi(answer)
        }
        Origin::Alb => {
            let mut answer = AlbTargetGroupResponse::default();
            answer.status_code = status_code;
            answer.status_description = Some(format!(
                "{} {}",
                status_code,
                parts.status.canonical_reason().unwrap_or_default()
            ));
            answer.body = body;
            answer.is_base64_encoded = is_base64_encoded;
            // A target group may be set to read either member: fill both.
            answer.headers = headers.clone();
            answer.multi_value_headers = headers;
            EventResponse::Alb(answer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn event(value: Value) -> LambdaRequest {
        serde_json::from_value(value).unwrap()
    }

    fn v2(body: &str, base64: bool) -> LambdaRequest {
        event(json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/finalize", "rawQueryString": "",
            "headers": {"host": "example.com", "content-type": "application/json"},
            "requestContext": {"http": {"method": "POST", "path": "/finalize", "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1", "userAgent": "t"}, "accountId": "1", "apiId": "a",
                "domainName": "example.com", "domainPrefix": "example", "requestId": "r", "routeKey": "$default",
                "stage": "$default", "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 0},
            "body": body, "isBase64Encoded": base64
        }))
    }

    #[test]
    fn marks_a_body_that_claims_base64_but_is_not() {
        let (request, origin) = into_request(v2("not base64!", true));
        assert_eq!(origin, Origin::HttpApi);
        assert_eq!(
            request.extensions().get::<InvalidBase64Body>(),
            Some(&InvalidBase64Body)
        );
        assert!(request.body().is_empty());
        let (request, _) = into_request(v2("e30=", true));
        assert_eq!(request.extensions().get::<InvalidBase64Body>(), None);
        assert_eq!(request.body().as_ref(), b"{}");
    }

    #[test]
    fn answers_each_origin_in_its_own_format() {
        let response = || {
            let mut response = Response::new(Body::from("{\"ok\":true}"));
            *response.status_mut() = lambda_http::http::StatusCode::CREATED;
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            response
        };
        let rest = serde_json::to_value(into_event_response(Origin::RestApi, response())).unwrap();
        assert_eq!(rest["statusCode"], 201);
        assert_eq!(
            rest["multiValueHeaders"]["content-type"],
            json!(["application/json"])
        );
        assert_eq!(rest["headers"], json!({}));
        let http = serde_json::to_value(into_event_response(Origin::HttpApi, response())).unwrap();
        assert_eq!(http["headers"]["content-type"], "application/json");
        assert_eq!(http["body"], "{\"ok\":true}");
        assert_eq!(http["isBase64Encoded"], false);
        let alb = serde_json::to_value(into_event_response(Origin::Alb, response())).unwrap();
        assert_eq!(alb["statusDescription"], "201 Created");
        assert_eq!(alb["headers"]["content-type"], "application/json");
    }
}
