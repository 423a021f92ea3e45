//! Installing the app in one click (`GHL_APP_SECRET_ID`): `GET …/oauth/install` sends the
//! installer to HighLevel's chooselocation page with a signed, expiring `state`;
//! `GET …/oauth/callback` checks the state, exchanges the code for a pair and hands it to be
//! stored (a Company pair into the agency secret, a Location pair into that location's secret
//! or map entry), answering a small HTML page.
//!
//! The install routes are public, so the callback keeps only pairs of the agency the app secret
//! names (`companyId`): any other company's is refused with a 403 page and stored nowhere.
//!
//! - [`state`]: the signed `state` (pure).
//! - [`page`]: the HTML pages (pure).

pub mod page;
pub mod state;

use serde_json::{json, Map, Value};
use url::Url;

use crate::aws::secrets_manager::SecretsClient;
use crate::highlevel::{Exchange, HighLevel};
use crate::random::random_u64;
use crate::redact::Redacted;
use crate::request::deadline::{unix_seconds, Deadline};
use crate::request::ids::LocationId;
use state::{StateKey, StateProblem};

/// HighLevel's marketplace, where the installer chooses the agency or a location
/// (`{marketplace}/v2/oauth/chooselocation`).
pub const MARKETPLACE_URL: &str = "https://marketplace.gohighlevel.com";
/// The chooselocation page's path on the marketplace.
pub const CHOOSE_LOCATION_PATH: &str = "/v2/oauth/chooselocation";
/// The path suffix that begins an install.
pub const INSTALL_PATH: &str = "/oauth/install";
/// The path suffix HighLevel sends the installer back to.
pub const CALLBACK_PATH: &str = "/oauth/callback";

/// The app's settings (`GHL_APP_SECRET_ID`).
#[derive(Debug)]
pub struct AppSecret {
    client_id: String,
    client_secret: Redacted<String>,
    redirect_uri: String,
    scopes: String,
    company_id: String,
}

impl AppSecret {
    /// Reads `{"client_id", "client_secret", "redirect_uri", "scopes", "companyId"}`; `scopes`
    /// a list or one space-separated string. The error never quotes a value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|_| "the app secret is not JSON".to_owned())?;
        let field = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("the app secret has no {key}"))
        };
        let scopes = match value.get("scopes") {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            Some(Value::String(text)) => text.trim().to_owned(),
            _ => return Err("the app secret has no scopes".into()),
        };
        let redirect_uri = field("redirect_uri")?;
        Url::parse(&redirect_uri)
            .ok()
            .filter(|u| u.scheme() == "https" || u.host_str() == Some("127.0.0.1"))
            .ok_or("the app secret's redirect_uri must be an https URL")?;
        Ok(Self {
            client_id: field("client_id")?,
            client_secret: Redacted::new(field("client_secret")?),
            redirect_uri,
            scopes,
            company_id: field("companyId")?,
        })
    }

    /// The chooselocation URL on `marketplace` an install begins at, with `state`.
    fn choose_location_url(&self, marketplace: &Url, state: &str) -> String {
        let mut url = marketplace.clone();
        url.set_path(CHOOSE_LOCATION_PATH);
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("client_id", &self.client_id)
            .append_pair("scope", &self.scopes)
            .append_pair("state", state);
        url.into()
    }
}

/// Whose pair an install brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// The agency's (`userType` `Company`).
    Company,
    /// This location's.
    Location(LocationId),
}

/// A pair an install brought, to be stored: the OAuth entry, as the token rules read it.
#[derive(Debug)]
pub struct InstalledPair {
    /// Whose it is.
    pub installed: Installed,
    /// `access_token`, `refresh_token`, `expires_at`, `client_id`, `client_secret`,
    /// `user_type`, `companyId`, … — never printed.
    pub entry: Redacted<Map<String, Value>>,
}

/// What the install routes answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 302 to this URL.
    Redirect(String),
    /// An HTML page with this status.
    Page(u16, String),
}

/// The install flow of a deployment.
pub(crate) struct Install {
    app_secret_id: String,
    client: SecretsClient,
    highlevel: HighLevel,
    marketplace: Url,
}

impl Install {
    /// The flow for the app secret `app_secret_id`, beginning at `marketplace`
    /// (`GHL_MARKETPLACE_URL`) and exchanging codes through `highlevel`.
    pub(crate) fn new(
        app_secret_id: String,
        client: SecretsClient,
        highlevel: HighLevel,
        marketplace: Url,
    ) -> Self {
        Self {
            app_secret_id,
            client,
            highlevel,
            marketplace,
        }
    }

    /// `GET …/oauth/install`: to HighLevel's chooselocation page with a fresh state.
    pub(crate) async fn begin(&self, deadline: Deadline) -> Answer {
        match self.app_secret(deadline).await {
            Ok(app) => {
                let state =
                    StateKey::of(app.client_secret.expose()).issue(unix_seconds(), random_u64());
                Answer::Redirect(app.choose_location_url(&self.marketplace, &state))
            }
            Err(answer) => answer,
        }
    }

    /// `GET …/oauth/callback?code=…&state=…`: the pair the code buys, once the state and the
    /// company are good; else the page that says why.
    pub(crate) async fn finish(
        &self,
        query: Option<&str>,
        deadline: Deadline,
    ) -> Result<InstalledPair, Answer> {
        let app = self.app_secret(deadline).await?;
        let param = |name: &str| {
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        let refused =
            |status, message: &str| Answer::Page(status, page::page("Not connected", message));
        let state = param("state").ok_or_else(|| {
            refused(
                400,
                "The install has no state: begin it again from the install link.",
            )
        })?;
        match StateKey::of(app.client_secret.expose()).check(&state, unix_seconds()) {
            Ok(()) => {}
            Err(StateProblem::Expired) => {
                return Err(refused(400, "The install link expired (10 minutes): begin it again."))
            }
            Err(StateProblem::Bad) => {
                return Err(refused(400, "The install's state is not one this deployment began: begin it again from the install link."))
            }
        }
        let code = param("code").ok_or_else(|| refused(400, "HighLevel sent no code."))?;
        let reply = self.exchange(&app, &code, deadline).await.map_err(|status| {
            if status >= 500 {
                refused(503, "HighLevel could not be reached to finish the install: try again shortly.")
            } else {
                refused(400, "HighLevel refused the install's code (it may have been used already): begin it again.")
            }
        })?;
        let pair = installed_pair(&app, &reply, unix_seconds())
            .ok_or_else(|| refused(400, "HighLevel's answer held no token pair."))?;
        let company = reply.get("companyId").and_then(Value::as_str);
        if company != Some(app.company_id.as_str()) {
            tracing::warn!("an install brought a pair of another company; nothing is stored");
            return Err(refused(403, "This deployment serves one agency only; the install was for another, and nothing was stored."));
        }
        Ok(pair)
    }

    /// The app secret, or the page that says it cannot be read.
    async fn app_secret(&self, deadline: Deadline) -> Result<AppSecret, Answer> {
        let unavailable = |message: &str| Answer::Page(503, page::page("Not available", message));
        let read = self.client.read(&self.app_secret_id, deadline).await.map_err(|error| {
            tracing::error!(secret_id = %self.app_secret_id, cause = %crate::error::chain(&error), "the app secret cannot be read");
            unavailable("The app's settings cannot be read now.")
        })?;
        AppSecret::parse(read.text.expose()).map_err(|problem| {
            tracing::error!(secret_id = %self.app_secret_id, problem, "the app secret does not read");
            unavailable("The app's settings are not complete; the operator must fix them.")
        })
    }

    /// The token endpoint's answer to the code; its status when it did not grant one (5xx for
    /// no answer at all).
    async fn exchange(
        &self,
        app: &AppSecret,
        code: &str,
        deadline: Deadline,
    ) -> Result<Value, u16> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &app.client_id)
            .append_pair("client_secret", app.client_secret.expose())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &app.redirect_uri)
            .finish();
        let until = deadline
            .instant()
            .unwrap_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(10));
        match self
            .highlevel
            .refresh_token(&Redacted::new(form), until)
            .await
        {
            Exchange::Answered { reply, .. } if (200..300).contains(&reply.status) => {
                Ok(reply.body)
            }
            Exchange::Answered { reply, .. } => Err(reply.status),
            _ => Err(503),
        }
    }
}

/// The pair in the token endpoint's answer, as an entry the token rules read: its tokens, when
/// the access token expires, the app's client (to refresh it), and whose it is.
fn installed_pair(app: &AppSecret, reply: &Value, now: i64) -> Option<InstalledPair> {
    let text = |key: &str| {
        reply
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let (access, refresh) = (text("access_token")?, text("refresh_token")?);
    let expires_in = reply
        .get("expires_in")
        .and_then(Value::as_i64)
        .unwrap_or(86_399);
    let installed = match text("userType") {
        Some("Company") => Installed::Company,
        _ => Installed::Location(LocationId::parse(text("locationId")?).ok()?),
    };
    let mut entry = json!({
        "access_token": access,
        "refresh_token": refresh,
        "expires_at": now.saturating_add(expires_in),
        "client_id": app.client_id,
        "client_secret": app.client_secret.expose(),
        "user_type": if installed == Installed::Company { "Company" } else { "Location" },
        "companyId": text("companyId")?,
    });
    for key in ["locationId", "scope", "userId"] {
        if let Some(value) = text(key) {
            entry[key] = json!(value);
        }
    }
    Some(InstalledPair {
        installed,
        entry: Redacted::new(entry.as_object()?.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppSecret {
        AppSecret::parse(
            r#"{"client_id":"c1","client_secret":"s1","redirect_uri":"https://x.example.com/oauth/callback",
                "scopes":["socialplanner/csv.write","oauth.write"],"companyId":"co-1"}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_install_url_names_the_app_and_never_its_secret() {
        let marketplace = Url::parse(MARKETPLACE_URL).unwrap();
        let url = app().choose_location_url(&marketplace, "st");
        assert!(url.starts_with("https://marketplace.gohighlevel.com/v2/oauth/chooselocation?"));
        assert!(url.contains("response_type=code") && url.contains("client_id=c1"));
        assert!(url.contains("scope=socialplanner%2Fcsv.write+oauth.write"));
        assert!(url.contains("state=st"));
        assert!(!url.contains("s1"));
    }

    #[test]
    fn refuses_an_incomplete_app_secret_without_quoting_it() {
        for bad in [
            r#"{"client_id":"c1","redirect_uri":"https://x/","scopes":"a","companyId":"co"}"#,
            r#"{"client_id":"c1","client_secret":"topsecret","redirect_uri":"http://x/","scopes":"a","companyId":"co"}"#,
            r#"{"client_id":"c1","client_secret":"topsecret","redirect_uri":"https://x/","companyId":"co"}"#,
            "topsecret",
        ] {
            let problem = AppSecret::parse(bad).unwrap_err();
            assert!(!problem.contains("topsecret"), "{problem}");
        }
    }

    #[test]
    fn reads_a_company_or_a_location_pair_from_the_answer() {
        let company = installed_pair(
            &app(),
            &json!({"access_token": "a", "refresh_token": "r", "expires_in": 100,
                    "userType": "Company", "companyId": "co-1"}),
            1_000,
        )
        .unwrap();
        assert_eq!(company.installed, Installed::Company);
        let entry = company.entry.expose();
        assert_eq!(entry["expires_at"], 1_100);
        assert_eq!(
            (&entry["user_type"], &entry["client_id"]),
            (&json!("Company"), &json!("c1"))
        );
        let location = installed_pair(
            &app(),
            &json!({"access_token": "a", "refresh_token": "r", "userType": "Location",
                    "companyId": "co-1", "locationId": "L1"}),
            0,
        )
        .unwrap();
        assert_eq!(
            location.installed,
            Installed::Location(LocationId::parse("L1").unwrap())
        );
        assert!(installed_pair(&app(), &json!({"access_token": "a"}), 0).is_none());
        assert!(installed_pair(
            &app(),
            &json!({"access_token": "a", "refresh_token": "r", "userType": "Location", "companyId": "co-1", "locationId": "../x"}),
            0
        )
        .is_none());
    }
}
