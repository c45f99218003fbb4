const config = require('../../config.js');
const app = getApp();

Page({
  data: { devLogin: config.DEV_LOGIN, name: '', busy: false, error: '' },

  onLoad() {
    if (app.hasSession()) this.enter();
  },

  onName(e) {
    this.setData({ name: e.detail.value });
  },

  async wechatLogin() {
    // wx.login gives a one-time code; the server trades it for a session (code2Session). The WeChat
    // session_key never reaches the client.
    await this.run(() => app.client.loginWechat());
  },

  async devLogin() {
    await this.run(() => app.client.loginDev(this.data.name.trim()));
  },

  async run(login) {
    this.setData({ busy: true, error: '' });
    try {
      const session = await login();
      await app.startSession(session);
      this.enter();
    } catch (e) {
      this.setData({ error: (e && e.code ? e.code + ': ' : '') + ((e && e.message) || 'login failed') });
    } finally {
      this.setData({ busy: false });
    }
  },

  async enter() {
    try {
      await app.client.connect();
    } catch (e) {
      return; // session_ended sends us back here
    }
    wx.redirectTo({ url: '/pages/conversations/conversations' });
  },
});
