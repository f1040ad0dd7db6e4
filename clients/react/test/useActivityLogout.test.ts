import { StrictMode, createElement, useEffect } from "react";
import { act, cleanup, render, renderHook } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { useActivityLogout, type UseActivityLogoutOptions } from "../src/index.js";
import { advance, settle, setup, teardown, type World } from "./harness.js";

const LOGIN_IDLE = "/auth/login?rd=%2Fapp%2Fpage%3Fx%3D1&reason=idle";

afterEach(() => {
  cleanup();
  teardown();
});

async function mount(w: World, options: UseActivityLogoutOptions) {
  w.install();
  const hook = renderHook((o: UseActivityLogoutOptions) => useActivityLogout(o), { initialProps: options });
  await settle(); // client loaded, first GET /auth/session answered
  return hook;
}

describe("useActivityLogout", () => {
  it("user interactions keep the session alive past the idle timeout", async () => {
    const w = setup(8);
    const onWarn = vi.fn();
    const onLogout = vi.fn();
    const { result } = await mount(w, { warnMs: 2000, onWarn, onLogout });
    for (let i = 0; i < 30; i++) {
      window.dispatchEvent(new Event(i % 2 ? "keydown" : "pointerdown"));
      await advance(1000);
      expect(result.current.warning).toBe(false);
    }
    // 30 s of use with an 8 s idle timeout: no warning, no logout, the server's deadline never reached
    expect(onWarn).not.toHaveBeenCalled();
    expect(onLogout).not.toHaveBeenCalled();
    expect(w.location.assign).not.toHaveBeenCalled();
    expect(w.server.ended).toBeNull();
    expect(w.server.count("POST /auth/logout")).toBe(0);
    expect(w.server.count("POST /auth/activity")).toBeGreaterThanOrEqual(10);
  });

  it("idle: warning with a decreasing remainingMs, then POST /auth/logout and the login page", async () => {
    const w = setup(10);
    const onWarn = vi.fn();
    const onLogout = vi.fn();
    const { result } = await mount(w, { warnMs: 3000, onWarn, onLogout });
    expect(result.current).toMatchObject({ warning: false, remainingMs: null, error: null });
    await advance(6000);
    expect(result.current.warning).toBe(false);
    expect(onWarn).not.toHaveBeenCalled();
    await advance(2000); // 8 s: inside the last 3 s
    expect(result.current.warning).toBe(true);
    const first = result.current.remainingMs!;
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThanOrEqual(3000);
    await advance(1000);
    expect(result.current.warning).toBe(true);
    const second = result.current.remainingMs!;
    expect(second).toBeLessThan(first);
    expect(first - second).toBe(1000);
    expect(onWarn).toHaveBeenLastCalledWith(second);
    expect(w.location.assign).not.toHaveBeenCalled();
    await advance(3000);
    expect(w.server.count("POST /auth/logout")).toBe(1);
    expect(onLogout).toHaveBeenCalledTimes(1);
    expect(onLogout).toHaveBeenCalledWith("idle");
    expect(w.location.assign).toHaveBeenCalledTimes(1);
    expect(w.location.assign).toHaveBeenCalledWith(LOGIN_IDLE);
    // onLogout runs before the redirect
    expect(onLogout.mock.invocationCallOrder[0]).toBeLessThan(w.location.assign.mock.invocationCallOrder[0]!);
    expect(result.current.warning).toBe(false);
    // nothing more happens afterwards
    const calls = w.fetch.mock.calls.length;
    await advance(5000);
    expect(w.fetch.mock.calls.length).toBe(calls);
    expect(w.location.assign).toHaveBeenCalledTimes(1);
  });

  it("redirect: false calls onLogout and stays on the page", async () => {
    const w = setup(4);
    const onLogout = vi.fn();
    await mount(w, { warnMs: 1000, onLogout, redirect: false });
    await advance(7000);
    expect(onLogout).toHaveBeenCalledWith("idle");
    expect(w.server.count("POST /auth/logout")).toBe(1);
    expect(w.location.assign).not.toHaveBeenCalled();
  });

  it("stayActive() hides the warning and tells the gateway", async () => {
    const w = setup(10);
    const onLogout = vi.fn();
    const { result } = await mount(w, { warnMs: 3000, onLogout });
    await advance(8000);
    expect(result.current.warning).toBe(true);
    const reports = w.server.count("POST /auth/activity");
    act(() => result.current.stayActive());
    await settle();
    expect(result.current.warning).toBe(false);
    expect(result.current.remainingMs).toBeNull();
    expect(w.server.count("POST /auth/activity")).toBe(reports + 1);
    // the deadline moved: 6 s later there is no warning and no logout
    await advance(6000);
    expect(result.current.warning).toBe(false);
    expect(onLogout).not.toHaveBeenCalled();
    expect(w.server.ended).toBeNull();
    // and it still ends when idle again
    await advance(6000);
    expect(onLogout).toHaveBeenCalledWith("idle");
  });

  it("logout() ends the session on the gateway and goes to the login page", async () => {
    const w = setup(60);
    const onLogout = vi.fn();
    const { result } = await mount(w, { onLogout });
    act(() => result.current.logout());
    await settle();
    expect(w.server.count("POST /auth/logout")).toBe(1);
    expect(w.server.ended).toBe("logout");
    expect(onLogout).toHaveBeenCalledWith("logout");
    expect(w.location.assign).toHaveBeenCalledWith("/auth/login?rd=%2Fapp%2Fpage%3Fx%3D1&reason=logout");
  });

  it("a logout in another tab (a plain script-tag page) logs this one out", async () => {
    const w = setup(60);
    const onLogout = vi.fn();
    await mount(w, { onLogout });
    const other = w.otherTab();
    other.authgate.activityLogout({ onWarn() {}, onLogout() {} }).logout();
    await settle();
    expect(onLogout).toHaveBeenCalledWith("logout");
    expect(w.location.assign).toHaveBeenCalledWith("/auth/login?rd=%2Fapp%2Fpage%3Fx%3D1&reason=logout");
  });

  it("unmount stops everything: no request, no callback, no redirect afterwards", async () => {
    const w = setup(4);
    const onWarn = vi.fn();
    const onLogout = vi.fn();
    const { unmount } = await mount(w, { warnMs: 1000, onWarn, onLogout });
    await advance(1000);
    unmount();
    const calls = w.fetch.mock.calls.length;
    // user activity, a visible page, and another tab that is used and then logs out
    window.dispatchEvent(new Event("keydown"));
    document.dispatchEvent(new Event("visibilitychange"));
    const other = w.otherTab();
    const h = other.authgate.activityLogout({ warnMs: 1000, onWarn() {}, onLogout() {} });
    await settle();
    other.win.dispatchEvent(new Event("pointerdown"));
    await advance(2000);
    h.logout();
    await advance(20000);
    expect(other.fetch).toHaveBeenCalled(); // the other tab did talk to the gateway
    expect(w.server.ended).toBe("logout");
    expect(w.fetch.mock.calls.length).toBe(calls);
    expect(onWarn).not.toHaveBeenCalled();
    expect(onLogout).not.toHaveBeenCalled();
    expect(w.location.assign).not.toHaveBeenCalled();
  });

  it("unmount with no other tab: not a single request after it, no listener left", async () => {
    const w = setup(4);
    const listeners = new Set<string>();
    const track = (target: EventTarget, name: string) => {
      const add = target.addEventListener.bind(target);
      const remove = target.removeEventListener.bind(target);
      const ids = new Map<unknown, number>();
      const key = (type: string, fn: unknown, o?: boolean | EventListenerOptions) =>
        `${name}:${type}:${typeof o === "boolean" ? o : !!o?.capture}:${ids.get(fn) ?? ids.set(fn, ids.size).get(fn)}`;
      vi.spyOn(target, "addEventListener").mockImplementation((type, fn, o) => {
        listeners.add(key(type, fn, o));
        add(type, fn, o);
      });
      vi.spyOn(target, "removeEventListener").mockImplementation((type, fn, o) => {
        listeners.delete(key(type, fn, o));
        remove(type, fn, o);
      });
    };
    track(window, "window");
    track(document, "document");
    const onLogout = vi.fn();
    const { unmount } = await mount(w, { warnMs: 1000, onLogout });
    const mine = () => [...listeners].filter((l) => /^(window:(pointerdown|keydown|touchstart|wheel|scroll)|document:visibilitychange):/.test(l));
    expect(mine().length).toBe(6);
    expect(w.channels[0]!.listeners.length).toBe(1);
    await advance(3500); // inside the warning
    unmount();
    expect(mine()).toEqual([]);
    expect(w.channels[0]!.listeners.length).toBe(0);
    const calls = w.fetch.mock.calls.length;
    window.dispatchEvent(new Event("keydown"));
    document.dispatchEvent(new Event("visibilitychange"));
    await advance(20000);
    expect(w.fetch.mock.calls.length).toBe(calls);
    expect(onLogout).not.toHaveBeenCalled();
    expect(w.location.assign).not.toHaveBeenCalled();
  });

  it("StrictMode's double mount leaves exactly one watcher", async () => {
    const w = setup(4);
    w.install();
    const onLogout = vi.fn();
    let effects = 0;
    function Probe() {
      useEffect(() => {
        effects++;
      }, []);
      useActivityLogout({ warnMs: 1000, onLogout });
      return null;
    }
    // StrictMode at the root (renderHook's wrapper does not double-invoke effects)
    const { unmount } = render(createElement(StrictMode, null, createElement(Probe)));
    await settle();
    expect(effects).toBe(2); // mounted, unmounted, mounted again
    expect(w.server.count("GET /auth/session")).toBe(1);
    await advance(7000);
    expect(onLogout).toHaveBeenCalledTimes(1);
    expect(w.server.count("POST /auth/logout")).toBe(1);
    expect(w.location.assign).toHaveBeenCalledTimes(1);
    unmount();
  });

  it("new callbacks do not restart the watcher; the latest ones are called", async () => {
    const w = setup(4);
    const first = vi.fn();
    const second = vi.fn();
    const { rerender } = await mount(w, { warnMs: 1000, onLogout: first, redirect: false });
    rerender({ warnMs: 1000, onLogout: second, redirect: false });
    await settle();
    expect(w.server.count("GET /auth/session")).toBe(1);
    await advance(7000);
    expect(first).not.toHaveBeenCalled();
    expect(second).toHaveBeenCalledWith("idle");
  });

  it("enabled: false stops the watcher; enabled again starts a new one", async () => {
    const w = setup(4);
    const onLogout = vi.fn();
    const { rerender } = await mount(w, { warnMs: 1000, onLogout, enabled: false });
    await advance(7000);
    expect(w.fetch).not.toHaveBeenCalled();
    w.server.last = Date.now(); // the user was active elsewhere meanwhile
    rerender({ warnMs: 1000, onLogout, enabled: true });
    await settle();
    expect(w.server.count("GET /auth/session")).toBe(1);
    rerender({ warnMs: 1000, onLogout, enabled: false });
    const calls = w.fetch.mock.calls.length;
    await advance(20000);
    expect(w.fetch.mock.calls.length).toBe(calls);
    expect(onLogout).not.toHaveBeenCalled();
    expect(w.location.assign).not.toHaveBeenCalled();
  });

  it("changing warnMs restarts the watcher with the new value", async () => {
    const w = setup(10);
    const { result, rerender } = await mount(w, { warnMs: 1000 });
    rerender({ warnMs: 5000 });
    await settle();
    expect(w.server.count("GET /auth/session")).toBe(2);
    await advance(6000);
    expect(result.current.warning).toBe(true);
  });

  it("reports an error when the gateway's client.js cannot be loaded", async () => {
    setup(10);
    const { result } = renderHook(() => useActivityLogout());
    await settle();
    const script = document.head.querySelector("script")!;
    expect(script.getAttribute("src")).toBe("/auth/client.js");
    script.dispatchEvent(new Event("error"));
    await settle();
    expect(result.current.error).toBeInstanceOf(Error);
    expect(result.current.error!.message).toContain("could not be loaded from /auth/client.js");
    expect(result.current.warning).toBe(false);
  });
});
