// The mini-program adapter, driven through a wx shim (testlib/wx-shim.mjs) on top of `ws`, against the real
// server: the CommonJS build as the mini-program tool chain would require it, SocketTask semantics, the
// 5-socket platform limit, app hide/show, reconnect.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startServer } from '../testlib/server.mjs';
import { createWx } from '../testlib/wx-shim.mjs';
import { connectedClient, waitFor, seqsOf, range, sleep, nextEvent } from '../testlib/util.mjs';

const require = createRequire(import.meta.url);
const { XindaoClient } = require('../dist/xindao.cjs');

const servers = [];
const clients = [];
after(async () => {
  for (const c of clients) c.close();
  for (const s of servers) {
    await s.stop('SIGKILL');
    s.cleanup();
  }
});

async function wxClient(url, name, wx, opts = {}) {
  const c = new XindaoClient({ url, wx, backoffInitialMs: 100, backoffMaxMs: 1000, ...opts });
  clients.push(c);
  c.received = [];
  c.on('message', (m) => c.received.push(m));
  await c.loginDev(name); // through wx.request
  await c.connect(); // through wx.connectSocket
  return c;
}

test('the wx shim enforces 5 concurrent sockets and SocketTask callbacks', async () => {
  const srv = await startServer();
  servers.push(srv);
  const wx = createWx();
  const login = await new Promise((res, rej) =>
    wx.request({ url: srv.url + '/v1/login/dev', method: 'POST', data: { display_name: 'shim' }, header: { 'Content-Type': 'application/json' }, success: res, fail: rej }),
  );
  assert.equal(login.statusCode, 200);
  const ws = srv.url.replace('http', 'ws') + '/v1/ws';
  const tasks = [];
  for (let i = 0; i < 5; i++) {
    const t = wx.connectSocket({ url: ws, header: { Authorization: 'Bearer ' + login.data.token } });
    tasks.push(t);
    await new Promise((r) => t.onOpen(r));
  }
  const refused = await new Promise((res) => wx.connectSocket({ url: ws, fail: res, success: () => res(null) }));
  assert.match(refused.errMsg, /exceed max task count/);
  const sent = await new Promise((res) => tasks[0].send({ data: JSON.stringify({ id: 1, op: 'ping' }), success: res, fail: res }));
  assert.equal(sent.errMsg, 'sendSocketMessage:ok');
  const closed = new Promise((r) => tasks[0].onClose(r));
  tasks[0].close({ code: 1000 });
  // 1000 when the server echoes the close frame (RFC 6455 5.5.1); the server on main answers a client close by
  // dropping the TCP connection without echoing it, which ws (and browsers) report as 1006
  assert.ok([1000, 1006].includes((await closed).code));
  const late = await new Promise((res) => tasks[0].send({ data: 'x', success: res, fail: res }));
  assert.match(late.errMsg, /not connected/);
  const sixth = wx.connectSocket({ url: ws, header: { Authorization: 'Bearer ' + login.data.token } });
  await new Promise((r) => sixth.onOpen(r));
  for (const t of [...tasks.slice(1), sixth]) t.close({});
  await waitFor(() => wx.__stats.active === 0, 5000, 'all closed');
});

test('mini-program client (CJS build): login via wx.request, chat via SocketTask with the bearer header', async () => {
  const srv = await startServer();
  servers.push(srv);
  const wx = createWx();
  const a = await wxClient(srv.url, 'wx-alice', wx);
  assert.equal(a.state, 'open');
  assert.match(wx.__stats.headers[0].Authorization, /^Bearer /);
  const b = await connectedClient(srv.url, 'wx-bob');
  clients.push(b);
  const got = nextEvent(a, 'message');
  const ack = await b.sendTo(a.user.id, 'hi from the web');
  assert.equal((await got).id, ack.message.id);
  const r = await a.send(ack.message.conversation_id, 'hi from the mini-program');
  await waitFor(() => b.received.some((m) => m.id === r.message.id), 5000);
});

test('mini-program: crash + restart, reconnect storms stay within the socket limit, nothing lost', async () => {
  let srv = await startServer();
  servers.push(srv);
  const wx = createWx();
  const a = await wxClient(srv.url, 'wx-crash-a', wx, { backoffInitialMs: 20, backoffMaxMs: 50 });
  const b = await connectedClient(srv.url, 'wx-crash-b', { backoffInitialMs: 50, backoffMaxMs: 200 });
  clients.push(b);
  const room = await b.createRoom('wx-crash-' + Date.now());
  await a.joinRoom(room.id);
  for (let i = 1; i <= 5; i++) await b.send(room.id, 'b' + i);
  await waitFor(() => a.received.length === 5, 5000);
  await srv.kill();
  const queued = [a.send(room.id, 'a-offline-1'), a.send(room.id, 'a-offline-2')];
  await sleep(1500); // many fast reconnect attempts against a dead port
  const n = await srv.restart({ signal: 'SIGKILL' });
  servers.push(n);
  srv = n;
  await Promise.all(queued);
  await waitFor(() => b.state === 'open', 10000);
  await b.send(room.id, 'b-after');
  await waitFor(() => seqsOf(a.received, room.id).length === 8, 10000, 'a has all 8');
  assert.deepEqual(seqsOf(a.received, room.id), range(1, 8));
  assert.ok(wx.__stats.created > 3, 'several attempts were made: ' + wx.__stats.created);
  assert.equal(wx.__stats.refused, 0, 'never hit the 5-socket limit');
  assert.ok(wx.__stats.maxActive <= 2, 'at most one socket plus one closing: ' + wx.__stats.maxActive);
});

test('mini-program: onAppHide pauses after the grace period, onAppShow reconnects and resyncs', async () => {
  const srv = await startServer();
  servers.push(srv);
  const wx = createWx();
  const storage = { getItem: (k) => wx.getStorageSync(k), setItem: (k, v) => wx.setStorageSync(k, v) };
  const a = await wxClient(srv.url, 'wx-bg-a', wx, { backgroundGraceMs: 200, storage });
  const b = await connectedClient(srv.url, 'wx-bg-b');
  clients.push(b);
  const ack = await b.sendTo(a.user.id, 'one');
  const conv = ack.message.conversation_id;
  await waitFor(() => a.received.length === 1, 5000);

  wx.__hide();
  await sleep(50);
  assert.equal(a.state, 'open', 'still open during the grace period');
  wx.__show();
  await sleep(300);
  assert.equal(a.state, 'open', 'a short hide (e.g. chooseImage) does not disconnect');

  wx.__hide();
  await waitFor(() => a.state === 'closed' && a.paused, 2000, 'paused');
  await waitFor(() => wx.__stats.active === 0, 3000, 'socket released');
  for (let i = 2; i <= 6; i++) await b.send(conv, 'msg ' + i);
  const sent = a.send(conv, 'typed while in background'); // queued
  wx.__show();
  await sent;
  await waitFor(() => seqsOf(a.received, conv).length === 7, 5000, 'resynced');
  assert.deepEqual(seqsOf(a.received, conv), range(1, 7));
  // delivery cursors are persisted through the storage adapter
  const saved = JSON.parse(wx.getStorageSync('xindao:cursors:' + a.user.id) || '{}');
  await waitFor(() => JSON.parse(wx.getStorageSync('xindao:cursors:' + a.user.id) || '{}')[conv] === 7, 2000, 'cursor saved');
  assert.ok(saved);
});

test('mini-program: a new client instance with stored cursors gets only what it missed', async () => {
  const srv = await startServer();
  servers.push(srv);
  const wx = createWx();
  const storage = { getItem: (k) => wx.getStorageSync(k), setItem: (k, v) => wx.setStorageSync(k, v) };
  const a1 = await wxClient(srv.url, 'wx-restart-a', wx, { storage });
  const b = await connectedClient(srv.url, 'wx-restart-b');
  clients.push(b);
  const conv = (await b.sendTo(a1.user.id, 'm1')).message.conversation_id;
  await b.send(conv, 'm2');
  await waitFor(() => a1.received.length === 2, 5000);
  a1.close(); // the app is destroyed (cursors flushed to storage)
  await b.send(conv, 'm3');
  await b.send(conv, 'm4');
  const a2 = new XindaoClient({ url: srv.url, wx, storage, token: a1.token });
  clients.push(a2);
  const got = [];
  a2.on('message', (m) => got.push(m.content));
  await a2.connect();
  await waitFor(() => got.length === 2, 5000, 'missed messages');
  await sleep(200);
  assert.deepEqual(got, ['m3', 'm4']);
});
