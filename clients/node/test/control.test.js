'use strict';
// The seed's control events, sent as its ncclient.js sent them (legacy
// packets on the `control` channel), and the package's control module.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { startDaemon, LegacyClient, waitForClients, tempDir } = require('../testlib/helpers');
const control = require('../control');
const { pipedclient } = require('..');

const CONFIG = { channels: { A: { propagatetochannels: '^B$' }, B: {} } };

let daemon;
let scratch;
test.before(async () => {
  daemon = await startDaemon(CONFIG);
  scratch = tempDir('nc-js-cfg-');
});
test.after(async () => {
  if (daemon) await daemon.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

/** One control event from a legacy client; returns the response packet. */
async function ask(client, command, data) {
  client.send(`nc-control-${command}`, data);
  const r = await client.recv();
  assert.ok(r, `an answer to ${command}`);
  assert.equal(r.event, `nc-control-${command}-response`);
  assert.equal(r.emmiteruuid, 'ncserver');
  assert.equal(r.channel, 'control');
  assert.equal(r.broadcast, false);
  return r.data;
}

test('every seed control event is answered to the caller only', { timeout: 30000 }, async (t) => {
  const asker = await LegacyClient.connect(daemon.socket('control'));
  const other = await LegacyClient.connect(daemon.socket('control'));
  const onA = await LegacyClient.connect(daemon.socket('A'));
  onA.send('hello', 1);
  t.after(() => [asker, other, onA].forEach((c) => c.close()));

  await t.test('nc-control-showconfig ignores its data', async () => {
    for (const data of [null, 'whatever', { x: 1 }]) {
      const cfg = await ask(asker, 'showconfig', data);
      assert.deepEqual(Object.keys(cfg.channels).sort(), ['A', 'B', 'control']);
      assert.equal(cfg.channels.A.propagatetochannels, '^B$');
      assert.equal(cfg.socketdir, daemon.dir);
    }
  });

  await t.test('nc-control-showchannel with a channel name', async () => {
    const clients = await ask(asker, 'showchannel', 'A');
    assert.equal(clients.length, 1);
    assert.equal(clients[0].protocol, 'legacy');
    assert.equal(clients[0].channel, 'A');
    assert.equal(clients[0].messages_in, 1);
    const err = await ask(asker, 'showchannel', 'nope');
    assert.deepEqual(Object.keys(err), ['error']);
    assert.match(err.error, /no channel named "nope"/);
    assert.match(err.error, /A, B/);
  });

  await t.test('nc-control-showclient with {channel, client}', async () => {
    const [c] = await ask(asker, 'showchannel', 'A');
    const byId = await ask(asker, 'showclient', { channel: 'A', client: c.id });
    assert.equal(byId.id, c.id);
    assert.equal(byId.origin, c.origin);
    // The origin string (the emmiteruuid other clients see) works too.
    const byOrigin = await ask(asker, 'showclient', { channel: 'A', client: c.origin });
    assert.equal(byOrigin.id, c.id);
    const missing = await ask(asker, 'showclient', { channel: 'A', client: 999999 });
    assert.match(missing.error, /no client 999999 on channel "A"/);
    const bad = await ask(asker, 'showclient', 'A');
    assert.match(bad.error, /showclient takes a channel and a client id/);
  });

  await t.test('nc-control-reloadconfig with a config object', async () => {
    const cfg = { socketdir: daemon.dir, channels: { A: { propagatetochannels: '^B$' }, B: {}, C: {} } };
    const r = await ask(asker, 'reloadconfig', cfg);
    assert.deepEqual(r.added, ['C']);
    assert.deepEqual(r.removed, []);
    assert.ok(fs.existsSync(daemon.socket('C')), 'the new channel has its socket');
    const shown = await ask(asker, 'showconfig', null);
    assert.ok(shown.channels.C);
    // A bad object is refused with its error and the old config stays.
    const refused = await ask(asker, 'reloadconfig', { channels: { A: { propagatetochanels: true } } });
    assert.match(refused.error, /propagatetochanels/);
    assert.match(refused.error, /did you mean "propagatetochannels"/);
    assert.ok((await ask(asker, 'showconfig', null)).channels.C, 'old config kept');
  });

  await t.test('nc-control-reloadconfig with a path (and the seed\'s reloaconfig)', async () => {
    const file = path.join(scratch, 'reload.json');
    fs.writeFileSync(file, `// the seed's files have comments\n${JSON.stringify({ socketdir: daemon.dir, channels: CONFIG.channels })}`);
    const r = await ask(asker, 'reloadconfig', file);
    assert.deepEqual(r.removed, ['C']);
    assert.ok(!fs.existsSync(daemon.socket('C')), 'the removed channel\'s socket is gone');
    const again = await ask(asker, 'reloaconfig', file);
    assert.deepEqual([again.added, again.removed], [[], []]);
    const missing = await ask(asker, 'reloadconfig', path.join(scratch, 'missing.json'));
    assert.match(missing.error, /missing\.json/);
  });

  await t.test('nc-control-status', async () => {
    const s = await ask(asker, 'status', null);
    assert.match(s.node, /^[0-9a-f]{16}$/);
    assert.equal(s.socketdir, daemon.dir);
  });

  await t.test('an unknown command is an error answer', async () => {
    const r = await ask(asker, 'nosuch', null);
    assert.match(r.error, /unknown control command "nosuch"/);
  });

  assert.ok(await other.quiet(200), 'the other control client saw no answers');
  assert.ok(await onA.quiet(0), 'clients of A saw nothing');
});

test('control events on another channel are ordinary events', { timeout: 20000 }, async () => {
  const sender = await LegacyClient.connect(daemon.socket('A'));
  const receiver = await LegacyClient.connect(daemon.socket('B'));
  await waitForClients(daemon, 'B', 1, 'legacy');
  sender.send('nc-control-showconfig', null);
  const p = await receiver.recv();
  assert.equal(p.event, 'nc-control-showconfig');
  assert.equal(p.channel, 'A');
  assert.ok(await sender.quiet(200), 'no answer outside the control channel');
  sender.close();
  receiver.close();
});

test('the control module: promises and callbacks', { timeout: 30000 }, async (t) => {
  const ctl = new control.ControlClient({ socketDir: daemon.dir });
  t.after(() => ctl.close());
  const agent = pipedclient({ socketDir: daemon.dir });
  await agent.connect('A');
  t.after(() => agent.disconnect());

  const cfg = await ctl.showconfig();
  assert.deepEqual(Object.keys(cfg.channels).sort(), ['A', 'B', 'control']);

  const clients = await ctl.showchannel('A');
  const me = clients.find((c) => c.origin === agent.uuid);
  assert.ok(me, 'the agent is listed');
  assert.equal(me.protocol, 'native');
  assert.equal((await ctl.showclient('A', agent.uuid)).id, agent.clientId);
  assert.equal((await ctl.showclient('A', agent.clientId)).origin, agent.uuid);

  const all = await ctl.showchannel();
  assert.deepEqual(all.map((c) => c.channel).sort(), ['A', 'B', 'control']);

  // Concurrent requests each get their own answer.
  const [x, y, z] = await Promise.all([ctl.showchannel('A'), ctl.showchannel('B'), ctl.status()]);
  assert.ok(x.some((c) => c.origin === agent.uuid));
  assert.ok(!y.some((c) => c.origin === agent.uuid));
  assert.match(z.node, /^[0-9a-f]{16}$/);

  // reloadconfig with an object, then with a path relative to this process.
  const r = await ctl.reloadconfig({ socketdir: daemon.dir, channels: { ...CONFIG.channels, D: {} } });
  assert.deepEqual(r.added, ['D']);
  const file = path.join(scratch, 'rel.json');
  fs.writeFileSync(file, JSON.stringify({ socketdir: daemon.dir, channels: CONFIG.channels }));
  const rel = path.relative(process.cwd(), file);
  assert.deepEqual((await ctl.reloaconfig(rel)).removed, ['D']);

  // Failures reject with the daemon's message.
  await assert.rejects(ctl.showchannel('nope'), (e) => {
    assert.match(e.message, /no channel named "nope"/);
    assert.equal(e.code, 'CONTROL_FAILED');
    return true;
  });
  await assert.rejects(ctl.reloadconfig({ channels: { A: { bogus: 1 } } }), /bogus/);

  // Callback style, as the seed's functions were used.
  const viaCallback = await new Promise((resolve, reject) => ctl.showchannel('A', (err, res) => (err ? reject(err) : resolve(res))));
  assert.ok(Array.isArray(viaCallback));
  const cbError = await new Promise((resolve) => ctl.showclient('A', 424242, (err) => resolve(err)));
  assert.match(cbError.message, /no client 424242/);
});

test('the control module: one-shot functions find the daemon like clients do', { timeout: 20000 }, async (t) => {
  const saved = process.env.NETCLUSTER_SOCKET_DIR;
  process.env.NETCLUSTER_SOCKET_DIR = daemon.dir;
  t.after(() => {
    if (saved === undefined) delete process.env.NETCLUSTER_SOCKET_DIR;
    else process.env.NETCLUSTER_SOCKET_DIR = saved;
  });
  const cfg = await control.showconfig();
  assert.equal(cfg.socketdir, daemon.dir);
  assert.ok(Array.isArray(await control.showchannel('B')));
  await assert.rejects(control.showclient('B', 123456), /no client 123456/);
  // The one-shot connections are gone afterwards.
  const ctl = await control.connect({ socketDir: daemon.dir });
  const controlClients = await ctl.showchannel('control');
  await ctl.close();
  assert.equal(controlClients.length, 1, JSON.stringify(controlClients));
});
