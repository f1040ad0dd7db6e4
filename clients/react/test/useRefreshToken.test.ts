import { act, cleanup, renderHook } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { useRefreshToken } from "../src/index.js";
import { reply, settle, setup, START, teardown } from "./harness.js";

afterEach(() => {
  cleanup();
  teardown();
});

const NOW_S = Math.floor(START / 1000);

describe("useRefreshToken", () => {
  it("a successful refresh sets ok, accessToken and expiresAt", async () => {
    const w = setup(60);
    w.install();
    const { result } = renderHook(() => useRefreshToken());
    await settle();
    expect(result.current).toMatchObject({ refreshing: false, ok: null, accessToken: null, expiresAt: null, reason: null });
    let pending!: Promise<boolean>;
    act(() => {
      pending = result.current.refresh();
    });
    expect(result.current.refreshing).toBe(true);
    let ok: boolean | undefined;
    await act(async () => {
      ok = await pending;
    });
    expect(ok).toBe(true);
    expect(w.server.count("POST /auth/refresh")).toBe(1);
    expect(result.current).toMatchObject({
      refreshing: false,
      ok: true,
      accessToken: "token-1",
      expiresAt: NOW_S + 900,
      reason: null,
    });
  });

  it("401 invalid_grant sets ok=false and the gateway's reason", async () => {
    const w = setup(60);
    w.install();
    const { result } = renderHook(() => useRefreshToken());
    await settle();
    await act(async () => {
      await result.current.refresh();
    });
    expect(result.current.accessToken).toBe("token-1");
    w.server.refreshReply = () => reply(401, { error: "invalid_grant", reason: "reuse" });
    let ok: boolean | undefined;
    await act(async () => {
      ok = await result.current.refresh();
    });
    expect(ok).toBe(false);
    expect(result.current).toMatchObject({ refreshing: false, ok: false, accessToken: null, expiresAt: null, reason: "reuse" });
  });

  it("503 (store down) sets ok=false, reason unavailable, and keeps the token", async () => {
    const w = setup(60);
    w.install();
    const { result } = renderHook(() => useRefreshToken());
    await settle();
    await act(async () => {
      await result.current.refresh();
    });
    w.server.refreshReply = () => reply(503, { error: "unavailable" });
    await act(async () => {
      expect(await result.current.refresh()).toBe(false);
    });
    expect(result.current).toMatchObject({ ok: false, reason: "unavailable", accessToken: "token-1", expiresAt: NOW_S + 900 });
  });

  it("is single-flight: two concurrent refresh() calls, two hooks, one POST", async () => {
    const w = setup(60);
    w.install();
    const a = renderHook(() => useRefreshToken());
    const b = renderHook(() => useRefreshToken());
    await settle();
    let results: boolean[] = [];
    await act(async () => {
      results = await Promise.all([a.result.current.refresh(), a.result.current.refresh(), b.result.current.refresh()]);
    });
    expect(results).toEqual([true, true, true]);
    expect(w.server.count("POST /auth/refresh")).toBe(1);
    expect(a.result.current.accessToken).toBe("token-1");
    expect(b.result.current.accessToken).toBe("token-1");
  });

  it("follows a refresh started by authgate.fetch", async () => {
    const w = setup(60);
    const client = w.install();
    let n = 0;
    w.server.app = (_m, url) =>
      url === "/api/data" && ++n === 1 ? reply(401, { error: "unauthorized", reason: "expired" }) : reply(200, { ok: true });
    const { result } = renderHook(() => useRefreshToken());
    await settle();
    let status = 0;
    await act(async () => {
      status = (await client.fetch("/api/data")).status;
    });
    expect(status).toBe(200);
    expect(w.server.count("POST /auth/refresh")).toBe(1);
    expect(result.current).toMatchObject({ ok: true, accessToken: "token-1", expiresAt: NOW_S + 900, reason: null });
  });

  it("starts from the last refresh made before it mounted", async () => {
    const w = setup(60);
    const client = w.install();
    await client.refreshToken();
    const { result } = renderHook(() => useRefreshToken());
    await settle();
    expect(result.current).toMatchObject({ ok: true, accessToken: "token-1" });
  });

  it("refresh() before the client is loaded waits for it", async () => {
    const w = setup(60);
    const { result } = renderHook(() => useRefreshToken());
    await settle();
    const scripts = document.head.querySelectorAll("script");
    expect(scripts.length).toBe(1);
    let pending!: Promise<boolean>;
    act(() => {
      pending = result.current.refresh();
    });
    await settle();
    expect(w.fetch).not.toHaveBeenCalled();
    // the gateway's script arrives
    w.install();
    scripts[0]!.dispatchEvent(new Event("load"));
    let ok: boolean | undefined;
    await act(async () => {
      ok = await pending;
    });
    expect(ok).toBe(true);
    expect(document.head.querySelectorAll("script").length).toBe(1);
    expect(w.server.count("POST /auth/refresh")).toBe(1);
    expect(result.current).toMatchObject({ ok: true, accessToken: "token-1", refreshing: false });
  });

  it("resolves false with a reason when the client cannot be loaded", async () => {
    setup(60);
    const { result } = renderHook(() => useRefreshToken());
    await settle();
    let pending!: Promise<boolean>;
    act(() => {
      pending = result.current.refresh();
    });
    document.head.querySelector("script")!.dispatchEvent(new Event("error"));
    let ok: boolean | undefined;
    await act(async () => {
      ok = await pending;
    });
    expect(ok).toBe(false);
    expect(result.current).toMatchObject({ ok: false, reason: "client_unavailable", refreshing: false });
  });

  it("unmount unsubscribes: later refreshes do not reach it", async () => {
    const w = setup(60);
    const client = w.install();
    const subscribe = client.onRefresh;
    let live = 0;
    client.onRefresh = (fn) => {
      live++;
      const off = subscribe(fn);
      return () => {
        live--;
        off();
      };
    };
    let renders = 0;
    const { unmount } = renderHook(() => {
      renders++;
      return useRefreshToken();
    });
    await settle();
    expect(live).toBe(1);
    unmount();
    expect(live).toBe(0);
    const before = renders;
    await act(async () => {
      await client.refreshToken();
    });
    expect(renders).toBe(before);
  });
});
