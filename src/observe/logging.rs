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
const CAPPED: [(&str, LevelFilter); 6] = [
    ("lambda_runtime", LevelFilter::DEBUG),
    ("lambda_runtime_api_client", LevelFilter::DEBUG),
    ("aws_smithy_runtime", LevelFilter::DEBUG),
    (
        "aws_smithy_runtime::client::orchestrator::auth",
        LevelFilter::INFO,
    ),
    (
        "aws_smithy_runtime::client::orchestrator::endpoints",
        LevelFilter::INFO,
    ),
    ("aws_sigv4", LevelFilter::INFO),
];

/// The filter for `level` (a directive list as in `RUST_LOG`), with the payload-logging
/// targets capped: each logs what was asked for it, but never more than its cap (a cap never
/// turns on a level that was not asked for).
pub fn filter(level: &str) -> EnvFilter {
    let default = level.parse::<LevelFilter>().unwrap_or(LevelFilter::INFO);
    let mut filter = EnvFilter::builder()
        .with_default_directive(default.into())
        .parse_lossy(level);
    for (target, cap) in CAPPED {
        let asked = asked_for(level, target).unwrap_or(default);
        if let Ok(directive) = format!("{target}={}", asked.min(cap)).parse::<Directive>() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// The level `level` (a `RUST_LOG`-style list) asks for `target`: that of the most specific
/// `module=level` directive naming it or a parent module, else that of a bare level, if any.
fn asked_for(level: &str, target: &str) -> Option<LevelFilter> {
    let mut best: Option<(usize, LevelFilter)> = None;
    for part in level.split(',').map(str::trim) {
        let (module, wanted) = match part.split_once('=') {
            Some((module, wanted)) => (module.trim(), wanted.trim()),
            None => ("", part),
        };
        let Ok(wanted) = wanted.parse::<LevelFilter>() else {
            continue;
        };
        let covers = module.is_empty()
            || target == module
            || target
                .strip_prefix(module)
                .is_some_and(|rest| rest.starts_with("::"));
        if covers && best.is_none_or(|(length, _)| module.len() >= length) {
            best = Some((module.len(), wanted));
        }
    }
    best.map(|(_, wanted)| wanted)
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

    #[test]
    fn a_cap_never_turns_on_a_level_that_was_not_asked_for() {
        let shown = filter("info").to_string();
        assert!(shown.contains("aws_smithy_runtime=info"), "{shown}");
        assert!(!shown.contains("=debug"), "{shown}");
        let shown = filter("warn").to_string();
        assert!(
            shown.contains("lambda_runtime=warn") && !shown.contains("=info"),
            "{shown}"
        );
        let shown = filter("debug,aws_smithy_runtime=trace").to_string();
        assert!(shown.contains("aws_smithy_runtime=debug"), "{shown}");
        assert!(shown.contains("aws_sigv4=info"), "{shown}");
    }

    #[test]
    fn reads_the_level_asked_for_a_target_from_its_most_specific_directive() {
        assert_eq!(asked_for("warn", "aws_sigv4"), Some(LevelFilter::WARN));
        assert_eq!(
            asked_for(
                "info,aws_smithy_runtime=trace",
                "aws_smithy_runtime::client::orchestrator::auth"
            ),
            Some(LevelFilter::TRACE)
        );
        assert_eq!(
            asked_for("aws_smithy=trace,info", "aws_smithy_runtime"),
            Some(LevelFilter::INFO),
            "a prefix of a name is not a parent module"
        );
        assert_eq!(
            asked_for("lambda_runtime=debug", "lambda_runtime_api_client"),
            None
        );
        assert_eq!(asked_for("nonsense", "aws_sigv4"), None);
    }
}
