/*
 * presence.js: who is online in the room shown and who is typing there (used by app.js;
 * defines window.ChatPresence).
 *
 * show(presence) paints the room's whole presence ({online, anonymous, members: [{name,
 * connections}]}, as chat.js's onPresence gives it): a summary ("3 online: Ann, Bob +1") that
 * opens the full list with each member's connection count and the anonymous count.
 * typing(name) shows "Ann is typing…" for TYPING_MS; a message from Ann (posted(name)) clears
 * it at once. reset() clears both, for another room. Everything is rendered with textContent.
 */
(function (global) {
  'use strict';

  const TYPING_MS = 5000;
  const SUMMARY_NAMES = 3;

  function make(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text != null) e.textContent = text;
    return e;
  }

  class ChatPresence {
    constructor() {
      const $ = (id) => document.getElementById(id);
      this.el = {
        box: $('presence'), summary: $('presence-summary'), list: $('presence-list'), anon: $('presence-anon'),
        typing: $('typing'),
      };
      this.typers = new Map(); // name -> timer
      this.el.box.hidden = true;
    }

    reset() {
      this.el.box.hidden = true;
      this.el.list.replaceChildren();
      this.el.anon.hidden = true;
      this.el.summary.textContent = '';
      for (const t of this.typers.values()) clearTimeout(t);
      this.typers.clear();
      this._paintTyping();
    }

    show(p) {
      if (!p || typeof p !== 'object') return;
      const members = (Array.isArray(p.members) ? p.members : [])
        .filter((m) => m && typeof m.name === 'string' && m.connections > 0);
      const anonymous = Number.isSafeInteger(p.anonymous) && p.anonymous > 0 ? p.anonymous : 0;
      const online = Number.isSafeInteger(p.online) ? p.online : members.reduce((n, m) => n + m.connections, anonymous);
      let s = online + ' online';
      if (members.length) {
        s += ': ' + members.slice(0, SUMMARY_NAMES).map((m) => m.name).join(', ');
        if (members.length > SUMMARY_NAMES) s += ' +' + (members.length - SUMMARY_NAMES) + ' more';
      }
      this.el.summary.textContent = s;
      this.el.list.replaceChildren(...members.map((m) => {
        const li = make('li', 'member', m.name);
        li.dataset.name = m.name;
        li.dataset.connections = String(m.connections);
        if (m.connections > 1) {
          const c = make('span', 'connections', '×' + m.connections);
          c.title = m.connections + ' connections';
          li.append(c);
        }
        return li;
      }));
      this.el.anon.hidden = anonymous === 0;
      this.el.anon.textContent = anonymous ? anonymous + ' anonymous' : '';
      this.el.anon.dataset.count = String(anonymous);
      this.el.box.hidden = false;
    }

    typing(name) {
      if (typeof name !== 'string' || !name) return;
      clearTimeout(this.typers.get(name));
      this.typers.delete(name); // the latest typer last
      this.typers.set(name, setTimeout(() => { this.typers.delete(name); this._paintTyping(); }, TYPING_MS));
      this._paintTyping();
    }

    // posted: name's message arrived, so name is no longer typing it.
    posted(name) {
      if (!this.typers.has(name)) return;
      clearTimeout(this.typers.get(name));
      this.typers.delete(name);
      this._paintTyping();
    }

    _paintTyping() {
      const names = [...this.typers.keys()];
      let s = '';
      if (names.length === 1) s = names[0] + ' is typing…';
      else if (names.length === 2) s = names[0] + ' and ' + names[1] + ' are typing…';
      else if (names.length === 3) s = names[0] + ', ' + names[1] + ' and ' + names[2] + ' are typing…';
      else if (names.length > 3) s = 'Several people are typing…';
      if (this.el.typing.textContent !== s) this.el.typing.textContent = s;
    }
  }

  global.ChatPresence = ChatPresence;
})(window);
