// Inbox collects a client's callbacks in order and lets a test wait for a condition on them
// (checked on every new event, never by sleeping).
export class Inbox {
  constructor() {
    this.events = []; // [kind, value]
    this._waiters = [];
  }

  push(kind, value) {
    this.events.push([kind, value]);
    for (const w of [...this._waiters]) w.check();
  }

  of(kind) { return this.events.filter(([k]) => k === kind).map(([, v]) => v); }

  // until resolves with pred's truthy result once it has one, or rejects after ms.
  until(pred, what, ms = 20000) {
    return new Promise((resolve, reject) => {
      const w = {
        check: () => {
          const v = pred(this);
          if (!v) return;
          this._waiters.splice(this._waiters.indexOf(w), 1);
          clearTimeout(w.timer);
          resolve(v);
        },
      };
      w.timer = setTimeout(() => {
        this._waiters.splice(this._waiters.indexOf(w), 1);
        reject(new Error(`timed out waiting for ${what}; events: ${JSON.stringify(this.events.slice(-30))}`));
      }, ms);
      this._waiters.push(w);
      w.check();
    });
  }

  // callbacks are ChatClient options that record every event here.
  callbacks() {
    return {
      onMessage: (m) => this.push('message', m),
      onChange: (c) => this.push('change', c),
      onState: (s) => this.push('state', s),
      onSubscribed: (f) => this.push('subscribed', f),
      onError: (e) => this.push('error', e),
      onPresence: (room, p) => this.push('presence', { room, ...p }),
      onTyping: (t) => this.push('typing', t),
    };
  }
}

let n = 0;
// room returns a room name of its own for each test.
export function room(prefix) {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${n++}`;
}

// eventually resolves with fn's first truthy result, asking again every 50 ms (for state
// the server reaches asynchronously, such as history), or rejects after ms.
export async function eventually(fn, what, ms = 10000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}` + (last ? `: ${last.message}` : ''));
    await new Promise((r) => setTimeout(r, 50));
  }
}
