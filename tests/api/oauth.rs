//! OAuth sub-account tokens that refresh themselves: proactive and 401-driven refresh, the map
//! form, a reused refresh token recovered by re-reading, a failed write kept and retried, and
//! concurrent instances (separate `App`s sharing one moto) racing on one expired pair.
//!
//! The stand-in's token endpoint issues rotating refresh tokens and refuses a reused one with
//! 400 `invalid_grant`, as HighLevel does; its finalize endpoint accepts only the live access
//! token of a location that has a pair.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;
use crate::stores::FaultProxy;
use serde_json::{json, Value};

const OTHER_LOCATION: &str = "Lx2OtherLocation99";

fn now() -> i64 {
    now_unix()
}

/// The path-parameter sample event, for another location.
fn event_for(location: &str) -> String {
    edit(EV_PATH_PARAMS, |v| {
        v["pathParameters"]["locationId"] = json!(location);
        v["rawPath"] = json!(format!("/locations/{location}/csv/{CSV}/finalize"));
    })
}

/// The live pair of `location` at the stand-in.
fn live(t: &TestApp, location: &str) -> (String, String) {
    t.highlevel
        .live_pair(location)
        .expect("the location has a pair")
}

/// Refreshes the stand-in granted and refused.
fn refreshes(t: &TestApp) -> (u64, u64) {
    t.highlevel.refreshes()
}

/// The one OAuth pair `secret` holds for [`LOCATION`] is also live at the stand-in.
async fn app_with_pair(entry: Value, live: (&str, &str), setup: Setup) -> TestApp {
    spawn_oauth_app(entry, &[(LOCATION, live.0, live.1)], setup).await
}

#[tokio::test]
async fn refreshes_an_access_token_that_expires_within_the_skew_and_stores_the_new_pair() {
    for per_location in [false, true] {
        let t = app_with_pair(
            oauth_entry("access-0", "refresh-0", now() + 60),
            ("access-0", "refresh-0"),
            Setup {
                per_location,
                ..Setup::default()
            },
        )
        .await;
        let response = t.invoke(EV_PATH_PARAMS).await;
        assert_eq!(response.status, 200, "{}", response.text);
        assert_eq!(
            response.body["attempts"], 1,
            "the token-endpoint call is not counted"
        );
        assert_eq!(refreshes(&t), (1, 0));
        let refresh = t
            .upstream_requests()
            .into_iter()
            .find(|r| r.path == "/oauth/token")
            .expect("the token endpoint was called");
        assert_eq!(
            refresh.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(refresh.body["grant_type"], "refresh_token");
        assert_eq!(refresh.body["user_type"], "Location");
        assert_eq!(refresh.body["client_id"], CLIENT_ID);
        let secret_id = ghl_csv_finalize::tokens::resolve(
            &t.token_secret_id,
            &ghl_csv_finalize::request::ids::LocationId::parse(LOCATION).unwrap(),
        );
        let secret = stored_secret(&secret_id).await;
        let (access, refresh) = live(&t, LOCATION);
        assert_eq!(secret["access_token"], access.as_str());
        assert_eq!(secret["refresh_token"], refresh.as_str());
        let expires_at = secret["expires_at"].as_i64().unwrap();
        assert!(
            (expires_at - (now() + 86399)).abs() < 30,
            "expires_at = now + expires_in"
        );
        assert_eq!(
            secret["companyId"], "keep-me-company",
            "unknown fields are kept"
        );
        assert_eq!(secret["client_secret"], CLIENT_SECRET);
        // Warm invocations use the new pair without refreshing again.
        assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
        assert_eq!(refreshes(&t), (1, 0));
    }
}

#[tokio::test]
async fn updates_expires_in_and_issued_at_when_the_entry_uses_them() {
    let mut entry = oauth_entry("access-0", "refresh-0", 0);
    entry.as_object_mut().unwrap().remove("expires_at");
    entry["expires_in"] = json!(86399);
    entry["issued_at"] = json!(now() - 86399);
    let t = app_with_pair(entry, ("access-0", "refresh-0"), Setup::default()).await;
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    let secret = stored_secret(&t.token_secret_id).await;
    assert_eq!(secret["expires_in"], 86399);
    assert!((secret["issued_at"].as_i64().unwrap() - now()).abs() < 30);
    assert!((secret["expires_at"].as_i64().unwrap() - (now() + 86399)).abs() < 30);
}

#[tokio::test]
async fn refreshes_when_highlevel_answers_401_and_retries_once() {
    // HighLevel no longer accepts access-0 (revoked), but refresh-0 is still live.
    let t = app_with_pair(
        oauth_entry("access-0", "refresh-0", now() + 80_000),
        ("access-revoked", "refresh-0"),
        Setup::default(),
    )
    .await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["attempts"], 2);
    assert_eq!(refreshes(&t), (1, 0));
    assert_eq!(
        stored_secret(&t.token_secret_id).await["refresh_token"],
        live(&t, LOCATION).1.as_str()
    );
}

#[tokio::test]
async fn keeps_every_other_entry_of_a_map_secret() {
    let secret = json!({
        LOCATION: oauth_entry("access-0", "refresh-0", now() + 10),
        OTHER_LOCATION: oauth_entry("access-other", "refresh-other", now() + 80_000),
        "PlainLocation1": "pit-plain-token",
    });
    let t = spawn_oauth_app(
        secret.clone(),
        &[
            (LOCATION, "access-0", "refresh-0"),
            (OTHER_LOCATION, "access-other", "refresh-other"),
        ],
        Setup::default(),
    )
    .await;
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    let after = stored_secret(&t.token_secret_id).await;
    assert_eq!(after[OTHER_LOCATION], secret[OTHER_LOCATION]);
    assert_eq!(after["PlainLocation1"], "pit-plain-token");
    assert_eq!(
        after[LOCATION]["refresh_token"],
        live(&t, LOCATION).1.as_str()
    );
    assert_eq!(after[LOCATION]["companyId"], "keep-me-company");
}

#[tokio::test]
async fn adopts_the_pair_another_instance_stored_when_the_refresh_token_was_already_used() {
    // Another instance already spent refresh-0; its new pair reaches the secret a moment later.
    let t = app_with_pair(
        oauth_entry("access-0", "refresh-0", now() + 10),
        ("access-won", "refresh-won"),
        Setup::default(),
    )
    .await;
    let secret_id = t.token_secret_id.clone();
    let winner = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        put_secret(
            &secret_id,
            &oauth_entry("access-won", "refresh-won", now() + 86399).to_string(),
        )
        .await;
    });
    let response = t.invoke(EV_PATH_PARAMS).await;
    winner.await.unwrap();
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(refreshes(&t), (0, 1), "one refresh refused, none granted");
    assert_eq!(
        stored_secret(&t.token_secret_id).await["refresh_token"],
        "refresh-won"
    );
}

#[tokio::test]
async fn answers_502_when_the_refresh_token_is_refused_and_no_newer_pair_appears() {
    let t = app_with_pair(
        oauth_entry("access-0", "refresh-dead", now() + 10),
        ("access-x", "refresh-x"),
        Setup::default(),
    )
    .await;
    // It waits for a winner's pair before giving up.
    let response = waited_at_least(Duration::from_millis(1800), t.invoke(EV_PATH_PARAMS)).await;
    assert_eq!(response.status, 502, "{}", response.text);
    assert_eq!(code(&response), "upstream_auth_failed");
    assert!(
        t.highlevel.finalize_requests().is_empty(),
        "finalize was not called"
    );
}

#[tokio::test]
async fn maps_token_endpoint_failures_to_the_contract() {
    // An expired access token must be refreshed: every failure answers the request. (A refused
    // refresh also fails a still-valid one: that is no passing cause.)
    for (failure, expires_at, status, expected_code) in [
        (401u16, now() + 10, 502u16, "upstream_auth_failed"),
        (422, now() - 5, 502, "upstream_auth_failed"),
        (503, now() - 5, 503, "upstream_unavailable"),
        (429, now() - 5, 503, "upstream_unavailable"),
    ] {
        let t = app_with_pair(
            oauth_entry("access-0", "refresh-0", expires_at),
            ("access-0", "refresh-0"),
            Setup::default(),
        )
        .await;
        t.highlevel.token_endpoint(TokenEndpoint {
            failure: Some(failure),
            ..TokenEndpoint::default()
        });
        let response = t.invoke(EV_PATH_PARAMS).await;
        assert_eq!(response.status, status, "{failure}: {}", response.text);
        assert_eq!(code(&response), expected_code);
        assert_eq!(
            stored_secret(&t.token_secret_id).await["refresh_token"],
            "refresh-0",
            "nothing written"
        );
    }
    let mut entry = oauth_entry("access-0", "refresh-0", now() + 10);
    entry.as_object_mut().unwrap().remove("client_secret");
    let t = app_with_pair(entry, ("access-0", "refresh-0"), Setup::default()).await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!((response.status, code(&response)), (500, "config_error"));
}

/// The pair `access-0`/`refresh-0`, expiring at `expires_at`, in a secret read and written
/// through `writes`.
async fn pair_through(writes: &FaultProxy, expires_at: i64) -> TestApp {
    app_with_pair(
        oauth_entry("access-0", "refresh-0", expires_at),
        ("access-0", "refresh-0"),
        Setup {
            secrets_endpoint: Some(writes.url.clone()),
            ..Setup::default()
        },
    )
    .await
}

/// A Secrets Manager endpoint in front of moto that fails PutSecretValue with a 500 until healed.
async fn flaky_writes() -> FaultProxy {
    failing_writes(500, "InternalServiceError").await
}

/// A Secrets Manager endpoint in front of moto that fails PutSecretValue with `status` and the
/// error type `error` until healed.
async fn failing_writes(status: u16, error: &str) -> FaultProxy {
    let proxy = FaultProxy::start().await;
    proxy.fail("PutSecretValue", status, error);
    proxy
}

#[tokio::test]
async fn keeps_a_pair_it_could_not_store_and_stores_it_first_on_the_next_request() {
    let writes = flaky_writes().await;
    let t = pair_through(&writes, now() + 10).await;

    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 503, "{}", response.text);
    assert_eq!(code(&response), "secret_unavailable");
    assert!(
        t.highlevel.finalize_requests().is_empty(),
        "finalize was not called"
    );
    assert_eq!(
        stored_secret(&t.token_secret_id).await["refresh_token"],
        "refresh-0",
        "the write failed"
    );

    writes.heal();
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(
        refreshes(&t),
        (1, 0),
        "the kept pair was used, not a second refresh"
    );
    assert_eq!(
        stored_secret(&t.token_secret_id).await["refresh_token"],
        live(&t, LOCATION).1.as_str()
    );
}

#[tokio::test]
async fn a_write_back_that_keeps_conflicting_ends_within_the_time_reserved_for_it() {
    let writes = FaultProxy::start().await;
    // Every write conflicts with "another writer", and every read and write takes 2.5 s: five
    // rounds of re-read and write would take 25 s.
    writes.slow("GetSecretValue", Duration::from_millis(2500));
    writes.fail_after(
        "PutSecretValue",
        400,
        "ResourceExistsException",
        Duration::from_millis(2500),
    );
    let t = pair_through(&writes, now() + 10).await;
    // Reading the two secrets takes 5 s, the write-back at most its 12 s: not 25 s more.
    let response = answered_within(Duration::from_secs(20), t.invoke(EV_PATH_PARAMS)).await;
    assert_eq!(
        (response.status, code(&response)),
        (503, "secret_unavailable"),
        "the pair is kept for the next request: {}",
        response.text
    );
    assert!(t.highlevel.finalize_requests().is_empty());
}

/// A second instance (a separate `App`, own caches) sharing `first`'s secret and HighLevel.
async fn another_instance(first: &TestApp) -> TestApp {
    spawn_app_with(Setup {
        token_secret: None,
        existing_token_secret_id: Some(first.token_secret_id.clone()),
        api_base_url: Some(first.highlevel.base_url()),
        ..Setup::default()
    })
    .await
}

/// A token endpoint that takes `delay` to answer.
fn slow_token_endpoint(delay: Duration) -> TokenEndpoint {
    TokenEndpoint {
        delay,
        ..TokenEndpoint::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_refreshing_two_locations_of_one_map_secret_keep_both_pairs() {
    let secret = json!({
        LOCATION: oauth_entry("access-a", "refresh-a", now() + 10),
        OTHER_LOCATION: oauth_entry("access-b", "refresh-b", now() + 10),
    });
    let first = spawn_oauth_app(
        secret,
        &[
            (LOCATION, "access-a", "refresh-a"),
            (OTHER_LOCATION, "access-b", "refresh-b"),
        ],
        Setup::default(),
    )
    .await;
    first
        .highlevel
        .token_endpoint(slow_token_endpoint(Duration::from_millis(300)));
    let second = another_instance(&first).await;
    let other_event = event_for(OTHER_LOCATION);
    let (a, b) = tokio::join!(first.invoke(EV_PATH_PARAMS), second.invoke(&other_event));
    assert_eq!((a.status, b.status), (200, 200), "{} {}", a.text, b.text);
    assert_eq!(refreshes(&first), (2, 0));
    let after = stored_secret(&first.token_secret_id).await;
    assert_eq!(
        after[LOCATION]["refresh_token"],
        live(&first, LOCATION).1.as_str()
    );
    assert_eq!(
        after[OTHER_LOCATION]["refresh_token"],
        live(&first, OTHER_LOCATION).1.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_instances_racing_on_one_expired_pair_all_succeed_with_one_refresh() {
    let first = app_with_pair(
        oauth_entry("access-0", "refresh-0", now() - 5),
        ("access-0", "refresh-0"),
        Setup::default(),
    )
    .await;
    first
        .highlevel
        .token_endpoint(slow_token_endpoint(Duration::from_millis(200)));
    let mut instances = vec![Arc::new(first)];
    for _ in 0..3 {
        let other = another_instance(&instances[0]).await;
        instances.push(Arc::new(other));
    }
    let mut calls = tokio::task::JoinSet::new();
    for instance in &instances {
        for _ in 0..3 {
            let instance = Arc::clone(instance);
            calls.spawn(async move { instance.invoke(EV_PATH_PARAMS).await });
        }
    }
    while let Some(response) = calls.join_next().await {
        let response = response.unwrap();
        assert_eq!(response.status, 200, "{}", response.text);
    }
    let first = &instances[0];
    assert_eq!(
        refreshes(first).0,
        1,
        "exactly one successful refresh for one expiry"
    );
    let after = stored_secret(&first.token_secret_id).await;
    assert_eq!(
        after["refresh_token"],
        live(first, LOCATION).1.as_str(),
        "the secret holds the live pair"
    );
}

#[tokio::test]
async fn a_token_endpoint_that_times_out_is_unavailable_and_counts_against_the_budget() {
    let t = app_with_pair(
        oauth_entry("access-0", "refresh-0", now() - 5),
        ("access-0", "refresh-0"),
        Setup {
            env: vec![("UPSTREAM_TIMEOUT_MS", "500".into())],
            ..Setup::default()
        },
    )
    .await;
    t.highlevel
        .token_endpoint(slow_token_endpoint(Duration::from_secs(5)));
    // The token call is bounded by UPSTREAM_TIMEOUT_MS.
    let response = answered_within(Duration::from_secs(3), t.invoke(EV_PATH_PARAMS)).await;
    assert_eq!(response.status, 503, "{}", response.text);
    assert_eq!(code(&response), "upstream_unavailable");
}

#[tokio::test]
async fn the_versions_quota_is_a_failed_write_kept_for_later_not_a_configuration_error() {
    let writes = failing_writes(400, "LimitExceededException").await;
    let t = pair_through(&writes, now() - 5).await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(
        (response.status, code(&response)),
        (503, "secret_unavailable"),
        "{}",
        response.text
    );
    assert!(t.highlevel.finalize_requests().is_empty());
    writes.heal();
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    assert_eq!(
        refreshes(&t),
        (1, 0),
        "the kept pair was written, not refreshed again"
    );
    assert_eq!(
        stored_secret(&t.token_secret_id).await["refresh_token"],
        live(&t, LOCATION).1.as_str()
    );
}

#[tokio::test]
async fn a_write_after_an_operators_edit_keeps_the_edit_and_applies_only_the_new_tokens() {
    let secret = json!({
        LOCATION: oauth_entry("access-0", "refresh-0", now() - 5),
        OTHER_LOCATION: "pit-other",
    });
    let t = spawn_oauth_app(
        secret,
        &[(LOCATION, "access-0", "refresh-0")],
        Setup::default(),
    )
    .await;
    t.highlevel
        .token_endpoint(slow_token_endpoint(Duration::from_millis(600)));
    // While the token endpoint answers, the operator rotates the client secret and adds a
    // location.
    let secret_id = t.token_secret_id.clone();
    let operator = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut edited = stored_secret(&secret_id).await;
        edited[LOCATION]["client_secret"] = json!("client-secret-rotated");
        edited["NewLocation01"] = json!("pit-new");
        put_secret(&secret_id, &edited.to_string()).await;
    });
    let response = t.invoke(EV_PATH_PARAMS).await;
    operator.await.unwrap();
    assert_eq!(response.status, 200, "{}", response.text);
    let after = stored_secret(&t.token_secret_id).await;
    let (access, refresh) = live(&t, LOCATION);
    assert_eq!(after[LOCATION]["access_token"], access.as_str());
    assert_eq!(after[LOCATION]["refresh_token"], refresh.as_str());
    assert_eq!(after[LOCATION]["client_secret"], "client-secret-rotated");
    assert_eq!(after["NewLocation01"], "pit-new");
    assert_eq!(after[OTHER_LOCATION], "pit-other");
}

#[tokio::test]
async fn a_proactive_refresh_that_fails_for_a_passing_cause_uses_the_still_valid_token() {
    for failure in [503u16, 429] {
        let t = app_with_pair(
            oauth_entry("access-0", "refresh-0", now() + 60),
            ("access-0", "refresh-0"),
            Setup::default(),
        )
        .await;
        t.highlevel.token_endpoint(TokenEndpoint {
            failure: Some(failure),
            ..TokenEndpoint::default()
        });
        let response = t.invoke(EV_PATH_PARAMS).await;
        assert_eq!(response.status, 200, "{failure}: {}", response.text);
        assert_eq!(t.bearer_tokens(), ["access-0"]);
        assert_eq!(
            stored_secret(&t.token_secret_id).await["refresh_token"],
            "refresh-0"
        );
    }
}

#[tokio::test]
async fn spends_no_refresh_token_without_the_time_to_store_the_new_pair() {
    // Ten seconds left: not enough for the token call (5 s) and storing the pair (12 s).
    let short = Duration::from_secs(10);

    // Still valid, inside the skew: used as it is.
    let t = app_with_pair(
        oauth_entry("access-0", "refresh-0", now() + 60),
        ("access-0", "refresh-0"),
        Setup::default(),
    )
    .await;
    let response = t.invoke_with_deadline(EV_PATH_PARAMS, short).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(refreshes(&t), (0, 0), "the refresh token was not spent");

    // Expired: the refresh is needed now, so the caller is asked to come back shortly.
    let t = app_with_pair(
        oauth_entry("access-0", "refresh-0", now() - 5),
        ("access-0", "refresh-0"),
        Setup::default(),
    )
    .await;
    let response = t.invoke_with_deadline(EV_PATH_PARAMS, short).await;
    assert_eq!(
        (response.status, code(&response)),
        (503, "upstream_unavailable"),
        "{}",
        response.text
    );
    assert_eq!(response.headers["retry-after"], "1");
    assert_eq!(refreshes(&t), (0, 0));
    assert!(t.highlevel.finalize_requests().is_empty());
    // With the time, the same request refreshes.
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    assert_eq!(refreshes(&t), (1, 0));
}
