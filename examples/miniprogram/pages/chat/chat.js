const { newCmid } = require('../../utils/xindao.js');
const app = getApp();

function pad(n) {
  return (n < 10 ? '0' : '') + n;
}
function time(ts) {
  const d = new Date(ts);
  return pad(d.getHours()) + ':' + pad(d.getMinutes());
}

Page({
  data: { msgs: [], hasMore: false, draft: '', typing: '', bottom: '' },

  async onLoad(q) {
    this.id = Number(q.id);
    this.list = []; // confirmed messages, ascending seq
    this.pending = []; // {cmid, text}
    this.names = {};
    const c = app.client;
    this.offs = [
      c.on('message', (m) => {
        if (m.conversation_id !== this.id) return;
        this.add([m]);
        this.markRead();
      }),
      c.on('typing', (t) => {
        if (t.conversation_id !== this.id) return;
        this.setData({ typing: (this.names[t.user_id] || 'Someone') + ' is typing…' });
        clearTimeout(this.typingTimer);
        this.typingTimer = setTimeout(() => this.setData({ typing: '' }), 4000);
      }),
    ];
    const convs = await c.conversations().catch(() => []);
    const conv = convs.find((x) => x.id === this.id);
    if (conv) {
      wx.setNavigationBarTitle({ title: conv.kind === 'direct' ? (conv.peer ? conv.peer.display_name : 'Chat') : '# ' + conv.name });
      if (conv.peer) this.names[conv.peer.id] = conv.peer.display_name;
      if (conv.kind === 'room') {
        const members = await c.roomMembers(this.id).catch(() => []);
        members.forEach((m) => (this.names[m.user.id] = m.user.display_name));
      }
    }
    const page = await c.history(this.id, { limit: 30 });
    this.setData({ hasMore: page.has_more });
    this.add(page.messages);
    this.markRead();
  },

  onUnload() {
    (this.offs || []).forEach((off) => off());
  },

  add(msgs) {
    for (const m of msgs) {
      if (this.list.some((x) => x.seq === m.seq)) continue;
      this.list.push(m);
      this.pending = this.pending.filter((p) => p.cmid !== m.cmid);
    }
    this.list.sort((a, b) => a.seq - b.seq);
    this.render(true);
  },

  render(scroll) {
    const me = app.client.user || {};
    const room = Object.keys(this.names).length > 1;
    const msgs = this.list.map((m) => ({
      key: 's' + m.seq,
      mine: m.sender_id === me.id,
      name: room && m.sender_id !== me.id ? this.names[m.sender_id] || 'user ' + m.sender_id : '',
      text: m.kind === 'text' ? m.content : JSON.stringify(m.content),
      time: time(m.ts),
    }));
    for (const p of this.pending) msgs.push({ key: p.cmid, mine: true, pending: true, text: p.text });
    this.setData({ msgs, bottom: scroll && msgs.length ? 'm' + msgs[msgs.length - 1].key : this.data.bottom });
  },

  async older() {
    if (!this.data.hasMore || this.loading || !this.list.length) return;
    this.loading = true;
    try {
      const page = await app.client.history(this.id, { beforeSeq: this.list[0].seq, limit: 30 });
      this.list = page.messages.concat(this.list);
      this.setData({ hasMore: page.has_more });
      this.render(false);
    } catch (e) {
      /* offline */
    }
    this.loading = false;
  },

  markRead() {
    const last = this.list[this.list.length - 1];
    if (last) app.client.markRead(this.id, last.seq).catch(() => {});
  },

  onInput(e) {
    this.setData({ draft: e.detail.value });
    app.client.typing(this.id);
  },

  send() {
    const text = this.data.draft;
    if (!text || !text.trim()) return;
    const cmid = newCmid();
    this.pending.push({ cmid, text });
    this.setData({ draft: '' });
    this.render(true);
    // While offline the SDK keeps the message in its outbox and sends it (same cmid: exactly once) on reconnect.
    app.client.send(this.id, text, { cmid }).then(
      (ack) => this.add([ack.message]),
      (e) => {
        this.pending = this.pending.filter((p) => p.cmid !== cmid);
        this.render(false);
        wx.showToast({ title: 'Not sent: ' + e.code, icon: 'none' });
      },
    );
  },
});
