// How late after a JWT's exp the server closes its socket (4001 token_expired): N sockets, one after another,
// each with a token whose exp is 2 s ahead; prints each close's lateness after exp.
// Usage: XINDAO_BIN=target/release/xindao node bench/token-expiry.mjs [N]   (needs sdk/js's `npm ci` for ws)
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { startServer } from '../sdk/js/testlib/server.mjs';

const WebSocket = createRequire(new URL('../sdk/js/package.json', import.meta.url))('ws');
const SECRET = 'bench-secret-of-the-business-backend-000000';
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const mint = (claims) => {
  const head = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64(claims);
  return head + '.' + createHmac('sha256', SECRET).update(head).digest('base64url');
};

const n = Number(process.argv[2] || 5);
const srv = await startServer({ args: ['--jwt-hs256-secret', SECRET] });
const late = [];
for (let i = 0; i < n; i++) {
  const exp = Math.floor(Date.now() / 1000) + 2;
  const ws = new WebSocket(srv.url.replace('http', 'ws') + '/v1/ws?token=' + mint({ sub: 'expiry-' + i, exp }));
  const [code, reason, at] = await new Promise((resolve) => ws.on('close', (c, why) => resolve([c, String(why), Date.now()])));
  late.push(at - exp * 1000);
  console.log(`${code} ${reason}: closed ${at - exp * 1000} ms after exp`);
}
console.log(`lateness after exp: min ${Math.min(...late)} ms, max ${Math.max(...late)} ms (${n} sockets)`);
await srv.stop();
srv.cleanup();
