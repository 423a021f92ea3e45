//! The Lambda entry point: read the configuration, build the app, serve invocations.

use std::path::Path;

use ghl_csv_finalize::aws::SecretsClient;
use ghl_csv_finalize::{lambda, App, Config};

/// The system CA bundle on Amazon Linux 2023 (`provided.al2023`) and on Debian/Ubuntu.
const CA_BUNDLES: [&str; 2] = [
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-certificates.crt",
];

fn main() -> Result<(), lambda_http::Error> {
    prefer_ca_bundle();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> Result<(), lambda_http::Error> {
    ghl_csv_finalize::logging::init();
    let config = Config::from_env().inspect_err(|error| {
        tracing::error!(variable = error.var, "{error}");
    })?;
    // Lambda's environment holds everything the Secrets Manager client needs.
    let app = App::build_with(config, Some(SecretsClient::from_lambda_env())).await?;
    lambda::run(&app).await
}

/// Points `SSL_CERT_FILE` at the system CA bundle when nothing else is configured. Without it,
/// both TLS clients (the AWS SDK's and reqwest's) read the bundle *and* every file of
/// `/etc/ssl/certs`, hundreds of files, at init. Runs before any thread exists.
fn prefer_ca_bundle() {
    if std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some() {
        return;
    }
    if let Some(bundle) = CA_BUNDLES.iter().find(|path| Path::new(path).is_file()) {
        std::env::set_var("SSL_CERT_FILE", bundle);
    }
}
