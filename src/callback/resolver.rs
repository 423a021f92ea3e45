//! Name resolution for callbacks that never hands over an address a callback may not reach:
//! the callback client connects only to the addresses this resolver returned, so the check is
//! made against the address actually connected to, however the name's answers change between
//! the receiver's check and a delivery (DNS rebinding).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::request::callback::Reach;

/// How long a callback host's name may take to resolve.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a callback host may not be called. Names the host, never the URL.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    /// It resolves to an address a callback may never reach.
    #[error("the callback host {0} resolves to a loopback, private, link-local, unique-local, multicast or unspecified address")]
    Refused(String),
    /// It does not resolve (now).
    #[error("the callback host {0} does not resolve")]
    Unresolved(String),
}

/// Where names are looked up: the system's resolver, or (tests) fixed answers.
#[derive(Debug, Clone)]
pub(crate) enum Lookup {
    /// `getaddrinfo`, through tokio.
    System,
    /// Every name resolves to these addresses (tests of what a resolver may answer).
    #[cfg(test)]
    Fixed(Vec<IpAddr>),
}

/// The resolver of the callback client: every address of a name must be one `reach` admits.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    pub(crate) reach: Reach,
    pub(crate) lookup: Lookup,
}

impl GuardedResolver {
    /// The addresses of `host`, all of them admitted; refused if any one is not (a name with
    /// one private answer among public ones is refused: which one is used is not ours to say).
    pub(crate) async fn resolve_host(&self, host: &str) -> Result<Vec<IpAddr>, Unreachable> {
        let unresolved = || Unreachable::Unresolved(host.to_owned());
        let found: Vec<IpAddr> = match &self.lookup {
            Lookup::System => {
                tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, 0)))
                    .await
                    .map_err(|_| unresolved())?
                    .map_err(|_| unresolved())?
                    .map(|address| address.ip())
                    .collect()
            }
            #[cfg(test)]
            Lookup::Fixed(addresses) => addresses.clone(),
        };
        if found.is_empty() {
            return Err(unresolved());
        }
        if found
            .iter()
            .any(|address| !self.reach.admits_address(*address))
        {
            return Err(Unreachable::Refused(host.to_owned()));
        }
        Ok(found)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let found = this.resolve_host(name.as_str()).await?;
            let addrs: Addrs = Box::new(found.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}
