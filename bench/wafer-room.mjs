// A Wafer room of N clients through the Wafer wire format, next to the same room on xindao's own protocol
// (issue #19, "Must show"). For each scenario a fresh release xindao (same config: standalone Wafer mode on
// /weapp with a fake WeChat code2Session in this process, development login on, the harness limits lifted as
// xindao-bench lifts them), N clients join one live room and stay, then a few senders post at fixed rates
// (messages/s for the whole room); every client counts what it receives. Reported per scenario and rate:
// deliveries, loss (expected vs received), deliveries per server CPU-second (utime+stime of the server from
// /proc over the phase and its drain), and server RSS per connection once all are in.
//
//   node bench/wafer-room.mjs [--clients 1000] [--senders 2] [--rates 2,10] [--secs 10] [--runs 1] [--only wafer|xindao]
//
// Needs `npm ci` in tests/wafer (for `ws`) and target/release/xindao (or XINDAO_BIN). Wafer echoes a `speak`
// to every tunnel, the sender's too (N per message); xindao pushes `message` to every connection but the
// sender's, which gets the reply instead (N-1 pushes per message): "expected" follows each protocol.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import crypto from 'node:crypto';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const WebSocket = createRequire(join(repo, 'tests/wafer/package.json'))('ws');

const opt = { clients: 1000, senders: 2, rates: '2,10', secs: 10, runs: 1, drain: 3 };
for (let i = 2; i < process.argv.length; i += 2) opt[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const N = Number(opt.clients);
const SENDERS = Number(opt.senders);
const RATES = String(opt.rates).split(',').map(Number);
const SECS = Number(opt.secs);
const DRAIN = Number(opt.drain);
const BIN = resolve(process.env.XINDAO_BIN || join(repo, 'target/release/xindao'));
const APPID = 'wxBENCH000000001';
const SECRET = 'bench-secret';
const PREFIX = '/weapp';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TICK = 100; // USER_HZ on Linux

// A fake code2Session: code `c:<openid>:<n>` -> that openid and a fresh 16-byte session key.
function fakeWeChat() {
  const srv = http.createServer((req, res) => {
    const code = new URL(req.url, 'http://x').searchParams.get('js_code') || '';
    const [c, openid] = code.split(':');
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(JSON.stringify(c === 'c' && openid ? { openid, session_key: crypto.randomBytes(16).toString('base64') } : { errcode: 40029, errmsg: 'invalid code' }));
  });
  // Longer than the server's idle HTTP connections live: Node's 5 s default races a reused idle connection (a 502).
  srv.keepAliveTimeout = 600000;
  return new Promise((r) => srv.listen(0, '127.0.0.1', () => r({ url: `http://127.0.0.1:${srv.address().port}`, close: () => srv.close() })));
}

async function startXindao(wechatUrl) {
  const dir = mkdtempSync(join(tmpdir(), 'xindao-wafer-bench-'));
  const args = ['serve', '--listen', '127.0.0.1:0', '--data-dir', dir, '--dev-login', 'true',
    '--login-per-ip-per-minute', '1000000', '--login-per-second', '1000000', '--max-connections', '19900',
    '--max-connections-per-user', '100', '--max-connections-per-ip', '1000000', '--room-adds-per-min', '1000000',
    '--lookups-per-min', '1000000', '--admin-listen', '', '--rate-per-sec', '1000', '--rate-burst', '1000', '--log', 'warn',
    '--wechat-appid', APPID, '--wechat-api-base', wechatUrl, '--wafer-prefix', PREFIX];
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, XINDAO_WECHAT_SECRET: SECRET } });
  let err = '';
  proc.stderr.on('data', (d) => { err = (err + d).slice(-20000); });
  const url = await new Promise((res, rej) => {
    let out = '';
    const t = setTimeout(() => rej(new Error(`no "listening" line; stderr: ${err}`)), 20000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/^listening (http:\/\/\S+)\s*$/m);
      if (m) { clearTimeout(t); res(m[1]); }
    });
    proc.on('exit', (c) => rej(new Error(`xindao exited ${c}: ${err}`)));
  });
  return { url, pid: proc.pid, stop: () => { proc.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); } };
}

function cpuSecs(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / TICK; // utime, stime (fields 14, 15)
}
const rssKiB = (pid) => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);

async function fetchJson(url, init) {
  const r = await fetch(url, init);
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error(`${init?.method || 'GET'} ${url}: ${r.status} ${JSON.stringify(body)}`);
  return body;
}

// Runs fn(i) for i in 0..n, `width` at a time.
async function pool(n, width, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, n) }, async () => { while (next < n) await fn(next++); }));
}

// A WebSocket with its message handler attached before it opens (nothing sent at once is missed).
function openWs(url, headers, onMessage) {
  return new Promise((res, rej) => {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    ws.on('message', onMessage);
    ws.once('open', () => res(ws));
    ws.once('error', rej);
  });
}

async function waitFor(cond, ms, what) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(50);
  }
}

// Scenario A: Wafer 2 tunnels. Each client: code-only login, GET tunnel, open the connectUrl, ping as the SDK does.
async function wafer(base) {
  const clients = [];
  await pool(N, 50, async (i) => {
    const login = await fetchJson(`${base}${PREFIX}/login`, { headers: { 'X-WX-Code': `c:oBench${i}:${i}` } });
    const skey = login.data.skey;
    const tunnel = await fetchJson(`${base}${PREFIX}/tunnel`, { headers: { 'X-WX-Skey': skey } });
    const c = { counts: new Map(), sawAll: false, ping: null };
    c.ws = await openWs(tunnel.data.connectUrl, {}, (buf) => {
      const text = buf.toString();
      // The SDK pings every `timeout:N` seconds; so do these clients.
      if (text.startsWith('timeout:') && !c.ping) c.ping = setInterval(() => c.ws.readyState === 1 && c.ws.send('ping'), Number(text.slice(8)) * 1000);
      if (!text.startsWith('message:')) return;
      const m = JSON.parse(text.slice(8));
      if (m.type === 'speak') {
        const tag = m.content.word.split(':')[0];
        c.counts.set(tag, (c.counts.get(tag) || 0) + 1);
      } else if (m.type === 'people' && m.content.total >= N) c.sawAll = true;
    });
    clients[i] = c;
  });
  await waitFor(() => clients.every((c) => c.sawAll), 120000, 'every tunnel sees people {total: N}');
  return {
    clients,
    send: (c, tag, k) => c.ws.send(`message:${JSON.stringify({ type: 'speak', content: { word: `${tag}:${k}` } })}`),
    perMessage: N,
    close: () => clients.forEach((c) => { clearInterval(c.ping); c.ws.terminate(); }),
  };
}

// Scenario B: xindao's own protocol. Dev login, WebSocket with the bearer token, one public room.
async function xindao(base) {
  const wsBase = base.replace(/^http/, 'ws');
  const clients = [];
  await pool(N, 50, async (i) => {
    const login = await fetchJson(`${base}/v1/login/dev`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ display_name: `bench${i}` }) });
    const c = { counts: new Map(), replies: new Map(), nextId: 1 };
    c.ws = await openWs(`${wsBase}/v1/ws`, { authorization: `Bearer ${login.token}` }, (buf) => {
      const f = JSON.parse(buf.toString());
      if (f.event === 'message') {
        const tag = String(f.data.content).split(':')[0];
        c.counts.set(tag, (c.counts.get(tag) || 0) + 1);
      } else if (f.id !== undefined && c.replies.has(f.id)) {
        c.replies.get(f.id)(f);
        c.replies.delete(f.id);
      }
    });
    c.req = (op, args) => new Promise((res) => {
      const id = c.nextId++;
      c.replies.set(id, res);
      c.ws.send(JSON.stringify({ id, op, args }));
    });
    clients[i] = c;
  });
  const created = await clients[0].req('room_create', { name: `bench room ${Date.now()}`, visibility: 'public' });
  if (!created.ok) throw new Error(JSON.stringify(created));
  const cid = created.result.conversation.id;
  await pool(N - 1, 50, async (i) => {
    const r = await clients[i + 1].req('room_join', { conversation_id: cid });
    if (!r.ok) throw new Error(JSON.stringify(r));
  });
  await sleep(2000); // member / members_changed pushes settle
  return {
    clients,
    send: (c, tag, k) => c.ws.send(JSON.stringify({ id: `s${tag}${k}`, op: 'send', args: { conversation_id: cid, cmid: `${tag}-${k}`, content: `${tag}:${k}` } })),
    perMessage: N - 1,
    close: () => clients.forEach((c) => c.ws.terminate()),
  };
}

async function scenario(name, setup, wechatUrl) {
  const server = await startXindao(wechatUrl);
  try {
    await sleep(500);
    const rss0 = rssKiB(server.pid);
    const t0 = Date.now();
    const room = await setup(server.url);
    const connectSecs = (Date.now() - t0) / 1000;
    await sleep(1000);
    const rss1 = rssKiB(server.pid);
    const row = { name, clients: room.clients.length, connectSecs, rssPerConnKiB: (rss1 - rss0) / room.clients.length, rates: [] };
    for (const rate of RATES) {
      const tag = `r${rate}`;
      const total = rate * SECS;
      const cpu0 = cpuSecs(server.pid);
      const start = Date.now();
      for (let k = 0; k < total; k++) {
        const at = start + (k * 1000) / rate;
        const wait = at - Date.now();
        if (wait > 0) await sleep(wait);
        room.send(room.clients[k % SENDERS], tag, k);
      }
      await sleep(1000 / rate + DRAIN * 1000);
      const cpu = cpuSecs(server.pid) - cpu0;
      const received = room.clients.reduce((s, c) => s + (c.counts.get(tag) || 0), 0);
      const expected = total * room.perMessage;
      row.rates.push({ rate, sent: total, expected, received, loss: 1 - received / expected, cpu, perCpuSec: received / cpu });
    }
    row.dropped = room.clients.filter((c) => c.ws.readyState !== 1).length; // sockets closed during the phases
    room.close();
    return row;
  } finally {
    server.stop();
  }
}

if (!existsSync(BIN)) throw new Error(`no xindao binary at ${BIN}: cargo build --release -p xindao, or set XINDAO_BIN`);
const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const loadBefore = load();
const wechat = await fakeWeChat();
const rows = [];
for (let run = 0; run < Number(opt.runs); run++) {
  const order = run % 2 === 0 ? [['wafer', wafer], ['xindao', xindao]] : [['xindao', xindao], ['wafer', wafer]];
  for (const [name, setup] of order.filter(([n]) => !opt.only || n === opt.only)) {
    const row = await scenario(name, setup, wechat.url);
    row.run = run + 1;
    rows.push(row);
    console.error(`run ${row.run} ${name}: ${JSON.stringify(row)}`);
  }
}
wechat.close();

const f = (x, d = 0) => x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
console.log(`\n${N} clients, ${SENDERS} senders, ${SECS} s per rate, ${DRAIN} s drain; xindao ${BIN}`);
console.log(`load average (1, 5, 15 min) before: ${loadBefore}, after: ${load()}`);
console.log('| run | rate (msg/s) | Wafer deliveries (expected) | Wafer loss | xindao deliveries (expected) | xindao loss | Wafer deliveries/CPU-s | xindao deliveries/CPU-s | Wafer/xindao |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (let run = 1; run <= Number(opt.runs); run++) {
  const w = rows.find((r) => r.run === run && r.name === 'wafer');
  const x = rows.find((r) => r.run === run && r.name === 'xindao');
  if (!w || !x) continue;
  w.rates.forEach((a, i) => {
    const b = x.rates[i];
    console.log(`| ${run} | ${a.rate} | ${f(a.received)} (${f(a.expected)}) | ${f(a.loss * 100, 2)} % | ${f(b.received)} (${f(b.expected)}) | ${f(b.loss * 100, 2)} % | ${f(a.perCpuSec)} | ${f(b.perCpuSec)} | ${f(a.perCpuSec / b.perCpuSec, 2)} |`);
  });
}
console.log('\n| run | Wafer clients (dropped) | Wafer RSS/conn | Wafer connect+settle | xindao clients (dropped) | xindao RSS/conn | xindao connect+join |');
console.log('|---|---|---|---|---|---|---|');
for (let run = 1; run <= Number(opt.runs); run++) {
  const w = rows.find((r) => r.run === run && r.name === 'wafer');
  const x = rows.find((r) => r.run === run && r.name === 'xindao');
  if (!w || !x) continue;
  console.log(`| ${run} | ${w.clients} (${w.dropped}) | ${f(w.rssPerConnKiB, 1)} KiB | ${f(w.connectSecs, 1)} s | ${x.clients} (${x.dropped}) | ${f(x.rssPerConnKiB, 1)} KiB | ${f(x.connectSecs, 1)} s |`);
}
process.exit(0);
