// The unmodified Wafer client SDKs (wafer-client-sdk@0.8.4, wafer2-client-sdk@2.1.0) against xindao's
// standalone Wafer mode: the real xindao binary (XINDAO_BIN, else target/debug/xindao) on port 0, a fake
// WeChat (code2Session with real 16-byte session keys, AES-encrypted user data), and two mini-programs per
// SDK, each in its own process with its own `wx` global (wx.js). Prints every step passed; exits non-zero on
// the first failure.
'use strict';

const assert = require('node:assert/strict');
const { startFakeWeChat } = require('./lib/fake-wechat');
const { Client, sleep, people, spoke } = require('./lib/harness');

const APPID = 'wxTESTAPP0000001';
const SECRET = 'test-app-secret';
const HEARTBEAT = 2; // seconds: the tunnel's `timeout:N`

async function runSdk(gen, server, wechat) {
  const version = require(`${gen.pkg}/package.json`).version;
  const step = (what) => console.log(`ok - ${gen.pkg}@${version}: ${what}`);
  const base = server.url;
  const a = await Client.spawn(`Alice${gen.v}`, gen.pkg, base, gen.prefix, wechat.url, `oAlice${gen.v}`);
  const b = await Client.spawn(`Bob${gen.v}`, gen.pkg, base, gen.prefix, wechat.url, `oBob${gen.v}`);
  const [A, B] = [a.name, b.name];
  try {
    for (const c of [a, b]) {
      const r = await c.cmd('login');
      assert.ok(r.ok, `${c.name} login: ${r.error}`);
      assert.equal(r.userInfo.nickName, c.name);
    }
    step('login with AES-encrypted user data (16-byte session key from code2Session, watermark appid checked)');

    const userOf = (r) => (gen.v === 2 ? r.data.data : r.data.data.userInfo);
    let r = await a.cmd('request', { path: '/user', login: true });
    assert.ok(r.ok, r.error);
    assert.equal(r.statusCode, 200);
    assert.equal(userOf(r).nickName, A);
    assert.equal(userOf(r).openId, `oAlice${gen.v}`);
    step('request with login: true (the user endpoint answers the decrypted profile)');

    await a.cmd('breakSession');
    let before = (await a.cmd('log')).log.length;
    r = await a.cmd('request', { path: '/user', login: false });
    assert.ok(r.ok, r.error);
    assert.equal(userOf(r).nickName, A);
    const trail = (await a.cmd('log')).log.slice(before).filter(([, kind]) => kind === 'response').map(([, , t]) => t.split(' ').slice(0, 2).join(' ') + ' ' + new URL(t.split(' ')[2]).pathname);
    assert.deepEqual(trail, [`401 GET ${gen.prefix}/user`, `200 GET ${gen.prefix}/login`, `200 GET ${gen.prefix}/user`]);
    step(`session failure: one re-login and one retry (${trail.join(' -> ')})`);

    let ma = a.mark();
    await a.cmd('open');
    await a.next((e) => e.ev === 'connect', 10000, ma);
    let e = await a.next(people(A, 'enter'), 10000, ma);
    assert.equal(e.content.total, 1);
    step('tunnel open (GET tunnel -> ticket URL -> WebSocket), people {total: 1, enter}');

    ma = a.mark();
    let mb = b.mark();
    await b.cmd('open');
    await b.next((e) => e.ev === 'connect', 10000, mb);
    e = await a.next(people(B, 'enter'), 10000, ma);
    assert.equal(e.content.total, 2);
    e = await b.next(people(B, 'enter'), 10000, mb);
    assert.equal(e.content.total, 2);
    step('people with two clients: both get {total: 2, enter: Bob}');

    ma = a.mark();
    mb = b.mark();
    await a.cmd('speak', { word: `hello from ${A}` });
    await b.next(spoke(A, `hello from ${A}`), 10000, mb);
    await a.next(spoke(A, `hello from ${A}`), 10000, ma);
    await b.cmd('speak', { word: `hi ${A}, 你好` });
    await a.next(spoke(B, `hi ${A}, 你好`), 10000, ma);
    await b.next(spoke(B, `hi ${A}, 你好`), 10000, mb);
    step('speak both ways, relayed to everyone as {who, word}');

    ma = a.mark();
    const logStart = (await a.cmd('log')).now;
    await sleep(HEARTBEAT * 1000 * 2.5);
    const beat = (await a.cmd('log')).log.filter(([t]) => t >= logStart);
    const pings = beat.filter(([, k, t]) => k === 'send' && t === 'ping').length;
    const pongs = beat.filter(([, k, t]) => k === 'recv' && t === 'pong').length;
    assert.ok(pings >= 2 && pongs >= 2, `pings ${pings}, pongs ${pongs}`);
    assert.ok(!a.events.slice(ma).some((e) => e.ev === 'reconnecting'), 'no reconnect while the heartbeat runs');
    const timeoutPacket = (await a.cmd('log')).log.some(([, k, t]) => k === 'recv' && t === `timeout:${HEARTBEAT}`);
    assert.ok(timeoutPacket, 'the server sent timeout:N');
    step(`client heartbeat: timeout:${HEARTBEAT}, ${pings} pings answered by ${pongs} pongs in ${HEARTBEAT * 2.5} s, no reconnect`);

    ma = a.mark();
    mb = b.mark();
    await a.cmd('lose', { ms: 3000 });
    await a.next((e) => e.ev === 'reconnecting', 15000, ma);
    await a.next((e) => e.ev === 'reconnect', 25000, ma);
    const left = await b.next(people(A, 'leave'), 10000, mb);
    const back = await b.next(people(A, 'enter'), 10000, mb);
    assert.ok(b.events.indexOf(left) < b.events.indexOf(back), 'leave comes before enter');
    assert.equal(left.content.total, 1);
    assert.equal(back.content.total, 2);
    await a.cmd('speak', { word: 'back again' });
    await b.next(spoke(A, 'back again'), 10000, mb);
    step('network loss (silent socket): the SDK reconnects by itself; Bob sees leave {total: 1} then enter {total: 2}; speak works again');

    ma = a.mark();
    mb = b.mark();
    await a.cmd('close');
    await a.next((e) => e.ev === 'close', 5000, ma);
    e = await b.next(people(A, 'leave'), 10000, mb);
    assert.equal(e.content.total, 1);
    await b.cmd('close');
    await b.next((e) => e.ev === 'close', 5000, mb);
    step('close: Bob sees {total: 1, leave: Alice}; both tunnels closed');

    const quietFrom = [a.mark(), b.mark()];
    const logs = [(await a.cmd('log')).log.length, (await b.cmd('log')).log.length];
    await sleep(1500);
    const after = [(await a.cmd('log')).log.slice(logs[0]), (await b.cmd('log')).log.slice(logs[1])];
    assert.deepEqual(after, [[], []], 'no requests or socket traffic after close');
    assert.deepEqual([a.events.slice(quietFrom[0]), b.events.slice(quietFrom[1])], [[], []], 'no events after close');
    step('1.5 s after close: no request, no socket frame, no event');

    for (const c of [a, b]) {
      assert.deepEqual(c.uncaught, [], `${c.name}: nothing thrown inside the SDK`);
      assert.deepEqual(c.events.filter((e) => e.ev === 'error'), [], `${c.name}: no tunnel error event`);
      const binary = (await c.cmd('log')).log.filter(([, k, t]) => k === 'recv' && t === '<binary>');
      assert.deepEqual(binary, [], `${c.name}: no binary frame`);
    }
    step('whole run: no exception in the SDK, no error event, no binary frame');
  } finally {
    a.kill();
    b.kill();
  }
}

async function main() {
  const wechat = await startFakeWeChat({ appid: APPID, secret: SECRET });
  const { startServer } = await import('../../sdk/js/testlib/server.mjs');
  const server = await startServer({
    args: [
      '--wechat-appid', APPID,
      '--wechat-api-base', wechat.url,
      '--wafer-prefix', '/weapp',
      '--wafer1-prefix', '/wafer1',
      '--wafer-heartbeat-secs', String(HEARTBEAT),
    ],
    env: { XINDAO_WECHAT_SECRET: SECRET },
  });
  let failed = false;
  try {
    await runSdk({ v: 2, pkg: 'wafer2-client-sdk', prefix: '/weapp' }, server, wechat);
    await runSdk({ v: 1, pkg: 'wafer-client-sdk', prefix: '/wafer1' }, server, wechat);
    console.log('ok - all Wafer client SDK steps passed');
  } catch (e) {
    failed = true;
    console.error(`not ok - ${e.stack}`);
    console.error(`xindao stderr:\n${server.stderr()}`);
  } finally {
    await server.stop();
    server.cleanup();
    wechat.close();
  }
  process.exit(failed ? 1 : 0);
}

main();
