// Code generated from clients/js/src/chat.js by services/api/internal/chatjs; DO NOT EDIT.
// Edit the module and run `make chatjs`.
(function () {
'use strict';
/*
 * chat.js: a small client for the chat service (no dependencies), for browsers and Node.
 *
 * This file is the ES module of the package in clients/js (import { ChatClient } from
 * '@chatrt/chat-client'). The api serves it as a classic script too, generated from this file
 * (services/api/internal/web/static/chat.js: `make chatjs`, never edit that copy): include it with
 * <script src="/chat.js"></script>; it defines window.ChatClient.
 *
 *   const client = new ChatClient({
 *     url:          'wss://host/ws',  // optional; default: same-origin /ws (ws: or wss: by page
 *                                     //   scheme); without a page (Node): baseURL's host + /ws
 *     baseURL:      '',               // optional; HTTP API origin for post/history, default same
 *                                     //   origin (required without a page)
 *     WebSocket:    WebSocket,        // optional; the WebSocket class, default the global one
 *                                     //   (Node 20 has none: pass the ws package's)
 *     fetch:        fetch,            // optional; the fetch function, default the global one
 *     onMessage(msg)     {},          // {id, room, name, message, sent_at, seq}: each message of a
 *                                     //   subscribed room, exactly once, in seq order per room.
 *                                     //   A message resumed from an old cursor may come in its
 *                                     //   current state: edited_at, deleted: true (a tombstone:
 *                                     //   name and message ""), reactions {emoji: count}
 *     onChange(change)   {},          // a change to a message of a subscribed room:
 *                                     //   {type:'edited', room, id, seq, message, edited_at}
 *                                     //   {type:'deleted', room, id, seq}
 *                                     //   {type:'reactions', room, id, seq, reactions: {emoji: count}}
 *                                     //   id is the changed message's, seq the change's own (messages
 *                                     //   and changes share one order and one since cursor); once
 *                                     //   each, in seq order. Apply with ChatClient.applyChange.
 *     onState(state)     {},          // 'connecting' | 'live' | 'reconnecting' | 'offline' |
 *                                     //   'auth_failed' (token refused and no fresh one: stopped)
 *     onSubscribed(frame){},          // {type:'subscribed', room, seq}: once per (re)subscription
 *     onPresence(room, state) {},     // who is in a room subscribed with presence: true:
 *                                     //   {online, anonymous, members: [{name, connections}]}, the
 *                                     //   room's whole current presence (members sorted by name)
 *                                     //   after every presence/join/leave frame (the client applies
 *                                     //   the diffs); online counts every connection, anonymous
 *                                     //   those without a name
 *     onTyping({room, name}) {},      // someone else is typing in a room subscribed with presence
 *                                     //   (show it ~5 s); never replayed
 *     onError(err)       {},          // {source:'ws', error, room?} for server error frames,
 *                                     //   {source:'ws', code, reason} for closes 1008/1009 (client bug)
 *                                     //   and 4401/4403 (token refused; auth: true),
 *                                     //   {source:'http', status, error, auth: true} for 401/403
 *     minDelay: 500, maxDelay: 30000, // reconnect backoff in ms (exponential, capped, with jitter)
 *     autoConnect: true,              // open the socket in the constructor
 *     storage: localStorage,          // where post() keeps edit keys (null: in memory only)
 *     maxEditKeys: 500,               // edit keys kept; the oldest are dropped beyond it
 *     token: null,                    // optional bearer token (JWT) when the server requires auth:
 *                                     //   sent as Authorization on post/history and as the first
 *                                     //   websocket frame {"type":"auth","token":...}
 *     getToken(info)     {},          // optional: returns a fresh token (or a promise of one) when
 *                                     //   the server refuses the current one (websocket close
 *                                     //   4401/4403, HTTP 401/403); info is {source:'ws', code} or
 *                                     //   {source:'http', status}. The client then resumes: the
 *                                     //   socket reconnects (rooms resume with since) and the
 *                                     //   request is sent once more (same Idempotency-Key).
 *                                     //   Returning nothing (or the refused token, or throwing)
 *                                     //   means there is none.
 *   });
 *
 *   client.subscribe(room, since)   // since (optional): last seq already shown; every later message is
 *                                   //   delivered once, in order. Without since: live from now.
 *   client.subscribe(room, {since, presence, name})
 *                                   // the same with options: presence: true opts in to onPresence
 *                                   //   and onTyping for the room; name: who this subscription is
 *                                   //   in presence when auth is off (with auth on the token says).
 *                                   //   Kept across reconnects like since.
 *   client.typing(room)             // tell the room's others this client is typing: sends at most
 *                                   //   one typing frame per 2 s per room; returns whether it sent
 *                                   //   (false: too soon, not subscribed yet, or no socket)
 *   client.unsubscribe(room)
 *   client.lastSeq(room)            // last seq delivered (message or change; or given as since) for
 *                                   //   the room, or null
 *   client.state                    // current connection state (see onState)
 *   await client.post(room, name, message, idempotencyKey)
 *                                   // POST /rooms/{room}/messages; resolves to the stored message.
 *                                   //   Network errors and 502/503/504 are retried (twice, honouring
 *                                   //   Retry-After) with the same Idempotency-Key, so nothing doubles;
 *                                   //   omit the key to get a fresh random one. Rejects with ChatError.
 *                                   //   Remembers the message as posted from here, with the edit_key
 *                                   //   of the answer when the server gives one (auth off), in storage.
 *   await client.edit(room, id, message)
 *                                   // PATCH /rooms/{room}/messages/{id}: resolves to the message as it
 *                                   //   now is, with change_seq (the edit's seq).
 *   await client.remove(room, id)   // DELETE /rooms/{room}/messages/{id}: resolves to the tombstone
 *                                   //   {id, room, name:'', message:'', sent_at, seq, deleted:true,
 *                                   //   change_seq}; forgets the edit key.
 *                                   //   edit and remove send the remembered edit key as header Edit-Key.
 *   await client.react(room, id, emoji, name)
 *   await client.unreact(room, id, emoji, name)
 *                                   // POST /rooms/{room}/messages/{id}/reactions {emoji[, name]} and
 *                                   //   DELETE /rooms/{room}/messages/{id}/reactions/{emoji}[?name=]:
 *                                   //   resolve to {id, room, change_seq, reactions: {emoji: count}}.
 *                                   //   name: who reacts when auth is off (with auth on the token says).
 *                                   // All four: network errors and 502/503/504 are retried like post
 *                                   //   (a change is idempotent); reject with ChatError: 404 unknown id,
 *                                   //   403 not allowed, 409 the message is deleted, 400/413/429/503 as
 *                                   //   post. 401 (and 403 to a request with a token) ask getToken as
 *                                   //   post does; a 403 to a request without a token (a missing or
 *                                   //   wrong edit key) rejects at once.
 *   client.postedHere(room, id)     // this browser posted the message (remembered by post())
 *   client.editKey(room, id)        // its edit key, or null
 *   await client.history(room, {before, after, limit})
 *                                   // GET /rooms/{room}/messages: array, oldest first. Rejects with ChatError.
 *   await client.rooms({limit, before})
 *                                   // GET /rooms: [{room, last_seq, last_sent_at, messages, online}],
 *                                   //   newest activity first; before: a last_seq to page from.
 *   await client.presence(room)     // GET /rooms/{room}/presence: {room, online, members}.
 *                                   //   Both reject with ChatError (token-refreshed like history).
 *   client.disconnect()             // close the socket, keep rooms and seqs (state 'offline')
 *   client.connect()                // reconnect now; every room resumes with since = its last seq
 *                                   //   (after 'auth_failed': set client.token first)
 *   client.close()                  // disconnect for good and forget all rooms
 *
 *   ChatClient.newKey()             // random Idempotency-Key: a ULID (26 chars, ms time + 80 random bits)
 *   ChatClient.validRoom(room)      // 1-64 chars of [A-Za-z0-9_-]
 *   ChatClient.ChatError            // Error with .status (0 = network), .error (server reason),
 *                                   //   .retryAfter (seconds or null), .key (Idempotency-Key used)
 *   ChatClient.applyChange(msg, change)
 *                                   // applies a change (from onChange, or ChatClient.changeFrom) to a
 *                                   //   message object (from onMessage, history or post) in place and
 *                                   //   reports whether it changed. Part by part: the text (message,
 *                                   //   edited_at), the reactions, the deletion (final: name, message,
 *                                   //   edited_at and reactions go, later changes are ignored). A
 *                                   //   change is ignored when its part already has one with that seq
 *                                   //   or a later one (a part starts at the message's seq), so
 *                                   //   applying the same change twice, or an answer and then its
 *                                   //   frame, is harmless. What a client applies ends as history shows.
 *   ChatClient.changeFrom(type, answer)
 *                                   // the change an answer of edit ('edited'), remove ('deleted') or
 *                                   //   react/unreact ('reactions') made (seq = change_seq), or null
 *
 * Reconnects: after any unexpected close (including 1012 "server restarting" and 1013 "too slow")
 * the client waits min(maxDelay, minDelay * 2^attempt), jittered to 50-100 %, reconnects and
 * resubscribes every room with since = the last seq it delivered, so nothing is missed and
 * nothing is delivered twice (messages with seq <= last are dropped).
 *
 * Auth failures are not retried blindly: a websocket closed with 4401 (no, bad or expired token)
 * or 4403 (room not allowed) asks getToken for a fresh token and reconnects with it (backoff as
 * above, rooms resume with since). Without getToken, or when it gives no new token, the client
 * stops: state 'auth_failed', onError({auth: true, ...}), no reconnect until connect() is called.
 * An HTTP 401/403 from post() or history() asks getToken the same way and sends the request once
 * more with the new token; without one the call rejects with that ChatError (the socket is left
 * alone: a 403 concerns one room, and a token the api refuses is refused by the socket too).
 */

const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
const CONNECT_TIMEOUT = 10000; // ms a socket may stay in CONNECTING
const STABLE_AFTER = 5000;     // ms a socket must stay open before the backoff resets
const AUTH_CLOSE = [4401, 4403]; // websocket closes for a refused token
const AUTH_STATUS = [401, 403];  // HTTP answers for a refused token
const TYPING_EVERY = 2000;       // ms between two typing frames of one room
const CONNECTING = 0, OPEN = 1;  // WebSocket readyState values (any implementation)

class ChatError extends Error {
  constructor(status, error, retryAfter, key) {
    super(error);
    this.name = 'ChatError';
    this.status = status;
    this.error = error;
    this.retryAfter = retryAfter;
    this.key = key;
  }

  static async fromResponse(res, key) {
    let reason = '';
    try {
      const body = await res.json();
      if (body && typeof body.error === 'string') reason = body.error;
    } catch (_) { /* not JSON */ }
    if (!reason) reason = res.statusText || 'HTTP ' + res.status;
    const ra = parseInt(res.headers.get('Retry-After') || '', 10);
    return new ChatError(res.status, reason, Number.isFinite(ra) ? ra : null, key);
  }
}

// newKey returns a ULID: 10 Crockford base32 chars of the time in ms, then 16 of
// cryptographic randomness. Pushers decide an id that encodes its creation time from
// their recent-id index alone; any other key costs them a MongoDB check.
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
function newKey() {
  let out = '';
  let t = Date.now();
  for (let i = 0; i < 10; i++) {
    out = CROCKFORD[t % 32] + out;
    t = Math.floor(t / 32);
  }
  const b = new Uint8Array(10);
  globalThis.crypto.getRandomValues(b);
  let acc = 0;
  let bits = 0;
  for (const x of b) {
    acc = (acc << 8) | x;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += CROCKFORD[(acc >> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  return out;
}

// defaultURL is the page's own /ws, or without a page (Node) baseURL's.
function defaultURL(baseURL) {
  const loc = globalThis.location;
  if (loc && loc.host) return (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host + '/ws';
  let u;
  try { u = new URL(baseURL); } catch (_) { throw new TypeError('no page to connect to: give option url or baseURL'); }
  return (u.protocol === 'https:' ? 'wss://' : 'ws://') + u.host + '/ws';
}

// on and off listen to the page's events (online, offline, storage); without a page, none.
function on(type, fn) {
  if (typeof globalThis.addEventListener === 'function') globalThis.addEventListener(type, fn);
}
function off(type, fn) {
  if (typeof globalThis.removeEventListener === 'function') globalThis.removeEventListener(type, fn);
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
function noop() {}
function isSeq(n) { return Number.isSafeInteger(n) && n >= 0; }
function isCounts(r) { return r != null && typeof r === 'object' && !Array.isArray(r); }

// counts copies a reactions object, keeping emoji with a positive count.
function counts(r) {
  const out = {};
  if (!isCounts(r)) return out;
  for (const [e, n] of Object.entries(r)) if (Number.isSafeInteger(n) && n > 0) out[e] = n;
  return out;
}

// The part seqs applyChange has applied to a message object: {content, reactions}. A part
// a message came with starts at the message's seq (every change to it has a higher one).
const partSeqs = new WeakMap();

function applyChange(msg, c) {
  if (!msg || typeof msg !== 'object' || !c || !isSeq(c.seq) || msg.deleted) return false;
  if ((c.id != null && c.id !== msg.id) || (c.room != null && msg.room != null && c.room !== msg.room)) return false;
  let p = partSeqs.get(msg);
  if (!p) {
    const base = isSeq(msg.seq) ? msg.seq : 0;
    p = { content: base, reactions: base };
    partSeqs.set(msg, p);
  }
  switch (c.type) {
    case 'edited':
      if (c.seq <= p.content || typeof c.message !== 'string') return false;
      msg.message = c.message;
      if (typeof c.edited_at === 'string') msg.edited_at = c.edited_at;
      p.content = c.seq;
      return true;
    case 'deleted':
      msg.deleted = true;
      msg.name = '';
      msg.message = '';
      delete msg.edited_at;
      delete msg.reactions;
      p.content = c.seq;
      return true;
    case 'reactions': {
      if (c.seq <= p.reactions || !isCounts(c.reactions)) return false;
      const r = counts(c.reactions);
      if (Object.keys(r).length) msg.reactions = r; else delete msg.reactions;
      p.reactions = c.seq;
      return true;
    }
    default:
      return false;
  }
}

function changeFrom(type, a) {
  if (!a || typeof a !== 'object' || !isSeq(a.change_seq)) return null;
  const c = { type, room: a.room, id: a.id, seq: a.change_seq };
  switch (type) {
    case 'edited':
      if (a.deleted || typeof a.message !== 'string') return null;
      c.message = a.message;
      c.edited_at = a.edited_at;
      return c;
    case 'deleted':
      return c;
    case 'reactions':
      c.reactions = counts(a.reactions);
      return c;
    default:
      return null;
  }
}

// EditKeys remembers the messages posted from this browser: (room, id) -> the edit key of
// the post's answer ('' when there was none, as with auth on). Kept as one JSON array of
// [room + '\u0000' + id, key], oldest first, in storage, so every tab of the browser and a
// reload share it; at most max entries (the oldest are dropped). The parsed list is cached
// per storage for all clients of the page, and dropped when another tab changes it.
const EDIT_KEYS = 'chat.editKeys';
let keyCache = new WeakMap(); // storage -> Map
on('storage', (ev) => {
  if (ev.key === EDIT_KEYS || ev.key === null) keyCache = new WeakMap();
});

class EditKeys {
  constructor(storage, max) {
    this.storage = storage;
    this.max = max;
    this.mem = new Map(); // without storage (or while writing it fails)
  }

  _load() {
    if (!this.storage) return this.mem;
    let map = keyCache.get(this.storage);
    if (map) return map;
    try {
      const list = JSON.parse(this.storage.getItem(EDIT_KEYS) || '[]');
      map = new Map(Array.isArray(list) ? list.filter((e) => Array.isArray(e) && e.length === 2) : []);
    } catch (_) {
      map = new Map();
    }
    for (const [k, v] of this.mem) { map.delete(k); map.set(k, v); }
    keyCache.set(this.storage, map);
    return map;
  }

  _update(fn) {
    if (this.storage) keyCache.delete(this.storage); // another tab may have changed it
    const map = this._load();
    fn(map);
    while (map.size > this.max) map.delete(map.keys().next().value);
    if (!this.storage) return;
    try {
      this.storage.setItem(EDIT_KEYS, JSON.stringify([...map]));
      this.mem.clear();
    } catch (_) {
      this.mem = new Map(map); // storage full or disabled: keep them for this page
    }
  }

  get(room, id) {
    const v = this._load().get(room + '\u0000' + id);
    return typeof v === 'string' ? v : null;
  }

  set(room, id, key) {
    const k = room + '\u0000' + id;
    this._update((map) => { map.delete(k); map.set(k, key); });
  }

  delete(room, id) {
    this._update((map) => map.delete(room + '\u0000' + id));
  }
}

function defaultStorage() {
  try { return globalThis.localStorage || null; } catch (_) { return null; } // disabled storage throws
}

class ChatClient {
  constructor(opts = {}) {
    this.baseURL = (opts.baseURL || '').replace(/\/+$/, '');
    this.url = opts.url || defaultURL(this.baseURL);
    this._WebSocket = opts.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') throw new TypeError('no WebSocket: give option WebSocket (in Node 20, the ws package)');
    const f = opts.fetch || globalThis.fetch;
    if (typeof f !== 'function') throw new TypeError('no fetch: give option fetch');
    this._fetch = (url, init) => f(url, init); // called unbound: a browser's fetch needs its window
    this.onMessage = opts.onMessage || noop;
    this.onState = opts.onState || noop;
    this.onSubscribed = opts.onSubscribed || noop;
    this.onChange = opts.onChange || noop;
    this.onError = opts.onError || noop;
    this.onPresence = opts.onPresence || noop;
    this.onTyping = opts.onTyping || noop;
    this.minDelay = opts.minDelay ?? 500;
    this.maxDelay = opts.maxDelay ?? 30000;
    this.token = opts.token || null;
    this.getToken = typeof opts.getToken === 'function' ? opts.getToken : null;
    this._tokenRefresh = null; // promise of the token being fetched, shared by all callers
    this._keys = new EditKeys(opts.storage === undefined ? defaultStorage() : opts.storage, opts.maxEditKeys ?? 500);
    this.state = 'offline';
    // room -> {last: seq delivered or given as since, floor: stream seq at a subscription
    // without since, awaiting: a subscribe was sent and its 'subscribed' frame not yet seen,
    // presence: opted in, name: the presence name or null, pres: the presence snapshot
    // {online, anonymous, members: Map name -> connections} of this subscription or null
    // until its presence frame, typedAt: ms of the last typing frame sent}
    this._rooms = new Map();
    this._ws = null;
    this._wanted = false;    // should a socket be open?
    this._everOpen = false;  // has the current connect() had a socket open?
    this._attempt = 0;
    this._retryTimer = null;
    this._openTimer = null;
    this._openedAt = 0;
    this._online = () => {
      if (this._wanted && !this._ws) { this._attempt = 0; this._open(); }
    };
    this._offline = () => { if (this.state !== 'live' && this.state !== 'auth_failed') this._setState('offline'); };
    on('online', this._online);
    on('offline', this._offline);
    if (opts.autoConnect !== false) this.connect();
  }

  static newKey() { return newKey(); }
  static validRoom(room) { return typeof room === 'string' && ROOM_RE.test(room); }
  static applyChange(msg, change) { return applyChange(msg, change); }
  static changeFrom(type, answer) { return changeFrom(type, answer); }

  postedHere(room, id) { return this._keys.get(room, id) !== null; }

  editKey(room, id) { return this._keys.get(room, id) || null; }

  lastSeq(room) {
    const r = this._rooms.get(room);
    return r ? r.last : null;
  }

  subscribe(room, opts) {
    if (!ChatClient.validRoom(room)) throw new TypeError('invalid room: ' + room);
    const o = opts != null && typeof opts === 'object' ? opts : { since: opts };
    const since = o.since;
    if (since != null && !isSeq(since)) throw new TypeError('invalid since: ' + since);
    if (o.name != null && typeof o.name !== 'string') throw new TypeError('invalid name: ' + o.name);
    if (this._rooms.has(room)) this._send({ type: 'unsubscribe', room });
    const r = {
      last: since ?? null, floor: null, awaiting: false,
      presence: o.presence === true, name: o.name || null, pres: null, typedAt: -Infinity,
    };
    this._rooms.set(room, r);
    this._sendSubscribe(room, r);
  }

  unsubscribe(room) {
    if (this._rooms.delete(room)) this._send({ type: 'unsubscribe', room });
  }

  typing(room) {
    const r = this._rooms.get(room);
    if (!r || r.awaiting) return false;
    const now = Date.now();
    if (now - r.typedAt < TYPING_EVERY) return false;
    if (!this._send({ type: 'typing', room })) return false;
    r.typedAt = now;
    return true;
  }

  connect() {
    this._wanted = true;
    if (this._ws) return;
    this._everOpen = false;
    this._attempt = 0;
    clearTimeout(this._retryTimer);
    this._open();
  }

  disconnect() {
    this._wanted = false;
    clearTimeout(this._retryTimer);
    clearTimeout(this._openTimer);
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.close(1000, 'bye');
    this._setState('offline');
  }

  close() {
    this.disconnect();
    this._rooms.clear();
    off('online', this._online);
    off('offline', this._offline);
  }

  async post(room, name, message, idempotencyKey, { retries = 2, signal } = {}) {
    const key = idempotencyKey || newKey();
    const msg = await this._request('POST', this._messagesURL(room), { name, message },
      { 'Idempotency-Key': key }, { retries, signal, key });
    if (msg && typeof msg.id === 'string') {
      this._keys.set(room, msg.id, typeof msg.edit_key === 'string' ? msg.edit_key : '');
    }
    return msg;
  }

  edit(room, id, message, opts) {
    return this._request('PATCH', this._messageURL(room, id), { message }, this._editKeyHeader(room, id), opts);
  }

  async remove(room, id, opts) {
    const tomb = await this._request('DELETE', this._messageURL(room, id), undefined, this._editKeyHeader(room, id), opts);
    this._keys.delete(room, id); // a deletion is final: the key is of no more use
    return tomb;
  }

  react(room, id, emoji, name, opts) {
    const body = { emoji };
    if (name != null && name !== '') body.name = name;
    return this._request('POST', this._messageURL(room, id) + '/reactions', body, {}, opts);
  }

  unreact(room, id, emoji, name, opts) {
    const q = name != null && name !== '' ? '?' + new URLSearchParams({ name }).toString() : '';
    return this._request('DELETE', this._messageURL(room, id) + '/reactions/' + encodeURIComponent(emoji) + q, undefined, {}, opts);
  }

  async history(room, { before, after, limit } = {}) {
    const q = new URLSearchParams();
    if (before != null) q.set('before', String(before));
    if (after != null) q.set('after', String(after));
    if (limit != null) q.set('limit', String(limit));
    const qs = q.toString();
    const list = await this._get(this._messagesURL(room) + (qs ? '?' + qs : ''));
    if (!Array.isArray(list)) throw new ChatError(200, 'unexpected history response', null, null);
    return list;
  }

  async rooms({ limit, before } = {}) {
    const q = new URLSearchParams();
    if (limit != null) q.set('limit', String(limit));
    if (before != null) q.set('before', String(before));
    const qs = q.toString();
    const list = await this._get(this.baseURL + '/rooms' + (qs ? '?' + qs : ''));
    if (!Array.isArray(list)) throw new ChatError(200, 'unexpected rooms response', null, null);
    return list;
  }

  async presence(room) {
    const p = await this._get(this.baseURL + '/rooms/' + encodeURIComponent(room) + '/presence');
    if (!p || typeof p !== 'object' || Array.isArray(p)) throw new ChatError(200, 'unexpected presence response', null, null);
    return p;
  }

  // --- internals ---

  // _get sends a GET and resolves to the answer's JSON; a 401/403 asks for a fresh token once.
  // Rejects with ChatError.
  async _get(url) {
    const init = { headers: this._headers({}) };
    let res;
    for (let refreshed = false; ; refreshed = true) {
      try {
        res = await this._fetch(url, init);
      } catch (e) {
        throw new ChatError(0, 'network error: ' + (e && e.message ? e.message : e), null, null);
      }
      if (res.ok) break;
      const err = await ChatError.fromResponse(res, null);
      if (refreshed || !AUTH_STATUS.includes(res.status) || !(await this._refreshAfterHTTP(init, res.status, err))) throw err;
    }
    try {
      return await res.json();
    } catch (e) {
      throw new ChatError(res.status, 'invalid JSON response', null, null);
    }
  }

  _messagesURL(room) { return this.baseURL + '/rooms/' + encodeURIComponent(room) + '/messages'; }

  _messageURL(room, id) { return this._messagesURL(room) + '/' + encodeURIComponent(id); }

  _editKeyHeader(room, id) {
    const k = this.editKey(room, id);
    return k ? { 'Edit-Key': k } : {};
  }

  // _request sends a JSON request (body undefined: none) and resolves to the answer's JSON.
  // Network errors and 502/503/504 are retried (honouring Retry-After); 401/403 ask for a
  // fresh token once (a 403 only when the request carried a token: without one it concerns
  // the request, not a token). Rejects with ChatError.
  async _request(method, url, body, headers, { retries = 2, signal, key = null } = {}) {
    const h = this._headers(headers);
    if (body !== undefined) h['Content-Type'] = 'application/json';
    const init = { method, headers: h, signal };
    if (body !== undefined) init.body = JSON.stringify(body);
    let refreshed = false; // at most one fresh token per call
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        res = await this._fetch(url, init);
      } catch (e) {
        if ((signal && signal.aborted) || attempt >= retries) {
          throw new ChatError(0, 'network error: ' + (e && e.message ? e.message : e), null, key);
        }
        await sleep(this._delay(attempt));
        continue;
      }
      if (res.ok) return res.json();
      const err = await ChatError.fromResponse(res, key);
      const tokenRefused = res.status === 401 || (res.status === 403 && init.headers['Authorization']);
      if (tokenRefused && !refreshed) {
        refreshed = true;
        if (await this._refreshAfterHTTP(init, res.status, err)) { attempt--; continue; }
        throw err;
      }
      if (attempt >= retries || ![502, 503, 504].includes(res.status)) throw err;
      await sleep(err.retryAfter != null ? Math.min(err.retryAfter, 10) * 1000 : this._delay(attempt));
    }
  }

  _headers(h) {
    h['Accept'] = 'application/json';
    if (this.token) h['Authorization'] = 'Bearer ' + this.token;
    return h;
  }

  // _freshToken asks getToken for a token other than the refused one; it resolves to it, or
  // to null when there is none. Concurrent callers share one call.
  _freshToken(refused, info) {
    if (!this.getToken) return Promise.resolve(null);
    if (!this._tokenRefresh) {
      const p = Promise.resolve()
        .then(() => this.getToken(info))
        .catch((e) => { console.error('chat: getToken', e); return null; });
      this._tokenRefresh = p;
      p.finally(() => { if (this._tokenRefresh === p) this._tokenRefresh = null; });
    }
    return this._tokenRefresh.then((t) => {
      if (typeof t !== 'string' || !t || t === refused) return null;
      this.token = t;
      return t;
    });
  }

  // _refreshAfterHTTP handles a 401/403: with a fresh token it updates init's Authorization
  // and reports true (send again); without one it reports the failure and false.
  async _refreshAfterHTTP(init, status, err) {
    const refused = init.headers['Authorization'] ? init.headers['Authorization'].slice(7) : null;
    // Another call may have refreshed the token meanwhile.
    const t = this.token && this.token !== refused ? this.token : await this._freshToken(refused, { source: 'http', status });
    if (t) {
      init.headers['Authorization'] = 'Bearer ' + t;
      return true;
    }
    try { this.onError({ source: 'http', status, error: err.error, auth: true }); } catch (e) { console.error(e); }
    return false;
  }

  // _authClosed handles a websocket closed with 4401/4403: reconnect with a fresh token, or
  // stop and say so.
  async _authClosed(refused, code, reason) {
    // A post may have refreshed the token since this socket sent it.
    const changed = this.token && this.token !== refused;
    if (changed || this.getToken) this._setState('reconnecting');
    const t = changed ? this.token : await this._freshToken(refused, { source: 'ws', code });
    if (!this._wanted || this._ws) return; // disconnect() or connect() meanwhile
    if (t) { this._scheduleReconnect(); return; }
    this._wanted = false;
    clearTimeout(this._retryTimer);
    this._setState('auth_failed');
    try { this.onError({ source: 'ws', code, reason, auth: true }); } catch (e) { console.error(e); }
  }

  _setState(s) {
    if (s === this.state) return;
    this.state = s;
    try { this.onState(s); } catch (e) { console.error(e); }
  }

  _delay(attempt) {
    const d = Math.min(this.maxDelay, this.minDelay * Math.pow(2, attempt));
    return d / 2 + Math.random() * d / 2;
  }

  _open() {
    clearTimeout(this._retryTimer);
    this._setState(this._everOpen ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new this._WebSocket(this.url);
    } catch (e) {
      this.onError({ source: 'ws', error: String(e) });
      this._wanted = false;
      this._setState('offline');
      return;
    }
    this._ws = ws;
    let sentToken = null; // the token this socket authenticated with
    this._openTimer = setTimeout(() => { if (ws.readyState === CONNECTING) ws.close(); }, CONNECT_TIMEOUT);
    ws.onopen = () => {
      if (this._ws !== ws) return;
      clearTimeout(this._openTimer);
      this._everOpen = true;
      this._openedAt = Date.now();
      this._setState('live');
      sentToken = this.token;
      if (sentToken) ws.send(JSON.stringify({ type: 'auth', token: sentToken }));
      for (const [room, r] of this._rooms) this._sendSubscribe(room, r);
    };
    ws.onmessage = (ev) => { if (this._ws === ws) this._frame(ev.data); };
    ws.onerror = noop; // a close event always follows
    ws.onclose = (ev) => {
      clearTimeout(this._openTimer);
      if (this._ws !== ws) return;
      this._ws = null;
      for (const r of this._rooms.values()) r.pres = null; // the next socket's presence frame replaces it
      if (ev.code === 1008 || ev.code === 1009) {
        console.error('chat: server closed the socket', ev.code, ev.reason);
        this.onError({ source: 'ws', code: ev.code, reason: ev.reason });
      }
      if (!this._wanted) { this._setState('offline'); return; }
      if (AUTH_CLOSE.includes(ev.code)) { this._authClosed(sentToken, ev.code, ev.reason); return; }
      this._scheduleReconnect();
    };
  }

  _scheduleReconnect() {
    if (this._openedAt && Date.now() - this._openedAt > STABLE_AFTER) this._attempt = 0;
    this._openedAt = 0;
    const delay = this._delay(this._attempt++);
    this._everOpen = true; // from now on we are reconnecting
    this._setState(globalThis.navigator?.onLine === false ? 'offline' : 'reconnecting');
    this._retryTimer = setTimeout(() => this._open(), delay);
  }

  _send(obj) {
    const ws = this._ws;
    if (!ws || ws.readyState !== OPEN) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  _sendSubscribe(room, r) {
    const f = { type: 'subscribe', room };
    const since = r.last ?? r.floor;
    if (since != null) f.since = since;
    if (r.presence) {
      f.presence = true;
      if (r.name) f.name = r.name;
    }
    r.pres = null; // this subscription's presence frame starts a new snapshot
    // Until its 'subscribed' frame arrives, frames for the room belong to an earlier
    // subscription on this socket (re-subscribe) and are dropped.
    if (this._send(f)) r.awaiting = true;
  }

  _frame(data) {
    if (typeof data !== 'string') return;
    let f;
    try { f = JSON.parse(data); } catch (e) { console.error('chat: bad frame', e); return; }
    if (!f || typeof f !== 'object') return;
    switch (f.type) {
      case 'message': {
        const r = this._rooms.get(f.room);
        if (!r || r.awaiting || !isSeq(f.seq)) return;
        if (r.last != null && f.seq <= r.last) return; // already delivered
        r.last = f.seq;
        const msg = { id: f.id, room: f.room, name: f.name, message: f.message, sent_at: f.sent_at, seq: f.seq };
        // The current state of a message resumed from history (MongoDB).
        if (typeof f.edited_at === 'string') msg.edited_at = f.edited_at;
        if (f.deleted === true) msg.deleted = true;
        if (isCounts(f.reactions) && Object.keys(counts(f.reactions)).length) msg.reactions = counts(f.reactions);
        try { this.onMessage(msg); } catch (e) { console.error(e); }
        return;
      }
      case 'edited':
      case 'deleted':
      case 'reactions': {
        const r = this._rooms.get(f.room);
        if (!r || r.awaiting || !isSeq(f.seq) || typeof f.id !== 'string') return;
        if (r.last != null && f.seq <= r.last) return; // already delivered
        r.last = f.seq;
        const c = { type: f.type, room: f.room, id: f.id, seq: f.seq };
        if (f.type === 'edited') { c.message = String(f.message ?? ''); c.edited_at = f.edited_at; }
        if (f.type === 'reactions') c.reactions = counts(f.reactions);
        try { this.onChange(c); } catch (e) { console.error(e); }
        return;
      }
      case 'subscribed': {
        const r = this._rooms.get(f.room);
        if (r) r.awaiting = false;
        // Subscribed without since: resume from the stream position if the socket drops before
        // the first message.
        if (r && r.last == null && isSeq(f.seq)) r.floor = f.seq;
        try { this.onSubscribed(f); } catch (e) { console.error(e); }
        return;
      }
      case 'presence':
      case 'join':
      case 'leave': {
        const r = this._rooms.get(f.room);
        if (!r || r.awaiting || !r.presence) return;
        if (f.type === 'presence') r.pres = { online: 0, anonymous: 0, members: new Map() };
        else if (!r.pres) return; // a diff before its snapshot
        const p = r.pres;
        if (isSeq(f.online)) p.online = f.online;
        if (isSeq(f.anonymous)) p.anonymous = f.anonymous;
        for (const m of Array.isArray(f.members) ? f.members : []) {
          if (!m || typeof m.name !== 'string' || !isSeq(m.connections)) continue;
          if (m.connections > 0) p.members.set(m.name, m.connections); else p.members.delete(m.name);
        }
        const members = [...p.members].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
          .map(([name, connections]) => ({ name, connections }));
        try { this.onPresence(f.room, { online: p.online, anonymous: p.anonymous, members }); } catch (e) { console.error(e); }
        return;
      }
      case 'typing': {
        const r = this._rooms.get(f.room);
        if (!r || r.awaiting || typeof f.name !== 'string' || !f.name) return;
        try { this.onTyping({ room: f.room, name: f.name }); } catch (e) { console.error(e); }
        return;
      }
      case 'error':
        try { this.onError({ source: 'ws', error: String(f.error), room: f.room }); } catch (e) { console.error(e); }
        return;
      default:
        return; // unknown frame types are ignored (forward compatible)
    }
  }
}

ChatClient.ChatError = ChatError;

globalThis.ChatClient = ChatClient;
})();
