//! Where HighLevel tokens come from, and keeping OAuth pairs alive.
//!
//! - [`token`]: the [`Token`] type, which owns its shape check and never prints.
//! - [`secret`]: the accepted forms of a token secret (bare token, object, map by location).
//! - [`oauth`]: the pure OAuth parts: expiry, the refresh request, applying the answer, the
//!   conditional-write token.
//! - [`store`]: Secrets Manager behind a per-secret cache, refreshing OAuth pairs safely across
//!   concurrent instances.
//! - [`template`]: the `{locationId}` secret-name template, and what it may not reach.
//! - [`agency`]: one agency connection for every sub-account: location tokens minted on demand
//!   from the agency's pair, kept in memory only.
//!
//! [`TokenSource`] picks between the store, the agency's minted tokens and one local token
//! (`GHL_TOKEN`).

pub(crate) mod agency;
pub(crate) mod oauth;
pub(crate) mod secret;
pub(crate) mod store;
pub mod template;
pub(crate) mod token;

pub use secret::{Parsed, TokenEntry, TokenSecret};
pub(crate) use store::{LeasedToken, SecretStore};
pub use store::{TokenCounters, TokenStats};
pub use template::resolve;
pub use token::{Token, TokenShapeError};

use crate::error::Error;
use crate::request::deadline::Budget;
use crate::request::ids::LocationId;

/// The token source chosen by the configuration.
pub(crate) enum TokenSource {
    /// `GHL_TOKEN`: one literal token for every location.
    Local(Token),
    /// `GHL_TOKEN_SECRET_ID`: Secrets Manager.
    SecretsManager(Box<SecretStore>),
    /// `GHL_AGENCY_SECRET_ID`: location tokens minted from the agency's pair.
    Agency(Box<agency::AgencyTokens>),
}

impl TokenSource {
    /// The token to use for `location`, refreshing an OAuth pair that is about to expire.
    /// A call to the token endpoint counts against `budget`.
    pub(crate) async fn token(
        &self,
        location: &LocationId,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        match self {
            TokenSource::Local(token) => Ok(LeasedToken::fixed(token.clone())),
            TokenSource::SecretsManager(store) => store.token(location, budget).await,
            TokenSource::Agency(agency) => agency.token(location, budget).await,
        }
    }

    /// After HighLevel refused `refused`: the token to retry with once (see
    /// [`SecretStore::reload`]); a local token stays what it is.
    pub(crate) async fn reload(
        &self,
        location: &LocationId,
        refused: &LeasedToken,
        budget: &Budget,
    ) -> Result<LeasedToken, Error> {
        match self {
            TokenSource::Local(_) => Ok(refused.clone()),
            TokenSource::SecretsManager(store) => store.reload(location, refused, budget).await,
            TokenSource::Agency(agency) => agency.reload(location, refused, budget).await,
        }
    }

    /// The app was uninstalled at `location` (at `when`, RFC 3339): its token ends, where it is
    /// the function's to end. True when a token was ended.
    pub(crate) async fn uninstall(&self, location: &LocationId, when: &str) -> Result<bool, Error> {
        match self {
            TokenSource::Local(_) => Ok(false),
            TokenSource::SecretsManager(store) => store.uninstall(location, when).await,
            TokenSource::Agency(agency) => Ok(agency.uninstall(location).await),
        }
    }

    /// Stores the pair an install brought where this source keeps such a pair: a Company pair
    /// in the agency secret, a Location pair in the location's secret or map entry. `None`
    /// when there is nowhere for it (the reason, safe to show).
    pub(crate) async fn install(
        &self,
        pair: &crate::install::InstalledPair,
    ) -> Result<Option<()>, Error> {
        use crate::install::Installed;
        let entry = pair.entry.expose();
        let stored = match (self, &pair.installed) {
            (TokenSource::Agency(agency), Installed::Company) => agency.install(entry).await?,
            (TokenSource::SecretsManager(store), Installed::Location(location)) => {
                store.install(location, entry, false).await?
            }
            _ => false,
        };
        Ok(stored.then_some(()))
    }

    /// A short description for the start-up log line (never the token).
    pub(crate) fn describe(&self) -> String {
        match self {
            TokenSource::Local(_) => "local token from GHL_TOKEN".into(),
            TokenSource::SecretsManager(store) => {
                format!("Secrets Manager secret {}", store.secret_id())
            }
            TokenSource::Agency(agency) => agency.describe(),
        }
    }
}
