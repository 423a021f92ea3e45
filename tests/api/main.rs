//! The handler suites, in one test binary (the AWS SDK is linked once, and one moto server on
//! 127.0.0.1 serves them all): the contract's inbound rules and status table, retries and
//! deadlines, faults, secrets, OAuth, redaction, properties, malformed events and the
//! command-line tool. Every
//! suite drives the real handler with the events in `events/`, against moto through the real
//! AWS SDK client and the project's HighLevel stand-in over real HTTP.

mod helpers;

mod agency;
mod app_webhooks;
mod callbacks;
mod cli;
mod confirm;
mod contract;
mod credentials;
mod events;
mod faults;
mod follow;
mod idempotency;
mod imports;
mod install;
mod oauth;
mod observe;
mod properties;
mod queue;
mod ratelimit;
mod redaction;
mod retries;
mod secrets;
mod stores;
