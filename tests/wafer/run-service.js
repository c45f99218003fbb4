// Tunnel-service mode: an existing Wafer 2 business server on the unmodified wafer-node-sdk@1.4.5 (its own
// login on MariaDB, the quickstart's chat logic: lib/business.js) uses xindao as its tunnel server, changing
// only tunnelServerUrl and tunnelSignatureKey; two unmodified wafer2-client-sdk@2.1.0 mini-programs talk to
// it. Then a Wafer 1 business server on the unmodified qcloud-weapp-server-sdk@0.8.2, logging users in through
// xindao's replacement of the Wafer 1 auth service, with two wafer-client-sdk@0.8.4 mini-programs. Prints every
// step passed. Without MariaDB on 127.0.0.1:3306 (Wafer 2 part) or port 80 on 127.0.0.3 (Wafer 1 part: its SDK
// cannot call back another port) that part prints SKIPPED and passes.
'use strict';

const { fork } = require('node:child_process');
const path = require('node:path');
const net = require('node:net');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startFakeWeChat } = require('./lib/fake-wechat');
const { Client, sleep, people, spoke } = require('./lib/harness');

const APPID = 'wxTESTAPP0000002';
const SECRET = 'test-app-secret-2';
const KEY = 'tunnel-signature-key-for-tests';

function mariadbUp() {
  return new Promise((resolve) => {
    const socket = net.connect(3306, '127.0.0.1');
    socket.on('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

async function main() {
  if (!(await mariadbUp())) {
    console.log('SKIPPED: tunnel-service mode test: no MariaDB on 127.0.0.1:3306');
    return 0;
  }
  const wechat = await startFakeWeChat({ appid: APPID, secret: SECRET });
  const { startServer } = await import('../../sdk/js/testlib/server.mjs');
  const server = await startServer({
    args: ['--wafer-tunnel-key', KEY, '--wafer-heartbeat-secs', '2', '--wafer-auth', '--wechat-appid', APPID, '--wechat-api-base', wechat.url],
    env: { XINDAO_WECHAT_SECRET: SECRET },
  });
  const tunnelServerUrl = `${server.url}/wafer-tunnel`;
  const business = new Client('business', fork(path.join(__dirname, 'lib', 'business.js'), [tunnelServerUrl, KEY, wechat.url, APPID, SECRET], { stdio: 'inherit' }));
  const clients = [];
  let failed = false;
  try {
    const { port } = await business.next((e) => e.ev === 'ready' || e.ev === 'failed', 20000).then((e) => {
      if (e.ev === 'failed') throw new Error(`business server: ${e.error}`);
      return e;
    });
    const base = `http://127.0.0.1:${port}`;
    const pkg = 'wafer2-client-sdk';
    const step = (what) => console.log(`ok - wafer-node-sdk@1.4.5 + ${pkg}@2.1.0 via xindao tunnel service: ${what}`);
    const run = crypto.randomBytes(4).toString('hex');
    const a = await Client.spawn('Ann', pkg, base, '/weapp', wechat.url, `oAnn${run}`);
    const b = await Client.spawn('Ben', pkg, base, '/weapp', wechat.url, `oBen${run}`);
    clients.push(a, b);
    for (const c of [a, b]) {
      const r = await c.cmd('login');
      assert.ok(r.ok, `${c.name} login: ${r.error}`);
      assert.equal(r.userInfo.nickName, c.name);
    }
    step('login through the business server (its code2Session, sessions in MariaDB)');

    let [ma, mb] = [a.mark(), b.mark()];
    await a.cmd('open');
    await a.next((e) => e.ev === 'connect', 10000, ma);
    await a.next(people('Ann', 'enter'), 10000, ma);
    await b.cmd('open');
    await b.next((e) => e.ev === 'connect', 10000, mb);
    const enter = await a.next(people('Ben', 'enter'), 10000, ma);
    assert.equal(enter.content.total, 2);
    step('tunnels open via /get/wsurl; the connect callbacks make the business server broadcast people {total: 2}');

    [ma, mb] = [a.mark(), b.mark()];
    await a.cmd('speak', { word: 'hello Ben' });
    await b.next(spoke('Ann', 'hello Ben'), 10000, mb);
    await b.cmd('speak', { word: 'hello Ann' });
    await a.next(spoke('Ben', 'hello Ann'), 10000, ma);
    step('speak both ways: message callbacks, broadcast back through /ws/push');

    [ma, mb] = [a.mark(), b.mark()];
    const r = await business.cmd('broadcast', { type: 'notice', content: { text: 'maintenance at 3' } });
    assert.ok(r.ok, r.error);
    assert.deepEqual(r.invalid, []);
    await a.next((e) => e.ev === 'notice' && e.content.text === 'maintenance at 3', 10000, ma);
    await b.next((e) => e.ev === 'notice' && e.content.text === 'maintenance at 3', 10000, mb);
    step('a broadcast through /ws/push reaches both; invalidTunnelIds is empty');

    [ma, mb] = [a.mark(), b.mark()];
    await business.cmd('down', { ms: 3000 });
    await sleep(200);
    await a.cmd('speak', { word: 'while you were down' });
    await a.cmd('speak', { word: 'and a second one' });
    await b.next(spoke('Ann', 'while you were down'), 15000, mb);
    await b.next(spoke('Ann', 'and a second one'), 15000, mb);
    // xindao's promise is the callbacks' order. The order Ben sees is the business server's: the quickstart
    // answers each callback at once and broadcasts in the background, so two /ws/push requests may race.
    const { words } = await business.cmd('state');
    assert.deepEqual(words.slice(-2), ['while you were down', 'and a second one'], 'callbacks in order');
    assert.equal(words.filter((w) => w === 'while you were down').length, 1, 'the retried callback came once');
    assert.ok(!a.events.slice(ma).some((e) => e.ev === 'close' || e.ev === 'reconnecting'), 'the tunnel stayed open');
    step('business server down for 3 s: the message callbacks are retried and reach it once each, in order; Ben gets both');

    [ma, mb] = [a.mark(), b.mark()];
    const closed = await business.cmd('closeTunnel', { nickName: 'Ben' });
    assert.ok(closed.ok, closed.error);
    await b.next((e) => e.ev === 'close', 10000, mb);
    const left = await a.next(people('Ben', 'leave'), 10000, ma);
    assert.equal(left.content.total, 1);
    await sleep(1000);
    assert.ok(!b.events.slice(mb).some((e) => e.ev === 'reconnecting'), 'a closeTunnel is final: no reconnect');
    step('closeTunnel: Ben gets the close packet and stops (no reconnect); the close callback tells Ann {total: 1, leave}');

    const sign = (data) => crypto.createHash('sha1').update(data + KEY).digest('hex');
    const post = (p, body) => fetch(`${tunnelServerUrl}${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(async (res) => ({ status: res.status, body: await res.json() }));
    const push = JSON.stringify([{ tunnelIds: ['x'], type: 'close' }]);
    let res = await post('/ws/push', { data: push, tcId: 'x', tcKey: KEY, signature: sign(push + 'tampered') });
    assert.equal(res.status, 401);
    assert.equal(res.body.code, 9003);
    const wsurl = JSON.stringify({ receiveUrl: 'http://127.0.0.1:9/x', protocolType: 'wss' });
    res = await post('/get/wsurl', { data: wsurl, tcId: 'x', tcKey: KEY, signature: sign('{}') });
    assert.equal(res.body.code, 9003);
    res = await post('/get/wsurl', { data: wsurl, tcId: 'x', tcKey: 'an attacker’s own key', signature: crypto.createHash('sha1').update(wsurl + 'k').digest('hex') });
    assert.equal(res.body.code, 9003, 'the tcKey in the body is never trusted');
    res = await post('/ws/push', { data: push, tcId: 'x', signature: sign(push) });
    assert.deepEqual(res.body, { code: 0, data: { invalidTunnelIds: ['x'] } });
    step('bad signatures refused (401, code 9003, the body’s tcKey ignored); a push to a dead id answers code 0 with invalidTunnelIds');

    ma = a.mark();
    await a.cmd('close');
    await a.next((e) => e.ev === 'close', 5000, ma);
    await sleep(1500);
    const state = await business.cmd('state');
    assert.equal(state.connected, 0, 'every tunnel got exactly its close callback');
    assert.equal(state.callbacks.filter((t) => t === 'connect').length, 2);
    assert.equal(state.callbacks.filter((t) => t === 'close').length, 2);
    for (const c of [a, b, business]) assert.deepEqual(c.uncaught, [], `${c.name}: nothing thrown`);
    step(`close: callbacks seen by the business server ${JSON.stringify(state.callbacks.reduce((m, t) => ({ ...m, [t]: (m[t] || 0) + 1 }), {}))}, one close per tunnel`);
    await runWafer1(server, wechat, tunnelServerUrl);
  } catch (e) {
    failed = true;
    console.error(`not ok - ${e.stack}`);
    console.error(`xindao stderr:\n${server.stderr()}`);
  } finally {
    clients.forEach((c) => c.kill());
    business.kill();
    await server.stop();
    server.cleanup();
    wechat.close();
  }
  return failed ? 1 : 0;
}

async function runWafer1(server, wechat, tunnelServerUrl) {
  const host = '127.0.0.3';
  const business = new Client('business1', fork(path.join(__dirname, 'lib', 'business1.js'), [tunnelServerUrl, KEY, `${server.url}/wafer-auth`, host], { stdio: 'inherit' }));
  const ready = await business.next((e) => e.ev === 'ready' || e.ev === 'failed', 20000);
  if (ready.ev === 'failed') {
    business.kill();
    console.log(`SKIPPED: Wafer 1 business server: cannot listen on ${host}:80 (${ready.error})`);
    return;
  }
  const pkg = 'wafer-client-sdk';
  const step = (what) => console.log(`ok - qcloud-weapp-server-sdk@0.8.2 + ${pkg}@0.8.4 via xindao auth + tunnel service: ${what}`);
  const run = crypto.randomBytes(4).toString('hex');
  const base = `http://${host}`;
  const a = await Client.spawn('Amy', pkg, base, '', wechat.url, `oAmy${run}`);
  const b = await Client.spawn('Bill', pkg, base, '', wechat.url, `oBill${run}`);
  try {
    for (const c of [a, b]) {
      const r = await c.cmd('login');
      assert.ok(r.ok, `${c.name} login: ${r.error}`);
    }
    let r = await a.cmd('request', { path: '/user', login: true });
    assert.ok(r.ok, r.error);
    assert.equal(r.data.data.userInfo.nickName, 'Amy');
    step('login and request({login: true}) through the business server and xindao’s qcloud.cam.id_skey / qcloud.cam.auth');

    await a.cmd('breakSession');
    const before = (await a.cmd('log')).log.length;
    r = await a.cmd('request', { path: '/user', login: false });
    assert.ok(r.ok, r.error);
    assert.equal(r.data.data.userInfo.nickName, 'Amy');
    const trail = (await a.cmd('log')).log.slice(before).filter(([, k]) => k === 'response').map(([, , t]) => new URL(t.split(' ')[2]).pathname);
    assert.deepEqual(trail, ['/user', '/login', '/user']);
    step('an invalid skey: the auth service answers 60011, the SDK re-logs in once and retries');

    let [ma, mb] = [a.mark(), b.mark()];
    await a.cmd('open');
    await a.next((e) => e.ev === 'connect', 10000, ma);
    await b.cmd('open');
    await b.next((e) => e.ev === 'connect', 10000, mb);
    const enter = await a.next(people('Bill', 'enter'), 10000, ma);
    assert.equal(enter.content.total, 2);
    await a.cmd('speak', { word: 'hi Bill' });
    await b.next(spoke('Amy', 'hi Bill'), 10000, mb);
    await b.cmd('speak', { word: 'hi Amy' });
    await a.next(spoke('Bill', 'hi Amy'), 10000, ma);
    step('tunnels (signed /get/wsurl answer checked by the SDK), people {total: 2}, speak both ways');

    [ma, mb] = [a.mark(), b.mark()];
    const sent = await business.cmd('broadcast', { type: 'notice', content: { text: 'v1 notice' } });
    assert.ok(sent.ok, sent.error);
    await a.next((e) => e.ev === 'notice' && e.content.text === 'v1 notice', 10000, ma);
    await b.next((e) => e.ev === 'notice' && e.content.text === 'v1 notice', 10000, mb);
    const closed = await business.cmd('closeTunnel', { nickName: 'Bill' });
    assert.ok(closed.ok, closed.error);
    await b.next((e) => e.ev === 'close', 10000, mb);
    const left = await a.next(people('Bill', 'leave'), 10000, ma);
    assert.equal(left.content.total, 1);
    step('broadcast through /ws/push; closeTunnel closes Bill for good and Amy sees {total: 1, leave}');

    ma = a.mark();
    await a.cmd('close');
    await a.next((e) => e.ev === 'close', 5000, ma);
    await sleep(1500);
    const state = await business.cmd('state');
    assert.equal(state.connected, 0);
    assert.equal(state.callbacks.filter((t) => t === 'close').length, 2);
    for (const c of [a, b, business]) assert.deepEqual(c.uncaught, [], `${c.name}: nothing thrown`);
    step(`close: one close callback per tunnel (${JSON.stringify(state.callbacks.reduce((m, t) => ({ ...m, [t]: (m[t] || 0) + 1 }), {}))})`);
  } finally {
    a.kill();
    b.kill();
    business.kill();
  }
}

main().then((code) => process.exit(code));
