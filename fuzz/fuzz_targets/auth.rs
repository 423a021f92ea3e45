//! Inbound authentication on arbitrary headers and bodies: never panics, never lets a caller in
//! without a configured key or a valid signature.
#![no_main]

use ghl_csv_finalize::auth::InboundKeys;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 5] = [
    "x-api-key",
    "authorization",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

fuzz_target!(|data: &[u8]| {
    let keys = InboundKeys::parse(
        r#"{"apiKeys":["fuzz-key-1"],"webhookSecrets":["whsec_ZnV6ei1zZWNyZXQtYnl0ZXM="]}"#,
    )
    .unwrap();
    let mut sections = data.split(|b| *b == 0xFF);
    let body = sections.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    for (i, value) in sections.take(NAMES.len()).enumerate() {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(NAMES[i], value);
        }
    }
    let accepted = keys.authenticate(&headers, body, 1_767_225_600).is_some();
    let has_key = headers
        .get("x-api-key")
        .is_some_and(|v| v.as_bytes() == b"fuzz-key-1")
        || headers
            .get("authorization")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"bearer fuzz-key-1"));
    let has_signature = headers.contains_key("webhook-signature");
    if accepted {
        assert!(has_key || has_signature, "accepted without credentials");
    }
});
