//! Who may reach what at the edge (issue 16, findings 5 and 7): WebSockets per client address (the socket's,
//! or X-Forwarded-For's from a trusted proxy only), /metrics on the admin listener only, the web page's
//! security headers, and the WebSocket Origin allow-list.

use std::net::SocketAddr;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::MaybeTlsStream;

use super::edge::connect_from;
use crate::common::*;

/// A WebSocket upgrade from loopback address `from` with extra headers: the HTTP status, and the client when
/// it upgraded (keep it to keep the connection).
async fn upgrade(
    addr: SocketAddr,
    from: [u8; 4],
    token: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<Client>) {
    let mut request = format!("ws://{addr}/v1/ws?token={token}")
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        let name = axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().append(name, value.parse().unwrap());
    }
    let tcp = connect_from(from, addr).await;
    match tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)).await {
        Ok((ws, response)) => (response.status().as_u16(), Some(Client::from_ws(ws).await)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            (response.status().as_u16(), None)
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_per_address_are_capped_by_the_sockets_address() {
    let server = TestServer::start(|c| c.max_connections_per_ip = 3).await;
    let alice = server.login("alice").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let (status, client) = upgrade(server.addr, [127, 0, 0, 3], &alice.token, &[]).await;
        assert_eq!(status, 101);
        open.push(client);
    }
    // Before: 10 throwaway accounts from one address filled max_connections=160.
    let (status, _) = upgrade(server.addr, [127, 0, 0, 3], &alice.token, &[]).await;
    assert_eq!(status, 429);
    // X-Forwarded-For from a peer that is not a trusted proxy is ignored.
    let forged = [("x-forwarded-for", "198.51.100.9")];
    let (status, _) = upgrade(server.addr, [127, 0, 0, 3], &alice.token, &forged).await;
    assert_eq!(status, 429);
    // Another address is not affected; a closed socket gives its place back.
    assert_eq!(
        upgrade(server.addr, [127, 0, 0, 4], &alice.token, &[])
            .await
            .0,
        101
    );
    drop(open.pop());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        upgrade(server.addr, [127, 0, 0, 3], &alice.token, &[])
            .await
            .0,
        101
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_address_is_capped() {
    let server = TestServer::start(|c| {
        c.max_connections_per_ip = 2;
        c.trusted_proxies = vec!["127.0.0.5/32".parse().unwrap()];
    })
    .await;
    let alice = server.login("alice").await;
    let proxy = [127, 0, 0, 5];
    let client_a = [("x-forwarded-for", "198.51.100.1")];
    // The client may prepend anything; the proxy appends the address it saw.
    let client_b = [("x-forwarded-for", "198.51.100.1, 198.51.100.2")];
    let mut open = Vec::new();
    for _ in 0..2 {
        let (status, client) = upgrade(server.addr, proxy, &alice.token, &client_a).await;
        assert_eq!(status, 101);
        open.push(client);
    }
    assert_eq!(
        upgrade(server.addr, proxy, &alice.token, &client_a).await.0,
        429
    );
    // Another client through the same proxy is counted on its own, and so is the proxy's own address.
    let (status, b) = upgrade(server.addr, proxy, &alice.token, &client_b).await;
    assert_eq!(status, 101);
    open.push(b);
    assert_eq!(upgrade(server.addr, proxy, &alice.token, &[]).await.0, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_the_admin_listener_only() {
    let server = TestServer::start(|_| {}).await;
    let public = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(public.status(), 404, "no /metrics on the public listener");
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200, "/healthz stays public");
    let admin = reqwest::get(format!("http://{}/metrics", server.admin))
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    assert!(admin.text().await.unwrap().contains("xindao_connections"));
    let admin_health = reqwest::get(format!("http://{}/healthz", server.admin))
        .await
        .unwrap();
    assert_eq!(admin_health.status(), 200);
    let not_there = reqwest::get(format!("http://{}/v1/me", server.admin))
        .await
        .unwrap();
    assert_eq!(not_there.status(), 404, "the admin listener serves no API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_is_served_with_security_headers() {
    let server = TestServer::start(|_| {}).await;
    for path in [
        "/",
        "/app.js",
        "/xindao.js",
        "/style.css",
        "/i18n.js",
        "/ui.js",
        "/chat.js",
        "/people.js",
        "/composer.js",
        "/rooms.js",
    ] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'self'",
            "frame-ancestors 'none'",
            "script-src 'self'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        let host = server.addr.to_string();
        assert!(
            csp.contains(&format!("connect-src 'self' ws://{host} wss://{host}")),
            "{path}: {csp}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_origins_are_checked_before_the_upgrade() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let own = format!("http://{}", server.addr);
    let from = [127, 0, 0, 1];
    let evil = [("origin", "https://evil.example")];
    assert_eq!(upgrade(server.addr, from, &alice.token, &evil).await.0, 403);
    let same = [("origin", own.as_str())];
    assert_eq!(upgrade(server.addr, from, &alice.token, &same).await.0, 101);
    // Mini-programs and native clients send no Origin.
    assert_eq!(upgrade(server.addr, from, &alice.token, &[]).await.0, 101);

    let listed = TestServer::start(|c| {
        c.allowed_origins = vec!["https://chat.example.com".into()];
    })
    .await;
    let bob = listed.login("bob").await;
    let allowed = [("origin", "https://chat.example.com")];
    assert_eq!(
        upgrade(listed.addr, from, &bob.token, &allowed).await.0,
        101
    );
    let own = format!("http://{}", listed.addr);
    let same = [("origin", own.as_str())];
    assert_eq!(
        upgrade(listed.addr, from, &bob.token, &same).await.0,
        403,
        "a configured list replaces the same-host default"
    );
}
