import { useCallback, useEffect, useRef, useState } from "react";
import { loadClient } from "./loadClient.js";
import type { RefreshResult } from "./types.js";
import { useLatest } from "./useLatest.js";

export interface UseRefreshTokenOptions {
  /** The gateway's `auth.path_prefix` (default `/auth`). */
  prefix?: string;
}

export interface RefreshTokenState {
  /** Rotates the session's tokens through the gateway's client (single-flight
   *  across every caller in the tab). Resolves to true on success. */
  refresh(): Promise<boolean>;
  /** True while a refresh() of this hook is in flight. */
  refreshing: boolean;
  /** The last refresh's outcome (any caller in the tab), null before the first. */
  ok: boolean | null;
  /** The access token of the last successful refresh, when the gateway returned one. */
  accessToken: string | null;
  /** The session's `session_expires_at` (unix seconds) from the last successful refresh. */
  expiresAt: number | null;
  /** Why the last refresh failed (the gateway's reason, `unavailable`, `network`,
   *  or `client_unavailable` when client.js could not be loaded); null on success. */
  reason: string | null;
}

interface State {
  ok: boolean | null;
  accessToken: string | null;
  expiresAt: number | null;
  reason: string | null;
}

const NONE: State = { ok: null, accessToken: null, expiresAt: null, reason: null };

/** The hook's view of a refresh: a failure that is not the gateway's 401
 *  (store down, network) keeps the previous token, which is still good. */
function apply(prev: State, r: RefreshResult): State {
  if (r.ok) return { ok: true, accessToken: r.accessToken, expiresAt: r.expiresAt, reason: null };
  if (r.status === 401) return { ok: false, accessToken: null, expiresAt: null, reason: r.reason };
  return { ...prev, ok: false, reason: r.reason };
}

/**
 * Token refresh through the gateway's own client (`authgate.refreshToken` from
 * `{prefix}/client.js`). The state follows every refresh in the tab, also those
 * started by `authgate.fetch` or by another instance of this hook.
 */
export function useRefreshToken(options: UseRefreshTokenOptions = {}): RefreshTokenState {
  const { prefix = "/auth" } = options;
  const prefixRef = useLatest(prefix);
  const mounted = useRef(false);
  const [state, setState] = useState<State>(NONE);
  const [inFlight, setInFlight] = useState(0);

  useEffect(() => {
    mounted.current = true;
    let active = true;
    let unsubscribe: (() => void) | null = null;
    loadClient(prefix).then(
      (client) => {
        if (!active) return;
        const last = client.lastRefresh?.();
        if (last) setState((s) => apply(s, last));
        unsubscribe = client.onRefresh((r) => {
          if (active) setState((s) => apply(s, r));
        });
      },
      () => {
        /* refresh() reports it */
      },
    );
    return () => {
      active = false;
      mounted.current = false;
      unsubscribe?.();
    };
  }, [prefix]);

  const refresh = useCallback(async (): Promise<boolean> => {
    if (mounted.current) setInFlight((n) => n + 1);
    try {
      let client;
      try {
        client = await loadClient(prefixRef.current);
      } catch {
        if (mounted.current) setState((s) => ({ ...s, ok: false, reason: "client_unavailable" }));
        return false;
      }
      return await client.refreshToken();
    } finally {
      if (mounted.current) setInFlight((n) => n - 1);
    }
  }, [prefixRef]);

  return { refresh, refreshing: inFlight > 0, ...state };
}
