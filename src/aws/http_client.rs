//! The AWS SDK's HTTP client: requests go out through the function's one reqwest client
//! ([`crate::app::https`]), so the SDK brings no second TLS set-up or connection pool of its own.
//!
//! The SDK's orchestrator keeps its own timeouts (per attempt, per operation) and retries; this
//! only moves bytes, applies the read timeout the SDK asks for, and sorts transport failures into
//! the SDK's kinds (timeout, I/O) so its retry policy and our error classification see the same
//! faults as with the SDK's built-in client.

use std::time::Duration;

use aws_sdk_secretsmanager::config::SharedHttpClient;
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;

/// Largest answer read from an AWS endpoint; anything longer is a fault, not a secret.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// An SDK HTTP client sending through `http`.
pub fn sdk_http_client(http: reqwest::Client) -> SharedHttpClient {
    http_client_fn(move |settings, _components| {
        SharedHttpConnector::new(Connector {
            http: http.clone(),
            read_timeout: settings.read_timeout(),
        })
    })
}

#[derive(Debug)]
struct Connector {
    http: reqwest::Client,
    read_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (http, read_timeout) = (self.http.clone(), self.read_timeout);
        HttpConnectorFuture::new(async move { send(http, read_timeout, request).await })
    }
}

async fn send(
    http: reqwest::Client,
    read_timeout: Option<Duration>,
    request: HttpRequest,
) -> Result<HttpResponse, ConnectorError> {
    let request = request
        .try_into_http1x()
        .map_err(|e| ConnectorError::user(e.into()))?;
    let (parts, body) = request.into_parts();
    let body = body
        .bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| ConnectorError::user("a streaming request body is not supported".into()))?;
    let mut outgoing = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body);
    if let Some(timeout) = read_timeout {
        outgoing = outgoing.timeout(timeout);
    }
    let mut response = outgoing.send().await.map_err(transport_error)?;
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ConnectorError::other(
                "the AWS endpoint answered with more than 1 MiB".into(),
                None,
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let mut answer = http::Response::new(SdkBody::from(bytes));
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    HttpResponse::try_from(answer).map_err(|e| ConnectorError::other(e.into(), None))
}

/// A timeout stays a timeout; a failed connect is I/O that never reached the endpoint.
fn transport_error(error: reqwest::Error) -> ConnectorError {
    if error.is_timeout() {
        ConnectorError::timeout(error.into())
    } else if error.is_connect() {
        ConnectorError::io(error.into()).never_connected()
    } else {
        ConnectorError::io(error.into())
    }
}
