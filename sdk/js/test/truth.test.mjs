// Clients that tell the truth, against the real server: connect()/ready() settle while the server is
// unreachable, a dead socket is seen within seconds of a liveness check, the outbox survives a reload (a new
// client on the same storage) and is delivered exactly once, the SDK's length checks agree with the server's,
// errors read out in zh-CN and en with the code kept, and a message moves its sender's read mark.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { XindaoClient, XindaoError, errorText, checkContent, textLength, pickLang } from '../src/xindao.js';
import { execFileSync } from 'node:child_process';
import { startServer, xindaoBin } from '../testlib/server.mjs';
import { connectedClient, nextEvent, waitFor, sleep } from '../testlib/util.mjs';

const servers = [];
const clients = [];
async function server(opts) {
  const s = await startServer(opts);
  servers.push(s);
  return s;
}
async function client(url, name, opts) {
  const c = await connectedClient(url, name, { backoffInitialMs: 100, backoffMaxMs: 500, ...opts });
  clients.push(c);
  return c;
}
function memStorage() {
  const m = new Map();
  return { map: m, getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)) };
}
after(async () => {
  for (const c of clients) c.close();
  for (const s of servers) {
    await s.stop('SIGKILL');
    s.cleanup();
  }
});

test('connect() rejects with `unreachable` while the server is down, and ready() resolves once it is back', async () => {
  const srv = await server();
  const login = new XindaoClient({ url: srv.url, WebSocket, lifecycle: false });
  await login.loginDev('unreach-a');
  await srv.stop('SIGKILL');
  const c = new XindaoClient({ url: srv.url, WebSocket, lifecycle: false, token: login.token, user: login.user, backoffInitialMs: 100, backoffMaxMs: 300 });
  clients.push(c);
  const t0 = Date.now();
  const err = await c.connect({ timeoutMs: 1500 }).then(
    () => null,
    (e) => e,
  );
  const took = Date.now() - t0;
  assert.ok(err instanceof XindaoError, 'connect() rejected');
  assert.equal(err.code, 'unreachable');
  assert.ok(took >= 1400 && took < 4000, `settled after ${took} ms`);
  assert.match(err.message, /not reachable within 1500 ms/);
  assert.equal(errorText(err, 'zh-CN'), '无法连接服务器，请检查网络（仍在重试）');
  assert.notEqual(c.state, 'closed', 'still retrying in the background');
  // the server comes back on the same port: the same client connects by itself
  const back = await srv.restart({ signal: 'SIGKILL' });
  servers.push(back);
  const hello = await c.ready(15000);
  assert.equal(hello.user.id, login.user.id);
  assert.equal(c.state, 'open');
});

test('a liveness check finds a frozen server within livenessTimeoutMs (the page became visible / network changed)', async () => {
  const srv = await server();
  // the heartbeat alone would take 20 s here
  const a = await client(srv.url, 'alive-a', { heartbeatMs: 10000, livenessTimeoutMs: 1000 });
  const t0 = Date.now();
  const dead = nextEvent(a, 'state', (s) => s.state === 'reconnecting', 5000);
  process.kill(srv.proc.pid, 'SIGSTOP');
  try {
    a.checkAlive('test');
    const st = await dead;
    const took = Date.now() - t0;
    assert.ok(took < 2500, `dead socket seen after ${took} ms`);
    assert.match(String(st.reason), /no answer to the ping after test/);
  } finally {
    process.kill(srv.proc.pid, 'SIGCONT');
  }
  await waitFor(() => a.state === 'open', 10000, 'reconnected');
});

test('the outbox survives a reload: a send queued while the server is down is delivered once by the next client', async () => {
  const srv = await server();
  const storage = memStorage();
  const bob = await client(srv.url, 'outbox-bob');
  const a1 = await client(srv.url, 'outbox-alice', { storage });
  const conv = await a1.openDirect(bob.user.id);
  await a1.send(conv.id, 'before');
  await srv.stop('SIGKILL');
  await waitFor(() => a1.state !== 'open', 5000, 'a1 sees the crash');
  const p = a1.send(conv.id, 'typed while down');
  p.catch(() => {}); // the page goes away before it settles
  assert.equal(a1.outboxSize, 1);
  const saved = JSON.parse(storage.getItem('xindao:outbox:' + a1.user.id));
  assert.equal(saved.length, 1);
  assert.equal(saved[0].args.content, 'typed while down');
  const cmid = saved[0].args.cmid;
  a1.pause(); // the tab is reloaded: this client is gone, nothing was closed or flushed on purpose

  const back = await srv.restart({ signal: 'SIGKILL' });
  servers.push(back);
  const a2 = new XindaoClient({ url: back.url, WebSocket, lifecycle: false, storage, token: a1.token, user: a1.user });
  clients.push(a2);
  assert.deepEqual(
    a2.pendingSends().map((x) => [x.cmid, x.content, x.restored]),
    [[cmid, 'typed while down', true]],
    'shown as sending before the connection opens',
  );
  const delivered = nextEvent(a2, 'message', (m) => m.cmid === cmid, 15000);
  await a2.connect();
  const m = await delivered;
  assert.equal(m.content, 'typed while down');
  await waitFor(() => a2.outboxSize === 0, 5000, 'outbox empty');
  assert.deepEqual(JSON.parse(storage.getItem('xindao:outbox:' + a1.user.id)), []);
  const h = await a2.history(conv.id, { limit: 50 });
  assert.deepEqual(
    h.messages.map((x) => x.content),
    ['before', 'typed while down'],
    'exactly once',
  );
});

test('a send committed while its ack was lost is re-sent after the reload and still stored once (cmid dedup)', async () => {
  const srv = await server();
  const storage = memStorage();
  const a1 = await client(srv.url, 'inflight-a', { storage, heartbeatMs: 60000 });
  const room = await a1.createRoom('inflight-' + Date.now());
  process.kill(srv.proc.pid, 'SIGSTOP'); // frozen: the frame is written, no ack comes
  let stored;
  try {
    const p = a1.send(room.id, 'maybe committed');
    p.catch(() => {});
    await sleep(100);
    stored = JSON.parse(storage.getItem('xindao:outbox:' + a1.user.id));
    a1.pause(); // the tab goes away with the send in flight
  } finally {
    process.kill(srv.proc.pid, 'SIGCONT'); // the server reads the frame and commits it; the ack has nowhere to go
  }
  assert.equal(stored.length, 1);
  await sleep(300);
  const a2 = new XindaoClient({ url: srv.url, WebSocket, lifecycle: false, storage, token: a1.token, user: a1.user });
  clients.push(a2);
  await a2.connect();
  await waitFor(() => a2.outboxSize === 0, 10000, 'restored send acknowledged');
  const h = await a2.history(room.id, { limit: 50 });
  assert.deepEqual(
    h.messages.map((x) => [x.content, x.cmid]),
    [['maybe committed', stored[0].args.cmid]],
  );
});

test('length checks count as the server counts (code points), before anything is queued', async () => {
  const srv = await server({ args: ['--max-text-chars', '10'] });
  const a = await client(srv.url, 'len-a');
  const room = await a.createRoom('len-' + Date.now());
  assert.equal(a.limits.max_text_chars, 10);
  const emoji = '😀'.repeat(10); // 20 UTF-16 units, 10 characters
  assert.equal(textLength(emoji), 10);
  assert.equal(checkContent('text', emoji, a.limits), null);
  const ok = await a.send(room.id, emoji);
  assert.equal(ok.message.content, emoji, 'the server accepts exactly the limit');

  const long = '😀'.repeat(11);
  const local = await a.send(room.id, long).then(
    () => null,
    (e) => e,
  );
  assert.equal(local.code, 'message_too_long');
  assert.equal(local.chars, 11);
  assert.equal(local.max, 10);
  assert.equal(a.outboxSize, 0, 'a refused message never waits in the outbox');
  assert.equal(errorText(local, 'en'), 'The message is too long (11 / 10)');
  assert.equal(errorText(local, 'zh-CN'), '消息太长（11 / 10）');
  // the server, asked directly (bypassing the SDK's check), refuses the same text with the same code
  const remote = await a.request('send', { conversation_id: room.id, cmid: 'raw-long', kind: 'text', content: long }).then(
    () => null,
    (e) => e,
  );
  assert.equal(remote.code, 'message_too_long');
  // control characters: both refuse with invalid_message; newlines and tabs are fine
  for (const text of ['a\u0007b', '\u202Eevil', '   ']) {
    assert.equal(checkContent('text', text, a.limits).code, 'invalid_message', JSON.stringify(text));
    const r = await a.request('send', { conversation_id: room.id, cmid: 'raw-' + textLength(text), kind: 'text', content: text }).then(
      () => null,
      (e) => e,
    );
    assert.equal(r.code, 'invalid_message', 'server agrees on ' + JSON.stringify(text));
  }
  assert.equal(checkContent('text', 'a\nb\tc', a.limits), null);
});

test('server errors keep their code and read out in zh-CN and en; a message moves its sender read mark', async () => {
  const srv = await server();
  const alice = await client(srv.url, 'err-alice');
  const bob = await client(srv.url, 'err-bob');
  const room = await alice.createRoom('err-' + Date.now());
  await bob.joinRoom(room.id);
  const e = await bob.removeFromRoom(room.id, alice.user.id).then(
    () => null,
    (x) => x,
  );
  assert.equal(e.code, 'forbidden');
  assert.equal(errorText(e, 'zh-CN'), '没有权限执行此操作');
  assert.equal(errorText(e, 'en'), 'You are not allowed to do that');
  assert.equal(errorText({ code: 'something_new' }, 'en'), 'Something went wrong');
  assert.equal(pickLang('zh-TW'), 'zh-CN');
  assert.equal(pickLang('en-US'), 'en');

  // alice reads her room message; when bob replies, alice learns bob's read mark moved (no `read` push needed)
  await alice.send(room.id, 'one');
  const bobRead = nextEvent(alice, 'read', (r) => r.user_id === bob.user.id && r.conversation_id === room.id, 5000);
  await bob.send(room.id, 'two');
  const r = await bobRead;
  assert.equal(r.seq, 2);
});

test('a ban through the server API (close 4003) ends the session at once, with a readable reason, no reconnect', async () => {
  const srv = await server();
  let key;
  try {
    key = execFileSync(xindaoBin(), ['apikey', 'create', '--name', 'ban-test', '--scopes', 'users', '--data-dir', srv.dataDir], { encoding: 'utf8' }).trim().split(/\s+/).pop();
  } catch (_) {
    console.log('SKIPPED: this server has no `xindao apikey` (server API)');
    return;
  }
  const a = await client(srv.url, 'banned-a');
  const ended = nextEvent(a, 'session_ended', () => true, 5000);
  const r = await fetch(`${srv.url}/v1/server/users/${a.user.id}/ban`, { method: 'POST', headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' }, body: '{}' });
  assert.equal(r.status, 200, await r.text());
  const e = await ended;
  assert.equal(e.code, 4003);
  assert.equal(a.state, 'closed');
  const err = await a.send(1, 'x').then(
    () => null,
    (x) => x,
  );
  assert.equal(err && err.code, 'banned', 'a send after the ban fails at once');
  assert.equal(errorText(err, 'zh-CN'), '此账号已被封禁');
  await sleep(500);
  assert.equal(a.state, 'closed', 'did not reconnect');
});
