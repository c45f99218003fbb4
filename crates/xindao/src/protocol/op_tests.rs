//! Unit tests of operation decoding: typed arguments, defaults and the error code of each bad input.
use super::*;

fn decode(name: &str, args: Option<&str>) -> Result<Op> {
    let name = serde_json::to_string(name).unwrap();
    let name: &RawValue = serde_json::from_str(&name).unwrap();
    let args: Option<&RawValue> = args.map(|a| serde_json::from_str(a).unwrap());
    Op::decode(name, args)
}

fn code(name: &str, args: Option<&str>) -> &'static str {
    decode(name, args).map_or_else(|e| e.code(), |_| "ok")
}

#[test]
fn names_round_trip() {
    let op = decode("room_members", Some(r#"{"conversation_id":5}"#)).unwrap();
    assert_eq!(op.name(), "room_members");
    assert!(matches!(
        op,
        Op::RoomMembers(RoomMembersArgs {
            conversation_id: 5,
            limit: None,
            cursor: None
        })
    ));
    let op = decode("rooms_public", None).unwrap();
    assert_eq!(op.name(), "rooms_public");
    assert_eq!(decode("ping", Some("null")).unwrap().name(), "ping");
}

#[test]
fn unknown_names_and_bad_args_are_told_apart() {
    assert_eq!(code("fly", None), "unknown_op");
    assert_eq!(code("fly", Some(r#"{"x":1}"#)), "unknown_op");
    assert_eq!(code("fly", Some("[]")), "unknown_op");
    assert_eq!(code("Send", None), "unknown_op");
    assert_eq!(code("send", None), "invalid_args");
    assert_eq!(code("ping", Some("[]")), "invalid_args");
    assert_eq!(code("ping", Some("5")), "invalid_args");
    assert_eq!(code("ping", Some(r#"{"anything":1}"#)), "ok");
    assert_eq!(code("typing", Some("[5]")), "invalid_args");
    assert_eq!(code("typing", Some(r#"{"conversation_id":5}"#)), "ok");
}

#[test]
fn seqs_and_limits_are_in_range() {
    let history = |args: &str| code("history", Some(args));
    assert_eq!(history(r#"{"conversation_id":1,"before_seq":0}"#), "ok");
    assert_eq!(
        history(r#"{"conversation_id":1,"before_seq":-1}"#),
        "invalid_args"
    );
    assert_eq!(
        history(r#"{"conversation_id":1,"after_seq":-5}"#),
        "invalid_args"
    );
    assert_eq!(
        history(r#"{"conversation_id":1,"limit":0}"#),
        "invalid_args"
    );
    assert_eq!(
        history(r#"{"conversation_id":1,"limit":-1}"#),
        "invalid_args"
    );
    assert_eq!(history(r#"{"conversation_id":1,"limit":1}"#), "ok");
    assert_eq!(
        code("read", Some(r#"{"conversation_id":1,"seq":-1}"#)),
        "invalid_args"
    );
    assert_eq!(
        code("sync", Some(r#"{"cursors":{"1":-1}}"#)),
        "invalid_args"
    );
    assert_eq!(
        code("sync", Some(r#"{"cursors":{"1":0},"limit":0}"#)),
        "invalid_args"
    );
    assert_eq!(code("rooms_public", Some(r#"{"limit":0}"#)), "invalid_args");
    assert_eq!(
        code("conversations", Some(r#"{"limit":0}"#)),
        "invalid_args"
    );
    assert_eq!(
        code("conversations", Some(r#"{"cursor":5}"#)),
        "invalid_args"
    );
    assert_eq!(
        code("conversations", Some(r#"{"limit":5,"cursor":"1.2"}"#)),
        "ok"
    );
    assert_eq!(
        code("sync", Some(r#"{"cursors":{},"after_id":3,"until_id":9}"#)),
        "ok"
    );
}

#[test]
fn kinds() {
    let kind = |args: &str| match decode("send", Some(args)) {
        Ok(Op::Send(send)) => Ok(send.kind),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.code()),
    };
    assert_eq!(
        kind(r#"{"cmid":"c"}"#),
        Ok(SentKind::Known(MessageKind::Text))
    );
    assert_eq!(
        kind(r#"{"cmid":"c","kind":"custom"}"#),
        Ok(SentKind::Known(MessageKind::Custom))
    );
    assert_eq!(
        kind(r#"{"cmid":"c","kind":"video"}"#),
        Ok(SentKind::Unknown("video".into()))
    );
    assert_eq!(kind(r#"{"cmid":"c","kind":5}"#), Err("invalid_args"));
}

#[test]
fn auth_refresh_takes_a_token_and_never_prints_it() {
    let op = decode("auth_refresh", Some(r#"{"token":"secret.jwt.value"}"#)).unwrap();
    assert_eq!(op.name(), "auth_refresh");
    assert!(!format!("{op:?}").contains("secret"));
    assert_eq!(code("auth_refresh", None), "invalid_args");
    assert_eq!(code("auth_refresh", Some(r#"{"token":5}"#)), "invalid_args");
    assert_eq!(
        code("auth_refresh", Some(r#"{"token":"a","extra":1}"#)),
        "invalid_args"
    );
}
