//! Inbound authentication: who may call the function.
//!
//! [`keys`] holds the rules (API keys and Standard Webhooks signatures, pure and constant-time);
//! [`InboundAuth`] loads them from the inbound-auth secret, cached like a token secret, and
//! answers 401 to a caller that passes neither.

pub mod app_key;
mod keys;

pub use app_key::AppWebhookKey;
pub use keys::{sign_webhook, CallbackKey, Credential, InboundKeys, Proof};

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::aws::secrets_manager::{ReadError, SecretsClient};
use crate::cache::SingleFlightCache;
use crate::error::Error;
use crate::request::deadline::{unix_seconds, Deadline};

/// How long a failed read of the inbound-auth secret is answered again without reading: while
/// it keeps failing, an instance reads it at most once a second.
pub(crate) const FAILED_READ_TTL: Duration = Duration::from_secs(1);

/// Inbound authentication as configured.
pub(crate) enum InboundAuth {
    /// `ALLOW_UNAUTHENTICATED=true` and no inbound-auth secret: everyone is let in.
    Disabled,
    /// API keys and webhook secrets from `INBOUND_AUTH_SECRET_ID`.
    Secret {
        /// The secret's name or ARN.
        secret_id: String,
        /// The Secrets Manager client.
        client: SecretsClient,
        /// The parsed keys, for `SECRET_CACHE_TTL_SECS`; a failed read, for a second.
        cache: SingleFlightCache<InboundKeys, Arc<ReadError>>,
    },
}

impl InboundAuth {
    /// The credential that lets the request in, or 401 (500/503 when the keys cannot be
    /// read). A read of the secret gives up at `deadline`.
    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        deadline: Deadline,
    ) -> Result<Credential, Error> {
        let Some(keys) = self.keys(deadline).await? else {
            return Ok(Credential::unauthenticated());
        };
        keys.authenticate(headers, body, unix_seconds())
            .cloned()
            .ok_or(Error::Unauthorized)
    }

    /// The key completion callbacks are signed with: the secret's `callbackSecret`, if it has
    /// one (none when authentication is disabled).
    pub(crate) async fn callback_key(
        &self,
        deadline: Deadline,
    ) -> Result<Option<CallbackKey>, Error> {
        Ok(self
            .keys(deadline)
            .await?
            .and_then(|keys| keys.callback_key().cloned()))
    }

    /// The keys from the secret (cached), or `None` when authentication is disabled.
    async fn keys(&self, deadline: Deadline) -> Result<Option<Arc<InboundKeys>>, Error> {
        let InboundAuth::Secret {
            secret_id,
            client,
            cache,
        } = self
        else {
            return Ok(None);
        };
        let load = cache.get(secret_id, || async {
            let read = client.read(secret_id, deadline).await.map_err(Arc::new)?;
            InboundKeys::parse(read.text.expose()).map_err(|problem| {
                Arc::new(ReadError::Config {
                    id: secret_id.clone(),
                    problem,
                })
            })
        });
        // Waiting for another request's read counts against this request's deadline too.
        let keys = deadline
            .bound(load)
            .await
            .ok_or_else(|| {
                Error::SecretUnavailable(
                    "the Lambda deadline came before the inbound-auth secret was read".into(),
                )
            })?
            .map_err(|error| error.to_error("the inbound-auth secret"))?;
        if keys.is_empty() {
            tracing::warn!(secret_id = %secret_id, "the inbound-auth secret lists no API keys and no webhook secrets: every caller is refused");
        }
        Ok(Some(keys))
    }
}
