// Two tabs of one user against the real server, sharing one storage: each keeps its own stored outbox (neither
// re-sends the other's), a reloaded tab gets back only its own, and a closed tab's unsent messages are adopted
// by another tab once its Web Lock is released (and not while it is held), then delivered once.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { XindaoClient } from '../src/xindao.js';
import { startServer } from '../testlib/server.mjs';
import { connectedClient, nextEvent, waitFor, sleep } from '../testlib/util.mjs';

const servers = [];
const clients = [];
async function server() {
  const s = await startServer();
  servers.push(s);
  return s;
}
function memStorage() {
  const m = new Map();
  return { map: m, getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)) };
}
// A second client (tab) of the user `first` is logged in as, on the same storage.
async function tab(url, first, opts) {
  const c = new XindaoClient({ url, WebSocket, lifecycle: false, token: first.token, user: first.user, backoffInitialMs: 100, backoffMaxMs: 500, ...opts });
  clients.push(c);
  await c.connect();
  return c;
}
// Web Locks as a browser keeps them: `crash(name)` drops a lock the way a closed page's locks are dropped.
function fakeLocks() {
  const held = new Map(); // name -> release()
  return {
    held,
    request(name, options, callback) {
      if (held.has(name)) return Promise.resolve(callback(null));
      let release;
      const dropped = new Promise((r) => (release = r));
      held.set(name, release);
      return Promise.race([Promise.resolve(callback({ name })), dropped]).finally(() => {
        if (held.get(name) === release) held.delete(name);
      });
    },
    crash(name) {
      const release = held.get(name);
      held.delete(name);
      if (release) release();
    },
  };
}
const contents = (c) => c.pendingSends().map((x) => x.content);
after(async () => {
  for (const c of clients) c.close();
  for (const s of servers) {
    await s.stop('SIGKILL');
    s.cleanup();
  }
});

test('two tabs of one user keep their own stored outbox: neither re-sends the other`s', async () => {
  const srv = await server();
  const storage = memStorage();
  const bob = await connectedClient(srv.url, 'tabs-bob');
  clients.push(bob);
  const a = await connectedClient(srv.url, 'tabs-alice', { storage, tabId: 'A', backoffInitialMs: 100, backoffMaxMs: 500 });
  clients.push(a);
  const b = await tab(srv.url, a, { storage, tabId: 'B' });
  const conv = await a.openDirect(bob.user.id);
  await srv.stop('SIGKILL');
  await waitFor(() => a.state !== 'open' && b.state !== 'open', 5000, 'both tabs see the crash');
  a.send(conv.id, 'from A').catch(() => {});
  b.send(conv.id, 'from B').catch(() => {});
  const stored = (t) => JSON.parse(storage.getItem(`xindao:outbox:${a.user.id}:${t}`)).map((x) => x.args.content);
  assert.deepEqual(stored('A'), ['from A']);
  assert.deepEqual(stored('B'), ['from B']);

  // tab B is reloaded: the new client gets back B's list only, and A's stays A's
  b.pause();
  const b2 = new XindaoClient({ url: srv.url, WebSocket, lifecycle: false, storage, token: a.token, user: a.user, tabId: 'B', backoffInitialMs: 100, backoffMaxMs: 500 });
  clients.push(b2);
  assert.deepEqual(contents(b2), ['from B']);
  assert.deepEqual(contents(a), ['from A']);
  await sleep(200);
  assert.deepEqual(contents(b2), ['from B'], 'a live tab`s list is not adopted');

  const back = await srv.restart({ signal: 'SIGKILL' });
  servers.push(back);
  const connected = b2.connect();
  await waitFor(() => a.outboxSize === 0 && b2.outboxSize === 0, 15000, 'both outboxes sent');
  await connected;
  const h = await a.history(conv.id, { limit: 50 });
  assert.deepEqual(h.messages.map((m) => m.content).sort(), ['from A', 'from B'], 'each once');
  assert.deepEqual(stored('A'), []);
  assert.deepEqual(stored('B'), []);
});

test('a closed tab`s unsent messages are adopted by another tab once its lock is released, and sent once', async () => {
  const srv = await server();
  const storage = memStorage();
  const locks = fakeLocks();
  const opts = { storage, locks, outboxOrphanMs: 300 };
  const bob = await connectedClient(srv.url, 'orphan-bob');
  clients.push(bob);
  const a = await connectedClient(srv.url, 'orphan-alice', { ...opts, tabId: 'A', backoffInitialMs: 100, backoffMaxMs: 500 });
  clients.push(a);
  const b = await tab(srv.url, a, { ...opts, tabId: 'B' });
  const keyA = `xindao:outbox:${a.user.id}:A`;
  assert.ok(locks.held.has(keyA) && locks.held.has(`xindao:outbox:${a.user.id}:B`), 'each tab holds its lock');
  const conv = await a.openDirect(bob.user.id);
  await srv.stop('SIGKILL');
  await waitFor(() => a.state !== 'open' && b.state !== 'open', 5000, 'both tabs see the crash');
  a.send(conv.id, 'left behind').catch(() => {});
  await sleep(400); // longer than a look for orphans: tab A still holds its lock
  assert.deepEqual(contents(b), [], 'a live tab`s list is not adopted');

  a.pause(); // tab A is closed: it runs nothing more, and the browser drops its lock
  locks.crash(keyA);
  await waitFor(() => contents(b).includes('left behind'), 5000, 'tab B adopts tab A`s list');
  assert.deepEqual(JSON.parse(storage.getItem(keyA)), [], 'the adopted list is emptied');
  assert.deepEqual(JSON.parse(storage.getItem(`xindao:outbox:${a.user.id}:B`)).map((x) => x.args.content), ['left behind']);

  const back = await srv.restart({ signal: 'SIGKILL' });
  servers.push(back);
  const delivered = nextEvent(bob, 'message', (m) => m.content === 'left behind', 15000);
  await delivered;
  await waitFor(() => b.outboxSize === 0, 5000, 'tab B`s outbox empty');
  const h = await b.history(conv.id, { limit: 50 });
  assert.deepEqual(h.messages.map((m) => m.content), ['left behind'], 'exactly once');
});

test('a tab adopts the single stored outbox an earlier SDK version kept', async () => {
  const srv = await server();
  const storage = memStorage();
  const bob = await connectedClient(srv.url, 'legacy-bob');
  clients.push(bob);
  const login = await connectedClient(srv.url, 'legacy-alice');
  clients.push(login);
  const conv = await login.openDirect(bob.user.id);
  const args = { conversation_id: conv.id, cmid: 'legacy-cmid-1', kind: 'text', content: 'kept by 0.1' };
  storage.setItem(`xindao:outbox:${login.user.id}`, JSON.stringify([{ args, ts: Date.now() }]));
  const delivered = nextEvent(bob, 'message', (m) => m.content === 'kept by 0.1', 15000);
  const t = await tab(srv.url, login, { storage, tabId: 'T' });
  await delivered;
  await waitFor(() => t.outboxSize === 0, 5000, 'sent');
  assert.deepEqual(JSON.parse(storage.getItem(`xindao:outbox:${login.user.id}`)), []);
});
