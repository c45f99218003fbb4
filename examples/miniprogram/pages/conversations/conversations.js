const app = getApp();

const STATE_TEXT = { connecting: 'Connecting…', reconnecting: 'Reconnecting…', closed: 'Offline', open: '' };

function title(c) {
  if (c.kind === 'direct') return c.peer ? c.peer.display_name : 'Direct chat';
  return '# ' + c.name;
}

Page({
  data: { items: [], rooms: [], me: {}, peerId: '', state: 'connecting', stateText: '' },

  onLoad() {
    const c = app.client;
    this.offs = [
      c.on('state', (s) => this.setData({ state: s.state, stateText: STATE_TEXT[s.state] })),
      c.on('message', () => this.refreshSoon()),
      c.on('read', () => this.refreshSoon()),
      c.on('synced', () => this.refreshSoon()),
      c.on('member', () => this.refreshSoon()),
    ];
    this.setData({ me: c.user || {}, state: c.state, stateText: STATE_TEXT[c.state] });
  },

  onUnload() {
    (this.offs || []).forEach((off) => off());
  },

  onShow() {
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
          const m = c.last_message;
          const t = title(c);
          return {
            id: c.id,
            kind: c.kind,
            title: t,
            initial: c.kind === 'room' ? '#' : t.slice(0, 1).toUpperCase(),
            unread: c.unread,
            preview: m ? (m.sender_id === me.id ? 'You: ' : '') + (m.kind === 'text' ? m.content : '[' + m.kind + ']') : '',
          };
        }),
        rooms: rooms.filter((r) => !convs.some((c) => c.id === r.id)),
      });
    } catch (e) {
      // offline: the `synced` event after the reconnect refreshes again
    }
  },

  onPeer(e) {
    this.setData({ peerId: e.detail.value });
  },

  async startChat() {
    try {
      const conv = await app.client.openDirect(Number(this.data.peerId));
      this.setData({ peerId: '' });
      wx.navigateTo({ url: '/pages/chat/chat?id=' + conv.id });
    } catch (e) {
      wx.showToast({ title: e.code || 'error', icon: 'none' });
    }
  },

  async joinRoom(e) {
    try {
      const conv = await app.client.joinRoom(Number(e.currentTarget.dataset.id));
      wx.navigateTo({ url: '/pages/chat/chat?id=' + conv.id });
    } catch (err) {
      wx.showToast({ title: err.code || 'error', icon: 'none' });
    }
  },

  open(e) {
    wx.navigateTo({ url: '/pages/chat/chat?id=' + e.currentTarget.dataset.id });
  },
});
