//! One agency connection for every sub-account: a location's token minted on demand from the
//! agency's OAuth pair (`GHL_AGENCY_SECRET_ID`).
//!
//! The agency pair lives in one secret, read, refreshed and written back by the
//! [`SecretStore`] like any OAuth entry (single flight, conflict-safe across instances). A
//! location's token is minted from it (`POST /oauth/locationToken`) and kept in this instance's
//! memory only — never written anywhere, never logged — until shortly before it expires; one
//! mint at a time per location, at most [`MINTED_CAPACITY`] locations kept (the least recently
//! used forgotten first). A location HighLevel refuses to mint for (the app is not installed
//! there, or it is not the agency's) is 403 `location_not_allowed`, remembered for a while like
//! an unknown location.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::store::{LeasedToken, SecretStore, TokenCounters};
use super::token::Token;
use crate::cache::{Forgettable, KeyedLocks};
use crate::error::{chain, Error};
use crate::highlevel::{Exchange, HighLevel};
use crate::request::deadline::{unix_seconds, Budget};
use crate::request::ids::LocationId;
use crate::upstream::UpstreamReply;

/// Locations whose minted token an instance keeps at most.
pub(crate) const MINTED_CAPACITY: usize = 4096;
/// How long a location HighLevel refused to mint for is answered 403 without asking again.
const REFUSED_TTL: Duration = Duration::from_secs(60);
/// The longest a mint may take (within the HighLevel budget).
const MINT_TIMEOUT: Duration = Duration::from_secs(5);
/// A minted token's life when HighLevel does not say (its documented 24 hours, less a minute).
const DEFAULT_EXPIRES_IN: i64 = 86_340;

/// What an instance knows of one location's minted token.
#[derive(Default)]
pub(crate) struct Minted {
    /// The token, when it expires (Unix seconds), and which mint made it.
    token: Option<(Token, i64, u64)>,
    /// When HighLevel last refused to mint for the location.
    refused_at: Option<Instant>,
}

impl Forgettable for Minted {
    /// A minted token can always be minted again.
    fn forgettable(&self) -> bool {
        true
    }
}

impl Minted {
    /// The kept token, while it is more than `skew` from expiring at `now`.
    fn usable(&self, now: i64, skew: Duration) -> Option<LeasedToken> {
        let skew = i64::try_from(skew.as_secs()).unwrap_or(i64::MAX);
        self.token
            .as_ref()
            .filter(|(_, expires_at, _)| expires_at.saturating_sub(now) > skew)
            .map(|(token, _, generation)| LeasedToken::minted(token.clone(), *generation))
    }

    /// Whether HighLevel refused this location within [`REFUSED_TTL`].
    fn recently_refused(&self) -> bool {
        self.refused_at.is_some_and(|at| at.elapsed() < REFUSED_TTL)
    }
}

/// Where the agency's access token comes from.
pub(crate) enum AgencyPair {
    /// `GHL_AGENCY_SECRET_ID`: the agency's OAuth entry, refreshed and written back.
    Secret(Box<SecretStore>),
    /// One literal agency token and its company (the local tools' `demo --agency`).
    Local {
        /// The agency's access token.
        token: Token,
        /// Its `companyId`.
        company_id: String,
    },
}

impl AgencyPair {
    async fn token(&self, location: &LocationId, budget: &Budget) -> Result<LeasedToken, Error> {
        match self {
            AgencyPair::Secret(store) => store.token(location, budget).await,
            AgencyPair::Local { token, .. } => Ok(LeasedToken::fixed(token.clone())),
        }
    }

    async fn reload(
        &self,
        location: &LocationId,
        refused: &LeasedToken,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        match self {
            AgencyPair::Secret(store) => store.reload(location, refused, budget).await,
            AgencyPair::Local { .. } => Ok(refused.clone()),
        }
    }

    /// The agency's `companyId`, as its secret was last read.
    async fn company_id(&self, location: &LocationId) -> Option<String> {
        match self {
            AgencyPair::Secret(store) => store.root_text(location, "companyId").await,
            AgencyPair::Local { company_id, .. } => Some(company_id.clone()),
        }
    }
}

/// Location tokens minted from the agency's pair.
pub(crate) struct AgencyTokens {
    agency: AgencyPair,
    highlevel: HighLevel,
    skew: Duration,
    minted: KeyedLocks<Minted>,
    mints: AtomicU64,
    counters: Arc<TokenCounters>,
}

impl AgencyTokens {
    /// Tokens minted with the agency pair `agency` holds, kept until `skew`
    /// (`OAUTH_REFRESH_SKEW_SECS`) before they expire.
    pub(crate) fn new(
        agency: AgencyPair,
        highlevel: HighLevel,
        skew: Duration,
        counters: Arc<TokenCounters>,
    ) -> Self {
        Self::with_capacity(agency, highlevel, skew, counters, MINTED_CAPACITY)
    }

    fn with_capacity(
        agency: AgencyPair,
        highlevel: HighLevel,
        skew: Duration,
        counters: Arc<TokenCounters>,
        capacity: usize,
    ) -> Self {
        Self {
            agency,
            highlevel,
            skew,
            minted: KeyedLocks::with_capacity(capacity),
            mints: AtomicU64::new(0),
            counters,
        }
    }

    /// Where the agency pair comes from, for the start-up log line.
    pub(crate) fn describe(&self) -> String {
        match &self.agency {
            AgencyPair::Secret(store) => {
                format!(
                    "location tokens minted from the agency secret {}",
                    store.secret_id()
                )
            }
            AgencyPair::Local { company_id, .. } => {
                format!("location tokens minted from a local agency token (company {company_id})")
            }
        }
    }

    /// The token for `location`: the one minted before while it has time left, else a new one.
    pub(crate) async fn token(
        &self,
        location: &LocationId,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        let lock = self.minted.lock_for(location.as_str());
        // One mint at a time per location: concurrent requests wait and share it.
        let mut minted = lock.lock().await;
        if minted.recently_refused() {
            return Err(Error::LocationNotAllowed(location.clone()));
        }
        if let Some(token) = minted.usable(unix_seconds(), self.skew) {
            return Ok(token);
        }
        self.mint(location, &mut minted, budget).await
    }

    /// After HighLevel refused the minted token `refused`: mints once more, unless another
    /// request already did.
    pub(crate) async fn reload(
        &self,
        location: &LocationId,
        refused: &LeasedToken,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        let lock = self.minted.lock_for(location.as_str());
        let mut minted = lock.lock().await;
        if let Some(newer) = minted
            .usable(unix_seconds(), self.skew)
            .filter(|kept| kept.generation() != refused.generation())
        {
            return Ok(newer);
        }
        tracing::info!(location_id = %location, "HighLevel refused a minted location token; minting again");
        minted.token = None;
        self.mint(location, &mut minted, budget).await
    }

    /// Stores the agency pair an install brought into the agency secret. False for a local
    /// agency token, which has no secret.
    pub(crate) async fn install(
        &self,
        entry: &serde_json::Map<String, Value>,
    ) -> Result<bool, Error> {
        let AgencyPair::Secret(store) = &self.agency else {
            return Ok(false);
        };
        // The agency secret is one for every location: any id names it.
        let any = LocationId::parse("agency").map_err(|_| Error::config("an id", None))?;
        store.install(&any, entry, true).await
    }

    /// The app was uninstalled at `location`: its minted token is dropped, and a finalize for
    /// it is 403 (remembered like a refused mint; HighLevel refuses to mint for it after).
    pub(crate) async fn uninstall(&self, location: &LocationId) -> bool {
        let lock = self.minted.lock_for(location.as_str());
        let mut minted = lock.lock().await;
        let had = minted.token.take().is_some();
        minted.refused_at = Some(Instant::now());
        had
    }

    /// Mints a token for `location` with the agency's pair; a 401 renews the pair first and
    /// mints once more.
    async fn mint(
        &self,
        location: &LocationId,
        minted: &mut Minted,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        let agency = self.agency.token(location, budget).await?;
        let company = self.agency.company_id(location).await.ok_or_else(|| {
            Error::config(
                "the agency secret names no companyId (the agency's OAuth answer carries it)",
                None,
            )
        })?;
        let mut reply = self.call(&agency, &company, location, budget).await?;
        if reply.status == 401 {
            tracing::info!(location_id = %location, "the token endpoint refused the agency's access token; renewing the agency pair");
            let renewed = self.agency.reload(location, &agency, budget).await?;
            reply = self.call(&renewed, &company, location, budget).await?;
        }
        match reply.status {
            200..=299 => {}
            400 | 401 | 403 | 404 | 422 => {
                tracing::warn!(location_id = %location, status = reply.status, "HighLevel refused to mint a token for the location (the app is not installed there, or it is not the agency's)");
                minted.refused_at = Some(Instant::now());
                minted.token = None;
                return Err(Error::LocationNotAllowed(location.clone()));
            }
            status => {
                tracing::warn!(location_id = %location, status, "the token endpoint could not mint a location token now");
                return Err(Error::UpstreamUnavailable {
                    reply: None,
                    retry_after: Some(crate::highlevel::retry::DEFAULT_RETRY_AFTER),
                    source: None,
                });
            }
        }
        let (token, expires_at) = minted_token(&reply.body, unix_seconds()).ok_or_else(|| {
            tracing::error!(location_id = %location, "the token endpoint answered 2xx without a location token");
            Error::UpstreamAuthFailed(UpstreamReply::status_only(reply.status))
        })?;
        let generation = self.mints.fetch_add(1, Ordering::Relaxed) + 1;
        self.counters.minted();
        minted.token = Some((token.clone(), expires_at, generation));
        minted.refused_at = None;
        Ok(LeasedToken::minted(token, generation))
    }

    /// One call of the token endpoint; a failure to get any answer is a 503.
    async fn call(
        &self,
        agency: &LeasedToken,
        company: &str,
        location: &LocationId,
        budget: &Budget,
    ) -> Result<UpstreamReply, Error> {
        let deadline = budget
            .deadline()
            .min(tokio::time::Instant::now() + MINT_TIMEOUT);
        let unavailable = |source| Error::UpstreamUnavailable {
            reply: None,
            retry_after: Some(crate::highlevel::retry::DEFAULT_RETRY_AFTER),
            source,
        };
        match self
            .highlevel
            .mint_location_token(agency.token.bearer(), company, location, deadline)
            .await
        {
            Exchange::Answered { reply, .. } => Ok(reply),
            Exchange::TimedOut => Err(unavailable(Some("the token endpoint timed out".into()))),
            Exchange::NotDelivered(source) | Exchange::Broken(source) => {
                tracing::warn!(location_id = %location, cause = %chain(&*source), "the token endpoint could not be reached");
                Err(unavailable(Some(source)))
            }
        }
    }
}

/// The token and its expiry (Unix seconds) in the token endpoint's answer at `now`.
fn minted_token(body: &Value, now: i64) -> Option<(Token, i64)> {
    let token = Token::parse(body.get("access_token")?.as_str()?).ok()?;
    let expires_in = body
        .get("expires_in")
        .and_then(Value::as_i64)
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_EXPIRES_IN);
    Some((token, now.saturating_add(expires_in)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_minted_token_and_its_expiry() {
        let (token, expires_at) = minted_token(
            &json!({"access_token": "loc-1", "expires_in": 86399}),
            1_000,
        )
        .unwrap();
        assert_eq!(token, Token::parse("loc-1").unwrap());
        assert_eq!(expires_at, 87_399);
        let (_, default) = minted_token(&json!({"access_token": "loc-1"}), 0).unwrap();
        assert_eq!(default, DEFAULT_EXPIRES_IN);
        assert!(minted_token(&json!({"expires_in": 5}), 0).is_none());
        assert!(minted_token(&json!({"access_token": "two words"}), 0).is_none());
    }

    #[test]
    fn a_minted_token_is_used_until_the_skew_before_it_expires() {
        let minted = Minted {
            token: Some((Token::parse("loc-1").unwrap(), 1_000, 7)),
            refused_at: None,
        };
        let skew = Duration::from_secs(300);
        assert_eq!(minted.usable(600, skew).map(|t| t.generation()), Some(7));
        assert!(minted.usable(700, skew).is_none(), "within the skew");
        assert!(minted.usable(2_000, Duration::ZERO).is_none(), "expired");
        assert!(Minted::default().usable(0, skew).is_none());
    }

    /// Tokens whose agency secret and token endpoint cannot be reached: only what is kept in
    /// memory can be answered.
    fn offline(capacity: usize) -> AgencyTokens {
        let unreachable = "http://127.0.0.1:9";
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
            .endpoint_url(unreachable)
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .build();
        let client = crate::aws::secrets_manager::SecretsClient::from_client(
            aws_sdk_secretsmanager::Client::from_conf(config),
        );
        let highlevel = HighLevel::new(
            reqwest::Client::new(),
            http::HeaderValue::from_static("2021-07-28"),
            &url::Url::parse(unreachable).unwrap(),
        )
        .unwrap();
        let counters = Arc::new(TokenCounters::default());
        let agency = SecretStore::new(
            "agency".into(),
            client,
            Duration::from_secs(300),
            Duration::from_secs(300),
            highlevel.clone(),
            Arc::clone(&counters),
        );
        AgencyTokens::with_capacity(
            AgencyPair::Secret(Box::new(agency)),
            highlevel,
            Duration::from_secs(300),
            counters,
            capacity,
        )
    }

    async fn seed(tokens: &AgencyTokens, location: &str) {
        let lock = tokens.minted.lock_for(location);
        lock.lock().await.token = Some((
            Token::parse(&format!("minted-{location}")).unwrap(),
            unix_seconds() + 86_400,
            1,
        ));
    }

    async fn token_of(tokens: &AgencyTokens, location: &str) -> Result<LeasedToken, Error> {
        let budget = Budget::new(
            Duration::from_secs(2),
            crate::request::deadline::Deadline::NONE,
        );
        tokens
            .token(&LocationId::parse(location).unwrap(), &budget)
            .await
    }

    #[tokio::test]
    async fn keeps_at_most_its_capacity_of_locations_forgetting_the_least_recently_used() {
        let tokens = offline(2);
        seed(&tokens, "L1").await;
        seed(&tokens, "L2").await;
        assert!(token_of(&tokens, "L1").await.is_ok(), "kept, no mint");
        seed(&tokens, "L3").await; // L2, the least recently used, is forgotten
        assert!(token_of(&tokens, "L1").await.is_ok());
        assert!(token_of(&tokens, "L3").await.is_ok());
        assert!(
            token_of(&tokens, "L2").await.is_err(),
            "forgotten: a mint was needed, and nothing can be reached"
        );
    }

    #[test]
    fn a_refusal_is_remembered_for_a_minute() {
        let mut minted = Minted::default();
        assert!(!minted.recently_refused());
        minted.refused_at = Some(Instant::now());
        assert!(minted.recently_refused());
        minted.refused_at = Instant::now().checked_sub(REFUSED_TTL);
        assert!(!minted.recently_refused());
    }
}
