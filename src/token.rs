//! Where HighLevel tokens come from: Secrets Manager (cached) or one local token.
//!
//! [`TokenSource::token`] answers the token for a location; [`TokenSource::reload`] drops a
//! token HighLevel refused and reads the secret again — once per refusal, however many
//! requests saw the same refused token at the same time.

use crate::cache::SingleFlightCache;
use crate::error::Error;
use crate::ids::LocationId;
use crate::secrets::{ReadError, SecretsClient};
use crate::token_secret::{Token, TokenSecret};

/// The placeholder that selects one secret per location.
pub const LOCATION_PLACEHOLDER: &str = "{locationId}";

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
    /// `GHL_TOKEN_SECRET_ID`: Secrets Manager, cached per secret.
    SecretsManager {
        /// Secret name or ARN, possibly with [`LOCATION_PLACEHOLDER`].
        secret_id: String,
        /// The shared client.
        client: SecretsClient,
        /// Parsed secrets by resolved secret id.
        cache: SingleFlightCache<TokenSecret>,
    },
}

impl TokenSource {
    /// The token to use for `location`.
    pub async fn token(&self, location: &LocationId) -> Result<LeasedToken, Error> {
        match self {
            TokenSource::Static(token) => Ok(LeasedToken {
                token: token.clone(),
                generation: 0,
            }),
            TokenSource::SecretsManager {
                secret_id,
                client,
                cache,
            } => {
                let id = resolve(secret_id, location);
                let cached = cache.get(&id, || load(client, &id)).await;
                pick(
                    cached.map_err(|e| read_error(e, secret_id, location))?,
                    location,
                )
            }
        }
    }

    /// Reads the secret again after HighLevel refused `refused` (unless another request already did).
    pub async fn reload(
        &self,
        location: &LocationId,
        refused: &LeasedToken,
    ) -> Result<LeasedToken, Error> {
        match self {
            TokenSource::Static(_) => Ok(refused.clone()),
            TokenSource::SecretsManager {
                secret_id,
                client,
                cache,
            } => {
                let id = resolve(secret_id, location);
                let cached = cache
                    .reload(&id, refused.generation, || load(client, &id))
                    .await;
                pick(
                    cached.map_err(|e| read_error(e, secret_id, location))?,
                    location,
                )
            }
        }
    }

    /// A short description for the start-up log line (never the token).
    pub fn describe(&self) -> String {
        match self {
            TokenSource::Static(_) => "local token from GHL_TOKEN".into(),
            TokenSource::SecretsManager { secret_id, .. } => {
                format!("Secrets Manager secret {secret_id}")
            }
        }
    }
}

/// Substitutes the location into a secret-id template. The id was validated, so the result
/// names exactly one secret.
pub fn resolve(secret_id: &str, location: &LocationId) -> String {
    secret_id.replace(LOCATION_PLACEHOLDER, location.as_str())
}

async fn load(client: &SecretsClient, id: &str) -> Result<TokenSecret, ReadError> {
    let text = client.read(id).await?;
    TokenSecret::parse(text.expose()).map_err(|problem| ReadError::Config {
        id: id.to_owned(),
        problem,
    })
}

fn pick(
    cached: crate::cache::Cached<TokenSecret>,
    location: &LocationId,
) -> Result<LeasedToken, Error> {
    match cached.value.token_for(location) {
        Some(token) => Ok(LeasedToken {
            token: token.clone(),
            generation: cached.generation,
        }),
        None => Err(Error::LocationNotAllowed(location.clone())),
    }
}

fn read_error(error: ReadError, secret_id: &str, location: &LocationId) -> Error {
    match error {
        ReadError::NotFound { .. } if secret_id.contains(LOCATION_PLACEHOLDER) => {
            Error::LocationNotAllowed(location.clone())
        }
        ReadError::Transient { .. } => Error::SecretUnavailable(Box::new(error)),
        other => Error::config(
            "the token secret cannot be used",
            Some(Box::new(other) as _),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_location_placeholder() {
        let location = LocationId::parse("L1").unwrap();
        assert_eq!(resolve("ghl/{locationId}/token", &location), "ghl/L1/token");
        assert_eq!(resolve("ghl/token", &location), "ghl/token");
    }
}
