//! One agency connection for every sub-account: each location's token minted on demand from
//! the agency's OAuth pair (`GHL_AGENCY_SECRET_ID`) at the stand-in's `/oauth/locationToken`,
//! kept in memory until shortly before it expires, one mint per location at a time; a refused
//! mint is 403 and remembered; a 401 on a minted token mints once more. The agency pair is
//! refreshed and written back by the OAuth rules, also when two instances race on it.

use std::sync::Arc;
use std::time::Duration;

use ghl_csv_finalize::local::standin::TokenEndpoint;
use serde_json::{json, Value};

use crate::helpers::*;

const COMPANY: &str = "co-agency-0001";
const OTHER: &str = "Lx2OtherLocation99";

/// The agency's OAuth entry: the "OAuth tokens" form plus `companyId` and `user_type`.
fn agency_entry(access: &str, refresh: &str, expires_at: i64) -> Value {
    let mut entry = oauth_entry(access, refresh, expires_at);
    entry["companyId"] = json!(COMPANY);
    entry["user_type"] = json!("Company");
    entry
}

/// An app minting from an agency pair expiring at `expires_at`, the stand-in holding it live.
async fn agency_app(
    expires_at: i64,
    endpoint: TokenEndpoint,
    env: Vec<(&'static str, String)>,
) -> TestApp {
    let t = spawn_app_with(Setup {
        agency: true,
        token_secret: Some(
            agency_entry("agency-access-0", "agency-refresh-0", expires_at).to_string(),
        ),
        env,
        standin: Behaviour {
            oauth_client: Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned())),
            ..Behaviour::default()
        },
        ..Setup::default()
    })
    .await;
    t.highlevel
        .oauth_pair(COMPANY, "agency-access-0", "agency-refresh-0");
    t.highlevel.token_endpoint(endpoint);
    t
}

/// The path-parameter sample event for `csv` at `location`.
fn event(location: &str, csv: &str) -> String {
    edit(EV_PATH_PARAMS, |v| {
        v["pathParameters"]["locationId"] = json!(location);
        v["pathParameters"]["csvId"] = json!(csv);
        v["rawPath"] = json!(format!("/locations/{location}/csv/{csv}/finalize"));
    })
}

fn mints(t: &TestApp, location: &str) -> u64 {
    t.highlevel.mints().get(location).copied().unwrap_or(0)
}

fn mint_calls(t: &TestApp) -> usize {
    t.upstream_requests()
        .iter()
        .filter(|r| r.path == "/oauth/locationToken")
        .count()
}

#[tokio::test]
async fn a_location_token_is_minted_on_first_use_and_kept_for_the_next_finalize() {
    let t = agency_app(now_unix() + 86_399, TokenEndpoint::default(), vec![]).await;
    for csv in ["csv-1", "csv-2"] {
        let answer = t.invoke(&event(LOCATION, csv)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    let answer = t.invoke(&event(OTHER, "csv-3")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!((mints(&t, LOCATION), mints(&t, OTHER)), (1, 1));
    let tokens = t.bearer_tokens();
    assert_eq!(tokens.len(), 3);
    assert!(
        tokens[0].contains("location-") && tokens[0] == tokens[1],
        "{tokens:?}"
    );
    assert_ne!(tokens[1], tokens[2], "each location its own token");
    let mint = t
        .upstream_requests()
        .into_iter()
        .find(|r| r.path == "/oauth/locationToken")
        .unwrap();
    assert_eq!(mint.headers["version"], "2021-07-28");
    assert_eq!(mint.headers["authorization"], "Bearer [redacted]");
    assert_eq!(
        mint.body,
        json!(format!("companyId={COMPANY}&locationId={LOCATION}"))
    );
    assert!(t.metric_documents().iter().any(|m| m["TokensMinted"] == 1));
}

#[tokio::test]
async fn a_minted_token_is_minted_again_once_it_nears_its_expiry() {
    let endpoint = TokenEndpoint {
        minted_expires_in: Some(3),
        ..TokenEndpoint::default()
    };
    let t = agency_app(
        now_unix() + 86_399,
        endpoint,
        vec![("OAUTH_REFRESH_SKEW_SECS", "1".into())],
    )
    .await;
    assert_eq!(t.invoke(&event(LOCATION, "csv-1")).await.status, 200);
    assert_eq!(t.invoke(&event(LOCATION, "csv-2")).await.status, 200);
    assert_eq!(mints(&t, LOCATION), 1, "still two seconds from its skew");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(t.invoke(&event(LOCATION, "csv-3")).await.status, 200);
    assert_eq!(
        mints(&t, LOCATION),
        2,
        "within the skew of its expiry: minted again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_one_location_make_one_mint() {
    let endpoint = TokenEndpoint {
        mint_delay: Duration::from_millis(300),
        ..TokenEndpoint::default()
    };
    let t = Arc::new(agency_app(now_unix() + 86_399, endpoint, vec![]).await);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..6 {
        let t = Arc::clone(&t);
        calls.spawn(async move { t.invoke(&event(LOCATION, &format!("csv-{i}"))).await });
    }
    while let Some(answer) = calls.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    assert_eq!(mints(&t, LOCATION), 1);
    assert_eq!(mint_calls(&t), 1);
}

#[tokio::test]
async fn a_location_the_app_is_not_installed_at_is_403_and_remembered() {
    let t = agency_app(now_unix() + 86_399, TokenEndpoint::default(), vec![]).await;
    t.highlevel.uninstall(OTHER);
    for _ in 0..2 {
        let refused = t.invoke(&event(OTHER, "csv-1")).await;
        assert_eq!(
            (refused.status, code(&refused)),
            (403, "location_not_allowed"),
            "{}",
            refused.text
        );
    }
    assert_eq!(mint_calls(&t), 1, "the refusal is remembered");
    assert!(t.highlevel.finalize_requests().is_empty());
    assert_eq!(
        t.invoke(&event(LOCATION, "csv-1")).await.status,
        200,
        "other locations go on"
    );
}

#[tokio::test]
async fn a_mint_the_token_endpoint_cannot_make_now_is_503_and_not_remembered() {
    let failing = TokenEndpoint {
        failure: Some(503),
        ..TokenEndpoint::default()
    };
    let t = agency_app(now_unix() + 86_399, failing, vec![]).await;
    let answer = t.invoke(&event(LOCATION, "csv-1")).await;
    assert_eq!(
        (answer.status, code(&answer)),
        (503, "upstream_unavailable"),
        "{}",
        answer.text
    );
    assert!(answer.headers.contains_key("retry-after"));
    t.highlevel.token_endpoint(TokenEndpoint::default());
    assert_eq!(
        t.invoke(&event(LOCATION, "csv-1")).await.status,
        200,
        "tried again at once"
    );
}

#[tokio::test]
async fn a_401_on_a_minted_token_mints_once_more_and_retries_once() {
    let t = agency_app(now_unix() + 86_399, TokenEndpoint::default(), vec![]).await;
    t.highlevel_answers_in_turn([Scripted::status(401), Scripted::Documented]);
    let answer = t.invoke(&event(LOCATION, "csv-1")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(mints(&t, LOCATION), 2);
    let tokens = t.bearer_tokens();
    assert_eq!(tokens.len(), 2);
    assert_ne!(tokens[0], tokens[1], "retried with the new token");
}

#[tokio::test]
async fn an_agency_token_the_endpoint_refuses_is_renewed_and_the_mint_made_again() {
    let t = agency_app(now_unix() + 86_399, TokenEndpoint::default(), vec![]).await;
    // HighLevel revoked the access token the secret holds; its refresh token still works.
    t.highlevel
        .oauth_pair(COMPANY, "agency-access-revoked-1", "agency-refresh-0");
    let answer = t.invoke(&event(LOCATION, "csv-1")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(t.highlevel.refreshes().0, 1);
    let stored = stored_secret(&t.token_secret_id).await;
    assert_eq!(
        stored["access_token"],
        t.highlevel.live_pair(COMPANY).unwrap().0.as_str(),
        "the renewed agency pair was written back"
    );
    assert_eq!(stored["companyId"], COMPANY, "its other fields kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_racing_on_an_expired_agency_pair_refresh_it_once_and_mint_for_all() {
    let endpoint = TokenEndpoint {
        delay: Duration::from_millis(200),
        ..TokenEndpoint::default()
    };
    let first = agency_app(now_unix() - 5, endpoint, vec![]).await;
    let second = spawn_app_with(Setup {
        agency: true,
        token_secret: None,
        existing_token_secret_id: Some(first.token_secret_id.clone()),
        api_base_url: Some(first.highlevel.base_url()),
        ..Setup::default()
    })
    .await;
    let (first, second) = (Arc::new(first), Arc::new(second));
    let mut calls = tokio::task::JoinSet::new();
    for (i, location) in [LOCATION, OTHER, "Lx3ThirdLocation77"]
        .into_iter()
        .enumerate()
    {
        for instance in [&first, &second] {
            let instance = Arc::clone(instance);
            let event = event(location, &format!("csv-{i}"));
            calls.spawn(async move { instance.invoke(&event).await });
        }
    }
    while let Some(answer) = calls.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    assert_eq!(
        first.highlevel.refreshes().0,
        1,
        "one refresh for one expiry"
    );
    let stored = stored_secret(&first.token_secret_id).await;
    assert_eq!(
        stored["refresh_token"],
        first.highlevel.live_pair(COMPANY).unwrap().1.as_str(),
        "the secret holds the live agency pair"
    );
}

#[tokio::test]
async fn no_minted_or_agency_token_reaches_a_response_or_the_log() {
    let t = agency_app(now_unix() + 86_399, TokenEndpoint::default(), vec![]).await;
    let answer = t.invoke(&event(LOCATION, "csv-1")).await;
    assert_eq!(answer.status, 200);
    let minted = t.bearer_tokens()[0].clone();
    let lines = t.app.kept_lines().join("\n");
    for secret in [
        minted.as_str(),
        "agency-access-0",
        "agency-refresh-0",
        CLIENT_SECRET,
    ] {
        assert!(!answer.text.contains(secret), "{secret} in the response");
        assert!(!lines.contains(secret), "{secret} in a kept line");
    }
}

#[tokio::test]
async fn an_uninstall_drops_the_minted_token_and_its_finalizes_answer_403() {
    let key = ghl_csv_finalize::local::standin::StandIn::app_webhook_public_key_pem();
    let t = agency_app(
        now_unix() + 86_399,
        TokenEndpoint::default(),
        vec![("GHL_WEBHOOK_PUBLIC_KEY", key)],
    )
    .await;
    assert_eq!(t.invoke(&event(LOCATION, "csv-1")).await.status, 200);
    let body = json!({"type": "UNINSTALL", "companyId": COMPANY, "locationId": LOCATION,
                      "webhookId": unique("wh"), "timestamp": now_unix() * 1000})
    .to_string();
    let signature = ghl_csv_finalize::local::standin::StandIn::sign_app_webhook(body.as_bytes());
    let webhook = edit(
        &without_credentials(&with_body(EV_JSON_BODY, &body, Some("application/json"))),
        |v| v["rawPath"] = json!("/webhooks/highlevel"),
    );
    let webhook = with_header(&webhook, "x-ghl-signature", Some(&signature));
    assert_eq!(t.invoke(&webhook).await.status, 200);
    let refused = t.invoke(&event(LOCATION, "csv-2")).await;
    assert_eq!(
        (refused.status, code(&refused)),
        (403, "location_not_allowed")
    );
    assert_eq!(mint_calls(&t), 1, "no mint for an uninstalled location");
}
