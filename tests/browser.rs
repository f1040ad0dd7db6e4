//! End-to-end in a real browser (issue: the browser side): headless Debian
//! Chromium driven through ChromeDriver (WebDriver, via fantoccini) against a
//! real gateway in front of a small HTML app, with short timeouts.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages
//! `chromium` and `chromium-driver`; `scripts/test` installs them). Other
//! paths: `AUTHGATE_CHROMIUM`, `AUTHGATE_CHROMEDRIVER`. Without them these
//! tests fail with that message, unless `AUTHGATE_SKIP_BROWSER_TESTS=1` says
//! to skip them. `AUTHGATE_SCREENSHOTS=DIR` saves the screenshots of the
//! login page and the idle warning there (the ones in `docs/screenshots/`).

mod support;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use support::*;
use tokio::io::AsyncWriteExt;

// ---------------------------------------------------------------- the app

/// A legacy-style HTML app: `/app/...` pages (with or without the client
/// script), `/plain/...` pages with no script at all (for `inject_client`),
/// and a JSON API at `/api/data` that echoes the identity it was given.
async fn start_app(warn_ms: u64) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Some(buf) = read_request_head(&mut sock).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                let user = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("x-auth-user")
                            .then(|| v.trim().to_string())
                    })
                    .unwrap_or_default();
                let (ctype, body) = if path.starts_with("/api/") {
                    ("application/json", json!({ "user": user }).to_string())
                } else {
                    ("text/html; charset=utf-8", page(&path, &user, warn_ms))
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\
                     cache-control: no-store\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}

fn page(path: &str, user: &str, warn_ms: u64) -> String {
    let script = if path.starts_with("/plain/") {
        String::new()
    } else {
        format!(
            r#"<script src="/auth/client.js"></script>
<script>
window.ag = authgate.activityLogout({{ warnMs: {warn_ms} }});
document.getElementById("api").addEventListener("click", function () {{
  authgate.fetch("/api/data", {{ headers: {{ Accept: "application/json" }} }}).then(function (r) {{
    return r.text().then(function (t) {{ document.getElementById("out").textContent = r.status + " " + t; }});
  }});
}});
</script>"#
        )
    };
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Legacy app</title>
<style>body{{font:16px system-ui,sans-serif;margin:3rem}}</style></head>
<body><h1 id="title">Legacy app: {path}</h1><p>Signed in as <b id="user">{user}</b>.</p>
<input id="typing" placeholder="type here"> <button id="api" type="button">Call the API</button>
<pre id="out"></pre>
{script}</body></html>"#
    )
}

// ---------------------------------------------------------------- the browser

fn tool(var: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    p.exists().then_some(p)
}

struct Browser {
    client: Client,
    driver: std::process::Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// ChromeDriver runs in its own process group with the Chromium it
    /// starts: a failed test leaves no browser behind.
    fn drop(&mut self) {
        // SAFETY: signalling the process group of our own child.
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium session, or returns None
    /// when the tests are explicitly skipped.
    async fn start() -> Option<Browser> {
        let chromium = tool("AUTHGATE_CHROMIUM", "/usr/bin/chromium");
        let driver = tool("AUTHGATE_CHROMEDRIVER", "/usr/bin/chromedriver");
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            if std::env::var("AUTHGATE_SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
                eprintln!("browser tests skipped (AUTHGATE_SKIP_BROWSER_TESTS=1)");
                return None;
            }
            panic!(
                "browser tests need Chromium and ChromeDriver: apt-get install chromium \
                 chromium-driver (scripts/test does), or set AUTHGATE_CHROMIUM and \
                 AUTHGATE_CHROMEDRIVER, or AUTHGATE_SKIP_BROWSER_TESTS=1 to skip them"
            );
        };
        let profile = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&driver)
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn chromedriver");
            if !wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }) {
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            let caps = json!({
                "browserName": "chrome",
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--disable-background-timer-throttling",
                        "--disable-renderer-backgrounding",
                        "--disable-backgrounding-occluded-windows",
                        "--window-size=1000,700",
                        format!("--user-data-dir={}", profile.path().display()),
                    ]
                }
            });
            let caps = match caps {
                Value::Object(m) => m,
                _ => unreachable!(),
            };
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let connected = ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match connected {
                Ok(client) => {
                    return Some(Browser {
                        client,
                        driver: child,
                        _profile: profile,
                    })
                }
                Err(e) => {
                    // SAFETY: signalling the process group of our own child.
                    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                    let _ = child.wait();
                    panic!("could not start headless Chromium: {e}");
                }
            }
        }
        panic!("chromedriver did not start");
    }

    async fn path(&self) -> String {
        let u = self.client.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// Polls until the current URL's path+query satisfies `f`.
    async fn wait_path(&self, within: Duration, f: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let p = self.path().await;
            if f(&p) {
                return p;
            }
            if start.elapsed() > within {
                let page = self.client.source().await.unwrap_or_default();
                let page: String = page.chars().take(2000).collect();
                panic!("still at {p} after {within:?}; the page:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Goes to `/app/...`, is sent to the login page, signs in there.
    async fn sign_in(&self, gw: &Gateway, path: &str) {
        self.client.goto(&gw.url(path)).await.unwrap();
        self.wait_path(Duration::from_secs(5), |p| p.starts_with("/auth/login"))
            .await;
        self.client
            .find(Locator::Id("username"))
            .await
            .unwrap()
            .send_keys("alice")
            .await
            .unwrap();
        let pw = self.client.find(Locator::Id("password")).await.unwrap();
        pw.send_keys(PASSWORD).await.unwrap();
        self.client
            .find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.wait_path(Duration::from_secs(10), |p| p == path).await;
    }

    /// The session cookie pairs the browser holds (HttpOnly included).
    async fn cookie_header(&self) -> String {
        self.client
            .get_all_cookies()
            .await
            .unwrap()
            .iter()
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Types into the page's input every 0.7 s for `how_long`: user
    /// activity that makes no request of the page's own.
    async fn keep_typing(&self, how_long: Duration) {
        let input = self.client.find(Locator::Id("typing")).await.unwrap();
        let start = Instant::now();
        while start.elapsed() < how_long {
            input.send_keys("x").await.unwrap();
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    }

    async fn text(&self, id: &str) -> String {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn screenshot(&self, name: &str, scratch: &std::path::Path) {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n"), "not a PNG screenshot");
        let dir = std::env::var_os("AUTHGATE_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| scratch.to_path_buf());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

async fn gateway(app: SocketAddr, o: Options) -> Gateway {
    Gateway::start_with(Options {
        upstream: Some(app),
        ..o
    })
    .await
}

/// A request with the browser's cookies, as an API client would send it.
async fn with_cookies(gw: &Gateway, cookies: &str, path: &str) -> (u16, Value) {
    let r = gw
        .client
        .get(gw.url(path))
        .header("accept", "application/json")
        .header("cookie", cookies)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

// ---------------------------------------------------------------- the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_through_the_page_lands_on_the_original_target() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = start_app(2000).await;
    let gw = gateway(app, Options::default()).await;
    b.client
        .goto(&gw.url("/app/reports?month=11"))
        .await
        .unwrap();
    let login = b
        .wait_path(Duration::from_secs(5), |p| p.starts_with("/auth/login"))
        .await;
    assert!(
        login.contains("rd=%2Fapp%2Freports%3Fmonth%3D11"),
        "login page without the target: {login}"
    );
    // A wrong password: back on the login page with the error, no session.
    b.client
        .find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    b.client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("not-the-password")
        .await
        .unwrap();
    b.client
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let again = b
        .wait_path(Duration::from_secs(10), |p| p.contains("error="))
        .await;
    assert!(again.contains("error=invalid_credentials"), "{again}");
    let alert = b
        .client
        .find(Locator::Css("[role=alert]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!alert.is_empty());
    // The right one: 303 to the page the user asked for.
    b.sign_in(&gw, "/app/reports?month=11").await;
    assert_eq!(b.text("user").await, "alice");
    assert_eq!(b.text("title").await, "Legacy app: /app/reports?month=11");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_page_warns_then_logs_out_and_the_old_cookie_is_dead() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let app = start_app(3000).await;
    let gw = gateway(
        app,
        Options {
            idle_timeout: "6s",
            ..Default::default()
        },
    )
    .await;
    b.sign_in(&gw, "/app/page").await;
    let cookies = b.cookie_header().await;
    assert_eq!(with_cookies(&gw, &cookies, "/api/data").await.0, 200);
    let signed_in = Instant::now();
    // No interaction: the warning appears in the last 3 s before the deadline.
    let start = Instant::now();
    let warning = loop {
        if let Ok(el) = b.client.find(Locator::Id("authgate-idle-warning")).await {
            break el;
        }
        assert!(start.elapsed() < Duration::from_secs(8), "no idle warning");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let shown_after = signed_in.elapsed();
    assert!(
        shown_after >= Duration::from_millis(2500),
        "warning shown {shown_after:?} after sign-in, before the warn window"
    );
    let text = warning.text().await.unwrap();
    assert!(text.contains("signed out in"), "{text}");
    b.screenshot("idle-warning.png", scratch.path()).await;
    // Then the login page, saying why.
    let login = b
        .wait_path(Duration::from_secs(8), |p| p.starts_with("/auth/login"))
        .await;
    assert!(login.contains("reason=idle"), "{login}");
    assert!(login.contains("rd=%2Fapp%2Fpage"), "{login}");
    let status = b
        .client
        .find(Locator::Css("[role=status]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.to_lowercase().contains("inactiv"), "{status}");
    b.screenshot("login-idle.png", scratch.path()).await;
    // The cookie the browser held no longer opens anything.
    let (code, body) = with_cookies(&gw, &cookies, "/api/data").await;
    assert_eq!(code, 401, "{body}");
    assert!(
        ["idle", "logout"].contains(&body["reason"].as_str().unwrap_or("")),
        "{body}"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_keeps_interacting_stays_signed_in_past_the_idle_timeout() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = start_app(2000).await;
    let gw = gateway(
        app,
        Options {
            idle_timeout: "5s",
            ..Default::default()
        },
    )
    .await;
    b.sign_in(&gw, "/app/page").await;
    // Typing (no navigation, no request of the page's own) for 3× the idle timeout.
    b.keep_typing(Duration::from_secs(15)).await;
    assert_eq!(b.path().await, "/app/page", "logged out while typing");
    let cookies = b.cookie_header().await;
    let (code, body) = with_cookies(&gw, &cookies, "/auth/session").await;
    assert_eq!(code, 200, "{body}");
    assert!(gw.metric("authgate_sessions_ended_total", "idle").await == 0.0);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_share_activity_and_logout() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = start_app(2000).await;
    let gw = gateway(
        app,
        Options {
            idle_timeout: "5s",
            ..Default::default()
        },
    )
    .await;
    b.sign_in(&gw, "/app/one").await;
    let tab_a = b.client.window().await.unwrap();
    let tab_b = b.client.new_window(true).await.unwrap().handle;
    b.client.switch_to_window(tab_b.clone()).await.unwrap();
    b.client.goto(&gw.url("/app/two")).await.unwrap();
    b.wait_path(Duration::from_secs(5), |p| p == "/app/two")
        .await;
    // Only tab A is used, for 3× the idle timeout.
    b.client.switch_to_window(tab_a.clone()).await.unwrap();
    b.keep_typing(Duration::from_secs(15)).await;
    assert_eq!(b.path().await, "/app/one");
    b.client.switch_to_window(tab_b.clone()).await.unwrap();
    assert_eq!(
        b.path().await,
        "/app/two",
        "the unused tab was logged out while the other was in use"
    );
    // Logout in A ends B too.
    b.client.switch_to_window(tab_a).await.unwrap();
    b.client
        .execute("window.ag.logout()", vec![])
        .await
        .unwrap();
    b.wait_path(Duration::from_secs(5), |p| p.starts_with("/auth/login"))
        .await;
    b.client.switch_to_window(tab_b).await.unwrap();
    let p = b
        .wait_path(Duration::from_secs(5), |p| p.starts_with("/auth/login"))
        .await;
    assert!(p.contains("reason=logout"), "{p}");
    let cookies = b.cookie_header().await;
    assert_eq!(with_cookies(&gw, &cookies, "/api/data").await.0, 401);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_refreshed_silently_and_the_page_keeps_working() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = start_app(2000).await;
    // No in-line renewal by the gateway: the client must refresh.
    let gw = gateway(
        app,
        Options {
            access_token_ttl: "3s",
            cookie_auto_refresh: false,
            ..Default::default()
        },
    )
    .await;
    b.sign_in(&gw, "/app/page").await;
    let old = b.cookie_header().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The access token has expired (ttl 3 s + leeway 1 s) ...
    let (code, body) = with_cookies(&gw, &old, "/api/data").await;
    assert_eq!((code, body["reason"].as_str()), (401, Some("expired")));
    let before = gw
        .metric("authgate_refresh_total", "result=\"success\"")
        .await;
    // ... yet the page's API call succeeds: 401 expired → refresh → retry.
    b.client
        .find(Locator::Id("api"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let start = Instant::now();
    let out = loop {
        let t = b.text("out").await;
        if !t.is_empty() {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the API call never returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(out, r#"200 {"user":"alice"}"#);
    let after = gw
        .metric("authgate_refresh_total", "result=\"success\"")
        .await;
    assert_eq!(after - before, 1.0, "expected exactly one refresh");
    // The browser now holds the successor tokens: a reload works.
    b.client.refresh().await.unwrap();
    b.wait_path(Duration::from_secs(5), |p| p == "/app/page")
        .await;
    assert_eq!(b.text("user").await, "alice");
    assert_ne!(b.cookie_header().await, old);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_page_without_script_gets_the_warning_by_injection() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let app = start_app(2000).await;
    let gw = gateway(
        app,
        Options {
            idle_timeout: "4s",
            extra_routes: "  - name: plain\n    path_prefix: /plain\n    upstream: http://UPSTREAM\n    inject_client: true\n",
            ..Default::default()
        },
    )
    .await;
    b.sign_in(&gw, "/plain/page").await;
    // The app's HTML has no script; the gateway added the client and its banner.
    let start = Instant::now();
    while b
        .client
        .find(Locator::Id("authgate-idle-warning"))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "no injected warning"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.screenshot("legacy-injected-warning.png", scratch.path())
        .await;
    let p = b
        .wait_path(Duration::from_secs(8), |p| p.starts_with("/auth/login"))
        .await;
    assert!(p.contains("reason=idle"), "{p}");
    b.close().await;
}
