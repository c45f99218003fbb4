// Profile: WeChat's current flow (the chooseAvatar button and the nickname input), saved with profile_set.
// The chosen avatar is a local temporary file: it is uploaded (wx.uploadFile, multipart, to POST /v1/media)
// and the URL the server answers becomes avatar_url. A server without media uploads keeps the name only.
const config = require('../../config.js');
const { strings, t, errText } = require('../../utils/i18n.js');
const app = getApp();

function upload(filePath) {
  return new Promise((resolve, reject) =>
    wx.uploadFile({
      url: config.SERVER_URL + '/v1/media',
      filePath,
      name: 'file',
      header: { Authorization: 'Bearer ' + app.client.token },
      success(res) {
        let data = res.data;
        try {
          data = typeof data === 'string' ? JSON.parse(data) : data;
        } catch (_) {
          data = null;
        }
        const media = data && data.media;
        const url = media && (media.url || media.avatar_url);
        if (res.statusCode >= 200 && res.statusCode < 300 && url) resolve(url);
        else reject(Object.assign(new Error('upload failed'), { code: (data && data.error && data.error.code) || 'http_' + res.statusCode }));
      },
      fail(err) {
        reject(Object.assign(new Error((err && err.errMsg) || 'upload failed'), { code: 'network' }));
      },
    }),
  );
}

Page({
  data: { s: strings(), name: '', avatar: '', busy: false, error: '' },

  onLoad() {
    wx.setNavigationBarTitle({ title: t('profile') });
    const me = app.client.user || {};
    this.chosen = null;
    this.setData({ name: me.display_name || '', avatar: me.avatar_url || '' });
  },

  onChooseAvatar(e) {
    this.chosen = e.detail.avatarUrl; // a temporary local file
    this.setData({ avatar: this.chosen });
  },

  onName(e) {
    this.setData({ name: e.detail.value });
  },

  async save() {
    const name = this.data.name.trim();
    if (!name) return;
    this.setData({ busy: true, error: '' });
    try {
      const change = { display_name: name };
      if (this.chosen) {
        try {
          change.avatar_url = await upload(this.chosen);
        } catch (e) {
          // no media uploads on this server (404) or the upload failed: keep the name, say what happened
          this.setData({ error: e.code === 'http_404' || e.code === 'not_found' ? t('avatarNeedsMedia') : errText(e) });
        }
      }
      await app.client.setProfile(change);
      wx.setStorageSync('xindao.session', { token: app.client.token, user: app.client.user });
      wx.showToast({ title: t('saved'), icon: 'success' });
    } catch (e) {
      this.setData({ error: errText(e) });
    } finally {
      this.setData({ busy: false });
    }
  },
});
