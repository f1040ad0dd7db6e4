import { useCallback, useEffect, useRef, useState } from "react";
import { loadClient } from "./loadClient.js";
import type { ActivityLogoutHandle } from "./types.js";
import { useLatest } from "./useLatest.js";

export interface UseActivityLogoutOptions {
  /** Local idle timeout in ms; defaults to, and is clamped by, the server's idle timeout. */
  idleMs?: number;
  /** How long before the idle logout `warning` becomes true, in ms (default 60000). */
  warnMs?: number;
  /** Called every second during the warning with the ms left. */
  onWarn?(msLeft: number): void;
  /** Called once the session ended (`idle`, `logout`, or the server's reason), before the redirect. */
  onLogout?(reason: string): void;
  /** After onLogout, go to the gateway's login page (`authgate.loginUrl(reason)`). Default true. */
  redirect?: boolean;
  /** The gateway's `auth.path_prefix` (default `/auth`). */
  prefix?: string;
  /** Watch only while true (default true). */
  enabled?: boolean;
}

export interface ActivityLogoutState {
  /** True from `warnMs` before the idle logout until activity (or the logout). */
  warning: boolean;
  /** During the warning: ms left until the idle logout (updated every second); else null. */
  remainingMs: number | null;
  /** Counts as activity: hides the warning and tells the gateway. */
  stayActive(): void;
  /** Ends the session on the gateway, in every tab; then onLogout and the redirect. */
  logout(): void;
  /** Set when the gateway's client.js could not be loaded. */
  error: Error | null;
}

interface State {
  warning: boolean;
  remainingMs: number | null;
  error: Error | null;
}

const IDLE: State = { warning: false, remainingMs: null, error: null };

/**
 * Mirrors the gateway's idle logout in a React app by driving the gateway's own
 * browser client (`authgate.activityLogout` from `{prefix}/client.js`): user
 * activity is reported, tabs share activity and logout, and when the session
 * goes idle it is ended and the page goes to the login page.
 *
 * The client shows no banner of its own here: render your warning from
 * `warning` and `remainingMs`, with a button calling `stayActive()`.
 */
export function useActivityLogout(options: UseActivityLogoutOptions = {}): ActivityLogoutState {
  const { idleMs, warnMs, prefix = "/auth", enabled = true } = options;
  const latest = useLatest(options);
  const handle = useRef<ActivityLogoutHandle | null>(null);
  const [state, setState] = useState<State>(IDLE);

  useEffect(() => {
    setState(IDLE);
    if (!enabled) return;
    let active = true;
    let h: ActivityLogoutHandle | null = null;
    loadClient(prefix).then(
      (client) => {
        if (!active) return;
        h = client.activityLogout({
          idleMs,
          warnMs,
          onWarn(msLeft) {
            if (!active) return;
            setState((s) => ({ ...s, warning: true, remainingMs: msLeft }));
            latest.current.onWarn?.(msLeft);
          },
          onActive() {
            if (!active) return;
            setState((s) => ({ ...s, warning: false, remainingMs: null }));
          },
          onLogout(reason) {
            if (!active) return;
            setState((s) => ({ ...s, warning: false, remainingMs: null }));
            latest.current.onLogout?.(reason);
            if (active && latest.current.redirect !== false) window.location.assign(client.loginUrl(reason));
          },
        });
        handle.current = h;
      },
      (error: unknown) => {
        if (!active) return;
        setState((s) => ({ ...s, error: error instanceof Error ? error : new Error(String(error)) }));
      },
    );
    return () => {
      active = false;
      h?.stop();
      if (handle.current === h) handle.current = null;
    };
  }, [idleMs, warnMs, prefix, enabled, latest]);

  const stayActive = useCallback(() => handle.current?.touch(), []);
  const logout = useCallback(() => handle.current?.logout(), []);
  return { warning: state.warning, remainingMs: state.remainingMs, stayActive, logout, error: state.error };
}
