// One mini-program in its own process (each has its own `wx` global, storage and SDK module state), driven by
// the test runner over IPC. argv: <sdk package> <server base> <prefix> <fake wechat url> <openid> <nickName>.
// The `wx` global is installed before the SDK is required: the SDK binds the global socket listeners then.
'use strict';

const { createWx } = require('../wx');

const [pkg, base, prefix, wechat, openid, nickName] = process.argv.slice(2);
const log = [];
const started = Date.now();
function record(kind, text) {
  log.push([Date.now() - started, kind, text]);
}
global.wx = createWx({ wechat, openid, userInfo: { nickName, avatarUrl: `https://example.invalid/${openid}.png`, gender: 1 }, log: record });
const sdk = require(pkg);
const MAGIC = 'F2C224D4-2BCE-4C64-AF9F-A6D872000D1A';
sdk.setLoginUrl(`${base}${prefix}/login`);

const emit = (msg) => process.send(msg);
process.on('uncaughtException', (e) => emit({ ev: 'uncaught', error: String(e && e.stack) }));
process.on('unhandledRejection', (e) => emit({ ev: 'uncaught', error: String(e && e.stack) }));

let tunnel = null;
const commands = {
  login: () =>
    new Promise((resolve) =>
      sdk.login({ success: (userInfo) => resolve({ ok: true, userInfo }), fail: (e) => resolve({ ok: false, error: String(e && (e.message || e.errMsg)) }) }),
    ),
  request: ({ path, login }) =>
    new Promise((resolve) =>
      sdk.request({
        url: `${base}${prefix}${path}`,
        login,
        success: (res) => resolve({ ok: true, statusCode: res.statusCode, data: res.data }),
        fail: (e) => resolve({ ok: false, error: String(e && (e.message || e.errMsg)), type: e && e.type }),
      }),
    ),
  breakSession: () => {
    const key = `weapp_session_${MAGIC}`;
    const session = wx.getStorageSync(key);
    session.skey = 'expired-or-forged-skey';
    wx.setStorageSync(key, session);
    return { ok: true };
  },
  open: () => {
    tunnel = new sdk.Tunnel(`${base}${prefix}/tunnel`);
    for (const ev of ['connect', 'close', 'reconnecting', 'reconnect', 'error', 'people', 'speak', 'notice']) {
      tunnel.on(ev, (content) => emit({ ev, content: content === undefined ? null : content }));
    }
    tunnel.open();
    return { ok: true };
  },
  speak: ({ word }) => {
    tunnel.emit('speak', { word });
    return { ok: true };
  },
  lose: ({ ms }) => {
    wx.loseNetwork(ms);
    return { ok: true };
  },
  close: () => {
    tunnel.close();
    return { ok: true, status: tunnel.status };
  },
  status: () => ({ ok: true, status: tunnel && tunnel.status }),
  log: () => ({ ok: true, log, now: Date.now() - started }),
};

process.on('message', async ({ id, cmd, args }) => {
  try {
    emit({ id, reply: await commands[cmd](args || {}) });
  } catch (e) {
    emit({ id, reply: { ok: false, error: String(e && e.stack) } });
  }
});
emit({ ev: 'ready' });
