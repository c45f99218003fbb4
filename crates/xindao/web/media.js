// Images, voice and files on the web page: the attach button (upload through the SDK, then a message naming
// the upload, shown as "Uploading…" meanwhile), and the bubbles of media messages: an image's thumbnail that
// opens full size in an overlay, a voice message's play button and duration, a file's name, size and link.
// Download URLs are signed and expire: they come from the SDK's mediaUrl (one request for all the media a
// render needs, cached until expiry) and are filled into the bubbles when they arrive.
import { newCmid } from '/xindao.js';
import { t } from '/i18n.js';
import { $, h, S, actionError, ok } from '/ui.js';
import { addMessages, renderMessages } from '/chat.js';

const THUMB_MAX = 240; // an image bubble's longest side, in CSS pixels
const known = new Map(); // media id -> {url, thumb_url?, expires_at} once fetched: re-renders fill bubbles at once
const EXPIRY_MARGIN_MS = 60000;
let playing = null; // {audio, id} of the voice message being played

/** The kind of message a chosen file makes: images and audio as themselves, anything else as a file. */
export function kindOf(file) {
  if (/^image\/(jpeg|png|gif|webp)$/.test(file.type)) return 'image';
  if (/^audio\//.test(file.type)) return 'voice';
  return 'file';
}

/** Upload `file` and send it to conversation `id`; a pending bubble shows the progress and any error. */
export function sendMediaFile(id, file, cmid) {
  cmid = cmid || newCmid();
  const kind = kindOf(file);
  S.pending.set(cmid, { conversation_id: id, content: t('media.uploading', { kind: t('media.' + kind) }), error: null, file });
  renderMessages(true);
  S.client.sendMedia(id, file, { kind, cmid, name: file.name }).then(
    (ack) => {
      S.pending.delete(cmid);
      addMessages(id, [ack.message]);
      ok();
      if (S.activeId === id) renderMessages(true);
    },
    (e) => {
      const p = S.pending.get(cmid);
      if (p) p.error = e;
      if (S.activeId === id) renderMessages(false);
    },
  );
}

$('attach').addEventListener('click', () => $('attach-input').click());
$('attach-input').addEventListener('change', () => {
  const input = $('attach-input');
  const files = [...input.files];
  input.value = ''; // choosing the same file again fires `change` again
  if (S.activeId == null) return;
  for (const file of files) sendMediaFile(S.activeId, file);
});

export function isMedia(m) {
  return (m.kind === 'image' || m.kind === 'voice' || m.kind === 'file') && m.content && typeof m.content.media_id === 'string';
}

/** The short text for a media message (conversation previews): "[图片]", "[语音] 4″", "[文件] 报告.pdf". */
export function mediaPreview(m) {
  const label = '[' + t('media.' + m.kind) + ']';
  const c = m.content || {};
  if (m.kind === 'voice' && c.duration_ms) return label + ' ' + seconds(c.duration_ms);
  if (m.kind === 'file' && c.name) return label + ' ' + c.name;
  return label;
}

function seconds(ms) {
  return Math.max(1, Math.round(ms / 1000)) + '″';
}

/** The label of a file's icon: its extension ("PDF"), or "FILE". */
function extension(name) {
  const m = /\.([A-Za-z0-9]{1,4})$/.exec(name || '');
  return m ? m[1].toUpperCase() : 'FILE';
}

function fileSize(n) {
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(n < 10240 ? 1 : 0) + ' KB';
  return (n / 1024 / 1024).toFixed(1) + ' MB';
}

/** The bubble of a media message; its URLs are filled in now if known, else when `fillUrls` gets them. */
export function mediaBubble(m) {
  const c = m.content;
  const id = c.media_id;
  let el;
  if (m.kind === 'image') {
    const w = c.width || THUMB_MAX;
    const ht = c.height || THUMB_MAX;
    const scale = Math.min(1, THUMB_MAX / Math.max(w, ht));
    const img = h('img', { class: 'media-img', alt: t('media.image'), width: Math.max(40, Math.round(w * scale)), height: Math.max(40, Math.round(ht * scale)) });
    el = h('button', { class: 'bubble media image', type: 'button', title: t('media.enlarge'), dataset: { media: id }, onclick: () => enlarge(id) }, img);
  } else if (m.kind === 'voice') {
    const secs = Math.max(1, Math.round((c.duration_ms || 0) / 1000));
    el = h(
      'button',
      { class: 'bubble media voice', type: 'button', title: t('media.play'), dataset: { media: id }, onclick: () => play(id, el) },
      h('span', { class: 'play', 'aria-hidden': 'true' }, '▶'),
      h('span', { class: 'duration' }, seconds(c.duration_ms || 0)),
    );
    // longer recordings make wider bubbles, as in WeChat
    el.style.minWidth = Math.min(220, 70 + secs * 4) + 'px';
  } else {
    el = h(
      'div',
      { class: 'bubble media file', dataset: { media: id } },
      h('span', { class: 'file-icon', 'aria-hidden': 'true' }, extension(c.name)),
      h('span', { class: 'file-text' }, h('span', { class: 'file-name' }, c.name || t('media.file')), h('span', { class: 'file-size small muted' }, fileSize(c.size || 0))),
      h('a', { class: 'file-link small', download: c.name || '' }, t('media.download')),
    );
  }
  apply(el, id);
  return el;
}

/** The known URLs of a medium while they are still valid (expired ones are asked again). */
function live(id) {
  const u = known.get(id);
  if (u && u.expires_at - EXPIRY_MARGIN_MS > Date.now()) return u;
  known.delete(id);
  return null;
}

function apply(el, id) {
  const u = live(id);
  if (!u) return;
  const img = el.querySelector('img.media-img');
  if (img && !img.getAttribute('src')) img.src = u.thumb_url || u.url;
  const a = el.querySelector('a.file-link');
  if (a) a.href = u.url;
  el.dataset.ready = 'true';
}

/** After a render: one mediaUrl call for the media on screen whose URLs are not known yet. */
export function fillUrls(list) {
  const want = [...new Set([...list.querySelectorAll('[data-media]:not([data-ready])')].map((el) => el.dataset.media))].filter((id) => !live(id));
  if (!want.length || !S.client) return;
  S.client.mediaUrl(want).then(
    (urls) => {
      for (const [id, u] of Object.entries(urls)) known.set(id, u);
      for (const el of list.querySelectorAll('[data-media]:not([data-ready])')) apply(el, el.dataset.media);
      for (const id of want) if (!urls[id]) for (const el of list.querySelectorAll(`[data-media="${id}"]`)) el.classList.add('gone');
    },
    () => {
      /* offline: the next render asks again */
    },
  );
}

/** The URLs of a medium, asked again when the cached ones have expired. */
async function fresh(id) {
  const u = await S.client.mediaUrl(id);
  if (u) known.set(id, u);
  return u;
}

async function enlarge(id) {
  const u = await fresh(id).catch((e) => actionError(e));
  if (!u) return;
  $('lightbox-img').src = u.url;
  $('lightbox').hidden = false;
  $('lightbox-close').focus();
}

function closeLightbox() {
  $('lightbox').hidden = true;
  $('lightbox-img').removeAttribute('src');
}
$('lightbox').addEventListener('click', closeLightbox);
document.addEventListener('keydown', (ev) => ev.key === 'Escape' && !$('lightbox').hidden && closeLightbox());

async function play(id, el) {
  if (playing) {
    const same = playing.id === id;
    playing.audio.pause();
    playing.el.classList.remove('playing');
    playing = null;
    if (same) return; // a second tap stops it
  }
  const u = await fresh(id).catch((e) => actionError(e));
  if (!u) return;
  const audio = new Audio(u.url);
  playing = { audio, id, el };
  el.classList.add('playing');
  const done = () => {
    el.classList.remove('playing');
    if (playing && playing.audio === audio) playing = null;
  };
  audio.addEventListener('ended', done);
  audio.addEventListener('error', done);
  audio.play().catch(done);
}
