//! Where HighLevel tokens come from: Secrets Manager (cached, OAuth-refreshing) or one local
//! token.
//!
//! Each secret has one slot, guarded by an async mutex: every read, refresh and write of that
//! secret inside this instance happens under it, so an instance refreshes a secret at most once
//! at a time and concurrent requests wait and share the result.
//!
//! Across instances (many Lambda sandboxes), OAuth refresh stays safe because:
//! - before refreshing, the secret is read again, and a newer pair stored by another instance
//!   is used instead;
//! - every write is conditional on the version that was read (see
//!   [`crate::oauth::successor_token`]): if another instance wrote first, the write fails, and
//!   the secret is read again, this instance's entry merged in, and written again — so no write
//!   ever puts back another entry's old values;
//! - if HighLevel refuses the refresh token (another instance used it first), the secret is
//!   read again for up to [`WINNER_WAIT`] and the winner's pair is used;
//! - a new pair that could not be written is kept in memory (it may be the only live one) and
//!   written first on the next request for that secret.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::error::Error;
use crate::finalize::Budget;
use crate::ids::LocationId;
use crate::oauth::{successor_token, Grant, OAuthEntry};
use crate::secrets::{ReadError, SecretsClient, WriteError};
use crate::token_secret::{EntryPath, Token, TokenSecret};
use crate::upstream::{Attempt, HighLevel};

/// The placeholder that selects one secret per location.
pub const LOCATION_PLACEHOLDER: &str = "{locationId}";
/// How long to wait for another instance's refreshed pair after HighLevel refused ours.
pub const WINNER_WAIT: Duration = Duration::from_secs(2);
/// Pause between reads while waiting for the winner's pair.
const WINNER_POLL: Duration = Duration::from_millis(200);
/// Conditional writes attempted before giving up on a secret that keeps changing.
const MAX_WRITES: usize = 5;

/// A token and the cache generation it came from.
#[derive(Debug, Clone)]
pub struct LeasedToken {
    /// The bearer token.
    pub token: Token,
    generation: u64,
}

/// The token source chosen by the configuration.
pub enum TokenSource {
    /// `GHL_TOKEN`: one literal token for every location.
    Static(Token),
    /// `GHL_TOKEN_SECRET_ID`: Secrets Manager.
    SecretsManager(Box<SecretStore>),
}

impl TokenSource {
    /// The token to use for `location`, refreshing an OAuth pair that is about to expire.
    /// A call to the token endpoint counts against `budget`.
    pub async fn token(
        &self,
        location: &LocationId,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        match self {
            TokenSource::Static(token) => Ok(LeasedToken {
                token: token.clone(),
                generation: 0,
            }),
            TokenSource::SecretsManager(store) => store.token(location, budget).await,
        }
    }

    /// After HighLevel refused `refused`: reads the secret again (unless another request already
    /// did) and, for an OAuth entry still holding the refused token, refreshes it.
    pub async fn reload(
        &self,
        location: &LocationId,
        refused: &LeasedToken,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        match self {
            TokenSource::Static(_) => Ok(refused.clone()),
            TokenSource::SecretsManager(store) => store.reload(location, refused, budget).await,
        }
    }

    /// A short description for the start-up log line (never the token).
    pub fn describe(&self) -> String {
        match self {
            TokenSource::Static(_) => "local token from GHL_TOKEN".into(),
            TokenSource::SecretsManager(store) => {
                format!("Secrets Manager secret {}", store.secret_id)
            }
        }
    }
}

/// Substitutes the location into a secret-id template. The id was validated, so the result
/// names exactly one secret.
pub fn resolve(secret_id: &str, location: &LocationId) -> String {
    secret_id.replace(LOCATION_PLACEHOLDER, location.as_str())
}

/// Token secrets in Secrets Manager, cached per secret id.
pub struct SecretStore {
    secret_id: String,
    client: SecretsClient,
    ttl: Duration,
    skew: Duration,
    highlevel: HighLevel,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    generations: AtomicU64,
}

/// What this instance knows of one secret.
#[derive(Default)]
struct Slot {
    loaded: Option<Loaded>,
    /// Refreshed entries not yet written back: never dropped until written.
    unwritten: Vec<(EntryPath, Map<String, Value>)>,
}

struct Loaded {
    secret: TokenSecret,
    /// The secret's JSON object (absent for a bare token).
    document: Option<Map<String, Value>>,
    version_id: Option<String>,
    loaded_at: Instant,
    generation: u64,
}

impl SecretStore {
    /// A store for `secret_id` (possibly a `{locationId}` template).
    pub fn new(
        secret_id: String,
        client: SecretsClient,
        ttl: Duration,
        skew: Duration,
        highlevel: HighLevel,
    ) -> Self {
        Self {
            secret_id,
            client,
            ttl,
            skew,
            highlevel,
            slots: Mutex::new(HashMap::new()),
            generations: AtomicU64::new(1),
        }
    }

    fn slot(&self, id: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(slots.entry(id.to_owned()).or_default())
    }

    async fn token(&self, location: &LocationId, budget: &Budget) -> Result<LeasedToken, Error> {
        let id = resolve(&self.secret_id, location);
        let slot = self.slot(&id);
        let mut slot = slot.lock().await;
        self.write_unwritten(&id, &mut slot, budget).await?;
        let fresh = slot
            .loaded
            .as_ref()
            .is_some_and(|l| l.loaded_at.elapsed() < self.ttl);
        if !fresh {
            slot.loaded = Some(self.load(&id, location, budget).await?);
        }
        let (token, oauth) = entry(&slot, location)?;
        match oauth {
            Some(oauth) if oauth.expires_within(now_unix(), self.skew) => {
                tracing::info!(location_id = %location, "OAuth access token expires soon; refreshing");
                self.refresh(&id, &mut slot, location, &token, budget).await
            }
            _ => Ok(lease(&slot, token)),
        }
    }

    async fn reload(
        &self,
        location: &LocationId,
        refused: &LeasedToken,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        let id = resolve(&self.secret_id, location);
        let slot = self.slot(&id);
        let mut slot = slot.lock().await;
        self.write_unwritten(&id, &mut slot, budget).await?;
        if slot
            .loaded
            .as_ref()
            .is_some_and(|l| l.generation != refused.generation)
        {
            // Another request re-read or refreshed since this token was handed out.
            let (token, _) = entry(&slot, location)?;
            return Ok(lease(&slot, token));
        }
        slot.loaded = Some(self.load(&id, location, budget).await?);
        let (token, oauth) = entry(&slot, location)?;
        if oauth.is_some() && token == refused.token {
            tracing::info!(location_id = %location, "HighLevel refused the OAuth access token; refreshing");
            return self.refresh(&id, &mut slot, location, &token, budget).await;
        }
        Ok(lease(&slot, token))
    }

    /// Refreshes the OAuth entry of `location` whose access token is `stale`.
    async fn refresh(
        &self,
        id: &str,
        slot: &mut Slot,
        location: &LocationId,
        stale: &Token,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        // Another instance may have refreshed already: read again before spending the refresh token.
        slot.loaded = Some(self.load(id, location, budget).await?);
        let (token, oauth) = entry(slot, location)?;
        let Some(oauth) = oauth else {
            return Ok(lease(slot, token));
        };
        if token != *stale && !oauth.expires_within(now_unix(), self.skew) {
            tracing::info!(location_id = %location, "using the OAuth pair another instance stored");
            return Ok(lease(slot, token));
        }
        let form = oauth.refresh_form().map_err(|problem| {
            Error::config(format!("cannot refresh the OAuth token: {problem}"), None)
        })?;
        let unavailable = |source| Error::UpstreamUnavailable {
            reply: None,
            retry_after: Some(crate::retry::DEFAULT_RETRY_AFTER),
            source,
        };
        // A transient failure of the token endpoint, timeouts included, is a 503.
        let reply = match self.highlevel.refresh_token(form, budget.deadline()).await {
            Attempt::Answered(answer) => answer.reply,
            Attempt::TimedOut => {
                return Err(unavailable(Some("the token endpoint timed out".into())))
            }
            Attempt::NotDelivered(source) | Attempt::Broken(source) => {
                return Err(unavailable(Some(source)))
            }
        };
        match reply.status {
            200..=299 => {}
            400 => return self.adopt_winner(id, slot, location, &oauth, budget).await,
            429 | 500..=599 => {
                tracing::warn!(location_id = %location, status = reply.status, "the token endpoint is unavailable");
                return Err(unavailable(None));
            }
            status => {
                tracing::error!(location_id = %location, status, "the token endpoint refused the refresh");
                return Err(Error::UpstreamAuthFailed(without_body(reply)));
            }
        }
        let grant = Grant::parse(&serde_json::to_vec(&reply.body).unwrap_or_default()).ok_or_else(|| {
            tracing::error!(location_id = %location, "the token endpoint answered 2xx without a token pair");
            Error::UpstreamAuthFailed(without_body(reply.clone()))
        })?;
        let path = entry_path(slot, location)?;
        let mut object = current_entry(slot, &path);
        grant.apply(&mut object, now_unix());
        tracing::info!(location_id = %location, "OAuth token refreshed; storing the new pair");
        slot.unwritten.push((path, object));
        self.write_unwritten(id, slot, budget).await?;
        let (token, _) = entry(slot, location)?;
        Ok(lease(slot, token))
    }

    /// HighLevel refused our refresh token: another instance probably used it. Read the secret
    /// again for up to [`WINNER_WAIT`] and take the winner's pair.
    async fn adopt_winner(
        &self,
        id: &str,
        slot: &mut Slot,
        location: &LocationId,
        spent: &OAuthEntry,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        tracing::warn!(location_id = %location, "the token endpoint refused the refresh token; looking for a newer pair");
        let until = Instant::now() + WINNER_WAIT;
        loop {
            slot.loaded = Some(self.load(id, location, budget).await?);
            let (token, oauth) = entry(slot, location)?;
            if oauth.is_some_and(|o| o.refresh_token != spent.refresh_token) {
                tracing::info!(location_id = %location, "using the OAuth pair another instance stored");
                return Ok(lease(slot, token));
            }
            if Instant::now() + WINNER_POLL > until {
                tracing::error!(location_id = %location, "the refresh token was refused and no newer pair appeared");
                return Err(Error::UpstreamAuthFailed(
                    crate::upstream::UpstreamReply::new(400, Value::Null, false),
                ));
            }
            tokio::time::sleep(WINNER_POLL).await;
        }
    }

    /// Writes refreshed entries that are not stored yet, conditionally on the version read,
    /// merging into a newer version when another writer got there first.
    async fn write_unwritten(
        &self,
        id: &str,
        slot: &mut Slot,
        budget: &Budget,
    ) -> Result<(), Error> {
        if slot.unwritten.is_empty() {
            return Ok(());
        }
        for _ in 0..MAX_WRITES {
            let Some(loaded) = slot.loaded.as_ref() else {
                slot.loaded = Some(self.load_any(id, budget).await?);
                continue;
            };
            let document = merged(loaded.document.as_ref(), &slot.unwritten);
            let text = Value::Object(document.clone()).to_string();
            let token = successor_token(id, loaded.version_id.as_deref());
            match self.client.write(id, &text, &token).await {
                Ok(version_id) => {
                    slot.loaded = Some(self.loaded_from(document, version_id)?);
                    slot.unwritten.clear();
                    return Ok(());
                }
                Err(WriteError::Conflict) => {
                    tracing::info!(secret_id = %id, "the secret changed since it was read; merging and writing again");
                    slot.loaded = Some(self.load_any(id, budget).await?);
                }
                Err(error) => {
                    // Keep the new pair in memory: it may be the only live one.
                    let document = merged(
                        slot.loaded.as_ref().and_then(|l| l.document.as_ref()),
                        &slot.unwritten,
                    );
                    let version_id = slot.loaded.as_ref().and_then(|l| l.version_id.clone());
                    if let Ok(loaded) = self.loaded_from(document, version_id) {
                        slot.loaded = Some(loaded);
                    }
                    tracing::error!(secret_id = %id, error = %crate::error::chain(&error), "could not store the refreshed OAuth pair; keeping it in memory and retrying on the next request");
                    return Err(match error {
                        WriteError::Denied { .. } => Error::config(
                            "cannot write the token secret",
                            Some(Box::new(error) as _),
                        ),
                        _ => Error::SecretUnavailable(Box::new(error)),
                    });
                }
            }
        }
        Err(Error::SecretUnavailable(
            "the token secret kept changing while being written".into(),
        ))
    }

    async fn load(
        &self,
        id: &str,
        location: &LocationId,
        budget: &Budget,
    ) -> Result<Loaded, Error> {
        self.load_any(id, budget)
            .await
            .map_err(|error| match error {
                Error::Config {
                    source: Some(source),
                    ..
                } if is_not_found(&*source) && self.secret_id.contains(LOCATION_PLACEHOLDER) => {
                    Error::LocationNotAllowed(location.clone())
                }
                other => other,
            })
    }

    /// Reads and parses the secret. The read (never a write) gives up at the Lambda deadline.
    async fn load_any(&self, id: &str, budget: &Budget) -> Result<Loaded, Error> {
        let read = within_lambda(budget, self.client.read_versioned(id))
            .await?
            .map_err(|error| error.into_error("the token secret"))?;
        let secret = TokenSecret::parse(read.text.expose()).map_err(|problem| {
            ReadError::Config {
                id: id.to_owned(),
                problem,
            }
            .into_error("the token secret")
        })?;
        let document = match serde_json::from_str::<Value>(read.text.expose().trim()) {
            Ok(Value::Object(object)) => Some(object),
            _ => None,
        };
        Ok(Loaded {
            secret,
            document,
            version_id: read.version_id,
            loaded_at: Instant::now(),
            generation: self.next_generation(),
        })
    }

    fn loaded_from(
        &self,
        document: Map<String, Value>,
        version_id: Option<String>,
    ) -> Result<Loaded, Error> {
        let text = Value::Object(document.clone()).to_string();
        let secret = TokenSecret::parse(&text).map_err(|problem| {
            Error::config(format!("refreshed secret does not parse: {problem}"), None)
        })?;
        Ok(Loaded {
            secret,
            document: Some(document),
            version_id,
            loaded_at: Instant::now(),
            generation: self.next_generation(),
        })
    }

    fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed)
    }
}

/// Runs a secret read, giving up with 503 `secret_unavailable` at the Lambda deadline (less
/// the margin) so the function still answers in time.
pub async fn within_lambda<T>(
    budget: &Budget,
    read: impl std::future::Future<Output = T>,
) -> Result<T, Error> {
    match budget.lambda_deadline() {
        Some(deadline) => tokio::time::timeout_at(deadline, read).await.map_err(|_| {
            Error::SecretUnavailable(
                "the Lambda deadline came before Secrets Manager answered".into(),
            )
        }),
        None => Ok(read.await),
    }
}

fn is_not_found(error: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        error.downcast_ref::<ReadError>(),
        Some(ReadError::NotFound { .. })
    )
}

/// The entry for `location`: its token and OAuth details, or 403.
fn entry(slot: &Slot, location: &LocationId) -> Result<(Token, Option<OAuthEntry>), Error> {
    slot.loaded
        .as_ref()
        .and_then(|l| l.secret.entry_for(location))
        .map(|(entry, _)| (entry.token.clone(), entry.oauth.clone()))
        .ok_or_else(|| Error::LocationNotAllowed(location.clone()))
}

fn entry_path(slot: &Slot, location: &LocationId) -> Result<EntryPath, Error> {
    slot.loaded
        .as_ref()
        .and_then(|l| l.secret.entry_for(location))
        .map(|(_, path)| path)
        .ok_or_else(|| Error::LocationNotAllowed(location.clone()))
}

/// The entry's JSON object as currently known.
fn current_entry(slot: &Slot, path: &EntryPath) -> Map<String, Value> {
    let document = slot.loaded.as_ref().and_then(|l| l.document.as_ref());
    match path {
        EntryPath::Root => document.cloned().unwrap_or_default(),
        EntryPath::Location(location) => document
            .and_then(|d| d.get(location))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    }
}

/// `document` with `entries` written in, every other field and entry kept.
fn merged(
    document: Option<&Map<String, Value>>,
    entries: &[(EntryPath, Map<String, Value>)],
) -> Map<String, Value> {
    let mut document = document.cloned().unwrap_or_default();
    for (path, object) in entries {
        match path {
            EntryPath::Root => document = object.clone(),
            EntryPath::Location(location) => {
                document.insert(location.clone(), Value::Object(object.clone()));
            }
        }
    }
    document
}

fn lease(slot: &Slot, token: Token) -> LeasedToken {
    LeasedToken {
        token,
        generation: slot.loaded.as_ref().map_or(0, |l| l.generation),
    }
}

/// The token endpoint's body may echo credentials: never pass it on.
fn without_body(reply: crate::upstream::UpstreamReply) -> crate::upstream::UpstreamReply {
    crate::upstream::UpstreamReply::new(reply.status, Value::Null, false)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_the_location_placeholder() {
        let location = LocationId::parse("L1").unwrap();
        assert_eq!(resolve("ghl/{locationId}/token", &location), "ghl/L1/token");
        assert_eq!(resolve("ghl/token", &location), "ghl/token");
    }

    #[test]
    fn merging_keeps_other_locations_and_replaces_only_ours() {
        let document = json!({"L1": {"access_token": "a1", "refresh_token": "r1"}, "L2": "pit-2"});
        let ours = json!({"access_token": "a1b", "refresh_token": "r1b"})
            .as_object()
            .unwrap()
            .clone();
        let merged = merged(
            document.as_object(),
            &[(EntryPath::Location("L1".into()), ours)],
        );
        assert_eq!(
            Value::Object(merged),
            json!({"L1": {"access_token": "a1b", "refresh_token": "r1b"}, "L2": "pit-2"})
        );
    }

    #[test]
    fn merging_a_root_entry_replaces_the_document() {
        let ours = json!({"access_token": "a2", "refresh_token": "r2", "client_id": "c"})
            .as_object()
            .unwrap()
            .clone();
        let merged = merged(
            json!({"access_token": "a1"}).as_object(),
            &[(EntryPath::Root, ours.clone())],
        );
        assert_eq!(merged, ours);
    }
}
