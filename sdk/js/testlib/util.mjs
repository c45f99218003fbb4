import WebSocket from 'ws';
import { XindaoClient } from '../src/xindao.js';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns truthy (or throw after timeoutMs). */
export async function waitFor(fn, timeoutMs = 10000, what = 'condition') {
  const t0 = Date.now();
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last && last.stack ? last.stack : JSON.stringify(last)})`);
    await sleep(20);
  }
}

/** Wait for one event, with a timeout. */
export function nextEvent(client, type, pred = () => true, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      off();
      reject(new Error(`no "${type}" event within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = client.on(type, (d) => {
      if (!pred(d)) return;
      clearTimeout(t);
      off();
      resolve(d);
    });
  });
}

/** A logged-in, connected client recording every message event and state change. */
export async function connectedClient(url, name, opts = {}) {
  const c = new XindaoClient({ url, WebSocket, lifecycle: false, ...opts });
  c.received = [];
  c.states = [];
  c.on('message', (m) => c.received.push(m));
  c.on('state', (s) => c.states.push(s.state));
  await c.loginDev(name);
  await c.connect();
  return c;
}

/** Check that a list of messages of one conversation is exactly seq 1..n (or from..to), once, in order. */
export function seqsOf(msgs, conversationId) {
  return msgs.filter((m) => m.conversation_id === conversationId).map((m) => m.seq);
}
export function range(a, b) {
  const out = [];
  for (let i = a; i <= b; i++) out.push(i);
  return out;
}
