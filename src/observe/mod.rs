//! What the operator sees: of each request and queue message one audit line ([`audit`]) and
//! one CloudWatch EMF metrics document ([`emf`]), written as two JSON lines by the
//! [`Observer`] that the fronts own; and the Lambda binary's log set-up ([`logging`]).
//!
//! Both lines go straight to stdout, not through the log filter: CloudWatch extracts EMF only from a
//! log event that is exactly the document, and an audit line is kept whatever the log level.

pub mod audit;
pub mod emf;
pub mod logging;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use audit::{Audit, Mode};
pub use emf::Measures;

use crate::request::deadline::unix_ms;
use crate::tokens::TokenCounters;

/// Default `METRICS_NAMESPACE`.
pub const DEFAULT_NAMESPACE: &str = "GhlCsvFinalize";

/// Where the lines go.
#[derive(Debug, Clone)]
pub enum Lines {
    /// Standard output (Lambda, `serve`).
    Stdout,
    /// Kept in memory (the tests).
    Memory(Arc<Mutex<Vec<String>>>),
    /// Made and dropped (the local tools that print their own output, the fuzz targets and the
    /// benchmarks, which still pay for making them).
    Discard,
}

impl Lines {
    /// Lines kept in memory.
    pub fn memory() -> Self {
        Lines::Memory(Arc::default())
    }

    /// The lines kept so far (none for stdout).
    pub fn kept(&self) -> Vec<String> {
        match self {
            Lines::Stdout | Lines::Discard => Vec::new(),
            Lines::Memory(lines) => lines.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    fn write(&self, audit: String, metrics: String) {
        match self {
            Lines::Stdout => {
                // One write for both lines, so lines of concurrent messages never interleave.
                let _ = std::io::stdout()
                    .lock()
                    .write_all(format!("{audit}\n{metrics}\n").as_bytes());
            }
            Lines::Memory(lines) => {
                let mut lines = lines.lock().unwrap_or_else(|p| p.into_inner());
                lines.push(audit);
                lines.push(metrics);
            }
            Lines::Discard => {}
        }
    }
}

/// Writes the audit line and the metrics of each request or message.
#[derive(Debug)]
pub struct Observer {
    namespace: String,
    lines: Lines,
    cold: AtomicBool,
    tokens: Arc<TokenCounters>,
    refreshes_reported: AtomicU64,
    mints_reported: AtomicU64,
}

impl Observer {
    /// An observer writing to `lines`, metrics in `namespace`, reporting the token store's
    /// `tokens` counts.
    pub fn new(namespace: String, lines: Lines, tokens: Arc<TokenCounters>) -> Self {
        Self {
            namespace,
            lines,
            cold: AtomicBool::new(true),
            tokens,
            refreshes_reported: AtomicU64::new(0),
            mints_reported: AtomicU64::new(0),
        }
    }

    /// Where its lines go.
    pub fn lines(&self) -> &Lines {
        &self.lines
    }

    /// Writes one request's or message's audit line and metrics. The instance-wide measures
    /// come from here: the token counts (the document reports the refreshes and mints new since
    /// the last one, and the pairs unwritten now) and the cold start.
    pub fn record(&self, audit: &Audit, measures: Measures) {
        let tokens = self.tokens.snapshot();
        let before = self
            .refreshes_reported
            .swap(tokens.refreshes, Ordering::Relaxed);
        let minted_before = self.mints_reported.swap(tokens.minted, Ordering::Relaxed);
        let measures = Measures {
            token_refreshes: tokens.refreshes.saturating_sub(before),
            tokens_minted: tokens.minted.saturating_sub(minted_before),
            unwritten_token_pairs: tokens.unwritten_pairs,
            cold_start: self.cold.swap(false, Ordering::Relaxed),
            ..measures
        };
        let timestamp = unix_ms();
        let metrics = emf::document(&self.namespace, audit, &measures, timestamp);
        self.lines.write(audit.to_line(), metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_audit_line_then_its_metrics_and_counts_the_cold_start_once() {
        let tokens = Arc::new(TokenCounters::default());
        let observer = Observer::new("Ns".into(), Lines::memory(), tokens.clone());
        let audit = Audit {
            request_id: "r".into(),
            status: 200,
            ..Audit::default()
        };
        tokens.refreshed();
        tokens.refreshed();
        observer.record(&audit, Measures::default());
        tokens.refreshed();
        tokens.written(2);
        observer.record(&audit, Measures::default());
        let lines = observer.lines().kept();
        assert_eq!(lines.len(), 4);
        let parse = |i: usize| serde_json::from_str::<serde_json::Value>(&lines[i]).unwrap();
        assert_eq!(parse(0)["requestId"], "r");
        assert_eq!(
            (
                parse(1)["ColdStart"].as_u64(),
                parse(1)["TokenRefreshes"].as_u64()
            ),
            (Some(1), Some(2))
        );
        assert_eq!(
            (
                parse(3).get("ColdStart"),
                parse(3)["TokenRefreshes"].as_u64()
            ),
            (None, Some(1))
        );
        assert_eq!(
            parse(3)["UnwrittenTokenPairs"].as_u64(),
            Some(1),
            "the pairs unwritten now"
        );
    }
}
