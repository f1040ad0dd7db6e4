//! Session lifecycle under concurrency and over time (SPEC §4): parallel
//! refreshes and renewals, parallel signins, endings, activity rules, the
//! app's own logout. Real gateway, real concurrent clients.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use support::*;

async fn refresh(gw: &Gateway, token: &str) -> reqwest::Response {
    gw.client
        .post(gw.url("/auth/refresh"))
        .json(&serde_json::json!({ "refresh_token": token }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn twenty_parallel_refreshes_with_one_token_all_get_the_same_successor() {
    let gw = Gateway::start_with(Options {
        refresh_reuse_grace: "2s",
        ..Default::default()
    })
    .await;
    let login = gw.login().await;
    let r0 = login["refresh_token"].as_str().unwrap().to_string();
    let before = gw
        .metric("authgate_refresh_total", "result=\"grace_replay\"")
        .await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (client, url, r0, barrier) = (
                gw.client.clone(),
                gw.url("/auth/refresh"),
                r0.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                let r = client
                    .post(url)
                    .json(&serde_json::json!({ "refresh_token": r0 }))
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut pairs = HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        pairs.insert((
            body["access_token"].as_str().unwrap().to_string(),
            body["refresh_token"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(
        pairs.len(),
        1,
        "parallel refreshes got different successors"
    );
    assert!(
        gw.metric("authgate_refresh_total", "result=\"grace_replay\"")
            .await
            >= before + 19.0
    );
    let (access, successor) = pairs.into_iter().next().unwrap();
    // past the grace, kept active: the successor works, the session is intact
    for _ in 0..5 {
        assert_eq!(gw.get_bearer("/app/x", &access).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = refresh(&gw, &successor).await;
    assert_eq!(r.status(), 200);
    let newest: Value = r.json().await.unwrap();
    // and now R0 (two generations old) ends the session: reuse
    let r = refresh(&gw, &r0).await;
    assert_eq!(r.status(), 401);
    let resp = gw
        .get_bearer("/app/x", newest["access_token"].as_str().unwrap())
        .await;
    assert_eq!(resp.json::<Value>().await.unwrap()["reason"], "revoked");
    assert!(
        gw.metric("authgate_sessions_ended_total", "reason=\"refresh_reuse\"")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn parallel_cookie_requests_at_the_renewal_moment_all_pass_with_one_new_pair() {
    let gw = Gateway::start_with(Options {
        access_token_ttl: "2s",
        ..Default::default()
    })
    .await;
    let r = gw.signin("alice", PASSWORD).await;
    let cookie = cookie_pair(&r, "__Host-authgate");
    tokio::time::sleep(Duration::from_millis(3200)).await; // token expired (+1 s leeway)
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (client, url, cookie) = (
                gw.client.clone(),
                gw.url(&format!("/app/page{i}")),
                cookie.clone(),
            );
            tokio::spawn(async move {
                let r = client
                    .get(url)
                    .header("cookie", cookie)
                    .header("accept", "text/html")
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                (status, cookie_pair(&r, "__Host-authgate"))
            })
        })
        .collect();
    let mut new_cookies = HashSet::new();
    for t in tasks {
        let (status, c) = t.await.unwrap();
        assert_eq!(status, 200);
        new_cookies.insert(c);
    }
    assert_eq!(
        new_cookies.len(),
        1,
        "parallel renewals handed out different tokens"
    );
    let c = new_cookies.into_iter().next().unwrap();
    let r = gw
        .client
        .get(gw.url("/app/after"))
        .header("cookie", c)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_legacy_page_used_longer_than_the_token_ttl_never_sees_the_login_page() {
    let gw = Gateway::start_with(Options {
        access_token_ttl: "2s",
        ..Default::default()
    })
    .await;
    let r = gw.signin("alice", PASSWORD).await;
    let mut cookie = cookie_pair(&r, "__Host-authgate");
    for i in 0..12 {
        let r = gw
            .client
            .get(gw.url(&format!("/app/page{i}")))
            .header("cookie", &cookie)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "bounced at navigation {i}");
        if r.headers().get_all("set-cookie").iter().count() > 0 {
            cookie = cookie_pair(&r, "__Host-authgate");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn parallel_signins(gw: &Gateway, n: usize) -> Vec<(reqwest::StatusCode, Value)> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, url, barrier) =
                (gw.client.clone(), gw.url("/auth/signin"), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let r = client
                    .post(url)
                    .json(&serde_json::json!({"username": "alice", "password": PASSWORD}))
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn working(gw: &Gateway, results: &[(reqwest::StatusCode, Value)]) -> usize {
    let mut n = 0;
    for (_, body) in results.iter().filter(|(s, _)| *s == 200) {
        if gw
            .get_bearer("/app/x", body["access_token"].as_str().unwrap())
            .await
            .status()
            == 200
        {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn twenty_parallel_signins_leave_exactly_max_per_user_sessions() {
    for policy in ["reject", "replace_oldest"] {
        let gw = Gateway::start_with(Options {
            policy,
            max_per_user: 2,
            ..Default::default()
        })
        .await;
        let results = parallel_signins(&gw, 20).await;
        let ok = results.iter().filter(|(s, _)| *s == 200).count();
        if policy == "reject" {
            assert_eq!(ok, 2, "{policy}: {ok} signins succeeded");
            assert!(results
                .iter()
                .all(|(s, b)| *s == 200 || (*s == 409 && b["error"] == "session_active")));
        } else {
            assert_eq!(ok, 20, "{policy}: every signin succeeds");
        }
        assert_eq!(working(&gw, &results).await, 2, "{policy}: live sessions");
        assert_eq!(
            gw.metric("authgate_sessions_active", "").await,
            2.0,
            "{policy}: gauge"
        );
    }
}

#[tokio::test]
async fn renewing_an_expired_session_may_not_exceed_the_limit() {
    let gw = Gateway::start_with(Options {
        policy: "reject",
        access_token_ttl: "2s",
        ..Default::default()
    })
    .await;
    let a = gw.login().await;
    tokio::time::sleep(Duration::from_millis(3200)).await; // A expired (not live), still refreshable
    let b = gw.signin("alice", PASSWORD).await;
    assert_eq!(
        b.status(),
        200,
        "an expired session does not block a signin"
    );
    let r = refresh(&gw, a["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"error": "invalid_grant", "reason": "session_active"})
    );
}

#[tokio::test]
async fn logout_ends_even_an_expired_session() {
    let gw = Gateway::start_with(Options {
        access_token_ttl: "2s",
        ..Default::default()
    })
    .await;
    let login = gw.login().await;
    let access = login["access_token"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(
        gw.get_bearer("/app/x", access)
            .await
            .json::<Value>()
            .await
            .unwrap()["reason"],
        "expired"
    );
    let r = gw
        .client
        .post(gw.url("/auth/logout"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = refresh(&gw, login["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "logout");
}

#[tokio::test]
async fn activity_modes_decide_what_keeps_a_cookie_session_alive() {
    let routes = "  - name: all\n    path_prefix: /all\n    upstream: http://UPSTREAM\n    activity: all\n  - name: none\n    path_prefix: /none\n    upstream: http://UPSTREAM\n    activity: none\n";
    let gw = Gateway::start_with(Options {
        idle_timeout: "2s",
        extra_routes: routes,
        ..Default::default()
    })
    .await;
    let xhr = |cookie: String, path: &'static str| {
        let (client, url) = (gw.client.clone(), gw.url(path));
        async move {
            client
                .get(url)
                .header("cookie", cookie)
                .header("x-requested-with", "XMLHttpRequest")
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let navigate = |cookie: String, path: &'static str| {
        let (client, url) = (gw.client.clone(), gw.url(path));
        async move {
            client
                .get(url)
                .header("cookie", cookie)
                .header("sec-fetch-mode", "navigate")
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // `all`: XHR counts; `interactive`: navigations count; `none`: nothing does
    let all = cookie_pair(&gw.signin("alice", PASSWORD).await, "__Host-authgate");
    let nav = cookie_pair(&gw.signin("alice", PASSWORD).await, "__Host-authgate");
    let none = cookie_pair(&gw.signin("alice", PASSWORD).await, "__Host-authgate");
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(xhr(all.clone(), "/all/api").await, 200);
        assert_eq!(navigate(nav.clone(), "/app/page").await, 200);
        let _ = navigate(none.clone(), "/none/page").await;
    }
    assert_eq!(xhr(all, "/all/api").await, 200, "activity: all");
    assert_eq!(
        navigate(nav, "/app/page").await,
        200,
        "activity: interactive"
    );
    let r = gw
        .client
        .get(gw.url("/none/page"))
        .header("cookie", none)
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "activity: none kept the session alive");
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .ends_with("reason=idle"));
}

#[tokio::test]
async fn ignore_paths_and_session_reads_never_count_but_the_activity_endpoint_does() {
    let gw = Gateway::start_with(Options {
        idle_timeout: "2s",
        ..Default::default()
    })
    .await;
    let polled = gw.login_token().await;
    let pinged = gw.login_token().await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // bearer requests count, except under activity.ignore_paths (/app/poll)
        let _ = gw.get_bearer("/app/poll", &polled).await;
        let _ = gw.get_bearer("/APP/Poll", &polled).await; // case does not escape ignore_paths
        let _ = gw.get_bearer("/auth/session", &polled).await;
        let r = gw
            .client
            .post(gw.url("/auth/activity"))
            .bearer_auth(&pinged)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    // polling alone let the session go idle (it would have been 200 at first)
    assert_eq!(
        gw.get_bearer("/app/poll", &polled)
            .await
            .json::<Value>()
            .await
            .unwrap()["reason"],
        "idle"
    );
    assert_eq!(gw.get_bearer("/app/x", &pinged).await.status(), 200);
}

/// An upstream whose every response carries `X-Auth-Logout: 1`.
fn logout_upstream() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut seen = Vec::new();
                loop {
                    let n = conn.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let resp =
                            b"HTTP/1.1 200 OK\r\nX-Auth-Logout: 1\r\nContent-Length: 2\r\n\r\nok";
                        if conn.write_all(resp).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_upstreams_x_auth_logout_header_ends_the_session() {
    let gw = Gateway::start_with(Options {
        upstream: Some(logout_upstream()),
        ..Default::default()
    })
    .await;
    let token = gw.login_token().await;
    let r = gw.get_bearer("/app/signout", &token).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("x-auth-logout").is_none(),
        "the header is for the gateway only"
    );
    assert!(r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().contains("Max-Age=0")));
    let r = gw.get_bearer("/app/x", &token).await;
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "logout");
}

#[tokio::test]
async fn a_user_disabled_while_their_signin_is_verified_gets_no_working_session() {
    let gw = Gateway::start().await;
    // keep the verifier busy so alice's signin waits in the queue
    let flood: Vec<_> = (0..40)
        .map(|_| {
            let (c, u) = (gw.client.clone(), gw.url("/auth/signin"));
            tokio::spawn(async move {
                c.post(u)
                    .json(&serde_json::json!({"username": "Bob", "password": BOB_PASSWORD}))
                    .send()
                    .await
                    .map(|r| r.status())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let alice = {
        let (c, u) = (gw.client.clone(), gw.url("/auth/signin"));
        tokio::spawn(async move {
            c.post(u)
                .json(&serde_json::json!({"username": "alice", "password": PASSWORD}))
                .send()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let text = std::fs::read_to_string(gw.dir.path().join("users.yaml")).unwrap();
    gw.write_users(&text.replacen("roles: [user]\n", "roles: [user]\n    disabled: true\n", 1));
    gw.signal(libc::SIGHUP);
    let r = alice.await.unwrap();
    if r.status() == 200 {
        let token = r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        // the reload may land after the signin: then it must revoke it
        let mut refused = false;
        for _ in 0..50 {
            if gw.get_bearer("/app/x", &token).await.status() == 401 {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(refused, "a disabled user kept a working session");
    } else {
        assert_eq!(r.status(), 401);
    }
    for f in flood {
        let _ = f.await;
    }
}

#[tokio::test]
async fn a_browser_whose_cookie_fell_behind_another_refresh_is_renewed_not_bounced() {
    let gw = Gateway::start_with(Options {
        access_token_ttl: "2s",
        refresh_reuse_grace: "1s",
        ..Default::default()
    })
    .await;
    let r = gw.signin("alice", PASSWORD).await;
    let cookie = cookie_pair(&r, "__Host-authgate");
    let body: Value = r.json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // the same session refreshed through the JSON API (e.g. a script)
    assert_eq!(
        refresh(&gw, body["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(3000)).await; // cookie token expired, grace over
    let r = gw
        .client
        .get(gw.url("/app/page"))
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "an active browser was bounced: {:?}",
        r.headers().get("location")
    );
    let renewed = cookie_pair(&r, "__Host-authgate");
    let r = gw
        .client
        .get(gw.url("/app/next"))
        .header("cookie", renewed)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_end_reason_outlives_the_last_tokens_expiry() {
    let gw = Gateway::start_with(Options {
        access_token_ttl: "2s",
        idle_timeout: "3s",
        cookie_auto_refresh: false,
        ..Default::default()
    })
    .await;
    let token = gw.login_token().await;
    tokio::time::sleep(Duration::from_millis(5500)).await; // token expired, then idle; sweeps ran
    let r = gw.get_bearer("/app/x", &token).await;
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "idle");
}

#[tokio::test]
async fn a_double_clicked_relogin_form_does_not_lock_the_user_out() {
    let gw = Gateway::start_with(Options {
        policy: "reject",
        ..Default::default()
    })
    .await;
    let cookie = cookie_pair(&gw.signin("alice", PASSWORD).await, "__Host-authgate");
    let own = format!("https://localhost:{}", gw.port);
    let click = || {
        gw.client
            .post(gw.url("/auth/signin"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", &own)
            .header("cookie", &cookie)
            .body(format!(
                "username=alice&password={PASSWORD}&rd=%2Fapp%2Fhome"
            ))
            .send()
    };
    let first = click().await.unwrap();
    let second = click().await.unwrap();
    assert_eq!(first.headers()["location"], "/app/home");
    assert_eq!(
        second.headers()["location"],
        "/app/home",
        "the second click was refused"
    );
    let latest = cookie_pair(&second, "__Host-authgate");
    let r = gw
        .client
        .get(gw.url("/app/home"))
        .header("cookie", latest)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_public_logout_url_of_the_app_still_logs_out_of_the_gateway() {
    let routes = "  - name: legacy\n    path_prefix: /legacy\n    upstream: http://UPSTREAM\n    public_paths: [/legacy/logout]\n    logout_paths: [/legacy/logout]\n";
    let gw = Gateway::start_with(Options {
        extra_routes: routes,
        ..Default::default()
    })
    .await;
    let r = gw.signin("alice", PASSWORD).await;
    let cookie = cookie_pair(&r, "__Host-authgate");
    let r = gw
        .client
        .get(gw.url("/legacy/logout"))
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().contains("Max-Age=0")));
    let r = gw
        .client
        .get(gw.url("/app/x"))
        .header("cookie", &cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "logout");
}
