//! The function assembled: clients built once at start, the service, and its fronts.
//!
//! [`App::build`] makes every client once per instance (Secrets Manager, HighLevel) and wires
//! them into the [`FinalizeService`] and the [`HttpFront`]; [`App::handle`] answers one HTTP
//! request with them. Nothing is read from Secrets Manager until a request needs it.

use lambda_http::{Body, Request, Response};

use crate::auth::InboundAuth;
use crate::aws::SecretsClient;
use crate::cache::SingleFlightCache;
use crate::config::{Config, InboundAuthConfig, TokenSourceConfig};
use crate::highlevel::HighLevel;
use crate::http::HttpFront;
use crate::service::{FinalizeService, Settings};
use crate::tokens::{SecretStore, TokenSource};

/// Why the app could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the app")]
pub struct BuildError(#[source] crate::error::BoxError);

/// The function: the finalize service and the HTTP front, created once per instance.
pub struct App {
    service: FinalizeService,
    http: HttpFront,
}

impl App {
    /// Builds the clients, with a Secrets Manager client from the full AWS configuration chain
    /// when a secret is configured (the local tools).
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let http = crate::https::client().map_err(BuildError)?;
        let secrets = if config.reads_secrets() {
            Some(SecretsClient::from_env(&http).await)
        } else {
            None
        };
        Self::build_with(config, http, secrets).await
    }

    /// Builds the app around the one HTTPS client `http` and a Secrets Manager client sending
    /// through it, required when a secret is configured (`None` otherwise). The Lambda binary
    /// passes one built from Lambda's environment alone; [`App::build`] one from the full AWS
    /// configuration chain.
    pub async fn build_with(
        config: Config,
        http: reqwest::Client,
        secrets: Option<SecretsClient>,
    ) -> Result<Self, BuildError> {
        let secrets_client = || {
            secrets.clone().ok_or_else(|| {
                BuildError("a secret is configured but no Secrets Manager client was given".into())
            })
        };
        let ttl = config.secret_cache_ttl;
        let highlevel = HighLevel::new(http, config.api_version.clone(), &config.api_base_url)
            .map_err(BuildError)?;
        let tokens = match config.token_source {
            TokenSourceConfig::SecretsManager { secret_id } => {
                TokenSource::SecretsManager(Box::new(SecretStore::new(
                    secret_id,
                    secrets_client()?,
                    ttl,
                    config.oauth_refresh_skew,
                    highlevel.clone(),
                )))
            }
            TokenSourceConfig::Local(token) => TokenSource::Local(token),
        };
        let auth = match config.inbound_auth {
            InboundAuthConfig::Secret { secret_id } => InboundAuth::Secret {
                secret_id,
                client: secrets_client()?,
                cache: SingleFlightCache::new(ttl, crate::auth::FAILED_READ_TTL),
            },
            InboundAuthConfig::Disabled => InboundAuth::Disabled,
        };
        tracing::info!(token_source = %tokens.describe(), api = %config.api_base_url, "ready");
        let http = HttpFront::new(auth, config.default_user_id);
        if !http.authenticates() {
            tracing::warn!("inbound authentication is DISABLED (ALLOW_UNAUTHENTICATED=true): anyone who can reach this function can call it");
        }
        let service = FinalizeService::new(
            tokens,
            highlevel,
            Settings {
                upstream_timeout: config.upstream_timeout,
                max_attempts: config.max_attempts,
                dry_run: config.dry_run,
            },
        );
        Ok(Self { service, http })
    }

    /// Answers one HTTP request (a Lambda HTTP event or a local one). Never fails: every
    /// outcome is a response.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        self.http.handle(&self.service, request).await
    }
}
