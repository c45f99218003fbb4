#!/usr/bin/env node
// A small, in-memory (JSON-file persisted) stand-in for the xindao server, protocol v1, used to develop the SDK
// and web page before the Rust server existed. NOT the real thing: the test suites run against the real binary.
// To use it anyway: XINDAO_BIN=sdk/js/dev/fake-server.mjs (the test helper runs .mjs files with node).
// Same command line as `xindao serve --listen ADDR --data-dir DIR --dev-login true --heartbeat-ms N --idle-timeout-ms N`.
import http from 'node:http';
import { readFileSync, writeFileSync, existsSync, mkdirSync, renameSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes, createHash } from 'node:crypto';
import { WebSocketServer } from 'ws';

const args = process.argv.slice(2).filter((a) => a !== 'serve');
const opt = (name, env, dflt) => {
  const i = args.indexOf('--' + name);
  if (i >= 0) return args[i + 1];
  return process.env[env] ?? dflt;
};
const listen = opt('listen', 'XINDAO_LISTEN', '127.0.0.1:8080');
const dataDir = opt('data-dir', 'XINDAO_DATA_DIR', './xindao-data');
const devLogin = opt('dev-login', 'XINDAO_DEV_LOGIN', 'false') === 'true';
const heartbeatMs = Number(opt('heartbeat-ms', 'XINDAO_HEARTBEAT_MS', '15000'));
const idleTimeoutMs = Number(opt('idle-timeout-ms', 'XINDAO_IDLE_TIMEOUT_MS', '45000'));
const webDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'crates', 'xindao', 'web');

mkdirSync(dataDir, { recursive: true });
const dbFile = join(dataDir, 'fake.json');
const db = existsSync(dbFile)
  ? JSON.parse(readFileSync(dbFile, 'utf8'))
  : { users: [], tokens: {}, convs: [], messages: [], nextId: 1 };
function save() {
  writeFileSync(dbFile + '.tmp', JSON.stringify(db));
  renameSync(dbFile + '.tmp', dbFile);
}
const nid = () => db.nextId++;
const sha = (t) => createHash('sha256').update(t).digest('hex');
const LIMITS = { max_frame_bytes: 65536, max_text_chars: 4000, max_custom_bytes: 16384, history_page_max: 200, rate_per_sec: 20, rate_burst: 40 };

const conns = new Set(); // {ws, user, id, presenceSubs:Set}
let connSeq = 1;
const online = (uid) => [...conns].some((c) => c.user.id === uid);
const userById = (id) => db.users.find((u) => u.id === id);
const pub = (u) => ({ id: u.id, display_name: u.display_name });
const convMsgs = (cid) => db.messages.filter((m) => m.conversation_id === cid);
const member = (c, uid) => c.members.find((m) => m.user_id === uid);

function convView(c, uid) {
  const msgs = convMsgs(c.id);
  const m = member(c, uid);
  const peer = c.kind === 'direct' ? userById(c.members.find((x) => x.user_id !== uid).user_id) : null;
  return {
    id: c.id, kind: c.kind, name: c.name ?? null, visibility: c.visibility ?? null, owner_id: c.owner_id ?? null,
    peer: peer ? pub(peer) : null, last_seq: msgs.length, read_seq: m ? m.read_seq : 0,
    unread: msgs.length - (m ? m.read_seq : 0), last_message: msgs[msgs.length - 1] ?? null,
  };
}
function push(uids, event, data, except) {
  const f = JSON.stringify({ event, data });
  for (const c of conns) if (uids.includes(c.user.id) && c !== except) c.ws.send(f);
}
class E extends Error {
  constructor(code, message) { super(message); this.code = code; }
}
function authUser(token) {
  if (!token) return null;
  const t = db.tokens[sha(token)];
  return t ? userById(t) : null;
}

const ops = {
  ping: () => ({ ts: Date.now() }),
  direct_open(c, a) {
    const other = userById(a.user_id);
    if (!other) throw new E('not_found', 'no such user');
    if (other.id === c.user.id) throw new E('conflict', 'not with yourself');
    let conv = db.convs.find((x) => x.kind === 'direct' && member(x, c.user.id) && member(x, other.id));
    if (!conv) {
      conv = { id: nid(), kind: 'direct', members: [{ user_id: c.user.id, read_seq: 0, role: 'member' }, { user_id: other.id, read_seq: 0, role: 'member' }] };
      db.convs.push(conv);
      save();
    }
    return { conversation: convView(conv, c.user.id) };
  },
  room_create(c, a) {
    if (typeof a.name !== 'string' || !a.name) throw new E('invalid_args', 'name');
    const conv = { id: nid(), kind: 'room', name: a.name, visibility: a.visibility || 'public', owner_id: c.user.id, members: [{ user_id: c.user.id, read_seq: 0, role: 'owner' }] };
    db.convs.push(conv);
    save();
    return { conversation: convView(conv, c.user.id) };
  },
  room_join(c, a) {
    const conv = getConv(a.conversation_id, null);
    if (conv.kind !== 'room') throw new E('not_found', 'no room');
    if (!member(conv, c.user.id)) {
      if (conv.visibility !== 'public') throw new E('forbidden', 'invite only');
      conv.members.push({ user_id: c.user.id, read_seq: 0, role: 'member' });
      save();
      push(conv.members.map((m) => m.user_id), 'member', { conversation_id: conv.id, user_id: c.user.id, action: 'joined', by: c.user.id });
    }
    return { conversation: convView(conv, c.user.id) };
  },
  room_leave(c, a) {
    const conv = getConv(a.conversation_id, c.user.id);
    const uids = conv.members.map((m) => m.user_id);
    conv.members = conv.members.filter((m) => m.user_id !== c.user.id);
    if (conv.owner_id === c.user.id && conv.members.length) { conv.owner_id = conv.members[0].user_id; conv.members[0].role = 'owner'; }
    save();
    push(uids, 'member', { conversation_id: conv.id, user_id: c.user.id, action: 'left', by: c.user.id });
    return {};
  },
  room_add(c, a) {
    const conv = getConv(a.conversation_id, c.user.id);
    if (!userById(a.user_id)) throw new E('not_found', 'no such user');
    if (!member(conv, a.user_id)) {
      conv.members.push({ user_id: a.user_id, read_seq: 0, role: 'member' });
      save();
      push(conv.members.map((m) => m.user_id), 'member', { conversation_id: conv.id, user_id: a.user_id, action: 'added', by: c.user.id });
    }
    return {};
  },
  room_members(c, a) {
    const conv = getConv(a.conversation_id, c.user.id);
    return { members: conv.members.map((m) => ({ user: pub(userById(m.user_id)), role: m.role, read_seq: m.read_seq, online: online(m.user_id) })) };
  },
  rooms_public: () => ({ rooms: db.convs.filter((x) => x.kind === 'room' && x.visibility === 'public').map((x) => ({ id: x.id, name: x.name, members: x.members.length })) }),
  conversations(c, a) {
    // paged like the real server: most recent first, `limit` (default 50, at most 200), `cursor` = offset here
    const all = db.convs.filter((x) => member(x, c.user.id)).map((x) => convView(x, c.user.id)).sort((p, q) => ((q.last_message?.ts ?? 0) - (p.last_message?.ts ?? 0)));
    const limit = Math.min(a.limit || 50, 200);
    const from = a.cursor ? Number(a.cursor) : 0;
    const page = all.slice(from, from + limit);
    const more = from + limit < all.length;
    return { conversations: page, has_more: more, next_cursor: more ? String(from + limit) : null };
  },
  send(c, a) {
    if (typeof a.cmid !== 'string' || !/^[A-Za-z0-9_.:-]{1,64}$/.test(a.cmid)) throw new E('invalid_message', 'bad cmid');
    const dup = db.messages.find((m) => m.sender_id === c.user.id && m.cmid === a.cmid);
    if (dup) return { message: dup, duplicate: true };
    let conv;
    if (a.to_user != null) { const did = ops.direct_open(c, { user_id: a.to_user }).conversation.id; conv = db.convs.find((x) => x.id === did); }
    else conv = getConv(a.conversation_id, c.user.id);
    const kind = a.kind || 'text';
    if (kind === 'text' && (typeof a.content !== 'string' || !a.content.trim())) throw new E('invalid_message', 'empty text');
    if (kind === 'text' && a.content.length > 4000) throw new E('message_too_long', 'too long');
    const m = { id: nid(), conversation_id: conv.id, seq: convMsgs(conv.id).length + 1, sender_id: c.user.id, cmid: a.cmid, kind, content: a.content, ts: Date.now() };
    db.messages.push(m);
    save();
    push(conv.members.map((x) => x.user_id), 'message', m, c);
    return { message: m, duplicate: false };
  },
  history(c, a) {
    const conv = getConv(a.conversation_id, c.user.id);
    const all = convMsgs(conv.id);
    const limit = Math.min(a.limit || 50, 200);
    let msgs, more;
    if (a.before_seq != null) { const b = all.filter((m) => m.seq < a.before_seq); msgs = b.slice(-limit); more = b.length > limit; }
    else if (a.after_seq != null) { const b = all.filter((m) => m.seq > a.after_seq); msgs = b.slice(0, limit); more = b.length > limit; }
    else { msgs = all.slice(-limit); more = all.length > limit; }
    return { messages: msgs, has_more: more };
  },
  sync(c, a) {
    const limit = Math.min(a.limit || 100, 200);
    // the real server's paging, simplified: ids in (after_id, until_id], at most 20 conversations per reply
    const after = a.after_id || 0;
    const mine = db.convs.filter((x) => member(x, c.user.id) && x.id > after && (a.until_id == null || x.id <= a.until_id)).sort((p, q) => p.id - q.id);
    const out = [];
    let next = after;
    let complete = true;
    let stopped = false;
    for (const conv of mine) {
      const cur = (a.cursors || {})[conv.id] || 0;
      const b = convMsgs(conv.id).filter((m) => m.seq > cur);
      if (b.length && out.length === 20) { stopped = true; break; }
      if (b.length) out.push({ conversation: convView(conv, c.user.id), messages: b.slice(0, limit), has_more: b.length > limit });
      complete = complete && b.length <= limit;
      if (complete) next = conv.id;
    }
    return { conversations: out, has_more: stopped || !complete, next_after_id: next };
  },
  read(c, a) {
    const conv = getConv(a.conversation_id, c.user.id);
    const m = member(conv, c.user.id);
    m.read_seq = Math.max(m.read_seq, Math.min(a.seq, convMsgs(conv.id).length));
    save();
    push(conv.members.map((x) => x.user_id), 'read', { conversation_id: conv.id, user_id: c.user.id, seq: m.read_seq });
    return { read_seq: m.read_seq };
  },
  typing(c, a) {
    const conv = getConv(a.conversation_id, c.user.id);
    push(conv.members.map((x) => x.user_id).filter((u) => u !== c.user.id), 'typing', { conversation_id: conv.id, user_id: c.user.id });
    return {};
  },
  presence(c, a) {
    c.presenceSubs = new Set(a.user_ids);
    return { presence: a.user_ids.map((u) => ({ user_id: u, online: online(u) })) };
  },
};
function getConv(id, uid) {
  const conv = db.convs.find((x) => x.id === id);
  if (!conv) throw new E('not_found', 'no such conversation');
  if (uid != null && !member(conv, uid)) throw new E('forbidden', 'not a member');
  return conv;
}
function presenceChanged(uid) {
  const f = JSON.stringify({ event: 'presence', data: { user_id: uid, online: online(uid) } });
  for (const c of conns) if (c.presenceSubs.has(uid)) c.ws.send(f);
}

function json(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}
const errJson = (res, status, code, message) => json(res, status, { error: { code, message } });
const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    const url = new URL(req.url, 'http://x');
    const token = (req.headers.authorization || '').replace(/^Bearer /, '');
    const files = { '/': ['index.html', 'text/html'], '/app.js': ['app.js', 'text/javascript'], '/style.css': ['style.css', 'text/css'], '/xindao.js': ['xindao.js', 'text/javascript'] };
    if (req.method === 'GET' && files[url.pathname]) {
      res.writeHead(200, { 'Content-Type': files[url.pathname][1] + '; charset=utf-8' });
      return res.end(readFileSync(join(webDir, files[url.pathname][0])));
    }
    if (url.pathname === '/healthz') return json(res, 200, { status: 'ok' });
    if (url.pathname === '/v1/login/dev' && req.method === 'POST') {
      if (!devLogin) return errJson(res, 404, 'not_found', 'dev login disabled');
      let name;
      try { name = JSON.parse(body).display_name; } catch { return errJson(res, 400, 'bad_request', 'json'); }
      if (typeof name !== 'string' || !name || name.length > 64) return errJson(res, 400, 'invalid_args', 'display_name');
      let u = db.users.find((x) => x.display_name === name);
      if (!u) { u = { id: nid(), display_name: name }; db.users.push(u); }
      const t = randomBytes(32).toString('base64url');
      db.tokens[sha(t)] = u.id;
      save();
      return json(res, 200, { token: t, expires_at: Date.now() + 30 * 86400e3, user: pub(u) });
    }
    const u = authUser(token);
    if (url.pathname === '/v1/me') return u ? json(res, 200, { user: pub(u) }) : errJson(res, 401, 'unauthorized', 'no session');
    if (url.pathname === '/v1/logout' && req.method === 'POST') {
      if (!u) return errJson(res, 401, 'unauthorized', 'no session');
      delete db.tokens[sha(token)];
      save();
      for (const c of conns) if (c.token === token) c.ws.close(4001, 'logged out');
      return json(res, 200, {});
    }
    errJson(res, 404, 'not_found', 'no route');
  });
});
const wss = new WebSocketServer({ noServer: true });
server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://x');
  const token = url.searchParams.get('token') || (req.headers.authorization || '').replace(/^Bearer /, '');
  const u = url.pathname === '/v1/ws' ? authUser(token) : null;
  if (!u) {
    socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"error":{"code":"unauthorized","message":"no session"}}');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const c = { ws, user: pub(u), token, id: connSeq++, presenceSubs: new Set(), last: Date.now() };
    const wasOnline = online(u.id);
    conns.add(c);
    ws.send(JSON.stringify({ event: 'hello', data: { protocol: 1, user: c.user, connection_id: c.id, heartbeat_ms: heartbeatMs, idle_timeout_ms: idleTimeoutMs, limits: LIMITS } }));
    if (!wasOnline) presenceChanged(u.id);
    const hb = setInterval(() => {
      if (Date.now() - c.last > idleTimeoutMs) ws.close(4010, 'idle');
      else if (Date.now() - c.last > heartbeatMs) ws.ping();
    }, Math.min(heartbeatMs, 1000));
    ws.on('pong', () => (c.last = Date.now()));
    ws.on('message', (data) => {
      c.last = Date.now();
      let f;
      try { f = JSON.parse(String(data)); } catch { return ws.send(JSON.stringify({ id: null, ok: false, error: { code: 'bad_request', message: 'not json' } })); }
      const op = ops[f.op];
      try {
        if (!op) throw new E('unknown_op', 'unknown op');
        ws.send(JSON.stringify({ id: f.id, ok: true, result: op(c, f.args || {}) }));
      } catch (e) {
        ws.send(JSON.stringify({ id: f.id, ok: false, error: { code: e.code || 'internal', message: e.code ? e.message : e.stack } }));
      }
    });
    ws.on('close', () => {
      clearInterval(hb);
      conns.delete(c);
      if (!online(u.id)) presenceChanged(u.id);
    });
  });
});
const [host, port] = [listen.slice(0, listen.lastIndexOf(':')), Number(listen.slice(listen.lastIndexOf(':') + 1))];
server.listen(port, host, () => {
  process.stdout.write('listening http://' + host + ':' + server.address().port + '\n');
  // The real server's admin listener line (the fake has no /metrics; tests that read it need the real one).
  if (opt('admin-listen', 'XINDAO_ADMIN_LISTEN', '127.0.0.1:9090') !== '') process.stdout.write('admin http://' + host + ':' + server.address().port + '\n');
});
process.on('SIGTERM', () => {
  for (const c of conns) c.ws.close(1001, 'shutting down');
  setTimeout(() => process.exit(0), 100);
});
