// Shared state and small DOM helpers of the web page. Every piece of user-supplied text (messages, names,
// room names) goes into the page as text nodes / textContent: never innerHTML. Avatar URLs go only into an
// <img src> and only when they are https (the page's CSP allows https: images and nothing else remote).
import { t, errText } from '/i18n.js';

export const $ = (id) => document.getElementById(id);

/** Build an element. Children that are strings become text nodes (never parsed as HTML). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return el;
}

export const S = {
  client: null,
  me: null,
  convs: new Map(), // id -> Conversation
  activeId: null,
  msgs: new Map(), // conversation id -> {list: Message[], seqs: Set, hasMore, loaded, loading}
  pending: new Map(), // cmid -> {conversation_id, content, error, retry}
  users: new Map(), // user id -> User ({id, display_name, avatar_url?})
  presence: new Map(), // user id -> online
  typing: new Map(), // conversation id -> Map(user id -> until)
  peerRead: new Map(), // conversation id -> Map(user id -> read seq)
  system: new Map(), // conversation id -> [{afterSeq, ts, key, who, by}]: "X joined" lines
  members: new Map(), // conversation id -> RoomMember[]
  readTimer: null,
  readPendingId: null,
  publicRooms: [],
  contacts: null, // User[] (null: the server has no `contacts`)
  hooks: {}, // functions app.js provides to the other modules (renderConversations, openConversation, ...)
};

export function rememberUser(u) {
  if (!u || u.id == null) return;
  const old = S.users.get(u.id);
  S.users.set(u.id, old ? { ...old, ...u } : u);
}

export function nameOf(id) {
  if (S.me && id === S.me.id) return S.me.display_name;
  const u = S.users.get(id);
  return u ? u.display_name : t('unknownUser', { id });
}

export function initial(name) {
  const s = String(name || '?').trim();
  return s ? Array.from(s)[0].toUpperCase() : '?';
}

export function safeAvatar(url) {
  return typeof url === 'string' && url.length <= 512 && /^https:\/\/[^\s"'<>]+$/i.test(url) ? url : null;
}

/** An avatar box: the user's picture when it is an https URL, else the first letter of the name. */
export function avatarEl(user, opts = {}) {
  const cls = 'avatar' + (opts.room ? ' room' : '') + (opts.small ? ' sm' : '');
  if (opts.room) return h('div', { class: cls }, '#', opts.dot ? h('span', { class: 'dot' }) : null);
  const name = user ? user.display_name : '?';
  const url = user && safeAvatar(user.avatar_url);
  // a picture that does not load falls back to the letter
  const img = url ? h('img', { src: url, alt: '', referrerpolicy: 'no-referrer', loading: 'lazy', onerror: (ev) => ev.target.replaceWith(initial(name)) }) : null;
  return h('div', { class: cls }, img || initial(name), opts.dot ? h('span', { class: 'dot', title: t('online') }) : null);
}

export function convTitle(c) {
  if (!c) return '';
  if (c.kind === 'direct') return c.peer ? (S.users.get(c.peer.id) || c.peer).display_name : t('directChat');
  return '# ' + (c.name || t('room', { id: c.id }));
}

/** Show a readable error under the sidebar actions (null clears it: any later success does). */
export function actionError(e, text) {
  $('action-error').textContent = e || text ? text || errText(e) : '';
}
export function ok() {
  actionError(null);
}
