// People: your profile (name + avatar URL), finding people by name (user_search) or id, contacts, and a
// room's member list with add/remove for its owner. Servers without the profile/search/contacts ops answer
// `unknown_op`: the page then falls back to ids and names it already knows, and hides the contacts list.
import { t, errText } from '/i18n.js';
import { $, h, S, rememberUser, nameOf, avatarEl, safeAvatar, actionError, ok } from '/ui.js';

// ------------------------------------------------------------------ profile

export function renderMe() {
  if (!S.me) return;
  $('me-name').textContent = S.me.display_name;
  $('me-id').textContent = t('userId', { id: S.me.id });
  $('me-avatar').replaceWith(Object.assign(avatarEl(S.me), { id: 'me-avatar' }));
}

$('me-edit').addEventListener('click', () => {
  const d = $('profile');
  $('profile-name').value = S.me.display_name;
  $('profile-avatar').value = S.me.avatar_url || '';
  $('profile-error').textContent = '';
  d.hidden = false;
  $('profile-name').focus();
});
$('profile-cancel').addEventListener('click', () => ($('profile').hidden = true));

$('profile-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = $('profile-name').value.trim();
  const avatar = $('profile-avatar').value.trim();
  if (avatar && !safeAvatar(avatar)) {
    $('profile-error').textContent = t('profile.badAvatar');
    return;
  }
  const change = {};
  if (name && name !== S.me.display_name) change.display_name = name;
  if (avatar !== (S.me.avatar_url || '')) change.avatar_url = avatar;
  try {
    if (Object.keys(change).length) {
      const u = await S.client.setProfile(change);
      S.me = { ...S.me, ...u };
      rememberUser(S.me);
      saveSessionUser();
    }
    $('profile').hidden = true;
    renderMe();
    ok();
  } catch (e) {
    $('profile-error').textContent = errText(e);
  }
});

function saveSessionUser() {
  try {
    const saved = JSON.parse(localStorage.getItem('xindao.session') || 'null');
    if (saved) localStorage.setItem('xindao.session', JSON.stringify({ ...saved, user: S.me }));
  } catch (_) {
    /* the name shows again after the next hello */
  }
}

/** A `profile` push: a contact (or we, elsewhere) changed name or avatar. */
export function onProfile(ev) {
  const u = ev && ev.user;
  if (!u) return;
  rememberUser(u);
  if (S.me && u.id === S.me.id) {
    S.me = { ...S.me, ...u };
    saveSessionUser();
    renderMe();
  }
  for (const c of S.convs.values()) if (c.peer && c.peer.id === u.id) c.peer = { ...c.peer, ...u };
  if (S.contacts) S.contacts = S.contacts.map((x) => (x.id === u.id ? { ...x, ...u } : x));
  S.hooks.renderAll();
}

// ------------------------------------------------------------------ finding people

/** Users whose name starts with `q`: the server's search, else the people this page already knows. */
async function findPeople(q) {
  try {
    const users = await S.client.searchUsers(q);
    users.forEach(rememberUser);
    return users.filter((u) => u.id !== S.me.id);
  } catch (e) {
    if (e.code !== 'unknown_op') throw e;
    const lower = q.toLowerCase();
    return [...S.users.values()].filter((u) => u.id !== S.me.id && u.display_name.toLowerCase().startsWith(lower));
  }
}

export async function startDirect(userId) {
  try {
    const c = await S.client.openDirect(userId);
    S.convs.set(c.id, c);
    if (c.peer) rememberUser(c.peer);
    $('new-chat-input').value = '';
    $('search-results').replaceChildren();
    ok();
    S.hooks.renderConversations();
    S.hooks.openConversation(c.id);
    S.hooks.refreshConversations();
    refreshContacts();
  } catch (e) {
    actionError(e);
  }
}

$('new-chat').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const v = $('new-chat-input').value.trim();
  const out = $('search-results');
  out.replaceChildren();
  if (!v) return;
  if (/^\d+$/.test(v)) return startDirect(Number(v));
  if (Array.from(v).length < 2) return actionError(null, t('newChat.tooShort'));
  let users;
  try {
    users = await findPeople(v);
  } catch (e) {
    return actionError(e);
  }
  ok();
  if (!users.length) return actionError(null, t('newChat.none', { q: v }));
  for (const u of users) {
    out.append(
      h(
        'li',
        { class: 'person', dataset: { id: String(u.id) } },
        avatarEl(u, { small: true }),
        h('span', { class: 'person-name' }, u.display_name),
        h('span', { class: 'muted small' }, '#' + u.id),
        h('button', { class: 'primary small', type: 'button', onclick: () => startDirect(u.id) }, t('newChat.chat')),
      ),
    );
  }
});

// ------------------------------------------------------------------ contacts

export async function refreshContacts() {
  try {
    const r = await S.client.contacts({ limit: 100 });
    r.users.forEach(rememberUser);
    S.contacts = r.users;
  } catch (e) {
    if (e.code === 'unknown_op') S.contacts = null;
    else return; // offline: refreshed on the next sync
  }
  renderContacts();
}

export function renderContacts() {
  $('contacts-section').hidden = S.contacts == null;
  const ul = $('contacts');
  ul.replaceChildren();
  for (const u of S.contacts || []) {
    ul.append(h('li', { class: 'person clickable', dataset: { id: String(u.id) }, onclick: () => startDirect(u.id) }, avatarEl(u, { small: true }), h('span', { class: 'person-name' }, nameOf(u.id))));
  }
  if (S.contacts && !S.contacts.length) ul.append(h('li', { class: 'muted small pad' }, t('noContacts')));
}

// ------------------------------------------------------------------ room members

export async function loadMembers(id) {
  const c = S.convs.get(id);
  if (!c) return;
  try {
    // room_members also tells where each member has read up to (read marks)
    const members = await S.client.roomMembers(id);
    const reads = S.peerRead.get(id) || new Map();
    for (const m of members) {
      rememberUser(m.user);
      if (m.user.id !== S.me.id) reads.set(m.user.id, Math.max(reads.get(m.user.id) || 0, m.read_seq));
      S.presence.set(m.user.id, m.online);
    }
    S.peerRead.set(id, reads);
    S.members.set(id, members);
    c.memberCount = members.length;
    if (S.activeId === id) {
      S.hooks.renderHeader();
      S.hooks.renderMessages(false);
      if (!$('members').hidden) renderMembers();
    }
  } catch (_) {
    /* read marks then come from `read` events */
  }
}

export function closeMembers() {
  $('members').hidden = true;
}

$('members-button').addEventListener('click', () => {
  const panel = $('members');
  panel.hidden = !panel.hidden;
  if (!panel.hidden) {
    renderMembers();
    loadMembers(S.activeId);
  }
});
$('members-close').addEventListener('click', closeMembers);

function renderMembers() {
  const id = S.activeId;
  const c = S.convs.get(id);
  const owner = c && c.owner_id === S.me.id;
  $('members-add').hidden = !owner && !(c && c.visibility === 'public');
  const ul = $('member-list');
  ul.replaceChildren();
  for (const m of S.members.get(id) || []) {
    ul.append(
      h(
        'li',
        { class: 'person', dataset: { id: String(m.user.id) } },
        avatarEl(S.users.get(m.user.id) || m.user, { small: true }),
        h('span', { class: 'person-name' }, nameOf(m.user.id)),
        m.role === 'owner' ? h('span', { class: 'tag small' }, t('members.owner')) : null,
        owner && m.user.id !== S.me.id ? h('button', { class: 'ghost small remove', type: 'button', onclick: () => removeMember(id, m.user.id) }, t('members.remove')) : null,
      ),
    );
  }
}

async function removeMember(id, userId) {
  try {
    await S.client.removeFromRoom(id, userId);
    ok();
    await loadMembers(id);
  } catch (e) {
    actionError(e);
  }
}

$('members-add').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const id = S.activeId;
  const v = $('members-add-input').value.trim();
  if (!v || id == null) return;
  try {
    let userId = /^\d+$/.test(v) ? Number(v) : null;
    if (userId == null) {
      const users = await findPeople(v);
      if (!users.length) return actionError(null, t('newChat.none', { q: v }));
      userId = users[0].id;
    }
    await S.client.addToRoom(id, userId);
    $('members-add-input').value = '';
    ok();
    await loadMembers(id);
  } catch (e) {
    actionError(e);
  }
});
