//! Installing the app in one click (`GHL_APP_SECRET_ID`): `GET /oauth/install` redirects to
//! HighLevel's chooselocation page with a signed, expiring state; `GET /oauth/callback` checks
//! the state, exchanges the code at the stand-in's token endpoint and stores the pair — a
//! Company pair into the agency secret, a Location pair into that location's secret — or
//! answers a page saying why not. Never a token, code or secret in a page or the log.

use serde_json::{json, Value};

use crate::helpers::*;

const COMPANY: &str = "co-agency-0001";
const NEW_LOCATION: &str = "Lx9InstalledHere01";

fn app_secret() -> String {
    json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
           "redirect_uri": "https://abc123defg.execute-api.us-east-1.amazonaws.com/oauth/callback",
           "scopes": ["socialplanner/csv.write", "socialplanner/csv.readonly"], "companyId": COMPANY})
    .to_string()
}

/// A deployment with the install flow on (its app secret stored), tokens from `setup`.
async fn installable(setup: Setup) -> TestApp {
    let name = unique("ghl-test-app");
    put_secret(&name, &app_secret()).await;
    let mut env = setup.env.clone();
    env.push(("GHL_APP_SECRET_ID", name));
    spawn_app_with(Setup {
        env,
        standin: Behaviour {
            oauth_client: Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned())),
            ..setup.standin.clone()
        },
        ..setup
    })
    .await
}

fn get(path_and_query: &str) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    edit(EV_JSON_BODY, |v| {
        v["routeKey"] = json!(format!("GET {path}"));
        v["rawPath"] = json!(path);
        v["rawQueryString"] = json!(query);
        v["requestContext"]["http"]["method"] = json!("GET");
        v["requestContext"]["http"]["path"] = json!(path);
        v["body"] = Value::Null;
        v["headers"].as_object_mut().unwrap().remove("content-type");
        v["headers"]
            .as_object_mut()
            .unwrap()
            .remove("authorization");
    })
}

/// Begins an install; the state HighLevel would send back.
async fn state_of(t: &TestApp) -> String {
    let begun = t.invoke(&get("/oauth/install")).await;
    assert_eq!(begun.status, 302, "{}", begun.text);
    let location = begun.headers["location"].to_str().unwrap().to_owned();
    let url = url::Url::parse(&location).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("a state")
}

/// Begins an install and comes back to the callback with `code` and the state it was given.
async fn installed_with(t: &TestApp, code: &str) -> TestResponse {
    let state = state_of(t).await;
    t.invoke(&callback(code, &state)).await
}

/// The stand-in's code for a Location pair of [`NEW_LOCATION`] under [`COMPANY`].
fn new_location_code() -> String {
    format!("location:{COMPANY}:{NEW_LOCATION}")
}

fn callback(code: &str, state: &str) -> String {
    get(&format!(
        "/oauth/callback?code={}&state={}",
        urlencode(code),
        urlencode(state)
    ))
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn install_redirects_to_chooselocation_with_the_app_and_a_signed_state() {
    let t = installable(Setup::default()).await;
    let begun = t.invoke(&get("/oauth/install")).await;
    assert_eq!(begun.status, 302);
    let location = begun.headers["location"].to_str().unwrap();
    assert!(
        location.starts_with(
            "https://marketplace.gohighlevel.com/v2/oauth/chooselocation?response_type=code&"
        ),
        "{location}"
    );
    let url = url::Url::parse(location).unwrap();
    let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(
        query["scope"],
        "socialplanner/csv.write socialplanner/csv.readonly"
    );
    assert!(query["redirect_uri"].ends_with("/oauth/callback"));
    assert!(!location.contains(CLIENT_SECRET));
    assert_eq!(begun.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn a_company_pair_is_stored_in_the_agency_secret_and_mints_from_then_on() {
    let old = json!({"access_token": "old-access", "refresh_token": "old-refresh",
                     "expires_at": now_unix() + 86_399, "user_type": "Company", "companyId": COMPANY,
                     "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET});
    let t = installable(Setup {
        agency: true,
        token_secret: Some(old.to_string()),
        ..Setup::default()
    })
    .await;
    let done = installed_with(&t, &format!("company:{COMPANY}")).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert!(done.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(
        done.text.contains("The agency is connected"),
        "{}",
        done.text
    );
    let stored = stored_secret(&t.token_secret_id).await;
    let (access, refresh) = t.highlevel.live_pair(COMPANY).unwrap();
    assert_eq!(
        (
            stored["access_token"].as_str(),
            stored["refresh_token"].as_str()
        ),
        (Some(access.as_str()), Some(refresh.as_str()))
    );
    assert_eq!(
        (&stored["user_type"], &stored["companyId"]),
        (&json!("Company"), &json!(COMPANY))
    );
    for secret in [access.as_str(), refresh.as_str(), CLIENT_SECRET, "company:"] {
        assert!(!done.text.contains(secret), "{secret} in the page");
    }
    // The stored pair mints: the stand-in accepts only the installed agency token now.
    let answer = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(t.highlevel.mints().get(LOCATION), Some(&1));
}

#[tokio::test]
async fn a_location_pair_is_stored_in_that_locations_own_secret_created_for_it() {
    let t = installable(Setup {
        per_location: true,
        ..Setup::default()
    })
    .await;
    let done = installed_with(&t, &new_location_code()).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert!(done.text.contains(NEW_LOCATION));
    let name = t.token_secret_id.replace("{locationId}", NEW_LOCATION);
    let stored = stored_secret(&name).await;
    assert_eq!(stored["user_type"], "Location");
    assert_eq!(
        stored["access_token"].as_str(),
        Some(t.highlevel.live_pair(NEW_LOCATION).unwrap().0.as_str())
    );
    let finalize = edit(EV_PATH_PARAMS, |v| {
        v["pathParameters"]["locationId"] = json!(NEW_LOCATION);
        v["rawPath"] = json!(format!("/locations/{NEW_LOCATION}/csv/{CSV}/finalize"));
    });
    let answer = t.invoke(&finalize).await;
    assert_eq!(
        answer.status, 200,
        "the installed location finalizes: {}",
        answer.text
    );
}

#[tokio::test]
async fn a_bad_or_altered_state_a_refused_code_and_another_company_store_nothing() {
    let t = installable(Setup {
        per_location: true,
        ..Setup::default()
    })
    .await;
    let state = state_of(&t).await;
    let altered = format!("{}0", state);
    let code = new_location_code();
    for (event, status, why) in [
        (
            callback(&code, "not-a-state"),
            400,
            "a state this deployment never signed",
        ),
        (callback(&code, &altered), 400, "an altered state"),
        (
            get(&format!("/oauth/callback?code={}", urlencode(&code))),
            400,
            "no state",
        ),
        (
            callback("no-such-code", &state),
            400,
            "a code the token endpoint refuses",
        ),
        (
            callback(&format!("location:co-other:{NEW_LOCATION}"), &state),
            403,
            "another company's pair",
        ),
    ] {
        let answer = t.invoke(&event).await;
        assert_eq!(answer.status, status, "{why}: {}", answer.text);
        assert!(answer.text.contains("Not connected"), "{why}");
    }
    let name = t.token_secret_id.replace("{locationId}", NEW_LOCATION);
    let admin = sdk_client(moto_endpoint(), None);
    assert!(
        admin
            .get_secret_value()
            .secret_id(&name)
            .send()
            .await
            .is_err(),
        "nothing stored"
    );
}

#[tokio::test]
async fn a_location_pair_with_nowhere_to_go_is_a_400_page() {
    let t = installable(Setup {
        agency: true,
        token_secret: Some(json!({"access_token": "a", "refresh_token": "r", "user_type": "Company", "companyId": COMPANY}).to_string()),
        ..Setup::default()
    })
    .await;
    let done = installed_with(&t, &new_location_code()).await;
    assert_eq!(done.status, 400, "{}", done.text);
    assert!(done.text.contains("Nothing was stored"));
}

#[tokio::test]
async fn no_token_code_or_secret_reaches_a_page_or_the_log() {
    let t = installable(Setup {
        per_location: true,
        ..Setup::default()
    })
    .await;
    let state = state_of(&t).await;
    let code = new_location_code();
    let done = t.invoke(&callback(&code, &state)).await;
    assert_eq!(done.status, 200);
    let (access, refresh) = t.highlevel.live_pair(NEW_LOCATION).unwrap();
    let lines = t.app.kept_lines().join("\n");
    for secret in [
        access.as_str(),
        refresh.as_str(),
        CLIENT_SECRET,
        code.as_str(),
        state.as_str(),
    ] {
        assert!(!done.text.contains(secret), "{secret} in the page");
        assert!(!lines.contains(secret), "{secret} in a kept line");
    }
    let exchange = t
        .upstream_requests()
        .into_iter()
        .find(|r| r.body["grant_type"] == "authorization_code")
        .expect("the code exchange");
    assert_eq!(exchange.body["code"], "[redacted]");
    assert_eq!(exchange.body["client_secret"], "[redacted]");
}

#[tokio::test]
async fn an_install_goes_to_the_marketplace_and_back_and_connects_the_agency() {
    let marketplace = ghl_csv_finalize::local::standin::StandIn::start(
        ([127, 0, 0, 1], 0).into(),
        Behaviour {
            install_code: Some(format!("company:{COMPANY}")),
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    let old = json!({"access_token": "old-access", "refresh_token": "old-refresh",
                     "expires_at": now_unix() + 86_399, "user_type": "Company", "companyId": COMPANY,
                     "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET});
    let t = installable(Setup {
        agency: true,
        token_secret: Some(old.to_string()),
        env: vec![("GHL_MARKETPLACE_URL", marketplace.base_url())],
        ..Setup::default()
    })
    .await;
    let begun = t.invoke(&get("/oauth/install")).await;
    let chooselocation = begun.headers["location"].to_str().unwrap().to_owned();
    assert!(chooselocation.starts_with(&format!(
        "{}/v2/oauth/chooselocation?",
        marketplace.base_url()
    )));
    // The installer's browser: to the marketplace, which sends it back with a code.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = browser.get(&chooselocation).send().await.unwrap();
    assert_eq!(back.status(), 302);
    let callback_url = url::Url::parse(back.headers()["location"].to_str().unwrap()).unwrap();
    assert!(callback_url.path().ends_with("/oauth/callback"));
    let done = t
        .invoke(&get(&format!(
            "/oauth/callback?{}",
            callback_url.query().unwrap()
        )))
        .await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert!(done.text.contains("The agency is connected"));
    assert_eq!(
        stored_secret(&t.token_secret_id).await["access_token"].as_str(),
        Some(t.highlevel.live_pair(COMPANY).unwrap().0.as_str())
    );
}

#[tokio::test]
async fn an_expired_state_is_a_400_page_and_stores_nothing() {
    use ghl_csv_finalize::install::state::StateKey;
    let t = installable(Setup {
        per_location: true,
        ..Setup::default()
    })
    .await;
    // Signed with the app's key (the test knows its client secret), eleven minutes ago.
    let expired = StateKey::of(CLIENT_SECRET).issue(now_unix() - 11 * 60, 42);
    let code = new_location_code();
    let answer = t.invoke(&callback(&code, &expired)).await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(answer.text.contains("expired"), "{}", answer.text);
    let fresh = StateKey::of(CLIENT_SECRET).issue(now_unix(), 43);
    assert_eq!(
        t.invoke(&callback(&code, &fresh)).await.status,
        200,
        "the same code, a good state"
    );
}

#[tokio::test]
async fn a_location_pair_goes_into_its_entry_of_a_map_secret_and_the_others_stay() {
    let t = installable(Setup {
        token_secret: Some(json!({LOCATION: "pit-one"}).to_string()),
        ..Setup::default()
    })
    .await;
    let done = installed_with(&t, &new_location_code()).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let stored = stored_secret(&t.token_secret_id).await;
    assert_eq!(stored[LOCATION], "pit-one", "the other entry kept");
    assert_eq!(stored[NEW_LOCATION]["user_type"], "Location");
    assert_eq!(
        stored[NEW_LOCATION]["access_token"].as_str(),
        Some(t.highlevel.live_pair(NEW_LOCATION).unwrap().0.as_str())
    );
}
