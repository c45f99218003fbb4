//! Tunnel-service mode: xindao as the tunnel server of an existing Wafer business server (`wafer-node-sdk`
//! 1.4 and its like), which sets `tunnelServerUrl = <xindao>/wafer-tunnel` and `tunnelSignatureKey =
//! wafer_tunnel_key`. The business server keeps its own login and logic; xindao holds the sockets.
//!
//! - `POST /wafer-tunnel/get/wsurl` (signed): issues a tunnel id and its `connectUrl`, remembering the
//!   business server's `receiveUrl`; answers `{code: 0, data: "<JSON string>", signature}` (both SDKs parse
//!   `data`; Wafer 1's checks the signature).
//! - `POST /wafer-tunnel/ws/push` (signed): `[{tunnelIds, type: message|close, content?}]` to open tunnels;
//!   answers `{code: 0, data: {invalidTunnelIds}}`, also when every id is dead.
//! - `GET /wafer-tunnel/ws?tunnelId=`: the client's socket (`service_tunnel.rs`), whose `connect`, `message`
//!   and `close` go back to `receiveUrl` as signed callbacks, in order, retried.
//!
//! Every request body is `{data: <JSON string>, tcId, tcKey?, signature: sha1(data + key)}`; the signature is
//! checked with the configured key over the exact `data` received, never with the `tcKey` sent along.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use axum::{Extension, Json};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use tokio::sync::mpsc;

use super::session::new_tunnel_id;
use crate::app::App;

/// How long an issued tunnel id waits for its socket.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(60);
/// Issued, not yet connected tunnel ids kept at most (a business server issuing more loses the oldest).
const ISSUED_MAX: usize = 100_000;

/// What a business server's push asks of an open tunnel.
#[derive(Debug)]
pub enum Command {
    /// A `message:` packet's payload, already checked to be a JSON object.
    Message(String),
    /// Send `close`, then close.
    Close,
}

enum Entry {
    Issued {
        receive_url: String,
        expires: Instant,
    },
    Open {
        tx: mpsc::Sender<Command>,
    },
}

pub struct TunnelService {
    key: String,
    tc_ids: Vec<String>,
    pub http: reqwest::Client,
    tunnels: Mutex<HashMap<String, Entry>>,
}

/// `hex(sha1(data + key))`.
pub fn sign(data: &str, key: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(data.as_bytes());
    hasher.update(key.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Deserialize)]
struct Signed {
    data: String,
    signature: String,
    #[serde(rename = "tcId", default)]
    tc_id: Option<String>,
}

/// A refused tunnel-service request: `{code, message}`, never `code: 0`.
struct Refusal(StatusCode, u32, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let Refusal(status, code, message) = self;
        (status, Json(json!({ "code": code, "message": message }))).into_response()
    }
}

fn refuse(status: StatusCode, code: u32, message: &'static str) -> Response {
    Refusal(status, code, message).into_response()
}

impl TunnelService {
    pub fn new(key: String, tc_ids: Vec<String>) -> TunnelService {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        TunnelService {
            key,
            tc_ids,
            http,
            tunnels: Mutex::new(HashMap::new()),
        }
    }

    pub fn sign(&self, data: &str) -> String {
        sign(data, &self.key)
    }

    /// The `data` of a signed request, if the signature and the tcId are good.
    fn verify(&self, body: &Bytes) -> Result<String, Refusal> {
        let signed: Signed = serde_json::from_slice(body).map_err(|_| {
            Refusal(
                StatusCode::BAD_REQUEST,
                9001,
                "body must be {data, signature, tcId}",
            )
        })?;
        if !self
            .sign(&signed.data)
            .eq_ignore_ascii_case(&signed.signature)
        {
            return Err(Refusal(StatusCode::UNAUTHORIZED, 9003, "bad signature"));
        }
        if !self.tc_ids.is_empty()
            && !signed
                .tc_id
                .as_ref()
                .is_some_and(|id| self.tc_ids.contains(id))
        {
            return Err(Refusal(StatusCode::FORBIDDEN, 9002, "tcId not allowed"));
        }
        Ok(signed.data)
    }

    /// Takes an issued tunnel id for its socket: its `receiveUrl`, once, if not expired.
    pub fn take_issued(&self, tunnel_id: &str) -> Option<String> {
        let mut tunnels = self.tunnels.lock();
        match tunnels.remove(tunnel_id) {
            Some(Entry::Issued {
                receive_url,
                expires,
            }) if expires > Instant::now() => Some(receive_url),
            Some(open @ Entry::Open { .. }) => {
                tunnels.insert(tunnel_id.to_string(), open);
                None
            }
            _ => None,
        }
    }

    pub fn opened(&self, tunnel_id: &str, tx: mpsc::Sender<Command>) {
        self.tunnels
            .lock()
            .insert(tunnel_id.to_string(), Entry::Open { tx });
    }

    pub fn closed(&self, tunnel_id: &str) {
        self.tunnels.lock().remove(tunnel_id);
    }

    fn issue(&self, receive_url: String) -> String {
        let id = new_tunnel_id();
        let now = Instant::now();
        let mut tunnels = self.tunnels.lock();
        if tunnels.len() >= ISSUED_MAX {
            tunnels.retain(|_, e| !matches!(e, Entry::Issued { expires, .. } if *expires <= now));
        }
        if tunnels.len() >= ISSUED_MAX {
            tracing::warn!("wafer tunnel service: too many unconnected tunnel ids");
            return id;
        }
        tunnels.insert(
            id.clone(),
            Entry::Issued {
                receive_url,
                expires: now + CONNECT_WITHIN,
            },
        );
        id
    }
}

#[derive(Deserialize)]
struct WsUrl {
    #[serde(rename = "receiveUrl")]
    receive_url: String,
}

pub(super) async fn get_wsurl(
    State(app): State<Arc<App>>,
    Extension(service): Extension<Arc<TunnelService>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let data = match service.verify(&body) {
        Ok(data) => data,
        Err(refused) => return refused.into_response(),
    };
    let receive_url = match serde_json::from_str::<WsUrl>(&data) {
        Ok(WsUrl { receive_url })
            if receive_url.len() <= 2048
                && url::Url::parse(&receive_url)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https")) =>
        {
            receive_url
        }
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                9001,
                "data must be {receiveUrl: http(s) URL}",
            )
        }
    };
    let base = match (&app.config.wafer_public_url, headers.get("host")) {
        (Some(base), _) => base.clone(),
        (None, Some(host)) => format!("ws://{}", host.to_str().unwrap_or("localhost")),
        (None, None) => return refuse(StatusCode::BAD_REQUEST, 9001, "no Host header"),
    };
    let tunnel_id = service.issue(receive_url);
    let answer = json!({
        "tunnelId": tunnel_id,
        "connectUrl": format!("{base}/wafer-tunnel/ws?tunnelId={tunnel_id}"),
    })
    .to_string();
    let signature = service.sign(&answer);
    Json(json!({ "code": 0, "data": answer, "signature": signature })).into_response()
}

#[derive(Deserialize)]
struct PushItem {
    #[serde(rename = "tunnelIds")]
    tunnel_ids: Vec<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    content: Option<String>,
}

pub(super) async fn push(
    Extension(service): Extension<Arc<TunnelService>>,
    body: Bytes,
) -> Response {
    let data = match service.verify(&body) {
        Ok(data) => data,
        Err(refused) => return refused.into_response(),
    };
    let Ok(items) = serde_json::from_str::<Vec<PushItem>>(&data) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            9001,
            "data must be [{tunnelIds, type, content?}]",
        );
    };
    let mut invalid = Vec::new();
    for item in items {
        let command = |content: &Option<String>| match item.kind.as_str() {
            "close" => Some(Command::Close),
            // Only an object payload may reach a client (the SDKs throw on anything else).
            "message" => content
                .as_ref()
                .filter(|c| matches!(serde_json::from_str::<Value>(c), Ok(Value::Object(_))))
                .map(|c| Command::Message(c.clone())),
            _ => None,
        };
        for id in &item.tunnel_ids {
            let Some(command) = command(&item.content) else {
                invalid.push(id.clone());
                continue;
            };
            let tunnels = service.tunnels.lock();
            let delivered = match tunnels.get(id) {
                Some(Entry::Open { tx }) => tx.try_send(command).is_ok(),
                _ => false,
            };
            drop(tunnels);
            if !delivered {
                if matches!(item.kind.as_str(), "close") {
                    service.closed_issued(id);
                }
                invalid.push(id.clone());
            }
        }
    }
    Json(json!({ "code": 0, "data": { "invalidTunnelIds": invalid } })).into_response()
}

impl TunnelService {
    /// A `close` for an issued id that never connected: it will not.
    fn closed_issued(&self, tunnel_id: &str) {
        let mut tunnels = self.tunnels.lock();
        if matches!(tunnels.get(tunnel_id), Some(Entry::Issued { .. })) {
            tunnels.remove(tunnel_id);
        }
    }
}
