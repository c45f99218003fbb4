// The mini-program example itself (examples/miniprogram: app.js and its pages' logic) run in Node under the
// `wx` stand-in (testlib/wx-shim.mjs) against the real server: the login page settles with a readable Chinese
// error while the server is unreachable; dev login, search by id, chat with the length check that keeps the
// draft, invite-only room creation and leaving; the profile page's save; an image chosen, uploaded through a
// multipart wx.uploadFile, sent and previewed, a held-to-record AAC voice message sent and played. WXML is
// not rendered here.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { startServer, repoRoot } from '../testlib/server.mjs';
import { createWx } from '../testlib/wx-shim.mjs';
import { waitFor, connectedClient as connectedPeer } from '../testlib/util.mjs';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { png, adts } from '../testlib/fixtures.mjs';

const mp = join(repoRoot, 'examples', 'miniprogram');
const require = createRequire(join(mp, 'app.js'));
const servers = [];
after(async () => {
  if (globalThis.__app && globalThis.__app.client) globalThis.__app.client.close();
  for (const s of servers) {
    await s.stop('SIGKILL');
    s.cleanup();
  }
});

/** The mini-program runtime around the shim: App/Page/getApp and the UI calls the pages make, recorded. */
function runtime() {
  const wx = createWx();
  const ui = { toasts: [], nav: [], modals: [] };
  Object.assign(wx, {
    getAppBaseInfo: () => ({ language: 'zh_CN' }),
    showToast: (o) => ui.toasts.push(o.title),
    redirectTo: (o) => ui.nav.push(o.url),
    navigateTo: (o) => ui.nav.push(o.url),
    reLaunch: (o) => ui.nav.push(o.url),
    navigateBack: () => ui.nav.push('back'),
    setNavigationBarTitle: () => {},
    showNavigationBarLoading: () => {},
    hideNavigationBarLoading: () => {},
    stopPullDownRefresh: () => {},
    showModal: (o) => {
      ui.modals.push(o.content);
      setTimeout(() => o.success({ confirm: true }), 0);
    },
  });
  globalThis.wx = wx;
  const pages = {};
  globalThis.App = (def) => (globalThis.__app = def);
  globalThis.getApp = () => globalThis.__app;
  globalThis.Page = (def) => (pages.last = def);
  return { wx, ui, pages };
}

/** A page instance: its definition with data and setData (merging top-level keys). */
function instantiate(path, pages) {
  delete require.cache[require.resolve(path)];
  require(path);
  const def = pages.last;
  const page = { ...def, data: JSON.parse(JSON.stringify(def.data)) };
  page.setData = (patch) => Object.assign(page.data, patch);
  return page;
}

function boot(url, timeoutMs) {
  const config = require('./config.js');
  config.SERVER_URL = url;
  config.CONNECT_TIMEOUT_MS = timeoutMs;
  delete require.cache[require.resolve('./app.js')];
  require('./app.js');
  globalThis.__app.onLaunch();
  return globalThis.__app;
}

test('login page: an unreachable server gives a readable error within the timeout, not an endless wait', async () => {
  const { wx, pages } = runtime();
  const srv = await startServer();
  servers.push(srv);
  // a session saved by an earlier run, then the server goes away
  const r = await fetch(srv.url + '/v1/login/dev', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ display_name: 'mp-away' }) });
  const session = await r.json();
  wx.setStorageSync('xindao.session', { token: session.token, user: session.user });
  await srv.stop('SIGKILL');
  const app = boot(srv.url, 1500);
  const login = instantiate('./pages/login/login.js', pages);
  const t0 = Date.now();
  await login.onLoad();
  await waitFor(() => login.data.error, 5000, 'an error on the login page');
  const took = Date.now() - t0;
  assert.ok(took < 4000, `settled after ${took} ms`);
  assert.equal(login.data.error, '无法连接服务器，请检查网络（仍在重试）');
  assert.equal(login.data.busy, false);
  // a dev login against the dead server: readable too
  login.setData({ name: 'someone' });
  await login.devLogin();
  assert.match(login.data.error, /^登录失败：网络错误/);
  app.client.close();
});

test('mini-program: dev login, chat by user id with the length check, invite-only room, leave, profile', async () => {
  const { ui, pages } = runtime();
  const srv = await startServer({ args: ['--max-text-chars', '20'] });
  servers.push(srv);
  const app = boot(srv.url, 5000);
  const peer = await fetch(srv.url + '/v1/login/dev', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ display_name: 'mp-peer' }) }).then((x) => x.json());

  const login = instantiate('./pages/login/login.js', pages);
  login.onLoad();
  assert.equal(login.data.s.devLogin, '开发登录', 'zh-CN from WeChat language zh_CN');
  login.setData({ name: 'mp-user' });
  await login.devLogin();
  assert.equal(login.data.error, '');
  assert.deepEqual(ui.nav, ['/pages/conversations/conversations']);

  const convs = instantiate('./pages/conversations/conversations.js', pages);
  convs.onLoad();
  convs.onShow();
  convs.setData({ query: String(peer.user.id) });
  await convs.search();
  const chatUrl = ui.nav[ui.nav.length - 1];
  assert.match(chatUrl, /^\/pages\/chat\/chat\?id=\d+$/);
  const convId = Number(chatUrl.split('=')[1]);

  const chat = instantiate('./pages/chat/chat.js', pages);
  await chat.onLoad({ id: String(convId) });
  const long = '好'.repeat(21);
  chat.onInput({ detail: { value: long } });
  assert.equal(chat.data.count, '21 / 20');
  assert.equal(chat.data.over, true);
  chat.send();
  assert.equal(ui.toasts[ui.toasts.length - 1], '消息太长（21 / 20）');
  assert.equal(chat.data.draft, long, 'the draft is kept');
  chat.onInput({ detail: { value: '你好' } });
  chat.send();
  await waitFor(() => chat.data.msgs.some((m) => m.text === '你好' && !m.pending), 5000, 'sent and acknowledged');
  assert.ok(chat.data.msgs.some((m) => m.day === '今天'), 'a day separator');
  chat.onUnload();

  // an invite-only room, then leave it from the chat page
  convs.setData({ roomName: '小程序群', invite: true });
  await convs.createRoom();
  const roomId = Number(ui.nav[ui.nav.length - 1].split('=')[1]);
  const rooms = await app.client.conversations();
  assert.equal(rooms.find((c) => c.id === roomId).visibility, 'invite');
  const roomChat = instantiate('./pages/chat/chat.js', pages);
  await roomChat.onLoad({ id: String(roomId) });
  assert.equal(roomChat.data.room, true);
  roomChat.leave();
  await waitFor(() => ui.nav[ui.nav.length - 1] === 'back', 5000, 'left the room');
  assert.ok(!(await app.client.conversations()).some((c) => c.id === roomId));
  roomChat.onUnload();

  // profile: the nickname is saved through profile_set (needs the chat-server branch)
  const profile = instantiate('./pages/profile/profile.js', pages);
  profile.onLoad();
  profile.onName({ detail: { value: '小程序用户' } });
  await profile.save();
  if (profile.data.error === '服务器不支持此操作，请升级服务器') {
    console.log('SKIPPED: profile save needs profile_set (merge the chat-server branch)');
  } else {
    assert.equal(profile.data.error, '');
    assert.equal(app.client.user.display_name, '小程序用户');
  }
  convs.onUnload();
  app.client.close();
});

test('mini-program media: choose an image, upload it with wx.uploadFile, preview it; hold to record voice, play it', async () => {
  const { wx, ui, pages } = runtime();
  const srv = await startServer();
  servers.push(srv);
  const app = boot(srv.url, 5000);
  const dir = mkdtempSync(join(tmpdir(), 'xindao-mp-media-'));
  // the platform's media APIs, as the page uses them: a chosen photo and a recording are temp files
  const photo = png(300, 200);
  const calls = { previews: [], played: [], recorder: null, uploads: 0 };
  Object.assign(wx, {
    chooseMedia: (o) => {
      const path = join(dir, 'tmp_photo.png');
      writeFileSync(path, photo);
      setTimeout(() => o.success({ type: 'image', tempFiles: [{ tempFilePath: path, size: photo.length, fileType: 'image' }] }), 0);
    },
    previewImage: (o) => calls.previews.push(o),
    getRecorderManager: () => {
      const handlers = {};
      let started = 0;
      let options = null;
      return (calls.recorder = {
        onStop: (f) => (handlers.stop = f),
        onError: (f) => (handlers.error = f),
        start: (o) => {
          options = o;
          started = Date.now();
        },
        stop: () => {
          // the recording is as long as the finger was held (plus the time `holdMs` pretends)
          const duration = Date.now() - started + (calls.holdMs || 0);
          const path = join(dir, 'tmp_voice_' + duration + '.aac');
          assert.equal(options.format, 'aac');
          writeFileSync(path, adts(duration));
          setTimeout(() => handlers.stop({ tempFilePath: path, duration, fileSize: 0 }), 0);
        },
      });
    },
    createInnerAudioContext: () => {
      const ctx = { src: '', onEnded() {}, onStop() {}, onError() {}, stop() {}, destroy() {}, play: () => calls.played.push(ctx.src) };
      return ctx;
    },
  });
  const uploadFile = wx.uploadFile;
  wx.uploadFile = (o) => {
    calls.uploads++;
    return uploadFile(o);
  };

  const peer = await connectedPeer(srv.url, 'mp-media-peer');
  const login = instantiate('./pages/login/login.js', pages);
  login.onLoad();
  login.setData({ name: 'mp-media' });
  await login.devLogin();
  const conv = await app.client.openDirect(peer.user.id);
  const chat = instantiate('./pages/chat/chat.js', pages);
  await chat.onLoad({ id: String(conv.id) });

  // an image: chosen, uploaded (multipart wx.uploadFile), sent; shown with its thumbnail; tap previews it
  const gotImage = new Promise((resolve) => peer.on('message', (m) => m.kind === 'image' && resolve(m)));
  chat.chooseImage();
  const image = await gotImage;
  assert.equal(calls.uploads, 1);
  assert.deepEqual([image.content.width, image.content.height, image.content.mime], [300, 200, 'image/png']);
  const bubble = await waitFor(() => chat.data.msgs.find((m) => m.kind === 'image' && m.src), 5000, 'an image bubble with its thumbnail');
  assert.match(bubble.src, /\/v1\/media\/.+thumb=1/);
  assert.deepEqual([bubble.w, bubble.h], [300, 200], 'no larger than the image');
  const full = await peer.mediaUrl(image.content.media_id);
  const download = await fetch(full.url);
  assert.equal(download.status, 200);
  assert.deepEqual(Buffer.from(await download.arrayBuffer()), photo);
  await chat.previewImage({ currentTarget: { dataset: { media: image.content.media_id } } });
  assert.equal(calls.previews.length, 1);
  assert.match(calls.previews[0].current, /\/v1\/media\/[^?]+\?exp=/);

  // voice: hold to talk (AAC), release to send; the duration the server measured is shown
  chat.toggleVoice();
  assert.equal(chat.data.voiceMode, true);
  const gotVoice = new Promise((resolve) => peer.on('message', (m) => m.kind === 'voice' && resolve(m)));
  calls.holdMs = 2300;
  chat.recordStart();
  assert.equal(chat.data.recording, true);
  chat.recordEnd();
  const voice = await gotVoice;
  assert.ok(Math.abs(voice.content.duration_ms - 2300) < 100, String(voice.content.duration_ms));
  const vbubble = await waitFor(() => chat.data.msgs.find((m) => m.kind === 'voice'), 5000, 'a voice bubble');
  assert.equal(vbubble.duration, '2″');
  await chat.playVoice({ currentTarget: { dataset: { media: voice.content.media_id } } });
  assert.match(calls.played[0], /\/v1\/media\/[^?]+\?exp=/);
  assert.equal(chat.data.playing, voice.content.media_id);
  // a slip of the finger: too short, nothing uploaded
  calls.holdMs = 0;
  const before = calls.uploads;
  chat.recordStart();
  chat.recordEnd();
  await waitFor(() => ui.toasts.includes('说话时间太短'), 5000, 'the too-short toast');
  assert.equal(calls.uploads, before);
  chat.onUnload();
  app.client.close();
  peer.close();
});
