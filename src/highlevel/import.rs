//! A CSV import as HighLevel shows it after the finalize: its status, its posts and the ones
//! that failed, read page by page from `GET …/csv/{csvId}?skip=N&limit=100` (pure).

use serde_json::{json, Value};

use crate::upstream::UpstreamReply;

/// Posts read per page.
pub const PAGE_SIZE: u64 = 100;
/// Posts read at most (ten pages).
pub const MAX_POSTS: u64 = 1_000;
/// Post errors kept at most.
pub const MAX_ERRORS: usize = 20;
/// Characters of a post's error message kept at most.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// The statuses after which an import changes no more.
pub const FINAL_STATUSES: [&str; 3] = ["completed", "failed", "deleted"];

/// One page of a CSV read: the import's status, its post count, and each post's error message
/// (`None` for a post without one), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvPage {
    /// `results.csv.status`.
    pub status: String,
    /// `results.count`, when given.
    pub count: Option<u64>,
    /// `results.posts[].errorMessage`, trimmed; empty counts as none.
    pub post_errors: Vec<Option<String>>,
}

impl CsvPage {
    /// The page in HighLevel's answer to a CSV read, when it accepted the read and the answer
    /// has the import (its id as `id` or `_id`, as `v3` and `2021-07-28` give it).
    pub fn from_reply(reply: &UpstreamReply) -> Option<Self> {
        if !(200..300).contains(&reply.status) {
            return None;
        }
        let results = reply.body.get("results")?;
        let csv = results.get("csv")?;
        csv.get("id").or_else(|| csv.get("_id"))?;
        let status = super::client::csv_status(reply)?;
        let post_errors = results
            .get("posts")
            .and_then(Value::as_array)
            .map(|posts| {
                posts
                    .iter()
                    .map(|post| {
                        post.get("errorMessage")
                            .and_then(Value::as_str)
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            status,
            count: results.get("count").and_then(Value::as_u64),
            post_errors,
        })
    }
}

/// One failed post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostError {
    /// Its place in the import, from 0.
    pub index: u64,
    /// HighLevel's message, at most [`MAX_MESSAGE_CHARS`] characters.
    pub message: String,
}

/// What the function saw of an import: the record's `import`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// HighLevel's status of the import.
    pub status: String,
    /// Posts in the import.
    pub posts: u64,
    /// Posts with an error message (of those read: at most [`MAX_POSTS`]).
    pub failed_posts: u64,
    /// The first [`MAX_ERRORS`] failed posts.
    pub errors: Vec<PostError>,
    /// When it was read (Unix ms).
    pub checked_at_ms: u64,
    /// When it was first seen in a final status (Unix ms).
    pub completed_at_ms: Option<u64>,
}

impl Import {
    /// The import from the pages read, in order, at `now_ms`; `earlier` is what was seen before,
    /// whose completion time stands.
    pub fn from_pages(pages: &[CsvPage], now_ms: u64, earlier: Option<&Import>) -> Option<Self> {
        let last = pages.last()?;
        let mut errors = Vec::new();
        let mut failed_posts = 0u64;
        let mut read = 0u64;
        for page in pages {
            for error in &page.post_errors {
                if let Some(message) = error {
                    failed_posts += 1;
                    if errors.len() < MAX_ERRORS {
                        errors.push(PostError {
                            index: read,
                            message: message.chars().take(MAX_MESSAGE_CHARS).collect(),
                        });
                    }
                }
                read += 1;
            }
        }
        let done = FINAL_STATUSES.contains(&last.status.as_str());
        Some(Self {
            status: last.status.clone(),
            posts: last.count.unwrap_or(read).max(read),
            failed_posts,
            errors,
            checked_at_ms: now_ms,
            completed_at_ms: earlier
                .and_then(|e| e.completed_at_ms)
                .or(done.then_some(now_ms)),
        })
    }

    /// Whether the import changes no more.
    pub fn is_final(&self) -> bool {
        FINAL_STATUSES.contains(&self.status.as_str())
    }

    /// As the status route shows it and the record stores it.
    pub fn to_json(&self) -> Value {
        let mut shown = json!({
            "status": self.status,
            "posts": self.posts,
            "failedPosts": self.failed_posts,
            "errors": self.errors.iter().map(|e| json!({"index": e.index, "message": e.message})).collect::<Vec<_>>(),
            "checkedAt": crate::request::deadline::rfc3339(self.checked_at_ms),
        });
        if let Some(at) = self.completed_at_ms {
            shown["completedAt"] = json!(crate::request::deadline::rfc3339(at));
        }
        shown
    }
}

impl Import {
    /// As the record stores it (times in Unix ms).
    pub fn to_stored(&self) -> Value {
        json!({
            "status": self.status,
            "posts": self.posts,
            "failedPosts": self.failed_posts,
            "errors": self.errors.iter().map(|e| json!({"index": e.index, "message": e.message})).collect::<Vec<_>>(),
            "checkedAtMs": self.checked_at_ms,
            "completedAtMs": self.completed_at_ms,
        })
    }

    /// From what the record stored; `None` for anything else.
    pub fn from_stored(stored: &Value) -> Option<Self> {
        let errors = stored
            .get("errors")?
            .as_array()?
            .iter()
            .map(|e| {
                Some(PostError {
                    index: e.get("index")?.as_u64()?,
                    message: e.get("message")?.as_str()?.to_owned(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            status: stored.get("status")?.as_str()?.to_owned(),
            posts: stored.get("posts")?.as_u64()?,
            failed_posts: stored.get("failedPosts")?.as_u64()?,
            errors,
            checked_at_ms: stored.get("checkedAtMs")?.as_u64()?,
            completed_at_ms: stored.get("completedAtMs").and_then(Value::as_u64),
        })
    }
}

/// Whether the pages read so far leave more to read: a full page, and fewer than
/// [`MAX_POSTS`] read.
pub fn more_to_read(pages: &[CsvPage]) -> bool {
    let read: u64 = pages.iter().map(|p| p.post_errors.len() as u64).sum();
    let last_full = pages
        .last()
        .is_some_and(|p| p.post_errors.len() as u64 >= PAGE_SIZE);
    let known_more = pages
        .last()
        .and_then(|p| p.count)
        .is_none_or(|count| read < count);
    last_full && known_more && read < MAX_POSTS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(status: &str, count: u64, errors: &[Option<&str>]) -> CsvPage {
        CsvPage {
            status: status.into(),
            count: Some(count),
            post_errors: errors.iter().map(|e| e.map(str::to_owned)).collect(),
        }
    }

    #[test]
    fn reads_a_page_with_the_id_as_id_or_underscore_id() {
        for id in ["id", "_id"] {
            let body = json!({"results": {"csv": {id: "C1", "status": "completed"}, "count": 2,
                "posts": [{"summary": "a"}, {"errorMessage": "  media refused  "}]}});
            let page = CsvPage::from_reply(&UpstreamReply::new(200, body, false)).unwrap();
            assert_eq!(page.status, "completed");
            assert_eq!(page.count, Some(2));
            assert_eq!(page.post_errors, [None, Some("media refused".into())]);
        }
        let no_id = json!({"results": {"csv": {"status": "completed"}}});
        assert!(CsvPage::from_reply(&UpstreamReply::new(200, no_id, false)).is_none());
        let refused = json!({"results": {"csv": {"id": "C1", "status": "completed"}}});
        assert!(CsvPage::from_reply(&UpstreamReply::new(429, refused, false)).is_none());
    }

    #[test]
    fn an_import_counts_failed_posts_and_keeps_the_first_twenty_errors_cut_to_500_characters() {
        let long = "x".repeat(600);
        let mut errors: Vec<Option<&str>> = vec![None; 5];
        errors.extend(std::iter::repeat_n(Some(long.as_str()), 30));
        let import = Import::from_pages(&[page("failed", 35, &errors)], 9_000, None).unwrap();
        assert_eq!((import.posts, import.failed_posts), (35, 30));
        assert_eq!(import.errors.len(), MAX_ERRORS);
        assert_eq!(import.errors[0].index, 5, "indexes count every post");
        assert_eq!(import.errors[0].message.chars().count(), MAX_MESSAGE_CHARS);
        assert_eq!(import.completed_at_ms, Some(9_000));
        assert!(import.is_final());
        let json = import.to_json();
        assert_eq!(json["failedPosts"], 30);
        assert_eq!(json["completedAt"], "1970-01-01T00:00:09.000Z");
    }

    #[test]
    fn a_running_import_has_no_completion_and_a_final_one_keeps_its_first() {
        let running = Import::from_pages(&[page("importing", 3, &[None])], 1_000, None).unwrap();
        assert_eq!(running.completed_at_ms, None);
        assert!(!running.is_final());
        let done = Import::from_pages(&[page("completed", 3, &[None])], 2_000, None).unwrap();
        let again =
            Import::from_pages(&[page("completed", 3, &[None])], 5_000, Some(&done)).unwrap();
        assert_eq!(again.completed_at_ms, Some(2_000));
        assert_eq!(again.checked_at_ms, 5_000);
    }

    #[test]
    fn an_import_reads_back_as_it_was_stored() {
        let errors = [Some("refused"), None];
        let import = Import::from_pages(&[page("failed", 2, &errors)], 7, None).unwrap();
        assert_eq!(Import::from_stored(&import.to_stored()), Some(import));
        assert_eq!(Import::from_stored(&json!({"status": 1})), None);
    }

    #[test]
    fn pages_are_read_while_full_up_to_a_thousand_posts() {
        let full = |count| page("completed", count, &[None; 100]);
        assert!(more_to_read(&[full(250)]));
        assert!(!more_to_read(&[full(100)]), "all read");
        assert!(
            !more_to_read(&[page("completed", 250, &[None; 50])]),
            "a short page"
        );
        let ten: Vec<CsvPage> = (0..10).map(|_| full(5_000)).collect();
        assert!(!more_to_read(&ten), "a thousand at most");
    }
}
