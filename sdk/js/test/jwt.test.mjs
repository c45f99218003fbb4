// Tokens from the app's backend: the SDK connects with a JWT it gets from options.getToken, asks for a new one
// before the token's exp, and asks again when the server refuses the one it has. The real server checks them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import WebSocket from 'ws';
import { startServer } from '../testlib/server.mjs';
import { waitFor } from '../testlib/util.mjs';
import { XindaoClient } from '../src/xindao.js';

const SECRET = 'sdk-test-secret-of-the-business-backend-000';
let srv;
const clients = [];

const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
// What a business backend does: an HS256 JWT over its own user id.
function mint(claims, secret = SECRET) {
  const head = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64(claims);
  return head + '.' + createHmac('sha256', secret).update(head).digest('base64url');
}
const now = () => Math.floor(Date.now() / 1000);

function client(opts) {
  const c = new XindaoClient({ url: srv.url, WebSocket, lifecycle: false, ...opts });
  clients.push(c);
  return c;
}

before(async () => {
  srv = await startServer({ args: ['--jwt-hs256-secret', SECRET] });
});
after(async () => {
  for (const c of clients) c.close();
  if (srv) {
    await srv.stop();
    srv.cleanup();
  }
});

test('connects with the token getToken gives, and asks again before its exp', async () => {
  let calls = 0;
  const c = client({
    tokenRefreshMarginMs: 30000,
    // expires 32 s from now: inside the 30 s margin after ~2 s, so the SDK asks for the next one
    getToken: async () => {
      calls++;
      return mint({ sub: 'sdk-1', name: 'Sdk One', exp: now() + 32 });
    },
  });
  const hello = await c.connect();
  assert.equal(hello.user.display_name, 'Sdk One');
  assert.equal(calls, 1);
  await waitFor(() => calls >= 2, 8000, 'a refresh before exp');
  assert.equal(c.state, 'open');
});

test('a refused token is replaced through getToken, once', async () => {
  let calls = 0;
  const c = client({
    token: mint({ sub: 'sdk-2', exp: now() + 600 }, 'not-the-secret-not-the-secret-not-the-sec'),
    backoffInitialMs: 50,
    getToken: async () => {
      calls++;
      return mint({ sub: 'sdk-2', exp: now() + 600 });
    },
  });
  const hello = await c.connect();
  assert.equal(hello.user.display_name, 'sdk-2');
  assert.equal(calls, 1);
});

test('a getToken that keeps giving refused tokens ends the session', async () => {
  const c = client({
    backoffInitialMs: 50,
    getToken: async () => mint({ sub: 'sdk-3', exp: now() - 300 }),
  });
  const ended = new Promise((resolve) => c.on('session_ended', resolve));
  await assert.rejects(c.connect(), (e) => e.code === 'session_ended');
  await ended;
});

test('an open socket takes the fresh token and stays open past the old exp', async () => {
  const exps = [now() + 3, now() + 600];
  let calls = 0;
  const c = client({
    tokenRefreshMarginMs: 2000,
    getToken: async () => mint({ sub: 'sdk-4', exp: exps[Math.min(calls++, 1)] }),
  });
  let opens = 0;
  c.on('open', () => opens++);
  const refreshed = new Promise((resolve) => c.on('token_refreshed', resolve));
  const hello = await c.connect();
  assert.equal(hello.expires_at, exps[0] * 1000, 'hello tells the token end');
  assert.deepEqual(await refreshed, { expires_at: exps[1] * 1000 });
  assert.equal(c.hello.expires_at, exps[1] * 1000);
  // past the first token's exp: the same socket still answers
  await new Promise((r) => setTimeout(r, Math.max(0, exps[0] * 1000 - Date.now()) + 1000));
  await c.ping();
  assert.equal(c.state, 'open');
  assert.equal(opens, 1, 'no reconnect');
  assert.equal(c.hello.connection_id, hello.connection_id);
});

test('a socket closed at its token exp (4001 token_expired) reconnects with a fresh token', async () => {
  let calls = 0;
  const exp = now() + 2;
  const c = client({
    // a token without getToken scheduling: nothing refreshes the socket before exp
    token: mint({ sub: 'sdk-5', exp }),
    tokenRefreshMarginMs: 0,
    backoffInitialMs: 50,
    getToken: async () => {
      calls++;
      return mint({ sub: 'sdk-5', exp: now() + 600 });
    },
  });
  const closes = [];
  c.on('state', (s) => s.state === 'reconnecting' && closes.push([s.code, s.reason]));
  const first = await c.connect();
  assert.equal(first.expires_at, exp * 1000);
  assert.equal(calls, 0);
  await waitFor(() => c.state === 'open' && c.hello.connection_id !== first.connection_id, 8000, 'a new connection');
  assert.deepEqual(closes, [[4001, 'token_expired']]);
  assert.equal(calls, 1);
  assert.equal(c.hello.user.id, first.user.id);
  assert.ok(c.hello.expires_at > Date.now() + 500000);
});
