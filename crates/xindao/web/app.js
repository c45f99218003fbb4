// xindao web chat, built on the SDK (/xindao.js). Every piece of user-supplied text (messages, names, room
// names) is put into the page with textContent / text nodes: never innerHTML.
import { XindaoClient, newCmid } from '/xindao.js';

const $ = (id) => document.getElementById(id);

/** Build an element. Children that are strings become text nodes (never parsed as HTML). */
function h(tag, props, ...children) {
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

const storage = {
  getItem: (k) => localStorage.getItem(k),
  setItem: (k, v) => localStorage.setItem(k, v),
};

const S = {
  client: null,
  me: null,
  convs: new Map(), // id -> Conversation
  activeId: null,
  msgs: new Map(), // conversation id -> {list: Message[], seqs: Set, hasMore, loaded, loading}
  pending: new Map(), // cmid -> {conversation_id, content, status, error}
  users: new Map(), // user id -> display name
  presence: new Map(), // user id -> online
  typing: new Map(), // conversation id -> Map(user id -> until)
  peerRead: new Map(), // conversation id -> Map(user id -> read seq)
  readTimer: null,
  readPendingId: null, // the conversation whose read mark waits on readTimer
  publicRooms: [],
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
    $('login-error').textContent =
      e.code === 'not_found'
        ? 'Development login is disabled on this server.'
        : e.code === 'rate_limited'
          ? 'Too many logins from here: try again in a minute.'
          : 'Login failed: ' + (e.message || e.code);
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
  if (S.client) S.client.close();
  S.client = null;
  S.convs.clear();
  S.msgs.clear();
  S.pending.clear();
  S.activeId = null;
  showLogin(message);
}

async function start(client) {
  S.client = client;
  S.me = client.user;
  S.users.set(S.me.id, S.me.display_name);
  $('login').hidden = true;
  $('app').hidden = false;
  $('me-name').textContent = S.me.display_name;
  $('me-id').textContent = 'user id ' + S.me.id;
  $('me-avatar').textContent = initial(S.me.display_name);
  client.on('state', (s) => {
    renderConn(s);
    renderConversations();
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
  client.on('synced', () => refreshConversations());
  client.on('conversation', () => refreshConversations());
  client.on('session_ended', () => endSession('Your session ended. Please log in again.'));
  renderConn({ state: client.state });
  try {
    await client.connect();
  } catch (e) {
    if (e.code === 'session_ended' || e.code === 'unauthorized') return; // endSession already ran
    throw e;
  }
  await Promise.all([refreshConversations(), refreshPublicRooms()]);
}

// ------------------------------------------------------------------ connection banner

function renderConn(s) {
  const el = $('conn');
  const state = s.state;
  el.dataset.state = state;
  let text = '';
  if (state === 'connecting') text = 'Connecting…';
  else if (state === 'open') text = 'Online';
  else if (state === 'reconnecting') text = 'Connection lost: reconnecting' + (s.attempt ? ' (attempt ' + s.attempt + ')' : '') + '…';
  else if (state === 'closed') text = s.reason === 'paused' ? 'Paused' : 'Offline';
  el.textContent = text;
  $('composer').classList.toggle('offline', state !== 'open');
}

// ------------------------------------------------------------------ conversations

function initial(name) {
  const s = String(name || '?').trim();
  return s ? Array.from(s)[0].toUpperCase() : '?';
}

function convTitle(c) {
  if (!c) return '';
  if (c.kind === 'direct') return c.peer ? c.peer.display_name : 'Direct chat';
  return '# ' + (c.name || 'room ' + c.id);
}

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
    if (c.peer) S.users.set(c.peer.id, c.peer.display_name);
  }
  // forget conversations we left, when the list is whole (a cut list says nothing of the older ones)
  if (list.length < CONVERSATIONS_SHOWN) {
    const ids = new Set(list.map((c) => c.id));
    for (const id of [...S.convs.keys()]) if (!ids.has(id)) S.convs.delete(id);
  }
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
  return [...S.convs.values()].sort((a, b) => {
    const ta = a.last_message ? a.last_message.ts : 0;
    const tb = b.last_message ? b.last_message.ts : 0;
    return tb - ta || b.id - a.id;
  });
}

function preview(m) {
  if (!m) return '';
  const who = m.sender_id === S.me.id ? 'You: ' : '';
  return who + (m.kind === 'text' ? String(m.content) : '[' + m.kind + ']');
}

function renderConversations() {
  const ul = $('conversations');
  ul.replaceChildren();
  for (const c of sortedConvs()) {
    const unread = unreadOf(c);
    const online = c.kind === 'direct' && c.peer && S.client && S.client.state === 'open' && S.presence.get(c.peer.id);
    ul.append(
      h(
        'li',
        {
          class: 'conv' + (c.id === S.activeId ? ' active' : ''),
          dataset: { id: String(c.id), kind: c.kind },
          onclick: () => openConversation(c.id),
        },
        h('div', { class: 'avatar' + (c.kind === 'room' ? ' room' : '') }, c.kind === 'room' ? '#' : initial(convTitle(c)), online ? h('span', { class: 'dot', title: 'online' }) : null),
        h('div', { class: 'conv-text' }, h('div', { class: 'conv-title' }, convTitle(c)), h('div', { class: 'conv-preview muted small' }, preview(c.last_message))),
        unread > 0 ? h('span', { class: 'badge', 'aria-label': unread + ' unread' }, String(unread > 99 ? '99+' : unread)) : null,
      ),
    );
  }
  if (!S.convs.size) ul.append(h('li', { class: 'muted small pad' }, 'No chats yet.'));
}

async function refreshPublicRooms() {
  try {
    S.publicRooms = await S.client.publicRooms({ limit: 50 });
  } catch (_) {
    return;
  }
  const ul = $('public-rooms');
  ul.replaceChildren();
  for (const r of S.publicRooms) {
    const member = S.convs.has(r.id);
    ul.append(
      h(
        'li',
        { class: 'room-row', dataset: { id: String(r.id) } },
        h('span', { class: 'room-name' }, '# ' + r.name),
        h('span', { class: 'muted small' }, r.members + (r.members === 1 ? ' member' : ' members')),
        member
          ? h('button', { class: 'ghost small', onclick: () => openConversation(r.id) }, 'Open')
          : h('button', { class: 'secondary small join', onclick: () => joinRoom(r.id) }, 'Join'),
      ),
    );
  }
  if (!S.publicRooms.length) ul.append(h('li', { class: 'muted small pad' }, 'No public rooms.'));
}
$('refresh-rooms').addEventListener('click', () => refreshPublicRooms());

async function joinRoom(id) {
  try {
    const c = await S.client.joinRoom(id);
    S.convs.set(c.id, c);
    await refreshPublicRooms();
    openConversation(c.id);
  } catch (e) {
    actionError(e);
  }
}

function actionError(e) {
  $('action-error').textContent = e ? (e.code ? e.code + ': ' : '') + (e.message || '') : '';
}

$('new-chat').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const v = $('new-chat-input').value.trim();
  if (!v) return;
  actionError(null);
  let userId = /^\d+$/.test(v) ? Number(v) : null;
  if (userId == null) {
    // the protocol has no user search: look among the people we already know (peers, room members)
    const lower = v.toLowerCase();
    for (const [id, name] of S.users) if (name.toLowerCase() === lower && id !== S.me.id) userId = id;
    if (userId == null) return actionError({ code: 'not_found', message: 'no known user "' + v + '": ask for their user id' });
  }
  try {
    const c = await S.client.openDirect(userId);
    S.convs.set(c.id, c);
    if (c.peer) S.users.set(c.peer.id, c.peer.display_name);
    $('new-chat-input').value = '';
    renderConversations();
    openConversation(c.id);
    refreshConversations();
  } catch (e) {
    actionError(e);
  }
});

$('new-room').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = $('new-room-input').value.trim();
  if (!name) return;
  actionError(null);
  try {
    const c = await S.client.createRoom(name, { visibility: 'public' });
    S.convs.set(c.id, c);
    $('new-room-input').value = '';
    renderConversations();
    openConversation(c.id);
    refreshPublicRooms();
  } catch (e) {
    actionError(e);
  }
});

// ------------------------------------------------------------------ one conversation

function bucket(id) {
  let b = S.msgs.get(id);
  if (!b) S.msgs.set(id, (b = { list: [], seqs: new Set(), hasMore: true, loaded: false, loading: false }));
  return b;
}

function addMessages(id, msgs) {
  const b = bucket(id);
  let added = false;
  for (const m of msgs) {
    if (b.seqs.has(m.seq)) continue;
    b.seqs.add(m.seq);
    b.list.push(m);
    added = true;
  }
  if (added) b.list.sort((x, y) => x.seq - y.seq);
  return added;
}

async function openConversation(id) {
  flushReadMark(id);
  S.activeId = id;
  document.body.classList.add('in-chat');
  $('empty').hidden = true;
  $('pane').hidden = false;
  renderConversations();
  renderHeader();
  const b = bucket(id);
  renderMessages(true);
  if (!b.loaded) {
    try {
      const r = await S.client.history(id, { limit: 50 });
      addMessages(id, r.messages);
      b.hasMore = r.has_more;
      b.loaded = true;
    } catch (e) {
      actionError(e);
    }
    if (S.activeId === id) renderMessages(true);
  }
  loadMembers(id);
  markReadSoon();
  $('composer-input').focus();
}

async function loadMembers(id) {
  const c = S.convs.get(id);
  if (!c) return;
  try {
    // room_members also tells where each member has read up to (read marks)
    const members = await S.client.roomMembers(id);
    const reads = S.peerRead.get(id) || new Map();
    for (const m of members) {
      S.users.set(m.user.id, m.user.display_name);
      if (m.user.id !== S.me.id) reads.set(m.user.id, Math.max(reads.get(m.user.id) || 0, m.read_seq));
      S.presence.set(m.user.id, m.online);
    }
    S.peerRead.set(id, reads);
    c.memberCount = members.length;
    if (S.activeId === id) {
      renderHeader();
      renderMessages(false);
    }
  } catch (_) {
    /* direct conversations may not answer room_members: read marks then come from `read` events */
  }
}

$('back').addEventListener('click', () => {
  flushReadMark(null);
  S.activeId = null;
  document.body.classList.remove('in-chat');
  $('pane').hidden = true;
  $('empty').hidden = false;
  renderConversations();
});

$('leave-room').addEventListener('click', async () => {
  const id = S.activeId;
  if (!id) return;
  try {
    await S.client.leaveRoom(id);
    S.convs.delete(id);
    S.msgs.delete(id);
    $('back').click();
    refreshPublicRooms();
  } catch (e) {
    actionError(e);
  }
});

function renderHeader() {
  const c = S.convs.get(S.activeId);
  if (!c) return;
  $('chat-title').textContent = convTitle(c);
  let sub = '';
  if (c.kind === 'direct' && c.peer) sub = (S.presence.get(c.peer.id) ? 'online' : 'offline') + ' · user id ' + c.peer.id;
  else if (c.kind === 'room') sub = (c.memberCount ? c.memberCount + (c.memberCount === 1 ? ' member · ' : ' members · ') : '') + (c.visibility || 'public') + ' room';
  $('chat-sub').textContent = sub;
  $('chat-sub').dataset.online = c.kind === 'direct' && c.peer && S.presence.get(c.peer.id) ? 'true' : 'false';
  $('leave-room').hidden = c.kind !== 'room';
}

function fmtTime(ts) {
  const d = new Date(ts);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function contentText(m) {
  return m.kind === 'text' ? String(m.content) : JSON.stringify(m.content);
}

function renderMessages(stickToBottom) {
  const id = S.activeId;
  if (id == null) return;
  const box = $('messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  const b = bucket(id);
  const c = S.convs.get(id);
  const list = $('message-list');
  list.replaceChildren();
  const reads = S.peerRead.get(id) || new Map();
  // read mark: the last of my messages that some other member has read
  let maxPeerRead = 0;
  for (const v of reads.values()) maxPeerRead = Math.max(maxPeerRead, v);
  let lastMineRead = null;
  for (const m of b.list) if (m.sender_id === S.me.id && m.seq <= maxPeerRead) lastMineRead = m.seq;
  let prevSender = null;
  for (const m of b.list) {
    const mine = m.sender_id === S.me.id;
    const showName = !mine && c && c.kind === 'room' && prevSender !== m.sender_id;
    prevSender = m.sender_id;
    list.append(
      h(
        'li',
        { class: 'msg ' + (mine ? 'mine' : 'theirs'), dataset: { seq: String(m.seq), sender: String(m.sender_id), ...(m.cmid ? { cmid: m.cmid } : {}) } },
        showName ? h('div', { class: 'sender small' }, S.users.get(m.sender_id) || 'user ' + m.sender_id) : null,
        h('div', { class: 'bubble' }, h('span', { class: 'text' }, contentText(m))),
        h(
          'div',
          { class: 'meta small' },
          fmtTime(m.ts),
          mine && m.seq === lastMineRead ? h('span', { class: 'read-mark', title: 'read' }, ' · Read') : null,
        ),
      ),
    );
  }
  for (const [cmid, p] of S.pending) {
    if (p.conversation_id !== id || b.list.some((m) => m.cmid === cmid && m.sender_id === S.me.id)) continue;
    list.append(
      h(
        'li',
        { class: 'msg mine pending' + (p.error ? ' failed' : ''), dataset: { cmid } },
        h('div', { class: 'bubble' }, h('span', { class: 'text' }, p.content)),
        h(
          'div',
          { class: 'meta small' },
          p.error ? 'Not sent (' + p.error + ') ' : 'Sending…',
          p.error ? h('button', { class: 'ghost small', onclick: () => sendText(id, p.content, cmid) }, 'Retry') : null,
        ),
      ),
    );
  }
  $('older').textContent = b.loaded ? (b.hasMore ? 'Scroll up for older messages' : 'Beginning of the conversation') : 'Loading…';
  if (stickToBottom || atBottom) box.scrollTop = box.scrollHeight;
}

$('messages').addEventListener('scroll', async () => {
  const box = $('messages');
  const id = S.activeId;
  if (id == null || box.scrollTop > 40) return;
  const b = bucket(id);
  if (!b.loaded || !b.hasMore || b.loading || !b.list.length) return;
  b.loading = true;
  const before = box.scrollHeight;
  try {
    const r = await S.client.history(id, { beforeSeq: b.list[0].seq, limit: 50 });
    addMessages(id, r.messages);
    b.hasMore = r.has_more;
  } catch (_) {
    /* offline: try again on the next scroll */
  } finally {
    b.loading = false;
  }
  if (S.activeId !== id) return;
  renderMessages(false);
  box.scrollTop = box.scrollHeight - before + box.scrollTop;
});

function renderTyping() {
  const id = S.activeId;
  const el = $('typing');
  const now = Date.now();
  const t = S.typing.get(id);
  const names = [];
  if (t) for (const [uid, until] of t) if (until > now) names.push(S.users.get(uid) || 'user ' + uid);
  el.textContent = names.length ? names.join(', ') + (names.length > 1 ? ' are typing…' : ' is typing…') : '';
}
setInterval(renderTyping, 1000);

// ------------------------------------------------------------------ events from the SDK

function onMessage(m) {
  const id = m.conversation_id;
  let c = S.convs.get(id);
  if (!c) {
    refreshConversations();
    c = null;
  } else {
    c.last_seq = Math.max(c.last_seq || 0, m.seq);
    if (!c.last_message || c.last_message.seq < m.seq) c.last_message = m;
    if (m.sender_id === S.me.id) c.read_seq = Math.max(c.read_seq || 0, m.seq); // my own messages are read
  }
  if (m.sender_id === S.me.id) S.pending.delete(m.cmid);
  // the SDK delivers each conversation contiguously from where it started tracking it, and history pages
  // are contiguous suffixes, so the union stays gap-free
  addMessages(id, [m]);
  const t = S.typing.get(id);
  if (t) t.delete(m.sender_id);
  if (id === S.activeId) {
    renderMessages(false);
    renderTyping();
    markReadSoon();
  }
  renderConversations();
}

function onRead(r) {
  const c = S.convs.get(r.conversation_id);
  if (r.user_id === S.me.id) {
    if (c) c.read_seq = Math.max(c.read_seq || 0, r.seq);
    renderConversations();
    return;
  }
  let reads = S.peerRead.get(r.conversation_id);
  if (!reads) S.peerRead.set(r.conversation_id, (reads = new Map()));
  reads.set(r.user_id, Math.max(reads.get(r.user_id) || 0, r.seq));
  if (r.conversation_id === S.activeId) renderMessages(false);
}

function onTyping(t) {
  let m = S.typing.get(t.conversation_id);
  if (!m) S.typing.set(t.conversation_id, (m = new Map()));
  m.set(t.user_id, Date.now() + 4000);
  if (t.conversation_id === S.activeId) renderTyping();
}

function onMember(ev) {
  if (ev.user_id === S.me.id && (ev.action === 'removed' || ev.action === 'left')) {
    S.convs.delete(ev.conversation_id);
    if (S.activeId === ev.conversation_id) $('back').click();
    renderConversations();
  } else if (ev.user_id === S.me.id) {
    refreshConversations();
  }
  if (ev.conversation_id === S.activeId) loadMembers(ev.conversation_id);
  refreshPublicRooms();
}

function markReadSoon() {
  clearTimeout(S.readTimer);
  // the conversation on screen now: switching away before the timer fires must not leave it unread
  const id = S.activeId;
  S.readPendingId = id;
  S.readTimer = setTimeout(() => markReadNow(id), 150);
}

// Leaving a conversation with a read mark still pending: send it now, for the conversation that was seen.
function flushReadMark(nextId) {
  const id = S.readPendingId;
  if (id == null || id === nextId) return;
  clearTimeout(S.readTimer);
  markReadNow(id);
}

function markReadNow(id) {
  S.readPendingId = null;
  const c = S.convs.get(id);
  if (!c || document.visibilityState !== 'visible') return;
  const seq = c.last_seq || 0;
  if (seq > (c.read_seq || 0)) {
    c.read_seq = seq;
    renderConversations();
    S.client.markRead(id, seq).catch(() => {
      /* retried on the next message or visit */
    });
  }
}
document.addEventListener('visibilitychange', () => document.visibilityState === 'visible' && markReadSoon());

// ------------------------------------------------------------------ composer

function sendText(id, text, cmid) {
  cmid = cmid || newCmid();
  S.pending.set(cmid, { conversation_id: id, content: text, error: null });
  renderMessages(true);
  S.client.send(id, text, { cmid }).then(
    (ack) => {
      S.pending.delete(cmid);
      addMessages(id, [ack.message]);
      if (S.activeId === id) renderMessages(true);
    },
    (e) => {
      const p = S.pending.get(cmid);
      if (p) p.error = e.code || 'error';
      if (S.activeId === id) renderMessages(false);
    },
  );
}

$('composer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $('composer-input');
  const text = input.value;
  if (!text.trim() || S.activeId == null) return;
  input.value = '';
  autosize();
  sendText(S.activeId, text);
});

function autosize() {
  const input = $('composer-input');
  input.rows = Math.min(6, Math.max(1, input.value.split('\n').length));
}

$('composer-input').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $('composer').requestSubmit();
  }
});
$('composer-input').addEventListener('input', () => {
  autosize();
  if (S.activeId != null && S.client) S.client.typing(S.activeId);
});

// ------------------------------------------------------------------ boot

(async function boot() {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem('xindao.session') || 'null');
  } catch (_) {
    saved = null;
  }
  if (!saved || !saved.token) return showLogin('');
  // sendTimeoutMs 0: while the page is open, unsent messages wait in the outbox (shown as "Sending…") for as
  // long as the connection is down, and go out exactly once when it is back
  const client = new XindaoClient({ storage, sendTimeoutMs: 0, token: saved.token, user: saved.user });
  try {
    await start(client);
  } catch (e) {
    endSession('Could not connect: ' + (e.message || e.code));
  }
})();
