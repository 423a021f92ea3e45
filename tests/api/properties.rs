//! Property tests: whatever arrives — bodies, headers, paths, query strings, content types —
//! the parser and the handler never panic, always answer from the contract's table, and never
//! send HighLevel an id outside `^[A-Za-z0-9_-]{1,64}$`; signature checks accept exactly the
//! valid signatures.

use std::sync::OnceLock;

use base64::Engine;
use ghl_csv_finalize::auth::InboundKeys;
use ghl_csv_finalize::fronts::http::inbound::{self, BodyKind, Sources};
use ghl_csv_finalize::local::standin::{Behaviour, StandIn};
use ghl_csv_finalize::{App, Config};
use http::{HeaderMap, HeaderValue};
use lambda_http::Body;
use proptest::prelude::*;
use serde_json::{json, Value};

fn is_safe_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Strings that look like ids, and strings that are anything but.
fn id_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{1,64}",
        "[A-Za-z0-9_-]{65,80}",
        ".*",
        Just(String::new()),
        Just("../x".to_owned()),
        Just("a%2Fb".to_owned()),
        Just("a/b".to_owned()),
        "[A-Za-z0-9]{3}[ ./%?#é\u{0}\n][A-Za-z0-9]{3}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        id_like().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::hash_map(field_name(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("locationId".to_owned()),
        Just("location_id".to_owned()),
        Just("location".to_owned()),
        Just("id".to_owned()),
        Just("csvId".to_owned()),
        Just("csv_id".to_owned()),
        Just("userId".to_owned()),
        Just("user_id".to_owned()),
        Just("customData".to_owned()),
        "[a-zA-Z_.\\[\\]]{1,12}",
    ]
}

/// A body: a JSON object built from the field names, its JSON-encoded `customData` twin, or bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => ("[A-Za-z0-9_-]{1,64}", "[A-Za-z0-9_-]{1,64}", proptest::option::of(id_like()))
            .prop_map(|(l, c, u)| json!({"location": {"id": l}, "customData": {"csvId": c}, "userId": u}).to_string().into_bytes()),
        1 => prop::collection::hash_map(field_name(), json_value(), 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect()).to_string().into_bytes()),
        1 => prop::collection::hash_map(field_name(), json_value(), 0..4)
            .prop_map(|m| json!({"customData": Value::Object(m.into_iter().collect()).to_string()}).to_string().into_bytes()),
        1 => prop::collection::vec((field_name(), id_like()), 0..6).prop_map(|pairs| {
            url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
}

fn kind() -> impl Strategy<Value = BodyKind> {
    prop_oneof![
        Just(BodyKind::Empty),
        Just(BodyKind::Json),
        Just(BodyKind::Form)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_parser_never_panics_and_accepts_only_safe_ids(
        path_params in prop::collection::vec((prop_oneof![Just("locationId"), Just("csvId"), Just("proxy")], id_like()), 0..3),
        path in prop_oneof![".*", (id_like(), id_like()).prop_map(|(l, c)| format!("/locations/{l}/csv/{c}/finalize"))],
        query in proptest::option::of(prop_oneof![".*", (field_name(), id_like()).prop_map(|(k, v)| format!("{k}={v}"))]),
        body in body(),
        kind in kind(),
    ) {
        let params: Vec<(&str, &str)> = path_params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = if kind == BodyKind::Empty { Vec::new() } else { body };
        let sources = Sources { path_params: &params, path: &path, query: query.as_deref(), body: &body, kind };
        match inbound::parse(sources) {
            Ok(request) => {
                prop_assert!(is_safe_id(request.location_id.as_str()));
                prop_assert!(is_safe_id(request.csv_id.as_str()));
                prop_assert!(request.user_id.as_ref().is_none_or(|u| is_safe_id(u.as_str())));
            }
            Err(error) => prop_assert_eq!(error.status().as_u16(), 400),
        }
    }

    #[test]
    fn app_webhooks_callback_urls_and_times_never_panic_and_keep_only_safe_values(
        text in prop_oneof![".*", "[0-9:TZ.+-]{0,40}", "https?://[a-z0-9.:\\[\\]@/?=_-]{0,60}"],
        location in prop_oneof![id_like(), ".{0,10}"],
        stamp in prop_oneof![Just(json!(5)), ".*".prop_map(|t| json!(t))],
    ) {
        if let Some(ms) = ghl_csv_finalize::request::deadline::parse_rfc3339(&text) {
            prop_assert_eq!(ghl_csv_finalize::request::deadline::parse_rfc3339(&ghl_csv_finalize::request::deadline::rfc3339(ms)), Some(ms));
        }
        let body = json!({"type": text, "webhookId": "w", "timestamp": stamp, "locationId": location}).to_string();
        if let Ok(event) = ghl_csv_finalize::request::app_event::AppEvent::parse(body.as_bytes()) {
            prop_assert!(event.location_id.as_ref().is_none_or(|l| is_safe_id(l.as_str())));
        }
        use ghl_csv_finalize::request::callback::{CallbackUrl, Reach};
        let public = Reach { allow_private: false };
        if let Ok(url) = CallbackUrl::parse(&text, public) {
            prop_assert_eq!(url.as_url().scheme(), "https");
            let admitted = url.address().is_none_or(|a| public.admits_address(a));
            prop_assert!(admitted, "{}", url);
        }
    }

    #[test]
    fn content_type_checks_never_panic(content_type in proptest::option::of(prop::collection::vec(any::<u8>(), 0..60)), body in prop::collection::vec(any::<u8>(), 0..4)) {
        let header = content_type.and_then(|bytes| HeaderValue::from_bytes(&bytes).ok());
        let _ = inbound::body_kind(header.as_ref(), &body);
    }
}

const SECRET: &str = "whsec_cHJvcGVydHktdGVzdC1zZWNyZXQtYnl0ZXM=";

fn keys() -> InboundKeys {
    InboundKeys::parse(&json!({"apiKeys": ["the-one-key"], "webhookSecrets": [SECRET]}).to_string())
        .unwrap()
}

fn webhook_headers(id: &str, timestamp: i64, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", HeaderValue::from_str(id).unwrap());
    headers.insert(
        "webhook-timestamp",
        HeaderValue::from_str(&timestamp.to_string()).unwrap(),
    );
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(signature).unwrap(),
    );
    headers
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn accepts_exactly_the_valid_signatures(
        body in ".{0,300}",
        id in "msg_[A-Za-z0-9]{1,30}",
        skew in -299i64..299,
        flip in any::<prop::sample::Index>(),
        which in 0u8..4,
    ) {
        let now = 1_767_225_600i64;
        let timestamp = now + skew;
        let signature = standardwebhooks::Webhook::new(SECRET).unwrap().sign(&id, timestamp, body.as_bytes()).unwrap();
        let keys = keys();
        prop_assert!(keys.authenticate(&webhook_headers(&id, timestamp, &signature), body.as_bytes(), now).is_some());

        // Any change to what was signed, or to the signature, is refused.
        let (headers, signed_body): (HeaderMap, Vec<u8>) = match which {
            0 => {
                let mut bytes = body.clone().into_bytes();
                if bytes.is_empty() { bytes.push(b'x') } else { let i = flip.index(bytes.len()); bytes[i] ^= 0x01; }
                (webhook_headers(&id, timestamp, &signature), bytes)
            }
            1 => (webhook_headers(&format!("{id}x"), timestamp, &signature), body.clone().into_bytes()),
            2 => (webhook_headers(&id, timestamp + 1, &signature), body.clone().into_bytes()),
            _ => {
                let raw = signature.trim_start_matches("v1,");
                let mut tag = base64::engine::general_purpose::STANDARD.decode(raw).unwrap();
                let i = flip.index(tag.len());
                tag[i] ^= 0x80;
                let forged = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag));
                (webhook_headers(&id, timestamp, &forged), body.clone().into_bytes())
            }
        };
        prop_assert!(keys.authenticate(&headers, &signed_body, now).is_none());
    }

    #[test]
    fn authentication_never_panics_on_arbitrary_headers(
        pairs in prop::collection::vec((prop_oneof![Just("x-api-key"), Just("authorization"), Just("webhook-id"), Just("webhook-timestamp"), Just("webhook-signature")], prop::collection::vec(any::<u8>(), 0..120)), 0..6),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.append(name, value);
            }
        }
        let presented_key = headers.get("x-api-key").map(|v| v.as_bytes() == b"the-one-key").unwrap_or(false);
        let accepted = keys().authenticate(&headers, &body, 1_767_225_600).is_some();
        if presented_key { prop_assert!(accepted); }
    }
}

/// One runtime, one stand-in and one app for the whole-handler property.
struct World {
    runtime: tokio::runtime::Runtime,
    standin: StandIn,
    app: App,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (standin, app) = runtime.block_on(async {
            let standin = StandIn::start(([127, 0, 0, 1], 0).into(), Behaviour::default())
                .await
                .unwrap();
            let base = standin.base_url();
            let config = Config::local("pit-prop", &base).unwrap();
            (standin, App::build(config).await.unwrap())
        });
        World {
            runtime,
            standin,
            app,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_handler_always_answers_from_the_contract_and_never_sends_an_unsafe_id(
        method in prop_oneof![12 => Just("POST"), 2 => Just("GET"), 1 => Just("PUT"), 1 => Just("DELETE"), 1 => Just("PATCH"), 1 => Just("HEAD"), 1 => Just("OPTIONS")],
        path in prop_oneof![
            2 => Just("/finalize".to_owned()),
            1 => Just("/healthz".to_owned()),
            4 => (id_like(), id_like()).prop_map(|(l, c)| format!("/locations/{}/csv/{}/finalize",
                url::form_urlencoded::byte_serialize(l.as_bytes()).collect::<String>(),
                url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>())),
            1 => "/[a-z/]{0,20}",
        ],
        query in proptest::option::weighted(0.3, (field_name(), id_like()).prop_map(|(k, v)| url::form_urlencoded::Serializer::new(String::new()).append_pair(&k, &v).finish())),
        content_type in prop_oneof![4 => Just(Some("application/json")), 3 => Just(Some("application/x-www-form-urlencoded")), 1 => Just(Some("text/plain")), 1 => Just(None)],
        body in body(),
    ) {
        let world = world();
        let uri = match &query { Some(q) => format!("{path}?{q}"), None => path.clone() };
        let mut builder = http::Request::builder().method(method).uri(uri.as_str());
        if let Some(ct) = content_type { builder = builder.header("content-type", ct); }
        let Ok(request) = builder.body(if body.is_empty() { Body::Empty } else { Body::Binary(body) }) else { return Ok(()) };
        let response = world.runtime.block_on(world.app.respond(request));
        let status = response.status().as_u16();
        prop_assert!([200, 400, 405, 413, 415].contains(&status), "status {}", status);
        let json: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        prop_assert_eq!(json["ok"].as_bool(), Some(status == 200));
        for received in world.standin.received() {
            let segments: Vec<&str> = received.path.split('/').collect();
            prop_assert_eq!(segments.len(), 5, "{}", received.path);
            prop_assert!(is_safe_id(segments[2]) && is_safe_id(segments[4]), "{}", received.path);
        }
    }
}

/// Anything a front end could put in a string member: text, control characters, quotes,
/// non-ASCII, long runs.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[ -~]{0,40}",
        2 => ".{0,40}",
        1 => "[\u{0}-\u{1f}\"<> é#%?/]{0,12}",
        1 => "[a-z]{1,4}".prop_map(|s| s.repeat(20_000)),
        1 => Just(String::new()),
    ]
}

fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => hostile_text().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(json!(["x", 1])),
        1 => Just(json!({"a": "b"})),
    ]
}

fn method_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => Just(json!("POST")),
        2 => Just(json!("GET")),
        2 => prop_oneof![Just("PUT"), Just("DELETE"), Just("OPTIONS")].prop_map(Value::from),
        3 => hostile_value(),
    ]
}

/// An event of one of the four kinds, each member either sensible or hostile.
fn hostile_event() -> impl Strategy<Value = Value> {
    (
        0u8..4,
        method_value(),
        prop_oneof![3 => Just(json!("/finalize")), 1 => Just(json!("/healthz")), 2 => hostile_value()],
        prop_oneof![2 => Just(json!("")), 2 => hostile_value()],
        prop::collection::vec(
            (prop_oneof![Just("host".to_owned()), Just("x-forwarded-proto".to_owned()), Just("content-type".to_owned()), Just("x-api-key".to_owned()), hostile_text()], hostile_value()),
            0..4,
        ),
        prop_oneof![2 => Just(Value::Null), 2 => hostile_value()],
        prop_oneof![4 => Just(json!(false)), 1 => Just(json!(true)), 1 => hostile_value()],
    )
        .prop_map(|(kind, method, path, query, headers, body, base64)| {
            let headers: serde_json::Map<String, Value> = headers.into_iter().collect();
            match kind {
                0 | 1 => json!({
                    "version": "2.0", "rawPath": path, "rawQueryString": query, "headers": headers,
                    "requestContext": {"http": {"method": method, "sourceIp": "192.0.2.1"}},
                    "body": body, "isBase64Encoded": base64
                }),
                2 => json!({
                    "httpMethod": method, "path": path, "headers": headers,
                    "multiValueHeaders": {"x-multi": [query.clone()]},
                    "queryStringParameters": {"q": query}, "requestContext": {"identity": {}},
                    "body": body, "isBase64Encoded": base64
                }),
                _ => json!({
                    "httpMethod": method, "path": path, "headers": headers,
                    "queryStringParameters": {"q": query}, "requestContext": {"elb": {}},
                    "body": body, "isBase64Encoded": base64
                }),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn any_event_of_any_kind_is_answered_from_the_contract(event in hostile_event()) {
        let world = world();
        let (request, _) = ghl_csv_finalize::fronts::http::event::into_request(event);
        let response = world.runtime.block_on(world.app.respond(request));
        let status = response.status().as_u16();
        prop_assert!([200, 400, 405, 413, 415].contains(&status), "status {}", status);
        let json: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        prop_assert_eq!(json["ok"].as_bool(), Some(status == 200));
        if status != 200 {
            let code = json["error"]["code"].as_str().unwrap_or("");
            prop_assert!(["invalid_request", "method_not_allowed", "payload_too_large", "unsupported_media_type"].contains(&code), "{}", code);
        }
    }
}
