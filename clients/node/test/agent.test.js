'use strict';
// The package's client (NCAgent / pipedclient) against a real ncserver:
// the seed's API, server-side filtering, echo, propagation, errors.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const { startDaemon, LegacyClient, waitForClients, legacyControl, sleep, withTimeout, tempDir } = require('../testlib/helpers');
const netcluster = require('..');

const CONFIG = { channels: { A: { propagatetochannels: '^B$' }, B: {}, C: {} } };
const ORIGIN = /^[0-9a-f]{16}:[0-9]+$/;

let daemon;
test.before(async () => {
  daemon = await startDaemon(CONFIG);
});
test.after(async () => {
  if (daemon) await daemon.stop();
});

/** A connected agent on `channel`, disconnected when the test ends. */
async function agent(t, channel, options = {}) {
  const a = netcluster.pipedclient({ socketDir: daemon.dir, ...options });
  await a.connect(channel);
  t.after(() => a.disconnect());
  return a;
}

/** Resolves with the next packet of `event` on `a`. */
function next(a, event, ms = 5000) {
  return withTimeout(new Promise((resolve) => a.once(event, resolve)), ms, `event ${event}`);
}

/** The subscriptions the daemon holds for `a`. */
async function subscriptions(a) {
  const r = await legacyControl(daemon, 'showclient', { channel: a.channel, client: a.clientId });
  return r.data.subscriptions.slice().sort();
}

test('the seed snippets: connect with a callback, on, emit, disconnect', { timeout: 20000 }, async () => {
  const receiver = netcluster.pipedclient({ socketDir: daemon.dir });
  const sender = new netcluster.NCAgent({ socketDir: daemon.dir });
  const got = new Promise((resolve) => {
    receiver.connect('B', function () {
      assert.equal(this, receiver);
      receiver.on('log', (msg) => {
        receiver.disconnect();
        resolve(msg);
      });
      receiver.sync().then(() => {
        sender.connect('A', () => sender.emit('log', 'TESTE'));
      });
    });
  });
  const msg = await withTimeout(got, 10000, 'the receiver got log');
  assert.deepEqual(Object.keys(msg).sort(), ['broadcast', 'channel', 'data', 'emmiteruuid', 'event']);
  assert.equal(msg.data, 'TESTE');
  assert.equal(msg.event, 'log');
  assert.equal(msg.channel, 'A');
  assert.equal(msg.broadcast, false);
  assert.equal(msg.emmiteruuid, sender.uuid);
  assert.match(msg.emmiteruuid, ORIGIN);
  await sender.disconnect();
  assert.equal(receiver.connected, false);
});

test('emit and on between clients of one channel; any JSON data', { timeout: 20000 }, async (t) => {
  const a = await agent(t, 'C');
  const b = await agent(t, 'C');
  const received = [];
  b.on('data', (m) => received.push(m.data));
  await b.sync();
  const values = [1, 'two', { three: [3] }, null, true, 'ünïcödé ✓'];
  for (const v of values) a.emit('data', v);
  a.emit('data'); // undefined is sent as null
  await a.sync();
  await withTimeout(
    (async () => {
      while (received.length < values.length + 1) await sleep(10);
    })(),
    5000,
    'all values',
  );
  assert.deepEqual(received, [...values, null]);
});

test('once fires once and then unsubscribes at the daemon', { timeout: 20000 }, async (t) => {
  const a = await agent(t, 'C', { echo: false });
  const b = await agent(t, 'C');
  let calls = 0;
  b.once('ping', () => calls++);
  await b.sync();
  assert.deepEqual(await subscriptions(b), ['ping']);
  a.emit('ping', 1);
  a.emit('ping', 2);
  await a.sync();
  await sleep(100);
  assert.equal(calls, 1);
  assert.deepEqual(await subscriptions(b), [], 'the once listener is gone, so is the subscription');
});

test('removeListener of the last listener unsubscribes; the daemon then filters', { timeout: 20000 }, async (t) => {
  const a = await agent(t, 'C');
  const b = await agent(t, 'C');
  const got = [];
  const l1 = (m) => got.push(['l1', m.data]);
  const l2 = (m) => got.push(['l2', m.data]);
  b.on('x', l1);
  b.on('x', l2);
  b.on('y', l1);
  await b.sync();
  assert.deepEqual(await subscriptions(b), ['x', 'y']);
  a.emit('x', 1);
  await a.sync();
  await waitUntil(() => got.length === 2);
  b.removeListener('x', l1);
  await b.sync();
  assert.deepEqual(await subscriptions(b), ['x', 'y'], 'one x listener is left');
  b.off('x', l2);
  await b.sync();
  assert.deepEqual(await subscriptions(b), ['y']);
  b.removeAllListeners();
  await b.sync();
  assert.deepEqual(await subscriptions(b), []);
  a.emit('x', 2);
  a.emit('y', 3);
  await a.sync();
  await sleep(100);
  assert.deepEqual(got, [
    ['l1', 1],
    ['l2', 1],
  ]);
  // The daemon sent b nothing it did not listen to.
  const shown = await legacyControl(daemon, 'showclient', { channel: 'C', client: b.clientId });
  assert.equal(shown.data.messages_out, 1);
});

async function waitUntil(fn, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await sleep(10);
  }
}

test('own emits reach own listeners by default; echo: false turns it off', { timeout: 20000 }, async (t) => {
  const a = await agent(t, 'C');
  const echoed = next(a, 'self');
  a.emit('self', { me: true });
  const p = await echoed;
  assert.deepEqual(p, { emmiteruuid: a.uuid, channel: 'C', broadcast: false, event: 'self', data: { me: true } });

  const quiet = await agent(t, 'C', { echo: false });
  let heard = 0;
  quiet.on('self', () => heard++);
  quiet.emit('self', 1);
  await quiet.sync();
  await sleep(50);
  assert.equal(heard, 0);
});

test('listeners added before connect are subscribed when the callback runs', { timeout: 20000 }, async (t) => {
  const early = netcluster.pipedclient({ socketDir: daemon.dir });
  const got = new Promise((resolve) => early.on('early', resolve));
  await new Promise((resolve, reject) => early.connect('C', (err) => (err ? reject(err) : resolve())));
  t.after(() => early.disconnect());
  const a = await agent(t, 'C');
  a.emit('early', 5);
  assert.equal((await withTimeout(got, 5000, 'early')).data, 5);
});

test('two clients across a propagation rule (A -> B)', { timeout: 20000 }, async (t) => {
  const onA = await agent(t, 'A');
  const onB = await agent(t, 'B');
  const onC = await agent(t, 'C');
  let cGot = 0;
  onC.on('log', () => cGot++);
  const gotB = next(onB, 'log');
  await onB.sync();
  await onC.sync();
  onA.emit('log', 'across');
  const p = await gotB;
  assert.equal(p.channel, 'A', 'channel is the origin channel');
  assert.equal(p.emmiteruuid, onA.uuid);
  assert.equal(p.data, 'across');
  // Nothing goes back from B to A.
  let aGot = 0;
  onA.on('back', () => aGot++);
  await onA.sync();
  onB.emit('back', 1);
  await onB.sync();
  await sleep(100);
  assert.equal(aGot, 0);
  assert.equal(cGot, 0);
});

test("'*' listens to every event of the channel", { timeout: 20000 }, async (t) => {
  const a = await agent(t, 'C', { echo: false });
  const b = await agent(t, 'C');
  const all = [];
  b.on('*', (m) => all.push(m.event));
  await b.sync();
  a.emit('one', 1);
  a.emit('two', 2);
  await a.sync();
  await waitUntil(() => all.length === 2);
  assert.deepEqual(all, ['one', 'two']);
  assert.throws(() => a.emit('*', 1), /reserved/);
});

test('the package and a raw legacy client talk both ways', { timeout: 20000 }, async (t) => {
  const js = await agent(t, 'C');
  const legacy = await LegacyClient.connect(daemon.socket('C'));
  t.after(() => legacy.close());
  const fromLegacy = next(js, 'legacy-says');
  await js.sync();
  legacy.send('legacy-says', { hi: 1 });
  const p = await fromLegacy;
  assert.deepEqual(p.data, { hi: 1 });
  assert.match(p.emmiteruuid, ORIGIN);
  js.emit('native-says', [1, 2]);
  const q = await legacy.recv();
  assert.deepEqual(q, { emmiteruuid: js.uuid, channel: 'C', broadcast: false, event: 'native-says', data: [1, 2] });
});

test('connect errors name the socket path and where channels come from', { timeout: 20000 }, async () => {
  const a = netcluster.pipedclient({ socketDir: daemon.dir });
  const expected = path.join(daemon.dir, 'netcluster-nosuch');
  await assert.rejects(a.connect('nosuch'), (e) => {
    assert.equal(e.code, 'NO_SUCH_CHANNEL');
    assert.ok(e.message.includes(expected), e.message);
    assert.match(e.message, /Channels come from the server's config/);
    assert.match(e.message, /NETCLUSTER_SOCKET_DIR/);
    return true;
  });
  assert.equal(a.state, 'closed');
  assert.throws(() => a.emit('x', 1), /not connected/);

  // Node-style callback gets the error.
  const viaCb = await new Promise((resolve) => netcluster.pipedclient({ socketDir: daemon.dir }).connect('nosuch', (err) => resolve(err)));
  assert.equal(viaCb.code, 'NO_SUCH_CHANNEL');

  // A seed-style callback (no parameter) is not called; the error is emitted.
  const seed = netcluster.pipedclient({ socketDir: daemon.dir });
  const emitted = new Promise((resolve) => seed.on('error', resolve));
  seed.connect('nosuch', () => assert.fail('the callback runs only on success'));
  assert.equal((await withTimeout(emitted, 5000, 'error event')).code, 'NO_SUCH_CHANNEL');

  // A socket file nobody serves (left by a process that was killed).
  const empty = tempDir();
  const stale = path.join(empty, 'netcluster-X');
  const script = `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`;
  require('node:child_process').spawnSync(process.execPath, ['-e', script]);
  assert.ok(require('node:fs').existsSync(stale), 'a stale socket file');
  await assert.rejects(netcluster.pipedclient({ socketDir: empty }).connect('X'), (e) => {
    assert.equal(e.code, 'NOT_RUNNING');
    assert.ok(e.message.includes(stale), e.message);
    assert.match(e.message, /no ncserver is accepting/);
    return true;
  });
  require('node:fs').rmSync(empty, { recursive: true, force: true });

  await assert.rejects(netcluster.pipedclient({ socketDir: daemon.dir }).connect('a/b'), /contains '\/'/);
});

test('errors from the daemon become error events with its message', { timeout: 20000 }, async (t) => {
  const victim = await agent(t, 'C');
  const err = new Promise((resolve) => victim.once('error', resolve));
  // Removing the channel by a reload closes its clients with an error.
  const r = await legacyControl(daemon, 'reloadconfig', { socketdir: daemon.dir, channels: { A: CONFIG.channels.A, B: {} } });
  assert.deepEqual(r.data.removed, ['C']);
  const e = await withTimeout(err, 5000, 'error event');
  assert.equal(e.code, 'CHANNEL_REMOVED');
  assert.equal(e.fatal, true);
  assert.match(e.message, /C/);
  await waitUntil(() => !victim.connected);
  assert.throws(() => victim.emit('x', 1), /not connected/);
  const back = await legacyControl(daemon, 'reloadconfig', { socketdir: daemon.dir, channels: CONFIG.channels });
  assert.deepEqual(back.data.added, ['C']);
});

test('disconnect closes the connection; the daemon forgets the client', { timeout: 20000 }, async () => {
  const a = netcluster.pipedclient({ socketDir: daemon.dir });
  await a.connect('B');
  const id = a.clientId;
  assert.equal(a.connected, true);
  a.emit('last', 1); // written before the close
  await a.disconnect();
  assert.equal(a.connected, false);
  assert.throws(() => a.emit('x', 1), (e) => e.code === 'NOT_CONNECTED');
  // The daemon keeps a departed client's last record, with why it went.
  let r;
  for (let i = 0; i < 100; i++) {
    r = await legacyControl(daemon, 'showclient', { channel: 'B', client: id });
    if (r.data.disconnected) break;
    await new Promise((ok) => setTimeout(ok, 20));
  }
  assert.ok(r.data.disconnected, JSON.stringify(r.data));
  assert.match(r.data.reason, /closed by the client/);
  // As in the seed, disconnect removed the listeners: a seed program that
  // registers them in its connect callback does not get them twice.
  const b = netcluster.pipedclient({ socketDir: daemon.dir });
  let calls = 0;
  b.on('error', () => {});
  const register = () => b.on('again', () => calls++);
  await new Promise((resolve) => b.connect('B', () => resolve(register())));
  await b.disconnect();
  assert.deepEqual(b.eventNames(), ['error'], 'only the error listener is left');
  await new Promise((resolve) => b.connect('B', () => resolve(register())));
  await b.sync();
  assert.deepEqual((await legacyControl(daemon, 'showclient', { channel: 'B', client: b.clientId })).data.subscriptions, ['again']);
  const sender = netcluster.pipedclient({ socketDir: daemon.dir });
  await sender.connect('B');
  sender.emit('again', 1);
  await sender.sync();
  await waitUntil(() => calls === 1);
  await sleep(50);
  assert.equal(calls, 1);
  await sender.disconnect();
  await b.disconnect();
});

test('the socket directory comes from NETCLUSTER_SOCKET_DIR when not given', { timeout: 20000 }, async (t) => {
  const saved = process.env.NETCLUSTER_SOCKET_DIR;
  process.env.NETCLUSTER_SOCKET_DIR = daemon.dir;
  t.after(() => {
    if (saved === undefined) delete process.env.NETCLUSTER_SOCKET_DIR;
    else process.env.NETCLUSTER_SOCKET_DIR = saved;
  });
  const a = netcluster.pipedclient();
  await a.connect('A');
  assert.equal(a.socketPath, path.join(daemon.dir, 'netcluster-A'));
  await waitForClients(daemon, 'A', 1, 'native');
  await a.disconnect();
});

test('invalid names and oversized data throw at once', { timeout: 20000 }, async (t) => {
  const a = await agent(t, 'C');
  assert.throws(() => a.emit('', 1), /empty/);
  assert.throws(() => a.on('', () => {}), /empty/);
  assert.throws(() => a.emit('e'.repeat(1025), 1), /1025 bytes/);
  assert.ok(a.maxMessage > 0);
  assert.throws(() => a.emit('big', 'x'.repeat(a.maxMessage)), (e) => e.code === 'TOO_LARGE');
  // The local EventEmitter events stay local.
  let local = 0;
  a.on('newListener', () => local++);
  a.on('anything', () => {});
  assert.equal(local, 1);
  await a.sync();
  assert.deepEqual(await subscriptions(a), ['anything']);
});

test('large messages and long bursts arrive whole and in order', { timeout: 30000 }, async (t) => {
  const a = await agent(t, 'C', { echo: false });
  const b = await agent(t, 'C');
  const big = { blob: 'é'.repeat(1 << 20), n: 1 };
  const gotBig = next(b, 'big', 10000);
  await b.sync();
  a.emit('big', big);
  assert.deepEqual((await gotBig).data, big);

  const n = 5000;
  const seen = [];
  b.on('seq', (m) => seen.push(m.data));
  await b.sync();
  for (let i = 0; i < n; i++) a.emit('seq', i);
  await a.sync();
  await waitUntil(() => seen.length === n, 15000);
  assert.deepEqual(seen, [...Array(n).keys()]);
});

test('emits made while connecting are sent, and echoed once connected', { timeout: 20000 }, async (t) => {
  const b = await agent(t, 'C');
  const got = next(b, 'eager');
  await b.sync();
  const a = netcluster.pipedclient({ socketDir: daemon.dir });
  const echoed = next(a, 'eager');
  const connected = a.connect('C');
  t.after(() => a.disconnect());
  a.emit('eager', 'before the welcome');
  await connected;
  const [remote, own] = await Promise.all([got, echoed]);
  assert.equal(remote.data, 'before the welcome');
  assert.equal(remote.emmiteruuid, a.uuid);
  assert.equal(own.emmiteruuid, a.uuid);
});
