//! Profiles, people search and contacts through the real WebSocket: `profile_set` shown to contacts by a
//! `profile` push and wherever a user appears (hello, user_find, room_members, conversations' peer), bad names
//! and avatar URLs refused, `user_search` bounded (minimum length, 20 results, the lookup rate limit) and
//! `contacts` paged.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const AVATAR: &str = "https://cdn.example.com/u/alice.png";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_change_reaches_contacts_and_shows_everywhere() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let carol = server.login("carol").await;
    let mut a1 = server.connect(&alice).await;
    let mut a2 = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    let mut c = server.connect(&carol).await;
    assert!(
        a1.hello["user"].get("avatar_url").is_none(),
        "absent when unset"
    );
    let direct = a1.say_to(bob.user_id, "d1", "hi").await;
    let room = a1.ok("room_create", json!({ "name": "club" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();

    let set = a1
        .ok(
            "profile_set",
            json!({ "display_name": "  Alice Liddell ", "avatar_url": AVATAR }),
        )
        .await;
    let expected =
        json!({ "id": alice.user_id, "display_name": "Alice Liddell", "avatar_url": AVATAR });
    assert_eq!(set["user"], expected);
    assert_eq!(a2.event("profile").await["user"], expected, "own devices");
    assert_eq!(b.event("profile").await["user"], expected, "a contact");
    c.no_event("profile", Duration::from_millis(300)).await;

    // Wherever the user appears.
    let found = b
        .ok("user_find", json!({ "display_name": "Alice Liddell" }))
        .await;
    assert_eq!(found["users"], json!([expected]));
    let conversation = b
        .ok("direct_open", json!({ "user_id": alice.user_id }))
        .await;
    assert_eq!(conversation["conversation"]["peer"], expected);
    assert_eq!(
        conversation["conversation"]["id"],
        direct["conversation_id"]
    );
    c.ok("room_join", json!({ "conversation_id": room })).await;
    let members = c
        .ok("room_members", json!({ "conversation_id": room }))
        .await;
    assert_eq!(members["members"][0]["user"], expected);
    let again = server.connect(&alice).await;
    assert_eq!(again.hello["user"], expected, "hello");
    let me = http()
        .get(server.url("/v1/me"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(me["user"], expected);

    // Carol shares the room now: she hears of the next change. An empty avatar_url clears it.
    let cleared = a1.ok("profile_set", json!({ "avatar_url": "" })).await;
    assert!(cleared["user"].get("avatar_url").is_none());
    assert_eq!(cleared["user"]["display_name"], "Alice Liddell");
    assert_eq!(c.event("profile").await["user"], cleared["user"]);
    let media = a1
        .ok("profile_set", json!({ "avatar_url": "/v1/media/m-42" }))
        .await;
    assert_eq!(media["user"]["avatar_url"], "/v1/media/m-42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_avatars_are_refused_and_changes_are_rate_limited() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    let long_url = format!("https://example.com/{}", "a".repeat(500));
    for args in [
        json!({}),
        json!({ "display_name": "   " }),
        json!({ "display_name": "x".repeat(65) }),
        json!({ "display_name": "evil\u{202E}gnp.exe" }),
        json!({ "display_name": "two\nlines" }),
        json!({ "avatar_url": "http://example.com/a.png" }),
        json!({ "avatar_url": "javascript:alert(1)" }),
        json!({ "avatar_url": "data:image/png;base64,AAAA" }),
        json!({ "avatar_url": "https://u:p@example.com/a.png" }),
        json!({ "avatar_url": "/v1/media/../../etc/passwd" }),
        json!({ "avatar_url": "https://example.com/a\"onerror=\"x" }),
        json!({ "avatar_url": long_url }),
        json!({ "avatar_url": 7 }),
        json!({ "nickname": "x" }),
    ] {
        assert_eq!(
            a.err("profile_set", args.clone()).await,
            "invalid_args",
            "{args}"
        );
    }
    assert_eq!(a.hello["user"]["display_name"], "alice", "nothing changed");
    // 10 changes a minute per user, then `rate_limited`.
    for i in 0..10 {
        a.ok(
            "profile_set",
            json!({ "display_name": format!("alice {i}") }),
        )
        .await;
    }
    let reply = a
        .call("profile_set", json!({ "display_name": "one too many" }))
        .await;
    assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
    assert!(reply["error"]["retry_after_ms"].as_u64().unwrap() > 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_search_finds_by_prefix_within_its_bounds() {
    let server = TestServer::start(|c| c.lookups_per_min = 8).await;
    for i in 0..25 {
        server.login(&format!("Zed_{i:02}")).await;
    }
    server.login("张三丰").await;
    server.login("zebra").await;
    let seeker = server.login("seeker").await;
    let mut s = server.connect(&seeker).await;
    let names = |result: &Value| -> Vec<String> {
        result["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["display_name"].as_str().unwrap().to_string())
            .collect()
    };

    let all = s.ok("user_search", json!({ "prefix": "zed_" })).await;
    let expected: Vec<String> = (0..20).map(|i| format!("Zed_{i:02}")).collect();
    assert_eq!(names(&all), expected, "20 at most, by name, any case");
    let tens = s.ok("user_search", json!({ "prefix": " ZED_1" })).await;
    assert_eq!(names(&tens).len(), 10);
    let few = s
        .ok("user_search", json!({ "prefix": "ze", "limit": 3 }))
        .await;
    assert_eq!(names(&few).len(), 3);
    let big = s
        .ok("user_search", json!({ "prefix": "ze", "limit": 500 }))
        .await;
    assert_eq!(names(&big).len(), 20, "the limit is capped");
    let han = s.ok("user_search", json!({ "prefix": "张三" })).await;
    assert_eq!(names(&han), vec!["张三丰"]);
    let none = s.ok("user_search", json!({ "prefix": "qq" })).await;
    assert_eq!(names(&none), Vec::<String>::new());
    // Too short, before counting: one character, or one after trimming; bad characters.
    for prefix in ["z", " z  ", "", "a\u{0007}"] {
        assert_eq!(
            s.err("user_search", json!({ "prefix": prefix })).await,
            "invalid_args",
            "{prefix:?}"
        );
    }
    // Six lookups so far; the eighth is the last of the minute, the lookups of user_find count too.
    s.ok("user_find", json!({ "display_name": "zebra" })).await;
    s.ok("user_search", json!({ "prefix": "zeb" })).await;
    let reply = s.call("user_search", json!({ "prefix": "zeb" })).await;
    assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_the_people_one_shares_a_conversation_with_paged() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let stranger = server.login("stranger").await;
    let mut a = server.connect(&alice).await;
    let mut x = server.connect(&stranger).await;
    let room = a.ok("room_create", json!({ "name": "r1" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    let mut expected = HashSet::new();
    for i in 0..6 {
        let member = server.login(&format!("member{i}")).await;
        let mut m = server.connect(&member).await;
        m.ok("room_join", json!({ "conversation_id": room })).await;
        expected.insert(member.user_id);
    }
    let peer = server.login("peer").await;
    a.say_to(peer.user_id, "p1", "hello").await;
    expected.insert(peer.user_id);
    // A second shared conversation does not list anyone twice.
    let room2 = a.ok("room_create", json!({ "name": "r2" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    a.ok(
        "room_add",
        json!({ "conversation_id": room2, "user_id": peer.user_id }),
    )
    .await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = json!({ "limit": 3 });
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let page = a.ok("contacts", args).await;
        pages += 1;
        let users = page["users"].as_array().unwrap();
        assert!(users.len() <= 3);
        seen.extend(users.iter().map(|u| u["id"].as_i64().unwrap()));
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        cursor = Some(page["next_cursor"].as_str().unwrap().to_string());
    }
    assert_eq!(pages, 3, "7 contacts in pages of 3");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ascending by id");
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), expected);
    assert_eq!(seen.len(), expected.len(), "nobody twice, not oneself");
    let theirs = x.ok("contacts", json!({})).await;
    assert_eq!(theirs["users"], json!([]), "a stranger shares nothing");
    assert_eq!(theirs["has_more"], false);
    assert_eq!(
        a.err("contacts", json!({ "cursor": "not-a-cursor" })).await,
        "invalid_args"
    );
    assert_eq!(
        a.err("contacts", json!({ "limit": 0 })).await,
        "invalid_args"
    );
}
