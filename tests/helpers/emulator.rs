//! A minimal Lambda Runtime API emulator on 127.0.0.1, enough to run the real `bootstrap`
//! binary: it hands out queued events on `/runtime/invocation/next` and collects what the
//! function posts back to `/response` or `/error`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};

/// What the function answered for one invocation.
#[derive(Debug)]
pub struct Outcome {
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
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
}

/// The emulator; `address()` goes into `AWS_LAMBDA_RUNTIME_API`.
pub struct RuntimeApi {
    address: String,
    state: Arc<State>,
    next_id: Mutex<u64>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, Arc::clone(&shared)));
            }
        });
        Self {
            address,
            state,
            next_id: Mutex::new(0),
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Queues one event and waits for the function's answer.
    pub async fn invoke(&self, event: &str, timeout: Duration) -> Outcome {
        let id = {
            let mut next = self.next_id.lock().unwrap();
            *next += 1;
            format!("emulated-request-{next}")
        };
        let (sender, receiver) = oneshot::channel();
        self.state
            .waiting
            .lock()
            .unwrap()
            .insert(id.clone(), sender);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        self.state.queue.lock().unwrap().push_back(Pending {
            id,
            event: event.to_owned(),
            deadline_ms: now_ms + timeout.as_millis() as u64,
        });
        self.state.ready.notify_one();
        tokio::time::timeout(timeout + Duration::from_secs(5), receiver)
            .await
            .expect("the function answered in time")
            .expect("the emulator kept the channel")
    }
}

async fn serve(socket: TcpStream, state: Arc<State>) {
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
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
        let mut body = vec![0u8; content_length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let reply = if method == "GET" && path.ends_with("/runtime/invocation/next") {
            let pending = loop {
                if let Some(pending) = state.queue.lock().unwrap().pop_front() {
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
            if let Some(sender) = state.waiting.lock().unwrap().remove(&id) {
                let _ = sender.send(Outcome {
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
