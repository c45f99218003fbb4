// The live room: Wafer's chat demo behaviour on the unmodified SDK. `people` says who entered or left and how
// many are here; `speak` is a message ({who, word}); the SDK pings, reconnects and re-logs in by itself.
const qcloud = require('wafer2-client-sdk');
const config = require('../../config');

Page({
  data: { me: null, total: 0, status: 'offline', lines: [], draft: '' },

  onLoad() {
    // loginWithCode is enough for a returning user; a first login needs the user's profile (login()).
    qcloud.loginWithCode({
      success: (me) => this.enter(me),
      fail: () => this.setData({ status: 'tap "Log in"' }),
    });
  },

  onLogin() {
    qcloud.login({
      success: (me) => this.enter(me),
      fail: (error) => this.setData({ status: `login failed: ${error.message}` }),
    });
  },

  enter(me) {
    this.setData({ me, status: 'connecting' });
    const tunnel = (this.tunnel = new qcloud.Tunnel(config.tunnelUrl));
    tunnel.on('connect', () => this.setData({ status: 'online' }));
    tunnel.on('reconnecting', () => this.setData({ status: 'reconnecting' }));
    tunnel.on('reconnect', () => this.setData({ status: 'online' }));
    tunnel.on('close', () => this.setData({ status: 'closed' }));
    tunnel.on('error', (error) => this.setData({ status: `error ${error.code}` }));
    tunnel.on('people', ({ total, enter, leave }) => {
      const who = enter || leave;
      this.setData({ total });
      this.add({ system: true, text: `${who.nickName} ${enter ? 'entered' : 'left'} (${total} here)` });
    });
    tunnel.on('speak', ({ who, word }) => {
      this.add({ mine: this.data.me && who.openId === this.data.me.openId, name: who.nickName, avatar: who.avatarUrl, text: word });
    });
    tunnel.open();
  },

  add(line) {
    const lines = this.data.lines.concat([{ id: this.data.lines.length, ...line }]).slice(-200);
    this.setData({ lines, scrollTo: `line-${lines[lines.length - 1].id}` });
  },

  onInput(e) {
    this.setData({ draft: e.detail.value });
  },

  onSend() {
    const word = this.data.draft.trim();
    if (!word || !this.tunnel || !this.tunnel.isActive()) return;
    this.tunnel.emit('speak', { word });
    this.setData({ draft: '' });
  },

  onUnload() {
    if (this.tunnel) this.tunnel.close();
  },
});
