//! The Wafer 1 auth-service replacement (`POST /wafer-auth`) through its real interface: the envelope and
//! return codes `qcloud-weapp-server-sdk` reads, for good and bad logins and session checks.

use crate::common;
use crate::wafer::{code, encrypt, profile, session_key, wafer_server};

use common::*;
use serde_json::{json, Value};

async fn call(server: &TestServer, name: &str, para: Value) -> Value {
    let body = json!({ "version": 1, "componentName": "MA", "interface": { "interfaceName": name, "para": para } });
    let response = http()
        .post(server.url("/wafer-auth"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the SDK only reads 200 answers");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_session_checks_in_the_sdks_envelope() {
    let mut server = wafer_server(|c| c.wafer_auth = true).await;
    let key = session_key("oAuth");
    let (data, iv) = encrypt(&key, &profile("oAuth", "Auth"));
    let login = call(
        &server,
        "qcloud.cam.id_skey",
        json!({ "code": code("oAuth"), "encrypt_data": data, "iv": iv }),
    )
    .await;
    assert_eq!(
        (&login["returnCode"], &login["returnMessage"]),
        (&json!(0), &json!("OK")),
        "{login}"
    );
    let (id, skey) = (
        login["returnData"]["id"].clone(),
        login["returnData"]["skey"].clone(),
    );
    assert_eq!(login["returnData"]["user_info"]["nickName"], "Auth");
    let check = call(
        &server,
        "qcloud.cam.auth",
        json!({ "id": id, "skey": skey }),
    )
    .await;
    assert_eq!(check["returnCode"], 0, "{check}");
    assert_eq!(check["returnData"]["user_info"]["openId"], "oAuth");
    // Invalid sessions: 60011, which the SDK turns into ERR_INVALID_SESSION (a client re-login).
    for para in [
        json!({ "id": id, "skey": "forged" }),
        json!({ "id": "999999", "skey": skey }),
        json!({}),
        json!({ "id": id, "skey": "s".repeat(300) }),
    ] {
        let check = call(&server, "qcloud.cam.auth", para.clone()).await;
        assert_eq!(check["returnCode"], 60011, "{para}: {check}");
    }
    // Bad logins: a non-zero code that is not 60011/60012 (a login failure, no re-login loop).
    let (other_app, other_iv) = encrypt(&key, &json!({ "watermark": { "appid": "wxOTHER" } }));
    for (para, code_expected) in [
        (json!({ "code": code("oAuth") }), 60001),
        (
            json!({ "code": "bad", "encrypt_data": data, "iv": iv }),
            60002,
        ),
        (
            json!({ "code": code("oAuth"), "encrypt_data": "%%%", "iv": iv }),
            60002,
        ),
        (
            json!({ "code": code("oAuth"), "encrypt_data": other_app, "iv": other_iv }),
            60002,
        ),
    ] {
        let login = call(&server, "qcloud.cam.id_skey", para.clone()).await;
        assert_eq!(login["returnCode"], code_expected, "{para}: {login}");
    }
    let unknown = call(&server, "qcloud.cam.other", json!({})).await;
    assert_eq!(unknown["returnCode"], 60001);
    let response = http()
        .post(server.url("/wafer-auth"))
        .body("not json")
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["returnCode"], 60001);
    server.stop().await;
}
