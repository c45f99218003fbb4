// The open conversation: history, day separators and grouped times, "X joined" lines, tombstones, the message
// menu (recall / delete for me / remove), read marks and typing. The composer is in composer.js, the bubbles
// of images, voice and files in media.js.
import { t, errText, fmtDay, fmtTime, sameDay } from '/i18n.js';
import { $, h, S, nameOf, convTitle, actionError, ok } from '/ui.js';
import { loadMembers, closeMembers } from '/people.js';
import { sendText, updateComposer } from '/composer.js';
import { isMedia, mediaBubble, fillUrls, sendMediaFile } from '/media.js';

const GROUP_GAP_MS = 5 * 60 * 1000; // a time line when 5 minutes passed since the previous message
const RETRYABLE = new Set(['timeout', 'disconnected', 'not_connected', 'closed', 'network', 'unavailable', 'internal', 'rate_limited', 'outbox_full', 'unreachable']);

export function bucket(id) {
  let b = S.msgs.get(id);
  if (!b) S.msgs.set(id, (b = { list: [], seqs: new Set(), hasMore: true, loaded: false, loading: false }));
  return b;
}

export function addMessages(id, msgs) {
  const b = bucket(id);
  let added = false;
  for (const m of msgs) {
    if (b.seqs.has(m.seq)) {
      // a tombstone replaces the message it stands for
      if (m.state) {
        const i = b.list.findIndex((x) => x.seq === m.seq);
        if (i >= 0 && !b.list[i].state) b.list[i] = m;
      }
      continue;
    }
    b.seqs.add(m.seq);
    b.list.push(m);
    added = true;
  }
  if (added) b.list.sort((x, y) => x.seq - y.seq);
  return added;
}

/** A message was recalled / removed / hidden (a `message_state` push or our own action). */
export function applyState(ev) {
  const b = S.msgs.get(ev.conversation_id);
  const m = b && b.list.find((x) => x.seq === ev.seq);
  if (m) {
    m.state = ev.state;
    delete m.content;
    if (!m.by) m.by = ev.by;
  }
  const c = S.convs.get(ev.conversation_id);
  if (c && c.last_message && c.last_message.seq === ev.seq) c.last_message = { ...c.last_message, state: ev.state, content: undefined };
  S.hooks.renderConversations();
  if (ev.conversation_id === S.activeId) renderMessages(false);
}

export async function openConversation(id) {
  flushReadMark(id);
  S.activeId = id;
  try {
    localStorage.setItem('xindao.active.' + S.me.id, String(id));
  } catch (_) {
    /* private mode */
  }
  closeMenu();
  closeMembers();
  document.body.classList.add('in-chat');
  $('empty').hidden = true;
  $('pane').hidden = false;
  S.hooks.renderConversations();
  renderHeader();
  renderMessages(true);
  await loadHistory(id);
  loadMembers(id);
  markReadSoon();
  updateComposer();
  $('composer-input').focus();
}

/** The latest page of the conversation, once (again after a reconnect if it could not load offline). */
export async function loadHistory(id) {
  const b = bucket(id);
  if (b.loaded || b.loading) return;
  b.loading = true;
  try {
    const r = await S.client.history(id, { limit: 50 });
    addMessages(id, r.messages);
    b.hasMore = r.has_more;
    b.loaded = true;
  } catch (e) {
    if (S.client && S.client.state === 'open') actionError(e); // offline: loaded on the next `synced`
  } finally {
    b.loading = false;
  }
  if (S.activeId === id) renderMessages(true);
}

export function closeConversation() {
  flushReadMark(null);
  S.activeId = null;
  try {
    localStorage.removeItem('xindao.active.' + S.me.id);
  } catch (_) {
    /* private mode */
  }
  closeMembers();
  document.body.classList.remove('in-chat');
  $('pane').hidden = true;
  $('empty').hidden = false;
  S.hooks.renderConversations();
}
$('back').addEventListener('click', () => closeConversation());

export function renderHeader() {
  const c = S.convs.get(S.activeId);
  if (!c) return;
  $('chat-title').textContent = convTitle(c);
  const live = S.client && S.client.state === 'open';
  let sub = '';
  let online = 'false';
  if (c.kind === 'direct' && c.peer) {
    // while we are offline we do not know: say so rather than show a stale "online"
    online = live ? (S.presence.get(c.peer.id) ? 'true' : 'false') : 'unknown';
    sub = (online === 'unknown' ? t('presenceUnknown') : t(online === 'true' ? 'online' : 'offline')) + ' · ' + t('userId', { id: c.peer.id });
  } else if (c.kind === 'room') {
    sub = (c.memberCount ? t('members', { n: c.memberCount }) + ' · ' : '') + t(c.visibility === 'invite' ? 'inviteRoom' : 'publicRoom');
  }
  $('chat-sub').textContent = sub;
  $('chat-sub').dataset.online = online;
  $('leave-room').hidden = c.kind !== 'room';
  $('members-button').hidden = c.kind !== 'room';
}

function contentText(m) {
  return m.kind === 'text' ? String(m.content) : JSON.stringify(m.content);
}

function recallWindowMs() {
  const hello = (S.client && S.client.hello) || {};
  const secs = hello.recall_window_secs || (hello.limits && hello.limits.recall_window_secs) || 120;
  return secs * 1000;
}

function systemText(s) {
  return t('sys.' + s.action, { who: nameOf(s.user_id), by: nameOf(s.by) });
}

function tombstoneText(m) {
  if (m.state === 'removed') return t('sys.removedMsg');
  return m.sender_id === S.me.id ? t('sys.recalledMe') : t('sys.recalled', { who: nameOf(m.sender_id) });
}

export function renderMessages(stickToBottom) {
  const id = S.activeId;
  if (id == null) return;
  const box = $('messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  const b = bucket(id);
  const c = S.convs.get(id);
  const list = $('message-list');
  list.replaceChildren();
  const reads = S.peerRead.get(id) || new Map();
  let maxPeerRead = 0; // read mark: the last of my messages that some other member has read
  for (const v of reads.values()) maxPeerRead = Math.max(maxPeerRead, v);
  let lastMineRead = null;
  for (const m of b.list) if (m.sender_id === S.me.id && m.seq <= maxPeerRead && !m.state) lastMineRead = m.seq;
  const sys = (S.system.get(id) || []).filter((s) => !b.list.length || s.afterSeq >= b.list[0].seq - 1);
  let si = 0;
  let lastTs = 0;
  let prevSender = null;
  const stamp = (ts) => {
    if (!lastTs || !sameDay(lastTs, ts)) list.append(h('li', { class: 'day small' }, fmtDay(ts)), h('li', { class: 'time small' }, fmtTime(ts)));
    else if (ts - lastTs > GROUP_GAP_MS) list.append(h('li', { class: 'time small' }, fmtTime(ts)));
    lastTs = ts;
  };
  const flushSystem = (beforeSeq) => {
    while (si < sys.length && (beforeSeq == null || sys[si].afterSeq < beforeSeq)) {
      const s = sys[si++];
      stamp(s.ts);
      list.append(h('li', { class: 'note system small', dataset: { action: s.action } }, systemText(s)));
      prevSender = null;
    }
  };
  for (const m of b.list) {
    flushSystem(m.seq);
    if (m.state === 'hidden') continue;
    stamp(m.ts);
    if (m.state) {
      list.append(h('li', { class: 'note tombstone small', dataset: { seq: String(m.seq), state: m.state } }, tombstoneText(m)));
      prevSender = null;
      continue;
    }
    const mine = m.sender_id === S.me.id;
    const showName = !mine && c && c.kind === 'room' && prevSender !== m.sender_id;
    prevSender = m.sender_id;
    list.append(
      h(
        'li',
        { class: 'msg ' + (mine ? 'mine' : 'theirs'), dataset: { seq: String(m.seq), sender: String(m.sender_id), ...(m.cmid ? { cmid: m.cmid } : {}) } },
        showName ? h('div', { class: 'sender small' }, nameOf(m.sender_id)) : null,
        h(
          'div',
          { class: 'row' },
          isMedia(m) ? mediaBubble(m) : h('div', { class: 'bubble', title: new Date(m.ts).toLocaleString() }, h('span', { class: 'text' }, contentText(m))),
          h('button', { class: 'ghost small menu-btn', type: 'button', 'aria-label': t('menu.aria'), onclick: (ev) => openMenu(ev, m) }, '⋯'),
        ),
        mine && m.seq === lastMineRead ? h('div', { class: 'meta small' }, h('span', { class: 'read-mark' }, t('read'))) : null,
      ),
    );
  }
  flushSystem(null);
  if (S.menuFor != null) {
    const m = b.list.find((x) => x.seq === S.menuFor && !x.state);
    const li = m && list.querySelector(`li.msg[data-seq="${m.seq}"]`);
    if (li) li.append(menuFor(m));
    else S.menuFor = null;
  }
  for (const [cmid, p] of S.pending) {
    if (p.conversation_id !== id || b.list.some((m) => m.cmid === cmid && m.sender_id === S.me.id)) continue;
    list.append(
      h(
        'li',
        { class: 'msg mine pending' + (p.error ? ' failed' : ''), dataset: { cmid } },
        h('div', { class: 'row' }, h('div', { class: 'bubble' }, h('span', { class: 'text' }, p.content))),
        h(
          'div',
          { class: 'meta small' },
          p.error ? t('notSent', { err: errText(p.error) }) + ' ' : t('sending'),
          p.error && RETRYABLE.has(p.error.code) ? h('button', { class: 'ghost small', onclick: () => (p.file ? sendMediaFile(id, p.file, cmid) : sendText(id, p.content, cmid)) }, t('retry')) : null,
        ),
      ),
    );
  }
  fillUrls(list);
  $('older').textContent = b.loaded ? (b.hasMore ? t('older') : t('beginning')) : t('loading');
  if (stickToBottom || atBottom) box.scrollTop = box.scrollHeight;
}

// ------------------------------------------------------------------ the message menu

function closeMenu() {
  S.menuFor = null;
  const m = document.querySelector('.msg-menu');
  if (m) m.remove();
}
document.addEventListener('click', (ev) => {
  if (!ev.target.closest('.msg-menu') && !ev.target.closest('.menu-btn')) closeMenu();
});

function openMenu(ev, m) {
  ev.stopPropagation();
  closeMenu();
  S.menuFor = m.seq; // kept across re-renders (a push or a read mark re-renders the list)
  ev.target.closest('li.msg').append(menuFor(m));
}

function menuFor(m) {
  const c = S.convs.get(m.conversation_id);
  const mine = m.sender_id === S.me.id;
  const items = [];
  if (mine && Date.now() - m.ts < recallWindowMs()) items.push(['recall', () => S.client.recall(m.conversation_id, m.seq), 'recalled']);
  items.push(['hide', () => S.client.hide(m.conversation_id, m.seq), 'hidden']);
  if (c && c.kind === 'room' && c.owner_id === S.me.id && !mine) items.push(['remove', () => S.client.removeMessage(m.conversation_id, m.seq), 'removed']);
  const menu = h(
    'ul',
    { class: 'msg-menu', role: 'menu' },
    items.map(([key, run, state]) =>
      h(
        'li',
        {},
        h(
          'button',
          {
            class: 'ghost small',
            role: 'menuitem',
            dataset: { action: key },
            onclick: async () => {
              closeMenu();
              try {
                await run();
                ok();
                applyState({ conversation_id: m.conversation_id, seq: m.seq, state, by: S.me.id });
              } catch (e) {
                actionError(e);
              }
            },
          },
          t('menu.' + key),
        ),
      ),
    ),
  );
  return menu;
}

// ------------------------------------------------------------------ scrolling back

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

export function renderTyping() {
  const el = $('typing');
  const now = Date.now();
  const typing = S.typing.get(S.activeId);
  const names = [];
  if (typing) for (const [uid, until] of typing) if (until > now) names.push(nameOf(uid));
  el.textContent = names.length ? t(names.length > 1 ? 'typingMany' : 'typingOne', { names: names.join(', ') }) : '';
}
setInterval(renderTyping, 1000);

// ------------------------------------------------------------------ read marks

export function markReadSoon() {
  clearTimeout(S.readTimer);
  const id = S.activeId; // the conversation on screen now: switching away before the timer must not lose it
  S.readPendingId = id;
  S.readTimer = setTimeout(() => markReadNow(id), 150);
}

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
    S.hooks.renderConversations();
    S.client.markRead(id, seq).catch(() => {
      /* retried on the next message or visit */
    });
  }
}
document.addEventListener('visibilitychange', () => document.visibilityState === 'visible' && markReadSoon());
