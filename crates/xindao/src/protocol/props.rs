//! Property tests of the request decoder ([`decode`] and [`Op::decode`]): whatever a client sends, decoding
//! returns an answer (no panic, bounded depth and time), and the answer is the one docs/protocol.md gives:
//! anything but a JSON object is `bad_request`, a readable id is always echoed in the error reply, and a
//! valid request decodes to exactly what was sent.
//!
//! 256 cases per property (`PROPTEST_CASES` overrides); a failing case is shrunk and saved under
//! `proptest-regressions/`.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::{collection, option, sample};
use serde::de::IgnoredAny;
use serde_json::Value;

use super::{decode, error_reply, RequestId};

mod round_trip;

/// Every operation of docs/protocol.md ("Operations").
const OP_NAMES: &[&str] = &[
    "ping",
    "user_find",
    "direct_open",
    "room_create",
    "room_join",
    "room_add",
    "room_remove",
    "room_leave",
    "room_members",
    "rooms_public",
    "conversations",
    "send",
    "history",
    "sync",
    "read",
    "typing",
    "presence",
    "profile_set",
    "user_search",
    "contacts",
    "recall",
    "message_remove",
    "hide",
    "media_url",
    "client_stats",
    "notify_grant",
    "auth_refresh",
];

/// Field names the decoders look for, so that generated objects hit them often.
const FIELD_NAMES: &[&str] = &[
    "id",
    "op",
    "args",
    "conversation_id",
    "user_id",
    "to_user",
    "cmid",
    "kind",
    "content",
    "limit",
    "cursors",
    "buckets",
    "seq",
    "before_seq",
    "after_seq",
    "name",
    "visibility",
    "display_name",
    "user_ids",
    "prefix",
    "avatar_url",
    "token",
];

/// How long any single decode may take in these tests: far above the milliseconds it needs, far below a hang.
const DECODE_BOUND: Duration = Duration::from_secs(5);

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    config
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => sample::select(FIELD_NAMES).prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// Any JSON value, up to a few levels deep, with the protocol's names among its keys and strings.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        sample::select(OP_NAMES).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            collection::vec((key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// An object's text from its fields in the given order; duplicate keys are kept, as a client may send them.
fn object_text(fields: &[(String, Value)]) -> String {
    let fields: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{}:{value}", Value::from(key.as_str())))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// The id a reply must echo, when the frame's `id` is a readable one: an integer, or 1..=64 characters.
fn readable_id(id: &Value) -> Option<RequestId> {
    match id {
        Value::Number(n) => n.as_i64().map(RequestId::Number),
        Value::String(s) if (1..=64).contains(&s.chars().count()) => {
            Some(RequestId::Text(s.clone()))
        }
        _ => None,
    }
}

type Outcome = Result<(RequestId, &'static str), (Option<RequestId>, &'static str)>;

/// Decodes a frame and checks what holds for every frame: it returns in bounded time, and an error's reply
/// is a JSON object echoing the id the error carries (or null), with one of the decoder's codes.
fn decode_checked(frame: &str) -> Outcome {
    let started = Instant::now();
    let decoded = decode(frame);
    assert!(
        started.elapsed() < DECODE_BOUND,
        "decode took {:?}",
        started.elapsed()
    );
    match decoded {
        Ok(request) => Ok((request.id, request.op.name())),
        Err((id, error)) => {
            let reply: Value = serde_json::from_str(error_reply(id.as_ref(), &error).as_str())
                .expect("an error reply is JSON");
            assert_eq!(reply["ok"], false);
            assert_eq!(reply["id"], serde_json::to_value(&id).unwrap(), "id echoed");
            assert_eq!(reply["error"]["code"], error.code());
            let code = error.code();
            assert!(
                ["bad_request", "unknown_op", "invalid_args"].contains(&code),
                "{code}"
            );
            Err((id, code))
        }
    }
}

/// What holds for any text at all: an answer, and `bad_request` without an id for what is not JSON or not
/// a JSON object.
fn check_any_text(frame: &str) -> Result<(), TestCaseError> {
    let outcome = decode_checked(frame);
    let not_json = serde_json::from_str::<IgnoredAny>(frame).is_err();
    let not_object = serde_json::from_str::<Value>(frame).is_ok_and(|v| !v.is_object());
    if not_json || not_object {
        prop_assert_eq!(outcome, Err((None, "bad_request")));
    }
    Ok(())
}

fn id_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        ".{0,70}".prop_map(Value::from),
        any_json(),
    ]
}

fn op_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => sample::select(OP_NAMES).prop_map(Value::from),
        1 => any::<String>().prop_map(Value::from),
        1 => any_json(),
    ]
}

/// An envelope's fields, each present or not, with unknown fields beside them, in any order.
fn envelope() -> impl Strategy<Value = Vec<(String, Value)>> {
    let extra = key().prop_filter("not an envelope field", |k| {
        !["id", "op", "args"].contains(&k.as_str())
    });
    (
        option::of(id_value()),
        option::of(op_value()),
        option::of(any_json()),
        collection::vec((extra, any_json()), 0..3),
    )
        .prop_flat_map(|(id, op, args, extra)| {
            let named = [("id", id), ("op", op), ("args", args)];
            let mut fields: Vec<(String, Value)> = named
                .into_iter()
                .filter_map(|(name, value)| Some((name.to_string(), value?)))
                .collect();
            fields.extend(extra);
            Just(fields).prop_shuffle()
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_gets_an_answer(frame in any::<String>()) {
        check_any_text(&frame)?;
    }

    #[test]
    fn any_json_like_text_gets_an_answer(frame in r#"[\[\]{}":,0-9a-z_ .eE+\\-]{0,80}"#) {
        check_any_text(&frame)?;
    }

    /// Binary frames are read as UTF-8 by the connection; invalid UTF-8 never reaches the decoder.
    #[test]
    fn any_bytes_get_an_answer(bytes in collection::vec(any::<u8>(), 0..160)) {
        if let Ok(frame) = std::str::from_utf8(&bytes) {
            check_any_text(frame)?;
        }
        check_any_text(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn anything_but_an_object_is_bad_request(value in any_json().prop_filter("not an object", |v| !v.is_object())) {
        prop_assert_eq!(decode_checked(&value.to_string()), Err((None, "bad_request")));
    }

    /// Any object: the id is echoed when readable, and each field gets the code docs/protocol.md gives.
    #[test]
    fn envelopes_are_judged_field_by_field(fields in envelope()) {
        let outcome = decode_checked(&object_text(&fields));
        let field = |name: &str| fields.iter().find(|(key, _)| key == name).map(|(_, value)| value);
        let Some(id) = field("id").and_then(readable_id) else {
            prop_assert_eq!(outcome, Err((None, "bad_request")));
            return Ok(());
        };
        let Some(name) = field("op").and_then(Value::as_str) else {
            prop_assert_eq!(outcome, Err((Some(id), "bad_request")));
            return Ok(());
        };
        if !OP_NAMES.contains(&name) {
            prop_assert_eq!(outcome, Err((Some(id), "unknown_op")));
            return Ok(());
        }
        let args_not_an_object = field("args").is_some_and(|args| !args.is_null() && !args.is_object());
        match outcome {
            Ok((decoded_id, decoded_op)) => {
                prop_assert!(!args_not_an_object, "args must be an object");
                prop_assert_eq!(decoded_id, id);
                prop_assert_eq!(decoded_op, name);
            }
            Err(error) => prop_assert_eq!(error, (Some(id), "invalid_args")),
        }
    }

}

// ---- Deep and huge inputs: serde_json's recursion limit holds, time stays linear ----

fn nested(open: &str, close: &str, depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

#[test]
fn a_megabyte_of_open_brackets_is_bad_request() {
    for frame in [
        "[".repeat(1 << 20),
        "{\"a\":".repeat(1 << 18),
        nested("[", "]", 1 << 19, ""),
    ] {
        assert_eq!(decode_checked(&frame), Err((None, "bad_request")));
    }
}

#[test]
fn deep_nesting_in_the_id_or_arguments_is_refused() {
    let deep = nested("[", "]", 100_000, "1");
    let frame = format!(r#"{{"id":{deep},"op":"ping"}}"#);
    assert_eq!(decode_checked(&frame), Err((None, "bad_request")));
    let frame = format!(r#"{{"id":1,"op":"send","args":{{"cmid":"c","content":{deep}}}}}"#);
    assert_eq!(
        decode_checked(&frame),
        Err((Some(RequestId::Number(1)), "invalid_args"))
    );
    let deep = nested(r#"{"a":"#, "}", 100_000, "1");
    let frame =
        format!(r#"{{"id":2,"op":"send","args":{{"cmid":"c","kind":"custom","content":{deep}}}}}"#);
    assert_eq!(
        decode_checked(&frame),
        Err((Some(RequestId::Number(2)), "invalid_args"))
    );
}

/// Fields the decoder skips are skipped without recursion (serde_json's `IgnoredAny` keeps its own stack):
/// however deep, they cost time linear in their size and no stack.
#[test]
fn deep_nesting_in_ignored_fields_is_skipped() {
    let deep = nested("[", "]", 500_000, "");
    let frame = format!(r#"{{"id":1,"op":"ping","x":{deep}}}"#);
    assert_eq!(decode_checked(&frame), Ok((RequestId::Number(1), "ping")));
    let frame = format!(r#"{{"id":1,"op":"ping","args":{{"x":{deep}}}}}"#);
    assert_eq!(decode_checked(&frame), Ok((RequestId::Number(1), "ping")));
}

#[test]
fn huge_flat_inputs_take_linear_time() {
    let zeros = vec!["0"; 1 << 19].join(",");
    let frame = format!(
        r#"{{"id":1,"op":"send","args":{{"cmid":"c","kind":"custom","content":[{zeros}]}}}}"#
    );
    assert_eq!(decode_checked(&frame), Ok((RequestId::Number(1), "send")));
    let keys: Vec<String> = (0..100_000).map(|i| format!(r#""k{i}":{i}"#)).collect();
    let frame = format!(
        r#"{{"id":1,"op":"sync","args":{{"cursors":{{{}}}}}}}"#,
        keys.join(",")
    );
    assert_eq!(decode_checked(&frame), Ok((RequestId::Number(1), "sync")));
}

#[test]
fn a_huge_operation_name_is_echoed_truncated() {
    let frame = format!(r#"{{"id":"x","op":"{}"}}"#, "o".repeat(1 << 20));
    let Err((id, error)) = decode(&frame) else {
        panic!("decoded");
    };
    assert_eq!(error.code(), "unknown_op");
    let reply = error_reply(id.as_ref(), &error);
    assert!(reply.len() < 256, "{} bytes", reply.len());
}
