//! The function assembled: its configuration, clients built once at start, delivery around the
//! service, and the fronts with their observer.
//!
//! [`App::build`] makes every client once per instance (the one HTTPS client of [`https`], the
//! AWS clients the [`config`] needs, HighLevel) and wires them into the [`FinalizeService`],
//! [`Delivery`], the [`HttpFront`] and the [`Observer`] the fronts write through;
//! [`App::respond`] answers one HTTP request with them, [`App::work_sqs`] one SQS batch, and
//! [`lambda::run`] serves Lambda invocations with both. Nothing is read from Secrets Manager
//! until a request needs it.

pub mod config;
pub mod https;
pub mod lambda;

use std::sync::Arc;

use lambda_http::lambda_runtime::Context;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

use crate::auth::InboundAuth;
use crate::aws::AwsClients;
use crate::cache::SingleFlightCache;
use crate::callback::Callbacks;
use crate::delivery::Delivery;
use crate::fronts::http::app_webhook::AppWebhooks;
use crate::fronts::http::HttpFront;
use crate::fronts::sqs_batch;
use crate::highlevel::HighLevel;
use crate::install::Install;
use crate::observe::Observer;
use crate::queue::memory::MemoryQueue;
use crate::queue::{sqs::SqsQueue, Queue};
use crate::records::{dynamodb::DynamoRecords, memory::MemoryRecords, Records};
use crate::service::FinalizeService;
use crate::tokens::agency::{AgencyPair, AgencyTokens};
use crate::tokens::{SecretStore, TokenCounters, TokenSource};
use config::{Config, InboundAuthConfig, QueueConfig, RecordsConfig, TokenSourceConfig};

/// Why the app could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the app")]
pub struct BuildError(#[source] crate::error::BoxError);

impl BuildError {
    fn missing(client: &str) -> Self {
        BuildError(
            format!("the configuration uses {client} but no {client} client was given").into(),
        )
    }
}

/// The function: delivery around the finalize service, and the fronts with the observer they
/// write through, created once per instance.
pub struct App {
    delivery: Delivery,
    http: HttpFront,
    observer: Observer,
    memory_queue: Option<Arc<MemoryQueue>>,
}

impl App {
    /// Builds the clients, the AWS ones from the full AWS configuration chain (the local tools).
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let http = crate::app::https::client().map_err(BuildError)?;
        let aws = AwsClients::from_env(&http, config.services()).await;
        Self::build_with(config, http, aws).await
    }

    /// Builds the app around the one HTTPS client `http` and the AWS clients `aws` (each
    /// required when the configuration uses its service). The Lambda binary passes clients
    /// built from Lambda's environment alone; [`App::build`] from the full chain; tests their
    /// own, pointed at moto.
    pub async fn build_with(
        config: Config,
        http: reqwest::Client,
        aws: AwsClients,
    ) -> Result<Self, BuildError> {
        let secrets_client = || {
            aws.secrets
                .clone()
                .ok_or_else(|| BuildError::missing("Secrets Manager"))
        };
        let ttl = config.secret_cache_ttl;
        let highlevel = HighLevel::new(http, config.api_version.clone(), &config.api_base_url)
            .map_err(BuildError)?;
        let requires_user_id = config.requires_user_id();
        let token_counters = Arc::new(TokenCounters::default());
        let skew = config.oauth_refresh_skew;
        let store = |secret_id| -> Result<SecretStore, BuildError> {
            Ok(SecretStore::new(
                secret_id,
                secrets_client()?,
                ttl,
                skew,
                highlevel.clone(),
                Arc::clone(&token_counters),
            ))
        };
        let minted =
            |pair| AgencyTokens::new(pair, highlevel.clone(), skew, Arc::clone(&token_counters));
        let tokens = match config.token_source {
            TokenSourceConfig::SecretsManager { secret_id } => {
                TokenSource::SecretsManager(Box::new(store(secret_id)?))
            }
            TokenSourceConfig::Agency { secret_id } => TokenSource::Agency(Box::new(minted(
                AgencyPair::Secret(Box::new(store(secret_id)?)),
            ))),
            TokenSourceConfig::LocalAgency { token, company_id } => {
                TokenSource::Agency(Box::new(minted(AgencyPair::Local { token, company_id })))
            }
            TokenSourceConfig::Local(token) => TokenSource::Local(token),
        };
        let auth = Arc::new(match config.inbound_auth {
            InboundAuthConfig::Secret { secret_id } => InboundAuth::Secret {
                secret_id,
                client: secrets_client()?,
                cache: SingleFlightCache::new(ttl, crate::auth::FAILED_READ_TTL),
            },
            InboundAuthConfig::Disabled => InboundAuth::Disabled,
        });
        let delivery = &config.delivery;
        let records = match &delivery.records {
            RecordsConfig::None => None,
            RecordsConfig::Table(table) => Some(Records::DynamoDb(DynamoRecords::new(
                aws.dynamodb
                    .clone()
                    .ok_or_else(|| BuildError::missing("DynamoDB"))?,
                table.clone(),
            ))),
            RecordsConfig::Memory => Some(Records::Memory(MemoryRecords::new())),
        };
        let memory_queue = matches!(delivery.queue, QueueConfig::Memory)
            .then(|| Arc::new(MemoryQueue::new(delivery.max_receives)));
        let queue = match &delivery.queue {
            QueueConfig::None => None,
            QueueConfig::Sqs(url) => Some(Queue::Sqs(SqsQueue::new(
                aws.sqs.clone().ok_or_else(|| BuildError::missing("SQS"))?,
                url.clone(),
            ))),
            QueueConfig::Memory => memory_queue.clone().map(Queue::Memory),
        };
        tracing::info!(
            token_source = %tokens.describe(),
            api = %config.api_base_url,
            records = records.as_ref().map_or("none", Records::describe),
            mode = if queue.is_some() { "queue" } else { "sync" },
            "ready"
        );
        // Only a queue that follows imports calls back: no second client otherwise.
        let callbacks = match (&queue, delivery.follow) {
            (Some(_), Some(_)) => Some(
                Callbacks::new(
                    https::tls_config().map_err(BuildError)?,
                    config.callback.reach,
                    Arc::clone(&auth),
                    config.callback.local_key.clone(),
                    config.callback.default_url.clone(),
                )
                .map_err(BuildError)?,
            ),
            _ => None,
        };
        let app_webhooks = config.app_webhook_key.map(AppWebhooks::new);
        let install = match config.app_secret_id {
            Some(id) => Some(Install::new(
                id,
                secrets_client()?,
                highlevel.clone(),
                config.marketplace_url.clone(),
            )),
            None => None,
        };
        let http = HttpFront::new(
            auth,
            config.default_user_id,
            requires_user_id,
            app_webhooks,
            install,
        );
        if !http.authenticates() {
            tracing::warn!("inbound authentication is DISABLED (ALLOW_UNAUTHENTICATED=true): anyone who can reach this function can call it");
        }
        let service = FinalizeService::new(
            tokens,
            highlevel,
            config.upstream_timeout,
            config.max_attempts,
            config.dry_run,
        );
        let observer = Observer::new(
            config.metrics_namespace.clone(),
            config.lines.clone(),
            token_counters,
        );
        Ok(Self {
            delivery: Delivery::new(
                service,
                records,
                queue,
                delivery.record_ttl,
                delivery.max_receives,
            )
            .following(delivery.follow, callbacks),
            http,
            observer,
            memory_queue,
        })
    }

    /// Answers one HTTP request (a Lambda HTTP event or a local one). Never fails: every
    /// outcome is a response.
    pub async fn respond(&self, request: Request) -> Response<Body> {
        // Boxed: a request's work is a deep future, which every caller would otherwise carry
        // inline (past the compiler's depth limit in the local tools).
        Box::pin(self.http.answer(&self.delivery, &self.observer, request)).await
    }

    /// Works one SQS event (queue mode's worker) and answers with its batch item failures.
    /// Never fails: a message that cannot be handled now is reported, so SQS keeps it.
    pub async fn work_sqs(
        &self,
        event: Value,
        context: &Context,
    ) -> aws_lambda_events::sqs::SqsBatchResponse {
        sqs_batch::work_event(&self.delivery, &self.observer, event, context).await
    }

    /// The audit lines and metrics written so far, when they are kept in memory (the tests and
    /// the local tools that print their own output); none when they go to stdout.
    pub fn kept_lines(&self) -> Vec<String> {
        self.observer.lines().kept()
    }

    /// The in-memory queue of `serve --queue` and `demo --queue`, for its loop.
    pub fn memory_queue(&self) -> Option<Arc<MemoryQueue>> {
        self.memory_queue.clone()
    }

    /// Delivery and the fronts' observer, for the in-memory queue's loop (a front of its own).
    #[cfg(feature = "local")]
    pub(crate) fn delivery_and_observer(&self) -> (&Delivery, &Observer) {
        (&self.delivery, &self.observer)
    }
}
