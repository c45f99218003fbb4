// Socket.IO 4 peer server for xindao's benchmark (issue #5).
//
// It implements the same scenarios as xindao, the idiomatic Socket.IO way: rooms for conversations, acks for
// replies, `socket.to(room).emit` for delivery (encoded once per broadcast). To let one load generator drive
// both servers, it answers the same operations with the same shapes as xindao's protocol v1 (docs/protocol.md):
//   - POST /v1/login/dev {"display_name"} -> {"token", "expires_at", "user": {"id", "display_name"}}
//   - Socket.IO connect with auth {"token"}; each socket joins "u:<user>" and the rooms of its conversations
//   - events `direct_open`, `room_create`, `room_add`, `room_join`, `send`, `ping` with an ack whose payload is
//     xindao's reply body: {"ok": true, "result": ...} or {"ok": false, "error": {"code", "message"}}
//   - push `message` with xindao's Message shape to every socket of every member except the sender's socket.
// By default state lives in memory only: Socket.IO has no persistence, history or sync (delivery is at most
// once). This is the peer as people deploy it; docs/performance.md says so where it describes the peers.
//
// With `--sqlite PATH` it also persists every message the way a careful Node developer would add it, so that
// the 1:1 scenario ("with persistence on", issue #5) runs against a peer that does the same job: better-sqlite3
// with xindao's defaults (WAL, synchronous = NORMAL), a per-conversation seq and an idempotency key in unique
// indexes, and group commit: the sends read in one event-loop turn are committed in one transaction, and each is
// acked and pushed only after that commit. Membership and users stay in memory (xindao checks membership in the
// same transaction and also stores the sender's read mark), so the peer still does less per message.
//
// Usage: node server.js [--listen 127.0.0.1:0] [--sqlite PATH]
// Prints `listening http://127.0.0.1:PORT` on stdout when ready.

"use strict";

const http = require("http");
const crypto = require("crypto");
const { Server } = require("socket.io");

let listen = process.env.LISTEN || "127.0.0.1:0";
let sqlitePath = null;
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === "--listen") listen = process.argv[++i];
  else if (process.argv[i] === "--sqlite") sqlitePath = process.argv[++i];
}
const [host, portStr] = listen.split(":");

const usersByName = new Map(); // display_name -> user
const usersByToken = new Map(); // token -> user
let nextUserId = 1;
const convs = new Map(); // id -> {id, kind, name, members: Set<userId>, lastSeq, owner}
const directByPair = new Map(); // "a:b" -> conv id
const convsByUser = new Map(); // userId -> Set<convId>
const sentByCmid = new Map(); // "sender:cmid" -> message
let nextConvId = 1;
let nextMsgId = 1;

// The persisted mode (--sqlite): a database, its statements, and the sends waiting for the next commit.
const store = sqlitePath ? openStore(sqlitePath) : null;
let pending = [];

function openStore(path) {
  const Database = require("better-sqlite3");
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.exec(`
    CREATE TABLE IF NOT EXISTS conversations (
      id INTEGER PRIMARY KEY, kind TEXT NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0, last_ts INTEGER);
    CREATE TABLE IF NOT EXISTS messages (
      id INTEGER PRIMARY KEY, conversation_id INTEGER NOT NULL REFERENCES conversations(id),
      seq INTEGER NOT NULL, sender_id INTEGER NOT NULL, cmid TEXT NOT NULL, kind TEXT NOT NULL,
      content TEXT NOT NULL, created_at INTEGER NOT NULL,
      UNIQUE (conversation_id, seq), UNIQUE (cmid, sender_id));`);
  const insert = db.prepare(`INSERT INTO messages (conversation_id, seq, sender_id, cmid, kind, content, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (cmid, sender_id) DO NOTHING`);
  const existing = db.prepare("SELECT * FROM messages WHERE sender_id = ? AND cmid = ?");
  const bump = db.prepare("UPDATE conversations SET last_seq = ?, last_ts = ? WHERE id = ?");
  const addConv = db.prepare("INSERT INTO conversations (id, kind) VALUES (?, ?)");
  // One transaction per batch; a duplicate cmid answers with the message first stored under it.
  const commit = db.transaction((batch) => {
    const seqs = new Map();
    for (const p of batch) {
      const c = p.conv;
      const seq = (seqs.get(c.id) ?? c.lastSeq) + 1;
      const content = JSON.stringify(p.args.content ?? null);
      const ts = Date.now();
      const kind = p.args.kind || "text";
      const info = insert.run(c.id, seq, p.uid, p.args.cmid, kind, content, ts);
      if (info.changes === 1) {
        seqs.set(c.id, seq);
        bump.run(seq, ts, c.id);
        p.message = { id: Number(info.lastInsertRowid), conversation_id: c.id, seq, sender_id: p.uid,
          cmid: p.args.cmid, kind, content: p.args.content, ts };
      } else {
        const row = existing.get(p.uid, p.args.cmid);
        p.duplicate = true;
        p.message = { id: row.id, conversation_id: row.conversation_id, seq: row.seq, sender_id: row.sender_id,
          cmid: row.cmid, kind: row.kind, content: JSON.parse(row.content), ts: row.created_at };
      }
    }
    return seqs;
  });
  return { addConversation: (id, kind) => addConv.run(id, kind), commit };
}

// Commits every send read in this event-loop turn, then acks and pushes them (only committed messages).
function commitPending() {
  const batch = pending;
  pending = [];
  let seqs;
  try {
    seqs = store.commit(batch);
  } catch (e) {
    for (const p of batch) p.ack(err("unavailable", String(e)));
    return;
  }
  for (const [id, seq] of seqs) convs.get(id).lastSeq = seq;
  for (const p of batch) {
    if (!p.duplicate) p.socket.to("c:" + p.conv.id).emit("message", p.message);
    p.ack(ok({ message: p.message, duplicate: !!p.duplicate }));
  }
}

function userConvs(uid) {
  let s = convsByUser.get(uid);
  if (!s) {
    s = new Set();
    convsByUser.set(uid, s);
  }
  return s;
}

function json(res, status, body) {
  const s = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(s) });
  res.end(s);
}

const httpServer = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/healthz") return json(res, 200, { status: "ok" });
  if (req.method === "POST" && req.url === "/v1/login/dev") {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      let name;
      try {
        name = JSON.parse(body).display_name;
      } catch (e) {
        return json(res, 400, { error: { code: "bad_request", message: "invalid JSON" } });
      }
      if (typeof name !== "string" || name.length < 1 || name.length > 64) {
        return json(res, 400, { error: { code: "invalid_args", message: "display_name" } });
      }
      let user = usersByName.get(name);
      if (!user) {
        user = { id: nextUserId++, display_name: name };
        usersByName.set(name, user);
      }
      const token = crypto.randomBytes(32).toString("base64url");
      usersByToken.set(token, user);
      json(res, 200, { token, expires_at: Date.now() + 30 * 86400000, user });
    });
    return;
  }
  if (req.url.startsWith("/socket.io")) return; // handled by engine.io
  json(res, 404, { error: { code: "not_found", message: "not found" } });
});

const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
  cors: { origin: "*" },
  maxHttpBufferSize: 65536,
});

io.use((socket, next) => {
  const token = (socket.handshake.auth && socket.handshake.auth.token) || socket.handshake.query.token;
  const user = usersByToken.get(token);
  if (!user) return next(new Error("unauthorized"));
  socket.data.user = user;
  next();
});

function convView(c, uid) {
  let peer = null;
  if (c.kind === "direct") {
    for (const m of c.members) if (m !== uid) peer = { id: m };
  }
  return {
    id: c.id,
    kind: c.kind,
    name: c.name,
    visibility: c.kind === "room" ? "public" : null,
    owner_id: c.owner,
    peer,
    last_seq: c.lastSeq,
  };
}

function addMember(c, uid) {
  c.members.add(uid);
  userConvs(uid).add(c.id);
  io.in("u:" + uid).socketsJoin("c:" + c.id);
}

const err = (code, message) => ({ ok: false, error: { code, message } });
const ok = (result) => ({ ok: true, result });

const ops = {
  ping: () => ok({ ts: Date.now() }),
  direct_open(socket, uid, a) {
    const other = a && a.user_id;
    if (typeof other !== "number") return err("invalid_args", "user_id");
    if (other === uid) return err("conflict", "not with yourself");
    const key = uid < other ? uid + ":" + other : other + ":" + uid;
    let id = directByPair.get(key);
    if (!id) {
      id = nextConvId++;
      const c = { id, kind: "direct", name: null, members: new Set(), lastSeq: 0, owner: null };
      if (store) store.addConversation(id, "direct");
      convs.set(id, c);
      directByPair.set(key, id);
      addMember(c, uid);
      addMember(c, other);
    }
    return ok({ conversation: convView(convs.get(id), uid) });
  },
  room_create(socket, uid, a) {
    const id = nextConvId++;
    const c = { id, kind: "room", name: String((a && a.name) || ""), members: new Set(), lastSeq: 0, owner: uid };
    if (store) store.addConversation(id, "room");
    convs.set(id, c);
    addMember(c, uid);
    return ok({ conversation: convView(c, uid) });
  },
  room_add(socket, uid, a) {
    const c = convs.get(a && a.conversation_id);
    if (!c || c.kind !== "room") return err("not_found", "no such room");
    if (!c.members.has(uid)) return err("forbidden", "not a member");
    addMember(c, a.user_id);
    socket.to("c:" + c.id).emit("member", { conversation_id: c.id, user_id: a.user_id, action: "added", by: uid });
    return ok({});
  },
  room_join(socket, uid, a) {
    const c = convs.get(a && a.conversation_id);
    if (!c || c.kind !== "room") return err("not_found", "no such room");
    addMember(c, uid);
    socket.to("c:" + c.id).emit("member", { conversation_id: c.id, user_id: uid, action: "joined", by: uid });
    return ok({ conversation: convView(c, uid) });
  },
  send(socket, uid, a, ack) {
    if (!a) return err("invalid_args", "args");
    let c;
    if (a.to_user !== undefined) {
      const r = ops.direct_open(socket, uid, { user_id: a.to_user });
      if (!r.ok) return r;
      c = convs.get(r.result.conversation.id);
    } else {
      c = convs.get(a.conversation_id);
    }
    if (!c) return err("not_found", "no such conversation");
    if (!c.members.has(uid)) return err("forbidden", "not a member");
    if (typeof a.cmid !== "string" || a.cmid.length < 1 || a.cmid.length > 64) {
      return err("invalid_message", "cmid");
    }
    if (store) {
      // Answered after the commit (commitPending), not here.
      if (pending.length === 0) setImmediate(commitPending);
      pending.push({ socket, uid, conv: c, args: a, ack: ack || (() => {}) });
      return undefined;
    }
    const key = uid + ":" + a.cmid;
    const prev = sentByCmid.get(key);
    if (prev) return ok({ message: prev, duplicate: true });
    const message = {
      id: nextMsgId++,
      conversation_id: c.id,
      seq: ++c.lastSeq,
      sender_id: uid,
      cmid: a.cmid,
      kind: a.kind || "text",
      content: a.content,
      ts: Date.now(),
    };
    sentByCmid.set(key, message);
    socket.to("c:" + c.id).emit("message", message);
    return ok({ message, duplicate: false });
  },
};

io.on("connection", (socket) => {
  const uid = socket.data.user.id;
  const rooms = ["u:" + uid];
  for (const id of userConvs(uid)) rooms.push("c:" + id);
  socket.join(rooms);
  for (const [op, fn] of Object.entries(ops)) {
    socket.on(op, (args, ack) => {
      if (typeof args === "function") {
        ack = args;
        args = undefined;
      }
      let reply;
      try {
        reply = fn(socket, uid, args, ack);
      } catch (e) {
        reply = err("internal", String(e));
      }
      if (reply !== undefined && typeof ack === "function") ack(reply);
    });
  }
});

httpServer.listen(Number(portStr || 0), host || "127.0.0.1", () => {
  const addr = httpServer.address();
  process.stdout.write(`listening http://${addr.address}:${addr.port}\n`);
});

function shutdown() {
  io.close();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
