'use strict';
// The control module's showpeers() and status() against two networked
// daemons that reach each other over loopback only (a unicast "group" of
// their own plus each other as `peers`), so no traffic leaves the host.

const test = require('node:test');
const assert = require('node:assert/strict');
const dgram = require('node:dgram');

const { startDaemon, waitFor } = require('../testlib/helpers');
const control = require('../control');

/** A UDP port free on 127.0.0.1 right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function netConfig(name, port, peerPort) {
  return {
    connecttonet: true,
    addr: '127.0.0.1',
    port,
    peers: [`127.0.0.1:${peerPort}`],
    nodename: name,
    channels: { A: { propagatetonet: true } },
  };
}

test('showpeers and status through the control module', { timeout: 60000 }, async (t) => {
  const [p1, p2] = [await freePort(), await freePort()];
  const one = await startDaemon(netConfig('one', p1, p2));
  t.after(() => one.stop());
  const two = await startDaemon(netConfig('two', p2, p1));
  t.after(() => two.stop());
  const plain = await startDaemon({ channels: { A: {} } });
  t.after(() => plain.stop());

  const ctl = new control.ControlClient({ socketDir: one.dir });
  t.after(() => ctl.close());
  const shown = await waitFor(
    async () => {
      const r = await ctl.showpeers();
      return r.peers.some((p) => p.name === 'two' && p.up) && r;
    },
    'daemon "one" to see "two" in showpeers()',
    20000,
  );
  assert.equal(shown.name, 'one');
  assert.equal(shown.group, `127.0.0.1:${p1}`);
  assert.deepEqual(shown.unicast_peers, [`127.0.0.1:${p2}`]);
  const peer = shown.peers.find((p) => p.name === 'two');
  assert.match(peer.node, /^[0-9a-f]{16}$/);
  assert.equal(peer.addr, `127.0.0.1:${p2}`);
  assert.ok(peer.datagrams_in > 0);

  const status = await ctl.status();
  assert.equal(status.socketdir, one.dir);
  assert.match(status.node, /^[0-9a-f]{16}$/);
  assert.equal(status.node, shown.node);

  // The one-shot form, with a callback, as the seed's functions were used.
  const saved = process.env.NETCLUSTER_SOCKET_DIR;
  process.env.NETCLUSTER_SOCKET_DIR = two.dir;
  t.after(() => {
    if (saved === undefined) delete process.env.NETCLUSTER_SOCKET_DIR;
    else process.env.NETCLUSTER_SOCKET_DIR = saved;
  });
  const viaCallback = await new Promise((resolve, reject) => control.showpeers((err, r) => (err ? reject(err) : resolve(r))));
  assert.equal(viaCallback.name, 'two');
  assert.equal((await control.status()).socketdir, two.dir);

  // A daemon without networking refuses, saying why.
  const off = new control.ControlClient({ socketDir: plain.dir });
  t.after(() => off.close());
  await assert.rejects(off.showpeers(), (e) => {
    assert.match(e.message, /not connected to the network/);
    assert.equal(e.code, 'CONTROL_FAILED');
    return true;
  });
});
