'use strict';
// pipedserver(): the seed's embeddable "local server", now a child
// `ncserver` process started with the given config.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { socketPath, defaultSocketDir, SOCKET_DIR_ENV } = require('./paths');
const { NetclusterError } = require('./agent');

const EXE = process.platform === 'win32' ? 'ncserver.exe' : 'ncserver';
const START_TIMEOUT_MS = 10000;
const STOP_TIMEOUT_MS = 5000;
const STDERR_TAIL = 8192;

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/**
 * Where the `ncserver` binary is: `explicit`, else `$NETCLUSTER_NCSERVER`,
 * else this repository's `target/release` or `target/debug` (the newer
 * build if both exist), else the first `ncserver` on `PATH`. Throws if none.
 */
function findNcserver(explicit, env = process.env) {
  if (explicit) return explicit;
  if (env.NETCLUSTER_NCSERVER) return env.NETCLUSTER_NCSERVER;
  const repo = path.resolve(__dirname, '..', '..', '..');
  const built = ['release', 'debug']
    .map((p) => path.join(repo, 'target', p, EXE))
    .filter(isFile)
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  if (built.length > 0) return built[0];
  for (const dir of (env.PATH || '').split(path.delimiter)) {
    if (dir && isFile(path.join(dir, EXE))) return path.join(dir, EXE);
  }
  throw new NetclusterError(
    'cannot find the ncserver binary: pass the ncserver option, set NETCLUSTER_NCSERVER, ' +
      'build it (`cargo build --release` in the netcluster repository) or put it on PATH',
    { code: 'NO_NCSERVER' },
  );
}

function inode(p) {
  try {
    const st = fs.statSync(p);
    return `${st.dev}:${st.ino}:${st.ctimeMs}`;
  } catch {
    return null;
  }
}

/**
 * The seed's local server. Set `config` (an object in the config.json
 * shape, or a path to a config file), then `start()`. Options: `ncserver`
 * (binary path), `socketDir` (used when the config has no `socketdir`),
 * `output` ('inherit' to pass ncserver's log to this process's stderr,
 * the default, or 'ignore'), `args` (extra ncserver arguments).
 */
class PipedServer {
  constructor(options = {}) {
    this.options = { output: 'inherit', ...options };
    this.config = options.config;
    this.process = null;
    this.socketDir = null;
    this._tmp = null;
    this._onExit = null;
    this._exited = null;
  }

  /** The process id of the running ncserver, or null. */
  get pid() {
    return this.process ? this.process.pid : null;
  }

  /**
   * Writes the config to a temporary file, spawns ncserver on it and
   * resolves (and calls `cb(err)`, if given) once every channel's socket
   * exists. Rejects with ncserver's own error if it exits first.
   */
  start(cb) {
    const p = this._start();
    if (typeof cb === 'function') p.then(() => cb.call(this, null), (err) => cb.call(this, err));
    return p;
  }

  async _start() {
    if (this.process) throw new NetclusterError(`ncserver is already running (pid ${this.process.pid})`, { code: 'RUNNING' });
    const exe = findNcserver(this.options.ncserver);
    const args = [...(this.options.args || [])];
    let config = this.config;
    if (typeof config === 'string') {
      args.push(path.resolve(config));
      try {
        // Only to learn the channels and socketdir to wait for; ncserver
        // itself reports what is wrong with a bad file.
        config = JSON.parse(stripComments(fs.readFileSync(config, 'utf8')));
      } catch {
        config = null;
      }
    } else if (config !== undefined && config !== null) {
      this._tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'netcluster-server-'));
      const file = path.join(this._tmp, 'config.json');
      fs.writeFileSync(file, JSON.stringify(config, null, 2));
      args.push(file);
    }
    const env = { ...process.env };
    if (this.options.socketDir) env[SOCKET_DIR_ENV] = String(this.options.socketDir);
    const dir = config && config.socketdir ? String(config.socketdir) : defaultSocketDir(env);
    this.socketDir = dir;
    const channels = new Set(['control', ...Object.keys((config && config.channels) || {})]);
    const sockets = [...channels].map((c) => socketPath(c, dir));
    // A socket left by an earlier run must not pass for this one's.
    const before = new Map(sockets.map((s) => [s, inode(s)]));

    const child = spawn(exe, args, {
      env,
      stdio: ['ignore', this.options.output === 'ignore' ? 'ignore' : 'inherit', 'pipe'],
    });
    this.process = child;
    let tail = '';
    child.stderr.on('data', (d) => {
      tail = (tail + d.toString('utf8')).slice(-STDERR_TAIL);
      if (this.options.output !== 'ignore') process.stderr.write(d);
    });
    this._exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    this._onExit = () => {
      try {
        child.kill('SIGTERM');
      } catch {
        // Already gone.
      }
    };
    process.once('exit', this._onExit);
    const spawnError = new Promise((resolve) => child.once('error', resolve));

    const deadline = Date.now() + (this.options.startTimeout || START_TIMEOUT_MS);
    for (;;) {
      const ready = sockets.every((s) => {
        const now = inode(s);
        return now !== null && now !== before.get(s);
      });
      if (ready) return this;
      const outcome = await Promise.race([
        this._exited.then((e) => ({ exit: e })),
        spawnError.then((e) => ({ error: e })),
        new Promise((r) => setTimeout(r, 20, null)),
      ]);
      if (outcome && (outcome.exit || outcome.error)) {
        this._cleanup();
        const why = outcome.error
          ? `cannot run ${exe}: ${outcome.error.message}`
          : `ncserver exited (${outcome.exit.signal || `status ${outcome.exit.code}`}) before serving: ${tail.trim() || 'no output'}`;
        throw new NetclusterError(why, { code: 'START_FAILED' });
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new NetclusterError(`ncserver did not create ${sockets.join(', ')} in time: ${tail.trim()}`, { code: 'START_FAILED' });
      }
    }
  }

  /**
   * Stops ncserver (SIGTERM, then SIGKILL after 5 s) and resolves (and
   * calls `cb`) once it exited. Its sockets are removed by ncserver itself.
   */
  stop(cb) {
    const p = this._stop();
    if (typeof cb === 'function') p.then(() => cb.call(this));
    return p;
  }

  async _stop() {
    const child = this.process;
    if (!child) return;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await this._exited;
      clearTimeout(timer);
    }
    this._cleanup();
  }

  _cleanup() {
    if (this._onExit) process.removeListener('exit', this._onExit);
    this._onExit = null;
    this.process = null;
    if (this._tmp) fs.rmSync(this._tmp, { recursive: true, force: true });
    this._tmp = null;
  }
}

/** Removes `//` and `/* *\/` comments outside strings (the seed's config files have them). */
function stripComments(text) {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++;
      out += '\n';
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 1;
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

module.exports = { PipedServer, findNcserver, stripComments };
