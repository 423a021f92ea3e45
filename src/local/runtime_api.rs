//! A minimal Lambda Runtime API emulator on 127.0.0.1, enough to run the real `bootstrap`
//! binary outside Lambda: it hands out queued events on `/runtime/invocation/next` (with
//! Lambda's request-id and absolute deadline headers) and collects what the function posts
//! back to `/response` or `/error`. The tests and the cold-start benchmark use it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};

/// What the function posted back for one invocation.
#[derive(Debug, Clone)]
pub struct Posted {
    /// `response` or `error`.
    pub kind: &'static str,
    /// The posted body.
    pub body: String,
}

struct Pending {
    id: String,
    event: String,
    deadline_ms: u64,
}

#[derive(Default)]
struct State {
    queue: Mutex<VecDeque<Pending>>,
    ready: Notify,
    waiting: Mutex<HashMap<String, oneshot::Sender<Posted>>>,
    first_poll: OnceLock<Instant>,
}

/// The emulator; [`RuntimeApi::address`] goes into `AWS_LAMBDA_RUNTIME_API`.
pub struct RuntimeApi {
    address: SocketAddr,
    state: Arc<State>,
    next_id: Mutex<u64>,
}

impl RuntimeApi {
    /// Listens on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, Arc::clone(&shared)));
            }
        });
        Ok(Self {
            address,
            state,
            next_id: Mutex::new(0),
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// When the function first asked for an invocation (the end of its init phase).
    pub fn first_poll(&self) -> Option<Instant> {
        self.state.first_poll.get().copied()
    }

    /// Queues one event with a deadline `timeout` from now and waits for the answer
    /// (`None` if none came within `timeout` plus 5 s).
    pub async fn invoke(&self, event: &str, timeout: Duration) -> Option<Posted> {
        let id = {
            let mut next = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            format!("emulated-request-{next}")
        };
        let (sender, receiver) = oneshot::channel();
        lock(&self.state.waiting).insert(id.clone(), sender);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        lock(&self.state.queue).push_back(Pending {
            id,
            event: event.to_owned(),
            deadline_ms: now_ms + timeout.as_millis() as u64,
        });
        self.state.ready.notify_one();
        tokio::time::timeout(timeout + Duration::from_secs(5), receiver)
            .await
            .ok()?
            .ok()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Serves one keep-alive connection from the function's runtime client.
async fn serve(socket: TcpStream, state: Arc<State>) {
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let Some((method, path, body)) = read_request(&mut reader).await else {
            return;
        };
        let reply = if method == "GET" && path.ends_with("/runtime/invocation/next") {
            let _ = state.first_poll.set(Instant::now());
            let pending = loop {
                if let Some(pending) = lock(&state.queue).pop_front() {
                    break pending;
                }
                state.ready.notified().await;
            };
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: {}\r\n\
                 lambda-runtime-deadline-ms: {}\r\nlambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:ghl-csv-finalize\r\n\
                 lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\ncontent-length: {}\r\n\r\n{}",
                pending.id,
                pending.deadline_ms,
                pending.event.len(),
                pending.event
            )
        } else {
            let kind = if path.ends_with("/response") {
                "response"
            } else {
                "error"
            };
            let id = path.split('/').rev().nth(1).unwrap_or("").to_owned();
            if let Some(sender) = lock(&state.waiting).remove(&id) {
                let _ = sender.send(Posted {
                    kind,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
            }
            "HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}".to_owned()
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads one HTTP/1.1 request: method, path and body.
async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> Option<(String, String, Vec<u8>)> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).await.ok()? == 0 {
        return None;
    }
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; content_length.min(16 * 1024 * 1024)];
    reader.read_exact(&mut body).await.ok()?;
    let mut parts = request_line.split_whitespace();
    Some((parts.next()?.to_owned(), parts.next()?.to_owned(), body))
}
