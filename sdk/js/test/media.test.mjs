// Media through the SDK against the real server: a mini-program client (the CommonJS build under the `wx`
// stand-in) uploads a real PNG from a temp file path with a multipart wx.uploadFile and sends it; a browser-
// mode client (fetch + Blob) gets it pushed, asks for its URLs (batched into one media_url request, cached
// until expiry) and downloads it; a WAV recording sent with sendVoice carries its measured duration; refused
// uploads come back as readable errors; a recalled image's URL stops working.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../testlib/server.mjs';
import { createWx } from '../testlib/wx-shim.mjs';
import { connectedClient, nextEvent } from '../testlib/util.mjs';
import { png, wav } from '../testlib/fixtures.mjs';
import { errorText } from '../src/xindao.js';

const require = createRequire(import.meta.url);
const { XindaoClient: CjsClient } = require('../dist/xindao.cjs');

const servers = [];
const clients = [];
after(async () => {
  for (const c of clients) c.close();
  for (const s of servers) {
    await s.stop('SIGKILL');
    s.cleanup();
  }
});

/** Counts the operations a client sends, by name. */
function countOps(client) {
  const counts = {};
  const request = client.request.bind(client);
  client.request = (op, args, opts) => {
    counts[op] = (counts[op] || 0) + 1;
    return request(op, args, opts);
  };
  return counts;
}

test('mini-program uploads an image through wx.uploadFile and sends it; the peer downloads it', async () => {
  const srv = await startServer();
  servers.push(srv);
  const wx = createWx();
  const mp = new CjsClient({ url: srv.url, wx });
  clients.push(mp);
  await mp.loginDev('mp-photo');
  await mp.connect();
  const web = await connectedClient(srv.url, 'web-viewer');
  clients.push(web);

  const dir = mkdtempSync(join(tmpdir(), 'xindao-media-'));
  const photo = png(400, 300);
  const path = join(dir, 'tmp_9f2c.png'); // what wx.chooseMedia hands out: a temp path
  writeFileSync(path, photo);
  const pushed = nextEvent(web, 'message', (m) => m.kind === 'image');
  const ack = await mp.sendImage({ toUser: web.user.id }, path);
  assert.equal(wx.__stats.uploads, 1, 'one wx.uploadFile');
  const content = ack.message.content;
  assert.equal(ack.message.kind, 'image');
  assert.deepEqual(
    { mime: content.mime, size: content.size, width: content.width, height: content.height, thumb: content.thumb },
    { mime: 'image/png', size: photo.length, width: 400, height: 300, thumb: true },
  );
  const got = await pushed;
  assert.deepEqual(got.content, content);

  // two lookups in one tick: one media_url request; then from the cache
  const ops = countOps(web);
  const [one, many] = await Promise.all([web.mediaUrl(content.media_id), web.mediaUrl([content.media_id, 'AAAAAAAAAAAAAAAAAAAAAA'])]);
  assert.equal(ops.media_url, 1, 'batched');
  assert.ok(one.url.startsWith(srv.url + '/v1/media/'), one.url);
  assert.deepEqual(Object.keys(many), [content.media_id], 'ids the viewer may not see are left out');
  assert.ok(one.expires_at > Date.now() + 60000);
  assert.deepEqual(await web.mediaUrl(content.media_id), one);
  assert.equal(ops.media_url, 1, 'cached until it expires');
  const full = await fetch(one.url);
  assert.equal(full.status, 200);
  assert.equal(full.headers.get('content-type'), 'image/png');
  assert.deepEqual(Buffer.from(await full.arrayBuffer()), photo);
  const thumb = await fetch(one.thumb_url);
  assert.equal(thumb.status, 200);

  // recalled: the URL handed out before stops working
  await mp.recall(ack.message.conversation_id, ack.message.seq);
  assert.equal((await fetch(one.url)).status, 404);
});

test('browser mode: sendVoice with a WAV Blob carries its duration; refused uploads read as text', async () => {
  const srv = await startServer();
  servers.push(srv);
  const a = await connectedClient(srv.url, 'voice-a');
  const b = await connectedClient(srv.url, 'voice-b');
  clients.push(a, b);
  const pushed = nextEvent(b, 'message', (m) => m.kind === 'voice');
  const ack = await a.sendVoice({ toUser: b.user.id }, new Blob([wav(1500)], { type: 'audio/wav' }), { name: 'memo.wav' });
  assert.equal(ack.message.kind, 'voice');
  assert.equal(ack.message.content.mime, 'audio/wav');
  assert.ok(Math.abs(ack.message.content.duration_ms - 1500) <= 20, String(ack.message.content.duration_ms));
  assert.equal((await pushed).content.duration_ms, ack.message.content.duration_ms);

  // text bytes claimed as an image: unsupported_media, in words
  const err = await a.sendImage({ toUser: b.user.id }, new Blob(['not a picture']), { name: 'x.png' }).then(
    () => null,
    (e) => e,
  );
  assert.equal(err.code, 'unsupported_media');
  assert.equal(errorText(err, 'zh-CN'), '不支持的文件类型');
  assert.equal(errorText(err, 'en'), 'This file type is not supported');
  const bad = await a.uploadMedia(new Blob(['x']), { kind: 'video' }).catch((e) => e);
  assert.equal(bad.code, 'invalid_args');
  // without a session: refused before any bytes go out
  const anon = new (await import('../src/xindao.js')).XindaoClient({ url: srv.url });
  const unauth = await anon.uploadMedia(new Blob(['x'])).catch((e) => e);
  assert.equal(unauth.code, 'unauthorized');
});
