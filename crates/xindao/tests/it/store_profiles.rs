//! Profiles, people search, contacts, recall, remove and hide against both stores through the `Store` trait
//! (SQLite, and PostgreSQL with two nodes on one database). Named `store_suite_*` so that
//! `--test it store_suite` runs them with the rest of the store suite.

use crate::services::TestDb;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use xindao::model::*;
use xindao::store::postgres::PostgresStore;
use xindao::store::sqlite::{SqliteOptions, SqliteStore};
use xindao::store::{ExternalId, GroupCommit, LoginIdentity, StateChange, Store};

pub fn commit() -> GroupCommit {
    GroupCommit {
        batch_max: 64,
        linger: Duration::from_micros(500),
    }
}

pub async fn user(store: &dyn Store, name: &str) -> User {
    store
        .upsert_user(LoginIdentity {
            external_id: ExternalId::Dev {
                display_name: name.into(),
            },
            unionid: None,
        })
        .await
        .unwrap()
}

async fn send(store: &dyn Store, conversation: i64, sender: i64, cmid: &str) -> Message {
    let message = NewMessage {
        conversation_id: conversation,
        sender_id: sender,
        cmid: cmid.into(),
        kind: MessageKind::Text,
        content: json!(format!("text of {cmid}")),
    };
    store.append(message, 0).await.unwrap().message
}

fn code<T: std::fmt::Debug>(result: xindao::Result<T>) -> &'static str {
    result.expect_err("refused").code()
}

fn names(users: &[User]) -> Vec<&str> {
    users.iter().map(|u| u.display_name.as_str()).collect()
}

async fn profiles_suite(s: &dyn Store) {
    let alice = user(s, "alice").await;
    let bob = user(s, "bob").await;
    let (direct, _) = s.open_direct(alice.id, bob.id).await.unwrap();
    let avatar = "https://cdn.example.com/a.png".to_string();
    let changed = s
        .set_profile(
            alice.id,
            ProfileChange {
                display_name: Some("Alice L".into()),
                avatar_url: Some(Some(avatar.clone())),
            },
        )
        .await
        .unwrap();
    let expected = User {
        id: alice.id,
        display_name: "Alice L".into(),
        avatar_url: Some(avatar.clone()),
    };
    assert_eq!(changed, expected);
    assert_eq!(s.user(alice.id).await.unwrap(), Some(expected.clone()));
    assert_eq!(
        s.conversation_for(direct, bob.id).await.unwrap().peer,
        Some(expected.clone())
    );
    let room = s
        .create_room(alice.id, "room", Visibility::Public)
        .await
        .unwrap();
    assert_eq!(s.members(room, None, 10).await.unwrap()[0].user, expected);
    assert_eq!(
        s.connection_state(alice.id).await.unwrap().unwrap().0,
        expected
    );
    assert_eq!(
        s.users_named("Alice L", 5).await.unwrap(),
        vec![expected.clone()]
    );
    // Only the avatar, then clearing it; the name stays. The dev login still finds the same user.
    let cleared = s
        .set_profile(
            alice.id,
            ProfileChange {
                display_name: None,
                avatar_url: Some(None),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (cleared.display_name.as_str(), cleared.avatar_url),
        ("Alice L", None)
    );
    assert_eq!(user(s, "alice").await.id, alice.id);
    assert_eq!(
        code(s.set_profile(999_999, ProfileChange::default()).await),
        "not_found"
    );

    // Prefix search: case-insensitive for ASCII, by name then id, bounded, no wildcards.
    for name in ["Ann", "anna", "ANNE", "an%", "Bob Ann", "张三丰", "张四"] {
        user(s, name).await;
    }
    let found = s.users_by_prefix("AN", 20).await.unwrap();
    assert_eq!(names(&found), vec!["an%", "Ann", "anna", "ANNE"]);
    assert_eq!(
        names(&s.users_by_prefix("ann", 2).await.unwrap()),
        vec!["Ann", "anna"]
    );
    assert!(s.users_by_prefix("an_", 20).await.unwrap().is_empty());
    assert_eq!(
        names(&s.users_by_prefix("张三", 20).await.unwrap()),
        vec!["张三丰"]
    );
    assert!(s.users_by_prefix("zz", 20).await.unwrap().is_empty());

    // Contacts: everyone sharing a conversation, once, ascending, paged; not oneself.
    let mut everyone = vec![bob.id];
    for i in 0..5 {
        let member = user(s, &format!("member{i}")).await;
        s.join_room(room, member.id, None).await.unwrap();
        everyone.push(member.id);
    }
    s.join_room(room, bob.id, None).await.unwrap();
    everyone.sort();
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = s.contacts(alice.id, after, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page.last().unwrap().id;
        paged.extend(page.iter().map(|u| u.id));
    }
    assert_eq!(paged, everyone);
    let bobs = s.contacts(bob.id, 0, 100).await.unwrap();
    assert!(bobs
        .iter()
        .any(|u| u.id == alice.id && u.display_name == "Alice L"));
    assert!(s.contacts(999_999, 0, 10).await.unwrap().is_empty());
}

async fn recall_suite(s: &dyn Store, other: &dyn Store) {
    let alice = user(s, "ralice").await;
    let bob = user(s, "rbob").await;
    let carol = user(s, "rcarol").await;
    let (direct, _) = s.open_direct(alice.id, bob.id).await.unwrap();
    let m1 = send(s, direct, alice.id, "r1").await;
    let m2 = send(s, direct, alice.id, "r2").await;
    let window_ms = 120_000;
    let recall = |by, now| StateChange::Recall { by, now, window_ms };

    assert_eq!(
        code(s.set_message_state(direct, 1, recall(bob.id, m1.ts)).await),
        "forbidden"
    );
    assert_eq!(
        code(
            s.set_message_state(direct, 1, recall(carol.id, m1.ts))
                .await
        ),
        "forbidden"
    );
    assert_eq!(
        code(
            s.set_message_state(direct, 7, recall(alice.id, m1.ts))
                .await
        ),
        "not_found"
    );
    let late = s
        .set_message_state(direct, 2, recall(alice.id, m2.ts + window_ms + 1))
        .await;
    assert_eq!(code(late), "recall_window_passed");
    let recalled = s
        .set_message_state(direct, 1, recall(alice.id, m1.ts + window_ms))
        .await
        .unwrap()
        .expect("changed");
    assert_eq!(recalled, m1.clone().tombstone(MessageState::Recalled));
    assert_eq!(
        s.set_message_state(direct, 1, recall(alice.id, m1.ts))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        code(
            s.set_message_state(direct, 2, StateChange::Remove { by: alice.id })
                .await
        ),
        "forbidden",
        "a direct conversation has no owner"
    );
    let page = s.history(direct, Range::Latest, 10).await.unwrap();
    assert_eq!(page.messages, vec![recalled.clone(), m2.clone()]);
    assert!(page.messages[0].content.is_null());
    let removed = s
        .set_message_state(direct, 2, StateChange::RemoveByServer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(removed.state, Some(MessageState::Removed));
    let seen = s.conversation_for(direct, bob.id).await.unwrap();
    assert_eq!(seen.last_message, Some(removed.clone()));

    // Rooms: the owner removes; a member, even the sender, does not.
    let room = s
        .create_room(carol.id, "rr", Visibility::Public)
        .await
        .unwrap();
    s.join_room(room, bob.id, None).await.unwrap();
    let spam = send(s, room, bob.id, "spam").await;
    assert_eq!(
        code(
            s.set_message_state(room, 1, StateChange::Remove { by: bob.id })
                .await
        ),
        "forbidden"
    );
    assert_eq!(
        code(
            s.set_message_state(room, 1, StateChange::Remove { by: alice.id })
                .await
        ),
        "forbidden",
        "not a member"
    );
    // A recall and a removal racing (on PostgreSQL from two nodes): exactly one changes the message.
    let (a, b) = tokio::join!(
        s.set_message_state(room, 1, recall(bob.id, spam.ts)),
        other.set_message_state(room, 1, StateChange::Remove { by: carol.id }),
    );
    let changed: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    // The sender who left can no longer recall.
    let kept = send(s, room, bob.id, "kept").await;
    s.leave_room(room, bob.id, None).await.unwrap();
    assert_eq!(
        code(s.set_message_state(room, 2, recall(bob.id, kept.ts)).await),
        "forbidden"
    );

    // Hide: for one user only, across reads.
    let m3 = send(s, direct, bob.id, "r3").await;
    assert!(s.hide_message(alice.id, direct, 3).await.unwrap());
    assert!(!s.hide_message(alice.id, direct, 3).await.unwrap(), "once");
    assert!(s.hide_message(alice.id, direct, 1).await.unwrap());
    assert_eq!(code(s.hide_message(alice.id, direct, 4).await), "not_found");
    assert_eq!(code(s.hide_message(alice.id, direct, 0).await), "not_found");
    assert_eq!(code(s.hide_message(carol.id, direct, 1).await), "forbidden");
    assert_eq!(
        s.hidden_seqs(alice.id, direct, 1, 3).await.unwrap(),
        vec![1, 3]
    );
    assert_eq!(
        s.hidden_seqs(alice.id, direct, 2, 2).await.unwrap(),
        Vec::<i64>::new()
    );
    let hers = s
        .history_for(alice.id, direct, Range::After(0), 10)
        .await
        .unwrap();
    let states: Vec<_> = hers.messages.iter().map(|m| m.state).collect();
    assert_eq!(
        states,
        vec![
            Some(MessageState::Hidden),
            Some(MessageState::Removed),
            Some(MessageState::Hidden)
        ]
    );
    assert!(hers.messages[2].content.is_null());
    let his = s
        .history_for(bob.id, direct, Range::After(0), 10)
        .await
        .unwrap();
    assert_eq!(his.messages[2], m3);
    let hers = s.conversation_for(direct, alice.id).await.unwrap();
    assert_eq!(hers.last_message.unwrap().state, Some(MessageState::Hidden));
    let listed = s.conversations_page(alice.id, None, 10).await.unwrap();
    let listed = listed.iter().find(|c| c.id == direct).unwrap();
    assert_eq!(
        listed.last_message.as_ref().unwrap().state,
        Some(MessageState::Hidden)
    );
    let his = s.conversation_for(direct, bob.id).await.unwrap();
    assert_eq!(his.last_message, Some(m3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_profiles_and_recall_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, _committed) = mpsc::channel(100_000);
    let options = SqliteOptions {
        synchronous: Default::default(),
        commit: commit(),
        max_db_mb: None,
        cache_mb: 16,
    };
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), options, sink).await.unwrap());
    profiles_suite(store.as_ref()).await;
    recall_suite(store.as_ref(), store.as_ref()).await;
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_profiles_and_recall_on_postgres() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (sink_a, _a) = mpsc::channel(100_000);
    let (sink_b, _b) = mpsc::channel(100_000);
    let a = PostgresStore::open(&db.url, 8, commit(), sink_a)
        .await
        .unwrap();
    let b = PostgresStore::open(&db.url, 8, commit(), sink_b)
        .await
        .unwrap();
    profiles_suite(&a).await;
    recall_suite(&a, &b).await;
    a.shutdown().await;
    b.shutdown().await;
}
