//! # ghl-csv-finalize
//!
//! An AWS Lambda function that finalizes HighLevel (LeadConnector) Social Planner CSV imports
//! when an automation platform calls it: it authenticates the caller, reads the sub-account's
//! token from AWS Secrets Manager and calls
//! `PATCH /social-media-posting/{locationId}/csv/{csvId}`, answering with the outcome.
//! The external contract is documented in the README.
//!
//! # Layout
//!
//! - [`config`]: every setting, read once from the environment and typed.
//! - [`app`]: [`App::build`] makes the clients once; [`App::handle`] runs the checks in the
//!   contract's order and answers every request.
//! - [`lambda`]: the Lambda runtime loop around [`App::handle`].
//! - [`inbound`]: pure parsing of method, path, query string and body into a
//!   [`inbound::FinalizeRequest`].
//! - [`ids`]: the `LocationId` / `CsvId` / `UserId` newtypes that cannot hold an unsafe id.
//! - [`auth`]: API keys and Standard Webhooks signatures, compared in constant time.
//! - [`secrets`]: the Secrets Manager client and its error classification.
//! - [`cache`]: the TTL cache with single-flight loads (the inbound-auth secret).
//! - [`token_secret`]: the accepted token-secret forms; [`token`]: the token source
//!   (Secrets Manager or a local `GHL_TOKEN`), the re-read after a 401, and OAuth refresh that
//!   is safe across concurrent instances; [`oauth`]: the pure OAuth parts (expiry, the refresh
//!   request, applying the answer, the conditional-write token).
//! - [`upstream`]: the HighLevel HTTP client and one attempt; [`retry`]: the pure retry
//!   policy; [`finalize`]: the attempt loop within one deadline.
//! - [`response`]: the JSON envelope; [`error`]: the one error type and its status/code map.
//! - [`local`]: running without Lambda — the plain HTTP server and the HighLevel stand-in used
//!   by the `ghl-csv-finalize` command-line tool and the tests.
//! - [`redact`]: [`redact::Redacted`], which prints `[redacted]` for every secret.

#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod cache;
pub mod config;
pub mod error;
pub mod finalize;
pub mod ids;
pub mod inbound;
pub mod lambda;
pub mod local;
pub mod oauth;
pub mod redact;
pub mod response;
pub mod retry;
pub mod secrets;
pub mod token;
pub mod token_secret;
pub mod upstream;

pub use app::App;
pub use config::Config;
pub use error::Error;
