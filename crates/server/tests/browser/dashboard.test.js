'use strict';
// The dashboard in a real browser: target/debug/ncserver with an `http`
// endpoint, Debian's headless chromium driven over the DevTools protocol
// (./cdp.js), and real clients (the Node.js package in clients/node)
// connecting and emitting. Run by scripts/test.sh as
// `node --test crates/server/tests/browser/` after the cargo tests built
// the binaries. Without chromium the tests skip with the reason, unless
// NETCLUSTER_REQUIRE_NETNS=1 (CI), where they fail.
//
// Screenshots go to target/browser/; with NETCLUSTER_UPDATE_SCREENSHOT=1
// the laptop one is also written to docs/dashboard.png (the README's).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { startDaemon, waitFor, sleep, REPO, LegacyClient } = require('../../../../clients/node/testlib/helpers');
const netcluster = require('../../../../clients/node');
const { Browser, findChromium } = require('./cdp');

const CHROMIUM = findChromium();
const REQUIRED = process.env.NETCLUSTER_REQUIRE_NETNS === '1';
const SKIP = CHROMIUM ? false : 'chromium is not installed (apt-get install chromium)';
if (!CHROMIUM && REQUIRED) {
  throw new Error('the dashboard browser tests need chromium (apt-get install chromium); NETCLUSTER_REQUIRE_NETNS=1 requires every test');
}
if (SKIP) console.log(`skipping the dashboard browser tests: ${SKIP}`);

const SHOTS = path.join(REPO, 'target', 'browser');
const TOKEN = 'dashboard-test-token-0123456789';

/** A daemon with `http` on a free loopback port; resolves with it and its base URL. */
async function daemonWithHttp(http) {
  const d = await startDaemon({
    queuebytes: '64KiB',
    channels: {
      A: { propagatetochannels: '^B$' },
      B: { slowconsumer: 'drop' },
      logs: {},
    },
    http: { listen: '127.0.0.1:0', ...http },
  });
  const addr = await waitFor(() => {
    const m = /HTTP endpoint listening.*?addr=(127\.0\.0\.1:\d+)|addr=(127\.0\.0\.1:\d+).*HTTP endpoint listening/.exec(d.log());
    return m && (m[1] || m[2]);
  }, 'the HTTP endpoint address in the log', 10000);
  return { daemon: d, base: `http://${addr}` };
}

async function client(daemon, channel, name) {
  const c = netcluster.pipedclient({ socketDir: daemon.dir, name });
  await c.connect(channel);
  return c;
}

/** Emits `event` on `c` every `everyMs` until stopped; returns the stopper. */
function flow(c, event, everyMs = 10) {
  let n = 0;
  const pad = 'p'.repeat(500);
  const t = setInterval(() => {
    for (let i = 0; i < 5; i++) c.emit(event, { n: n++, pad });
  }, everyMs);
  return () => clearInterval(t);
}

const num = (s) => (s === '–' || s === '' || s == null ? NaN : Number(String(s).replace(/,/g, '')));

test('the dashboard shows channels, clients, rates and a live tail', { skip: SKIP, timeout: 120000 }, async () => {
  const { daemon, base } = await daemonWithHttp({ tail: true });
  const browser = await Browser.launch(CHROMIUM);
  const clients = [];
  const stops = [];
  try {
    const page = await browser.newPage(1280, 900);
    await page.goto(base + '/');

    // The configured channels are listed.
    const names = await page.waitFor(
      `(() => { const r = [...document.querySelectorAll('#channel-table tbody tr')].map(t => t.dataset.channel); return r.length >= 4 && r; })()`,
      'the channel rows');
    assert.deepEqual(names, ['control', 'A', 'B', 'logs']);
    assert.match(await page.eval(`document.getElementById('conn-status').textContent`), /Live/);
    assert.match(await page.eval(`document.getElementById('node-config').textContent`), /config\.json$/);
    assert.equal(await page.eval(`document.querySelector('tr[data-channel="A"] .routing').textContent.includes('→ B')`), true);

    // A client that connects shows up under its channel, with its name.
    const emitter = await client(daemon, 'A', 'dash-emitter');
    const listener = await client(daemon, 'B', 'dash-listener');
    clients.push(emitter, listener);
    listener.on('tick', () => {});
    await listener.sync();
    await page.waitFor(`document.querySelector('.group[data-channel="A"] tr[data-client]')?.textContent.includes('dash-emitter')`, 'the emitting client in the A group');
    await page.waitFor(`document.querySelector('.group[data-channel="B"] tr[data-client]')?.textContent.includes('dash-listener')`, 'the listening client in the B group');
    const before = num(await page.eval(`document.querySelector('tr[data-channel="A"] .rate-in').textContent`));
    assert.ok(!(before > 0), `no traffic yet, rate ${before}`);

    // The rate rises while messages flow: in on A, out on B (propagated).
    stops.push(flow(emitter, 'tick'));
    await page.waitFor(`Number(document.querySelector('tr[data-channel="A"] .rate-in').textContent.replace(/,/g, '')) > 20`, 'the rate of A rising', 15000);
    await page.waitFor(`Number(document.querySelector('tr[data-channel="B"] .rate-out').textContent.replace(/,/g, '')) > 20`, 'the delivery rate of B rising', 15000);
    await page.waitFor(`document.querySelector('tr[data-channel="A"] svg.chart polyline.in')`, 'the rate chart of A');

    // A client of B (policy drop) that stops reading is highlighted as
    // slow, and its dropped messages are listed as a gap.
    const stalled = await LegacyClient.connect(daemon.socket('B'));
    stalled.send('hello', 'I will not read');
    stalled.socket.pause();
    clients.push({ disconnect: async () => stalled.close() });
    await page.waitFor(`document.querySelector('.group[data-channel="B"] tr.slow')`, 'the stalled client highlighted as slow', 20000);
    await page.waitFor(`document.getElementById('gap-list').textContent.includes('dropped for slow client')`, 'the drops listed as a gap', 10000);

    // The live tail of A, filtered by event, shows a message within 2 s.
    await page.eval(`(() => { const s = document.getElementById('tail-channel'); s.value = 'A';
      document.getElementById('tail-event').value = 'tailme'; document.getElementById('tail-start').click(); })()`);
    await page.waitFor(`document.getElementById('tail-status').textContent.startsWith('Tailing A')`, 'the tail to open');
    const t0 = Date.now();
    emitter.emit('tailme', { hello: 'dashboard', pad: 'x'.repeat(400) });
    await page.waitFor(`document.querySelector('#tail-lines tr[data-event="tailme"]')`, 'the tailed message', 2000);
    const shownAfter = Date.now() - t0;
    const row = await page.eval(`document.querySelector('#tail-lines tr[data-event="tailme"]').textContent`);
    assert.match(row, /"hello":"dashboard"/);
    assert.match(row, new RegExp(`${daemon.node || ''}[0-9a-f]{16}:\\d+`));
    assert.match(row, /bytes\)/, 'a long payload is shown cut, with its size');
    assert.equal(await page.eval(`document.querySelectorAll('#tail-lines tr[data-event="tick"]').length`), 0, 'the event filter holds');
    console.log(`tailed message shown ${shownAfter} ms after emit`);

    // Pause: nothing new is shown; resume: messages show again.
    await page.eval(`document.getElementById('tail-pause').click()`);
    assert.equal(await page.eval(`document.getElementById('tail-pause').getAttribute('aria-pressed')`), 'true');
    emitter.emit('tailme', { while: 'paused' });
    await sleep(1500);
    assert.equal(await page.eval(`document.querySelectorAll('#tail-lines tr').length`), 1);
    await page.eval(`document.getElementById('tail-pause').click()`);
    await page.waitFor(`document.getElementById('tail-status').textContent.startsWith('Tailing A')`, 'the tail to reopen');
    emitter.emit('tailme', { after: 'resume' });
    await page.waitFor(`document.querySelectorAll('#tail-lines tr').length === 2`, 'a message after resume', 2000);

    // A client that leaves is listed with its cause.
    const leaver = await client(daemon, 'logs', 'dash-leaver');
    await page.waitFor(`document.querySelector('.group[data-channel="logs"] tr[data-client]')`, 'the leaving client');
    await leaver.disconnect();
    await page.waitFor(`document.getElementById('departed-list').textContent.includes('dash-leaver')`, 'the disconnect record');

    // Let the chart gather a few seconds, then take the pictures.
    await sleep(4000);
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.screenshot(path.join(SHOTS, 'dashboard.png'), 1280);
    if (process.env.NETCLUSTER_UPDATE_SCREENSHOT === '1') {
      fs.copyFileSync(path.join(SHOTS, 'dashboard.png'), path.join(REPO, 'docs', 'dashboard.png'));
    }
    await page.screenshot(path.join(SHOTS, 'dashboard-phone.png'), 390);
    const overflow = await page.eval(`document.documentElement.scrollWidth - window.innerWidth`);
    assert.ok(overflow <= 1, `the phone layout does not scroll sideways (${overflow} px too wide)`);

    assert.deepEqual(page.errors, [], 'no console errors');
  } finally {
    for (const s of stops) s();
    for (const c of clients) await c.disconnect().catch(() => {});
    await browser.close();
    await daemon.stop();
  }
});

test('with a token, the dashboard asks for it and the API refuses without it', { skip: SKIP, timeout: 60000 }, async () => {
  const { daemon, base } = await daemonWithHttp({ token: TOKEN });
  const browser = await Browser.launch(CHROMIUM);
  try {
    // The API itself: 401 without the token or with another, 200 with it.
    for (const auth of [undefined, 'Bearer wrong-token', `Basic ${TOKEN}`]) {
      const r = await fetch(base + '/api/events', { headers: auth ? { Authorization: auth } : {} });
      assert.equal(r.status, 401, `Authorization: ${auth}`);
      await r.text();
    }
    const ok = new AbortController();
    const r = await fetch(base + '/api/events', { headers: { Authorization: `Bearer ${TOKEN}` }, signal: ok.signal });
    assert.equal(r.status, 200);
    ok.abort();

    const page = await browser.newPage(1024, 800);
    await page.goto(base + '/');
    await page.waitFor(`!document.getElementById('token-form').hidden`, 'the token form');
    assert.equal(await page.eval(`document.getElementById('channels').hidden`), true, 'no data without the token');
    assert.equal(await page.eval(`document.querySelectorAll('#channel-table tbody tr').length`), 0);

    // A wrong token is refused and said so; the right one opens the dashboard.
    await page.eval(`(() => { document.getElementById('token-input').value = 'not-it'; document.getElementById('token-form').requestSubmit(); })()`);
    await page.waitFor(`document.getElementById('token-error').textContent.includes('refused')`, 'the refusal');
    await page.eval(`(() => { document.getElementById('token-input').value = ${JSON.stringify(TOKEN)}; document.getElementById('token-form').requestSubmit(); })()`);
    await page.waitFor(`document.querySelectorAll('#channel-table tbody tr').length === 4`, 'the channels once the token is given');
    assert.equal(await page.eval(`sessionStorage.getItem('netcluster-dashboard-token')`), TOKEN);
    // The tail is off in this config: the page says so.
    assert.equal(await page.eval(`document.getElementById('tail-off').offsetParent !== null`), true, 'the page says the tail is off');
    assert.equal(await page.eval(`document.getElementById('tail-form').offsetParent`), null, 'and shows no tail form');
    const tail = await fetch(base + '/api/tail?channel=A', { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(tail.status, 403);
    assert.match(await tail.text(), /tail.*true/);
    // Errors here are only the refused loads (401) of the first attempts.
    for (const e of page.errors) assert.match(e, /401/, e);
  } finally {
    await browser.close();
    await daemon.stop();
  }
});

test('the network section shows a peer on the loopback interface', { skip: SKIP, timeout: 60000 }, async () => {
  // Two daemons on one multicast group over `lo` (with `loopback`, each
  // hears the other), on a port of their own.
  const port = 40000 + Math.floor(Math.random() * 10000);
  const net = (name) => ({ connecttonet: true, port, loopback: true, interface: 'lo', nodename: name });
  const one = await startDaemon({ ...net('dash-one'), http: { listen: '127.0.0.1:0' }, channels: { A: { propagatetonet: true } } });
  const two = await startDaemon({ ...net('dash-two'), channels: { A: { propagatetonet: true } } });
  const m = await waitFor(() => /HTTP endpoint listening.*?addr=(127\.0\.0\.1:\d+)|addr=(127\.0\.0\.1:\d+).*HTTP endpoint listening/.exec(one.log()), 'the HTTP address', 10000);
  const base = `http://${m[1] || m[2]}`;
  const browser = await Browser.launch(CHROMIUM);
  const c = await client(two, 'A', 'remote-emitter');
  try {
    const page = await browser.newPage(1280, 900);
    await page.goto(base + '/');
    await page.waitFor(`!document.getElementById('network').hidden`, 'the network section');
    await page.waitFor(`document.querySelector('#peer-table tr[data-peer] .up')?.closest('tr').textContent.includes('dash-two')`, 'peer dash-two up', 20000);
    for (let i = 0; i < 20; i++) c.emit('over-the-net', { i });
    await page.waitFor(`Number(document.querySelector('#peer-table tr[data-peer]').children[4].textContent.replace(/,/g, '')) >= 20`, 'the messages from dash-two counted', 20000);
    assert.match(await page.eval(`document.getElementById('net-summary').textContent`), /NOT sealed/);
    assert.match(await page.eval(`document.getElementById('net-totals').textContent`), /datagrams out/);
    assert.match(await page.eval(`document.querySelector('tr[data-channel="A"] .routing').textContent`), /to network/);
    await page.eval(`document.getElementById('network').scrollIntoView()`);
    await page.screenshot(path.join(SHOTS, 'dashboard-network.png'), 1280);
    assert.deepEqual(page.errors, [], 'no console errors');
  } finally {
    await c.disconnect().catch(() => {});
    await browser.close();
    await one.stop();
    await two.stop();
  }
});
