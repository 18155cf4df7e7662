'use strict';
// Helpers for the tests in ../test: a real ncserver in a temporary socket
// directory, a raw client speaking the seed's legacy format, and the Rust
// ncclient. The binaries come from `cargo build` (target/debug); the tests
// never build them.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..', '..');
const EXE = process.platform === 'win32' ? '.exe' : '';

/** The path of a built binary, or a clear failure telling to build it. */
function binary(name) {
  const p = path.join(REPO, 'target', 'debug', name + EXE);
  if (!fs.existsSync(p)) {
    throw new Error(`${p} is missing: run \`cargo build\` in ${REPO} first (the Node tests use the debug binaries and do not build them)`);
  }
  return p;
}

/** Rejects with `what` if `promise` is not settled within `ms`. */
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value (returned) or `ms` pass. */
async function waitFor(fn, what, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** A short temporary directory (socket paths are limited to ~107 bytes). */
function tempDir(prefix = 'nc-js-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try {
      child.kill('SIGKILL');
    } catch {
      // Gone already.
    }
  }
});

/**
 * Starts `target/debug/ncserver` on `config` (its `socketdir` is set to a
 * fresh temporary directory) and resolves once every channel socket exists.
 */
async function startDaemon(config) {
  const exe = binary('ncserver');
  const dir = tempDir();
  const cfg = { ...config, socketdir: dir };
  const configPath = path.join(dir, 'config.json');
  fs.writeFileSync(configPath, JSON.stringify(cfg));
  const child = spawn(exe, [configPath], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: 'info' } });
  running.add(child);
  let log = '';
  child.stderr.on('data', (d) => {
    log += d.toString();
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const channels = ['control', ...Object.keys(cfg.channels || {})];
  const socket = (ch) => path.join(dir, `netcluster-${ch}`);
  let dead = null;
  exited.then((e) => {
    dead = e;
  });
  await waitFor(() => {
    if (dead) throw new Error(`ncserver exited (${JSON.stringify(dead)}) during startup:\n${log}`);
    return channels.every((c) => fs.existsSync(socket(c)));
  }, `ncserver sockets in ${dir}`, 10000);
  return {
    dir,
    config: cfg,
    configPath,
    pid: child.pid,
    socket,
    log: () => log,
    exited,
    /** Stops the daemon (SIGTERM by pid, SIGKILL after 5 s) and removes its directory. */
    async stop() {
      if (!dead) {
        process.kill(child.pid, 'SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      running.delete(child);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A raw client of the seed's format: each packet is a JSON object followed
 * by a NUL byte. Incoming bytes are split on NUL whatever the reads were.
 */
class LegacyClient {
  static connect(socketPath) {
    return new Promise((resolve, reject) => {
      const s = net.connect(socketPath);
      s.once('error', reject);
      s.once('connect', () => {
        s.removeListener('error', reject);
        resolve(new LegacyClient(s));
      });
    });
  }

  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.packets = [];
    this.waiters = [];
    this.closed = false;
    socket.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (let i = this.buf.indexOf(0); i >= 0; i = this.buf.indexOf(0)) {
        const text = this.buf.subarray(0, i).toString('utf8');
        this.buf = this.buf.subarray(i + 1);
        this.packets.push(JSON.parse(text));
      }
      this.wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Sends one packet (an object; `emmiteruuid`, `channel`, `broadcast` added as the seed did). */
  send(event, data, extra = {}) {
    this.socket.write(LegacyClient.encode(event, data, extra));
  }

  static encode(event, data, extra = {}) {
    const p = { emmiteruuid: 'js-legacy-test', channel: 'ignored', broadcast: false, event, data, ...extra };
    return Buffer.concat([Buffer.from(JSON.stringify(p), 'utf8'), Buffer.from([0])]);
  }

  /** Sends raw bytes. */
  write(bytes) {
    return new Promise((resolve) => this.socket.write(bytes, resolve));
  }

  /** The next packet, or null once the connection is closed. */
  async recv(ms = 5000) {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.packets.length > 0) return this.packets.shift();
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no packet within ${ms} ms`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves true if nothing arrives within `ms`. */
  async quiet(ms) {
    await sleep(ms);
    return this.packets.length === 0;
  }

  close() {
    this.socket.destroy();
  }
}

/** Sends a control event as a legacy client on `control` and returns the response packet. */
async function legacyControl(daemon, command, data) {
  const c = await LegacyClient.connect(daemon.socket('control'));
  try {
    c.send(`nc-control-${command}`, data);
    return await c.recv();
  } finally {
    c.close();
  }
}

/** Waits until `channel` has `n` clients (of `protocol`, if given), per showchannel. */
async function waitForClients(daemon, channel, n, protocol) {
  return waitFor(async () => {
    const r = await legacyControl(daemon, 'showchannel', channel);
    const list = r.data.filter((c) => !protocol || c.protocol === protocol);
    return list.length >= n ? list : null;
  }, `${n} ${protocol || ''} client(s) on ${channel}`);
}

/** Runs `ncclient` to completion: {code, stdout, stderr}. */
function ncclient(args, { input, timeout = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(binary('ncclient'), args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`ncclient ${args.join(' ')} did not finish in ${timeout} ms: ${stderr}`));
    }, timeout);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input || '');
  });
}

/**
 * Starts `ncclient listen CHANNEL [events] --count N` and resolves once it
 * is subscribed; `.done` resolves with the parsed JSON lines when it exits.
 */
function ncclientListen(daemon, channel, count, events = [], timeoutSecs = 10) {
  const args = ['--socket-dir', daemon.dir, 'listen', channel, ...events, '--count', String(count), '--timeout', String(timeoutSecs)];
  const child = spawn(binary('ncclient'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  const ready = new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => {
      stderr += d;
      if (stderr.includes('listening on')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`ncclient listen exited (${code}) before listening: ${stderr}`)));
  });
  const done = new Promise((resolve) => {
    child.once('exit', (code) => {
      running.delete(child);
      resolve({
        code,
        stderr,
        lines: stdout
          .split('\n')
          .filter((l) => l.trim())
          .map((l) => JSON.parse(l)),
      });
    });
  });
  ready.catch(() => {});
  return { ready, done, child };
}

module.exports = {
  REPO,
  binary,
  withTimeout,
  sleep,
  waitFor,
  tempDir,
  startDaemon,
  LegacyClient,
  legacyControl,
  waitForClients,
  ncclient,
  ncclientListen,
};
