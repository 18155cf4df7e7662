'use strict';
// A minimal Chrome DevTools Protocol client for the dashboard's browser
// test: it starts Debian's headless chromium with --remote-debugging-pipe
// and speaks CDP over the two pipes that flag opens (fd 3: commands to the
// browser, fd 4: answers and events, each message a JSON text ended by a
// NUL byte). A pipe needs no WebSocket client (Node 20 has none built in)
// and no port, so nothing from npm is needed at test time.

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

/** The chromium binary, or null when none is installed. */
function findChromium() {
  const candidates = [process.env.CHROMIUM, 'chromium', 'chromium-browser', 'google-chrome'].filter(Boolean);
  for (const c of candidates) {
    try {
      const p = c.includes('/') ? c : execFileSync('sh', ['-c', `command -v ${c}`], { encoding: 'utf8' }).trim();
      if (p && fs.existsSync(p)) return p;
    } catch {
      // Not this one.
    }
  }
  return null;
}

class Browser {
  /** Starts headless chromium in a fresh profile directory. */
  static async launch(exe) {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'nc-chromium-'));
    const args = [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-default-apps', '--disable-extensions', '--mute-audio', '--hide-scrollbars',
      '--remote-debugging-pipe', `--user-data-dir=${profile}`, 'about:blank',
    ];
    const child = spawn(exe, args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    const b = new Browser(child, profile);
    await b.send('Target.setDiscoverTargets', { discover: false });
    return b;
  }

  constructor(child, profile) {
    this.child = child;
    this.profile = profile;
    this.nextId = 1;
    this.pending = new Map();
    this.listeners = [];
    this.stderr = '';
    this.exited = false;
    child.stderr.on('data', (d) => {
      this.stderr = (this.stderr + d.toString()).slice(-20000);
    });
    child.on('exit', () => {
      this.exited = true;
      for (const { reject } of this.pending.values()) reject(new Error(`chromium exited:\n${this.stderr}`));
      this.pending.clear();
    });
    let buf = Buffer.alloc(0);
    child.stdio[4].on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (let i = buf.indexOf(0); i >= 0; i = buf.indexOf(0)) {
        const msg = JSON.parse(buf.subarray(0, i).toString('utf8'));
        buf = buf.subarray(i + 1);
        this.dispatch(msg);
      }
    });
  }

  dispatch(msg) {
    if (msg.id !== undefined) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
      else p.resolve(msg.result);
      return;
    }
    for (const l of this.listeners) l(msg);
  }

  /** Sends one command (to a page when `sessionId` is given); resolves with its result. */
  send(method, params = {}, sessionId = undefined, ms = 15000) {
    if (this.exited) return Promise.reject(new Error(`chromium exited:\n${this.stderr}`));
    const id = this.nextId++;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer from chromium within ${ms} ms`));
      }, ms);
      this.pending.set(id, {
        method,
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.child.stdio[3].write(JSON.stringify(msg) + '\0');
    });
  }

  /** A new page (tab) with console and error capture on. */
  async newPage(width = 1280, height = 900, mobile = false) {
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true });
    const page = new Page(this, sessionId, targetId);
    this.listeners.push((m) => {
      if (m.sessionId === sessionId) page.onEvent(m);
    });
    await page.send('Runtime.enable');
    await page.send('Log.enable');
    await page.send('Page.enable');
    await page.viewport(width, height, mobile);
    return page;
  }

  async close() {
    if (!this.exited) {
      try {
        await this.send('Browser.close', {}, undefined, 5000);
      } catch {
        // Killed below.
      }
      await new Promise((r) => {
        if (this.exited) return r();
        const t = setTimeout(() => { this.child.kill('SIGKILL'); r(); }, 5000);
        this.child.once('exit', () => { clearTimeout(t); r(); });
      });
    }
    fs.rmSync(this.profile, { recursive: true, force: true });
  }
}

class Page {
  constructor(browser, sessionId, targetId) {
    this.browser = browser;
    this.sessionId = sessionId;
    this.targetId = targetId;
    /** Console errors, uncaught exceptions and failed loads, as text. */
    this.errors = [];
    /** Every console message, as text (for diagnostics). */
    this.console = [];
  }

  onEvent(m) {
    const p = m.params || {};
    if (m.method === 'Runtime.consoleAPICalled') {
      const text = (p.args || []).map((a) => (a.value !== undefined ? String(a.value) : a.description || a.type)).join(' ');
      this.console.push(`${p.type}: ${text}`);
      if (p.type === 'error' || p.type === 'assert') this.errors.push(`console.${p.type}: ${text}`);
    } else if (m.method === 'Runtime.exceptionThrown') {
      const d = p.exceptionDetails || {};
      this.errors.push(`exception: ${(d.exception && d.exception.description) || d.text}`);
    } else if (m.method === 'Log.entryAdded') {
      const e = p.entry || {};
      this.console.push(`log ${e.level}: ${e.text} ${e.url || ''}`);
      if (e.level === 'error') this.errors.push(`log: ${e.text} ${e.url || ''}`);
    }
  }

  send(method, params = {}, ms) {
    return this.browser.send(method, params, this.sessionId, ms);
  }

  async viewport(width, height, mobile = false) {
    await this.send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile });
  }

  async goto(url) {
    const r = await this.send('Page.navigate', { url });
    if (r.errorText) throw new Error(`cannot open ${url}: ${r.errorText}`);
  }

  /** Evaluates `expr` in the page; resolves with its (JSON) value. */
  async eval(expr) {
    const r = await this.send('Runtime.evaluate', { expression: expr, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) {
      const d = r.exceptionDetails;
      throw new Error(`in the page: ${(d.exception && d.exception.description) || d.text} (evaluating ${expr})`);
    }
    return r.result.value;
  }

  /** Polls `expr` until it is truthy (resolves with it) or `ms` pass. */
  async waitFor(expr, what, ms = 10000) {
    const deadline = Date.now() + ms;
    let last;
    let failure = null;
    for (;;) {
      // A page still loading may not have the elements yet: not ready.
      try {
        last = await this.eval(expr);
        failure = null;
      } catch (e) {
        last = undefined;
        failure = e;
      }
      if (last) return last;
      if (Date.now() > deadline) {
        const body = await this.eval('document.body ? document.body.innerText.slice(0, 3000) : ""');
        if (failure) throw failure;
        throw new Error(`timed out after ${ms} ms waiting for ${what}; page text:\n${body}\nconsole:\n${this.console.join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** A PNG of the whole page at the current width, written to `file`. */
  async screenshot(file, width) {
    const m = await this.send('Page.getLayoutMetrics');
    const size = m.cssContentSize || m.contentSize;
    const height = Math.min(Math.ceil(size.height), 6000);
    await this.viewport(width, height, width < 600);
    const { data } = await this.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true }, 30000);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Buffer.from(data, 'base64'));
  }
}

module.exports = { Browser, findChromium };
