// netcluster dashboard: hand-written, no framework, no build step.
//
// It reads two Server-Sent Event streams from the daemon: /api/events (one
// JSON snapshot a second) and, on demand, /api/tail (one JSON line per
// message of the chosen channel). Both are read with fetch() and a small
// SSE parser rather than EventSource, because EventSource cannot send an
// Authorization header and the token must never travel in a URL (URLs end
// up in logs, history and Referer headers). Everything shown is inserted
// with textContent, never as HTML: names, events and payloads come from
// clients and must not be able to inject markup.
"use strict";

(function () {
  const TOKEN_KEY = "netcluster-dashboard-token";
  const HISTORY_MS = 5 * 60 * 1000; // rate history kept (chart span, at most)
  const CHART_MIN_MS = 30 * 1000; // shortest chart span
  const SLOW_HOLD_MS = 5000; // a client stays highlighted this long after a drop or block
  const TAIL_ROWS = 500; // rows kept in the tail table
  const PAYLOAD_SHOW = 200; // characters of payload shown per tail row
  const RETRY_MAX_MS = 10000;

  const $ = (id) => document.getElementById(id);
  const state = {
    prev: new Map(), // "channel/id" -> {in, out, dropped, blocked}
    prevTotals: new Map(), // channel -> {in, out}: its totals in the last snapshot
    eventsRunning: false,
    prevT: 0,
    history: new Map(), // channel -> [{t, in, out}]
    slowUntil: new Map(), // "channel/id" -> ms
    drops: [], // slow-consumer drops seen by this page, newest first (gap records)
    channelNames: [],
    tailEnabled: false,
    tail: null, // {ctrl, channel, event, paused}
    connState: "",
    snapshots: 0,
  };
  window.ncDashboard = state; // for the browser test and curious operators

  // ---------- small helpers ----------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === "class") e.className = v;
        else if (k === "text") e.textContent = v;
        else e.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function setText(id, v) {
    const e = $(id);
    const s = v === undefined || v === null || v === "" ? "–" : String(v);
    if (e.textContent !== s) e.textContent = s;
  }
  function fmtNum(n) {
    if (typeof n !== "number" || !isFinite(n)) return "–";
    return n.toLocaleString("en-US");
  }
  function fmtRate(r) {
    if (!isFinite(r)) return "–";
    if (r >= 100) return Math.round(r).toLocaleString("en-US");
    if (r >= 10) return r.toFixed(1);
    return r.toFixed(2).replace(/\.?0+$/, "") || "0";
  }
  function fmtBytes(n) {
    if (typeof n !== "number") return "–";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }
  function fmtDuration(s) {
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    const parts = [];
    if (d) parts.push(d + "d");
    if (d || h) parts.push(h + "h");
    if (d || h || m) parts.push(m + "m");
    parts.push((s % 60) + "s");
    return parts.join(" ");
  }
  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleTimeString("en-GB");
  }
  function replaceRows(tbody, rows) {
    tbody.replaceChildren(...rows);
  }
  function setConn(kind, text) {
    const key = kind + ":" + text;
    if (state.connState === key) return; // announce changes only
    state.connState = key;
    const s = $("conn-status");
    s.className = "status " + kind;
    s.textContent = text;
  }

  // ---------- token ----------
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (_) { return ""; }
  }
  function headers() {
    const h = { Accept: "text/event-stream" };
    const t = token();
    if (t) h.Authorization = "Bearer " + t;
    return h;
  }
  function askToken(message) {
    for (const id of ["node", "channels", "clients", "network", "events", "tail"]) $(id).hidden = true;
    $("token-form").hidden = false;
    $("token-error").textContent = message || "";
    setConn("bad", "A token is needed");
    $("token-input").focus();
  }

  // ---------- Server-Sent Events over fetch ----------
  class HttpError extends Error {
    constructor(status, text) { super(text || "HTTP " + status); this.status = status; }
  }
  // Reads an SSE stream, calling onEvent(name, data) for each event, until
  // the stream ends (resolves) or fails (rejects). Non-2xx answers reject
  // with an HttpError carrying the daemon's text.
  async function readSse(url, signal, onOpen, onEvent) {
    const res = await fetch(url, { headers: headers(), signal, cache: "no-store" });
    if (!res.ok) {
      let text = "";
      try { text = (await res.text()).trim(); } catch (_) { /* ignore */ }
      throw new HttpError(res.status, text);
    }
    onOpen();
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "", name = "message", data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) onEvent(name, data.join("\n"));
          name = "message";
          data = [];
        } else if (line.startsWith(":")) {
          // comment (keep-alive)
        } else {
          const c = line.indexOf(":");
          const field = c < 0 ? line : line.slice(0, c);
          let v = c < 0 ? "" : line.slice(c + 1);
          if (v.startsWith(" ")) v = v.slice(1);
          if (field === "event") name = v;
          else if (field === "data") data.push(v);
        }
      }
    }
  }

  // ---------- the snapshot stream ----------
  let retryMs = 1000;
  async function runEvents() {
    if (state.eventsRunning) return; // one snapshot stream per page
    state.eventsRunning = true;
    try {
      await eventsLoop();
    } finally {
      state.eventsRunning = false;
    }
  }
  async function eventsLoop() {
    for (;;) {
      try {
        await readSse("api/events", undefined, () => setConn("ok", "Live"), (name, data) => {
          if (name === "snapshot") {
            retryMs = 1000;
            try { render(JSON.parse(data)); } catch (e) { console.warn("bad snapshot", e); }
          }
        });
        setConn("bad", "The daemon closed the stream; reconnecting…");
      } catch (e) {
        if (e instanceof HttpError && e.status === 401) {
          askToken(token() ? "That token was refused." : "");
          return; // resumes when the form is submitted
        }
        setConn("bad", "Disconnected (" + (e.message || e) + "); retrying in " + Math.round(retryMs / 1000) + " s");
      }
      await new Promise((r) => setTimeout(r, retryMs));
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    }
  }

  // ---------- rendering ----------
  function render(s) {
    state.snapshots++;
    for (const id of ["node", "channels", "clients", "network", "events", "tail"]) $(id).hidden = false;
    $("network").hidden = !s.net;
    $("token-form").hidden = true;
    const now = typeof s.t === "number" ? s.t : Date.now();
    const dt = state.prevT ? (now - state.prevT) / 1000 : 0;
    renderNode(s);
    const rates = computeRates(s, now, dt);
    renderChannels(s, rates, now);
    renderClients(s, now);
    renderNet(s.net);
    renderEvents(s);
    renderTailControls(s);
    state.prevT = now;
    $("last-update").textContent = "Last update " + new Date(now).toLocaleTimeString("en-GB") + ".";
  }

  function renderNode(s) {
    const n = s.node || {};
    setText("node-name", n.name ? "— " + n.name : "");
    setText("node-nodename", n.name);
    setText("node-id", n.id);
    setText("node-uptime", typeof n.uptime_s === "number" ? fmtDuration(n.uptime_s) : "");
    setText("node-version", n.version);
    setText("node-config", n.config);
    setText("node-socketdir", n.socketdir);
    let clients = 0;
    for (const c of s.channels || []) clients += clientCount(c);
    setText("node-clients", fmtNum(clients));
    const d = s.disconnects || {};
    setText("node-disconnects", fmtNum(d.total) + " (slow " + fmtNum(d.slow_consumer) + ", protocol " +
      fmtNum(d.protocol_error) + ", removed " + fmtNum(d.channel_removed) + ")");
    document.title = "netcluster " + (n.name || "") + " — dashboard";
  }

  function clientCount(ch) {
    return typeof ch.clients_total === "number" ? ch.clients_total : (ch.clients || []).length;
  }

  // Messages/s per channel from counter deltas between two snapshots: the
  // channel's totals (which count departed clients too) when the daemon
  // sends them, else the delta of each listed client present in both.
  function computeRates(s, now, dt) {
    const next = new Map();
    const rates = new Map();
    const nextTotals = new Map();
    for (const ch of s.channels || []) {
      let din = 0, dout = 0;
      for (const c of ch.clients || []) {
        const key = ch.name + "/" + c.id;
        const p = state.prev.get(key) || { in: 0, out: 0, dropped: 0, blocked: 0 };
        din += Math.max(0, (c.messages_in || 0) - p.in);
        dout += Math.max(0, (c.messages_out || 0) - p.out);
        if (state.prev.has(key) && (c.dropped || 0) > p.dropped) {
          // The daemon tells the client with an nc-gap event; the page
          // lists it beside the network's gaps.
          // One record per episode: drops within SLOW_HOLD_MS of the last
          // ones of the same client add to its record.
          const delta = c.dropped - p.dropped;
          const last = state.drops.find((d) => d.key === key);
          if (last && now - last.t <= SLOW_HOLD_MS) {
            last.count += delta;
            last.t = now;
          } else {
            state.drops.unshift({ key, t: now, time: new Date(now).toISOString(), channel: ch.name,
              cause: "slow_consumer", client: c.id, name: c.name, count: delta });
            state.drops.length = Math.min(state.drops.length, 32);
          }
        }
        if ((c.dropped || 0) > p.dropped || (c.blocked || 0) > p.blocked) {
          if (state.prev.has(key) || c.dropped || c.blocked) state.slowUntil.set(key, now + SLOW_HOLD_MS);
        }
        next.set(key, { in: c.messages_in || 0, out: c.messages_out || 0, dropped: c.dropped || 0, blocked: c.blocked || 0 });
      }
      if (ch.totals) {
        const t = { in: ch.totals.messages_in || 0, out: ch.totals.messages_out || 0 };
        const p = state.prevTotals.get(ch.name);
        // A channel removed and added again by a reload starts from zero.
        din = p ? Math.max(0, t.in - p.in) : 0;
        dout = p ? Math.max(0, t.out - p.out) : 0;
        nextTotals.set(ch.name, t);
      }
      const r = dt > 0 ? { in: din / dt, out: dout / dt } : { in: NaN, out: NaN };
      rates.set(ch.name, r);
      let h = state.history.get(ch.name);
      if (!h) { h = []; state.history.set(ch.name, h); }
      if (dt > 0) h.push({ t: now, in: r.in, out: r.out });
      while (h.length && h[0].t < now - HISTORY_MS) h.shift();
    }
    for (const k of state.slowUntil.keys()) if (!next.has(k)) state.slowUntil.delete(k);
    state.prev = next;
    state.prevTotals = nextTotals;
    return rates;
  }

  function chart(name, hist, now) {
    const W = 120, H = 28;
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("class", "chart");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    let max = 0;
    for (const p of hist) max = Math.max(max, p.in, p.out);
    const last = hist.length ? hist[hist.length - 1] : null;
    svg.setAttribute("aria-label", `Rate of ${name} over the last minutes: peak ${fmtRate(max)}/s` +
      (last ? `, now ${fmtRate(last.in)}/s in, ${fmtRate(last.out)}/s out` : ""));
    const base = document.createElementNS(svgNS, "line");
    base.setAttribute("class", "base");
    base.setAttribute("x1", 0); base.setAttribute("x2", W);
    base.setAttribute("y1", H - 0.5); base.setAttribute("y2", H - 0.5);
    svg.append(base);
    const scale = max > 0 ? (H - 2) / max : 0;
    // The x axis spans the history gathered so far (at least CHART_MIN_MS,
    // at most HISTORY_MS), so a freshly opened page shows a curve, not a dot.
    const span = hist.length ? Math.min(HISTORY_MS, Math.max(CHART_MIN_MS, now - hist[0].t)) : HISTORY_MS;
    for (const key of ["in", "out"]) {
      if (hist.length < 2) break;
      const pts = hist.map((p) => {
        const x = W - ((now - p.t) / span) * W;
        const y = H - 1 - p[key] * scale;
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      const pl = document.createElementNS(svgNS, "polyline");
      pl.setAttribute("class", key);
      pl.setAttribute("points", pts.join(" "));
      svg.append(pl);
    }
    return svg;
  }

  function routing(ch) {
    const cell = el("td", { class: "routing" });
    const to = ch.propagatesto || [];
    cell.append(el("span", { class: "badge", title: "propagatetochannels: " + JSON.stringify(ch.propagatetochannels) },
      to.length ? "→ " + to.join(", ") : "→ none"));
    if (ch.propagatetonet) cell.append(el("span", { class: "badge" }, "to network"));
    cell.append(el("span", { class: "badge" }, ch.acceptfromnet ? "from network" : "not from network"));
    if (ch.slowconsumer) cell.append(el("span", { class: "badge", title: "slowconsumer policy" }, "slow: " + ch.slowconsumer));
    return cell;
  }

  function renderChannels(s, rates, now) {
    const rows = [];
    for (const ch of s.channels || []) {
      const r = rates.get(ch.name) || { in: NaN, out: NaN };
      rows.push(el("tr", { "data-channel": ch.name },
        el("th", { scope: "row" }, ch.name),
        el("td", { class: "num clients" }, fmtNum(clientCount(ch))),
        el("td", { class: "num rate-in" }, fmtRate(r.in)),
        el("td", { class: "num rate-out" }, fmtRate(r.out)),
        el("td", null, chart(ch.name, state.history.get(ch.name) || [], now)),
        routing(ch)));
    }
    replaceRows($("channel-table").tBodies[0], rows);
  }

  function isSlow(c, key, limit, now) {
    if (limit && (c.queued_bytes || 0) * 2 >= limit) return true;
    return (state.slowUntil.get(key) || 0) > now;
  }

  function renderClients(s, now) {
    const limit = (s.node || {}).queuebytes || 0;
    const groups = [];
    for (const ch of s.channels || []) {
      const clients = ch.clients || [];
      const total = clientCount(ch);
      const g = el("div", { class: "group", "data-channel": ch.name });
      if (!clients.length) {
        g.append(el("p", { class: "hint" }, el("strong", null, ch.name), ": no clients"));
        groups.push(g);
        continue;
      }
      const rows = clients.map((c) => {
        const key = ch.name + "/" + c.id;
        const slow = isSlow(c, key, limit, now);
        const fill = limit ? Math.round(((c.queued_bytes || 0) * 100) / limit) : 0;
        return el("tr", { "data-client": c.id, class: slow ? "slow" : null },
          el("th", { scope: "row", class: "num" }, c.id, slow ? el("span", { class: "badge" }, "slow") : null),
          el("td", null, c.name || ""),
          el("td", { class: "num" }, c.pid),
          el("td", { class: "num" }, c.uid === undefined || c.uid === null ? "–" : c.uid),
          el("td", null, c.protocol || ""),
          el("td", { class: "num", title: fmtNum(c.queued_bytes) + " bytes" }, fmtBytes(c.queued_bytes) + " (" + fill + " %)"),
          el("td", { class: "num" }, fmtNum(c.dropped)),
          el("td", { class: "num" }, fmtNum(c.blocked)),
          el("td", { class: "num" }, fmtNum(c.messages_in)),
          el("td", { class: "num" }, fmtNum(c.messages_out)),
          el("td", null, (c.subscriptions || []).join(", ")),
          el("td", null, fmtTime(c.connected)));
      });
      const head = el("tr", null, ...["Id", "Name", "Pid", "Uid", "Dialect", "Queue", "Dropped", "Blocked", "Msgs in", "Msgs out", "Listens to", "Since"]
        .map((h, i) => el("th", { scope: "col", class: i === 0 || (i >= 2 && i <= 3) || (i >= 5 && i <= 9) ? "num" : null }, h)));
      g.append(el("div", { class: "scroll" },
        el("table", { class: "client-table" },
          el("caption", null, `${ch.name} — ${total} client${total === 1 ? "" : "s"}` +
            (total > clients.length ? ` (the ${clients.length} with the fullest queues shown)` : "")),
          el("thead", null, head), el("tbody", null, ...rows))));
      groups.push(g);
    }
    $("client-groups").replaceChildren(...groups);
  }

  function facts(dl, entries) {
    dl.replaceChildren(...entries.map(([k, v]) => el("div", null, el("dt", null, k), el("dd", { class: "count" }, v))));
  }

  function renderNet(net) {
    if (!net) return;
    setText("net-summary", `Node ${net.name || ""} (${net.node || ""}) on group ${net.group || ""}` +
      (net.unicast_peers && net.unicast_peers.length ? `, unicast peers ${net.unicast_peers.join(", ")}` : "") +
      (net.sealed ? "; datagrams sealed with a key" : "; datagrams NOT sealed (no key)"));
    const rows = (net.peers || []).map((p) => el("tr", { "data-peer": p.node },
      el("th", { scope: "row" }, p.name || p.node),
      el("td", { class: "mono" }, p.addr || ""),
      el("td", { class: p.up ? "up" : "down" }, p.up ? "up" : "down"),
      el("td", { class: "num" }, fmtNum(p.datagrams_in)),
      el("td", { class: "num" }, fmtNum(p.messages_in)),
      el("td", { class: "num" }, fmtNum(p.naks_out)),
      el("td", { class: "num" }, fmtNum(p.gaps)),
      el("td", { class: "num" }, fmtNum(p.lost)),
      el("td", { class: "num" }, fmtNum(p.duplicates)),
      el("td", { class: "num" }, fmtNum(p.malformed))));
    if (!rows.length) rows.push(el("tr", null, el("td", { colspan: 10, class: "hint" }, "No peer heard yet.")));
    replaceRows($("peer-table").tBodies[0], rows);
    const t = net.totals || {};
    const rejectedKeys = ["malformed", "foreign", "rejected", "replayed", "unknown_channel", "refused_by_acceptfromnet"];
    facts($("net-totals"), Object.entries(t).filter(([k, v]) => !rejectedKeys.includes(k) && typeof v === "number")
      .map(([k, v]) => [k.replace(/_/g, " "), fmtNum(v)]));
    const rej = rejectedKeys.filter((k) => typeof t[k] === "number").map((k) => [k.replace(/_/g, " "), fmtNum(t[k])]);
    // Newer daemons may break rejections down further; show whatever object they send.
    for (const key of ["rejected_by_reason", "rejected_by_source"]) {
      const obj = net[key] || t[key];
      if (obj && typeof obj === "object") {
        for (const [k, v] of Object.entries(obj)) rej.push([(key === "rejected_by_source" ? "from " : "") + k.replace(/_/g, " "), fmtNum(v)]);
      }
    }
    facts($("net-rejected"), rej);
  }

  function renderEvents(s) {
    const dep = (s.departed || []).map((d) => el("li", null,
      el("span", { class: "when" }, fmtTime(d.disconnected) + " "),
      el("strong", null, `${d.channel}/${d.id}`), ` ${d.name || ""} (pid ${d.pid}): ${d.reason || "left"}`));
    if (!dep.length) dep.push(el("li", { class: "hint" }, "None since the daemon started."));
    $("departed-list").replaceChildren(...dep);
    const all = (s.gaps || []).concat(state.drops).sort((a, b) => String(b.time).localeCompare(String(a.time)));
    const gaps = all.slice(0, 32).map((g) => {
      const what = g.cause === "network"
        ? `datagrams ${g.first}–${g.last} from node ${g.node} lost on the network`
        : g.cause === "slow_consumer"
          ? `${fmtNum(g.count)} message(s) dropped for slow client ${g.client} ${g.name || ""}`
          : JSON.stringify(g);
      return el("li", null, el("span", { class: "when" }, fmtTime(g.time) + " "),
        el("strong", null, g.channel || ""), " " + String(g.cause || "").replace(/_/g, " ") + ": " + what);
    });
    if (!gaps.length) gaps.push(el("li", { class: "hint" }, "None seen."));
    $("gap-list").replaceChildren(...gaps);
  }

  // ---------- live tail ----------
  function renderTailControls(s) {
    state.tailEnabled = !!s.tail;
    $("tail-off").hidden = state.tailEnabled;
    $("tail-form").hidden = !state.tailEnabled;
    $("tail-table").hidden = !state.tailEnabled;
    const names = (s.channels || []).map((c) => c.name);
    if (names.join("\n") !== state.channelNames.join("\n")) {
      const sel = $("tail-channel");
      const keep = sel.value;
      sel.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
      if (names.includes(keep)) sel.value = keep;
      else if (names.length) sel.value = names.find((n) => n !== "control") || names[0];
      state.channelNames = names;
    }
  }

  function tailStatus(text) { $("tail-status").textContent = text; }

  function tailButtons() {
    const t = state.tail;
    $("tail-start").textContent = t ? "Restart" : "Start";
    $("tail-pause").disabled = !t;
    $("tail-stop").disabled = !t;
    $("tail-pause").setAttribute("aria-pressed", t && t.paused ? "true" : "false");
    $("tail-pause").textContent = t && t.paused ? "Resume" : "Pause";
  }

  function addTailRow(m) {
    const body = $("tail-lines");
    let p = m.payload === undefined ? "" : String(m.payload);
    let cut = !!m.truncated;
    if (p.length > PAYLOAD_SHOW) { p = p.slice(0, PAYLOAD_SHOW); cut = true; }
    const row = el("tr", { "data-event": m.event },
      el("td", { class: "num" }, fmtTime(m.time)),
      el("td", null, m.event),
      el("td", { class: "mono" }, m.origin),
      el("td", { title: m.size !== undefined ? m.size + " bytes" : null }, p + (cut ? ` … (${fmtNum(m.size)} bytes)` : "")));
    body.prepend(row);
    while (body.rows.length > TAIL_ROWS) body.deleteRow(body.rows.length - 1);
  }

  async function openTail() {
    const t = state.tail;
    if (!t) return;
    const ctrl = new AbortController();
    t.ctrl = ctrl;
    const q = "api/tail?channel=" + encodeURIComponent(t.channel) + (t.event ? "&event=" + encodeURIComponent(t.event) : "");
    const label = t.channel + (t.event ? ` (event ${t.event})` : "");
    tailStatus("Opening the tail of " + label + "…");
    try {
      await readSse(q, ctrl.signal, () => tailStatus("Tailing " + label + "."), (name, data) => {
        let m;
        try { m = JSON.parse(data); } catch (_) { return; }
        if (name === "message") { t.seen++; addTailRow(m); }
        else if (name === "dropped") {
          t.dropped += m.dropped || 0;
          tailStatus(`Tailing ${label}; ${fmtNum(t.dropped)} message(s) skipped because this page could not keep up.`);
        }
      });
      if (state.tail === t && !t.paused) tailStatus("The daemon ended the tail of " + label + ".");
    } catch (e) {
      if (ctrl.signal.aborted) return;
      if (e instanceof HttpError && e.status === 401) { askToken("That token was refused."); return; }
      tailStatus("Tail failed: " + (e.message || e));
    }
    if (state.tail === t && !t.paused) { state.tail = null; tailButtons(); }
  }

  function stopTail() {
    if (state.tail && state.tail.ctrl) state.tail.ctrl.abort();
    state.tail = null;
    tailButtons();
  }

  function setupTail() {
    $("tail-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (!state.tailEnabled) return;
      stopTail();
      $("tail-lines").replaceChildren();
      state.tail = { channel: $("tail-channel").value, event: $("tail-event").value.trim(), paused: false, seen: 0, dropped: 0, ctrl: null };
      tailButtons();
      openTail();
    });
    $("tail-pause").addEventListener("click", () => {
      const t = state.tail;
      if (!t) return;
      t.paused = !t.paused;
      tailButtons();
      if (t.paused) {
        // Closing the stream while paused: the daemon does no work for us.
        if (t.ctrl) t.ctrl.abort();
        tailStatus("Paused: messages emitted meanwhile are not shown.");
      } else {
        openTail();
      }
    });
    $("tail-stop").addEventListener("click", () => { stopTail(); tailStatus("Stopped."); });
  }

  // ---------- start ----------
  function start() {
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      try { sessionStorage.setItem(TOKEN_KEY, $("token-input").value); } catch (_) { /* private mode */ }
      $("token-input").value = "";
      $("token-form").hidden = true;
      setConn("", "Connecting…");
      runEvents();
    });
    setupTail();
    tailButtons();
    runEvents();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
