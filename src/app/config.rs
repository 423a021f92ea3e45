//! Settings, read once from the environment at start and typed.
//!
//! [`Config::from_env`] reads every variable the function uses and fails naming the first one
//! that is missing or bad, so a misconfigured deployment fails at init with a clear message
//! instead of answering every request with an error.

use std::time::Duration;

use reqwest::header::HeaderValue;
use url::Url;

use crate::auth::{AppWebhookKey, CallbackKey};
use crate::aws::Services;
use crate::delivery::Follow;
use crate::request::callback::{CallbackUrl, Reach};
use crate::request::ids::UserId;
use crate::tokens::Token;

/// Default HighLevel API base URL.
pub const DEFAULT_API_BASE_URL: &str = "https://services.leadconnectorhq.com";
/// Default HighLevel API version header.
pub const DEFAULT_API_VERSION: &str = "2021-07-28";
/// Default whole budget for the HighLevel call, retries included.
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 10_000;
/// Default number of finalize attempts (first try included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default lifetime of a cached secret.
pub const DEFAULT_SECRET_CACHE_TTL_SECS: u64 = 300;
/// Default margin before expiry at which an OAuth access token is refreshed.
pub const DEFAULT_OAUTH_REFRESH_SKEW_SECS: u64 = 300;
/// Default time a finalization record counts (and a finalized one is replayed).
pub const DEFAULT_IDEMPOTENCY_TTL_SECS: u64 = 86_400;
/// Least `IDEMPOTENCY_TTL_SECS`: twice a signed request's 5-minute window, so a captured signed
/// request can never outlive its record and finalize again.
pub const MIN_IDEMPOTENCY_TTL_SECS: u64 = 600;
/// Default receives of a queued message before it goes to the dead-letter queue (the redrive
/// policy's `maxReceiveCount`).
pub const DEFAULT_QUEUE_MAX_RECEIVES: u32 = 10;

/// A bad or missing setting, naming the environment variable.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {var} {problem}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What is wrong with it (never its value when the value may be secret).
    pub problem: String,
}

impl ConfigError {
    fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self {
            var,
            problem: problem.into(),
        }
    }
}

/// Where HighLevel tokens come from.
#[derive(Debug, Clone)]
pub enum TokenSourceConfig {
    /// Secrets Manager; the name may hold a `{locationId}` placeholder.
    SecretsManager {
        /// Secret name or ARN, possibly a template.
        secret_id: String,
    },
    /// `GHL_AGENCY_SECRET_ID`: the agency's OAuth pair, from which each location's token is
    /// minted.
    Agency {
        /// Secret name or ARN.
        secret_id: String,
    },
    /// `GHL_TOKEN`: one literal token for every location (local development).
    Local(Token),
    /// One literal agency token, from which each location's token is minted (`demo --agency`;
    /// never from the Lambda environment).
    LocalAgency {
        /// The agency's access token.
        token: Token,
        /// Its `companyId`.
        company_id: String,
    },
}

/// How callers are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundAuthConfig {
    /// API keys and webhook secrets from this Secrets Manager secret.
    Secret {
        /// Secret name or ARN.
        secret_id: String,
    },
    /// Explicitly disabled with `ALLOW_UNAUTHENTICATED=true`.
    Disabled,
}

/// Where finalization records are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsConfig {
    /// None: every request is new, and the status route answers 404.
    None,
    /// The DynamoDB table `IDEMPOTENCY_TABLE`.
    Table(String),
    /// This process's memory (the local tools).
    Memory,
}

/// Whether finalizes are queued, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueConfig {
    /// Synchronous: the request finalizes and answers with the outcome.
    None,
    /// The SQS queue `QUEUE_URL`: the receiver answers 202, the worker finalizes.
    Sqs(String),
    /// A queue in this process's memory, with its worker (`serve --queue`, `demo --queue`).
    Memory,
}

/// How finalizes are delivered: records and the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// `IDEMPOTENCY_TABLE`.
    pub records: RecordsConfig,
    /// `IDEMPOTENCY_TTL_SECS`: how long a record counts.
    pub record_ttl: Duration,
    /// `QUEUE_URL`.
    pub queue: QueueConfig,
    /// `QUEUE_MAX_RECEIVES`: the receive on which a transient failure becomes `failed`.
    pub max_receives: u32,
    /// Following each import after its finalize (queue mode, `FOLLOW_IMPORTS`,
    /// `FOLLOW_INTERVAL_SECS`, `FOLLOW_TIMEOUT_SECS`).
    pub follow: Option<Follow>,
}

/// Default `FOLLOW_INTERVAL_SECS`.
pub const DEFAULT_FOLLOW_INTERVAL_SECS: u64 = 30;
/// Default `FOLLOW_TIMEOUT_SECS`.
pub const DEFAULT_FOLLOW_TIMEOUT_SECS: u64 = 3600;

impl DeliveryConfig {
    /// Records and a queue in memory, for the local tools' `--queue`.
    pub fn in_memory(queue: bool) -> Self {
        Self {
            records: RecordsConfig::Memory,
            record_ttl: Duration::from_secs(DEFAULT_IDEMPOTENCY_TTL_SECS),
            queue: if queue {
                QueueConfig::Memory
            } else {
                QueueConfig::None
            },
            max_receives: DEFAULT_QUEUE_MAX_RECEIVES,
            follow: queue.then_some(Follow {
                interval: Duration::from_secs(DEFAULT_FOLLOW_INTERVAL_SECS),
                timeout: Duration::from_secs(DEFAULT_FOLLOW_TIMEOUT_SECS),
            }),
        }
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let records = match get("IDEMPOTENCY_TABLE") {
            Some(table) => RecordsConfig::Table(table.trim().to_owned()),
            None => RecordsConfig::None,
        };
        let queue = match get("QUEUE_URL") {
            Some(url) => {
                let url = url.trim().to_owned();
                Url::parse(&url)
                    .ok()
                    .filter(|u| u.scheme() == "https" || is_loopback(u))
                    .ok_or_else(|| {
                        ConfigError::new("QUEUE_URL", "must be the queue's https URL")
                    })?;
                if records == RecordsConfig::None {
                    return Err(ConfigError::new(
                        "QUEUE_URL",
                        "needs IDEMPOTENCY_TABLE: queue mode keeps a record of every finalize",
                    ));
                }
                QueueConfig::Sqs(url)
            }
            None => QueueConfig::None,
        };
        let ttl = parse_number(
            "IDEMPOTENCY_TTL_SECS",
            get("IDEMPOTENCY_TTL_SECS"),
            DEFAULT_IDEMPOTENCY_TTL_SECS,
            MIN_IDEMPOTENCY_TTL_SECS..=31_536_000,
        )?;
        // A record must outlive every message of its finalize: in queue mode it is kept at
        // least as long as the queue keeps a message (`QUEUE_RETENTION_SECS`, SQS at most 14
        // days), or a late message would find no record and finalize again.
        let retention = match get("QUEUE_RETENTION_SECS") {
            Some(value) => parse_number("QUEUE_RETENTION_SECS", Some(value), 0, 60..=1_209_600)?,
            None => 0,
        };
        let ttl = if matches!(queue, QueueConfig::None) {
            ttl
        } else {
            ttl.max(retention)
        };
        let follow = match get("FOLLOW_IMPORTS") {
            None => true,
            Some(v) => parse_bool(&v)
                .ok_or_else(|| ConfigError::new("FOLLOW_IMPORTS", "must be true or false"))?,
        };
        let follow_interval = parse_number(
            "FOLLOW_INTERVAL_SECS",
            get("FOLLOW_INTERVAL_SECS"),
            DEFAULT_FOLLOW_INTERVAL_SECS,
            1..=crate::delivery::FOLLOW_INTERVAL_CAP.as_secs(),
        )?;
        let follow_timeout = parse_number(
            "FOLLOW_TIMEOUT_SECS",
            get("FOLLOW_TIMEOUT_SECS"),
            DEFAULT_FOLLOW_TIMEOUT_SECS,
            60..=86_400,
        )?;
        // Only queue mode follows imports: its worker reads them through delayed messages.
        let follow = (follow && !matches!(queue, QueueConfig::None)).then_some(Follow {
            interval: Duration::from_secs(follow_interval),
            timeout: Duration::from_secs(follow_timeout),
        });
        Ok(Self {
            follow,
            records,
            record_ttl: Duration::from_secs(ttl),
            queue,
            max_receives: parse_number(
                "QUEUE_MAX_RECEIVES",
                get("QUEUE_MAX_RECEIVES"),
                DEFAULT_QUEUE_MAX_RECEIVES.into(),
                1..=1000,
            )? as u32,
        })
    }
}

/// Completion callbacks (queue mode following imports).
#[derive(Debug, Clone, Default)]
pub struct CallbackConfig {
    /// `CALLBACK_URL`: where a finalize that names no `callbackUrl` is reported.
    pub default_url: Option<CallbackUrl>,
    /// `CALLBACK_ALLOW_PRIVATE`: whether callbacks may reach private and loopback addresses
    /// (local tests only).
    pub reach: Reach,
    /// The key the local tools sign callbacks with, having no inbound-auth secret. Set by the
    /// local tools, never from the Lambda environment.
    pub local_key: Option<CallbackKey>,
}

impl CallbackConfig {
    fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        delivery: &DeliveryConfig,
        inbound_auth: &InboundAuthConfig,
    ) -> Result<Self, ConfigError> {
        let allow_private = match get("CALLBACK_ALLOW_PRIVATE") {
            None => false,
            Some(v) => parse_bool(&v).ok_or_else(|| {
                ConfigError::new("CALLBACK_ALLOW_PRIVATE", "must be true or false")
            })?,
        };
        let reach = Reach { allow_private };
        let Some(url) = get("CALLBACK_URL") else {
            return Ok(Self {
                reach,
                ..Self::default()
            });
        };
        let url = CallbackUrl::parse(&url, reach)
            .map_err(|problem| ConfigError::new("CALLBACK_URL", problem))?;
        if delivery.follow.is_none() {
            return Err(ConfigError::new(
                "CALLBACK_URL",
                "needs queue mode (QUEUE_URL) with FOLLOW_IMPORTS: only it follows an import to its end",
            ));
        }
        if *inbound_auth == InboundAuthConfig::Disabled {
            return Err(ConfigError::new(
                "CALLBACK_URL",
                "needs INBOUND_AUTH_SECRET_ID, whose callbackSecret signs the callbacks",
            ));
        }
        Ok(Self {
            default_url: Some(url),
            reach,
            local_key: None,
        })
    }
}

/// Every setting of the function.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where tokens come from (`GHL_TOKEN_SECRET_ID` or `GHL_TOKEN`).
    pub token_source: TokenSourceConfig,
    /// Inbound authentication (`INBOUND_AUTH_SECRET_ID` / `ALLOW_UNAUTHENTICATED`).
    pub inbound_auth: InboundAuthConfig,
    /// `GHL_API_BASE_URL`.
    pub api_base_url: Url,
    /// `GHL_API_VERSION`: `2021-07-28` (the default) or `v3`.
    pub api_version: HeaderValue,
    /// `GHL_DEFAULT_USER_ID`, sent when the caller gives no `userId`.
    pub default_user_id: Option<UserId>,
    /// `UPSTREAM_TIMEOUT_MS`: whole budget for the HighLevel call.
    pub upstream_timeout: Duration,
    /// `MAX_ATTEMPTS`: finalize attempts in all, first included.
    pub max_attempts: u32,
    /// `SECRET_CACHE_TTL_SECS`: how long a secret read stays fresh.
    pub secret_cache_ttl: Duration,
    /// `OAUTH_REFRESH_SKEW_SECS`: refresh an OAuth access token this long before it expires.
    pub oauth_refresh_skew: Duration,
    /// Finalization records and queue mode.
    pub delivery: DeliveryConfig,
    /// Completion callbacks (`CALLBACK_URL`, `CALLBACK_ALLOW_PRIVATE`).
    pub callback: CallbackConfig,
    /// `GHL_APP_SECRET_ID`: the app's settings, for installing it in one click
    /// (`GET …/oauth/install`, `GET …/oauth/callback`).
    pub app_secret_id: Option<String>,
    /// `GHL_MARKETPLACE_URL`: where an install chooses its location (HighLevel's marketplace;
    /// the stand-in in local tests).
    pub marketplace_url: Url,
    /// `GHL_WEBHOOK_PUBLIC_KEY`: HighLevel's key for its app webhooks, which are taken on
    /// `POST …/webhooks/highlevel` when it is set.
    pub app_webhook_key: Option<AppWebhookKey>,
    /// `METRICS_NAMESPACE`: the CloudWatch namespace of the EMF metrics.
    pub metrics_namespace: String,
    /// Where the audit lines and metrics go: stdout, or memory for the tests and the local
    /// tools that print their own output. Never from the environment.
    pub lines: crate::observe::Lines,
    /// Do everything but call HighLevel; answer with the request that would be sent.
    /// Set by the command-line tool's `--dry-run`, never from the Lambda environment.
    pub dry_run: bool,
}

impl Config {
    /// Whether a finalize must name a user (`GHL_API_VERSION=v3`).
    pub fn requires_user_id(&self) -> bool {
        self.api_version == API_VERSION_V3
    }

    /// Whether a secret is read from Secrets Manager (the token or the inbound-auth keys).
    pub fn reads_secrets(&self) -> bool {
        matches!(
            self.token_source,
            TokenSourceConfig::SecretsManager { .. } | TokenSourceConfig::Agency { .. }
        ) || matches!(self.inbound_auth, InboundAuthConfig::Secret { .. })
            || self.app_secret_id.is_some()
    }

    /// The AWS services this configuration calls: only their clients are built.
    pub fn services(&self) -> Services {
        Services {
            secrets: self.reads_secrets(),
            dynamodb: matches!(self.delivery.records, RecordsConfig::Table(_)),
            sqs: matches!(self.delivery.queue, QueueConfig::Sqs(_)),
        }
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Settings for running offline against a local HighLevel: one literal token, no inbound
    /// authentication, audit lines and metrics made but not written, defaults for the rest
    /// (the `demo` command, tests and benchmarks).
    pub fn local(token: &str, api_base_url: &str) -> Result<Self, ConfigError> {
        let config = Self::from_lookup(|name| match name {
            "GHL_TOKEN" => Some(token.to_owned()),
            "ALLOW_UNAUTHENTICATED" => Some("true".to_owned()),
            "GHL_API_BASE_URL" => Some(api_base_url.to_owned()),
            _ => None,
        })?;
        Ok(Self {
            lines: crate::observe::Lines::Discard,
            ..config
        })
    }

    /// Reads the configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let agency = get("GHL_AGENCY_SECRET_ID");
        let token_source = match (get("GHL_TOKEN_SECRET_ID"), get("GHL_TOKEN")) {
            (Some(_), _) if agency.is_some() => {
                return Err(ConfigError::new(
                    "GHL_AGENCY_SECRET_ID",
                    "and GHL_TOKEN_SECRET_ID are both set: choose one agency connection or the token secret",
                ))
            }
            (_, _) if agency.is_some() => {
                let secret_id = agency.unwrap_or_default().trim().to_owned();
                if secret_id.contains(crate::tokens::template::LOCATION_PLACEHOLDER) {
                    return Err(ConfigError::new(
                        "GHL_AGENCY_SECRET_ID",
                        "is one secret for every location: it takes no {locationId}",
                    ));
                }
                TokenSourceConfig::Agency { secret_id }
            }
            (Some(secret_id), _) => TokenSourceConfig::SecretsManager {
                secret_id: secret_id.trim().to_owned(),
            },
            (None, Some(token)) => {
                TokenSourceConfig::Local(Token::parse(&token).map_err(|_| {
                    ConfigError::new(
                        "GHL_TOKEN",
                        "must be a single token of visible ASCII characters",
                    )
                })?)
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "GHL_TOKEN_SECRET_ID",
                    "is not set: name the Secrets Manager secret holding the HighLevel token \
                     (or set GHL_TOKEN for local development)",
                ))
            }
        };
        let allow_unauthenticated = match get("ALLOW_UNAUTHENTICATED") {
            None => false,
            Some(v) => parse_bool(&v).ok_or_else(|| {
                ConfigError::new("ALLOW_UNAUTHENTICATED", "must be true or false")
            })?,
        };
        let inbound_auth =
            match (get("INBOUND_AUTH_SECRET_ID"), allow_unauthenticated) {
                (Some(secret_id), _) => InboundAuthConfig::Secret {
                    secret_id: secret_id.trim().to_owned(),
                },
                (None, true) => InboundAuthConfig::Disabled,
                (None, false) => return Err(ConfigError::new(
                    "INBOUND_AUTH_SECRET_ID",
                    "is not set: name the secret holding inbound API keys and webhook secrets, \
                     or set ALLOW_UNAUTHENTICATED=true to serve without authentication",
                )),
            };
        if let (
            TokenSourceConfig::SecretsManager { secret_id },
            InboundAuthConfig::Secret {
                secret_id: auth_secret_id,
            },
        ) = (&token_source, &inbound_auth)
        {
            crate::tokens::template::confine(secret_id, &[auth_secret_id])
                .map_err(|problem| ConfigError::new("GHL_TOKEN_SECRET_ID", problem))?;
        } else if let TokenSourceConfig::SecretsManager { secret_id } = &token_source {
            crate::tokens::template::confine(secret_id, &[])
                .map_err(|problem| ConfigError::new("GHL_TOKEN_SECRET_ID", problem))?;
        }
        if let (
            TokenSourceConfig::Agency { secret_id },
            InboundAuthConfig::Secret {
                secret_id: auth_secret_id,
            },
        ) = (&token_source, &inbound_auth)
        {
            if secret_id == auth_secret_id {
                return Err(ConfigError::new(
                    "GHL_AGENCY_SECRET_ID",
                    "names the inbound-auth secret: the agency pair needs a secret of its own",
                ));
            }
        }
        let delivery = DeliveryConfig::from_lookup(get)?;
        let callback = CallbackConfig::from_lookup(get, &delivery, &inbound_auth)?;
        Ok(Self {
            token_source,
            inbound_auth,
            api_base_url: parse_base_url(get("GHL_API_BASE_URL"))?,
            api_version: parse_api_version(get("GHL_API_VERSION"))?,
            default_user_id: get("GHL_DEFAULT_USER_ID")
                .map(|v| {
                    UserId::parse(v.trim())
                        .map_err(|e| ConfigError::new("GHL_DEFAULT_USER_ID", e.to_string()))
                })
                .transpose()?,
            upstream_timeout: Duration::from_millis(parse_number(
                "UPSTREAM_TIMEOUT_MS",
                get("UPSTREAM_TIMEOUT_MS"),
                DEFAULT_UPSTREAM_TIMEOUT_MS,
                1..=900_000,
            )?),
            max_attempts: parse_number(
                "MAX_ATTEMPTS",
                get("MAX_ATTEMPTS"),
                DEFAULT_MAX_ATTEMPTS.into(),
                1..=10,
            )? as u32,
            secret_cache_ttl: Duration::from_secs(parse_number(
                "SECRET_CACHE_TTL_SECS",
                get("SECRET_CACHE_TTL_SECS"),
                DEFAULT_SECRET_CACHE_TTL_SECS,
                0..=86_400,
            )?),
            oauth_refresh_skew: Duration::from_secs(parse_number(
                "OAUTH_REFRESH_SKEW_SECS",
                get("OAUTH_REFRESH_SKEW_SECS"),
                DEFAULT_OAUTH_REFRESH_SKEW_SECS,
                0..=43_200,
            )?),
            delivery,
            callback,
            app_secret_id: get("GHL_APP_SECRET_ID").map(|id| id.trim().to_owned()),
            marketplace_url: match get("GHL_MARKETPLACE_URL") {
                None => Url::parse(crate::install::MARKETPLACE_URL)
                    .map_err(|_| ConfigError::new("GHL_MARKETPLACE_URL", "does not parse"))?,
                Some(url) => Url::parse(url.trim())
                    .ok()
                    .filter(|u| u.scheme() == "https" || is_loopback(u))
                    .ok_or_else(|| {
                        ConfigError::new("GHL_MARKETPLACE_URL", "must be an https URL")
                    })?,
            },
            app_webhook_key: get("GHL_WEBHOOK_PUBLIC_KEY")
                .map(|pem| {
                    AppWebhookKey::from_pem(&pem)
                        .map_err(|problem| ConfigError::new("GHL_WEBHOOK_PUBLIC_KEY", problem))
                })
                .transpose()?,
            metrics_namespace: parse_namespace(get("METRICS_NAMESPACE"))?,
            lines: crate::observe::Lines::Stdout,
            dry_run: false,
        })
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn parse_number(
    var: &'static str,
    value: Option<String>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let number: u64 = value
        .trim()
        .parse()
        .map_err(|_| ConfigError::new(var, "must be a whole number"))?;
    if range.contains(&number) {
        Ok(number)
    } else {
        Err(ConfigError::new(
            var,
            format!("must be between {} and {}", range.start(), range.end()),
        ))
    }
}

fn parse_base_url(value: Option<String>) -> Result<Url, ConfigError> {
    const VAR: &str = "GHL_API_BASE_URL";
    let raw = value.unwrap_or_else(|| DEFAULT_API_BASE_URL.to_owned());
    let url =
        Url::parse(raw.trim()).map_err(|e| ConfigError::new(VAR, format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::new(VAR, "must be an http(s) URL with a host"));
    }
    if url.scheme() == "http" && !is_loopback(&url) {
        return Err(ConfigError::new(
            VAR,
            "must use https: tokens and client secrets travel to it (http is allowed only for a \
             loopback host such as 127.0.0.1, for local tests)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(VAR, "must not have a query or fragment"));
    }
    Ok(url)
}

/// True for `localhost`, `127.0.0.0/8` and `[::1]`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    }
}

/// A CloudWatch namespace: 1–255 printable ASCII characters, not starting with `AWS/`, no `:`.
fn parse_namespace(value: Option<String>) -> Result<String, ConfigError> {
    let Some(value) = value else {
        return Ok(crate::observe::DEFAULT_NAMESPACE.to_owned());
    };
    let value = value.trim();
    let valid = (1..=255).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !value.contains(':')
        && !value.starts_with("AWS/");
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::new(
            "METRICS_NAMESPACE",
            "must be 1 to 255 printable ASCII characters, without ':' and not starting with AWS/",
        ))
    }
}

/// HighLevel's named API version of 2026-06-11, under which a finalize needs a `userId`.
pub const API_VERSION_V3: &str = "v3";

fn parse_api_version(value: Option<String>) -> Result<HeaderValue, ConfigError> {
    let raw = value.unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
    match raw.trim() {
        DEFAULT_API_VERSION => Ok(HeaderValue::from_static(DEFAULT_API_VERSION)),
        API_VERSION_V3 => Ok(HeaderValue::from_static(API_VERSION_V3)),
        _ => Err(ConfigError::new(
            "GHL_API_VERSION",
            format!("must be {DEFAULT_API_VERSION} (the default) or {API_VERSION_V3}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    const MINIMAL: [(&str, &str); 2] = [
        ("GHL_TOKEN_SECRET_ID", "ghl/token"),
        ("INBOUND_AUTH_SECRET_ID", "ghl/inbound"),
    ];

    #[test]
    fn uses_the_contract_defaults() {
        let c = config(&MINIMAL).unwrap();
        assert_eq!(
            c.api_base_url.as_str(),
            "https://services.leadconnectorhq.com/"
        );
        assert_eq!(c.api_version, "2021-07-28");
        assert_eq!(c.upstream_timeout, Duration::from_millis(10_000));
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.secret_cache_ttl, Duration::from_secs(300));
        assert_eq!(c.oauth_refresh_skew, Duration::from_secs(300));
        assert!(c.default_user_id.is_none());
        assert_eq!(c.metrics_namespace, "GhlCsvFinalize");
    }

    #[test]
    fn refuses_to_start_without_inbound_auth_unless_explicitly_allowed() {
        let err = config(&[("GHL_TOKEN_SECRET_ID", "t")]).unwrap_err();
        assert_eq!(err.var, "INBOUND_AUTH_SECRET_ID");
        let c = config(&[
            ("GHL_TOKEN_SECRET_ID", "t"),
            ("ALLOW_UNAUTHENTICATED", "TRUE"),
        ])
        .unwrap();
        assert_eq!(c.inbound_auth, InboundAuthConfig::Disabled);
    }

    #[test]
    fn enforces_auth_when_both_the_secret_and_the_opt_out_are_set() {
        let mut vars = MINIMAL.to_vec();
        vars.push(("ALLOW_UNAUTHENTICATED", "true"));
        assert!(matches!(
            config(&vars).unwrap().inbound_auth,
            InboundAuthConfig::Secret { .. }
        ));
    }

    #[test]
    fn refuses_to_start_without_a_token_source() {
        let err = config(&[("ALLOW_UNAUTHENTICATED", "true")]).unwrap_err();
        assert_eq!(err.var, "GHL_TOKEN_SECRET_ID");
    }

    #[test]
    fn prefers_secrets_manager_over_a_local_token() {
        let c = config(&[
            ("GHL_TOKEN_SECRET_ID", "t"),
            ("GHL_TOKEN", "x"),
            ("ALLOW_UNAUTHENTICATED", "true"),
        ])
        .unwrap();
        assert!(matches!(
            c.token_source,
            TokenSourceConfig::SecretsManager { .. }
        ));
    }

    #[test]
    fn names_the_variable_that_is_bad() {
        for (var, value) in [
            ("UPSTREAM_TIMEOUT_MS", "soon"),
            ("UPSTREAM_TIMEOUT_MS", "0"),
            ("MAX_ATTEMPTS", "0"),
            ("MAX_ATTEMPTS", "11"),
            ("SECRET_CACHE_TTL_SECS", "-1"),
            ("OAUTH_REFRESH_SKEW_SECS", "soon"),
            ("GHL_API_BASE_URL", "ftp://example.com"),
            ("GHL_API_BASE_URL", "not a url"),
            ("GHL_API_BASE_URL", "http://services.leadconnectorhq.com"),
            ("GHL_API_BASE_URL", "http://10.0.0.5:8080"),
            ("GHL_API_BASE_URL", "http://127.0.0.1.evil.example"),
            ("GHL_API_VERSION", "2021\n07"),
            ("GHL_API_VERSION", "2021-07-29"),
            ("GHL_DEFAULT_USER_ID", "a/b"),
            ("ALLOW_UNAUTHENTICATED", "yes"),
            ("IDEMPOTENCY_TTL_SECS", "0"),
            ("IDEMPOTENCY_TTL_SECS", "599"),
            ("QUEUE_MAX_RECEIVES", "0"),
            ("QUEUE_URL", "http://sqs.eu-west-1.amazonaws.com/1/q"),
            ("METRICS_NAMESPACE", "AWS/Lambda"),
            ("METRICS_NAMESPACE", "a:b"),
        ] {
            let mut vars = MINIMAL.to_vec();
            vars.push((var, value));
            assert_eq!(config(&vars).unwrap_err().var, var, "{var}={value}");
        }
    }

    #[test]
    fn delivery_is_synchronous_without_records_unless_configured() {
        let c = config(&MINIMAL).unwrap();
        assert_eq!(c.delivery.records, RecordsConfig::None);
        assert_eq!(c.delivery.queue, QueueConfig::None);
        assert_eq!(c.delivery.record_ttl, Duration::from_secs(86_400));
        assert_eq!(c.delivery.max_receives, 10);
        let mut vars = MINIMAL.to_vec();
        vars.push(("IDEMPOTENCY_TABLE", "ghl-finalizations"));
        vars.push(("QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/123/ghl"));
        let c = config(&vars).unwrap();
        assert_eq!(
            c.delivery.records,
            RecordsConfig::Table("ghl-finalizations".into())
        );
        assert!(matches!(c.delivery.queue, QueueConfig::Sqs(_)));
    }

    #[test]
    fn refuses_queue_mode_without_an_idempotency_table() {
        let mut vars = MINIMAL.to_vec();
        vars.push(("QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/123/ghl"));
        let err = config(&vars).unwrap_err();
        assert_eq!(err.var, "QUEUE_URL");
        assert!(err.to_string().contains("IDEMPOTENCY_TABLE"), "{err}");
    }

    #[test]
    fn refuses_a_token_template_that_could_reach_the_inbound_auth_secret() {
        let err = config(&[
            ("GHL_TOKEN_SECRET_ID", "ghl/{locationId}"),
            ("INBOUND_AUTH_SECRET_ID", "ghl/inbound-auth"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "GHL_TOKEN_SECRET_ID");
        assert!(err.to_string().contains("ghl/inbound-auth"), "{err}");
        let err = config(&[
            ("GHL_TOKEN_SECRET_ID", "{locationId}"),
            ("ALLOW_UNAUTHENTICATED", "true"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "GHL_TOKEN_SECRET_ID");
        assert!(config(&[
            ("GHL_TOKEN_SECRET_ID", "ghl/{locationId}/token"),
            ("INBOUND_AUTH_SECRET_ID", "ghl/inbound-auth"),
        ])
        .is_ok());
    }

    #[test]
    fn accepts_http_only_for_a_loopback_host() {
        for base in [
            "http://127.0.0.1:9100",
            "http://localhost:9100",
            "http://[::1]:9100/x",
            "https://proxy.example.com/ghl",
        ] {
            let mut vars = MINIMAL.to_vec();
            vars.push(("GHL_API_BASE_URL", base));
            assert!(config(&vars).is_ok(), "{base}");
        }
    }

    #[test]
    fn local_settings_use_the_token_without_inbound_auth() {
        let c = Config::local("pit-local", "http://127.0.0.1:9100").unwrap();
        assert!(
            matches!(c.token_source, TokenSourceConfig::Local(ref t) if t.expose() == "pit-local")
        );
        assert_eq!(c.inbound_auth, InboundAuthConfig::Disabled);
        assert_eq!(c.api_base_url.as_str(), "http://127.0.0.1:9100/");
    }

    #[test]
    fn a_bad_local_token_error_does_not_echo_the_token() {
        let err = config(&[
            ("GHL_TOKEN", "has space"),
            ("ALLOW_UNAUTHENTICATED", "true"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "GHL_TOKEN");
        assert!(!err.to_string().contains("has space"));
    }

    #[test]
    fn in_queue_mode_a_record_outlives_the_queues_retention() {
        let mut vars = MINIMAL.to_vec();
        vars.extend([
            ("IDEMPOTENCY_TABLE", "t"),
            ("QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/q"),
            ("IDEMPOTENCY_TTL_SECS", "600"),
            ("QUEUE_RETENTION_SECS", "345600"),
        ]);
        let c = config(&vars).unwrap();
        assert_eq!(c.delivery.record_ttl, Duration::from_secs(345_600));
        let mut sync = MINIMAL.to_vec();
        sync.extend([
            ("IDEMPOTENCY_TABLE", "t"),
            ("IDEMPOTENCY_TTL_SECS", "600"),
            ("QUEUE_RETENTION_SECS", "345600"),
        ]);
        assert_eq!(
            config(&sync).unwrap().delivery.record_ttl,
            Duration::from_secs(600),
            "no queue, no retention to outlive"
        );
        vars.push(("QUEUE_RETENTION_SECS", "5"));
        assert_eq!(config(&vars).unwrap_err().var, "QUEUE_RETENTION_SECS");
    }

    #[test]
    fn v3_is_the_one_other_api_version_and_needs_a_user() {
        let mut vars = MINIMAL.to_vec();
        vars.push(("GHL_API_VERSION", " v3 "));
        let c = config(&vars).unwrap();
        assert_eq!(c.api_version, "v3");
        assert!(c.requires_user_id());
        assert!(!config(&MINIMAL).unwrap().requires_user_id());
    }

    #[test]
    fn queue_mode_follows_imports_unless_told_not_to() {
        let mut vars = MINIMAL.to_vec();
        vars.extend([
            ("IDEMPOTENCY_TABLE", "t"),
            ("QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/q"),
        ]);
        let follow = config(&vars).unwrap().delivery.follow.unwrap();
        assert_eq!(
            (follow.interval, follow.timeout),
            (Duration::from_secs(30), Duration::from_secs(3600))
        );
        let mut off = vars.clone();
        off.push(("FOLLOW_IMPORTS", "false"));
        assert_eq!(config(&off).unwrap().delivery.follow, None);
        let mut sync = MINIMAL.to_vec();
        sync.push(("IDEMPOTENCY_TABLE", "t"));
        assert_eq!(
            config(&sync).unwrap().delivery.follow,
            None,
            "sync mode: on demand only"
        );
        for (var, value) in [
            ("FOLLOW_IMPORTS", "yes"),
            ("FOLLOW_INTERVAL_SECS", "0"),
            ("FOLLOW_INTERVAL_SECS", "301"),
            ("FOLLOW_TIMEOUT_SECS", "10"),
        ] {
            let mut bad = vars.clone();
            bad.push((var, value));
            assert_eq!(config(&bad).unwrap_err().var, var, "{var}={value}");
        }
    }

    #[test]
    fn callback_url_needs_a_queue_following_imports_and_a_signing_secret() {
        let mut queue = MINIMAL.to_vec();
        queue.extend([
            ("IDEMPOTENCY_TABLE", "t"),
            ("QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/q"),
        ]);
        let mut good = queue.clone();
        good.push(("CALLBACK_URL", "https://hooks.example.com/cb"));
        let c = config(&good).unwrap();
        assert_eq!(
            c.callback.default_url.map(|u| u.host()),
            Some("hooks.example.com".to_owned())
        );
        assert!(!c.callback.reach.allow_private);
        for (extra, why) in [
            (
                vec![("CALLBACK_URL", "http://hooks.example.com/cb")],
                "https only",
            ),
            (
                vec![("CALLBACK_URL", "https://10.0.0.1/cb")],
                "a private address",
            ),
            (
                vec![
                    ("CALLBACK_URL", "https://h.example.com/"),
                    ("FOLLOW_IMPORTS", "false"),
                ],
                "nothing follows",
            ),
            (vec![("CALLBACK_ALLOW_PRIVATE", "maybe")], "not a boolean"),
        ] {
            let mut bad = queue.clone();
            bad.extend(extra);
            assert!(
                config(&bad).unwrap_err().var.starts_with("CALLBACK_"),
                "{why}"
            );
        }
        let mut sync = MINIMAL.to_vec();
        sync.push(("CALLBACK_URL", "https://hooks.example.com/cb"));
        assert_eq!(config(&sync).unwrap_err().var, "CALLBACK_URL", "sync mode");
        let mut private = queue.clone();
        private.extend([
            ("CALLBACK_ALLOW_PRIVATE", "true"),
            ("CALLBACK_URL", "http://127.0.0.1:9000/cb"),
        ]);
        assert!(config(&private).unwrap().callback.reach.allow_private);
        let unauthenticated = config(&[
            ("GHL_TOKEN", "t"),
            ("ALLOW_UNAUTHENTICATED", "true"),
            ("IDEMPOTENCY_TABLE", "t"),
            ("QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/q"),
            ("CALLBACK_URL", "https://hooks.example.com/cb"),
        ]);
        assert_eq!(
            unauthenticated.unwrap_err().var,
            "CALLBACK_URL",
            "nothing signs"
        );
    }

    #[test]
    fn an_agency_secret_stands_instead_of_the_token_secret() {
        let agency = config(&[
            ("GHL_AGENCY_SECRET_ID", " ghl/agency "),
            ("INBOUND_AUTH_SECRET_ID", "ghl/inbound"),
        ])
        .unwrap();
        assert!(matches!(
            agency.token_source,
            TokenSourceConfig::Agency { ref secret_id } if secret_id == "ghl/agency"
        ));
        assert!(agency.services().secrets);
        for (vars, why) in [
            (
                vec![
                    ("GHL_AGENCY_SECRET_ID", "ghl/agency"),
                    ("GHL_TOKEN_SECRET_ID", "ghl/token"),
                    ("INBOUND_AUTH_SECRET_ID", "ghl/inbound"),
                ],
                "both set",
            ),
            (
                vec![
                    ("GHL_AGENCY_SECRET_ID", "ghl/{locationId}/agency"),
                    ("INBOUND_AUTH_SECRET_ID", "ghl/inbound"),
                ],
                "a placeholder",
            ),
            (
                vec![
                    ("GHL_AGENCY_SECRET_ID", "ghl/inbound"),
                    ("INBOUND_AUTH_SECRET_ID", "ghl/inbound"),
                ],
                "the inbound-auth secret",
            ),
        ] {
            assert_eq!(
                config(&vars).unwrap_err().var,
                "GHL_AGENCY_SECRET_ID",
                "{why}"
            );
        }
    }

    #[test]
    fn the_install_flow_and_app_webhooks_are_on_only_when_set() {
        let off = config(&MINIMAL).unwrap();
        assert!(off.app_secret_id.is_none() && off.app_webhook_key.is_none());
        assert_eq!(
            off.marketplace_url.as_str(),
            "https://marketplace.gohighlevel.com/"
        );
        let mut on = MINIMAL.to_vec();
        on.extend([
            ("GHL_APP_SECRET_ID", "ghl/app"),
            ("GHL_MARKETPLACE_URL", "http://127.0.0.1:9/"),
        ]);
        let on = config(&on).unwrap();
        assert_eq!(on.app_secret_id.as_deref(), Some("ghl/app"));
        assert!(on.services().secrets);
        for (var, value) in [
            ("GHL_MARKETPLACE_URL", "http://marketplace.example.com"),
            ("GHL_WEBHOOK_PUBLIC_KEY", "not a key"),
        ] {
            let mut bad = MINIMAL.to_vec();
            bad.push((var, value));
            assert_eq!(config(&bad).unwrap_err().var, var, "{value}");
        }
    }
}
