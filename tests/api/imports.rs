//! Following an import on demand (sync mode with a table): `GET …/finalizations/{id}
//! ?refresh=true` reads the CSV from HighLevel — page by page, up to a thousand posts — and
//! keeps what it saw on the record: the import's status, its posts, the failed ones and the
//! first twenty errors; at most once per 30 s per record.

use std::time::Duration;

use ghl_csv_finalize::local::standin::ImportScript;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::stores::*;

async fn app_with_imports(import_time: Duration) -> TestApp {
    spawn_app_with(Setup {
        records: true,
        standin: Behaviour {
            import_time: Some(import_time),
            ..Behaviour::default()
        },
        ..Setup::default()
    })
    .await
}

/// The status route for `id`, with `?refresh=true` when `refresh`.
async fn status(t: &TestApp, id: &str, refresh: bool) -> Value {
    let event = edit(&status_event(id), |v| {
        if refresh {
            v["rawQueryString"] = json!("refresh=true");
            v["queryStringParameters"] = json!({"refresh": "true"});
        }
    });
    let answer = t.invoke(&event).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body["finalization"].clone()
}

#[tokio::test]
async fn a_refresh_reads_a_finished_import_with_its_failed_posts_and_keeps_it() {
    let t = app_with_imports(Duration::ZERO).await;
    let long = "m".repeat(600);
    t.highlevel.script_import(
        LOCATION,
        CSV,
        ImportScript {
            posts: 250,
            errors: vec![(3, "media refused".into()), (240, long)],
            ends: "failed".into(),
            time: None,
        },
    );
    t.highlevel_answers(highlevel_ok());
    let finalized = t.invoke(EV_JSON_BODY).await;
    assert_eq!(finalized.status, 200, "{}", finalized.text);
    let id = finalized.body["finalizationId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        status(&t, &id, false).await.get("import").is_none(),
        "not read yet"
    );
    let reads_before = t.highlevel.csv_reads().len();

    let seen = status(&t, &id, true).await;
    let import = &seen["import"];
    assert_eq!(seen["status"], "finalized", "the finalize itself succeeded");
    assert_eq!(
        (&import["status"], &import["posts"], &import["failedPosts"]),
        (&json!("failed"), &json!(250), &json!(2))
    );
    assert_eq!(
        import["errors"][0],
        json!({"index": 3, "message": "media refused"})
    );
    assert_eq!(import["errors"][1]["index"], 240);
    assert_eq!(
        import["errors"][1]["message"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        500,
        "a message is cut to 500 characters"
    );
    assert!(import["completedAt"].is_string() && import["checkedAt"].is_string());
    let pages: Vec<String> = t.highlevel.csv_reads()[reads_before..]
        .iter()
        .map(|r| r.path.split_once('?').unwrap().1.to_owned())
        .collect();
    assert_eq!(
        pages,
        [
            "skip=0&limit=100",
            "skip=100&limit=100",
            "skip=200&limit=100"
        ],
        "read page by page"
    );

    // Within 30 s the record answers; and what was seen is kept on it.
    assert_eq!(status(&t, &id, true).await["import"], *import);
    assert_eq!(status(&t, &id, false).await["import"], *import);
    assert_eq!(
        t.highlevel.csv_reads().len(),
        reads_before + 3,
        "no more reads"
    );
}

#[tokio::test]
async fn a_refresh_shows_an_import_still_running_without_a_completion_time() {
    let t = app_with_imports(Duration::from_secs(600)).await;
    t.highlevel_answers(highlevel_ok());
    let finalized = t.invoke(EV_JSON_BODY).await;
    let id = finalized.body["finalizationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let import = status(&t, &id, true).await["import"].clone();
    assert_eq!(
        (&import["status"], &import["posts"], &import["failedPosts"]),
        (&json!("importing"), &json!(3), &json!(0))
    );
    assert!(import.get("completedAt").is_none(), "{import}");
}

#[tokio::test]
async fn a_refresh_of_a_record_not_finalized_reads_nothing() {
    let t = app_with_imports(Duration::ZERO).await;
    t.highlevel_answers(Scripted::status(422));
    let failed = t.invoke(EV_JSON_BODY).await;
    assert_eq!(failed.status, 422);
    let id = failed.body["finalizationId"].as_str().unwrap().to_owned();
    let reads_before = t.highlevel.csv_reads().len();
    let record = status(&t, &id, true).await;
    assert_eq!(record["status"], "failed");
    assert!(record.get("import").is_none());
    assert_eq!(t.highlevel.csv_reads().len(), reads_before);
}
