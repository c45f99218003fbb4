//! Push order across connections: a push that a request causes after its sender holds a message's ack (here
//! `typing`) reaches a third connection after that message's push, even while fan-out has a backlog of other
//! senders' commits (`chat::order` keeps the chat service's publishes behind the batches handed to fan-out).

use crate::common;

use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn a_typing_push_never_overtakes_the_acked_message_before_it() {
    const FLOODERS: usize = 6;
    const EACH: i64 = 300;
    const ROUNDS: usize = 100;
    let server = TestServer::start(|_| {}).await;
    let owner = server.login("owner").await;
    let mut o = server.connect(&owner).await;
    let room = o.ok("room_create", json!({ "name": "ordered" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    let watcher = server.login("watcher").await;
    let mut c = server.connect(&watcher).await;
    c.ok("room_join", json!({ "conversation_id": room })).await;
    let author = server.login("author").await;
    let author_id = author.user_id;
    let mut a = server.connect(&author).await;
    a.ok("room_join", json!({ "conversation_id": room })).await;
    let mut flooders = Vec::new();
    for f in 0..FLOODERS {
        let login = server.login(&format!("flooder{f}")).await;
        let mut client = server.connect(&login).await;
        client
            .ok("room_join", json!({ "conversation_id": room }))
            .await;
        flooders.push(client);
    }

    // The watcher reads everything and checks, at each of the author's typing pushes, that every message the
    // author had been acked for before it came first.
    let watching = tokio::spawn(async move {
        let mut author_messages = 0usize;
        let mut typings = 0usize;
        while typings < ROUNDS {
            let frame: Value = c.next_frame().await.expect("watcher connection open");
            let data = &frame["data"];
            match frame["event"].as_str() {
                Some("message") if data["sender_id"] == author_id => author_messages += 1,
                Some("typing") if data["user_id"] == author_id => {
                    typings += 1;
                    assert!(
                        author_messages >= typings,
                        "typing push {typings} arrived before the author's message {typings} \
                         ({author_messages} of the author's messages seen)"
                    );
                }
                _ => {}
            }
        }
        author_messages
    });
    let flooding: Vec<_> = flooders
        .into_iter()
        .enumerate()
        .map(|(f, mut client)| {
            tokio::spawn(async move {
                client.send_burst(room, &format!("f{f}-"), EACH).await;
                for i in 0..EACH {
                    let reply = client.reply(i + 100).await;
                    assert_eq!(reply["ok"], true, "{reply}");
                }
            })
        })
        .collect();
    for k in 0..ROUNDS {
        a.ok(
            "send",
            json!({ "conversation_id": room, "cmid": format!("a-{k}"), "content": format!("a:{k}") }),
        )
        .await;
        a.ok("typing", json!({ "conversation_id": room })).await;
    }
    let seen = watching.await.expect("every typing push after its message");
    assert!(seen >= ROUNDS);
    for flooder in flooding {
        flooder.await.unwrap();
    }
}
