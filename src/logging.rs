//! Logging for the Lambda binary: JSON lines when Lambda's log format says so, the level from
//! `AWS_LAMBDA_LOG_LEVEL` (else `RUST_LOG`, else INFO), and never a credential at any level.
//!
//! `lambda_runtime` logs every raw event at TRACE — API keys, signatures and bodies included —
//! so its targets are held at DEBUG; the AWS SDK logs the resolved identity, with the access
//! key id (it redacts the secret key and session token), in its TRACE lines and when it
//! resolves the endpoint, picks the auth scheme and signs, so its runtime is held at DEBUG and
//! those targets at INFO — whatever level is asked for.
//! `tests/lambda_runtime.rs` runs the binary at TRACE and looks for every credential.

use lambda_http::tracing::subscriber::filter::{Directive, EnvFilter, LevelFilter};
use lambda_http::tracing::subscriber::fmt;

/// Targets that log payloads or credentials below INFO, and the most they may log.
const CAPPED: [&str; 6] = [
    "lambda_runtime=debug",
    "lambda_runtime_api_client=debug",
    "aws_smithy_runtime=debug",
    "aws_smithy_runtime::client::orchestrator::auth=info",
    "aws_smithy_runtime::client::orchestrator::endpoints=info",
    "aws_sigv4=info",
];

/// The filter for `level` (a directive list as in `RUST_LOG`), with the payload-logging
/// targets capped.
pub fn filter(level: &str) -> EnvFilter {
    let default = level.parse::<LevelFilter>().unwrap_or(LevelFilter::INFO);
    let mut filter = EnvFilter::builder()
        .with_default_directive(default.into())
        .parse_lossy(level);
    for capped in CAPPED {
        if let Ok(directive) = capped.parse::<Directive>() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the subscriber for the Lambda binary, writing to stdout.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let builder = fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter(&level));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // A subscriber set earlier (by a test harness) wins; that is not an error here.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_runtime_at_debug_whatever_level_is_asked_for() {
        for level in [
            "trace",
            "TRACE",
            "lambda_runtime=trace",
            "debug,lambda_runtime=trace",
        ] {
            let shown = filter(level).to_string();
            assert!(shown.contains("lambda_runtime=debug"), "{level}: {shown}");
            assert!(!shown.contains("lambda_runtime=trace"), "{level}: {shown}");
        }
        assert!(filter("warn").to_string().contains("warn"));
    }
}
