//! HighLevel's app webhooks (`POST …/webhooks/highlevel`), read (pure): which event, for which
//! location, its `webhookId` and when it was sent. Its signature is checked before it is read
//! (`auth::app_key`).

use serde_json::Value;

use super::deadline::parse_rfc3339;
use super::ids::LocationId;

/// What an app webhook reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEventKind {
    /// `INSTALL`: the app was installed (for a location or the agency).
    Install,
    /// `UNINSTALL`: the app was removed; the location's token ends.
    Uninstall,
    /// Any other type: acknowledged, nothing done.
    Other,
}

/// One app webhook, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEvent {
    /// Its kind.
    pub kind: AppEventKind,
    /// Its `webhookId`: one event is acted on once.
    pub webhook_id: String,
    /// The location it is for, when it names one.
    pub location_id: Option<LocationId>,
    /// When HighLevel sent it (Unix ms).
    pub sent_at_ms: u64,
}

impl AppEvent {
    /// Reads a webhook body. `webhookId` (1–255 visible ASCII characters) and `timestamp` (RFC
    /// 3339, or Unix milliseconds) are required; a `locationId` that is not a valid id is
    /// refused, as anything outside is.
    pub fn parse(body: &[u8]) -> Result<Self, &'static str> {
        let value: Value = serde_json::from_slice(body).map_err(|_| "the body is not JSON")?;
        let text = |key: &str| value.get(key).and_then(Value::as_str);
        let kind = match text("type") {
            Some("INSTALL") => AppEventKind::Install,
            Some("UNINSTALL") => AppEventKind::Uninstall,
            Some(_) => AppEventKind::Other,
            None => return Err("the webhook has no type"),
        };
        let webhook_id = text("webhookId")
            .filter(|id| (1..=255).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or("the webhook has no valid webhookId")?
            .to_owned();
        let sent_at_ms = match value.get("timestamp") {
            Some(Value::String(at)) => parse_rfc3339(at),
            Some(Value::Number(ms)) => ms.as_u64(),
            _ => None,
        }
        .ok_or("the webhook has no valid timestamp")?;
        let location_id = match value.get("locationId") {
            None | Some(Value::Null) => None,
            Some(id) => Some(
                id.as_str()
                    .and_then(|id| LocationId::parse(id).ok())
                    .ok_or("the webhook's locationId is not a valid id")?,
            ),
        };
        Ok(Self {
            kind,
            webhook_id,
            location_id,
            sent_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<AppEvent, &'static str> {
        AppEvent::parse(body.to_string().as_bytes())
    }

    #[test]
    fn reads_an_uninstall_as_highlevel_sends_it() {
        let event = parse(json!({
            "type": "UNINSTALL", "appId": "app-1", "companyId": "co-1", "locationId": "L1",
            "webhookId": "wh-1", "timestamp": "2026-12-02T09:15:03.123Z",
        }))
        .unwrap();
        assert_eq!(event.kind, AppEventKind::Uninstall);
        assert_eq!(event.location_id, LocationId::parse("L1").ok());
        assert_eq!(event.sent_at_ms, 1_796_202_903_123);
        assert_eq!(event.webhook_id, "wh-1");
    }

    #[test]
    fn reads_other_kinds_and_a_timestamp_in_milliseconds() {
        let event = parse(json!({"type": "INSTALL", "webhookId": "w", "timestamp": 5})).unwrap();
        assert_eq!(
            (event.kind, event.location_id, event.sent_at_ms),
            (AppEventKind::Install, None, 5)
        );
        let other = parse(json!({"type": "LocationUpdate", "webhookId": "w", "timestamp": 5}));
        assert_eq!(other.unwrap().kind, AppEventKind::Other);
    }

    #[test]
    fn refuses_what_is_missing_or_unsafe() {
        for body in [
            json!({"webhookId": "w", "timestamp": 5}),
            json!({"type": "UNINSTALL", "timestamp": 5}),
            json!({"type": "UNINSTALL", "webhookId": "w"}),
            json!({"type": "UNINSTALL", "webhookId": "w", "timestamp": "yesterday"}),
            json!({"type": "UNINSTALL", "webhookId": "a b", "timestamp": 5}),
            json!({"type": "UNINSTALL", "webhookId": "w", "timestamp": 5, "locationId": "../x"}),
        ] {
            assert!(parse(body.clone()).is_err(), "{body}");
        }
        assert!(AppEvent::parse(b"not json").is_err());
    }
}
