//! HighLevel's API: the HTTP client ([`client`]), the retry policy as pure functions
//! ([`retry`]), its rate-limit headers and the pauses they call for ([`ratelimit`]), the
//! attempt loop that applies them within a budget ([`attempts`]), what a finalize came to
//! ([`outcome`]), and the import HighLevel shows after it ([`import`]).

pub(crate) mod attempts;
pub(crate) mod client;
pub mod import;
pub mod outcome;
pub mod ratelimit;
pub(crate) mod retry;

pub(crate) use client::{csv_status, describe, Exchange};
pub use client::{FinalizeCall, HighLevel};
pub use import::{CsvPage, Import};
pub use outcome::{CallFacts, Outcome};
