//! Property tests of the cluster envelope decoder (`wire.rs`): whatever arrives on the bus channel, decoding
//! returns (no panic, bounded depth and time) and only a JSON object with a node and a known `t` is read;
//! every message a node sends reads back as the same message.
//!
//! 256 cases per property (`PROPTEST_CASES` overrides).

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::{collection, sample};
use serde_json::{json, Value};

use super::wire::{Envelope, Wire};

const TAGS: [&str; 9] = [
    "conversation",
    "user",
    "membership",
    "end_session",
    "presence",
    "snapshot",
    "hello",
    "bye",
    "resync",
];

const FIELDS: [&str; 11] = [
    "node",
    "t",
    "conversation_id",
    "frame",
    "skip_user",
    "user_id",
    "member",
    "token_hash",
    "online",
    "users",
    "x",
];

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    config
}

/// Decodes bytes from the bus as `Core::receive` does, within a bound far above what it needs; a decoded
/// message is also turned into its delivery.
fn receive(payload: &[u8]) -> Option<Envelope> {
    let started = Instant::now();
    let envelope = serde_json::from_slice::<Envelope>(payload).ok();
    assert!(started.elapsed() < Duration::from_secs(5));
    envelope
}

/// Any JSON value, a few levels deep, with the envelope's names and tags among its keys and strings.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u8>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        sample::select(TAGS.as_slice()).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 40, 34, |inner| {
        let key = prop_oneof![
            3 => sample::select(FIELDS.as_slice()).prop_map(String::from),
            1 => any::<String>(),
        ];
        prop_oneof![
            collection::vec(inner.clone(), 0..34).prop_map(Value::Array),
            collection::vec((key, inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Every message a node sends, in its wire form (without the node).
fn wire() -> impl Strategy<Value = Value> {
    prop_oneof![
        (any::<i64>(), any::<String>(), any::<i64>()).prop_map(|(c, frame, skip)| {
            json!({ "t": "conversation", "conversation_id": c, "frame": frame, "skip_user": skip })
        }),
        (any::<i64>(), any::<String>())
            .prop_map(|(u, frame)| json!({ "t": "user", "user_id": u, "frame": frame })),
        (any::<i64>(), any::<i64>(), any::<bool>()).prop_map(|(c, u, member)| {
            json!({ "t": "membership", "conversation_id": c, "user_id": u, "member": member })
        }),
        any::<[u8; 32]>().prop_map(|hash| json!({ "t": "end_session", "token_hash": hash })),
        (any::<i64>(), any::<bool>())
            .prop_map(|(u, online)| json!({ "t": "presence", "user_id": u, "online": online })),
        collection::vec(any::<i64>(), 0..20)
            .prop_map(|users| json!({ "t": "snapshot", "users": users })),
        sample::select(vec!["hello", "bye", "resync"]).prop_map(|t| json!({ "t": t })),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_are_read_or_refused(payload in collection::vec(any::<u8>(), 0..200)) {
        if let Some(envelope) = receive(&payload) {
            let _ = envelope.body.into_delivery();
        }
    }

    #[test]
    fn any_json_is_read_or_refused(value in any_json()) {
        let envelope = receive(value.to_string().as_bytes());
        if !value.is_object() || !value.get("node").is_some_and(Value::is_string) {
            prop_assert!(envelope.is_none(), "read {value}");
        }
        if let Some(envelope) = envelope {
            prop_assert!(TAGS.contains(&value["t"].as_str().unwrap_or_default()));
            // What was read is what a node would send: it reads back the same.
            let body = serde_json::to_vec(&envelope.body).unwrap();
            let again: Wire = serde_json::from_slice(&body).unwrap();
            prop_assert_eq!(serde_json::to_value(&again).unwrap(), serde_json::to_value(&envelope.body).unwrap());
            let _ = envelope.body.into_delivery();
        }
    }

    #[test]
    fn every_message_reads_back_the_same(node in any::<String>(), body in wire()) {
        let mut sent = body.clone();
        sent["node"] = json!(node);
        // The replay-bounding fields every envelope carries (checked by the gate, not by decoding).
        sent["boot"] = json!(1);
        sent["seq"] = json!(1);
        sent["ts"] = json!(1);
        let envelope = receive(sent.to_string().as_bytes()).expect("a node's message is read");
        prop_assert_eq!(&envelope.node, &node);
        prop_assert_eq!(serde_json::to_value(&envelope.body).unwrap(), body);
    }
}

#[test]
fn deep_and_huge_payloads_are_refused_in_bounded_time() {
    let deep = format!("{}{}", "[".repeat(1 << 19), "]".repeat(1 << 19));
    for payload in [
        "[".repeat(1 << 20),
        "{\"node\":".repeat(1 << 18),
        format!(r#"{{"node":"n","t":"snapshot","users":{deep}}}"#),
        // Unknown fields are buffered for `#[serde(flatten)]`: depth-limited like the rest.
        format!(r#"{{"node":"n","t":"hello","x":{deep}}}"#),
    ] {
        assert!(receive(payload.as_bytes()).is_none());
    }
}
