//! The stand-in's CSV imports: what `GET …/csv/{csvId}?skip=N&limit=M` shows. An import is
//! `pending` until a PATCH is applied, then `importing`, then — once its import time has passed —
//! `completed`, or `failed` if a test scripted it so (or whatever status a test set). Its posts
//! (three unless scripted) are listed page by page, with their scripted error messages once the
//! import is over. Every applied PATCH is counted, so a test can tell a finalize applied twice
//! from one answered twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long an applied import stays `importing` unless told otherwise.
pub const DEFAULT_IMPORT_TIME: Duration = Duration::from_secs(2);
/// Posts in an import unless scripted.
const DEFAULT_POSTS: u64 = 3;

/// How a scripted import turns out.
#[derive(Debug, Clone)]
pub struct ImportScript {
    /// Posts in the import.
    pub posts: u64,
    /// Posts that fail (index from 0) and HighLevel's message for each.
    pub errors: Vec<(u64, String)>,
    /// The status it ends in: `completed` or `failed`.
    pub ends: String,
    /// How long it stays `importing` after its PATCH, when not the stand-in's `import_time`.
    pub time: Option<Duration>,
}

#[derive(Debug)]
struct Import {
    applied_at: Option<Instant>,
    applied: u64,
    set: Option<String>,
    posts: u64,
    errors: BTreeMap<u64, String>,
    ends: String,
    time: Option<Duration>,
}

impl Default for Import {
    fn default() -> Self {
        Self {
            applied_at: None,
            applied: 0,
            set: None,
            posts: DEFAULT_POSTS,
            errors: BTreeMap::new(),
            ends: "completed".into(),
            time: None,
        }
    }
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

    /// How the import turns out once applied.
    pub(super) fn script(&self, location: &str, csv: &str, script: ImportScript) {
        self.with(location, csv, |import| {
            import.posts = script.posts;
            import.errors = script.errors.into_iter().collect();
            import.ends = script.ends;
            import.time = script.time;
        });
    }

    /// Shows `status` for the import from now on (`deleted`, `failed`, …).
    pub(super) fn set_status(&self, location: &str, csv: &str, status: &str) {
        self.with(location, csv, |import| import.set = Some(status.to_owned()));
    }

    /// HighLevel's `GetCsvPostResponseDTO` for the import now, after its scripted time (else
    /// `import_time`) of importing: its status and the `limit` posts from `skip` on (with their error messages
    /// once it is over).
    pub(super) fn read(
        &self,
        location: &str,
        csv: &str,
        import_time: Duration,
        (skip, limit): (u64, u64),
    ) -> Value {
        self.with(location, csv, |import| {
            let status = match (&import.set, import.applied_at) {
                (Some(set), _) => set.clone(),
                (None, None) => "pending".into(),
                (None, Some(at)) if at.elapsed() < import.time.unwrap_or(import_time) => {
                    "importing".into()
                }
                (None, Some(_)) => import.ends.clone(),
            };
            let over = matches!(status.as_str(), "completed" | "failed");
            let posts: Vec<Value> = (skip..import.posts.min(skip.saturating_add(limit)))
                .map(|index| {
                    let mut post = json!({"summary": format!("post {index}")});
                    if let Some(error) = import.errors.get(&index).filter(|_| over) {
                        post["errorMessage"] = json!(error);
                    }
                    post
                })
                .collect();
            json!({
                "success": true,
                "statusCode": 200,
                "message": "Fetched CSV Post",
                "results": {
                    "csv": {"_id": csv, "locationId": location, "status": status},
                    "count": import.posts,
                    "posts": posts,
                },
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(imports: &Imports, import_time: Duration) -> Value {
        imports.read("L", "C", import_time, (0, 100))["results"]["csv"]["status"].clone()
    }

    #[test]
    fn an_import_is_pending_until_applied_then_importing_then_completed() {
        let imports = Imports::default();
        assert_eq!(status(&imports, Duration::ZERO), "pending");
        imports.apply("L", "C");
        assert_eq!(status(&imports, Duration::from_secs(60)), "importing");
        assert_eq!(status(&imports, Duration::ZERO), "completed");
        imports.apply("L", "C");
        assert_eq!(imports.applied("L", "C"), 2);
        assert_eq!(imports.applied("L", "other"), 0);
        imports.set_status("L", "C", "deleted");
        assert_eq!(status(&imports, Duration::ZERO), "deleted");
    }

    #[test]
    fn a_scripted_import_pages_its_posts_and_shows_their_errors_once_over() {
        let imports = Imports::default();
        imports.script(
            "L",
            "C",
            ImportScript {
                posts: 150,
                errors: vec![(120, "media refused".into())],
                ends: "failed".into(),
                time: None,
            },
        );
        imports.apply("L", "C");
        let running = imports.read("L", "C", Duration::from_secs(60), (100, 100));
        assert_eq!(running["results"]["posts"].as_array().unwrap().len(), 50);
        assert!(running["results"]["posts"][20]
            .get("errorMessage")
            .is_none());
        let over = imports.read("L", "C", Duration::ZERO, (100, 100));
        assert_eq!(over["results"]["csv"]["status"], "failed");
        assert_eq!(over["results"]["count"], 150);
        assert_eq!(
            over["results"]["posts"][20]["errorMessage"],
            "media refused"
        );
    }
}
