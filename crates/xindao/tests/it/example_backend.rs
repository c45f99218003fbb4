//! The example backend (examples/backend/server.mjs) against the real `xindao` binary: a client connects with
//! a token the example minted (HS256, the secret shared with `jwt_hs256_secret`), sends "/order 42", the
//! `message.created` webhook reaches the example, which answers through the server API with a system message
//! that the client receives. A delivery with a bad signature is refused by the example. Needs `node` (>= 20);
//! without it the test prints SKIPPED and passes, as the service tests do.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::common::{http, Client};

const JWT_SECRET: &str = "example-jwt-secret-of-at-least-32-bytes!";
const WEBHOOK_SECRET: &str = "example-webhook-secret-0123456789";

/// A child process killed when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn apikey(data_dir: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_xindao"))
        .args(["apikey", "create", "--name", "shop", "--scopes", "messages"])
        .arg("--data-dir")
        .arg(data_dir)
        .env("XINDAO_LOG", "error")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_an_example_token_gets_the_order_reply() {
    if !node_available() {
        eprintln!("SKIPPED example_backend: `node` is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = apikey(dir.path());
    // The example's port, reserved for xindao's webhook URL (deliveries are retried until it listens).
    let example_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let events_url = format!("http://127.0.0.1:{example_port}/xindao/events");
    let webhooks = json!([{ "name": "shop", "url": events_url, "secret": WEBHOOK_SECRET,
                            "events": ["message.created"] }]);
    let mut xindao = Command::new(env!("CARGO_BIN_EXE_xindao"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", ""])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--webhooks", &webhooks.to_string()])
        .args(["--webhook-backoff-ms", "100"])
        .env("XINDAO_JWT_HS256_SECRET", JWT_SECRET)
        .env("XINDAO_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start xindao");
    let xindao_addr = crate::common::listening(&mut xindao);
    let _xindao = Running(xindao);
    let mut example = Command::new("node")
        .arg(repo_root().join("examples/backend/server.mjs"))
        .env("PORT", example_port.to_string())
        .env("XINDAO_URL", format!("http://{xindao_addr}"))
        .env("XINDAO_API_KEY", &key)
        .env("XINDAO_JWT_SECRET", JWT_SECRET)
        .env("XINDAO_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node");
    let example_addr = crate::common::listening(&mut example);
    let _example = Running(example);

    // A token from the example, for the shop's user "shop-42".
    let minted: Value = http()
        .post(format!("http://{example_addr}/token"))
        .json(&json!({ "user": "shop-42", "name": "Li Lei" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = minted["token"].as_str().expect("a token").to_string();
    let mut client = Client::connect(xindao_addr, &token).await;
    let me = client.hello["user"].clone();
    assert_eq!(me["display_name"], "Li Lei", "{}", client.hello);
    let user_id = me["id"].as_i64().unwrap();

    let room = client.ok("room_create", json!({ "name": "orders" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    let sent = client.say(room, "c-1", "hello, /order 42 please").await;
    assert_eq!(sent["seq"], 1);
    let reply = loop {
        let pushed = client.event("message").await;
        if pushed["seq"] == 2 {
            break pushed;
        }
    };
    assert_eq!(
        (reply["conversation_id"].as_i64(), reply["content"].as_str()),
        (Some(room), Some("Order 42: paid, packing now."))
    );
    assert_ne!(
        reply["sender_id"].as_i64(),
        Some(user_id),
        "the system answers"
    );

    // Hostile input to the example: no or a wrong signature is refused (401), a signed body that is not a
    // batch is refused (400); nothing is sent.
    let body = json!({ "events": [{ "id": "1", "event": "message.created", "data": {
        "conversation_id": room, "id": 1, "kind": "text", "content": "/order 666" } }] })
    .to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let not_a_batch = json!({ "id": "1", "event": "message.created" }).to_string();
    let signed =
        xindao::webhooks::batch::signature(WEBHOOK_SECRET.as_bytes(), now, not_a_batch.as_bytes());
    for (body, signature, status) in [
        (body.clone(), None, 401),
        (
            body.clone(),
            Some(format!("t={now},v1={}", "0".repeat(64))),
            401,
        ),
        (not_a_batch, Some(signed), 400),
    ] {
        let mut request = http()
            .post(format!("http://{example_addr}/xindao/events"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-xindao-signature", signature);
        }
        assert_eq!(request.send().await.unwrap().status(), status);
    }
    client
        .no_event("message", std::time::Duration::from_millis(500))
        .await;
}
