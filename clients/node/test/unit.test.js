'use strict';
// Unit tests without a daemon: the native frame codec (byte layouts from
// docs/PROTOCOL.md, any split or coalescing of reads) and the socket path rule.

const test = require('node:test');
const assert = require('node:assert/strict');

const frame = require('../lib/frame');
const { defaultSocketDir, socketPath, checkChannel } = require('../lib/paths');

/** A Deliver frame built by hand, byte by byte, as docs/PROTOCOL.md lays it out. */
function deliver({ client, seq, node, channel, event, payload }) {
  const parts = [Buffer.from([(node !== undefined ? 1 : 0) | (channel !== undefined ? 2 : 0)])];
  const varint = (v) => {
    const out = [];
    let n = BigInt(v);
    while (n >= 0x80n) {
      out.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    out.push(Number(n));
    return Buffer.from(out);
  };
  parts.push(varint(client), varint(seq));
  if (node !== undefined) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(node);
    parts.push(b);
  }
  if (channel !== undefined) parts.push(Buffer.from([Buffer.byteLength(channel)]), Buffer.from(channel));
  const ev = Buffer.from(event);
  const len = Buffer.alloc(2);
  len.writeUInt16LE(ev.length);
  parts.push(len, ev, Buffer.from(payload));
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(5);
  head[0] = 0x82;
  head.writeUInt32LE(body.length, 1);
  return Buffer.concat([head, body]);
}

test('encoders follow docs/PROTOCOL.md byte for byte', () => {
  assert.deepEqual(
    frame.encodeHello(0x01020304, 'ab'),
    Buffer.from([0x01, 15, 0, 0, 0, 0x4e, 0x43, 0x4c, 0x42, 1, 0, 0, 0, 4, 3, 2, 1, 2, 0x61, 0x62]),
  );
  assert.deepEqual(
    frame.encodeSubscription(true, 7, ['a', 'bc']),
    Buffer.from([0x02, 13, 0, 0, 0, 7, 0, 0, 0, 2, 0, 1, 0, 0x61, 2, 0, 0x62, 0x63]),
  );
  assert.equal(frame.encodeSubscription(false, 0, ['a'])[0], 0x03);
  assert.deepEqual(frame.encodePublish('log', Buffer.from('"x"')), Buffer.from([0x04, 8, 0, 0, 0, 3, 0, 0x6c, 0x6f, 0x67, 0x22, 0x78, 0x22]));
  assert.deepEqual(frame.encodeRequest(9, 'e', Buffer.from('1')), Buffer.from([0x05, 8, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0x65, 0x31]));
  assert.deepEqual(frame.encodePing(true, 258n), Buffer.from([0x06, 8, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]));
  // Names are cut at a character boundary.
  assert.equal(frame.truncateUtf8('é'.repeat(200), 255).length, 254);
});

test('the doc example: a 16-byte bench payload is a 31-byte Deliver', () => {
  const f = deliver({ client: 1, seq: 1, event: 'bench', payload: 'x'.repeat(16) });
  assert.equal(f.length, 31);
  const [d] = new frame.FrameReader().push(f);
  assert.deepEqual({ ...d, payload: d.payload.toString() }, {
    type: 'deliver',
    node: null,
    client: 1,
    seq: 1,
    channel: null,
    event: 'bench',
    payload: 'x'.repeat(16),
  });
});

test('frames are decoded whatever the reads: byte by byte, coalesced, cut anywhere', () => {
  const welcome = Buffer.alloc(5 + 25 + 1);
  welcome[0] = 0x81;
  welcome.writeUInt32LE(26, 1);
  welcome.writeUInt16LE(1, 5);
  welcome.writeBigUInt64LE(0xfedcba9876543210n, 9);
  welcome.writeBigUInt64LE(300n, 17);
  welcome.writeUInt32LE(1 << 20, 25);
  welcome[29] = 1;
  welcome[30] = 0x41;
  const frames = [
    welcome,
    deliver({ client: 300, seq: 2 ** 40, node: 5n, channel: 'Ä', event: 'é', payload: '{"a":1}' }),
    deliver({ client: 0, seq: 0, event: 'big', payload: 'y'.repeat(100000) }),
    Buffer.from([0x85, 4, 0, 0, 0, 42, 0, 0, 0]),
    Buffer.concat([Buffer.from([0x84, 11, 0, 0, 0, 8, 0, 0, 0, 0, 0, 1]), Buffer.from('gone')]),
    Buffer.from([0x83, 6, 0, 0, 0, 3, 0, 0, 0, 1, 0x7b]),
  ];
  const stream = Buffer.concat(frames);
  const check = (decoded) => {
    assert.equal(decoded.length, frames.length);
    assert.deepEqual(decoded[0], { type: 'welcome', version: 1, node: 0xfedcba9876543210n, client: 300, maxMessage: 1 << 20, channel: 'A' });
    assert.equal(decoded[1].client, 300);
    assert.equal(decoded[1].seq, 2 ** 40);
    assert.equal(decoded[1].node, 5n);
    assert.equal(decoded[1].channel, 'Ä');
    assert.equal(decoded[1].event, 'é');
    assert.equal(decoded[1].payload.toString(), '{"a":1}');
    assert.equal(decoded[2].payload.length, 100000);
    assert.deepEqual(decoded[3], { type: 'ack', id: 42 });
    assert.deepEqual(decoded[4], { type: 'error', code: 8, codeName: 'CHANNEL_REMOVED', id: 0, fatal: true, message: 'gone' });
    assert.equal(decoded[5].ok, false);
  };
  // All at once.
  check(new frame.FrameReader().push(stream));
  // Byte by byte.
  const r1 = new frame.FrameReader();
  const one = [];
  for (let i = 0; i < stream.length; i++) one.push(...r1.push(stream.subarray(i, i + 1)));
  check(one);
  assert.equal(r1.partial, false);
  // Chunks of assorted sizes that cut headers and bodies.
  for (const size of [2, 3, 5, 7, 4096, 65536]) {
    const r = new frame.FrameReader();
    const out = [];
    for (let at = 0; at < stream.length; at += size) out.push(...r.push(stream.subarray(at, at + size)));
    check(out);
  }
});

test('bad input from the server is a protocol error', () => {
  assert.throws(() => new frame.FrameReader().push(Buffer.from([0x99, 0, 0, 0, 0])), /unknown frame type 0x99/);
  assert.throws(() => new frame.FrameReader(100).push(Buffer.from([0x82, 0xff, 0xff, 0, 0])), /exceeds the limit/);
  assert.throws(() => new frame.FrameReader().push(Buffer.from([0x85, 2, 0, 0, 0, 1, 2])), /body too short/);
});

test('socket directory rule: env, root, XDG_RUNTIME_DIR, /tmp (as the Rust client)', () => {
  assert.equal(defaultSocketDir({ NETCLUSTER_SOCKET_DIR: '/s', XDG_RUNTIME_DIR: '/x' }, true), '/s');
  assert.equal(defaultSocketDir({ NETCLUSTER_SOCKET_DIR: '', XDG_RUNTIME_DIR: '/x' }, true), '/var/run');
  assert.equal(defaultSocketDir({ XDG_RUNTIME_DIR: '/x' }, false), '/x');
  assert.equal(defaultSocketDir({ XDG_RUNTIME_DIR: '' }, false), '/tmp');
  assert.equal(defaultSocketDir({}, false), '/tmp');
  assert.equal(socketPath('A', '/run/nc', 'linux'), '/run/nc/netcluster-A');
  assert.equal(socketPath('A', '/ignored', 'win32'), '\\\\.\\pipe\\netcluster-A');
  assert.throws(() => checkChannel('a/b'), /contains '\/'/);
  assert.throws(() => checkChannel('..'), /reserved/);
  assert.throws(() => checkChannel(''), /empty/);
  assert.throws(() => checkChannel('a\nb'), /control character/);
  checkChannel('sensors.temp-1 ü');
});
