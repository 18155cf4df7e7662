'use strict';
// The seed's wire format (NUL-terminated JSON), spoken by a raw client
// written here, against the real ncserver and the Rust ncclient.

const test = require('node:test');
const assert = require('node:assert/strict');

const { startDaemon, LegacyClient, waitForClients, ncclient, ncclientListen, sleep, withTimeout } = require('../testlib/helpers');

const CONFIG = {
  channels: {
    A: { propagatetochannels: '^B$' },
    B: {},
    C: {},
  },
};
const ORIGIN = /^[0-9a-f]{16}:[0-9]+$/;

let daemon;
test.before(async () => {
  daemon = await startDaemon(CONFIG);
});
test.after(async () => {
  if (daemon) await daemon.stop();
});

test('legacy JS client -> native client (ncclient listen)', { timeout: 20000 }, async () => {
  const listener = ncclientListen(daemon, 'A', 3);
  await withTimeout(listener.ready, 10000, 'ncclient listen');
  const js = await LegacyClient.connect(daemon.socket('A'));
  js.send('log', 'TESTE');
  js.send('obj', { a: [1, 2], s: 'é' });
  // No data at all: the native side gets null.
  await js.write(Buffer.concat([Buffer.from('{"event":"nodata"}'), Buffer.from([0])]));
  const { code, lines } = await withTimeout(listener.done, 15000, 'ncclient listen to exit');
  assert.equal(code, 0);
  assert.deepEqual(
    lines.map((l) => [l.channel, l.event, l.data]),
    [
      ['A', 'log', 'TESTE'],
      ['A', 'obj', { a: [1, 2], s: 'é' }],
      ['A', 'nodata', null],
    ],
  );
  assert.match(lines[0].origin, ORIGIN);
  // One origin, consecutive sequence numbers.
  assert.equal(new Set(lines.map((l) => l.origin)).size, 1);
  assert.deepEqual(
    lines.map((l) => l.seq),
    [1, 2, 3],
  );
  js.close();
});

test('native client (ncclient emit) -> legacy JS client that only listens', { timeout: 20000 }, async () => {
  const js = await LegacyClient.connect(daemon.socket('B'));
  // It sends nothing: after 200 ms of silence the daemon takes it for a seed client.
  await waitForClients(daemon, 'B', 1, 'legacy');
  const dir = ['--socket-dir', daemon.dir];
  assert.equal((await ncclient([...dir, 'emit', 'B', 'greet', '{"x":1}'])).code, 0);
  assert.equal((await ncclient([...dir, 'emit', 'B', 'raw', '--raw', 'not json'])).code, 0);
  const p1 = await js.recv();
  assert.deepEqual(Object.keys(p1).sort(), ['broadcast', 'channel', 'data', 'emmiteruuid', 'event']);
  assert.match(p1.emmiteruuid, ORIGIN);
  assert.deepEqual({ ...p1, emmiteruuid: 'x' }, { emmiteruuid: 'x', channel: 'B', broadcast: false, event: 'greet', data: { x: 1 } });
  const p2 = await js.recv();
  assert.equal(p2.event, 'raw');
  assert.equal(p2.data, 'not json', 'a non-JSON payload arrives as a JSON string');
  js.close();
});

test('legacy JS -> legacy JS across a propagation rule (A -> B, not C)', { timeout: 20000 }, async () => {
  const onB = await LegacyClient.connect(daemon.socket('B'));
  const onC = await LegacyClient.connect(daemon.socket('C'));
  const onA = await LegacyClient.connect(daemon.socket('A'));
  const before = (await waitForClients(daemon, 'B', 1, 'legacy')).length;
  await waitForClients(daemon, 'C', 1, 'legacy');
  assert.ok(before >= 1);
  onA.send('relay', { n: 7 });
  const p = await onB.recv();
  assert.equal(p.event, 'relay');
  assert.equal(p.channel, 'A', 'the origin channel');
  assert.deepEqual(p.data, { n: 7 });
  assert.equal(p.broadcast, false);
  assert.match(p.emmiteruuid, ORIGIN);
  // The sender never gets its own packet back, and C is not in A's rule.
  assert.ok(await onA.quiet(300), 'the sender got nothing back');
  assert.ok(await onC.quiet(0), 'C got nothing');
  // B does not propagate back to A.
  onB.send('back', 1);
  assert.ok(await onA.quiet(300), 'B -> A is not a rule');
  for (const c of [onA, onB, onC]) c.close();
});

test('a packet split byte by byte, even inside UTF-8 characters', { timeout: 20000 }, async () => {
  const listener = ncclientListen(daemon, 'C', 2);
  await withTimeout(listener.ready, 10000, 'ncclient listen');
  const js = await LegacyClient.connect(daemon.socket('C'));
  const data = { text: 'café ✓ 日本', n: [1, 2, 3] };
  const bytes = Buffer.concat([LegacyClient.encode('split', data), LegacyClient.encode('after', 'end')]);
  for (let i = 0; i < bytes.length; i++) {
    await js.write(bytes.subarray(i, i + 1));
    if (i % 4 === 0) await sleep(1);
  }
  const { lines } = await withTimeout(listener.done, 15000, 'ncclient listen');
  assert.deepEqual(
    lines.map((l) => [l.event, l.data]),
    [
      ['split', data],
      ['after', 'end'],
    ],
  );
  js.close();
});

test('several packets in one write, and writes that cut packets anywhere', { timeout: 20000 }, async () => {
  const n = 20;
  const listener = ncclientListen(daemon, 'C', n);
  await withTimeout(listener.ready, 10000, 'ncclient listen');
  const js = await LegacyClient.connect(daemon.socket('C'));
  const packets = [];
  for (let i = 0; i < n; i++) packets.push(LegacyClient.encode('burst', { i, pad: 'x'.repeat(i * 7) }));
  const all = Buffer.concat(packets);
  // First ten packets in a single write.
  const ten = packets.slice(0, 10).reduce((a, p) => a + p.length, 0);
  await js.write(all.subarray(0, ten));
  // The rest in writes of 13 bytes: each ends mid-packet and starts another.
  for (let at = ten; at < all.length; at += 13) {
    await js.write(all.subarray(at, at + 13));
  }
  const { lines } = await withTimeout(listener.done, 15000, 'ncclient listen');
  assert.deepEqual(
    lines.map((l) => l.data.i),
    [...Array(n).keys()],
  );
  js.close();
});

test('the legacy receiving side copes with coalesced deliveries', { timeout: 20000 }, async () => {
  const js = await LegacyClient.connect(daemon.socket('C'));
  await waitForClients(daemon, 'C', 1, 'legacy');
  const lines = Array.from({ length: 50 }, (_, i) => JSON.stringify({ i }));
  const r = await ncclient(['--socket-dir', daemon.dir, 'emit', 'C', 'many'], { input: lines.join('\n') + '\n' });
  assert.equal(r.code, 0, r.stderr);
  for (let i = 0; i < 50; i++) {
    const p = await js.recv();
    assert.equal(p.event, 'many');
    assert.deepEqual(p.data, { i });
  }
  js.close();
});

test('malformed packets get an nc-error packet and a disconnect; others are unaffected', { timeout: 20000 }, async () => {
  const bystander = await LegacyClient.connect(daemon.socket('A'));
  const listener = ncclientListen(daemon, 'A', 2);
  await withTimeout(listener.ready, 10000, 'ncclient listen');
  const bad = [
    ['invalid JSON', '{not json}'],
    ['a non-string event', '{"event": 5, "data": 1}'],
    ['no event', '{"data": 1}'],
    ['trailing garbage', '{"event":"x"} junk'],
  ];
  const expectErrorAndClose = async (c, what) => {
    const err = await c.recv();
    assert.ok(err, `${what}: an error packet`);
    assert.equal(err.event, 'nc-error', what);
    assert.equal(err.emmiteruuid, 'ncserver', what);
    assert.equal(err.channel, 'A', what);
    assert.equal(typeof err.data.error, 'string', what);
    assert.ok(err.data.error.length > 0, what);
    assert.equal(await c.recv(), null, `${what}: the daemon closed the connection`);
  };
  for (const [what, text] of bad) {
    const c = await LegacyClient.connect(daemon.socket('A'));
    await c.write(Buffer.concat([Buffer.from(text), Buffer.from([0])]));
    await expectErrorAndClose(c, what);
  }
  // A good packet, then a JSON array (not an object) in the same write:
  // the good one goes through, then the error and the disconnect.
  const mixed = await LegacyClient.connect(daemon.socket('A'));
  await mixed.write(Buffer.concat([LegacyClient.encode('before-bad', 0), Buffer.from('[1,2]'), Buffer.from([0])]));
  await expectErrorAndClose(mixed, 'a JSON array');
  // The bystander and native clients keep working.
  bystander.send('still-fine', 1);
  const { lines } = await withTimeout(listener.done, 15000, 'ncclient listen');
  assert.deepEqual(
    lines.map((l) => [l.event, l.data]),
    [
      ['before-bad', 0],
      ['still-fine', 1],
    ],
    'nothing from the malformed packets reached anyone',
  );
  bystander.close();
});
