/*
 * chat.js: a small browser client for the chat service (no dependencies).
 *
 * Include it with <script src="/chat.js"></script>; it defines window.ChatClient.
 *
 *   const client = new ChatClient({
 *     url:          'wss://host/ws',  // optional; default: same-origin /ws (ws: or wss: by page scheme)
 *     baseURL:      '',               // optional; HTTP API origin for post/history, default same origin
 *     onMessage(msg)     {},          // {id, room, name, message, sent_at, seq}: each message of a
 *                                     //   subscribed room, exactly once, in seq order per room
 *     onState(state)     {},          // 'connecting' | 'live' | 'reconnecting' | 'offline' |
 *                                     //   'auth_failed' (token refused and no fresh one: stopped)
 *     onSubscribed(frame){},          // {type:'subscribed', room, seq}: once per (re)subscription
 *     onError(err)       {},          // {source:'ws', error, room?} for server error frames,
 *                                     //   {source:'ws', code, reason} for closes 1008/1009 (client bug)
 *                                     //   and 4401/4403 (token refused; auth: true),
 *                                     //   {source:'http', status, error, auth: true} for 401/403
 *     minDelay: 500, maxDelay: 30000, // reconnect backoff in ms (exponential, capped, with jitter)
 *     autoConnect: true,              // open the socket in the constructor
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
 *   client.unsubscribe(room)
 *   client.lastSeq(room)            // last seq delivered (or given as since) for the room, or null
 *   client.state                    // current connection state (see onState)
 *   await client.post(room, name, message, idempotencyKey)
 *                                   // POST /rooms/{room}/messages; resolves to the stored message.
 *                                   //   Network errors and 502/503/504 are retried (twice, honouring
 *                                   //   Retry-After) with the same Idempotency-Key, so nothing doubles;
 *                                   //   omit the key to get a fresh random one. Rejects with ChatError.
 *   await client.history(room, {before, after, limit})
 *                                   // GET /rooms/{room}/messages: array, oldest first. Rejects with ChatError.
 *   client.disconnect()             // close the socket, keep rooms and seqs (state 'offline')
 *   client.connect()                // reconnect now; every room resumes with since = its last seq
 *                                   //   (after 'auth_failed': set client.token first)
 *   client.close()                  // disconnect for good and forget all rooms
 *
 *   ChatClient.newKey()             // random Idempotency-Key: a ULID (26 chars, ms time + 80 random bits)
 *   ChatClient.validRoom(room)      // 1-64 chars of [A-Za-z0-9_-]
 *   ChatClient.ChatError            // Error with .status (0 = network), .error (server reason),
 *                                   //   .retryAfter (seconds or null), .key (Idempotency-Key used)
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
(function (global) {
  'use strict';

  const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
  const CONNECT_TIMEOUT = 10000; // ms a socket may stay in CONNECTING
  const STABLE_AFTER = 5000;     // ms a socket must stay open before the backoff resets
  const AUTH_CLOSE = [4401, 4403]; // websocket closes for a refused token
  const AUTH_STATUS = [401, 403];  // HTTP answers for a refused token

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
    global.crypto.getRandomValues(b);
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

  function defaultURL() {
    const loc = global.location;
    return (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host + '/ws';
  }

  function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
  function noop() {}
  function isSeq(n) { return Number.isSafeInteger(n) && n >= 0; }

  class ChatClient {
    constructor(opts = {}) {
      this.url = opts.url || defaultURL();
      this.baseURL = (opts.baseURL || '').replace(/\/+$/, '');
      this.onMessage = opts.onMessage || noop;
      this.onState = opts.onState || noop;
      this.onSubscribed = opts.onSubscribed || noop;
      this.onError = opts.onError || noop;
      this.minDelay = opts.minDelay ?? 500;
      this.maxDelay = opts.maxDelay ?? 30000;
      this.token = opts.token || null;
      this.getToken = typeof opts.getToken === 'function' ? opts.getToken : null;
      this._tokenRefresh = null; // promise of the token being fetched, shared by all callers
      this.state = 'offline';
      // room -> {last: seq delivered or given as since, floor: stream seq at a subscription
      // without since, awaiting: a subscribe was sent and its 'subscribed' frame not yet seen}
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
      global.addEventListener('online', this._online);
      global.addEventListener('offline', this._offline);
      if (opts.autoConnect !== false) this.connect();
    }

    static newKey() { return newKey(); }
    static validRoom(room) { return typeof room === 'string' && ROOM_RE.test(room); }

    lastSeq(room) {
      const r = this._rooms.get(room);
      return r ? r.last : null;
    }

    subscribe(room, since) {
      if (!ChatClient.validRoom(room)) throw new TypeError('invalid room: ' + room);
      if (since != null && !isSeq(since)) throw new TypeError('invalid since: ' + since);
      if (this._rooms.has(room)) this._send({ type: 'unsubscribe', room });
      const r = { last: since ?? null, floor: null, awaiting: false };
      this._rooms.set(room, r);
      this._sendSubscribe(room, r);
    }

    unsubscribe(room) {
      if (this._rooms.delete(room)) this._send({ type: 'unsubscribe', room });
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
      global.removeEventListener('online', this._online);
      global.removeEventListener('offline', this._offline);
    }

    async post(room, name, message, idempotencyKey, { retries = 2, signal } = {}) {
      const key = idempotencyKey || newKey();
      const url = this.baseURL + '/rooms/' + encodeURIComponent(room) + '/messages';
      const init = {
        method: 'POST',
        headers: this._headers({ 'Content-Type': 'application/json', 'Idempotency-Key': key }),
        body: JSON.stringify({ name, message }),
        signal,
      };
      let refreshed = false; // at most one fresh token per call
      for (let attempt = 0; ; attempt++) {
        let res;
        try {
          res = await fetch(url, init);
        } catch (e) {
          if ((signal && signal.aborted) || attempt >= retries) {
            throw new ChatError(0, 'network error: ' + (e && e.message ? e.message : e), null, key);
          }
          await sleep(this._delay(attempt));
          continue;
        }
        if (res.ok) return res.json();
        const err = await ChatError.fromResponse(res, key);
        if (AUTH_STATUS.includes(res.status) && !refreshed) {
          refreshed = true;
          if (await this._refreshAfterHTTP(init, res.status, err)) { attempt--; continue; }
          throw err;
        }
        if (attempt >= retries || ![502, 503, 504].includes(res.status)) throw err;
        await sleep(err.retryAfter != null ? Math.min(err.retryAfter, 10) * 1000 : this._delay(attempt));
      }
    }

    async history(room, { before, after, limit } = {}) {
      const q = new URLSearchParams();
      if (before != null) q.set('before', String(before));
      if (after != null) q.set('after', String(after));
      if (limit != null) q.set('limit', String(limit));
      const qs = q.toString();
      const url = this.baseURL + '/rooms/' + encodeURIComponent(room) + '/messages' + (qs ? '?' + qs : '');
      const init = { headers: this._headers({}) };
      let res;
      for (let refreshed = false; ; refreshed = true) {
        try {
          res = await fetch(url, init);
        } catch (e) {
          throw new ChatError(0, 'network error: ' + (e && e.message ? e.message : e), null, null);
        }
        if (res.ok) break;
        const err = await ChatError.fromResponse(res, null);
        if (refreshed || !AUTH_STATUS.includes(res.status) || !(await this._refreshAfterHTTP(init, res.status, err))) throw err;
      }
      const list = await res.json();
      if (!Array.isArray(list)) throw new ChatError(res.status, 'unexpected history response', null, null);
      return list;
    }

    // --- internals ---

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
        ws = new WebSocket(this.url);
      } catch (e) {
        this.onError({ source: 'ws', error: String(e) });
        this._wanted = false;
        this._setState('offline');
        return;
      }
      this._ws = ws;
      let sentToken = null; // the token this socket authenticated with
      this._openTimer = setTimeout(() => { if (ws.readyState === WebSocket.CONNECTING) ws.close(); }, CONNECT_TIMEOUT);
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
      this._setState(global.navigator.onLine === false ? 'offline' : 'reconnecting');
      this._retryTimer = setTimeout(() => this._open(), delay);
    }

    _send(obj) {
      const ws = this._ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return false;
      ws.send(JSON.stringify(obj));
      return true;
    }

    _sendSubscribe(room, r) {
      const f = { type: 'subscribe', room };
      const since = r.last ?? r.floor;
      if (since != null) f.since = since;
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
          try { this.onMessage(msg); } catch (e) { console.error(e); }
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
        case 'error':
          try { this.onError({ source: 'ws', error: String(f.error), room: f.room }); } catch (e) { console.error(e); }
          return;
        default:
          return; // unknown frame types are ignored (forward compatible)
      }
    }
  }

  ChatClient.ChatError = ChatError;
  global.ChatClient = ChatClient;
})(window);
