//! Trace export (`otel_endpoint`) through the real binary: a small OTLP/HTTP receiver here decodes what the
//! server sends (protobuf, `POST /v1/traces`), and the tests assert the span tree of a login and a send: the
//! upgrade, the WebSocket request, its commit and its fan-out, and on a cluster the other node's fan-out in
//! the same trace. A collector that is down costs a warning, not the service.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::{http, Client, Login};
use crate::services;

/// A caller's trace context (W3C's example): the login made with it must continue this trace.
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// Every span received, with the `service.name` of its resource.
type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// An OTLP/HTTP receiver on 127.0.0.1:0.
async fn receiver() -> (SocketAddr, Received) {
    async fn traces(State(received): State<Received>, body: Bytes) -> axum::http::StatusCode {
        let Ok(request) = ExportTraceServiceRequest::decode(body) else {
            return axum::http::StatusCode::BAD_REQUEST;
        };
        let mut received = received.lock().unwrap();
        for resource_spans in request.resource_spans {
            let attributes = resource_spans.resource.map(|r| r.attributes);
            let service = text(attributes.as_deref().unwrap_or(&[]), "service.name");
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push((service.clone().unwrap_or_default(), span));
                }
            }
        }
        axum::http::StatusCode::OK
    }
    let received = Received::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(traces))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|value| match value {
            Any::StringValue(s) => s.clone(),
            other => format!("{other:?}"),
        })
}

fn attr(span: &Span, key: &str) -> Option<String> {
    text(&span.attributes, key)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The one span that `matches`, or a panic listing what was received.
fn one<'a>(spans: &'a [Span], what: &str, matches: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| matches(s)).collect();
    assert_eq!(
        found.len(),
        1,
        "{what}: {} matches among {:#?}",
        found.len(),
        spans
            .iter()
            .map(|s| (&s.name, &s.attributes))
            .collect::<Vec<_>>()
    );
    found[0]
}

/// The real binary, started with `args`.
struct Binary {
    child: Child,
    addr: SocketAddr,
}

impl Binary {
    fn start(data_dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xindao"))
            .args(["serve", "--listen", "127.0.0.1:0", "--dev-login", "true"])
            .args(["--admin-listen", ""])
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .envs(envs.iter().copied())
            .env("XINDAO_LOG", "warn")
            .env("XINDAO_LOG_FORMAT", "text")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start xindao binary");
        let addr = crate::common::listening(&mut child);
        Binary { child, addr }
    }

    /// SIGTERM, then waits (at most 20 s) for a graceful exit; returns what it logged.
    async fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}");
                let mut stderr = String::new();
                let _ = self
                    .child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr);
                return stderr;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        panic!("the server did not exit within 20 s of SIGTERM");
    }
}

/// A dev login with extra headers.
async fn login_with(addr: SocketAddr, name: &str, headers: &[(&str, &str)]) -> Login {
    let mut request = http()
        .post(format!("http://{addr}/v1/login/dev"))
        .json(&json!({ "display_name": name }));
    for (header, value) in headers {
        request = request.header(*header, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "dev login");
    let body: Value = response.json().await.unwrap();
    Login {
        token: body["token"].as_str().unwrap().to_string(),
        user_id: body["user"]["id"].as_i64().unwrap(),
    }
}

/// A WebSocket connection whose upgrade carries `X-Request-Id: request_id`.
async fn connect_as(addr: SocketAddr, login: &Login, request_id: &str) -> Client {
    let mut request = format!("ws://{addr}/v1/ws?token={}", login.token)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    Client::from_ws(ws).await
}

fn spans_of(received: &Received) -> Vec<Span> {
    let received = received.lock().unwrap();
    received.iter().map(|(_, span)| span.clone()).collect()
}

/// The upgrade, the connection, the send, its commit and its fan-out: one trace, each span the child of the
/// one before; a login with a `traceparent` continues the caller's trace, a malformed one is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_is_one_span_tree_from_upgrade_to_fanout() {
    let (collector, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{collector}");
    let server = Binary::start(
        dir.path(),
        &[
            "--otel-endpoint",
            &endpoint,
            "--otel-service-name",
            "xindao-otel-test",
        ],
        &[],
    );
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let ann = login_with(
        server.addr,
        "ann",
        &[
            ("traceparent", &traceparent),
            ("x-request-id", "otel-login-ann"),
        ],
    )
    .await;
    let bob = login_with(
        server.addr,
        "bob",
        &[
            ("traceparent", "00-not-a-trace"),
            ("x-request-id", "otel-login-bob"),
        ],
    )
    .await;
    let mut a = connect_as(server.addr, &ann, "otel-ws-ann").await;
    let mut b = connect_as(server.addr, &bob, "otel-ws-bob").await;
    a.say_to(bob.user_id, "otel-1", "traced").await;
    assert_eq!(b.event("message").await["content"], "traced");
    a.ws.close(None).await.unwrap();
    b.ws.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The connections' spans end with them; shutdown sends what is still queued.
    server.terminate().await;

    let services: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(s, _)| s.clone())
        .collect();
    assert!(!services.is_empty() && services.iter().all(|s| s == "xindao-otel-test"));
    let spans = spans_of(&received);
    let login = one(&spans, "ann's login", |s| {
        s.name == "http" && attr(s, "request_id").as_deref() == Some("otel-login-ann")
    });
    assert_eq!(hex(&login.trace_id), TRACE_ID);
    assert_eq!(hex(&login.parent_span_id), CALLER_SPAN);
    assert_eq!(attr(login, "http.route").as_deref(), Some("/v1/login/dev"));
    let bob_login = one(&spans, "bob's login", |s| {
        s.name == "http" && attr(s, "request_id").as_deref() == Some("otel-login-bob")
    });
    assert!(
        bob_login.parent_span_id.is_empty(),
        "a malformed traceparent starts a new trace"
    );
    assert_ne!(hex(&bob_login.trace_id), TRACE_ID);

    let upgrade = one(&spans, "ann's upgrade", |s| {
        s.name == "http" && attr(s, "request_id").as_deref() == Some("otel-ws-ann")
    });
    assert_eq!(attr(upgrade, "http.route").as_deref(), Some("/v1/ws"));
    let ws = one(&spans, "ann's connection", |s| {
        s.name == "ws" && s.parent_span_id == upgrade.span_id
    });
    let send = one(&spans, "ann's send", |s| {
        s.name == "req" && attr(s, "op").as_deref() == Some("send")
    });
    assert_eq!(send.parent_span_id, ws.span_id);
    assert!(
        attr(send, "request_id").is_some_and(|id| id.starts_with("otel-ws-ann.")),
        "{:?}",
        send.attributes
    );
    let commit = one(&spans, "the send's commit", |s| s.name == "commit");
    assert_eq!(commit.parent_span_id, send.span_id);
    let fanout = one(&spans, "the send's fan-out", |s| s.name == "fanout");
    assert_eq!(fanout.parent_span_id, commit.span_id);
    for span in [ws, send, commit, fanout] {
        assert_eq!(
            span.trace_id, upgrade.trace_id,
            "{} in the upgrade's trace",
            span.name
        );
    }
}

/// With the collector down, the server serves as before, warns about the lost spans, and still shuts down
/// promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_a_warning_not_the_service() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(dir.path(), &["--otel-endpoint", &endpoint], &[]);
    let ann = login_with(server.addr, "ann", &[]).await;
    let bob = login_with(server.addr, "bob", &[]).await;
    let mut a = connect_as(server.addr, &ann, "down-ann").await;
    let message = a.say_to(bob.user_id, "down-1", "still delivered").await;
    assert_eq!(message["seq"], 1);
    a.ws.close(None).await.unwrap();
    let stderr = server.terminate().await;
    assert!(stderr.contains("trace export failed"), "{stderr}");
}

/// Two nodes over Redis: the receiving node's `bus` span (its fan-out) is the child of the sending node's
/// `fanout` span, in the sender's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_nodes_fanout_continues_the_senders_trace() {
    let _serial = crate::cluster::SERIAL.lock().await;
    if !services::bus_available(services::REDIS_URL).await {
        return;
    }
    let Some(db) = services::TestDb::create().await else {
        return;
    };
    let (collector, received) = receiver().await;
    let endpoint = format!("http://{collector}");
    let channel = format!("xindao-otel-{:016x}", rand::random::<u64>());
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let nodes: Vec<Binary> = ["node0", "node1"]
        .iter()
        .zip(&dirs)
        .map(|(node, dir)| {
            Binary::start(
                dir.path(),
                &["--otel-endpoint", &endpoint, "--node-id", node],
                &[
                    ("XINDAO_STORE", &db.url),
                    ("XINDAO_BUS", services::REDIS_URL),
                    ("XINDAO_BUS_CHANNEL", &channel),
                    ("XINDAO_CLUSTER_SECRET", services::CLUSTER_SECRET),
                ],
            )
        })
        .collect();
    let ann = login_with(nodes[0].addr, "ann", &[]).await;
    let bob = login_with(nodes[1].addr, "bob", &[]).await;
    let mut a = connect_as(nodes[0].addr, &ann, "c-ann").await;
    let mut b = connect_as(nodes[1].addr, &bob, "c-bob").await;
    a.say_to(bob.user_id, "c-1", "across").await;
    assert_eq!(b.event("message").await["content"], "across");
    a.ws.close(None).await.unwrap();
    b.ws.close(None).await.unwrap();
    for node in nodes {
        node.terminate().await;
    }

    let spans = spans_of(&received);
    let send = one(&spans, "ann's send", |s| {
        s.name == "req" && attr(s, "op").as_deref() == Some("send")
    });
    let fanout = one(&spans, "the sender's fan-out", |s| s.name == "fanout");
    assert_eq!(fanout.trace_id, send.trace_id);
    // Node1's `bus` spans of the send (its membership news comes straight from the request, its push from
    // the fan-out): the push continues the fan-out span.
    let remote: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            s.name == "bus"
                && attr(s, "from").as_deref() == Some("node0")
                && attr(s, "request_id").is_some_and(|id| id.starts_with("c-ann."))
        })
        .collect();
    assert!(
        remote.iter().all(|s| s.trace_id == send.trace_id),
        "{remote:#?}"
    );
    assert!(
        remote.iter().any(|s| s.parent_span_id == fanout.span_id),
        "no bus span under the fan-out span {:?}: {remote:#?}",
        hex(&fanout.span_id)
    );
    drop(db);
}
