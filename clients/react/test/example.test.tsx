import { act, cleanup, fireEvent, render, renderHook, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { IdleWarning, useApiFetch } from "./example.js";
import { advance, reply, settle, setup, teardown } from "./harness.js";

afterEach(() => {
  cleanup();
  teardown();
});

describe("the README's example", () => {
  it("IdleWarning counts down and 'Stay signed in' keeps the session", async () => {
    const w = setup(120);
    w.install();
    render(<IdleWarning />);
    await settle();
    await advance(59_000);
    expect(screen.queryByRole("alertdialog")).toBeNull();
    await advance(1_000);
    expect(screen.getByRole("alertdialog").textContent).toContain("You will be signed out in 60 s");
    await advance(10_000);
    expect(screen.getByRole("alertdialog").textContent).toContain("in 50 s");
    // client.js adds no banner of its own
    expect(document.getElementById("authgate-idle-warning")).toBeNull();
    fireEvent.click(screen.getByRole("button", { name: "Stay signed in" }));
    await settle();
    expect(screen.queryByRole("alertdialog")).toBeNull();
    await advance(30_000);
    expect(screen.queryByRole("alertdialog")).toBeNull();
    expect(w.server.ended).toBeNull();
    expect(w.location.assign).not.toHaveBeenCalled();
  });

  it("useApiFetch refreshes once on 401 expired and retries", async () => {
    const w = setup(120);
    w.install();
    let n = 0;
    w.server.app = (_m, url) =>
      url === "/api/data" && ++n === 1 ? reply(401, { error: "unauthorized", reason: "expired" }) : reply(200, { ok: true });
    const { result } = renderHook(() => useApiFetch());
    await settle();
    let status = 0;
    await act(async () => {
      status = (await result.current("/api/data")).status;
    });
    expect(status).toBe(200);
    expect(w.server.calls.filter((c) => c !== "GET /auth/session")).toEqual(["GET /api/data", "POST /auth/refresh", "GET /api/data"]);
  });
});
