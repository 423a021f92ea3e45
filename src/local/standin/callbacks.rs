//! The stand-in as the receiver of completion callbacks (`POST /callbacks/…`): it checks each
//! one's Standard Webhooks signature when it knows the secret, answers 503 to the first ones
//! when asked (so a retry can be seen), and keeps what it received, the signature left out.

use std::sync::Mutex;

use http::HeaderMap;
use serde_json::{json, Value};

use crate::auth::InboundKeys;

/// The path prefix callbacks are received on.
pub const CALLBACK_PATH: &str = "/callbacks";

/// One callback as received.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReceivedCallback {
    /// Its `webhook-id`.
    pub webhook_id: String,
    /// Its body, as JSON.
    pub body: Value,
    /// Whether its signature verified with the secret the stand-in was given (`None`: it was
    /// given none).
    pub verified: Option<bool>,
    /// What the stand-in answered.
    pub status: u16,
}

/// Every callback received.
#[derive(Debug, Default)]
pub(super) struct Callbacks {
    received: Mutex<Vec<ReceivedCallback>>,
}

impl Callbacks {
    /// Receives one callback: 503 while fewer than `refuse_first` came before it, else 200.
    pub(super) fn receive(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secret: Option<&str>,
        refuse_first: u64,
    ) -> (u16, Value) {
        let verified = secret.map(|secret| {
            let keys = InboundKeys::parse(&json!({ "webhookSecrets": [secret] }).to_string());
            keys.is_ok_and(|keys| {
                keys.authenticate(headers, body, crate::request::deadline::unix_seconds())
                    .is_some()
            })
        });
        let mut received = super::lock(&self.received);
        let status = if (received.len() as u64) < refuse_first {
            503
        } else {
            200
        };
        received.push(ReceivedCallback {
            webhook_id: headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
            verified,
            status,
        });
        (status, json!({"received": true}))
    }

    /// What was received so far.
    pub(super) fn received(&self) -> Vec<ReceivedCallback> {
        super::lock(&self.received).clone()
    }
}
