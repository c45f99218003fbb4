//! Several xindao nodes sharing PostgreSQL and a Redis or NATS bus, in one process: chat across nodes in
//! total order, cluster-wide presence and logout, a node killed mid-burst, and the bus restarted mid-burst.
//! Tests here share (and restart) Redis and NATS, so they run one at a time. Without the services they print
//! SKIPPED and pass.

use crate::common;
use crate::services;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{login, pushed_as, sync_all, Client, Closed, Login};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use services::{Node, TestDb, NATS_URL, REDIS_URL};
use tokio_tungstenite::tungstenite::Message;

pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    nodes: Vec<Node>,
    _db: TestDb,
}

impl Cluster {
    async fn start(bus: &str, count: usize) -> Option<Cluster> {
        if !services::bus_available(bus).await {
            return None;
        }
        let db = TestDb::create().await?;
        let channel = format!("xindao-test-{:016x}", rand::random::<u64>());
        let mut nodes = Vec::new();
        for i in 0..count {
            let mut config = common::test_config(PathBuf::from("unused-with-postgres"));
            config.store = db.url.parse().unwrap();
            config.bus = bus.parse().unwrap();
            config.bus_channel = channel.clone();
            config.node_id = Some(format!("node{i}"));
            config.cluster_secret = Some(services::CLUSTER_SECRET.into());
            config.presence_ttl_ms = 1500;
            nodes.push(Node::start(config).await);
        }
        Some(Cluster { nodes, _db: db })
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].addr
    }

    fn admin(&self, i: usize) -> SocketAddr {
        self.nodes[i].admin
    }
}

/// `GET /healthz`: status code and body.
async fn health(addr: SocketAddr) -> (u16, Value) {
    let response = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// `/healthz` once it answers `want`, or its last answer after 10 s.
async fn until_health(addr: SocketAddr, want: &Value) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = health(addr).await;
        if &answer.1 == want || tokio::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request that tolerates the node dying: `None` when the connection is gone before the reply.
async fn try_call(client: &mut Client, id: i64, op: &str, args: Value) -> Option<Value> {
    let frame = json!({ "id": id, "op": op, "args": args }).to_string();
    client.ws.send(Message::text(frame)).await.ok()?;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), client.ws.next())
            .await
            .ok()??;
        if let Ok(Message::Text(text)) = message {
            let frame: Value = serde_json::from_str(&text).ok()?;
            if frame["id"] == id {
                return Some(frame);
            }
        } else if !matches!(message, Ok(Message::Ping(_) | Message::Pong(_))) {
            return None;
        }
    }
}

async fn join(addr: SocketAddr, name: &str, room: i64) -> (Login, Client) {
    let user = login(addr, name).await;
    let mut client = Client::connect(addr, &user.token).await;
    client
        .ok("room_join", json!({ "conversation_id": room }))
        .await;
    (user, client)
}

/// Collects `count` message pushes, asserting that none arrives twice.
async fn collect_pushes(client: &mut Client, count: usize) -> HashSet<i64> {
    let mut seen = HashSet::new();
    while seen.len() < count {
        let message = client.event("message").await;
        let seq = message["seq"].as_i64().unwrap();
        assert!(seen.insert(seq), "push of seq {seq} arrived twice");
    }
    seen
}

async fn chat_across_nodes(bus: &str) {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(bus, 3).await else {
        return;
    };
    let (n0, n1, n2) = (cluster.addr(0), cluster.addr(1), cluster.addr(2));

    // 1:1 between nodes, both ways.
    let alice = login(n0, "alice").await;
    let bob = login(n1, "bob").await;
    let mut a = Client::connect(n0, &alice.token).await;
    let mut b = Client::connect(n1, &bob.token).await;
    let sent = a
        .ok(
            "send",
            json!({ "to_user": bob.user_id, "cmid": "d1", "content": "hi bob" }),
        )
        .await;
    assert_eq!(b.event("message").await, pushed_as(&sent["message"], false));
    let reply = b
        .ok(
            "send",
            json!({ "to_user": alice.user_id, "cmid": "d2", "content": "hi alice" }),
        )
        .await;
    assert_eq!(
        a.event("message").await,
        pushed_as(&reply["message"], false)
    );

    // A room with a concurrent sender on every node and a reader on every node.
    let room = a.ok("room_create", json!({ "name": "everyone" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    b.ok("room_join", json!({ "conversation_id": room })).await;
    let (_, mut c) = join(n2, "carol", room).await;
    let mut readers = Vec::new();
    for (i, addr) in [n0, n1, n2].into_iter().enumerate() {
        readers.push(join(addr, &format!("reader{i}"), room).await.1);
    }
    const EACH: usize = 40;
    let mut tasks = Vec::new();
    for (name, mut client) in [("a", a), ("b", b), ("c", c)] {
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let args = json!({ "conversation_id": room, "cmid": format!("{name}{i}"), "content": format!("{name}:{i}") });
                ids.push(client.send_request("send", args).await);
            }
            let mut acked = Vec::new();
            for id in ids {
                let reply = client.reply(id).await;
                assert_eq!(reply["ok"], true, "{reply}");
                acked.push((reply["result"]["message"]["seq"].as_i64().unwrap(), reply["result"]["message"]["content"].clone()));
            }
            (client, acked)
        }));
    }
    let mut acked = HashMap::new();
    let mut senders = Vec::new();
    for task in tasks {
        let (client, list) = task.await.unwrap();
        senders.push(client);
        for (seq, content) in list {
            assert!(
                acked.insert(seq, content).is_none(),
                "seq {seq} acked twice"
            );
        }
    }
    let total = 3 * EACH;
    assert_eq!(
        acked.keys().copied().collect::<HashSet<_>>(),
        (1..=total as i64).collect()
    );
    for reader in &mut readers {
        let pushed = collect_pushes(reader, total).await;
        assert_eq!(pushed.len(), total, "every push arrived on every node");
        let synced = sync_all(reader, &mut HashMap::new()).await;
        let in_room: Vec<&Value> = synced
            .iter()
            .filter(|m| m["conversation_id"] == room)
            .collect();
        assert_eq!(in_room.len(), total, "sync: seq 1..N, no gap, no duplicate");
        for message in in_room {
            assert_eq!(acked[&message["seq"].as_i64().unwrap()], message["content"]);
        }
    }

    // Typing crosses nodes; presence is cluster-wide.
    c = senders.pop().unwrap();
    let mut b = senders.pop().unwrap();
    let mut a = senders.pop().unwrap();
    b.ok("typing", json!({ "conversation_id": room })).await;
    assert_eq!(readers[2].event("typing").await["user_id"], bob.user_id);
    let dave = login(n0, "dave").await;
    // Presence is told only about users who share a conversation with the watcher.
    for watcher in [&mut c, &mut a] {
        watcher
            .ok("direct_open", json!({ "user_id": dave.user_id }))
            .await;
    }
    let watch = c
        .ok("presence", json!({ "user_ids": [dave.user_id] }))
        .await;
    assert_eq!(watch["presence"][0]["online"], false);
    let mut d = Client::connect(n1, &dave.token).await;
    assert_eq!(
        c.event("presence").await,
        json!({ "user_id": dave.user_id, "online": true })
    );
    // Each node applies the announcement when its own bus subscription delivers it: node 2 having seen it
    // says nothing about node 0 yet, so ask node 0 until it has (or a deadline passes).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let seen = a
            .ok("presence", json!({ "user_ids": [dave.user_id] }))
            .await;
        if seen["presence"][0]["online"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 0 sees dave online on node 1: {seen}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    d.ok("room_join", json!({ "conversation_id": room })).await;
    let members = a
        .ok("room_members", json!({ "conversation_id": room }))
        .await;
    let dave_row = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user"]["id"] == dave.user_id)
        .cloned()
        .unwrap();
    assert_eq!(dave_row["online"], true);
    // Membership changed on node 0 routes the room to erin's socket on node 2.
    let erin = login(n2, "erin").await;
    let mut e = Client::connect(n2, &erin.token).await;
    a.ok(
        "room_add",
        json!({ "conversation_id": room, "user_id": erin.user_id }),
    )
    .await;
    assert_eq!(e.event("member").await["action"], "added");
    let hello = a.say(room, "to-erin", "welcome erin").await;
    assert_eq!(e.event("message").await, pushed_as(&hello, false));
    // Logout on node 0 closes dave's socket on node 1; he goes offline everywhere.
    let logout = reqwest::Client::new()
        .post(format!("http://{n0}/v1/logout"))
        .bearer_auth(&dave.token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    assert_eq!(d.closed().await, Closed::Code(4001));
    assert_eq!(
        c.event("presence").await,
        json!({ "user_id": dave.user_id, "online": false })
    );
    let _ = b;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_chat_in_total_order_over_redis() {
    chat_across_nodes(REDIS_URL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_chat_in_total_order_over_nats() {
    chat_across_nodes(NATS_URL).await;
}

/// Sends `count` messages from `user`, reconnecting to `fallback` and resending the same cmid whenever the
/// node it is on dies; returns the acked messages.
async fn resilient_sender(
    user: Login,
    room: i64,
    start: SocketAddr,
    fallback: SocketAddr,
    count: usize,
) -> Vec<Value> {
    let mut client = Client::connect(start, &user.token).await;
    let mut acked = Vec::new();
    let mut id = 1000;
    for i in 0..count {
        let cmid = format!("u{}-{i}", user.user_id);
        loop {
            id += 1;
            let args = json!({ "conversation_id": room, "cmid": cmid, "content": cmid });
            match try_call(&mut client, id, "send", args).await {
                Some(reply) if reply["ok"] == true => {
                    acked.push(reply["result"]["message"].clone());
                    break;
                }
                Some(reply) => panic!("send failed: {reply}"),
                None => client = Client::connect(fallback, &user.token).await,
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_mid_burst_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start(REDIS_URL, 3).await else {
        return;
    };
    let (n0, n1, n2) = (cluster.addr(0), cluster.addr(1), cluster.addr(2));
    let owner = login(n0, "owner").await;
    let mut o = Client::connect(n0, &owner.token).await;
    let room = o.ok("room_create", json!({ "name": "burst" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    // A user only ever on the doomed node, watched from node 0.
    let (ghost, _ghost_client) = join(n2, "ghost", room).await;
    o.ok("presence", json!({ "user_ids": [ghost.user_id] }))
        .await;
    const EACH: usize = 40;
    let mut tasks = Vec::new();
    for (name, start) in [("s-a", n2), ("s-b", n2), ("s-c", n1)] {
        let (user, _) = join(start, name, room).await;
        tasks.push(tokio::spawn(resilient_sender(user, room, start, n0, EACH)));
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    cluster.nodes[2].kill();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    // The ghost's node is gone: node 0 says so once the presence TTL has passed. Under load the ghost's own
    // arrival (online) may reach the watcher after its watch began: it comes first then, never after.
    let mut presence = o.event("presence").await;
    if presence == json!({ "user_id": ghost.user_id, "online": true }) {
        presence = o.event("presence").await;
    }
    assert_eq!(
        presence,
        json!({ "user_id": ghost.user_id, "online": false })
    );
    let cmids: HashSet<String> = acked
        .iter()
        .map(|m| m["cmid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(cmids.len(), 3 * EACH, "every message acked once");
    let synced = sync_all(&mut o, &mut HashMap::new()).await;
    let stored: Vec<&Value> = synced
        .iter()
        .filter(|m| m["conversation_id"] == room)
        .collect();
    assert_eq!(
        stored.len(),
        3 * EACH,
        "each acked message stored exactly once, seqs contiguous"
    );
    let stored_cmids: HashSet<String> = stored
        .iter()
        .map(|m| m["cmid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored_cmids, cmids);
    for message in &acked {
        assert_eq!(
            stored[message["seq"].as_i64().unwrap() as usize - 1],
            message
        );
    }
}

/// The bus goes down and comes back while a sender on node 0 keeps sending: the reader on node 1 is told
/// to resync and, after syncing, has every acked message once.
async fn bus_restart_mid_burst(bus: &str, restart: impl FnOnce() -> Box<dyn std::any::Any + Send>) {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(bus, 2).await else {
        return;
    };
    let (n0, n1) = (cluster.addr(0), cluster.addr(1));
    let admin0 = cluster.admin(0);
    let owner = login(n0, "owner").await;
    let mut o = Client::connect(n0, &owner.token).await;
    let room = o.ok("room_create", json!({ "name": "restart" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    let (_, mut reader) = join(n1, "reader", room).await;
    const COUNT: usize = 80;
    let sender = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..COUNT {
            acked.push(o.say(room, &format!("m{i}"), &format!("text {i}")).await);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let healthy = json!({ "status": "ok", "store": "ok", "bus": "ok" });
    assert_eq!(health(n0).await, (200, healthy.clone()));
    assert_eq!(
        common::metric(admin0, "xindao_bus_connected")
            .await
            .as_deref(),
        Some("1")
    );
    {
        let _down = restart();
        tokio::time::sleep(Duration::from_millis(400)).await;
        // The node stays in (its own users still chat) and says what is wrong.
        let down = json!({ "status": "ok", "store": "ok", "bus": "disconnected" });
        assert_eq!(until_health(n0, &down).await, (200, down));
        assert_eq!(
            common::metric(admin0, "xindao_bus_connected")
                .await
                .as_deref(),
            Some("0")
        );
        // Dropping the guard starts the service again.
    }
    let resync = reader.event("resync").await;
    assert!(resync["reason"].is_string(), "{resync}");
    for node in [n0, n1] {
        assert_eq!(until_health(node, &healthy).await, (200, healthy.clone()));
    }
    let acked = sender.await.unwrap();
    let synced = sync_all(&mut reader, &mut HashMap::new()).await;
    let stored: Vec<&Value> = synced
        .iter()
        .filter(|m| m["conversation_id"] == room)
        .collect();
    assert_eq!(
        stored.len(),
        COUNT,
        "after sync: every acked message, once, contiguous"
    );
    for message in &acked {
        assert_eq!(
            stored[message["seq"].as_i64().unwrap() as usize - 1],
            message
        );
    }
    // The bus works again: a new message crosses nodes.
    let (_, mut late) = join(n0, "late", room).await;
    let message = late.say(room, "after", "after the restart").await;
    loop {
        // Pushes buffered while syncing come first.
        let pushed = reader.event("message").await;
        if pushed["seq"] == message["seq"] {
            assert_eq!(pushed, pushed_as(&message, false));
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_burst_clients_resync_and_lose_nothing() {
    bus_restart_mid_burst(REDIS_URL, || Box::new(services::RedisDown::stop())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_mid_burst_clients_resync_and_lose_nothing() {
    bus_restart_mid_burst(NATS_URL, || Box::new(services::NatsDown::stop())).await;
}
