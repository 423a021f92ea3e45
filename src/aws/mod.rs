//! The AWS services the function talks to, each through the official SDK client on the one
//! rustls stack, with its failures sorted into what the caller should do.
//!
//! - [`secrets_manager`]: token and inbound-auth secrets (read, and conditional writes of
//!   refreshed OAuth pairs).

pub(crate) mod secrets_manager;

pub use secrets_manager::SecretsClient;
