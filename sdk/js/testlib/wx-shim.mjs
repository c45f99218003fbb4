// A faithful-enough `wx` for Node tests, on top of the `ws` package and fetch:
// wx.connectSocket -> SocketTask {send, close, onOpen, onMessage, onClose, onError} with success/fail/complete
// callbacks delivered asynchronously, at most 5 concurrent sockets (the platform limit: a socket holds its slot
// until its close event), wx.request, wx.uploadFile (multipart, from a file path), wx.login, app lifecycle (onAppHide/onAppShow + test triggers),
// storage (getStorageSync/setStorageSync) and network status.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import WebSocket from 'ws';

const later = (fn, ...a) => fn && setTimeout(() => fn(...a), 0);

export function createWx(opts = {}) {
  const maxSockets = opts.maxSockets ?? 5;
  const stats = { created: 0, refused: 0, active: 0, maxActive: 0, headers: [] };
  const sockets = new Set();
  const hide = new Set();
  const show = new Set();
  const net = new Set();
  const storage = new Map();
  let codeSeq = 0;

  function connectSocket(o) {
    const handlers = { open: [], message: [], close: [], error: [] };
    const fire = (type, arg) => handlers[type].forEach((h) => later(h, arg));
    let ws = null;
    let closed = false;
    let holdsSlot = false;
    const release = () => {
      if (holdsSlot) {
        holdsSlot = false;
        stats.active--;
        sockets.delete(task);
      }
    };
    const task = {
      get readyState() {
        return ws ? ws.readyState : 3;
      },
      onOpen: (h) => handlers.open.push(h),
      onMessage: (h) => handlers.message.push(h),
      onClose: (h) => handlers.close.push(h),
      onError: (h) => handlers.error.push(h),
      send(s = {}) {
        if (!ws || ws.readyState !== WebSocket.OPEN) {
          const e = { errMsg: 'sendSocketMessage:fail WebSocket is not connected' };
          later(s.fail, e);
          later(s.complete, e);
          return;
        }
        ws.send(s.data, (err) => {
          const r = err ? { errMsg: 'sendSocketMessage:fail ' + err.message } : { errMsg: 'sendSocketMessage:ok' };
          later(err ? s.fail : s.success, r);
          later(s.complete, r);
        });
      },
      close(s = {}) {
        const code = s.code ?? 1000;
        if (code !== 1000 && (code < 3000 || code > 4999)) {
          const e = { errMsg: 'closeSocket:fail invalid code' };
          later(s.fail, e);
          later(s.complete, e);
          return;
        }
        if (ws && ws.readyState <= WebSocket.OPEN) {
          try {
            ws.close(code, s.reason);
          } catch (_) {
            ws.terminate();
          }
          // the platform does not wait forever for the peer's close frame
          setTimeout(() => ws.readyState !== WebSocket.CLOSED && ws.terminate(), opts.closeGraceMs ?? 1000);
        }
        later(s.success, { errMsg: 'closeSocket:ok' });
        later(s.complete, { errMsg: 'closeSocket:ok' });
      },
    };
    if (!/^wss?:\/\//.test(o.url || '')) {
      later(o.fail, { errMsg: 'connectSocket:fail invalid url' });
      return task;
    }
    if (stats.active >= maxSockets) {
      stats.refused++;
      const e = { errMsg: `connectSocket:fail exceed max task count ${maxSockets}` };
      later(o.fail, e);
      later(o.complete, e);
      return task;
    }
    stats.created++;
    stats.active++;
    stats.maxActive = Math.max(stats.maxActive, stats.active);
    stats.headers.push(o.header || {});
    holdsSlot = true;
    sockets.add(task);
    ws = new WebSocket(o.url, o.protocols, { headers: o.header || {}, handshakeTimeout: o.timeout || 60000 });
    ws.binaryType = 'arraybuffer';
    ws.on('open', () => {
      later(o.success, { errMsg: 'connectSocket:ok' });
      later(o.complete, { errMsg: 'connectSocket:ok' });
      fire('open', { header: {}, profile: {} });
    });
    ws.on('message', (data, isBinary) => fire('message', { data: isBinary ? data : data.toString('utf8') }));
    ws.on('error', (err) => fire('error', { errMsg: String(err && err.message) }));
    ws.on('close', (code, reason) => {
      if (closed) return;
      closed = true;
      release();
      fire('close', { code, reason: reason ? reason.toString() : '' });
    });
    return task;
  }

  async function request(o) {
    let body;
    if (o.data !== undefined && o.method && o.method !== 'GET') body = typeof o.data === 'string' ? o.data : JSON.stringify(o.data);
    const ctrl = new AbortController();
    const t = setTimeout(() => ctrl.abort(), o.timeout || 60000);
    try {
      const res = await fetch(o.url, { method: o.method || 'GET', headers: o.header || {}, body, signal: ctrl.signal });
      const text = await res.text();
      let data = text;
      if (o.dataType !== 'other') {
        try {
          data = JSON.parse(text);
        } catch (_) {
          /* keep text */
        }
      }
      const r = { statusCode: res.status, data, header: Object.fromEntries(res.headers), errMsg: 'request:ok' };
      later(o.success, r);
      later(o.complete, r);
    } catch (e) {
      const r = { errMsg: 'request:fail ' + e.message };
      later(o.fail, r);
      later(o.complete, r);
    } finally {
      clearTimeout(t);
    }
  }

  // wx.uploadFile: a multipart/form-data POST of the file at `filePath` as part `name` (plus `formData`
  // fields), the way the WeChat client sends it; `data` in the answer is the body as a string.
  async function uploadFile(o) {
    const ctrl = new AbortController();
    const t = setTimeout(() => ctrl.abort(), o.timeout || 60000);
    try {
      const form = new FormData();
      for (const [k, v] of Object.entries(o.formData || {})) form.append(k, String(v));
      const bytes = readFileSync(o.filePath);
      form.append(o.name, new Blob([bytes]), basename(o.filePath));
      stats.uploads = (stats.uploads || 0) + 1;
      const res = await fetch(o.url, { method: 'POST', headers: o.header || {}, body: form, signal: ctrl.signal });
      const r = { statusCode: res.status, data: await res.text(), errMsg: 'uploadFile:ok' };
      later(o.success, r);
      later(o.complete, r);
    } catch (e) {
      const r = { errMsg: 'uploadFile:fail ' + e.message };
      later(o.fail, r);
      later(o.complete, r);
    } finally {
      clearTimeout(t);
    }
  }

  const wx = {
    connectSocket,
    uploadFile: (o) => {
      uploadFile(o);
      return { abort() {}, onProgressUpdate() {} };
    },
    request: (o) => {
      request(o);
      return { abort() {} };
    },
    login: (o) => later(o.success, { code: 'test-code-' + ++codeSeq, errMsg: 'login:ok' }),
    onAppHide: (h) => hide.add(h),
    offAppHide: (h) => hide.delete(h),
    onAppShow: (h) => show.add(h),
    offAppShow: (h) => show.delete(h),
    onNetworkStatusChange: (h) => net.add(h),
    offNetworkStatusChange: (h) => net.delete(h),
    getStorageSync: (k) => (storage.has(k) ? storage.get(k) : ''),
    setStorageSync: (k, v) => storage.set(k, v),
    removeStorageSync: (k) => storage.delete(k),
    // ---- test controls (not part of wx) ----
    __stats: stats,
    __sockets: sockets,
    /** The app goes to the background. With suspend: the JS thread stops ~5 s later and sockets die with no
     * close event; we emulate that by dropping every socket silently. */
    __hide() {
      hide.forEach((h) => h({}));
    },
    __show() {
      show.forEach((h) => h({ scene: 1001 }));
    },
    __network(isConnected) {
      net.forEach((h) => h({ isConnected, networkType: isConnected ? 'wifi' : 'none' }));
    },
  };
  return wx;
}
