// A webhook receiver for bench/webhooks.sh: answers every POST with 204 at once and records, per event of its
// batch (`{"events": [...]}`), the lag from the event's commit (`created_at`) to its arrival, and repeats (same
// event id). No dependencies.
//
//   node bench/webhook-receiver.mjs [PORT]   # prints "listening PORT"; GET /stats -> JSON, GET /reset clears
import http from 'node:http';

let lags = [];
let seen = new Set();
let dups = 0;
let bodies = 0;
let events = 0;

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    const sorted = Float64Array.from(lags).sort();
    const q = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : 0);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ posts: bodies, received: events, unique: seen.size, dups, lag_ms: { p50: q(0.5), p99: q(0.99), max: sorted.length ? sorted[sorted.length - 1] : 0 } }));
    return;
  }
  if (req.method === 'GET' && req.url === '/reset') {
    lags = []; seen = new Set(); dups = 0; bodies = 0; events = 0;
    res.end('ok');
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const now = Date.now();
    bodies += 1;
    try {
      for (const event of JSON.parse(Buffer.concat(chunks).toString('utf8')).events) {
        events += 1;
        if (seen.has(event.id)) dups += 1; else seen.add(event.id);
        if (typeof event.created_at === 'number') lags.push(now - event.created_at);
      }
    } catch { /* a malformed body counts as a POST with no events */ }
    res.statusCode = 204;
    res.end();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
