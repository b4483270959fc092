/*
 * The admin page: polls /admin/api/stats and /admin/api/deadletters, shows every node's
 * numbers (rates are computed here from two answers' counters), small charts of the last
 * minutes drawn on canvas, and requeues or discards dead letters after a confirmation.
 * Every text from the server is rendered with textContent.
 *
 * Authentication on: the JSON routes need a token with the "admin" role. It is taken
 * from ?token= once (kept in sessionStorage, removed from the address bar), else from
 * the token form, else from the chat page's stored token (localStorage chat.token).
 */
(function () {
  'use strict';

  const REFRESH_MS = 1500;
  const HISTORY_MS = 5 * 60 * 1000; // the charts' span
  const TOKEN_KEY = 'chat.adminToken';

  let token = new URLSearchParams(location.search).get('token');
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    const u = new URL(location.href);
    u.searchParams.delete('token');
    history.replaceState(null, '', u.pathname + u.search + u.hash);
  } else {
    token = sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem('chat.token') || '';
  }

  const $ = (id) => document.getElementById(id);
  const statusEl = $('status');
  const dlStatus = $('dl-status');
  const tokenForm = $('token-form');

  tokenForm.addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    tokenForm.hidden = true;
    refresh();
  });

  class HTTPError extends Error {
    constructor(status, reason) { super(reason); this.status = status; }
  }

  async function api(path, init) {
    init = init || {};
    const headers = new Headers(init.headers || {});
    if (token) headers.set('Authorization', 'Bearer ' + token);
    const res = await fetch(path, Object.assign({}, init, { headers, cache: 'no-store' }));
    let body = null;
    try { body = await res.json(); } catch (_) { body = null; }
    if (!res.ok) {
      const reason = body && typeof body.error === 'string' ? body.error : 'HTTP ' + res.status;
      if (res.status === 401 || res.status === 403) tokenForm.hidden = false;
      throw new HTTPError(res.status, reason);
    }
    return body;
  }

  // el builds an element; children are nodes or strings (as text).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  const fmt = (v, digits) => (v === undefined || v === null || Number.isNaN(v)) ? '–'
    : Number(v).toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 1 : digits });

  function fmtBytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return fmt(n, i ? 1 : 0) + ' ' + units[i];
  }

  function fmtDuration(s) {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + (s % 60) + 's';
    return s + 's';
  }

  // Metrics: series name "name" or "name{labels}". sum adds every series of a name.
  function sum(metrics, name) {
    let t = 0, seen = false;
    for (const [k, v] of Object.entries(metrics || {})) {
      if (k === name || k.startsWith(name + '{')) { t += v; seen = true; }
    }
    return seen ? t : undefined;
  }

  // byLabel splits a name's series by one label's value.
  function byLabel(metrics, name, label) {
    const out = {};
    const re = new RegExp(label + '="((?:[^"\\\\]|\\\\.)*)"');
    for (const [k, v] of Object.entries(metrics || {})) {
      if (!k.startsWith(name + '{')) continue;
      const m = re.exec(k);
      const key = m ? m[1] : '';
      out[key] = (out[key] || 0) + v;
    }
    return out;
  }

  // Rates: each node's previous answer, by service/node/address.
  const prev = new Map();
  const nodeKey = (n) => n.service + '|' + n.node + '|' + (n.addr || '');

  function rate(cur, old, dt) {
    if (cur === undefined || old === undefined || dt <= 0) return undefined;
    return cur >= old ? (cur - old) / dt : undefined; // a restart resets counters
  }

  function nodeRates(n) {
    const p = prev.get(nodeKey(n));
    const dt = p ? (Date.parse(n.at) - Date.parse(p.at)) / 1000 : 0;
    const m = n.metrics || {}, pm = p ? p.metrics || {} : {};
    const r = { dt };
    r.frames = rate(sum(m, 'chat_pusher_frames_sent_total'), sum(pm, 'chat_pusher_frames_sent_total'), dt);
    r.stored = rate(sum(m, 'chat_persister_stored_total'), sum(pm, 'chat_persister_stored_total'), dt);
    const posts = byLabel(m, 'chat_api_posts_total', 'status');
    const oldPosts = byLabel(pm, 'chat_api_posts_total', 'status');
    r.posts = {};
    r.postsTotal = undefined;
    for (const [status, v] of Object.entries(posts)) {
      const x = rate(v, oldPosts[status] !== undefined ? oldPosts[status] : (p ? 0 : undefined), dt);
      if (x !== undefined) { r.posts[status] = x; r.postsTotal = (r.postsTotal || 0) + x; }
    }
    if (n.service === 'api' && p && r.postsTotal === undefined) r.postsTotal = 0;
    const dSum = rate(sum(m, 'chat_persister_lag_seconds_sum'), sum(pm, 'chat_persister_lag_seconds_sum'), 1);
    const dCount = rate(sum(m, 'chat_persister_lag_seconds_count'), sum(pm, 'chat_persister_lag_seconds_count'), 1);
    r.lagMs = dCount ? dSum / dCount * 1000 : (dCount === 0 ? 0 : undefined);
    return r;
  }

  function state(n) {
    if (n.draining) return el('span', { class: 'state-draining' }, 'draining');
    if (!n.ready) return el('span', { class: 'state-down', title: n.not_ready || '' }, 'not ready: ' + (n.not_ready || '?'));
    return el('span', { class: 'state-ready' }, 'ready');
  }

  const num = (v, d) => el('td', { class: 'num' }, fmt(v, d));

  function renderNodes(nodes) {
    const tbody = $('nodes').tBodies[0];
    const rows = [];
    const totals = { posts: 0, frames: 0, stored: 0, lag: [], have: false };
    for (const n of nodes) {
      const m = n.metrics || {};
      const r = nodeRates(n);
      if (r.dt > 0) totals.have = true;
      const postsText = Object.keys(r.posts).sort().map((s) => s + ': ' + fmt(r.posts[s])).join(', ');
      if (r.postsTotal) totals.posts += r.postsTotal;
      if (r.frames) totals.frames += r.frames;
      if (r.stored) totals.stored += r.stored;
      if (r.lagMs !== undefined && n.service === 'persister') { totals.lag.push(r.lagMs); }
      const version = n.version + (n.commit ? ' ' + n.commit.slice(0, 12) : '');
      const pusher = n.service === 'pusher', persister = n.service === 'persister', isAPI = n.service === 'api';
      rows.push(el('tr', { 'data-service': n.service, 'data-node': n.node, 'data-addr': n.addr || '' },
        el('td', {}, n.service), el('td', {}, n.node), el('td', {}, n.addr || ''),
        el('td', { title: n.commit || '' }, version), el('td', {}, fmtDuration(n.uptime_seconds)), el('td', {}, state(n)),
        num(pusher ? sum(m, 'chat_pusher_connections') : undefined, 0),
        num(pusher ? sum(m, 'chat_pusher_subscriptions') : undefined, 0),
        num(pusher ? sum(m, 'chat_pusher_rooms') : undefined, 0),
        num(pusher ? r.frames : undefined),
        num(pusher ? sum(m, 'chat_pusher_evictions_total') : undefined, 0),
        num(pusher ? sum(m, 'chat_pusher_rejected_connections_total') : undefined, 0),
        el('td', {}, isAPI ? (postsText || (r.dt ? '0' : '…')) : ''),
        num(persister ? r.stored : undefined),
        el('td', { class: 'num' }, persister && r.lagMs !== undefined ? fmt(r.lagMs) + ' ms' : '–'),
        num(persister ? sum(m, 'chat_persister_consumer_pending') : undefined, 0)));
      prev.set(nodeKey(n), n);
    }
    tbody.replaceChildren(...rows);
    const counts = {};
    for (const n of nodes) counts[n.service] = (counts[n.service] || 0) + 1;
    $('node-count').textContent = '(' + nodes.length + ': ' +
      Object.keys(counts).sort().map((s) => counts[s] + ' ' + s).join(', ') + ')';
    return totals;
  }

  function renderStream(s) {
    const dl = $('stream');
    const items = [];
    const add = (k, v) => items.push(el('dt', {}, k), el('dd', {}, v));
    if (s.stream) {
      const c = s.stream;
      add('CHAT messages', fmt(c.messages, 0) + ' (' + fmtBytes(c.bytes) + ')');
      add('CHAT first / last seq', fmt(c.first_seq, 0) + ' / ' + fmt(c.last_seq, 0));
      add('epoch', c.epoch + ' (stream created ' + c.created + ')');
      if (c.cluster) {
        const reps = (c.cluster.replicas || []).map((r) => r.name + (r.offline ? ' offline' : r.current ? ' current' : ' lag ' + r.lag));
        add('NATS', 'cluster ' + (c.cluster.name || '–') + ', leader ' + (c.cluster.leader || '–') +
          (reps.length ? '; replicas ' + reps.join(', ') : ''));
      }
    }
    if (s.consumer) {
      const c = s.consumer;
      add('persister consumer', 'pending ' + fmt(c.pending, 0) + ', ack pending ' + fmt(c.ack_pending, 0) +
        ', behind ' + fmt(c.behind, 0) + ' (ack floor ' + fmt(c.ack_floor, 0) + '), redelivered ' + fmt(c.redelivered, 0));
    }
    if (s.deadletter) add('DEADLETTER messages', fmt(s.deadletter.messages, 0) + ' (' + fmtBytes(s.deadletter.bytes) + ')');
    for (const e of s.errors || []) add('error', e);
    dl.replaceChildren(...items);
  }

  function renderRooms(rooms) {
    $('rooms').tBodies[0].replaceChildren(...(rooms || []).map((r) =>
      el('tr', { 'data-room': r.room }, el('td', {}, r.room), num(r.subscribers, 0), num(r.messages_per_second))));
  }

  // Charts: one series each, the last HISTORY_MS.
  const series = { posts: [], frames: [], stored: [], lag: [], pending: [] };

  function push(name, t, v) {
    const s = series[name];
    if (v !== undefined && !Number.isNaN(v)) s.push([t, v]);
    while (s.length && s[0][0] < t - HISTORY_MS) s.shift();
  }

  function draw(id, points, unit) {
    const c = $(id);
    const ctx = c.getContext('2d');
    const w = c.width, h = c.height, pad = 4, top = 14;
    const style = getComputedStyle(document.body);
    ctx.clearRect(0, 0, w, h);
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = style.color;
    const max = Math.max(1, ...points.map((p) => p[1]));
    const last = points.length ? points[points.length - 1][1] : undefined;
    ctx.fillText('now ' + fmt(last) + (unit || '') + '   max ' + fmt(max) + (unit || ''), pad, 11);
    if (points.length < 2) return;
    const now = points[points.length - 1][0];
    const x = (t) => pad + (w - 2 * pad) * (1 - (now - t) / HISTORY_MS);
    const y = (v) => h - pad - (h - top - pad) * v / max;
    ctx.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue('--accent') || '#0969da';
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1]))));
    ctx.stroke();
  }

  function renderCharts(s, totals) {
    const t = Date.parse(s.at);
    if (totals.have) {
      push('posts', t, totals.posts);
      push('frames', t, totals.frames);
      push('stored', t, totals.stored);
      if (totals.lag.length) push('lag', t, Math.max(...totals.lag));
    }
    if (s.consumer) push('pending', t, s.consumer.pending + s.consumer.ack_pending);
    draw('chart-posts', series.posts);
    draw('chart-frames', series.frames);
    draw('chart-stored', series.stored);
    draw('chart-lag', series.lag, ' ms');
    draw('chart-pending', series.pending);
  }

  // Dead letters: rebuilt only when the list changes, so keyboard focus stays put.
  let shownLetters = null; // the seqs shown, comma-separated; null: redraw

  function renderDeadLetters(body) {
    $('dl-count').textContent = '(' + fmt(body.total, 0) + ' held' +
      (body.items.length < body.total ? ', latest ' + body.items.length + ' shown' : '') + ')';
    const sig = body.items.map((d) => d.seq).join(',');
    if (sig === shownLetters) return;
    shownLetters = sig;
    $('deadletters').tBodies[0].replaceChildren(...body.items.map((d) => {
      const requeue = el('button', { type: 'button', class: 'requeue' }, 'Requeue');
      requeue.addEventListener('click', () => act(d, 'requeue'));
      const discard = el('button', { type: 'button', class: 'discard' }, 'Discard');
      discard.addEventListener('click', () => act(d, 'discard'));
      requeue.setAttribute('aria-label', 'Requeue dead letter ' + d.seq);
      discard.setAttribute('aria-label', 'Discard dead letter ' + d.seq);
      return el('tr', { 'data-seq': String(d.seq) },
        el('td', { class: 'num' }, String(d.seq)), el('td', {}, d.time),
        el('td', {}, d.reason || ''), el('td', {}, d.subject || ''),
        el('td', { class: 'preview' }, d.preview + (d.preview_complete ? '' : '…') + ' (' + d.size + ' bytes)'),
        el('td', {}, requeue, discard));
    }));
  }

  async function act(d, action) {
    const question = action === 'requeue'
      ? 'Requeue dead letter ' + d.seq + ': publish its original bytes to ' + d.subject + ' again?'
      : 'Discard dead letter ' + d.seq + ' (' + d.subject + ')? It is deleted for good.';
    if (!window.confirm(question)) return;
    dlStatus.classList.remove('error');
    try {
      if (action === 'requeue') {
        const r = await api('/admin/api/deadletters/' + d.seq + '/requeue', { method: 'POST' });
        dlStatus.textContent = 'Requeued ' + d.seq + ' to ' + r.subject + ' as stream seq ' + r.stream_seq + '.';
      } else {
        await api('/admin/api/deadletters/' + d.seq, { method: 'DELETE' });
        dlStatus.textContent = 'Discarded ' + d.seq + '.';
      }
    } catch (e) {
      dlStatus.classList.add('error');
      dlStatus.textContent = (action === 'requeue' ? 'Requeue ' : 'Discard ') + d.seq + ' failed: ' + e.message;
    }
    shownLetters = null;
    refresh();
  }

  let timer = 0, running = false;

  async function refresh() {
    clearTimeout(timer);
    if (running) return;
    running = true;
    try {
      const [stats, letters] = await Promise.all([api('/admin/api/stats'), api('/admin/api/deadletters?limit=50')]);
      const totals = renderNodes(stats.nodes || []);
      renderStream(stats);
      renderRooms(stats.rooms);
      renderCharts(stats, totals);
      renderDeadLetters(letters);
      statusEl.classList.remove('error');
      statusEl.textContent = 'updated ' + new Date(stats.at).toLocaleTimeString() +
        ((stats.errors || []).length ? ' (with errors, see below)' : '');
    } catch (e) {
      statusEl.classList.add('error');
      statusEl.textContent = 'update failed: ' + e.message;
    } finally {
      running = false;
      timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  refresh();
})();
