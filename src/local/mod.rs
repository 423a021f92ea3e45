//! Running without Lambda: a plain HTTP server for the same handler, a HighLevel stand-in, a
//! Lambda Runtime API emulator, and the in-memory queue's loop for `--queue`.
//! Used by the `ghl-csv-finalize` command-line tool, the tests and the benchmarks; the Lambda
//! binary does not call into it.

pub mod drain;
pub mod runtime_api;
pub mod server;
pub mod standin;
