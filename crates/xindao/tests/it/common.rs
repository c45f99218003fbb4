//! Test harness: a real server on 127.0.0.1:0 (in-process or the real binary), HTTP login, and a WebSocket
//! client that pairs replies with requests and buffers pushes.

use std::collections::VecDeque;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use xindao::config::DevLogin;
use xindao::{Config, Server};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A running in-process server. Dropping it does not stop it; call `stop`.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The admin listener (/metrics).
    pub admin: SocketAddr,
    pub config: Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<xindao::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

pub fn test_config(data_dir: PathBuf) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir,
        dev_login: DevLogin::True,
        // Tests log in many users from 127.0.0.1; the login limits have tests of their own.
        login_per_ip_per_minute: 1_000_000,
        login_per_second: 1_000_000,
        rate_per_sec: 1000,
        rate_burst: 1000,
        // Every test client comes from 127.0.0.1: the per-address cap has tests of its own (edge.rs).
        max_connections_per_ip: 100_000,
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        log: "warn".into(),
        ..Config::default()
    }
}

impl TestServer {
    /// Starts a server on a fresh data directory; `tweak` adjusts the test configuration.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path().to_path_buf());
        tweak(&mut config);
        let mut server = TestServer::start_with(config).await;
        server._dir = Some(dir);
        server
    }

    /// Starts a server on the PostgreSQL database `db`. The data directory stays a temporary one: the server
    /// still keeps files there (the generated media.secret, stored media).
    pub async fn start_postgres(db: &crate::services::TestDb) -> TestServer {
        TestServer::start(|config| config.store = db.url.parse().unwrap()).await
    }

    pub async fn start_with(config: Config) -> TestServer {
        init_logging();
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let server = Server::with_listener(config.clone(), listener)
            .await
            .unwrap();
        let addr = server.local_addr();
        let admin = server
            .admin_addr()
            .expect("tests configure an admin listener");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            admin,
            config,
            stop: Some(stop),
            task: Some(task),
            _dir: None,
        }
    }

    /// Graceful shutdown; waits until the server has finished.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }

    /// Stops and starts again on the same data directory (a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        let dir = self._dir.take();
        *self = TestServer::start_with(config).await;
        self._dir = dir;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn login(&self, name: &str) -> Login {
        login(self.addr, name).await
    }

    pub async fn connect(&self, login: &Login) -> Client {
        Client::connect(self.addr, &login.token).await
    }
}

#[derive(Debug, Clone)]
pub struct Login {
    pub token: String,
    pub user_id: i64,
}

/// The harness's HTTP client, one for every call: building one loads the system's CA certificates, which
/// takes the runtime's thread for milliseconds (300 logins building their own starved the server beside them
/// until connects timed out). It keeps no idle connections, so none outlives the test runtime that opened it.
pub fn http() -> &'static reqwest::Client {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    })
}

/// The value of the metric `name` (a sample without labels) in `/metrics` of the admin listener at `admin`, if
/// it is there.
pub async fn metric(admin: SocketAddr, name: &str) -> Option<String> {
    let text = http()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map(str::to_string)
}

pub async fn login(addr: SocketAddr, name: &str) -> Login {
    let response = http()
        .post(format!("http://{addr}/v1/login/dev"))
        .json(&json!({ "display_name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "dev login");
    let body: Value = response.json().await.unwrap();
    Login {
        token: body["token"].as_str().unwrap().to_string(),
        user_id: body["user"]["id"].as_i64().unwrap(),
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A protocol client over a real WebSocket.
pub struct Client {
    pub ws: Ws,
    pub hello: Value,
    events: VecDeque<Value>,
    next_id: i64,
}

/// How a connection ended, as seen by the client.
#[derive(Debug, PartialEq)]
pub enum Closed {
    Code(u16),
    NoCloseFrame,
}

impl Client {
    pub async fn connect(addr: SocketAddr, token: &str) -> Client {
        let url = format!("ws://{addr}/v1/ws?token={token}");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket upgrade");
        Client::from_ws(ws).await
    }

    /// Wraps an upgraded socket and reads its hello.
    pub async fn from_ws(ws: Ws) -> Client {
        let mut client = Client {
            ws,
            hello: Value::Null,
            events: VecDeque::new(),
            next_id: 1,
        };
        let hello = client.next_frame().await.expect("hello frame");
        assert_eq!(hello["event"], "hello", "first frame is hello: {hello}");
        client.hello = hello["data"].clone();
        client
    }

    /// Reads the next JSON frame (skipping pings), or None when the socket closed.
    pub async fn next_frame(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("frame within timeout")?;
            match message {
                Ok(Message::Text(text)) => {
                    return Some(serde_json::from_str(&text).expect("server sends JSON"))
                }
                Ok(Message::Close(_)) => return None,
                Err(error) => {
                    eprintln!("client socket error: {error}");
                    return None;
                }
                Ok(_) => continue,
            }
        }
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.unwrap();
    }

    /// Sends `count` messages (cmid `{cmid_prefix}{i}`, text `m{i}`, request id 100 + i) without waiting for
    /// their replies.
    pub async fn send_burst(&mut self, conversation_id: i64, cmid_prefix: &str, count: i64) {
        for i in 0..count {
            let frame = json!({ "id": i + 100, "op": "send", "args": { "conversation_id": conversation_id, "cmid": format!("{cmid_prefix}{i}"), "content": format!("m{i}") } });
            self.send_raw(Message::text(frame.to_string())).await;
        }
    }

    /// Sends a request and returns its id.
    pub async fn send_request(&mut self, op: &str, args: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        let frame = json!({ "id": id, "op": op, "args": args }).to_string();
        self.ws.send(Message::text(frame)).await.unwrap();
        id
    }

    /// Waits for the reply with `id`, buffering pushes that arrive first.
    pub async fn reply(&mut self, id: i64) -> Value {
        loop {
            let frame = self
                .next_frame()
                .await
                .expect("connection closed while waiting for a reply");
            if frame.get("event").is_some() {
                self.events.push_back(frame);
            } else if frame["id"] == id {
                return frame;
            } else {
                panic!("unexpected reply {frame} while waiting for {id}");
            }
        }
    }

    /// Sends a request and returns the whole reply frame.
    pub async fn call(&mut self, op: &str, args: Value) -> Value {
        let id = self.send_request(op, args).await;
        self.reply(id).await
    }

    /// Sends a request that must succeed and returns its result.
    pub async fn ok(&mut self, op: &str, args: Value) -> Value {
        let reply = self.call(op, args).await;
        assert_eq!(reply["ok"], true, "{op} failed: {reply}");
        reply["result"].clone()
    }

    /// Sends a request that must fail and returns its error code.
    pub async fn err(&mut self, op: &str, args: Value) -> String {
        let reply = self.call(op, args).await;
        assert_eq!(reply["ok"], false, "{op} should fail: {reply}");
        reply["error"]["code"].as_str().unwrap().to_string()
    }

    /// The next push of type `name` (other pushes before it are dropped).
    pub async fn event(&mut self, name: &str) -> Value {
        while let Some(frame) = self.events.pop_front() {
            if frame["event"] == name {
                return frame["data"].clone();
            }
        }
        loop {
            let frame = self
                .next_frame()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for {name}"));
            if frame["event"] == name {
                return frame["data"].clone();
            }
        }
    }

    /// Asserts that no push of type `name` arrives within `wait`.
    pub async fn no_event(&mut self, name: &str, wait: Duration) {
        assert!(
            !self.events.iter().any(|f| f["event"] == name),
            "unexpected buffered {name}"
        );
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            if let Message::Text(text) = message {
                let frame: Value = serde_json::from_str(&text).unwrap();
                assert_ne!(frame["event"], name, "unexpected push {frame}");
                self.events.push_back(frame);
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> Closed {
        loop {
            match tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("close within timeout")
            {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Closed::Code(u16::from(frame.code))
                }
                Some(Ok(Message::Close(None))) | None => return Closed::NoCloseFrame,
                Some(Err(error)) => {
                    eprintln!("socket error while waiting for close: {error}");
                    return Closed::NoCloseFrame;
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Sends a text message to a user (opening the direct conversation) and returns the acked message.
    pub async fn say_to(&mut self, user_id: i64, cmid: &str, text: &str) -> Value {
        let result = self
            .ok(
                "send",
                json!({ "to_user": user_id, "cmid": cmid, "content": text }),
            )
            .await;
        result["message"].clone()
    }

    /// Sends a text message to a conversation and returns the acked message.
    pub async fn say(&mut self, conversation_id: i64, cmid: &str, text: &str) -> Value {
        let result = self
            .ok(
                "send",
                json!({ "conversation_id": conversation_id, "cmid": cmid, "content": text }),
            )
            .await;
        result["message"].clone()
    }
}

/// The `message` push an acked message makes (docs/protocol.md, "Push shapes"): no `kind` when it is `text`,
/// and the `cmid` only for the sender's own connections.
pub fn pushed_as(message: &Value, to_sender: bool) -> Value {
    let mut pushed = message.clone();
    let fields = pushed.as_object_mut().expect("a message is an object");
    if fields.get("kind") == Some(&json!("text")) {
        fields.remove("kind");
    }
    if !to_sender {
        fields.remove("cmid");
    }
    pushed
}

/// A client whose socket has a tiny receive buffer, so that the server's writes back up quickly.
pub async fn connect_small_buffer(addr: SocketAddr, token: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/v1/ws?token={token}");
    let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    Client::from_ws(ws).await
}

/// Runs a `sync` from `cursors` until nothing is left; returns every message received, per conversation.
pub async fn sync_all(
    client: &mut Client,
    cursors: &mut std::collections::HashMap<i64, i64>,
) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let args: serde_json::Map<String, Value> = cursors
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let result = client
            .ok("sync", json!({ "cursors": args, "limit": 50 }))
            .await;
        let conversations = result["conversations"].as_array().unwrap().clone();
        if conversations.is_empty() {
            return all;
        }
        for entry in conversations {
            let id = entry["conversation"]["id"].as_i64().unwrap();
            for message in entry["messages"].as_array().unwrap() {
                let seq = message["seq"].as_i64().unwrap();
                let cursor = cursors.entry(id).or_insert(0);
                assert_eq!(seq, *cursor + 1, "sync is contiguous: {message}");
                *cursor = seq;
                all.push(message.clone());
            }
        }
    }
}

/// Everything the servers of this test binary log at info and above (for tests that check what is logged).
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the binary's one log subscriber (whichever test comes first): server logs go to the test output
/// (shown for failing tests; XINDAO_TEST_LOG=debug for more) and, at info and above (and the bus's debug
/// line for each envelope a request caused), into a buffer that every test can read. Returns that buffer.
pub fn init_logging() -> Arc<Mutex<Vec<u8>>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, EnvFilter, Layer};
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buffer.clone());
        let filter = std::env::var("XINDAO_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::registry()
            .with(
                fmt::layer()
                    .with_test_writer()
                    .with_filter(EnvFilter::new(filter)),
            )
            .with(
                fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    // and the bus's line per envelope a request caused (request_ids.rs reads it)
                    .with_filter(EnvFilter::new(format!(
                        "info,{}=debug",
                        xindao::bus::cluster::RECEIVED
                    ))),
            )
            .try_init();
        buffer
    })
    .clone()
}

/// Reads a started `xindao serve` child's first stdout line, `listening http://<addr>`, and returns the address.
pub fn listening(child: &mut std::process::Child) -> SocketAddr {
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("listening http://")
        .unwrap_or_else(|| panic!("a listening line, got {line:?}"))
        .parse()
        .unwrap()
}
