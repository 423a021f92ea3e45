//! Completion callbacks: a signed `POST` to the caller's `callbackUrl` (or `CALLBACK_URL`) when
//! an import it asked for has ended, or its finalize failed for good.
//!
//! A callback URL is an outbound request a caller chooses, so it is guarded at every step:
//! [`Callbacks::admit`] checks it at the receiver (its shape, the credential's `callbackHosts`,
//! every address its host resolves to), and [`Callbacks::send`] checks it again on every
//! delivery, through a client that follows no redirect, uses no proxy, gives up after 10 s and
//! connects only to addresses its [`resolver`] admitted. The body and headers follow Standard
//! Webhooks, signed with the inbound-auth secret's `callbackSecret`; nothing in them is a
//! token, key or secret. Retrying is delivery's ([`crate::delivery`]): through the queue.

pub(crate) mod resolver;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::auth::{sign_webhook, CallbackKey, Credential, InboundAuth};
use crate::error::{BoxError, Error};
use crate::records::{CallbackStatus, Record};
use crate::request::callback::{CallbackKind, CallbackUrl, Reach};
use crate::request::deadline::{rfc3339, unix_seconds, Deadline};
use resolver::{GuardedResolver, Lookup};

/// How long one delivery may take, answer included.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What one delivery came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Answered with this 2xx: done.
    Delivered(u16),
    /// Answered otherwise (the status), or not at all (`None`: refused, unreachable, timed
    /// out, not signed): to be tried again.
    Undelivered(Option<u16>),
}

impl Sent {
    /// Where the callback stands after this try, and the status of the answer, if one came.
    pub(crate) fn state(self) -> (CallbackStatus, Option<u16>) {
        match self {
            Sent::Delivered(status) => (CallbackStatus::Delivered, Some(status)),
            Sent::Undelivered(status) => (CallbackStatus::Pending, status),
        }
    }
}

/// The callbacks of one instance: its client, and where the signing key comes from.
pub(crate) struct Callbacks {
    client: reqwest::Client,
    resolver: GuardedResolver,
    auth: Arc<InboundAuth>,
    local_key: Option<CallbackKey>,
    default_url: Option<CallbackUrl>,
}

impl Callbacks {
    /// Callbacks reaching what `reach` admits, over TLS set up as `tls`, signed with the
    /// `callbackSecret` of `auth` (or `local_key`, the local tools' built-in one), sent to
    /// `default_url` (`CALLBACK_URL`) when a request names none.
    pub(crate) fn new(
        tls: rustls::ClientConfig,
        reach: Reach,
        auth: Arc<InboundAuth>,
        local_key: Option<CallbackKey>,
        default_url: Option<CallbackUrl>,
    ) -> Result<Self, BoxError> {
        Self::with_lookup(tls, reach, Lookup::System, auth, local_key, default_url)
    }

    fn with_lookup(
        tls: rustls::ClientConfig,
        reach: Reach,
        lookup: Lookup,
        auth: Arc<InboundAuth>,
        local_key: Option<CallbackKey>,
        default_url: Option<CallbackUrl>,
    ) -> Result<Self, BoxError> {
        let resolver = GuardedResolver { reach, lookup };
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            // A redirect could lead anywhere, past every check: none is followed.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect on our behalf, to an address the resolver never saw.
            .no_proxy()
            .timeout(CALLBACK_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(2)
            .dns_resolver(Arc::new(resolver.clone()))
            .user_agent(concat!("ghl-csv-finalize/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            resolver,
            auth,
            local_key,
            default_url,
        })
    }

    /// The callback URL of a finalize request: the one it names (`requested`), checked for
    /// its shape, against the credential's `callbackHosts` and by every address its host
    /// resolves to (400 naming `callbackUrl` otherwise), else `CALLBACK_URL`; none without
    /// either. Callbacks must be signable: a request naming one where the inbound-auth secret
    /// has no `callbackSecret` is a 400, `CALLBACK_URL` without one a 500 `config_error`.
    pub(crate) async fn admit(
        &self,
        requested: Option<&str>,
        credential: &Credential,
        deadline: Deadline,
    ) -> Result<Option<CallbackUrl>, Error> {
        let refuse = |problem: String| Error::invalid_field(CallbackUrl::FIELD, problem);
        let Some(text) = requested else {
            let Some(url) = &self.default_url else {
                return Ok(None);
            };
            if self.key(deadline).await?.is_none() {
                return Err(Error::config(
                    "CALLBACK_URL is set but the inbound-auth secret has no callbackSecret to sign callbacks with",
                    None,
                ));
            }
            return Ok(Some(url.clone()));
        };
        let url = CallbackUrl::parse(text, self.resolver.reach)
            .map_err(|problem| refuse(format!("callbackUrl {problem}")))?;
        if !credential.allows_callback_host(&url.host()) {
            return Err(refuse(format!(
                "callbackUrl's host is not in the callbackHosts of the credential {}",
                credential.name
            )));
        }
        if self.key(deadline).await?.is_none() {
            return Err(refuse(
                "callbacks are off here: the inbound-auth secret has no callbackSecret to sign them with".to_owned(),
            ));
        }
        if url.address().is_none() {
            self.resolver
                .resolve_host(&url.host())
                .await
                .map_err(|unreachable| refuse(unreachable.to_string()))?;
        }
        Ok(Some(url))
    }

    /// Delivers the callback reporting `kind` of `record` (which happened at `occurred_at_ms`)
    /// once. Every check of [`Callbacks::admit`] but the host list is made again, the address
    /// connected to included.
    pub(crate) async fn send(
        &self,
        record: &Record,
        kind: CallbackKind,
        occurred_at_ms: u64,
        deadline: Deadline,
    ) -> Sent {
        let Some(url) = &record.callback_url else {
            return Sent::Undelivered(None);
        };
        let id = record.id.as_str();
        if let Err(problem) = CallbackUrl::parse(url.as_str(), self.resolver.reach) {
            tracing::warn!(finalization_id = id, host = %url.host(), problem, "a callback URL is refused at delivery");
            return Sent::Undelivered(None);
        }
        let key = match self.key(deadline).await {
            Ok(Some(key)) => key,
            Ok(None) => {
                tracing::error!(
                    finalization_id = id,
                    "a callback cannot be signed: the inbound-auth secret has no callbackSecret"
                );
                return Sent::Undelivered(None);
            }
            Err(error) => {
                tracing::warn!(finalization_id = id, cause = %crate::error::chain(&error), "a callback's signing key could not be read");
                return Sent::Undelivered(None);
            }
        };
        let body = body(record, kind, occurred_at_ms).to_string();
        let webhook_id = format!("{id}.{}", kind.as_str());
        let timestamp = unix_seconds();
        let signature = sign_webhook(&key, &webhook_id, timestamp, body.as_bytes());
        // Boxed: the client's future is deep, and so would be every future that awaits it.
        let sent = Box::pin(
            self.client
                .post(url.as_url().clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header("webhook-id", &webhook_id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(body)
                .send(),
        )
        .await;
        match sent {
            Ok(answer) => {
                let status = answer.status().as_u16();
                if let Some(remote) = answer.remote_addr() {
                    if !self.resolver.reach.admits_address(remote.ip()) {
                        tracing::error!(finalization_id = id, host = %url.host(), "a callback reached an address it may not; its answer is not taken");
                        return Sent::Undelivered(None);
                    }
                }
                if answer.status().is_success() {
                    Sent::Delivered(status)
                } else {
                    tracing::warn!(finalization_id = id, host = %url.host(), status, "a callback was not accepted");
                    Sent::Undelivered(Some(status))
                }
            }
            Err(error) => {
                // The error names the URL: only its host goes to the log.
                let cause = error.without_url();
                tracing::warn!(finalization_id = id, host = %url.host(), cause = %crate::error::chain(&cause), "a callback was not answered");
                Sent::Undelivered(None)
            }
        }
    }

    async fn key(&self, deadline: Deadline) -> Result<Option<CallbackKey>, Error> {
        match &self.local_key {
            Some(key) => Ok(Some(key.clone())),
            None => self.auth.callback_key(deadline).await,
        }
    }
}

/// A callback's body: what it reports, of which finalize, and the import as last seen.
pub(crate) fn body(record: &Record, kind: CallbackKind, occurred_at_ms: u64) -> Value {
    let mut finalize = json!({
        "status": record.status.as_str(),
        "attempts": record.attempts,
    });
    if let Some(error) = &record.error {
        finalize["error"] = json!({"code": error.code, "message": error.message});
    }
    let mut body = json!({
        "type": kind.as_str(),
        "finalizationId": record.id.as_str(),
        "locationId": record.location_id.as_str(),
        "csvId": record.csv_id.as_str(),
        "finalize": finalize,
        "timestamp": rfc3339(occurred_at_ms),
    });
    if let Some(import) = &record.import {
        body["import"] = import.to_json();
    }
    body
}

#[cfg(test)]
mod tests;
