//! The AWS SDK clients a configuration needs, built once per instance and only those: a
//! synchronous deployment without records builds no DynamoDB or SQS client, so it pays nothing
//! for them at cold start.
//!
//! Every client sends through the function's one HTTPS client and uses short timeouts, so a
//! slow AWS call still leaves the HighLevel call its budget.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_secretsmanager::config::{Region, SharedCredentialsProvider};

use super::http_client::sdk_http_client;
use super::SecretsClient;

/// The clients, each present when the configuration uses its service.
#[derive(Debug, Clone, Default)]
pub struct AwsClients {
    /// Secrets Manager: the token and inbound-auth secrets.
    pub secrets: Option<SecretsClient>,
    /// DynamoDB: the finalization records (`IDEMPOTENCY_TABLE`).
    pub dynamodb: Option<aws_sdk_dynamodb::Client>,
    /// SQS: queue mode (`QUEUE_URL`), built on first use.
    pub sqs: Option<SqsClient>,
}

/// The SQS client, built on first use. Building an AWS SDK client parses that service crate's
/// partition table (about a quarter of a millisecond of cold start, per service), and the worker
/// — the same binary, with the same configuration as the receiver — needs SQS only to delay a
/// message that failed: in the common case it never builds this one. The receiver builds it on
/// its first accepted request.
#[derive(Debug, Clone)]
pub struct SqsClient(Arc<Deferred>);

#[derive(Debug)]
struct Deferred {
    config: aws_sdk_sqs::Config,
    client: OnceLock<aws_sdk_sqs::Client>,
}

impl SqsClient {
    /// A client to build from `config` when first used.
    pub fn deferred(config: aws_sdk_sqs::Config) -> Self {
        Self(Arc::new(Deferred {
            config,
            client: OnceLock::new(),
        }))
    }

    /// A client built elsewhere (the tests add an endpoint and credentials).
    pub fn from_client(client: aws_sdk_sqs::Client) -> Self {
        Self(Arc::new(Deferred {
            config: client.config().clone(),
            client: OnceLock::from(client),
        }))
    }

    /// The client, built now if this is its first use.
    pub fn get(&self) -> &aws_sdk_sqs::Client {
        let deferred = &*self.0;
        deferred
            .client
            .get_or_init(|| aws_sdk_sqs::Client::from_conf(deferred.config.clone()))
    }
}

/// Which AWS services a configuration calls ([`crate::Config::services`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Services {
    /// Secrets Manager: a token or inbound-auth secret is configured.
    pub secrets: bool,
    /// DynamoDB: `IDEMPOTENCY_TABLE`.
    pub dynamodb: bool,
    /// SQS: `QUEUE_URL`.
    pub sqs: bool,
}

impl Services {
    fn any(self) -> bool {
        self.secrets || self.dynamodb || self.sqs
    }
}

impl AwsClients {
    /// The clients of `needs`, from only what Lambda provides: `AWS_REGION`, the
    /// credentials in `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, and
    /// optional endpoints (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, `_DYNAMODB`, `_SQS`, or
    /// `AWS_ENDPOINT_URL`). It reads no files and links no profile, SSO or STS code: the Lambda
    /// binary uses it.
    pub fn from_lambda_env(http: &reqwest::Client, needs: Services) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if !needs.any() {
            return Self::default();
        }
        let mut shared = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(sdk_http_client(http.clone()))
            .timeout_config(timeouts())
            .credentials_provider(SharedCredentialsProvider::new(
                aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
            ));
        if let Some(region) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
            shared = shared.region(Region::new(region));
        }
        let shared = shared.build();
        let endpoint = |service: &str| {
            var(&format!("AWS_ENDPOINT_URL_{service}")).or_else(|| var("AWS_ENDPOINT_URL"))
        };
        Self::with_endpoints(&shared, needs, endpoint)
    }

    /// The clients of `needs`, from the standard AWS configuration chain (profiles, SSO,
    /// `AWS_ENDPOINT_URL_<SERVICE>`, …): the local tools use it.
    pub async fn from_env(http: &reqwest::Client, needs: Services) -> Self {
        if !needs.any() {
            return Self::default();
        }
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .http_client(sdk_http_client(http.clone()))
            .timeout_config(timeouts())
            .load()
            .await;
        // The chain already gives each service its endpoint (`AWS_ENDPOINT_URL_<SERVICE>`, then
        // `AWS_ENDPOINT_URL`): nothing is to be set over it.
        Self::with_endpoints(&shared, needs, |_| None)
    }

    /// The clients of `needs` from `shared`, each at `endpoint(service)` when that names one,
    /// else at whatever endpoint `shared` gives the service (never none over it).
    fn with_endpoints(
        shared: &SdkConfig,
        needs: Services,
        endpoint: impl Fn(&str) -> Option<String>,
    ) -> Self {
        Self {
            secrets: needs.secrets.then(|| {
                let mut builder = aws_sdk_secretsmanager::config::Builder::from(shared);
                if let Some(url) = endpoint("SECRETS_MANAGER") {
                    builder.set_endpoint_url(Some(url));
                }
                let config = builder.build();
                SecretsClient::from_client(aws_sdk_secretsmanager::Client::from_conf(config))
            }),
            dynamodb: needs.dynamodb.then(|| {
                let mut builder = aws_sdk_dynamodb::config::Builder::from(shared);
                if let Some(url) = endpoint("DYNAMODB") {
                    builder.set_endpoint_url(Some(url));
                }
                let config = builder.build();
                aws_sdk_dynamodb::Client::from_conf(config)
            }),
            sqs: needs.sqs.then(|| {
                let mut builder = aws_sdk_sqs::config::Builder::from(shared);
                if let Some(url) = endpoint("SQS") {
                    builder.set_endpoint_url(Some(url));
                }
                SqsClient::deferred(builder.build())
            }),
        }
    }
}

/// The longest one AWS call (its retries included) may take.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(6);

/// Short timeouts for every AWS call, so that a slow one still leaves HighLevel its budget.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}
