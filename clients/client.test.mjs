// Unit tests of clients/client.js with node's built-in test runner and mock
// timers: `node --test clients/`. The script runs against fakes of the
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
    postMessage(data) { for (const c of bus) if (c !== this) for (const fn of c.listeners) fn({ data }); }
  }
  const nav = { locks: null };
  new Function("window", "document", "location", "fetch", "navigator", "BroadcastChannel", SRC)(
    win, doc, loc, fetchFn, nav, Channel);
  return { authgate: win.authgate, win, loc, calls };
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
      if (url === "/auth/refresh") { s.refreshes++; await Promise.resolve(); return s.json(200, {}); }
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
