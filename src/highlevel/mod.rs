//! HighLevel's API: the HTTP client ([`client`]), the retry policy as pure functions
//! ([`retry`]) and the attempt loop that applies it within a budget ([`attempts`]).

pub(crate) mod attempts;
pub(crate) mod client;
pub(crate) mod retry;

pub(crate) use attempts::Attempted;
pub(crate) use client::{describe, Exchange};
pub use client::{FinalizeCall, HighLevel};
