import type { AuthgateClient } from "./types.js";

const pending = new Map<string, Promise<AuthgateClient>>();

/** The URL of the gateway's browser client under `prefix`. */
export function clientUrl(prefix: string = "/auth"): string {
  return prefix.replace(/\/+$/, "") + "/client.js";
}

/**
 * Resolves with the gateway's browser client (`window.authgate`). When the page
 * does not have it yet, appends one `<script src="{prefix}/client.js">` and waits
 * for it; concurrent calls share that script. A failed load is not cached: a
 * later call tries again.
 */
export function loadClient(prefix: string = "/auth"): Promise<AuthgateClient> {
  if (typeof window === "undefined" || typeof document === "undefined") {
    return Promise.reject(new Error("authgate: the browser client needs a browser (window and document)"));
  }
  if (window.authgate) return Promise.resolve(window.authgate);
  const cached = pending.get(prefix);
  if (cached) return cached;
  const src = clientUrl(prefix);
  const promise = new Promise<AuthgateClient>((resolve, reject) => {
    const script = document.createElement("script");
    const fail = (why: string) => {
      pending.delete(prefix);
      script.remove();
      reject(
        new Error(
          `authgate: the gateway's client.js could not be loaded from ${src} (${why}). ` +
            "The app must be served through authgate, which serves that script; " +
            `if auth.path_prefix is not "${prefix}", pass its value as the prefix option.`,
        ),
      );
    };
    script.src = src;
    script.async = true;
    script.addEventListener("load", () => {
      if (window.authgate) {
        pending.delete(prefix);
        resolve(window.authgate);
      } else {
        fail("the script loaded but did not define window.authgate");
      }
    });
    script.addEventListener("error", () => fail("the request failed"));
    (document.head || document.documentElement).appendChild(script);
  });
  pending.set(prefix, promise);
  return promise;
}
