//! Request ids and server-reported timing, through the real interfaces: HTTP answers carry `X-Request-Id`
//! and `Server-Timing`, a WebSocket request with `"timing": true` gets the server's split in its reply (and
//! the parts add up to no more than what the client measured), and the ids appear in the log lines.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{http, init_logging, login, Client, TestServer};

/// `Server-Timing`'s metrics: name -> duration in ms (or the description, for `node`).
fn server_timing(value: &str) -> HashMap<String, String> {
    value
        .split(',')
        .filter_map(|metric| {
            let mut parts = metric.trim().split(';');
            let name = parts.next()?.to_string();
            let param = parts.next()?;
            let value = param
                .strip_prefix("dur=")
                .or_else(|| param.strip_prefix("desc="))?
                .trim_matches('"')
                .to_string();
            Some((name, value))
        })
        .collect()
}

fn ms(timing: &HashMap<String, String>, name: &str) -> f64 {
    timing[name].parse().unwrap()
}

#[tokio::test]
async fn http_answers_carry_a_request_id_and_server_timing() {
    let logs = init_logging();
    let mut server = TestServer::start(|config| config.node_id = Some("node-a".into())).await;
    let login = |id: Option<&str>| {
        let mut request = http()
            .post(server.url("/v1/login/dev"))
            .json(&json!({ "display_name": "ann" }));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };

    let started = Instant::now();
    let answer = login(None).await.unwrap();
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(answer.status(), 200);
    let generated = answer.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(generated.len(), 16, "{generated}");
    let timing = server_timing(answer.headers()["server-timing"].to_str().unwrap());
    assert_eq!(timing["node"], "node-a");
    assert!(
        ms(&timing, "db") > 0.0,
        "a login reads and writes the store: {timing:?}"
    );
    assert!(ms(&timing, "db") <= ms(&timing, "handle"), "{timing:?}");
    assert!(
        ms(&timing, "handle") <= total_ms,
        "{timing:?} > {total_ms} ms"
    );

    // A proxy's id is kept; one that could forge log fields or is too long is replaced.
    let answer = login(Some("edge-7f3a:01")).await.unwrap();
    assert_eq!(answer.headers()["x-request-id"], "edge-7f3a:01");
    for bad in ["two words", "quote\"d", &"x".repeat(129)] {
        let answer = login(Some(bad)).await.unwrap();
        let id = answer.headers()["x-request-id"].to_str().unwrap();
        assert!(id != bad && id.len() == 16, "{bad:?} -> {id:?}");
    }
    // Errors too, and an unknown route.
    let answer = http()
        .get(server.url("/no/such/route"))
        .header("x-request-id", "edge-404")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    assert_eq!(answer.headers()["x-request-id"], "edge-404");
    assert!(answer.headers().contains_key("server-timing"));

    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    for id in ["edge-7f3a:01", "edge-404"] {
        assert!(
            logged
                .lines()
                .any(|line| line.contains(&format!("request_id={id}"))
                    && line.contains("http request")),
            "no log line names {id}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_reply_carries_the_servers_split_when_asked() {
    let mut server = TestServer::start(|config| config.node_id = Some("node-t".into())).await;
    let ann = server.login("ann").await;
    let mut a = server.connect(&ann).await;
    let room = a.ok("room_create", json!({ "name": "t" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();

    for i in 0..5 {
        let frame = json!({ "id": 1000 + i, "op": "send", "timing": true,
            "args": { "conversation_id": room, "cmid": format!("t{i}"), "content": "hi" } });
        let started = Instant::now();
        a.send_raw(Message::text(frame.to_string())).await;
        let reply = a.reply(1000 + i).await;
        let rtt_us = started.elapsed().as_micros() as u64;
        assert_eq!(reply["ok"], true, "{reply}");
        let timing = &reply["timing"];
        assert_eq!(timing["node"], "node-t", "{reply}");
        let (queued, handle, commit) = (
            timing["queued_us"].as_u64().unwrap(),
            timing["handle_us"].as_u64().unwrap(),
            timing["commit_us"]
                .as_u64()
                .expect("a send waits for a commit"),
        );
        assert!(queued + handle <= rtt_us, "{timing} vs {rtt_us} us");
        assert!(commit <= handle && commit > 0, "{timing}");
    }

    // A ping commits nothing; without `"timing": true` (or with anything but true) there is no timing.
    a.send_raw(Message::text(
        json!({ "id": 1, "op": "ping", "timing": true }).to_string(),
    ))
    .await;
    let reply = a.reply(1).await;
    assert!(reply["timing"]["handle_us"].is_u64(), "{reply}");
    assert!(reply["timing"].get("commit_us").is_none(), "{reply}");
    let reply = a.call("ping", json!({})).await;
    assert!(reply.get("timing").is_none(), "{reply}");
    a.send_raw(Message::text(
        json!({ "id": 2, "op": "ping", "timing": "yes" }).to_string(),
    ))
    .await;
    assert!(a.reply(2).await.get("timing").is_none());
    // An error reply carries it too.
    a.send_raw(Message::text(
        json!({ "id": 3, "op": "history", "timing": true, "args": { "conversation_id": 999_999 } })
            .to_string(),
    ))
    .await;
    let reply = a.reply(3).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(reply["timing"]["handle_us"].is_u64(), "{reply}");
    server.stop().await;
}

/// The real binary at debug level: the lines about a WebSocket request name the upgrade's request id, the
/// connection and the client's request id.
#[tokio::test]
async fn websocket_log_lines_name_the_upgrade_the_connection_and_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xindao"))
        .args(["serve", "--listen", "127.0.0.1:0", "--dev-login", "true"])
        .args(["--admin-listen", ""])
        .arg("--data-dir")
        .arg(dir.path())
        .env("XINDAO_LOG", "xindao=debug")
        .env("XINDAO_LOG_FORMAT", "text")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xindao binary");
    let addr = crate::common::listening(&mut child);
    let user = login(addr, "ann").await;
    let mut request = format!("ws://{addr}/v1/ws?token={}", user.token)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-request-id", "edge-ws-77".parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "edge-ws-77");
    assert!(response.headers().contains_key("server-timing"));
    let mut client = Client::from_ws(ws).await;
    let conn = client.hello["connection_id"].as_u64().unwrap();
    client.ok("ping", json!({})).await;
    client.ws.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = child.wait();
    let line = stderr
        .lines()
        .find(|line| line.contains("ws request"))
        .unwrap_or_else(|| panic!("no ws request line in:\n{stderr}"));
    for part in [
        "request_id=edge-ws-77",
        &format!("conn={conn}"),
        "id=1",
        "op=\"ping\"",
    ] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
}

/// The admin page and its probe button, on the admin listener only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_probes_from_the_server_for_its_own_page_only() {
    let mut server = TestServer::start(|config| config.node_id = Some("node-adm".into())).await;
    let admin = |path: &str| format!("http://{}{path}", server.admin);
    let page = http().get(admin("/admin")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert!(page.text().await.unwrap().contains("Probe from the server"));
    // Not on the public listener.
    let public = http().get(server.url("/admin")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let status: serde_json::Value = http()
        .get(admin("/admin/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["node"], "node-adm");

    let target = json!({ "url": server.url("") });
    // A cross-site page cannot make the node probe: no JSON content type, or another origin, is refused.
    let form = http()
        .post(admin("/admin/probe"))
        .header("content-type", "text/plain")
        .body(target.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 403);
    let foreign = http()
        .post(admin("/admin/probe"))
        .header("origin", "https://evil.example")
        .json(&target)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let bad = http()
        .post(admin("/admin/probe"))
        .json(&json!({ "url": "ftp://x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let answer = http()
        .post(admin("/admin/probe"))
        .header("origin", format!("http://{}", server.admin))
        .json(&target)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let report: serde_json::Value = answer.json().await.unwrap();
    assert!(report["error"].is_null(), "{report}");
    assert_eq!(report["node"], "node-adm");
    assert!(report["verdict"].as_str().unwrap().starts_with("verdict: "));
    assert!(report["text"]
        .as_str()
        .unwrap()
        .contains("hops (ms, whole probe)"));
    server.stop().await;
}

/// The real binary with `--detailed-metrics false` (its own process: the switch is process-wide): requests
/// are still counted, but no histogram gets a sample.
#[tokio::test]
async fn without_detailed_metrics_counters_stay_and_histograms_stay_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xindao"))
        .args(["serve", "--listen", "127.0.0.1:0", "--dev-login", "true"])
        .args([
            "--admin-listen",
            "127.0.0.1:0",
            "--detailed-metrics",
            "false",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start xindao binary");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut address = |prefix: &str| {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        line.trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix}, got {line}"))
            .parse::<std::net::SocketAddr>()
            .unwrap()
    };
    let addr = address("listening http://");
    let admin = address("admin http://");
    let user = login(addr, "ann").await;
    let mut client = Client::connect(addr, &user.token).await;
    client.ok("ping", json!({})).await;
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        metrics.contains(r#"xindao_requests_total{op="ping",outcome="ok"} 1"#),
        "the request is counted:\n{metrics}"
    );
    for line in metrics.lines().filter(|l| l.contains("_count")) {
        assert!(
            line.ends_with(" 0"),
            "no histogram sample without detailed metrics: {line}"
        );
    }
}
