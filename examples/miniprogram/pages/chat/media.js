// Images and voice in the chat page: choose an image (wx.chooseMedia) or hold the voice button to record
// (RecorderManager, AAC), upload it with the SDK (wx.uploadFile, multipart) and send it; show image bubbles
// (tap: wx.previewImage) and voice bubbles with their duration (tap: play with an InnerAudioContext).
// Download URLs are signed and expire: the SDK's mediaUrl asks for all of a render's media at once and caches
// them until they expire. These are mixed into the page (`Object.assign(page, mediaMethods)`).
const { newCmid } = require('../../utils/xindao.js');
const { t, errText } = require('../../utils/i18n.js');

// the app's one client, looked up when used (a module is evaluated once, whatever page loads it)
const client = () => getApp().client;
const THUMB_MAX_RPX = 320; // an image bubble's longest side
const VOICE_MIN_MS = 1000; // shorter recordings are a slip of the finger, not a message

function isMedia(m) {
  return (m.kind === 'image' || m.kind === 'voice' || m.kind === 'file') && m.content && typeof m.content.media_id === 'string';
}

/** The bubble fields of a media message for the WXML (URLs from `urls`, filled in when known). */
function mediaItem(m, urls) {
  const c = m.content;
  const u = urls[c.media_id] || {};
  const item = { kind: m.kind, mediaId: c.media_id };
  if (m.kind === 'image') {
    const w = c.width || THUMB_MAX_RPX;
    const h = c.height || THUMB_MAX_RPX;
    const scale = Math.min(1, THUMB_MAX_RPX / Math.max(w, h));
    Object.assign(item, { src: u.thumb_url || u.url || '', w: Math.max(80, Math.round(w * scale)), h: Math.max(80, Math.round(h * scale)) });
  } else if (m.kind === 'voice') {
    const secs = Math.max(1, Math.round((c.duration_ms || 0) / 1000));
    // longer recordings make wider bubbles, as in WeChat
    Object.assign(item, { secs, duration: secs + '″', width: Math.min(420, 140 + secs * 8) });
  } else {
    Object.assign(item, { fileName: c.name || t('file'), text: '[' + t('file') + '] ' + (c.name || '') });
  }
  return item;
}

const mediaMethods = {
  /** After a render: fetch the URLs of the media on screen not known yet, then render again. */
  fillUrls() {
    this.urls = this.urls || {};
    const want = this.list.filter((m) => !m.state && isMedia(m) && m.kind !== 'file' && !this.urls[m.content.media_id]).map((m) => m.content.media_id);
    const fresh = want.filter((id) => !(this.asked || (this.asked = new Set())).has(id));
    if (!fresh.length) return;
    fresh.forEach((id) => this.asked.add(id));
    client().mediaUrl(fresh).then(
      (urls) => {
        Object.assign(this.urls, urls);
        this.render(false);
      },
      () => fresh.forEach((id) => this.asked.delete(id)), // offline: asked again on the next render
    );
  },

  chooseImage() {
    wx.chooseMedia({
      count: 1,
      mediaType: ['image'],
      sourceType: ['album', 'camera'],
      sizeType: ['compressed'],
      success: (r) => {
        const file = r.tempFiles && r.tempFiles[0];
        if (file) this.sendMediaPath('image', file.tempFilePath);
      },
    });
  },

  /** Upload and send a temp file; a pending bubble says "uploading" until the ack. */
  sendMediaPath(kind, path) {
    const cmid = newCmid();
    this.pending.push({ cmid, text: t('uploading', { kind: t(kind) }) });
    this.render(true);
    const send = kind === 'image' ? client().sendImage : client().sendVoice;
    return send.call(client(), this.id, path, { cmid }).then(
      (ack) => this.add([ack.message]),
      (e) => {
        this.pending = this.pending.filter((p) => p.cmid !== cmid);
        this.render(false);
        wx.showToast({ title: t('notSent', { err: errText(e) }), icon: 'none' });
      },
    );
  },

  toggleVoice() {
    this.setData({ voiceMode: !this.data.voiceMode });
  },

  recorder() {
    if (this.rec) return this.rec;
    const rec = wx.getRecorderManager();
    rec.onStop((res) => {
      this.setData({ recording: false });
      if (this.recordCancelled) return;
      if (!res || !res.tempFilePath || (res.duration || 0) < VOICE_MIN_MS) {
        wx.showToast({ title: t('voiceTooShort'), icon: 'none' });
        return;
      }
      this.sendMediaPath('voice', res.tempFilePath);
    });
    rec.onError((err) => {
      this.setData({ recording: false });
      wx.showToast({ title: t('recordFailed', { err: (err && err.errMsg) || '' }), icon: 'none' });
    });
    this.rec = rec;
    return rec;
  },

  /** Hold to talk: recording starts on touch and is sent on release (a cancelled touch discards it). */
  recordStart() {
    this.recordCancelled = false;
    this.setData({ recording: true });
    this.recorder().start({ format: 'aac', duration: 60000, sampleRate: 16000, numberOfChannels: 1, encodeBitRate: 48000 });
  },
  recordEnd() {
    if (this.data.recording) this.recorder().stop();
  },
  recordCancel() {
    this.recordCancelled = true;
    if (this.data.recording) this.recorder().stop();
  },

  /** Tap on an image: full size, with the conversation's other images to swipe through. */
  async previewImage(e) {
    const id = e.currentTarget.dataset.media;
    const ids = this.list.filter((m) => !m.state && m.kind === 'image' && isMedia(m)).map((m) => m.content.media_id);
    try {
      const urls = await client().mediaUrl(ids); // cached, or asked again once expired
      const current = urls[id] && urls[id].url;
      if (current) wx.previewImage({ current, urls: ids.filter((x) => urls[x]).map((x) => urls[x].url) });
    } catch (err) {
      wx.showToast({ title: errText(err), icon: 'none' });
    }
  },

  async playVoice(e) {
    const id = e.currentTarget.dataset.media;
    if (!this.audio) {
      this.audio = wx.createInnerAudioContext();
      const done = () => this.setData({ playing: '' });
      this.audio.onEnded(done);
      this.audio.onStop(done);
      this.audio.onError(done);
    }
    if (this.data.playing === id) {
      this.audio.stop();
      return;
    }
    try {
      const u = await client().mediaUrl(id); // cached, or asked again once expired
      if (!u) return;
      this.audio.stop();
      this.audio.src = u.url;
      this.audio.play();
      this.setData({ playing: id });
    } catch (err) {
      wx.showToast({ title: errText(err), icon: 'none' });
    }
  },

  stopMedia() {
    if (this.audio) this.audio.destroy();
    if (this.data.recording) this.recordCancel();
  },
};

module.exports = { isMedia, mediaItem, mediaMethods };
