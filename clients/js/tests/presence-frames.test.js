// How the client turns presence/join/leave frames into onPresence snapshots and rate-limits
// typing: a pure unit over a scripted socket (the frames are the contract's, issue 12).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient } from '../src/chat.js';

// ScriptedSocket records what the client sends; the test plays the server's frames.
class ScriptedSocket {
  static last = null;
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    ScriptedSocket.last = this;
  }
  open() { this.readyState = 1; this.onopen({}); }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code = 1000, reason = '') {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose({ code, reason });
  }
  frame(obj) { this.onmessage({ data: JSON.stringify(obj) }); }
}

function setup() {
  const seen = { presence: [], typing: [] };
  const c = new ChatClient({ baseURL: 'http://127.0.0.1:1', WebSocket: ScriptedSocket, storage: null,
    onPresence: (room, p) => seen.presence.push({ room, ...p }), onTyping: (t) => seen.typing.push(t) });
  const ws = ScriptedSocket.last;
  ws.open();
  return { c, ws, seen };
}

test('subscribe options: presence and name go out, and again on every resubscription', () => {
  const { c, ws } = setup();
  c.subscribe('a', { since: 3, presence: true, name: 'Ann' });
  c.subscribe('b', 5); // the v1 signature
  c.subscribe('c');
  assert.deepEqual(ws.sent, [
    { type: 'subscribe', room: 'a', since: 3, presence: true, name: 'Ann' },
    { type: 'subscribe', room: 'b', since: 5 },
    { type: 'subscribe', room: 'c' },
  ]);
  assert.throws(() => c.subscribe('d', { name: 5 }), TypeError);
  ws.close(1012, 'restart');
  c.connect();
  const ws2 = ScriptedSocket.last;
  assert.notEqual(ws2, ws);
  ws2.open();
  assert.deepEqual(ws2.sent[0], { type: 'subscribe', room: 'a', since: 3, presence: true, name: 'Ann' });
  c.close();
});

test('join and leave frames are applied to the snapshot; each call gets the whole presence', () => {
  const { c, ws, seen } = setup();
  c.subscribe('a', { presence: true });
  ws.frame({ type: 'subscribed', room: 'a', seq: 9 });
  ws.frame({ type: 'join', room: 'a', online: 1, anonymous: 0, members: [{ name: 'X', connections: 1 }] }); // before the snapshot: ignored
  ws.frame({ type: 'presence', room: 'a', online: 3, anonymous: 1, members: [{ name: 'Bob', connections: 1 }, { name: 'Ann', connections: 1 }] });
  ws.frame({ type: 'join', room: 'a', online: 5, anonymous: 2, members: [{ name: 'Ann', connections: 2 }, { name: 'Cy', connections: 1 }] });
  ws.frame({ type: 'leave', room: 'a', online: 4, anonymous: 2, members: [{ name: 'Bob', connections: 0 }] });
  ws.frame({ type: 'leave', room: 'a', online: 3, anonymous: 1, members: [] });
  ws.frame({ type: 'join', room: 'zz', online: 3, anonymous: 1, members: [] }); // not subscribed
  assert.deepEqual(seen.presence, [
    { room: 'a', online: 3, anonymous: 1, members: [{ name: 'Ann', connections: 1 }, { name: 'Bob', connections: 1 }] },
    { room: 'a', online: 5, anonymous: 2, members: [{ name: 'Ann', connections: 2 }, { name: 'Bob', connections: 1 }, { name: 'Cy', connections: 1 }] },
    { room: 'a', online: 4, anonymous: 2, members: [{ name: 'Ann', connections: 2 }, { name: 'Cy', connections: 1 }] },
    { room: 'a', online: 3, anonymous: 1, members: [{ name: 'Ann', connections: 2 }, { name: 'Cy', connections: 1 }] },
  ]);
  // A new socket starts over: its diffs wait for its own snapshot.
  ws.close(1012, 'restart');
  c.connect();
  const ws2 = ScriptedSocket.last;
  ws2.open();
  ws2.frame({ type: 'subscribed', room: 'a', seq: 9 });
  ws2.frame({ type: 'leave', room: 'a', online: 0, anonymous: 0, members: [{ name: 'Ann', connections: 0 }] });
  assert.equal(seen.presence.length, 4);
  ws2.frame({ type: 'presence', room: 'a', online: 1, anonymous: 0, members: [{ name: 'Dee', connections: 1 }] });
  assert.deepEqual(seen.presence.at(-1), { room: 'a', online: 1, anonymous: 0, members: [{ name: 'Dee', connections: 1 }] });
  c.close();
});

test('presence frames of a room subscribed without presence are ignored', () => {
  const { c, ws, seen } = setup();
  c.subscribe('a');
  ws.frame({ type: 'subscribed', room: 'a', seq: 1 });
  ws.frame({ type: 'presence', room: 'a', online: 1, anonymous: 1, members: [] });
  assert.deepEqual(seen.presence, []);
  c.close();
});

test('typing goes out at most once per 2 s per room and only when subscribed', (t) => {
  t.mock.timers.enable({ apis: ['Date', 'setTimeout'] });
  const { c, ws, seen } = setup();
  assert.equal(c.typing('a'), false); // not subscribed
  c.subscribe('a', { presence: true });
  c.subscribe('b', { presence: true });
  assert.equal(c.typing('a'), false); // its subscribed frame has not come yet
  ws.frame({ type: 'subscribed', room: 'a', seq: 1 });
  ws.frame({ type: 'subscribed', room: 'b', seq: 1 });
  ws.sent.length = 0;
  assert.equal(c.typing('a'), true);
  assert.equal(c.typing('a'), false);
  assert.equal(c.typing('b'), true);
  t.mock.timers.tick(1999);
  assert.equal(c.typing('a'), false);
  t.mock.timers.tick(1);
  assert.equal(c.typing('a'), true);
  assert.deepEqual(ws.sent, [{ type: 'typing', room: 'a' }, { type: 'typing', room: 'b' }, { type: 'typing', room: 'a' }]);

  ws.frame({ type: 'typing', room: 'a', name: 'Bob' });
  ws.frame({ type: 'typing', room: 'zz', name: 'Bob' }); // not subscribed
  ws.frame({ type: 'typing', room: 'a' }); // no name
  assert.deepEqual(seen.typing, [{ room: 'a', name: 'Bob' }]);
  c.close();
});
