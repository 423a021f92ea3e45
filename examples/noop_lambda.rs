//! The floor for the cold-start benchmark: a Lambda function that answers a fixed 200 and
//! does nothing else (no I/O, no configuration). Whatever it costs, any Rust Lambda costs.

use lambda_http::lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run(service_fn(|_event: LambdaEvent<Value>| async {
        Ok::<_, Error>(json!({"statusCode": 200, "headers": {"content-type": "application/json"}, "body": "{\"ok\":true}"}))
    }))
    .await
}
