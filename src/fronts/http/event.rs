//! Lambda HTTP events in and out: an API Gateway REST API (payload 1.0), HTTP API or Function
//! URL (payload 2.0) or ALB event becomes an `http::Request`, and the front's `http::Response`
//! becomes the answer that event's origin expects.
//!
//! The event is read from raw JSON, leniently and without a panic, rather than through
//! `lambda_http`'s conversion: that conversion panics on a query string with a space or a
//! quote, a 70 KB path, a `Host` or `X-Forwarded-Proto` that is not valid, or a body marked
//! base64 that is not, and its typed deserialization refuses a control character in a header or
//! a method that is not a token — each an instance lost (with `panic = "abort"`) or an answer
//! outside the contract. Here every part is checked with the `http` crate's fallible parsers;
//! what does not pass becomes a request marked [`MalformedEvent`], which the front answers 400
//! (405 for the method) in the origin's own format. Nothing in the event is used to build an
//! absolute URL.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use lambda_http::aws_lambda_events::alb::AlbTargetGroupResponse;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use lambda_http::http::header::{HeaderName, HeaderValue, COOKIE, HOST, SET_COOKIE};
use lambda_http::http::uri::{Authority, PathAndQuery, Scheme};
use lambda_http::http::{HeaderMap, Method, Uri};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::{Map, Value};

/// Marks a request whose event body was flagged base64 but did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidBase64Body;

/// Marks a request whose event could not be read as an HTTP request: what was wrong, and
/// whether it was the method (answered 405 rather than 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MalformedEvent {
    pub(crate) problem: String,
    pub(crate) bad_method: bool,
}

/// The event's path parameters (API Gateway route variables such as `{locationId}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathParams(pub Vec<(String, String)>);

/// Who called, as the front end saw it: for the log, never for a decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The client's address, when the front end reports one.
    pub source_ip: Option<String>,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<String>,
}

/// Which kind of event a request came in, which decides the shape of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// API Gateway REST API (payload 1.0).
    RestApi,
    /// API Gateway HTTP API or a Function URL (payload 2.0); also the answer's shape for an
    /// event of no known kind.
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

/// The request an event carries, and its origin. Never fails and never panics: an event that
/// is not a well-formed HTTP request yields a request marked [`MalformedEvent`].
pub fn into_request(event: Value) -> (Request, Origin) {
    let origin = origin_of(&event);
    let method = match method_value(&event, origin) {
        Value::Null => Ok(None),
        Value::String(m) => Method::from_bytes(m.as_bytes()).map(Some).map_err(|_| ()),
        _ => Err(()),
    };
    let request = match read(event, origin) {
        Ok(request) => request,
        Err(problem) => malformed(method, problem),
    };
    (request, origin)
}

/// Tells the event kinds apart by the members only each has.
fn origin_of(event: &Value) -> Origin {
    let context = &event["requestContext"];
    if context.get("elb").is_some() {
        Origin::Alb
    } else if event.get("httpMethod").is_some() {
        Origin::RestApi
    } else {
        Origin::HttpApi
    }
}

/// The method member as sent (`Null` when there is none).
fn method_value(event: &Value, origin: Origin) -> &Value {
    match origin {
        Origin::HttpApi => &event["requestContext"]["http"]["method"],
        Origin::RestApi | Origin::Alb => &event["httpMethod"],
    }
}

/// A stand-in request for an event that could not be read: its method when that is a token
/// (so the front can still answer 405 first), and the mark. `Err` is a method that is there
/// but is not a token; `Ok(None)`, an event with no method at all (not an HTTP event).
fn malformed(method: Result<Option<Method>, ()>, problem: String) -> Request {
    let mut request = Request::new(Body::Empty);
    let bad_method = method.is_err();
    if let Ok(Some(method)) = method {
        *request.method_mut() = method;
    }
    request.extensions_mut().insert(MalformedEvent {
        problem,
        bad_method,
    });
    request
}

fn read(mut event: Value, origin: Origin) -> Result<Request, String> {
    let method = method_value(&event, origin)
        .as_str()
        .ok_or("the event names no HTTP method")?;
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| "the event's HTTP method is not a valid token".to_owned())?;
    let uri = uri(&event, origin)?;
    let headers = headers(&event, origin)?;
    check_forwarding_headers(&headers)?;
    let path_params = match origin {
        Origin::RestApi | Origin::HttpApi => {
            string_map(&event["pathParameters"], "pathParameters")?
        }
        Origin::Alb => Vec::new(),
    };
    let caller = caller(&event, origin, &headers);
    let (body, invalid_base64) = body(&mut event)?;

    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    let extensions = request.extensions_mut();
    extensions.insert(PathParams(path_params));
    extensions.insert(caller);
    if invalid_base64 {
        extensions.insert(InvalidBase64Body);
    }
    Ok(request)
}

/// The path and query as a relative URI: `rawPath` and `rawQueryString` for payload 2.0, the
/// path and the (multi-value) query parameters for REST APIs and ALBs.
fn uri(event: &Value, origin: Origin) -> Result<Uri, String> {
    let (path, query) = match origin {
        Origin::HttpApi => {
            let path = optional_str(&event["rawPath"], "rawPath")?.or(optional_str(
                &event["requestContext"]["http"]["path"],
                "path",
            )?);
            let query = optional_str(&event["rawQueryString"], "rawQueryString")?
                .filter(|q| !q.is_empty())
                .map(str::to_owned);
            (path, query)
        }
        Origin::RestApi => (
            optional_str(&event["path"], "path")?,
            query_from_parameters(event, false)?,
        ),
        Origin::Alb => (
            optional_str(&event["path"], "path")?,
            query_from_parameters(event, true)?,
        ),
    };
    let path = path.filter(|p| !p.is_empty()).unwrap_or("/");
    if !path.starts_with('/') {
        return Err("the event's path does not start with /".into());
    }
    let path_and_query = match &query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    if let Some(bad) = path_and_query.chars().find(|c| !allowed_in_uri(*c)) {
        return Err(format!(
            "the event's path or query string holds {}, which a URI cannot",
            describe_char(bad)
        ));
    }
    let path_and_query = PathAndQuery::try_from(path_and_query)
        .map_err(|e| format!("the event's path or query string is not a valid URI ({e})"))?;
    Uri::builder()
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| format!("the event's path or query string is not a valid URI ({e})"))
}

/// Characters a URI may hold as they are: printable ASCII but for the space, `"`, `<` and `>`
/// (which a client must percent-encode). Deliberately lenient beyond that (`[`, `|`, …), as
/// browsers send them.
fn allowed_in_uri(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, '"' | '<' | '>')
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        c if c.is_ascii_control() => "a control character".into(),
        c if !c.is_ascii() => "a character outside ASCII".into(),
        c => format!("'{c}'"),
    }
}

/// Rebuilds a query string from `multiValueQueryStringParameters` (preferred, a superset) or
/// `queryStringParameters`. API Gateway hands the values decoded; an ALB hands them as they
/// came, still percent-encoded (`percent_encoded`).
fn query_from_parameters(event: &Value, percent_encoded: bool) -> Result<Option<String>, String> {
    let multi = string_list_map(
        &event["multiValueQueryStringParameters"],
        "multiValueQueryStringParameters",
    )?;
    let pairs = if multi.is_empty() {
        string_map(&event["queryStringParameters"], "queryStringParameters")?
    } else {
        multi
    };
    if pairs.is_empty() {
        return Ok(None);
    }
    if percent_encoded {
        // As the client sent them: the same characters a raw query string may not hold.
        let raw = pairs.iter().flat_map(|(k, v)| k.chars().chain(v.chars()));
        if let Some(bad) = raw.into_iter().find(|c| !allowed_in_uri(*c)) {
            return Err(format!(
                "the event's query string holds {}, which a URI cannot",
                describe_char(bad)
            ));
        }
    }
    let decode = |text: &str| -> String {
        if percent_encoded {
            url::form_urlencoded::parse(format!("x={text}").as_bytes())
                .next()
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default()
        } else {
            text.to_owned()
        }
    };
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in &pairs {
        query.append_pair(&decode(key), &decode(value));
    }
    Ok(Some(query.finish()))
}

/// The headers: `headers` (payload 2.0 joins repeats with commas; `cookies` come apart), or
/// `multiValueHeaders` and `headers` merged for REST APIs and ALBs. A name or value that is not
/// valid in HTTP (a control character, say) makes the event malformed.
fn headers(event: &Value, origin: Origin) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    let mut add = |name: &str, value: &str, append: bool| -> Result<(), String> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| "the event has a header name that is not valid".to_owned())?;
        let value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| format!("the event's {name} header holds a character not allowed"))?;
        if append {
            headers.append(name, value);
        } else {
            headers.insert(name, value);
        }
        Ok(())
    };
    if origin != Origin::HttpApi {
        for (name, values) in string_list_map(&event["multiValueHeaders"], "multiValueHeaders")? {
            add(&name, &values, true)?;
        }
    }
    for (name, value) in string_map(&event["headers"], "headers")? {
        add(&name, &value, false)?;
    }
    if origin == Origin::HttpApi {
        let cookies = match &event["cookies"] {
            Value::Null => Vec::new(),
            Value::Array(items) => items
                .iter()
                .map(|c| c.as_str().ok_or("the event's cookies must be strings"))
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err("the event's cookies must be a list".into()),
        };
        if !cookies.is_empty() {
            add(COOKIE.as_str(), &cookies.join("; "), false)?;
        }
    }
    Ok(headers)
}

/// `Host` must be a valid authority and `X-Forwarded-Proto` a list of schemes: front ends set
/// both, so anything else is a malformed event.
fn check_forwarding_headers(headers: &HeaderMap) -> Result<(), String> {
    for host in headers.get_all(HOST) {
        let valid = host
            .to_str()
            .ok()
            .is_some_and(|h| Authority::try_from(h.trim()).is_ok());
        if !valid {
            return Err("the event's Host header is not a valid host".into());
        }
    }
    for proto in headers.get_all("x-forwarded-proto") {
        let valid = proto.to_str().ok().is_some_and(|value| {
            value.split(',').all(|scheme| {
                let scheme = scheme.trim();
                !scheme.is_empty()
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                    && Scheme::try_from(scheme).is_ok()
            })
        });
        if !valid {
            return Err("the event's X-Forwarded-Proto header is not a valid scheme".into());
        }
    }
    Ok(())
}

/// The caller's address (from the request context, or an ALB's `X-Forwarded-For`) and agent.
fn caller(event: &Value, origin: Origin, headers: &HeaderMap) -> Caller {
    let context = &event["requestContext"];
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let source_ip = match origin {
        Origin::HttpApi => text(&context["http"]["sourceIp"]),
        Origin::RestApi => text(&context["identity"]["sourceIp"]),
        Origin::Alb => headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_owned()),
    };
    let user_agent = headers
        .get(lambda_http::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Caller {
        source_ip,
        user_agent,
    }
}

/// The body, decoded when the event says it is base64; an undecodable one is dropped and
/// reported, for the front to answer 400 after authentication.
fn body(event: &mut Value) -> Result<(Body, bool), String> {
    let base64 = match &event["isBase64Encoded"] {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        _ => return Err("the event's isBase64Encoded must be true or false".into()),
    };
    let text = match event.get_mut("body").map(Value::take) {
        None | Some(Value::Null) => return Ok((Body::Empty, false)),
        Some(Value::String(text)) => text,
        Some(_) => return Err("the event's body must be a string".into()),
    };
    if !base64 {
        return Ok((Body::Text(text), false));
    }
    match BASE64.decode(text.as_bytes()) {
        Ok(bytes) => Ok((Body::Binary(bytes), false)),
        Err(_) => Ok((Body::Empty, true)),
    }
}

fn optional_str<'a>(value: &'a Value, name: &str) -> Result<Option<&'a str>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text)),
        _ => Err(format!("the event's {name} must be a string")),
    }
}

/// An object of strings (or null) as pairs.
fn string_map(value: &Value, name: &str) -> Result<Vec<(String, String)>, String> {
    object(value, name)?
        .iter()
        .map(|(key, value)| match value {
            Value::String(text) => Ok((key.clone(), text.clone())),
            _ => Err(format!("the event's {name} must hold strings")),
        })
        .collect()
}

/// An object of lists of strings (or null) as pairs, one per value.
fn string_list_map(value: &Value, name: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (key, values) in object(value, name)? {
        let Value::Array(values) = values else {
            return Err(format!("the event's {name} must hold lists of strings"));
        };
        for value in values {
            let text = value
                .as_str()
                .ok_or_else(|| format!("the event's {name} must hold lists of strings"))?;
            pairs.push((key.clone(), text.to_owned()));
        }
    }
    Ok(pairs)
}

fn object<'a>(value: &'a Value, name: &str) -> Result<&'a Map<String, Value>, String> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match value {
        Value::Null => Ok(EMPTY.get_or_init(Map::new)),
        Value::Object(object) => Ok(object),
        _ => Err(format!("the event's {name} must be an object")),
    }
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
    use serde_json::json;

    fn v2(body: &str, base64: bool) -> Value {
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/finalize", "rawQueryString": "a=1",
            "headers": {"host": "example.com", "content-type": "application/json", "user-agent": "t/1"},
            "requestContext": {"http": {"method": "POST", "path": "/finalize", "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1", "userAgent": "t/1"}, "stage": "$default"},
            "pathParameters": {"locationId": "L1"},
            "body": body, "isBase64Encoded": base64
        })
    }

    fn malformation(request: &Request) -> Option<&MalformedEvent> {
        request.extensions().get::<MalformedEvent>()
    }

    #[test]
    fn reads_a_payload_2_event_with_its_parameters_and_caller() {
        let (request, origin) = into_request(v2("{}", false));
        assert_eq!(origin, Origin::HttpApi);
        assert_eq!(malformation(&request), None);
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri().path(), "/finalize");
        assert_eq!(request.uri().query(), Some("a=1"));
        assert_eq!(request.headers()["content-type"], "application/json");
        assert_eq!(
            request.extensions().get::<PathParams>(),
            Some(&PathParams(vec![("locationId".into(), "L1".into())]))
        );
        let caller = request.extensions().get::<Caller>().unwrap();
        assert_eq!(caller.source_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(caller.user_agent.as_deref(), Some("t/1"));
        assert_eq!(request.body().as_ref(), b"{}");
    }

    #[test]
    fn rebuilds_the_query_string_of_rest_and_alb_events() {
        let rest = json!({"httpMethod": "POST", "path": "/finalize", "requestContext": {"identity": {"sourceIp": "192.0.2.2"}},
            "queryStringParameters": {"csvId": "ignored"},
            "multiValueQueryStringParameters": {"csvId": ["C 1"], "locationId": ["L1"]}});
        let (request, origin) = into_request(rest);
        assert_eq!(origin, Origin::RestApi);
        assert_eq!(request.uri().query(), Some("csvId=C+1&locationId=L1"));
        let alb = json!({"httpMethod": "POST", "path": "/finalize", "requestContext": {"elb": {}},
            "queryStringParameters": {"csvId": "C%201"}, "headers": {"x-forwarded-for": "198.51.100.9, 10.0.0.1"}});
        let (request, origin) = into_request(alb);
        assert_eq!(origin, Origin::Alb);
        assert_eq!(request.uri().query(), Some("csvId=C+1"));
        assert_eq!(
            request
                .extensions()
                .get::<Caller>()
                .unwrap()
                .source_ip
                .as_deref(),
            Some("198.51.100.9")
        );
    }

    #[test]
    fn marks_a_body_that_claims_base64_but_is_not() {
        let (request, _) = into_request(v2("not base64!", true));
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
    fn marks_the_shapes_that_would_crash_a_conversion_as_malformed() {
        let mut cases: Vec<(&str, Value)> = Vec::new();
        for query in ["a=b c", "a=\"", "a=<", "a=>", "é=1"] {
            let mut event = v2("{}", false);
            event["rawQueryString"] = json!(query);
            cases.push(("query", event));
        }
        let mut event = v2("{}", false);
        event["rawPath"] = json!(format!("/{}", "a".repeat(70 * 1024)));
        cases.push(("long path", event));
        for (name, value) in [
            ("host", "exa mple.com"),
            ("host", "a/b"),
            ("x-forwarded-proto", "<script>"),
            ("x-api-key", "k\u{1}ey"),
            ("x-api-key", "line\nbreak"),
        ] {
            let mut event = v2("{}", false);
            event["headers"][name] = json!(value);
            cases.push((name, event));
        }
        let mut event = v2("{}", false);
        event["headers"] = json!({"bad name": "x"});
        cases.push(("header name", event));
        let mut event = v2("{}", false);
        event["body"] = json!(7);
        cases.push(("body", event));
        for (what, event) in cases {
            let (request, _) = into_request(event);
            let malformed = malformation(&request).unwrap_or_else(|| panic!("{what}"));
            assert!(!malformed.bad_method, "{what}");
            assert_eq!(request.method(), Method::POST, "{what}: the method is kept");
        }
    }

    #[test]
    fn keeps_no_method_that_is_not_a_token() {
        for method in [json!("GE T"), json!("PO\"ST"), json!(7), json!("")] {
            let mut event = v2("{}", false);
            event["requestContext"]["http"]["method"] = method.clone();
            let (request, _) = into_request(event);
            assert!(malformation(&request).unwrap().bad_method, "{method}");
        }
    }

    #[test]
    fn answers_an_event_of_no_known_kind_in_the_payload_2_shape() {
        for event in [json!({}), json!([1, 2]), json!("text"), json!(null)] {
            let (request, origin) = into_request(event);
            assert_eq!(origin, Origin::HttpApi);
            assert!(
                !malformation(&request).unwrap().bad_method,
                "not an HTTP event: 400"
            );
        }
    }

    #[test]
    fn answers_each_origin_in_its_own_format() {
        let response = || {
            let mut response = Response::new(Body::from("{\"ok\":true}"));
            *response.status_mut() = lambda_http::http::StatusCode::CREATED;
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
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
