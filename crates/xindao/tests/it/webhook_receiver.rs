//! A real HTTP receiver for webhook and before-send tests: an axum server on 127.0.0.1 that records every
//! POST (headers and body) and each event in it, answers 200, 500 or never (by mode), can be taken down and
//! brought back on the same port, and checks each `X-Xindao-Signature` as a backend would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

pub const SECRET: &str = "receiver-secret-0123456789";

/// Answer 200.
pub const OK: u8 = 0;
/// Answer 500.
pub const FAIL: u8 = 1;
/// Never answer.
pub const HANG: u8 = 2;

/// One event as received: webhook POSTs carry `{"events": [...]}`, recorded here one entry per event (a
/// before-send call, which is not a batch, is one entry with its whole body).
#[derive(Debug, Clone)]
pub struct Received {
    /// The event's `id`.
    pub delivery: String,
    /// The POST's `X-Xindao-Signature`.
    pub signature: String,
    /// The event (or the whole body when it is not a batch).
    pub body: Value,
    /// The POST's raw body (what the signature covers).
    pub raw: Vec<u8>,
    /// Which POST it came in (0, 1, ... in arrival order).
    pub post: usize,
    /// The answer given (OK or FAIL; HANG ones are recorded too).
    pub answered: u8,
}

#[derive(Clone, Default)]
struct Shared {
    mode: Arc<AtomicU8>,
    received: Arc<Mutex<Vec<Received>>>,
    posts: Arc<AtomicUsize>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
    task: Option<tokio::task::JoinHandle<()>>,
}

async fn hook(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mode = shared.mode.load(Ordering::SeqCst);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let post = shared.posts.fetch_add(1, Ordering::SeqCst);
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let events = match value.get("events").and_then(Value::as_array) {
        Some(events) => events.clone(),
        None => vec![value],
    };
    shared
        .received
        .lock()
        .unwrap()
        .extend(events.into_iter().map(|event| Received {
            delivery: event["id"].as_str().unwrap_or_default().to_string(),
            signature: header("x-xindao-signature"),
            body: event,
            raw: body.to_vec(),
            post,
            answered: mode,
        }));
    match mode {
        OK => StatusCode::OK,
        FAIL => StatusCode::INTERNAL_SERVER_ERROR,
        _ => {
            std::future::pending::<()>().await;
            StatusCode::OK
        }
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut receiver = Receiver {
            addr,
            shared: Shared::default(),
            task: None,
        };
        receiver.serve(listener);
        receiver
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .with_state(self.shared.clone());
        self.task = Some(tokio::spawn(async move {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app).await;
        }));
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set_mode(&self, mode: u8) {
        self.shared.mode.store(mode, Ordering::SeqCst);
    }

    /// Stops listening: connections are refused until `up`.
    pub async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// POSTs received so far.
    pub fn posts(&self) -> usize {
        self.shared.posts.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The deliveries answered 200.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.answered == OK)
            .collect()
    }

    /// Waits until `done` holds for the deliveries answered 200 (panics after `secs`).
    pub async fn wait_for(&self, secs: u64, what: &str, done: impl Fn(&[Received]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if done(&self.delivered()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; delivered: {:?}",
                self.delivered()
                    .iter()
                    .map(|r| r.body.to_string())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Checks a signature as docs/webhooks.md tells a backend to: `t=<t>,v1=<hex HMAC-SHA256("<t>.<body>")>`.
pub fn signature_valid(received: &Received, secret: &str) -> bool {
    let Some((t, v1)) = received
        .signature
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
    else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&received.raw);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex == v1
}

/// The `message.created` deliveries' (conversation, seq) in the order received.
pub fn message_seqs(received: &[Received]) -> Vec<(i64, i64)> {
    received
        .iter()
        .filter(|r| r.body["event"] == "message.created")
        .map(|r| {
            (
                r.body["data"]["conversation_id"].as_i64().unwrap(),
                r.body["data"]["seq"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Whether each conversation's seqs arrive strictly increasing.
pub fn in_order_per_conversation(seqs: &[(i64, i64)]) -> bool {
    let mut last = std::collections::HashMap::new();
    seqs.iter().all(|(c, s)| {
        let previous = last.insert(*c, *s).unwrap_or(0);
        *s > previous
    })
}
