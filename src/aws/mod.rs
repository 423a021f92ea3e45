//! The AWS services the function talks to, each through the official SDK client, with its
//! failures sorted into what the caller should do.
//!
//! - [`http_client`]: the SDK's HTTP client, sending through the function's one reqwest client.
//! - [`secrets_manager`]: token and inbound-auth secrets (read, and conditional writes of
//!   refreshed OAuth pairs).

pub mod http_client;
pub(crate) mod secrets_manager;

pub use http_client::sdk_http_client;
pub use secrets_manager::SecretsClient;
