//! Plain HTTP serving for local and container use: the same [`App::handle`] behind a small
//! hyper server, with graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::http::inbound::MAX_BODY_BYTES;

/// Stops a server started by [`serve_connections`], and counts its connections.
pub struct ShutdownHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    accepted: Arc<AtomicU64>,
}

impl ShutdownHandle {
    /// TCP connections accepted so far (to check that clients reuse connections).
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Stops accepting, then gives open connections up to `grace` to finish.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(grace, self.task).await;
    }
}

/// Accepts HTTP/1.1 connections on `listener` and answers each request with `handler`.
pub fn serve_connections<F, Fut>(listener: TcpListener, handler: F) -> ShutdownHandle
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let (stop, mut stopped) = watch::channel(false);
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let connection = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(handler.clone()));
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                }
                _ = stopped.changed() => break,
            }
        }
        graceful.shutdown().await;
    });
    ShutdownHandle {
        stop,
        task,
        accepted,
    }
}

/// A running local server for the app.
pub struct LocalServer {
    address: SocketAddr,
    shutdown: ShutdownHandle,
}

impl LocalServer {
    /// Serves `app` on `address` (port 0 picks a free port).
    pub async fn start(app: Arc<App>, address: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let shutdown = serve_connections(listener, move |request| {
            let app = Arc::clone(&app);
            async move {
                let request = into_lambda_request(request).await;
                Ok::<_, Infallible>(from_lambda_response(app.handle(request).await))
            }
        });
        Ok(Self { address, shutdown })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting and lets in-flight requests finish (up to `grace`).
    pub async fn stop(self, grace: Duration) {
        self.shutdown.shutdown(grace).await;
    }
}

/// Reads the body, but never more than one byte past the limit: enough for the handler to
/// answer 413 without buffering an unbounded upload.
async fn into_lambda_request(request: Request<Incoming>) -> lambda_http::Request {
    let (parts, mut body) = request.into_parts();
    let mut bytes = Vec::new();
    while bytes.len() <= MAX_BODY_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    bytes.truncate(MAX_BODY_BYTES + 1);
    let body = if bytes.is_empty() {
        lambda_http::Body::Empty
    } else {
        lambda_http::Body::Binary(bytes)
    };
    Request::from_parts(parts, body)
}

fn from_lambda_response(
    response: lambda_http::Response<lambda_http::Body>,
) -> Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Full::new(Bytes::copy_from_slice(body.as_ref())))
}
