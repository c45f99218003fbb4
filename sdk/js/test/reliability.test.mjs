// Reliability against the real server: crash + restart with no loss and no duplicates, outbox flush and
// bound, exactly-once resend of in-flight sends, heartbeat timeout, gap fill, close codes 1001 and 4001.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../testlib/server.mjs';
import { connectedClient, nextEvent, waitFor, seqsOf, range, sleep } from '../testlib/util.mjs';

const servers = [];
const clients = [];
async function server(opts) {
  const s = await startServer(opts);
  servers.push(s);
  return s;
}
async function client(url, name, opts) {
  const c = await connectedClient(url, name, { backoffInitialMs: 100, backoffMaxMs: 1000, ...opts });
  clients.push(c);
  return c;
}
after(async () => {
  for (const c of clients) c.close();
  for (const s of servers) {
    await s.stop('SIGKILL');
    s.cleanup();
  }
});
// restart keeps the handle list current
async function restart(s, signal) {
  const n = await s.restart({ signal });
  servers.push(n);
  return n;
}

test('server killed (SIGKILL) and restarted: outbox flushed, every message delivered once, in order', async () => {
  let srv = await server();
  const a = await client(srv.url, 'crash-a');
  const b = await client(srv.url, 'crash-b');
  const room = await a.createRoom('crash-' + Date.now());
  await b.joinRoom(room.id);
  for (let i = 1; i <= 20; i++) await a.send(room.id, 'before ' + i);
  await waitFor(() => seqsOf(b.received, room.id).length === 20, 5000, 'b got 20');

  await srv.kill();
  await waitFor(() => a.state === 'reconnecting' && b.state === 'reconnecting', 5000, 'both reconnecting');
  // sends while the server is down wait in the outbox
  const queued = [];
  for (let i = 1; i <= 10; i++) queued.push(a.send(room.id, 'during ' + i));
  assert.equal(a.outboxSize, 10);

  srv = await restart(srv, 'SIGKILL');
  const acks = await Promise.all(queued);
  assert.deepEqual(acks.map((r) => r.message.seq), range(21, 30), 'outbox flushed in order');
  assert.equal(a.outboxSize, 0);
  // a third user writes after the restart, while b may still be catching up
  const c = await client(srv.url, 'crash-c');
  await c.joinRoom(room.id);
  for (let i = 1; i <= 5; i++) await c.send(room.id, 'after ' + i);

  await waitFor(() => seqsOf(b.received, room.id).length >= 35, 15000, 'b caught up to 35');
  await sleep(300);
  assert.deepEqual(seqsOf(b.received, room.id), range(1, 35), 'b: no loss, no duplicate, in order');
  assert.deepEqual(seqsOf(a.received, room.id), range(1, 35), 'a: no loss, no duplicate, in order');
  assert.ok(b.states.includes('reconnecting'));
  assert.equal(b.state, 'open');
  const h = await b.history(room.id, { limit: 100 });
  assert.deepEqual(h.messages.map((m) => m.seq), range(1, 35), 'the server stored each message once');
});

test('messages sent while a client was offline arrive by sync (many pages, several conversations)', async () => {
  const srv = await server();
  const a = await client(srv.url, 'sync-a');
  const b = await client(srv.url, 'sync-b', { syncLimit: 7 });
  const room = await a.createRoom('sync-' + Date.now());
  await b.joinRoom(room.id);
  await a.send(room.id, 'first');
  await a.sendTo(b.user.id, 'dm first');
  await waitFor(() => b.received.length === 2, 5000, 'b got 2');
  const dm = b.received[1].conversation_id;

  b.pause();
  assert.equal(b.state, 'closed');
  for (let i = 2; i <= 30; i++) await a.send(room.id, 'r' + i);
  for (let i = 2; i <= 12; i++) await a.send(dm, 'd' + i);
  // a brand-new conversation created while b is away
  const c = await client(srv.url, 'sync-c');
  await c.sendTo(b.user.id, 'hi from c');
  b.resume();
  await waitFor(() => b.received.length === 2 + 29 + 11 + 1, 10000, 'b resynced everything');
  assert.deepEqual(seqsOf(b.received, room.id), range(1, 30));
  assert.deepEqual(seqsOf(b.received, dm), range(1, 12));
  assert.equal(b.received.filter((m) => m.sender_id === c.user.id).length, 1);
});

test('graceful shutdown (1001) reconnects; outbox is bounded', async () => {
  let srv = await server();
  const a = await client(srv.url, 'term-a', { outboxMax: 3 });
  const room = await a.createRoom('term-' + Date.now());
  const closed = nextEvent(a, 'state', (s) => s.state === 'reconnecting');
  await srv.stop('SIGTERM');
  const st = await closed;
  assert.ok([1001, 1006].includes(st.code), 'close code ' + st.code);
  const p = [a.send(room.id, 'q1'), a.send(room.id, 'q2'), a.send(room.id, 'q3')];
  await assert.rejects(a.send(room.id, 'q4'), (e) => e.code === 'outbox_full');
  srv = await restart(srv, 'SIGTERM');
  const acks = await Promise.all(p);
  assert.deepEqual(acks.map((r) => r.message.content), ['q1', 'q2', 'q3']);
});

test('sends in flight when the server crashes are resent with the same cmid: exactly once', async () => {
  let srv = await server();
  const a = await client(srv.url, 'inflight-a');
  const room = await a.createRoom('inflight-' + Date.now());
  const sends = [];
  for (let i = 1; i <= 40; i++) sends.push(a.send(room.id, 'x' + i, { timeoutMs: 30000 }));
  await sleep(5); // some are committed, some in flight, some not yet written
  await srv.kill();
  srv = await restart(srv, 'SIGKILL');
  const acks = await Promise.all(sends);
  const h = await a.history(room.id, { limit: 200 });
  const contents = h.messages.map((m) => m.content);
  assert.equal(contents.length, 40, 'no duplicate, no loss: ' + contents.join(','));
  assert.equal(new Set(contents).size, 40);
  assert.equal(new Set(h.messages.map((m) => m.cmid)).size, 40);
  for (const r of acks) assert.ok(h.messages.some((m) => m.id === r.message.id));
  await waitFor(() => seqsOf(a.received, room.id).length === 40, 5000, 'a delivered all');
  assert.deepEqual(seqsOf(a.received, room.id), range(1, 40));
});

test('heartbeat: a silently dead socket (server frozen with SIGSTOP) is detected and replaced', async () => {
  const srv = await server();
  const a = await client(srv.url, 'hb-a', { heartbeatMs: 200, heartbeatTimeoutMs: 800, connectTimeoutMs: 1000, requestTimeoutMs: 2000 });
  const b = await client(srv.url, 'hb-b');
  const room = await a.createRoom('hb-' + Date.now());
  await b.joinRoom(room.id);
  const t0 = Date.now();
  const dead = nextEvent(a, 'state', (s) => s.state === 'reconnecting', 5000);
  process.kill(srv.proc.pid, 'SIGSTOP');
  try {
    const st = await dead;
    const took = Date.now() - t0;
    assert.ok(took < 2500, `dead socket detected after ${took} ms`);
    assert.match(String(st.reason), /heartbeat/);
  } finally {
    process.kill(srv.proc.pid, 'SIGCONT');
  }
  // b talks meanwhile (its messages were queued in the frozen server's socket buffers or sent after)
  await b.send(room.id, 'while a was cut off');
  await waitFor(() => a.state === 'open', 10000, 'a reconnected');
  await waitFor(() => seqsOf(a.received, room.id).length === 1, 5000, 'a got the message');
  assert.deepEqual(seqsOf(a.received, room.id), [1]);
});

test('a push after a gap makes the SDK fetch the missing messages first', async () => {
  const srv = await server();
  const a = await client(srv.url, 'gap-a');
  const b = await client(srv.url, 'gap-b');
  const room = await a.createRoom('gap-' + Date.now());
  await b.joinRoom(room.id);
  await a.send(room.id, 'm1');
  await waitFor(() => b.received.length === 1, 5000);
  // lose the pushes of seq 2 and 3 on b's socket (as if they were dropped)
  const orig = b._onText.bind(b);
  b._onText = (t) => {
    const f = JSON.parse(t);
    if (f.event === 'message' && (f.data.seq === 2 || f.data.seq === 3)) return;
    orig(t);
  };
  const statesBefore = b.states.length;
  await a.send(room.id, 'm2');
  await a.send(room.id, 'm3');
  await sleep(200);
  const early = seqsOf(b.received, room.id);
  if (b.states.length === statesBefore) {
    assert.deepEqual(early, [1], 'nothing delivered out of order');
  } else {
    // b reconnected meanwhile (its heartbeat timed out on a loaded machine): its resync may deliver what was
    // committed by then, in order
    assert.deepEqual(early, range(1, early.length), 'in order after a reconnect: ' + b.states.join(','));
  }
  await a.send(room.id, 'm4');
  await waitFor(() => b.received.length === 4, 5000, 'gap filled');
  assert.deepEqual(seqsOf(b.received, room.id), [1, 2, 3, 4]);
  assert.deepEqual(b.received.map((m) => m.content), ['m1', 'm2', 'm3', 'm4']);
  // duplicates (a push replayed) are dropped
  orig(JSON.stringify({ event: 'message', data: b.received[2] }));
  await sleep(50);
  assert.equal(b.received.length, 4);
});

test('logout elsewhere closes with 4001: session_ended, no reconnect', async () => {
  const srv = await server();
  const a = await client(srv.url, 'logout-a');
  const ended = nextEvent(a, 'session_ended');
  const r = await fetch(srv.url + '/v1/logout', { method: 'POST', headers: { Authorization: 'Bearer ' + a.token } });
  assert.equal(r.status, 200);
  const e = await ended;
  assert.equal(e.code, 4001);
  assert.equal(a.state, 'closed');
  await sleep(500);
  assert.equal(a.state, 'closed', 'did not reconnect');
  await assert.rejects(a.send(1, 'x'), (err) => err.code === 'closed' || err.code === 'session_ended' || err.code === 'timeout' || err.code === 'not_connected');
});

test('a revoked token found at reconnect (upgrade refused with 401) ends the session', async () => {
  const srv = await server();
  const a = await client(srv.url, 'revoked-a');
  const token = a.token;
  a.pause();
  const r = await fetch(srv.url + '/v1/logout', { method: 'POST', headers: { Authorization: 'Bearer ' + token } });
  assert.equal(r.status, 200);
  const ended = nextEvent(a, 'session_ended', () => true, 5000);
  a.resume();
  await ended;
  assert.equal(a.state, 'closed');
});

test('a large outbox is paced under the server rate limit after a restart (no rate_limited, no 4008)', async () => {
  let srv = await server();
  const a = await client(srv.url, 'burst-a', { sendTimeoutMs: 60000 });
  const room = await a.createRoom('burst-' + Date.now());
  const limits = a.hello.limits;
  const n = Math.min(150, 3 * limits.rate_burst + 30);
  await srv.kill();
  await waitFor(() => a.state === 'reconnecting', 5000);
  const sends = [];
  for (let i = 1; i <= n; i++) sends.push(a.send(room.id, 'burst ' + i));
  srv = await restart(srv, 'SIGKILL');
  await waitFor(() => a.state === 'open', 15000, 'reconnected');
  const closes = [];
  a.on('state', (s) => s.state === 'reconnecting' && closes.push(s.code));
  const acks = await Promise.all(sends);
  assert.deepEqual(acks.map((r) => r.message.seq), range(1, n), 'in order, each once');
  assert.deepEqual(closes, [], 'the socket was never closed (no 4008 flood close)');
  assert.equal(await rateLimited(srv), 0, 'no request was refused with rate_limited');
});

// The server charges its rate limit when it processes a request, not when the client wrote it. Freeze the server
// right after the hello while a large outbox goes out: when it wakes up it reads the whole backlog back to back.
// A pacer that refilled its bucket during the freeze got requests refused with rate_limited, and the retries
// committed after later sends (acks 1..39, then 149, 150, then 40, ...).
test('a server that stalls right after the hello still gets the outbox in call order, under its rate limit', async () => {
  const srv = await server();
  const a = await client(srv.url, 'stall-a', { sendTimeoutMs: 60000 });
  const room = await a.createRoom('stall-' + Date.now());
  const n = Math.min(150, 3 * a.hello.limits.rate_burst + 30);
  a.pause();
  const sends = [];
  for (let i = 1; i <= n; i++) sends.push(a.send(room.id, 'stall ' + i));
  const closes = [];
  let frozen = false;
  a.on('state', (s) => {
    if (s.state === 'reconnecting') closes.push(s.code);
    // 'open' is emitted before the outbox is flushed: the whole first burst waits in the socket
    if (s.state === 'open' && !frozen) {
      frozen = true;
      process.kill(srv.proc.pid, 'SIGSTOP');
      setTimeout(() => process.kill(srv.proc.pid, 'SIGCONT'), 1500);
    }
  });
  a.resume();
  const acks = await Promise.all(sends);
  assert.ok(frozen);
  assert.deepEqual(acks.map((r) => r.message.seq), range(1, n), 'committed in call order, each once');
  assert.deepEqual(closes, [], 'the socket was never closed');
  assert.equal(await rateLimited(srv), 0, 'no request was refused with rate_limited');
});

async function rateLimited(srv) {
  const text = await (await fetch(srv.adminUrl + '/metrics')).text();
  let total = 0;
  for (const m of text.matchAll(/^\w*requests_total\{[^}]*outcome="rate_limited"[^}]*\} (\d+)/gm)) total += Number(m[1]);
  return total;
}
