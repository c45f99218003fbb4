// The SDK API against the real server: login, 1:1 and rooms, events, history, unread, errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../testlib/server.mjs';
import { connectedClient, nextEvent, waitFor, seqsOf, range } from '../testlib/util.mjs';
import { XindaoError, normalizeMessage } from '../src/xindao.js';

let srv;
const clients = [];
const client = async (name, opts) => {
  const c = await connectedClient(srv.url, name, opts);
  clients.push(c);
  return c;
};

before(async () => {
  srv = await startServer();
});
after(async () => {
  for (const c of clients) c.close();
  if (srv) {
    await srv.stop();
    srv.cleanup();
  }
});

test('dev login, hello and the same user twice', async () => {
  const a = await client('api-alice');
  assert.equal(a.state, 'open');
  assert.equal(a.user.display_name, 'api-alice');
  assert.equal(a.hello.protocol, 1);
  assert.ok(a.hello.limits.max_text_chars > 0);
  const a2 = await client('api-alice');
  assert.equal(a2.user.id, a.user.id);
  assert.deepEqual(await a.me(), a.user);
});

test('the socket opens with a single-use connect ticket: the token is never in a URL', async () => {
  const { default: WS } = await import('ws');
  const urls = [];
  class Recording extends WS {
    constructor(url, ...rest) {
      urls.push(String(url));
      super(url, ...rest);
    }
  }
  const a = await client('ticket-alice', { WebSocket: Recording });
  assert.equal(a.state, 'open');
  assert.equal(urls.length, 1);
  assert.match(urls[0], /\/v1\/ws\?ticket=[A-Za-z0-9_-]{43}$/);
  assert.ok(!urls[0].includes(a.token) && !urls[0].includes('token='), urls[0]);
});

test('1:1 chat: ack, push, typing, read marks, presence, unread counts', async () => {
  const a = await client('dm-alice');
  const b = await client('dm-bob');
  // presence is told only about users who share a conversation: a stranger reads as offline
  assert.deepEqual(await a.presence([b.user.id]), [{ user_id: b.user.id, online: false }]);

  const ack = await a.sendTo(b.user.id, 'hello bob');
  const pres = await a.presence([b.user.id]);
  assert.deepEqual(pres, [{ user_id: b.user.id, online: true }]);
  assert.equal(ack.duplicate, false);
  const m1 = ack.message;
  assert.equal(m1.seq, 1);
  assert.equal(m1.content, 'hello bob');
  assert.equal(m1.sender_id, a.user.id);
  await waitFor(() => b.received.some((m) => m.id === m1.id), 5000, 'bob receives the message');
  assert.ok(a.received.some((m) => m.id === m1.id), 'own message delivered in order too');
  // A lean push: no cmid for bob (it is alice's), and the SDK fills in the default kind.
  const pushed = b.received.find((m) => m.id === m1.id);
  assert.equal(pushed.cmid, undefined);
  assert.equal(pushed.kind, 'text');
  assert.deepEqual({ ...pushed, cmid: m1.cmid }, m1);
  const conv = m1.conversation_id;

  await a.send(conv, 'second');
  await a.send(conv, '<img src=x onerror=alert(1)>');
  await waitFor(() => seqsOf(b.received, conv).length === 3, 5000, 'three messages');
  assert.deepEqual(seqsOf(b.received, conv), [1, 2, 3]);
  assert.equal(b.received[2].content, '<img src=x onerror=alert(1)>');

  const bc = (await b.conversations()).find((c) => c.id === conv);
  assert.equal(bc.kind, 'direct');
  assert.equal(bc.peer.id, a.user.id);
  assert.equal(bc.unread, 3);

  const typing = nextEvent(a, 'typing', (t) => t.conversation_id === conv);
  assert.equal(await b.typing(conv), true);
  assert.equal(await b.typing(conv), false, 'throttled');
  assert.deepEqual(await typing, { conversation_id: conv, user_id: b.user.id });

  const read = nextEvent(a, 'read', (r) => r.user_id === b.user.id);
  assert.equal(await b.markRead(conv, 2), 2);
  assert.deepEqual(await read, { conversation_id: conv, user_id: b.user.id, seq: 2 });
  assert.equal((await b.conversations()).find((c) => c.id === conv).unread, 1);

  const offline = nextEvent(a, 'presence', (p) => p.user_id === b.user.id && p.online === false);
  b.close();
  await offline;
});

test('rooms: create, public list, join, members, member events, leave', async () => {
  const a = await client('room-owner');
  const b = await client('room-joiner');
  const room = await a.createRoom('general-' + Date.now());
  assert.equal(room.kind, 'room');
  assert.equal(room.visibility, 'public');
  assert.equal(room.owner_id, a.user.id);
  const rooms = await b.publicRooms();
  assert.ok(rooms.some((r) => r.id === room.id && r.members === 1));

  const joined = nextEvent(a, 'member', (m) => m.conversation_id === room.id && m.action === 'joined');
  await b.joinRoom(room.id);
  assert.equal((await joined).user_id, b.user.id);
  const members = await a.roomMembers(room.id);
  assert.deepEqual(members.map((m) => [m.user.id, m.role]).sort(), [[a.user.id, 'owner'], [b.user.id, 'member']].sort());
  const page1 = await a.request('room_members', { conversation_id: room.id, limit: 1 });
  assert.deepEqual(page1.members.map((m) => m.user.id), [a.user.id]);
  assert.equal(page1.has_more, true);
  const page2 = await a.request('room_members', { conversation_id: room.id, limit: 1, cursor: page1.next_cursor });
  assert.deepEqual(page2.members.map((m) => m.user.id), [b.user.id]);
  assert.equal(page2.has_more, false);
  assert.equal(page2.next_cursor, null);

  for (let i = 1; i <= 5; i++) await a.send(room.id, 'room msg ' + i);
  await waitFor(() => seqsOf(b.received, room.id).length === 5, 5000, 'room messages');
  assert.deepEqual(seqsOf(b.received, room.id), range(1, 5));

  const left = nextEvent(a, 'member', (m) => m.conversation_id === room.id && m.action === 'left');
  await b.leaveRoom(room.id);
  assert.equal((await left).user_id, b.user.id);
  await assert.rejects(b.send(room.id, 'not a member'), (e) => e instanceof XindaoError && e.code === 'forbidden');
});

test('history paging backwards and forwards', async () => {
  const a = await client('hist-a');
  const room = await a.createRoom('history-' + Date.now());
  for (let i = 1; i <= 25; i++) await a.send(room.id, 'h' + i);
  const latest = await a.history(room.id, { limit: 10 });
  assert.deepEqual(latest.messages.map((m) => m.seq), range(16, 25));
  assert.equal(latest.has_more, true);
  const older = await a.history(room.id, { beforeSeq: 16, limit: 10 });
  assert.deepEqual(older.messages.map((m) => m.seq), range(6, 15));
  const oldest = await a.history(room.id, { beforeSeq: 6, limit: 10 });
  assert.deepEqual(oldest.messages.map((m) => m.seq), range(1, 5));
  assert.equal(oldest.has_more, false);
  const fwd = await a.history(room.id, { afterSeq: 20, limit: 10 });
  assert.deepEqual(fwd.messages.map((m) => m.seq), range(21, 25));
  assert.equal(fwd.has_more, false);
});

test('server errors reject with the server code; custom messages', async () => {
  const a = await client('err-a');
  await assert.rejects(a.openDirect(a.user.id), (e) => e.code === 'conflict');
  const room = await a.createRoom('errors-' + Date.now());
  await assert.rejects(a.send(room.id, '   '), (e) => e.code === 'invalid_message' && typeof e.cmid === 'string');
  await assert.rejects(a.send(room.id, 'x'.repeat(a.hello.limits.max_text_chars + 1)), (e) => e.code === 'message_too_long');
  await assert.rejects(a.send(999999999, 'nowhere'), (e) => ['not_found', 'forbidden'].includes(e.code));
  await assert.rejects(a.request('no_such_op'), (e) => e.code === 'unknown_op');
  const ack = await a.send(room.id, { type: 'card', n: 1 }, { kind: 'custom' });
  assert.equal(ack.message.kind, 'custom');
  assert.deepEqual(ack.message.content, { type: 'card', n: 1 });
});

test('same cmid twice: one message, the second ack says duplicate', async () => {
  const a = await client('dup-a');
  const room = await a.createRoom('dup-' + Date.now());
  const r1 = await a.send(room.id, 'once', { cmid: 'fixed-cmid-' + Date.now() });
  const r2 = await a.send(room.id, 'once', { cmid: r1.message.cmid });
  assert.equal(r2.duplicate, true);
  assert.equal(r2.message.id, r1.message.id);
  const h = await a.history(room.id);
  assert.equal(h.messages.length, 1);
  assert.deepEqual(seqsOf(a.received, room.id), [1], 'delivered once');
});

test('normalizeMessage reads the lean and the full push shapes', () => {
  const full = { id: 1, conversation_id: 2, seq: 3, sender_id: 4, cmid: 'c-1', kind: 'custom', content: { a: 1 }, ts: 5 };
  assert.deepEqual(normalizeMessage({ ...full }), full, 'the full shape is left as it is');
  const lean = { id: 1, conversation_id: 2, seq: 3, sender_id: 4, content: 'hi', ts: 5 };
  assert.deepEqual(normalizeMessage({ ...lean }), { ...lean, kind: 'text' });
  assert.deepEqual(normalizeMessage({ ...lean, kind: 'text', cmid: 'c-2' }), { ...lean, kind: 'text', cmid: 'c-2' });
});

test('a big room: joins come as members_changed summaries, own joins as member events', async () => {
  const big = await startServer({ args: ['--room-member-events-max', '2'] });
  const local = [];
  try {
    const c = async (name) => {
      const x = await connectedClient(big.url, name);
      local.push(x);
      return x;
    };
    const owner = await c('big-owner');
    const room = await owner.createRoom('big-' + Date.now());
    const ownJoin = [];
    const summaries = [];
    owner.on('members_changed', (e) => summaries.push(e));
    owner.on('member', (e) => ownJoin.push(e));
    const joiners = [];
    for (let i = 0; i < 5; i++) {
      const j = await c('big-joiner-' + i);
      const mine = nextEvent(j, 'member', (m) => m.user_id === j.user.id && m.action === 'joined');
      await j.joinRoom(room.id);
      await mine;
      joiners.push(j);
    }
    await waitFor(() => summaries.reduce((n, e) => n + e.joined, 0) === 4, 5000, 'joins above the threshold summarised');
    assert.equal(ownJoin.length, 1, 'one member event: the join that kept the room at the threshold');
    assert.equal(summaries[summaries.length - 1].members, 6);
    const ack = await joiners[4].send(room.id, 'hello big room');
    await waitFor(() => owner.received.some((m) => m.id === ack.message.id), 5000, 'messages still flow');
  } finally {
    for (const x of local) x.close();
    await big.stop();
    big.cleanup();
  }
});

test('conversations() follows the pages; conversationsPage() gives one; sync covers every conversation', async () => {
  const a = await client('page-alice');
  const ids = [];
  // more than a default page of 50, and more than the 100 conversations one sync reply holds
  for (let i = 0; i < 105; i++) ids.push((await a.createRoom('page-' + i)).id);
  const all = await a.conversations();
  assert.equal(all.length, 105);
  assert.deepEqual(new Set(all.map((c) => c.id)), new Set(ids));
  const first = await a.conversationsPage({ limit: 2 });
  assert.equal(first.conversations.length, 2);
  assert.equal(first.has_more, true);
  const second = await a.conversationsPage({ limit: 2, cursor: first.next_cursor });
  assert.equal(second.conversations.length, 2);
  assert.notEqual(second.conversations[0].id, first.conversations[1].id);
  assert.equal((await a.conversations({ max: 5 })).length, 5);

  // messages in every room while a second device of the same user is away, then a sync on reconnect
  const b = await client('page-alice');
  // its baseline (every page of conversations) first: a client without one starts from the current ends
  await waitFor(() => Object.keys(b.cursors()).length === ids.length, 10000, 'baseline');
  b.pause();
  for (const id of ids) await a.send(id, 'for the other device ' + id);
  b.resume();
  await waitFor(() => ids.every((id) => seqsOf(b.received, id).length === 1), 20000, 'every room synced');
});
