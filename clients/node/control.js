'use strict';
// The seed's control client as a module: showconfig, reloadconfig,
// showchannel, showclient (and status, showpeers), spoken as the seed spoke them:
// events `nc-control-X` emitted on the `control` channel, answered by the
// daemon with the event `nc-control-X-response` sent to the caller only,
// whose data is the result or `{error}`.
//
//   const control = require('netcluster/control');
//   console.log(await control.showchannel('A'));        // one connection per call
//   const ctl = new control.ControlClient({ socketDir }); // or one kept open
//   await ctl.reloadconfig({ channels: { A: {}, B: {} } });
//   await ctl.close();
//
// Every function returns a promise and also accepts a Node-style callback
// as its last argument.

const path = require('node:path');

const { NCAgent, NetclusterError } = require('./lib/agent');

const CONTROL_CHANNEL = 'control';
const PREFIX = 'nc-control-';
const DEFAULT_TIMEOUT_MS = 10000;

/** Splits a trailing callback off `args`. */
function splitCallback(args) {
  const last = args[args.length - 1];
  return typeof last === 'function' ? [args.slice(0, -1), last] : [args, null];
}

function withCallback(promise, cb) {
  if (cb) promise.then((r) => cb(null, r), (e) => cb(e));
  return promise;
}

/**
 * A connection to the daemon's control channel, opened on first use.
 * Options: `socketDir`, `timeout` (ms per request, default 10000), `name`.
 */
class ControlClient {
  constructor(options = {}) {
    this.options = options;
    this.agent = null;
    this._connecting = null;
    // Answers come in request order; per response event, a FIFO of waiters.
    this._waiters = new Map();
  }

  /** Connects now (otherwise the first request does). */
  connect() {
    if (this.agent && !this.agent.connected) {
      // The connection was lost: start afresh.
      this.agent = null;
      this._connecting = null;
      this._waiters = new Map();
    }
    if (!this._connecting) {
      const agent = new NCAgent({ socketDir: this.options.socketDir, echo: false, name: this.options.name || 'node:control' });
      agent.on('error', (err) => this._failAll(err));
      this._connecting = agent.connect(CONTROL_CHANNEL).then(
        () => {
          this.agent = agent;
          return this;
        },
        (err) => {
          this._connecting = null;
          throw err;
        },
      );
    }
    return this._connecting;
  }

  /** Closes the connection; pending requests fail. */
  async close() {
    const agent = this.agent;
    this.agent = null;
    this._connecting = null;
    this._failAll(new NetclusterError('the control client was closed', { code: 'CLOSED' }));
    // The response listeners go with the connection (disconnect removes them).
    this._waiters = new Map();
    if (agent) await agent.disconnect();
  }

  /** Sends `nc-control-{command}` with `data` and resolves with the answer's data. */
  async request(command, data) {
    await this.connect();
    const agent = this.agent;
    if (!agent || !agent.connected) throw new NetclusterError('not connected to the control channel', { code: 'NOT_CONNECTED' });
    const responseEvent = `${PREFIX}${command}-response`;
    let queue = this._waiters.get(responseEvent);
    if (!queue) {
      queue = [];
      this._waiters.set(responseEvent, queue);
      agent.on(responseEvent, (packet) => {
        const w = queue.shift();
        if (w) w.settle(packet.data);
      });
    }
    return new Promise((resolve, reject) => {
      const timeout = this.options.timeout || DEFAULT_TIMEOUT_MS;
      const waiter = {
        settle: (data) => {
          clearTimeout(timer);
          if (data && typeof data === 'object' && !Array.isArray(data) && typeof data.error === 'string' && Object.keys(data).length === 1) {
            reject(new NetclusterError(data.error, { code: 'CONTROL_FAILED', command }));
          } else {
            resolve(data);
          }
        },
        fail: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        // The late answer, if it comes, must not go to the next request.
        waiter.settle = () => {};
        waiter.fail = () => {};
        reject(new NetclusterError(`no answer to ${command} within ${timeout} ms`, { code: 'TIMEOUT', command }));
      }, timeout);
      queue.push(waiter);
      try {
        agent.emit(PREFIX + command, data === undefined ? null : data);
      } catch (e) {
        queue.splice(queue.indexOf(waiter), 1);
        waiter.fail(e);
      }
    });
  }

  _failAll(err) {
    for (const queue of this._waiters.values()) {
      for (const w of queue.splice(0)) w.fail(err);
    }
  }

  /** The active config, every key with its effective value. */
  showconfig(...args) {
    const [, cb] = splitCallback(args);
    return withCallback(this.request('showconfig', null), cb);
  }

  /**
   * Applies a new config: a config object (the seed sent the config itself),
   * a file path (relative paths are resolved here, then read by the daemon),
   * or nothing to reload the daemon's own file. Resolves with
   * `{reloaded, added, removed, changed}`.
   */
  reloadconfig(...args) {
    const [[config], cb] = splitCallback(args);
    const data = typeof config === 'string' ? path.resolve(config) : config === undefined ? null : config;
    return withCallback(this.request('reloadconfig', data), cb);
  }

  /** The seed's misspelt name for reloadconfig. */
  reloaconfig(...args) {
    return this.reloadconfig(...args);
  }

  /** The clients of channel `name`, or one summary per channel without a name. */
  showchannel(...args) {
    const [[name], cb] = splitCallback(args);
    return withCallback(this.request('showchannel', name === undefined ? null : name), cb);
  }

  /** One client of `channel`: `uuid` is its id (number) or its `node:client` origin. */
  showclient(...args) {
    const [[channel, uuid], cb] = splitCallback(args);
    return withCallback(this.request('showclient', { channel, client: uuid }), cb);
  }

  /** Version, node id, start time, config source, socket directory, counts. */
  status(...args) {
    const [, cb] = splitCallback(args);
    return withCallback(this.request('status', null), cb);
  }

  /**
   * The other daemons on the network and this one's network counters
   * (fields in docs/NET-DATAGRAMS.md, "showpeers()"). Rejects when the
   * daemon is not connected to the network (connecttonet false).
   */
  showpeers(...args) {
    const [, cb] = splitCallback(args);
    return withCallback(this.request('showpeers', null), cb);
  }
}

/** Runs one call on a fresh connection with default options, then closes it. */
function oneShot(method) {
  return (...args) => {
    const [rest, cb] = splitCallback(args);
    const ctl = new ControlClient();
    const p = ctl[method](...rest).finally(() => ctl.close());
    return withCallback(p, cb);
  };
}

/** A control client connected with `options` (see ControlClient). */
function connect(options) {
  return new ControlClient(options).connect();
}

module.exports = {
  ControlClient,
  connect,
  showconfig: oneShot('showconfig'),
  reloadconfig: oneShot('reloadconfig'),
  reloaconfig: oneShot('reloaconfig'),
  showchannel: oneShot('showchannel'),
  showclient: oneShot('showclient'),
  status: oneShot('status'),
  showpeers: oneShot('showpeers'),
};
