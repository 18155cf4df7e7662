'use strict';
// The native local protocol of ncserver (docs/PROTOCOL.md §1), encoder and
// incremental decoder. Every frame is `type u8 | body length u32 LE | body`.
// Integers are little-endian; `varint` is unsigned LEB128.

const MAGIC = Buffer.from('NCLB', 'latin1');
const VERSION = 1;
const HEADER_LEN = 5;
const MAX_EVENT_LEN = 1024;
const MAX_NAME_LEN = 255;
// Body bytes a frame may need on top of its payload (docs/PROTOCOL.md).
const FRAME_OVERHEAD = MAX_EVENT_LEN + 512;

const KIND = Object.freeze({
  HELLO: 0x01,
  SUBSCRIBE: 0x02,
  UNSUBSCRIBE: 0x03,
  PUBLISH: 0x04,
  REQUEST: 0x05,
  PING: 0x06,
  PONG: 0x07,
  WELCOME: 0x81,
  DELIVER: 0x82,
  RESPONSE: 0x83,
  ERROR: 0x84,
  ACK: 0x85,
});

const DELIVER_REMOTE = 0x01;
const DELIVER_CHANNEL = 0x02;

const ERROR_CODES = Object.freeze({
  1: 'BAD_FRAME',
  2: 'UNSUPPORTED_VERSION',
  3: 'TOO_LARGE',
  4: 'BAD_NAME',
  5: 'BAD_REQUEST',
  6: 'DENIED',
  7: 'SLOW_CONSUMER',
  8: 'CHANNEL_REMOVED',
  9: 'SHUTDOWN',
});

function header(type, bodyLen) {
  const h = Buffer.allocUnsafe(HEADER_LEN);
  h[0] = type;
  h.writeUInt32LE(bodyLen, 1);
  return h;
}

/** Cuts a UTF-8 string to at most `max` bytes without splitting a character. */
function truncateUtf8(s, max) {
  let b = Buffer.from(s, 'utf8');
  if (b.length <= max) return b;
  let end = max;
  // Step back over continuation bytes (10xxxxxx) to a character boundary.
  while (end > 0 && (b[end] & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}

function encodeHello(pid, name) {
  const n = truncateUtf8(name, MAX_NAME_LEN);
  const body = Buffer.alloc(4 + 2 + 2 + 4 + 1 + n.length);
  MAGIC.copy(body, 0);
  body.writeUInt16LE(VERSION, 4);
  body.writeUInt16LE(0, 6);
  body.writeUInt32LE(pid >>> 0, 8);
  body[12] = n.length;
  n.copy(body, 13);
  return Buffer.concat([header(KIND.HELLO, body.length), body]);
}

/** Subscribe (`subscribe` true) or Unsubscribe frame for `events` (strings). */
function encodeSubscription(subscribe, ack, events) {
  const names = events.map((e) => Buffer.from(e, 'utf8'));
  const size = names.reduce((n, b) => n + 2 + b.length, 6);
  const body = Buffer.allocUnsafe(size);
  body.writeUInt32LE(ack >>> 0, 0);
  body.writeUInt16LE(names.length, 4);
  let at = 6;
  for (const b of names) {
    body.writeUInt16LE(b.length, at);
    b.copy(body, at + 2);
    at += 2 + b.length;
  }
  return Buffer.concat([header(subscribe ? KIND.SUBSCRIBE : KIND.UNSUBSCRIBE, size), body]);
}

function encodePublish(event, payload) {
  const ev = Buffer.from(event, 'utf8');
  const h = Buffer.allocUnsafe(HEADER_LEN + 2 + ev.length);
  h[0] = KIND.PUBLISH;
  h.writeUInt32LE(2 + ev.length + payload.length, 1);
  h.writeUInt16LE(ev.length, HEADER_LEN);
  ev.copy(h, HEADER_LEN + 2);
  return Buffer.concat([h, payload]);
}

function encodeRequest(id, event, payload) {
  const ev = Buffer.from(event, 'utf8');
  const h = Buffer.allocUnsafe(HEADER_LEN + 4 + 2 + ev.length);
  h[0] = KIND.REQUEST;
  h.writeUInt32LE(4 + 2 + ev.length + payload.length, 1);
  h.writeUInt32LE(id >>> 0, HEADER_LEN);
  h.writeUInt16LE(ev.length, HEADER_LEN + 4);
  ev.copy(h, HEADER_LEN + 6);
  return Buffer.concat([h, payload]);
}

/** Ping (`ping` true) or Pong frame; `token` is a BigInt. */
function encodePing(ping, token) {
  const f = Buffer.allocUnsafe(HEADER_LEN + 8);
  f[0] = ping ? KIND.PING : KIND.PONG;
  f.writeUInt32LE(8, 1);
  f.writeBigUInt64LE(BigInt.asUintN(64, token), HEADER_LEN);
  return f;
}

class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** Reads fields from one frame body; short bodies become ProtocolErrors. */
class Body {
  constructor(frame, buf) {
    this.frame = frame;
    this.buf = buf;
    this.at = 0;
  }
  need(n) {
    if (this.at + n > this.buf.length) {
      throw new ProtocolError(`malformed ${this.frame} frame: body too short`);
    }
  }
  u8() {
    this.need(1);
    return this.buf[this.at++];
  }
  u16() {
    this.need(2);
    const v = this.buf.readUInt16LE(this.at);
    this.at += 2;
    return v;
  }
  u32() {
    this.need(4);
    const v = this.buf.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }
  u64() {
    this.need(8);
    const v = this.buf.readBigUInt64LE(this.at);
    this.at += 8;
    return v;
  }
  varint() {
    let v = 0n;
    for (let i = 0; i < 10; i++) {
      this.need(1);
      const b = this.buf[this.at++];
      v |= BigInt(b & 0x7f) << BigInt(7 * i);
      if ((b & 0x80) === 0) return BigInt.asUintN(64, v);
    }
    throw new ProtocolError(`malformed ${this.frame} frame: bad varint`);
  }
  str(len) {
    this.need(len);
    const s = this.buf.toString('utf8', this.at, this.at + len);
    this.at += len;
    return s;
  }
  event() {
    return this.str(this.u16());
  }
  rest() {
    const r = this.buf.subarray(this.at);
    this.at = this.buf.length;
    return r;
  }
}

/** A client id or sequence number as a Number when exact, else a string. */
function small(v) {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
}

/** Decodes one complete server-to-client frame. */
function decodeFrame(type, body) {
  switch (type) {
    case KIND.WELCOME: {
      const b = new Body('welcome', body);
      const version = b.u16();
      b.u16();
      const node = b.u64();
      const client = small(b.u64());
      const maxMessage = b.u32();
      const channel = b.str(b.u8());
      return { type: 'welcome', version, node, client, maxMessage, channel };
    }
    case KIND.DELIVER: {
      const b = new Body('deliver', body);
      const flags = b.u8();
      const client = small(b.varint());
      const seq = small(b.varint());
      const node = flags & DELIVER_REMOTE ? b.u64() : null;
      const channel = flags & DELIVER_CHANNEL ? b.str(b.u8()) : null;
      const event = b.event();
      return { type: 'deliver', node, client, seq, channel, event, payload: b.rest() };
    }
    case KIND.RESPONSE: {
      const b = new Body('response', body);
      const id = b.u32();
      const status = b.u8();
      if (status > 1) throw new ProtocolError('malformed response frame: bad status');
      return { type: 'response', id, ok: status === 0, payload: b.rest() };
    }
    case KIND.ERROR: {
      const b = new Body('error', body);
      const code = b.u16();
      const id = b.u32();
      const fatal = (b.u8() & 1) === 1;
      return {
        type: 'error',
        code,
        codeName: ERROR_CODES[code] || `CODE_${code}`,
        id,
        fatal,
        message: b.rest().toString('utf8'),
      };
    }
    case KIND.ACK:
      return { type: 'ack', id: new Body('ack', body).u32() };
    case KIND.PING:
    case KIND.PONG:
      return { type: type === KIND.PING ? 'ping' : 'pong', token: new Body('ping', body).u64() };
    default:
      throw new ProtocolError(`unknown frame type 0x${type.toString(16).padStart(2, '0')} from the server`);
  }
}

/**
 * Turns a byte stream cut anyhow into reads into whole frames. Chunks are
 * kept as a list and joined once per frame, so a large frame arriving in
 * many reads is copied once.
 */
class FrameReader {
  constructor(maxBody = 16 * 1024 * 1024 + FRAME_OVERHEAD) {
    this.maxBody = maxBody;
    this.chunks = [];
    this.length = 0;
  }

  /** Adds a chunk and returns the frames it completed (possibly none). */
  push(chunk) {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.length += chunk.length;
    }
    const frames = [];
    for (;;) {
      if (this.length < HEADER_LEN) break;
      const head = this.peek(HEADER_LEN);
      const bodyLen = head.readUInt32LE(1);
      if (bodyLen > this.maxBody) {
        throw new ProtocolError(`frame of ${bodyLen} bytes exceeds the limit of ${this.maxBody} bytes`);
      }
      if (this.length < HEADER_LEN + bodyLen) break;
      const whole = this.take(HEADER_LEN + bodyLen);
      frames.push(decodeFrame(whole[0], whole.subarray(HEADER_LEN)));
    }
    return frames;
  }

  /** True if part of a frame is buffered. */
  get partial() {
    return this.length > 0;
  }

  peek(n) {
    if (this.chunks[0].length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0].subarray(0, n);
  }

  take(n) {
    const first = this.chunks[0];
    let out;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0];
        const k = Math.min(c.length, n - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.length -= n;
    return out;
  }
}

module.exports = {
  MAGIC,
  VERSION,
  HEADER_LEN,
  MAX_EVENT_LEN,
  FRAME_OVERHEAD,
  KIND,
  ERROR_CODES,
  ProtocolError,
  FrameReader,
  decodeFrame,
  encodeHello,
  encodeSubscription,
  encodePublish,
  encodeRequest,
  encodePing,
  truncateUtf8,
};
