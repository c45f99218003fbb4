// End to end, media on the web page in Chromium against the real binary: alice attaches an image, a voice
// recording (a WAV made here) and a file; bob sees the thumbnail, enlarges it in the overlay, sees the
// recording's duration and the file's name and link; alice recalls the image and its URL stops working; a
// phone-sized page in Chinese shows the media without horizontal overflow. Screenshots: e2e/screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from '../../sdk/js/testlib/server.mjs';
import { png, wav } from '../../sdk/js/testlib/fixtures.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const shots = join(here, '..', 'screenshots');
mkdirSync(shots, { recursive: true });

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const MOBILE = { width: 375, height: 667 };

let srv;
let browser;
const pageErrors = [];

async function newUser(name, opts = {}) {
  const ctx = await browser.newContext({ viewport: opts.viewport || { width: 1100, height: 720 }, locale: opts.locale || 'en-US' });
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

async function chatWith(u, peer) {
  await u.page.fill('#new-chat-input', String(peer.id));
  await u.page.click('#new-chat button');
  await u.page.waitForSelector(`#chat-title:text-is("${peer.name}")`);
}

async function attach(u, name, mimeType, buffer) {
  const before = await u.page.locator('#message-list li.msg.mine:not(.pending)').count();
  await u.page.setInputFiles('#attach-input', { name, mimeType, buffer });
  await u.page.waitForFunction((n) => document.querySelectorAll('#message-list li.msg.mine:not(.pending)').length === n, before + 1);
}

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

test('an image, a voice message and a file: sent, shown to the peer, enlarged; a recalled image is gone', async () => {
  const alice = await newUser('alice');
  const bob = await newUser('bob');
  await chatWith(alice, bob);
  await attach(alice, 'photo.png', 'image/png', png(640, 480));
  await attach(alice, 'memo.wav', 'audio/wav', wav(3200));
  await attach(alice, 'notes.txt', 'text/plain', Buffer.from('minutes of the meeting\n'));

  await bob.page.click('#conversations li.conv:has(.conv-title:text-is("alice"))');
  // the image: its thumbnail loads (a signed same-origin URL), scaled to the bubble
  const img = bob.page.locator('#message-list li.msg.theirs .bubble.media.image img.media-img');
  await img.waitFor();
  await bob.page.waitForFunction(() => {
    const i = document.querySelector('#message-list .bubble.media.image img');
    return i && i.complete && i.naturalWidth > 0;
  });
  const thumb = await img.evaluate((i) => ({ natural: [i.naturalWidth, i.naturalHeight], shown: [i.width, i.height], src: i.getAttribute('src') }));
  assert.deepEqual(thumb.natural, [320, 240], 'the server-made thumbnail');
  assert.deepEqual(thumb.shown, [240, 180]);
  assert.match(thumb.src, /^http.*\/v1\/media\/[A-Za-z0-9_-]{22}\?exp=\d+&thumb=1&sig=.+$/);
  // click: full size in the overlay; Escape closes it
  await img.click();
  await bob.page.waitForSelector('#lightbox:not([hidden])');
  await bob.page.waitForFunction(() => document.getElementById('lightbox-img').naturalWidth === 640);
  await bob.page.screenshot({ path: join(shots, 'media-01-bob-enlarged.png') });
  await bob.page.keyboard.press('Escape');
  await bob.page.waitForSelector('#lightbox', { state: 'hidden' });

  // the voice message: a play button and its duration, measured by the server
  const voice = bob.page.locator('#message-list li.msg.theirs .bubble.media.voice');
  assert.equal(await voice.locator('.duration').textContent(), '3″');
  assert.equal(await voice.locator('.play').count(), 1);
  // the file: its name, size and a download link
  const file = bob.page.locator('#message-list li.msg.theirs .bubble.media.file');
  assert.equal(await file.locator('.file-name').textContent(), 'notes.txt');
  assert.equal(await file.locator('.file-size').textContent(), '23 B');
  await bob.page.waitForFunction(() => /\/v1\/media\/.+sig=/.test(document.querySelector('.bubble.media.file a.file-link').href));
  await bob.page.screenshot({ path: join(shots, 'media-02-bob-media.png') });
  // the conversation list's preview names the last one
  const preview = await alice.page.textContent('#conversations li.conv:has(.conv-title:text-is("bob")) .conv-preview');
  assert.equal(preview, 'You: [File] notes.txt');

  // alice recalls the image: bob sees the tombstone, and the URL he had stops working
  const seq = await alice.page.getAttribute('#message-list li.msg.mine:has(.bubble.media.image)', 'data-seq');
  await alice.page.click(`#message-list li.msg.mine[data-seq="${seq}"] .menu-btn`);
  await alice.page.click('.msg-menu button[data-action="recall"]');
  await bob.page.waitForSelector(`#message-list li.tombstone[data-seq="${seq}"]`);
  // (asked past the browser's cache: a copy it already holds is the client's own)
  const status = await bob.page.evaluate(async (url) => (await fetch(url, { cache: 'no-store' })).status, thumb.src);
  assert.equal(status, 404);

  assert.deepEqual(pageErrors, []);
  await alice.ctx.close();
  await bob.ctx.close();
});

test('375x667 in Chinese: media bubbles fit the phone, texts are Chinese', async () => {
  const carol = await newUser('carol', { viewport: MOBILE, locale: 'zh-CN' });
  const dave = await newUser('dave');
  await chatWith(dave, carol);
  await attach(dave, 'wide.png', 'image/png', png(1600, 400));
  await attach(dave, 'long.wav', 'audio/wav', wav(45000));
  await attach(dave, 'a-very-long-file-name-that-would-overflow-a-narrow-phone-screen-report-2026.pdf', 'application/pdf', Buffer.from('%PDF-1.4\n%%EOF\n'));
  await carol.page.waitForFunction(() => /\[文件\]/.test(document.querySelector('#conversations li.conv .conv-preview').textContent));
  await carol.page.click('#conversations li.conv');
  await carol.page.waitForSelector('#message-list .bubble.media.image img[src]');
  assert.equal(await carol.page.getAttribute('#attach', 'title'), '发送图片、语音或文件');
  assert.equal(await carol.page.textContent('#message-list .bubble.media.voice .duration'), '45″');
  assert.equal(await carol.page.textContent('#message-list .bubble.media.file a.file-link'), '下载');
  const r = await carol.page.evaluate(() => ({ sw: document.documentElement.scrollWidth, bw: document.body.scrollWidth, w: innerWidth }));
  assert.ok(r.sw <= r.w && r.bw <= r.w, `no horizontal overflow at 375 px: ${JSON.stringify(r)}`);
  // every bubble inside the viewport
  const widest = await carol.page.$$eval('#message-list .bubble', (bs) => Math.max(...bs.map((b) => b.getBoundingClientRect().right)));
  assert.ok(widest <= MOBILE.width, `bubbles end at ${widest}`);
  await carol.page.screenshot({ path: join(shots, 'media-03-mobile-zh.png') });
  assert.deepEqual(pageErrors, []);
  await carol.ctx.close();
  await dave.ctx.close();
});
