//! Running without Lambda: a plain HTTP server for the same handler, a HighLevel stand-in, and
//! the in-memory queue's worker for `--queue`.
//! Used by the `ghl-csv-finalize` command-line tool, the tests and the benchmarks (which also
//! use the Lambda Runtime API emulator); the Lambda binary does not call into it.

pub mod runtime_api;
pub mod server;
pub mod standin;
pub mod worker;
