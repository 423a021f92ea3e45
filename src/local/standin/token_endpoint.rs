//! HighLevel's OAuth token endpoint as the stand-in plays it: `POST /oauth/token` with a
//! form-encoded refresh; refresh tokens rotate on every use and a spent one is refused with
//! 400 `invalid_grant`, as HighLevel does. A location with a live pair gets finalized only
//! with that pair's access token. `POST /oauth/locationToken` mints a location's token with an
//! agency's live access token (its pair kept under its `companyId`), as an agency connection
//! does; the location is then finalized only with its newest minted token.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

/// How the token endpoint behaves beyond HighLevel's rules, on purpose.
#[derive(Debug, Clone, Default)]
pub struct TokenEndpoint {
    /// Answer every refresh and mint with this status instead.
    pub failure: Option<u16>,
    /// Wait this long before every answer.
    pub delay: Duration,
    /// Put this before every token it issues (tests use distinctive values to look for).
    pub issue_prefix: String,
    /// Echo the presented form, credentials and all, in every answer, as a careless server
    /// might: the function must never pass the token endpoint's body on.
    pub echo_request: bool,
    /// The `expires_in` of minted location tokens (default 86399).
    pub minted_expires_in: Option<u64>,
    /// Wait this long before answering a mint.
    pub mint_delay: Duration,
}

/// The live pairs and what the endpoint has done.
#[derive(Debug, Default)]
pub(super) struct Pairs {
    /// location → (access token, refresh token)
    live: HashMap<String, (String, String)>,
    issued: u64,
    pub(super) granted: u64,
    pub(super) refused: u64,
    pub(super) endpoint: TokenEndpoint,
    /// location → its newest minted token
    minted: HashMap<String, String>,
    /// Mints granted, per location.
    pub(super) mints: HashMap<String, u64>,
    /// Locations the agency's app is not installed at: a mint for them is refused.
    pub(super) not_installed: std::collections::HashSet<String>,
    /// Authorization codes already exchanged (each is good once).
    used_codes: std::collections::HashSet<String>,
}

impl Pairs {
    pub(super) fn set(&mut self, location: &str, access: &str, refresh: &str) {
        self.live
            .insert(location.to_owned(), (access.to_owned(), refresh.to_owned()));
    }

    pub(super) fn live(&self, location: &str) -> Option<(String, String)> {
        self.live.get(location).cloned()
    }

    /// The access token a location must be finalized with, once it has a pair or a minted
    /// token.
    pub(super) fn access_token(&self, location: &str) -> Option<&str> {
        self.live
            .get(location)
            .map(|(access, _)| access.as_str())
            .or_else(|| self.minted.get(location).map(String::as_str))
    }

    /// Answers one mint (`POST /oauth/locationToken`) presented with `bearer`: status and body.
    pub(super) fn mint(
        &mut self,
        bearer: Option<&str>,
        version: Option<&str>,
        form: &HashMap<String, String>,
    ) -> (u16, Value) {
        if let Some(status) = self.endpoint.failure {
            return (
                status,
                json!({"statusCode": status, "message": "simulated"}),
            );
        }
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
        let (company, location) = (field("companyId"), field("locationId"));
        if version != Some("2021-07-28") || company.is_empty() || location.is_empty() {
            return (400, json!({"statusCode": 400, "message": "Bad Request"}));
        }
        let agency_access = self.live.get(company).map(|(access, _)| access.as_str());
        if bearer.is_none() || bearer != agency_access {
            return (401, json!({"statusCode": 401, "message": "Invalid JWT"}));
        }
        if self.not_installed.contains(location) {
            return (
                400,
                json!({"statusCode": 400, "message": "The app is not installed for this location"}),
            );
        }
        self.issued += 1;
        *self.mints.entry(location.to_owned()).or_default() += 1;
        let access = format!(
            "{}location-{}-{location}",
            self.endpoint.issue_prefix, self.issued
        );
        self.minted.insert(location.to_owned(), access.clone());
        let expires_in = self.endpoint.minted_expires_in.unwrap_or(86_399);
        (
            200,
            json!({"access_token": access, "token_type": "Bearer", "expires_in": expires_in,
                   "scope": "socialplanner/csv.write", "userType": "Location",
                   "companyId": company, "locationId": location}),
        )
    }

    /// Answers one refresh request: status and JSON body.
    pub(super) fn refresh(
        &mut self,
        client: Option<&(String, String)>,
        form_encoded: bool,
        form: &HashMap<String, String>,
    ) -> (u16, Value) {
        let (status, mut body) = self.grant(client, form_encoded, form);
        if self.endpoint.echo_request {
            body["echo"] = json!(form);
        }
        (status, body)
    }

    fn grant(
        &mut self,
        client: Option<&(String, String)>,
        form_encoded: bool,
        form: &HashMap<String, String>,
    ) -> (u16, Value) {
        if let Some(status) = self.endpoint.failure {
            return (status, json!({"error": "simulated"}));
        }
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
        if form_encoded && field("grant_type") == "authorization_code" {
            return self.exchange_code(client, form);
        }
        if !form_encoded
            || field("grant_type") != "refresh_token"
            || !matches!(field("user_type"), "Location" | "Company")
        {
            return (400, json!({"error": "invalid_request"}));
        }
        let client_ok = match client {
            Some((id, secret)) => field("client_id") == id && field("client_secret") == secret,
            None => !field("client_id").is_empty() && !field("client_secret").is_empty(),
        };
        if !client_ok {
            return (401, json!({"error": "invalid_client"}));
        }
        let presented = field("refresh_token");
        let Some(location) = self
            .live
            .iter()
            .find(|(_, (_, refresh))| refresh == presented)
            .map(|(location, _)| location.clone())
        else {
            self.refused += 1;
            return (
                400,
                json!({"error": "invalid_grant", "error_description": "Invalid refresh token"}),
            );
        };
        self.issued += 1;
        self.granted += 1;
        let n = self.issued;
        let prefix = &self.endpoint.issue_prefix;
        let (access, refresh) = (
            format!("{prefix}access-{n}-{location}"),
            format!("{prefix}refresh-{n}-{location}"),
        );
        self.set(&location, &access, &refresh);
        (
            200,
            json!({"access_token": access, "token_type": "Bearer", "expires_in": 86399,
                   "refresh_token": refresh, "scope": "socialplanner/csv.write",
                   "userType": "Location", "locationId": location}),
        )
    }

    /// The authorization-code grant of an install: a code `company:<companyId>` brings the
    /// agency's pair, `location:<companyId>:<locationId>` a location's; each code is good once.
    fn exchange_code(
        &mut self,
        client: Option<&(String, String)>,
        form: &HashMap<String, String>,
    ) -> (u16, Value) {
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
        let client_ok = match client {
            Some((id, secret)) => field("client_id") == id && field("client_secret") == secret,
            None => !field("client_id").is_empty() && !field("client_secret").is_empty(),
        };
        if !client_ok {
            return (401, json!({"error": "invalid_client"}));
        }
        let code = field("code");
        let parts: Vec<&str> = code.split(':').collect();
        let (user_type, company, location) = match parts.as_slice() {
            ["company", company] => ("Company", *company, None),
            ["location", company, location] => ("Location", *company, Some(*location)),
            _ => {
                return (
                    400,
                    json!({"error": "invalid_grant", "error_description": "Invalid code"}),
                )
            }
        };
        if !self.used_codes.insert(code.to_owned()) {
            return (
                400,
                json!({"error": "invalid_grant", "error_description": "Code already used"}),
            );
        }
        self.issued += 1;
        let n = self.issued;
        let owner = location.unwrap_or(company);
        let (access, refresh) = (
            format!("installed-access-{n}-{owner}"),
            format!("installed-refresh-{n}-{owner}"),
        );
        self.set(owner, &access, &refresh);
        let mut body = json!({"access_token": access, "token_type": "Bearer", "expires_in": 86399,
                              "refresh_token": refresh, "scope": "socialplanner/csv.write",
                              "userType": user_type, "companyId": company, "userId": "installer-1"});
        if let Some(location) = location {
            body["locationId"] = json!(location);
        }
        (200, body)
    }
}

/// The form as recorded: the client secret and refresh token shown as `[redacted]`.
pub(super) fn redacted_form(form: &HashMap<String, String>) -> Value {
    let shown: serde_json::Map<String, Value> = form
        .iter()
        .map(|(key, value)| {
            let value = match key.as_str() {
                "client_secret" | "refresh_token" | "code" => "[redacted]",
                _ => value.as_str(),
            };
            (key.clone(), Value::String(value.to_owned()))
        })
        .collect();
    Value::Object(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(refresh: &str) -> HashMap<String, String> {
        [
            ("grant_type", "refresh_token"),
            ("client_id", "c"),
            ("client_secret", "s"),
            ("refresh_token", refresh),
            ("user_type", "Location"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn rotates_the_pair_and_refuses_a_spent_refresh_token() {
        let mut pairs = Pairs::default();
        pairs.set("L1", "a0", "r0");
        let (status, body) = pairs.refresh(None, true, &form("r0"));
        assert_eq!(status, 200);
        assert_eq!(pairs.live("L1").unwrap().1, body["refresh_token"]);
        assert_eq!(pairs.access_token("L1"), body["access_token"].as_str());
        let (status, body) = pairs.refresh(None, true, &form("r0"));
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        assert_eq!((pairs.granted, pairs.refused), (1, 1));
    }

    #[test]
    fn checks_the_client_and_the_grant() {
        let mut pairs = Pairs::default();
        pairs.set("L1", "a0", "r0");
        let client = ("c".to_owned(), "other".to_owned());
        assert_eq!(pairs.refresh(Some(&client), true, &form("r0")).0, 401);
        assert_eq!(pairs.refresh(None, false, &form("r0")).0, 400);
        assert_eq!(pairs.granted, 0);
    }

    #[test]
    fn never_records_the_secrets_of_a_refresh() {
        let shown = redacted_form(&form("r-secret")).to_string();
        assert!(
            !shown.contains("r-secret") && !shown.contains("\"s\""),
            "{shown}"
        );
        assert!(shown.contains("refresh_token"));
    }
}
