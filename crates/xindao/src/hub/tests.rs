//! The hub's routing, through its public interface: connections with real queues, no sockets.

use super::*;
use axum::extract::ws::Utf8Bytes;

/// A registered connection: its id and the task's end of its queue.
struct Conn {
    id: ConnId,
    user: UserId,
    queue: Queue,
}

impl Conn {
    /// The frames queued for this connection so far, in order.
    fn frames(&mut self) -> Vec<String> {
        let mut frames = Vec::new();
        while let Ok(outbound) = self.queue.try_recv() {
            match outbound {
                Outbound::Frame(frame) | Outbound::Timed(frame, _) => {
                    frames.push(frame.text.to_string())
                }
                Outbound::Close(code, _) => frames.push(format!("close {code}")),
                Outbound::Raw(bytes) => frames.push(format!("raw {}", bytes.len())),
            }
        }
        frames
    }

    /// Whether the hub dropped this connection's queue (evicted it).
    fn evicted(&mut self) -> bool {
        self.frames();
        self.queue.is_closed()
    }
}

fn hub() -> Hub {
    Hub::new(Metrics::default())
}

fn connect(hub: &Hub, user: UserId, conversations: &[ConversationId]) -> Conn {
    connect_with(hub, user, [user as u8; 32], conversations, 16)
}

fn connect_with(
    hub: &Hub,
    user: UserId,
    token_hash: [u8; 32],
    conversations: &[ConversationId],
    capacity: usize,
) -> Conn {
    let (outbox, queue) = outbox(capacity, usize::MAX);
    let registered = hub.register(user, token_hash, conversations, outbox);
    Conn {
        id: registered.conn_id,
        user,
        queue,
    }
}

fn text(s: &str) -> Utf8Bytes {
    Utf8Bytes::from(s.to_string())
}

fn to_conversation(
    conversation_id: ConversationId,
    skip_conn: ConnId,
    skip_user: UserId,
) -> Delivery {
    Delivery::Conversation {
        conversation_id,
        frame: text("m"),
        own: None,
        skip_conn,
        skip_user,
    }
}

#[test]
fn register_counts_connections_and_unregister_reports_the_last() {
    let hub = hub();
    let first = connect(&hub, 1, &[]);
    let (outbox, _queue) = outbox(4, usize::MAX);
    let second = hub.register(1, [1; 32], &[], outbox);
    assert!(!second.first_of_user);
    assert_ne!(first.id, second.conn_id);
    assert_eq!(hub.connections_of(1), 2);
    assert!(hub.is_online(1));
    assert_eq!(hub.connection_count(), 2);
    assert!(!hub.unregister(1, first.id), "one connection is left");
    assert!(!hub.unregister(1, first.id), "idempotent");
    assert!(hub.unregister(1, second.conn_id), "the last one");
    assert!(!hub.is_online(1));
    assert_eq!(hub.connection_count(), 0);
    assert!(hub.local_users().is_empty());
}

#[test]
fn a_first_connection_says_so() {
    let hub = hub();
    let (outbox, _queue) = outbox(4, usize::MAX);
    assert!(hub.register(7, [7; 32], &[], outbox).first_of_user);
}

#[test]
fn a_conversation_push_reaches_every_member_connection_but_the_skipped() {
    let hub = hub();
    let mut a1 = connect(&hub, 1, &[10]);
    let mut a2 = connect(&hub, 1, &[10]);
    let mut b = connect(&hub, 2, &[10]);
    let mut outsider = connect(&hub, 3, &[11]);
    hub.deliver(&to_conversation(10, a1.id, 0));
    assert!(a1.frames().is_empty(), "the sending connection is skipped");
    assert_eq!(a2.frames(), ["m"], "the sender's other device hears it");
    assert_eq!(b.frames(), ["m"]);
    assert!(outsider.frames().is_empty());
    hub.deliver(&to_conversation(10, 0, 1));
    assert!(
        a1.frames().is_empty() && a2.frames().is_empty(),
        "skip_user"
    );
    assert_eq!(b.frames(), ["m"]);
}

#[test]
fn the_senders_own_connections_get_their_variant_of_a_push() {
    let hub = hub();
    let mut a1 = connect(&hub, 1, &[10]);
    let mut a2 = connect(&hub, 1, &[10]);
    let mut b = connect(&hub, 2, &[10]);
    hub.deliver(&Delivery::Conversation {
        conversation_id: 10,
        frame: text("lean"),
        own: Some(OwnFrame {
            user_id: 1,
            frame: text("with cmid"),
        }),
        skip_conn: a1.id,
        skip_user: 0,
    });
    assert!(a1.frames().is_empty(), "the sending connection is skipped");
    assert_eq!(a2.frames(), ["with cmid"]);
    assert_eq!(b.frames(), ["lean"]);
}

#[test]
fn a_user_push_reaches_each_of_their_connections_only() {
    let hub = hub();
    let mut a1 = connect(&hub, 1, &[]);
    let mut a2 = connect(&hub, 1, &[]);
    let mut b = connect(&hub, 2, &[]);
    hub.deliver(&Delivery::User {
        user_id: 1,
        frame: text("u"),
    });
    assert_eq!(a1.frames(), ["u"]);
    assert_eq!(a2.frames(), ["u"]);
    assert!(b.frames().is_empty());
    // Nobody by that id here: nothing happens.
    hub.deliver(&Delivery::User {
        user_id: 9,
        frame: text("u"),
    });
}

#[test]
fn presence_reaches_the_connections_that_watch_and_only_while_they_do() {
    let hub = hub();
    let mut watcher = connect(&hub, 1, &[]);
    let mut other_device = connect(&hub, 1, &[]);
    let _watched = connect(&hub, 2, &[]);
    let watchers = |user_id| Delivery::Watchers {
        user_id,
        frame: text("p"),
    };
    hub.watch_presence(watcher.user, watcher.id, &[2, 3]);
    hub.deliver(&watchers(2));
    hub.deliver(&watchers(3));
    assert_eq!(watcher.frames(), ["p", "p"]);
    assert!(
        other_device.frames().is_empty(),
        "watching is per connection"
    );
    // A new watch list replaces the old one.
    hub.watch_presence(watcher.user, watcher.id, &[3]);
    hub.deliver(&watchers(2));
    assert!(watcher.frames().is_empty());
    // A closed connection watches nothing.
    hub.unregister(watcher.user, watcher.id);
    hub.deliver(&watchers(3));
    assert!(watcher.frames().is_empty());
}

#[test]
fn membership_deliveries_route_a_conversation_to_a_user_and_away() {
    let hub = hub();
    let mut a = connect(&hub, 1, &[]);
    let mut b = connect(&hub, 2, &[10]);
    let member = |member| Delivery::Membership {
        conversation_id: 10,
        user_id: 1,
        member,
    };
    hub.deliver(&to_conversation(10, 0, 0));
    assert!(a.frames().is_empty(), "not a member yet");
    hub.deliver(&member(true));
    hub.deliver(&to_conversation(10, 0, 0));
    assert_eq!(a.frames(), ["m"]);
    hub.deliver(&member(false));
    hub.deliver(&to_conversation(10, 0, 0));
    assert!(a.frames().is_empty(), "removed");
    assert_eq!(b.frames(), ["m", "m", "m"]);
    // A user without a connection here is not routed to, and later connections load their own list.
    hub.deliver(&Delivery::Membership {
        conversation_id: 10,
        user_id: 5,
        member: true,
    });
    let mut late = connect(&hub, 5, &[]);
    hub.deliver(&to_conversation(10, 0, 0));
    assert!(late.frames().is_empty());
}

#[test]
fn the_last_connection_of_a_user_leaving_stops_routing_to_them() {
    let hub = hub();
    let a = connect(&hub, 1, &[10]);
    let mut b = connect(&hub, 2, &[10]);
    hub.unregister(a.user, a.id);
    let mut again = connect(&hub, 1, &[]);
    hub.deliver(&to_conversation(10, 0, 0));
    assert!(
        again.frames().is_empty(),
        "the old routes went with the last connection"
    );
    assert_eq!(b.frames(), ["m"]);
}

#[test]
fn a_full_queue_is_evicted_as_a_slow_consumer_and_the_rest_still_get_the_push() {
    let metrics = Metrics::default();
    let hub = Hub::new(metrics.clone());
    let mut slow = connect_with(&hub, 1, [1; 32], &[10], 2);
    let mut fast = connect(&hub, 2, &[10]);
    for _ in 0..2 {
        hub.deliver(&to_conversation(10, 0, 0));
    }
    assert_eq!(hub.connections_of(1), 1, "a full queue is not yet evicted");
    hub.deliver(&to_conversation(10, 0, 0));
    assert_eq!(
        hub.connections_of(1),
        0,
        "the push that found it full evicts it"
    );
    assert!(
        slow.evicted(),
        "its queue's sender is dropped: the task closes with 4009"
    );
    assert_eq!(fast.frames(), ["m", "m", "m"]);
    assert_eq!(metrics.slow_consumers.get(), 1);
    assert_eq!(metrics.pushes.get(), 5);
    hub.deliver(&to_conversation(10, 0, 0));
    assert_eq!(metrics.slow_consumers.get(), 1, "evicted once");
}

#[tokio::test]
async fn a_push_over_the_byte_budget_evicts_and_wakes_the_task() {
    let metrics = Metrics::default();
    let hub = Hub::new(metrics.clone());
    // 100 frames of room, 2 bytes of budget: the frame count is not what stops it.
    let (outbox, mut queue) = outbox(100, 2);
    hub.register(1, [1; 32], &[10], outbox);
    let mut fast = connect(&hub, 2, &[10]);
    hub.deliver(&to_conversation(10, 0, 0));
    hub.deliver(&to_conversation(10, 0, 0));
    assert_eq!(queue.budget.outstanding(), 2, "two 1-byte pushes counted");
    assert_eq!(hub.connections_of(1), 1);
    hub.deliver(&to_conversation(10, 0, 0));
    assert_eq!(hub.connections_of(1), 0, "the third byte is over budget");
    assert_eq!(
        queue.budget.outstanding(),
        2,
        "the refused push is not counted"
    );
    assert_eq!(fast.frames(), ["m", "m", "m"]);
    assert_eq!(metrics.slow_consumers.get(), 1);
    let woken =
        tokio::time::timeout(std::time::Duration::from_secs(1), queue.budget.exceeded()).await;
    assert!(woken.is_ok(), "the task is told at once");
    while queue.try_recv().is_ok() {}
    assert!(queue.is_closed());
}

#[test]
fn a_push_to_a_connection_whose_task_is_gone_is_dropped_quietly() {
    let metrics = Metrics::default();
    let hub = Hub::new(metrics.clone());
    let gone = connect(&hub, 1, &[10]);
    drop(gone.queue);
    hub.deliver(&to_conversation(10, 0, 0));
    assert_eq!(metrics.slow_consumers.get(), 0);
    assert_eq!(metrics.pushes.get(), 0);
    assert_eq!(hub.connections_of(1), 1, "the task unregisters itself");
}

#[test]
fn ending_a_session_closes_only_its_connections_with_4001() {
    let hub = hub();
    let mut phone = connect_with(&hub, 1, [0xaa; 32], &[], 4);
    let mut laptop = connect_with(&hub, 1, [0xbb; 32], &[], 4);
    hub.deliver(&Delivery::User {
        user_id: 1,
        frame: text("before"),
    });
    hub.deliver(&Delivery::EndSession {
        token_hash: [0xaa; 32],
    });
    assert_eq!(
        phone.frames(),
        ["before", "close 4001"],
        "after what was queued"
    );
    assert_eq!(laptop.frames(), ["before"]);
    assert_eq!(
        hub.connections_of(1),
        2,
        "each task unregisters as it closes"
    );
}

#[test]
fn ending_a_session_evicts_a_connection_whose_queue_is_full() {
    let hub = hub();
    let mut stuck = connect_with(&hub, 1, [0xaa; 32], &[], 1);
    hub.deliver(&Delivery::User {
        user_id: 1,
        frame: text("x"),
    });
    hub.deliver(&Delivery::EndSession {
        token_hash: [0xaa; 32],
    });
    assert_eq!(hub.connections_of(1), 0);
    assert!(stuck.evicted());
}

#[test]
fn broadcast_reaches_every_connection() {
    let hub = hub();
    let mut conns: Vec<Conn> = (1..=3).map(|user| connect(&hub, user, &[])).collect();
    hub.broadcast(&text("resync"));
    for conn in &mut conns {
        assert_eq!(conn.frames(), ["resync"]);
    }
}
