//! The queue's own behaviour, without sockets (the shard's direct writes: `hub::direct_tests`).

use super::*;

fn frame(text: &str) -> Arc<Encoded> {
    Arc::new(Encoded::new(text.to_owned().into()))
}

fn text(outbound: Option<Outbound>) -> String {
    match outbound {
        Some(Outbound::Frame(frame) | Outbound::Timed(frame, _)) => frame.text.to_string(),
        other => panic!("expected a push, got {other:?}"),
    }
}

/// A task waiting on an empty queue is woken by the next push, and pushes come out in the order queued.
#[tokio::test]
async fn a_waiting_task_is_woken_by_a_push_and_reads_them_in_order() {
    let (outbox, mut queue) = outbox(8, 1 << 20);
    let reader = tokio::spawn(async move {
        let first = text(queue.recv().await);
        let second = text(queue.recv().await);
        (first, second, queue)
    });
    tokio::task::yield_now().await;
    assert_eq!(outbox.push(&frame("one")), Pushed::Queued);
    assert_eq!(outbox.push(&frame("two")), Pushed::Queued);
    let (first, second, _queue) = reader.await.unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("one", "two"));
}

/// Once the hub drops its end, the task still gets what was queued, then `None`.
#[tokio::test]
async fn a_dropped_outbox_closes_the_queue_after_what_it_holds() {
    let (outbox, mut queue) = outbox(8, 1 << 20);
    assert_eq!(outbox.push(&frame("last")), Pushed::Queued);
    drop(outbox);
    assert!(queue.is_closed());
    assert_eq!(text(queue.recv().await), "last");
    assert!(queue.recv().await.is_none());
    assert!(matches!(queue.try_recv(), Err(TryRecvError::Disconnected)));
}

/// A push beyond the queue's capacity is refused as full, and its bytes leave the budget.
#[test]
fn a_push_past_capacity_is_full_and_uncounted() {
    let (outbox, queue) = outbox(1, 1 << 20);
    assert_eq!(outbox.push(&frame("a")), Pushed::Queued);
    assert_eq!(outbox.push(&frame("bb")), Pushed::Full);
    assert_eq!(queue.budget.outstanding(), 1);
}

/// A queue that a burst filled gives back its slots once it is empty again.
#[test]
fn an_emptied_queue_keeps_few_slots() {
    let (outbox, mut queue) = outbox(256, 1 << 20);
    for _ in 0..200 {
        assert_eq!(outbox.push(&frame("x")), Pushed::Queued);
    }
    while queue.try_recv().is_ok() {}
    assert!(queue.shared.lock().items.capacity() <= SLOTS_KEPT);
}
