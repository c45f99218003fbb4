//! A valid request survives encode -> decode: for every operation, arguments are generated together with
//! what they must decode to (defaults filled in), sent in a frame (fields in any order, empty arguments as
//! `{}`, `null` or absent) and compared with what the decoded [`Op`] holds.

use proptest::prelude::*;
use proptest::{collection, option, sample};
use serde_json::{json, Map, Value};

use super::{any_json, config, key, object_text};
use crate::protocol::op::SentKind;
use crate::protocol::{decode, Op, RequestId};

/// An object from named values, leaving out those that are `None`.
fn object(fields: impl IntoIterator<Item = (&'static str, Option<Value>)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_string(), value?)))
            .collect::<Map<String, Value>>(),
    )
}

fn seq() -> impl Strategy<Value = i64> {
    0..=i64::MAX
}

fn limit() -> impl Strategy<Value = Option<Value>> {
    option::of((1..=u64::MAX).prop_map(Value::from))
}

/// (operation, arguments sent, arguments as decoded, with defaults filled in).
type Valid = (&'static str, Value, Value);

fn same(name: &'static str, args: Value) -> Valid {
    (name, args.clone(), args)
}

fn valid_op() -> impl Strategy<Value = Valid> {
    let conversation = |name: &'static str| {
        any::<i64>()
            .prop_map(move |id| same(name, json!({ "conversation_id": id })))
            .boxed()
    };
    let member = |name: &'static str| {
        (any::<i64>(), any::<i64>())
            .prop_map(move |(c, u)| same(name, json!({ "conversation_id": c, "user_id": u })))
            .boxed()
    };
    let limited = |name: &'static str| {
        limit()
            .prop_map(move |limit| same(name, object([("limit", limit)])))
            .boxed()
    };
    prop_oneof![
        // `ping` ignores whatever object it is given.
        collection::vec((key(), any_json()), 0..3).prop_map(|fields| {
            (
                "ping",
                Value::Object(fields.into_iter().collect()),
                json!({}),
            )
        }),
        any::<String>().prop_map(|name| same("user_find", json!({ "display_name": name }))),
        any::<i64>().prop_map(|id| same("direct_open", json!({ "user_id": id }))),
        (
            any::<String>(),
            option::of(sample::select(vec!["public", "invite"]))
        )
            .prop_map(|(name, visibility)| {
                let sent = object([
                    ("name", Some(json!(name))),
                    ("visibility", visibility.map(Value::from)),
                ]);
                let decoded = json!({ "name": name, "visibility": visibility.unwrap_or("public") });
                ("room_create", sent, decoded)
            }),
        conversation("room_join"),
        member("room_add"),
        member("room_remove"),
        conversation("room_leave"),
        (any::<i64>(), limit(), option::of(any::<String>())).prop_map(|(id, limit, cursor)| {
            let args = object([
                ("conversation_id", Some(json!(id))),
                ("limit", limit),
                ("cursor", cursor.map(Value::from)),
            ]);
            same("room_members", args)
        }),
        limited("rooms_public"),
        (limit(), option::of(any::<String>())).prop_map(|(limit, cursor)| {
            same(
                "conversations",
                object([("limit", limit), ("cursor", cursor.map(Value::from))]),
            )
        }),
        send(),
        (any::<i64>(), option::of(seq()), option::of(seq()), limit()).prop_map(
            |(id, before, after, limit)| {
                let args = object([
                    ("conversation_id", Some(json!(id))),
                    ("before_seq", before.map(Value::from)),
                    ("after_seq", after.map(Value::from)),
                    ("limit", limit),
                ]);
                same("history", args)
            }
        ),
        (
            option::of(collection::hash_map(any::<String>(), seq(), 0..5)),
            limit(),
            option::of(any::<i64>()),
            option::of(any::<i64>()),
        )
            .prop_map(|(cursors, limit, after_id, until_id)| {
                let sent = object([
                    ("cursors", cursors.as_ref().map(|c| json!(c))),
                    ("limit", limit.clone()),
                    ("after_id", after_id.map(Value::from)),
                    ("until_id", until_id.map(Value::from)),
                ]);
                let decoded = object([
                    ("cursors", Some(json!(cursors.unwrap_or_default()))),
                    ("limit", limit),
                    ("after_id", after_id.map(Value::from)),
                    ("until_id", until_id.map(Value::from)),
                ]);
                ("sync", sent, decoded)
            }),
        (any::<i64>(), seq())
            .prop_map(|(id, seq)| same("read", json!({ "conversation_id": id, "seq": seq }))),
        conversation("typing"),
        collection::vec(any::<i64>(), 0..10)
            .prop_map(|ids| same("presence", json!({ "user_ids": ids }))),
        (option::of(any::<String>()), option::of(any::<String>())).prop_map(|(name, url)| {
            let args = object([
                ("display_name", name.map(Value::from)),
                ("avatar_url", url.map(Value::from)),
            ]);
            same("profile_set", args)
        }),
        (any::<String>(), limit()).prop_map(|(prefix, limit)| {
            same(
                "user_search",
                object([("prefix", Some(json!(prefix))), ("limit", limit)]),
            )
        }),
        (limit(), option::of(any::<String>())).prop_map(|(limit, cursor)| {
            same(
                "contacts",
                object([("limit", limit), ("cursor", cursor.map(Value::from))]),
            )
        }),
        message_ref("recall"),
        message_ref("message_remove"),
        message_ref("hide"),
        (
            sample::select(vec!["miniprogram", "browser", "node"]),
            collection::vec(any::<u32>(), 0..12)
        )
            .prop_map(|(kind, buckets)| same(
                "client_stats",
                json!({ "kind": kind, "buckets": buckets })
            )),
        any::<String>().prop_map(|token| same("auth_refresh", json!({ "token": token }))),
    ]
}

fn message_ref(name: &'static str) -> BoxedStrategy<Valid> {
    (any::<i64>(), seq())
        .prop_map(move |(id, seq)| same(name, json!({ "conversation_id": id, "seq": seq })))
        .boxed()
}

fn send() -> impl Strategy<Value = Valid> {
    let kind = prop_oneof![
        sample::select(vec!["text", "custom"]).prop_map(String::from),
        "[a-z]{1,10}",
        ".{0,80}",
    ];
    (
        option::of(any::<i64>()),
        option::of(any::<i64>()),
        any::<String>(),
        option::of(kind),
        option::of(any_json()),
    )
        .prop_map(|(conversation_id, to_user, cmid, kind, content)| {
            let sent = object([
                ("conversation_id", conversation_id.map(Value::from)),
                ("to_user", to_user.map(Value::from)),
                ("cmid", Some(json!(cmid))),
                ("kind", kind.clone().map(Value::from)),
                ("content", content.clone()),
            ]);
            // A kind the server does not know is kept (its first 64 characters) for `send` to refuse.
            let kind: String = kind
                .unwrap_or_else(|| "text".into())
                .chars()
                .take(64)
                .collect();
            let decoded = object([
                ("conversation_id", conversation_id.map(Value::from)),
                ("to_user", to_user.map(Value::from)),
                ("cmid", Some(json!(cmid))),
                ("kind", Some(json!(kind))),
                ("content", Some(content.unwrap_or(Value::Null))),
            ]);
            ("send", sent, decoded)
        })
}

/// The arguments a decoded operation holds, in the form they were sent (for comparison).
fn args_of(op: &Op) -> Value {
    let limit = |limit: Option<std::num::NonZeroUsize>| limit.map(|l| json!(l.get()));
    match op {
        Op::Ping(_) => json!({}),
        Op::UserFind(a) => json!({ "display_name": a.display_name }),
        Op::DirectOpen(a) => json!({ "user_id": a.user_id }),
        Op::RoomCreate(a) => json!({ "name": a.name, "visibility": a.visibility }),
        Op::RoomJoin(a) | Op::RoomLeave(a) | Op::Typing(a) => {
            json!({ "conversation_id": a.conversation_id })
        }
        Op::RoomMembers(a) => object([
            ("conversation_id", Some(json!(a.conversation_id))),
            ("limit", limit(a.limit)),
            ("cursor", a.cursor.clone().map(Value::from)),
        ]),
        Op::RoomAdd(a) | Op::RoomRemove(a) => {
            json!({ "conversation_id": a.conversation_id, "user_id": a.user_id })
        }
        Op::RoomsPublic(a) => object([("limit", limit(a.limit))]),
        Op::Conversations(a) => object([
            ("limit", limit(a.limit)),
            ("cursor", a.cursor.clone().map(Value::from)),
        ]),
        Op::Send(a) => object([
            ("conversation_id", a.conversation_id.map(Value::from)),
            ("to_user", a.to_user.map(Value::from)),
            ("cmid", Some(json!(a.cmid))),
            (
                "kind",
                Some(json!(match &a.kind {
                    SentKind::Known(kind) => kind.as_str().to_string(),
                    SentKind::Unknown(name) => name.clone(),
                })),
            ),
            ("content", Some(a.content.clone())),
        ]),
        Op::History(a) => object([
            ("conversation_id", Some(json!(a.conversation_id))),
            ("before_seq", a.before_seq.map(|s| json!(s.0))),
            ("after_seq", a.after_seq.map(|s| json!(s.0))),
            ("limit", limit(a.limit)),
        ]),
        Op::Sync(a) => {
            let cursors: Map<String, Value> = a
                .cursors
                .iter()
                .map(|(k, s)| (k.clone(), json!(s.0)))
                .collect();
            object([
                ("cursors", Some(Value::Object(cursors))),
                ("limit", limit(a.limit)),
                ("after_id", a.after_id.map(Value::from)),
                ("until_id", a.until_id.map(Value::from)),
            ])
        }
        Op::Read(a) => json!({ "conversation_id": a.conversation_id, "seq": a.seq.0 }),
        Op::Presence(a) => json!({ "user_ids": a.user_ids }),
        Op::ProfileSet(a) => object([
            ("display_name", a.display_name.clone().map(Value::from)),
            ("avatar_url", a.avatar_url.clone().map(Value::from)),
        ]),
        Op::UserSearch(a) => object([("prefix", Some(json!(a.prefix))), ("limit", limit(a.limit))]),
        Op::Contacts(a) => object([
            ("limit", limit(a.limit)),
            ("cursor", a.cursor.clone().map(Value::from)),
        ]),
        Op::Recall(a) | Op::MessageRemove(a) | Op::Hide(a) => {
            json!({ "conversation_id": a.conversation_id, "seq": a.seq.0 })
        }
        Op::ClientStats(a) => json!({ "kind": a.kind, "buckets": a.buckets }),
        Op::MediaUrl(a) => object([
            ("media_id", a.media_id.clone().map(Value::from)),
            ("media_ids", a.media_ids.clone().map(Value::from)),
        ]),
        Op::NotifyGrant(a) => object([
            ("template_id", Some(json!(a.template_id))),
            ("count", a.count.map(Value::from)),
        ]),
        Op::AuthRefresh(a) => json!({ "token": a.token }),
    }
}

/// How empty arguments are sent: `{}`, `null`, or no `args` at all (all mean `{}`).
#[derive(Debug, Clone, Copy)]
enum EmptyArgs {
    Object,
    Null,
    Absent,
}

proptest! {
    #![proptest_config(config())]

    /// A valid request survives encode -> decode: same id, same operation, same arguments.
    #[test]
    fn valid_requests_decode_to_what_was_sent(
        id in prop_oneof![any::<i64>().prop_map(RequestId::Number), ".{1,64}".prop_map(RequestId::Text)],
        (name, sent, decoded) in valid_op(),
        empty in sample::select(vec![EmptyArgs::Object, EmptyArgs::Null, EmptyArgs::Absent]),
        order in Just(vec![0, 1, 2]).prop_shuffle(),
    ) {
        let mut fields = vec![
            ("id".to_string(), serde_json::to_value(&id).unwrap()),
            ("op".to_string(), json!(name)),
        ];
        match empty {
            _ if sent != json!({}) => fields.push(("args".to_string(), sent.clone())),
            EmptyArgs::Object => fields.push(("args".to_string(), json!({}))),
            EmptyArgs::Null => fields.push(("args".to_string(), Value::Null)),
            EmptyArgs::Absent => {}
        }
        let fields: Vec<_> = order.iter().filter_map(|&i| fields.get(i).cloned()).collect();
        let request = decode(&object_text(&fields)).map_err(|(_, e)| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(request.id, id);
        prop_assert_eq!(request.op.name(), name);
        prop_assert_eq!(args_of(&request.op), decoded);
    }
}
