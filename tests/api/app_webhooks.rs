//! HighLevel's app webhooks (`POST /webhooks/highlevel`, on with `GHL_WEBHOOK_PUBLIC_KEY`):
//! Ed25519 signatures over the raw body (the stand-in signs with a key pair of its own), the
//! timestamp window, each `webhookId` acted on once; `UNINSTALL` ends the location's token — a
//! secret of its own rewritten `{"uninstalledAt": …}`, a map entry removed, a minted token
//! dropped — and its finalizes answer 403 from then on; `INSTALL` is counted.

use ghl_csv_finalize::local::standin::StandIn;
use serde_json::{json, Value};

use crate::helpers::*;

const OTHER: &str = "Lx2OtherLocation99";

fn webhooks_on() -> Vec<(&'static str, String)> {
    vec![(
        "GHL_WEBHOOK_PUBLIC_KEY",
        StandIn::app_webhook_public_key_pem(),
    )]
}

fn body(kind: &str, location: &str, sent_at_ms: i64) -> String {
    json!({"type": kind, "appId": "app-1", "companyId": "co-1", "locationId": location,
           "webhookId": unique("wh"), "timestamp": sent_at_ms})
    .to_string()
}

/// The app webhook `body` as API Gateway delivers it, with `signature` (or none) and no
/// inbound credential.
fn webhook_event(body: &str, signature: Option<&str>) -> String {
    let event = with_body(EV_JSON_BODY, body, Some("application/json"));
    let event = edit(&without_credentials(&event), |v| {
        v["rawPath"] = json!("/webhooks/highlevel");
        v["requestContext"]["http"]["path"] = json!("/webhooks/highlevel");
    });
    with_header(&event, "x-ghl-signature", signature)
}

fn signed_event(body: &str) -> String {
    webhook_event(body, Some(&StandIn::sign_app_webhook(body.as_bytes())))
}

fn now_ms() -> i64 {
    now_unix() * 1000
}

/// The sample finalize for `location`.
fn finalize_for(location: &str) -> String {
    edit(EV_PATH_PARAMS, |v| {
        v["pathParameters"]["locationId"] = json!(location);
        v["rawPath"] = json!(format!("/locations/{location}/csv/{CSV}/finalize"));
    })
}

#[tokio::test]
async fn an_uninstall_ends_a_per_location_secret_and_its_finalizes_answer_403() {
    let t = spawn_app_with(Setup {
        per_location: true,
        env: webhooks_on(),
        ..Setup::default()
    })
    .await;
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    let answer = t
        .invoke(&signed_event(&body("UNINSTALL", LOCATION, now_ms())))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["duplicate"], false);
    let name = t.token_secret_id.replace("{locationId}", LOCATION);
    let stored = stored_secret(&name).await;
    assert!(stored["uninstalledAt"].is_string(), "{stored}");
    assert!(stored.get("token").is_none() && stored.get("access_token").is_none());
    let refused = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(
        (refused.status, code(&refused)),
        (403, "location_not_allowed"),
        "{}",
        refused.text
    );
    assert_eq!(
        t.highlevel.finalize_requests().len(),
        1,
        "nothing sent for it after"
    );
}

#[tokio::test]
async fn an_uninstall_removes_a_map_entry_and_leaves_the_others() {
    let secret = json!({LOCATION: "pit-one", OTHER: "pit-other"});
    let t = spawn_app_with(Setup {
        token_secret: Some(secret.to_string()),
        env: webhooks_on(),
        ..Setup::default()
    })
    .await;
    let answer = t
        .invoke(&signed_event(&body("UNINSTALL", LOCATION, now_ms())))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let stored: Value = stored_secret(&t.token_secret_id).await;
    assert_eq!(stored, json!({OTHER: "pit-other"}));
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 403);
    assert_eq!(t.invoke(&finalize_for(OTHER)).await.status, 200);
}

#[tokio::test]
async fn a_replayed_webhook_id_is_answered_and_does_nothing() {
    let t = spawn_app_with(Setup {
        per_location: true,
        env: webhooks_on(),
        ..Setup::default()
    })
    .await;
    let uninstall = signed_event(&body("UNINSTALL", LOCATION, now_ms()));
    assert_eq!(t.invoke(&uninstall).await.status, 200);
    // The location is installed again (its token written back) before the copy arrives.
    let name = t.token_secret_id.replace("{locationId}", LOCATION);
    let reinstalled = json!({"token": TOKEN});
    put_secret(&name, &reinstalled.to_string()).await;
    let again = t.invoke(&uninstall).await;
    assert_eq!(
        (again.status, &again.body["duplicate"]),
        (200, &json!(true))
    );
    assert_eq!(
        stored_secret(&name).await,
        reinstalled,
        "the copy ended nothing"
    );
}

#[tokio::test]
async fn refuses_a_bad_or_missing_signature_and_an_old_or_missing_timestamp() {
    let t = spawn_app_with(Setup {
        per_location: true,
        env: webhooks_on(),
        ..Setup::default()
    })
    .await;
    let good = body("UNINSTALL", LOCATION, now_ms());
    let other = body("UNINSTALL", OTHER, now_ms());
    let old = body("UNINSTALL", LOCATION, now_ms() - 10 * 60 * 1000);
    let untimed =
        json!({"type": "UNINSTALL", "locationId": LOCATION, "webhookId": "w-1"}).to_string();
    for (event, why) in [
        (webhook_event(&good, None), "no signature"),
        (
            webhook_event(&good, Some("bm90IGEgc2lnbmF0dXJl")),
            "a wrong signature",
        ),
        (
            webhook_event(&good, Some(&StandIn::sign_app_webhook(other.as_bytes()))),
            "another body's signature",
        ),
        (signed_event(&old), "ten minutes old"),
        (signed_event(&untimed), "no timestamp"),
    ] {
        let refused = t.invoke(&event).await;
        assert_eq!(
            (refused.status, code(&refused)),
            (401, "unauthorized"),
            "{why}: {}",
            refused.text
        );
    }
    assert_eq!(
        t.invoke(EV_PATH_PARAMS).await.status,
        200,
        "nothing was ended"
    );
}

#[tokio::test]
async fn an_install_is_counted_and_ends_nothing() {
    let t = spawn_app_with(Setup {
        env: webhooks_on(),
        ..Setup::default()
    })
    .await;
    let answer = t
        .invoke(&signed_event(&body("INSTALL", LOCATION, now_ms())))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(t.metric_documents().iter().any(|m| m["AppInstalls"] == 1));
    assert!(t
        .audit_lines()
        .iter()
        .any(|line| line["credential"] == "highlevel-app"));
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
}

#[tokio::test]
async fn without_the_public_key_the_path_is_a_finalize_path_like_any_other() {
    let t = spawn_app().await;
    let refused = t
        .invoke(&signed_event(&body("UNINSTALL", LOCATION, now_ms())))
        .await;
    assert_eq!((refused.status, code(&refused)), (401, "unauthorized"));
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
}
