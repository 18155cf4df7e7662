'use strict';
// Where channel sockets live: the same rule as ncserver and the Rust client
// (crates/proto/src/names.rs), so all of them meet without configuration.

const path = require('node:path');

const SOCKET_PREFIX = 'netcluster-';
const SOCKET_DIR_ENV = 'NETCLUSTER_SOCKET_DIR';
const MAX_CHANNEL_LEN = 255;

function isRoot() {
  // The Rust client and ncserver test the effective uid.
  if (typeof process.geteuid === 'function') return process.geteuid() === 0;
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * The socket directory when none is given: `$NETCLUSTER_SOCKET_DIR` (if
 * non-empty), else `/var/run` for root (the seed's path), else
 * `$XDG_RUNTIME_DIR` (if non-empty), else `/tmp`.
 */
function defaultSocketDir(env = process.env, root = isRoot()) {
  if (env[SOCKET_DIR_ENV]) return env[SOCKET_DIR_ENV];
  if (root) return '/var/run';
  if (env.XDG_RUNTIME_DIR) return env.XDG_RUNTIME_DIR;
  return '/tmp';
}

/**
 * The path to connect to for `channel`: `{dir}/netcluster-{channel}`, or the
 * named pipe `\\.\pipe\netcluster-{channel}` on Windows (where `dir` is not used).
 */
function socketPath(channel, dir, platform = process.platform) {
  if (platform === 'win32') return `\\\\.\\pipe\\${SOCKET_PREFIX}${channel}`;
  return path.join(dir === undefined || dir === null ? defaultSocketDir() : String(dir), SOCKET_PREFIX + channel);
}

/** Throws a TypeError if `name` cannot be a channel (same rule as the daemon). */
function checkChannel(name) {
  if (typeof name !== 'string') throw new TypeError(`channel name must be a string, got ${typeof name}`);
  if (name.length === 0) throw new TypeError('channel name is empty');
  const len = Buffer.byteLength(name, 'utf8');
  if (len > MAX_CHANNEL_LEN) {
    throw new TypeError(`channel name is ${len} bytes long; the limit is ${MAX_CHANNEL_LEN}`);
  }
  if (name === '.' || name === '..') throw new TypeError(`channel name ${JSON.stringify(name)} is reserved: it names a directory`);
  // eslint-disable-next-line no-control-regex
  const bad = /[/\\\u0000-\u001f\u007f-\u009f]/.exec(name);
  if (bad) {
    const what = bad[0] === '/' ? "'/'" : bad[0] === '\\' ? "'\\'" : bad[0] === '\0' ? 'a NUL byte' : 'a control character';
    throw new TypeError(`channel name ${JSON.stringify(name)} contains ${what}, which is not allowed`);
  }
}

module.exports = { SOCKET_PREFIX, SOCKET_DIR_ENV, defaultSocketDir, socketPath, checkChannel, isRoot };
