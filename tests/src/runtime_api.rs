//! The Lambda Runtime API (2018-06-01) on loopback, for tests that start a function's
//! real binary as Lambda would: it hands out events on `next` and takes the answers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

type Answer = oneshot::Sender<(String, Value)>;

struct Shared {
    events: Mutex<mpsc::Receiver<(String, Value)>>,
    answers: std::sync::Mutex<Vec<(String, Answer)>>,
    asked: Notify,
    asked_once: std::sync::atomic::AtomicBool,
}

pub struct RuntimeApi {
    pub address: String,
    events: mpsc::Sender<(String, Value)>,
    shared: Arc<Shared>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let (events, receiver) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            events: Mutex::new(receiver),
            answers: Default::default(),
            asked: Notify::new(),
            asked_once: Default::default(),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let address = listener.local_addr().expect("its address").to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, events, shared }
    }

    /// Waits until the function first asks for an event: its start-up is over.
    pub async fn started(&self, within: Duration) {
        let asked = async {
            loop {
                let notified = self.shared.asked.notified();
                if self.shared.asked_once.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(within, asked).await.expect("the function asks for an event");
    }

    /// Hands `event` to the function; its answer (`response` or `error`, and the body).
    pub async fn invoke(&self, event: Value) -> (String, Value) {
        let id = format!("{:032x}", fastrand::u128(..));
        let (sender, receiver) = oneshot::channel();
        self.shared.answers.lock().expect("not poisoned").push((id.clone(), sender));
        self.events.send((id, event)).await.expect("the Runtime API is serving");
        tokio::time::timeout(Duration::from_secs(30), receiver).await.expect("an answer in time").expect("an answer")
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> (HeaderMap, String) {
    shared.asked_once.store(true, std::sync::atomic::Ordering::SeqCst);
    shared.asked.notify_waiters();
    let Some((id, event)) = shared.events.lock().await.recv().await else { return (HeaderMap::new(), String::new()) };
    let mut headers = HeaderMap::new();
    let deadline = std::time::SystemTime::now() + Duration::from_secs(30);
    let deadline_ms = deadline.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", id),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:test".to_owned()),
        ("content-type", "application/json".to_owned()),
    ] {
        headers.insert(name, HeaderValue::from_str(&value).expect("a header value"));
    }
    (headers, event.to_string())
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    Path((id, kind)): Path<(String, String)>,
    body: String,
) -> StatusCode {
    let waiting = {
        let mut answers = shared.answers.lock().expect("not poisoned");
        answers.iter().position(|(waiting, _)| *waiting == id).map(|at| answers.remove(at).1)
    };
    if let Some(sender) = waiting {
        let _ = sender.send((kind, serde_json::from_str(&body).unwrap_or(Value::String(body))));
    }
    StatusCode::ACCEPTED
}
