// The server goes away under a subscribed client and comes back: the client reconnects
// with backoff and resumes where it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { ChatClient } from '../src/chat.js';
import { startServer } from './server.js';
import { Inbox, room } from './inbox.js';

test('reconnects after the server drops the socket and resumes with no gap and no duplicate', async (t) => {
  let server = await startServer();
  const { addr, dataDir } = server;
  t.after(async () => { await server.stop(); });
  const r = room('restart');
  const inbox = new Inbox();
  const reader = new ChatClient({ baseURL: server.url, WebSocket, storage: null, minDelay: 100, maxDelay: 1000, ...inbox.callbacks() });
  t.after(() => reader.close());
  const writer = new ChatClient({ baseURL: server.url, WebSocket, storage: null, autoConnect: false });
  reader.subscribe(r);
  await inbox.until((ib) => ib.of('subscribed').length === 1, 'subscribed');
  const m1 = await writer.post(r, 'Ann', 'before');
  await inbox.until((ib) => ib.of('message').length === 1, 'the first message');

  // The server stops (closing the socket with 1012) and comes back on the same address
  // with its data.
  await server.stop({ keepData: true });
  await inbox.until((ib) => ib.of('state').at(-1) === 'reconnecting', 'reconnecting');
  server = await startServer({ addr, dataDir });
  t.after(() => rm(dataDir));
  // Posted at once: the reader may or may not be back yet; either way it gets each once.
  const m2 = await writer.post(r, 'Bob', 'after 1');
  await inbox.until((ib) => ib.of('subscribed').length === 2, 'subscribed again');
  const m3 = await writer.post(r, 'Bob', 'after 2');
  await inbox.until((ib) => ib.of('message').length === 3, 'the later messages');

  assert.deepEqual(inbox.of('message').map((m) => m.id), [m1.id, m2.id, m3.id]);
  const states = inbox.of('state');
  assert.deepEqual(states.slice(0, 2), ['connecting', 'live']);
  assert.ok(states.includes('reconnecting'), states.join(' '));
  assert.equal(states.at(-1), 'live');
  assert.equal(reader.lastSeq(r), m3.seq);
});

async function rm(dir) {
  const { rm: remove } = await import('node:fs/promises');
  await remove(dir, { recursive: true, force: true });
}
