// End to end, the page tells the truth (issue 20): losing the network is shown within 5 s and recovered with
// nothing lost or doubled; a message typed offline survives a reload and is delivered once; the composer
// counts as the server does and a refused message keeps its text; readable errors clear after a success;
// zh-CN and English; 375x667 without horizontal overflow; room members and invite-only rooms; unread count in
// the title; the last conversation reopens after a reload. Screenshots (zh-CN): see docShots.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from '../../sdk/js/testlib/server.mjs';

const here = dirname(fileURLToPath(import.meta.url));
// UPDATE_SCREENSHOTS=1 writes the committed ones (docs/screenshots, linked from the README); otherwise they go to
// the gitignored e2e/screenshots, so a test run leaves the tree clean
const docShots = process.env.UPDATE_SCREENSHOTS ? join(here, '..', '..', 'docs', 'screenshots') : join(here, '..', 'screenshots');
mkdirSync(docShots, { recursive: true });

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const MAX = 100; // --max-text-chars for this server

let srv;
let browser;
const pageErrors = [];
const MOBILE = { width: 375, height: 667 };

async function newUser(name, { locale = 'en-US', viewport = { width: 1100, height: 720 } } = {}) {
  const ctx = await browser.newContext({ viewport, locale });
  const page = await ctx.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => pageErrors.push(name + ': ' + e.message));
  await page.goto(srv.url + '/');
  await page.fill('#login-name', name);
  await page.click('#login-button');
  await page.waitForSelector('#conn[data-state="open"]');
  const id = Number((await page.textContent('#me-id')).match(/\d+/)[0]);
  return { ctx, page, name, id };
}

async function send(u, text) {
  await u.page.fill('#composer-input', text);
  await u.page.press('#composer-input', 'Enter');
}
const texts = (u) => u.page.$$eval('#message-list li.msg:not(.pending) .text', (els) => els.map((e) => e.textContent));
const waitTexts = (u, want, timeout = 20000) =>
  u.page.waitForFunction((w) => JSON.stringify([...document.querySelectorAll('#message-list li.msg:not(.pending) .text')].map((e) => e.textContent)) === JSON.stringify(w) && !document.querySelector('#message-list li.pending'), want, { timeout });
async function startChat(u, peer) {
  await u.page.fill('#new-chat-input', String(peer.id));
  await u.page.click('#new-chat button');
  await u.page.waitForSelector(`#chat-title:text-is("${peer.name}")`);
}
async function noHorizontalOverflow(u, what) {
  const r = await u.page.evaluate(() => ({ sw: document.documentElement.scrollWidth, bw: document.body.scrollWidth, w: innerWidth }));
  assert.ok(r.sw <= r.w && r.bw <= r.w, `${what}: no horizontal overflow (${JSON.stringify(r)})`);
}
/** The server has the profile/search/recall ops (the chat-server branch)? */
const serverHasPeople = (u) =>
  u.page.evaluate(async () => {
    const { XindaoClient } = await import('/xindao.js');
    const c = new XindaoClient({ token: JSON.parse(localStorage.getItem('xindao.session')).token, lifecycle: false });
    try {
      await c.connect();
      await c.request('contacts', {});
      return true;
    } catch (e) {
      return e.code !== 'unknown_op';
    } finally {
      c.close();
    }
  });

before(async () => {
  srv = await startServer({ args: ['--max-text-chars', String(MAX)] });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30000 });
});
after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (srv) {
    await srv.stop('SIGKILL');
    srv.cleanup();
  }
  assert.deepEqual(pageErrors, [], 'no uncaught page errors');
});

test('offline is shown within 5 s and recovered with nothing lost or doubled; an offline message survives a reload', async () => {
  const alice = await newUser('alice');
  const bob = await newUser('bob');
  await startChat(alice, bob);
  await send(alice, 'before');
  await bob.page.click('#conversations li.conv:has(.conv-title:text-is("alice"))');
  await waitTexts(bob, ['before']);
  await alice.page.waitForSelector('#chat-sub[data-online="true"]');

  // ---- the network goes away: the banner says so within 5 s, the peer's presence becomes unknown
  const t0 = Date.now();
  await alice.ctx.setOffline(true);
  await alice.page.waitForSelector('#conn:not([data-state="open"])', { timeout: 5000 });
  const took = Date.now() - t0;
  assert.ok(took <= 5000, `offline shown after ${took} ms`);
  console.log(`offline shown after ${took} ms`);
  await alice.page.waitForSelector('#chat-sub[data-online="unknown"]', { timeout: 2000 });
  await send(alice, 'offline 1');
  await send(alice, 'offline 2');
  await send(bob, 'while alice was away');
  await alice.page.waitForFunction(() => document.querySelectorAll('#message-list li.pending').length === 2);
  await alice.ctx.setOffline(false);
  await alice.page.waitForSelector('#conn[data-state="open"]', { timeout: 15000 });
  const all = ['before', 'offline 1', 'offline 2', 'while alice was away'];
  const sorted = (xs) => [...xs].sort();
  for (const u of [alice, bob]) {
    await u.page.waitForFunction((n) => document.querySelectorAll('#message-list li.msg:not(.pending)').length === n && !document.querySelector('#message-list li.pending'), all.length, { timeout: 20000 });
    const v = await texts(u);
    assert.deepEqual(sorted(v), sorted(all), u.name + ' sees every message once');
    assert.deepEqual(v.filter((x) => x.startsWith('offline')), ['offline 1', 'offline 2'], 'in the order typed');
  }

  // ---- offline again, a message typed, and the tab reloaded before the connection comes back
  await alice.ctx.setOffline(true);
  await alice.page.waitForSelector('#conn:not([data-state="open"])', { timeout: 5000 });
  await send(alice, 'typed offline, then reloaded');
  await alice.page.waitForSelector('#message-list li.pending');
  // keep the reloaded page from reconnecting until we have seen it restore the message from storage
  await alice.ctx.route('**/v1/ws/ticket', (r) => r.abort());
  await alice.ctx.setOffline(false);
  await alice.page.reload();
  // the last conversation reopens by itself, with the unsent message shown as sending
  await alice.page.waitForSelector('#chat-title:text-is("bob")');
  await alice.page.waitForSelector('#message-list li.pending .text:text-is("typed offline, then reloaded")');
  await alice.ctx.unroute('**/v1/ws/ticket');
  await alice.page.waitForSelector('#conn[data-state="open"]', { timeout: 20000 });
  const final = [...all, 'typed offline, then reloaded'];
  for (const u of [alice, bob]) {
    await u.page.waitForFunction((n) => document.querySelectorAll('#message-list li.msg:not(.pending)').length === n && !document.querySelector('#message-list li.pending'), final.length, { timeout: 20000 });
    assert.deepEqual(sorted(await texts(u)), sorted(final), u.name + ': delivered exactly once');
  }
  await alice.page.waitForTimeout(1000); // a late duplicate would show up here
  assert.equal((await texts(bob)).filter((x) => x === 'typed offline, then reloaded').length, 1);
  await alice.ctx.close();
  await bob.ctx.close();
});

test('composer counter, refused text kept, readable errors cleared by success, unread count in the title', async () => {
  const carol = await newUser('carol');
  const dave = await newUser('dave');
  await startChat(carol, dave);
  await carol.page.fill('#composer-input', 'x'.repeat(MAX - 5));
  await carol.page.waitForSelector(`#composer-count:text-is("${MAX - 5} / ${MAX}")`);
  const emoji = '😀'.repeat(MAX + 1); // 2 UTF-16 units each: counted as the server counts, 1 each
  await carol.page.fill('#composer-input', emoji);
  await carol.page.waitForSelector(`#composer-count.over:text-is("${MAX + 1} / ${MAX}")`);
  assert.equal(await carol.page.isDisabled('#send'), true, 'send is disabled over the limit');
  await carol.page.press('#composer-input', 'Enter');
  await carol.page.waitForSelector('#action-error:text-is("The message is too long (101 / 100)")');
  assert.equal(await carol.page.inputValue('#composer-input'), emoji, 'the text stays where it was typed');
  assert.equal(await carol.page.locator('#message-list li.msg').count(), 0, 'nothing was sent');
  // exactly the limit is accepted, and the error goes away
  await send(carol, '😀'.repeat(MAX));
  await waitTexts(carol, ['😀'.repeat(MAX)]);
  await carol.page.waitForSelector('#action-error:empty');
  // a server error reads out in words (and is cleared by the next success)
  await carol.page.fill('#new-chat-input', '999999');
  await carol.page.click('#new-chat button');
  const err = await carol.page.waitForSelector('#action-error:not(:empty)');
  assert.doesNotMatch(await err.textContent(), /not_found|_/, 'no raw code');
  await startChat(carol, dave);
  await carol.page.waitForSelector('#action-error:empty');

  // dave is elsewhere (no conversation open): the title counts his unread messages
  await send(carol, 'one');
  await send(carol, 'two');
  await dave.page.waitForFunction(() => document.title.startsWith('(3) '));
  await dave.page.click('#conversations li.conv:has(.conv-title:text-is("carol"))');
  await dave.page.waitForFunction(() => !document.title.startsWith('('));
  await carol.ctx.close();
  await dave.ctx.close();
});

test('rooms: invite-only creation, the owner adds and removes members, "X joined/left" lines', async () => {
  const erin = await newUser('erin');
  const fred = await newUser('fred');
  await erin.page.fill('#new-room-input', 'secret room');
  await erin.page.check('#new-room-invite');
  await erin.page.click('#new-room button[type=submit]');
  await erin.page.waitForSelector('#chat-title:text-is("# secret room")');
  await erin.page.waitForSelector('#chat-sub:has-text("invite-only room")');
  await fred.page.click('#refresh-rooms');
  assert.equal(await fred.page.locator('#public-rooms .room-name:text-is("# secret room")').count(), 0, 'not listed publicly');
  await erin.page.click('#members-button');
  await erin.page.fill('#members-add-input', String(fred.id));
  await erin.page.click('#members-add button');
  await erin.page.waitForSelector(`#member-list li[data-id="${fred.id}"]`);
  await erin.page.waitForSelector('#message-list li.system:text-is("erin added fred")');
  await fred.page.waitForSelector('#conversations li.conv:has(.conv-title:text-is("# secret room"))');
  await fred.page.click('#conversations li.conv:has(.conv-title:text-is("# secret room"))');
  await send(fred, 'hi erin');
  await waitTexts(erin, ['hi erin']);
  await erin.page.click(`#member-list li[data-id="${fred.id}"] button.remove`);
  await erin.page.waitForSelector(`#member-list li[data-id="${fred.id}"]`, { state: 'detached' });
  await erin.page.waitForSelector('#message-list li.system:text-is("erin removed fred")');
  await fred.page.waitForSelector('#conversations li.conv:has(.conv-title:text-is("# secret room"))', { state: 'detached' });
  await erin.ctx.close();
  await fred.ctx.close();
});

test('zh-CN from the browser language, English by the switch; 375x667 without horizontal overflow; screenshots', async () => {
  const wang = await newUser('王小明', { locale: 'zh-CN' });
  const li = await newUser('李雷', { locale: 'zh-CN', viewport: MOBILE });
  assert.equal(await wang.page.getAttribute('html', 'lang'), 'zh-CN');
  // the status bar adds the current round trip once one is measured
  assert.match(await wang.page.textContent('#conn'), /^在线( · 往返 \d+ 毫秒)?$/);
  assert.equal(await wang.page.textContent('#logout'), '退出登录');
  assert.equal(await wang.page.title(), '信道');
  await noHorizontalOverflow(li, 'mobile list');

  await startChat(wang, li);
  await send(wang, '你好，李雷！周末一起去爬山吗？');
  await send(wang, 'https://example.com/a/very/long/link/without/any/spaces/that/must/wrap/in/the/bubble');
  await li.page.click('#conversations li.conv:has(.conv-title:text-is("王小明"))');
  await waitTexts(li, ['你好，李雷！周末一起去爬山吗？', 'https://example.com/a/very/long/link/without/any/spaces/that/must/wrap/in/the/bubble']);
  await send(li, '好啊，几点出发？');
  await waitTexts(wang, ['你好，李雷！周末一起去爬山吗？', 'https://example.com/a/very/long/link/without/any/spaces/that/must/wrap/in/the/bubble', '好啊，几点出发？']);
  await wang.page.waitForSelector('#message-list li.day:text-is("今天")');
  await wang.page.waitForSelector('#message-list .read-mark:text-is("已读")');
  await noHorizontalOverflow(li, 'mobile chat');
  await li.page.screenshot({ path: join(docShots, 'mobile-zh-chat.png') });
  await li.page.click('#back');
  await li.page.waitForSelector('#conversations li.conv');
  await noHorizontalOverflow(li, 'mobile list with a chat');
  await li.page.screenshot({ path: join(docShots, 'mobile-zh-conversations.png') });
  await wang.page.fill('#new-room-input', '周末爬山');
  await wang.page.click('#new-room button[type=submit]');
  await wang.page.waitForSelector('#chat-title:text-is("# 周末爬山")');
  await send(wang, '大家在这里商量路线');
  await wang.page.click('#members-button');
  await wang.page.waitForSelector('#member-list li');
  await wang.page.screenshot({ path: join(docShots, 'desktop-zh-room.png') });
  await wang.page.click('#members-close');
  await wang.page.click('#conversations li.conv:has(.conv-title:text-is("李雷"))');
  await wang.page.waitForSelector('#message-list .read-mark');
  await wang.page.screenshot({ path: join(docShots, 'desktop-zh-chat.png') });

  // the switch: English, kept across a reload
  await wang.page.click('#lang');
  assert.match(await wang.page.textContent('#conn'), /^Online( · round trip \d+ ms)?$/);
  assert.equal(await wang.page.getAttribute('html', 'lang'), 'en');
  await wang.page.reload();
  await wang.page.waitForSelector('#conn[data-state="open"]');
  assert.equal(await wang.page.textContent('#logout'), 'Log out');
  await wang.page.click('#lang');
  assert.equal(await wang.page.textContent('#logout'), '退出登录');

  // the login page in Chinese on a phone
  const guest = await browser.newContext({ viewport: MOBILE, locale: 'zh-CN' });
  const gp = await guest.newPage();
  await gp.goto(srv.url + '/');
  await gp.waitForSelector('#login-button:text-is("登录")');
  await gp.screenshot({ path: join(docShots, 'mobile-zh-login.png') });
  await guest.close();
  await wang.ctx.close();
  await li.ctx.close();
});

test('profile, search by name, contacts, recall and delete-for-me through the page (needs the chat-server ops)', async () => {
  const gina = await newUser('gina', { locale: 'zh-CN' });
  const hank = await newUser('hank', { locale: 'zh-CN' });
  if (!(await serverHasPeople(gina))) {
    console.log('SKIPPED: the server has no profile_set/user_search/contacts/recall yet (merge the chat-server branch)');
    await gina.ctx.close();
    await hank.ctx.close();
    return;
  }
  // hank renames himself and sets an avatar
  await hank.page.click('#me-edit');
  await hank.page.fill('#profile-name', '汉克 Hank');
  await hank.page.fill('#profile-avatar', 'https://example.com/hank.png');
  await hank.page.click('#profile-save');
  await hank.page.waitForSelector('#me-name:text-is("汉克 Hank")');
  // gina finds him by a name prefix and starts a chat
  await gina.page.fill('#new-chat-input', '汉克');
  await gina.page.click('#new-chat button');
  await gina.page.click(`#search-results li[data-id="${hank.id}"] button`);
  await gina.page.waitForSelector('#chat-title:text-is("汉克 Hank")');
  await send(gina, '找到你了');
  await send(gina, '这条要撤回');
  await hank.page.click('#conversations li.conv:has(.conv-title:text-is("gina"))');
  await waitTexts(hank, ['找到你了', '这条要撤回']);
  await hank.page.waitForSelector(`#contacts li[data-id="${gina.id}"]`);
  // gina recalls her last message: both see the tombstone line, not the text
  await gina.page.click('#message-list li.msg:has(.text:text-is("这条要撤回")) .menu-btn');
  await gina.page.click('.msg-menu button[data-action="recall"]');
  await gina.page.waitForSelector('#message-list li.tombstone:text-is("你撤回了一条消息")');
  await hank.page.waitForSelector('#message-list li.tombstone:text-is("gina 撤回了一条消息")');
  await gina.page.waitForSelector('#conversations .conv-preview:text-is("你撤回了一条消息")');
  await gina.page.waitForSelector(`#contacts li[data-id="${hank.id}"]`);
  assert.deepEqual(await texts(hank), ['找到你了']);
  // hank deletes the first one for himself: gone for him, still there for gina
  await hank.page.click('#message-list li.msg:has(.text:text-is("找到你了")) .menu-btn');
  await hank.page.click('.msg-menu button[data-action="hide"]');
  await hank.page.waitForFunction(() => !document.querySelector('#message-list li.msg'));
  assert.deepEqual(await texts(gina), ['找到你了']);
  await gina.page.screenshot({ path: join(docShots, 'desktop-zh-recall.png') });
  await gina.ctx.close();
  await hank.ctx.close();
});
