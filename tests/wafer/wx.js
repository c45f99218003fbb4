// An honest `wx` global for running the unmodified Wafer client SDKs under Node: what a mini-program's base
// library does, as far as these SDKs can tell.
// - Every callback is asynchronous, with `errMsg` strings ("request:ok", "request:fail ...").
// - `wx.request` calls `success` for ANY HTTP status (as WeChat does) and parses JSON bodies; `fail` only on a
//   network error (or while the network is "lost").
// - Storage is copied through JSON (what you get back is never the object you stored); a missing key is "".
// - Sockets: the old single-socket API (`wx.connectSocket` + the global `wx.onSocket*` listeners, which the
//   SDKs bind once when required), on the `ws` package. Opening a socket closes the previous one, and only the
//   current socket's events reach the listeners. Binary frames are handed over as ArrayBuffers (the SDKs
//   would throw on them: the tests assert none arrives).
// - `loseNetwork(ms)`: the phone loses its network for `ms`. The open socket goes silent (nothing read,
//   nothing sent, no close event: a real phone sees none), requests and new sockets fail; when the network
//   returns, the dead TCP connection is gone for good.
// Every request and socket frame is logged with its time, for the "quiet after close" check.
'use strict';

const WebSocket = require('ws');

function later(fn) {
  setTimeout(fn, 0);
}

function call(options, kind, result) {
  later(() => {
    if (kind === 'success' && options.success) options.success(result);
    if (kind === 'fail' && options.fail) options.fail(result);
    if (options.complete) options.complete(result);
  });
}

function createWx({ wechat, openid, userInfo, log }) {
  const storage = new Map();
  const listeners = { open: () => {}, close: () => {}, message: () => {}, error: () => {} };
  let current = null; // { ws, lost }
  let offline = false;

  const wx = {
    login(options = {}) {
      if (offline) return call(options, 'fail', { errMsg: 'login:fail network error' });
      fetch(`${wechat}/dev/login`, { method: 'POST', body: JSON.stringify({ openid }) })
        .then((r) => r.json())
        .then(({ code }) => call(options, 'success', { code, errMsg: 'login:ok' }))
        .catch((e) => call(options, 'fail', { errMsg: `login:fail ${e.message}` }));
    },
    checkSession(options = {}) {
      call(options, 'success', { errMsg: 'checkSession:ok' });
    },
    getUserInfo(options = {}) {
      if (offline) return call(options, 'fail', { errMsg: 'getUserInfo:fail network error' });
      fetch(`${wechat}/dev/userinfo`, { method: 'POST', body: JSON.stringify({ openid, userInfo }) })
        .then((r) => r.json())
        .then((info) => call(options, 'success', { ...info, errMsg: 'getUserInfo:ok' }))
        .catch((e) => call(options, 'fail', { errMsg: `getUserInfo:fail ${e.message}` }));
    },

    setStorageSync(key, value) {
      storage.set(key, JSON.stringify(value));
    },
    getStorageSync(key) {
      return storage.has(key) ? JSON.parse(storage.get(key)) : '';
    },
    removeStorageSync(key) {
      storage.delete(key);
    },

    request(options = {}) {
      const method = (options.method || 'GET').toUpperCase();
      let url = options.url;
      let body;
      if (options.data !== undefined && options.data !== null) {
        if (method === 'GET') {
          const query = new URLSearchParams(options.data).toString();
          if (query) url += (url.includes('?') ? '&' : '?') + query;
        } else {
          body = typeof options.data === 'string' ? options.data : JSON.stringify(options.data);
        }
      }
      log('request', `${method} ${url}`);
      if (offline) {
        return later(() => call(options, 'fail', { errMsg: 'request:fail timeout' }));
      }
      fetch(url, { method, headers: { 'content-type': 'application/json', ...(options.header || {}) }, body })
        .then(async (response) => {
          const text = await response.text();
          let data = text;
          if ((options.dataType || 'json') === 'json') {
            try {
              data = JSON.parse(text);
            } catch (_) {
              /* WeChat hands over the string */
            }
          }
          const header = Object.fromEntries(response.headers.entries());
          log('response', `${response.status} ${method} ${url}`);
          call(options, 'success', { data, statusCode: response.status, header, errMsg: 'request:ok' });
        })
        .catch((e) => call(options, 'fail', { errMsg: `request:fail ${e.message}` }));
    },

    connectSocket(options = {}) {
      if (current) closeCurrent(1000, 'replaced', false);
      log('connectSocket', options.url);
      if (offline) {
        call(options, 'fail', { errMsg: 'connectSocket:fail network error' });
        return;
      }
      const ws = new WebSocket(options.url, options.protocols, { headers: options.header || {} });
      const socket = { ws, lost: false };
      current = socket;
      const mine = () => current === socket && !socket.lost;
      ws.on('open', () => mine() && listeners.open({ header: {}, profile: {} }));
      ws.on('message', (data, isBinary) => {
        if (!mine()) return;
        const payload = isBinary ? new Uint8Array(data).buffer : data.toString('utf8');
        log('recv', isBinary ? '<binary>' : payload);
        listeners.message({ data: payload });
      });
      ws.on('error', (e) => mine() && listeners.error({ errMsg: `${e.message}` }));
      ws.on('close', (code, reason) => {
        if (!mine()) return;
        current = null;
        listeners.close({ code, reason: reason.toString() });
      });
      call(options, 'success', { errMsg: 'connectSocket:ok' });
      return { send: (o) => wx.sendSocketMessage(o), close: (o) => wx.closeSocket(o) };
    },
    sendSocketMessage(options = {}) {
      if (!current || current.lost || current.ws.readyState !== WebSocket.OPEN) {
        if (!current || !current.lost) {
          return call(options, 'fail', { errMsg: 'sendSocketMessage:fail WebSocket is not connected' });
        }
        // A lost network swallows what is sent: the phone cannot tell yet.
        return call(options, 'success', { errMsg: 'sendSocketMessage:ok' });
      }
      log('send', typeof options.data === 'string' ? options.data : '<binary>');
      current.ws.send(options.data, (e) =>
        e ? call(options, 'fail', { errMsg: `sendSocketMessage:fail ${e.message}` }) : call(options, 'success', { errMsg: 'sendSocketMessage:ok' }),
      );
    },
    closeSocket(options = {}) {
      if (current) closeCurrent(options.code || 1000, options.reason || '', true);
      call(options, 'success', { errMsg: 'closeSocket:ok' });
    },
    onSocketOpen(fn) {
      listeners.open = fn;
    },
    onSocketClose(fn) {
      listeners.close = fn;
    },
    onSocketMessage(fn) {
      listeners.message = fn;
    },
    onSocketError(fn) {
      listeners.error = fn;
    },

    /** The phone loses its network for `ms` milliseconds (see the file comment). */
    loseNetwork(ms) {
      offline = true;
      log('network', 'lost');
      const dead = current;
      if (dead) {
        dead.lost = true;
        dead.ws._socket && dead.ws._socket.pause();
      }
      setTimeout(() => {
        offline = false;
        log('network', 'back');
        if (dead) {
          dead.ws.terminate();
          if (current === dead) current = null;
        }
      }, ms);
    },
  };

  function closeCurrent(code, reason, report) {
    const socket = current;
    current = null;
    if (socket.lost) {
      socket.ws.terminate();
      return;
    }
    const { ws } = socket;
    const notify = () => later(() => listeners.close({ code, reason }));
    if (ws.readyState === WebSocket.CONNECTING) {
      ws.terminate();
    } else if (ws.readyState === WebSocket.OPEN) {
      ws.close(code === 1000 || (code >= 3000 && code < 5000) ? code : 1000, reason);
      // The listeners hear about a socket closed by the app, as WeChat reports it.
      if (report) ws.once('close', notify);
    }
  }

  return wx;
}

module.exports = { createWx };
