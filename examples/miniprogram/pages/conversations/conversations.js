const { strings, t, errText } = require('../../utils/i18n.js');
const app = getApp();

function title(c) {
  if (c.kind === 'direct') return c.peer ? c.peer.display_name : t('directChat');
  return '# ' + c.name;
}

function preview(m, me) {
  if (!m) return '';
  if (m.state === 'hidden') return '';
  if (m.state === 'recalled') return m.sender_id === me.id ? t('recalledMe') : t('recalled', { name: '' });
  if (m.state === 'removed') return t('removed');
  return (m.sender_id === me.id ? t('you') : '') + (m.kind === 'text' ? m.content : '[' + m.kind + ']');
}

Page({
  data: { s: strings(), items: [], rooms: [], me: {}, meText: '', query: '', results: [], roomName: '', invite: false, state: 'connecting', stateText: '', error: '' },

  onLoad() {
    wx.setNavigationBarTitle({ title: t('chats') });
    const c = app.client;
    const stateText = (st) => (st === 'open' ? '' : t(st === 'closed' ? 'offline' : st));
    this.offs = [
      c.on('state', (s) => this.setData({ state: s.state, stateText: stateText(s.state) })),
      c.on('message', () => this.refreshSoon()),
      c.on('read', () => this.refreshSoon()),
      c.on('synced', () => this.refreshSoon()),
      c.on('member', () => this.refreshSoon()),
      c.on('profile', () => this.refreshSoon()),
      c.on('message_state', () => this.refreshSoon()),
    ];
    this.setData({ state: c.state, stateText: stateText(c.state) });
  },

  onUnload() {
    (this.offs || []).forEach((off) => off());
  },

  onShow() {
    const me = app.client.user || {};
    this.setData({ me, meText: t('me', { name: me.display_name, id: me.id }) });
    this.refresh();
  },

  onPullDownRefresh() {
    this.refresh().then(() => wx.stopPullDownRefresh());
  },

  refreshSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), 200);
  },

  async refresh() {
    try {
      const [convs, rooms] = await Promise.all([app.client.conversations(), app.client.publicRooms({ limit: 30 })]);
      const me = app.client.user || {};
      this.setData({
        items: convs.map((c) => {
          const name = title(c);
          return { id: c.id, kind: c.kind, title: name, avatar: c.peer && c.peer.avatar_url, initial: c.kind === 'room' ? '#' : name.slice(0, 1).toUpperCase(), unread: c.unread, preview: preview(c.last_message, me) };
        }),
        rooms: rooms.filter((r) => !convs.some((c) => c.id === r.id)).map((r) => ({ ...r, membersText: t('members', { n: r.members }) })),
      });
    } catch (e) {
      // offline: the `synced` event after the reconnect refreshes again
    }
  },

  fail(e) {
    const text = errText(e);
    this.setData({ error: text });
    wx.showToast({ title: text, icon: 'none' });
  },

  onQuery(e) {
    this.setData({ query: e.detail.value });
  },

  /** A user id opens the chat; a name (2+ characters) searches display-name prefixes. */
  async search() {
    const q = this.data.query.trim();
    if (!q) return;
    this.setData({ error: '', results: [] });
    if (/^\d+$/.test(q)) return this.chatWith(Number(q));
    if (Array.from(q).length < 2) return this.setData({ error: t('tooShort') });
    try {
      const me = app.client.user || {};
      const users = (await app.client.searchUsers(q)).filter((u) => u.id !== me.id);
      this.setData({ results: users.map((u) => ({ id: u.id, name: u.display_name, avatar: u.avatar_url || '', initial: u.display_name.slice(0, 1) })), error: users.length ? '' : t('searchNone', { q }) });
    } catch (e) {
      this.fail(e);
    }
  },

  openResult(e) {
    this.chatWith(Number(e.currentTarget.dataset.id));
  },

  async chatWith(userId) {
    try {
      const conv = await app.client.openDirect(userId);
      this.setData({ query: '', results: [], error: '' });
      wx.navigateTo({ url: '/pages/chat/chat?id=' + conv.id });
    } catch (e) {
      this.fail(e);
    }
  },

  onRoomName(e) {
    this.setData({ roomName: e.detail.value });
  },
  onInvite(e) {
    this.setData({ invite: !!e.detail.value });
  },

  async createRoom() {
    const name = this.data.roomName.trim();
    if (!name) return;
    try {
      const conv = await app.client.createRoom(name, { visibility: this.data.invite ? 'invite' : 'public' });
      this.setData({ roomName: '', invite: false, error: '' });
      wx.navigateTo({ url: '/pages/chat/chat?id=' + conv.id });
    } catch (e) {
      this.fail(e);
    }
  },

  async joinRoom(e) {
    try {
      const conv = await app.client.joinRoom(Number(e.currentTarget.dataset.id));
      wx.navigateTo({ url: '/pages/chat/chat?id=' + conv.id });
    } catch (err) {
      this.fail(err);
    }
  },

  open(e) {
    wx.navigateTo({ url: '/pages/chat/chat?id=' + e.currentTarget.dataset.id });
  },

  profile() {
    wx.navigateTo({ url: '/pages/profile/profile' });
  },
});
