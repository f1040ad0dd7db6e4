// The README's example, compiled and tested as is (test/example.test.tsx).
import { useCallback } from "react";
import { useActivityLogout, useRefreshToken } from "../src/index.js";

/** Renders the app's own idle warning: client.js shows no banner when onWarn is given. */
export function IdleWarning() {
  const { warning, remainingMs, stayActive } = useActivityLogout({ warnMs: 60_000 });
  if (!warning || remainingMs == null) return null;
  return (
    <div role="alertdialog" aria-live="assertive" className="idle-warning">
      <span>You will be signed out in {Math.ceil(remainingMs / 1000)} s because of inactivity.</span>
      <button type="button" onClick={stayActive}>
        Stay signed in
      </button>
    </div>
  );
}

/** fetch() for the app's API: on 401 "expired", refreshes once (shared with
 *  every other caller in the tab) and retries. */
export function useApiFetch() {
  const { refresh } = useRefreshToken();
  return useCallback(
    async (input: string, init: RequestInit = {}) => {
      const send = () => fetch(input, { credentials: "same-origin", ...init });
      const response = await send();
      if (response.status !== 401) return response;
      const body = await response.clone().json().catch(() => null);
      if (body?.reason === "expired" && (await refresh())) return send();
      return response;
    },
    [refresh],
  );
}
