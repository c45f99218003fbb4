// The composer: sends through the SDK's outbox (pending bubbles until the ack), the length counter counted as
// the server counts (code points, from hello.limits), and a refused message keeps its text where it was typed.
import { newCmid, textLength, checkContent } from '/xindao.js';
import { $, S, actionError, ok } from '/ui.js';
import { addMessages, renderMessages } from '/chat.js';

export function sendText(id, text, cmid) {
  cmid = cmid || newCmid();
  S.pending.set(cmid, { conversation_id: id, content: text, error: null });
  renderMessages(true);
  S.client.send(id, text, { cmid }).then(
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

function limits() {
  return (S.client && S.client.limits) || {};
}

/** The counter ("3990 / 4000", shown near the limit) and the send button's state. */
export function updateComposer() {
  const text = $('composer-input').value;
  const max = limits().max_text_chars || 0;
  const n = textLength(text);
  const el = $('composer-count');
  const near = max > 0 && n >= Math.floor(max * 0.8);
  el.hidden = !near;
  el.textContent = near ? n + ' / ' + max : '';
  el.classList.toggle('over', max > 0 && n > max);
  $('send').disabled = !text.trim() || (max > 0 && n > max);
}

$('composer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $('composer-input');
  const text = input.value;
  if (!text.trim() || S.activeId == null) return;
  // refused before sending (the server would refuse it too): the text stays where it was typed
  const bad = checkContent('text', text, limits());
  if (bad) return actionError(bad);
  input.value = '';
  autosize();
  updateComposer();
  sendText(S.activeId, text);
});

function autosize() {
  const input = $('composer-input');
  input.rows = Math.min(6, Math.max(1, input.value.split('\n').length));
}

$('composer-input').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $('composer').requestSubmit();
  }
});
$('composer-input').addEventListener('input', () => {
  autosize();
  updateComposer();
  if (S.activeId != null && S.client) S.client.typing(S.activeId);
});
