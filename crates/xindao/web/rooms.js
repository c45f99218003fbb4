// Rooms: the public list (join / open), creating a room (public or invite-only), leaving the open one.
import { t } from '/i18n.js';
import { $, h, S, actionError, ok } from '/ui.js';
import { openConversation, closeConversation } from '/chat.js';

export async function refreshPublicRooms() {
  try {
    S.publicRooms = await S.client.publicRooms({ limit: 50 });
  } catch (_) {
    return;
  }
  renderPublicRooms();
}

export function renderPublicRooms() {
  const ul = $('public-rooms');
  ul.replaceChildren();
  for (const r of S.publicRooms) {
    const member = S.convs.has(r.id);
    ul.append(
      h(
        'li',
        { class: 'room-row', dataset: { id: String(r.id) } },
        h('span', { class: 'room-name' }, '# ' + r.name),
        h('span', { class: 'muted small' }, t('members', { n: r.members })),
        member ? h('button', { class: 'ghost small', onclick: () => openConversation(r.id) }, t('open')) : h('button', { class: 'secondary small join', onclick: () => joinRoom(r.id) }, t('join')),
      ),
    );
  }
  if (!S.publicRooms.length) ul.append(h('li', { class: 'muted small pad' }, t('noPublicRooms')));
}
$('refresh-rooms').addEventListener('click', () => refreshPublicRooms());

async function joinRoom(id) {
  try {
    const c = await S.client.joinRoom(id);
    S.convs.set(c.id, c);
    ok();
    await refreshPublicRooms();
    openConversation(c.id);
  } catch (e) {
    actionError(e);
  }
}

$('new-room').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = $('new-room-input').value.trim();
  if (!name) return;
  try {
    const c = await S.client.createRoom(name, { visibility: $('new-room-invite').checked ? 'invite' : 'public' });
    S.convs.set(c.id, c);
    $('new-room-input').value = '';
    $('new-room-invite').checked = false;
    ok();
    S.hooks.renderConversations();
    openConversation(c.id);
    refreshPublicRooms();
  } catch (e) {
    actionError(e);
  }
});

$('leave-room').addEventListener('click', async () => {
  const id = S.activeId;
  if (!id) return;
  try {
    await S.client.leaveRoom(id);
    S.convs.delete(id);
    S.msgs.delete(id);
    ok();
    closeConversation();
    refreshPublicRooms();
  } catch (e) {
    actionError(e);
  }
});
