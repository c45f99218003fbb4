//! Unit tests of the room and session rules: every allowed and refused case, with the error each refusal returns.
use super::*;

const OWNER: UserId = 1;
const MEMBER: UserId = 2;
const OTHER: UserId = 3;

fn room(visibility: Visibility) -> RoomFacts {
    RoomFacts {
        kind: ConversationKind::Room,
        visibility: Some(visibility),
        owner_id: Some(OWNER),
    }
}

fn direct() -> RoomFacts {
    RoomFacts {
        kind: ConversationKind::Direct,
        visibility: None,
        owner_id: None,
    }
}

fn added_by(adder: UserId, adder_is_member: bool, user_exists: bool) -> Joiner {
    Joiner::AddedBy {
        adder,
        adder_is_member,
        user_exists,
    }
}

/// The error as a client sees it: (code, message).
fn refusal(result: Result<()>) -> (&'static str, String) {
    let error = result.expect_err("refused");
    (error.code(), error.to_string())
}

fn forbidden(message: &str) -> (&'static str, String) {
    ("forbidden", message.to_string())
}

#[test]
fn joining_a_public_room() {
    let public = room(Visibility::Public);
    assert!(may_join(&public, Joiner::Themselves).is_ok());
    assert!(may_join(&public, added_by(MEMBER, true, true)).is_ok());
    assert!(may_join(&public, added_by(OWNER, true, true)).is_ok());
    assert_eq!(
        refusal(may_join(&public, added_by(OTHER, false, true))),
        forbidden("you are not a member of this room")
    );
    assert_eq!(
        refusal(may_join(&public, added_by(MEMBER, true, false))),
        ("not_found", "no such user".to_string())
    );
}

#[test]
fn joining_an_invite_only_room() {
    let invite = room(Visibility::Invite);
    assert_eq!(
        refusal(may_join(&invite, Joiner::Themselves)),
        forbidden("this room is invite-only")
    );
    assert!(may_join(&invite, added_by(OWNER, true, true)).is_ok());
    assert_eq!(
        refusal(may_join(&invite, added_by(MEMBER, true, true))),
        forbidden("only the owner adds members to an invite-only room")
    );
    // Not being a member is reported before not being the owner, and both before an unknown user.
    assert_eq!(
        refusal(may_join(&invite, added_by(OTHER, false, false))),
        forbidden("you are not a member of this room")
    );
    assert_eq!(
        refusal(may_join(&invite, added_by(MEMBER, true, false))),
        forbidden("only the owner adds members to an invite-only room")
    );
    assert_eq!(
        refusal(may_join(&invite, added_by(OWNER, true, false))),
        ("not_found", "no such user".to_string())
    );
}

#[test]
fn nobody_joins_a_direct_conversation() {
    let expected = forbidden("direct conversations have exactly two members");
    assert_eq!(refusal(may_join(&direct(), Joiner::Themselves)), expected);
    assert_eq!(
        refusal(may_join(&direct(), added_by(MEMBER, true, true))),
        expected
    );
}

#[test]
fn leaving_and_removing() {
    for visibility in [Visibility::Public, Visibility::Invite] {
        let room = room(visibility);
        assert!(may_leave(&room, MEMBER, None).is_ok());
        assert!(may_leave(&room, OWNER, None).is_ok());
        assert!(
            may_leave(&room, OTHER, None).is_ok(),
            "not a member: a no-op"
        );
        assert!(may_leave(&room, MEMBER, Some(OWNER)).is_ok());
        assert_eq!(
            refusal(may_leave(&room, OTHER, Some(MEMBER))),
            forbidden("only the owner removes members")
        );
        assert_eq!(
            refusal(may_leave(&room, MEMBER, Some(MEMBER))),
            forbidden("only the owner removes members")
        );
        assert_eq!(
            refusal(may_leave(&room, OWNER, Some(OWNER))),
            ("conflict", "the owner leaves with room_leave".to_string())
        );
    }
    let ownerless = RoomFacts {
        owner_id: None,
        ..room(Visibility::Public)
    };
    assert_eq!(
        refusal(may_leave(&ownerless, MEMBER, Some(OWNER))),
        forbidden("only the owner removes members")
    );
}

#[test]
fn nobody_leaves_a_direct_conversation() {
    let expected = forbidden("you cannot leave a direct conversation");
    assert_eq!(refusal(may_leave(&direct(), MEMBER, None)), expected);
    assert_eq!(refusal(may_leave(&direct(), MEMBER, Some(OWNER))), expected);
}

#[test]
fn ownership_passes_only_when_the_owner_left() {
    let public = room(Visibility::Public);
    assert!(ownership_passes(&public, OWNER, true));
    assert!(!ownership_passes(&public, OWNER, false));
    assert!(!ownership_passes(&public, MEMBER, true));
    assert!(!ownership_passes(&direct(), OWNER, true));
}

#[test]
fn direct_conversations_need_two_users() {
    assert!(may_open_direct(OWNER, MEMBER).is_ok());
    assert_eq!(
        refusal(may_open_direct(OWNER, OWNER)),
        (
            "conflict",
            "a direct conversation needs two different users".to_string()
        )
    );
}

#[test]
fn conversations_one_cannot_see() {
    let as_client = |error: Error| (error.code(), error.to_string());
    let not_member = (
        "forbidden",
        "you are not a member of this conversation".to_string(),
    );
    assert_eq!(as_client(not_a_member()), not_member);
    assert_eq!(as_client(unseen_conversation(true)), not_member);
    assert_eq!(
        as_client(unseen_conversation(false)),
        ("not_found", "no such conversation".to_string())
    );
}

#[test]
fn memberships_and_rooms_are_capped() {
    let caps = Caps {
        memberships_per_user: 3,
        rooms_per_owner: 2,
    };
    assert!(may_gain_membership(0, &caps, Newcomer::Caller).is_ok());
    assert!(may_gain_membership(2, &caps, Newcomer::Other).is_ok());
    assert_eq!(
        refusal(may_gain_membership(3, &caps, Newcomer::Caller)),
        (
            "limit_reached",
            "you are in the maximum number of conversations: leave one first".to_string()
        )
    );
    assert_eq!(
        refusal(may_gain_membership(7, &caps, Newcomer::Other)),
        (
            "limit_reached",
            "that user is in the maximum number of conversations".to_string()
        )
    );
    assert!(may_create_room(1, &caps).is_ok());
    assert_eq!(
        refusal(may_create_room(2, &caps)),
        (
            "limit_reached",
            "you own the maximum number of rooms".to_string()
        )
    );
    assert_eq!(Caps::default().memberships_per_user, 10_000);
}

#[test]
fn sessions_slide_without_a_write_per_use() {
    let ttl = 1_000_000;
    let (created, expires) = (0, 1_000_000);
    assert_eq!(
        touch_session(created, expires, 1_000, ttl),
        SessionTouch::Valid {
            expires_at: expires
        }
    );
    assert_eq!(
        touch_session(created, expires, 99_999, ttl),
        SessionTouch::Valid {
            expires_at: expires
        },
        "within a tenth of the ttl"
    );
    assert_eq!(
        touch_session(created, expires, 100_000, ttl),
        SessionTouch::Extend {
            expires_at: 1_100_000
        },
        "a tenth of the ttl old"
    );
    assert_eq!(
        touch_session(created, expires, 500_000, ttl),
        SessionTouch::Extend {
            expires_at: 1_500_000
        }
    );
    assert_eq!(
        touch_session(created, expires, expires, ttl),
        SessionTouch::Expired
    );
    assert_eq!(
        touch_session(created, expires, 1_600_000, ttl),
        SessionTouch::Expired
    );
}

#[test]
fn fixed_sessions_never_slide() {
    let ttl = 1_000_000;
    let expires = 2_000_000;
    let extended = SessionExpiry::Fixed.extended_at(0, expires);
    assert_eq!(SessionExpiry::of(extended, expires), SessionExpiry::Fixed);
    for now in [0, 100_000, 1_500_000, 1_999_999] {
        assert_eq!(
            touch_session(extended, expires, now, ttl),
            SessionTouch::Valid {
                expires_at: expires
            },
            "at {now}"
        );
    }
    assert_eq!(
        touch_session(extended, expires, expires, ttl),
        SessionTouch::Expired
    );
    let sliding = SessionExpiry::Sliding.extended_at(0, ttl);
    assert_eq!(SessionExpiry::of(sliding, ttl), SessionExpiry::Sliding);
}
