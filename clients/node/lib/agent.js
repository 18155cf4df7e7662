'use strict';
// NCAgent: the seed's client object (connect / disconnect / emit / on /
// once / removeListener) over ncserver's native protocol.
//
// Listeners live in a regular EventEmitter. The agent keeps the daemon's
// subscriptions equal to the set of events that have listeners: the first
// listener of an event subscribes, removing the last one unsubscribes, so
// the daemon filters and only sends what someone here listens to.

const EventEmitter = require('node:events');
const net = require('node:net');
const path = require('node:path');

const frame = require('./frame');
const { socketPath, checkChannel } = require('./paths');

/** Events that stay local: EventEmitter's own, never sent nor subscribed. */
const LOCAL_EVENTS = new Set(['error', 'newListener', 'removeListener']);
/** Subscribing to this event name receives every event of the channel. */
const WILDCARD = '*';
/** The `emmiteruuid` of packets the daemon itself sends. */
const DAEMON_ORIGIN = 'ncserver';
const DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024;
const HANDSHAKE_TIMEOUT_MS = 10000;
const CLOSE_TIMEOUT_MS = 2000;

const emitLocal = EventEmitter.prototype.emit;

/** An error from the client or the daemon; `code` says which kind. */
class NetclusterError extends Error {
  constructor(message, props = {}) {
    super(message);
    this.name = 'NetclusterError';
    Object.assign(this, props);
  }
}

function hex16(node) {
  return node.toString(16).padStart(16, '0');
}

function checkEventName(event, { emitting }) {
  if (typeof event !== 'string') throw new TypeError(`event name must be a string, got ${typeof event}`);
  if (event.length === 0) throw new TypeError('event name is empty');
  const len = Buffer.byteLength(event, 'utf8');
  if (len > frame.MAX_EVENT_LEN) {
    throw new TypeError(`event name is ${len} bytes long; the limit is ${frame.MAX_EVENT_LEN}`);
  }
  if (emitting && event === WILDCARD) {
    throw new TypeError("event name '*' is reserved: it subscribes to all events and cannot be emitted");
  }
}

/** The packet's `data`: the payload parsed as JSON, else its text. */
function decodeData(payload) {
  const text = payload.toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function defaultName() {
  const script = process.argv[1] ? path.basename(process.argv[1]) : 'node';
  return `node:${script}`;
}

function connectError(err, channel, where) {
  const props = { channel, path: where, cause: err };
  switch (err.code) {
    case 'ENOENT':
      return new NetclusterError(
        `no channel ${JSON.stringify(channel)}: nothing at ${where}. Channels come from the server's config: ` +
          `is ncserver running with a config that lists ${JSON.stringify(channel)}, and with this socket directory ` +
          '(set NETCLUSTER_SOCKET_DIR to match, or pass the socketDir option)?',
        { ...props, code: 'NO_SUCH_CHANNEL' },
      );
    case 'ECONNREFUSED':
      return new NetclusterError(
        `no ncserver is accepting on ${where} (channel ${JSON.stringify(channel)}); it may have stopped. ` +
          'Start ncserver and retry. Channels come from the server\'s config.',
        { ...props, code: 'NOT_RUNNING' },
      );
    case 'EACCES':
    case 'EPERM':
      return new NetclusterError(
        `permission denied on ${where} (channel ${JSON.stringify(channel)}): check the server's socketmode and your user's groups`,
        { ...props, code: 'PERMISSION_DENIED' },
      );
    default:
      return new NetclusterError(`cannot connect to ${where} (channel ${JSON.stringify(channel)}): ${err.message}`, {
        ...props,
        code: 'CONNECT_FAILED',
      });
  }
}

/**
 * A connection to one channel of a local ncserver, with the seed's API.
 *
 * Options: `socketDir` (default: `NETCLUSTER_SOCKET_DIR`, `/var/run` for
 * root, `XDG_RUNTIME_DIR`, `/tmp`), `echo` (default true: the agent's own
 * emits also reach its own listeners, like the Rust client), `name` (shown by the
 * daemon's showchannel), `connectTimeout` (ms, default 10000).
 */
class NCAgent extends EventEmitter {
  constructor(options = {}) {
    super();
    this._opts = {
      socketDir: options.socketDir,
      echo: options.echo !== false,
      name: options.name || defaultName(),
      connectTimeout: options.connectTimeout || HANDSHAKE_TIMEOUT_MS,
    };
    this.channel = null;
    this.socketPath = null;
    /** 'idle' | 'connecting' | 'connected' | 'closed' */
    this.state = 'idle';
    this.node = null;
    this.clientId = null;
    this.maxMessage = DEFAULT_MAX_MESSAGE;
    this._socket = null;
    this._subs = new Set();
    this._nextId = 1;
    this._pings = new Map();
    this._echoes = [];
    this._closedWhy = null;
    // Messages emitted on the current connection, and how many of them the
    // daemon confirmed (a Pong answers everything written before its Ping).
    this._sent = 0;
    this._confirmed = 0;
  }

  /** Messages emitted on this connection that the daemon has not confirmed (yet). */
  get unconfirmed() {
    return this._sent - this._confirmed;
  }

  /** True once the daemon welcomed this agent, until it disconnects. */
  get connected() {
    return this.state === 'connected';
  }

  /** This agent's origin, `{node}:{client}` (the `emmiteruuid` of its packets). */
  get uuid() {
    return this.clientId === null ? null : `${this.node}:${this.clientId}`;
  }

  /**
   * Connects to `channel`. With `cb`: returns the agent and calls `cb` once
   * connected (after the subscriptions of listeners added before connect are
   * in place). If `cb` declares a parameter it is called Node-style, `cb(err)`;
   * a seed-style `cb` without parameters is only called on success and a
   * failure is emitted as `'error'`. Without `cb`: returns a promise.
   */
  connect(channel, cb) {
    if (typeof cb === 'function') {
      this._start(channel, (err) => {
        if (!err) cb.call(this, null);
        else if (cb.length > 0) cb.call(this, err);
        else if (err.code !== 'DISCONNECTED') this._emitError(err);
      });
      return this;
    }
    return new Promise((resolve, reject) => this._start(channel, (err) => (err ? reject(err) : resolve(this))));
  }

  _start(channel, done) {
    let finished = false;
    const finish = (err) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      done(err);
    };
    let timer = null;
    if (this.state === 'connecting' || this.state === 'connected') {
      process.nextTick(finish, new NetclusterError(`already connected to channel ${JSON.stringify(this.channel)}; disconnect() first`, { code: 'ALREADY_CONNECTED' }));
      return;
    }
    try {
      checkChannel(channel);
    } catch (e) {
      process.nextTick(finish, new NetclusterError(e.message, { code: 'BAD_NAME', channel }));
      return;
    }
    const where = socketPath(channel, this._opts.socketDir);
    this.channel = channel;
    this.socketPath = where;
    this.state = 'connecting';
    this.node = null;
    this.clientId = null;
    this._closedWhy = null;
    this._fatalSeen = false;
    this._echoes = [];
    this._sent = 0;
    this._confirmed = 0;
    const reader = new frame.FrameReader();
    this._reader = reader;
    this._welcomed = false;
    const socket = net.connect(where);
    this._socket = socket;
    this._connectDone = finish;

    // A native client says hello at once (silence would make it a listening
    // seed client), then asks for what its listeners want.
    socket.write(frame.encodeHello(process.pid, this._opts.name));
    this._subs = new Set(this._wantedEvents());
    this._initialAck = 0;
    if (this._subs.size > 0) {
      this._initialAck = this._id();
      socket.write(frame.encodeSubscription(true, this._initialAck, [...this._subs]));
    }

    timer = setTimeout(() => {
      const err = new NetclusterError(`handshake with the server on ${where} failed: no answer within ${this._opts.connectTimeout} ms`, {
        code: 'HANDSHAKE',
        channel,
        path: where,
      });
      this._abortConnect(socket, err);
    }, this._opts.connectTimeout);
    timer.unref();

    socket.on('data', (chunk) => {
      if (this._socket !== socket) return;
      let frames;
      try {
        frames = reader.push(chunk);
      } catch (e) {
        this._fail(socket, new NetclusterError(`protocol error from ncserver: ${e.message}`, { code: 'PROTOCOL' }));
        return;
      }
      for (const f of frames) {
        if (this._socket !== socket) return;
        this._handle(f, socket);
      }
    });
    socket.on('error', (err) => {
      if (this._socket !== socket) return;
      this._closedWhy = err.message;
      if (this.state === 'connecting') {
        // Before the welcome this is why connect failed; after it, 'close'
        // follows and reports the failed handshake.
        if (!this._welcomed) this._abortConnect(socket, connectError(err, channel, where));
      } else if (this.state === 'connected') {
        this._fatalSeen = true;
        this._emitError(
          new NetclusterError(`connection to ncserver (channel ${JSON.stringify(channel)}) failed: ${err.message}`, {
            code: 'CONNECTION_LOST',
            cause: err,
          }),
        );
      }
    });
    socket.on('close', () => {
      if (this._socket !== socket) return;
      const wasConnecting = this.state === 'connecting';
      const alreadyClosed = this.state === 'closed';
      this._teardown(this._closedWhy || 'the connection closed');
      if (wasConnecting) {
        finish(new NetclusterError(`handshake with the server on ${where} failed: ${this._closedWhy || 'the server closed the connection'}`, {
          code: 'HANDSHAKE',
          channel,
          path: where,
        }));
      } else if (!alreadyClosed && !this._fatalSeen) {
        this._emitError(new NetclusterError(`ncserver closed the connection to channel ${JSON.stringify(channel)} (did the daemon stop?)`, { code: 'CONNECTION_LOST' }));
      }
    });
  }

  _handle(f, socket) {
    switch (f.type) {
      case 'welcome':
        this._welcomed = true;
        this.node = hex16(f.node);
        this.clientId = f.client;
        this.maxMessage = f.maxMessage;
        // Control answers are not bounded by maxmessage: never go below the default.
        this._reader.maxBody = Math.max(this._reader.maxBody, f.maxMessage + frame.FRAME_OVERHEAD);
        if (this._initialAck === 0) this._connected();
        break;
      case 'ack':
        if (f.id !== 0 && f.id === this._initialAck) {
          this._initialAck = 0;
          if (this._welcomed && this.state === 'connecting') this._connected();
        }
        break;
      case 'deliver':
        this._deliver(f);
        break;
      case 'error': {
        const err = new NetclusterError(f.message, { code: f.codeName, daemonCode: f.code, fatal: f.fatal, channel: this.channel });
        if (f.fatal) {
          this._fatalSeen = true;
          this._closedWhy = f.message;
        }
        if (this.state === 'connecting' && (!this._welcomed || f.fatal)) {
          err.message = `the server refused the connection to channel ${JSON.stringify(this.channel)}: ${f.message}`;
          err.code = 'REFUSED';
          this._abortConnect(socket, err);
          return;
        }
        this._emitError(err);
        break;
      }
      case 'ping':
        socket.write(frame.encodePing(false, f.token));
        break;
      case 'pong': {
        const key = f.token.toString();
        const waiter = this._pings.get(key);
        if (waiter) {
          this._pings.delete(key);
          this._confirmed = Math.max(this._confirmed, waiter.upTo);
          waiter.resolve();
        }
        break;
      }
      default:
        // Responses only answer Request frames, which this agent does not send.
        break;
    }
  }

  _connected() {
    this.state = 'connected';
    const echoes = this._echoes;
    this._echoes = [];
    for (const e of echoes) this._echo(e.event, e.payload);
    this._connectDone(null);
  }

  _deliver(f) {
    const local = f.node === null;
    const node = local ? this.node : hex16(f.node);
    const packet = {
      emmiteruuid: local && f.client === 0 ? DAEMON_ORIGIN : `${node}:${f.client}`,
      channel: f.channel === null ? this.channel : f.channel,
      broadcast: false,
      event: f.event,
      data: decodeData(f.payload),
    };
    this._dispatch(packet);
  }

  _dispatch(packet) {
    if (!LOCAL_EVENTS.has(packet.event) && packet.event !== WILDCARD) emitLocal.call(this, packet.event, packet);
    emitLocal.call(this, WILDCARD, packet);
  }

  _echo(event, payload) {
    const packet = {
      emmiteruuid: this.uuid,
      channel: this.channel,
      broadcast: false,
      event,
      data: decodeData(payload),
    };
    process.nextTick(() => this._dispatch(packet));
  }

  /**
   * Emits `event` with `data` (any JSON value; `undefined` is sent as null)
   * on the channel. The events `error`, `newListener` and `removeListener`
   * are EventEmitter's own and stay local. Throws if the agent is not
   * connected (or connecting), the name is invalid or the data too large.
   */
  emit(event, ...args) {
    if (typeof event !== 'string' || LOCAL_EVENTS.has(event)) return emitLocal.call(this, event, ...args);
    checkEventName(event, { emitting: true });
    if (this.state !== 'connecting' && this.state !== 'connected') {
      const why = this._closedWhy ? ` (${this._closedWhy})` : '';
      throw new NetclusterError(`cannot emit ${JSON.stringify(event)}: not connected${why}; call connect(channel, cb) first`, {
        code: 'NOT_CONNECTED',
      });
    }
    const text = JSON.stringify(args[0]);
    const payload = Buffer.from(text === undefined ? 'null' : text, 'utf8');
    if (payload.length > this.maxMessage) {
      throw new NetclusterError(`message of ${payload.length} bytes exceeds the server's maxmessage of ${this.maxMessage} bytes`, {
        code: 'TOO_LARGE',
      });
    }
    this._socket.write(frame.encodePublish(event, payload));
    this._sent += 1;
    if (this._opts.echo) {
      if (this.state === 'connected') this._echo(event, payload);
      else this._echoes.push({ event, payload });
    }
    return true;
  }

  /**
   * Resolves once the daemon has handled everything this agent sent before
   * (subscriptions included): a Ping/Pong barrier the daemon answers after
   * routing every message emitted before it. If the connection breaks first
   * (the daemon stopped or crashed), it rejects with code `UNCONFIRMED` and
   * `err.unconfirmed` = the messages emitted on this connection that the
   * daemon never confirmed: any of them may be lost, and none confirmed by
   * an earlier `sync()` is. With `cb`, calls `cb(err)` instead.
   */
  sync(cb) {
    const p = this._sync();
    if (typeof cb === 'function') {
      p.then(() => cb.call(this, null), (err) => cb.call(this, err));
      return undefined;
    }
    return p;
  }

  /** The same as `sync()`: waits until the daemon has confirmed every message emitted before. */
  flush(cb) {
    return this.sync(cb);
  }

  _sync() {
    if (this.state !== 'connected' && this.state !== 'connecting') {
      return Promise.reject(this._lostError());
    }
    const token = BigInt(this._id()) | (BigInt(process.pid) << 32n);
    return new Promise((resolve, reject) => {
      this._pings.set(token.toString(), { resolve, reject, upTo: this._sent });
      this._socket.write(frame.encodePing(true, token));
    });
  }

  /** Why a barrier failed: not connected, naming the messages left unconfirmed. */
  _lostError() {
    const why = this._closedWhy || 'the connection closed';
    const n = this.unconfirmed;
    if (n > 0) {
      return new NetclusterError(`${n} message(s) emitted were not confirmed by the daemon and may be lost: ${why}`, {
        code: 'UNCONFIRMED',
        unconfirmed: n,
      });
    }
    return new NetclusterError(`not connected: ${why}`, { code: 'NOT_CONNECTED' });
  }

  /**
   * Closes the connection after what was emitted is written and, as the
   * seed did, removes the listeners of bus events (those of `error`,
   * `newListener` and `removeListener` stay). Returns a promise (and calls
   * `cb`, if given) once the socket is closed.
   */
  disconnect(cb) {
    const socket = this._socket;
    const open = socket && !socket.destroyed;
    const wasConnecting = this.state === 'connecting';
    if (open) this.state = 'closed';
    for (const e of this.eventNames()) {
      if (typeof e === 'string' && !LOCAL_EVENTS.has(e)) EventEmitter.prototype.removeAllListeners.call(this, e);
    }
    this._subs.clear();
    const p = new Promise((resolve) => {
      if (!open) {
        if (this.state !== 'idle') this._teardown('disconnected');
        resolve();
        return;
      }
      this._closedWhy = 'disconnect() was called';
      socket.once('close', () => resolve());
      if (wasConnecting && this._connectDone) {
        this._connectDone(new NetclusterError('disconnect() was called while connecting', { code: 'DISCONNECTED' }));
      }
      socket.end();
      const t = setTimeout(() => socket.destroy(), CLOSE_TIMEOUT_MS);
      t.unref();
    });
    if (typeof cb === 'function') p.then(() => cb.call(this));
    return p;
  }

  _teardown(why) {
    this.state = 'closed';
    if (!this._closedWhy) this._closedWhy = why;
    for (const { reject } of this._pings.values()) reject(this._lostError());
    this._pings.clear();
    this._echoes = [];
    this._welcomed = false;
  }

  _fail(socket, err) {
    this._fatalSeen = true;
    this._closedWhy = err.message;
    if (this.state === 'connecting') {
      this._abortConnect(socket, err);
      return;
    }
    socket.destroy();
    this._emitError(err);
  }

  /** Ends a connection attempt with `err`: the agent is closed when `connect`'s callback runs. */
  _abortConnect(socket, err) {
    this._closedWhy = err.message;
    this._teardown(err.message);
    socket.destroy();
    this._connectDone(err);
  }

  _emitError(err) {
    emitLocal.call(this, 'error', err);
  }

  _id() {
    const id = this._nextId;
    this._nextId = this._nextId >= 0xffffffff ? 1 : this._nextId + 1;
    return id;
  }

  /** Events that have listeners and are sent to the daemon. */
  _wantedEvents() {
    return this.eventNames().filter((e) => typeof e === 'string' && !LOCAL_EVENTS.has(e));
  }

  /** Brings the daemon's subscription for `event` in line with the listeners. */
  _reconcile(event) {
    if (typeof event !== 'string' || LOCAL_EVENTS.has(event)) return;
    const want = this.listenerCount(event) > 0;
    if (want === this._subs.has(event)) return;
    if (want) this._subs.add(event);
    else this._subs.delete(event);
    const live = this._socket && !this._socket.destroyed && (this.state === 'connecting' || this.state === 'connected');
    if (live) this._socket.write(frame.encodeSubscription(want, this._id(), [event]));
  }

  _checkListen(event) {
    if (typeof event === 'string' && !LOCAL_EVENTS.has(event)) checkEventName(event, { emitting: false });
  }

  addListener(event, listener) {
    this._checkListen(event);
    super.addListener(event, listener);
    this._reconcile(event);
    return this;
  }

  on(event, listener) {
    return this.addListener(event, listener);
  }

  prependListener(event, listener) {
    this._checkListen(event);
    super.prependListener(event, listener);
    this._reconcile(event);
    return this;
  }

  removeListener(event, listener) {
    super.removeListener(event, listener);
    this._reconcile(event);
    return this;
  }

  off(event, listener) {
    return this.removeListener(event, listener);
  }

  removeAllListeners(event) {
    const affected = event === undefined ? [...this._subs] : [event];
    if (event === undefined) super.removeAllListeners();
    else super.removeAllListeners(event);
    for (const e of affected) this._reconcile(e);
    return this;
  }
}

module.exports = { NCAgent, NetclusterError, LOCAL_EVENTS, WILDCARD, DAEMON_ORIGIN };
