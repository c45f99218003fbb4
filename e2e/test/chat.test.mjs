// End to end: the web chat page served by the real xindao binary, in Debian's Chromium (no browser download),
// two users in two browser contexts: 1:1 chat, unread badges, read marks, typing, presence, HTML injection
// attempt shown as text, a room, then the server killed and restarted (same data dir) while messages are
// being sent: the pages reconnect and lose nothing. Screenshots go to e2e/screenshots/.
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
const XSS = '<img src=x onerror=alert(1)>';

let srv;
let browser;
const dialogs = [];
const pageErrors = [];

async function newUser(name, viewport = { width: 1100, height: 720 }) {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  page.setDefaultTimeout(15000);
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => pageErrors.push(name + ': ' + e.message));
  await page.goto(srv.url + '/');
  await page.fill('#login-name', name);
  await page.click('#login-button');
  await page.waitForSelector('#conn[data-state="open"]');
  const idText = await page.textContent('#me-id');
  const id = Number(idText.match(/\d+/)[0]);
  return { ctx, page, name, id };
}

async function openConv(u, title) {
  await u.page.click(`#conversations li.conv:has(.conv-title:text-is("${title}"))`);
  await u.page.waitForSelector(`#chat-title:text-is("${title}")`);
}

async function send(u, text) {
  await u.page.fill('#composer-input', text);
  await u.page.press('#composer-input', 'Enter');
}

/** The messages shown in the open conversation: [{seq, text, mine}] (confirmed ones only). */
async function shown(u) {
  return u.page.$$eval('#message-list li.msg:not(.pending)', (lis) =>
    lis.map((li) => ({ seq: Number(li.dataset.seq), text: li.querySelector('.text').textContent, mine: li.classList.contains('mine') })),
  );
}

async function badge(u, title) {
  const loc = u.page.locator(`#conversations li.conv:has(.conv-title:text-is("${title}")) .badge`);
  return (await loc.count()) ? (await loc.textContent()).trim() : '';
}

const shot = (u, file) => u.page.screenshot({ path: join(shots, file) });

before(async () => {
  srv = await startServer();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30000 });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (srv) {
    await srv.stop('SIGKILL');
    srv.cleanup();
  }
});

test('two users chat 1:1 and in a room, then survive a server crash and restart', async () => {
  const alice = await newUser('alice');
  const bob = await newUser('bob');

  // ---- 1:1: alice starts a chat with bob by user id
  await alice.page.fill('#new-chat-input', String(bob.id));
  await alice.page.click('#new-chat button');
  await alice.page.waitForSelector('#chat-title:text-is("bob")');
  await alice.page.waitForSelector('#chat-sub[data-online="true"]'); // presence: bob is online
  await send(alice, 'hi bob');
  await send(alice, XSS);
  await send(alice, 'line one\nline two');
  await alice.page.waitForFunction(() => document.querySelectorAll('#message-list li.msg.mine:not(.pending)').length === 3);
  // the status bar shows the current round trip (the SDK timed the sends)
  await alice.page.waitForFunction(() => /\d+ (ms|毫秒)/.test(document.querySelector('#conn').textContent));

  // bob sees the conversation with 3 unread, without opening it
  await bob.page.waitForSelector('#conversations li.conv:has(.conv-title:text-is("alice")) .badge');
  await bob.page.waitForFunction(() => {
    const b = document.querySelector('#conversations li.conv .badge');
    return b && b.textContent.trim() === '3';
  });
  assert.equal(await badge(bob, 'alice'), '3');
  await shot(bob, '01-bob-unread-badge.png');

  // bob opens it: messages in order, the HTML arrives as literal text, nothing executed or injected
  await openConv(bob, 'alice');
  await bob.page.waitForFunction(() => document.querySelectorAll('#message-list li.msg').length === 3);
  const bobView = await shown(bob);
  assert.deepEqual(bobView.map((m) => m.text), ['hi bob', XSS, 'line one\nline two']);
  assert.deepEqual(bobView.map((m) => m.seq), [1, 2, 3]);
  assert.equal(await bob.page.locator('#message-list img').count(), 0, 'no <img> element was created');
  await bob.page.waitForFunction(() => !document.querySelector('#conversations li.conv .badge')); // read: badge gone

  // alice gets the read mark on her last message
  await alice.page.waitForSelector('#message-list li.msg.mine[data-seq="3"] .read-mark');

  // typing indicator
  await bob.page.type('#composer-input', 'hel');
  await alice.page.waitForSelector('#typing:text("bob is typing")');
  await bob.page.fill('#composer-input', '');
  await send(bob, 'hello alice! <script>alert(2)</script>');
  await alice.page.waitForFunction(() => [...document.querySelectorAll('#message-list li.msg.theirs .text')].some((e) => e.textContent.includes('<script>')));
  await shot(alice, '02-alice-direct-chat.png');
  await shot(bob, '03-bob-direct-chat.png');

  // ---- a public room: alice creates it, bob finds it in the public list and joins
  const roomName = 'e2e-room';
  await alice.page.fill('#new-room-input', roomName);
  await alice.page.click('#new-room button');
  await alice.page.waitForSelector(`#chat-title:text-is("# ${roomName}")`);
  await send(alice, 'welcome to the room');
  await bob.page.click('#refresh-rooms');
  await bob.page.click(`#public-rooms li.room-row:has(.room-name:text-is("# ${roomName}")) button.join`);
  await bob.page.waitForSelector(`#chat-title:text-is("# ${roomName}")`);
  await bob.page.waitForFunction(() => [...document.querySelectorAll('#message-list .text')].some((e) => e.textContent === 'welcome to the room'));
  await send(bob, 'thanks, glad to be here');
  await alice.page.waitForFunction(() => [...document.querySelectorAll('#message-list .text')].some((e) => e.textContent === 'thanks, glad to be here'));
  await alice.page.waitForSelector('#message-list li.msg.theirs .sender:text-is("bob")');

  // an unread badge for a conversation that is not open: bob writes in the direct chat while alice is in the room
  await openConv(bob, 'alice');
  await send(bob, 'psst, in private');
  await alice.page.waitForFunction(() => {
    const li = [...document.querySelectorAll('#conversations li.conv')].find((l) => l.querySelector('.conv-title').textContent === 'bob');
    return li && li.querySelector('.badge') && li.querySelector('.badge').textContent.trim() === '1';
  });
  await shot(alice, '04-alice-room-with-badge.png');

  // ---- crash: kill -9 the server while both pages are open
  await openConv(alice, `# ${roomName}`);
  await openConv(bob, `# ${roomName}`);
  await srv.kill();
  await alice.page.waitForSelector('#conn[data-state="reconnecting"]');
  await bob.page.waitForSelector('#conn[data-state="reconnecting"]');
  // alice keeps typing while the server is down: the messages wait in the outbox
  await send(alice, 'sent while the server was down 1');
  await send(alice, 'sent while the server was down 2');
  await alice.page.waitForSelector('#message-list li.msg.pending');
  await shot(alice, '05-alice-reconnecting.png');

  srv = await srv.restart({ signal: 'SIGKILL' });
  await alice.page.waitForSelector('#conn[data-state="open"]', { timeout: 40000 });
  await bob.page.waitForSelector('#conn[data-state="open"]', { timeout: 40000 });
  await send(bob, 'back after the restart');
  const expected = ['welcome to the room', 'thanks, glad to be here', 'sent while the server was down 1', 'sent while the server was down 2', 'back after the restart'];
  for (const u of [alice, bob]) {
    await u.page.waitForFunction((n) => document.querySelectorAll('#message-list li.msg:not(.pending)').length === n && !document.querySelector('#message-list li.msg.pending'), expected.length, { timeout: 20000 });
    const v = await shown(u);
    assert.deepEqual(v.map((m) => m.text), expected, u.name + ' sees every room message once, in order');
    assert.deepEqual(v.map((m) => m.seq), [1, 2, 3, 4, 5]);
  }
  // the direct chat is intact too after the restart
  await openConv(bob, 'alice');
  await bob.page.waitForFunction(() => document.querySelectorAll('#message-list li.msg').length === 5);
  assert.deepEqual((await shown(bob)).map((m) => m.seq), [1, 2, 3, 4, 5]);
  await shot(alice, '06-alice-after-restart.png');
  await shot(bob, '07-bob-after-restart.png');

  // ---- a reload keeps the session (token in localStorage) and the history
  await alice.page.reload();
  await alice.page.waitForSelector('#conn[data-state="open"]');
  await openConv(alice, 'bob');
  await alice.page.waitForFunction(() => document.querySelectorAll('#message-list li.msg').length === 5);

  // ---- many messages from alice's second device (the SDK in the page, a second client): her open page shows
  // them live, in order; a new member sees the latest 50 and scrolls back to the beginning
  await openConv(alice, `# ${roomName}`);
  const roomId = Number(await alice.page.getAttribute('#conversations li.conv[data-kind="room"]', 'data-id'));
  const BULK = 80;
  await alice.page.evaluate(
    async ([id, n]) => {
      const { XindaoClient } = await import('/xindao.js');
      const token = JSON.parse(localStorage.getItem('xindao.session')).token;
      const c = new XindaoClient({ token, lifecycle: false });
      await c.connect();
      await Promise.all(Array.from({ length: n }, (_, i) => c.send(id, 'bulk ' + (i + 1))));
      c.close();
    },
    [roomId, BULK],
  );
  const total = expected.length + BULK;
  await alice.page.waitForFunction((n) => document.querySelectorAll('#message-list li.msg').length === n, total, { timeout: 20000 });
  assert.deepEqual((await shown(alice)).map((m) => m.seq), Array.from({ length: total }, (_, i) => i + 1));

  // ---- small screen layout + history scroll-back
  const mobile = await newUser('carol', { width: 390, height: 760 });
  await mobile.page.click('#refresh-rooms');
  await mobile.page.click(`#public-rooms li.room-row:has(.room-name:text-is("# ${roomName}")) button.join`);
  await mobile.page.waitForFunction(() => document.querySelectorAll('#message-list li.msg').length === 50);
  await shot(mobile, '08-mobile-room.png');
  for (let i = 0; i < 5 && (await mobile.page.$$('#message-list li.msg')).length < total; i++) {
    await mobile.page.evaluate(() => (document.getElementById('messages').scrollTop = 0));
    await mobile.page.waitForTimeout(300);
  }
  const carolView = await shown(mobile);
  assert.deepEqual(carolView.map((m) => m.seq), Array.from({ length: total }, (_, i) => i + 1), 'scrolled back to the first message');
  assert.equal(await mobile.page.textContent('#older'), 'Beginning of the conversation');
  await shot(mobile, '09-mobile-scrolled-back.png');

  assert.deepEqual(dialogs, [], 'no alert() ran');
  assert.deepEqual(pageErrors, [], 'no uncaught page errors');
});
