//! Identity from the business: connection tokens (JWT) minted by a backend, through the real upgrade and the
//! ticket route. Valid HS256, EdDSA and RS256 tokens connect and chat (and create the user, named and joined
//! to its granted rooms, on first use); expired, not-yet-valid, badly signed, `alg: none`, HS/RS-confused,
//! exp-less and oversize tokens are refused with HTTP 401 and a code saying why.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::common::{http, Client, TestServer};

const HS_SECRET: &str = "a-shared-secret-of-the-business-backend-32+";

// Test keys, made once with `openssl genpkey` (never used outside these tests).
const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBnSEdXlvDCFdJY+E8wT4aI68s05icxoBqnWsLt5ospf\n-----END PRIVATE KEY-----\n";
const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA8MSRrWOcN5Yffj1QsJ1fwOZrZNt7lX8sR1bOW9mnFeA=\n-----END PUBLIC KEY-----\n";
const RSA_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDUssiDebBhxOO/\nMx/SUIQq0OId2gg8VHdncMfb5bnaQXOgp0EOPK9Dw/SPjDBaFTjPeprGQgIihG58\newl+ImWVv9/EfLVdqQaC68wB4d2eVOd3tr3xtONbuVFdK3GaN6tlFFV8raEwoL+J\nk+zZt5pTxE/NNyN+mzeFVbZRrxEpvoU/hDGTaAxHnYwLMru86vf7Xz4qIt+ZG4+1\n5vnmSHHYxEnoXXOyab36HlgfEbMgLsrqJ/Dqy2jo8LnHwP2jqhxmyBLGS7prKjpV\nJrOzp8mwoD239NyJ7xYpcIV84S9kS3pKsj0Xb5K2OCItfcLfX8m0etKfzASOz80S\nfqXOgM/DAgMBAAECggEAMgIA28ySGEKS62LJQgj1Mh3fc/ZNxmVzl2nwS3a1HigS\nV/zK8l55NJ0PVGq4+Y0QyNNCLYfaeaQaWAETh8jtimpM4aUSfT1ezwxCcFTa5r1+\nmGpqOTh21ht5kkbDFGevT/oaaVBnXAgHUIDriHq++Z/nxU+H9F3pDVvMHGNlTSNU\n7j8OvOXzqVdu4TiHUGilbhAIzlGXYs8bzNffz4OwnJLvG7RiKxKxqQBwIUSOwUWF\nbUvGH5DNGPRoMLqmI2ky4tj/PwncSrcLkFoGD+Ux1wqgN6/NzWvtla/N25JWH6LV\n68Y/fGKYoEjkyBHP8sJsgS2srwWHQp2RPltcJB0yqQKBgQDuzd3dZM4YAXDipkGE\npQU+evguCm1XSUOx2gSNnO3zdG1MgC7hvXNENaAZ7XKmAsuWAZCDnMoLhtCLsl3q\nq2Otm5g4r3mQItIt6lrreSIOweUI1ZtVUlga7eAHkF8qr+qTHY2gmDeS69KNOGBX\nh+m2C8nDz/Od0Tf2Yy99HTSWawKBgQDkA640SJMVTn0BG0BffejEh6nhEyrGiKOU\ndUnxjQottX/bmEFYp7vj3NTRQEWbt6VWEtRtaDUKYf4ilZF60wD9IHg2qbST/T38\nB2qsbRM84GswMZuA3eTm4vzVF6S44tlhR9bYHWSXbjIo6FhoYhRwY7K62UdWh/Le\nxNTJfDwSCQKBgQCRbKDdwBOZntcFz0U659uHrw8Pyp3HeABXgHMhYh2uEoq0+aKT\nKfHV6eozn9wfqLgeA5nj7ElGN7UsPVTgIbsz7/sFGicnVW01NPBlUYEiB4XYmWxc\nyyaIT7AMKykpL7PkHy0uTUQanq27/kb9RvFWQVt/eVXcF5rC2qgCwxRRPQKBgQDe\nh/0Hh+EMhVqYrtkHmWGIFQMl6EfyFT7Y0BOHjGfnrmCHl7QG60UDoO2O/1QwIm5Z\nb+0kjfReGr8lT6X5Il+vq3XHm57iY+CPzUk92QJSgo/6LCAhB+6zq8qnyfh4fOU8\n/RjgOOeIpwKLTB+kWDysZ5DyrMXj3LCa26z0q6wQyQKBgA9QJzrouyuoa2rRmjWS\ngwDsF3hhRtAG1PxbdalZfYZaWNjl697DRAUOS5Xrz2gtw5+s+LP/Nc0oX5SwPjIQ\nCgDCtN6Rculbe6I8idDreUd/+64PE9oYBbweF/V67IRHC9VkTrCIThC9mSoUWkjW\nQNlgJuS4eMMxgifDCW3AiETc\n-----END PRIVATE KEY-----\n";
const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1LLIg3mwYcTjvzMf0lCE\nKtDiHdoIPFR3Z3DH2+W52kFzoKdBDjyvQ8P0j4wwWhU4z3qaxkICIoRufHsJfiJl\nlb/fxHy1XakGguvMAeHdnlTnd7a98bTjW7lRXStxmjerZRRVfK2hMKC/iZPs2bea\nU8RPzTcjfps3hVW2Ua8RKb6FP4Qxk2gMR52MCzK7vOr3+18+KiLfmRuPteb55khx\n2MRJ6F1zsmm9+h5YHxGzIC7K6ifw6sto6PC5x8D9o6ocZsgSxku6ayo6VSazs6fJ\nsKA9t/Tcie8WKXCFfOEvZEt6SrI9F2+StjgiLX3C31/JtHrSn8wEjs/NEn6lzoDP\nwwIDAQAB\n-----END PUBLIC KEY-----\n";

/// Seconds since the epoch, for `iat`, `nbf` and `exp`.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
        claims,
    )
}

fn ed(claims: &Value) -> String {
    let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
    sign(Algorithm::EdDSA, &key, claims)
}

fn rs(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    sign(Algorithm::RS256, &key, claims)
}

/// A server taking HS256 tokens and EdDSA ones (`public_key`: a PEM file's content).
async fn server(public_key: &str) -> (TestServer, tempfile::TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let path = keys.path().join("public.pem");
    std::fs::write(&path, public_key).unwrap();
    let server = TestServer::start(|config| {
        config.jwt_hs256_secret = Some(HS_SECRET.into());
        config.jwt_public_key_file = Some(path);
    })
    .await;
    (server, keys)
}

/// The HTTP status and error code of a refused upgrade.
pub async fn refused(server: &TestServer, token: &str) -> (u16, String) {
    let url = format!("ws://{}/v1/ws?token={token}", server.addr);
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("token accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            (
                response.status().as_u16(),
                body["error"]["code"].as_str().unwrap().to_string(),
            )
        }
        Err(other) => panic!("unexpected failure {other}"),
    }
}

#[tokio::test]
async fn hs256_and_eddsa_tokens_connect_and_chat() {
    let (server, _keys) = server(ED_PUBLIC).await;
    let owner = server.login("owner").await;
    let mut owner_ws = server.connect(&owner).await;
    let room = owner_ws
        .ok(
            "room_create",
            json!({"name": "orders", "visibility": "invite"}),
        )
        .await["conversation"]["id"]
        .as_i64()
        .unwrap();

    let token = hs(&json!({"sub": "biz-42", "exp": now() + 600, "name": "Alice", "rooms": [room]}));
    let mut alice = Client::connect(server.addr, &token).await;
    let me = alice.hello["user"].clone();
    assert_eq!(me["display_name"], "Alice");
    let member = owner_ws.event("member").await;
    assert_eq!(member["user_id"], me["id"]);
    assert_eq!(member["action"], "added");
    alice.say(room, "a1", "hello from the business").await;
    let pushed = owner_ws.event("message").await;
    assert_eq!(pushed["content"], "hello from the business");

    // The same sub with an EdDSA token is the same user, renamed.
    let token = ed(&json!({"sub": "biz-42", "exp": now() + 600, "name": "Alice B"}));
    let again = Client::connect(server.addr, &token).await;
    assert_eq!(again.hello["user"]["id"], me["id"]);
    assert_eq!(again.hello["user"]["display_name"], "Alice B");

    // The HTTP routes take it too: /v1/me, and a connect ticket redeemed by the upgrade.
    let me_again: Value = http()
        .get(server.url("/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me_again["user"]["id"], me["id"]);
    let by_ticket = crate::jwt_expiry::by_ticket(&server, &token).await;
    assert_eq!(by_ticket.hello["user"]["id"], me["id"]);

    // Another sub is another user.
    let bob = Client::connect(
        server.addr,
        &hs(&json!({"sub": "biz-43", "exp": now() + 600})),
    )
    .await;
    assert_ne!(bob.hello["user"]["id"], me["id"]);
    assert_eq!(bob.hello["user"]["display_name"], "biz-43");
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_reason() {
    let (server, _keys) = server(ED_PUBLIC).await;
    let exp = now() + 600;
    let cases = [
        ("expired", hs(&json!({"sub": "u", "exp": now() - 120}))),
        (
            "not yet valid",
            hs(&json!({"sub": "u", "exp": exp, "nbf": now() + 300})),
        ),
        (
            "wrong signature",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-another-secret-another"),
                &json!({"sub": "u", "exp": exp}),
            ),
        ),
        ("missing exp", hs(&json!({"sub": "u"}))),
        ("missing sub", hs(&json!({"exp": exp}))),
        (
            "oversize",
            hs(&json!({"sub": "u", "exp": exp, "pad": "x".repeat(9 * 1024)})),
        ),
        ("alg none", {
            use base64::Engine;
            let b64 =
                |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "JWT"})),
                b64(json!({"sub": "u", "exp": exp}))
            )
        }),
        (
            "RS256 without an RSA key",
            rs(&json!({"sub": "u", "exp": exp})),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (what, token) in cases {
        let (status, code) = refused(&server, &token).await;
        assert_eq!(status, 401, "{what}");
        let expected = if what == "expired" {
            "token_expired"
        } else {
            "invalid_token"
        };
        assert_eq!(code, expected, "{what}");
    }
}

#[tokio::test]
async fn rs256_tokens_connect_and_hs_rs_confusion_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let path = keys.path().join("public.pem");
    std::fs::write(&path, RSA_PUBLIC).unwrap();
    // Only the public key: an HS256 token signed with it as the secret must find no key.
    let server = TestServer::start(|config| config.jwt_public_key_file = Some(path)).await;
    let exp = now() + 600;
    let client = Client::connect(server.addr, &rs(&json!({"sub": "r1", "exp": exp}))).await;
    assert_eq!(client.hello["user"]["display_name"], "r1");
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        &json!({"sub": "r1", "exp": exp}),
    );
    assert_eq!(
        refused(&server, &confused).await,
        (401, "invalid_token".into())
    );
    let eddsa = ed(&json!({"sub": "r1", "exp": exp}));
    assert_eq!(
        refused(&server, &eddsa).await,
        (401, "invalid_token".into())
    );
}

#[tokio::test]
async fn a_server_without_jwt_keys_refuses_jwts() {
    let server = TestServer::start(|_| {}).await;
    let token = hs(&json!({"sub": "u", "exp": now() + 600}));
    assert_eq!(
        refused(&server, &token).await,
        (401, "invalid_token".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_users_map_to_one_user_on_postgresql() {
    let Some(db) = crate::services::TestDb::create().await else {
        return;
    };
    let url = db.url.clone();
    let server = TestServer::start(|config| {
        config.store = url.parse().unwrap();
        config.jwt_hs256_secret = Some(HS_SECRET.into());
    })
    .await;
    let first = Client::connect(
        server.addr,
        &hs(&json!({"sub": "pg-1", "exp": now() + 600, "name": "Pat"})),
    )
    .await;
    let second = Client::connect(
        server.addr,
        &hs(&json!({"sub": "pg-1", "exp": now() + 601})),
    )
    .await;
    assert_eq!(first.hello["user"]["id"], second.hello["user"]["id"]);
    assert_eq!(second.hello["user"]["display_name"], "Pat");
}
