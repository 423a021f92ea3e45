//! No token, API key, webhook secret or signature — configured or presented — ever appears in
//! a log line or a response. Every scenario runs with distinctive values while all logs, at
//! TRACE level and from every crate (SDK, HTTP client, runtime), are captured and scanned.

use crate::helpers::*;
use serde_json::json;

const SECRET_TOKEN: &str = "pit-SENTINEL-token-7731";
const SECRET_API_KEY: &str = "SENTINEL-api-key-4410";
const PRESENTED_KEY: &str = "SENTINEL-presented-wrong-key-9902";
const WEBHOOK_BYTES_B64: &str = "U0VOVElORUwtd2ViaG9vay1zZWNyZXQtYnl0ZXM=";

#[tokio::test]
async fn no_secret_reaches_a_log_line_or_a_response() {
    let (logs, _guard) = capture_logs(tracing::Level::TRACE);

    let webhook_secret = format!("whsec_{WEBHOOK_BYTES_B64}");
    let auth = json!({"apiKeys": [SECRET_API_KEY], "webhookSecrets": [webhook_secret]}).to_string();
    let setup = || Setup {
        token_secret: Some(SECRET_TOKEN.into()),
        auth_secret: Some(auth.clone()),
        ..Setup::default()
    };
    let with_key =
        |event: &str, key: &str| with_header(&without_credentials(event), "x-api-key", Some(key));

    let mut responses = Vec::new();
    let mut presented_signatures = Vec::new();
    // Every audit line and metrics document the apps wrote.
    let mut written = String::new();

    // Success by API key and by signature; a wrong key; a bad signature.
    let t = spawn_app_with(setup()).await;
    t.highlevel_answers(highlevel_ok());
    responses.push(t.invoke(&with_key(EV_PATH_PARAMS, SECRET_API_KEY)).await);
    let good = signed(EV_WORKFLOW, &webhook_secret, now_unix());
    presented_signatures.push(
        serde_json::from_str::<serde_json::Value>(&good).unwrap()["headers"]["webhook-signature"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    responses.push(t.invoke(&good).await);
    responses.push(t.invoke(&with_key(EV_PATH_PARAMS, PRESENTED_KEY)).await);
    responses.push(
        t.invoke(&with_header(
            EV_JSON_BODY,
            "authorization",
            Some(&format!("Bearer {PRESENTED_KEY}")),
        ))
        .await,
    );
    let bad = signed(
        EV_WORKFLOW,
        "whsec_U0VOVElORUwtb3RoZXItc2VjcmV0",
        now_unix(),
    );
    presented_signatures.push(
        serde_json::from_str::<serde_json::Value>(&bad).unwrap()["headers"]["webhook-signature"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    responses.push(t.invoke(&bad).await);
    assert_eq!(
        responses.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 401, 401, 401]
    );
    written.push_str(&t.app.kept_lines().join("\n"));

    // HighLevel refusing the token, failing, and throttling.
    for answer in [
        Scripted::status(401),
        Scripted::status(500),
        Scripted::status(429).retry_after("0"),
    ] {
        let t = spawn_app_with(setup()).await;
        t.highlevel_answers(answer);
        responses.push(t.invoke(&with_key(EV_PATH_PARAMS, SECRET_API_KEY)).await);
        written.push_str(&t.app.kept_lines().join("\n"));
    }

    // Secrets that cannot be parsed, holding secret-looking values.
    let t = spawn_app_with(Setup {
        token_secret: Some(format!("{{\"access_token\": \"{SECRET_TOKEN}\" broken")),
        ..setup()
    })
    .await;
    responses.push(t.invoke(&with_key(EV_PATH_PARAMS, SECRET_API_KEY)).await);
    written.push_str(&t.app.kept_lines().join("\n"));
    let t = spawn_app_with(Setup {
        auth_secret: Some(format!("{{\"apiKeys\": \"{SECRET_API_KEY}\"}}")),
        ..setup()
    })
    .await;
    responses.push(t.invoke(&with_key(EV_PATH_PARAMS, SECRET_API_KEY)).await);
    written.push_str(&t.app.kept_lines().join("\n"));
    let t = spawn_app_with(Setup {
        token_secret: Some(format!("{SECRET_TOKEN} with spaces")),
        ..setup()
    })
    .await;
    responses.push(t.invoke(&with_key(EV_PATH_PARAMS, SECRET_API_KEY)).await);
    written.push_str(&t.app.kept_lines().join("\n"));

    // An OAuth pair refreshed (and once refused), with distinctive refresh token and client secret.
    let oauth = json!({"access_token": "SENTINEL-old-access", "refresh_token": "SENTINEL-old-refresh",
                       "expires_at": 1, "client_id": "client", "client_secret": "SENTINEL-client-secret"})
    .to_string();
    for token_failure in [None, Some(400u16), Some(401)] {
        let t = spawn_app_with(Setup {
            token_secret: Some(oauth.clone()),
            ..setup()
        })
        .await;
        t.highlevel
            .oauth_pair(LOCATION, "SENTINEL-old-access", "SENTINEL-old-refresh");
        // Distinctive new tokens, and a token endpoint that echoes the form it was sent.
        t.highlevel.token_endpoint(TokenEndpoint {
            failure: token_failure,
            issue_prefix: "SENTINEL-new-".into(),
            echo_request: true,
            ..TokenEndpoint::default()
        });
        responses.push(t.invoke(&with_key(EV_PATH_PARAMS, SECRET_API_KEY)).await);
        written.push_str(&t.app.kept_lines().join("\n"));
    }
    assert_eq!(
        responses
            .iter()
            .rev()
            .take(3)
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [502, 502, 200]
    );

    let logs = logs.text();
    assert!(logs.contains("request failed"), "our logs were captured");
    assert!(
        logs.contains("aws_smithy"),
        "the SDK's TRACE logs were captured too"
    );
    let mut forbidden: Vec<String> = vec![
        SECRET_TOKEN.into(),
        SECRET_API_KEY.into(),
        PRESENTED_KEY.into(),
        WEBHOOK_BYTES_B64.into(),
        "SENTINEL".into(),
    ];
    for signature in presented_signatures {
        forbidden.push(signature.trim_start_matches("v1,").to_owned());
    }
    assert!(
        written.contains("\"audit\":true"),
        "the audit lines were kept"
    );
    for secret in &forbidden {
        assert!(
            !logs.contains(secret.as_str()),
            "a log line contains {secret}"
        );
        assert!(
            !written.contains(secret.as_str()),
            "an audit line or metrics document contains {secret}"
        );
        for response in &responses {
            assert!(
                !response.text.contains(secret.as_str()),
                "a response contains {secret}: {}",
                response.text
            );
        }
    }
}
