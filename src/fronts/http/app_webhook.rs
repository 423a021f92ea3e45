//! HighLevel's app webhooks (`POST …/webhooks/highlevel`, on when `GHL_WEBHOOK_PUBLIC_KEY` is
//! set): checked here — the Ed25519 signature over the raw body, the timestamp within 5
//! minutes, each `webhookId` acted on once — and handed to delivery: `UNINSTALL` ends the
//! location's token, `INSTALL` is logged and counted.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use http::HeaderMap;

use crate::auth::AppWebhookKey;
use crate::delivery::Delivery;
use crate::error::Error;
use crate::request::app_event::{AppEvent, AppEventKind};
use crate::request::deadline::{rfc3339, unix_ms};

/// The path suffix app webhooks come to.
pub const APP_WEBHOOK_PATH: &str = "/webhooks/highlevel";
/// The header HighLevel's signature comes in.
const SIGNATURE_HEADER: &str = "x-ghl-signature";
/// How far a webhook's timestamp may be from now, either way.
const TOLERANCE_MS: u64 = 5 * 60 * 1000;
/// `webhookId`s remembered per instance (the oldest forgotten first).
const REMEMBERED: usize = 10_000;

/// The app webhooks of an instance: HighLevel's key, and the events already acted on.
pub(crate) struct AppWebhooks {
    key: AppWebhookKey,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

/// What became of one app webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acted {
    /// Its `webhookId` was acted on before: nothing done.
    Duplicate,
    /// Acted on now (`UNINSTALL`: whether a token was ended).
    Done(AppEventKind, bool),
}

impl AppWebhooks {
    /// App webhooks verified with `key`.
    pub(crate) fn new(key: AppWebhookKey) -> Self {
        Self {
            key,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// The event a request carries, once its signature and timestamp are good (401 if not; a
    /// signed body that is not an event is a 400).
    pub(crate) fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<AppEvent, Error> {
        let signature = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(Error::Unauthorized)?;
        if !self.key.verifies(body, signature) {
            return Err(Error::Unauthorized);
        }
        let event = AppEvent::parse(body).map_err(|problem| {
            if problem.contains("timestamp") {
                Error::Unauthorized
            } else {
                Error::invalid_body(problem)
            }
        })?;
        if unix_ms().abs_diff(event.sent_at_ms) > TOLERANCE_MS {
            return Err(Error::Unauthorized);
        }
        Ok(event)
    }

    /// Acts on `event` through `delivery`, once per `webhookId`. A failure (the token secret
    /// unavailable) is not remembered, so HighLevel's retry acts again.
    pub(crate) async fn act(&self, delivery: &Delivery, event: &AppEvent) -> Result<Acted, Error> {
        if self.was_seen(&event.webhook_id) {
            return Ok(Acted::Duplicate);
        }
        let ended = match (event.kind, &event.location_id) {
            (AppEventKind::Uninstall, Some(location)) => {
                let ended = delivery.uninstall(location, &rfc3339(unix_ms())).await?;
                tracing::warn!(location_id = %location, ended, "HighLevel: the app was uninstalled at a location; its token ends");
                ended
            }
            (AppEventKind::Install, location) => {
                tracing::info!(location_id = ?location.as_ref().map(|l| l.as_str()), "HighLevel: the app was installed");
                false
            }
            _ => false,
        };
        self.remember(&event.webhook_id);
        Ok(Acted::Done(event.kind, ended))
    }

    fn was_seen(&self, id: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .ids
            .contains(id)
    }

    fn remember(&self, id: &str) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.ids.insert(id.to_owned()) {
            seen.order.push_back(id.to_owned());
            if seen.order.len() > REMEMBERED {
                if let Some(oldest) = seen.order.pop_front() {
                    seen.ids.remove(&oldest);
                }
            }
        }
    }
}
