// Round trips against the real server: the client times its pings and sends (`rtt`), reports the counts as
// `client_stats`, and the server's /metrics shows them under the client's kind and network; with
// statsIntervalMs: 0 nothing is reported.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../testlib/server.mjs';
import { connectedClient, waitFor } from '../testlib/util.mjs';
import { RTT_BOUNDS_MS } from '../src/xindao.js';

let srv;
const clients = [];
before(async () => {
  srv = await startServer();
});
after(async () => {
  for (const c of clients) c.close();
  if (srv) {
    await srv.stop();
    srv.cleanup();
  }
});

async function rttCount(kind) {
  const text = await (await fetch(srv.adminUrl + '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`xindao_client_rtt_seconds_count{kind="${kind}",network="127.0.0.0/16"} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

test('pings and sends are timed and reported as client_stats', async () => {
  assert.equal(RTT_BOUNDS_MS.length, 10);
  const before = await rttCount('browser');
  const a = await connectedClient(srv.url, 'rtt-a', { statsIntervalMs: 400, heartbeatMs: 200, clientKind: 'browser' });
  clients.push(a);
  const seen = [];
  a.on('rtt', (ms) => seen.push(ms));
  assert.equal(a.rtt, null);
  await a.ping();
  const room = await a.createRoom('rtt-room');
  await a.send(room.id, 'timed');
  assert.ok(seen.length >= 2, 'a ping and a send were timed: ' + seen);
  assert.ok(a.rtt >= 0 && a.rtt < 10000, String(a.rtt));
  await waitFor(async () => (await rttCount('browser')) >= before + 2, 5000, 'the report in /metrics');
});

test('statsIntervalMs: 0 reports nothing', async () => {
  const before = await rttCount('node');
  const b = await connectedClient(srv.url, 'rtt-b', { statsIntervalMs: 0, heartbeatMs: 200 });
  clients.push(b);
  await b.ping();
  await new Promise((r) => setTimeout(r, 800));
  assert.ok(b.rtt != null);
  assert.equal(await rttCount('node'), before);
});
