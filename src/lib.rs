//! # ghl-csv-finalize
//!
//! An AWS Lambda function that finalizes HighLevel (LeadConnector) Social Planner CSV imports
//! when an automation platform calls it: it authenticates the caller, reads the sub-account's
//! token from AWS Secrets Manager and calls
//! `PATCH /social-media-posting/{locationId}/csv/{csvId}`, answering with the outcome.
//! The external contract is documented in the README; why the code is shaped as it is, in
//! `docs/architecture.md`.
//!
//! # Layout
//!
//! A request goes front → delivery → service → tokens and HighLevel, and back to the front,
//! which answers and writes one audit line. A queued message goes the SQS front → delivery →
//! the same service. Each module imports only modules listed below it here.
//!
//! - [`app`]: [`App::build`] makes every client once per instance and wires service,
//!   delivery, fronts and their observer; [`app::config`] reads every setting once, typed;
//!   [`app::https`] is the one HTTPS client (reqwest on rustls); [`app::lambda`] is the Lambda
//!   runtime loop that hands each event to its front.
//! - `local` (feature `local`, on by default): running without Lambda — the plain HTTP server,
//!   the HighLevel stand-in, a Lambda Runtime API emulator and the in-memory queue's loop
//!   (`local::drain`), for the command-line tool, the tests and the benchmarks. The `bootstrap`
//!   binary is built without it.
//! - [`fronts`]: where requests come in. [`fronts::http`]: the HTTP front (Lambda HTTP events
//!   and the local server) — the contract's checks in order, then delivery, then one response;
//!   inside, [`fronts::http::event`] (events in and out), [`fronts::http::inbound`] (pure
//!   parsing, the idempotency key from the headers), [`fronts::http::response`] (the envelope).
//!   [`fronts::sqs_batch`]: queue mode's worker front, an SQS batch to delivery and back.
//! - [`delivery`]: exactly once around the service: a request takes its record (or is answered
//!   from it), runs or is queued; a queued message is worked under the same record; HighLevel's
//!   CSV status settles a PATCH that may have been applied unseen. [`delivery::rules`] holds
//!   its pure rules; `delivery::sim` (tests) its deterministic simulation.
//! - `callback`: completion callbacks — the receiver's check of a `callbackUrl`, and one signed
//!   delivery through a client that connects only to addresses a callback may reach (its
//!   guarded resolver); delivery retries them through the queue.
//! - [`records`]: finalization records (DynamoDB with conditional writes, or memory) and the
//!   pure rules of ids and records; [`queue`]: the queue (SQS, or memory), its message, a
//!   received message and what becomes of it.
//! - [`observe`]: what the operator sees — the audit line and EMF metrics document of each
//!   request and queue message, written by the [`observe::Observer`]; the Lambda binary's log
//!   set-up ([`observe::logging`]).
//! - [`service`]: [`service::FinalizeService`], the one finalize: token, then HighLevel (and
//!   the CSV's status); the `Finalizer` trait delivery asks it through.
//! - [`install`]: installing the app in one click (`GHL_APP_SECRET_ID`): the signed `state`,
//!   the code exchange, the pair it brings (stored by [`tokens`]) and the HTML pages.
//! - [`auth`]: inbound authentication: the rules ([`auth::keys`]) and loading them from the
//!   inbound-auth secret.
//! - [`tokens`]: where HighLevel tokens come from: the [`tokens::Token`] type, the secret's
//!   forms, OAuth refresh, and the Secrets Manager store that is safe across instances.
//! - [`aws`]: the AWS SDK clients the configuration needs (Secrets Manager, DynamoDB, SQS), and
//!   their error classification.
//! - [`highlevel`]: HighLevel's API: the HTTP client, the attempt loop, the retry policy, its
//!   rate-limit headers, and what a finalize came to ([`highlevel::Outcome`]).
//! - [`error`]: the one error type and its status/code map.
//! - [`upstream`]: HighLevel's answer as the caller sees it (on success and in most errors).
//! - [`cache`]: one async lock per key, and the TTL cache built on it.
//! - [`random`]: the one home of randomness, for jitter.
//! - [`redact`]: [`redact::Redacted`], which prints `[redacted]` for every secret.
//! - `faults` (tests only): the delivery simulation's seeded faults, shared by its simulated
//!   record store (`records::sim`), queue (`queue::sim`) and HighLevel (`delivery::sim`, which
//!   also drives the schedules).
//! - [`request`] (the ground floor): what a finalize request is ([`request::FinalizeRequest`]),
//!   the [`request::Invocation`] that carries it, the id newtypes that cannot hold an unsafe id
//!   ([`request::ids`]), the idempotency key ([`request::key`]), and the Lambda deadline, the
//!   HighLevel budget and the clock ([`request::deadline`]).

#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod aws;
pub(crate) mod cache;
pub(crate) mod callback;
pub mod delivery;
pub mod error;
#[cfg(test)]
pub(crate) mod faults;
pub mod fronts;
pub mod highlevel;
pub mod install;
#[cfg(feature = "local")]
pub mod local;
pub mod observe;
pub mod queue;
pub(crate) mod random;
pub mod records;
pub(crate) mod redact;
pub mod request;
pub mod service;
pub mod tokens;
pub mod upstream;

pub use app::config::Config;
pub use app::App;
pub use error::Error;
