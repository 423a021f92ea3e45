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
//! A request goes front → delivery → service → tokens and HighLevel → back to the front, which
//! answers. A queued message goes worker front → delivery → the same service.
//!
//! - [`app`]: [`App::build`] makes every client once per instance and wires the service to its
//!   fronts; [`lambda`]: the Lambda runtime loop that hands each event to its front.
//! - [`http`]: the HTTP front (Lambda HTTP events and the local server): the contract's checks
//!   in order, then delivery, then one response and one log line. Inside: [`http::event`]
//!   (events in and out), [`http::inbound`] (pure parsing), [`http::response`] (the envelope).
//! - [`worker`]: the SQS front of queue mode's worker: a batch to delivery, the batch answer
//!   back.
//! - [`delivery`]: exactly once around the service: a request takes its record (or is answered
//!   from it), runs or is queued; [`delivery::worker`] finalizes queued messages.
//! - [`records`]: finalization records (DynamoDB with conditional writes, or memory) and the
//!   pure rules of keys and records; [`queue`]: the queue (SQS, or memory) and its message.
//! - [`service`]: [`service::FinalizeService`], the one finalize, with its input
//!   ([`service::FinalizeRequest`]) and result ([`service::Outcome`]).
//! - [`auth`]: inbound authentication: the rules ([`auth::keys`]) and loading them from the
//!   inbound-auth secret.
//! - [`tokens`]: where HighLevel tokens come from: the [`tokens::Token`] type, the secret's
//!   forms, OAuth refresh, and the Secrets Manager store that is safe across instances.
//! - [`highlevel`]: HighLevel's API: the HTTP client, the retry policy, its rate-limit headers
//!   and the attempt loop.
//! - [`aws`]: the AWS SDK clients the configuration needs (Secrets Manager, DynamoDB, SQS),
//!   sending through [`https`], and their error classification; [`https`]: the one HTTPS
//!   client (reqwest on rustls, roots chosen once).
//! - [`cache`]: one async lock per key, and the TTL cache built on it.
//! - [`deadline`]: the Lambda deadline, the HighLevel budget and the clock.
//! - [`config`]: every setting, read once from the environment and typed; [`logging`]: the
//!   Lambda binary's log set-up, which never lets a crate log a raw event; [`observe`]: the
//!   audit line and EMF metrics document of each request and queue message.
//! - [`error`]: the one error type and its status/code map; [`upstream`]: HighLevel's answer
//!   as the caller sees it; [`ids`]: the id newtypes that cannot hold an unsafe id;
//!   [`redact`]: [`redact::Redacted`], which prints `[redacted]` for every secret.
//! - `local` (feature `local`, on by default): running without Lambda — the plain HTTP
//!   server, the HighLevel stand-in, a Lambda Runtime API emulator and the in-memory queue's
//!   worker, for the command-line tool, the tests and the benchmarks. The `bootstrap` binary is built without it.

#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod aws;
pub(crate) mod cache;
pub mod config;
pub(crate) mod deadline;
pub mod delivery;
pub mod error;
pub mod highlevel;
pub mod http;
pub mod https;
pub mod ids;
pub mod lambda;
#[cfg(feature = "local")]
pub mod local;
pub mod logging;
pub mod observe;
pub mod queue;
pub mod records;
pub(crate) mod redact;
pub mod service;
pub mod tokens;
pub mod upstream;
pub mod worker;

pub use app::App;
pub use config::Config;
pub use error::Error;
