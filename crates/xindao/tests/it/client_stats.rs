//! `client_stats` through the real socket: a well-formed report lands in `xindao_client_rtt_seconds` under
//! its client kind and network; malformed, oversized and too frequent reports get their defined errors; and
//! reports from many networks (through a trusted proxy's X-Forwarded-For) stay within the configured cap.

use std::net::SocketAddr;

use futures_util::{stream, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::{http, Client, TestServer};

/// One report of `n` round trips, all in the first bucket (<= 25 ms).
fn report(kind: &str, n: u32) -> serde_json::Value {
    let mut buckets = vec![0u32; 11];
    buckets[0] = n;
    json!({ "kind": kind, "buckets": buckets })
}

async fn metrics_text(admin: SocketAddr) -> String {
    http()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The `_count` sample of the client RTT histogram with these labels, if present.
fn rtt_count(text: &str, kind: &str, network: &str) -> Option<u64> {
    let prefix =
        format!("xindao_client_rtt_seconds_count{{kind=\"{kind}\",network=\"{network}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|n| n.trim().parse().unwrap())
}

/// The distinct `network` labels of the client RTT histogram.
fn networks(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|line| line.starts_with("xindao_client_rtt_seconds_count{"))
        .filter_map(|line| line.split("network=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_report_is_counted_once_a_minute_and_bad_ones_are_refused() {
    let mut server = TestServer::start(|_| {}).await;
    let login = server.login("rtt-ann").await;
    let mut c = server.connect(&login).await;

    // Malformed: unknown kind, missing buckets, wrong count of buckets (too many, too few), a negative or
    // fractional count, unknown fields.
    let mut twelve = report("browser", 1);
    twelve["buckets"].as_array_mut().unwrap().push(json!(0));
    for bad in [
        json!({ "kind": "toaster", "buckets": [1,0,0,0,0,0,0,0,0,0,0] }),
        json!({ "kind": "node" }),
        twelve,
        json!({ "kind": "node", "buckets": [1, 2] }),
        json!({ "kind": "node", "buckets": [-1,0,0,0,0,0,0,0,0,0,0] }),
        json!({ "kind": "node", "buckets": [0.5,0,0,0,0,0,0,0,0,0,0] }),
        json!({ "kind": "node", "buckets": [1,0,0,0,0,0,0,0,0,0,0], "user": 7 }),
        json!({ "kind": "node", "buckets": vec![1; 200] }),
    ] {
        assert_eq!(
            c.err("client_stats", bad.clone()).await,
            "invalid_args",
            "{bad}"
        );
    }
    // Too big: more round trips than one report may count; and an empty report.
    assert_eq!(
        c.err("client_stats", report("node", 1001)).await,
        "invalid_args"
    );
    assert_eq!(
        c.err("client_stats", report("node", 0)).await,
        "invalid_args"
    );
    // None of those used up the connection's report.
    let text = metrics_text(server.admin).await;
    assert_eq!(rtt_count(&text, "node", "127.0.0.0/16"), None, "{text}");

    // A good report: counted, in its bucket, under the connection's /16.
    let mut buckets = vec![0u32; 11];
    buckets[0] = 3; // <= 25 ms
    buckets[3] = 2; // <= 200 ms
    buckets[10] = 1; // above 12.8 s
    let result = c
        .ok(
            "client_stats",
            json!({ "kind": "node", "buckets": buckets }),
        )
        .await;
    assert_eq!(result["counted"], 6);
    let text = metrics_text(server.admin).await;
    assert_eq!(rtt_count(&text, "node", "127.0.0.0/16"), Some(6), "{text}");
    let bucket = |le: &str| {
        let prefix = format!(
            "xindao_client_rtt_seconds_bucket{{le=\"{le}\",kind=\"node\",network=\"127.0.0.0/16\"}} "
        );
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|n| n.trim().parse::<u64>().unwrap())
    };
    assert_eq!(bucket("0.025"), Some(3), "{text}");
    assert_eq!(bucket("0.2"), Some(5), "{text}");
    assert_eq!(bucket("12.8"), Some(5), "{text}");
    assert_eq!(bucket("+Inf"), Some(6), "{text}");

    // Too often: a second report within the minute is refused with when to retry, and not counted.
    let reply = c.call("client_stats", report("node", 1)).await;
    assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
    assert!(reply["error"]["retry_after_ms"].as_u64().unwrap() > 50_000);
    let text = metrics_text(server.admin).await;
    assert_eq!(rtt_count(&text, "node", "127.0.0.0/16"), Some(6));

    // Another connection has its own minute.
    let mut d = server.connect(&login).await;
    d.ok("client_stats", report("miniprogram", 2)).await;
    let text = metrics_text(server.admin).await;
    assert_eq!(rtt_count(&text, "miniprogram", "127.0.0.0/16"), Some(2));
    server.stop().await;
}

/// Connects through a "proxy" (the test, from 127.0.0.1, which the server trusts) for a client at `client`.
async fn connect_as(addr: SocketAddr, token: &str, client: &str) -> Client {
    let mut request = format!("ws://{addr}/v1/ws?token={token}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", client.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    Client::from_ws(ws).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_beyond_the_cap_share_the_other_series() {
    let clients: u32 = std::env::var("XINDAO_CLIENT_RTT_NETWORKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let cap = 50;
    let mut server = TestServer::start(|config| {
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        config.client_rtt_max_prefixes = cap;
        // One user's connections, opened and dropped faster than the server may notice each close.
        config.max_connections_per_user = 100_000;
    })
    .await;
    let login = server.login("rtt-many").await;
    let addr = server.addr;
    let token = login.token.clone();
    // Each client from a network of its own: 10,000 IPv4 /16s (and, every tenth, an IPv6 /32 instead).
    stream::iter(0..clients)
        .map(|i| {
            let token = token.clone();
            async move {
                let client = if i % 10 == 0 {
                    format!("2001:{:x}::1", i)
                } else {
                    format!("{}.{}.1.2", 11 + i / 256, i % 256)
                };
                let mut c = connect_as(addr, &token, &client).await;
                c.ok("client_stats", report("browser", 1)).await;
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let text = metrics_text(server.admin).await;
    let seen = networks(&text);
    assert_eq!(seen.len(), cap + 1, "{seen:?}");
    assert!(seen.contains("other"));
    assert!(
        seen.iter().any(|n| n.contains(':')),
        "IPv6 networks are /32s: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|n| n == "other" || n.ends_with("/16") || n.ends_with("/32")),
        "{seen:?}"
    );
    let total: u64 = seen
        .iter()
        .map(|n| rtt_count(&text, "browser", n).unwrap())
        .sum();
    assert_eq!(total, u64::from(clients), "every report counted once");
    server.stop().await;
}
