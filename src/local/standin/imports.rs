//! The stand-in's CSV imports: what `GET …/csv/{csvId}` shows. An import is `pending` until a
//! PATCH is applied, then `importing`, then `completed` once its import time has passed (or
//! whatever status a test set). Every applied PATCH is counted, so a test can tell a finalize
//! applied twice from one answered twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long an applied import stays `importing` unless told otherwise.
pub const DEFAULT_IMPORT_TIME: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Import {
    applied_at: Option<Instant>,
    applied: u64,
    set: Option<String>,
}

/// Every CSV import the stand-in has heard of, by (locationId, csvId).
#[derive(Debug, Default)]
pub(super) struct Imports {
    imports: Mutex<HashMap<(String, String), Import>>,
}

impl Imports {
    fn with<T>(&self, location: &str, csv: &str, work: impl FnOnce(&mut Import) -> T) -> T {
        let mut imports = self
            .imports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        work(
            imports
                .entry((location.to_owned(), csv.to_owned()))
                .or_default(),
        )
    }

    /// A PATCH for the import was applied (whether or not its answer reaches the caller).
    pub(super) fn apply(&self, location: &str, csv: &str) {
        self.with(location, csv, |import| {
            import.applied += 1;
            import.applied_at.get_or_insert_with(Instant::now);
        });
    }

    /// PATCHes applied to the import so far.
    pub(super) fn applied(&self, location: &str, csv: &str) -> u64 {
        self.with(location, csv, |import| import.applied)
    }

    /// Shows `status` for the import from now on (`deleted`, `failed`, …).
    pub(super) fn set_status(&self, location: &str, csv: &str, status: &str) {
        self.with(location, csv, |import| import.set = Some(status.to_owned()));
    }

    /// The import's status now, after `import_time` of importing.
    pub(super) fn status(&self, location: &str, csv: &str, import_time: Duration) -> String {
        self.with(location, csv, |import| {
            if let Some(set) = &import.set {
                return set.clone();
            }
            match import.applied_at {
                None => "pending".into(),
                Some(at) if at.elapsed() < import_time => "importing".into(),
                Some(_) => "completed".into(),
            }
        })
    }
}

/// HighLevel's `GetCsvPostResponseDTO` for an import in `status`.
pub(super) fn csv_body(location: &str, csv: &str, status: &str) -> Value {
    json!({
        "success": true,
        "statusCode": 200,
        "message": "Fetched CSV Post",
        "results": {
            "csv": {"_id": csv, "locationId": location, "status": status},
            "count": 0,
            "posts": [],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_is_pending_until_applied_then_importing_then_completed() {
        let imports = Imports::default();
        assert_eq!(imports.status("L", "C", Duration::ZERO), "pending");
        imports.apply("L", "C");
        assert_eq!(
            imports.status("L", "C", Duration::from_secs(60)),
            "importing"
        );
        assert_eq!(imports.status("L", "C", Duration::ZERO), "completed");
        imports.apply("L", "C");
        assert_eq!(imports.applied("L", "C"), 2);
        assert_eq!(imports.applied("L", "other"), 0);
        imports.set_status("L", "C", "deleted");
        assert_eq!(imports.status("L", "C", Duration::ZERO), "deleted");
    }
}
