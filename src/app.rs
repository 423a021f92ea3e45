//! The application: clients built once at start, and the request handler that borrows them.
//!
//! [`App::handle`] runs the contract's checks in order — method (405), body size (413),
//! authentication (401), content type (415), fields (400) — then the token and HighLevel, and
//! always answers with the JSON envelope. One log line per request records the outcome.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_http::{Body, Request, RequestExt, Response};

use crate::auth::InboundKeys;
use crate::cache::SingleFlightCache;
use crate::config::{Config, InboundAuthConfig, TokenSourceConfig};
use crate::error::{chain, Error};
use crate::finalize::{Budget, Failed, Finalizer};
use crate::inbound::{self, FinalizeRequest, Route, Sources};
use crate::response;
use crate::secrets::{ReadError, SecretsClient};
use crate::token::{within_lambda, SecretStore, TokenSource};
use crate::upstream::HighLevel;

/// Why the app could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the app")]
pub struct BuildError(#[source] crate::error::BoxError);

/// Inbound authentication as configured.
enum InboundAuth {
    Disabled,
    Secret {
        secret_id: String,
        client: SecretsClient,
        cache: SingleFlightCache<InboundKeys>,
    },
}

/// The function: configuration and the clients, created once per instance.
pub struct App {
    config: Config,
    auth: InboundAuth,
    tokens: TokenSource,
    highlevel: HighLevel,
}

/// What one request came to: the response, and what the log line needs.
struct Outcome {
    response: Response<Body>,
    request: Option<FinalizeRequest>,
    attempts: u32,
    error: Option<Error>,
}

impl Outcome {
    fn answered(response: Response<Body>, request: Option<FinalizeRequest>, attempts: u32) -> Self {
        Self {
            response,
            request,
            attempts,
            error: None,
        }
    }

    fn failed(failed: Failed, request: Option<FinalizeRequest>, request_id: &str) -> Self {
        Self {
            response: response::failed(&failed.error, failed.attempts, request_id),
            request,
            attempts: failed.attempts,
            error: Some(failed.error),
        }
    }
}

/// Per-invocation facts from the Lambda context (or made up locally).
struct Invocation {
    request_id: String,
    remaining: Option<Duration>,
}

impl App {
    /// Builds the clients. Nothing is read from Secrets Manager yet: secrets load on first use.
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let needs_secrets = matches!(
            config.token_source,
            TokenSourceConfig::SecretsManager { .. }
        ) || matches!(config.inbound_auth, InboundAuthConfig::Secret { .. });
        let secrets = if needs_secrets {
            Some(SecretsClient::from_env().await)
        } else {
            None
        };
        Self::build_with(config, secrets).await
    }

    /// Builds the app around a given Secrets Manager client, required when a secret is
    /// configured (`None` otherwise). The Lambda binary passes a client built from Lambda's
    /// environment alone; [`App::build`] one from the full AWS configuration chain.
    pub async fn build_with(
        config: Config,
        secrets: Option<SecretsClient>,
    ) -> Result<Self, BuildError> {
        let ttl = config.secret_cache_ttl;
        let highlevel =
            HighLevel::new(config.api_version.clone(), &config.api_base_url).map_err(BuildError)?;
        let tokens = match &config.token_source {
            TokenSourceConfig::SecretsManager { secret_id } => {
                TokenSource::SecretsManager(Box::new(SecretStore::new(
                    secret_id.clone(),
                    secrets_client(&secrets)?,
                    ttl,
                    config.oauth_refresh_skew,
                    highlevel.clone(),
                )))
            }
            TokenSourceConfig::Static(token) => TokenSource::Static(token.clone()),
        };
        let auth = match &config.inbound_auth {
            InboundAuthConfig::Secret { secret_id } => InboundAuth::Secret {
                secret_id: secret_id.clone(),
                client: secrets_client(&secrets)?,
                cache: SingleFlightCache::new(ttl),
            },
            InboundAuthConfig::Disabled => InboundAuth::Disabled,
        };
        tracing::info!(token_source = %tokens.describe(), api = %config.api_base_url, "ready");
        if matches!(auth, InboundAuth::Disabled) {
            tracing::warn!("inbound authentication is DISABLED (ALLOW_UNAUTHENTICATED=true): anyone who can reach this function can call it");
        }
        Ok(Self {
            config,
            auth,
            tokens,
            highlevel,
        })
    }

    /// Handles one request. Never fails: every outcome is a response.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let started = std::time::Instant::now();
        let invocation = invocation_of(&request);
        let outcome = self.serve(&request, &invocation).await;
        log_outcome(&invocation, &outcome, started);
        outcome.response
    }

    async fn serve(&self, request: &Request, invocation: &Invocation) -> Outcome {
        let request_id = invocation.request_id.as_str();
        let budget = Budget::new(self.config.upstream_timeout, invocation.remaining);
        let finalize_request = match self.accept(request, &budget).await {
            Ok(Some(finalize_request)) => finalize_request,
            Ok(None) => return Outcome::answered(response::health(request_id), None, 0),
            Err(error) => return Outcome::failed(Failed::from(error), None, request_id),
        };
        let finalizer = Finalizer {
            tokens: &self.tokens,
            highlevel: &self.highlevel,
            base_url: &self.config.api_base_url,
            max_attempts: self.config.max_attempts,
        };
        let result = if self.config.dry_run {
            finalizer
                .prepare(&finalize_request, &budget)
                .await
                .and_then(|prepared| {
                    let headers = self.highlevel.headers(&prepared.token.token)?;
                    let would_send = crate::upstream::describe(&prepared.call, &headers);
                    Ok((
                        response::dry_run(&finalize_request, would_send, request_id),
                        0,
                    ))
                })
        } else {
            finalizer.run(&finalize_request, &budget).await.map(|done| {
                (
                    response::finalized(&finalize_request, &done, request_id),
                    done.attempts,
                )
            })
        };
        match result {
            Ok((response, attempts)) => {
                Outcome::answered(response, Some(finalize_request), attempts)
            }
            Err(failed) => Outcome::failed(failed, Some(finalize_request), request_id),
        }
    }

    /// The contract's checks, in its order: method (405), body size (413), authentication
    /// (401), content type (415), body and fields (400). `None` is a health check.
    async fn accept(
        &self,
        request: &Request,
        budget: &Budget,
    ) -> Result<Option<FinalizeRequest>, Error> {
        if inbound::route(request.method(), request.uri().path())? == Route::Health {
            return Ok(None);
        }
        let body = request.body().as_ref();
        inbound::check_body_size(body)?;
        self.authenticate(request, body, budget).await?;
        if request
            .headers()
            .contains_key(crate::lambda::INVALID_BASE64_HEADER)
        {
            return Err(Error::invalid_body(
                "the event's body is marked base64 but is not valid base64",
            ));
        }
        let kind = inbound::body_kind(request.headers().get(http::header::CONTENT_TYPE), body)?;
        let path_params = request.path_parameters();
        let params: Vec<(&str, &str)> = path_params.iter().collect();
        let mut finalize_request = inbound::parse(Sources {
            path_params: &params,
            path: request.uri().path(),
            query: request.uri().query(),
            body,
            kind,
        })?;
        if finalize_request.user_id.is_none() {
            finalize_request.user_id = self.config.default_user_id.clone();
        }
        Ok(Some(finalize_request))
    }

    async fn authenticate(
        &self,
        request: &Request,
        body: &[u8],
        budget: &Budget,
    ) -> Result<(), Error> {
        let InboundAuth::Secret {
            secret_id,
            client,
            cache,
        } = &self.auth
        else {
            return Ok(());
        };
        let load = cache.get(secret_id, || async {
            let text = client.read(secret_id).await?;
            InboundKeys::parse(text.expose()).map_err(|problem| ReadError::Config {
                id: secret_id.clone(),
                problem,
            })
        });
        let keys = within_lambda(budget, load)
            .await?
            .map_err(|error| error.into_error("the inbound-auth secret"))?;
        if keys.is_empty() {
            tracing::warn!(secret_id = %secret_id, "the inbound-auth secret lists no API keys and no webhook secrets: every caller is refused");
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if keys.authenticate(request.headers(), body, now) {
            Ok(())
        } else {
            Err(Error::Unauthorized)
        }
    }
}

/// The Secrets Manager client, which must be given when a secret is configured.
fn secrets_client(client: &Option<SecretsClient>) -> Result<SecretsClient, BuildError> {
    client.clone().ok_or_else(|| {
        BuildError("a secret is configured but no Secrets Manager client was given".into())
    })
}

fn invocation_of(request: &Request) -> Invocation {
    match request.lambda_context_ref() {
        Some(context) if !context.request_id.is_empty() => {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            Invocation {
                request_id: context.request_id.clone(),
                remaining: remaining_until(context.deadline, now_ms),
            }
        }
        _ => Invocation {
            request_id: format!("local-{:016x}", crate::retry::random_u64()),
            remaining: None,
        },
    }
}

/// Earliest plausible Lambda deadline (2001-09-09, in Unix milliseconds).
const PLAUSIBLE_DEADLINE_MS: u64 = 1_000_000_000_000;

/// Time left until the invocation's deadline (Unix milliseconds). Lambda always sends an
/// absolute time; some local emulators send a duration or nothing, which says nothing about
/// the deadline, so only the upstream budget applies then.
fn remaining_until(deadline_ms: u64, now_ms: u64) -> Option<Duration> {
    (deadline_ms >= PLAUSIBLE_DEADLINE_MS)
        .then(|| Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}

fn log_outcome(invocation: &Invocation, outcome: &Outcome, started: std::time::Instant) {
    let (response, request, attempts, error) = (
        &outcome.response,
        outcome.request.as_ref(),
        outcome.attempts,
        outcome.error.as_ref(),
    );
    let status = response.status().as_u16();
    let location_id = request.map(|r| r.location_id.as_str()).unwrap_or("");
    let csv_id = request.map(|r| r.csv_id.as_str()).unwrap_or("");
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let request_id = invocation.request_id.as_str();
    match error {
        None => tracing::info!(
            request_id,
            status,
            location_id,
            csv_id,
            attempts,
            elapsed_ms,
            "request finished"
        ),
        Some(error) if status >= 500 => tracing::error!(
            request_id, status, code = error.code(), location_id, csv_id, attempts, elapsed_ms,
            cause = %chain(error), "request failed"
        ),
        Some(error) => tracing::warn!(
            request_id, status, code = error.code(), location_id, csv_id, attempts, elapsed_ms,
            message = %error, "request refused"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_time_left_from_an_absolute_lambda_deadline() {
        let now = 1_795_957_706_000;
        assert_eq!(
            remaining_until(now + 3_000, now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(remaining_until(now - 5, now), Some(Duration::ZERO));
    }

    #[test]
    fn ignores_deadlines_that_are_not_absolute_times() {
        assert_eq!(remaining_until(0, 1_795_957_706_000), None);
        assert_eq!(
            remaining_until(600_000, 1_795_957_706_000),
            None,
            "cargo lambda watch sends its timeout"
        );
    }
}
