// Unit tests of clients/client.js with node's built-in test runner and mock
// timers: `node --test clients/client.test.mjs`. The script runs against fakes of the
// browser APIs it uses (window events, fetch, BroadcastChannel, location),
// with a fake gateway that keeps the server-side idle deadline.
import { test, mock } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

const SRC = readFileSync(new URL("./client.js", import.meta.url), "utf8").replaceAll("__AUTHGATE_PREFIX__", "/auth");

/** One browser tab: its own window and location, sharing `server` and `bus`. */
function tab(server, bus) {
  const win = new EventTarget();
  const doc = new EventTarget();
  doc.visibilityState = "visible";
  doc.body = null;
  doc.documentElement = { appendChild() {} };
  doc.createElement = () => ({ style: {}, setAttribute() {}, appendChild() {}, addEventListener() {}, firstChild: {} });
  const loc = { pathname: "/app/page", search: "?x=1", assigned: null, assign(u) { this.assigned = u; } };
  const calls = [];
  const fetchFn = async (url, init = {}) => {
    const method = init.method || "GET";
    calls.push(`${method} ${url}`);
    return server.handle(method, url);
  };
  class Channel {
    constructor() { this.listeners = []; bus.push(this); }
    addEventListener(_, fn) { this.listeners.push(fn); }
    removeEventListener(_, fn) { this.listeners = this.listeners.filter((f) => f !== fn); }
    postMessage(data) { for (const c of bus) if (c !== this) for (const fn of c.listeners) fn({ data }); }
  }
  const nav = { locks: null };
  new Function("window", "document", "location", "fetch", "navigator", "BroadcastChannel", SRC)(
    win, doc, loc, fetchFn, nav, Channel);
  return { authgate: win.authgate, win, doc, loc, calls };
}

/** The gateway's idle rule: every /activity moves the deadline. */
function fakeServer(idleSeconds) {
  const s = {
    idle: idleSeconds * 1000,
    last: Date.now(),
    ended: null,
    refreshes: 0,
    json(status, body) {
      return { ok: status < 300, status, json: async () => body, clone() { return this; } };
    },
    live() {
      if (!s.ended && Date.now() - s.last > s.idle) s.ended = "idle";
      return !s.ended;
    },
    async handle(method, url) {
      // An access token past its exp on a live session: 401 "expired" until refreshed.
      if (s.expired && (url === "/auth/session" || url === "/auth/activity")) {
        return s.json(401, { error: "unauthorized", reason: "expired" });
      }
      if (url === "/auth/session") {
        if (!s.live()) return s.json(401, { error: "unauthorized", reason: s.ended });
        const now = Date.now();
        return s.json(200, { now: Math.floor(now / 1000), idle_timeout: idleSeconds, idle_expires_at: Math.floor((s.last + s.idle) / 1000) });
      }
      if (url === "/auth/activity") {
        if (!s.live()) return s.json(401, { reason: s.ended });
        s.last = Date.now();
        return s.json(204, null);
      }
      if (url === "/auth/logout") { s.ended = s.ended || "logout"; return s.json(204, null); }
      if (url === "/auth/refresh") {
        s.refreshes++;
        await Promise.resolve();
        s.expired = false;
        if (s.refreshReply) return s.refreshReply();
        return s.json(200, { access_token: `at${s.refreshes}`, token_type: "Bearer", session_expires_at: 1_800_000_000 + s.refreshes, expires_in: 900, idle_timeout: idleSeconds });
      }
      return s.json(404, {});
    },
  };
  return s;
}

const flush = async () => { for (let i = 0; i < 20; i++) await Promise.resolve(); };

async function advance(ms) {
  for (let t = 0; t < ms; t += 500) {
    mock.timers.tick(500);
    await flush();
  }
}

test("idle: warning with countdown, then logout and the login page with reason=idle", async () => {
  mock.timers.enable({ apis: ["setInterval", "Date"], now: 1_700_000_000_000 });
  try {
    const server = fakeServer(10);
    const t = tab(server, []);
    const warnings = [];
    let loggedOut = null;
    t.authgate.activityLogout({ warnMs: 3000, onWarn: (ms) => warnings.push(ms), onLogout: (r) => (loggedOut = r) });
    await flush();
    await advance(6000);
    assert.equal(warnings.length, 0, "warned too early");
    await advance(2500);
    assert.ok(warnings.length > 0, "no warning before the deadline");
    assert.ok(warnings.every((ms) => ms <= 3000));
    await advance(3000);
    assert.equal(loggedOut, "idle");
    assert.ok(t.calls.includes("POST /auth/logout"), t.calls.join(", "));
    // without onLogout the default is the login page
    const t2 = tab(fakeServer(4), []);
    t2.authgate.activityLogout({ warnMs: 1000, onWarn() {} });
    await flush();
    await advance(6000);
    assert.equal(t2.loc.assigned, "/auth/login?rd=%2Fapp%2Fpage%3Fx%3D1&reason=idle");
  } finally {
    mock.timers.reset();
  }
});

test("activity is reported (throttled) and keeps client and server alive", async () => {
  mock.timers.enable({ apis: ["setInterval", "Date"], now: 1_700_000_000_000 });
  try {
    const server = fakeServer(8);
    const t = tab(server, []);
    let loggedOut = null;
    t.authgate.activityLogout({ warnMs: 2000, onWarn() {}, onLogout: (r) => (loggedOut = r) });
    await flush();
    for (let i = 0; i < 30; i++) {
      t.win.dispatchEvent(new Event("keydown"));
      await advance(1000);
    }
    assert.equal(loggedOut, null, "logged out while active");
    assert.equal(server.ended, null, "the server ended a session in use");
    const reports = t.calls.filter((c) => c === "POST /auth/activity").length;
    assert.ok(reports >= 10 && reports <= 16, `${reports} activity reports for 30 s (idle 8 s: every 2 s)`);
  } finally {
    mock.timers.reset();
  }
});

test("activity in one tab keeps the other alive; logout in one ends both", async () => {
  mock.timers.enable({ apis: ["setInterval", "Date"], now: 1_700_000_000_000 });
  try {
    const server = fakeServer(6);
    const bus = [];
    const a = tab(server, bus);
    const b = tab(server, bus);
    const ends = [];
    const ca = a.authgate.activityLogout({ warnMs: 1000, onWarn() {}, onLogout: (r) => ends.push(["a", r]) });
    b.authgate.activityLogout({ warnMs: 1000, onWarn() {}, onLogout: (r) => ends.push(["b", r]) });
    await flush();
    for (let i = 0; i < 12; i++) {
      a.win.dispatchEvent(new Event("pointerdown"));
      await advance(1000);
    }
    assert.deepEqual(ends, [], "tab b logged out although tab a was in use");
    ca.logout();
    await flush();
    assert.deepEqual(ends.map((e) => e[0]).sort(), ["a", "b"]);
  } finally {
    mock.timers.reset();
  }
});

test("refreshToken is single-flight and fetch refreshes once on 401 expired", async () => {
  const server = fakeServer(60);
  const t = tab(server, []);
  const [x, y] = await Promise.all([t.authgate.refreshToken(), t.authgate.refreshToken()]);
  assert.equal(x, true);
  assert.equal(y, true);
  assert.equal(server.refreshes, 1);
  // authgate.fetch: 401 expired -> refresh -> retry
  let n = 0;
  const orig = server.handle;
  server.handle = async (m, u) => {
    if (u === "/api/x") return ++n === 1 ? server.json(401, { error: "unauthorized", reason: "expired" }) : server.json(200, { ok: true });
    return orig(m, u);
  };
  const r = await t.authgate.fetch("/api/x");
  assert.equal(r.status, 200);
  assert.equal(server.refreshes, 2);
  // other 401s are passed through untouched
  server.handle = async (m, u) => (u === "/api/y" ? server.json(401, { reason: "idle" }) : orig(m, u));
  assert.equal((await t.authgate.fetch("/api/y")).status, 401);
  assert.equal(server.refreshes, 2);
});

/** Counts the listeners currently registered on an EventTarget (same
 *  type + function + capture is one listener, as in the DOM). */
function countListeners(target) {
  let live = [];
  const capture = (opts) => opts === true || !!(opts && opts.capture);
  const same = (type, fn, opts) => (l) => l.type === type && l.fn === fn && l.capture === capture(opts);
  const add = target.addEventListener.bind(target);
  const remove = target.removeEventListener.bind(target);
  target.addEventListener = (type, fn, opts) => {
    if (!live.some(same(type, fn, opts))) live.push({ type, fn, capture: capture(opts) });
    add(type, fn, opts);
  };
  target.removeEventListener = (type, fn, opts) => {
    live = live.filter((l) => !same(type, fn, opts)(l));
    remove(type, fn, opts);
  };
  return () => live.length;
}

test("loginUrl is exported: the login page with rd and reason", () => {
  const t = tab(fakeServer(60), []);
  assert.equal(t.authgate.loginUrl("idle"), "/auth/login?rd=%2Fapp%2Fpage%3Fx%3D1&reason=idle");
  assert.equal(t.authgate.loginUrl("a b"), "/auth/login?rd=%2Fapp%2Fpage%3Fx%3D1&reason=a%20b");
});

test("stop() removes every listener and the timer; a stopped instance never fetches or redirects", async () => {
  mock.timers.enable({ apis: ["setInterval", "Date"], now: 1_700_000_000_000 });
  try {
    const server = fakeServer(4);
    const bus = [];
    const t = tab(server, bus);
    const other = tab(server, bus);
    const winCount = countListeners(t.win);
    const docCount = countListeners(t.doc);
    const channel = bus[0];
    let loggedOut = null;
    const h = t.authgate.activityLogout({ warnMs: 1000, onWarn() {}, onLogout: (r) => (loggedOut = r) });
    await flush();
    assert.ok(winCount() >= 5 && docCount() === 1 && channel.listeners.length === 1);
    h.stop();
    assert.equal(winCount(), 0, "window listeners left after stop()");
    assert.equal(docCount(), 0, "document listeners left after stop()");
    assert.equal(channel.listeners.length, 0, "channel listener left after stop()");
    const before = t.calls.length;
    t.win.dispatchEvent(new Event("keydown"));
    t.doc.dispatchEvent(new Event("visibilitychange"));
    other.authgate.activityLogout({ warnMs: 1000, onWarn() {}, onLogout() {} }).logout();
    await advance(10000);
    assert.deepEqual(t.calls.slice(before), [], "a stopped instance made requests");
    assert.equal(loggedOut, null);
    assert.equal(t.loc.assigned, null);
    h.logout(); // no effect once stopped
    await flush();
    assert.deepEqual(t.calls.slice(before), []);
  } finally {
    mock.timers.reset();
  }
});

test("stop() while the idle logout is in flight: no callback, no redirect", async () => {
  mock.timers.enable({ apis: ["setInterval", "Date"], now: 1_700_000_000_000 });
  try {
    const server = fakeServer(4);
    const t = tab(server, []);
    let release;
    const orig = server.handle;
    server.handle = (m, u) => (u === "/auth/logout" ? new Promise((r) => (release = () => r(orig(m, u)))) : orig(m, u));
    const h = t.authgate.activityLogout({ warnMs: 1000, onWarn() {} });
    await flush();
    await advance(6000);
    assert.ok(t.calls.includes("POST /auth/logout"), t.calls.join(", "));
    h.stop();
    release();
    await flush();
    assert.equal(t.loc.assigned, null, "a stopped instance redirected");
  } finally {
    mock.timers.reset();
  }
});

test("the handle's logout() ends the session on the server too", async () => {
  const server = fakeServer(60);
  const t = tab(server, []);
  let loggedOut = null;
  const h = t.authgate.activityLogout({ onWarn() {}, onLogout: (r) => (loggedOut = r) });
  try {
    await flush();
    h.logout();
    await flush();
    assert.ok(t.calls.includes("POST /auth/logout"), t.calls.join(", "));
    assert.equal(server.ended, "logout");
    assert.equal(loggedOut, "logout");
  } finally {
    h.stop(); // its real interval would keep the process alive
  }
});

test("onRefresh: every outcome once per request, also for refreshes by authgate.fetch", async () => {
  const server = fakeServer(60);
  const t = tab(server, []);
  const seen = [];
  const off = t.authgate.onRefresh((r) => seen.push(r));
  assert.equal(t.authgate.lastRefresh(), null);
  // success; two concurrent callers share one request and one notification
  const [a, b] = await Promise.all([t.authgate.refreshToken(), t.authgate.refreshToken()]);
  assert.equal(a, true);
  assert.equal(b, true);
  assert.equal(server.refreshes, 1);
  assert.deepEqual(seen, [{ ok: true, status: 200, accessToken: "at1", expiresAt: 1_800_000_001, reason: null }]);
  assert.deepEqual(t.authgate.lastRefresh(), seen[0]);
  // 401 invalid_grant
  server.refreshReply = () => server.json(401, { error: "invalid_grant", reason: "reuse" });
  assert.equal(await t.authgate.refreshToken(), false);
  assert.deepEqual(seen[1], { ok: false, status: 401, accessToken: null, expiresAt: null, reason: "reuse" });
  // 503: the store is down
  server.refreshReply = () => ({ ok: false, status: 503, json: async () => { throw new SyntaxError("no json"); } });
  assert.equal(await t.authgate.refreshToken(), false);
  assert.deepEqual(seen[2], { ok: false, status: 503, accessToken: null, expiresAt: null, reason: "unavailable" });
  // the gateway cannot be reached
  server.refreshReply = () => { throw new TypeError("Failed to fetch"); };
  assert.equal(await t.authgate.refreshToken(), false);
  assert.deepEqual(seen[3], { ok: false, status: 0, accessToken: null, expiresAt: null, reason: "network" });
  // a refresh started by authgate.fetch notifies too; a throwing listener harms nobody
  server.refreshReply = null;
  const off2 = t.authgate.onRefresh(() => { throw new Error("listener bug"); });
  const origError = console.error;
  console.error = () => {};
  let n = 0;
  const orig = server.handle;
  server.handle = async (m, u) => {
    if (u === "/api/x") return ++n === 1 ? server.json(401, { reason: "expired" }) : server.json(200, {});
    return orig(m, u);
  };
  try {
    assert.equal((await t.authgate.fetch("/api/x")).status, 200);
  } finally {
    console.error = origError;
  }
  assert.equal(seen.length, 5);
  assert.equal(seen[4].ok, true);
  assert.equal(seen[4].accessToken, "at5");
  off();
  off2();
  await t.authgate.refreshToken();
  assert.equal(seen.length, 5, "an unsubscribed listener was called");
});

test("an expired access token is renewed, not taken for the end of the session", async () => {
  mock.timers.enable({ apis: ["setInterval", "Date"], now: 1_700_000_000_000 });
  try {
    const server = fakeServer(10);
    const t = tab(server, []);
    let loggedOut = null;
    t.authgate.activityLogout({ warnMs: 2000, onWarn() {}, onLogout: (r) => (loggedOut = r) });
    await flush();
    await advance(3000);
    // The access token runs out; the next activity report gets 401 expired.
    server.expired = true;
    const lastBefore = server.last;
    t.win.dispatchEvent(new Event("keydown"));
    await flush();
    assert.equal(loggedOut, null, "logged out on an expired (renewable) token");
    assert.equal(server.refreshes, 1, t.calls.join(", "));
    assert.ok(server.last > lastBefore, "the activity was not reported again after the refresh");
    // The same when the tab becomes visible and reads the session.
    server.expired = true;
    t.doc.dispatchEvent(new Event("visibilitychange"));
    await flush();
    assert.equal(loggedOut, null);
    assert.equal(server.refreshes, 2);
    // A refresh that fails ends it, with the reason the session gives.
    server.expired = true;
    server.refreshReply = () => server.json(401, { error: "invalid_grant", reason: "expired" });
    t.doc.dispatchEvent(new Event("visibilitychange"));
    await flush();
    assert.equal(loggedOut, "expired");
  } finally {
    mock.timers.reset();
  }
});
