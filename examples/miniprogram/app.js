// The SDK's CommonJS build, copied here by sdk/js/scripts/build.mjs (utils/xindao.js: do not edit).
const { XindaoClient } = require('./utils/xindao.js');
const config = require('./config.js');
const { t, errText } = require('./utils/i18n.js');

const storage = {
  getItem: (k) => wx.getStorageSync(k) || null,
  setItem: (k, v) => wx.setStorageSync(k, v),
};

App({
  client: null,

  onLaunch() {
    const saved = wx.getStorageSync('xindao.session') || null;
    // One client for the whole app: one socket (the platform allows 5), reconnect, outbox, resync and the
    // onAppHide/onAppShow handling all live in it. `storage` keeps the delivery cursors and the outbox (unsent
    // messages are re-sent, once, after the app is killed and started again).
    this.client = new XindaoClient({ url: config.SERVER_URL, token: saved && saved.token, user: saved && saved.user, storage });
    this.client.on('session_ended', (ev) => {
      wx.removeStorageSync('xindao.session');
      // 4003: banned through the server API; otherwise the session ended (logout elsewhere, expiry)
      wx.showToast({ title: ev && ev.code === 4003 ? errText({ code: 'banned' }) : t('sessionEnded'), icon: 'none' });
      wx.reLaunch({ url: '/pages/login/login' });
    });
    this.client.on('state', (s) => {
      // the navigation bar shows the connection state
      if (s.state === 'reconnecting') wx.showNavigationBarLoading && wx.showNavigationBarLoading();
      if (s.state === 'open') wx.hideNavigationBarLoading && wx.hideNavigationBarLoading();
    });
  },

  /** Save the session and connect; called by the login page. Rejects with `unreachable` after `timeoutMs`
   * (the client keeps trying): the login page never waits for ever. */
  async startSession(session, timeoutMs = config.CONNECT_TIMEOUT_MS) {
    wx.setStorageSync('xindao.session', { token: session.token, user: session.user });
    await this.client.connect({ timeoutMs });
  },

  hasSession() {
    return !!this.client.token;
  },
});
