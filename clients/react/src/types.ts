/** Types of the gateway's browser client (`{prefix}/client.js`, `window.authgate`). */

/** Options of `authgate.activityLogout`. */
export interface ActivityLogoutOptions {
  /** Local idle timeout in ms; defaults to, and is clamped by, the server's idle timeout. */
  idleMs?: number;
  /** How long before the idle logout the warning starts, in ms (default 60000). */
  warnMs?: number;
  /** Called every second during the warning with the ms left. When given, the
   *  client shows no banner of its own. */
  onWarn?(msLeft: number): void;
  /** Called when activity (here or in another tab) ends the warning. */
  onActive?(): void;
  /** Called once the session ended (`idle`, `logout`, or the server's reason).
   *  When given, the client does not redirect by itself. */
  onLogout?(reason: string): void;
}

/** What `authgate.activityLogout` returns. */
export interface ActivityLogoutHandle {
  /** Removes every listener and the timer; a stopped watcher never calls back,
   *  redirects or sends a request. */
  stop(): void;
  /** Counts as user activity (e.g. a "Stay signed in" button). */
  touch(): void;
  /** Milliseconds until the idle logout, or null before the first sync with the server. */
  remaining(): number | null;
  /** Ends the session on the server (POST `{prefix}/logout`) and in every tab. */
  logout(): void;
}

/** The outcome of one refresh (POST `{prefix}/refresh`), as given to `onRefresh` listeners. */
export interface RefreshResult {
  ok: boolean;
  /** The HTTP status; 0 when the gateway could not be reached. */
  status: number;
  /** The new access token, when the gateway returned one. */
  accessToken: string | null;
  /** The session's new `session_expires_at` (unix seconds). */
  expiresAt: number | null;
  /** Why it failed: the gateway's `reason` on 401 `invalid_grant` (e.g. `reuse`,
   *  `idle`), `unavailable` on 503, `network` when unreachable. Null on success. */
  reason: string | null;
}

/** `window.authgate`, defined by the gateway's `{prefix}/client.js`. */
export interface AuthgateClient {
  activityLogout(options?: ActivityLogoutOptions): ActivityLogoutHandle;
  /** Rotates the session's tokens (single-flight). Resolves to true on success. */
  refreshToken(): Promise<boolean>;
  /** Calls `listener` after every refresh attempt, also those started by
   *  `authgate.fetch`; returns the function that unsubscribes. */
  onRefresh(listener: (result: RefreshResult) => void): () => void;
  /** The last refresh's outcome, or null when none happened yet. */
  lastRefresh(): RefreshResult | null;
  /** `fetch` that refreshes once and retries when the gateway answers 401 `expired`. */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** The gateway's login page for the current page: `{prefix}/login?rd=...&reason=...`. */
  loginUrl(reason: string): string;
}

declare global {
  interface Window {
    authgate?: AuthgateClient;
  }
}
