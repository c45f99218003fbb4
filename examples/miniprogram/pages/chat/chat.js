const { newCmid, checkContent, textLength } = require('../../utils/xindao.js');
const { strings, t, errText } = require('../../utils/i18n.js');
const { isMedia, mediaItem, mediaMethods } = require('./media.js');
const app = getApp();

function pad(n) {
  return (n < 10 ? '0' : '') + n;
}
function time(ts) {
  const d = new Date(ts);
  return pad(d.getHours()) + ':' + pad(d.getMinutes());
}
function dayOf(ts) {
  const d = new Date(ts);
  return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
}
function dayLabel(ts) {
  const today = dayOf(Date.now());
  const day = dayOf(ts);
  if (day === today) return t('today');
  if (day === today - 86400000) return t('yesterday');
  const d = new Date(ts);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate());
}

Page({
  data: { s: strings(), msgs: [], hasMore: false, draft: '', count: '', over: false, typing: '', bottom: '', room: false, voiceMode: false, recording: false, playing: '' },
  ...mediaMethods, // images and voice: media.js

  async onLoad(q) {
    this.id = Number(q.id);
    this.list = []; // confirmed messages, ascending seq
    this.names = {};
    this.urls = {}; // media id -> {url, thumb_url?}: signed download URLs
    const c = app.client;
    // sends left unsent by an earlier run of the app: the SDK re-sends them from storage; shown as sending
    this.pending = c.pendingSends().filter((p) => p.conversation_id === this.id && p.kind === 'text').map((p) => ({ cmid: p.cmid, text: p.content }));
    this.offs = [
      c.on('message', (m) => {
        if (m.conversation_id !== this.id) return;
        this.add([m]);
        this.markRead();
      }),
      c.on('message_state', (ev) => {
        if (ev.conversation_id !== this.id) return;
        const m = this.list.find((x) => x.seq === ev.seq);
        if (m) Object.assign(m, { state: ev.state, content: undefined });
        this.render(false);
      }),
      c.on('send_failed', (f) => {
        this.pending = this.pending.filter((p) => p.cmid !== f.cmid);
        this.render(false);
        wx.showToast({ title: t('notSent', { err: errText(f.error) }), icon: 'none' });
      }),
      c.on('typing', (ev) => {
        if (ev.conversation_id !== this.id) return;
        this.setData({ typing: t('typing', { name: this.names[ev.user_id] || t('someone') }) });
        clearTimeout(this.typingTimer);
        this.typingTimer = setTimeout(() => this.setData({ typing: '' }), 4000);
      }),
    ];
    const convs = await c.conversations().catch(() => []);
    const conv = convs.find((x) => x.id === this.id);
    this.conv = conv;
    if (conv) {
      wx.setNavigationBarTitle({ title: conv.kind === 'direct' ? (conv.peer ? conv.peer.display_name : t('directChat')) : '# ' + conv.name });
      if (conv.peer) this.names[conv.peer.id] = conv.peer.display_name;
      if (conv.kind === 'room') {
        this.setData({ room: true });
        const members = await c.roomMembers(this.id).catch(() => []);
        members.forEach((m) => (this.names[m.user.id] = m.user.display_name));
      }
    }
    try {
      const page = await c.history(this.id, { limit: 30 });
      this.setData({ hasMore: page.has_more });
      this.add(page.messages);
      this.markRead();
    } catch (e) {
      this.render(true); // offline: the pending ones at least; messages arrive with the next sync
    }
  },

  onUnload() {
    (this.offs || []).forEach((off) => off());
    this.stopMedia();
  },

  add(msgs) {
    for (const m of msgs) {
      const old = this.list.find((x) => x.seq === m.seq);
      if (old) {
        if (m.state) Object.assign(old, m);
        continue;
      }
      this.list.push(m);
      this.pending = this.pending.filter((p) => p.cmid !== m.cmid);
    }
    this.list.sort((a, b) => a.seq - b.seq);
    this.render(true);
  },

  render(scroll) {
    const me = app.client.user || {};
    const msgs = [];
    let lastDay = null;
    for (const m of this.list) {
      if (m.state === 'hidden') continue;
      const day = dayOf(m.ts);
      if (day !== lastDay) msgs.push({ key: 'd' + m.seq, day: dayLabel(m.ts) });
      lastDay = day;
      const mine = m.sender_id === me.id;
      const name = this.names[m.sender_id] || t('user', { id: m.sender_id });
      if (m.state) {
        msgs.push({ key: 's' + m.seq, note: m.state === 'removed' ? t('removed') : mine ? t('recalledMe') : t('recalled', { name }) });
        continue;
      }
      const item = { key: 's' + m.seq, seq: m.seq, mine, ts: m.ts, name: this.data.room && !mine ? name : '', time: time(m.ts) };
      if (isMedia(m)) Object.assign(item, mediaItem(m, this.urls));
      else item.text = m.kind === 'text' ? m.content : JSON.stringify(m.content);
      msgs.push(item);
    }
    for (const p of this.pending) msgs.push({ key: p.cmid, mine: true, pending: true, text: p.text });
    this.setData({ msgs, bottom: scroll && msgs.length ? 'm' + msgs[msgs.length - 1].key : this.data.bottom });
    this.fillUrls();
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
    const draft = e.detail.value;
    const max = (app.client.limits && app.client.limits.max_text_chars) || 0;
    const n = textLength(draft);
    // the counter shows near the limit, counted as the server counts (characters, not UTF-16 units)
    this.setData({ draft, count: max && n >= max * 0.8 ? n + ' / ' + max : '', over: max > 0 && n > max });
    app.client.typing(this.id);
  },

  send() {
    const text = this.data.draft;
    if (!text || !text.trim()) return;
    const bad = checkContent('text', text, app.client.limits);
    if (bad) return wx.showToast({ title: errText(bad), icon: 'none' }); // the draft stays
    const cmid = newCmid();
    this.pending.push({ cmid, text });
    this.setData({ draft: '', count: '', over: false });
    this.render(true);
    // While offline the SDK keeps the message in its outbox (and in storage) and sends it, once, on reconnect.
    app.client.send(this.id, text, { cmid }).then(
      (ack) => this.add([ack.message]),
      (e) => {
        this.pending = this.pending.filter((p) => p.cmid !== cmid);
        this.setData({ draft: this.data.draft || text }); // give the text back
        this.render(false);
        wx.showToast({ title: t('notSent', { err: errText(e) }), icon: 'none' });
      },
    );
  },

  /** Long press on a message: recall (own, within the window) or delete for me. */
  onLongPress(e) {
    const seq = Number(e.currentTarget.dataset.seq);
    const m = this.list.find((x) => x.seq === seq);
    if (!m || m.state) return;
    const me = app.client.user || {};
    const hello = app.client.hello || {};
    const windowMs = (hello.recall_window_secs || (hello.limits && hello.limits.recall_window_secs) || 120) * 1000;
    const actions = [];
    if (m.sender_id === me.id && Date.now() - m.ts < windowMs) actions.push(['recall', () => app.client.recall(this.id, seq), 'recalled']);
    actions.push(['hide', () => app.client.hide(this.id, seq), 'hidden']);
    wx.showActionSheet({
      itemList: actions.map((a) => t(a[0])),
      success: async (r) => {
        const [, run, state] = actions[r.tapIndex];
        try {
          await run();
          Object.assign(m, { state, content: undefined });
          this.render(false);
        } catch (err) {
          wx.showToast({ title: errText(err), icon: 'none' });
        }
      },
    });
  },

  leave() {
    wx.showModal({
      content: t('leaveConfirm'),
      success: async (r) => {
        if (!r.confirm) return;
        try {
          await app.client.leaveRoom(this.id);
          wx.navigateBack();
        } catch (e) {
          wx.showToast({ title: errText(e), icon: 'none' });
        }
      },
    });
  },
});
