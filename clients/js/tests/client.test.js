// The client against a real all-in-one: posts, resume, idempotent retries, changes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { ChatClient, ChatError } from '../src/chat.js';
import { startServer } from './server.js';
import { Inbox, room, eventually } from './inbox.js';

let server;
const clients = [];

before(async () => { server = await startServer(); });
after(async () => {
  for (const c of clients) c.close();
  await server?.stop();
});

function client(inbox, opts = {}) {
  const c = new ChatClient({ baseURL: server.url, WebSocket, storage: null, minDelay: 50, maxDelay: 500,
    ...(inbox ? inbox.callbacks() : {}), ...opts });
  clients.push(c);
  return c;
}

// subscribed subscribes c to r and waits for the subscription (the n-th subscribed frame).
async function subscribed(c, inbox, r, opts) {
  const n = inbox.of('subscribed').filter((f) => f.room === r).length;
  c.subscribe(r, opts);
  return inbox.until((ib) => ib.of('subscribed').filter((f) => f.room === r)[n], `subscribed to ${r}`);
}

function messagesOf(inbox, r) { return inbox.of('message').filter((m) => m.room === r); }

test('a post reaches a subscriber once, as stored', async () => {
  const r = room('post');
  const inbox = new Inbox();
  const reader = client(inbox);
  await subscribed(reader, inbox, r);
  const writer = client(null, { autoConnect: false });
  const sent = await writer.post(r, 'Ann', 'hello <b>world</b> ✓');
  assert.equal(sent.room, r);
  assert.equal(sent.message, 'hello <b>world</b> ✓');
  assert.equal(typeof sent.edit_key, 'string');
  const [got] = await inbox.until((ib) => messagesOf(ib, r).length >= 1 && messagesOf(ib, r), 'the message');
  assert.deepEqual(got, { id: sent.id, room: r, name: 'Ann', message: 'hello <b>world</b> ✓', sent_at: sent.sent_at, seq: sent.seq });
  assert.equal(reader.lastSeq(r), sent.seq);
  // History has it within a second or so (the persister stores asynchronously).
  const hist = await eventually(async () => { const h = await writer.history(r); return h.length && h; }, 'history');
  assert.deepEqual(hist.map((m) => m.id), [sent.id]);
});

test('resume with since after a disconnect: no gap, no duplicate, changes included', async () => {
  const r = room('resume');
  const inbox = new Inbox();
  const reader = client(inbox);
  await subscribed(reader, inbox, r);
  const writer = client(null, { autoConnect: false });
  const first = await writer.post(r, 'Ann', 'm0');
  await inbox.until((ib) => messagesOf(ib, r).length === 1, 'm0');

  reader.disconnect();
  await inbox.until((ib) => ib.of('state').at(-1) === 'offline', 'offline');
  const missed = [];
  for (let i = 1; i <= 5; i++) missed.push(await writer.post(r, 'Bob', 'm' + i));
  const edit = await writer.edit(r, first.id, 'm0 edited'); // a change to a message from before the cursor
  reader.connect();
  await inbox.until((ib) => messagesOf(ib, r).length === 6 && ib.of('change').length === 1, 'the missed messages and the edit');
  const live = await writer.post(r, 'Ann', 'm6');
  await inbox.until((ib) => messagesOf(ib, r).length === 7, 'm6 live');

  const got = messagesOf(inbox, r);
  assert.deepEqual(got.map((m) => m.message), ['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6']);
  assert.deepEqual(got.map((m) => m.id), [first, ...missed, live].map((m) => m.id));
  const [change] = inbox.of('change');
  assert.deepEqual(change, { type: 'edited', room: r, id: first.id, seq: edit.change_seq, message: 'm0 edited', edited_at: edit.edited_at });
  // One order for messages and changes, strictly increasing: nothing twice.
  const seqs = inbox.events.filter(([k]) => k === 'message' || k === 'change').map(([, v]) => v.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  assert.equal(new Set(seqs).size, seqs.length);

  // A new client given the cursor gets exactly what came after it.
  const inbox2 = new Inbox();
  const late = client(inbox2);
  await subscribed(late, inbox2, r, { since: missed[1].seq });
  await inbox2.until((ib) => messagesOf(ib, r).length === 4 && ib.of('change').length === 1, 'resume from a cursor');
  await writer.post(r, 'Ann', 'm7');
  await inbox2.until((ib) => messagesOf(ib, r).length === 5, 'm7');
  const order = inbox2.events.filter(([k]) => k === 'message' || k === 'change').map(([k, v]) => k === 'change' ? 'edit' : v.message);
  assert.deepEqual(order, ['m3', 'm4', 'm5', 'edit', 'm6', 'm7']);
});

test('a retried post whose first answer was lost stores one message', async () => {
  const r = room('idem');
  const inbox = new Inbox();
  const reader = client(inbox);
  await subscribed(reader, inbox, r);
  const keys = [];
  let calls = 0;
  // The first request reaches the server, its answer is lost: the client must retry with
  // the same Idempotency-Key and get the first message back.
  const lossy = async (url, init) => {
    keys.push(init.headers['Idempotency-Key']);
    const res = await fetch(url, init);
    if (calls++ === 0) {
      await res.arrayBuffer();
      throw new TypeError('fetch failed (answer lost)');
    }
    return res;
  };
  const writer = client(null, { autoConnect: false, fetch: lossy });
  const msg = await writer.post(r, 'Ann', 'once');
  assert.equal(calls, 2);
  assert.equal(keys.length, 2);
  assert.equal(keys[0], keys[1]);
  assert.equal(msg.id, keys[0]); // the key is the id
  // The same key again, explicitly: the same message.
  const again = await writer.post(r, 'Ann', 'once', keys[0]);
  assert.equal(again.id, msg.id);
  assert.equal(again.seq, msg.seq);
  const fresh = await writer.post(r, 'Ann', 'after');
  await inbox.until((ib) => messagesOf(ib, r).some((m) => m.id === fresh.id), 'the last post');
  assert.deepEqual(messagesOf(inbox, r).map((m) => m.message), ['once', 'after']);
  const hist = await eventually(async () => { const h = await writer.history(r); return h.length === 2 && h; }, 'history');
  assert.deepEqual(hist.map((m) => m.message), ['once', 'after']);

  // The same key for another room is refused, not silently reused.
  await assert.rejects(writer.post(room('idem-other'), 'Ann', 'x', keys[0]),
    (e) => e instanceof ChatError && e.status === 409 && e.key === keys[0]);
});

test('edits, reactions and a deletion arrive as onChange and apply to what history shows', async () => {
  const r = room('change');
  const inbox = new Inbox();
  const reader = client(inbox);
  await subscribed(reader, inbox, r);
  const writer = client(null, { autoConnect: false });
  const a = await writer.post(r, 'Ann', 'first');
  const b = await writer.post(r, 'Ann', 'second');
  assert.ok(writer.postedHere(r, a.id));
  const edited = await writer.edit(r, a.id, 'first, edited');
  const reacted = await writer.react(r, a.id, '👍', 'Bob');
  await writer.react(r, a.id, '🎉', 'Cy');
  const unreacted = await writer.unreact(r, a.id, '🎉', 'Cy');
  const removed = await writer.remove(r, b.id);
  assert.equal(removed.deleted, true);
  assert.equal(writer.editKey(r, b.id), null);

  const changes = await inbox.until((ib) => ib.of('change').length === 5 && ib.of('change'), 'five changes');
  assert.deepEqual(changes.map((c) => [c.type, c.id]), [
    ['edited', a.id], ['reactions', a.id], ['reactions', a.id], ['reactions', a.id], ['deleted', b.id]]);
  assert.equal(changes[0].seq, edited.change_seq);
  assert.deepEqual(changes[1].reactions, reacted.reactions);
  assert.deepEqual(changes[3].reactions, { '👍': 1 });
  assert.deepEqual(changes[3].reactions, unreacted.reactions);

  // What the reader applies ends as history shows, and applying again changes nothing.
  const shown = new Map(messagesOf(inbox, r).map((m) => [m.id, { ...m }]));
  for (const c of changes) assert.equal(ChatClient.applyChange(shown.get(c.id), c), true);
  for (const c of changes) assert.equal(ChatClient.applyChange(shown.get(c.id), c), false);
  const hist = await eventually(async () => {
    const h = await writer.history(r);
    return h.length === 2 && h[1].deleted && h[0].reactions?.['👍'] === 1 && !h[0].reactions['🎉'] && h;
  }, 'history with every change');
  assert.deepEqual(hist, [...shown.values()]);
  assert.equal(hist[0].message, 'first, edited');
  assert.deepEqual(hist[0].reactions, { '👍': 1 });
  assert.equal(hist[1].deleted, true);
  // The answers make the same changes (the UI applies them before the frames come).
  const { edit_key: _, ...answer } = a; // the key is the poster's, not part of the message
  assert.equal(ChatClient.applyChange(answer, ChatClient.changeFrom('edited', edited)), true);
  assert.equal(ChatClient.applyChange(answer, ChatClient.changeFrom('reactions', unreacted)), true);
  assert.deepEqual(answer, hist[0]);
});

test('bad input gets a clear error', async () => {
  const c = client(null, { autoConnect: false });
  assert.throws(() => c.subscribe('no spaces'), TypeError);
  assert.throws(() => c.subscribe('ok', { since: -1 }), TypeError);
  await assert.rejects(c.post(room('bad'), '', 'x'), (e) => e instanceof ChatError && e.status === 400 && /name/.test(e.error));
  await assert.rejects(c.edit(room('bad'), 'nope', 'x'), (e) => e instanceof ChatError && e.status === 404);
  assert.throws(() => new ChatClient({ baseURL: server.url, WebSocket: null, autoConnect: false, ...(globalThis.WebSocket ? { WebSocket: 1 } : {}) }), TypeError);
});

test('rooms() lists rooms by newest activity and pages with before; presence() answers for a room', async () => {
  const c = client(null, { autoConnect: false });
  const [r1, r2] = [room('list'), room('list')];
  await c.post(r1, 'Ann', 'one');
  await c.post(r1, 'Ann', 'two');
  const last = await c.post(r2, 'Ann', 'three');
  const list = await eventually(async () => {
    const l = await c.rooms({ limit: 200 });
    const mine = l.filter((e) => e.room === r1 || e.room === r2);
    return mine.length === 2 && mine[0].messages === 1 && mine[1].messages === 2 && l;
  }, 'both rooms listed');
  const mine = list.filter((e) => e.room === r1 || e.room === r2);
  assert.deepEqual(mine.map((e) => e.room), [r2, r1]);
  assert.equal(mine[0].last_seq, last.seq);
  assert.equal(mine[0].last_sent_at, last.sent_at);
  const seqs = list.map((e) => e.last_seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => b - a));
  const page = await c.rooms({ limit: 1, before: last.seq });
  assert.equal(page.length, 1);
  assert.ok(page[0].last_seq < last.seq);
  await assert.rejects(c.rooms({ limit: 0 }), (e) => e instanceof ChatError && e.status === 400);

  const p = await c.presence(r1);
  assert.equal(p.room, r1);
  assert.ok(Number.isSafeInteger(p.online) && Array.isArray(p.members), JSON.stringify(p));
  await assert.rejects(c.presence('no spaces'), (e) => e instanceof ChatError && e.status === 400);
});
