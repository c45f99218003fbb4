// A business backend for xindao, in one file with no dependencies (node:http, node:crypto, fetch): what a shop's
// server does next to xindao. It mints the connection tokens of its own users (HS256 JWTs, the secret shared with
// xindao's `jwt_hs256_secret`), receives xindao's webhooks (batches of events: verifying X-Xindao-Signature over
// the raw body and dropping repeated event ids), and answers a chat message containing "/order <id>" with a system message sent
// back through the server API. README.md says how to run it; crates/xindao/tests/it/example_backend.rs runs it
// against the real xindao binary.

import http from 'node:http';
import crypto from 'node:crypto';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`set ${name} (see README.md)`);
  return value;
};

const config = {
  port: Number(env('PORT', '3000')),
  host: env('HOST', '127.0.0.1'),
  xindaoUrl: env('XINDAO_URL', 'http://127.0.0.1:8080').replace(/\/$/, ''),
  apiKey: env('XINDAO_API_KEY'),
  jwtSecret: env('XINDAO_JWT_SECRET'),
  webhookSecret: env('XINDAO_WEBHOOK_SECRET'),
  tokenTtlSec: Number(env('TOKEN_TTL_SEC', '3600')),
};

const MAX_BODY = 256 * 1024;
const SIGNATURE_TOLERANCE_SEC = 300;

const b64url = (data) => Buffer.from(data).toString('base64url');

/** An HS256 JWT for one of the shop's users: `sub` is the shop's own id, xindao maps it to its user. */
function mintToken(secret, { sub, name, ttlSec }) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = { sub, exp: now + ttlSec, iat: now };
  if (name) claims.name = name;
  const payload = b64url(JSON.stringify(claims));
  const signature = crypto.createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return { token: `${header}.${payload}.${signature}`, expires_at: claims.exp };
}

/** Checks `X-Xindao-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>` (docs/webhooks.md). */
function verifySignature(secret, header, raw, toleranceSec = SIGNATURE_TOLERANCE_SEC) {
  const parts = Object.fromEntries(
    String(header || '')
      .split(',')
      .map((p) => p.split('=', 2)),
  );
  const t = Number(parts.t);
  if (!Number.isInteger(t) || !parts.v1 || Math.abs(Date.now() / 1000 - t) > toleranceSec) return false;
  const expected = crypto.createHmac('sha256', secret).update(`${t}.`).update(raw).digest('hex');
  const a = Buffer.from(expected);
  const b = Buffer.from(parts.v1);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

/** Delivery ids already handled (webhooks are at least once): the last 10,000. */
const seen = new Set();
function firstTime(id) {
  if (seen.has(id)) return false;
  seen.add(id);
  if (seen.size > 10_000) seen.delete(seen.values().next().value);
  return true;
}

/** A call of xindao's server API; throws on anything but 2xx (the webhook then answers 502 and is retried). */
async function serverApi(method, path, body) {
  const response = await fetch(`${config.xindaoUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${config.apiKey}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(answer)}`);
  return answer;
}

/** What the shop does with an event. Only `message.created` with "/order <id>" in its text is acted on. */
async function handle(delivery) {
  if (delivery.event !== 'message.created') return;
  const message = delivery.data;
  if (message.kind !== 'text' || typeof message.content !== 'string') return;
  const match = /\/order\s+([A-Za-z0-9-]{1,32})/.exec(message.content);
  if (!match) return;
  // The cmid is derived from the message, so a retried webhook sends nothing twice.
  await serverApi('POST', '/v1/server/messages', {
    conversation_id: message.conversation_id,
    cmid: `order-reply-${message.id}`,
    content: `Order ${match[1]}: paid, packing now.`,
  });
}

function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    request.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error('body too large'), { status: 413 }));
        request.destroy();
      } else chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

function send(response, status, body) {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(body === undefined ? '' : JSON.stringify(body));
}

async function route(request, response) {
  const url = new URL(request.url, 'http://backend');
  if (request.method === 'POST' && url.pathname === '/token') {
    // Stands in for the shop's own login: a real backend mints a token for the user its session says is
    // logged in, never for whatever id a request names.
    const raw = await readBody(request);
    let body;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      return send(response, 400, { error: 'invalid JSON' });
    }
    const sub = body?.user;
    if (typeof sub !== 'string' || sub.length < 1 || sub.length > 128) {
      return send(response, 400, { error: '`user` is 1..=128 characters' });
    }
    const name = typeof body.name === 'string' ? body.name : undefined;
    return send(response, 200, mintToken(config.jwtSecret, { sub, name, ttlSec: config.tokenTtlSec }));
  }
  if (request.method === 'POST' && url.pathname === '/xindao/events') {
    const raw = await readBody(request);
    if (!verifySignature(config.webhookSecret, request.headers['x-xindao-signature'], raw)) {
      return send(response, 401, { error: 'bad signature' });
    }
    let events;
    try {
      events = JSON.parse(raw.toString('utf8')).events;
    } catch {
      return send(response, 400, { error: 'invalid JSON' });
    }
    if (!Array.isArray(events)) return send(response, 400, { error: '`events` is a list' });
    // In order: a conversation's events are in commit order. A failure answers 502 and xindao sends the
    // whole batch again; the events handled before it are dropped then as repeats.
    for (const delivery of events) {
      if (!firstTime(String(delivery.id))) continue;
      try {
        await handle(delivery);
      } catch (error) {
        seen.delete(String(delivery.id)); // not handled: let the retry through
        console.error(`delivery ${delivery.id}: ${error.message}`);
        return send(response, 502, { error: 'not handled, retry' });
      }
    }
    return send(response, 204);
  }
  return send(response, 404, { error: 'not found' });
}

const server = http.createServer((request, response) => {
  route(request, response).catch((error) => send(response, error.status || 500, { error: error.message }));
});
server.listen(config.port, config.host, () => {
  const { address, port } = server.address();
  console.log(`listening http://${address}:${port}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
