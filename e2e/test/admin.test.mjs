// End to end: the admin page on the admin listener, in Debian's Chromium. A user chats in the web page while
// the admin page shows the live connection, the message rate and the latency per hop from /metrics; then the
// "probe from the server" button probes the public listener and shows its verdict.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from '../../sdk/js/testlib/server.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const shots = join(here, '..', 'screenshots');
mkdirSync(shots, { recursive: true });

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let srv;
let browser;

before(async () => {
  srv = await startServer({ args: ['--node-id', 'e2e-node'] });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30000 });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (srv) {
    await srv.stop('SIGKILL');
    srv.cleanup();
  }
});

test('the admin page shows live figures and probes from the server', async () => {
  assert.ok(srv.adminUrl, 'the server has an admin listener');
  const errors = [];
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 900 } });

  // A user in the chat page: one connection, a few messages.
  const chat = await ctx.newPage();
  chat.setDefaultTimeout(15000);
  await chat.goto(srv.url + '/');
  await chat.fill('#login-name', 'alice');
  await chat.click('#login-button');
  await chat.waitForSelector('#conn[data-state="open"]');

  const admin = await ctx.newPage();
  admin.setDefaultTimeout(20000);
  admin.on('pageerror', (e) => errors.push(e.message));
  await admin.goto(srv.adminUrl + '/admin');
  await admin.waitForFunction(() => document.getElementById('connections').textContent === '1');
  assert.equal(await admin.textContent('#node'), 'e2e-node');
  assert.equal(await admin.textContent('#nodes'), '1');
  // The upgrade hop has been measured once.
  await admin.waitForFunction(() =>
    [...document.querySelectorAll('#hops tbody tr')].some((tr) => tr.cells[0].textContent === 'upgrade' && tr.cells[3].textContent.startsWith('≤')),
  );

  // Messages: a room of her own, three sends; the message rate and the commit wait show them.
  await chat.fill('#new-room-input', 'e2e-admin');
  await chat.click('#new-room button');
  await chat.waitForSelector(`#chat-title:text-is("# e2e-admin")`);
  for (const text of ['one', 'two', 'three']) {
    await chat.fill('#composer-input', text);
    await chat.press('#composer-input', 'Enter');
  }
  await chat.waitForFunction(() => document.querySelectorAll('#message-list li.msg:not(.pending)').length === 3);
  await admin.waitForFunction(() =>
    [...document.querySelectorAll('#hops tbody tr')].some((tr) => tr.cells[0].textContent === 'commit wait' && Number(tr.cells[1].textContent) >= 1),
  );
  await admin.waitForFunction(() => [...document.querySelectorAll('#ops tbody tr')].some((tr) => tr.cells[0].textContent === 'send'));

  // Probe from the server towards the public listener.
  await admin.fill('#probe-url', srv.url);
  await admin.click('#probe-button');
  await admin.waitForFunction(() => document.getElementById('probe-verdict').textContent.startsWith('verdict: '), null, { timeout: 30000 });
  const output = await admin.textContent('#probe-output');
  assert.match(output, /GET \/v1\/ws -> 101/);
  assert.match(output, /node: e2e-node/);
  await admin.screenshot({ path: join(shots, 'admin.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await ctx.close();
});
