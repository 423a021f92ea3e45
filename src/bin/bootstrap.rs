//! The Lambda entry point: read the configuration, build the app, serve invocations.

use ghl_csv_finalize::{lambda, App, Config};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env().inspect_err(|error| {
        tracing::error!(variable = error.var, "{error}");
    })?;
    let app = App::build(config).await?;
    lambda::run(&app).await
}
