const config = require('../../config.js');
const { strings, t, errText } = require('../../utils/i18n.js');
const app = getApp();

Page({
  data: { s: strings(), devLogin: config.DEV_LOGIN, wechat: config.WECHAT_LOGIN, name: '', busy: false, error: '' },

  onLoad() {
    wx.setNavigationBarTitle({ title: t('loginTitle') });
    if (app.hasSession()) this.enter();
  },

  onName(e) {
    this.setData({ name: e.detail.value });
  },

  async wechatLogin() {
    // wx.login gives a one-time code; the server trades it for a session (code2Session). The WeChat
    // session_key never reaches the client.
    await this.run(() => app.client.loginWechat(), 'wechat');
  },

  async devLogin() {
    await this.run(() => app.client.loginDev(this.data.name.trim()), 'dev');
  },

  async run(login, kind) {
    this.setData({ busy: true, error: '' });
    try {
      const session = await login();
      await app.startSession(session);
      this.enter();
    } catch (e) {
      // not_found from a login endpoint: that login is not enabled on this server (say so, hide the button)
      if (e && e.code === 'not_found' && kind === 'wechat') this.setData({ wechat: false, error: t('wechatNotConfigured') });
      else if (e && e.code === 'not_found' && kind === 'dev') this.setData({ error: t('devDisabled') });
      else this.setData({ error: t('loginFailed', { err: errText(e) }) });
    } finally {
      this.setData({ busy: false });
    }
  },

  async enter() {
    this.setData({ busy: true, error: '' });
    try {
      await app.client.connect({ timeoutMs: config.CONNECT_TIMEOUT_MS });
    } catch (e) {
      // unreachable: say so (the client keeps trying; tapping a login button tries again); session_ended: log in
      if (e && e.code !== 'session_ended' && e.code !== 'closed') this.setData({ error: errText(e) });
      this.setData({ busy: false });
      return;
    }
    this.setData({ busy: false });
    wx.redirectTo({ url: '/pages/conversations/conversations' });
  },
});
