// A real chat system for the tests: the all-in-one (cmd/chat) built from this repository,
// with its embedded NATS and FerretDB, a temporary data directory and free ports (every
// address is port 0: the tests never collide with each other or with other test runs).
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

let built = null;

// binary builds cmd/chat once per test process (go's build cache makes later ones quick),
// or uses CHAT_BIN when it is set.
export function binary() {
  if (process.env.CHAT_BIN) return Promise.resolve(process.env.CHAT_BIN);
  if (!built) {
    built = (async () => {
      const dir = await mkdtemp(join(tmpdir(), 'chatjs-bin-'));
      const out = join(dir, 'chat');
      await promisify(execFile)('go', ['build', '-o', out, './cmd/chat'], { cwd: repo, maxBuffer: 16 << 20 });
      return out;
    })();
  }
  return built;
}

// startServer starts the all-in-one and resolves once it is ready. opts.addr reuses an
// address (a restart), opts.dataDir a data directory (default: a new one, removed by stop).
export async function startServer({ addr = '127.0.0.1:0', dataDir = null } = {}) {
  const bin = await binary();
  const ownDir = !dataDir;
  const dir = dataDir || (await mkdtemp(join(tmpdir(), 'chatjs-data-')));
  const env = { ...process.env, CHAT_HTTP_ADDR: addr, CHAT_DATA_DIR: dir,
    CHAT_EMBEDDED_NATS_ADDR: '127.0.0.1:0', CHAT_EMBEDDED_MONGO_ADDR: '127.0.0.1:0',
    CHAT_SHUTDOWN_TIMEOUT: '5s' };
  for (const k of ['CHAT_NATS_URL', 'CHAT_MONGO_URI', 'CHAT_AUTH_HS256_SECRET', 'CHAT_AUTH_PUBLIC_KEY',
    'CHAT_AUTH_PUBLIC_KEY_FILE', 'CHAT_AUTH_JWKS_URL']) delete env[k];
  const proc = spawn(bin, [], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const log = [];
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('chat did not listen in 60 s:\n' + log.join('\n'))), 60000);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        log.push(line);
        let rec;
        try { rec = JSON.parse(line); } catch (_) { continue; }
        if (rec.msg === 'listening' && rec.url) { clearTimeout(timer); resolve(rec.url); }
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`chat exited (${code ?? signal}) before listening:\n` + log.join('\n')));
    });
  });
  await ready(url, exited, log);
  const server = {
    url,
    addr: new URL(url).host,
    dataDir: dir,
    log,
    // stop ends the process (SIGTERM: sockets are closed with 1012) and waits for it.
    async stop({ keepData = false } = {}) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const { code, signal } = await exited;
      if (ownDir && !keepData) await rm(dir, { recursive: true, force: true });
      if (code !== 0) throw new Error(`chat exited with ${code ?? signal}:\n` + log.slice(-20).join('\n'));
    },
  };
  return server;
}

// ready waits for GET /readyz to answer 200 (every service connected).
async function ready(url, exited, log) {
  let dead = false;
  exited.then(() => { dead = true; });
  const deadline = Date.now() + 60000;
  for (;;) {
    if (dead) throw new Error('chat exited before ready:\n' + log.join('\n'));
    try {
      const res = await fetch(url + '/readyz');
      await res.arrayBuffer();
      if (res.ok) return;
    } catch (_) { /* not yet */ }
    if (Date.now() > deadline) throw new Error('chat not ready in 60 s:\n' + log.join('\n'));
    await new Promise((r) => setTimeout(r, 50)); // poll interval of a wait-for-condition
  }
}
