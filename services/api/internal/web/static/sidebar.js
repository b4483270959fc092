/*
 * sidebar.js: the room sidebar of the chat page (used by app.js; defines window.ChatSidebar).
 *
 * Your rooms: the rooms this browser joined, kept in localStorage (chat.rooms) and shared by
 * its tabs; the page subscribes every one of them on its socket. Each shows an unread badge:
 * the messages of the room with a seq above the last one seen there (chat.seen: room -> seq,
 * kept in localStorage, only ever raised), not deleted and not posted from this browser.
 * A reload subscribes with since = the last seen seq, so the badge counts what was missed
 * again; a message deleted meanwhile stops counting, edits and reactions never count.
 *
 * Active rooms: rooms the server lists (GET /rooms) that are not yours yet, with how many are
 * online; picking one joins it.
 *
 * On narrow screens the sidebar folds away behind the Rooms button of the top bar.
 * Everything is rendered with textContent.
 */
(function (global) {
  'use strict';

  const ROOMS_KEY = 'chat.rooms';
  const SEEN_KEY = 'chat.seen';
  const MAX_ROOMS = 30; // rooms kept (the oldest joined go): all are subscribed at once, within
                        // the pusher's command burst (CHAT_WS_COMMAND_BURST, default 50)
  const MAX_ACTIVE = 20; // active rooms shown

  function load(key, fallback) {
    try {
      const v = JSON.parse(global.localStorage.getItem(key) || 'null');
      return v == null ? fallback : v;
    } catch (_) {
      return fallback; // storage disabled or garbled
    }
  }

  function store(key, value) {
    try { global.localStorage.setItem(key, JSON.stringify(value)); } catch (_) { /* kept for this page */ }
  }

  function make(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text != null) e.textContent = text;
    return e;
  }

  function byName(a, b) {
    const x = a.toLowerCase(), y = b.toLowerCase();
    return x < y ? -1 : x > y ? 1 : a < b ? -1 : a > b ? 1 : 0;
  }

  class ChatSidebar {
    // opts: {validRoom(room) -> bool, onPick(room): the user picked a room,
    //        onRoomsChanged(added, removed): rooms joined or left by the sidebar itself (its
    //        Leave buttons, the oldest dropped beyond MAX_ROOMS) or by another tab}
    constructor(opts) {
      this.validRoom = opts.validRoom;
      this.onPick = opts.onPick;
      this.onRoomsChanged = opts.onRoomsChanged || (() => {});
      const $ = (id) => document.getElementById(id);
      this.el = {
        toggle: $('rooms-toggle'), toggleBadge: $('toggle-badge'), sidebar: $('sidebar'), scrim: $('scrim'),
        list: $('room-list'), activeTitle: $('discover-title'), activeList: $('discover-list'),
      };
      this.current = null;
      this.mine = new Set(this._storedRooms());
      this.seenSeq = this._storedSeen();
      this.unread = new Map(); // room -> Map(id -> seq)
      this.active = [];        // [{room, online, ...}] from GET /rooms
      this.items = new Map();  // room -> {li, button, badge, online}

      this.el.toggle.addEventListener('click', () => this.setOpen(!this.isOpen()));
      this.el.scrim.addEventListener('click', () => this.setOpen(false));
      this.el.sidebar.addEventListener('keydown', (ev) => {
        if (ev.key === 'Escape' && this.isOpen()) { ev.preventDefault(); this.setOpen(false); this.el.toggle.focus(); }
      });
      global.addEventListener('storage', (ev) => {
        if (ev.key === ROOMS_KEY || ev.key === null) this._syncRooms();
        if (ev.key === SEEN_KEY || ev.key === null) this._syncSeen();
      });
      this.render();
    }

    _storedRooms() {
      const list = load(ROOMS_KEY, []);
      return Array.isArray(list) ? list.filter((r) => this.validRoom(r)).slice(-MAX_ROOMS) : [];
    }

    _storedSeen() {
      const m = new Map();
      const o = load(SEEN_KEY, {});
      if (o && typeof o === 'object' && !Array.isArray(o)) {
        for (const [r, s] of Object.entries(o)) if (this.validRoom(r) && Number.isSafeInteger(s) && s >= 0) m.set(r, s);
      }
      return m;
    }

    // rooms: your rooms, by name.
    rooms() { return [...this.mine].sort(byName); }

    has(room) { return this.mine.has(room); }

    // add makes room one of yours (kept for the next visit).
    add(room) {
      if (this.mine.has(room)) return;
      this.mine.add(room);
      const dropped = [];
      for (const r of this.mine) {
        if (this.mine.size <= MAX_ROOMS) break;
        if (r !== this.current && r !== room) { this.mine.delete(r); this.unread.delete(r); dropped.push(r); } // the oldest joined go
      }
      this._saveRooms();
      this.render();
      if (dropped.length) this.onRoomsChanged([], dropped);
    }

    remove(room) {
      if (!this.mine.delete(room)) return;
      this.unread.delete(room);
      this._saveRooms();
      this._saveSeen();
      this.render();
    }

    setCurrent(room) {
      this.current = room;
      this.unread.delete(room);
      this.add(room);
      this.render();
    }

    // seen is the last seq seen in room, or undefined.
    seen(room) { return this.seenSeq.get(room); }

    // markSeen raises the last seq seen in room to seq (messages up to it are read).
    markSeen(room, seq) {
      if (!Number.isSafeInteger(seq) || seq < 0 || seq <= (this.seenSeq.get(room) ?? -1)) return;
      this.seenSeq.set(room, seq);
      this._saveSeen();
      if (this._dropSeen(room)) this.render();
    }

    // countMessage counts a message of one of your rooms, other than the current one, as
    // unread unless it was seen, is deleted, or ownPost (posted from this browser).
    countMessage(msg, ownPost) {
      const r = msg.room;
      if (r === this.current || !this.mine.has(r) || msg.deleted || ownPost) return;
      if (msg.seq <= (this.seenSeq.get(r) ?? -1)) return;
      let m = this.unread.get(r);
      if (!m) { m = new Map(); this.unread.set(r, m); }
      if (m.has(msg.id)) return;
      m.set(msg.id, msg.seq);
      this.render();
    }

    // countChange: a deleted message stops counting; edits and reactions do not count.
    countChange(c) {
      if (c.type !== 'deleted') return;
      const m = this.unread.get(c.room);
      if (m && m.delete(c.id)) this.render();
    }

    unreadCount(room) { const m = this.unread.get(room); return m ? m.size : 0; }

    unreadTotal() {
      let n = 0;
      for (const m of this.unread.values()) n += m.size;
      return n;
    }

    // setActive shows the rooms the server lists (GET /rooms) that are not yours.
    setActive(list) {
      this.active = Array.isArray(list) ? list.filter((x) => x && this.validRoom(x.room)) : [];
      this.render();
    }

    isOpen() { return document.body.classList.contains('sidebar-open'); }

    // setOpen opens or folds the sidebar (on narrow screens; wide ones always show it).
    setOpen(open) {
      document.body.classList.toggle('sidebar-open', open);
      this.el.toggle.setAttribute('aria-expanded', String(open));
      this.el.scrim.hidden = !open;
      if (open) {
        const cur = this.items.get(this.current);
        (cur ? cur.button : this.el.list.querySelector('button') || document.getElementById('room-input')).focus();
      }
    }

    // render shows the rooms; items are kept and updated so focus stays put.
    render() {
      const names = this.rooms();
      const keep = new Set(names);
      for (const [r, it] of this.items) {
        if (!keep.has(r)) { it.li.remove(); this.items.delete(r); }
      }
      let before = this.el.list.firstChild;
      for (const r of names) {
        let it = this.items.get(r);
        if (!it) { it = this._item(r); this.items.set(r, it); }
        if (it.li !== before) this.el.list.insertBefore(it.li, before);
        before = it.li.nextSibling;
        this._paintItem(r, it);
      }
      this._renderActive();
      const total = this.unreadTotal();
      this.el.toggleBadge.hidden = total === 0;
      this.el.toggleBadge.textContent = total ? String(total) : '';
      this.el.toggle.setAttribute('aria-label', 'Rooms' + (total ? ', ' + total + ' unread' : ''));
    }

    _item(r) {
      const li = make('li');
      li.dataset.room = r;
      const button = make('button', 'room');
      button.type = 'button';
      const name = make('span', 'room-name', '#' + r);
      const online = make('span', 'online');
      const badge = make('span', 'badge');
      button.append(name, online, badge);
      button.addEventListener('click', () => this.onPick(r));
      const leave = make('button', 'leave', '×');
      leave.type = 'button';
      leave.title = 'Leave #' + r;
      leave.setAttribute('aria-label', 'Leave #' + r);
      leave.addEventListener('click', () => {
        const next = leave.closest('li').nextElementSibling || leave.closest('li').previousElementSibling;
        this.remove(r);
        this.onRoomsChanged([], [r]);
        const b = next && next.querySelector('button.room');
        if (b) b.focus();
      });
      li.append(button, leave);
      return { li, button, badge, online, leave };
    }

    _paintItem(r, it) {
      const n = this.unreadCount(r);
      const cur = r === this.current;
      if (cur) it.button.setAttribute('aria-current', 'page'); else it.button.removeAttribute('aria-current');
      it.button.classList.toggle('unread', n > 0);
      it.badge.hidden = n === 0;
      it.badge.textContent = n ? String(n) : '';
      it.button.setAttribute('aria-label', '#' + r + (n ? ', ' + n + ' unread' : '') + (cur ? ', current room' : ''));
      const a = this.active.find((x) => x.room === r);
      it.online.textContent = a && a.online > 0 ? String(a.online) + ' online' : '';
      it.leave.hidden = cur; // the room shown stays
    }

    _renderActive() {
      const list = this.active.filter((x) => !this.mine.has(x.room)).slice(0, MAX_ACTIVE);
      this.el.activeTitle.hidden = this.el.activeList.hidden = list.length === 0;
      const focused = this.el.activeList.contains(document.activeElement) ? document.activeElement.dataset.room : null;
      this.el.activeList.replaceChildren(...list.map((x) => {
        const li = make('li');
        const b = make('button', 'room');
        b.type = 'button';
        b.dataset.room = x.room;
        b.append(make('span', 'room-name', '#' + x.room),
          make('span', 'online', Number.isSafeInteger(x.online) && x.online > 0 ? x.online + ' online' : ''));
        b.setAttribute('aria-label', 'Join #' + x.room + (x.online > 0 ? ', ' + x.online + ' online' : ''));
        b.addEventListener('click', () => this.onPick(x.room));
        li.append(b);
        return li;
      }));
      if (focused) {
        const b = [...this.el.activeList.querySelectorAll('button')].find((x) => x.dataset.room === focused);
        if (b) b.focus();
      }
    }

    _saveRooms() { store(ROOMS_KEY, [...this.mine]); }

    // _saveSeen writes the seen seqs of your rooms, merged with what other tabs wrote (the
    // higher seq wins).
    _saveSeen() {
      const stored = this._storedSeen();
      const out = {};
      for (const r of this.mine) {
        const s = Math.max(this.seenSeq.get(r) ?? -1, stored.get(r) ?? -1);
        if (s >= 0) { out[r] = s; this.seenSeq.set(r, s); }
      }
      store(SEEN_KEY, out);
    }

    // _dropSeen forgets the unread messages of room at or below its seen seq.
    _dropSeen(room) {
      const m = this.unread.get(room);
      if (!m) return false;
      const seen = this.seenSeq.get(room) ?? -1;
      let changed = false;
      for (const [id, seq] of m) if (seq <= seen) { m.delete(id); changed = true; }
      return changed;
    }

    // Another tab read a room: what it saw is read here too.
    _syncSeen() {
      for (const [r, s] of this._storedSeen()) if (s > (this.seenSeq.get(r) ?? -1)) this.seenSeq.set(r, s);
      for (const r of this.unread.keys()) this._dropSeen(r);
      this.render();
    }

    // Another tab joined or left rooms.
    _syncRooms() {
      const next = new Set(this._storedRooms());
      if (this.current) next.add(this.current);
      const added = [...next].filter((r) => !this.mine.has(r));
      const removed = [...this.mine].filter((r) => !next.has(r));
      if (!added.length && !removed.length) return;
      this.mine = next;
      for (const r of removed) this.unread.delete(r);
      this.render();
      this.onRoomsChanged(added, removed);
    }
  }

  global.ChatSidebar = ChatSidebar;
})(window);
