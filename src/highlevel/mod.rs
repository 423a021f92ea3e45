//! HighLevel's API: the HTTP client ([`client`]), the retry policy as pure functions
//! ([`retry`]) and the attempt loop that applies it within a budget ([`attempts`]).

pub mod attempts;
pub mod client;
pub mod retry;

pub use attempts::Attempted;
pub use client::{describe, finalize_body, Exchange, FinalizeCall, HighLevel};
