//! A socket does not outlive its credentials: a connection opened with a business JWT is closed with 4001
//! `token_expired` at the token's `exp` (no leeway on `exp`), unless the client sent a fresh token of the same
//! user first (`auth_refresh`); a refused refresh (another user's, expired, garbage) changes nothing. A login's
//! socket has no fixed end: only logout (of the token it now holds) closes it. On SQLite and PostgreSQL, where
//! JWT sessions are stored and must not slide.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{http, Client, TestServer};
use crate::jwt::{now, refused};

const SECRET: &str = "a-shared-secret-of-the-business-backend-32+";

fn token(sub: &str, exp: i64) -> String {
    let claims = json!({"sub": sub, "exp": exp});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A server taking HS256 tokens, on SQLite or (when `pg`) on a fresh PostgreSQL database; `None` when
/// PostgreSQL is not reachable.
async fn server(pg: bool) -> Option<(TestServer, Option<crate::services::TestDb>)> {
    let db = if pg {
        Some(crate::services::TestDb::create().await?)
    } else {
        None
    };
    let url = db.as_ref().map(|db| db.url.clone());
    let server = TestServer::start(|config| {
        config.jwt_hs256_secret = Some(SECRET.into());
        if let Some(url) = url {
            config.store = url.parse().unwrap();
        }
    })
    .await;
    Some((server, db))
}

/// Reads until the server closes; returns the close code and reason.
async fn close_of(client: &mut Client) -> (u16, String) {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), client.ws.next())
            .await
            .expect("close within 10 s");
        match next {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.as_str().to_string())
            }
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => panic!("no close frame"),
            Some(Ok(_)) => continue,
        }
    }
}

/// A socket opened with a single-use connect ticket bought with `token`.
pub async fn by_ticket(server: &TestServer, token: &str) -> Client {
    let ticket: Value = http()
        .post(server.url("/v1/ws/ticket"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!(
        "ws://{}/v1/ws?ticket={}",
        server.addr,
        ticket["ticket"].as_str().unwrap()
    );
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    Client::from_ws(ws).await
}

async fn sockets_close_at_exp(pg: bool) {
    let Some((server, _db)) = server(pg).await else {
        return;
    };
    let exp = now() + 2;
    let short = token("exp-1", exp);
    let mut direct = Client::connect(server.addr, &short).await;
    assert_eq!(
        direct.hello["expires_at"],
        exp * 1000,
        "hello tells the end"
    );
    // A ticket's socket has the same end: the stored session is fixed at the token's exp.
    let mut ticketed = by_ticket(&server, &short).await;
    assert_eq!(ticketed.hello["expires_at"], exp * 1000);
    direct.ok("ping", json!({})).await;
    for client in [&mut direct, &mut ticketed] {
        assert_eq!(close_of(client).await, (4001, "token_expired".into()));
    }
    let closed_at = now();
    assert!(closed_at >= exp, "not before exp");
    assert!(
        closed_at <= exp + 2,
        "shortly after exp: {closed_at} vs {exp}"
    );
    // From its exp on, the token opens nothing, and the HTTP routes refuse it.
    assert_eq!(
        refused(&server, &short).await,
        (401, "token_expired".into())
    );
    let me = http()
        .get(server.url("/v1/me"))
        .bearer_auth(&short)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status().as_u16(), 401);
    // No leeway on exp: a token 5 s past it is expired (30 s are tolerated on nbf only).
    assert_eq!(
        refused(&server, &token("exp-1", now() - 5)).await,
        (401, "token_expired".into())
    );
}

#[tokio::test]
async fn jwt_sockets_close_with_4001_token_expired_at_exp() {
    sockets_close_at_exp(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_sockets_close_at_exp_on_postgresql() {
    sockets_close_at_exp(true).await;
}

async fn refresh_moves_the_end(pg: bool) {
    let Some((server, _db)) = server(pg).await else {
        return;
    };
    let old_exp = now() + 2;
    let old = token("ref-1", old_exp);
    let mut client = Client::connect(server.addr, &old).await;
    let new_exp = now() + 600;
    let new = token("ref-1", new_exp);
    let refreshed = client.ok("auth_refresh", json!({"token": new})).await;
    assert_eq!(refreshed, json!({"expires_at": new_exp * 1000}));
    // Past the old exp, the socket still answers.
    let past_old = Instant::now() + Duration::from_millis(((old_exp - now()) as u64 + 1) * 1000);
    tokio::time::sleep_until(past_old.into()).await;
    client.ok("ping", json!({})).await;
    // Its session is the new token's now: logging out the old one leaves it open, the new one closes it.
    let logout = |token: String| {
        let url = server.url("/v1/logout");
        async move {
            http()
                .post(url)
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let another = token("ref-1", now() + 600);
    let mut other = Client::connect(server.addr, &another).await;
    assert_eq!(logout(another).await, 200);
    assert_eq!(close_of(&mut other).await.0, 4001);
    client.ok("ping", json!({})).await;
    assert_eq!(logout(new).await, 200);
    assert_eq!(close_of(&mut client).await, (4001, "session ended".into()));
}

#[tokio::test]
async fn a_refresh_before_exp_keeps_the_socket_open() {
    refresh_moves_the_end(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_keeps_the_socket_open_on_postgresql() {
    refresh_moves_the_end(true).await;
}

#[tokio::test]
async fn refused_refreshes_change_nothing() {
    let Some((server, _db)) = server(false).await else {
        return;
    };
    let exp = now() + 3;
    let mut client = Client::connect(server.addr, &token("mine", exp)).await;
    let bob = server.login("bob").await;
    let cases = [
        (
            "another user's JWT",
            token("theirs", now() + 600),
            "forbidden",
        ),
        ("another user's session token", bob.token, "forbidden"),
        ("an expired JWT", token("mine", now() - 1), "token_expired"),
        (
            "a JWT of another key",
            {
                let claims = json!({"sub": "mine", "exp": now() + 600});
                let key = EncodingKey::from_secret(b"not-the-secret-not-the-secret-not-the-secret");
                encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
            },
            "invalid_token",
        ),
        ("garbage with dots", "not.a.jwt".into(), "invalid_token"),
        ("an unknown session token", "abc".into(), "unauthorized"),
        ("an empty token", String::new(), "unauthorized"),
        ("a huge token", "x.".repeat(5000), "invalid_token"),
    ];
    for (what, bad, code) in cases {
        assert_eq!(
            client.err("auth_refresh", json!({"token": bad})).await,
            code,
            "{what}"
        );
    }
    assert_eq!(client.err("auth_refresh", json!({})).await, "invalid_args");
    assert_eq!(
        client.err("auth_refresh", json!({"token": 42})).await,
        "invalid_args"
    );
    // Still open, and still ending at the old exp.
    client.ok("ping", json!({})).await;
    assert_eq!(close_of(&mut client).await, (4001, "token_expired".into()));
    assert!(now() >= exp);
}

#[tokio::test]
async fn login_sockets_have_no_fixed_end_and_follow_their_refreshed_session() {
    let Some((server, _db)) = server(false).await else {
        return;
    };
    let first = server.login("carol").await;
    let mut client = server.connect(&first).await;
    assert_eq!(
        client.hello["expires_at"],
        Value::Null,
        "a login's session slides"
    );
    // Another login of the same user is the same user: the socket may move to its token.
    let second = server.login("carol").await;
    assert_eq!(second.user_id, first.user_id);
    let refreshed = client
        .ok("auth_refresh", json!({"token": second.token}))
        .await;
    assert_eq!(refreshed, json!({"expires_at": null}));
    // A JWT is another user (a business id is not a development login).
    assert_eq!(
        client
            .err(
                "auth_refresh",
                json!({"token": token("carol", now() + 600)})
            )
            .await,
        "forbidden"
    );
    let logout = |token: &str| {
        http()
            .post(server.url("/v1/logout"))
            .bearer_auth(token)
            .json(&json!({}))
            .send()
    };
    assert_eq!(logout(&first.token).await.unwrap().status().as_u16(), 200);
    client.ok("ping", json!({})).await;
    assert_eq!(logout(&second.token).await.unwrap().status().as_u16(), 200);
    assert_eq!(close_of(&mut client).await, (4001, "session ended".into()));
}
