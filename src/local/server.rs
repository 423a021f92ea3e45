//! Plain HTTP serving for local and container use: the same [`App::respond`] behind a small
//! hyper server, with graceful shutdown. [`serve_connections`] is shared with the HighLevel
//! stand-in, which can also close idle kept-alive connections the way a real server does.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::app::App;
use crate::error::BoxError;
use crate::fronts::http::inbound::MAX_BODY_BYTES;

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

/// How connections are kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Connections {
    /// Close a kept-alive connection this long after its last answer, without telling the
    /// client (as servers and load balancers do); `None` keeps it until the client closes it.
    pub close_idle_after: Option<Duration>,
}

/// Accepts HTTP/1.1 connections on `listener` and answers each request with `handler`. A
/// handler that fails closes the connection without an answer.
pub fn serve_connections<F, Fut, B, E>(
    listener: TcpListener,
    connections: Connections,
    handler: F,
) -> ShutdownHandle
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError> + 'static,
{
    let (stop, mut stopped) = watch::channel(false);
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        let mut open = JoinSet::new();
        loop {
            tokio::select! {
                next = listener.accept() => {
                    let Ok((stream, _)) = next else { continue };
                    counter.fetch_add(1, Ordering::Relaxed);
                    open.spawn(serve_one(stream, connections, handler.clone(), stopped.clone()));
                }
                _ = stopped.changed() => break,
            }
            while open.try_join_next().is_some() {}
        }
        while open.join_next().await.is_some() {}
    });
    ShutdownHandle {
        stop,
        task,
        accepted,
    }
}

/// Serves one connection until the client closes it, it stays idle too long, or the server
/// stops (then in-flight requests finish first).
async fn serve_one<F, Fut, B, E>(
    stream: TcpStream,
    connections: Connections,
    handler: F,
    mut stopped: watch::Receiver<bool>,
) where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError> + 'static,
{
    let answered = Arc::new(Notify::new());
    let signal = Arc::clone(&answered);
    let service = service_fn(move |request| {
        let (answer, signal) = (handler(request), Arc::clone(&signal));
        async move {
            let answer = answer.await;
            signal.notify_one();
            answer
        }
    });
    let mut connection =
        pin!(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    let far = || Instant::now() + Duration::from_secs(24 * 3600);
    let mut idle = pin!(tokio::time::sleep_until(far()));
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = answered.notified(), if connections.close_idle_after.is_some() => {
                let after = connections.close_idle_after.unwrap_or_default();
                idle.as_mut().reset(Instant::now() + after);
            }
            _ = idle.as_mut() => {
                connection.as_mut().graceful_shutdown();
                idle.as_mut().reset(far());
            }
            _ = stopped.changed() => connection.as_mut().graceful_shutdown(),
        }
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
        let shutdown = serve_connections(listener, Connections::default(), move |request| {
            let app = Arc::clone(&app);
            async move {
                let request = into_lambda_request(request).await;
                Ok::<_, Infallible>(from_lambda_response(app.respond(request).await))
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
