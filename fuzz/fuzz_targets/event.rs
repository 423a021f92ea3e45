//! Whole events through the real entry: any bytes, read as a Lambda event of any kind (raw JSON,
//! or fields spliced into an API Gateway REST, HTTP API / Function URL or ALB event), converted
//! and answered by the real handler (dry run: HighLevel is never called). Never panics; every
//! answer is the contract's JSON with a status from its table.
#![no_main]

#[path = "common/world.rs"]
mod common;

use ghl_csv_finalize::fronts::http::event;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// A string member from raw bytes, or (by `kind`) another JSON type in its place.
fn member(bytes: &[u8], kind: u8) -> Value {
    match kind % 8 {
        0 => Value::Null,
        1 => json!(bytes.len()),
        2 => json!([String::from_utf8_lossy(bytes)]),
        _ => Value::String(String::from_utf8_lossy(bytes).into_owned()),
    }
}

fn spliced(data: &[u8]) -> Option<Value> {
    let (&selector, rest) = data.split_first()?;
    let fields: Vec<&[u8]> = rest.split(|b| *b == 0xFF).collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or_default();
    let method = member(field(0), selector >> 2);
    let path = member(field(1), selector >> 3);
    let query = member(field(2), selector >> 4);
    let header_name = String::from_utf8_lossy(field(3)).into_owned();
    let header_value = member(field(4), selector >> 5);
    let body = member(field(5), selector >> 6);
    let base64 = selector & 0x80 != 0;
    let headers = json!({ header_name: header_value, "content-type": "application/json" });
    Some(match selector % 4 {
        0 | 1 => json!({"version": "2.0", "rawPath": path, "rawQueryString": query,
            "headers": headers, "requestContext": {"http": {"method": method}},
            "body": body, "isBase64Encoded": base64}),
        2 => json!({"httpMethod": method, "path": path, "headers": headers,
            "multiValueHeaders": {"x-multi": [query.clone()]},
            "multiValueQueryStringParameters": {"q": [query]},
            "requestContext": {"identity": {}}, "body": body, "isBase64Encoded": base64}),
        _ => json!({"httpMethod": method, "path": path, "headers": headers,
            "queryStringParameters": {"q": query}, "requestContext": {"elb": {}},
            "body": body, "isBase64Encoded": base64}),
    })
}

fuzz_target!(|data: &[u8]| {
    let event = match serde_json::from_slice::<Value>(data) {
        Ok(raw) => raw,
        Err(_) => match spliced(data) {
            Some(event) => event,
            None => return,
        },
    };
    let world = common::world(|_| {});
    let (request, _) = event::into_request(event);
    let response = world.runtime.block_on(world.app.respond(request));
    let status = response.status().as_u16();
    assert!(
        [200, 400, 405, 413, 415].contains(&status),
        "status {status}"
    );
    let body: Value = serde_json::from_slice(response.body().as_ref()).expect("JSON answer");
    assert_eq!(body["ok"].as_bool(), Some(status == 200));
});
