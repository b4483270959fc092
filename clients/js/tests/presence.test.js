// Presence and typing (issue 12) through the client against a real all-in-one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { ChatClient } from '../src/chat.js';
import { startServer } from './server.js';
import { Inbox, room } from './inbox.js';

let server;
const clients = [];
before(async () => { server = await startServer(); });
after(async () => {
  for (const c of clients) c.close();
  await server?.stop();
});

function client(inbox) {
  const c = new ChatClient({ baseURL: server.url, WebSocket, storage: null, minDelay: 50, maxDelay: 500, ...inbox.callbacks() });
  clients.push(c);
  return c;
}

test('presence follows joins and leaves; typing reaches the others', async () => {
  const r = room('pres');
  const ann = new Inbox();
  const a = client(ann);
  a.subscribe(r, { presence: true, name: 'Ann' });
  const last = (ib) => ib.of('presence').filter((p) => p.room === r).at(-1);
  await ann.until((ib) => last(ib)?.members.some((m) => m.name === 'Ann'), 'Ann sees herself');

  const bob = new Inbox();
  const b = client(bob);
  b.subscribe(r, { presence: true, name: 'Bob' });
  const anon = new Inbox();
  const x = client(anon);
  x.subscribe(r); // counts in presence, anonymously, without opting in
  await ann.until((ib) => {
    const p = last(ib);
    return p && p.online === 3 && p.anonymous === 1 &&
      JSON.stringify(p.members) === JSON.stringify([{ name: 'Ann', connections: 1 }, { name: 'Bob', connections: 1 }]);
  }, 'Ann sees Bob and one anonymous');
  assert.deepEqual(anon.of('presence'), []); // not opted in

  await bob.until((ib) => ib.of('subscribed').length === 1, 'Bob subscribed');
  assert.equal(b.typing(r), true);
  assert.equal(b.typing(r), false); // within 2 s
  await ann.until((ib) => ib.of('typing').length === 1, 'Ann sees Bob typing');
  assert.deepEqual(ann.of('typing'), [{ room: r, name: 'Bob' }]);

  b.close();
  await ann.until((ib) => {
    const p = last(ib);
    return p && p.online === 2 && JSON.stringify(p.members) === JSON.stringify([{ name: 'Ann', connections: 1 }]);
  }, 'Bob left');
  assert.deepEqual(bob.of('typing'), []); // typers do not hear themselves
});
