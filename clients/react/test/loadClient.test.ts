import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { AuthgateClient } from "../src/index.js";

type Load = typeof import("../src/loadClient.js").loadClient;
let loadClient: Load;

beforeEach(async () => {
  vi.resetModules(); // a fresh cache of pending loads for every test
  ({ loadClient } = await import("../src/loadClient.js"));
});

afterEach(() => {
  delete window.authgate;
  document.head.innerHTML = "";
});

const fakeClient = { loginUrl: (r: string) => `/auth/login?reason=${r}` } as unknown as AuthgateClient;
const scripts = () => Array.from(document.querySelectorAll("script"));

describe("loadClient", () => {
  it("returns window.authgate when the page already has it, without a script", async () => {
    window.authgate = fakeClient;
    await expect(loadClient()).resolves.toBe(fakeClient);
    expect(scripts()).toHaveLength(0);
  });

  it("appends exactly one script with {prefix}/client.js and resolves on load", async () => {
    const a = loadClient();
    const b = loadClient();
    expect(b).toBe(a);
    expect(scripts()).toHaveLength(1);
    const s = scripts()[0]!;
    expect(s.getAttribute("src")).toBe("/auth/client.js");
    expect(s.parentNode).toBe(document.head);
    window.authgate = fakeClient;
    s.dispatchEvent(new Event("load"));
    await expect(a).resolves.toBe(fakeClient);
    await expect(loadClient()).resolves.toBe(fakeClient);
    expect(scripts()).toHaveLength(1);
  });

  it("follows the prefix", () => {
    void loadClient("/sso/").catch(() => {});
    void loadClient("/sso/").catch(() => {});
    expect(scripts().map((s) => s.getAttribute("src"))).toEqual(["/sso/client.js"]);
  });

  it("rejects with a clear message when the script cannot be loaded; a later call retries", async () => {
    const p = loadClient();
    scripts()[0]!.dispatchEvent(new Event("error"));
    await expect(p).rejects.toThrow(
      /the gateway's client\.js could not be loaded from \/auth\/client\.js.*The app must be served through authgate/,
    );
    expect(scripts()).toHaveLength(0);
    const again = loadClient();
    expect(again).not.toBe(p);
    expect(scripts()).toHaveLength(1);
    again.catch(() => {});
  });

  it("rejects when the script loads but defines no window.authgate", async () => {
    const p = loadClient();
    scripts()[0]!.dispatchEvent(new Event("load"));
    await expect(p).rejects.toThrow(/did not define window\.authgate/);
  });
});
