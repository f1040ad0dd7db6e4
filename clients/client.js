/* authgate browser client: served by the gateway at {prefix}/client.js.
 *
 *   <script src="/auth/client.js"></script>
 *   <script>
 *     authgate.activityLogout({ warnMs: 60000 });          // default banner
 *     authgate.refreshToken().then(ok => ...);             // Promise<boolean>
 *     authgate.fetch("/api/x").then(r => ...);             // refreshes once on 401 "expired"
 *   </script>
 *
 * The server's idle timeout is the truth; this script only mirrors it: it
 * reports real user activity (throttled POST {prefix}/activity), reads the
 * server's deadlines from GET {prefix}/session, warns before the deadline,
 * and on expiry logs out and goes to the login page with reason=idle.
 * Tabs of one browser share activity and logout (BroadcastChannel).
 * No dependency, no build step, no token is ever readable by page scripts
 * (the tokens live in HttpOnly cookies).
 */
(function (global) {
  "use strict";
  var PREFIX = "__AUTHGATE_PREFIX__";
  var channel = typeof BroadcastChannel === "function" ? new BroadcastChannel("authgate") : null;
  var refreshing = null;

  function post(path) {
    return fetch(PREFIX + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
  }

  function loginUrl(reason) {
    var rd = location.pathname + location.search;
    return PREFIX + "/login?rd=" + encodeURIComponent(rd) + "&reason=" + encodeURIComponent(reason);
  }

  /** Rotates the session's tokens; single-flight within a tab and, where the
   *  Web Locks API exists, across tabs. Resolves to true on success. */
  function refreshToken() {
    if (refreshing) return refreshing;
    var run = function () {
      return post("/refresh").then(function (r) { return r.ok; }, function () { return false; });
    };
    refreshing = (global.navigator && navigator.locks && navigator.locks.request
      ? navigator.locks.request("authgate-refresh", run)
      : run()
    ).then(function (ok) {
      refreshing = null;
      return ok;
    });
    return refreshing;
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
    var done = false;
    var banner = options.onWarn ? null : defaultBanner();

    function throttleMs() { return Math.min(idleMs / 4, 60000); }

    // Reads the server's view; a 401 means the session already ended.
    function sync() {
      return fetch(PREFIX + "/session", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (r.status === 401) {
            return r.json().then(
              function (b) { end(b && b.reason ? b.reason : "expired", false); },
              function () { end("expired", false); });
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
      post("/activity").then(function (r) { if (r.status === 401) sync(); }, function () {});
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

    function end(reason, fromOtherTab) {
      if (done) return;
      done = true;
      if (banner) banner.hide();
      var finish = function () {
        if (channel && !fromOtherTab) channel.postMessage({ type: "logout", reason: reason });
        if (options.onLogout) options.onLogout(reason);
        else location.assign(loginUrl(reason));
      };
      if (fromOtherTab || reason !== "idle") finish();
      else post("/logout").then(finish, finish);
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

    ["pointerdown", "keydown", "touchstart", "wheel"].forEach(function (ev) {
      global.addEventListener(ev, function () { activity(false); }, { passive: true, capture: true });
    });
    global.addEventListener("scroll", function () { activity(false); }, { passive: true, capture: true });
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") sync();
    });
    if (channel) {
      channel.addEventListener("message", function (e) {
        var m = e.data || {};
        if (m.type === "activity") activity(true);
        if (m.type === "logout") end(m.reason || "logout", true);
      });
    }
    sync();
    var timer = setInterval(tick, 1000);
    return {
      /** Stops watching (e.g. on unmount). */
      stop: function () { done = true; clearInterval(timer); if (banner) banner.hide(); },
      /** Counts as activity (e.g. "Stay signed in"). */
      touch: function () { lastReport = 0; activity(false); },
      /** Milliseconds until the idle logout, or null before the first sync. */
      remaining: function () { return deadline == null ? null : Math.max(0, deadline - Date.now()); },
      logout: function () { end("logout", false); },
    };
  }

  global.authgate = {
    activityLogout: activityLogout,
    refreshToken: refreshToken,
    fetch: authFetch,
  };

  // Added by the gateway to pages of routes with `inject_client: true`:
  // <script src=".../client.js" data-authgate-auto="1" defer>.
  var me = document.currentScript;
  if (me && me.getAttribute && me.getAttribute("data-authgate-auto")) {
    activityLogout({});
  }
})(window);
