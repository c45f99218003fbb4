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
