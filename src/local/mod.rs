//! Running without Lambda: a plain HTTP server for the same handler, and a HighLevel stand-in.
//! Used by the `ghl-csv-finalize` command-line tool and by the tests; the Lambda binary does
//! not call into it.

pub mod server;
pub mod standin;
