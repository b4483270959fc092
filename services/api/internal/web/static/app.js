/*
 * app.js: the chat page. Uses ChatClient from chat.js.
 *
 * Room: from the URL (#room, #room=x or ?room=x), default "general"; joining a room sets #room.
 * Opening a room loads its latest page of history, then subscribes with since = the last seq of
 * that page, so the seam between history and live messages has no gap and no duplicate. The list
 * is keyed and ordered by seq, so messages from history, the socket and our own POST responses
 * merge without doubles.
 *
 * With auth on (a token, see below) the server names the author from the token and ignores a
 * name sent: the name field shows the token's name (or subject), read-only, and is not asked for.
 *
 * Changes (issue 11): each message shows its reactions (counts, live) with a button to add one
 * from the allowlist; a reaction of yours (remembered in localStorage, with the name it was made
 * under) is pressed, and pressing it again takes it back. Messages this browser posted have Edit
 * and Delete: with auth off those whose edit key this browser holds (chat.js keeps them), with
 * auth on those it posted (the server decides: a 403 shows as an error). An edit is inline (Enter
 * saves, Shift+Enter is a new line, Escape cancels); a deletion asks once more and leaves a
 * tombstone. Changes arriving for messages not shown yet are kept briefly, so a page of history
 * that was read before them still ends in their state.
 *
 * Rooms (issue 12): the sidebar (sidebar.js) lists your rooms; the one socket subscribes every
 * one of them (the others from their last seen seq, so their unread badges count what was
 * missed, also across a reload) and the room shown with presence on and your name: who is
 * online and who is typing show above and below its messages (presence.js); typing in the
 * message box tells the others (chat.js sends at most one typing frame per 2 s). Rooms the
 * server lists (GET /rooms) are offered too. The page fills the window: the messages take the
 * room left between the room's header and the composer at the bottom, and stay scrolled to the
 * newest one while you are there.
 */
(function () {
  'use strict';

  const PAGE = 50;         // history page size
  const MAX_SHOWN = 1000;  // messages kept in the DOM when following the live end
  const NAME_KEY = 'chat.name';
  const REACTED_KEY = 'chat.reacted'; // [[room \0 id \0 emoji, the name reacted under, or '@iss sub' with a token], ...]
  const MAX_REACTED = 500;            // reactions remembered (the oldest are forgotten)
  const MAX_RECENT = 500;             // recent changes kept for messages shown later
  const DEFAULT_REACTIONS = ['👍', '❤️', '😂', '🎉', '😮', '😢'];

  const $ = (id) => document.getElementById(id);
  const DISCOVER_EVERY = 60000; // ms between GET /rooms while the page is visible
  const el = {
    roomForm: $('room-form'), roomInput: $('room-input'), roomTitle: $('room-title'),
    state: $('state'),
    form: $('send-form'), name: $('name'), message: $('message'), send: $('send'), error: $('error'),
    scroller: $('scroller'), list: $('messages'), older: $('load-older'), olderStatus: $('older-status'),
    empty: $('empty'),
  };

  let room = null;
  let gen = 0;              // bumps on every room switch; stale async results are dropped
  let shown = new Map();    // seq -> entry {msg, li, ...} (see render)
  let byId = new Map();     // id -> entry
  let seqs = [];            // shown seqs, ascending
  let recent = new Map();   // id -> changes received for it (the last MAX_RECENT over all ids)
  let recentCount = 0;
  let allowed = DEFAULT_REACTIONS.slice(); // the reactions offered
  let hasOlder = false;
  let sending = false;
  let queued = false;       // Send pressed while a send was in flight
  let pending = null;       // {sig, key}: Idempotency-Key reused while retrying the same send
  let stick = true;         // the list is scrolled to the newest message: keep it there

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

  // tokenClaims reads the token's payload, unverified ({} when unreadable): only for what
  // this page shows; the server checks the token.
  function tokenClaims(t) {
    try {
      const p = JSON.parse(new TextDecoder().decode(Uint8Array.from(
        atob(t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0))));
      return p && typeof p === 'object' ? p : {};
    } catch (_) {
      return {};
    }
  }
  const claims = token ? tokenClaims(token) : {};
  // person is who reacts as far as this page can tell: the token's issuer and subject with
  // auth on (only to show which reactions are yours), else ''.
  const person = token ? '@' + String(claims.iss || '') + ' ' + String(claims.sub || '') : '';
  // tokenName is the author name the server takes from the token (its name, else its
  // subject): with a token the name field shows it and cannot be edited.
  const tokenName = token ? (String(claims.name || '').trim() || String(claims.sub || '').trim()) : '';

  const SIGNED_OUT = 'Live updates stopped: your sign-in was refused or has expired. ' +
    'Open this page again with a fresh ?token= to continue.';

  // presenceOn: chat.js speaks presence and typing (issue 12). Without it the page works as
  // before, with badges.
  const presenceOn = typeof ChatClient.prototype.typing === 'function';

  const sidebar = new ChatSidebar({
    validRoom: ChatClient.validRoom,
    onPick: (r) => { sidebar.setOpen(false); go(r); },
    onRoomsChanged(added, removed) {
      for (const r of removed) if (r !== room) client.unsubscribe(r);
      for (const r of added) if (r !== room) subscribeRoom(r, sidebar.seen(r), false);
      paintTitle();
    },
  });
  const presence = new ChatPresence();

  const client = new ChatClient({
    token,
    onMessage(msg) {
      if (msg.room !== room) {
        sidebar.countMessage(msg, client.postedHere(msg.room, msg.id));
        paintTitle();
        return;
      }
      presence.posted(msg.name);
      const follow = atBottom();
      if (add(msg) && follow) { trim(); scrollToBottom(); }
      sidebar.markSeen(room, client.lastSeq(room));
    },
    onChange(change) {
      if (change.room !== room) { sidebar.countChange(change); paintTitle(); return; }
      applyChange(change);
      sidebar.markSeen(room, client.lastSeq(room));
    },
    onSubscribed(f) {
      // A room subscribed without a seen seq: what is there now counts as seen.
      if (f.room !== room && sidebar.seen(f.room) === undefined) sidebar.markSeen(f.room, f.seq);
    },
    onPresence(r, p) { if (r === room) presence.show(p); },
    onTyping(t) { if (t && t.room === room && t.name !== myName()) presence.typing(t.name); },
    onState(state) {
      el.state.textContent = state === 'auth_failed' ? 'signed out' : state;
      el.state.dataset.state = state;
      // The client stopped: the server refused the token (expired, invalid or not for this
      // room) and this page has no way to get another one.
      if (state === 'auth_failed') showError(SIGNED_OUT);
    },
    onError(err) {
      if (err.auth) return; // shown by onState or by the failed post/history call
      // A sidebar room refused (not allowed by the token, or the server is full): its badge
      // stays still; the room shown says so when opened.
      if (err.room && err.room !== room) { console.warn('chat: #' + err.room + ': ' + err.error); return; }
      if (err.error) showError('Live updates: ' + err.error);
      else if (err.code) showError('Live updates: connection closed (' + err.code + (err.reason ? ': ' + err.reason : '') + ')');
    },
  });
  window.chatApp = { client }; // for debugging and tests

  // --- remembered reactions ---

  // reacted remembers which reactions this browser made: room, id, emoji -> the name it was
  // made under (with a token: '@iss sub'), in localStorage shared by the browser's tabs.
  const reacted = {
    cache: null,
    load() {
      if (this.cache) return this.cache;
      let m = new Map();
      try {
        const list = JSON.parse(localStorage.getItem(REACTED_KEY) || '[]');
        if (Array.isArray(list)) m = new Map(list.filter((e) => Array.isArray(e) && e.length === 2));
      } catch (_) { /* storage disabled or garbled: start empty */ }
      this.cache = m;
      return m;
    },
    key(r, id, emoji) { return r + '\u0000' + id + '\u0000' + emoji; },
    get(r, id, emoji) { return this.load().get(this.key(r, id, emoji)); },
    update(fn) {
      this.cache = null; // another tab may have changed it
      const m = this.load();
      fn(m);
      while (m.size > MAX_REACTED) m.delete(m.keys().next().value);
      try { localStorage.setItem(REACTED_KEY, JSON.stringify([...m])); } catch (_) { /* kept for this page */ }
    },
    set(r, id, emoji, name) { this.update((m) => { const k = this.key(r, id, emoji); m.delete(k); m.set(k, name); }); },
    delete(r, id, emoji) { this.update((m) => m.delete(this.key(r, id, emoji))); },
  };
  window.addEventListener('storage', (ev) => {
    if (ev.key === REACTED_KEY || ev.key === null) { reacted.cache = null; shown.forEach(paintReactions); }
  });

  // --- message list ---

  function fmtTime(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return '';
    const now = new Date();
    const time = d.toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' });
    if (d.toDateString() === now.toDateString()) return time;
    return d.toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric' }) + ' ' + time;
  }

  function make(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text != null) e.textContent = text;
    return e;
  }

  function button(className, text, onClick) {
    const b = make('button', className, text);
    b.type = 'button';
    b.addEventListener('click', onClick);
    return b;
  }

  // render builds the entry of a message: its <li> and the parts paint updates.
  function render(msg) {
    const e = { msg, editor: null, confirming: false, busy: false, actionsMode: null };
    const li = make('li', 'msg');
    li.dataset.seq = String(msg.seq);
    li.dataset.id = msg.id;
    const meta = make('div', 'meta');
    e.name = make('span', 'name');
    const time = document.createElement('time');
    time.dateTime = msg.sent_at;
    time.title = new Date(msg.sent_at).toLocaleString();
    time.textContent = fmtTime(msg.sent_at);
    e.edited = make('span', 'edited', '(edited)');
    e.actions = make('span', 'msg-actions');
    meta.append(e.name, time, e.edited, e.actions);
    e.body = make('div', 'body');
    e.reactions = make('div', 'reactions');
    e.reactions.setAttribute('role', 'group');
    e.reactions.setAttribute('aria-label', 'Reactions');
    e.picker = make('span', 'picker');
    e.picker.hidden = true;
    e.addReaction = button('add-reaction', '☺+', () => setPicker(e, e.picker.hidden));
    e.addReaction.title = 'Add a reaction';
    e.addReaction.setAttribute('aria-label', 'Add a reaction');
    e.addReaction.setAttribute('aria-expanded', 'false');
    e.reactions.append(e.addReaction, e.picker);
    li.append(meta, e.body, e.reactions);
    li.addEventListener('keydown', (ev) => {
      if (ev.key !== 'Escape') return;
      if (!e.picker.hidden) { setPicker(e, false); e.addReaction.focus(); ev.stopPropagation(); }
      else if (e.confirming) { e.confirming = false; paintActions(e); focusAction(e, 'delete'); ev.stopPropagation(); }
    });
    e.li = li;
    paint(e);
    return e;
  }

  // paint shows the entry's message in its current state.
  function paint(e) {
    const m = e.msg;
    e.li.classList.toggle('deleted', !!m.deleted);
    e.name.textContent = m.name;
    e.name.hidden = !!m.deleted;
    e.edited.hidden = m.deleted || !m.edited_at;
    if (m.edited_at) e.edited.title = 'edited ' + new Date(m.edited_at).toLocaleString();
    if (m.deleted) {
      e.editor = null;
      e.confirming = false;
      if (!e.body.querySelector('.tombstone')) e.body.replaceChildren(make('div', 'tombstone', 'message deleted'));
    } else if (!e.editor) {
      let text = e.body.querySelector('.text');
      if (!text) { text = make('div', 'text'); e.body.replaceChildren(text); }
      if (text.textContent !== m.message) text.textContent = m.message;
    }
    paintActions(e);
    paintReactions(e);
  }

  function canChange(m) {
    // With a token the server knows who posted; without one, the edit key is the proof.
    return !m.deleted && client.postedHere(room, m.id) && (!!token || !!client.editKey(room, m.id));
  }

  // paintActions shows Edit and Delete (or the delete confirmation) on messages we may change;
  // the buttons are rebuilt only when what they are changes, so focus stays put.
  function paintActions(e) {
    const mode = !canChange(e.msg) || e.editor ? 'none' : e.confirming ? 'confirm' : 'normal';
    if (mode === e.actionsMode) {
      for (const b of e.actions.querySelectorAll('button')) b.disabled = e.busy;
      return;
    }
    e.actionsMode = mode;
    if (mode === 'none') { e.actions.replaceChildren(); return; }
    if (mode === 'confirm') {
      const yes = button('danger confirm-delete', 'Delete', () => removeMessage(e));
      const no = button('cancel-delete', 'Cancel', () => { e.confirming = false; paintActions(e); focusAction(e, 'delete'); });
      e.actions.replaceChildren(make('span', 'confirm-text', 'Delete this message?'), yes, no);
      yes.disabled = no.disabled = e.busy;
      return;
    }
    const edit = button('edit', 'Edit', () => startEdit(e));
    edit.setAttribute('aria-label', 'Edit message');
    const del = button('delete', 'Delete', () => { e.confirming = true; paintActions(e); focusAction(e, 'cancel-delete'); });
    del.setAttribute('aria-label', 'Delete message');
    e.actions.replaceChildren(edit, del);
    for (const b of e.actions.querySelectorAll('button')) b.disabled = e.busy;
  }

  function focusAction(e, cls) {
    const b = e.actions.querySelector('button.' + cls);
    if (b) b.focus();
  }

  // reactionOrder: the allowed emoji first (in their order), then any others.
  function reactionOrder(r) {
    const have = Object.keys(r).filter((k) => r[k] > 0);
    return allowed.filter((k) => have.includes(k)).concat(have.filter((k) => !allowed.includes(k)).sort());
  }

  // isMine: the reaction is remembered as made from this browser (with a token: by the same
  // person; without one: under whichever name, which taking it back then uses).
  function isMine(m, emoji) {
    if (!(m.reactions && m.reactions[emoji] > 0)) return false;
    const who = reacted.get(room, m.id, emoji);
    return who !== undefined && (!token || who === person);
  }

  // paintReactions updates the reaction buttons in place (a focused one keeps focus).
  function paintReactions(e) {
    const m = e.msg;
    e.reactions.hidden = !!m.deleted;
    if (m.deleted) {
      for (const b of e.reactions.querySelectorAll('button.reaction')) b.remove();
      e.picker.hidden = true;
      return;
    }
    const r = m.reactions || {};
    const old = new Map([...e.reactions.querySelectorAll('button.reaction')].map((b) => [b.dataset.emoji, b]));
    let before = e.addReaction;
    for (const emoji of reactionOrder(r).reverse()) {
      let b = old.get(emoji);
      old.delete(emoji);
      if (!b) {
        b = button('reaction', '', () => toggleReaction(e, emoji));
        b.dataset.emoji = emoji;
      }
      const mine = isMine(m, emoji);
      const label = emoji + ' ' + r[emoji];
      if (b.textContent !== label) b.textContent = label;
      b.setAttribute('aria-pressed', String(mine));
      b.title = r[emoji] + (r[emoji] === 1 ? ' reaction' : ' reactions') + (mine ? ' (yours: press to take it back)' : '');
      b.disabled = e.busy;
      if (b.nextSibling !== before) e.reactions.insertBefore(b, before);
      before = b;
    }
    for (const b of old.values()) {
      if (document.activeElement === b) e.addReaction.focus();
      b.remove();
    }
    e.addReaction.disabled = e.busy;
    for (const b of e.picker.children) {
      b.disabled = e.busy;
      b.setAttribute('aria-pressed', String(isMine(m, b.dataset.emoji)));
    }
  }

  function setPicker(e, open) {
    if (open && !e.picker.children.length) {
      for (const emoji of allowed) {
        const b = button('pick', emoji, () => { setPicker(e, false); e.addReaction.focus(); toggleReaction(e, emoji); });
        b.dataset.emoji = emoji;
        b.setAttribute('aria-label', 'React with ' + emoji);
        e.picker.append(b);
      }
      paintReactions(e);
    }
    e.picker.hidden = !open;
    e.addReaction.setAttribute('aria-expanded', String(open));
    if (open && e.picker.firstChild) e.picker.firstChild.focus();
  }

  // add inserts msg in seq order unless already shown; it reports whether it did.
  function add(msg) {
    if (!msg || !Number.isSafeInteger(msg.seq) || typeof msg.id !== 'string' || typeof msg.name !== 'string' ||
        typeof msg.message !== 'string' || shown.has(msg.seq)) return false;
    // Changes that came before the message was shown (it may come from a page of history read
    // before them): applying them again is harmless, each part keeps its newest change.
    for (const c of (recent.get(msg.id) || []).slice().sort((x, y) => x.seq - y.seq)) ChatClient.applyChange(msg, c);
    let lo = 0, hi = seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (seqs[mid] < msg.seq) lo = mid + 1; else hi = mid;
    }
    const e = render(msg);
    el.list.insertBefore(e.li, lo < seqs.length ? shown.get(seqs[lo]).li : null);
    seqs.splice(lo, 0, msg.seq);
    shown.set(msg.seq, e);
    byId.set(msg.id, e);
    el.empty.hidden = true;
    return true;
  }

  // applyChange applies a change (a frame, or the answer to our own change) to its message.
  function applyChange(c) {
    if (!c || c.room !== room) return;
    const list = recent.get(c.id) || [];
    recent.delete(c.id);
    list.push(c);
    recent.set(c.id, list); // the most recently changed last
    for (recentCount++; recentCount > MAX_RECENT;) {
      const [id, l] = recent.entries().next().value;
      l.shift();
      recentCount--;
      if (!l.length) recent.delete(id);
    }
    const e = byId.get(c.id);
    if (e && ChatClient.applyChange(e.msg, c)) paint(e);
  }

  // trim drops the oldest messages when following a busy room, so the page stays light.
  function trim() {
    if (seqs.length <= MAX_SHOWN) return;
    for (const seq of seqs.splice(0, seqs.length - MAX_SHOWN)) {
      const e = shown.get(seq);
      e.li.remove();
      shown.delete(seq);
      byId.delete(e.msg.id);
    }
    setOlder(true);
  }

  function clearList() {
    el.list.replaceChildren();
    shown = new Map();
    byId = new Map();
    seqs = [];
    recent = new Map();
    recentCount = 0;
  }

  // --- changing messages ---

  function startEdit(e) {
    if (e.editor || e.msg.deleted) return;
    const box = make('textarea', 'edit-box');
    box.value = e.msg.message;
    box.rows = Math.min(8, e.msg.message.split('\n').length + 1);
    box.setAttribute('aria-label', 'Edit message');
    const save = button('primary save-edit', 'Save', () => saveEdit(e));
    const cancel = button('cancel-edit', 'Cancel', () => endEdit(e));
    const row = make('div', 'edit-actions');
    row.append(make('span', 'hint', 'Enter to save, Escape to cancel'), cancel, save);
    const wrap = make('div', 'editor');
    wrap.append(box, row);
    box.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.altKey && !ev.isComposing && ev.keyCode !== 229) {
        ev.preventDefault();
        saveEdit(e);
      } else if (ev.key === 'Escape') {
        ev.preventDefault();
        ev.stopPropagation();
        endEdit(e);
      }
    });
    e.editor = { wrap, box, save, cancel };
    e.body.replaceChildren(wrap);
    paintActions(e);
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  // endEdit closes the editor and shows the message as it now is.
  function endEdit(e) {
    if (!e.editor) return;
    const hadFocus = e.editor.wrap.contains(document.activeElement);
    e.editor = null;
    e.body.replaceChildren();
    paint(e);
    if (hadFocus) {
      if (e.actions.querySelector('button.edit')) focusAction(e, 'edit');
      else el.message.focus();
    }
  }

  async function saveEdit(e) {
    const ed = e.editor;
    if (!ed || e.busy) return;
    const text = ed.box.value;
    if (!text.trim()) { showError('The message must not be empty (use Delete to take it back).'); ed.box.focus(); return; }
    if ([...text.trim()].length > 4096) { showError('The message is too long (at most 4096 characters).'); ed.box.focus(); return; }
    if (text.trim() === e.msg.message) { endEdit(e); return; }
    const target = room, g = gen;
    setBusy(e, true);
    try {
      const answer = await client.edit(target, e.msg.id, text);
      if (g !== gen) return;
      clearError();
      applyChange(ChatClient.changeFrom('edited', answer));
      endEdit(e);
    } catch (err) {
      if (g !== gen) return;
      showError('Not saved: ' + describe(err));
      if (err.status === 404 || err.status === 409) endEdit(e); // gone or deleted: nothing to edit
      else if (e.editor) e.editor.box.focus();
    } finally {
      setBusy(e, false);
    }
  }

  async function removeMessage(e) {
    if (e.busy) return;
    const target = room, g = gen;
    setBusy(e, true);
    try {
      const answer = await client.remove(target, e.msg.id);
      if (g !== gen) return;
      clearError();
      e.confirming = false;
      applyChange(ChatClient.changeFrom('deleted', answer));
      paint(e);
      el.message.focus();
    } catch (err) {
      if (g !== gen) return;
      e.confirming = false;
      paintActions(e);
      showError('Not deleted: ' + describe(err));
    } finally {
      setBusy(e, false);
    }
  }

  async function toggleReaction(e, emoji) {
    const m = e.msg;
    if (m.deleted || e.busy) return;
    const mine = isMine(m, emoji);
    let name = '';
    if (!token) {
      name = mine ? reacted.get(room, m.id, emoji) : el.name.value.trim();
      if (!name) { showError('Please enter your name to react.'); el.name.focus(); return; }
    }
    const who = token ? person : name;
    const target = room, g = gen;
    setBusy(e, true);
    try {
      const answer = mine ? await client.unreact(target, m.id, emoji, name) : await client.react(target, m.id, emoji, name);
      if (mine) reacted.delete(target, m.id, emoji); else reacted.set(target, m.id, emoji, who);
      if (g !== gen) return;
      clearError();
      applyChange(ChatClient.changeFrom('reactions', answer));
    } catch (err) {
      if (g !== gen) return;
      showError('Reaction not saved: ' + describe(err));
    } finally {
      setBusy(e, false);
    }
  }

  function setBusy(e, busy) {
    e.busy = busy;
    if (e.editor) { e.editor.save.disabled = busy; e.editor.box.readOnly = busy; }
    paintActions(e);
    paintReactions(e);
  }

  function atBottom() {
    const s = el.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 48;
  }

  function scrollToBottom() { el.scroller.scrollTop = el.scroller.scrollHeight; stick = true; }

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

  // myName is the name others see: the token's with auth on, else the name field's.
  function myName() { return token ? tokenName : el.name.value.trim(); }

  // presenceName is the name given when subscribing: none with a token (the server takes the
  // token's) or when the field holds no valid name (then anonymous). Every room of the sidebar
  // is subscribed under it, as this browser is there too (the server counts each subscription).
  function presenceName() {
    const n = token ? '' : el.name.value.trim();
    return n && [...n].length <= 64 && !/[\u0000-\u001f\u007f-\u009f]/.test(n) ? n : '';
  }

  let subscribedName = ''; // the name the rooms were subscribed under

  // subscribeRoom subscribes r from since (null: live from now): the room shown with presence
  // and typing frames, the others without (for their badges).
  function subscribeRoom(r, since, shownRoom) {
    if (!presenceOn) { client.subscribe(r, since ?? undefined); return; }
    const opts = {};
    if (since != null) opts.since = since;
    if (shownRoom) opts.presence = true;
    if (subscribedName) opts.name = subscribedName;
    client.subscribe(r, opts);
  }

  // renamed subscribes the room shown again, from where it is, when the name to show in its
  // presence changed. The other rooms take the new name when next subscribed (when opened or
  // left): subscribing them all at once could trip the pusher's command rate limit.
  function renamed() {
    const n = presenceName();
    if (!presenceOn || n === subscribedName) return;
    subscribedName = n;
    if (room && client.lastSeq(room) != null) subscribeRoom(room, client.lastSeq(room), true);
  }

  function paintTitle() {
    const n = sidebar.unreadTotal();
    document.title = (n ? '(' + n + ') ' : '') + '#' + room + ' · Chat';
  }

  // go shows room r (a valid name), through the address so the back button returns.
  function go(r) {
    clearError();
    if (r === room) { sidebar.add(r); return; }
    location.hash = r; // hashchange switches the room
  }

  async function switchRoom(next) {
    if (next === room) return;
    const prev = room;
    room = next;
    const g = ++gen;
    pending = null;
    clearList();
    presence.reset();
    sidebar.setCurrent(room);
    // The room left stays subscribed, for its badge, from where it was read (without presence).
    if (prev && sidebar.has(prev)) {
      const last = client.lastSeq(prev);
      sidebar.markSeen(prev, last);
      if (presenceOn) subscribeRoom(prev, last ?? sidebar.seen(prev), false);
    } else if (prev) {
      client.unsubscribe(prev);
    }
    el.roomInput.value = room;
    el.roomTitle.textContent = '#' + room;
    paintTitle();
    el.empty.hidden = true;
    setOlder(false, 'Loading…');
    let page;
    try {
      page = await client.history(room, { limit: PAGE });
    } catch (e) {
      if (g !== gen) return;
      showError('Could not load history: ' + describe(e));
      setOlder(true); // lets the user retry; with nothing shown it loads the latest page
      subscribeRoom(room, null, true);
      return;
    }
    if (g !== gen) return;
    page.forEach(add);
    setOlder(page.length === PAGE, page.length === PAGE ? '' : (page.length ? 'Beginning of #' + room : ''));
    el.empty.hidden = seqs.length > 0;
    const last = page.length ? page[page.length - 1].seq : 0;
    subscribeRoom(room, last, true);
    sidebar.markSeen(room, last);
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
      else if (e.status === 404) s = 'not found: ' + s;
      else if (e.status === 409) s = 'conflict: ' + s;
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
    // With a token the server names the author from it and ignores the name sent.
    const name = token ? tokenName : el.name.value;
    const message = el.message.value;
    if (!token && !name.trim()) { showError('Please enter your name.'); el.name.focus(); return; }
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
      if (msg && msg.room === room) {
        if (add(msg)) trim();
        else if (byId.has(msg.id)) paintActions(byId.get(msg.id)); // its frame came first: now we hold its key
      }
      if (target === room) scrollToBottom();
      renamed(); // the name posted under is the one to show as online
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

  if (token) {
    el.name.value = tokenName;
    el.name.readOnly = true;
    el.name.title = 'The name of your sign-in';
  } else {
    try { el.name.value = localStorage.getItem(NAME_KEY) || ''; } catch (_) { /* storage disabled */ }
  }
  el.name.addEventListener('input', () => {
    if (token) return; // read-only: the token's name is not the one to remember
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
    if (!ChatClient.validRoom(r)) { showError('Invalid room: use 1-64 letters, digits, _ or -.'); el.roomInput.focus(); return; }
    sidebar.setOpen(false);
    go(r);
  });
  window.addEventListener('hashchange', () => switchRoom(roomFromURL()));
  el.older.addEventListener('click', loadOlder);

  // Typing tells the room (chat.js rate-limits it); a new name shows in the room's presence.
  el.message.addEventListener('input', () => {
    if (presenceOn && room && el.message.value.trim()) client.typing(room);
  });
  el.name.addEventListener('change', renamed);

  // Stay at the newest message while the window, the composer or the last message changes size.
  el.scroller.addEventListener('scroll', () => { stick = atBottom(); }, { passive: true });
  if (typeof ResizeObserver === 'function') {
    const ro = new ResizeObserver(() => { if (stick) scrollToBottom(); });
    ro.observe(el.scroller);
    ro.observe(el.list);
  }

  // Rooms the server lists: now, then every minute while the page is visible.
  async function discover() {
    if (typeof client.rooms !== 'function' || document.hidden) return;
    try { sidebar.setActive(await client.rooms({ limit: 50 })); } catch (_) { /* the list stays as it was */ }
  }
  setInterval(discover, DISCOVER_EVERY);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) discover(); });

  subscribedName = presenceName();
  const first = roomFromURL();
  for (const r of sidebar.rooms()) if (r !== first) subscribeRoom(r, sidebar.seen(r), false);
  switchRoom(first);
  discover();
  if (!token && !el.name.value) el.name.focus(); else el.message.focus();
})();
