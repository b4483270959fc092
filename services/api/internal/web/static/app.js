/*
 * app.js: the chat page. Uses ChatClient from chat.js.
 *
 * Room: from the URL (#room, #room=x or ?room=x), default "general"; joining a room sets #room.
 * Opening a room loads its latest page of history, then subscribes with since = the last seq of
 * that page, so the seam between history and live messages has no gap and no duplicate. The list
 * is keyed and ordered by seq, so messages from history, the socket and our own POST responses
 * merge without doubles.
 */
(function () {
  'use strict';

  const PAGE = 50;         // history page size
  const MAX_SHOWN = 1000;  // messages kept in the DOM when following the live end
  const NAME_KEY = 'chat.name';

  const $ = (id) => document.getElementById(id);
  const el = {
    roomForm: $('room-form'), roomInput: $('room-input'), roomTitle: $('room-title'),
    state: $('state'),
    form: $('send-form'), name: $('name'), message: $('message'), send: $('send'), error: $('error'),
    scroller: $('scroller'), list: $('messages'), older: $('load-older'), olderStatus: $('older-status'),
    empty: $('empty'),
  };

  let room = null;
  let gen = 0;              // bumps on every room switch; stale async results are dropped
  let shown = new Map();    // seq -> <li>
  let seqs = [];            // shown seqs, ascending
  let hasOlder = false;
  let sending = false;
  let queued = false;       // Send pressed while a send was in flight
  let pending = null;       // {sig, key}: Idempotency-Key reused while retrying the same send

  // With auth on, a token given once as ?token=<jwt> is kept in localStorage (and removed
  // from the address bar); the server then takes the author name from it.
  const TOKEN_KEY = 'chat.token';
  let token = new URLSearchParams(location.search).get('token');
  try {
    if (token) {
      localStorage.setItem(TOKEN_KEY, token);
      const u = new URL(location.href);
      u.searchParams.delete('token');
      history.replaceState(null, '', u);
    } else {
      token = localStorage.getItem(TOKEN_KEY);
    }
  } catch (_) { /* storage disabled */ }

  const SIGNED_OUT = 'Live updates stopped: your sign-in was refused or has expired. ' +
    'Open this page again with a fresh ?token= to continue.';

  const client = new ChatClient({
    token,
    onMessage(msg) {
      if (msg.room !== room) return;
      const follow = atBottom();
      if (add(msg) && follow) { trim(); scrollToBottom(); }
    },
    onState(state) {
      el.state.textContent = state === 'auth_failed' ? 'signed out' : state;
      el.state.dataset.state = state;
      // The client stopped: the server refused the token (expired, invalid or not for this
      // room) and this page has no way to get another one.
      if (state === 'auth_failed') showError(SIGNED_OUT);
    },
    onError(err) {
      if (err.auth) return; // shown by onState or by the failed post/history call
      if (err.error) showError('Live updates: ' + err.error);
      else if (err.code) showError('Live updates: connection closed (' + err.code + (err.reason ? ': ' + err.reason : '') + ')');
    },
  });
  window.chatApp = { client }; // for debugging and tests

  // --- message list ---

  function fmtTime(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return '';
    const now = new Date();
    const time = d.toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' });
    if (d.toDateString() === now.toDateString()) return time;
    return d.toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric' }) + ' ' + time;
  }

  function render(msg) {
    const li = document.createElement('li');
    li.className = 'msg';
    li.dataset.seq = String(msg.seq);
    const meta = document.createElement('div');
    meta.className = 'meta';
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = msg.name;
    const time = document.createElement('time');
    time.dateTime = msg.sent_at;
    time.title = new Date(msg.sent_at).toLocaleString();
    time.textContent = fmtTime(msg.sent_at);
    meta.append(name, time);
    const text = document.createElement('div');
    text.className = 'text';
    text.textContent = msg.message;
    li.append(meta, text);
    return li;
  }

  // add inserts msg in seq order unless already shown; it reports whether it did.
  function add(msg) {
    if (!msg || !Number.isSafeInteger(msg.seq) || typeof msg.name !== 'string' ||
        typeof msg.message !== 'string' || shown.has(msg.seq)) return false;
    let lo = 0, hi = seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (seqs[mid] < msg.seq) lo = mid + 1; else hi = mid;
    }
    const li = render(msg);
    el.list.insertBefore(li, lo < seqs.length ? shown.get(seqs[lo]) : null);
    seqs.splice(lo, 0, msg.seq);
    shown.set(msg.seq, li);
    el.empty.hidden = true;
    return true;
  }

  // trim drops the oldest messages when following a busy room, so the page stays light.
  function trim() {
    if (seqs.length <= MAX_SHOWN) return;
    for (const seq of seqs.splice(0, seqs.length - MAX_SHOWN)) {
      shown.get(seq).remove();
      shown.delete(seq);
    }
    setOlder(true);
  }

  function clearList() {
    el.list.replaceChildren();
    shown = new Map();
    seqs = [];
  }

  function atBottom() {
    const s = el.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 48;
  }

  function scrollToBottom() { el.scroller.scrollTop = el.scroller.scrollHeight; }

  function setOlder(more, status) {
    hasOlder = more;
    el.older.hidden = !more;
    el.older.disabled = false;
    el.olderStatus.textContent = status || '';
  }

  // --- rooms ---

  function roomFromURL() {
    let r = '';
    const h = location.hash.replace(/^#/, '');
    try {
      if (h) r = decodeURIComponent(h.startsWith('room=') ? h.slice(5) : h);
      else r = new URLSearchParams(location.search).get('room') || '';
    } catch (_) { r = h; }
    if (!r) return 'general';
    if (!ChatClient.validRoom(r)) {
      showError('Invalid room "' + r + '": use 1-64 letters, digits, _ or -.');
      return 'general';
    }
    return r;
  }

  async function switchRoom(next) {
    if (next === room) return;
    if (room) client.unsubscribe(room);
    room = next;
    const g = ++gen;
    pending = null;
    clearList();
    el.roomInput.value = room;
    el.roomTitle.textContent = '#' + room;
    document.title = '#' + room + ' · Chat';
    el.empty.hidden = true;
    setOlder(false, 'Loading…');
    let page;
    try {
      page = await client.history(room, { limit: PAGE });
    } catch (e) {
      if (g !== gen) return;
      showError('Could not load history: ' + describe(e));
      setOlder(true); // lets the user retry; with nothing shown it loads the latest page
      client.subscribe(room);
      return;
    }
    if (g !== gen) return;
    page.forEach(add);
    setOlder(page.length === PAGE, page.length === PAGE ? '' : (page.length ? 'Beginning of #' + room : ''));
    el.empty.hidden = seqs.length > 0;
    client.subscribe(room, page.length ? page[page.length - 1].seq : 0);
    scrollToBottom();
  }

  async function loadOlder() {
    if (!hasOlder) return;
    const g = gen;
    const before = seqs.length ? seqs[0] : undefined;
    el.older.disabled = true;
    el.olderStatus.textContent = 'Loading…';
    let page;
    try {
      page = await client.history(room, { before, limit: PAGE });
    } catch (e) {
      if (g !== gen) return;
      setOlder(true);
      showError('Could not load older messages: ' + describe(e));
      return;
    }
    if (g !== gen) return;
    const s = el.scroller;
    const fromBottom = s.scrollHeight - s.scrollTop;
    page.forEach(add);
    s.scrollTop = s.scrollHeight - fromBottom; // keep the view where it was
    el.empty.hidden = seqs.length > 0;
    const more = page.length === PAGE;
    setOlder(more, more ? '' : (seqs.length ? 'Beginning of #' + room : ''));
  }

  // --- sending ---

  function describe(e) {
    if (e instanceof ChatClient.ChatError) {
      if (e.status === 0) return 'network error, please try again (it will not be posted twice)';
      let s = e.error;
      if (e.status === 401) s = 'not signed in: ' + s + ' (open this page again with a fresh ?token=)';
      else if (e.status === 403) s = 'not allowed: ' + s;
      else if (e.status === 429) s = 'too many messages: ' + s + (e.retryAfter != null ? ' (try again in ' + e.retryAfter + ' s)' : '');
      else if (e.status >= 500) s += ' (try again; it will not be posted twice)';
      return s;
    }
    return String(e && e.message ? e.message : e);
  }

  function showError(text) {
    el.error.textContent = text;
    el.error.hidden = false;
  }

  function clearError() {
    el.error.hidden = true;
    el.error.textContent = '';
  }

  async function send() {
    if (sending) { queued = true; return; } // sent when the one in flight is done
    const name = el.name.value;
    const message = el.message.value;
    if (!name.trim()) { showError('Please enter your name.'); el.name.focus(); return; }
    if (!message.trim()) { showError('Please enter a message.'); el.message.focus(); return; }
    if ([...message.trim()].length > 4096) { showError('The message is too long (at most 4096 characters).'); return; }
    const target = room;
    const sig = target + '\u0000' + name + '\u0000' + message;
    if (!pending || pending.sig !== sig) pending = { sig, key: ChatClient.newKey() };
    const key = pending.key;
    sending = true;
    el.send.disabled = true;
    el.send.textContent = 'Sending…';
    el.message.value = ''; // typing on while it is sent starts the next message
    try {
      const msg = await client.post(target, name, message, key);
      if (pending && pending.key === key) pending = null;
      clearError();
      if (msg && msg.room === room && add(msg)) trim();
      if (target === room) scrollToBottom();
    } catch (e) {
      // Give the text back; sending it again unchanged reuses the Idempotency-Key, so a
      // send that did reach the server is not stored twice.
      el.message.value = el.message.value ? message + '\n' + el.message.value : message;
      queued = false;
      showError('Not sent: ' + describe(e));
    } finally {
      sending = false;
      el.send.disabled = false;
      el.send.textContent = 'Send';
      el.message.focus();
    }
    if (queued) { queued = false; if (el.message.value.trim()) send(); }
  }

  // --- wiring ---

  try { el.name.value = localStorage.getItem(NAME_KEY) || ''; } catch (_) { /* storage disabled */ }
  el.name.addEventListener('input', () => {
    try { localStorage.setItem(NAME_KEY, el.name.value); } catch (_) { /* storage disabled */ }
  });

  el.form.addEventListener('submit', (ev) => { ev.preventDefault(); send(); });
  // Enter sends, Shift+Enter inserts a new line. enterSent also swallows the line break of
  // a key press whose keydown was handled (synthetic key events insert it regardless).
  let enterSent = false;
  el.message.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.altKey && !ev.isComposing && ev.keyCode !== 229) {
      ev.preventDefault();
      enterSent = true;
      send();
    }
  });
  el.message.addEventListener('beforeinput', (ev) => {
    if (enterSent && (ev.inputType === 'insertLineBreak' || ev.inputType === 'insertParagraph')) ev.preventDefault();
  });
  el.message.addEventListener('keyup', (ev) => { if (ev.key === 'Enter') enterSent = false; });
  el.message.addEventListener('input', () => { if (!el.error.hidden && el.message.value) clearError(); });

  el.roomForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const r = el.roomInput.value.trim();
    if (!ChatClient.validRoom(r)) { showError('Invalid room: use 1-64 letters, digits, _ or -.'); return; }
    clearError();
    if (r === room) return;
    location.hash = r; // hashchange switches the room (and the back button returns)
  });
  window.addEventListener('hashchange', () => switchRoom(roomFromURL()));
  el.older.addEventListener('click', loadOlder);

  switchRoom(roomFromURL());
  if (!el.name.value) el.name.focus(); else el.message.focus();
})();
