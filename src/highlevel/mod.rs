//! HighLevel's API: the HTTP client ([`client`]), the retry policy as pure functions
//! ([`retry`]), its rate-limit headers and the pauses they call for ([`ratelimit`]), the
//! attempt loop that applies them within a budget ([`attempts`]), and what a finalize came to
//! ([`outcome`]).

pub(crate) mod attempts;
pub(crate) mod client;
pub mod outcome;
pub mod ratelimit;
pub(crate) mod retry;

pub(crate) use client::{csv_status, describe, Exchange};
pub use client::{FinalizeCall, HighLevel};
pub use outcome::{CallFacts, Outcome};
