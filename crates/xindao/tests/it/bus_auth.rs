//! The cluster bus trusts no one on the channel: envelopes published straight on the Redis channel / NATS
//! subject (unsigned, sealed with another key, stale, replayed, oversize, malformed) never reach a client and
//! are counted by reason; nodes sharing the secret still chat, a node with another secret is not heard; no
//! password reaches a log line; TLS is verified (PostgreSQL against its local self-signed certificate) and a
//! plain server is refused when TLS is asked for. Without the services, tests print SKIPPED and pass.

use crate::common;
use crate::services;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{login, metric, pushed_as, Client, TestServer};
use hmac::{Hmac, Mac};
use serde_json::json;
use services::{TestDb, CLUSTER_SECRET, NATS_URL, REDIS_URL};
use sha2::Sha256;
use xindao::Config;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The binary's captured logs (installed before any server starts, whichever test comes first).
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    common::init_logging()
}

fn logged() -> String {
    String::from_utf8_lossy(&capture_logs().lock().unwrap()).into_owned()
}

fn channel() -> String {
    format!("xindao-auth-{:016x}", rand::random::<u64>())
}

async fn node(bus: &str, channel: &str, name: &'static str, secret: &'static str) -> TestServer {
    let (bus, channel) = (bus.to_string(), channel.to_string());
    TestServer::start(move |config: &mut Config| {
        config.bus = bus.parse().expect("bus url");
        config.bus_channel = channel;
        config.node_id = Some(name.into());
        config.cluster_secret = Some(secret.into());
        config.presence_ttl_ms = 1500;
    })
    .await
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// An envelope as a node would send it: `xd1.` | HMAC-SHA256(key, json) | json.
fn sealed(key: &[u8], json: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(json);
    let mut out = b"xd1.".to_vec();
    out.extend_from_slice(&mac.finalize().into_bytes());
    out.extend_from_slice(json);
    out
}

/// A `user` delivery pushing `{"event": "message", "data": {"forged": tag}}` to `user_id`.
fn push_to(user_id: i64, tag: &str, boot: u64, seq: u64, ts: u64) -> Vec<u8> {
    let frame = json!({ "event": "message", "data": { "forged": tag } }).to_string();
    json!({
        "node": "intruder", "boot": boot, "seq": seq, "ts": ts,
        "t": "user", "user_id": user_id, "frame": frame,
    })
    .to_string()
    .into_bytes()
}

/// Publishes raw bytes on the bus, as anyone with access to Redis or NATS could.
struct Publisher {
    redis: Option<redis::aio::MultiplexedConnection>,
    nats: Option<async_nats::Client>,
    channel: String,
}

impl Publisher {
    async fn connect(bus: &str, channel: &str) -> Publisher {
        let (mut redis, mut nats) = (None, None);
        if bus.starts_with("redis") {
            let client = redis::Client::open(bus).unwrap();
            redis = Some(client.get_multiplexed_async_connection().await.unwrap());
        } else {
            nats = Some(async_nats::connect(bus).await.unwrap());
        }
        Publisher {
            redis,
            nats,
            channel: channel.into(),
        }
    }

    async fn publish(&mut self, payload: Vec<u8>) {
        if let Some(conn) = &mut self.redis {
            redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(payload)
                .query_async::<()>(conn)
                .await
                .unwrap();
        } else if let Some(client) = &self.nats {
            client
                .publish(self.channel.clone(), payload.into())
                .await
                .unwrap();
            client.flush().await.unwrap();
        }
    }
}

async fn rejected(addr: std::net::SocketAddr, reason: &str) -> u64 {
    let name = format!("xindao_bus_rejected_total{{reason=\"{reason}\"}}");
    metric(addr, &name)
        .await
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until `reason` was counted at least `want` times (10 s at most).
async fn until_rejected(addr: std::net::SocketAddr, reason: &str, want: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let count = rejected(addr, reason).await;
        if count >= want || tokio::time::Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn forged_envelopes_are_dropped_and_counted(bus: &str) {
    let _serial = SERIAL.lock().await;
    capture_logs();
    if !services::bus_available(bus).await {
        return;
    }
    let channel = channel();
    let mut server = node(bus, &channel, "node0", CLUSTER_SECRET).await;
    let alice = login(server.addr, "alice").await;
    let mut a = Client::connect(server.addr, &alice.token).await;
    let mut bus_access = Publisher::connect(bus, &channel).await;
    let key = CLUSTER_SECRET.as_bytes();
    let me = alice.user_id;
    let (boot, now) = (rand::random::<u64>(), now_ms());

    // No seal (what nodes sent before), another key, sealed nonsense, too old, from the future, too big.
    bus_access
        .publish(push_to(me, "unsigned", boot, 1, now))
        .await;
    let wrong_key = b"not-the-cluster-secret-but-32-bytes-long";
    bus_access
        .publish(sealed(wrong_key, &push_to(me, "wrong key", boot, 2, now)))
        .await;
    let mut altered = sealed(key, &push_to(me, "original", boot, 3, now));
    let at = altered.len() - 20;
    altered[at..at + 5].copy_from_slice(b"xxxxx");
    bus_access.publish(altered).await;
    bus_access
        .publish(sealed(key, br#"{"node":"intruder","t":"nonsense"}"#))
        .await;
    bus_access
        .publish(sealed(key, &push_to(me, "stale", boot, 4, now - 60_000)))
        .await;
    bus_access
        .publish(sealed(key, &push_to(me, "future", boot, 5, now + 60_000)))
        .await;
    // NATS refuses payloads over its max_payload (1 MiB by default) itself.
    let oversize = u64::from(bus.starts_with("redis"));
    if oversize == 1 {
        let mut big = push_to(me, "oversize", boot, 6, now);
        big.truncate(big.len() - 1);
        big.extend_from_slice(format!(r#","pad":"{}"}}"#, " ".repeat(1 << 20)).as_bytes());
        bus_access.publish(sealed(key, &big)).await;
    }
    // A well-sealed envelope is delivered once; the same bytes again are a replay.
    let valid = sealed(key, &push_to(me, "valid", boot, 7, now_ms()));
    bus_access.publish(valid.clone()).await;
    bus_access.publish(valid).await;
    bus_access
        .publish(sealed(key, &push_to(me, "second", boot, 8, now_ms())))
        .await;

    // Pushes arrive in bus order: anything forged would come before these.
    assert_eq!(a.event("message").await, json!({ "forged": "valid" }));
    assert_eq!(a.event("message").await, json!({ "forged": "second" }));
    a.no_event("message", Duration::from_millis(300)).await;
    for (reason, count) in [
        ("unsigned", 1),
        ("bad_signature", 2),
        ("malformed", 1),
        ("stale", 2),
        ("oversize", oversize),
        ("replayed", 1),
    ] {
        assert_eq!(
            until_rejected(server.admin, reason, count).await,
            count,
            "{reason}"
        );
    }
    assert!(logged().contains("cluster bus envelope rejected"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_envelopes_on_redis_are_dropped_and_counted() {
    forged_envelopes_are_dropped_and_counted(REDIS_URL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_envelopes_on_nats_are_dropped_and_counted() {
    forged_envelopes_are_dropped_and_counted(NATS_URL).await;
}

async fn only_nodes_sharing_the_secret_hear_each_other(bus: &str) {
    let _serial = SERIAL.lock().await;
    capture_logs();
    if !services::bus_available(bus).await {
        return;
    }
    let Some(db) = TestDb::create().await else {
        return;
    };
    let channel = channel();
    let other = "a-different-secret-also-32-bytes-long!!";
    let mut nodes = Vec::new();
    for (name, secret) in [
        ("node0", CLUSTER_SECRET),
        ("node1", CLUSTER_SECRET),
        ("node2", other),
    ] {
        let (bus, channel, store) = (bus.to_string(), channel.clone(), db.url.clone());
        nodes.push(
            TestServer::start(move |config: &mut Config| {
                config.store = store.parse().expect("store url");
                config.bus = bus.parse().expect("bus url");
                config.bus_channel = channel;
                config.node_id = Some(name.into());
                config.cluster_secret = Some(secret.into());
                config.presence_ttl_ms = 1500;
            })
            .await,
        );
    }
    let alice = login(nodes[0].addr, "alice").await;
    let bob = login(nodes[1].addr, "bob").await;
    let carol = login(nodes[2].addr, "carol").await;
    let mut a = Client::connect(nodes[0].addr, &alice.token).await;
    let mut b = Client::connect(nodes[1].addr, &bob.token).await;
    let mut c = Client::connect(nodes[2].addr, &carol.token).await;

    // Same secret: the push crosses the bus.
    let sent = a
        .ok(
            "send",
            json!({ "to_user": bob.user_id, "cmid": "b1", "content": "hi bob" }),
        )
        .await;
    assert_eq!(b.event("message").await, pushed_as(&sent["message"], false));
    // Another secret: committed (carol finds it in the store) but never pushed across.
    let sent = a
        .ok(
            "send",
            json!({ "to_user": carol.user_id, "cmid": "c1", "content": "hi carol" }),
        )
        .await;
    c.no_event("message", Duration::from_millis(1000)).await;
    let history = c
        .ok(
            "history",
            json!({ "conversation_id": sent["message"]["conversation_id"] }),
        )
        .await;
    assert!(history.to_string().contains("hi carol"), "{history}");
    // Each side counted the other's envelopes as badly sealed.
    assert!(until_rejected(nodes[2].admin, "bad_signature", 1).await >= 1);
    assert!(until_rejected(nodes[0].admin, "bad_signature", 1).await >= 1);
    for node in &mut nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_sharing_the_secret_hear_each_other_over_redis() {
    only_nodes_sharing_the_secret_hear_each_other(REDIS_URL).await;
}

/// PostgreSQL here serves TLS with the Debian self-signed "snakeoil" certificate for `localhost`.
/// (Debian also hashes it into /etc/ssl/certs: the system store trusts it.)
const PG_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
/// A root that did not sign it.
const OTHER_ROOT: &str = "/etc/ssl/certs/ISRG_Root_X1.pem";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_is_verified() {
    let _serial = SERIAL.lock().await;
    capture_logs();
    let Some(db) = TestDb::create().await else {
        return;
    };
    let start = |store: String| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut config = common::test_config(dir.path().to_path_buf());
        config.store = store.parse().expect("store url");
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        xindao::Server::with_listener(config, listener)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let on_localhost = db.url.replace("127.0.0.1", "localhost");
    if !std::path::Path::new(PG_CERT).exists() {
        return services::skipped(&format!("no {PG_CERT}: TLS to PostgreSQL not tried"));
    }
    // With its certificate as the root: connects, over TLS.
    let pinned = format!("{on_localhost}?sslmode=verify-full&sslrootcert={PG_CERT}");
    start(pinned.clone()).await.expect("TLS with sslrootcert");
    // `require` verifies too (stricter than libpq): the certificate is for localhost, not 127.0.0.1 ...
    let wrong_host = pinned.replace("localhost", "127.0.0.1");
    assert!(start(wrong_host).await.is_err(), "host name not verified");
    let require = format!("{}?sslmode=require", db.url);
    assert!(start(require).await.is_err(), "host name not verified");
    // ... and a certificate no trusted root vouches for is refused.
    let other_root = format!("{on_localhost}?sslmode=require&sslrootcert={OTHER_ROOT}");
    if std::path::Path::new(OTHER_ROOT).exists() {
        let refused = start(other_root).await;
        assert!(
            refused.is_err(),
            "certificate of an unknown issuer accepted"
        );
    }
    let password = on_localhost.replace("postgres@", "postgres:hunter2-pg@");
    start(format!("{password}?sslmode=require&sslrootcert={PG_CERT}"))
        .await
        .expect("password ignored by trust auth");
    assert!(!logged().contains("hunter2-pg"), "a password was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_bus_is_refused_when_tls_is_asked_for() {
    let _serial = SERIAL.lock().await;
    capture_logs();
    for (plain, tls) in [
        (REDIS_URL, REDIS_URL.replace("redis://", "rediss://")),
        (NATS_URL, NATS_URL.replace("nats://", "tls://")),
    ] {
        if !services::bus_available(plain).await {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut config = common::test_config(dir.path().to_path_buf());
        config.bus = tls.clone().parse().expect("bus url");
        config.bus_channel = channel();
        config.cluster_secret = Some(CLUSTER_SECRET.into());
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let started = xindao::Server::with_listener(config, listener).await;
        let error = started
            .err()
            .expect("served over a plain connection")
            .to_string();
        assert!(error.contains(&tls), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_bus_needs_a_secret_and_no_password_is_logged() {
    let _serial = SERIAL.lock().await;
    let logs = capture_logs();
    if !services::bus_available(REDIS_URL).await {
        return;
    }
    let start = |bus: String, secret: Option<&str>| {
        let secret = secret.map(str::to_string);
        async move {
            let dir = tempfile::tempdir().unwrap();
            let mut config = common::test_config(dir.path().to_path_buf());
            config.bus = bus.parse().expect("bus url");
            config.bus_channel = channel();
            config.cluster_secret = secret.map(Into::into);
            let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
            xindao::Server::with_listener(config, listener).await
        }
    };
    for secret in [None, Some("too short")] {
        let refused = start(REDIS_URL.into(), secret).await;
        let error = refused
            .err()
            .expect("cluster bus without a secret")
            .to_string();
        assert!(error.contains("cluster_secret"), "{error}");
    }
    // Redis here has no password: AUTH fails, and the error and the warnings must not show it.
    let with_password = REDIS_URL.replace("redis://", "redis://:hunter2-redis@");
    let error = start(with_password, Some(CLUSTER_SECRET))
        .await
        .err()
        .expect("AUTH refused by a Redis without password")
        .to_string();
    assert!(!error.contains("hunter2"), "{error}");
    assert!(error.contains("********"), "{error}");
    // A NATS credentials file that cannot be read stops the start, naming the file.
    if services::bus_available(NATS_URL).await {
        let dir = tempfile::tempdir().unwrap();
        let mut config = common::test_config(dir.path().to_path_buf());
        config.bus = NATS_URL.parse().expect("bus url");
        config.bus_channel = channel();
        config.cluster_secret = Some(CLUSTER_SECRET.into());
        config.nats_creds_file = Some(dir.path().join("missing.creds"));
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let error = xindao::Server::with_listener(config, listener)
            .await
            .err()
            .expect("a missing creds file")
            .to_string();
        assert!(error.contains("missing.creds"), "{error}");
    }
    // NATS without auth accepts any user: the INFO line names the bus, masked.
    if services::bus_available(NATS_URL).await {
        let with_password = NATS_URL.replace("nats://", "nats://xindao:hunter2-nats@");
        let server = start(with_password, Some(CLUSTER_SECRET))
            .await
            .expect("NATS ignores credentials it does not need");
        drop(server);
    }
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(!text.contains("hunter2"), "a password was logged:\n{text}");
    assert!(!text.contains(CLUSTER_SECRET), "the secret was logged");
    assert!(text.contains("nats://xindao:********@"), "{text}");
}

/// A TLS server of this machine's (redis-server or nats-server) on a free port, with the certificate
/// PostgreSQL uses; killed when dropped.
struct TlsServer {
    child: std::process::Child,
    port: u16,
}

impl TlsServer {
    const KEY: &'static str = "/etc/ssl/private/ssl-cert-snakeoil.key";

    async fn start(program: &str) -> Option<TlsServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let port_arg = port.to_string();
        let args: Vec<&str> = if program == "redis-server" {
            vec![
                "--port",
                "0",
                "--tls-port",
                &port_arg,
                "--tls-cert-file",
                PG_CERT,
                "--tls-key-file",
                Self::KEY,
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
        } else {
            vec![
                "-a",
                "127.0.0.1",
                "-p",
                &port_arg,
                "--tls",
                "--tlscert",
                PG_CERT,
                "--tlskey",
                Self::KEY,
            ]
        };
        let child = std::process::Command::new(program)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let server = TlsServer { child, port };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(server);
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        None
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two nodes sharing a PostgreSQL store and the bus at `bus`: a 1:1 push crosses from one to the other.
async fn two_nodes_chat_over(bus: &str) {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let channel = channel();
    let mut nodes = Vec::new();
    for name in ["node0", "node1"] {
        let (bus, channel, store) = (bus.to_string(), channel.clone(), db.url.clone());
        nodes.push(
            TestServer::start(move |config: &mut Config| {
                config.store = store.parse().expect("store url");
                config.bus = bus.parse().expect("bus url");
                config.bus_channel = channel;
                config.node_id = Some(name.into());
                config.cluster_secret = Some(CLUSTER_SECRET.into());
            })
            .await,
        );
    }
    let alice = login(nodes[0].addr, "alice").await;
    let bob = login(nodes[1].addr, "bob").await;
    let mut a = Client::connect(nodes[0].addr, &alice.token).await;
    let mut b = Client::connect(nodes[1].addr, &bob.token).await;
    let sent = a
        .ok(
            "send",
            json!({ "to_user": bob.user_id, "cmid": "t1", "content": "over TLS" }),
        )
        .await;
    assert_eq!(b.event("message").await, pushed_as(&sent["message"], false));
    for node in &mut nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_chat_over_tls_to_redis_and_nats() {
    let _serial = SERIAL.lock().await;
    capture_logs();
    if !std::path::Path::new(TlsServer::KEY).exists() {
        return services::skipped("no TLS key for a local Redis/NATS");
    }
    let Some(redis) = TlsServer::start("redis-server").await else {
        return services::skipped("cannot start redis-server with TLS");
    };
    two_nodes_chat_over(&format!("rediss://localhost:{}", redis.port)).await;
    let Some(nats) = TlsServer::start("nats-server").await else {
        return services::skipped("cannot start nats-server with TLS");
    };
    two_nodes_chat_over(&format!("tls://localhost:{}", nats.port)).await;
}
