'use strict';
// pipedserver(): the seed's embeddable local server, now a child ncserver.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { binary, tempDir, withTimeout } = require('../testlib/helpers');
const netcluster = require('..');
const { findNcserver } = require('../lib/server');

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('the seed snippet: config assigned, start(), clients talk, stop()', { timeout: 30000 }, async (t) => {
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const server = netcluster.pipedserver({ ncserver: binary('ncserver'), output: 'ignore' });
  // As in the seed's README: the config object is assigned, then start().
  server.config = {
    socketdir: dir,
    startcontrol: true,
    channels: {
      control: { propagatetochannels: false, propagatetonet: false, dumptoconsole: false },
      A: { propagatetochannels: '.*', propagatetonet: false, dumptoconsole: false },
      B: { propagatetochannels: '.*', propagatetonet: false, dumptoconsole: false },
    },
  };
  t.after(() => server.stop());
  await withTimeout(server.start(), 15000, 'pipedserver start');
  const pid = server.pid;
  assert.ok(alive(pid));
  for (const ch of ['control', 'A', 'B']) assert.ok(fs.existsSync(path.join(dir, `netcluster-${ch}`)), ch);

  const receiver = netcluster.pipedclient({ socketDir: dir });
  const sender = netcluster.pipedclient({ socketDir: dir });
  await receiver.connect('B');
  const got = new Promise((resolve) => receiver.on('log', resolve));
  await receiver.sync();
  await sender.connect('A');
  sender.emit('log', 'TESTE');
  assert.equal((await withTimeout(got, 5000, 'log on B')).data, 'TESTE');
  await sender.disconnect();
  await receiver.disconnect();

  await withTimeout(server.stop(), 10000, 'pipedserver stop');
  assert.equal(server.pid, null);
  assert.ok(!alive(pid), 'ncserver exited');
  assert.ok(!fs.existsSync(path.join(dir, 'netcluster-A')), 'its sockets are removed');
});

test('start with a callback; a bad config fails with ncserver\'s message', { timeout: 30000 }, async (t) => {
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const bad = netcluster.pipedserver({ ncserver: binary('ncserver'), output: 'ignore' });
  bad.config = { socketdir: dir, channels: { A: { propagatetochanels: true } } };
  const err = await new Promise((resolve) => bad.start((e) => resolve(e)));
  assert.ok(err, 'start failed');
  assert.equal(err.code, 'START_FAILED');
  assert.match(err.message, /did you mean "propagatetochannels"/);
  assert.equal(bad.pid, null);

  // A config file path works too, and stop() takes a callback.
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, `{\n  // comments, as in the seed's config.json\n  "socketdir": ${JSON.stringify(dir)},\n  "channels": { "Z": {} }\n}\n`);
  const good = netcluster.pipedserver({ ncserver: binary('ncserver'), output: 'ignore' });
  good.config = file;
  await new Promise((resolve, reject) => good.start((e) => (e ? reject(e) : resolve())));
  assert.ok(fs.existsSync(path.join(dir, 'netcluster-Z')));
  await assert.rejects(good.start(), /already running/);
  await new Promise((resolve) => good.stop(resolve));
  assert.ok(!fs.existsSync(path.join(dir, 'netcluster-Z')));
});

test('socketDir option when the config has no socketdir; a missing binary is explained', { timeout: 30000 }, async (t) => {
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const server = netcluster.pipedserver({ ncserver: binary('ncserver'), output: 'ignore', socketDir: dir, config: { channels: { Q: {} } } });
  t.after(() => server.stop());
  await server.start();
  assert.equal(server.socketDir, dir);
  const a = netcluster.pipedclient({ socketDir: dir });
  await a.connect('Q');
  await a.disconnect();
  await server.stop();

  const missing = netcluster.pipedserver({ ncserver: path.join(dir, 'no-ncserver'), output: 'ignore', config: { socketdir: dir } });
  await assert.rejects(missing.start(), /cannot run .*no-ncserver/);
});

test('findNcserver: option, then NETCLUSTER_NCSERVER, then the repository build', () => {
  assert.equal(findNcserver('/opt/x/ncserver', { NETCLUSTER_NCSERVER: '/env/ncserver' }), '/opt/x/ncserver');
  assert.equal(findNcserver(undefined, { NETCLUSTER_NCSERVER: '/env/ncserver' }), '/env/ncserver');
  const found = findNcserver(undefined, { PATH: '' });
  assert.match(found, /target[/\\](release|debug)[/\\]ncserver/);
});
