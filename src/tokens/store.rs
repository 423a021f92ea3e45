//! Token secrets in Secrets Manager: cached per secret, OAuth pairs refreshed safely.
//!
//! Each secret has one [`SecretState`] behind its own async lock: every read, refresh and write
//! of that secret inside this instance happens under it, so an instance refreshes a secret at
//! most once at a time and concurrent requests wait and share the result.
//!
//! Across instances (many Lambda sandboxes), OAuth refresh stays safe because:
//! - before refreshing, the secret is read again, and a newer pair stored by another instance
//!   is used instead;
//! - every write is conditional on the version that was read (see
//!   [`successor_token`]): if another instance wrote first, the write fails, and
//!   the secret is read again, this instance's entry merged in, and written again — so no write
//!   ever puts back another entry's old values;
//! - if HighLevel refuses the refresh token (another instance used it first), the secret is
//!   read again for up to [`WINNER_WAIT`] and the winner's pair is used;
//! - a new pair that could not be written is kept in memory (it may be the only live one) and
//!   written first on the next request for that secret.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::OwnedMutexGuard;

use super::oauth::{successor_token, Grant, OAuthEntry, REFRESHED_FIELDS};
use super::secret::{EntryPath, TokenSecret, UNINSTALLED_AT};
use super::template::{resolve, LOCATION_PLACEHOLDER};
use super::token::Token;
use crate::aws::secrets_manager::{ReadError, SecretsClient, WriteError};
use crate::cache::{Forgettable, KeyedLocks};
use crate::error::{chain, Error};
use crate::highlevel::{Exchange, HighLevel};
use crate::request::deadline::{unix_seconds, Budget, Deadline};
use crate::request::ids::LocationId;
use crate::upstream::UpstreamReply;

/// How long to wait for another instance's refreshed pair after HighLevel refused ours.
pub(crate) const WINNER_WAIT: Duration = Duration::from_secs(2);
/// Pause between reads while waiting for the winner's pair.
const WINNER_POLL: Duration = Duration::from_millis(200);
/// Conditional writes attempted before giving up on a secret that keeps changing.
const MAX_WRITES: usize = 5;
/// The longest the token endpoint may take (within the HighLevel budget).
const TOKEN_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to store a new pair: a fresh read and a write, each up to the client's timeout.
const WRITE_BACK_TIME: Duration = SecretsClient::OPERATION_TIMEOUT.saturating_mul(2);
/// `Retry-After` for a refresh that is needed now but has no time left in this invocation.
const NO_TIME_RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long a location without a secret of its own is answered 403 without reading again
/// (at most the cache TTL).
const UNKNOWN_LOCATION_TTL: Duration = Duration::from_secs(60);

/// A token handed out, with the generation of the secret read it came from: after a 401, a
/// request whose token is older than what the store now holds takes the newer one instead of
/// reading again.
#[derive(Debug, Clone)]
pub(crate) struct LeasedToken {
    /// The bearer token.
    pub token: Token,
    generation: u64,
}

impl LeasedToken {
    /// A token that no secret read produced (the local `GHL_TOKEN`).
    pub(crate) fn fixed(token: Token) -> Self {
        Self {
            token,
            generation: 0,
        }
    }

    /// A token of the `generation`th mint (a location token minted from the agency's).
    pub(crate) fn minted(token: Token, generation: u64) -> Self {
        Self { token, generation }
    }

    /// Which read or mint it came from.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

/// Token secrets in Secrets Manager, cached per secret id.
pub(crate) struct SecretStore {
    secret_id: String,
    client: SecretsClient,
    ttl: Duration,
    skew: Duration,
    highlevel: HighLevel,
    secrets: KeyedLocks<SecretState>,
    generations: AtomicU64,
    /// Refreshes and unwritten pairs, shared with the observer that reports them.
    counters: Arc<TokenCounters>,
}

/// The store's running counts, shared with whoever reports them (the fronts' observer): made
/// once per instance and handed to both, so the metrics need no path through the store.
#[derive(Debug, Default)]
pub struct TokenCounters {
    /// OAuth refreshes since the instance started.
    refreshes: AtomicU64,
    /// Refreshed pairs held in memory, not yet written back.
    unwritten_pairs: AtomicU64,
    /// Location tokens minted from the agency's pair since the instance started.
    minted: AtomicU64,
}

impl TokenCounters {
    /// One refresh, its pair held unwritten until [`TokenCounters::written`].
    pub(crate) fn refreshed(&self) {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        self.unwritten_pairs.fetch_add(1, Ordering::Relaxed);
    }

    /// One location token minted.
    pub(crate) fn minted(&self) {
        self.minted.fetch_add(1, Ordering::Relaxed);
    }

    /// `pairs` held pairs written back.
    pub(crate) fn written(&self, pairs: u64) {
        self.unwritten_pairs.fetch_sub(pairs, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> TokenStats {
        TokenStats {
            refreshes: self.refreshes.load(Ordering::Relaxed),
            unwritten_pairs: self.unwritten_pairs.load(Ordering::Relaxed),
            minted: self.minted.load(Ordering::Relaxed),
        }
    }
}

/// What the store has done, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenStats {
    /// OAuth refreshes since the instance started.
    pub refreshes: u64,
    /// Refreshed pairs held in memory because they could not be written back yet.
    pub unwritten_pairs: u64,
    /// Location tokens minted from the agency's pair since the instance started.
    pub minted: u64,
}

/// What this instance knows of one secret.
#[derive(Default)]
struct SecretState {
    loaded: Option<Loaded>,
    /// Refreshed entries not yet written back: never dropped until written.
    unwritten: Vec<Refreshed>,
    /// When the secret was last found not to exist (a `{locationId}` template naming an
    /// unknown location): answered 403 again for a while without reading.
    missing_since: Option<Instant>,
}

impl Forgettable for SecretState {
    /// A state holding an unwritten pair is never dropped: it may be the only live pair.
    fn forgettable(&self) -> bool {
        self.unwritten.is_empty()
    }
}

/// A refreshed entry waiting to be stored.
struct Refreshed {
    path: EntryPath,
    /// The fields the refresh set ([`REFRESHED_FIELDS`]), applied to the entry as stored.
    fields: Map<String, Value>,
    /// The whole entry as refreshed, for when the stored entry is gone or no longer an object.
    entry: Map<String, Value>,
}

/// One read (or write) of a secret, parsed.
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
    pub(crate) fn new(
        secret_id: String,
        client: SecretsClient,
        ttl: Duration,
        skew: Duration,
        highlevel: HighLevel,
        counters: Arc<TokenCounters>,
    ) -> Self {
        Self {
            secret_id,
            client,
            ttl,
            skew,
            highlevel,
            secrets: KeyedLocks::new(),
            generations: AtomicU64::new(1),
            counters,
        }
    }

    /// The app was uninstalled at `location` (at `when`, RFC 3339): its token ends. A secret of
    /// its own gets a new version `{"uninstalledAt": …}` (never deleted: a later install writes
    /// it again); a map loses its entry (its last one leaves `{"uninstalledAt": …}`); one token
    /// for every location is left as it is. Conditional on the version read, like a refresh's
    /// write. True when a token was ended.
    pub(crate) async fn uninstall(&self, location: &LocationId, when: &str) -> Result<bool, Error> {
        let (id, mut state) = self.open(location).await?;
        let own_secret = self.secret_id.contains(LOCATION_PLACEHOLDER);
        let until = Deadline::at(tokio::time::Instant::now() + WRITE_BACK_TIME);
        let uninstalled = || {
            let mut document = Map::new();
            document.insert(UNINSTALLED_AT.into(), Value::String(when.to_owned()));
            document
        };
        for _ in 0..MAX_WRITES {
            let current = match self.read(&id, until).await {
                Ok(current) => current,
                Err(ReadError::NotFound { .. }) if own_secret => return Ok(false),
                Err(error) => return Err(error.into_error("the token secret")),
            };
            let document = match (&current.secret, current.document) {
                _ if own_secret => uninstalled(),
                (TokenSecret::Map(map), Some(mut document))
                    if map.contains_key(location.as_str()) =>
                {
                    document.remove(location.as_str());
                    if document.is_empty() {
                        uninstalled()
                    } else {
                        document
                    }
                }
                _ => return Ok(false),
            };
            let text = Value::Object(document.clone()).to_string();
            let token = successor_token(&id, current.version_id.as_deref());
            match until.bound(self.client.write(&id, &text, &token)).await {
                Some(Ok(version_id)) => {
                    state.loaded = Some(self.written(document, version_id)?);
                    return Ok(true);
                }
                Some(Err(WriteError::Conflict)) => continue,
                Some(Err(error)) => return Err(Error::SecretUnavailable(Box::new(error))),
                None => {
                    return Err(Error::SecretUnavailable(
                        "the uninstall's write ran out of time".into(),
                    ))
                }
            }
        }
        Err(Error::SecretUnavailable(
            "the token secret kept changing while an uninstall was written".into(),
        ))
    }

    /// Stores a pair an install brought: the whole secret when it is `root` (the agency's) or
    /// `location`'s own (created if it does not exist), else `location`'s entry of a map (its
    /// other entries kept). False when the secret holds one token for every location: a
    /// location's pair has nowhere to go. Conditional on the version read, like a refresh's
    /// write.
    pub(crate) async fn install(
        &self,
        location: &LocationId,
        entry: &Map<String, Value>,
        root: bool,
    ) -> Result<bool, Error> {
        let (id, mut state) = self.open(location).await?;
        let whole = root || self.secret_id.contains(LOCATION_PLACEHOLDER);
        let until = Deadline::at(tokio::time::Instant::now() + WRITE_BACK_TIME);
        for _ in 0..MAX_WRITES {
            let current = match self.read(&id, until).await {
                Ok(current) => Some(current),
                Err(ReadError::NotFound { .. }) if whole => None,
                Err(error) => return Err(error.into_error("the token secret")),
            };
            let document = match &current {
                _ if whole => entry.clone(),
                Some(Loaded {
                    secret: TokenSecret::Map(_),
                    document: Some(document),
                    ..
                }) => {
                    let mut document = document.clone();
                    document.remove(UNINSTALLED_AT);
                    document.insert(location.as_str().to_owned(), Value::Object(entry.clone()));
                    document
                }
                _ => return Ok(false),
            };
            let text = Value::Object(document.clone()).to_string();
            let written = match &current {
                Some(current) => {
                    let token = successor_token(&id, current.version_id.as_deref());
                    until.bound(self.client.write(&id, &text, &token)).await
                }
                None => until.bound(self.client.create(&id, &text)).await,
            };
            match written {
                Some(Ok(version_id)) => {
                    state.loaded = Some(self.written(document, version_id)?);
                    state.missing_since = None;
                    return Ok(true);
                }
                Some(Err(WriteError::Conflict)) => continue,
                Some(Err(WriteError::Denied { .. })) => {
                    return Err(Error::config("the token secret cannot be written", None))
                }
                Some(Err(error)) => return Err(Error::SecretUnavailable(Box::new(error))),
                None => {
                    return Err(Error::SecretUnavailable(
                        "the install's write ran out of time".into(),
                    ))
                }
            }
        }
        Err(Error::SecretUnavailable(
            "the token secret kept changing while an install was written".into(),
        ))
    }

    /// The text field `name` at the root of the secret `location` reads, as last read (the
    /// agency secret's `companyId`).
    pub(crate) async fn root_text(&self, location: &LocationId, name: &str) -> Option<String> {
        let id = resolve(&self.secret_id, location);
        let state = self.secrets.lock_for(&id).lock_owned().await;
        let document = state.loaded.as_ref()?.document.as_ref()?;
        document.get(name)?.as_str().map(str::to_owned)
    }

    /// The secret id as configured (possibly a `{locationId}` template).
    pub(crate) fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The token for `location`, refreshing an OAuth pair that expires within the skew.
    pub(crate) async fn token(
        &self,
        location: &LocationId,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        let (id, mut state) = self.open(location).await?;
        let fresh = state
            .loaded
            .as_ref()
            .is_some_and(|l| l.loaded_at.elapsed() < self.ttl);
        if !fresh {
            self.read_into(&id, &mut state, location, budget).await?;
        }
        let (token, oauth) = entry(&state, location)?;
        let now = unix_seconds();
        match oauth {
            Some(oauth) if oauth.expires_within(now, self.skew) => {
                tracing::info!(location_id = %location, "OAuth access token expires soon; refreshing");
                let still_valid = !oauth.expires_within(now, Duration::ZERO);
                match self
                    .refresh(&id, &mut state, location, &token, budget)
                    .await
                {
                    // A proactive refresh that failed for a passing cause (and left no new pair
                    // behind) costs nothing: the access token is still valid.
                    Err(error)
                        if still_valid
                            && state.unwritten.is_empty()
                            && matches!(
                                error,
                                Error::UpstreamUnavailable { .. } | Error::SecretUnavailable(_)
                            ) =>
                    {
                        tracing::warn!(location_id = %location, error = %chain(&error), "could not refresh the OAuth pair ahead of its expiry; using the still-valid access token");
                        Ok(lease(&state, token))
                    }
                    result => result,
                }
            }
            _ => Ok(lease(&state, token)),
        }
    }

    /// After HighLevel refused `refused`: reads the secret again (unless another request already
    /// did) and, for an OAuth entry still holding the refused token, refreshes it.
    pub(crate) async fn reload(
        &self,
        location: &LocationId,
        refused: &LeasedToken,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        let (id, mut state) = self.open(location).await?;
        if state
            .loaded
            .as_ref()
            .is_some_and(|l| l.generation != refused.generation)
        {
            // Another request re-read or refreshed since this token was handed out.
            let (token, _) = entry(&state, location)?;
            return Ok(lease(&state, token));
        }
        self.read_into(&id, &mut state, location, budget).await?;
        let (token, oauth) = entry(&state, location)?;
        if oauth.is_some() && token == refused.token {
            tracing::info!(location_id = %location, "HighLevel refused the OAuth access token; refreshing");
            return self
                .refresh(&id, &mut state, location, &token, budget)
                .await;
        }
        Ok(lease(&state, token))
    }

    /// The secret `location` reads and what this instance knows of it, locked for this request,
    /// after writing back any refreshed pair still unwritten.
    async fn open(
        &self,
        location: &LocationId,
    ) -> Result<(String, OwnedMutexGuard<SecretState>), Error> {
        let id = resolve(&self.secret_id, location);
        let mut state = self.secrets.lock_for(&id).lock_owned().await;
        self.write_unwritten(&id, &mut state).await?;
        Ok((id, state))
    }

    /// Refreshes the OAuth entry of `location` whose access token is `stale`.
    async fn refresh(
        &self,
        id: &str,
        state: &mut SecretState,
        location: &LocationId,
        stale: &Token,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        // Another instance may have refreshed already: read again before spending the refresh token.
        self.read_into(id, state, location, budget).await?;
        let (token, oauth) = entry(state, location)?;
        let Some(oauth) = oauth else {
            return Ok(lease(state, token));
        };
        if token != *stale && !oauth.expires_within(unix_seconds(), self.skew) {
            tracing::info!(location_id = %location, "using the OAuth pair another instance stored");
            return Ok(lease(state, token));
        }
        let form = oauth.refresh_form().map_err(|problem| {
            Error::config(format!("cannot refresh the OAuth token: {problem}"), None)
        })?;
        let unavailable = |source, retry_after| Error::UpstreamUnavailable {
            reply: None,
            retry_after: Some(retry_after),
            source,
        };
        // Spend the refresh token only with time to store what it buys: HighLevel kills it the
        // moment it answers, and a pair lost with this invocation is a location locked out.
        let Some(call_until) = refresh_window(budget) else {
            tracing::warn!(location_id = %location, "too little time left in this invocation to refresh the OAuth pair and store it");
            return Err(unavailable(
                Some("too little time left to refresh and store the OAuth pair".into()),
                NO_TIME_RETRY_AFTER,
            ));
        };
        let retry_after = crate::highlevel::retry::DEFAULT_RETRY_AFTER;
        // A transient failure of the token endpoint, timeouts included, is a 503.
        let reply = match self.highlevel.refresh_token(&form, call_until).await {
            Exchange::Answered { reply, .. } => reply,
            Exchange::TimedOut => {
                return Err(unavailable(
                    Some("the token endpoint timed out".into()),
                    retry_after,
                ))
            }
            Exchange::NotDelivered(source) | Exchange::Broken(source) => {
                return Err(unavailable(Some(source), retry_after))
            }
        };
        match reply.status {
            200..=299 => {}
            400 => return self.adopt_winner(id, state, location, &oauth, budget).await,
            429 | 500..=599 => {
                tracing::warn!(location_id = %location, status = reply.status, "the token endpoint is unavailable");
                return Err(unavailable(None, retry_after));
            }
            status => {
                tracing::error!(location_id = %location, status, "the token endpoint refused the refresh");
                return Err(Error::UpstreamAuthFailed(UpstreamReply::status_only(
                    status,
                )));
            }
        }
        let grant = Grant::from_value(&reply.body).ok_or_else(|| {
            tracing::error!(location_id = %location, "the token endpoint answered 2xx without a token pair");
            Error::UpstreamAuthFailed(UpstreamReply::status_only(reply.status))
        })?;
        let path = entry_path(state, location)?;
        let mut refreshed = current_entry(state, &path);
        grant.apply(&mut refreshed, unix_seconds());
        let fields = REFRESHED_FIELDS
            .iter()
            .filter_map(|key| {
                refreshed
                    .get(*key)
                    .map(|value| ((*key).to_owned(), value.clone()))
            })
            .collect();
        tracing::info!(location_id = %location, "OAuth token refreshed; storing the new pair");
        state.unwritten.push(Refreshed {
            path,
            fields,
            entry: refreshed,
        });
        self.counters.refreshed();
        self.write_unwritten(id, state).await?;
        let (token, _) = entry(state, location)?;
        Ok(lease(state, token))
    }

    /// HighLevel refused our refresh token: another instance probably used it. Read the secret
    /// again for up to [`WINNER_WAIT`] and take the winner's pair.
    async fn adopt_winner(
        &self,
        id: &str,
        state: &mut SecretState,
        location: &LocationId,
        spent: &OAuthEntry,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        tracing::warn!(location_id = %location, "the token endpoint refused the refresh token; looking for a newer pair");
        let started = Instant::now();
        loop {
            self.read_into(id, state, location, budget).await?;
            let (token, oauth) = entry(state, location)?;
            if oauth.is_some_and(|o| o.refresh_token != spent.refresh_token) {
                tracing::info!(location_id = %location, "using the OAuth pair another instance stored");
                return Ok(lease(state, token));
            }
            if started.elapsed().saturating_add(WINNER_POLL) > WINNER_WAIT {
                tracing::error!(location_id = %location, "the refresh token was refused and no newer pair appeared");
                return Err(Error::RefreshLost(UpstreamReply::status_only(400)));
            }
            tokio::time::sleep(WINNER_POLL).await;
        }
    }

    /// Writes refreshed entries that are not stored yet. Each write goes on top of the secret as
    /// it is at that moment (read again first, so an operator's edit since is kept) and is
    /// conditional on that version, so of two writers only one succeeds and the other merges
    /// into the winner's version and writes again. A refresh is only started with the time the
    /// write-back needs ([`WRITE_BACK_TIME`]), and the write-back keeps to it, however often
    /// another writer wins: what is not stored by then is kept for the next request.
    async fn write_unwritten(&self, id: &str, state: &mut SecretState) -> Result<(), Error> {
        if state.unwritten.is_empty() {
            return Ok(());
        }
        // Every round of re-read and write ends within the time a refresh reserved for them.
        let until = Deadline::at(tokio::time::Instant::now() + WRITE_BACK_TIME);
        for _ in 0..MAX_WRITES {
            let current = match self.read(id, until).await {
                Ok(current) => current,
                Err(error) => {
                    return Err(self.keep_unwritten(
                        id,
                        state,
                        error.into_error("the token secret"),
                    ))
                }
            };
            let document = merged(current.document.as_ref(), &state.unwritten);
            let text = Value::Object(document.clone()).to_string();
            let token = successor_token(id, current.version_id.as_deref());
            let written = match until.bound(self.client.write(id, &text, &token)).await {
                Some(written) => written,
                None => {
                    let late = "the write-back ran out of the time reserved for it";
                    return Err(self.keep_unwritten(
                        id,
                        state,
                        Error::SecretUnavailable(late.into()),
                    ));
                }
            };
            match written {
                Ok(version_id) => {
                    state.loaded = Some(self.written(document, version_id)?);
                    let written = state.unwritten.len() as u64;
                    self.counters.written(written);
                    state.unwritten.clear();
                    return Ok(());
                }
                Err(WriteError::Conflict) => {
                    tracing::info!(secret_id = %id, "another writer stored a version first; merging into it and writing again");
                }
                Err(error) => {
                    let error = match error {
                        WriteError::Denied { .. } => Error::config(
                            "cannot write the token secret",
                            Some(Box::new(error) as _),
                        ),
                        _ => Error::SecretUnavailable(Box::new(error)),
                    };
                    return Err(self.keep_unwritten(id, state, error));
                }
            }
        }
        Err(self.keep_unwritten(
            id,
            state,
            Error::SecretUnavailable("the token secret kept changing while being written".into()),
        ))
    }

    /// A new pair that could not be stored stays in memory (it may be the only live one) and
    /// is written first on the next request for the secret; the request gets `error`.
    fn keep_unwritten(&self, id: &str, state: &mut SecretState, error: Error) -> Error {
        let document = merged(
            state.loaded.as_ref().and_then(|l| l.document.as_ref()),
            &state.unwritten,
        );
        let version_id = state.loaded.as_ref().and_then(|l| l.version_id.clone());
        if let Ok(loaded) = self.written(document, version_id) {
            state.loaded = Some(loaded);
        }
        tracing::error!(secret_id = %id, error = %chain(&error), "could not store the refreshed OAuth pair; keeping it in memory and retrying on the next request");
        error
    }

    /// Reads the secret `id` for `location` into `state`. Under a `{locationId}` template a
    /// secret that does not exist means an unknown location (403), remembered for a while so
    /// repeated requests for it do not each read Secrets Manager; any other failure is the
    /// contract's 500/503.
    async fn read_into(
        &self,
        id: &str,
        state: &mut SecretState,
        location: &LocationId,
        budget: &Budget,
    ) -> Result<(), Error> {
        let remembered = UNKNOWN_LOCATION_TTL.min(self.ttl);
        if state
            .missing_since
            .is_some_and(|since| since.elapsed() < remembered)
        {
            return Err(Error::LocationNotAllowed(location.clone()));
        }
        match self.read(id, budget.hard_deadline()).await {
            Ok(loaded) => {
                state.loaded = Some(loaded);
                state.missing_since = None;
                Ok(())
            }
            Err(ReadError::NotFound { .. }) if self.secret_id.contains(LOCATION_PLACEHOLDER) => {
                state.missing_since = Some(Instant::now());
                Err(Error::LocationNotAllowed(location.clone()))
            }
            Err(error) => Err(error.into_error("the token secret")),
        }
    }

    /// Reads and parses the secret `id` (one JSON parse), giving up at `deadline`.
    async fn read(&self, id: &str, deadline: Deadline) -> Result<Loaded, ReadError> {
        let read = self.client.read(id, deadline).await?;
        let parsed =
            TokenSecret::parse(read.text.expose()).map_err(|problem| ReadError::Config {
                id: id.to_owned(),
                problem,
            })?;
        Ok(Loaded {
            secret: parsed.secret,
            document: parsed.json,
            version_id: read.version_id,
            loaded_at: Instant::now(),
            generation: self.next_generation(),
        })
    }

    /// What this instance now knows the secret holds, after writing `document` (or keeping it
    /// unwritten).
    fn written(
        &self,
        document: Map<String, Value>,
        version_id: Option<String>,
    ) -> Result<Loaded, Error> {
        let secret = TokenSecret::from_object(&document).map_err(|problem| {
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

/// The entry for `location`: its token and OAuth details, or 403.
fn entry(state: &SecretState, location: &LocationId) -> Result<(Token, Option<OAuthEntry>), Error> {
    state
        .loaded
        .as_ref()
        .and_then(|l| l.secret.entry_for(location))
        .map(|(entry, _)| (entry.token.clone(), entry.oauth.clone()))
        .ok_or_else(|| Error::LocationNotAllowed(location.clone()))
}

fn entry_path(state: &SecretState, location: &LocationId) -> Result<EntryPath, Error> {
    state
        .loaded
        .as_ref()
        .and_then(|l| l.secret.entry_for(location))
        .map(|(_, path)| path)
        .ok_or_else(|| Error::LocationNotAllowed(location.clone()))
}

/// The entry's JSON object as currently known.
fn current_entry(state: &SecretState, path: &EntryPath) -> Map<String, Value> {
    let document = state.loaded.as_ref().and_then(|l| l.document.as_ref());
    match path {
        EntryPath::Root => document.cloned().unwrap_or_default(),
        EntryPath::Location(location) => document
            .and_then(|d| d.get(location))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    }
}

/// `document` with the refreshed fields of `entries` written in, every other field and entry
/// kept (a whole refreshed entry only where the stored one is gone or not an object).
fn merged(document: Option<&Map<String, Value>>, entries: &[Refreshed]) -> Map<String, Value> {
    let mut document = document.cloned();
    for refreshed in entries {
        let target = match (&refreshed.path, document.as_mut()) {
            (EntryPath::Root, Some(root)) => Some(root),
            (EntryPath::Location(location), Some(root)) => match root.get_mut(location) {
                Some(Value::Object(entry)) => Some(entry),
                _ => {
                    root.insert(location.clone(), Value::Object(refreshed.entry.clone()));
                    None
                }
            },
            (EntryPath::Root, None) => {
                document = Some(refreshed.entry.clone());
                None
            }
            (EntryPath::Location(location), None) => {
                let mut root = Map::new();
                root.insert(location.clone(), Value::Object(refreshed.entry.clone()));
                document = Some(root);
                None
            }
        };
        if let Some(target) = target {
            for (key, value) in &refreshed.fields {
                target.insert(key.clone(), value.clone());
            }
        }
    }
    document.unwrap_or_default()
}

/// Until when the token endpoint may take, if this invocation has the time to call it and then
/// store a new pair; `None` if it does not.
fn refresh_window(budget: &Budget) -> Option<tokio::time::Instant> {
    let now = tokio::time::Instant::now();
    let call_until = budget
        .deadline()
        .min(now.checked_add(TOKEN_CALL_TIMEOUT).unwrap_or(now));
    match budget.hard_deadline().instant() {
        None => Some(call_until),
        Some(hard) => call_until
            .checked_add(WRITE_BACK_TIME)
            .filter(|stored_by| *stored_by <= hard)
            .map(|_| call_until),
    }
}

fn lease(state: &SecretState, token: Token) -> LeasedToken {
    LeasedToken {
        token,
        generation: state.loaded.as_ref().map_or(0, |l| l.generation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refreshed(path: EntryPath, fields: Value, entry: Value) -> Refreshed {
        Refreshed {
            path,
            fields: fields.as_object().unwrap().clone(),
            entry: entry.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn merging_applies_only_the_refreshed_fields_and_keeps_every_other_entry_and_edit() {
        let stored = json!({"L1": {"access_token": "a1", "refresh_token": "r1", "client_secret": "rotated"},
                            "L2": "pit-2"});
        let ours = refreshed(
            EntryPath::Location("L1".into()),
            json!({"access_token": "a1b", "refresh_token": "r1b", "expires_at": 9}),
            json!({"access_token": "a1b", "refresh_token": "r1b", "expires_at": 9, "client_secret": "old"}),
        );
        let merged = merged(stored.as_object(), &[ours]);
        assert_eq!(
            Value::Object(merged),
            json!({"L1": {"access_token": "a1b", "refresh_token": "r1b", "client_secret": "rotated", "expires_at": 9},
                   "L2": "pit-2"})
        );
    }

    #[test]
    fn merging_writes_the_whole_entry_where_the_stored_one_is_gone() {
        let ours = refreshed(
            EntryPath::Location("L1".into()),
            json!({"access_token": "a1b"}),
            json!({"access_token": "a1b", "client_id": "c"}),
        );
        let merged = merged(json!({"L2": "pit-2"}).as_object(), &[ours]);
        assert_eq!(
            Value::Object(merged),
            json!({"L2": "pit-2", "L1": {"access_token": "a1b", "client_id": "c"}})
        );
        let root = refreshed(
            EntryPath::Root,
            json!({"access_token": "a2"}),
            json!({"access_token": "a2", "client_id": "c"}),
        );
        assert_eq!(
            Value::Object(super::merged(None, &[root])),
            json!({"access_token": "a2", "client_id": "c"})
        );
    }

    #[test]
    fn refreshes_only_with_the_time_to_store_the_new_pair() {
        use crate::request::deadline::Deadline;
        let roomy = Budget::new(
            Duration::from_secs(10),
            Deadline::after(Duration::from_secs(29)),
        );
        assert!(refresh_window(&roomy).is_some());
        let tight = Budget::new(
            Duration::from_secs(10),
            Deadline::after(Duration::from_secs(10)),
        );
        assert!(
            refresh_window(&tight).is_none(),
            "5 s for the call and 12 s to store it"
        );
        let local = Budget::new(Duration::from_secs(10), Deadline::NONE);
        assert!(refresh_window(&local).is_some());
    }
}
