// Test harness: the REAL clients/client.js, evaluated in the jsdom window,
// against a fake gateway (a mocked fetch that keeps the server-side idle
// deadline, like fakeServer in clients/client.test.mjs), an in-memory
// BroadcastChannel shared by tabs, and a stub location that records assign().
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { act } from "@testing-library/react";
import { vi, type Mock } from "vitest";
import type { ActivityLogoutHandle, AuthgateClient } from "../src/index.js";

// (jsdom's URL rejects file: paths in node's fs, hence the plain path)
const CLIENT_JS = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "client.js");
export const CLIENT_SRC = readFileSync(CLIENT_JS, "utf8").replaceAll(
  "__AUTHGATE_PREFIX__",
  "/auth",
);

export const START = 1_700_000_000_000;

export interface FakeResponse {
  ok: boolean;
  status: number;
  json(): Promise<unknown>;
  clone(): FakeResponse;
}

export function reply(status: number, body: unknown): FakeResponse {
  return {
    ok: status >= 200 && status < 300,
    status,
    json: async () => {
      if (body === undefined) throw new SyntaxError("Unexpected end of JSON input");
      return body;
    },
    clone() {
      return this;
    },
  };
}

/** The gateway's session rules that the client mirrors: every POST /activity
 *  moves the idle deadline; past it the session ends with reason "idle". */
export class FakeGateway {
  idleMs: number;
  last = Date.now();
  ended: string | null = null;
  refreshes = 0;
  calls: string[] = [];
  /** Overrides POST /auth/refresh (default: 200 with a new token). */
  refreshReply: (() => FakeResponse | Promise<FakeResponse>) | null = null;
  /** Answers requests outside /auth (default 404). */
  app: (method: string, url: string) => FakeResponse | Promise<FakeResponse> = () => reply(404, {});

  constructor(readonly idleSeconds: number) {
    this.idleMs = idleSeconds * 1000;
  }

  live(): boolean {
    if (!this.ended && Date.now() - this.last > this.idleMs) this.ended = "idle";
    return !this.ended;
  }

  async handle(method: string, url: string): Promise<FakeResponse> {
    this.calls.push(`${method} ${url}`);
    if (url === "/auth/session") {
      if (!this.live()) return reply(401, { error: "unauthorized", reason: this.ended });
      return reply(200, {
        user: "alice",
        roles: ["user"],
        now: Math.floor(Date.now() / 1000),
        idle_timeout: this.idleSeconds,
        idle_expires_at: Math.floor((this.last + this.idleMs) / 1000),
      });
    }
    if (url === "/auth/activity" && method === "POST") {
      if (!this.live()) return reply(401, { error: "unauthorized", reason: this.ended });
      this.last = Date.now();
      return reply(204, undefined);
    }
    if (url === "/auth/logout" && method === "POST") {
      this.ended = this.ended || "logout";
      return reply(204, undefined);
    }
    if (url === "/auth/refresh" && method === "POST") {
      this.refreshes++;
      await Promise.resolve();
      if (this.refreshReply) return this.refreshReply();
      if (!this.live()) return reply(401, { error: "invalid_grant", reason: this.ended });
      return reply(200, {
        access_token: `token-${this.refreshes}`,
        token_type: "Bearer",
        expires_in: 900,
        idle_timeout: this.idleSeconds,
        session_expires_at: Math.floor(Date.now() / 1000) + 900,
      });
    }
    return this.app(method, url);
  }

  count(call: string): number {
    return this.calls.filter((c) => c === call).length;
  }
}

type Listener = (e: { data: unknown }) => void;

/** BroadcastChannel for the tabs of one test: delivers to the other channels
 *  of the same name, asynchronously (a microtask), never to itself. */
export function fakeBroadcastChannel() {
  const all: FakeChannel[] = [];
  class FakeChannel {
    listeners: Listener[] = [];
    constructor(readonly name: string) {
      all.push(this);
    }
    addEventListener(_type: string, fn: Listener) {
      if (!this.listeners.includes(fn)) this.listeners.push(fn);
    }
    removeEventListener(_type: string, fn: Listener) {
      this.listeners = this.listeners.filter((f) => f !== fn);
    }
    postMessage(data: unknown) {
      for (const c of all) {
        if (c === this || c.name !== this.name) continue;
        queueMicrotask(() => c.listeners.slice().forEach((fn) => fn({ data })));
      }
    }
    close() {}
  }
  return { FakeChannel, all };
}

export interface StubLocation {
  href: string;
  origin: string;
  pathname: string;
  search: string;
  hash: string;
  assign: Mock<(url: string) => void>;
  replace: Mock<(url: string) => void>;
  reload: Mock<() => void>;
}

/** jsdom cannot navigate, and its location.assign cannot be spied on: the
 *  global location (window === globalThis under vitest) becomes a stub. */
export function stubLocation(url = "https://app.example/app/page?x=1"): StubLocation {
  const u = new URL(url);
  const loc: StubLocation = {
    href: u.href,
    origin: u.origin,
    pathname: u.pathname,
    search: u.search,
    hash: u.hash,
    assign: vi.fn<(url: string) => void>(),
    replace: vi.fn<(url: string) => void>(),
    reload: vi.fn<() => void>(),
  };
  vi.stubGlobal("location", loc);
  return loc;
}

export interface World {
  server: FakeGateway;
  location: StubLocation;
  fetch: Mock;
  channels: ReturnType<typeof fakeBroadcastChannel>["all"];
  /** Evaluates client.js in the jsdom window: sets window.authgate. */
  install(): AuthgateClient;
  /** A second tab: another client.js instance with its own window and
   *  fetch, sharing the gateway and the channel. */
  otherTab(): { authgate: AuthgateClient; win: EventTarget; fetch: Mock };
}

/** Fake timers (Date included), fake gateway, fetch, channel and location. */
export function setup(idleSeconds = 10): World {
  vi.useFakeTimers({
    now: START,
    toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"],
  });
  const server = new FakeGateway(idleSeconds);
  const fetch = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) =>
    server.handle((init.method || "GET").toUpperCase(), String(input)),
  );
  vi.stubGlobal("fetch", fetch);
  const { FakeChannel, all } = fakeBroadcastChannel();
  vi.stubGlobal("BroadcastChannel", FakeChannel);
  const location = stubLocation();
  return {
    server,
    location,
    fetch,
    channels: all,
    install() {
      new Function(CLIENT_SRC)();
      if (!window.authgate) throw new Error("client.js did not define window.authgate");
      return window.authgate;
    },
    otherTab() {
      const win = new EventTarget() as EventTarget & { authgate?: AuthgateClient };
      // its own fetch: this tab's requests are not counted in w.fetch
      const fetch = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) =>
        server.handle((init.method || "GET").toUpperCase(), String(input)),
      );
      new Function("window", "fetch", CLIENT_SRC)(win, fetch);
      const client = win.authgate!;
      const start = client.activityLogout;
      // its watchers listen on the shared document too: stopped in teardown()
      client.activityLogout = (o) => {
        const h = start(o);
        otherTabWatchers.push(h);
        return h;
      };
      return { authgate: client, win, fetch };
    },
  };
}

const otherTabWatchers: ActivityLogoutHandle[] = [];

export function teardown() {
  otherTabWatchers.splice(0).forEach((h) => h.stop());
  delete window.authgate;
  document.head.innerHTML = "";
  vi.useRealTimers();
}

export async function flush() {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

/** Lets time pass in steps, running the client's timers, its requests and React's updates. */
export async function advance(ms: number, step = 250) {
  for (let t = 0; t < ms; t += step) {
    await act(async () => {
      await vi.advanceTimersByTimeAsync(step);
      await flush();
    });
  }
}

/** Settles pending promises and React updates without moving the clock. */
export async function settle() {
  await act(async () => {
    await flush();
  });
}
