//! The Lambda entry point: read the configuration, build the app, serve invocations.

use ghl_csv_finalize::app::{https, lambda};
use ghl_csv_finalize::aws::AwsClients;
use ghl_csv_finalize::{App, Config};

fn main() -> Result<(), lambda_http::Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> Result<(), lambda_http::Error> {
    ghl_csv_finalize::observe::logging::init();
    let config = Config::from_env().inspect_err(|error| {
        tracing::error!(variable = error.var, "{error}");
    })?;
    let http = https::client()?;
    // Lambda's environment holds everything the AWS clients need.
    let aws = AwsClients::from_lambda_env(&http, config.services());
    let app = App::build_with(config, http, aws).await?;
    lambda::run(std::sync::Arc::new(app)).await
}
