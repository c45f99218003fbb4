// xindao client SDK (wire protocol v1): WeChat mini-programs, browsers and Node 20.
// One file, no dependencies. ESM source; dist/xindao.cjs is generated from it by scripts/build.mjs.
//
// SECURITY: message bodies (`content`), display names and room names come from other users.
// They are untrusted input: render them as text (textContent / {{ }} in WXML), never as HTML.

export const PROTOCOL_VERSION = 1;

export const STATES = Object.freeze(['connecting', 'open', 'reconnecting', 'closed']);

// the server's largest `conversations` page; cursors sent per `sync` call (well under max_frame_bytes)
const CONVERSATIONS_PAGE_MAX = 200;
const SYNC_CURSORS_MAX = 1000;

const DEFAULTS = {
  requestTimeoutMs: 15000, // one request on an open socket
  sendTimeoutMs: 30000, // a send() from the call to its ack, queued time included; 0 = no limit
  connectTimeoutMs: 10000, // socket open + hello
  readyTimeoutMs: 15000, // connect()/ready() reject with `unreachable` after this long without an open socket; 0 = wait
  livenessTimeoutMs: 3000, // the ping sent when the page becomes visible or the network changes: no answer = dead
  heartbeatMs: 0, // 0 = use the server's hello.heartbeat_ms (capped at 25 s)
  heartbeatTimeoutMs: 0, // 0 = 2 x heartbeatMs: nothing received for this long = dead socket
  outboxMax: 200, // sends queued while disconnected or in flight; more are refused with `outbox_full`
  backoffInitialMs: 500,
  backoffMaxMs: 30000,
  backoffFactor: 2,
  syncLimit: 100,
  newConversationBackfill: 50, // first push of an unknown conversation with seq <= this: fetch from seq 1
  backgroundGraceMs: 3000, // mini-program: pause this long after onAppHide (chooseImage hides the app too)
  typingThrottleMs: 3000,
  lifecycle: true, // install wx.onAppHide/onAppShow or visibilitychange/online hooks
  storage: null, // {getItem(key), setItem(key, value)}: persists delivery cursors and the outbox across restarts
  // The stored outbox is kept per tab: tabId names this client's (default: one per browser tab, kept in
  // sessionStorage across reloads; '' outside browsers, where one client runs at a time). Another tab's outbox is
  // adopted once its tab is gone: its Web Lock released (`locks`, default navigator.locks), or, without locks, no
  // sign of life from it for outboxOrphanMs.
  tabId: null,
  locks: null,
  outboxOrphanMs: 15000,
  log: null, // function(level, message, data) for debugging
  getToken: null, // async () => a fresh connection token (JWT) from your backend; see README "Tokens from your backend"
  tokenRefreshMarginMs: 30000, // call getToken this long before the token's exp at the latest (or once 80 % of its time left has passed, if sooner)
  statsIntervalMs: 300000, // report measured ping/send round trips (client_stats) this often; 0 = never report
  clientKind: null, // 'miniprogram' | 'browser' | 'node' for client_stats; null = guessed (wx, window, else node)
  uploadTimeoutMs: 120000, // one media upload (POST /v1/media), from the call to the answer
};

// client_stats buckets: upper bounds of round trips in ms, then one count above the last (docs/protocol.md)
export const RTT_BOUNDS_MS = [25, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800];
const RTT_REPORT_MAX = 1000; // round trips one report may count

// media_url: ids per request (the server's cap), and how long before `expires_at` a cached URL is asked again
const MEDIA_URL_BATCH_MAX = 100;
const MEDIA_URL_MARGIN_MS = 60000;
const MEDIA_KINDS = ['image', 'voice', 'file'];

/** An error from the server (its `code`) or from the SDK (`timeout`, `not_connected`, `disconnected`,
 * `outbox_full`, `closed`, `session_ended`, `network`, `unreachable`). `errorText(err, lang)` reads it out. */
export class XindaoError extends Error {
  constructor(code, message, extra) {
    super(message || code);
    this.name = 'XindaoError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/**
 * Fills in what a lean `message` push leaves out (docs/protocol.md, "Push shapes"): `kind` is absent when it
 * is `text`. `cmid` stays absent on pushes of other users' messages (only the sender's devices get it). Reads
 * both the lean and the older full shape; returns the same object.
 */
export function normalizeMessage(m) {
  if (m && typeof m === 'object' && m.kind === undefined) m.kind = 'text';
  return m;
}

/** A client message id: 1..64 chars of [A-Za-z0-9_.:-], unique per sender. */
export function newCmid() {
  let rnd = '';
  const c = globalThis.crypto;
  if (c && typeof c.getRandomValues === 'function') {
    const b = new Uint8Array(12);
    c.getRandomValues(b);
    for (const x of b) rnd += x.toString(16).padStart(2, '0');
  } else {
    for (let i = 0; i < 4; i++) rnd += Math.floor(Math.random() * 0x1000000).toString(16).padStart(6, '0');
  }
  return 'c-' + Date.now().toString(36) + '-' + rnd;
}

/** Characters of a text as the server counts them (Unicode code points, Rust's `chars().count()`). */
export function textLength(text) {
  let n = 0;
  for (const _ of String(text)) n++; // eslint-disable-line no-unused-vars
  return n;
}

function utf8Length(s) {
  if (typeof TextEncoder !== 'undefined') return new TextEncoder().encode(s).length;
  let n = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  return n;
}

// the server's rule (crates/xindao/src/validate.rs): no control characters but \n and \t, no bidi overrides
const FORBIDDEN_TEXT = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069]/; // eslint-disable-line no-control-regex

/**
 * The server's message-body checks, done before sending (validate.rs, counted the same way): returns null when
 * `content` would be accepted, else the XindaoError the server would answer (`invalid_message`,
 * `message_too_long`, with `chars`/`bytes` and `max`). `limits`: `hello.limits`; without them only the shape is checked.
 */
export function checkContent(kind, content, limits) {
  const lim = limits || {};
  if (kind === 'text' || kind == null) {
    if (typeof content !== 'string') return new XindaoError('invalid_message', "a text message's content must be a string");
    if (!content.trim()) return new XindaoError('invalid_message', 'message text is empty');
    const chars = textLength(content);
    if (lim.max_text_chars > 0 && chars > lim.max_text_chars) {
      return new XindaoError('message_too_long', 'message text has ' + chars + ' characters, the limit is ' + lim.max_text_chars, { chars, max: lim.max_text_chars });
    }
    if (FORBIDDEN_TEXT.test(content)) return new XindaoError('invalid_message', 'message text contains control or bidi-override characters');
    return null;
  }
  if (kind === 'custom') {
    if (content == null) return new XindaoError('invalid_message', 'a custom message needs content');
    const bytes = utf8Length(JSON.stringify(content));
    if (lim.max_custom_bytes > 0 && bytes > lim.max_custom_bytes) {
      return new XindaoError('message_too_long', 'custom content is ' + bytes + ' bytes, the limit is ' + lim.max_custom_bytes, { bytes, max: lim.max_custom_bytes });
    }
  }
  return null; // other kinds (media) are the server's to check
}

/** Readable text for every error code, per language. The code stays on the error (for logs). */
export const ERROR_TEXT = {
  'zh-CN': {
    bad_request: '请求格式有误',
    unknown_op: '服务器不支持此操作，请升级服务器',
    invalid_args: '输入有误',
    invalid_message: '消息内容无效（不能为空，不能含控制字符）',
    message_too_long: '消息太长',
    unauthorized: '登录已失效，请重新登录',
    forbidden: '没有权限执行此操作',
    not_found: '找不到该对象',
    conflict: '操作冲突，请刷新后重试',
    limit_reached: '已达到数量上限',
    rate_limited: '操作太频繁，请稍后再试',
    too_many_connections: '连接数过多，请稍后再试',
    invalid_code: '微信登录凭证无效，请重试',
    wechat_rate_limited: '微信登录太频繁，请稍后再试',
    wechat_user_blocked: '微信判定此账号存在风险，无法登录',
    wechat_busy: '微信繁忙，请重试',
    wechat_error: '微信登录失败',
    unavailable: '服务暂时不可用，请稍后再试',
    internal: '服务器出错了，请稍后再试',
    timeout: '请求超时，请检查网络',
    not_connected: '未连接到服务器',
    disconnected: '连接已断开',
    unreachable: '无法连接服务器，请检查网络（仍在重试）',
    outbox_full: '待发送的消息太多，请等网络恢复',
    closed: '连接已关闭',
    session_ended: '会话已结束，请重新登录',
    network: '网络错误，请检查网络',
    unsupported: '当前环境不支持此功能',
    socket_error: '连接出错',
    recall_window_passed: '已超过可撤回的时间',
    banned: '此账号已被封禁',
    muted: '你已被禁言',
    body_too_large: '内容太大',
    too_large: '文件太大',
    unsupported_media: '不支持的文件类型',
    upload_failed: '上传失败，请重试',
    invalid_token: '登录凭证无效，请重新登录',
    token_expired: '登录已过期，请重新登录',
    rejected: '消息未通过审核',
    content_rejected: '消息含有违规内容，未能发送',
    invalid_json: '请求格式有误',
    insufficient_scope: '没有权限执行此操作',
    unknown: '出错了',
  },
  en: {
    bad_request: 'The request was malformed',
    unknown_op: 'The server does not support this yet (upgrade the server)',
    invalid_args: 'Invalid input',
    invalid_message: 'Invalid message (empty, or with control characters)',
    message_too_long: 'The message is too long',
    unauthorized: 'Your session has expired: please log in again',
    forbidden: 'You are not allowed to do that',
    not_found: 'Not found',
    conflict: 'That conflicts with a change made meanwhile: refresh and retry',
    limit_reached: 'A limit has been reached',
    rate_limited: 'Too many requests: wait a moment and retry',
    too_many_connections: 'Too many connections: try again later',
    invalid_code: 'The WeChat login code is invalid: try again',
    wechat_rate_limited: 'Too many WeChat logins: try again later',
    wechat_user_blocked: 'WeChat flags this account as high-risk',
    wechat_busy: 'WeChat is busy: try again',
    wechat_error: 'WeChat login failed',
    unavailable: 'The service is unavailable: try again later',
    internal: 'Server error: try again later',
    timeout: 'Timed out: check your network',
    not_connected: 'Not connected to the server',
    disconnected: 'The connection was lost',
    unreachable: 'Cannot reach the server: check your network (still retrying)',
    outbox_full: 'Too many unsent messages: wait for the network',
    closed: 'The connection is closed',
    session_ended: 'Your session ended: please log in again',
    network: 'Network error: check your connection',
    unsupported: 'Not supported here',
    socket_error: 'Connection error',
    recall_window_passed: 'Too late to recall this message',
    banned: 'This account is banned',
    muted: 'You are muted',
    body_too_large: 'Too large',
    too_large: 'The file is too large',
    unsupported_media: 'This file type is not supported',
    upload_failed: 'The upload failed: try again',
    invalid_token: 'Your sign-in is not valid: sign in again',
    token_expired: 'Your sign-in has expired: sign in again',
    rejected: 'The message was not accepted',
    content_rejected: 'The message was blocked by the content check',
    invalid_json: 'The request was malformed',
    insufficient_scope: 'You are not allowed to do that',
    unknown: 'Something went wrong',
  },
};

/** `zh-CN` for any Chinese locale (zh, zh_CN, zh-Hans, zh-TW...), else `en`. */
export function pickLang(locale) {
  return /^zh/i.test(String(locale || '')) ? 'zh-CN' : 'en';
}

/** Readable text for an error (`lang`: `zh-CN` or `en`, default `zh-CN`); unknown codes get a generic text.
 * The code itself is kept on the error for logs; this text is for people. */
export function errorText(err, lang) {
  const table = ERROR_TEXT[lang === 'en' ? 'en' : 'zh-CN'];
  const code = (err && err.code) || 'unknown';
  let text = table[code] || table.unknown;
  if (code === 'message_too_long' && err && err.max) {
    text += lang === 'en' ? ' (' + (err.chars || err.bytes) + ' / ' + err.max + ')' : '（' + (err.chars || err.bytes) + ' / ' + err.max + '）';
  }
  if (code === 'rate_limited' && err && err.retry_after_ms) {
    const s = Math.ceil(err.retry_after_ms / 1000);
    text += lang === 'en' ? ' (' + s + ' s)' : '（' + s + ' 秒）';
  }
  return text;
}

class Emitter {
  constructor() {
    this._listeners = new Map();
  }
  /** Subscribe; returns a function that unsubscribes. */
  on(type, fn) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }
  off(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
  }
  once(type, fn) {
    const off = this.on(type, (d) => {
      off();
      fn(d);
    });
    return off;
  }
  emit(type, data) {
    const set = this._listeners.get(type);
    if (!set || set.size === 0) return false;
    for (const fn of [...set]) {
      try {
        fn(data);
      } catch (e) {
        // a listener bug must not break the SDK's state machine
        if (type !== 'error') this.emit('error', e);
        else if (typeof console !== 'undefined') console.error(e);
      }
    }
    return true;
  }
}

function decodeData(d) {
  if (typeof d === 'string') return d;
  if (d == null) return '';
  if (typeof TextDecoder !== 'undefined') {
    if (d instanceof ArrayBuffer) return new TextDecoder().decode(new Uint8Array(d));
    if (ArrayBuffer.isView(d)) return new TextDecoder().decode(d);
  }
  return String(d);
}

// ---- transports: each returns {send(text), close(), kind} and calls cb.open/text/close/error ----

// `credential` is `{ ticket }` (a single-use connect ticket from `POST /v1/ws/ticket`) or, for servers without
// tickets, `{ token }`: browsers cannot set headers on a WebSocket, so it goes in the URL.
function openWebSocketTransport(WS, url, credential, cb) {
  const [name, value] = credential.ticket ? ['ticket', credential.ticket] : ['token', credential.token];
  const full = url + (url.includes('?') ? '&' : '?') + name + '=' + encodeURIComponent(value);
  const ws = new WS(full);
  ws.onopen = () => cb.open();
  ws.onmessage = (ev) => cb.text(decodeData(ev.data));
  ws.onclose = (ev) => cb.close(ev.code, ev.reason);
  ws.onerror = (ev) => cb.error(ev && ev.error ? ev.error : new XindaoError('socket_error', (ev && ev.message) || 'WebSocket error'));
  return {
    kind: 'websocket',
    send(text) {
      ws.send(text);
    },
    close() {
      // `ws` (Node) can drop a socket at once; a browser starts the close handshake
      try {
        if (typeof ws.terminate === 'function') ws.terminate();
        else ws.close(1000);
      } catch (_) {
        /* closing a socket that never opened may throw */
      }
    },
  };
}

function openWxTransport(wx, url, token, cb) {
  let failed = false;
  const task = wx.connectSocket({
    url,
    header: { Authorization: 'Bearer ' + token },
    fail(err) {
      failed = true;
      cb.error(new XindaoError('socket_error', (err && err.errMsg) || 'connectSocket failed'));
      cb.close(1006, (err && err.errMsg) || 'connectSocket failed');
    },
  });
  if (!task || typeof task.onOpen !== 'function') {
    // base library < 1.7.0 returns no SocketTask; it is not supported
    throw new XindaoError('unsupported', 'wx.connectSocket returned no SocketTask (base library >= 1.7.0 needed)');
  }
  task.onOpen(() => cb.open());
  task.onMessage((res) => cb.text(decodeData(res && res.data)));
  task.onClose((res) => cb.close(res && res.code, res && res.reason));
  task.onError((res) => cb.error(new XindaoError('socket_error', (res && res.errMsg) || 'socket error')));
  return {
    kind: 'wx',
    send(text) {
      task.send({
        data: text,
        fail(err) {
          cb.error(new XindaoError('socket_error', (err && err.errMsg) || 'send failed'));
          cb.close(1006, 'send failed');
        },
      });
    },
    close() {
      if (failed) return;
      try {
        task.close({ code: 1000, reason: 'client' });
      } catch (_) {
        /* already closed */
      }
    },
  };
}

/**
 * The xindao client. See README.md and xindao.d.ts for the API.
 *
 * Events: `state`, `open`, `message`, `read`, `typing`, `presence`, `member`, `members_changed`, `conversation`, `synced`,
 * `resync`, `session_ended`, `error`, `event` (any push, raw).
 */
export class XindaoClient extends Emitter {
  constructor(options = {}) {
    super();
    const o = { ...DEFAULTS, ...options };
    this.options = o;
    this._wx = o.wx !== undefined ? o.wx : typeof wx !== 'undefined' && wx && wx.connectSocket ? wx : null; // eslint-disable-line no-undef
    this._WebSocket = o.WebSocket || (this._wx ? null : globalThis.WebSocket) || null;
    this._fetch = o.fetch || (typeof globalThis.fetch === 'function' ? globalThis.fetch.bind(globalThis) : null);
    let base = o.url;
    if (!base && typeof location !== 'undefined' && location.origin && location.origin !== 'null') base = location.origin;
    if (!base) throw new XindaoError('invalid_args', 'options.url (the server base URL, e.g. https://chat.example.com) is required');
    this.url = String(base).replace(/\/+$/, '');
    this.wsUrl = o.wsUrl || this.url.replace(/^http(s?):/i, 'ws$1:') + '/v1/ws';
    this.token = o.token || null;
    this.user = o.user || null;
    this.hello = null;
    this._state = 'closed';
    this._wantOpen = false;
    this._paused = false;
    this._gen = 0;
    this._conn = null;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._connectTimer = null;
    this._hbTimer = null;
    this._lastRx = 0;
    this._lastTx = 0;
    this._lastPing = 0;
    this._reqId = 0;
    this._inflight = new Map(); // request id -> entry
    this._waiting = []; // requests waiting for an open socket
    this._outbox = []; // send items, in call order
    this._tabId = null; // this client's stored outbox is `xindao:outbox:<user>:<tab>` (see _tab)
    this._outboxTimer = null;
    this._tabLock = null; // held (a pending promise) while this tab lives, when Web Locks exist
    this._releaseTabLock = null;
    this._convs = new Map(); // conversation id -> {lastSeq, pending: Map, filling, info}
    this._baselined = false;
    this._preBaseline = null;
    this._syncing = false;
    this._syncAgain = false;
    this._presenceIds = null;
    this._typingAt = new Map();
    this._lifecycleOff = null;
    this._graceTimer = null;
    this._saveTimer = null;
    this._openWaiters = [];
    this._checking = false;
    // pacing (see _takeToken): requests waiting for a token, in write order; the token level; requests written on
    // this connection whose reply has not arrived yet; no writes before _holdUntil (after a rate_limited reply)
    this._throttleQ = [];
    this._drainTimer = null;
    this._tokens = null;
    this._tokAt = 0;
    this._unanswered = 0;
    this._holdUntil = 0;
    // round trips of ping and send (client_stats): counts since the last report, the last one measured
    this._rttBuckets = RTT_BOUNDS_MS.map(() => 0).concat([0]);
    this._rttCount = 0;
    this._lastRtt = null;
    this._statsAt = 0;
    this._mediaUrls = new Map(); // media id -> {url, thumb_url?, expires_at}
    this._mediaWanted = new Map(); // media id -> [{resolve, reject}] waiting for the next media_url batch
    this._mediaTimer = null;
  }

  // ---------------------------------------------------------------- state

  /** `connecting` | `open` | `reconnecting` | `closed` */
  get state() {
    return this._state;
  }
  get paused() {
    return this._paused;
  }
  /** The last round trip of a `ping` or `send` on this connection, in ms (null before the first). */
  get rtt() {
    return this._lastRtt;
  }
  /** Number of sends not yet acknowledged (queued or in flight). */
  get outboxSize() {
    return this._outbox.length;
  }
  /** The last seq delivered through `message` events for a conversation (undefined if not tracked). */
  lastSeq(conversationId) {
    const st = this._convs.get(Number(conversationId));
    return st ? st.lastSeq : undefined;
  }
  /** The delivery cursors {conversation_id: last seq delivered}. */
  cursors() {
    const out = {};
    for (const [id, st] of this._convs) out[id] = st.lastSeq;
    return out;
  }

  _log(level, msg, data) {
    if (this.options.log) {
      try {
        this.options.log(level, msg, data);
      } catch (_) {
        /* ignore */
      }
    }
  }

  _setState(state, info) {
    const prev = this._state;
    if (prev === state && !info) return;
    this._state = state;
    this._log('debug', 'state ' + prev + ' -> ' + state, info);
    this.emit('state', { state, prev, ...(info || {}) });
  }

  // ---------------------------------------------------------------- HTTP

  async _http(method, path, body, auth = true) {
    const headers = { 'Content-Type': 'application/json' };
    if (auth && this.token) headers.Authorization = 'Bearer ' + this.token;
    const url = this.url + path;
    if (this._wx && !this.options.fetch) {
      const wxo = this._wx;
      return new Promise((resolve, reject) => {
        wxo.request({
          url,
          method,
          data: body === undefined ? undefined : body,
          header: headers,
          timeout: this.options.requestTimeoutMs,
          success(res) {
            let data = res.data;
            if (typeof data === 'string') {
              try {
                data = JSON.parse(data);
              } catch (_) {
                /* keep text */
              }
            }
            if (res.statusCode >= 200 && res.statusCode < 300) resolve(data);
            else reject(httpError(res.statusCode, data));
          },
          fail(err) {
            reject(new XindaoError('network', (err && err.errMsg) || 'request failed'));
          },
        });
      });
    }
    if (!this._fetch) throw new XindaoError('unsupported', 'no fetch available: pass options.fetch');
    let ctrl = null;
    let timer = null;
    if (typeof AbortController !== 'undefined') {
      ctrl = new AbortController();
      timer = setTimeout(() => ctrl.abort(), this.options.requestTimeoutMs);
    }
    let res;
    try {
      res = await this._fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: ctrl ? ctrl.signal : undefined,
      });
    } catch (e) {
      throw new XindaoError(ctrl && ctrl.signal.aborted ? 'timeout' : 'network', String((e && e.message) || e));
    } finally {
      if (timer) clearTimeout(timer);
    }
    let data = null;
    const text = await res.text();
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = text;
    }
    if (!res.ok) throw httpError(res.status, data);
    return data;
  }

  _setSession(r) {
    this.token = r.token;
    this.user = r.user;
    this.expiresAt = r.expires_at;
    return r;
  }

  /** Development login (`POST /v1/login/dev`, server started with dev login enabled). */
  async loginDev(displayName) {
    return this._setSession(await this._http('POST', '/v1/login/dev', { display_name: displayName }, false));
  }

  /** WeChat login: `wx.login()` for a one-time code, then `POST /v1/login/wechat`. Pass a code to skip wx.login. */
  async loginWechat(code) {
    if (!code) {
      const wxo = this._wx;
      if (!wxo || typeof wxo.login !== 'function') throw new XindaoError('unsupported', 'wx.login is not available');
      code = await new Promise((resolve, reject) =>
        wxo.login({
          success: (r) => (r && r.code ? resolve(r.code) : reject(new XindaoError('wechat_error', 'wx.login gave no code'))),
          fail: (e) => reject(new XindaoError('wechat_error', (e && e.errMsg) || 'wx.login failed')),
        }),
      );
    }
    return this._setSession(await this._http('POST', '/v1/login/wechat', { code }, false));
  }

  /** `GET /v1/me` */
  async me() {
    const r = await this._http('GET', '/v1/me');
    this.user = r.user;
    return r.user;
  }

  /** Revoke the token on the server and close. */
  async logout() {
    try {
      if (this.token) await this._http('POST', '/v1/logout', {});
    } finally {
      this.close();
      this.token = null;
    }
  }

  // ---------------------------------------------------------------- connection

  /** Connect (and keep reconnecting until close() or a 4001 close). Resolves with the hello on the first `open`;
   * rejects with `unreachable` when no connection opened within `opts.timeoutMs` (default `readyTimeoutMs`,
   * 15 s; 0 = wait for ever): the client keeps trying in the background, `ready()` waits again. */
  connect(opts = {}) {
    if (!this.token && !this.options.getToken) return Promise.reject(new XindaoError('unauthorized', 'log in first (loginDev / loginWechat) or pass options.token / options.getToken'));
    this._restoreOutbox();
    this._ended = null;
    if (!this._wantOpen) {
      this._wantOpen = true;
      this._paused = false;
      this._attempt = 0;
      this._installLifecycle();
      this._setState('connecting');
      this._openSocket();
    }
    return this.ready(opts.timeoutMs);
  }

  /** Resolves with the hello once the connection is open (at once if it is); rejects with `unreachable` after
   * `timeoutMs` (default `readyTimeoutMs`; 0 = no limit), with `not_connected` if connect() was never called,
   * with `closed` / `session_ended` if the client stops. */
  ready(timeoutMs) {
    if (this._state === 'open') return Promise.resolve(this.hello);
    if (!this._wantOpen) return Promise.reject(new XindaoError('not_connected', 'not connected: call connect() first'));
    const ms = timeoutMs != null ? timeoutMs : this.options.readyTimeoutMs;
    return new Promise((resolve, reject) => {
      const w = { resolve, reject, timer: null };
      if (ms > 0) {
        w.timer = setTimeout(() => {
          const i = this._openWaiters.indexOf(w);
          if (i >= 0) this._openWaiters.splice(i, 1);
          const last = this._lastClose ? ' (last attempt: ' + this._lastClose + ')' : '';
          reject(new XindaoError('unreachable', 'server not reachable within ' + ms + ' ms' + last + '; still retrying', { retrying: true }));
        }, ms);
      }
      this._openWaiters.push(w);
    });
  }

  _settleWaiters(err, hello) {
    for (const w of this._openWaiters.splice(0)) {
      clearTimeout(w.timer);
      if (err) w.reject(err);
      else w.resolve(hello);
    }
  }

  /** Close for good: no reconnect. Queued sends and waiting requests are rejected with `closed`. */
  close() {
    this._wantOpen = false;
    this._paused = false;
    this._teardown();
    this._removeLifecycle();
    this._stopWatchingOutboxes();
    const err = new XindaoError('closed', 'client closed');
    for (const item of this._outbox.splice(0)) this._settleSend(item, err);
    for (const w of this._waiting.splice(0)) w.reject(err);
    this._settleWaiters(err);
    this._flushCursors();
    if (this._state !== 'closed') this._setState('closed', { reason: 'client' });
  }

  /** Pause (app in background): close the socket, keep the outbox and cursors. */
  pause() {
    if (!this._wantOpen || this._paused) return;
    this._paused = true;
    this._teardown();
    this._flushCursors();
    this._setState('closed', { reason: 'paused' });
  }

  /** Resume after pause(), or check the connection now (app shown, network back): reconnects at once if needed. */
  resume() {
    if (!this._wantOpen) return;
    if (this._paused) {
      this._paused = false;
      this._attempt = 0;
      this._setState('connecting', { reason: 'resumed' });
      this._openSocket();
      return;
    }
    if (this._state === 'reconnecting' && this._reconnectTimer) {
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
      this._attempt = 0;
      this._openSocket();
      return;
    }
    if (this._state === 'open') this.checkAlive('resume');
  }

  /** Prove the open socket is alive with an application ping now (called when the page becomes visible and
   * when the network changes): no answer within `livenessTimeoutMs` (4 s) = dead, reconnect. */
  checkAlive(why = 'check') {
    if (this._state !== 'open' || this._aliveCheck) return;
    const gen = this._gen;
    const t = Math.min(this.options.livenessTimeoutMs, this._heartbeatTimeout());
    this._aliveCheck = true;
    this._request('ping', {}, { timeoutMs: t, urgent: true })
      .catch(() => {
        // frames already on their way when the ping left may still land after it: only silence for half the
        // timeout proves the socket dead (a live socket carrying pushes is left alone)
        if (gen === this._gen && this._state === 'open' && Date.now() - this._lastRx >= t / 2) this._dead('no answer to the ping after ' + why);
      })
      .finally(() => {
        this._aliveCheck = false;
      });
  }

  _teardown() {
    this._gen++;
    clearTimeout(this._tokenTimer);
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._connectTimer);
    clearInterval(this._hbTimer);
    this._reconnectTimer = this._connectTimer = this._hbTimer = null;
    if (this._conn) {
      const c = this._conn;
      this._conn = null;
      c.close();
    }
    this._failInflight();
  }

  _failInflight() {
    // in-flight sends stay in the outbox: the next connection resends the whole outbox in order, with the same
    // cmids (the server dedupes); other in-flight requests fail: their outcome is unknown
    const err = new XindaoError('disconnected', 'connection lost before the reply');
    clearTimeout(this._drainTimer);
    this._drainTimer = null;
    this._unanswered = 0;
    for (const e of this._throttleQ.splice(0)) {
      if (e.item) e.item.reqId = null;
      else e.reject(err);
    }
    for (const [id, e] of this._inflight) {
      this._inflight.delete(id);
      clearTimeout(e.timer);
      if (e.item) e.item.reqId = null;
      else e.reject(err);
    }
  }

  _openSocket() {
    const gen = ++this._gen;
    let opened = false;
    let closed = false;
    const cb = {
      open: () => {
        if (gen !== this._gen) return;
        opened = true;
        this._lastRx = Date.now();
      },
      text: (t) => {
        if (gen !== this._gen) return;
        this._lastRx = Date.now();
        this._onText(t);
      },
      close: (code, reason) => {
        if (gen !== this._gen || closed) return;
        closed = true;
        this._onSocketClosed(code, reason, opened);
      },
      error: (e) => {
        if (gen !== this._gen) return;
        this._log('debug', 'socket error', e);
      },
    };
    clearTimeout(this._connectTimer);
    this._connectTimer = setTimeout(() => {
      if (gen !== this._gen || this._state === 'open') return;
      this._log('info', 'connect timeout');
      cb.close(4000, 'connect timeout');
    }, this.options.connectTimeoutMs);
    const open = () => {
      if (gen !== this._gen) return;
      try {
        if (this._wx && !this.options.WebSocket) this._conn = openWxTransport(this._wx, this.wsUrl, this.token, cb);
        else if (this._WebSocket) this._openWithTicket(gen, cb);
        else throw new XindaoError('unsupported', 'no WebSocket: pass options.WebSocket (e.g. the `ws` package in Node 20)');
      } catch (e) {
        this.emit('error', e);
        const g = gen;
        setTimeout(() => g === this._gen && cb.close(1006, String(e.message || e)), 0);
      }
    };
    if (!this.options.getToken || (this.token && !this._tokenExpiring())) return open();
    this._refreshToken().then(open, (e) => {
      if (gen !== this._gen) return;
      this.emit('error', e);
      cb.close(1006, 'getToken failed: ' + String((e && e.message) || e));
    });
  }

  // ---------------------------------------------------------------- tokens from the app's backend (getToken)

  // The token's exp (ms) if it is a JWT, else null (an opaque session token).
  _tokenExp() {
    const t = this.token;
    if (!t || t.split('.').length !== 3) return null;
    try {
      const b64 = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const json = typeof atob === 'function' ? atob(b64 + '==='.slice((b64.length + 3) % 4)) : Buffer.from(b64, 'base64').toString('binary');
      const exp = JSON.parse(json).exp;
      return typeof exp === 'number' ? exp * 1000 : null;
    } catch (_) {
      return null;
    }
  }

  _tokenExpiring() {
    const exp = this._tokenExp();
    return exp != null && exp - Date.now() <= this.options.tokenRefreshMarginMs;
  }

  // Calls options.getToken once at a time; schedules the next call before the new token's exp, and moves an open
  // socket to the new token (auth_refresh) so that the server does not close it at the old one's exp.
  _refreshToken() {
    if (this._tokenPromise) return this._tokenPromise;
    this._tokenPromise = Promise.resolve()
      .then(() => this.options.getToken())
      .then(
        (token) => {
          this._tokenPromise = null;
          if (typeof token !== 'string' || !token) throw new XindaoError('unauthorized', 'getToken gave no token');
          this.token = token;
          this._tokenRefreshedAt = Date.now();
          this._scheduleTokenRefresh();
          this._refreshSocket(token);
          return token;
        },
        (e) => {
          this._tokenPromise = null;
          throw e;
        },
      );
    return this._tokenPromise;
  }

  _scheduleTokenRefresh() {
    clearTimeout(this._tokenTimer);
    this._tokenTimer = null;
    const exp = this._tokenExp();
    if (exp == null || !this._wantOpen) return;
    const left = exp - Date.now();
    const delay = Math.max(1000, Math.min(left * 0.8, left - this.options.tokenRefreshMarginMs));
    this._tokenTimer = setTimeout(() => {
      this._tokenTimer = null;
      if (this._wantOpen) this._refreshToken().catch((e) => this.emit('error', e));
    }, delay);
    if (this._tokenTimer && this._tokenTimer.unref) this._tokenTimer.unref();
  }

  // The open socket runs on a token that ends (hello.expires_at): hand it the fresh one, so it stays open past the
  // old exp. Refused (another user's, invalid) or unanswered: the server closes it at the old exp with 4001
  // token_expired, and the client reconnects with a fresh token. A server without auth_refresh sends no
  // expires_at and closes nothing at exp.
  _refreshSocket(token) {
    if (this._state !== 'open' || !this._conn || !this.hello || this.hello.expires_at == null) return;
    const hello = this.hello;
    this._request('auth_refresh', { token }, { urgent: true }).then(
      (r) => {
        if (this.hello === hello) hello.expires_at = r.expires_at;
        this.emit('token_refreshed', { expires_at: r.expires_at });
      },
      (e) => this._log('info', 'auth_refresh failed: the socket closes at its token exp', { code: e && e.code }),
    );
  }

  // A refused token: with getToken, fetch a fresh one and reconnect (once per fresh token); else the session ended.
  _tokenRefused(code, reason) {
    const fresh = this._tokenRefreshedAt && Date.now() - this._tokenRefreshedAt < 2000;
    if (!this.options.getToken || fresh) return this._sessionEnded(code, reason);
    this._log('info', 'token refused: asking getToken for a fresh one', { reason });
    this.token = null;
    this._scheduleReconnect(code, reason);
  }

  // The token never goes in a URL (proxies log URLs): trade it for a single-use connect ticket, valid 30 s, and
  // open the socket with that. A server without tickets (404) gets the token in the URL, as before.
  _openWithTicket(gen, cb) {
    this._http('POST', '/v1/ws/ticket', {}).then(
      (r) => {
        if (gen !== this._gen) return;
        this._conn = openWebSocketTransport(this._WebSocket, this.wsUrl, { ticket: r.ticket }, cb);
      },
      (e) => {
        if (gen !== this._gen) return;
        const code = e && e.code;
        if (code === 'not_found') this._conn = openWebSocketTransport(this._WebSocket, this.wsUrl, { token: this.token }, cb);
        else if (code === 'unauthorized' || code === 'invalid_token' || code === 'token_expired') cb.close(4001, code);
        else cb.close(1006, 'connect ticket: ' + ((e && e.message) || code));
      },
    );
  }

  _onSocketClosed(code, reason, opened) {
    const wasOpen = this._state === 'open';
    const conn = this._conn;
    this._conn = null;
    this._gen++;
    clearTimeout(this._connectTimer);
    clearInterval(this._hbTimer);
    this._connectTimer = this._hbTimer = null;
    if (conn) conn.close();
    this._failInflight();
    this._log('info', 'socket closed', { code, reason, opened, wasOpen });
    this._lastClose = (code ? code + ' ' : '') + (reason || (opened ? 'closed' : 'could not connect'));
    if (!this._wantOpen || this._paused) return;
    // 4001 token_expired on an open socket: its token ran out before a refresh reached it; with getToken,
    // reconnect (with a fresh token unless the one held is still good). Other 4001: the token was refused (a
    // getToken app may get a fresh one); 4003: the user was banned (server API).
    if (code === 4001 && reason === 'token_expired' && wasOpen && this.options.getToken) {
      if (!this.token || this._tokenExpiring()) this.token = null;
      return this._scheduleReconnect(code, reason);
    }
    if (code === 4001) return this._tokenRefused(code, reason);
    if (code === 4003) return this._sessionEnded(code, reason);
    this._scheduleReconnect(code, reason);
    if (!wasOpen && !this._checking) {
      // the upgrade may have been refused: a 401 means the session is over (browsers cannot see the status)
      this._checking = true;
      this._http('GET', '/v1/me').then(
        () => {
          this._checking = false;
        },
        (e) => {
          this._checking = false;
          const refused = e && (e.code === 'unauthorized' || e.code === 'invalid_token' || e.code === 'token_expired');
          if (refused && this._wantOpen && this._state !== 'open') {
            clearTimeout(this._reconnectTimer);
            this._reconnectTimer = null;
            this._tokenRefused(4001, e.code);
          }
        },
      );
    }
  }

  _sessionEnded(code, reason) {
    this._wantOpen = false;
    this._ended = code; // later sends fail at once (until connect() with a new login)
    this._teardown();
    this._removeLifecycle();
    const err = code === 4003 ? new XindaoError('banned', 'this account is banned (4003)') : new XindaoError('session_ended', 'session ended (' + code + '): log in again');
    for (const item of this._outbox.splice(0)) this._settleSend(item, err);
    for (const w of this._waiting.splice(0)) w.reject(err);
    this._settleWaiters(err);
    this._flushCursors();
    this._setState('closed', { code, reason: reason || 'session ended' });
    this.emit('session_ended', { code, reason });
  }

  _scheduleReconnect(code, reason) {
    if (!this._wantOpen || this._paused) return;
    const o = this.options;
    const base = Math.min(o.backoffMaxMs, o.backoffInitialMs * Math.pow(o.backoffFactor, this._attempt));
    const delayMs = Math.round(base / 2 + Math.random() * (base / 2)); // jitter: 50..100 % of the step
    this._attempt++;
    this._setState('reconnecting', { code, reason, attempt: this._attempt, delayMs });
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (this._wantOpen && !this._paused) this._openSocket();
    }, delayMs);
  }

  _dead(reason) {
    this._log('info', 'dead socket: ' + reason);
    const c = this._conn;
    this._conn = null;
    if (c) c.close();
    this._onSocketClosed(4010, reason, true);
  }

  _heartbeatInterval() {
    if (this.options.heartbeatMs) return this.options.heartbeatMs;
    const s = this.hello && this.hello.heartbeat_ms;
    return Math.min(s > 0 ? s : 15000, 25000);
  }
  _heartbeatTimeout() {
    return this.options.heartbeatTimeoutMs || 2 * this._heartbeatInterval();
  }

  _startHeartbeat() {
    clearInterval(this._hbTimer);
    const hb = this._heartbeatInterval();
    const dead = this._heartbeatTimeout();
    const gen = this._gen;
    this._hbTimer = setInterval(() => {
      if (gen !== this._gen) return;
      const now = Date.now();
      if (now - this._lastRx >= dead) return this._dead('heartbeat timeout');
      if ((now - this._lastRx >= hb || now - this._lastTx >= hb) && now - this._lastPing >= hb) {
        this._lastPing = now;
        // urgent: ahead of a long outbox in the pacing queue (it still counts against the rate limit)
        this._request('ping', {}, { timeoutMs: dead, urgent: true }).catch(() => {});
      }
      this._maybeReportStats(now);
    }, Math.max(25, Math.floor(Math.min(hb, dead) / 4)));
  }

  // one round trip of a ping or a send, from the write to its reply
  _recordRtt(ms) {
    this._lastRtt = ms;
    this.emit('rtt', ms);
    if (this._rttCount >= RTT_REPORT_MAX) return;
    let i = RTT_BOUNDS_MS.findIndex((bound) => ms <= bound);
    if (i < 0) i = RTT_BOUNDS_MS.length;
    this._rttBuckets[i]++;
    this._rttCount++;
  }

  _clientKind() {
    if (this.options.clientKind) return this.options.clientKind;
    if (this._wx) return 'miniprogram';
    return typeof window !== 'undefined' && typeof document !== 'undefined' ? 'browser' : 'node';
  }

  // every statsIntervalMs, the counts since the last report (the server takes one a minute per connection)
  _maybeReportStats(now) {
    const every = this.options.statsIntervalMs;
    if (!(every > 0)) return;
    if (!this._statsAt) this._statsAt = now;
    if (now - this._statsAt < every || this._rttCount === 0) return;
    this._statsAt = now;
    const buckets = this._rttBuckets;
    this._rttBuckets = RTT_BOUNDS_MS.map(() => 0).concat([0]);
    this._rttCount = 0;
    this._request('client_stats', { kind: this._clientKind(), buckets }).catch((err) => this._log('debug', 'client_stats not taken', err && err.code));
  }

  // ---------------------------------------------------------------- frames

  _write(obj) {
    if (!this._conn) throw new XindaoError('not_connected', 'not connected');
    this._conn.send(JSON.stringify(obj));
    this._lastTx = Date.now();
  }

  _onText(text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch (e) {
      this.emit('error', new XindaoError('bad_frame', 'server sent a frame that is not JSON'));
      return;
    }
    if (!f || typeof f !== 'object') return;
    if (f.event) return this._onPush(f.event, f.data || {});
    if ('id' in f) {
      this._onReply(f);
      const e = this._inflight.get(f.id);
      if (!e) {
        if (f.id === null && f.error) this.emit('error', new XindaoError(f.error.code, f.error.message, { reply: f }));
        return;
      }
      this._inflight.delete(f.id);
      clearTimeout(e.timer);
      if (e.sentAt) this._recordRtt(Date.now() - e.sentAt);
      if (f.ok) e.resolve(f.result || {});
      else {
        const er = f.error || {};
        e.reject(new XindaoError(er.code || 'internal', er.message, { retry_after_ms: er.retry_after_ms, op: e.op }));
      }
    }
  }

  _onPush(event, data) {
    if (event === 'message') normalizeMessage(data);
    this.emit('event', { event, data });
    switch (event) {
      case 'hello':
        return this._onHello(data);
      case 'message':
        if (!this._baselined) {
          if (this._preBaseline) this._preBaseline.push(data);
          return;
        }
        return this._ingestPush(data);
      case 'read': {
        const st = this._convs.get(data.conversation_id);
        if (st && st.info && this.user && data.user_id === this.user.id) {
          st.info.read_seq = Math.max(st.info.read_seq || 0, data.seq);
        }
        return this.emit('read', data);
      }
      case 'typing':
        return this.emit('typing', data);
      case 'presence':
        return this.emit('presence', data);
      case 'member': {
        const me = this.user && data.user_id === this.user.id;
        if (me && (data.action === 'left' || data.action === 'removed')) this._convs.delete(data.conversation_id);
        this.emit('member', data);
        if (me && (data.action === 'added' || data.action === 'joined') && !this._convs.has(data.conversation_id)) {
          this._syncAll(); // registers the conversation (and its recent messages)
        }
        return;
      }
      case 'profile': {
        // a contact (or this user, from another device) changed their name or avatar
        const u = data.user;
        if (u && this.user && u.id === this.user.id) this.user = { ...this.user, ...u };
        if (u) {
          for (const st of this._convs.values()) if (st.info && st.info.peer && st.info.peer.id === u.id) st.info.peer = { ...st.info.peer, ...u };
        }
        return this.emit('profile', data);
      }
      case 'message_state': {
        // recalled / removed / hidden: the message keeps its seq, loses its content (a tombstone)
        const st = this._convs.get(data.conversation_id);
        const lm = st && st.info && st.info.last_message;
        if (lm && lm.seq === data.seq) {
          lm.state = data.state;
          delete lm.content;
        }
        return this.emit('message_state', data);
      }
      case 'members_changed':
        // a big room's joins and leaves, summarised (at most one per room per second)
        return this.emit('members_changed', data);
      case 'resync':
        this.emit('resync', data);
        return this._syncAll();
      default:
        // unknown events are ignored (protocol: additive changes keep version 1)
        return;
    }
  }

  _onHello(data) {
    if (data.protocol !== PROTOCOL_VERSION) {
      this.emit('error', new XindaoError('protocol', 'server speaks protocol ' + data.protocol + ', this SDK ' + PROTOCOL_VERSION));
    }
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    const prevUser = this.user && this.user.id;
    this.hello = data;
    this.user = data.user;
    this.limits = data.limits || {};
    if (this.options.storage && data.limits) {
      try {
        this.options.storage.setItem('xindao:limits', JSON.stringify(data.limits));
      } catch (_) {
        /* storage full: checks wait for the next hello */
      }
    }
    this._tokens = null; // a new connection has a full bucket
    this._unanswered = 0;
    this._holdUntil = 0;
    if (prevUser && prevUser !== this.user.id) {
      this._convs.clear();
      this._baselined = false;
    }
    if (!this._baselined) this._loadCursors();
    this._restoreOutbox(); // a client made with a token only learns its user here
    this._attempt = 0; // backoff resets on success
    const reconnect = this._state === 'reconnecting';
    this._setState('open', { reconnect });
    this._startHeartbeat();
    // order matters: the server processes one connection's requests in order, so the resync is answered before
    // the resent outbox (whose acks then land right after the synced messages)
    this._resync();
    this._flushOutbox();
    for (const w of this._waiting.splice(0)) this._writeRequest(w);
    if (this._presenceIds) {
      this._request('presence', { user_ids: this._presenceIds })
        .then((r) => (r.presence || []).forEach((p) => this.emit('presence', p)))
        .catch(() => {});
    }
    this.emit('open', data);
    this._settleWaiters(null, data);
  }

  // ---------------------------------------------------------------- requests

  _request(op, args, opts = {}) {
    return new Promise((resolve, reject) => {
      const e = { id: ++this._reqId, op, args, resolve, reject, timer: null, timeoutMs: opts.timeoutMs || this.options.requestTimeoutMs, urgent: !!opts.urgent };
      if (this._state !== 'open' || !this._conn) {
        if (!opts.waitOpen || !this._wantOpen) return reject(new XindaoError('not_connected', 'not connected'));
        e.timer = setTimeout(() => {
          const i = this._waiting.indexOf(e);
          if (i >= 0) this._waiting.splice(i, 1);
          reject(new XindaoError('timeout', op + ': not connected within ' + e.timeoutMs + ' ms'));
        }, e.timeoutMs);
        this._waiting.push(e);
        return;
      }
      this._writeRequest(e);
    });
  }

  // Every frame goes through one FIFO (_throttleQ) and is written only when _takeToken allows it, so a burst of
  // queued sends after a reconnect is neither refused with rate_limited nor closed with 4008. `urgent` entries
  // (heartbeat pings) go to the front: a long outbox must not starve the heartbeat.
  _writeRequest(e) {
    clearTimeout(e.timer);
    e.timer = null;
    if (e.urgent) this._throttleQ.unshift(e);
    else this._throttleQ.push(e);
    this._drain();
  }

  _drain() {
    while (this._throttleQ.length && this._conn && this._state === 'open' && this._takeToken()) this._writeNow(this._throttleQ.shift());
    if (this._throttleQ.length && this._conn) this._scheduleDrain();
  }

  // The server limits each connection with a token bucket (rate_per_sec, burst rate_burst, full at the upgrade)
  // charged when it *processes* a request, which can be much later than when we wrote it (a busy server reads a
  // backlog in one go). A bucket charged at write time, refilled while requests are still unanswered, lets the
  // server see more than its burst back to back. So: charge at write time, but cap the level at
  // `cap - unanswered`: a request counts against the burst until its reply arrives (the reply is written after the
  // server charged it). Then the server's bucket always holds at least as much as ours, whatever the delays.
  _takeToken() {
    const now = Date.now();
    if (now < this._holdUntil) return false;
    const lim = this.limits;
    if (!lim || !(lim.rate_per_sec > 0)) return true;
    const cap = Math.max(1, (lim.rate_burst || lim.rate_per_sec) - 2);
    const perMs = (lim.rate_per_sec * 0.9) / 1000;
    this._refill(now, cap, perMs);
    if (this._tokens < 1) return false;
    this._tokens -= 1;
    return true;
  }

  _refill(now, cap, perMs) {
    if (this._tokens == null) {
      this._tokens = cap;
      this._tokAt = now;
    }
    const top = cap - this._unanswered;
    if (this._tokens < top) this._tokens = Math.min(top, this._tokens + (now - this._tokAt) * perMs);
    this._tokAt = now;
  }

  // any reply (ok or not, late or for a request we gave up on) frees the burst slot of one request
  _onReply(f) {
    const lim = this.limits;
    if (lim && lim.rate_per_sec > 0 && this._tokens != null) {
      this._refill(Date.now(), Math.max(1, (lim.rate_burst || lim.rate_per_sec) - 2), (lim.rate_per_sec * 0.9) / 1000);
    }
    if (this._unanswered > 0) this._unanswered--;
    if (!f.ok && f.error && f.error.code === 'rate_limited') {
      // our pacing and the server disagree (other limits, clock skew): back off before writing anything else
      this._tokens = Math.min(this._tokens || 0, 0);
      this._holdUntil = Math.max(this._holdUntil, Date.now() + (f.error.retry_after_ms || 1000));
    }
    if (this._throttleQ.length) this._drain();
  }

  _scheduleDrain() {
    if (this._drainTimer) return;
    const lim = this.limits || {};
    const perMs = ((lim.rate_per_sec || 20) * 0.9) / 1000;
    let wait = Math.ceil((1 - Math.min(1, this._tokens || 0)) / perMs);
    wait = Math.max(5, wait, this._holdUntil - Date.now());
    this._drainTimer = setTimeout(() => {
      this._drainTimer = null;
      this._drain();
    }, wait);
  }

  _writeNow(e) {
    const frame = { id: e.id, op: e.op };
    if (e.args !== undefined) frame.args = e.args;
    try {
      this._write(frame);
    } catch (err) {
      // a socket that cannot take a frame is dead: requests fail with `disconnected`, sends wait for the next one
      this._throttleQ.unshift(e);
      this._dead('write failed: ' + ((err && err.message) || err));
      return;
    }
    this._unanswered++;
    if (e.op === 'ping' || e.op === 'send') e.sentAt = Date.now();
    this._inflight.set(e.id, e);
    if (!(e.timeoutMs > 0)) return;
    e.timer = setTimeout(() => {
      if (this._inflight.get(e.id) !== e) return;
      this._inflight.delete(e.id);
      e.reject(new XindaoError('timeout', e.op + ': no reply within ' + e.timeoutMs + ' ms'));
    }, e.timeoutMs);
  }

  /** Any operation of the protocol. Waits for the connection (up to requestTimeoutMs) when not open. */
  request(op, args, opts = {}) {
    return this._request(op, args, { waitOpen: true, ...opts });
  }

  // ---------------------------------------------------------------- send + outbox

  /**
   * Send a message. `target`: a conversation id, or {conversationId} / {toUser}. Resolves with the ack
   * `{message, duplicate}`; rejects with an XindaoError (`code` = the server's error code, or `timeout`,
   * `outbox_full`, `closed`, `session_ended`). While disconnected the send waits in the outbox and goes out on
   * reconnect with the same cmid (exactly once).
   */
  send(target, content, opts = {}) {
    const args = { cmid: opts.cmid || newCmid(), kind: opts.kind || 'text', content };
    if (typeof target === 'object' && target) {
      if (target.toUser != null) args.to_user = target.toUser;
      else args.conversation_id = target.conversationId;
    } else args.conversation_id = target;
    return new Promise((resolve, reject) => {
      // the server's own checks, before anything is queued: a message it would refuse never waits in the outbox
      const bad = checkContent(args.kind, content, this.limits || this._storedLimits());
      if (bad) {
        bad.cmid = args.cmid;
        return reject(bad);
      }
      if (this._ended) {
        const code = this._ended === 4003 ? 'banned' : 'session_ended';
        return reject(new XindaoError(code, 'the session ended (' + this._ended + '): log in again', { cmid: args.cmid }));
      }
      this._restoreOutbox();
      if (this._outbox.length >= this.options.outboxMax) {
        return reject(new XindaoError('outbox_full', 'outbox full (' + this.options.outboxMax + ' unacknowledged sends)', { cmid: args.cmid }));
      }
      const item = { cmid: args.cmid, args, resolve, reject, gen: null, reqId: null, timer: null, ts: Date.now() };
      this._queueSend(item, opts.timeoutMs != null ? opts.timeoutMs : this.options.sendTimeoutMs);
    });
  }

  _queueSend(item, timeoutMs) {
    // gen: the connection this item was queued on (every connection resends the outbox, in order)
    if (timeoutMs > 0) {
      item.timer = setTimeout(() => {
        this._settleSend(item, new XindaoError('timeout', 'send not acknowledged within ' + timeoutMs + ' ms (it may still be delivered; resending with the same cmid is safe)', { cmid: item.cmid }));
      }, timeoutMs);
    }
    this._outbox.push(item);
    this._saveOutbox();
    this._flushOutbox();
  }

  /** The sends not yet acknowledged, oldest first (after a reload: the ones restored from storage too), for
   * showing them as "sending": `[{cmid, conversation_id?, to_user?, kind, content, ts, restored}]`. */
  pendingSends() {
    this._restoreOutbox();
    return this._outbox.map((it) => ({ ...it.args, ts: it.ts, restored: !!it.restored }));
  }

  // ---- the outbox in storage: written on every change, so a reload (or a killed app) loses no unsent message;
  // the next client of the same user re-sends it with the same cmid, and the server's cmid dedup makes that once.
  // Each tab keeps its own (`xindao:outbox:<user>:<tab>`, listed in `xindao:outboxes:<user>` with when it was last
  // seen): two tabs of one user never both re-send one list. A tab holds a Web Lock named after its key while it
  // lives; a list whose lock is free (or, without locks, whose tab was not seen for outboxOrphanMs) is an orphan,
  // which the first tab to take its lock adopts (re-sends and deletes).

  _outboxKey(tab = this._tab()) {
    return 'xindao:outbox:' + (this.user ? this.user.id : '') + (tab ? ':' + tab : '');
  }
  _outboxIndexKey() {
    return 'xindao:outboxes:' + (this.user ? this.user.id : '');
  }
  _locks() {
    if (this.options.locks) return this.options.locks;
    const nav = typeof navigator !== 'undefined' ? navigator : null;
    return nav && nav.locks && typeof nav.locks.request === 'function' ? nav.locks : null;
  }
  // This client's tab id: the option, else one per browser tab (kept across reloads in sessionStorage), else ''.
  _tab() {
    if (this._tabId != null) return this._tabId;
    if (this.options.tabId != null) return (this._tabId = String(this.options.tabId));
    const ss = typeof window !== 'undefined' && typeof sessionStorage !== 'undefined' ? sessionStorage : null;
    if (!ss) return (this._tabId = '');
    try {
      this._tabId = ss.getItem('xindao:tab') || newCmid().slice(0, 16);
      ss.setItem('xindao:tab', this._tabId);
    } catch (_) {
      this._tabId = newCmid().slice(0, 16);
    }
    return this._tabId;
  }
  _readJson(key, fallback) {
    try {
      const raw = this.options.storage.getItem(key);
      const v = raw ? (typeof raw === 'string' ? JSON.parse(raw) : raw) : fallback;
      return v == null ? fallback : v;
    } catch (e) {
      this._log('warn', 'storage read failed', { key, error: e });
      return fallback;
    }
  }
  _saveOutbox() {
    const s = this.options.storage;
    if (!s || !this.user || this._outboxUser !== this.user.id) return;
    try {
      s.setItem(this._outboxKey(), JSON.stringify(this._outbox.map((it) => ({ args: it.args, ts: it.ts }))));
    } catch (e) {
      this._log('warn', 'outbox save failed', e);
    }
  }
  // Adds stored sends (this tab's after a reload, or an adopted orphan's) to the outbox, ahead of newer ones.
  _takeStored(saved, from) {
    if (!Array.isArray(saved)) return 0;
    const mine = new Set(this._outbox.map((it) => it.cmid));
    const restored = [];
    for (const x of saved) {
      if (!x || !x.args || typeof x.args.cmid !== 'string' || mine.has(x.args.cmid)) continue;
      mine.add(x.args.cmid);
      const item = { cmid: x.args.cmid, args: x.args, gen: null, reqId: null, timer: null, ts: x.ts || Date.now(), restored: true, from };
      // nobody awaits a restored send: its outcome comes as `message` (the ack, with its cmid) or `send_failed`
      item.resolve = () => {};
      item.reject = (err) => this.emit('send_failed', { cmid: item.cmid, args: item.args, error: err });
      restored.push(item);
    }
    // restored sends are older than any made since this client started: they go first, keeping call order
    this._outbox.unshift(...restored);
    return restored.length;
  }
  _restoreOutbox() {
    const s = this.options.storage;
    if (!s || !this.user || this._outboxUser === this.user.id) return;
    this._outboxUser = this.user.id;
    const count = this._takeStored(this._readJson(this._outboxKey(), []), this._outboxKey());
    if (count) this._log('info', 'outbox restored', { count });
    if (count || this._outbox.length) this._saveOutbox(); // sends made before the user was known too
    if (count) this._flushOutbox();
    if (this._tab()) this._watchOutboxes();
  }
  // Holds this tab's lock, lists the tab, and looks for orphans now and every outboxOrphanMs / 3.
  _watchOutboxes() {
    const locks = this._locks();
    if (locks && !this._tabLock) {
      this._tabLock = new Promise((release) => {
        this._releaseTabLock = release;
      });
      const key = this._outboxKey();
      locks.request(key, { ifAvailable: true }, (lock) => {
        if (lock) return this._tabLock;
        // another live tab has this id (a duplicated tab copies sessionStorage): what was restored from its list
        // is that tab's to send; this one takes a new id
        this._log('info', 'tab id in use by another tab: taking a new one', { tab: this._tabId });
        this._outbox = this._outbox.filter((it) => it.from !== key);
        this._tabId = newCmid().slice(0, 16);
        try {
          if (typeof sessionStorage !== 'undefined') sessionStorage.setItem('xindao:tab', this._tabId);
        } catch (_) {
          /* the next reload gets a new id again */
        }
        this._tabLock = null;
        this._saveOutbox();
        this._watchOutboxes();
        return null;
      });
    }
    const tick = () => {
      this._markTabAlive();
      this._adoptOrphans();
    };
    clearInterval(this._outboxTimer);
    this._outboxTimer = setInterval(tick, Math.max(50, this.options.outboxOrphanMs / 3));
    if (this._outboxTimer && this._outboxTimer.unref) this._outboxTimer.unref();
    tick();
  }
  _stopWatchingOutboxes() {
    clearInterval(this._outboxTimer);
    this._outboxTimer = null;
    if (this._releaseTabLock) this._releaseTabLock();
    this._releaseTabLock = this._tabLock = null;
  }
  _markTabAlive() {
    const index = this._readJson(this._outboxIndexKey(), {});
    index[this._tab()] = Date.now();
    try {
      this.options.storage.setItem(this._outboxIndexKey(), JSON.stringify(index));
    } catch (e) {
      this._log('warn', 'outbox index save failed', e);
    }
  }
  // Adopts the outbox of every listed tab that is gone, and the one an SDK before per-tab outboxes kept.
  _adoptOrphans() {
    if (this._paused || !this._wantOpen || !this.user) return;
    const index = this._readJson(this._outboxIndexKey(), {});
    const locks = this._locks();
    const now = Date.now();
    const others = Object.keys(index).filter((tab) => tab !== this._tab());
    others.push('');
    for (const tab of others) {
      const key = this._outboxKey(tab);
      if (tab && !locks && now - index[tab] < this.options.outboxOrphanMs) continue;
      if (!locks) this._adopt(tab, key);
      // held while adopting, so that two tabs never adopt one list
      else locks.request(key, { ifAvailable: true }, (lock) => lock && this._adopt(tab, key));
    }
  }
  _adopt(tab, key) {
    const s = this.options.storage;
    const saved = this._readJson(key, []);
    if (tab) {
      const index = this._readJson(this._outboxIndexKey(), {});
      delete index[tab];
      try {
        s.setItem(this._outboxIndexKey(), JSON.stringify(index));
      } catch (_) {
        /* listed again later: adopted then */
      }
    }
    if (!Array.isArray(saved) || !saved.length) return;
    try {
      s.setItem(key, '[]');
    } catch (e) {
      this._log('warn', 'orphaned outbox not cleared', e);
      return;
    }
    const count = this._takeStored(saved, key);
    this._log('info', 'outbox of a closed tab adopted', { tab, count });
    if (!count) return;
    this._saveOutbox();
    this._flushOutbox();
  }
  _storedLimits() {
    const s = this.options.storage;
    if (!s) return null;
    try {
      const raw = s.getItem('xindao:limits');
      return raw ? (typeof raw === 'string' ? JSON.parse(raw) : raw) : null;
    } catch (_) {
      return null;
    }
  }

  /** Send to a user (opens the direct conversation if needed). */
  sendTo(userId, content, opts) {
    return this.send({ toUser: userId }, content, opts);
  }

  _settleSend(item, err, result) {
    const i = this._outbox.indexOf(item);
    if (i < 0) return false;
    this._outbox.splice(i, 1);
    clearTimeout(item.timer);
    this._saveOutbox();
    const q = this._throttleQ.findIndex((e) => e.item === item);
    if (q >= 0) this._throttleQ.splice(q, 1);
    if (item.reqId != null) {
      const e = this._inflight.get(item.reqId);
      if (e) {
        clearTimeout(e.timer);
        this._inflight.delete(item.reqId);
      }
    }
    if (err) item.reject(err);
    else item.resolve(result);
    return true;
  }

  // The only way a send gets written. Walks the outbox in call order and queues every item not yet queued on this
  // connection, behind the ones that are: since the server runs one connection's requests one at a time in arrival
  // order, the messages commit in call order (a resend of an item an earlier connection already committed is
  // answered as a duplicate). Called on hello, on send() and after a rate_limited refusal.
  _flushOutbox() {
    if (this._state !== 'open' || !this._conn) return;
    for (const item of this._outbox) if (item.gen !== this._gen) this._writeSend(item);
  }

  _writeSend(item) {
    const gen = this._gen;
    const e = {
      id: ++this._reqId,
      op: 'send',
      args: item.args,
      item,
      timer: null,
      // no per-request timeout: the server answers every request of a live connection, in order, and resending
      // on the same connection could only reorder; a dead socket is the heartbeat's to find, sendTimeoutMs
      // bounds the caller's wait
      timeoutMs: 0,
      resolve: (r) => {
        if (r && r.message) this._ingestPush(r.message);
        this._settleSend(item, null, r);
      },
      reject: (err) => {
        if (item.reqId === e.id) item.reqId = null;
        if (err.code === 'disconnected' || err.code === 'not_connected') return; // stays queued for the next connection
        if (err.code === 'rate_limited') {
          // not processed (_onReply holds all writes for retry_after_ms). Pacing should make this impossible;
          // if it happens anyway, later sends already written may commit first. Requeue this one ahead of every
          // send not yet written, so the rest stays in call order.
          this._log('warn', 'send refused with rate_limited; requeued', { cmid: item.cmid });
          if (gen !== this._gen || !this._outbox.includes(item)) return;
          item.gen = null;
          this._throttleQ = this._throttleQ.filter((q) => {
            if (!q.item) return true;
            q.item.gen = null;
            q.item.reqId = null;
            return false;
          });
          this._flushOutbox();
          return;
        }
        err.cmid = item.cmid;
        this._settleSend(item, err);
      },
    };
    item.gen = gen;
    item.reqId = e.id;
    this._writeRequest(e);
  }

  // ---------------------------------------------------------------- delivery: ordered, once, no gaps

  _conv(id, baseSeq) {
    let st = this._convs.get(id);
    if (!st) {
      st = { lastSeq: baseSeq || 0, pending: new Map(), filling: false, info: null };
      this._convs.set(id, st);
    }
    return st;
  }

  _register(c) {
    // a conversation the app just opened/joined/created: deliver from its current end on
    if (!c || c.id == null) return c;
    const isNew = !this._convs.has(c.id);
    const st = this._conv(c.id, c.last_seq || 0);
    st.info = c;
    if (isNew) this._saveCursorsSoon();
    return c;
  }

  _ingestPush(m) {
    if (!this._convs.has(m.conversation_id)) {
      const base = m.seq <= this.options.newConversationBackfill ? 0 : m.seq - 1;
      this._conv(m.conversation_id, base);
      this.emit('conversation', { id: m.conversation_id, conversation_id: m.conversation_id });
    }
    this._ingest(m.conversation_id, [m]);
  }

  _ingest(id, msgs) {
    const st = this._conv(id, 0);
    for (const m of msgs) if (m.seq > st.lastSeq && !st.pending.has(m.seq)) st.pending.set(m.seq, m);
    let delivered = false;
    while (st.pending.has(st.lastSeq + 1)) {
      const m = st.pending.get(st.lastSeq + 1);
      st.pending.delete(m.seq);
      st.lastSeq = m.seq;
      if (st.info) {
        if (!(st.info.last_seq >= m.seq)) st.info.last_seq = m.seq;
        st.info.last_message = m;
      }
      delivered = true;
      this.emit('message', m);
      // a message means its sender has read the conversation up to it (the server moves the mark, no push)
      if (this.user && m.sender_id === this.user.id && st.info) st.info.read_seq = Math.max(st.info.read_seq || 0, m.seq);
      this.emit('read', { conversation_id: id, user_id: m.sender_id, seq: m.seq, implied: true });
    }
    if (delivered) this._saveCursorsSoon();
    if (st.pending.size > 0 && !this._syncing) this._fillGap(id);
  }

  async _fillGap(id) {
    const st = this._convs.get(id);
    if (!st || st.filling || this._state !== 'open') return;
    st.filling = true;
    try {
      while (st.pending.size > 0 && this._state === 'open' && this._convs.get(id) === st) {
        const before = st.lastSeq;
        const r = await this._request('history', { conversation_id: id, after_seq: st.lastSeq, limit: (this.limits && this.limits.history_page_max) || 200 });
        this._ingestNoFill(st, id, r.messages || []);
        if (st.lastSeq === before) break; // nothing usable: leave it to the next sync
      }
    } catch (e) {
      this._log('debug', 'gap fill failed', e);
    } finally {
      st.filling = false;
    }
  }

  _ingestNoFill(st, id, msgs) {
    const saved = this._syncing;
    this._syncing = true; // suppress recursive gap fills
    try {
      this._ingest(id, msgs);
    } finally {
      this._syncing = saved;
    }
  }

  _resync() {
    if (!this._baselined) return this._baseline();
    return this._syncAll();
  }

  async _baseline() {
    // first connection without stored cursors: start delivering from each conversation's current end;
    // older messages are the app's to load with history()
    this._preBaseline = this._preBaseline || [];
    const gen = this._gen;
    try {
      const all = await this._listConversations((args) => this._request('conversations', args), Infinity);
      if (gen !== this._gen) return;
      for (const c of all) {
        const st = this._conv(c.id, c.last_seq || 0);
        st.info = c;
      }
      this._baselined = true;
      const early = this._preBaseline;
      this._preBaseline = null;
      for (const m of early) this._ingestPush(m);
      this._saveCursorsSoon();
      this.emit('synced', { conversations: all, initial: true });
    } catch (e) {
      this._log('debug', 'baseline failed', e);
    }
  }

  async _syncAll() {
    if (!this._baselined) return;
    if (this._syncing) {
      this._syncAgain = true;
      return;
    }
    if (this._state !== 'open') return;
    this._syncing = true;
    const touched = new Map();
    const gen = this._gen;
    try {
      do {
        this._syncAgain = false;
        // The server walks our conversations by ascending id, a bounded slice per call, and says where to go on
        // (`next_after_id`); we send the cursors of at most SYNC_CURSORS_MAX conversations at a time (all of them
        // could pass max_frame_bytes) and bound the range with `until_id` when there are more.
        let after = 0;
        for (;;) {
          const ids = [...this._convs.keys()].filter((id) => id > after).sort((x, y) => x - y);
          const slice = ids.slice(0, SYNC_CURSORS_MAX);
          const until = ids.length > SYNC_CURSORS_MAX ? slice[slice.length - 1] : null;
          const cursors = {};
          for (const id of slice) cursors[id] = this._convs.get(id).lastSeq;
          const args = { cursors, limit: this.options.syncLimit, after_id: after };
          if (until != null) args.until_id = until;
          const r = await this._request('sync', args);
          if (gen !== this._gen) return;
          const entries = r.conversations || [];
          // servers before paged sync answer no `has_more`: then an entry with more means "call again"
          const more = r.has_more !== undefined ? r.has_more : entries.some((e) => e.has_more);
          for (const entry of entries) {
            const c = entry.conversation;
            let st = this._convs.get(c.id);
            if (!st) {
              this.emit('conversation', c);
              if (entry.has_more) {
                // a long conversation we never tracked: start at its end, the app pages history
                st = this._conv(c.id, c.last_seq);
                st.info = c;
                touched.set(c.id, c);
                continue;
              }
              st = this._conv(c.id, 0);
            }
            st.info = c;
            touched.set(c.id, c);
            this._ingest(c.id, entry.messages || []);
          }
          if (more) {
            if (typeof r.next_after_id === 'number') after = r.next_after_id;
            continue;
          }
          if (until == null) break;
          after = until;
        }
      } while (this._syncAgain);
    } catch (e) {
      this._log('debug', 'sync failed', e);
      return;
    } finally {
      this._syncing = false;
    }
    for (const [id, st] of this._convs) if (st.pending.size) this._fillGap(id);
    this.emit('synced', { conversations: [...touched.values()], initial: false });
  }

  // ---------------------------------------------------------------- cursor persistence

  _storageKey() {
    return 'xindao:cursors:' + (this.user ? this.user.id : '');
  }
  _loadCursors() {
    const s = this.options.storage;
    if (!s || !this.user) return;
    try {
      const raw = s.getItem(this._storageKey());
      if (!raw) return;
      const obj = typeof raw === 'string' ? JSON.parse(raw) : raw;
      for (const k of Object.keys(obj)) {
        const st = this._conv(Number(k), 0);
        if (obj[k] > st.lastSeq) st.lastSeq = obj[k];
      }
      this._baselined = true;
    } catch (e) {
      this._log('debug', 'cursor load failed', e);
    }
  }
  _saveCursorsSoon() {
    if (!this.options.storage || this._saveTimer) return;
    this._saveTimer = setTimeout(() => this._flushCursors(), 300);
  }
  _flushCursors() {
    clearTimeout(this._saveTimer);
    this._saveTimer = null;
    const s = this.options.storage;
    if (!s || !this.user || !this._baselined) return;
    try {
      s.setItem(this._storageKey(), JSON.stringify(this.cursors()));
    } catch (e) {
      this._log('debug', 'cursor save failed', e);
    }
  }

  // ---------------------------------------------------------------- lifecycle hooks

  _installLifecycle() {
    if (!this.options.lifecycle || this._lifecycleOff) return;
    const offs = [];
    const wxo = this._wx;
    if (wxo && typeof wxo.onAppHide === 'function' && typeof wxo.onAppShow === 'function') {
      const onHide = () => {
        clearTimeout(this._graceTimer);
        this._graceTimer = setTimeout(() => this.pause(), this.options.backgroundGraceMs);
      };
      const onShow = () => {
        clearTimeout(this._graceTimer);
        this._graceTimer = null;
        this.resume();
      };
      wxo.onAppHide(onHide);
      wxo.onAppShow(onShow);
      offs.push(() => {
        clearTimeout(this._graceTimer);
        if (typeof wxo.offAppHide === 'function') wxo.offAppHide(onHide);
        if (typeof wxo.offAppShow === 'function') wxo.offAppShow(onShow);
      });
      if (typeof wxo.onNetworkStatusChange === 'function') {
        const onNet = (r) => (r && r.isConnected ? this.resume() : this.checkAlive('network change'));
        wxo.onNetworkStatusChange(onNet);
        offs.push(() => typeof wxo.offNetworkStatusChange === 'function' && wxo.offNetworkStatusChange(onNet));
      }
    } else if (typeof document !== 'undefined' && typeof document.addEventListener === 'function') {
      const onVis = () => {
        if (document.visibilityState === 'visible') this.resume();
      };
      document.addEventListener('visibilitychange', onVis);
      offs.push(() => document.removeEventListener('visibilitychange', onVis));
      if (typeof window !== 'undefined' && typeof window.addEventListener === 'function') {
        const onOnline = () => this.resume();
        // `offline` alone proves nothing (the server may be on this machine), but the socket may be dead: ping it
        const onOffline = () => this.checkAlive('offline');
        window.addEventListener('online', onOnline);
        window.addEventListener('offline', onOffline);
        offs.push(() => {
          window.removeEventListener('online', onOnline);
          window.removeEventListener('offline', onOffline);
        });
      }
    }
    this._lifecycleOff = () => offs.forEach((f) => f());
  }
  _removeLifecycle() {
    if (this._lifecycleOff) this._lifecycleOff();
    this._lifecycleOff = null;
  }

  // ---------------------------------------------------------------- operations

  /** Application-level heartbeat; resolves with {ts}. */
  ping() {
    return this.request('ping');
  }
  /** Open (create if needed) the direct conversation with a user. */
  async openDirect(userId) {
    const r = await this.request('direct_open', { user_id: userId });
    return this._register(r.conversation);
  }
  /** Create a room; `visibility` is `public` (default) or `invite`. */
  async createRoom(name, opts = {}) {
    const r = await this.request('room_create', { name, visibility: opts.visibility || 'public' });
    return this._register(r.conversation);
  }
  async joinRoom(conversationId) {
    const r = await this.request('room_join', { conversation_id: conversationId });
    return this._register(r.conversation);
  }
  async leaveRoom(conversationId) {
    await this.request('room_leave', { conversation_id: conversationId });
    this._convs.delete(conversationId);
    this._saveCursorsSoon();
  }
  addToRoom(conversationId, userId) {
    return this.request('room_add', { conversation_id: conversationId, user_id: userId });
  }
  removeFromRoom(conversationId, userId) {
    return this.request('room_remove', { conversation_id: conversationId, user_id: userId });
  }
  /** Members of a conversation, longest-standing first: all of them (following the server's pages). */
  async roomMembers(conversationId) {
    const out = [];
    let cursor = null;
    do {
      const args = { conversation_id: conversationId, limit: 1000 };
      if (cursor) args.cursor = cursor;
      const r = await this.request('room_members', args);
      for (const m of r.members || []) out.push(m);
      cursor = r.has_more && r.next_cursor ? r.next_cursor : null;
    } while (cursor);
    return out;
  }
  async publicRooms(opts = {}) {
    const args = {};
    if (opts.limit) args.limit = opts.limit;
    return (await this.request('rooms_public', args)).rooms;
  }
  /** Conversations with unread counts, most recent activity first: all of them (the server answers in pages,
   * followed here), or the most recent `opts.max`. */
  async conversations(opts = {}) {
    const all = await this._listConversations((args) => this.request('conversations', args), opts.max || Infinity);
    for (const c of all) this._register(c);
    return all;
  }
  /** One page of conversations, most recent activity first: `{conversations, has_more, next_cursor}`; pass
   * `next_cursor` back as `opts.cursor` for the next page. `opts.limit`: default 50, at most 200. */
  async conversationsPage(opts = {}) {
    const args = {};
    if (opts.limit) args.limit = opts.limit;
    if (opts.cursor) args.cursor = opts.cursor;
    const r = await this.request('conversations', args);
    for (const c of r.conversations || []) this._register(c);
    return { conversations: r.conversations || [], has_more: !!r.has_more, next_cursor: r.next_cursor || null };
  }

  // follows `next_cursor` until `max` conversations or the end
  async _listConversations(call, max) {
    const out = [];
    let cursor = null;
    do {
      const args = { limit: Math.min(CONVERSATIONS_PAGE_MAX, max - out.length) };
      if (cursor) args.cursor = cursor;
      const r = await call(args);
      for (const c of r.conversations || []) out.push(c);
      cursor = r.has_more && r.next_cursor ? r.next_cursor : null;
    } while (cursor && out.length < max);
    return out;
  }
  /** A page of history, ascending: {messages, has_more}. With no option: the latest page. */
  history(conversationId, opts = {}) {
    const args = { conversation_id: conversationId };
    if (opts.beforeSeq != null) args.before_seq = opts.beforeSeq;
    if (opts.afterSeq != null) args.after_seq = opts.afterSeq;
    if (opts.limit != null) args.limit = opts.limit;
    return this.request('history', args);
  }
  /** Mark everything up to `seq` as read; resolves with the new read_seq. */
  async markRead(conversationId, seq) {
    const r = await this.request('read', { conversation_id: conversationId, seq });
    const st = this._convs.get(conversationId);
    if (st && st.info) st.info.read_seq = Math.max(st.info.read_seq || 0, r.read_seq);
    return r.read_seq;
  }
  /** Tell the others you are typing; throttled to one request per typingThrottleMs per conversation. */
  typing(conversationId) {
    const now = Date.now();
    const last = this._typingAt.get(conversationId) || 0;
    if (now - last < this.options.typingThrottleMs || this._state !== 'open') return Promise.resolve(false);
    this._typingAt.set(conversationId, now);
    return this._request('typing', { conversation_id: conversationId }).then(
      () => true,
      () => false,
    );
  }
  /** Presence of these users now; also subscribes to their `presence` events (replacing the previous set,
   * and renewed after every reconnect). */
  async presence(userIds) {
    this._presenceIds = [...new Set(userIds)].slice(0, 500);
    const r = await this.request('presence', { user_ids: this._presenceIds });
    return r.presence;
  }

  // ---- profiles, people, recall (docs/protocol.md; servers without them answer `unknown_op`)

  /** Set your own display name and/or avatar URL (https or a xindao media URL, at most 512 characters);
   * resolves with the updated user. Contacts get a `profile` event. */
  async setProfile(profile = {}) {
    const args = {};
    if (profile.display_name != null) args.display_name = profile.display_name;
    if (profile.avatar_url != null) args.avatar_url = profile.avatar_url;
    const r = await this.request('profile_set', args);
    if (r.user && this.user && r.user.id === this.user.id) this.user = { ...this.user, ...r.user };
    return r.user;
  }
  /** People whose display name starts with `prefix` (at least 2 characters; at most 20 results). */
  async searchUsers(prefix, opts = {}) {
    const args = { prefix };
    if (opts.limit) args.limit = opts.limit;
    return (await this.request('user_search', args)).users || [];
  }
  /** People you share a conversation with, one page: `{users, has_more, next_cursor}`. */
  async contacts(opts = {}) {
    const args = {};
    if (opts.limit) args.limit = opts.limit;
    if (opts.cursor) args.cursor = opts.cursor;
    const r = await this.request('contacts', args);
    return { users: r.users || [], has_more: !!r.has_more, next_cursor: r.next_cursor || null };
  }
  /** Recall your own message (within the server's `recall_window_secs`, 2 minutes by default). */
  recall(conversationId, seq) {
    return this.request('recall', { conversation_id: conversationId, seq });
  }
  /** A room owner removes any message of the room. */
  removeMessage(conversationId, seq) {
    return this.request('message_remove', { conversation_id: conversationId, seq });
  }
  /** Delete a message for yourself, on all your devices. */
  hide(conversationId, seq) {
    return this.request('hide', { conversation_id: conversationId, seq });
  }

  // ---- media (docs/protocol.md, "Media"): upload over HTTP, then a message that names the upload

  /**
   * Uploads a medium (`POST /v1/media`, multipart, part `file`). `source`: a Blob or File (browsers, Node 20),
   * or a temporary file path (a mini-program: `wx.chooseMedia`'s `tempFilePath`, a recording's
   * `tempFilePath`; sent with `wx.uploadFile`). `opts.kind`: `image`, `voice` or `file` (the server checks the
   * content against it); `opts.name`: the file name; `opts.public`: an image anyone may fetch (avatars).
   * Resolves with the server's `media` ({id, kind, mime, size, width?, height?, duration_ms?, name?}).
   */
  async uploadMedia(source, opts = {}) {
    const kind = opts.kind;
    if (kind != null && !MEDIA_KINDS.includes(kind)) throw new XindaoError('invalid_args', 'kind must be image, voice or file');
    if (!this.token && this.options.getToken) await this._refreshToken();
    if (!this.token) throw new XindaoError('unauthorized', 'log in before uploading');
    const query = [];
    if (kind) query.push('kind=' + kind);
    if (opts.public) query.push('public=1');
    const url = this.url + '/v1/media' + (query.length ? '?' + query.join('&') : '');
    const auth = 'Bearer ' + this.token;
    const timeout = opts.timeoutMs != null ? opts.timeoutMs : this.options.uploadTimeoutMs;
    let data;
    if (typeof source === 'string') {
      const wxo = this._wx;
      if (!wxo || typeof wxo.uploadFile !== 'function') {
        throw new XindaoError('unsupported', 'a file path needs wx.uploadFile (a mini-program); pass a Blob elsewhere');
      }
      data = await new Promise((resolve, reject) => {
        wxo.uploadFile({
          url,
          filePath: source,
          name: 'file',
          header: { Authorization: auth },
          timeout,
          success(res) {
            let body = res && res.data;
            try {
              body = typeof body === 'string' ? JSON.parse(body) : body;
            } catch (_) {
              /* keep text */
            }
            if (res.statusCode >= 200 && res.statusCode < 300 && body && body.media) resolve(body);
            else if (res.statusCode >= 200 && res.statusCode < 300) reject(new XindaoError('upload_failed', 'the server answered without media'));
            else reject(httpError(res.statusCode, body));
          },
          fail(err) {
            const msg = (err && err.errMsg) || 'uploadFile failed';
            reject(new XindaoError(/timeout/i.test(msg) ? 'timeout' : 'network', msg));
          },
        });
      });
    } else {
      if (!source || typeof source.size !== 'number' || typeof FormData === 'undefined') {
        throw new XindaoError('invalid_args', 'uploadMedia needs a Blob/File (or, in a mini-program, a file path)');
      }
      if (!this._fetch) throw new XindaoError('unsupported', 'no fetch available: pass options.fetch');
      const form = new FormData();
      form.append('file', source, opts.name || source.name || (kind || 'file'));
      let ctrl = null;
      let timer = null;
      if (typeof AbortController !== 'undefined' && timeout > 0) {
        ctrl = new AbortController();
        timer = setTimeout(() => ctrl.abort(), timeout);
      }
      let res;
      let text;
      try {
        res = await this._fetch(url, { method: 'POST', headers: { Authorization: auth }, body: form, signal: ctrl ? ctrl.signal : undefined });
        text = await res.text();
      } catch (e) {
        throw new XindaoError(ctrl && ctrl.signal.aborted ? 'timeout' : 'network', String((e && e.message) || e));
      } finally {
        if (timer) clearTimeout(timer);
      }
      try {
        data = text ? JSON.parse(text) : null;
      } catch (_) {
        data = text;
      }
      if (!res.ok) throw httpError(res.status, data);
      if (!data || !data.media) throw new XindaoError('upload_failed', 'the server answered without media');
    }
    const media = data.media;
    // the uploader may fetch their own upload: a public one comes with its (unsigned, lasting) URLs
    if (media.url) this._mediaUrls.set(media.id, { url: this.url + media.url, thumb_url: media.thumb_url ? this.url + media.thumb_url : undefined, expires_at: Infinity });
    return media;
  }

  /** Uploads `source` as an image (see uploadMedia) and sends it; resolves with the send's ack. */
  sendImage(target, source, opts = {}) {
    return this.sendMedia(target, source, { ...opts, kind: 'image' });
  }
  /** Uploads `source` as a voice recording (AAC, MP3 or WAV) and sends it; the server measures its duration. */
  sendVoice(target, source, opts = {}) {
    return this.sendMedia(target, source, { ...opts, kind: 'voice' });
  }
  /** Uploads `source` as a file and sends it. */
  sendFile(target, source, opts = {}) {
    return this.sendMedia(target, source, { ...opts, kind: 'file' });
  }
  /** Uploads, then sends a message of `opts.kind` naming the upload (the server fills in its metadata). */
  async sendMedia(target, source, opts = {}) {
    const kind = opts.kind || 'file';
    const media = await this.uploadMedia(source, { kind, name: opts.name, timeoutMs: opts.uploadTimeoutMs });
    return this.send(target, { media_id: media.id }, { kind, cmid: opts.cmid, timeoutMs: opts.timeoutMs });
  }

  /**
   * Download URLs (absolute, signed, expiring) of media the caller may see. `ids`: one id, resolving with
   * `{url, thumb_url?, expires_at}` or null (not visible, or deleted); or an array, resolving with
   * `{<id>: {url, thumb_url?, expires_at}}` for the visible ones. Calls in the same tick share one `media_url`
   * request per 100 ids; URLs are cached until a minute before they expire.
   */
  async mediaUrl(ids) {
    const one = !Array.isArray(ids);
    const list = [...new Set(one ? [ids] : ids)].filter((id) => typeof id === 'string' && id);
    const now = Date.now();
    const found = {};
    const waits = [];
    for (const id of list) {
      const hit = this._mediaUrls.get(id);
      if (hit && hit.expires_at - MEDIA_URL_MARGIN_MS > now) {
        found[id] = hit;
        continue;
      }
      waits.push(
        new Promise((resolve, reject) => {
          let q = this._mediaWanted.get(id);
          if (!q) this._mediaWanted.set(id, (q = []));
          q.push({ resolve, reject });
        }).then((got) => {
          if (got) found[id] = got;
        }),
      );
    }
    if (waits.length && !this._mediaTimer) this._mediaTimer = setTimeout(() => this._fetchMediaUrls(), 0);
    await Promise.all(waits);
    return one ? found[list[0]] || null : found;
  }

  // one media_url request per 100 wanted ids; each waiter gets its id's URLs, or null when not visible
  async _fetchMediaUrls() {
    this._mediaTimer = null;
    const wanted = this._mediaWanted;
    this._mediaWanted = new Map();
    const ids = [...wanted.keys()];
    for (let i = 0; i < ids.length; i += MEDIA_URL_BATCH_MAX) {
      const chunk = ids.slice(i, i + MEDIA_URL_BATCH_MAX);
      try {
        const r = await this.request('media_url', { media_ids: chunk });
        for (const id of chunk) {
          const u = r.urls && r.urls[id];
          const entry = u ? { url: this.url + u.url, thumb_url: u.thumb_url ? this.url + u.thumb_url : undefined, expires_at: r.expires_at } : null;
          if (entry) this._mediaUrls.set(id, entry);
          else this._mediaUrls.delete(id);
          for (const w of wanted.get(id)) w.resolve(entry);
        }
      } catch (e) {
        for (const id of chunk) for (const w of wanted.get(id)) w.reject(e);
      }
    }
  }
  /** After `wx.requestSubscribeMessage` answered "accept" for the server's notification template: records
   * `count` (default 1) one-time grants, each used by one notification while you are offline. Resolves with
   * the grants held. */
  async notifyGrant(templateId, count = 1) {
    return (await this.request('notify_grant', { template_id: templateId, count })).grants;
  }
}

function httpError(status, data) {
  const er = data && data.error;
  const code = (er && er.code) || (status === 401 ? 'unauthorized' : 'http_' + status);
  return new XindaoError(code, (er && er.message) || 'HTTP ' + status, { status });
}

/** Shorthand for `new XindaoClient(options)`. */
export function createClient(options) {
  return new XindaoClient(options);
}
