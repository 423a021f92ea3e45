//! The one HTTPS client: reqwest on rustls, built once per instance and shared by the HighLevel
//! client and the AWS SDK clients — one TLS set-up, one pool of connections per host.
//!
//! The trusted roots are chosen once: the operator's `SSL_CERT_FILE` / `SSL_CERT_DIR` when set,
//! else the Mozilla root set compiled into the binary (`webpki-roots`), which costs nothing to
//! load. (Reading and parsing the system's PEM bundle, once per TLS client, was most of the
//! Lambda init time.)

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;

use crate::error::BoxError;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an idle kept-alive connection is kept for the next warm invocation.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// Builds the client. No redirects are followed: a redirect would carry a bearer token or a
/// signed AWS request somewhere the operator did not configure.
pub fn client() -> Result<reqwest::Client, BoxError> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config()?)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .user_agent(concat!("ghl-csv-finalize/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// TLS 1.2 and 1.3 with AWS-LC (the crypto library already linked for HMAC and digests).
pub(crate) fn tls_config() -> Result<rustls::ClientConfig, BoxError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots())
        .with_no_client_auth())
}

/// The operator's roots when `SSL_CERT_FILE` or `SSL_CERT_DIR` names them, else the built-in
/// Mozilla set.
fn roots() -> RootCertStore {
    let configured = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    if configured {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::warn!(error = %error, "could not load a trusted root certificate");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
        if ignored > 0 || added == 0 {
            tracing::warn!(
                added,
                ignored,
                "trusted roots from SSL_CERT_FILE / SSL_CERT_DIR"
            );
        }
        roots
    } else {
        RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusts_the_built_in_mozilla_roots_by_default() {
        if std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some()
        {
            return; // the operator's roots are in use in this environment
        }
        assert_eq!(roots().len(), webpki_roots::TLS_SERVER_ROOTS.len());
        assert!(client().is_ok());
    }
}
