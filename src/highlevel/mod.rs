//! HighLevel's API: the HTTP client ([`client`]), the retry policy as pure functions
//! ([`retry`]), its rate-limit headers and the pauses they call for ([`ratelimit`]), and the
//! attempt loop that applies them within a budget ([`attempts`]).

pub(crate) mod attempts;
pub(crate) mod client;
pub mod ratelimit;
pub(crate) mod retry;

pub(crate) use attempts::Attempted;
pub use attempts::CallFacts;
pub(crate) use client::{describe, Exchange};
pub use client::{FinalizeCall, HighLevel};
