//! moto for the benchmarks: started from the project's script, and a pass-through in front of
//! it that counts the calls a function makes.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ghl_csv_finalize::local::server::serve_connections;

/// AWS calls seen by the counting proxy, by service.
#[derive(Default)]
pub struct Calls {
    pub secrets: AtomicU64,
    pub dynamodb: AtomicU64,
    /// Time spent on DynamoDB exchanges, from the proxy receiving the request to its having the
    /// answer (microseconds): the round trips the function waits for.
    pub dynamodb_micros: AtomicU64,
}

/// A pass-through to moto that counts Secrets Manager and DynamoDB calls.
pub async fn counting_proxy(moto: String) -> (String, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    let counter = Arc::clone(&calls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let client = reqwest::Client::new();
    let handle = serve_connections(
        listener,
        Default::default(),
        move |request: http::Request<hyper::body::Incoming>| {
            let (client, moto, counter) = (client.clone(), moto.clone(), Arc::clone(&counter));
            async move {
                use http_body_util::BodyExt;
                let (parts, body) = request.into_parts();
                let target = parts
                    .headers
                    .get("x-amz-target")
                    .map(|v| v.as_bytes().to_vec())
                    .unwrap_or_default();
                if target.starts_with(b"secretsmanager.") {
                    counter.secrets.fetch_add(1, Ordering::SeqCst);
                } else if target.starts_with(b"DynamoDB_") {
                    counter.dynamodb.fetch_add(1, Ordering::SeqCst);
                }
                let is_dynamodb = target.starts_with(b"DynamoDB_");
                let started = Instant::now();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let mut forward = client
                    .post(format!("{moto}{}", parts.uri.path()))
                    .body(body);
                for (name, value) in &parts.headers {
                    if name != http::header::HOST {
                        forward = forward.header(name, value);
                    }
                }
                let mut response =
                    http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                if let Ok(answer) = forward.send().await {
                    *response.status_mut() = answer.status();
                    *response.headers_mut() = answer.headers().clone();
                    *response.body_mut() =
                        http_body_util::Full::new(answer.bytes().await.unwrap_or_default());
                }
                if is_dynamodb {
                    let micros = started.elapsed().as_micros() as u64;
                    counter.dynamodb_micros.fetch_add(micros, Ordering::SeqCst);
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        },
    );
    std::mem::forget(handle);
    (format!("http://{address}"), calls)
}

pub fn start_moto() -> (std::process::Child, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/moto_server.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with moto (pip install 'moto[server]')");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("moto starts");
    (child, line.trim().to_owned())
}

/// A Secrets Manager client for `endpoint` (moto, or the proxy in front of it), sending
/// through the function's HTTPS client.
pub fn secrets(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .http_client(ghl_csv_finalize::aws::sdk_http_client(
                ghl_csv_finalize::app::https::client().expect("the HTTPS client builds"),
            ))
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
            .build(),
    )
}
