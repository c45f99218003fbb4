//! What the probe says over a connection: one HTTP request (the login), or the WebSocket upgrade, the
//! `hello`, and timed round trips of `ping` and `send`, each asking for the server's own timing.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::net::{ms, Stream, Target};
use super::ProbeError;

/// Longest HTTP answer (head and body) read.
const MAX_ANSWER: usize = 1024 * 1024;

/// Answer headers that tell which proxies, caches and CDNs a request went through.
const REVEALING: &[&str] = &[
    "server",
    "via",
    "x-cache",
    "x-cache-hits",
    "x-served-by",
    "cf-ray",
    "cf-cache-status",
    "x-amz-cf-id",
    "x-amz-cf-pop",
    "x-akamai-request-id",
    "x-fastly-request-id",
    "eagleid",
    "x-swift-cachetime",
    "x-cdn",
    "x-request-id",
    "server-timing",
];

/// The server's own time from a `Server-Timing` header: (`handle`, `db`, `node`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerTiming {
    pub handle_ms: Option<f64>,
    pub db_ms: Option<f64>,
    pub node: Option<String>,
}

impl ServerTiming {
    fn parse(value: Option<&str>) -> ServerTiming {
        let mut timing = ServerTiming::default();
        for metric in value.unwrap_or_default().split(',') {
            let mut parts = metric.trim().split(';');
            let name = parts.next().unwrap_or_default().trim();
            for param in parts {
                let param = param.trim();
                if let Some(dur) = param.strip_prefix("dur=") {
                    let dur = dur.parse().ok();
                    match name {
                        "handle" => timing.handle_ms = dur,
                        "db" => timing.db_ms = dur,
                        _ => {}
                    }
                } else if let Some(desc) = param.strip_prefix("desc=") {
                    if name == "node" {
                        timing.node = Some(desc.trim_matches('"').to_string());
                    }
                }
            }
        }
        timing
    }
}

/// One HTTP exchange as the probe saw it.
#[derive(Debug, Clone, Serialize)]
pub struct HttpAnswer {
    pub status: u16,
    /// Request written to the first byte of the answer.
    pub first_byte_ms: f64,
    pub total_ms: f64,
    pub server: ServerTiming,
    /// The answer's headers that reveal proxies, caches and CDNs (`Server`, `Via`, `X-Cache`, CDN ids).
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Vec<u8>,
}

fn revealing<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<(String, String)> {
    headers
        .filter(|(name, _)| REVEALING.contains(&name.to_ascii_lowercase().as_str()))
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(value).chars().take(200).collect(),
            )
        })
        .collect()
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the answer.
pub async fn http_request(
    stream: &mut Stream,
    target: &Target,
    method: &str,
    path: &str,
    body: &str,
    request_id: &str,
) -> Result<HttpAnswer, ProbeError> {
    let request = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: xindao-probe\r\nX-Request-Id: {request_id}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        target.base,
        target.authority(),
        body.len()
    );
    let started = Instant::now();
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| ProbeError::Http(format!("writing the request: {e}")))?;
    let mut buffer = Vec::new();
    let mut first_byte = None;
    let mut chunk = [0u8; 8192];
    let (status, headers, head_len, length) = loop {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|e| ProbeError::Http(format!("reading the answer: {e}")))?;
        if read == 0 {
            return Err(ProbeError::Http(
                "connection closed before an answer".into(),
            ));
        }
        first_byte.get_or_insert_with(|| started.elapsed());
        buffer.extend_from_slice(&chunk[..read]);
        let mut parsed = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut parsed);
        match response.parse(&buffer) {
            Ok(httparse::Status::Complete(head_len)) => {
                let length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    });
                let headers = response
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), h.value.to_vec()))
                    .collect::<Vec<_>>();
                break (response.code.unwrap_or(0), headers, head_len, length);
            }
            Ok(httparse::Status::Partial) if buffer.len() < MAX_ANSWER => continue,
            Ok(httparse::Status::Partial) => {
                return Err(ProbeError::Http("answer head too long".into()))
            }
            Err(e) => return Err(ProbeError::Http(format!("malformed answer: {e}"))),
        }
    };
    let wanted = length.map_or(MAX_ANSWER, |l| (head_len + l).min(MAX_ANSWER));
    while buffer.len() < wanted {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|e| ProbeError::Http(format!("reading the body: {e}")))?;
        if read == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let total = started.elapsed();
    let timing = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("server-timing"))
        .and_then(|(_, value)| std::str::from_utf8(value).ok());
    Ok(HttpAnswer {
        status,
        first_byte_ms: ms(first_byte.unwrap_or(total)),
        total_ms: ms(total),
        server: ServerTiming::parse(timing),
        headers: revealing(headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))),
        body: buffer.get(head_len..).unwrap_or_default().to_vec(),
    })
}

/// The upgrade as the probe saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Upgrade {
    pub status: u16,
    /// Request written to the 101 read (the handshake).
    pub to_101_ms: f64,
    pub server: ServerTiming,
    pub headers: Vec<(String, String)>,
    /// The 101 to the `hello` frame.
    pub hello_ms: f64,
    pub connection_id: Option<u64>,
    pub user_id: Option<i64>,
}

pub type Socket = WebSocketStream<Stream>;

/// Upgrades `stream` to the WebSocket (bearer `token`) and waits for `hello`.
pub async fn upgrade(
    stream: Stream,
    target: &Target,
    token: &str,
    request_id: &str,
) -> Result<(Socket, Upgrade), ProbeError> {
    let scheme = if target.tls { "wss" } else { "ws" };
    let url = format!("{scheme}://{}{}/v1/ws", target.authority(), target.base);
    let mut request = url
        .into_client_request()
        .map_err(|e| ProbeError::Url(e.to_string()))?;
    let headers = request.headers_mut();
    let value = |v: &str| {
        v.parse()
            .map_err(|_| ProbeError::Url("token or request id is not a header value".into()))
    };
    headers.insert("authorization", value(&format!("Bearer {token}"))?);
    headers.insert("x-request-id", value(request_id)?);
    headers.insert("user-agent", value("xindao-probe")?);
    let started = Instant::now();
    let (mut socket, response) = match tokio_tungstenite::client_async(request, stream).await {
        Ok(upgraded) => upgraded,
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .chars()
                        .take(300)
                        .collect::<String>()
                })
                .unwrap_or_default();
            return Err(ProbeError::Upgrade {
                status: response.status().as_u16(),
                headers: revealing(
                    response
                        .headers()
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_bytes())),
                ),
                body,
            });
        }
        Err(error) => return Err(ProbeError::Http(format!("upgrade: {error}"))),
    };
    let to_101 = started.elapsed();
    let timing = response
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok());
    let mut upgrade = Upgrade {
        status: response.status().as_u16(),
        to_101_ms: ms(to_101),
        server: ServerTiming::parse(timing),
        headers: revealing(
            response
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        ),
        hello_ms: 0.0,
        connection_id: None,
        user_id: None,
    };
    let started = Instant::now();
    loop {
        let frame = next_json(&mut socket).await?;
        if frame["event"] == "hello" {
            upgrade.hello_ms = ms(started.elapsed());
            upgrade.connection_id = frame["data"]["connection_id"].as_u64();
            upgrade.user_id = frame["data"]["user"]["id"].as_i64();
            return Ok((socket, upgrade));
        }
    }
}

async fn next_json(socket: &mut Socket) -> Result<Value, ProbeError> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str())
                    .map_err(|e| ProbeError::Protocol(format!("frame is not JSON: {e}")))
            }
            Some(Ok(Message::Close(close))) => {
                return Err(ProbeError::Protocol(format!(
                    "closed by the server: {close:?}"
                )))
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(ProbeError::Protocol(error.to_string())),
            None => return Err(ProbeError::Protocol("connection ended".into())),
        }
    }
}

/// One timed request: what the probe measured and what the server said it spent.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub client_ms: f64,
    pub server_ms: f64,
    pub commit_ms: Option<f64>,
    pub node: Option<String>,
}

/// Sends `op` with `args` and `"timing": true`, and waits for its reply (pushes meanwhile are skipped).
pub async fn round(
    socket: &mut Socket,
    id: u64,
    op: &str,
    args: Value,
) -> Result<(Round, Value), ProbeError> {
    let frame = json!({ "id": id, "op": op, "args": args, "timing": true }).to_string();
    let started = Instant::now();
    socket
        .send(Message::text(frame))
        .await
        .map_err(|e| ProbeError::Protocol(e.to_string()))?;
    loop {
        let reply = next_json(socket).await?;
        if reply["id"] != id {
            continue;
        }
        let client = started.elapsed();
        if reply["ok"] != true {
            return Err(ProbeError::Protocol(format!(
                "{op} failed: {}",
                reply["error"]
            )));
        }
        let timing = &reply["timing"];
        let us = |field: &str| timing[field].as_u64().map(|us| us as f64 / 1000.0);
        let server = us("queued_us").unwrap_or(0.0) + us("handle_us").unwrap_or(0.0);
        return Ok((
            Round {
                client_ms: ms(client),
                server_ms: server.min(ms(client)),
                commit_ms: us("commit_us"),
                node: timing["node"].as_str().map(str::to_string),
            },
            reply["result"].clone(),
        ));
    }
}

/// A conversation of the probe's own to send to: its invite-only room `xindao-probe`, made on first use.
pub async fn probe_room(socket: &mut Socket, id: u64) -> Result<i64, ProbeError> {
    let (_, result) = round(socket, id, "conversations", json!({ "limit": 100 })).await?;
    let existing = result["conversations"].as_array().and_then(|all| {
        all.iter()
            .find(|c| c["kind"] == "room" && c["name"] == "xindao-probe")
            .and_then(|c| c["id"].as_i64())
    });
    if let Some(id) = existing {
        return Ok(id);
    }
    let (_, result) = round(
        socket,
        id + 1,
        "room_create",
        json!({ "name": "xindao-probe", "visibility": "invite" }),
    )
    .await?;
    result["conversation"]["id"]
        .as_i64()
        .ok_or_else(|| ProbeError::Protocol("room_create answered no id".into()))
}

/// Closes the socket politely, without waiting long.
pub async fn close(mut socket: Socket) {
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
}
