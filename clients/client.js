/* authgate browser client: served by the gateway at {prefix}/client.js.
 *
 *   <script src="/auth/client.js"></script>
 *   <script>
 *     authgate.activityLogout({ warnMs: 60000 });          // default banner
 *     authgate.refreshToken().then(ok => ...);             // Promise<boolean>
 *     authgate.onRefresh(r => ...);                        // every refresh's outcome
 *     authgate.fetch("/api/x").then(r => ...);             // refreshes once on 401 "expired"
 *   </script>
 *
 * The server's idle timeout is the truth; this script only mirrors it: it
 * reports real user activity (throttled POST {prefix}/activity), reads the
 * server's deadlines from GET {prefix}/session, warns before the deadline,
 * and on expiry logs out and goes to the login page with reason=idle.
 * Tabs of one browser share activity and logout (BroadcastChannel).
 * No dependency, no build step. The refresh token never leaves its HttpOnly
 * cookie; an access token reaches page scripts only as the result of a
 * refresh (onRefresh(r).accessToken), for apps that also call services
 * with Authorization: Bearer.
 */
(function (global) {
  "use strict";
  var PREFIX = "__AUTHGATE_PREFIX__";
  var channel = typeof BroadcastChannel === "function" ? new BroadcastChannel("authgate") : null;
  var refreshing = null;
  var refreshListeners = [];
  var lastRefresh = null;

  function post(path) {
    return fetch(PREFIX + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
  }

  /** The `reason` of a gateway 401 ("expired" when the body says none). */
  function reasonOf(response) {
    return response.json().then(
      function (b) { return b && b.reason ? b.reason : "expired"; },
      function () { return "expired"; });
  }

  function loginUrl(reason) {
    var rd = location.pathname + location.search;
    return PREFIX + "/login?rd=" + encodeURIComponent(rd) + "&reason=" + encodeURIComponent(reason);
  }

  /** The outcome of one refresh, as given to onRefresh listeners. */
  function refreshResult(ok, status, body, reason) {
    return {
      ok: ok,
      status: status, // HTTP status, 0 when the gateway could not be reached
      accessToken: ok && body && typeof body.access_token === "string" ? body.access_token : null,
      expiresAt: ok && body && typeof body.session_expires_at === "number" ? body.session_expires_at : null,
      reason: ok ? null : reason,
    };
  }

  /** Rotates the session's tokens; single-flight within a tab and, where the
   *  Web Locks API exists, across tabs. Resolves to true on success; the
   *  details go to the onRefresh listeners, once per request. */
  function refreshToken() {
    if (refreshing) return refreshing;
    var failed = function () { return refreshResult(false, 0, null, "network"); };
    var run = function () {
      return post("/refresh").then(function (r) {
        return r.json().then(null, function () { return null; }).then(function (body) {
          if (r.ok) return refreshResult(true, r.status, body, null);
          // 401 {error:"invalid_grant", reason}; 503 when the store is down.
          return refreshResult(false, r.status, body,
            (body && (body.reason || body.error)) || (r.status === 503 ? "unavailable" : "http_" + r.status));
        });
      }, failed);
    };
    refreshing = (global.navigator && navigator.locks && navigator.locks.request
      ? navigator.locks.request("authgate-refresh", run)
      : run()
    ).then(null, failed).then(function (result) {
      refreshing = null;
      lastRefresh = result;
      refreshListeners.slice().forEach(function (fn) {
        try { fn(result); } catch (e) { if (global.console) console.error(e); }
      });
      return result.ok;
    });
    return refreshing;
  }

  /** Calls listener(result) after every refresh attempt (also those started
   *  by authgate.fetch); returns a function that unsubscribes. */
  function onRefresh(listener) {
    refreshListeners.push(listener);
    return function () {
      var i = refreshListeners.indexOf(listener);
      if (i >= 0) refreshListeners.splice(i, 1);
    };
  }

  /** fetch() that refreshes once when the gateway answers 401 "expired". */
  function authFetch(input, init) {
    init = init || {};
    if (!init.credentials) init.credentials = "same-origin";
    return fetch(input, init).then(function (r) {
      if (r.status !== 401) return r;
      return r.clone().json().then(function (body) {
        if (!body || body.reason !== "expired") return r;
        return refreshToken().then(function (ok) { return ok ? fetch(input, init) : r; });
      }, function () { return r; });
    });
  }

  function defaultBanner() {
    var el = null;
    return {
      show: function (seconds, stay) {
        if (!el) {
          el = document.createElement("div");
          el.setAttribute("role", "alertdialog");
          el.setAttribute("aria-live", "assertive");
          el.id = "authgate-idle-warning";
          el.style.cssText = "position:fixed;left:50%;top:1rem;transform:translateX(-50%);z-index:2147483647;" +
            "background:#fff4e5;border:1px solid #f0c36d;border-radius:6px;padding:.8rem 1rem;" +
            "font:15px system-ui,sans-serif;color:#222;box-shadow:0 2px 8px #0003";
          var text = document.createElement("span");
          var btn = document.createElement("button");
          btn.type = "button";
          btn.textContent = "Stay signed in";
          btn.style.marginLeft = "1rem";
          btn.addEventListener("click", stay);
          el.appendChild(text);
          el.appendChild(btn);
          (document.body || document.documentElement).appendChild(el);
        }
        el.firstChild.textContent = "You will be signed out in " + seconds + " s because of inactivity.";
      },
      hide: function () {
        if (el && el.parentNode) el.parentNode.removeChild(el);
        el = null;
      },
    };
  }

  /** Mirrors the server's idle logout: warning, countdown, redirect.
   *  options: idleMs (defaults to and is clamped by the server's idle
   *  timeout), warnMs (default 60000), onWarn(msLeft), onActive(), onLogout(reason). */
  function activityLogout(options) {
    options = options || {};
    var warnMs = options.warnMs == null ? 60000 : options.warnMs;
    var idleMs = null;     // effective idle timeout (ms)
    var deadline = null;   // local time (ms) at which the server ends the session
    var lastActivity = 0;  // last user activity in this tab (local ms)
    var lastReport = 0;    // last activity the server was told about (local ms)
    var warned = false;
    var done = false;      // logged out or stopped: nothing more happens
    var stopped = false;   // stop() was called: no callback, no redirect, no request
    var banner = options.onWarn ? null : defaultBanner();

    function throttleMs() { return Math.min(idleMs / 4, 60000); }

    // Reads the server's view. A 401 "expired" is an access token past its
    // exp on a session that can still be renewed: refresh once and read
    // again. Any other 401 means the session already ended.
    function sync(refreshed) {
      if (done) return Promise.resolve();
      return fetch(PREFIX + "/session", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (done) return;
          if (r.status === 401) {
            return reasonOf(r).then(function (reason) {
              if (reason !== "expired" || refreshed) return end(reason, false);
              return refreshToken().then(function (ok) {
                return ok ? sync(true) : end("expired", false);
              });
            });
          }
          if (!r.ok) return;
          return r.json().then(function (s) {
            var skew = s.now * 1000 - Date.now();
            var serverIdle = s.idle_timeout * 1000;
            idleMs = Math.min(options.idleMs || serverIdle, serverIdle);
            // The server's deadline, or an earlier one when idleMs is shorter.
            deadline = Math.min(s.idle_expires_at * 1000 - skew, (lastReport || Date.now()) + idleMs);
          });
        }, function () { /* offline: keep the local deadline */ });
    }

    function report(now) {
      lastReport = now;
      deadline = now + idleMs;
      post("/activity").then(function (r) {
        if (r.status !== 401 || done) return;
        // Not counted: renew an expired token and tell the server again,
        // or learn why the session ended.
        return reasonOf(r).then(function (reason) {
          if (reason !== "expired") return sync();
          return refreshToken().then(function (ok) {
            return ok ? post("/activity").then(function () { return sync(true); }) : sync();
          });
        });
      }).then(null, function () {});
      if (channel) channel.postMessage({ type: "activity", at: now });
    }

    function activity(fromOtherTab) {
      if (done || idleMs == null) return;
      var now = Date.now();
      if (warned) {
        warned = false;
        if (banner) banner.hide();
        if (options.onActive) options.onActive();
      }
      if (fromOtherTab) {
        // The other tab told the server; our deadline moves with it.
        lastReport = now;
        deadline = now + idleMs;
        return;
      }
      lastActivity = now;
      if (now - lastReport >= throttleMs()) report(now);
    }

    // explicit: logout() was called, so the server must end the session too.
    function end(reason, fromOtherTab, explicit) {
      if (done) return;
      done = true;
      if (banner) banner.hide();
      var finish = function () {
        if (channel && !fromOtherTab) channel.postMessage({ type: "logout", reason: reason });
        if (stopped) return; // stopped meanwhile (e.g. a React unmount): no callback, no redirect
        if (options.onLogout) options.onLogout(reason);
        else location.assign(loginUrl(reason));
      };
      if (!fromOtherTab && (explicit || reason === "idle")) post("/logout").then(finish, finish);
      else finish();
    }

    function tick() {
      if (done || deadline == null) return;
      var now = Date.now();
      // Activity held back by the throttle is reported before it matters.
      if (lastActivity > lastReport && now - lastReport >= throttleMs()) report(now);
      var left = deadline - now;
      if (left <= 0) {
        // Ask the server before acting: another tab or device may have kept it alive.
        sync().then(function () {
          if (!done && deadline - Date.now() <= 0) end("idle", false);
        });
        return;
      }
      if (left <= warnMs) {
        warned = true;
        if (options.onWarn) options.onWarn(left);
        else banner.show(Math.ceil(left / 1000), function () { lastReport = 0; activity(false); });
      }
    }

    // Every listener is kept so that stop() can remove it.
    var events = ["pointerdown", "keydown", "touchstart", "wheel", "scroll"];
    var listenOpts = { passive: true, capture: true };
    var onUserActivity = function () { activity(false); };
    var onVisibility = function () { if (document.visibilityState === "visible") sync(); };
    var onMessage = function (e) {
      var m = e.data || {};
      if (m.type === "activity") activity(true);
      if (m.type === "logout") end(m.reason || "logout", true);
    };
    events.forEach(function (ev) { global.addEventListener(ev, onUserActivity, listenOpts); });
    document.addEventListener("visibilitychange", onVisibility);
    if (channel) channel.addEventListener("message", onMessage);
    sync();
    var timer = setInterval(tick, 1000);
    return {
      /** Stops watching (e.g. on unmount): removes every listener and the
       *  timer; a stopped instance never calls back, redirects or fetches. */
      stop: function () {
        if (stopped) return;
        stopped = done = true;
        clearInterval(timer);
        events.forEach(function (ev) { global.removeEventListener(ev, onUserActivity, listenOpts); });
        document.removeEventListener("visibilitychange", onVisibility);
        if (channel) channel.removeEventListener("message", onMessage);
        if (banner) banner.hide();
      },
      /** Counts as activity (e.g. "Stay signed in"). */
      touch: function () { lastReport = 0; activity(false); },
      /** Milliseconds until the idle logout, or null before the first sync. */
      remaining: function () { return deadline == null ? null : Math.max(0, deadline - Date.now()); },
      /** Ends the session on the server (POST {prefix}/logout), in every tab. */
      logout: function () { end("logout", false, true); },
    };
  }

  global.authgate = {
    activityLogout: activityLogout,
    refreshToken: refreshToken,
    onRefresh: onRefresh,
    /** The last refresh's outcome (as given to onRefresh), or null. */
    lastRefresh: function () { return lastRefresh; },
    fetch: authFetch,
    loginUrl: loginUrl,
  };

  // Added by the gateway to pages of routes with `inject_client: true`:
  // <script src=".../client.js" data-authgate-auto="1" defer>.
  var me = document.currentScript;
  if (me && me.getAttribute && me.getAttribute("data-authgate-auto")) {
    activityLogout({});
  }
})(window);
