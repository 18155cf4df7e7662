'use strict';
// What emit and sync()/flush() promise when the daemon is killed (SIGKILL)
// in the middle of a stream: every message a resolved sync() confirmed has
// arrived at a listener, and the rejection names exactly how many of the
// messages emitted were never confirmed.

const test = require('node:test');
const assert = require('node:assert/strict');

const { startDaemon, sleep, withTimeout } = require('../testlib/helpers');
const netcluster = require('..');

const BATCH = 200;

test('a SIGKILLed daemon: flushed messages arrived, the others are counted', async () => {
  const daemon = await startDaemon({ channels: { A: {} } });
  try {
    const rx = netcluster.pipedclient({ socketDir: daemon.dir });
    const tx = netcluster.pipedclient({ socketDir: daemon.dir, echo: false });
    // The connections are lost on purpose.
    rx.on('error', () => {});
    tx.on('error', () => {});
    const got = new Set();
    let duplicates = 0;
    rx.on('n', (p) => {
      if (got.has(p.data)) duplicates += 1;
      got.add(p.data);
    });
    await rx.connect('A');
    await tx.connect('A');
    await rx.sync();

    const killer = sleep(300).then(() => process.kill(daemon.pid, 'SIGKILL'));
    let confirmed = 0;
    let sent = 0;
    let failure = null;
    while (!failure) {
      try {
        for (let k = 0; k < BATCH; k++) {
          tx.emit('n', sent);
          sent += 1;
        }
      } catch (e) {
        assert.equal(e.code, 'NOT_CONNECTED', e.message);
      }
      // The callback form, as an application without promises would use it.
      const err = await withTimeout(new Promise((resolve) => tx.flush(resolve)), 20000, 'flush');
      if (err) failure = err;
      else confirmed = sent;
    }
    await killer;
    assert.equal(failure.code, 'UNCONFIRMED', failure.message);
    assert.equal(failure.unconfirmed, sent - confirmed, failure.message);
    assert.ok(failure.unconfirmed > 0);
    assert.match(failure.message, new RegExp(`^${sent - confirmed} message\\(s\\) emitted were not confirmed`));
    // The daemon wrote what it confirmed before it died: the listener reads it.
    await withTimeout(
      (async () => {
        while (rx.connected) await sleep(20);
      })(),
      10000,
      'the listener to see the connection end',
    );
    const missing = [];
    for (let i = 0; i < confirmed; i++) if (!got.has(i)) missing.push(i);
    assert.deepEqual(missing.slice(0, 10), [], `${missing.length} confirmed messages never arrived`);
    assert.equal(duplicates, 0);
    let arrived = 0;
    for (let i = confirmed; i < sent; i++) if (got.has(i)) arrived += 1;
    console.log(
      `${sent} emitted: ${confirmed} confirmed by flush (all arrived), ${sent - confirmed} reported unconfirmed (${arrived} of them arrived)`,
    );
  } finally {
    await daemon.stop();
  }
});
