// xindao web chat, built on the SDK (/xindao.js): login, the session, the connection banner, the conversation
// list (unread counts, also in the tab title) and the SDK's events. The open conversation lives in chat.js (its
// composer in composer.js), rooms in rooms.js, people (profile, search, contacts, members) in people.js, strings
// in i18n.js.
import { XindaoClient } from '/xindao.js';
import { t, errText, lang, setLang, applyStatic } from '/i18n.js';
import { $, h, S, rememberUser, avatarEl, convTitle, actionError } from '/ui.js';
import { openConversation, closeConversation, renderHeader, renderMessages, renderTyping, addMessages, applyState, markReadSoon, loadHistory } from '/chat.js';
import { updateComposer } from '/composer.js';
import { isMedia, mediaPreview } from '/media.js';
import { refreshPublicRooms, renderPublicRooms } from '/rooms.js';
import { renderMe, onProfile, refreshContacts, renderContacts, loadMembers } from '/people.js';

const storage = {
  getItem: (k) => localStorage.getItem(k),
  setItem: (k, v) => localStorage.setItem(k, v),
};

// ------------------------------------------------------------------ login / session

function showLogin(message) {
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('login-name').focus();
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = $('login-name').value.trim();
  if (!name) return;
  $('login-button').disabled = true;
  $('login-error').textContent = '';
  try {
    const client = new XindaoClient({ storage, sendTimeoutMs: 0 });
    const session = await client.loginDev(name);
    localStorage.setItem('xindao.session', JSON.stringify({ token: session.token, user: session.user }));
    await start(client);
  } catch (e) {
    $('login-error').textContent = e.code === 'not_found' ? t('login.devDisabled') : t('login.failed', { err: errText(e) });
  } finally {
    $('login-button').disabled = false;
  }
});

$('logout').addEventListener('click', async () => {
  try {
    await S.client.logout();
  } catch (_) {
    /* the session may already be gone */
  }
  endSession('');
});

function endSession(message) {
  localStorage.removeItem('xindao.session');
  if (S.me) localStorage.removeItem('xindao.convs.' + S.me.id);
  if (S.client) S.client.close();
  S.client = null;
  for (const m of [S.convs, S.msgs, S.pending, S.system, S.members]) m.clear();
  S.activeId = null;
  document.title = t('title');
  showLogin(message);
}

async function start(client) {
  S.client = client;
  S.me = client.user;
  rememberUser(S.me);
  $('login').hidden = true;
  $('app').hidden = false;
  renderMe();
  client.on('rtt', () => {
    if (client.state === 'open') renderConn({ state: 'open' });
  });
  client.on('state', (s) => {
    renderConn(s);
    renderConversations();
    renderHeader();
  });
  client.on('open', () => {
    updateComposer(); // the limits came with the hello
    if (S.unreachableShown) actionError(null); // "cannot reach the server" is over
    S.unreachableShown = false;
  });
  client.on('message', onMessage);
  client.on('read', onRead);
  client.on('typing', onTyping);
  client.on('presence', (p) => {
    S.presence.set(p.user_id, p.online);
    renderConversations();
    renderHeader();
  });
  client.on('member', onMember);
  client.on('members_changed', (ev) => ev.recent.forEach((r) => onMember({ ...r, conversation_id: ev.conversation_id })));
  client.on('profile', onProfile);
  client.on('message_state', applyState);
  client.on('send_failed', (f) => {
    const p = S.pending.get(f.cmid);
    if (p) p.error = f.error;
    if (S.activeId != null) renderMessages(false);
  });
  client.on('synced', () => {
    refreshConversations();
    refreshContacts();
    if (!S.publicRooms.length) refreshPublicRooms();
    if (S.activeId != null) loadHistory(S.activeId);
  });
  client.on('conversation', () => {
    refreshConversations();
    refreshContacts(); // a new conversation may bring a new contact
  });
  client.on('session_ended', (ev) => endSession(ev.code === 4003 ? errText({ code: 'banned' }) : t('session.ended')));
  // sends a reload left unsent: the SDK re-sends them from storage; show them as "Sending…" meanwhile
  for (const p of client.pendingSends()) if (p.conversation_id != null && p.kind === 'text') S.pending.set(p.cmid, { conversation_id: p.conversation_id, content: p.content, error: null });
  renderConn({ state: client.state });
  // the list as it was, until the server answers (a reload while offline still shows it), and the
  // conversation that was open before the reload
  for (const c of loadCachedConvs()) {
    if (S.convs.has(c.id)) continue;
    S.convs.set(c.id, c);
    if (c.peer) rememberUser(c.peer);
  }
  renderConversations();
  reopenLast();
  try {
    await client.connect({ timeoutMs: 10000 });
  } catch (e) {
    if (e.code === 'session_ended' || e.code === 'unauthorized') return; // endSession already ran
    if (e.code !== 'unreachable') throw e;
    actionError(e); // still retrying: the banner says so, the lists fill in on `synced`
    S.unreachableShown = true;
    return;
  }
  await Promise.all([refreshConversations(), refreshPublicRooms(), refreshContacts()]);
  reopenLast();
}

function reopenLast() {
  const last = Number(localStorage.getItem('xindao.active.' + S.me.id));
  if (last && S.convs.has(last) && S.activeId == null) openConversation(last);
}

const convCacheKey = () => 'xindao.convs.' + S.me.id;
function loadCachedConvs() {
  try {
    const list = JSON.parse(localStorage.getItem(convCacheKey()) || '[]');
    return Array.isArray(list) ? list : [];
  } catch (_) {
    return [];
  }
}
function saveCachedConvs(list) {
  try {
    localStorage.setItem(convCacheKey(), JSON.stringify(list.slice(0, 50).map(({ memberCount, ...c }) => c)));
  } catch (_) {
    /* storage full: the list comes from the server next time */
  }
}

// ------------------------------------------------------------------ connection banner

function renderConn(s) {
  const el = $('conn');
  const state = s.state;
  el.dataset.state = state;
  let text = '';
  if (state === 'connecting') text = t('conn.connecting');
  else if (state === 'open') text = S.client && S.client.rtt != null ? t('conn.openRtt', { ms: S.client.rtt }) : t('conn.open');
  else if (state === 'reconnecting') text = s.attempt ? t('conn.reconnectingN', { n: s.attempt }) : t('conn.reconnecting');
  else if (state === 'closed') text = t(s.reason === 'paused' ? 'conn.paused' : 'conn.closed');
  el.textContent = text;
  $('composer').classList.toggle('offline', state !== 'open');
}

// ------------------------------------------------------------------ conversations

function unreadOf(c) {
  // the open conversation is being read (markReadSoon catches up on the server)
  if (c.id === S.activeId && document.visibilityState === 'visible') return 0;
  return Math.max(0, (c.last_seq || 0) - (c.read_seq || 0));
}

const CONVERSATIONS_SHOWN = 200;

async function refreshConversations() {
  if (!S.client) return;
  let list;
  try {
    // the most recent ones only: a user in thousands of conversations would otherwise fetch every page on every sync
    list = await S.client.conversations({ max: CONVERSATIONS_SHOWN });
  } catch (_) {
    return; // offline: refreshed again on the next `synced`
  }
  for (const c of list) {
    const old = S.convs.get(c.id);
    // keep the fresher local numbers (a push may have landed after the server computed the list)
    if (old) {
      c.last_seq = Math.max(c.last_seq, old.last_seq || 0);
      c.read_seq = Math.max(c.read_seq, old.read_seq || 0);
      if (old.last_message && (!c.last_message || old.last_message.seq > c.last_message.seq)) c.last_message = old.last_message;
      if (old.memberCount) c.memberCount = old.memberCount;
    }
    S.convs.set(c.id, c);
    if (c.peer) rememberUser(c.peer);
  }
  // forget conversations we left, when the list is whole (a cut list says nothing of the older ones)
  if (list.length < CONVERSATIONS_SHOWN) {
    const ids = new Set(list.map((c) => c.id));
    for (const id of [...S.convs.keys()]) if (!ids.has(id)) S.convs.delete(id);
  }
  saveCachedConvs(list);
  const peers = list.filter((c) => c.kind === 'direct' && c.peer).map((c) => c.peer.id);
  if (peers.length) {
    S.client.presence(peers).then(
      (ps) => {
        for (const p of ps) S.presence.set(p.user_id, p.online);
        renderConversations();
        renderHeader();
      },
      () => {},
    );
  }
  renderConversations();
  renderHeader();
}

function sortedConvs() {
  const ts = (c) => (c.last_message ? c.last_message.ts : c.last_ts || 0);
  return [...S.convs.values()].sort((a, b) => ts(b) - ts(a) || b.id - a.id);
}

function preview(m) {
  if (!m) return '';
  if (m.state === 'hidden') return '';
  const who = m.sender_id === S.me.id ? t('you') : '';
  if (m.state) return m.state === 'removed' ? t('sys.removedMsg') : m.sender_id === S.me.id ? t('sys.recalledMe') : t('sys.recalled', { who: S.users.get(m.sender_id)?.display_name || '' });
  return who + (m.kind === 'text' ? String(m.content) : isMedia(m) ? mediaPreview(m) : '[' + m.kind + ']');
}

function renderConversations() {
  const ul = $('conversations');
  ul.replaceChildren();
  let total = 0;
  const live = S.client && S.client.state === 'open';
  for (const c of sortedConvs()) {
    const unread = unreadOf(c);
    total += unread;
    const online = c.kind === 'direct' && c.peer && live && S.presence.get(c.peer.id);
    const peer = c.peer ? S.users.get(c.peer.id) || c.peer : null;
    ul.append(
      h(
        'li',
        { class: 'conv' + (c.id === S.activeId ? ' active' : ''), dataset: { id: String(c.id), kind: c.kind }, onclick: () => openConversation(c.id) },
        avatarEl(peer, { room: c.kind === 'room', dot: online }),
        h('div', { class: 'conv-text' }, h('div', { class: 'conv-title' }, convTitle(c)), h('div', { class: 'conv-preview muted small' }, preview(c.last_message))),
        unread > 0 ? h('span', { class: 'badge', 'aria-label': unread + ' unread' }, String(unread > 99 ? '99+' : unread)) : null,
      ),
    );
  }
  if (!S.convs.size) ul.append(h('li', { class: 'muted small pad' }, t('noChats')));
  // unread count in the tab title
  document.title = (total > 0 ? '(' + (total > 99 ? '99+' : total) + ') ' : '') + t('title');
}

// ------------------------------------------------------------------ events from the SDK

function onMessage(m) {
  const id = m.conversation_id;
  const c = S.convs.get(id);
  if (!c) {
    refreshConversations();
    refreshContacts();
  }
  else {
    c.last_seq = Math.max(c.last_seq || 0, m.seq);
    if (!c.last_message || c.last_message.seq < m.seq) c.last_message = m;
  }
  if (m.sender_id === S.me.id) S.pending.delete(m.cmid);
  // the SDK delivers each conversation contiguously from where it started tracking it, and history pages
  // are contiguous suffixes, so the union stays gap-free
  addMessages(id, [m]);
  const typing = S.typing.get(id);
  if (typing) typing.delete(m.sender_id);
  if (id === S.activeId) {
    renderMessages(false);
    renderTyping();
    markReadSoon();
  }
  renderConversations();
}

// read marks, pushed or implied by a message (its sender has read up to it)
function onRead(r) {
  const c = S.convs.get(r.conversation_id);
  if (r.user_id === S.me.id) {
    if (c) c.read_seq = Math.max(c.read_seq || 0, r.seq);
    renderConversations();
    return;
  }
  let reads = S.peerRead.get(r.conversation_id);
  if (!reads) S.peerRead.set(r.conversation_id, (reads = new Map()));
  if ((reads.get(r.user_id) || 0) >= r.seq) return;
  reads.set(r.user_id, r.seq);
  if (r.conversation_id === S.activeId) renderMessages(false);
}

function onTyping(ev) {
  let m = S.typing.get(ev.conversation_id);
  if (!m) S.typing.set(ev.conversation_id, (m = new Map()));
  m.set(ev.user_id, Date.now() + 4000);
  if (ev.conversation_id === S.activeId) renderTyping();
}

function onMember(ev) {
  const id = ev.conversation_id;
  // an "X joined / left" line after the conversation's latest message
  const c = S.convs.get(id);
  let lines = S.system.get(id);
  if (!lines) S.system.set(id, (lines = []));
  lines.push({ afterSeq: c ? c.last_seq || 0 : 0, ts: Date.now(), action: ev.action, user_id: ev.user_id, by: ev.by });
  if (lines.length > 200) lines.shift();
  if (ev.user_id === S.me.id && (ev.action === 'removed' || ev.action === 'left')) {
    S.convs.delete(id);
    if (S.activeId === id) closeConversation();
    renderConversations();
  } else if (ev.user_id === S.me.id) {
    refreshConversations();
  }
  if (id === S.activeId) {
    loadMembers(id);
    renderMessages(false);
  }
  refreshPublicRooms();
}

// ------------------------------------------------------------------ language

function renderAll() {
  applyStatic();
  $('lang').textContent = t('lang');
  renderMe();
  renderConversations();
  renderPublicRooms();
  renderContacts();
  renderHeader();
  renderMessages(false);
  renderTyping();
  if (S.client) renderConn({ state: S.client.state });
}
$('lang').addEventListener('click', () => {
  setLang(lang === 'en' ? 'zh-CN' : 'en');
  renderAll();
});

Object.assign(S.hooks, { renderConversations, refreshConversations, openConversation, renderHeader, renderMessages, renderAll });

// ------------------------------------------------------------------ boot

(async function boot() {
  applyStatic();
  $('lang').textContent = t('lang');
  document.title = t('title');
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem('xindao.session') || 'null');
  } catch (_) {
    saved = null;
  }
  if (!saved || !saved.token) return showLogin('');
  // sendTimeoutMs 0: while the page is open, unsent messages wait in the outbox (shown as "Sending…") for as
  // long as the connection is down, and go out exactly once when it is back; the outbox is in localStorage too
  const client = new XindaoClient({ storage, sendTimeoutMs: 0, token: saved.token, user: saved.user });
  try {
    await start(client);
  } catch (e) {
    endSession(t('session.cannotConnect', { err: errText(e) }));
  }
})();
